"""A local cluster from Python: for tests, benchmarks and your own scripts.

One harness, two ways to run the same cluster on loopback ports:

- `InThreadCluster`: a `ManagerServer` and Workers as threads of this
  process (fast to start; the logs go to this process's loggers).
- `ProcessCluster`: the real console commands (`mapreduce-manager`,
  `mapreduce-worker`) as child processes, each with its own log file.

Both take free ports, and another one when a port found free is taken
before it is bound; both wait on conditions that the Manager's status
API reports (Workers registered, a job ended), never on its log text;
both stop cleanly, also when starting fails half-way (use them in a
`with` block). The helpers below them (free ports, waiting, running a
blocking constructor in a thread, starting a command on a free port,
stopping a process) are the building blocks the tests use directly.
"""

import contextlib
import dataclasses
import errno
import logging
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import typing

from mapreduce import auth, client, protocol
from mapreduce.manager import ManagerOptions, ManagerServer
from mapreduce.worker import Worker

LOCALHOST = "localhost"
WAIT = 30.0  # Seconds to wait for something that should happen soon.
# Tries at a free port: one found free may be taken before it is bound.
START_ATTEMPTS = 5
# Carried in the environment of processes that kill_tagged() may kill.
TAG_VARIABLE = "MAPREDUCE_CLUSTER_TAG"


class WaitTimeout(AssertionError, TimeoutError):
    """A condition did not come true in time (a failed check in a test)."""


def wait_for(predicate, timeout=WAIT, interval=0.01, what="a condition"):
    """Wait until `predicate()` is true and return its value.

    Raises WaitTimeout after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for "
                              f"{what}")
        time.sleep(interval)


# Ports.

def free_port():
    """Return a port that is free for both TCP and UDP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def port_taken(error):
    """Tell whether `error` says that the port was in use."""
    return isinstance(error, OSError) and error.errno == errno.EADDRINUSE


def port_open(port, host=LOCALHOST):
    """Tell whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def port_is_free(port):
    """Tell whether `port` can be bound, for TCP and UDP, right now."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("127.0.0.1", port))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


# Threads.

class KeepError:
    """A block whose exception (an Exception, not an exit) is kept, not raised.

    For code run in a thread: the caller reads `error` afterwards.
    """

    def __init__(self):
        """Nothing kept yet."""
        self.error = None

    def __enter__(self):
        """Enter the block."""
        return self

    def __exit__(self, exc_type, exc, traceback):
        """Keep an Exception and stop it here; let anything else through."""
        if isinstance(exc, Exception):
            self.error = exc
            return True
        return False


class InThread:
    """Run a blocking constructor (a Manager, a Worker) in a thread."""

    def __init__(self, target, **kwargs):
        """Start `target(**kwargs)` in a thread; wait until its port opens."""
        port = self.port = kwargs["port"]
        self._kept = KeepError()
        self.thread = threading.Thread(target=self._run,
                                       args=(target, kwargs), daemon=True)
        self.thread.start()
        wait_for(lambda: port_open(port) or not self.thread.is_alive(),
                 what=f"port {port} to open")

    @property
    def error(self):
        """Return the exception the constructor raised, or None."""
        return self._kept.error

    def _run(self, target, kwargs):
        """Run the constructor, keeping any exception for the caller."""
        with self._kept:
            target(**kwargs)

    def shutdown(self, timeout=WAIT):
        """Send `shutdown` and wait for the constructor to return."""
        if self.thread.is_alive():
            shutdown(self.port)
        self.join(timeout)

    def join(self, timeout=WAIT):
        """Wait for the constructor to return; fail if it raised."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "did not stop in time"
        assert self.error is None, f"raised {self.error!r}"


def start_in_thread(target, port=None, **kwargs):
    """Run `target(port=..., **kwargs)` in a thread; return the InThread.

    Without a `port`, a free one is chosen, and another one if that was
    taken before `target` could bind it (by another program, say).
    """
    if port:
        return InThread(target, port=port, **kwargs)
    for _ in range(START_ATTEMPTS - 1):
        started = InThread(target, port=free_port(), **kwargs)
        if started.thread.is_alive() or not port_taken(started.error):
            return started
    return InThread(target, port=free_port(), **kwargs)


def start_worker_thread(manager_port, port=None, **settings):
    """Run a Worker in a thread on `port` (default: free); return it.

    `settings` are the Worker's keyword options (heartbeat_interval, ...).
    """
    return start_in_thread(Worker, port, host=LOCALHOST,
                           manager_host=LOCALHOST,
                           manager_port=manager_port, **settings)


def start_manager_server(options=None, secret=None):
    """Build and start a ManagerServer on a free port; return it.

    Tries another port when the one found free is taken in between.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return ManagerServer(LOCALHOST, free_port(), options,
                                 secret).start()
        except OSError as exc:
            if not port_taken(exc) or attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


