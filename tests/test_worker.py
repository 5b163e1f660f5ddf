"""A real Worker against a fake Manager, over real loopback sockets.

The fake Manager (tests.util.FakePeer) listens on TCP and UDP and records
what the Worker sends; the test plays the Manager's part by hand.
"""

import json
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from mapreduce.localcluster import (
    free_port, pipeline_output, spawned_on_free_port, wait_for,
)
from mapreduce.worker import WorkerOptions, WorkerServer, processes
from mapreduce.worker.stderr import ChildStderr
from mapreduce.worker.tasks import run_map_task
from tests.util import (
    EXEC, TESTDATA, FakePeer, process_gone, read_pids, send_json, start_worker,
)

HEARTBEAT = 0.2
RETRY = 0.2
STOP_WAIT = 10.0  # Seconds a Worker may take to stop: "promptly".
WC_MAP = EXEC / "wc_map.sh"
WC_REDUCE = EXEC / "wc_reduce.sh"


# Helpers.

def next_of(peer, message_type, timeout=30.0):
    """Return the next message of `message_type`, dropping the others."""
    others = {"shutdown", "register", "register_ack", "heartbeat", "finished",
              "task_failed"} - {message_type}
    return peer.next(timeout=timeout, skip=tuple(others))


def map_task(task_id, inputs, executable, output_directory, partitions):
    """Return a `new_map_task` message."""
    return {"message_type": "new_map_task", "task_id": task_id,
            "input_paths": [str(path) for path in inputs],
            "executable": str(executable),
            "output_directory": str(output_directory),
            "num_partitions": partitions}


def reduce_task(task_id, executable, inputs, output_directory):
    """Return a `new_reduce_task` message."""
    return {"message_type": "new_reduce_task", "task_id": task_id,
            "executable": str(executable),
            "input_paths": [str(path) for path in inputs],
            "output_directory": str(output_directory)}


def finished(task_id, worker_port):
    """Return the `finished` message a Worker must send, keys in order."""
    return {"message_type": "finished", "task_id": task_id,
            "worker_host": "localhost", "worker_port": worker_port}


def assert_exact(msg, expected):
    """Check a message's keys and values, and the order of its keys."""
    assert msg == expected
    assert list(msg) == list(expected)


def acknowledge(manager, worker_port):
    """Play the Manager's part of registration; wait for a first beat."""
    msg = next_of(manager, "register")
    assert_exact(msg, {"message_type": "register",
                       "worker_host": "localhost",
                       "worker_port": worker_port})
    send_json(worker_port, {"message_type": "register_ack"})
    next_of(manager, "heartbeat")


INPUTS = sorted((TESTDATA / "input").iterdir())


# Fixtures.

@pytest.fixture(name="manager")
def fixture_manager():
    """Give a fake Manager listening on TCP and UDP."""
    with FakePeer(udp=True) as peer:
        yield peer


@pytest.fixture(name="worker")
def fixture_worker(manager, local_tmp):
    """Give a real Worker (in a thread) that talks to the fake Manager."""
    assert local_tmp.is_dir()
    worker = start_worker(manager.port, heartbeat_interval=HEARTBEAT,
                          retry_interval=RETRY)
    try:
        yield worker
    finally:
        worker.shutdown(STOP_WAIT)


@pytest.fixture(name="registered")
def fixture_registered(manager, worker):
    """Give a Worker that has registered and is beating."""
    acknowledge(manager, worker.port)
    return worker


# Start-up.

def udp_messages(sock, within):
    """Return the datagrams (decoded) that `sock` gets within `within` s."""
    messages = []
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            messages.append(json.loads(sock.recv(65536)))
        except socket.timeout:
            break
    return messages


def test_registers_then_beats_only_after_ack(local_tmp):
    """register by TCP (exact keys); heartbeats by UDP after register_ack."""
    with FakePeer() as manager, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", manager.port))
        worker = start_worker(manager.port, heartbeat_interval=HEARTBEAT,
                              retry_interval=RETRY)
        try:
            msg = manager.next(skip=())
            assert_exact(msg, {"message_type": "register",
                               "worker_host": "localhost",
                               "worker_port": worker.port})
            # Until acknowledged: no heartbeat, neither by UDP nor by TCP.
            assert not udp_messages(udp, 3 * HEARTBEAT)
            manager.expect_none(within=0.1, skip=("register",))

            send_json(worker.port, {"message_type": "register_ack"})
            udp.settimeout(STOP_WAIT)
            first = json.loads(udp.recv(65536))
            start = time.monotonic()
            assert_exact(first, {"message_type": "heartbeat",
                                 "worker_host": "localhost",
                                 "worker_port": worker.port})
            for _ in range(5):
                assert_exact(json.loads(udp.recv(65536)), first)
            elapsed = time.monotonic() - start
            # Five intervals: never much faster than asked, nor far slower.
            assert 5 * HEARTBEAT * 0.7 <= elapsed <= 5 * HEARTBEAT + 10
            # Registered: nothing more by TCP (a register may have been on
            # its way when the ack went out).
            while not manager.queue.empty():
                assert manager.queue.get()["message_type"] == "register"
            manager.expect_none(within=3 * RETRY, skip=())
        finally:
            worker.shutdown(STOP_WAIT)
    assert not any(local_tmp.iterdir())


