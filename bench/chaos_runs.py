"""The chaos and load runs: many jobs while Workers die, or many Workers.

`ChaosRun` runs jobs on Worker processes while they are killed with
SIGKILL and restarted; `LoadRun` queues many jobs at once on one Manager
process with many Workers. Both are built on mapreduce.localcluster and
follow jobs through the Manager's status API. `check_assignments`
replays a Manager's log and proves that it never gave one task to two
live Workers at once: that rule is checked on the log itself, because
the log is the record of every assignment. `python -m bench.chaos` runs
them by hand; tests/test_chaos.py and tests/test_load.py run them short.
"""

import dataclasses
import logging
import pathlib
import random
import re
import time
import typing

from mapreduce import client, localcluster
from mapreduce.localcluster import (
    InThreadCluster, LogCollector, ProcessCluster, ProcessSettings,
    TaggedWorkers, cpu_seconds, job, kill_tagged, output_lines,
    pipeline_output, stop_process, wait_for,
)
from mapreduce.manager import ManagerOptions

EXEC = pathlib.Path(__file__).resolve().parent.parent / "tests" / \
    "testdata" / "exec"
WORDS = ("apple banana cherry date elder fig grape hazel iris juniper kiwi "
         "lemon mango nutmeg olive pear quince rhubarb sage thyme umbu "
         "vanilla walnut yam zucchini").split()

_TASK = r"(\w+Task)\(job_id=(\d+), task_id=(-?\d+)[^)]*\)"
_WORKER = r"RemoteWorker\(host='([^']*)', port=(\d+)\)"
ASSIGNED = re.compile(rf"Assigned {_TASK} to {_WORKER}")
REPORTED = re.compile(rf"{_WORKER} (finished|failed) {_TASK}")
MARKED_DEAD = re.compile(rf"Marked {_WORKER} dead")
REGISTERED_AGAIN = re.compile(rf"Registered {_WORKER} again \(it was (\w+)\)")


def _task_key(kind, job_id, task_id):
    """Return the key of a task seen in the log."""
    return (kind, int(job_id), int(task_id))


def _worker_key(host, port):
    """Return the key of a Worker seen in the log."""
    return (host, int(port))


@dataclasses.dataclass
class AssignmentReplay:
    """Replays a Manager's log: who holds which task, line after line.

    A Worker holds a task from `Assigned <task> to <worker>` until the
    Worker reports it (`finished`/`failed`), is marked dead, or registers
    again. Assigning a task that a live Worker holds, or giving a Worker a
    second task while it holds one, breaks the rule: AssertionError.
    """

    assignments: int = 0
    reassigned: int = 0
    reports: int = 0
    released: int = 0
    holders: dict = dataclasses.field(default_factory=dict)  # task: worker
    held: dict = dataclasses.field(default_factory=dict)     # worker: task
    seen: set = dataclasses.field(default_factory=set)

    def line(self, number, line):
        """Take one line of the log into account."""
        match = ASSIGNED.search(line)
        if match:
            self._assigned(_task_key(*match.groups()[:3]),
                           _worker_key(*match.groups()[3:]),
                           f"line {number}: {line}")
            return
        match = REPORTED.search(line)
        if match:
            task = _task_key(*match.groups()[3:])
            worker = _worker_key(*match.groups()[:2])
            assert self.holders.get(task) == worker, (
                f"{worker} reported {task} held by "
                f"{self.holders.get(task)}: line {number}: {line}")
            del self.holders[task], self.held[worker]
            self.reports += 1
            return
        match = MARKED_DEAD.search(line) or REGISTERED_AGAIN.search(line)
        if match:
            task = self.held.pop(_worker_key(*match.groups()[:2]), None)
            if task is not None:
                del self.holders[task]
                self.released += 1

    def _assigned(self, task, worker, where):
        """Record that `worker` now holds `task`, if the rule allows."""
        assert task not in self.holders, (
            f"{task} assigned to {worker} while {self.holders.get(task)} "
            f"holds it: {where}")
        assert worker not in self.held, (
            f"{worker} got {task} while holding {self.held[worker]}: "
            f"{where}")
        self.holders[task], self.held[worker] = worker, task
        self.assignments += 1
        self.reassigned += task in self.seen
        self.seen.add(task)


def check_assignments(lines):
    """Replay a Manager's log; fail if a task ever had two live holders.

    Returns the AssignmentReplay: its counts, and the holders at the end.
    """
    replay = AssignmentReplay()
    for number, line in enumerate(lines, 1):
        replay.line(number, line)
    return replay


