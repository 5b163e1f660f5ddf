"""What happened: the Manager's one record of events, jobs and progress.

The Manager reports every change of state here, as an event of one of the
`KINDS` below with the objects involved (`job`, `task`, `worker`, a
`reason`). `History.record` turns it into the log line (the texts the logs
have always had), keeps it, and updates the bookkeeping of the job it
concerns: its state, stage, tasks done of total, task attempts and times.
The status answers and the dashboard are views of this record (see
`mapreduce.manager.status`). Nothing here touches a socket or a file.

Memory stays flat: the record keeps the last `HISTORY_JOBS` ended jobs,
the task attempts of only the newest `DETAILED_JOBS` of them, and at most
`EVENTS_PER_JOB` events and `ATTEMPTS_PER_JOB` attempts for any job.
"""

import collections
import dataclasses
import logging
import time
import typing

from mapreduce import defaults, protocol
from mapreduce.progress import counters_inline


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of event: the level and text of its log line.

    `suffix(fields, record)`, if given, returns text to add at the end:
    what only some events of the kind have to say.
    """

    level: int
    text: str  # A str.format template over the event's fields.
    suffix: typing.Optional[typing.Callable] = None


def counters_text(counters):
    """Return counters as `; counters: Group.name=3, ...`, or ''."""
    shown = counters_inline(counters)
    return f"; counters: {shown}" if shown else ""


def _reported_counters(fields, _record):
    """Return the counters a counted task report brought, as text."""
    if not fields.get("counted", True):
        return ""
    return counters_text(fields.get("counters") or {})


def _job_counters(_fields, record):
    """Return a job's counters, summed over its tasks, as text."""
    return "" if record is None else counters_text(record.counters)


KINDS = {
    "manager_started": Kind(logging.INFO, "Listening on {host}:{port}, "
                            "shared directory {shared_dir}"),
    "manager_stopping": Kind(logging.INFO, "Shutting down"),
    "worker_registered": Kind(logging.INFO, "Registered {worker!r}"),
    "worker_back": Kind(logging.INFO,
                        "Registered {worker!r} again (it was {was})"),
    "worker_dead": Kind(logging.WARNING, "Marked {worker!r} dead: {reason}"),
    "worker_rejoin": Kind(logging.INFO,
                          "Told {who} to register again: {reason}"),
    "job_queued": Kind(logging.INFO, "Received {job!r}"),
    "job_rejected": Kind(logging.ERROR, "Rejected {job!r}: {reason}"),
    "job_started": Kind(logging.INFO, "Started {job!r}"),
    "job_stage": Kind(logging.INFO, "Job {job.job_id}: map stage done, "
                      "starting reduce stage"),
    "job_finished": Kind(logging.INFO, "Finished {job!r}", _job_counters),
    "job_failed": Kind(logging.ERROR, "Job {job.job_id} failed: {reason}; "
                       "removed its output directory "
                       "{job.output_directory}"),
    "job_abandoned": Kind(logging.WARNING, "Abandoned job {job.job_id} "
                          "({was}): {reason}"),
    "job_waiting": Kind(logging.WARNING,
                        "Job {job.job_id} is waiting: {reason}"),
    "job_held": Kind(logging.INFO, "Waiting for {count} reduce task(s) of "
                     "job {job.job_id} to end before the next job starts"),
    "task_assigned": Kind(logging.INFO, "Assigned {task!r} to {worker!r}"),
    "task_finished": Kind(logging.INFO, "{worker!r} finished {task!r}",
                          _reported_counters),
    "task_failed": Kind(logging.WARNING, "{worker!r} failed {task!r} "
                        "(attempt {attempt} of {attempts}): {error}"),
    "task_taken_back": Kind(logging.INFO,
                            "Took {task!r} back from {worker!r}"),
}

QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
REJECTED = "rejected"
ABANDONED = "abandoned"
ENDED = (FINISHED, FAILED, REJECTED, ABANDONED)


@dataclasses.dataclass(frozen=True)
class Event:
    """One change of state, at a wall-clock time (epoch seconds)."""

    time: float
    kind: str
    message: str
    job_id: object = None  # The job it concerns, or None.

    def to_json(self):
        """Return the event as the dashboard's JSON shows it."""
        return {"time": self.time, "kind": self.kind,
                "message": self.message}


def worker_name(worker):
    """Return 'host:port' of a Worker, as the status answers show it."""
    return f"{worker.host}:{worker.port}"


