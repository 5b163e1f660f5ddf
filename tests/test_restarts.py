"""Real processes paused, killed (SIGKILL) and restarted: nothing is lost.

- A Worker paused longer than the dead timeout (`kill -STOP`, then
  `-CONT`: a long GC pause, a healed partition) is told to rejoin, comes
  back by itself and is given work again.
- A Manager killed and started again on its port: every live Worker
  registers with the new one by itself within a few seconds, and new
  jobs complete; the new Manager sweeps the dead one's shared directory,
  never a live Manager's.
- A Worker killed mid-task leaves its task directory; the next Worker
  started on the machine sweeps it, never a live Worker's.
"""

import contextlib
import os
import signal
import time

from mapreduce import client, protocol
from mapreduce.localcluster import (
    LogCollector, TaggedWorkers, command, free_port, job, kill_tagged,
    output_lines, pipeline_output, registered_workers, spawn, stop_process,
    wait_for, wait_listening, worker_alive,
)
from mapreduce.manager import ManagerOptions, ManagerServer
from tests.util import EXEC, TESTDATA, FakePeer, send_json

INPUT = TESTDATA / "input"
WORD_COUNT = (EXEC / "wc_map.sh", EXEC / "wc_reduce.sh")
GATED = (EXEC / "c_gated_map.sh", EXEC / "wc_reduce.sh")
# What the specification's timings make "within a few seconds": a first
# beat (2 s), `rejoin` after 4 s of beats, a register; and some slack for
# a loaded machine.
REREGISTER_LIMIT = 15.0


def answer(address, job_id, timeout=60.0):
    """Wait until job `job_id` ends; return its state."""
    return client.wait_for_job(address, job_id, timeout)["state"]


def right_output(output):
    """Tell whether `output` holds the word count of INPUT."""
    return output_lines(output) == pipeline_output(INPUT, *WORD_COUNT)


# A Worker paused past the dead timeout.

def test_a_paused_worker_rejoins_and_is_used_again(tmp_path):
    """STOP a Worker mid-task until it is marked dead, CONT it: its task
    went elsewhere, the result is right, and it takes tasks again."""
    shared = tmp_path / "shared"
    shared.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    manager = ManagerServer("localhost", free_port(), ManagerOptions(
        shared_dir=str(shared), heartbeat_timeout=1.5, rejoin_after=1.0))
    manager.start()
    address = ("localhost", manager.port)
    log = LogCollector(f"Manager:{manager.port}")
    tag = f"restarts-pause-{manager.port}"
    spawner = TaggedWorkers(tmp_path, tag, tmp_path,
                            {"heartbeat_interval": 0.2},
                            env={"C_MARKER_DIR": str(markers)})
    try:
        paused, paused_process = spawner.spawn_registered(manager.port)
        other, _ = spawner.spawn_registered(manager.port)
        client.submit(address, job(INPUT, tmp_path / "out0", GATED))
        wait_for(lambda: len(list(markers.glob("map-started-*"))) == 2,
                 what="both mappers to start")
        os.kill(paused_process.pid, signal.SIGSTOP)
        try:
            log.wait_for(rf"Marked RemoteWorker\(host='localhost', "
                         rf"port={paused}\) dead")
            (markers / "go").touch()
            assert answer(address, 0) == "finished"
        finally:
            os.kill(paused_process.pid, signal.SIGCONT)
        assert right_output(tmp_path / "out0")
        log.wait_for(rf"Told RemoteWorker\(host='localhost', "
                     rf"port={paused}\) to register again")
        log.wait_for(rf"Registered RemoteWorker\(host='localhost', "
                     rf"port={paused}\) again \(it was dead\)")
        # Back in use: the first of the next job's tasks goes to the
        # first Worker registered, the healed one.
        client.submit(address, job(INPUT, tmp_path / "out1", WORD_COUNT))
        assert answer(address, 1) == "finished"
        assert right_output(tmp_path / "out1")
        assert log.grep(rf"Assigned MapTask\(job_id=1, task_id=0, .*\) to "
                        rf"RemoteWorker\(host='localhost', port={paused}\)")
        assert worker_alive(address, paused) and worker_alive(address, other)
    finally:
        manager.stop()
        kill_tagged(tag)
        log.detach()


# A Manager killed and started again.

def start_manager_process(port, shared, logfile):
    """Start `mapreduce-manager` on `port`; wait until it listens."""
    process = spawn([command("mapreduce-manager"), "--port", str(port),
                     "--shared_dir", str(shared), "--web-port", "off",
                     "--logfile", str(logfile)])
    assert wait_listening(process, port), logfile.read_text()
    return process


def shared_dirs(shared):
    """Return the names of the shared directories in `shared`."""
    return sorted(path.name for path in shared.glob("mapreduce-shared-*"))


