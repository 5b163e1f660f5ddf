"""The Manager's record of Workers: who they are, their state, their task.

A Worker holds at most one `Assignment`: a task given to it under a serial
number that is unique in the Manager's life. A report (`finished` or
`task_failed`) counts only if it answers the assignment its Worker holds.
"""

import dataclasses
import itertools

from mapreduce.manager.job import Task

READY = "ready"
BUSY = "busy"
DEAD = "dead"
JOINING = "joining"  # Registered; the register_ack is still on its way.


@dataclasses.dataclass(frozen=True)
class Assignment:
    """One task given to one Worker: what a report must answer.

    `task` is the Manager's Task (of a job, in a stage); `worker` the
    Worker's (host, port); `serial` numbers the assignment, uniquely in
    the Manager's life.
    """

    task: Task
    worker: tuple
    serial: int

    @property
    def job_id(self):
        """Return the id of the job the task belongs to."""
        return self.task.job.job_id

    @property
    def stage(self):
        """Return the stage of the task: "map" or "reduce"."""
        return self.task.kind

    @property
    def task_id(self):
        """Return the task's id in its stage."""
        return self.task.task_id

    def answers(self, report):
        """Tell whether a `finished` or `task_failed` answers this one.

        The report must name the task; its `assignment` field, when it
        has one (not 0), must be this serial.
        """
        return (report.task_id == self.task_id
                and report.assignment in (0, self.serial))

    def __repr__(self):
        """Show e.g. `Assignment(7, job_id=0, stage='map', task_id=3)`."""
        return (f"Assignment({self.serial}, job_id={self.job_id}, "
                f"stage={self.stage!r}, task_id={self.task_id})")


class RemoteWorker:
    """What the Manager knows of one Worker process."""

    def __init__(self, host, port, now):
        """Record a Worker that has just registered."""
        self.host = host
        self.port = port
        self.state = JOINING
        self.assignment = None
        self.last_seen = now
        self.liveness_timer = None
        # Whether its messages come signed (set by the authentication
        # layer): only then do its tasks carry their `assignment` serial.
        self.signs = False

    @property
    def task(self):
        """Return the task the Worker holds, or None."""
        return None if self.assignment is None else self.assignment.task

    @property
    def key(self):
        """Return the (host, port) pair that identifies this Worker."""
        return (self.host, self.port)

    @property
    def alive(self):
        """Tell whether the Worker is not marked dead."""
        return self.state != DEAD

    def __repr__(self):
        """Show the Worker's address, as in `RemoteWorker(host=..., ...)`."""
        return f"RemoteWorker(host={self.host!r}, port={self.port})"


class WorkerRegistry:
    """Every Worker that ever registered, in registration order.

    `rejoins` (a mapreduce.manager.rejoin.RejoinWatch, or None) follows
    the beating Workers the Manager does not count: dead or unknown ones.
    """

    def __init__(self, rejoins=None):
        """Start with no Workers."""
        self._workers = {}
        self.rejoins = rejoins
        self._serials = itertools.count(1)  # Of assignments; 0 is none.

    def assign(self, worker, task):
        """Give `task` to `worker` under a new serial; return the record."""
        worker.assignment = Assignment(task, worker.key, next(self._serials))
        return worker.assignment

    def get(self, host, port):
        """Return the Worker at host:port, or None if it never registered."""
        return self._workers.get((host, port))

    def add(self, host, port, now):
        """Record a new Worker, last in registration order, and return it."""
        worker = RemoteWorker(host, port, now)
        self._workers[worker.key] = worker
        return worker

    def workers(self):
        """Return every Worker, dead ones too, in registration order."""
        return list(self._workers.values())

    def ready(self):
        """Return the Workers that can take a task, in registration order."""
        return [w for w in self._workers.values() if w.state == READY]

    def alive(self):
        """Return the Workers not marked dead, in registration order."""
        return [w for w in self._workers.values() if w.alive]

    def __len__(self):
        """Return how many Workers ever registered."""
        return len(self._workers)
