"""Tools of the failure, chaos, fuzz and load tests (and bench/chaos.py).

- `LogCollector` keeps the lines a Manager or Worker run in this process
  logs, so that a test can wait for one and replay them afterwards.
- `check_assignments` replays a Manager's log and proves that it never
  gave one task to two live Workers at once.
- `spawn_worker` runs a real Worker process, tagged through its
  environment so that `kill_tagged` can find every process it left behind
  (task children live in sessions of their own and outlive a SIGKILLed
  Worker).
- `ChaosRun` runs jobs while Workers are killed and restarted.

Run as `python -m tests.chaos_tools worker --port P --manager-port M` it is
a Worker process whose heartbeat interval can be shorter than the CLI's.
"""

import argparse
import dataclasses
import logging
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import threading
import time
import typing

from mapreduce.localcluster import (
    free_port, output_lines, pipeline_output, port_open, wait_for,
)
from tests.util import (
    EXEC, job_message, send_json, start_manager, start_worker,
)

REPO = pathlib.Path(__file__).resolve().parent.parent
TAG_VARIABLE = "MAPREDUCE_CHAOS_TAG"
WORDS = ("apple banana cherry date elder fig grape hazel iris juniper kiwi "
         "lemon mango nutmeg olive pear quince rhubarb sage thyme umbu "
         "vanilla walnut yam zucchini").split()

_TASK = r"(\w+Task)\(job_id=(\d+), task_id=(-?\d+)[^)]*\)"
_WORKER = r"RemoteWorker\(host='([^']*)', port=(\d+)\)"
ASSIGNED = re.compile(rf"Assigned {_TASK} to {_WORKER}")
REPORTED = re.compile(rf"{_WORKER} (finished|failed) {_TASK}")
MARKED_DEAD = re.compile(rf"Marked {_WORKER} dead")
REGISTERED_AGAIN = re.compile(rf"Registered {_WORKER} again \(it was (\w+)\)")


class LogCollector(logging.Handler):
    """Keeps every line that some named loggers log, in order."""

    def __init__(self, *names, level=logging.INFO):
        """Attach to the loggers `names` and let `level` and above through."""
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(name)s [%(levelname)s] "
                                            "%(message)s"))
        self._lines = []
        self._lock = threading.Lock()
        self._loggers = []
        for name in names:
            self.attach(name, level)

    def attach(self, name, level=logging.INFO):
        """Collect the lines of logger `name` too."""
        logger = logging.getLogger(name)
        self._loggers.append((logger, logger.level))
        logger.setLevel(level)
        logger.addHandler(self)

    def emit(self, record):
        """Keep one formatted line."""
        line = self.format(record)
        with self._lock:
            self._lines.append(line)

    def lines(self):
        """Return a copy of every line so far."""
        with self._lock:
            return list(self._lines)

    def grep(self, pattern):
        """Return the lines so far that match regular expression `pattern`."""
        regex = re.compile(pattern)
        return [line for line in self.lines() if regex.search(line)]

    def wait_for(self, pattern, count=1, timeout=60.0):
        """Wait until `count` lines match `pattern`; return the matches."""
        return wait_for(lambda: _at_least(self.grep(pattern), count),
                        timeout=timeout, interval=0.02,
                        what=f"{count} log line(s) matching {pattern!r}")

    def detach(self):
        """Stop collecting and give the loggers their levels back."""
        for logger, level in self._loggers:
            logger.removeHandler(self)
            logger.setLevel(level)
        self._loggers.clear()


def _at_least(found, count):
    """Return `found` if it has `count` items or more, else None."""
    return found if len(found) >= count else None


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


# Starting on free ports. A port that free_port() found free may be taken
# by someone else (an outgoing connection of another test) before it is
# bound: the starters below then try another one.

START_ATTEMPTS = 5


def start_logged_manager(level=logging.INFO, **kwargs):
    """Run a Manager in a thread; return it and a LogCollector of its log."""
    error = None
    for _ in range(START_ATTEMPTS):
        port = free_port()
        log = LogCollector(f"Manager:{port}", level=level)
        manager = start_manager(port, **kwargs)
        if manager.thread.is_alive():
            return manager, log
        log.detach()
        error = manager.error
    raise AssertionError(f"could not start a Manager: {error!r}")


def start_logged_worker(manager_port, log, **kwargs):
    """Run a Worker in a thread, its lines collected by `log`; return it."""
    error = None
    for _ in range(START_ATTEMPTS):
        port = free_port()
        log.attach(f"Worker:{port}", log.level)
        worker = start_worker(manager_port, port, **kwargs)
        if worker.thread.is_alive():
            return worker
        error = worker.error
    raise AssertionError(f"could not start a Worker: {error!r}")


