"""The Manager's event model: events, job bookkeeping and the snapshot.

No sockets here: a History is fed events as the Scheduler reports them,
with real Job, Task and RemoteWorker objects and a clock the test moves.
"""

import json
import logging

import pytest

from mapreduce import defaults, protocol
from mapreduce.manager import events
from mapreduce.manager.events import History
from mapreduce.manager.job import MapTask, ReduceTask
from mapreduce.manager.registry import BUSY, WorkerRegistry
from mapreduce.manager.scheduler import JobQueue
from mapreduce.manager.status import ManagerInfo, job_detail, status_snapshot

SUMMARY_KEYS = [
    "job_id", "state", "stage", "input_directory", "output_directory",
    "mapper_executable", "reducer_executable", "num_mappers", "num_reducers",
    "map", "reduce", "submitted_at", "started_at", "ended_at", "elapsed",
    "reason", "stderr_tail", "part_files", "counters", "streaming"]


class Clock:
    """A wall clock that moves only when the test says so."""

    def __init__(self):
        """Start at a fixed time."""
        self.now = 1000.0

    def __call__(self):
        """Return the time."""
        return self.now


@pytest.fixture(name="clock")
def fixture_clock():
    """Give a clock the test moves."""
    return Clock()


@pytest.fixture(name="history")
def fixture_history(clock):
    """Give an empty History on the test's clock."""
    return History(logging.getLogger("Manager:6000"), clock)


def new_job(queue, number=0):
    """Return a queued Job with made-up paths."""
    return queue.add(protocol.NewManagerJob(
        input_directory=f"/in{number}", output_directory=f"/out{number}",
        mapper_executable="/bin/map", reducer_executable="/bin/reduce",
        num_mappers=2, num_reducers=1), "/shared")


def test_log_lines_keep_their_texts(history, caplog):
    """Each event logs the line the Manager has always logged."""
    caplog.set_level(logging.INFO)
    registry = WorkerRegistry()
    worker = registry.add("localhost", 6001, 0.0)
    job = new_job(JobQueue())
    task = MapTask(job, 0, ["/in0/a"])
    history.record("worker_registered", worker=worker)
    history.record("job_queued", job=job)
    history.record("job_started", job=job, total=1)
    history.record("task_assigned", task=task, worker=worker)
    history.record("task_finished", task=task, worker=worker)
    history.record("job_stage", job=job, total=1)
    history.record("job_finished", job=job, part_files=["part-00000"])
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "Registered RemoteWorker(host='localhost', port=6001)",
        f"Received {job!r}",
        f"Started {job!r}",
        "Assigned MapTask(job_id=0, task_id=0, inputs=1) to "
        "RemoteWorker(host='localhost', port=6001)",
        "RemoteWorker(host='localhost', port=6001) finished "
        "MapTask(job_id=0, task_id=0, inputs=1)",
        "Job 0: map stage done, starting reduce stage",
        f"Finished {job!r}",
    ]
    assert [event.kind for event in history.events] == [
        "worker_registered", "job_queued", "job_started", "task_assigned",
        "task_finished", "job_stage", "job_finished"]