class JobRecord:
    """What is known of one job: its summary, attempts and events.

    `summary` holds the JobSummary fields of the status answers (see the
    README) and is kept up to date as events arrive.
    """

    def __init__(self, job, now):
        """Start the record of a job that has just been queued."""
        self.summary = {
            "job_id": job.job_id, "state": QUEUED, "stage": None,
            "input_directory": job.input_directory,
            "output_directory": job.output_directory,
            "mapper_executable": job.mapper_executable,
            "reducer_executable": job.reducer_executable,
            "num_mappers": job.num_mappers,
            "num_reducers": job.num_reducers,
            "map": {"done": 0, "total": None},
            "reduce": {"done": 0, "total": None},
            "submitted_at": now, "started_at": None, "ended_at": None,
            "elapsed": None, "reason": None, "stderr_tail": None,
            "part_files": [],
            "counters": {},
            "streaming": _streaming_view(job),
        }
        self.events = collections.deque(maxlen=defaults.EVENTS_PER_JOB)
        self.attempts = collections.deque(maxlen=defaults.ATTEMPTS_PER_JOB)
        # (worker name, task kind, task id) -> the attempt still running.
        self.running = {}
        self.version = 0
        self.waiting_told = False

    @property
    def job_id(self):
        """Return the job's id."""
        return self.summary["job_id"]

    @property
    def counters(self):
        """Return the job's counters: group -> name -> sum (kept live)."""
        return self.summary["counters"]

    def add_counters(self, counters):
        """Add one accepted task report's counters to the job's sums.

        A counter the job does not have yet is dropped once the job has
        `defaults.COUNTERS_PER_JOB` of them; returns how many were.
        """
        known = sum(len(names) for names in self.counters.values())
        dropped = 0
        for group, names in counters.items():
            for name, amount in names.items():
                sums = self.counters.get(group, {})
                if name not in sums and known >= defaults.COUNTERS_PER_JOB:
                    dropped += 1
                    continue
                known += name not in sums
                sums[name] = sums.get(name, 0) + amount
                self.counters[group] = sums
        return dropped

    @property
    def state(self):
        """Return the job's state: queued, running or how it ended."""
        return self.summary["state"]

    @property
    def ended(self):
        """Tell whether the job has ended, one way or another."""
        return self.summary["state"] in ENDED

    def end(self, state, now, reason=None):
        """Record how and when the job ended."""
        self.summary.update(state=state, ended_at=now, reason=reason)
        for attempt in self.running.values():
            attempt["ended_at"] = now
            attempt["outcome"] = "taken_back"
        self.running.clear()

    def forget_details(self):
        """Drop the attempts and all but the last events, to save memory."""
        self.attempts = collections.deque(maxlen=0)
        self.events = collections.deque(list(self.events)[-10:], maxlen=10)

    def attempt_started(self, task, worker, now):
        """Record that `worker` has been given `task`."""
        attempt = {"worker": worker_name(worker), "kind": task.kind,
                   "task_id": task.task_id, "started_at": now,
                   "ended_at": None, "outcome": "running"}
        self.attempts.append(attempt)
        self.waiting_told = False
        self.running[(attempt["worker"], task.kind, task.task_id)] = attempt

    def attempt_ended(self, task, worker, outcome, now):
        """Record the end of `worker`'s attempt at `task`."""
        attempt = self.running.pop(
            (worker_name(worker), task.kind, task.task_id), None)
        if attempt is not None:
            attempt["ended_at"] = now
            attempt["outcome"] = outcome

    def view(self, now):
        """Return a copy of the summary, with `elapsed` worked out."""
        summary = dict(self.summary)
        summary["map"] = dict(summary["map"])
        summary["reduce"] = dict(summary["reduce"])
        summary["part_files"] = list(summary["part_files"])
        summary["counters"] = {group: dict(names) for group, names
                               in summary["counters"].items()}
        if summary["streaming"] is not None:
            summary["streaming"] = dict(
                summary["streaming"],
                input_paths=list(summary["streaming"]["input_paths"]))
        started = summary["started_at"]
        if started is not None:
            summary["elapsed"] = (summary["ended_at"] or now) - started
        return summary

    def detail(self, now):
        """Return the summary with the job's attempts and events."""
        detail = self.view(now)
        detail["attempts"] = [dict(attempt) for attempt in self.attempts]
        detail["events"] = [event.to_json() for event in self.events]
        return detail


class JobBook:
    """The records of live jobs and of the last `HISTORY_JOBS` ended ones."""

    def __init__(self):
        """Hold no jobs."""
        self.jobs = {}  # job_id -> JobRecord, in job id order.
        self.ended = collections.deque()  # Ended job ids, oldest first.

    def add(self, job, now):
        """Open the record of a job that has just been queued."""
        record = self.jobs[job.job_id] = JobRecord(job, now)
        return record

    def remember_ended(self, record):
        """Add an ended job to the history and forget the oldest ones.

        Only the newest `DETAILED_JOBS` ended jobs keep their attempts.
        """
        if record.job_id in self.ended:
            return
        self.ended.append(record.job_id)
        if len(self.ended) > defaults.DETAILED_JOBS:
            older = self.jobs.get(self.ended[-defaults.DETAILED_JOBS - 1])
            if older is not None:
                older.forget_details()
        while len(self.ended) > defaults.HISTORY_JOBS:
            self.jobs.pop(self.ended.popleft(), None)

    def by_state(self, *states):
        """Return the records in one of `states`, in job id order."""
        return [record for record in self.jobs.values()
                if record.state in states]

    def recent(self):
        """Return the records of ended jobs, newest first."""
        return [self.jobs[job_id] for job_id in reversed(self.ended)
                if job_id in self.jobs]


