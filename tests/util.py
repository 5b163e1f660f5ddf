"""Helpers shared by the tests: ports, waiting, fake peers, real processes.

Everything here is real: loopback sockets, threads running a real Manager or
Worker, child processes running the real commands.
"""

import contextlib
import itertools
import json
import os
import pathlib
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import shutil
import time

import pytest

from mapreduce.localcluster import (
    START_ATTEMPTS, WAIT, free_port, port_taken, start_in_thread,
    start_worker_thread, wait_for,
)
from mapreduce.manager import Manager

TESTDATA = pathlib.Path(__file__).resolve().parent / "testdata"
EXEC = TESTDATA / "exec"
MARKER_SERIALS = itertools.count()  # Numbers for FakePeer's markers.


def send_json(port, obj, host="localhost"):
    """Send one TCP message (a JSON object, or raw bytes) to host:port."""
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(data)


def send_udp(port, obj, host="localhost"):
    """Send one datagram (a JSON object, or raw bytes) to host:port."""
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, (host, port))


def _listen_on(port, udp):
    """Return a listening TCP socket on `port`, and a UDP one if `udp`."""
    with contextlib.ExitStack() as on_failure:
        tcp = on_failure.enter_context(
            socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("127.0.0.1", port))
        tcp.listen(128)
        tcp.settimeout(0.1)
        datagrams = None
        if udp:
            datagrams = on_failure.enter_context(
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            datagrams.bind(("127.0.0.1", port))
            datagrams.settimeout(0.1)
        on_failure.pop_all()
        return tcp, datagrams


def listen(port=None, udp=False):
    """Listen on `port`, or on a free one (another if it gets taken).

    Returns the TCP socket and the UDP socket (None unless `udp`).
    """
    for _ in range(0 if port else START_ATTEMPTS - 1):
        try:
            return _listen_on(free_port(), udp)
        except OSError as exc:
            if not port_taken(exc):
                raise
    return _listen_on(port or free_port(), udp)


class Received:
    """The messages a FakePeer received, appended and read under a lock."""

    def __init__(self):
        """Nothing received yet."""
        self._lock = threading.Lock()
        self._messages = []

    def append(self, message):
        """Add one message."""
        with self._lock:
            self._messages.append(message)

    def copy(self):
        """Return a copy of the messages so far, in order."""
        with self._lock:
            return list(self._messages)


class FakePeer:
    """A TCP (and optionally UDP) listener that queues the objects it gets.

    Stands in for a Worker or a Manager. Each connection is read to EOF and
    decoded; `next()` returns the next message, `messages` is a copy of all
    of them so far (safe to read while the listener delivers more). With
    `answer`, a function of the received object that returns an object or
    None, the answer is sent back on the same connection before it closes.
    """

    def __init__(self, port=None, udp=False, answer=None):
        """Listen on 127.0.0.1:`port` (default: a free port)."""
        self.answer = answer
        self._tcp, self._udp = listen(port, udp)
        self.port = self._tcp.getsockname()[1]
        self._received = Received()
        self.queue = queue.Queue()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve_tcp,
                                          daemon=True)]
        if udp:
            self._threads.append(threading.Thread(target=self._serve_udp,
                                                  daemon=True))
        for thread in self._threads:
            thread.start()

    def _deliver(self, data):
        """Decode and queue one message; return the answer to send, if any.

        Junk is queued as a typeless message.
        """
        try:
            obj = json.loads(data)
        except ValueError:
            obj = {"message_type": None, "undecodable": repr(data)}
        answer = None
        if self.answer is not None and isinstance(obj, dict):
            answer = self.answer(obj)
        self._received.append(obj)
        self.queue.put(obj)
        return answer

    @property
    def messages(self):
        """Return a copy of the messages received so far, in order."""
        return self._received.copy()

    def _serve_tcp(self):
        """Accept connections and read each to EOF."""
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(5)
                chunks = []
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                answer = self._deliver(b"".join(chunks))
                if answer is not None:
                    with contextlib.suppress(OSError):
                        conn.sendall(json.dumps(answer).encode())

    def _serve_udp(self):
        """Receive datagrams."""
        while not self._stop.is_set():
            try:
                data = self._udp.recv(65536)
            except (socket.timeout, OSError):
                continue
            self._deliver(data)

    def next(self, timeout=WAIT, skip=("heartbeat",)):
        """Return the next message whose type is not in `skip`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no message arrived in time")
            try:
                msg = self.queue.get(timeout=remaining)
            except queue.Empty as exc:
                raise AssertionError("no message arrived in time") from exc
            if msg.get("message_type") not in skip:
                return msg

    def expect_none(self, within=0.5, skip=("heartbeat",)):
        """Fail if a message not in `skip` arrives within `within` s."""
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                msg = self.queue.get(timeout=remaining)
            except queue.Empty:
                return
            if msg.get("message_type") not in skip:
                raise AssertionError(f"unexpected message {msg}")

    def expect_no_more(self, skip=("heartbeat",)):
        """Fail if a message not in `skip` reached us before this call.

        For senders that are done (a command that has exited): a marker
        sent now over TCP is accepted after every earlier connection, so
        once it is back, all that came before it has been seen. Any
        connection counts, even one that sent nothing.
        """
        marker = {"message_type": "fake-peer-marker",
                  "serial": next(MARKER_SERIALS)}
        send_json(self.port, marker)
        while (msg := self.next(skip=())) != marker:
            if msg.get("message_type") not in skip:
                raise AssertionError(f"unexpected message {msg}")

    def close(self):
        """Stop listening."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._tcp.close()
        if self._udp is not None:
            self._udp.close()

    def __enter__(self):
        """Use as a context manager."""
        return self

    def __exit__(self, *exc_info):
        """Close on leaving the block."""
        self.close()


