"""Jobs and their tasks, as the Manager plans and tracks them."""

import collections
import os

from mapreduce import filenames, protocol
from mapreduce.manager import hadoopenv


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
        self.assigned = 0  # How often the task was given to a Worker.

    def message(self):
        """Return the message that hands this task to a Worker."""
        raise NotImplementedError

    def streaming_record(self):
        """Return the `streaming` record of the task's latest attempt.

        The record's default (absent from the message) for a job of the
        specification. For a streaming job: the job's environment with
        Hadoop's job-level variables of this attempt on top.
        """
        job = self.job
        if not job.is_streaming:
            return protocol.Streaming()
        attempt = hadoopenv.Attempt(
            stamp=job.stamp, job_id=job.job_id, is_map=self.kind == "map",
            task_id=self.task_id, attempt=max(0, self.assigned - 1))
        environment = dict(job.streaming.environment)
        environment.update(hadoopenv.variables(attempt, job.facts()))
        if self.kind != "map":
            return protocol.Streaming(environment=environment)
        return protocol.Streaming(combiner=job.streaming.combiner,
                                  partitioner=job.streaming.partitioner,
                                  environment=environment)

    def __repr__(self):
        """Show the task, e.g. `MapTask(job_id=0, task_id=1, inputs=2)`."""
        return (f"{type(self).__name__}(job_id={self.job.job_id}, "
                f"task_id={self.task_id}, inputs={len(self.input_paths)})")


class MapTask(Task):
    """Run the mapper over a group of input files."""

    kind = "map"

    def message(self):
        """Return the `new_map_task` message for this task.

        A map-only job's map tasks write their part files straight into
        the job's output directory.
        """
        job = self.job
        return protocol.NewMapTask(
            task_id=self.task_id,
            input_paths=self.input_paths,
            executable=job.mapper_executable,
            output_directory=(job.output_directory if job.map_only
                              else job.job_dir),
            num_partitions=job.num_reducers,
            streaming=self.streaming_record(),
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
            streaming=self.streaming_record(),
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

    def __init__(self, job_id, request, shared_dir, stamp=None):
        """Record job `job_id` from a `new_manager_job` request.

        The request (a protocol.NewManagerJob) is kept whole; the
        properties below read its fields. `stamp` is the Manager's
        identifier in Hadoop's job ids (hadoopenv.cluster_stamp; now by
        default).
        """
        self.job_id = job_id
        self.request = request
        self.job_dir = os.path.join(shared_dir,
                                    filenames.job_dir_name(job_id))
        self.stamp = stamp or hadoopenv.cluster_stamp()
        self.stage = None
        self.num_map_tasks = None  # Known once the map stage is planned.

    @property
    def input_directory(self):
        """Return the directory of the job's input files."""
        return self.request.input_directory

    @property
    def output_directory(self):
        """Return the directory where the job's part files go."""
        return self.request.output_directory

    @property
    def mapper_executable(self):
        """Return the mapper's path (or name on PATH)."""
        return self.request.mapper_executable

    @property
    def reducer_executable(self):
        """Return the reducer's path (or name on PATH)."""
        return self.request.reducer_executable

    @property
    def num_mappers(self):
        """Return how many map tasks were asked for (at most)."""
        return self.request.num_mappers

    @property
    def num_reducers(self):
        """Return how many reduce tasks (partitions) the job has."""
        return self.request.num_reducers

    @property
    def streaming(self):
        """Return the job's `streaming` record (protocol.Streaming)."""
        return self.request.streaming

    @property
    def is_streaming(self):
        """Tell whether the job carries the streaming extension."""
        return self.request.streaming != protocol.Streaming()

    @property
    def map_only(self):
        """Tell whether the job is map-only: streaming, no reducers."""
        return self.is_streaming and self.num_reducers == 0

    @property
    def input_paths(self):
        """Return what the job reads: its input paths, or its directory."""
        return list(self.streaming.input_paths) or [self.input_directory]

    def input_files(self):
        """Return the job's input files, in the order they are dealt.

        A directory gives its regular files sorted by name; a streaming
        job's input paths give, in their order, each file itself and each
        directory's files.
        """
        if not self.streaming.input_paths:
            return regular_files(self.input_directory)
        files = []
        for path in self.streaming.input_paths:
            if os.path.isdir(path):
                files.extend(regular_files(path))
            else:
                files.append(path)
        return files

    def map_tasks(self):
        """Deal the input files round-robin into map tasks.

        Groups left empty are not made, so the task ids stay contiguous.
        """
        paths = self.input_files()
        groups = min(self.num_mappers, len(paths))
        self.num_map_tasks = groups
        return [MapTask(self, task_id, paths[task_id::self.num_mappers])
                for task_id in range(groups)]

    def reduce_tasks(self):
        """Plan the reduce tasks over the map outputs.

        One per partition; a streaming job skips the partitions that got
        no lines and numbers the others from 0 (madoop's meaning of the
        number of reducers: at most that many part files).
        """
        names = sorted(os.listdir(self.job_dir))
        inputs = [[os.path.join(self.job_dir, name)
                   for name in filenames.map_outputs_of(names, partition)]
                  for partition in range(self.num_reducers)]
        if self.is_streaming:
            inputs = [paths for paths in inputs
                      if any(os.path.getsize(path) for path in paths)]
        return [ReduceTask(self, task_id, paths)
                for task_id, paths in enumerate(inputs)]

    def facts(self):
        """Return what every task of the job is told about the job."""
        return hadoopenv.JobFacts(
            num_maps=self.num_map_tasks or 0,
            num_reduces=self.num_reducers,
            input_paths=tuple(self.input_paths),
            output_directory=self.output_directory)

    def __repr__(self):
        """Show the job's id, directories and executables.

        A streaming job also shows its input paths, combiner and
        partitioner (not its environment, which may hold secrets).
        """
        streaming = self.streaming
        extra = "".join(
            f", {name}={value!r}" for name, value in (
                ("input_paths", streaming.input_paths),
                ("combiner", streaming.combiner),
                ("partitioner", streaming.partitioner)) if value)
        return (f"Job(job_id={self.job_id}, "
                f"input_directory={self.input_directory!r}, "
                f"output_directory={self.output_directory!r}, "
                f"mapper_executable={self.mapper_executable!r}, "
                f"reducer_executable={self.reducer_executable!r}, "
                f"num_mappers={self.num_mappers}, "
                f"num_reducers={self.num_reducers}{extra})")


def regular_files(directory):
    """Return the paths of the regular files in `directory`, by name."""
    with os.scandir(directory) as entries:
        names = sorted(entry.name for entry in entries if entry.is_file())
    return [os.path.join(directory, name) for name in names]
