"""Sample dashboard data shaped like the Manager's status answers.

`SampleSource` stands in for the Manager behind the dashboard's routes: its
`status()` and `job(job_id)` return what `/api/status` and `/api/jobs/<id>`
answer (the shape agreed for issue 9), with Workers in every state, a
running job, queued, failed, finished and rejected jobs, task attempts of
every outcome, and hostile strings in every user-supplied field.
"""

import copy
import time

# Markup that would run script if it ever reached the page as HTML.
HOSTILE_PATH = '/data/<img src=x onerror="document.body.dataset.pwned=1">'
HOSTILE_EXECUTABLE = '/bin/<script>document.body.dataset.pwned=2</script>'
HOSTILE_STDERR = ('Traceback (most recent call last):\n'
                  '  File "map.py", line 3\n'
                  'ValueError: <img src=x onerror="document.body.dataset.'
                  'pwned=3"> & <b>bold</b>\n')
HOSTILE_REASON = ('mapper failed 3 times: <iframe src="javascript:'
                  'document.body.dataset.pwned=4"></iframe>')
HOSTILE_HOST = 'evil"><img src=x onerror="document.body.dataset.pwned=5">'
HOSTILE_STRINGS = (HOSTILE_PATH, HOSTILE_EXECUTABLE, HOSTILE_STDERR.strip(),
                   HOSTILE_REASON, HOSTILE_HOST)
# A counter group a streaming program named (reporter:counter:...).
HOSTILE_GROUP = '<img src=x onerror="document.body.dataset.pwned=6">'
# The finished job is a streaming job with these counters.
STREAMING_COUNTERS = {"wc": {"words": 1234, "lines": 56},
                      HOSTILE_GROUP: {"<b>n</b>": -1}}

RUNNING_JOB = 7
FAILED_JOB = 6
FINISHED_JOB = 5
UNKNOWN_JOB = 99


def worker(port, state, **fields):
    """Return one Worker entry of the status snapshot."""
    entry = {"host": "localhost", "port": port, "state": state,
             "task": None, "last_heartbeat_age": 0.5, "tasks_done": 0,
             "registered_at": 0.0}
    entry.update(fields)
    return entry


def job_summary(job_id, state, **fields):
    """Return one JobSummary with plausible defaults for `state`."""
    summary = {
        "job_id": job_id, "state": state, "stage": None,
        "input_directory": f"/home/student/input{job_id}",
        "output_directory": f"/home/student/output{job_id}",
        "mapper_executable": "/home/student/wc_map.py",
        "reducer_executable": "/home/student/wc_reduce.py",
        "num_mappers": 4, "num_reducers": 3,
        "map": {"done": 0, "total": None},
        "reduce": {"done": 0, "total": None},
        "submitted_at": 0.0, "started_at": None, "ended_at": None,
        "elapsed": None, "reason": None, "stderr_tail": None,
        "part_files": [],
        "counters": {}, "streaming": None,
    }
    summary.update(fields)
    return summary


def attempt(worker_port, kind, task_id, span, outcome):
    """Return one task attempt; `span` is (start, end or None) in s."""
    return {"worker": f"localhost:{worker_port}", "kind": kind,
            "task_id": task_id, "started_at": span[0], "ended_at": span[1],
            "outcome": outcome}


# The running job's attempts, in start order: (Worker port, kind, task,
# (start, end) in seconds after the job started, outcome).
RUNNING_ATTEMPTS = (
    (6001, "map", 0, (0.0, 8.0), "finished"),
    (6002, "map", 1, (0.1, 9.0), "finished"),
    (6003, "map", 2, (0.2, 12.0), "taken_back"),
    (6001, "map", 3, (8.1, 11.0), "failed"),
    (6001, "map", 3, (11.2, 19.0), "finished"),
    (6002, "map", 2, (12.1, 20.0), "finished"),
    (6002, "reduce", 0, (20.2, 29.0), "finished"),
    (6001, "reduce", 1, (20.3, None), "running"),
    (6002, "reduce", 2, (29.2, None), "running"),
)
FAILED_ATTEMPTS = (
    (6001, "map", 0, (0.0, 1.5), "failed"),
    (6002, "map", 1, (0.1, 3.0), "finished"),
    (6002, "map", 0, (3.1, 4.2), "failed"),
    (6001, "map", 0, (4.3, 5.0), "failed"),
)

FINISHED_ATTEMPTS = (
    (6001, "map", 0, (0.0, 20.0), "finished"),
    (6002, "map", 1, (0.1, 21.0), "finished"),
    (6001, "map", 2, (20.1, 38.0), "finished"),
    (6002, "map", 3, (21.1, 40.0), "finished"),
    (6001, "reduce", 0, (40.1, 55.0), "finished"),
    (6002, "reduce", 1, (40.2, 58.0), "finished"),
    (6001, "reduce", 2, (55.1, 60.0), "finished"),
)