def start_manager(port=None, **kwargs):
    """Run the spec's Manager in a thread on `port` (default: free)."""
    return start_in_thread(Manager, port, host="localhost", **kwargs)


def start_worker(manager_port, port=None, **kwargs):
    """Run a Worker in a thread on `port` (default: free); return it."""
    return start_worker_thread(manager_port, port, **kwargs)


def register(peer, manager_port):
    """Register fake Worker `peer` with the Manager and await the ack."""
    send_json(manager_port, {"message_type": "register",
                             "worker_host": "localhost",
                             "worker_port": peer.port})
    msg = peer.next()
    assert msg == {"message_type": "register_ack"}, msg


def job_message(input_dir, output_dir, mapper=EXEC / "wc_map.sh",
                reducer=EXEC / "wc_reduce.sh", *, num_mappers=2,
                num_reducers=2):
    """Return a `new_manager_job` message with absolute paths."""
    return {
        "message_type": "new_manager_job",
        "input_directory": str(input_dir),
        "output_directory": str(output_dir),
        "mapper_executable": str(mapper),
        "reducer_executable": str(reducer),
        "num_mappers": num_mappers,
        "num_reducers": num_reducers,
    }


def wait_for_output(output_dir, num_reducers, timeout=WAIT):
    """Wait until all `num_reducers` part files exist in `output_dir`."""
    names = [f"part-{r:05d}" for r in range(num_reducers)]
    wait_for(lambda: all((pathlib.Path(output_dir) / n).exists()
                         for n in names),
             timeout=timeout, what=f"{num_reducers} part files")


def run_command(*args, **kwargs):
    """Run one of the project's commands with this interpreter's scripts."""
    scripts = pathlib.Path(sys.executable).parent
    return subprocess.run([str(scripts / args[0]), *map(str, args[1:])],
                          capture_output=True, text=True, check=False,
                          **kwargs)


def find_madoop():
    """Return the path of `madoop`: this environment's, else PATH's.

    Skips the test, saying so in one line, when there is none.
    """
    scripts = pathlib.Path(sys.executable).parent
    if (scripts / "madoop").is_file():
        return scripts / "madoop"
    found = shutil.which("madoop")
    if found is None:
        pytest.skip("madoop is not installed in this environment nor on "
                    "PATH; install the dev extra: pip install -e '.[dev]'")
    return pathlib.Path(found)


# Child processes of tasks, and temporary files.

def process_running(pid):
    """Tell whether process `pid` exists and is not a zombie."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses.
    return stat.rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")


def process_gone(pid):
    """Tell whether process `pid` no longer runs (a zombie counts as gone)."""
    return not process_running(pid)


def read_pids(pidfile):
    """Wait for t_hang.sh to write its two pids; return them."""
    wait_for(pidfile.exists, what="t_hang.sh to start")
    pids = [int(pid) for pid in pidfile.read_text().split()]
    assert len(pids) == 2
    return pids


def hang_pidfile(path, monkeypatch):
    """Make t_hang.sh write its pids to `path`; kill them at the end.

    A generator for pytest fixtures: yields `path`, then kills whatever
    t_hang.sh left running (only if a test failed).
    """
    monkeypatch.setenv("T_PIDFILE", str(path))
    yield path
    if path.exists():
        for pid in map(int, path.read_text().split()):
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)


def redirect_temp(directory, monkeypatch):
    """Send every temporary file into `directory` (made here); return it.

    TMPDIR is set for child processes (`sort`), and `tempfile.tempdir`
    because tempfile caches the directory it found first.
    """
    directory.mkdir()
    monkeypatch.setenv("TMPDIR", str(directory))
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


class SlowResolver:
    """The system's resolver, but slow for one made-up host name.

    A resolver that is slow to answer cannot be had on demand, so
    `socket.gethostbyname` is wrapped: for `name` it waits until
    `release` (then answers 127.0.0.1, or fails if `fails`), and says
    when it started and when it is done; any other name goes to the real
    resolver.
    """

    def __init__(self, name, fails=False):
        """Hold lookups of `name` until released."""
        self.name = name
        self.fails = fails
        self.release = threading.Event()
        self.started = threading.Event()
        self.done = threading.Event()
        self.real = socket.gethostbyname

    def __call__(self, host):
        """Look `host` up: slowly, if it is the made-up name."""
        if host != self.name:
            return self.real(host)
        self.started.set()
        self.release.wait(WAIT)
        self.done.set()
        if self.fails:
            raise socket.gaierror(socket.EAI_NONAME, "Name does not resolve")
        return "127.0.0.1"
