"""A local cluster of real processes: one Manager and some Workers.

The processes are the console scripts of the active environment
(`mapreduce-manager`, `mapreduce-worker`, `mapreduce-submit`), each with
its own log file, on free loopback ports, with a private shared dir.
"""

import json
import os
import socket
import subprocess
import sys
import time

from mapreduce import protocol
from tests.util import free_port

BIN = os.path.dirname(sys.executable)
POLL = 0.001
START_TIMEOUT = 20.0


def command(name):
    """Return the path of console script `name` next to this Python."""
    path = os.path.join(BIN, name)
    return path if os.path.exists(path) else name


def wait_until(condition, timeout, what):
    """Poll `condition()` every millisecond until true; return the time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for "
                               f"{what}")
        time.sleep(POLL)
    return time.monotonic()


def cpu_seconds(pid):
    """Return utime + stime of process `pid`, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    """Return the peak resident set size (VmHWM) of `pid`, in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for process {pid}")


class LogWatch:
    """Reads a growing log file and counts lines that contain a text."""

    def __init__(self, path):
        """Watch `path`, which may not exist yet."""
        self.path = path
        self.text = ""
        self._offset = 0

    def refresh(self):
        """Read what was appended since the last call; return all text."""
        try:
            with open(self.path, "rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return self.text
        self._offset += len(data)
        self.text += data.decode("utf-8", "replace")
        return self.text

    def count(self, needle):
        """Return how many times `needle` occurs in the log so far."""
        return self.refresh().count(needle)


class Cluster:
    """A Manager and `num_workers` Workers run as separate processes."""

    def __init__(self, directory, num_workers=2):
        """Start everything in `directory`; wait until Workers registered."""
        self.directory = directory
        self.shared = os.path.join(directory, "shared")
        self.logs = os.path.join(directory, "log")
        os.makedirs(self.shared, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        self.port = free_port()
        self.manager = None
        self.workers = []
        self.log = LogWatch(os.path.join(self.logs, "manager.log"))
        try:
            self._start(num_workers)
        except BaseException:
            self.stop()
            raise

    def _start(self, num_workers):
        """Start the Manager, wait for its port, then start the Workers."""
        for name in os.listdir(self.logs):
            os.unlink(os.path.join(self.logs, name))
        self.manager = self._spawn([
            command("mapreduce-manager"), "--host", "localhost", "--port",
            str(self.port), "--logfile", self.log.path, "--shared_dir",
            self.shared])
        wait_until(self._manager_listening, START_TIMEOUT, "the Manager")
        for _ in range(num_workers):
            port = free_port()
            self.workers.append(self._spawn([
                command("mapreduce-worker"), "--host", "localhost", "--port",
                str(port), "--manager-port", str(self.port), "--logfile",
                os.path.join(self.logs, f"worker-{port}.log")]))
        wait_until(lambda: self.log.count("Registered RemoteWorker")
                   >= num_workers, START_TIMEOUT, "Workers to register")

    @staticmethod
    def _spawn(args):
        """Start one process with no terminal input or output."""
        # Stopped in `stop`, not in a with block.
        # pylint: disable-next=consider-using-with
        return subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def _manager_listening(self):
        """Tell whether the Manager accepts TCP connections (or died)."""
        if self.manager.poll() is not None:
            raise RuntimeError(f"the Manager exited with status "
                               f"{self.manager.returncode}; see "
                               f"{self.log.path}")
        try:
            with socket.create_connection(("localhost", self.port), 0.2):
                return True
        except OSError:
            return False

    @property
    def pids(self):
        """Return the process ids: the Manager's, then the Workers'."""
        return [self.manager.pid] + [worker.pid for worker in self.workers]

    def submit_cli(self, input_dir, output_dir, mapper, reducer, nmappers,
                   nreducers):
        """Submit a job with `mapreduce-submit`; fail if it fails."""
        subprocess.run([
            command("mapreduce-submit"), "--port", str(self.port), "--input",
            input_dir, "--output", output_dir, "--mapper", mapper,
            "--reducer", reducer, "--nmappers", str(nmappers),
            "--nreducers", str(nreducers)],
            check=True, stdout=subprocess.DEVNULL)

    def submit_message(self, input_dir, output_dir, mapper, reducer,
                       nmappers, nreducers):
        """Send the `new_manager_job` message that mapreduce-submit sends."""
        msg = protocol.NewManagerJob(
            input_directory=os.path.abspath(input_dir),
            output_directory=os.path.abspath(output_dir),
            mapper_executable=os.path.abspath(mapper),
            reducer_executable=os.path.abspath(reducer),
            num_mappers=nmappers, num_reducers=nreducers)
        with socket.create_connection(("localhost", self.port)) as sock:
            sock.sendall(json.dumps(protocol.to_wire(msg)).encode())

    def wait_job(self, job_id, output_dir, nreducers, timeout):
        """Wait for job `job_id`; return (parts_time, finished_time).

        `parts_time` is when the last of the `nreducers` part files
        appeared in `output_dir`; `finished_time` is when the Manager's
        log said `Finished Job(job_id=...`. Both are time.monotonic().
        """
        names = [os.path.join(output_dir, f"part-{r:05d}")
                 for r in range(nreducers)]
        needle = f"Finished Job(job_id={job_id},"
        found = {}

        def done():
            if "parts" not in found and all(map(os.path.exists, names)):
                found["parts"] = time.monotonic()
            if "finished" not in found and needle in self.log.refresh():
                found["finished"] = time.monotonic()
            if self.manager.poll() is not None:
                raise RuntimeError("the Manager died; see " + self.log.path)
            if "[ERROR]" in self.log.text:
                raise RuntimeError("the Manager logged an error; see "
                                   + self.log.path)
            return len(found) == 2
        wait_until(done, timeout, f"job {job_id}")
        return found["parts"], found["finished"]

    def stop(self):
        """Shut the cluster down; kill what does not exit in time."""
        if self.manager is not None and self.manager.poll() is None:
            subprocess.run([command("mapreduce-submit"), "--port",
                            str(self.port), "--shutdown"], check=False,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        for process in [self.manager] + self.workers:
            if process is None:
                continue
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self):
        """Use the cluster in a with block."""
        return self

    def __exit__(self, *exc_info):
        """Stop the cluster at the end of the with block."""
        self.stop()