def _started(record, fields, now):
    """Start a job's map stage."""
    record.summary.update(state=RUNNING, stage="map", started_at=now)
    record.summary["map"]["total"] = fields["total"]


def _stage(record, fields, _now):
    """Start a job's reduce stage."""
    record.summary["stage"] = "reduce"
    record.summary["reduce"]["total"] = fields["total"]


def _finished(record, fields, now):
    """End a job that has all its part files."""
    record.summary["part_files"] = list(fields["part_files"])
    record.end(FINISHED, now)


def _failed(record, fields, now):
    """End a job that failed."""
    record.summary["stderr_tail"] = fields.get("stderr_tail")
    record.end(FAILED, now, fields["reason"])


def _streaming_view(job):
    """Return what a streaming job adds to its summary, or None.

    Not its environment, which may hold secrets.
    """
    if not job.is_streaming:
        return None
    streaming = job.streaming
    return {"input_paths": list(streaming.input_paths),
            "combiner": streaming.combiner,
            "partitioner": streaming.partitioner}


def _task_finished(record, fields, now):
    """Count a finished task, and its counters, if it was the job's.

    Returns a warning when counters had to be dropped.
    """
    task = fields["task"]
    record.attempt_ended(task, fields["worker"], FINISHED, now)
    if not fields.get("counted", True):
        return None
    record.summary[task.kind]["done"] += 1
    dropped = record.add_counters(fields.get("counters") or {})
    if dropped:
        return (f"dropped {dropped} counter(s) reported by {task!r}: a job "
                f"keeps at most {defaults.COUNTERS_PER_JOB}")
    return None


def _waiting(record, _fields, _now):
    """Note that the job's wait for Workers has been told."""
    record.waiting_told = True


# Event kind -> how it changes the record of the job it concerns.
_UPDATES = {
    "job_rejected": lambda record, f, now: record.end(REJECTED, now,
                                                      f["reason"]),
    "job_started": _started,
    "job_stage": _stage,
    "job_finished": _finished,
    "job_failed": _failed,
    "job_abandoned": lambda record, f, now: record.end(ABANDONED, now,
                                                       f["reason"]),
    "job_waiting": _waiting,
    "task_assigned": lambda record, f, now: record.attempt_started(
        f["task"], f["worker"], now),
    "task_finished": _task_finished,
    "task_failed": lambda record, f, now: record.attempt_ended(
        f["task"], f["worker"], FAILED, now),
    "task_taken_back": lambda record, f, now: record.attempt_ended(
        f["task"], f["worker"], "taken_back", now),
}


class History:
    """The record of everything that happened, bounded in size.

    `on_change(record)` (if set) runs after every event that changed a
    job, e.g. to answer clients that follow the job.
    """

    def __init__(self, log, clock=time.time):
        """Start empty; `clock` gives wall-clock time in epoch seconds."""
        self.log = log
        self.clock = clock
        self.book = JobBook()
        self.events = collections.deque(maxlen=defaults.EVENTS_PER_JOB)
        self.workers = {}  # 'host:port' -> {registered_at, tasks_done}.
        self.version = 0
        self.on_change = None

    def record(self, kind, **fields):
        """Record one event of `kind` with its `fields`; return it.

        Logs the event's line, keeps the event, and updates the job it
        concerns (`job`, or the job of `task`).
        """
        spec = KINDS[kind]
        now = self.clock()
        job = fields.get("job")
        if job is None and "task" in fields:
            job = fields["task"].job
        record = self._record_of(kind, job, now)
        message = spec.text.format(**fields)
        if spec.suffix is not None:
            message += spec.suffix(fields, record)
        self.log.log(spec.level, "%s", message)
        event = Event(now, kind, message, job and job.job_id)
        self.events.append(event)
        self._count_worker(kind, fields, now)
        if record is None:
            return event  # No job, or one forgotten long ago.
        record.events.append(event)
        update = _UPDATES.get(kind)
        if update is not None:
            warning = update(record, fields, now)
            if warning:
                self.log.warning("Job %d: %s", record.job_id, warning)
        self.version += 1
        record.version = self.version
        if record.state in ENDED and kind.startswith("job_"):
            self.book.remember_ended(record)
        if self.on_change is not None:
            self.on_change(record)
        return event

    def _record_of(self, kind, job, now):
        """Return the record of `job` (opened for `job_queued`), or None."""
        if job is None:
            return None
        if kind == "job_queued":
            return self.book.add(job, now)
        return self.book.jobs.get(job.job_id)

    def _count_worker(self, kind, fields, now):
        """Keep each Worker's registration time and tasks done."""
        worker = fields.get("worker")
        if worker is None:
            return
        name = worker_name(worker)
        if kind == "worker_registered" or name not in self.workers:
            self.workers[name] = {"registered_at": now, "tasks_done": 0}
        if kind == "task_finished":
            self.workers[name]["tasks_done"] += 1

    def job(self, job_id):
        """Return the record of job `job_id`, or None if not known."""
        return self.book.jobs.get(job_id)


def failure_fields(error):
    """Return the `stderr_tail` of a task's error, for a failed job."""
    return {"stderr_tail": protocol.stderr_tail(error)}