def test_second_ack_changes_nothing(manager, registered):
    """A repeated register_ack neither doubles heartbeats nor fails."""
    send_json(registered.port, {"message_type": "register_ack"})
    next_of(manager, "heartbeat")
    start = time.monotonic()
    for _ in range(5):
        next_of(manager, "heartbeat")
    assert time.monotonic() - start >= 5 * HEARTBEAT * 0.7


def test_registers_once_the_manager_appears(local_tmp, caplog):
    """Started before the Manager, the Worker registers when it listens."""
    manager_port = free_port()
    worker = start_worker(manager_port, heartbeat_interval=HEARTBEAT,
                          retry_interval=RETRY)
    try:
        wait_for(lambda: "Cannot reach the Manager" in caplog.text,
                 what="a failed registration")
        with FakePeer(port=manager_port, udp=True) as manager:
            acknowledge(manager, worker.port)
            worker.shutdown(STOP_WAIT)
    finally:
        worker.shutdown(STOP_WAIT)
    assert not any(local_tmp.iterdir())


# Built, started and stopped by code.

def worker_threads():
    """Return the live threads a Worker makes (its loop, its task pool)."""
    return [thread.name for thread in threading.enumerate()
            if thread.name.startswith(("worker-", "mapreduce-task"))]


def test_worker_server_built_started_stopped(manager, local_tmp, caplog):
    """Built: nothing runs. Started: it registers under its real port, and
    its log carries that port from the first line. Stopped: every thread
    of it has ended."""
    caplog.set_level(logging.DEBUG)
    server = WorkerServer("localhost", 0, "localhost", manager.port,
                          options=WorkerOptions(heartbeat_interval=HEARTBEAT,
                                                retry_interval=RETRY))
    assert server.stop(STOP_WAIT)  # Never started: nothing to stop.
    assert not worker_threads()
    manager.expect_none(within=0.1, skip=())
    try:
        server.start()
        assert server.port != 0
        acknowledge(manager, server.port)
        assert server.registered
    finally:
        assert server.stop(STOP_WAIT)
    assert not worker_threads()
    names = {record.name for record in caplog.records
             if record.name.startswith("Worker:")}
    assert names == {f"Worker:{server.port}"}
    assert not port_is_open(server.port)
    assert not any(local_tmp.iterdir())


def port_is_open(port):
    """Tell whether something accepts TCP connections on `port`."""
    with socket.socket() as sock:
        return sock.connect_ex(("localhost", port)) == 0


def test_worker_returns_with_every_thread_joined(manager, local_tmp):
    """The specification's Worker(...) returns after shutdown, all joined."""
    worker = start_worker(manager.port, heartbeat_interval=HEARTBEAT,
                          retry_interval=RETRY)
    acknowledge(manager, worker.port)
    send_json(worker.port, map_task(0, INPUTS, WC_MAP, local_tmp, 1))
    next_of(manager, "finished")
    worker.shutdown(STOP_WAIT)
    assert not worker_threads()


# Children's stderr, read by the Worker's loop.

NOISY = """#!/bin/sh
# A mapper that complains a lot on stderr, then fails.
cat > /dev/null
i=0
while [ $i -lt $LINES ]; do echo "noise line $i" >&2; i=$((i + 1)); done
echo "the very last word" >&2
exit 4
"""


def noisy_mapper(tmp_path, monkeypatch, lines):
    """Write a mapper that writes `lines` lines and a last one on stderr."""
    path = tmp_path / "noisy.sh"
    path.write_text(NOISY)
    path.chmod(0o755)
    monkeypatch.setenv("LINES", str(lines))
    return path