def spawn_registered_worker(log, manager_port, **kwargs):
    """Spawn a Worker process; wait until `log` shows it registered.

    `log` collects the Manager's lines; `kwargs` go to spawn_worker.
    Returns the Worker's port and its Popen.
    """
    for _ in range(START_ATTEMPTS):
        port = free_port()
        logfile = pathlib.Path(str(kwargs["logfile"]).format(port=port))
        process = spawn_worker(port, manager_port,
                               **{**kwargs, "logfile": logfile})
        if _registered_or_exited(log, port, process):
            return port, process
    raise AssertionError("could not start a Worker process")


def _registered_or_exited(log, port, process):
    """Wait until the Worker on `port` registered (True) or exited."""
    registered = rf"Registered RemoteWorker\(host='localhost', port={port}\)"
    wait_for(lambda: log.grep(registered) or process.poll() is not None,
             timeout=60, what=f"the Worker on port {port} to register")
    return process.poll() is None


# Processes.

# pylint: disable-next=too-many-arguments  # All keywords, with defaults.
def spawn_worker(port, manager_port, *, logfile, tag, tmpdir,
                 heartbeat_interval=0.3, loglevel="info", env=None):
    """Start a real Worker process on `port`; return its Popen.

    The process and every child it starts carry `TAG_VARIABLE=tag` in their
    environment, and make their temporary files in `tmpdir`. With the
    CLI's heartbeat interval (2 s) the `mapreduce-worker` command itself
    runs; otherwise this module does, with a shorter interval. `env` adds
    variables to the environment.
    """
    env = {**os.environ, **(env or {}), TAG_VARIABLE: tag,
           "TMPDIR": str(tmpdir),
           "PYTHONPATH": os.pathsep.join(
               filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    options = ["--port", str(port), "--manager-port", str(manager_port),
               "--logfile", str(logfile), "--loglevel", loglevel]
    if heartbeat_interval == 2.0:
        command = [str(pathlib.Path(sys.executable).parent
                       / "mapreduce-worker"), *options]
    else:
        command = [sys.executable, "-m", "tests.chaos_tools", "worker",
                   *options, "--heartbeat-interval", str(heartbeat_interval)]
    # The caller waits for it (stop_process), not a with block.
    # pylint: disable-next=consider-using-with
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=str(REPO))


def stop_process(process, timeout=10.0):
    """Wait a little for `process` to exit, then kill it; reap it."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tagged_pids(tag):
    """Return the pids of the live processes whose environment has `tag`."""
    marker = f"{TAG_VARIABLE}={tag}".encode()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(os.path.join(entry.path, "environ"), "rb") as file:
                if marker in file.read().split(b"\0"):
                    pids.append(int(entry.name))
        except OSError:
            continue  # Gone already, or not ours to read.
    return pids


def kill_tagged(tag, timeout=10.0):
    """SIGKILL every process carrying `tag`; return how many there were."""
    killed = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = tagged_pids(tag)
        if not pids or time.monotonic() > deadline:
            return len(killed)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.05)


def cpu_seconds(pid):
    """Return the user + system CPU seconds process `pid` has used."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as file:
        fields = file.read().rpartition(")")[2].split()
    # After the command name: state is field 3; utime and stime are 14, 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_memory_kib(pid):
    """Return the peak resident set size (VmHWM) of process `pid`, in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise LookupError(f"no VmHWM for process {pid}")


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


# Chaos.

class Started:
    """A run used as a context manager: `start()` on entry, `stop()` after.

    Subclasses provide `start` and `stop`; `stop` must be safe to call
    after a `start` that failed half-way.
    """

    def start(self):
        """Start what the run needs."""
        raise NotImplementedError

    def stop(self):
        """Stop everything the run started."""
        raise NotImplementedError

    def __enter__(self):
        """Start; stop again if starting fails half-way."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info):
        """Stop everything."""
        self.stop()


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


class ChaosRun(Started):
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
        self.rng = random.Random(settings.seed)
        self.say = say or (lambda text: None)
        self.tag = f"chaos-{os.getpid()}-{time.monotonic_ns()}"
        self.input = make_inputs(self.workdir / "input", settings.files,
                                 settings.seed)
        for name in ("logs", "tmp", "shared"):
            (self.workdir / name).mkdir(exist_ok=True)
        self.expected = pipeline_output(self.input, EXEC / "wc_map.sh",
                                        EXEC / "wc_reduce.sh")
        self.figures = ChaosFigures()
        self.manager = self.log = None
        self.processes = {}
        self._started = None
        self._stopped = False

    def start(self):
        """Start the Manager and the Workers; wait until all registered."""
        self._started = time.monotonic()
        self.manager, self.log = start_logged_manager(
            shared_dir=str(self.workdir / "shared"),
            heartbeat_timeout=self.settings.heartbeat_timeout)
        for _ in range(self.settings.workers):
            port, process = spawn_registered_worker(
                self.log, self.manager.port, **self._spawn_options())
            self.processes[port] = process

    def _spawn_options(self):
        """Return the options of spawn_worker for this run's Workers."""
        return {"logfile": self.workdir / "logs" / "worker-{port}.log",
                "tag": self.tag,
                "tmpdir": self.settings.worker_tmp or self.workdir / "tmp",
                "heartbeat_interval": self.settings.heartbeat_interval}

    def _spawn(self, port):
        """Start the Worker process of `port` again."""
        options = self._spawn_options()
        options["logfile"] = pathlib.Path(
            str(options["logfile"]).format(port=port))
        self.processes[port] = spawn_worker(port, self.manager.port,
                                            **options)

    def _stage(self, job_id):
        """Return the stage job `job_id` is in, judging by the log."""
        lines = self.log.lines()
        if any(f"Finished Job(job_id={job_id}," in line for line in lines):
            return "after"
        if any(f"Job {job_id}: map stage done" in line for line in lines):
            return "reduce"
        return "map"

    def _kill(self, job_id, kind=None):
        """Kill one random Worker; restart it at once or once marked dead.

        With `kind` (e.g. "ReduceTask"), the victim is one of the Workers
        holding a task of that kind, if there is one.
        """
        holding = check_assignments(self.log.lines()).holders
        victims = sorted(port for (task_kind, _, _), (_, port)
                         in holding.items() if task_kind == kind)
        port = self.rng.choice(victims or sorted(self.processes))
        fast = self.rng.random() < 0.6
        stage = self._stage(job_id)
        process = self.processes[port]
        process.kill()
        process.wait()
        figures = self.figures
        figures.killed += 1
        figures.kills_by_stage[stage] = figures.kills_by_stage.get(stage,
                                                                   0) + 1
        figures.killed_holding_task += ("localhost", port) in holding.values()
        self.say(f"  killed Worker {port} in the {stage} stage, restarting "
                 f"{'at once' if fast else 'once it is marked dead'}")
        if fast:
            figures.fast_restarts += 1
        else:
            dead = rf"Marked RemoteWorker\(host='localhost', port={port}\)"
            already = len(self.log.grep(dead))
            self.log.wait_for(dead, count=already + 1)
        self._spawn(port)

    def round(self):
        """Run one job under fire; return whether its output was right."""
        job_id = self.figures.jobs
        output = self.workdir / f"output-{job_id:03d}"
        self.say(f"job {job_id}")
        send_json(self.manager.port, job_message(
            self.input, output, EXEC / "c_slow_map.sh",
            EXEC / "c_slow_reduce.sh", num_mappers=self.settings.mappers,
            num_reducers=self.settings.reducers))
        self.log.wait_for(rf"Started Job\(job_id={job_id},")
        for _ in range(self.rng.choice((1, 2))):
            time.sleep(self.rng.uniform(0.0, 0.8))  # A random moment.
            self._kill(job_id)
        self.log.wait_for(rf"Assigned ReduceTask\(job_id={job_id},|"
                          rf"Job {job_id} failed")
        time.sleep(self.rng.uniform(0.0, 0.1))  # A random moment.
        self._kill(job_id, "ReduceTask")
        self.log.wait_for(rf"Finished Job\(job_id={job_id},|"
                          rf"Job {job_id} failed", timeout=120)
        self.figures.jobs += 1
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
            if self.manager is not None:
                self.manager.shutdown()
        finally:
            for process in self.processes.values():
                stop_process(process)
            self.figures.orphans_killed = kill_tagged(self.tag)
            if self.log is not None:
                self.log.detach()
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
        figures.failed_jobs = sum(bool(re.search(r"Job \d+ failed", line))
                                  for line in lines)
        figures.seconds = time.monotonic() - self._started


# A Worker process with a chosen heartbeat interval.

def _run_worker(args):
    """Run one Worker until it is shut down (or killed)."""
    # Imported here: only the Worker process needs them.
    # pylint: disable-next=import-outside-toplevel
    from mapreduce.logs import configure
    # pylint: disable-next=import-outside-toplevel
    from mapreduce.worker import Worker
    configure(args.logfile, args.loglevel)
    Worker("localhost", args.port, "localhost", args.manager_port,
           heartbeat_interval=args.heartbeat_interval)


def main(argv=None):
    """Parse the command line and run what it asks for."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos_tools")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a Worker process")
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--manager-port", type=int, required=True)
    worker.add_argument("--heartbeat-interval", type=float, default=0.3)
    worker.add_argument("--logfile")
    worker.add_argument("--loglevel", default="info")
    args = parser.parse_args(argv)
    _run_worker(args)


if __name__ == "__main__":
    main()


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


class LoadRun(Started):
    """A `mapreduce-manager` process, many Workers in threads, many jobs.

    Use it as a context manager: it starts on entry and stops on exit.
    """

    def __init__(self, workdir, *, workers=50, jobs=20, seed=0, say=None):
        """Prepare directories and input; start nothing yet."""
        self.workdir = pathlib.Path(workdir)
        self.num_workers = workers
        self.num_jobs = jobs
        self.rng = random.Random(seed)
        self.say = say or (lambda text: None)
        self.input = make_inputs(self.workdir / "input", 8, seed)
        (self.workdir / "shared").mkdir(exist_ok=True)
        self.logfile = self.workdir / "manager.log"
        self.port = None
        self.manager = None
        self.workers = []
        self.figures = LoadFigures(workers=workers, jobs=jobs)

    def manager_lines(self):
        """Return the lines of the Manager's log file so far."""
        try:
            return self.logfile.read_text().splitlines()
        except FileNotFoundError:
            return []

    def wait_lines(self, pattern, count=1, timeout=60.0):
        """Wait until `count` lines of the Manager's log match `pattern`."""
        regex = re.compile(pattern)
        return wait_for(
            lambda: _at_least([line for line in self.manager_lines()
                               if regex.search(line)], count),
            timeout=timeout, interval=0.05,
            what=f"{count} Manager log line(s) matching {pattern!r}")

    def start(self):
        """Start the Manager process and the Workers; wait for them."""
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            # The caller stops it (stop), not a with block.
            # pylint: disable-next=consider-using-with
            self.manager = subprocess.Popen(
                [str(pathlib.Path(sys.executable).parent
                     / "mapreduce-manager"),
                 "--host", "localhost", "--port", str(self.port),
                 "--logfile", str(self.logfile), "--loglevel", "info",
                 "--shared_dir", str(self.workdir / "shared")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            wait_for(lambda: self.manager_lines() or self.manager.poll()
                     is not None, what="the Manager to start")
            if self.manager.poll() is None:
                break
        wait_for(lambda: port_open(self.port), what="the Manager's port")
        log = LogCollector(level=logging.WARNING)
        for _ in range(self.num_workers):
            self.workers.append(start_logged_worker(self.port, log))
        self.wait_lines(r"Registered RemoteWorker", self.num_workers)

    def run(self):
        """Measure idle CPU, queue every job at once, check every output."""
        figures = self.figures
        before, started = cpu_seconds(self.manager.pid), time.monotonic()
        time.sleep(2.0)  # Idle on purpose: only heartbeats arrive.
        figures.idle_cpu = cpu_seconds(self.manager.pid) - before
        figures.idle_seconds = time.monotonic() - started
        combos = [("wc_map.sh", "wc_reduce.sh"),
                  ("wc_map.py", "wc_reduce.py"),
                  ("wc_map.sh", "wc_reduce.py")]
        expected = {}
        jobs = []
        for job_id in range(self.num_jobs):
            mapper, reducer = combos[job_id % len(combos)]
            if (mapper, reducer) not in expected:
                expected[mapper, reducer] = pipeline_output(
                    self.input, EXEC / mapper, EXEC / reducer)
            jobs.append((self.workdir / f"output-{job_id:03d}",
                         expected[mapper, reducer],
                         job_message(self.input,
                                     self.workdir / f"output-{job_id:03d}",
                                     EXEC / mapper, EXEC / reducer,
                                     num_mappers=self.rng.randint(1, 10),
                                     num_reducers=self.rng.randint(1, 6))))
        before, started = cpu_seconds(self.manager.pid), time.monotonic()
        for _, _, message in jobs:
            send_json(self.port, message)
        self.wait_lines(rf"Finished Job\(job_id={self.num_jobs - 1},|"
                        rf"Job {self.num_jobs - 1} failed",
                        timeout=60 + 10 * self.num_jobs)
        figures.manager_cpu = cpu_seconds(self.manager.pid) - before
        figures.seconds = time.monotonic() - started
        for output, lines, message in jobs:
            if output_lines(output) == lines and len(
                    list(output.iterdir())) == message["num_reducers"]:
                figures.right += 1
        figures.order = [
            (match.group(1), int(match.group(2)))
            for match in map(re.compile(
                r"(Started|Finished) Job\(job_id=(\d+),|Job (\d+) failed")
                .search, self.manager_lines()) if match and match.group(1)]
        self.say(figures.report())
        return figures

    def stop(self):
        """Shut the Manager down (it stops the Workers); reap everything."""
        try:
            if self.manager is not None and self.manager.poll() is None:
                send_json(self.port, {"message_type": "shutdown"})
                stop_process(self.manager, timeout=30)
        finally:
            if self.manager is not None and self.manager.poll() is None:
                self.manager.kill()
                self.manager.wait()
            for worker in self.workers:
                worker.join()
