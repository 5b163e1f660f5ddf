"""Hostile input: fuzz the Manager's and the Workers' ports during a job.

While a real job runs (a Manager in this process, two Worker processes),
seeded fuzzers send the Manager's TCP and UDP port and the Workers' TCP
port random bytes, truncated and huge (> 1 MiB) messages, JSON that is not
an object, messages with missing fields and fields of the wrong type,
negative and enormous numbers, paths that do not exist, odd unicode, and
they hold hundreds of connections that never send, and open hundreds at
once. The job's output must stay right, every process must stay up and
answer, the Workers must keep beating, and a second job must complete.
(Workers listen on TCP only; datagrams sent to their port are counted but
nobody reads them.)

Well-formed messages that claim a real Worker's identity or a real task
are not sent: the protocol has no authentication, so a peer that speaks
it perfectly in someone else's name is believed (see the report).

All traffic stays on 127.0.0.1. Counts and time are bounded.
"""

import collections
import contextlib
import json
import logging
import random
import socket
import threading
import time

import pytest

from bench.chaos_runs import make_inputs
from mapreduce import client
from mapreduce.localcluster import (
    TaggedWorkers, free_port, job, kill_tagged, output_lines, pipeline_output,
    port_open, stop_process, wait_for,
)
from tests.logged import start_logged_manager
from tests.util import EXEC, job_message

HOST = "127.0.0.1"
SEED = 20240
FUZZ_SECONDS = 20.0          # Upper bound on the fuzzing itself.
TCP_PER_TARGET = 1200        # Fuzzed TCP messages per fuzzer thread.
UDP_MESSAGES = 1500          # Fuzzed datagrams to the Manager.
IDLE_MANAGER = 600           # More than the Manager keeps open (512).
IDLE_WORKER = 300
BURST = 300                  # Connections opened at once.
HUGE = 1 << 20               # The largest message a port accepts.
ODD_STRINGS = ("", " ", "\u0000", "\ud800", "\U0001f4a9" * 50,
               "\u202eevil", "../../../../etc/passwd", "a" * 5000,
               "caf\u00e9/\u65e5\u672c/\u0434\u0430", "\n\t\r", "%s%n%x")
ODD_NUMBERS = (-1, 0, -5, 70000, 10 ** 30, -10 ** 30, 2 ** 63, 2 ** 64)
WRONG_VALUES = (None, True, False, 1.5, -0.0, "7", [], {}, [1, 2],
                {"a": 1}, 10 ** 30, -1, "\ud800", ["\u0000"])
FIELDS = {
    "register": ("worker_host", "worker_port"),
    "heartbeat": ("worker_host", "worker_port"),
    "finished": ("task_id", "worker_host", "worker_port"),
    "task_failed": ("task_id", "worker_host", "worker_port", "error"),
    "new_manager_job": ("input_directory", "output_directory",
                        "mapper_executable", "reducer_executable",
                        "num_mappers", "num_reducers"),
    "new_map_task": ("task_id", "input_paths", "executable",
                     "output_directory", "num_partitions"),
    "new_reduce_task": ("task_id", "executable", "input_paths",
                        "output_directory"),
    "register_ack": (),
}