def test_workers_register_with_a_restarted_manager_by_themselves(tmp_path):
    """SIGKILL the Manager, start another on its port: with the default
    timings, both Workers are registered again within seconds, a new job
    completes, and the dead Manager's shared directory is swept while a
    live Manager's (in the same parent) stays."""
    shared = tmp_path / "shared"
    shared.mkdir()
    neighbour = ManagerServer("localhost", free_port(),
                              ManagerOptions(shared_dir=str(shared)))
    neighbour.start()
    port = free_port()
    address = ("localhost", port)
    tag = f"restarts-manager-{port}"
    managers = []
    try:
        first = start_manager_process(port, shared,
                                      tmp_path / "manager-1.log")
        managers.append(first)
        spawner = TaggedWorkers(tmp_path, tag, tmp_path)
        for _ in range(2):
            spawner.spawn_registered(port)
        dead_dirs = set(shared_dirs(shared))
        first.kill()
        first.wait()
        assert set(shared_dirs(shared)) == dead_dirs, "nothing swept yet"
        restarted = time.monotonic()
        managers.append(start_manager_process(
            port, shared, tmp_path / "manager-2.log"))
        wait_for(lambda: registered_workers(address) == 2,
                 timeout=REREGISTER_LIMIT,
                 what="both Workers to register with the new Manager")
        print(f"Workers registered again {time.monotonic() - restarted:.1f}"
              " s after the Manager restarted")
        client.submit(address, job(INPUT, tmp_path / "output", WORD_COUNT))
        assert answer(address, 0) == "finished"
        assert right_output(tmp_path / "output")
        # Left: the neighbour's directory and the new Manager's.
        assert len(shared_dirs(shared)) == 2
        assert neighbour.info.shared_dir in {
            str(shared / name) for name in shared_dirs(shared)}
        log = (tmp_path / "manager-2.log").read_text()
        assert "left by a process that is gone" in log
    finally:
        with contextlib.suppress(OSError, client.ClientError):
            client.shut_down(address)
        for manager in managers:
            stop_process(manager)
        neighbour.stop()
        kill_tagged(tag)


# A Worker killed mid-task.

def start_worker_process(spawner, manager):
    """Start a Worker for fake Manager `manager`; acknowledge it.

    Returns its port and Popen.
    """
    port = free_port()
    process = spawner.spawn(port, manager.port)
    msg = manager.next(skip=("heartbeat",))
    assert msg == {"message_type": "register", "worker_host": "localhost",
                   "worker_port": port}, msg
    send_json(port, {"message_type": "register_ack"})
    return port, process


def gated_map(task_id, output):
    """Return a `new_map_task` running the gated mapper over INPUT."""
    return protocol.to_wire(protocol.NewMapTask(
        task_id=task_id, input_paths=[str(path) for path in
                                      sorted(INPUT.iterdir())],
        executable=str(GATED[0]), output_directory=str(output),
        num_partitions=1))


def run_a_task(manager, port, job_dir):
    """Have the Worker on `port` run an empty map task; wait for its end.

    A Worker's first task runs after its sweep, in the same thread: once
    it has finished, the sweep is done.
    """
    send_json(port, protocol.to_wire(protocol.NewMapTask(
        task_id=2, input_paths=[], executable=str(WORD_COUNT[0]),
        output_directory=str(job_dir), num_partitions=1)))
    msg = manager.next(skip=("heartbeat", "register"))
    assert (msg["message_type"], msg["worker_port"]) == ("finished", port), \
        msg


def test_a_killed_workers_task_directory_is_swept_by_the_next(tmp_path):
    """SIGKILL a Worker mid-task; a Worker started later on the machine
    removes its task directory, and keeps a live Worker's and one it
    cannot tell the owner of."""
    tmp = tmp_path / "tmp"  # The machine's temporary directory.
    tmp.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    spec_made = tmp / "mapreduce-local-task00007-madebyaspecworker"
    spec_made.mkdir()
    with FakePeer(udp=True) as manager:
        tag = f"restarts-sweep-{manager.port}"
        spawner = TaggedWorkers(tmp_path, tag, tmp,
                                {"heartbeat_interval": 0.2},
                                env={"C_MARKER_DIR": str(markers)})
        try:
            killed_port, killed = start_worker_process(spawner, manager)
            send_json(killed_port, gated_map(0, job_dir))
            live_port, _ = start_worker_process(spawner, manager)
            send_json(live_port, gated_map(1, job_dir))
            wait_for(lambda: len(list(markers.glob("map-started-*"))) == 2,
                     what="both mappers to start")
            (dead_dir,) = tmp.glob("mapreduce-local-task00000-*")
            (live_dir,) = tmp.glob("mapreduce-local-task00001-*")
            killed.kill()
            killed.wait()
            assert dead_dir.is_dir()
            sweeper_port, _ = start_worker_process(spawner, manager)
            run_a_task(manager, sweeper_port, job_dir)
            assert not dead_dir.exists()
            assert live_dir.is_dir() and spec_made.is_dir()
            log = spawner.logfile(sweeper_port).read_text()
            assert f"Removed {dead_dir}, left by a process that is gone" \
                in log
        finally:
            kill_tagged(tag)