def test_stderr_is_read_by_the_loop(manager, registered, tmp_path,
                                    monkeypatch, caplog):
    """Each stderr line is logged by the loop's thread; the tail is in the
    error, last line included (the exit is judged after the pipe's end)."""
    caplog.set_level(logging.DEBUG)
    mapper = noisy_mapper(tmp_path, monkeypatch, 3)
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port, map_task(5, INPUTS[:1], mapper, job, 2))
    msg = next_of(manager, "task_failed")
    assert "status 4" in msg["error"]
    assert msg["error"].endswith(
        "; stderr: noise line 0\nnoise line 1\nnoise line 2\n"
        "the very last word")
    lines = [record for record in caplog.records
             if record.name == f"Worker:{registered.port}"
             and "noisy.sh: " in record.getMessage()]
    assert [record.getMessage() for record in lines] == [
        "noisy.sh: noise line 0", "noisy.sh: noise line 1",
        "noisy.sh: noise line 2", "noisy.sh: the very last word"]
    # Logged on the thread that runs the Worker's loop, not the task's.
    assert {record.thread for record in lines} == {registered.thread.ident}


def test_stderr_tail_is_the_last_two_kb(manager, registered, tmp_path,
                                        monkeypatch):
    """A child that writes much on stderr: the error keeps its end only."""
    mapper = noisy_mapper(tmp_path, monkeypatch, 3000)
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port, map_task(5, INPUTS[:1], mapper, job, 2))
    error = next_of(manager, "task_failed")["error"]
    tail = error.split("; stderr: ", 1)[1]
    assert tail.startswith("...")
    assert tail.endswith("noise line 2999\nthe very last word")
    assert 1800 < len(tail) <= 2048 + 3


LEAVES_STDERR_OPEN = """#!/bin/sh
# A mapper that exits 0 but leaves a process holding its stderr open.
cat
sleep 60 > /dev/null &
echo $! > "$LEFT_PID"
"""


def test_a_process_left_holding_stderr_is_killed(tmp_path, monkeypatch,
                                                 local_tmp):
    """The task does not wait for stderr forever: after the grace period
    the child's process group is killed and the task goes on."""
    monkeypatch.setattr(processes, "STDERR_GRACE", 0.3)
    mapper = tmp_path / "leaves.sh"
    mapper.write_text(LEAVES_STDERR_OPEN)
    mapper.chmod(0o755)
    left = tmp_path / "left.pid"
    monkeypatch.setenv("LEFT_PID", str(left))
    job = tmp_path / "job"
    job.mkdir()
    start = time.monotonic()
    try:
        assert run_map_task(0, INPUTS[:1], str(mapper), str(job), 1) == [
            "maptask00000-part00000"]
        assert time.monotonic() - start < 30
        pid = int(left.read_text())
        wait_for(lambda: process_gone(pid), what="the left process to end")
    finally:
        if left.exists() and not process_gone(int(left.read_text())):
            os.kill(int(left.read_text()), signal.SIGKILL)
    assert not any(local_tmp.iterdir())


def test_reporter_lines_go_to_the_hook():
    """The Hadoop Streaming hook takes `reporter:` lines out of the tail."""
    reports = []
    read_end, write_end = os.pipe()
    os.close(write_end)
    stderr = ChildStderr(read_end, logging.getLogger(__name__), "m",
                         on_report=reports.append)
    stderr.line(b"reporter:counter:group,name,1")
    stderr.line(b"plain complaint")
    assert reports == [b"reporter:counter:group,name,1"]
    assert stderr.tail() == "plain complaint"
    stderr.abandon()
    assert stderr.done.is_set()
    with pytest.raises(OSError):
        os.fstat(read_end)  # Abandoned unclaimed: the pipe is closed.


# Tasks.

def test_map_then_reduce_task(manager, registered, tmp_path, local_tmp):
    """Tasks produce their files, then a `finished` with exact keys."""
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port, map_task(0, INPUTS, WC_MAP, job, 3))
    assert_exact(manager.next(), finished(0, registered.port))
    names = [f"maptask00000-part{p:05d}" for p in range(3)]
    assert sorted(p.name for p in job.iterdir()) == names
    mapped = b"".join(subprocess.run([str(WC_MAP)], input=p.read_bytes(),
                                     capture_output=True, check=True).stdout
                      for p in INPUTS)
    assert sorted(b"".join((job / n).read_bytes() for n in names)
                  .splitlines()) == sorted(mapped.splitlines())

    output = tmp_path / "output"
    output.mkdir()
    send_json(registered.port,
              reduce_task(1, WC_REDUCE, [job / n for n in names], output))
    assert_exact(manager.next(), finished(1, registered.port))
    assert [p.name for p in output.iterdir()] == ["part-00001"]
    assert (sorted((output / "part-00001").read_bytes().splitlines())
            == pipeline_output(TESTDATA / "input", WC_MAP, WC_REDUCE))
    assert not any(local_tmp.iterdir())