# Processes.

def command(name):
    """Return the path of console command `name` next to this Python."""
    path = pathlib.Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def spawn(args, **popen_kwargs):
    """Start a process with no terminal input or output; return its Popen.

    The caller owns it: stop it with stop_process, or enter it in a with
    block or an ExitStack.
    """
    options = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
               "stderr": subprocess.DEVNULL, **popen_kwargs}
    return subprocess.Popen(args, **options)


def tagged_environment(tag, tmpdir, env=None):
    """Return this environment plus `env`, tagged, with TMPDIR `tmpdir`.

    A process started with it, and every child it starts, carries
    `TAG_VARIABLE=tag`: `kill_tagged(tag)` finds them all, also the task
    children that live in sessions of their own and outlive a SIGKILLed
    Worker.
    """
    return {**os.environ, **(env or {}), TAG_VARIABLE: tag,
            "TMPDIR": str(tmpdir)}


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


def wait_listening(process, port, host=LOCALHOST):
    """Wait until `process` listens on TCP `port`; tell whether it runs."""
    wait_for(lambda: port_open(port, host) or process.poll() is not None,
             what=f"the process on port {port} to listen")
    return process.poll() is None


def stop_process(process, timeout=10.0):
    """Wait a little for `process` to exit, then kill it; reap it."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_started(process, port, started):
    """Wait until `started(port)` or until `process` has exited."""
    wait_for(lambda: started(port) or process.poll() is not None,
             what=f"the process on port {port} to start")


@contextlib.contextmanager
def spawned_on_free_port(command_for, started, **popen_kwargs):
    """Run command `command_for(port)` on a free port; give (Popen, port).

    Waits until `started(port)` tells it is up. A process that exited
    while its port is busy lost that port to someone else: it is started
    again on another one. The process is killed on leaving, if it runs.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        with subprocess.Popen(command_for(port), **popen_kwargs) as process:
            _wait_started(process, port, started)
            if (process.poll() is None or port_is_free(port)
                    or attempt == START_ATTEMPTS):
                try:
                    yield process, port
                finally:
                    if process.poll() is None:
                        process.kill()
                return


def options_of(settings):
    """Return command-line options for `settings`, a dict of timings.

    `{"heartbeat_interval": 0.3}` becomes `["--heartbeat-interval", "0.3"]`.
    """
    options = []
    for name, value in settings.items():
        options += ["--" + name.replace("_", "-"), str(value)]
    return options


@dataclasses.dataclass
class TaggedWorkers:
    """Starts `mapreduce-worker` processes that kill_tagged() can clean up.

    Every process, and every child it starts, carries `tag` in its
    environment and makes its temporary files in `tmpdir`. Logs go to
    `logs/worker-PORT.log`; `settings` are the hidden timing options
    (`{"heartbeat_interval": 0.3}`); `env` adds environment variables.
    """

    logs: pathlib.Path
    tag: str
    tmpdir: pathlib.Path
    settings: dict = dataclasses.field(default_factory=dict)
    env: typing.Optional[dict] = None

    def logfile(self, port):
        """Return the log file of the Worker on `port`."""
        return pathlib.Path(self.logs) / f"worker-{port}.log"

    def spawn(self, port, manager_port):
        """Start a Worker process on `port`; return its Popen (caller's)."""
        return spawn(
            [command("mapreduce-worker"), "--host", LOCALHOST, "--port",
             str(port), "--manager-port", str(manager_port), "--logfile",
             str(self.logfile(port)), *options_of(self.settings)],
            env=tagged_environment(self.tag, self.tmpdir, self.env))

    def spawn_registered(self, manager_port):
        """Start a Worker on a free port; wait until the Manager has it.

        The Manager's status API tells when it registered. A Worker that
        exits first lost its port to someone else: another port is tried.
        Returns the Worker's port and its Popen.
        """
        address = (LOCALHOST, manager_port)
        for _ in range(START_ATTEMPTS):
            port = free_port()
            process = self.spawn(port, manager_port)
            if _registered_or_exited(address, port, process):
                return port, process
        raise RuntimeError("could not start a Worker process")


def _registered_or_exited(address, port, process):
    """Wait until the Worker on `port` registered (True) or exited."""
    wait_for(lambda: worker_alive(address, port)
             or process.poll() is not None, timeout=60, interval=0.05,
             what=f"the Worker on port {port} to register")
    return process.poll() is None