def test_job_progress_attempts_and_times(history, clock):
    """A job's record follows it: state, stage, counts, attempts, times."""
    registry = WorkerRegistry()
    one = registry.add("localhost", 6001, 0.0)
    two = registry.add("localhost", 6002, 0.0)
    job = new_job(JobQueue())
    maps = [MapTask(job, 0, ["/a"]), MapTask(job, 1, ["/b"])]
    history.record("job_queued", job=job)
    summary = history.job(0).view(clock())
    assert list(summary) == SUMMARY_KEYS
    assert summary["state"] == "queued"
    assert summary["map"] == {"done": 0, "total": None}
    clock.now += 1
    history.record("job_started", job=job, total=2)
    history.record("task_assigned", task=maps[0], worker=one)
    history.record("task_assigned", task=maps[1], worker=two)
    clock.now += 1
    history.record("task_failed", task=maps[1], worker=two, attempt=1,
                   attempts=3, error="exit 1; stderr: boom")
    history.record("task_finished", task=maps[0], worker=one)
    history.record("task_assigned", task=maps[1], worker=one)
    history.record("task_taken_back", task=maps[1], worker=one)
    history.record("task_assigned", task=maps[1], worker=two)
    history.record("task_finished", task=maps[1], worker=two)
    reduce_task = ReduceTask(job, 0, [])
    history.record("job_stage", job=job, total=1)
    history.record("task_assigned", task=reduce_task, worker=one)
    clock.now += 2
    summary = history.job(0).view(clock())
    assert summary["state"] == "running"
    assert summary["stage"] == "reduce"
    assert summary["map"] == {"done": 2, "total": 2}
    assert summary["reduce"] == {"done": 0, "total": 1}
    assert summary["elapsed"] == 3.0
    history.record("task_finished", task=reduce_task, worker=one)
    history.record("job_finished", job=job, part_files=["part-00000"])
    clock.now += 5
    detail = job_detail(history, 0)
    assert detail["state"] == "finished"
    assert detail["elapsed"] == 3.0
    assert detail["part_files"] == ["part-00000"]
    assert [(a["worker"], a["kind"], a["task_id"], a["outcome"])
            for a in detail["attempts"]] == [
        ("localhost:6001", "map", 0, "finished"),
        ("localhost:6002", "map", 1, "failed"),
        ("localhost:6001", "map", 1, "taken_back"),
        ("localhost:6002", "map", 1, "finished"),
        ("localhost:6001", "reduce", 0, "finished")]
    assert detail["events"][-1]["kind"] == "job_finished"
    assert history.workers["localhost:6001"]["tasks_done"] == 2
    assert history.workers["localhost:6002"]["tasks_done"] == 1


def test_failed_job_keeps_reason_and_stderr(history, clock):
    """A failed job's record says why, with the executable's stderr."""
    job = new_job(JobQueue())
    history.record("job_queued", job=job)
    history.record("job_started", job=job, total=1)
    clock.now += 3
    history.record("job_failed", job=job, reason="it broke",
                   **events.failure_fields("status 1; stderr: Trace\nboom"))
    summary = history.job(0).view(clock())
    assert summary["state"] == "failed"
    assert summary["reason"] == "it broke"
    assert summary["stderr_tail"] == "Trace\nboom"
    assert summary["elapsed"] == 3.0


def test_version_and_on_change(history):
    """Every change of a job bumps its version and calls on_change."""
    changed = []
    history.on_change = lambda record: changed.append(
        (record.job_id, record.version))
    queue = JobQueue()
    first, second = new_job(queue), new_job(queue, 1)
    history.record("job_queued", job=first)
    history.record("job_queued", job=second)
    history.record("job_rejected", job=first, reason="bad")
    assert changed == [(0, 1), (1, 2), (0, 3)]
    history.record("manager_stopping")
    assert len(changed) == 3


def test_history_is_bounded(history):
    """Only the last HISTORY_JOBS ended jobs are kept, with few details."""
    queue = JobQueue()
    worker = WorkerRegistry().add("localhost", 6001, 0.0)
    total = defaults.HISTORY_JOBS + 5
    for number in range(total):
        job = new_job(queue, number)
        history.record("job_queued", job=job)
        history.record("job_started", job=job, total=1)
        for _ in range(defaults.EVENTS_PER_JOB):
            task = MapTask(job, 0, ["/a"])
            history.record("task_assigned", task=task, worker=worker)
            history.record("task_taken_back", task=task, worker=worker)
        history.record("job_abandoned", job=job, was="running",
                       reason="gone")
    assert len(history.book.jobs) == defaults.HISTORY_JOBS
    assert history.job(4) is None
    assert history.job(5) is not None
    recent = history.book.recent()
    assert [r.job_id for r in recent] == list(range(total - 1, 4, -1))
    newest, oldest = recent[0], recent[-1]
    assert len(newest.events) == defaults.EVENTS_PER_JOB
    assert len(newest.attempts) == defaults.EVENTS_PER_JOB
    assert not oldest.attempts
    assert len(oldest.events) <= 10
    assert len(history.events) <= defaults.EVENTS_PER_JOB


