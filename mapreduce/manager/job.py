"""Jobs and their tasks, as the Manager plans and tracks them."""

import collections
import os

from mapreduce import filenames, protocol


class Task:
    """One map or reduce task of a job, and how its attempts went."""

    kind = "task"

    def __init__(self, job, task_id, input_paths):
        """Plan task `task_id` of `job` over `input_paths`."""
        self.job = job
        self.task_id = task_id
        self.input_paths = input_paths
        self.failures = 0
        self.failed_on = set()

    def message(self):
        """Return the message that hands this task to a Worker."""
        raise NotImplementedError

    def __repr__(self):
        """Show the task, e.g. `MapTask(job_id=0, task_id=1, inputs=2)`."""
        return (f"{type(self).__name__}(job_id={self.job.job_id}, "
                f"task_id={self.task_id}, inputs={len(self.input_paths)})")


class MapTask(Task):
    """Run the mapper over a group of input files."""

    kind = "map"

    def message(self):
        """Return the `new_map_task` message for this task."""
        return protocol.NewMapTask(
            task_id=self.task_id,
            input_paths=self.input_paths,
            executable=self.job.mapper_executable,
            output_directory=self.job.job_dir,
            num_partitions=self.job.num_reducers,
        )


class ReduceTask(Task):
    """Run the reducer over one partition of every map task's output."""

    kind = "reduce"

    def message(self):
        """Return the `new_reduce_task` message for this task."""
        return protocol.NewReduceTask(
            task_id=self.task_id,
            executable=self.job.reducer_executable,
            input_paths=self.input_paths,
            output_directory=self.job.output_directory,
        )


class Stage:
    """The tasks of one stage: a queue to hand out, and what is unfinished.

    A task leaves the queue when it is assigned and stays unfinished until
    a Worker reports it finished.
    """

    def __init__(self, name, tasks):
        """Queue `tasks` in task_id order."""
        self.name = name
        self.pending = collections.deque(tasks)
        self.unfinished = {task.task_id: task for task in tasks}

    def requeue(self, task, first=False):
        """Put an unfinished task back, at the end or (`first`) in front.

        Returns whether the task was one of this stage's unfinished tasks.
        """
        if self.unfinished.get(task.task_id) is not task:
            return False
        if first:
            self.pending.appendleft(task)
        else:
            self.pending.append(task)
        return True

    def finish(self, task):
        """Record that `task` is done; return False if it was not ours."""
        if self.unfinished.get(task.task_id) is not task:
            return False
        del self.unfinished[task.task_id]
        return True

    @property
    def done(self):
        """Tell whether every task of the stage has finished."""
        return not self.unfinished

    def __repr__(self):
        """Show the stage and its progress."""
        return (f"Stage({self.name!r}, pending={len(self.pending)}, "
                f"unfinished={len(self.unfinished)})")


class Job:
    """A submitted job: its request, its directories and its current stage."""

    def __init__(self, job_id, request, shared_dir):
        """Record job `job_id` from a `new_manager_job` request."""
        self.job_id = job_id
        self.input_directory = request.input_directory
        self.output_directory = request.output_directory
        self.mapper_executable = request.mapper_executable
        self.reducer_executable = request.reducer_executable
        self.num_mappers = request.num_mappers
        self.num_reducers = request.num_reducers
        self.job_dir = os.path.join(shared_dir,
                                    filenames.job_dir_name(job_id))
        self.stage = None

    def map_tasks(self):
        """Deal the name-sorted input files round-robin into map tasks.

        Only regular files count; groups left empty are not made, so the
        task ids stay contiguous.
        """
        with os.scandir(self.input_directory) as entries:
            names = sorted(entry.name for entry in entries
                           if entry.is_file())
        paths = [os.path.join(self.input_directory, name) for name in names]
        groups = min(self.num_mappers, len(paths))
        return [MapTask(self, task_id, paths[task_id::self.num_mappers])
                for task_id in range(groups)]

    def reduce_tasks(self):
        """Plan one reduce task per partition over the map outputs."""
        names = sorted(os.listdir(self.job_dir))
        return [
            ReduceTask(self, partition, [
                os.path.join(self.job_dir, name)
                for name in filenames.map_outputs_of(names, partition)
            ])
            for partition in range(self.num_reducers)
        ]

    def __repr__(self):
        """Show the job's id, directories and executables."""
        return (f"Job(job_id={self.job_id}, "
                f"input_directory={self.input_directory!r}, "
                f"output_directory={self.output_directory!r}, "
                f"mapper_executable={self.mapper_executable!r}, "
                f"reducer_executable={self.reducer_executable!r}, "
                f"num_mappers={self.num_mappers}, "
                f"num_reducers={self.num_reducers})")