def test_reduce_task_on_empty_input(manager, registered, tmp_path):
    """A reduce task with no inputs still writes its part file."""
    output = tmp_path / "output"
    output.mkdir()
    send_json(registered.port, reduce_task(4, WC_REDUCE, [], output))
    assert_exact(manager.next(), finished(4, registered.port))
    assert (output / "part-00004").read_bytes() == b""


@pytest.mark.parametrize("case", [
    (EXEC / "t_fail.sh", ["t_fail.sh", "status 3", "the last complaint"]),
    (EXEC / "no-such-mapper.sh", ["no-such-mapper.sh"]),
])
def test_failed_task_is_reported(manager, registered, tmp_path, local_tmp,
                                 case):
    """A failing task gives `task_failed` with a useful error; work goes on."""
    executable, words = case
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port, map_task(2, INPUTS, executable, job, 2))
    msg = manager.next()
    assert list(msg) == ["message_type", "task_id", "worker_host",
                         "worker_port", "error"]
    assert msg["message_type"] == "task_failed"
    assert (msg["task_id"], msg["worker_host"], msg["worker_port"]) == (
        2, "localhost", registered.port)
    for word in words:
        assert word in msg["error"]
    assert not any(job.iterdir())
    assert not any(local_tmp.iterdir())
    # The Worker takes the next task as if nothing happened.
    send_json(registered.port, map_task(3, INPUTS, WC_MAP, job, 2))
    assert_exact(manager.next(), finished(3, registered.port))


def test_keeps_answering_during_a_long_task(manager, registered, tmp_path,
                                            monkeypatch, caplog):
    """Heartbeats and messages are handled while a slow mapper runs."""
    caplog.set_level(logging.INFO)
    gate = tmp_path / "gate"
    monkeypatch.setenv("T_GATE", str(gate))
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port,
              map_task(0, INPUTS, EXEC / "t_gate.sh", job, 2))
    wait_for(lambda: "Running map task 0" in caplog.text,
             what="the task to start")
    try:
        start = time.monotonic()
        beats = [next_of(manager, "heartbeat") for _ in range(6)]
        assert time.monotonic() - start >= 5 * HEARTBEAT * 0.7
        assert all(b["worker_port"] == registered.port for b in beats)
        # The TCP side answers too: an unknown message is read and logged.
        send_json(registered.port, {"message_type": "while_busy"})
        wait_for(lambda: "while_busy" in caplog.text,
                 what="the message to be read")
        manager.expect_none(within=0.2)  # Still running: no `finished`.
    finally:
        gate.touch()
    assert_exact(manager.next(), finished(0, registered.port))


def test_shutdown_during_a_task(manager, registered, tmp_path, local_tmp,
                                pidfile):
    """Shutdown mid-task: prompt return, no process, no dir, no finished."""
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port,
              map_task(0, INPUTS, EXEC / "t_hang.sh", job, 2))
    pids = read_pids(pidfile)
    assert not any(map(process_gone, pids))
    assert any(local_tmp.iterdir())

    start = time.monotonic()
    registered.shutdown(STOP_WAIT)
    assert time.monotonic() - start < STOP_WAIT
    wait_for(lambda: all(map(process_gone, pids)), timeout=STOP_WAIT,
             what="the task's processes to end")
    assert not any(local_tmp.iterdir())
    assert not any(job.iterdir())
    manager.expect_no_more()  # It has stopped: nothing more can come.


def test_shutdown_with_a_task_queued(manager, registered, tmp_path,
                                     local_tmp, pidfile):
    """A second task waiting behind a running one never starts."""
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port,
              map_task(0, INPUTS, EXEC / "t_hang.sh", job, 2))
    pids = read_pids(pidfile)
    send_json(registered.port, map_task(1, INPUTS, WC_MAP, job, 2))
    registered.shutdown(STOP_WAIT)
    wait_for(lambda: all(map(process_gone, pids)), timeout=STOP_WAIT,
             what="the task's processes to end")
    assert not any(local_tmp.iterdir())
    assert not any(job.iterdir())
    manager.expect_no_more()  # It has stopped: nothing more can come.


# Malformed messages.