class LogCollector(logging.Handler):
    """Keeps every line that some named loggers log, in order.

    For a cluster run in this process: attach it to `Manager:PORT` or
    `Worker:PORT` to keep their lines, to read or to check afterwards.
    """

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


# Expected output.

def pipeline_output(input_dir, mapper, reducer):
    """Return the lines of `cat input/* | map | LC_ALL=C sort | reduce`.

    The sorted lines (bytes) that a job with these executables must give.
    """
    files = sorted(p for p in pathlib.Path(input_dir).iterdir()
                   if p.is_file())
    data = b"".join(p.read_bytes() for p in files)
    env = {**os.environ, "LC_ALL": "C"}
    mapped = subprocess.run([str(mapper)], input=data, capture_output=True,
                            check=True).stdout
    ordered = subprocess.run(["sort"], input=mapped, capture_output=True,
                             check=True, env=env).stdout
    reduced = subprocess.run([str(reducer)], input=ordered,
                             capture_output=True, check=True).stdout
    return sorted(reduced.splitlines())


def output_lines(output_dir):
    """Return the sorted lines of every part file in `output_dir`."""
    lines = []
    for part in sorted(pathlib.Path(output_dir).glob("part-*")):
        lines.extend(part.read_bytes().splitlines())
    return sorted(lines)


# Asking the Manager.

def worker_alive(address, port):
    """Tell whether the Manager at `address` has a live Worker on `port`."""
    return any(worker["port"] == port and worker["state"] != "dead"
               for worker in client.status(address)["workers"])


def registered_workers(address):
    """Return how many Workers the Manager at `address` counts as alive."""
    workers = client.status(address)["workers"]
    return sum(worker["state"] != "dead" for worker in workers)


def job(input_dir, output_dir, executables, *, num_mappers=2,
        num_reducers=2):
    """Return a NewManagerJob with absolute paths.

    `executables` is the pair (mapper, reducer).
    """
    mapper, reducer = executables
    return protocol.NewManagerJob(
        input_directory=os.path.abspath(input_dir),
        output_directory=os.path.abspath(output_dir),
        mapper_executable=os.path.abspath(mapper),
        reducer_executable=os.path.abspath(reducer),
        num_mappers=num_mappers, num_reducers=num_reducers)


class _Cluster:
    """What both clusters share: the Manager's address, jobs, a with block."""

    port = None
    secret = None  # The cluster's secret (bytes), or None: unsigned.

    @property
    def address(self):
        """Return the Manager's client.Address (signing if the cluster is)."""
        return client.manager_address(LOCALHOST, self.port, self.secret)

    def wait_registered(self, count, timeout=WAIT):
        """Wait until `count` Workers are registered and alive."""
        wait_for(lambda: registered_workers(self.address) >= count,
                 timeout=timeout, interval=0.05,
                 what=f"{count} Workers to register")

    def submit(self, new_job):
        """Submit `new_job` (a NewManagerJob); return its job id."""
        return client.submit(self.address, new_job)

    def wait_job(self, job_id, timeout=WAIT):
        """Wait until job `job_id` ends; return its last summary."""
        return client.wait_for_job(self.address, job_id, timeout)

    def run_job(self, new_job, timeout=WAIT):
        """Submit `new_job`, wait for its end; return its last summary."""
        return self.wait_job(self.submit(new_job), timeout)

    def start(self):
        """Start everything (see the subclasses)."""
        raise NotImplementedError

    def stop(self):
        """Stop everything; safe after a start that failed half-way."""
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


class InThreadCluster(_Cluster):
    """A ManagerServer and Workers, each running in a thread of this process.

    `manager` is a ManagerOptions (shared_dir, timings); `worker` the
    Workers' keyword settings (heartbeat_interval, ...). With a
    `secret`, the Manager, the Workers and the clients sign with it.
    """

    def __init__(self, workers=2, manager=None, worker=None, secret=None):
        """Prepare; start nothing yet."""
        self.num_workers = workers
        self.manager_options = manager or ManagerOptions()
        self.secret = secret
        self.worker_settings = dict(worker or {})
        if secret is not None:
            self.worker_settings.setdefault("secret", secret)
        self.manager = None
        self.workers = []

    @property
    def port(self):
        """Return the Manager's port, None before start."""
        return None if self.manager is None else self.manager.port

    def start(self):
        """Start the Manager, then the Workers; wait until they registered."""
        self.manager = start_manager_server(self.manager_options,
                                            self.secret)
        for _ in range(self.num_workers):
            self.add_worker()
        self.wait_registered(self.num_workers)
        return self

    def add_worker(self, **settings):
        """Start one more Worker thread; return its InThread."""
        worker = start_worker_thread(
            self.port, **{**self.worker_settings, **settings})
        self.workers.append(worker)
        return worker

    def stop(self):
        """Stop the Manager (it shuts the Workers down); join every thread."""
        if self.manager is not None:
            self.manager.stop(WAIT)
        for worker in self.workers:
            worker.shutdown()


