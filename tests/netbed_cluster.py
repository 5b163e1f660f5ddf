"""A cluster of the real commands in a network test bed (tests/netbed.py).

The Manager runs on host `manager`, one Worker on each `workerN` host and
`mapreduce-submit` on `client`, every one of them the console command of
the active virtual environment, started with `ip netns exec` and bound to
its host's own address, on the default ports (each host has its own).
Their logs go to files; `LogWatch` follows a log file and stamps each line
with the moment it was first seen, so that a test can wait for a line and
measure how long after a cut it came.
"""

import contextlib
import dataclasses
import os
import pathlib
import re
import subprocess
import time
import typing

from mapreduce.localcluster import command, options_of, spawn, stop_process

MANAGER_PORT = 6000
WORKER_PORT = 6001
WAIT = 60.0


def remote_worker(address):
    """Return how the Manager's log names the Worker at `address`."""
    return rf"RemoteWorker\(host='{re.escape(address)}', port={WORKER_PORT}\)"


class LogWatch:
    """Follows one log file; keeps each line with the time it was seen."""

    def __init__(self, path):
        """Follow `path` (it may not exist yet)."""
        self.path = pathlib.Path(path)
        self.lines = []  # (time.monotonic() when first seen, text)
        self._used = 0  # Bytes of the file already in lines.

    def poll(self):
        """Take in the whole lines added to the file since the last poll."""
        try:
            with open(self.path, "rb") as file:
                file.seek(self._used)
                data = file.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        if end:
            now = time.monotonic()
            self.lines.extend((now, line) for line in data[:end].decode(
                "utf-8", "replace").splitlines())
            self._used += end

    def grep(self, pattern, since=0.0):
        """Return the (time, line) pairs seen at `since` or later matching."""
        self.poll()
        regex = re.compile(pattern)
        return [(stamp, line) for stamp, line in self.lines
                if stamp >= since and regex.search(line)]

    def wait(self, pattern, count=1, timeout=WAIT, since=0.0):
        """Wait until `count` lines match `pattern`; return the matches."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.grep(pattern, since)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {count} "
                    f"line(s) matching {pattern!r} in {self.path}")
            time.sleep(0.02)

    def texts(self):
        """Return every line seen so far, without times."""
        self.poll()
        return [line for _, line in self.lines]


@dataclasses.dataclass
class BedClusterOptions:
    """How a cluster's processes run.

    `env` adds variables to every process's environment (mappers and
    reducers inherit them from their Worker); `manager_loglevel` debug
    shows every heartbeat the Manager receives; `detach` starts the
    processes in sessions of their own so that they outlive the caller.
    `secret_file`, when set, goes to every command as `--secret-file`
    (a signed cluster); `manager_settings` and `worker_settings` are
    hidden timing options (`{"heartbeat_timeout": 4}`), for scenarios
    that need no more than a shorter dead timeout.
    """

    env: dict = dataclasses.field(default_factory=dict)
    manager_loglevel: str = "debug"
    worker_loglevel: str = "info"
    detach: bool = False
    secret_file: typing.Optional[pathlib.Path] = None
    manager_settings: dict = dataclasses.field(default_factory=dict)
    worker_settings: dict = dataclasses.field(default_factory=dict)

    def secret_options(self):
        """Return `--secret-file PATH`, or nothing for an unsigned cluster."""
        if self.secret_file is None:
            return []
        return ["--secret-file", str(self.secret_file)]


class BedCluster:
    """The real commands running in a bed; logs and files under `workdir`."""

    def __init__(self, bed, workdir, options=None):
        """Prepare the directories; start nothing yet."""
        self.bed = bed
        self.workdir = pathlib.Path(workdir)
        self.options = options or BedClusterOptions()
        for name in ("logs", "shared", "tmp"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        self.processes = {}
        self._watches = {}
        self.following = None  # The Popen of the last follow_job.

    def logfile(self, host):
        """Return the log file of the process on `host`."""
        return self.workdir / "logs" / f"{host}.log"

    def log(self, host):
        """Return the LogWatch of the process on `host`."""
        if host not in self._watches:
            self._watches[host] = LogWatch(self.logfile(host))
        return self._watches[host]

    def _spawn(self, host, argv):
        """Start `argv` on `host`; its stdout and stderr go to a file."""
        env = {**os.environ, "TMPDIR": str(self.workdir / "tmp"),
               **self.options.env}
        with open(self.workdir / "logs" / f"{host}.out", "ab") as out:
            # Kept in self.processes; stop() reaps it.
            process = spawn(self.bed.command(host, argv), env=env,
                            stdout=out, stderr=out,
                            start_new_session=self.options.detach)
        self.processes[host] = process
        return process

    def _died(self, host):
        """Tell whether the process started on `host` has exited."""
        process = self.processes.get(host)
        return process is not None and process.poll() is not None

    def start_manager(self, timeout=WAIT):
        """Start the Manager; wait until it listens; return its Popen."""
        address = self.bed.host("manager").address
        since = time.monotonic()
        process = self._spawn("manager", [
            command("mapreduce-manager"), "--host", address,
            "--port", MANAGER_PORT, "--logfile", self.logfile("manager"),
            "--loglevel", self.options.manager_loglevel,
            "--shared_dir", self.workdir / "shared",
            *self.options.secret_options(),
            *options_of(self.options.manager_settings)])
        self._wait_line("manager", r"Listening on", since, timeout)
        return process

    def start_worker(self, host, timeout=WAIT):
        """Start the Worker on `host`; wait until the Manager registered it."""
        address = self.bed.host(host).address
        since = time.monotonic()
        process = self._spawn(host, [
            command("mapreduce-worker"), "--host", address,
            "--port", WORKER_PORT,
            "--manager-host", self.bed.host("manager").address,
            "--manager-port", MANAGER_PORT, "--logfile", self.logfile(host),
            "--loglevel", self.options.worker_loglevel,
            *self.options.secret_options(),
            *options_of(self.options.worker_settings)])
        self.log("manager").wait(rf"Registered {remote_worker(address)}",
                                 since=since, timeout=timeout)
        return process

    def _wait_line(self, host, pattern, since, timeout):
        """Wait for a line of `host`'s log; fail early if it exited."""
        deadline = time.monotonic() + timeout
        while not self.log(host).grep(pattern, since):
            if self._died(host) or time.monotonic() > deadline:
                out = self.workdir / "logs" / f"{host}.out"
                raise AssertionError(
                    f"{host}: no line matching {pattern!r} in "
                    f"{self.logfile(host)}; {out}: "
                    f"{out.read_text(errors='replace')[-500:]}")
            time.sleep(0.02)

    def start(self):
        """Start the Manager and a Worker on every worker host."""
        self.start_manager()
        for host in self.worker_hosts():
            self.start_worker(host)
        return self

    def worker_hosts(self):
        """Return the names of the bed's worker hosts."""
        return [name for name in self.bed.hosts if name.startswith("worker")]

    def submit(self, *args, host="client"):
        """Run `mapreduce-submit ARGS` on `host`, to the Manager."""
        argv = self.bed.command(host, [
            command("mapreduce-submit"),
            "--host", self.bed.host("manager").address,
            "--port", MANAGER_PORT, *self.options.secret_options(), *args])
        return subprocess.run(argv, capture_output=True, text=True,
                              check=False, timeout=WAIT)

    def follow_job(self, job):
        """Submit `job` with `mapreduce-submit --wait` on the client host.

        Returns the command's Popen (text pipes): it exits once the
        Manager reports the job's end, 0 only if it finished. The
        caller waits for it (`job_outcome`).
        """
        return spawn(self.bed.command("client", [
            command("mapreduce-submit"),
            "--host", self.bed.host("manager").address,
            "--port", MANAGER_PORT, *self.options.secret_options(),
            *job.arguments(), "--wait"]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def job_outcome(process, timeout=WAIT):
        """Wait for a `follow_job` command; fail unless the job finished."""
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        assert process.returncode == 0, f"the job did not finish:\n{out}{err}"
        return out

    def submit_job(self, job):
        """Submit `job` (a JobSpec) from the client; fail if refused."""
        result = self.submit(*job.arguments())
        if result.returncode != 0:
            raise AssertionError(f"mapreduce-submit failed: "
                                 f"{result.stderr.strip()}")
        return result

    def stop(self, timeout=15.0, grace=3.0):
        """Heal every host, shut the cluster down, reap the processes.

        The Manager gets `timeout` seconds to exit, the Workers `grace`
        seconds more (one it gave up on is never told to stop); then what
        is left is killed. Bed.destroy kills anything else on the hosts.
        """
        for host in self.bed.hosts:
            with contextlib.suppress(Exception):
                self.bed.heal(host)
        with contextlib.suppress(Exception):
            self.submit("--shutdown")
        manager = self.processes.get("manager")
        if manager is not None:
            stop_process(manager, timeout)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            stop_process(process, max(0.0, deadline - time.monotonic()))


@dataclasses.dataclass
class JobSpec:
    """A job to submit: directories, executables and task counts."""

    input: pathlib.Path
    output: pathlib.Path
    mapper: pathlib.Path
    reducer: pathlib.Path
    mappers: int = 3
    reducers: int = 2

    def arguments(self):
        """Return the `mapreduce-submit` options of the job."""
        return ["--input", self.input, "--output", self.output,
                "--mapper", self.mapper, "--reducer", self.reducer,
                "--nmappers", self.mappers, "--nreducers", self.reducers]