class Fuzzer:
    """Makes seeded hostile payloads; never a shutdown, never a spoof."""

    def __init__(self, seed, tmp_path, manager_port):
        """Prepare a random generator and the names it may use."""
        self.rng = random.Random(seed)
        self.tmp_path = tmp_path
        self.manager_port = manager_port
        self.closed_port = free_port()   # Nobody listens here.
        self.sequence = 0

    def _nowhere(self):
        """Return a path that does not exist (it may be odd unicode)."""
        return str(self.tmp_path / "nowhere" / self.rng.choice(ODD_STRINGS)
                   / f"x{self.rng.randrange(10 ** 6)}")

    def _stranger_id(self):
        """Return a task id that no real task has."""
        return self.rng.choice((-1, 10 ** 30, 2 ** 63, -2 ** 63,
                                10 ** 6 + self.rng.randrange(10 ** 6)))

    def _value(self, field):
        """Return a well-typed but hostile value for `field`."""
        rng = self.rng
        choices = {
            "task_id": self._stranger_id,
            "worker_port": lambda: rng.choice((*ODD_NUMBERS,
                                               self.closed_port)),
            # Hosts that fail without asking a resolver, or loopback.
            "worker_host": lambda: rng.choice((
                "", "\u0000", "a" * 64, "\ud800", "x" * 300, "127.0.0.1",
                "localhost")),
            "num_mappers": lambda: rng.choice((*ODD_NUMBERS, 10001)),
            "input_paths": lambda: [self._nowhere()
                                    for _ in range(rng.choice((0, 1, 3)))],
            "error": lambda: rng.choice(ODD_STRINGS) * rng.randint(1, 50),
        }
        choices["num_reducers"] = choices["num_partitions"] = \
            choices["num_mappers"]
        return choices.get(field, self._nowhere)()

    def message(self, kind=None):
        """Return a message object of the protocol with hostile values."""
        rng = self.rng
        kind = kind or rng.choice(sorted(FIELDS))
        obj = {"message_type": kind}
        for field in FIELDS[kind]:
            obj[field] = self._value(field)
        roll = rng.random()
        if FIELDS[kind] and roll < 0.3:
            obj[rng.choice(FIELDS[kind])] = rng.choice(WRONG_VALUES)
        elif FIELDS[kind] and roll < 0.45:
            del obj[rng.choice(FIELDS[kind])]
        elif roll < 0.5:
            obj["extra"] = rng.choice(WRONG_VALUES)
        return obj

    def payload(self):
        """Return the bytes of one hostile TCP message or datagram."""
        rng = self.rng
        self.sequence += 1
        choice = rng.randrange(10)
        if choice == 0:
            return rng.randbytes(rng.randint(0, 3000))
        if choice == 1:
            data = json.dumps(self.message()).encode()
            return data[:rng.randrange(len(data))]
        if choice == 2:
            return rng.choice((b"[]", b"42", b'"text"', b"null", b"true",
                               b"NaN", b"-Infinity", b"{}", b"{", b"}",
                               b"[" * 100000, b'{"a":' * 50000,
                               b"\xff\xfe{}", b'{"message_type": null}',
                               b'{"message_type": "shutdown_not"}'))
        if choice == 3:
            return json.dumps({"message_type": rng.choice(ODD_STRINGS)
                               or "nothing", "task_id": 1}).encode()
        return json.dumps(self.message()).encode()

    def huge(self):
        """Return a message a little larger than any port accepts."""
        if self.rng.random() < 0.5:
            return self.rng.randbytes(HUGE + 4096)
        return json.dumps({"message_type": "register", "worker_host":
                           "h" * (HUGE + 10), "worker_port": 1}).encode()

    def manager_only(self):
        """Return a hostile message only the Manager would act on."""
        rng = self.rng
        choice = rng.randrange(10)
        if choice == 0:
            # A job that can start: enormous num_mappers, real everything.
            return job_message(self.tmp_path / "input",
                               self.tmp_path / f"fuzz-out-{self.sequence}",
                               num_mappers=10 ** 30, num_reducers=1)
        if choice < 4:
            # A job with real paths but impossible numbers: rejected.
            return job_message(self.tmp_path / "input",
                               self.tmp_path / "fuzz-rejected",
                               num_mappers=rng.choice((0, -5, 2)),
                               num_reducers=rng.choice((0, -1, 10 ** 30,
                                                        10001)))
        if choice < 7:
            # A job whose output directory is something precious.
            return job_message(self.tmp_path / "input", rng.choice(
                ("/", ".", "..", str(self.tmp_path / "input"),
                 str(EXEC), "")))
        # A "Worker" that never answers or beats: the Manager's own port.
        return {"message_type": "register", "worker_host": "localhost",
                "worker_port": self.manager_port}

    def worker_only(self):
        """Return a well-formed task that a Worker runs and fails (or not)."""
        rng = self.rng
        if rng.random() < 0.5:
            return {"message_type": "new_map_task",
                    "task_id": self._stranger_id(),
                    "input_paths": [self._nowhere()],
                    "executable": str(EXEC / "wc_map.sh"),
                    "output_directory": str(self.tmp_path / "fuzz-maps"),
                    "num_partitions": rng.choice((0, -5, 10 ** 30, 2,
                                                  10 ** 9))}
        return {"message_type": "new_reduce_task",
                "task_id": self._stranger_id(), "input_paths": [],
                "executable": rng.choice((str(EXEC / "wc_reduce.sh"),
                                          self._nowhere(), "")),
                "output_directory": str(self.tmp_path / "fuzz-reduces")}