def make_inputs(directory, count, seed, lines=12):
    """Write `count` small text files of random words into `directory`."""
    rng = random.Random(seed)
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        text = "".join(
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9)))
            + "\n" for _ in range(lines))
        (directory / f"file{number:03d}").write_text(text)
    return directory


@dataclasses.dataclass
class ChaosFigures:
    """What a chaos run did and found."""

    jobs: int = 0
    killed: int = 0
    killed_holding_task: int = 0
    kills_by_stage: dict = dataclasses.field(default_factory=dict)
    fast_restarts: int = 0
    registered_again_alive: int = 0
    registered_again_dead: int = 0
    marked_dead: int = 0
    reassigned: int = 0
    task_failures: int = 0
    failed_jobs: int = 0
    lost_data: int = 0
    orphans_killed: int = 0
    seconds: float = 0.0

    def report(self):
        """Return the figures as one line of text."""
        stages = ", ".join(f"{stage} {count}" for stage, count
                           in sorted(self.kills_by_stage.items()))
        return (f"jobs run {self.jobs}, Workers killed {self.killed} "
                f"({stages}; {self.killed_holding_task} holding a task), "
                f"restarted before noticed {self.registered_again_alive}, "
                f"after marked dead {self.registered_again_dead}, "
                f"tasks reassigned {self.reassigned}, task failures "
                f"{self.task_failures}, failed jobs {self.failed_jobs}, "
                f"lost data {self.lost_data}, orphans killed "
                f"{self.orphans_killed}, {self.seconds:.1f}s")


@dataclasses.dataclass
class ChaosSettings:
    """The knobs of a chaos run."""

    workers: int = 4
    files: int = 40
    mappers: int = 10
    reducers: int = 4
    seed: int = 0
    heartbeat_timeout: float = 2.0   # The Manager's.
    heartbeat_interval: float = 0.3  # The Workers'.
    # The Workers' TMPDIR (default: in the work directory). On another
    # file system than the output, every move of a result is a copy.
    worker_tmp: typing.Optional[pathlib.Path] = None


def _job_state(address, job_id):
    """Return the summary of job `job_id` now."""
    return client.job_state(address, job_id)[1]


