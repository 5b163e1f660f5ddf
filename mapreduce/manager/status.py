"""The Manager's status answers: JSON views of its History and Workers.

`status_snapshot` builds the object of `GET /api/status` and of the
`status_reply` message; `job_detail` the object of `GET /api/jobs/<id>`.
Both are plain dicts of JSON values; the README shows their shape.
"""

import dataclasses

from mapreduce.manager.events import QUEUED, RUNNING, worker_name


@dataclasses.dataclass
class ManagerInfo:
    """Who the Manager is, as its status shows it."""

    host: str
    port: int
    shared_dir: str
    started_at: float
    web_port: object = None  # int, or None when no dashboard is served.


def _worker_view(worker, history, loop_now):
    """Return one Worker as the status answer shows it."""
    counts = history.workers.get(worker_name(worker), {})
    task = worker.task
    return {
        "host": worker.host, "port": worker.port, "state": worker.state,
        "task": None if task is None else {
            "job_id": task.job.job_id, "kind": task.kind,
            "task_id": task.task_id},
        "last_heartbeat_age": max(0.0, loop_now - worker.last_seen),
        "tasks_done": counts.get("tasks_done", 0),
        "registered_at": counts.get("registered_at"),
    }


def status_snapshot(info, history, workers, loop_now):
    """Return the status object: the Manager, Workers, running, queue, recent.

    `workers` are the registry's Workers in registration order; `loop_now`
    is the loop's clock, which their `last_seen` times are on.
    """
    now = history.clock()
    book = history.book
    running = book.by_state(RUNNING)
    return {
        "manager": {"host": info.host, "port": info.port,
                    "shared_dir": info.shared_dir, "web_port": info.web_port,
                    "started_at": info.started_at, "now": now},
        "workers": [_worker_view(worker, history, loop_now)
                    for worker in workers],
        "running": running[0].view(now) if running else None,
        "queue": [record.view(now) for record in book.by_state(QUEUED)],
        "recent": [record.view(now) for record in book.recent()],
    }


def job_detail(history, job_id):
    """Return one job with its attempts and events, or None if unknown."""
    record = history.job(job_id)
    if record is None:
        return None
    return record.detail(history.clock())