class SampleSource:
    """The Manager's side of the dashboard routes, with fixed sample data.

    Times are relative to the moment the source is made, so that running
    things look like they run now. `calls` records every call.
    """

    def __init__(self, now=None):
        """Build the sample cluster as seen at `now` (default: the clock)."""
        self.start = time.time() if now is None else now
        self.calls = []
        self.summaries = self._summaries()
        attempts = {RUNNING_JOB: RUNNING_ATTEMPTS,
                    FAILED_JOB: FAILED_ATTEMPTS,
                    FINISHED_JOB: FINISHED_ATTEMPTS}
        self.details = {
            job_id: self._detail(job_id, attempts.get(job_id, ()))
            for job_id in self.summaries}

    def _summaries(self):
        """Return every job's summary by id."""
        at = self.start
        jobs = [
            job_summary(RUNNING_JOB, "running", stage="reduce",
                        map={"done": 4, "total": 4},
                        reduce={"done": 1, "total": 3},
                        submitted_at=at - 41.0, started_at=at - 40.0,
                        elapsed=40.0),
            job_summary(8, "queued", input_directory=HOSTILE_PATH,
                        mapper_executable=HOSTILE_EXECUTABLE,
                        submitted_at=at - 20.0),
            job_summary(9, "queued", num_mappers=2, num_reducers=1,
                        submitted_at=at - 5.0),
            job_summary(FAILED_JOB, "failed", stage="map",
                        map={"done": 1, "total": 2},
                        submitted_at=at - 301.0, started_at=at - 300.0,
                        ended_at=at - 295.0, elapsed=5.0,
                        reason=HOSTILE_REASON, stderr_tail=HOSTILE_STDERR,
                        num_mappers=2),
            job_summary(FINISHED_JOB, "finished", map={"done": 4, "total": 4},
                        reduce={"done": 3, "total": 3},
                        submitted_at=at - 600.0, started_at=at - 600.0,
                        ended_at=at - 540.0, elapsed=60.0,
                        part_files=["part-00000", "part-00001",
                                    "part-00002"],
                        counters=STREAMING_COUNTERS,
                        streaming={"input_paths": ["/home/student/a.txt",
                                                   HOSTILE_PATH],
                                   "combiner": "/home/student/combine.py",
                                   "partitioner": ""}),
            job_summary(4, "rejected", submitted_at=at - 700.0,
                        ended_at=at - 700.0,
                        output_directory=HOSTILE_PATH,
                        reason=f"input directory {HOSTILE_PATH} does not "
                               f"exist"),
        ]
        return {job["job_id"]: job for job in jobs}

    def _detail(self, job_id, attempts):
        """Return a job's /api/jobs answer: summary, attempts, events."""
        detail = copy.deepcopy(self.summaries[job_id])
        started = detail["started_at"] or detail["submitted_at"]
        detail["attempts"] = [
            attempt(port, kind, task, (started + begin,
                                       None if end is None else
                                       started + end), outcome)
            for port, kind, task, (begin, end), outcome in attempts]
        detail["events"] = [
            {"time": started, "kind": "job_started",
             "message": f"Job {job_id} started: input "
                        f"{detail['input_directory']}"},
            {"time": started + 1.0, "kind": "task_failed",
             "message": f"map task failed: {HOSTILE_STDERR.strip()}"},
        ]
        return detail

    def status(self):
        """Return the /api/status answer."""
        self.calls.append(("status",))
        now = time.time()
        at = self.start
        jobs = self.summaries
        return {
            "manager": {"host": "localhost", "port": 6000,
                        "shared_dir": "/tmp/mapreduce-shared-sample",
                        "web_port": 8000, "started_at": at - 900.0,
                        "now": now},
            "workers": [
                worker(6001, "busy", tasks_done=5, registered_at=at - 890,
                       task={"job_id": RUNNING_JOB, "kind": "reduce",
                             "task_id": 1}, last_heartbeat_age=0.4),
                worker(6002, "busy", tasks_done=4, registered_at=at - 880,
                       task={"job_id": RUNNING_JOB, "kind": "reduce",
                             "task_id": 2}, last_heartbeat_age=1.1),
                worker(6003, "dead", tasks_done=1, registered_at=at - 870,
                       last_heartbeat_age=27.5),
                worker(6004, "ready", registered_at=at - 10,
                       last_heartbeat_age=1.9),
                worker(6005, "joining", registered_at=at - 0.5,
                       last_heartbeat_age=0.3, host=HOSTILE_HOST),
            ],
            "running": jobs[RUNNING_JOB],
            "queue": [jobs[8], jobs[9]],
            "recent": [jobs[FAILED_JOB], jobs[FINISHED_JOB], jobs[4]],
        }

    def job(self, job_id):
        """Return the /api/jobs/<job_id> answer, or None if unknown."""
        self.calls.append(("job", job_id))
        return self.details.get(job_id)


class EmptySource:
    """A Manager that has just started: no Worker, no job."""

    def __init__(self):
        """Start the Manager's clock now, with no job known."""
        self.start = time.time()
        self.jobs = {}

    def status(self):
        """Return the /api/status answer of an idle, empty cluster."""
        return {"manager": {"host": "localhost", "port": 6000,
                            "shared_dir": "/tmp/mapreduce-shared-empty",
                            "web_port": None, "started_at": self.start,
                            "now": time.time()},
                "workers": [], "running": None, "queue": [], "recent": []}

    def job(self, job_id):
        """Return the /api/jobs/<job_id> answer: None, no job is known."""
        return self.jobs.get(job_id)