class ChaosRun(InThreadCluster):
    """A Manager in this process, Worker processes, and a killer.

    Each round submits one job of many small files and kills Workers with
    SIGKILL at random moments of its map and reduce stages, restarting
    them on the same port: at once (they register again before the
    Manager notices the death) or after the Manager marked them dead. Use
    it as a context manager: it starts on entry and stops on exit.
    """

    def __init__(self, workdir, settings=None, say=None):
        """Prepare the directories and the input; start nothing yet."""
        self.workdir = pathlib.Path(workdir)
        self.settings = settings = settings or ChaosSettings()
        super().__init__(0, ManagerOptions(
            shared_dir=str(self.workdir / "shared"),
            heartbeat_timeout=settings.heartbeat_timeout))
        self.rng = random.Random(settings.seed)
        self.say = say or (lambda text: None)
        self.input = make_inputs(self.workdir / "input", settings.files,
                                 settings.seed)
        for name in ("logs", "tmp", "shared"):
            (self.workdir / name).mkdir(exist_ok=True)
        self.expected = pipeline_output(self.input, EXEC / "wc_map.sh",
                                        EXEC / "wc_reduce.sh")
        self.figures = ChaosFigures()
        self.spawner = TaggedWorkers(
            self.workdir / "logs", f"chaos-{id(self)}-{time.monotonic_ns()}",
            settings.worker_tmp or self.workdir / "tmp",
            {"heartbeat_interval": settings.heartbeat_interval})
        self.log = LogCollector()
        self.processes = {}
        self._started = None
        self._stopped = False

    @property
    def tag(self):
        """Return the tag of every process this run started."""
        return self.spawner.tag

    def start(self):
        """Start the Manager and the Workers; wait until all registered."""
        self._started = time.monotonic()
        super().start()
        self.log.attach(f"Manager:{self.port}")
        for _ in range(self.settings.workers):
            port, process = self.spawner.spawn_registered(self.port)
            self.processes[port] = process
        return self

    def _kill(self, job_id, kind=None):
        """Kill one random Worker; restart it at once or once marked dead.

        With `kind` ("map" or "reduce"), the victim is one of the Workers
        holding a task of that kind, if there is one.
        """
        workers = client.status(self.address)["workers"]
        holding = {worker["port"]: worker["task"] for worker in workers
                   if worker["task"] is not None
                   and worker["state"] != "dead"}
        victims = sorted(port for port, task in holding.items()
                         if task["kind"] == kind and port in self.processes)
        port = self.rng.choice(victims or sorted(self.processes))
        fast = self.rng.random() < 0.6
        stage = _job_state(self.address, job_id)
        stage = "after" if stage["state"] in client.ENDED else stage["stage"]
        process = self.processes[port]
        process.kill()
        process.wait()
        figures = self.figures
        figures.killed += 1
        figures.kills_by_stage[stage] = figures.kills_by_stage.get(stage,
                                                                   0) + 1
        figures.killed_holding_task += port in holding
        self.say(f"  killed Worker {port} in the {stage} stage, restarting "
                 f"{'at once' if fast else 'once it is marked dead'}")
        if fast:
            figures.fast_restarts += 1
        else:
            wait_for(lambda: not localcluster.worker_alive(self.address,
                                                           port),
                     timeout=60, interval=0.02,
                     what=f"the Worker on port {port} to be marked dead")
        self.processes[port] = self.spawner.spawn(port, self.port)

    def _wait_stage(self, job_id, stages):
        """Wait until job `job_id` is in one of `stages` or has ended."""
        def reached():
            """Tell whether the job is in one of the stages, or ended."""
            summary = _job_state(self.address, job_id)
            return (summary["state"] in client.ENDED
                    or summary["stage"] in stages)

        wait_for(reached, timeout=60, interval=0.02,
                 what=f"job {job_id} to reach {' or '.join(stages)}")

    def round(self):
        """Run one job under fire; return whether its output was right."""
        output = self.workdir / f"output-{self.figures.jobs:03d}"
        job_id = self.submit(job(
            self.input, output, (EXEC / "c_slow_map.sh",
                                 EXEC / "c_slow_reduce.sh"),
            num_mappers=self.settings.mappers,
            num_reducers=self.settings.reducers))
        self.say(f"job {job_id}")
        self._wait_stage(job_id, ("map", "reduce"))
        for _ in range(self.rng.choice((1, 2))):
            time.sleep(self.rng.uniform(0.0, 0.8))  # A random moment.
            self._kill(job_id)
        self._wait_stage(job_id, ("reduce",))
        time.sleep(self.rng.uniform(0.0, 0.1))  # A random moment.
        self._kill(job_id, "reduce")
        summary = self.wait_job(job_id, timeout=120)
        self.figures.jobs += 1
        self.figures.failed_jobs += summary["state"] != "finished"
        parts = sorted(path.name for path in output.iterdir()) \
            if output.is_dir() else []
        right = (parts == [f"part-{r:05d}"
                           for r in range(self.settings.reducers)]
                 and output_lines(output) == self.expected)
        if not right:
            self.figures.lost_data += 1
            self.say(f"  job {job_id}: WRONG OUTPUT {parts}")
        return right

    def stop(self):
        """Shut everything down, kill leftovers, and total the figures."""
        if self._stopped:
            return
        self._stopped = True
        try:
            super().stop()
        finally:
            for process in self.processes.values():
                stop_process(process)
            self.figures.orphans_killed = kill_tagged(self.tag)
            self.log.detach()
            if self._started is not None:
                self._total(self.log.lines())

    def _total(self, lines):
        """Add what the Manager's log says to the figures."""
        figures = self.figures
        replay = check_assignments(lines)
        figures.reassigned = replay.reassigned
        figures.marked_dead = sum(bool(MARKED_DEAD.search(line))
                                  for line in lines)
        again = [REGISTERED_AGAIN.search(line) for line in lines]
        states = [match.group(3) for match in again if match]
        figures.registered_again_dead = states.count("dead")
        figures.registered_again_alive = len(states) - states.count("dead")
        figures.task_failures = sum(bool(REPORTED.search(line))
                                    and " failed " in line for line in lines)
        figures.seconds = time.monotonic() - self._started


# Load.

@dataclasses.dataclass
class LoadFigures:
    """What a load run did and measured."""

    workers: int = 0
    jobs: int = 0
    right: int = 0
    order: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    manager_cpu: float = 0.0
    idle_seconds: float = 0.0
    idle_cpu: float = 0.0

    def report(self):
        """Return the figures as one line of text."""
        return (f"{self.workers} Workers, {self.jobs} jobs in "
                f"{self.seconds:.1f}s, {self.right} right; Manager CPU "
                f"{self.manager_cpu:.2f}s "
                f"({100 * self.manager_cpu / max(self.seconds, 1e-9):.1f}% "
                f"of the time), idle {self.idle_cpu:.2f}s in "
                f"{self.idle_seconds:.1f}s")


