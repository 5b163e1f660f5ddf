"""Helpers shared by the tests: ports, waiting, fake peers, real processes.

Everything here is real: loopback sockets, threads running a real Manager or
Worker, child processes running the real commands.
"""

import contextlib
import errno
import itertools
import json
import os
import pathlib
import queue
import socket
import subprocess
import sys
import threading
import time

from mapreduce.manager import Manager
from mapreduce.worker import Worker

TESTDATA = pathlib.Path(__file__).resolve().parent / "testdata"
EXEC = TESTDATA / "exec"
WAIT = 30.0
# Tries at a free port: one found free may be taken before it is bound.
START_ATTEMPTS = 5
MARKER_SERIALS = itertools.count()  # Numbers for FakePeer's markers.


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


def wait_for(predicate, timeout=WAIT, interval=0.01, what="a condition"):
    """Wait until `predicate()` is true and return its value, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what}")
        time.sleep(interval)


def port_open(port, host="localhost"):
    """Tell whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


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


class KeepError:
    """A block whose exception (an Exception, not an exit) is kept, not raised.

    For code run in a thread: the test reads `error` afterwards.
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
    """Run a blocking constructor (Manager or Worker) in a thread."""

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
        """Run the constructor, keeping any exception for the test."""
        with self._kept:
            target(**kwargs)

    def shutdown(self, timeout=WAIT):
        """Send `shutdown` and wait for the constructor to return."""
        if self.thread.is_alive():
            with contextlib.suppress(OSError):
                send_json(self.port, {"message_type": "shutdown"})
        self.join(timeout)

    def join(self, timeout=WAIT):
        """Wait for the constructor to return; fail if it raised."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "did not stop in time"
        assert self.error is None, f"raised {self.error!r}"


def port_is_free(port):
    """Tell whether `port` can be bound, for TCP and UDP, right now."""
    try:
        tcp, udp = _listen_on(port, udp=True)
    except OSError:
        return False
    tcp.close()
    udp.close()
    return True


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


def port_taken(error):
    """Tell whether `error` says that the port was in use."""
    return isinstance(error, OSError) and error.errno == errno.EADDRINUSE


def start_in_thread(target, port=None, **kwargs):
    """Run `target` in a thread on `port`; return the InThread.

    Without a `port`, a free one is chosen, and another one if that was
    taken before `target` could bind it (by another test, say).
    """
    if port:
        return InThread(target, port=port, **kwargs)
    for _ in range(START_ATTEMPTS - 1):
        started = InThread(target, port=free_port(), **kwargs)
        if started.thread.is_alive() or not port_taken(started.error):
            return started
    return InThread(target, port=free_port(), **kwargs)


def start_manager(port=None, **kwargs):
    """Run a Manager in a thread on `port` (default: free); return it."""
    return start_in_thread(Manager, port, host="localhost", **kwargs)


def start_worker(manager_port, port=None, **kwargs):
    """Run a Worker in a thread on `port` (default: free); return it."""
    return start_in_thread(Worker, port, host="localhost",
                           manager_host="localhost",
                           manager_port=manager_port, **kwargs)


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


def pipeline_output(input_dir, mapper, reducer):
    """Return the lines of `cat input/* | map | LC_ALL=C sort | reduce`."""
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