BAD_MESSAGES = [
    b"{not json",
    b"",
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b'"just a string"',
    b"null",
    {"no_message_type": 1},
    {"message_type": 5},
    {"message_type": "no_such_type"},
    {"message_type": "new_map_task"},
    {**map_task(0, ["x"], "x", "x", 2), "task_id": "0"},
    {**map_task(0, ["x"], "x", "x", 2), "num_partitions": True},
    {**map_task(0, ["x"], "x", "x", 2), "input_paths": "x"},
    {**map_task(0, ["x"], "x", "x", 2), "input_paths": [1]},
    {**reduce_task(0, "x", [], "x"), "executable": None},
    {**reduce_task(0, "x", [], "x"), "output_directory": 1.5},
    {"message_type": "heartbeat", "worker_host": "localhost",
     "worker_port": 1},
    {"message_type": "finished", "task_id": 0, "worker_host": "localhost",
     "worker_port": 1},
    {"message_type": "register", "worker_host": "localhost",
     "worker_port": 1},
]


def test_malformed_messages_are_logged_and_ignored(manager, registered,
                                                   tmp_path, caplog):
    """Every kind of bad message is a warning; the Worker keeps working."""
    caplog.set_level(logging.WARNING)
    for bad in BAD_MESSAGES:
        before = len(caplog.records)
        send_json(registered.port,
                  bad if isinstance(bad, bytes) else json.dumps(bad).encode())
        wait_for(lambda n=before: any(
            r.levelno == logging.WARNING for r in caplog.records[n:]),
            what=f"a warning about {bad!r}")
    manager.expect_none(within=0.3)
    assert registered.thread.is_alive()

    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port, map_task(0, INPUTS, WC_MAP, job, 2))
    assert_exact(manager.next(), finished(0, registered.port))
    # Still beating, too.
    next_of(manager, "heartbeat")


def test_extra_keys_are_ignored(manager, registered, tmp_path):
    """Extensions are additive: a task with an unknown extra key runs."""
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port,
              {**map_task(6, INPUTS, WC_MAP, job, 1), "priority": "high"})
    assert_exact(manager.next(), finished(6, registered.port))


# The command.

@pytest.fixture(name="worker_process")
def fixture_worker_process(manager, tmp_path, pidfile):
    """Start `mapreduce-worker` as a process; give (process, port, tmpdir).

    Its environment names `pidfile` for t_hang.sh, and a TMPDIR of its own.
    """
    assert not pidfile.exists()
    tmpdir = tmp_path / "worker-tmp"
    tmpdir.mkdir()
    script = pathlib.Path(sys.executable).parent / "mapreduce-worker"
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    with open(tmp_path / "worker.log", "wb") as log, spawned_on_free_port(
            lambda port: [str(script), "--host", "localhost", "--port",
                          str(port), "--manager-host", "localhost",
                          "--manager-port", str(manager.port),
                          "--loglevel", "debug"],
            lambda port: not manager.queue.empty(),  # It has registered.
            stdout=log, stderr=subprocess.STDOUT, env=env) as started:
        process, port = started
        yield process, port, tmpdir


def wait_exit(process):
    """Wait for `process` to exit; return its status."""
    try:
        return process.wait(STOP_WAIT)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the Worker did not stop in time") from exc


@pytest.mark.parametrize("how", ["sigterm", "shutdown"])
def test_command_exits_0(manager, worker_process, tmp_path, how):
    """`mapreduce-worker` exits 0 on SIGTERM and on a shutdown message."""
    process, port, tmpdir = worker_process
    acknowledge(manager, port)
    if how == "sigterm":
        process.send_signal(signal.SIGTERM)
    else:
        send_json(port, {"message_type": "shutdown"})
    assert wait_exit(process) == 0, (tmp_path / "worker.log").read_text()
    assert not any(tmpdir.iterdir())


@pytest.mark.parametrize("how", ["sigterm", "shutdown"])
def test_command_stops_during_a_task(manager, worker_process, tmp_path,
                                     pidfile, how):
    """A stopped `mapreduce-worker` leaves no process and no directory."""
    process, port, tmpdir = worker_process
    acknowledge(manager, port)
    job = tmp_path / "job"
    job.mkdir()
    send_json(port, map_task(0, INPUTS, EXEC / "t_hang.sh", job, 2))
    pids = read_pids(pidfile)
    assert any(tmpdir.iterdir())
    if how == "sigterm":
        process.send_signal(signal.SIGTERM)
    else:
        send_json(port, {"message_type": "shutdown"})
    assert wait_exit(process) == 0, (tmp_path / "worker.log").read_text()
    wait_for(lambda: all(map(process_gone, pids)), timeout=STOP_WAIT,
             what="the task's processes to end")
    assert not any(tmpdir.iterdir())
    assert not any(job.iterdir())
    manager.expect_no_more()  # It has exited: nothing more can come.