def test_snapshot_shape(history, clock):
    """The snapshot has the documented keys and is plain JSON."""
    registry = WorkerRegistry()
    busy = registry.add("localhost", 6001, 50.0)
    registry.add("localhost", 6002, 50.0)
    history.record("worker_registered", worker=busy)
    queue = JobQueue()
    running, waiting, ended = (new_job(queue, n) for n in range(3))
    for job in (running, waiting, ended):
        history.record("job_queued", job=job)
    history.record("job_rejected", job=ended, reason="no input")
    history.record("job_started", job=running, total=2)
    task = MapTask(running, 1, ["/a"])
    busy.state, busy.task = BUSY, task
    history.record("task_assigned", task=task, worker=busy)
    info = ManagerInfo("localhost", 6000, "/shared", 900.0)
    clock.now += 2
    snapshot = status_snapshot(info, history, registry.workers(), 52.5)
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert list(snapshot) == ["manager", "workers", "running", "queue",
                              "recent"]
    assert snapshot["manager"] == {
        "host": "localhost", "port": 6000, "shared_dir": "/shared",
        "web_port": None, "started_at": 900.0, "now": clock.now}
    first = snapshot["workers"][0]
    assert first == {"host": "localhost", "port": 6001, "state": "busy",
                     "task": {"job_id": 0, "kind": "map", "task_id": 1},
                     "last_heartbeat_age": 2.5, "tasks_done": 0,
                     "registered_at": 1000.0}
    assert snapshot["workers"][1]["state"] == "joining"
    assert snapshot["running"]["job_id"] == 0
    assert snapshot["running"]["elapsed"] == 2.0
    assert [job["job_id"] for job in snapshot["queue"]] == [1]
    assert [job["job_id"] for job in snapshot["recent"]] == [2]
    assert snapshot["recent"][0]["reason"] == "no input"
    assert all(list(job) == SUMMARY_KEYS for job in
               [snapshot["running"], *snapshot["queue"],
                *snapshot["recent"]])
    detail = job_detail(history, 0)
    assert list(detail) == SUMMARY_KEYS + ["attempts", "events"]
    assert list(detail["attempts"][0]) == [
        "worker", "kind", "task_id", "started_at", "ended_at", "outcome"]
    assert list(detail["events"][0]) == ["time", "kind", "message"]
    assert job_detail(history, 99) is None


def test_counters_add_up_over_counted_reports_only(history, caplog,
                                                   monkeypatch):
    """Counted reports add their counters; others, and extras, do not.

    A report the job did not count (a task of an ended job) adds nothing;
    past `COUNTERS_PER_JOB` distinct counters, new ones are dropped with a
    warning while known ones still add up.
    """
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(defaults, "COUNTERS_PER_JOB", 3)
    worker = WorkerRegistry().add("localhost", 6001, 0.0)
    job = new_job(JobQueue())
    task = MapTask(job, 0, ["/in0/a"])
    history.record("job_queued", job=job)
    history.record("task_finished", task=task, worker=worker,
                   counters={"g": {"a": 1, "b": 2}})
    history.record("task_finished", task=task, worker=worker,
                   counted=False, counters={"g": {"a": 100}})
    history.record("task_finished", task=task, worker=worker,
                   counters={"g": {"a": 1}, "h": {"c": -1, "d": 5}})
    assert history.job(0).view(0.0)["counters"] == {
        "g": {"a": 2, "b": 2}, "h": {"c": -1}}
    lines = [record.getMessage() for record in caplog.records]
    assert lines[1].endswith(" finished MapTask(job_id=0, task_id=0, "
                             "inputs=1); counters: g.a=1, g.b=2")
    assert lines[2].endswith(" finished MapTask(job_id=0, task_id=0, "
                             "inputs=1)")
    assert lines[-1] == ("Job 0: dropped 1 counter(s) reported by "
                         "MapTask(job_id=0, task_id=0, inputs=1): a job "
                         "keeps at most 3")
    view = history.job(0).view(0.0)
    view["counters"]["g"]["a"] = 99
    assert history.job(0).view(0.0)["counters"]["g"]["a"] == 2
