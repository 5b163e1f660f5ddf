"""SIGINT and SIGTERM stop real mapreduce-manager/worker processes cleanly.

Each process runs with TMPDIR (and the Manager's --shared_dir) in tmp_path,
so a test can check that every temporary directory is gone after the
signal, and that a Worker's running task processes were terminated.
"""

import logging
import os
import pathlib
import signal
import subprocess
import sys
import threading

import pytest

from mapreduce.localcluster import port_open, spawned_on_free_port, wait_for
from mapreduce.reactor import Reactor
from mapreduce.signals import stop_on_signals
from tests.util import (
    TESTDATA, FakePeer, job_message, process_running, register, send_json,
)

SIGNALS = [signal.SIGINT, signal.SIGTERM]
HANG = """#!/bin/sh
# A mapper that never ends, with a child of its own; it records both pids.
sleep 60 &
echo $! > "$PIDS/grandchild"
echo $$ > "$PIDS/child.tmp"
mv "$PIDS/child.tmp" "$PIDS/child"
wait
"""


def start(command, tmp_path, *args, started, **env):
    """Start one of the project's commands with TMPDIR in tmp_path.

    A context manager: it listens on a free port (another one if that was
    taken), counts as started once `started(port)`, and gives the Popen and
    the port.
    """
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    scripts = pathlib.Path(sys.executable).parent
    return spawned_on_free_port(
        lambda port: [str(scripts / command), "--port", str(port),
                      *map(str, args)],
        started, env={**os.environ, "TMPDIR": str(tmpdir), **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(proc):
    """Make sure `proc` is gone; return its stderr."""
    if proc.poll() is None:
        proc.kill()
    _, stderr = proc.communicate(timeout=30)
    return stderr


@pytest.mark.parametrize("signum", SIGNALS)
def test_manager_exits_cleanly(tmp_path, signum):
    """The Manager tells its Workers, removes its shared dir, exits 0."""
    shared = tmp_path / "shared"
    shared.mkdir()
    with FakePeer(udp=True) as worker, start(
            "mapreduce-manager", tmp_path, "--shared_dir", shared,
            started=port_open) as (proc, port):
        try:
            register(worker, port)
            send_json(port, job_message(TESTDATA / "input",
                                        tmp_path / "output"))
            assert worker.next()["message_type"] == "new_map_task"
            assert [p.name for p in next(shared.iterdir()).iterdir()] == \
                ["job-00000"]

            proc.send_signal(signum)
            assert proc.wait(timeout=30) == 0
            assert worker.next() == {"message_type": "shutdown"}
        finally:
            stderr = stop(proc)
    assert f"Received {signum.name}" in stderr
    assert "Traceback" not in stderr
    assert not list(shared.iterdir())
    assert not list((tmp_path / "tmp").iterdir())


@pytest.mark.parametrize("signum", SIGNALS)
def test_worker_exits_cleanly_and_stops_its_task(tmp_path, signum):
    """The Worker kills its task's processes, cleans up, and exits 0."""
    pids = tmp_path / "pids"
    pids.mkdir()
    hang = tmp_path / "hang.sh"
    hang.write_text(HANG)
    hang.chmod(0o755)
    output = tmp_path / "output"
    output.mkdir()
    with FakePeer(udp=True) as manager, start(
            "mapreduce-worker", tmp_path, "--manager-port", manager.port,
            PIDS=str(pids), started=lambda port: not manager.queue.empty()
    ) as (proc, port):
        children = []
        try:
            assert manager.next()["message_type"] == "register"
            send_json(port, {"message_type": "register_ack"})
            send_json(port, {
                "message_type": "new_map_task", "task_id": 0,
                "input_paths": [str(TESTDATA / "input" / "file01")],
                "executable": str(hang), "output_directory": str(output),
                "num_partitions": 2})
            wait_for((pids / "child").exists,
                     what="the mapper to start")
            children = [int((pids / name).read_text())
                        for name in ("child", "grandchild")]
            assert all(process_running(pid) for pid in children)
            assert [p.name[:26] for p in (tmp_path / "tmp").iterdir()] == \
                ["mapreduce-local-task00000-"]

            proc.send_signal(signum)
            assert proc.wait(timeout=30) == 0
            wait_for(lambda: not any(map(process_running, children)),
                     what="the task's processes to end")
            manager.expect_no_more()  # It has exited: nothing more comes.
        finally:
            stderr = stop(proc)
            for pid in children:
                if process_running(pid):
                    os.kill(pid, signal.SIGKILL)
    assert f"Received {signum.name}" in stderr
    assert "Traceback" not in stderr
    assert not list((tmp_path / "tmp").iterdir())
    assert not list(output.iterdir())


# The signals module on its own, in this process.

def test_stop_on_signals_posts_the_stop_to_the_loop(caplog):
    """SIGTERM inside the block runs `stop` on the loop; outside, the old
    handler is back."""
    before = signal.getsignal(signal.SIGTERM)
    reactor = Reactor(logging.getLogger("signals-test"))
    stopped = []

    def stop_the_loop():
        stopped.append(threading.get_ident())
        reactor.stop()
    caplog.set_level(logging.INFO)
    try:
        with stop_on_signals(reactor, stop_the_loop):
            assert signal.getsignal(signal.SIGTERM) is not before
            reactor.call_soon(os.kill, os.getpid(), signal.SIGTERM)
            reactor.run()
    finally:
        reactor.close()
    assert stopped == [threading.get_ident()]
    assert "Received SIGTERM" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is before


def test_stop_on_signals_does_nothing_off_the_main_thread():
    """In another thread (a Worker run by a test), no handler is set."""
    before = signal.getsignal(signal.SIGINT)
    seen = []

    def inside():
        with stop_on_signals(None, None):
            seen.append(signal.getsignal(signal.SIGINT))
    thread = threading.Thread(target=inside)
    thread.start()
    thread.join()
    assert seen == [before]