def job_order(summaries):
    """Return the ("Started"/"Finished", job id) events in time order.

    From the Manager's job summaries: the order in which jobs started and
    ended (a job that ended, and the next one that started at the same
    moment, are in that order).
    """
    events = []
    for summary in summaries:
        events.append((summary["started_at"], 1, "Started",
                       summary["job_id"]))
        if summary["state"] == "finished":
            events.append((summary["ended_at"], 0, "Finished",
                           summary["job_id"]))
    return [(name, job_id) for _, _, name, job_id in sorted(events)]


class LoadRun(ProcessCluster):
    """A `mapreduce-manager` process, many Workers in threads, many jobs.

    Use it as a context manager: it starts on entry and stops on exit.
    """

    def __init__(self, workdir, *, workers=50, jobs=20, seed=0, say=None):
        """Prepare directories and input; start nothing yet."""
        super().__init__(ProcessSettings(pathlib.Path(workdir), workers=0))
        self.workdir = pathlib.Path(workdir)
        self.num_jobs = jobs
        self.rng = random.Random(seed)
        self.say = say or (lambda text: None)
        self.input = make_inputs(self.workdir / "input", 8, seed)
        self.threads = InThreadCluster(workers=0)
        self.figures = LoadFigures(workers=workers, jobs=jobs)
        # The Workers' warnings only; they log to this process.
        self.worker_log = LogCollector(level=logging.WARNING)

    def manager_lines(self):
        """Return the lines of the Manager's log file so far."""
        try:
            return self.manager_log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def start(self):
        """Start the Manager process and the Workers; wait for them."""
        super().start()
        for _ in range(self.figures.workers):
            worker = localcluster.start_worker_thread(self.port)
            self.worker_log.attach(f"Worker:{worker.port}", logging.WARNING)
            self.threads.workers.append(worker)
        self.wait_registered(self.figures.workers, timeout=60)
        return self

    def _jobs(self):
        """Return (output, expected lines, NewManagerJob) of every job."""
        combos = [("wc_map.sh", "wc_reduce.sh"),
                  ("wc_map.py", "wc_reduce.py"),
                  ("wc_map.sh", "wc_reduce.py")]
        expected = {}
        jobs = []
        for number in range(self.num_jobs):
            mapper, reducer = combos[number % len(combos)]
            if (mapper, reducer) not in expected:
                expected[mapper, reducer] = pipeline_output(
                    self.input, EXEC / mapper, EXEC / reducer)
            output = self.workdir / f"output-{number:03d}"
            jobs.append((output, expected[mapper, reducer], job(
                self.input, output, (EXEC / mapper, EXEC / reducer),
                num_mappers=self.rng.randint(1, 10),
                num_reducers=self.rng.randint(1, 6))))
        return jobs

    def run(self):
        """Measure idle CPU, queue every job at once, check every output."""
        figures = self.figures
        before, started = cpu_seconds(self.manager.pid), time.monotonic()
        time.sleep(2.0)  # Idle on purpose: only heartbeats arrive.
        figures.idle_cpu = cpu_seconds(self.manager.pid) - before
        figures.idle_seconds = time.monotonic() - started
        jobs = self._jobs()
        before, started = cpu_seconds(self.manager.pid), time.monotonic()
        job_ids = [self.submit(new_job) for _, _, new_job in jobs]
        # Jobs run one at a time in order: once the last one has ended,
        # all have. Following only it keeps the Manager's work the jobs'.
        self.wait_job(job_ids[-1], timeout=60 + 10 * self.num_jobs)
        summaries = [client.job_state(self.address, job_id)[1]
                     for job_id in job_ids]
        figures.manager_cpu = cpu_seconds(self.manager.pid) - before
        figures.seconds = time.monotonic() - started
        for output, lines, new_job in jobs:
            if output_lines(output) == lines and len(
                    list(output.iterdir())) == new_job.num_reducers:
                figures.right += 1
        figures.order = job_order(summaries)
        self.say(figures.report())
        return figures

    def stop(self):
        """Shut the Manager down (it stops the Workers); reap everything."""
        try:
            super().stop()
        finally:
            for worker in self.threads.workers:
                worker.join()
            self.worker_log.detach()