def send_raw(port, data, timeout=5.0):
    """Send bytes on one TCP connection; return False if the peer balked."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(data)
        return True
    except OSError:
        return False


def open_idle(port, count):
    """Open `count` connections to `port` that send nothing; return them."""
    sockets = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            sockets.append(socket.create_connection((HOST, port), timeout=5))
    return sockets


def burst(port, payloads):
    """Connect once per payload, all at the same time, then send them all."""
    sockets = open_idle(port, len(payloads))
    for sock, data in zip(sockets, payloads):
        with contextlib.suppress(OSError):
            sock.sendall(data)
    for sock in sockets:
        sock.close()
    return len(sockets)


class Counts:
    """Thread-safe tally of what was sent where."""

    def __init__(self):
        """Start at zero."""
        self._lock = threading.Lock()
        self.counts = collections.Counter()

    def add(self, key, number=1):
        """Count `number` more under `key`."""
        with self._lock:
            self.counts[key] += number

    def total(self):
        """Return the total over every key."""
        with self._lock:
            return sum(self.counts.values())


@pytest.fixture(name="cluster")
def fixture_cluster(tmp_path):
    """Give (manager, worker processes, log, tag); clean up afterwards."""
    shared = tmp_path / "shared"
    shared.mkdir()
    manager, log = start_logged_manager(level=logging.DEBUG,
                                        shared_dir=str(shared),
                                        heartbeat_timeout=4.0)
    tag = f"fuzz-{manager.port}"
    workers = {}
    try:
        spawner = TaggedWorkers(tmp_path, tag, tmp_path,
                                {"heartbeat_interval": 0.3})
        for _ in range(2):
            port, process = spawner.spawn_registered(manager.port)
            workers[port] = process
        yield manager, workers, log
    finally:
        try:
            manager.shutdown()
        finally:
            for process in workers.values():
                stop_process(process)
            kill_tagged(tag)
            log.detach()
            # Kept for whoever reads a failure.
            (tmp_path / "manager.log").write_text(
                "\n".join(log.lines()) + "\n", errors="backslashreplace")


def submit(port, new_job):
    """Submit `new_job` to the Manager on `port`; return its job id."""
    return client.submit(("localhost", port), new_job)


def job_state(port, job_id):
    """Return the state of job `job_id` now, as the status API tells."""
    return client.job_state(("localhost", port), job_id)[1]["state"]


def job_end(port, job_id):
    """Wait until job `job_id` ends; return how (the status API's state)."""
    return client.wait_for_job(("localhost", port), job_id, 120)["state"]


class Campaign:
    """The fuzzers, run in threads at the same time, and their tally."""

    def __init__(self, tmp_path, manager_port, worker_ports):
        """Aim at one Manager and some Workers; nothing is sent yet."""
        self.tmp_path = tmp_path
        self.manager_port = manager_port
        self.worker_ports = list(worker_ports)
        self.counts = Counts()
        self.deadline = None

    def _fuzzer(self, seed):
        """Return a Fuzzer for this campaign."""
        return Fuzzer(seed, self.tmp_path, self.manager_port)

    def _tcp(self, port, seed, extra):
        """Send hostile TCP messages to `port`; every tenth from `extra`."""
        fuzzer = self._fuzzer(seed)
        for number in range(TCP_PER_TARGET):
            if time.monotonic() > self.deadline:
                return
            if number % 100 == 0:
                data = fuzzer.huge()
            elif number % 10 == 0:
                data = json.dumps(extra(fuzzer)).encode()
            else:
                data = fuzzer.payload()
            send_raw(port, data)
            self.counts.add(f"TCP {port}")

    def _udp(self, seed):
        """Send hostile datagrams, mostly to the Manager."""
        fuzzer = self._fuzzer(seed)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for number in range(UDP_MESSAGES):
                if time.monotonic() > self.deadline:
                    return
                target = self.manager_port if number % 10 else \
                    fuzzer.rng.choice(self.worker_ports)
                with contextlib.suppress(OSError):
                    sock.sendto(fuzzer.payload()[:60000], (HOST, target))
                self.counts.add(f"UDP {target}")
                if number % 50 == 0:
                    time.sleep(0.01)  # Let the real heartbeats through.

    def run(self):
        """Hold idle connections, fuzz every port, burst; return seconds."""
        started = time.monotonic()
        self.deadline = started + FUZZ_SECONDS
        idle = open_idle(self.manager_port, IDLE_MANAGER)
        for port in self.worker_ports:
            idle += open_idle(port, IDLE_WORKER)
        self.counts.add("idle connections", len(idle))
        threads = [threading.Thread(target=self._udp, args=(SEED + 3,))]
        threads += [threading.Thread(target=self._tcp, args=(
            self.manager_port, SEED + number, Fuzzer.manager_only))
            for number in (1, 2)]
        threads += [threading.Thread(target=self._tcp, args=(
            port, SEED + 10 + number, Fuzzer.worker_only))
            for number, port in enumerate(self.worker_ports)]
        for thread in threads:
            thread.start()
        fuzzer = self._fuzzer(SEED + 4)
        for port in [self.manager_port, *self.worker_ports]:
            self.counts.add(f"burst {port}", burst(
                port, [fuzzer.payload() for _ in range(BURST)]))
        for thread in threads:
            thread.join()
        for sock in idle:
            sock.close()
        return time.monotonic() - started

    def report(self, seconds):
        """Return the tally as one line."""
        return (f"fuzzed {self.counts.total()} messages in {seconds:.1f}s: "
                + ", ".join(f"{key} {value}" for key, value
                            in sorted(self.counts.counts.items())))


def test_fuzz_during_a_job(cluster, tmp_path):
    """Hostile traffic on every port; the job and the processes survive."""
    manager, workers, log = cluster
    inputs = make_inputs(tmp_path / "input", 60, SEED)
    expected = pipeline_output(inputs, EXEC / "wc_map.sh",
                               EXEC / "wc_reduce.sh")
    output = tmp_path / "output"
    first = submit(manager.port, job(
        inputs, output, (EXEC / "c_slow_map.sh", EXEC / "c_slow_reduce.sh"),
        num_mappers=4, num_reducers=3))
    wait_for(lambda: job_state(manager.port, first) != "queued",
             what="the job to start")
    campaign = Campaign(tmp_path, manager.port, workers)
    print(campaign.report(campaign.run()))
    assert job_state(manager.port, first) == "running", \
        "the job ended before the fuzzing did; make it longer"
    assert campaign.counts.total() > 3000

    # The job's output is right.
    assert job_end(manager.port, first) == "finished"
    assert output_lines(output) == expected
    assert sorted(p.name for p in output.iterdir()) == [
        "part-00000", "part-00001", "part-00002"]

    # Everyone is up and answers; the Workers still beat.
    assert manager.thread.is_alive() and port_open(manager.port)
    for port, process in workers.items():
        assert process.poll() is None, f"Worker {port} died"
        assert port_open(port)
        beats = rf"Received Heartbeat\(worker_host='localhost', " \
                rf"worker_port={port}\)"
        log.wait_for(beats, count=len(log.grep(beats)) + 3)
    assert not log.grep(r"Error in callback"), log.grep(r"Error in callback")

    # A second job afterwards completes (after the fuzzed jobs queued).
    second = tmp_path / "second"
    assert job_end(manager.port, submit(manager.port, job(
        inputs, second, (EXEC / "wc_map.sh", EXEC / "wc_reduce.sh"),
        num_mappers=3, num_reducers=2))) == "finished"
    assert output_lines(second) == expected
    assert not (tmp_path / "fuzz-rejected").exists()
    for precious in (inputs, EXEC):
        assert precious.is_dir() and any(precious.iterdir())