@dataclasses.dataclass
class ProcessSettings:
    """Where a ProcessCluster works, and the timings of its commands."""

    directory: pathlib.Path
    workers: int = 2
    # Options of mapreduce-manager and mapreduce-worker, as keywords:
    # {"heartbeat_timeout": 2.0}, {"heartbeat_interval": 0.3}.
    manager: dict = dataclasses.field(default_factory=dict)
    worker: dict = dataclasses.field(default_factory=dict)
    env: typing.Optional[dict] = None  # The processes' environment.
    loglevel: str = "info"
    # The cluster's secret file: every command, and the clients, sign.
    secret_file: typing.Optional[pathlib.Path] = None


class ProcessCluster(_Cluster):
    """A `mapreduce-manager` and `mapreduce-worker` processes.

    In `settings.directory`: `shared/` (the shared directory's parent) and
    `log/` (manager.log, worker-PORT.log).
    """

    def __init__(self, settings):
        """Prepare the directories; start nothing yet."""
        self.settings = settings
        directory = pathlib.Path(settings.directory)
        self.shared = directory / "shared"
        self.logs = directory / "log"
        self.port = None
        self.manager = None
        self.workers = {}  # port: Popen
        self._processes = contextlib.ExitStack()

    @property
    def secret(self):
        """Return the secret in the settings' secret file, or None."""
        path = self.settings.secret_file
        return None if path is None else auth.load_secret(path)

    @property
    def manager_log(self):
        """Return the path of the Manager's log file."""
        return self.logs / "manager.log"

    @property
    def pids(self):
        """Return the process ids: the Manager's, then the Workers'."""
        return [self.manager.pid] + [process.pid
                                     for process in self.workers.values()]

    def start(self):
        """Start the Manager, then the Workers; wait until they registered."""
        self.shared.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port()
            self.manager = self._spawn([
                command("mapreduce-manager"), "--host", LOCALHOST, "--port",
                str(self.port), "--shared_dir", str(self.shared),
                *options_of(self.settings.manager)], self.manager_log)
            if wait_listening(self.manager, self.port):
                break
            if attempt == START_ATTEMPTS:
                raise RuntimeError(f"the Manager exited with status "
                                   f"{self.manager.returncode}; see "
                                   f"{self.manager_log}")
        for _ in range(self.settings.workers):
            self.add_worker()
        self.wait_registered(self.settings.workers)
        return self

    def _spawn(self, args, logfile):
        """Start one command with its log file and the run's environment."""
        options = ["--logfile", str(logfile), "--loglevel",
                   self.settings.loglevel]
        if self.settings.secret_file is not None:
            options += ["--secret-file", str(self.settings.secret_file)]
        return self._processes.enter_context(
            spawn([*args, *options], env=self.settings.env))

    def add_worker(self, port=None):
        """Start a Worker process on `port` (default: free); return its port.

        A Worker that exits at once lost its free port to someone else:
        it is started on another one.
        """
        for _ in range(START_ATTEMPTS):
            worker_port = port or free_port()
            process = self._spawn([
                command("mapreduce-worker"), "--host", LOCALHOST, "--port",
                str(worker_port), "--manager-port", str(self.port),
                *options_of(self.settings.worker)],
                self.logs / f"worker-{worker_port}.log")
            self.workers[worker_port] = process
            if wait_listening(process, worker_port) or port:
                return worker_port
        raise RuntimeError("could not start a Worker process")

    def stop(self):
        """Shut the cluster down; kill what does not exit in time."""
        if self.manager is not None and self.manager.poll() is None:
            if self.secret is None:
                shutdown(self.port)
            else:
                with contextlib.suppress(client.ClientError):
                    client.shut_down(self.address)
        for process in [self.manager, *self.workers.values()]:
            if process is not None:
                stop_process(process)
        self._processes.close()


def shutdown(port, host=LOCALHOST):
    """Send a `shutdown` message to host:port; ignore a refused connection."""
    with contextlib.suppress(OSError):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(protocol.encode(protocol.Shutdown()))
