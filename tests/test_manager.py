"""A real Manager against fake Workers on loopback: every SPEC.md rule.

Each test runs a Manager in a thread and plays the Workers itself with
`FakePeer` listeners: it registers them, reads the tasks the Manager sends,
writes the files a Worker would write, and answers `finished`.
"""

import contextlib
import logging
import pathlib
import socket
import threading
import time

import pytest

from mapreduce import client
from mapreduce.localcluster import WAIT, port_open, wait_for
from mapreduce.logs import LOG_FORMAT
from tests.util import (
    EXEC, FakePeer, SlowResolver, job_message, register, send_json, send_udp,
    start_manager,
)

MAPPER = str(EXEC / "wc_map.sh")
REDUCER = str(EXEC / "wc_reduce.sh")
# Seconds during which a message must NOT arrive. The Manager answers a
# message on loopback within milliseconds; this is many times that.
QUIET = 0.25
SLOW = 30.0  # A heartbeat timeout no test waits for.
BEAT = 0.2  # Seconds between the fake heartbeats.
# A heartbeat timeout that dead Workers are waited for: several beats
# long, so that a beating Worker survives a busy machine.
LIVENESS = 1.5
# A shorter wait than the default before a dead Worker that keeps beating
# is told to register again.
REJOIN_AFTER = 1.0
MAP_KEYS = ["message_type", "task_id", "input_paths", "executable",
            "output_directory", "num_partitions"]
REDUCE_KEYS = ["message_type", "task_id", "executable", "input_paths",
               "output_directory"]


class Heartbeats:
    """Send a fake Worker's heartbeats over UDP from a thread."""

    def __init__(self, manager_port, worker_port, interval=BEAT):
        """Start beating at once, every `interval` seconds."""
        self.manager_port = manager_port
        self.worker_port = worker_port
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        """Beat until stopped."""
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                send_udp(self.manager_port, {
                    "message_type": "heartbeat", "worker_host": "localhost",
                    "worker_port": self.worker_port})
            self._stop.wait(self.interval)

    def stop(self):
        """Stop beating and wait for the thread."""
        self._stop.set()
        self._thread.join()


class Env:
    """One test's Manager, fake Workers, directories and captured log."""

    def __init__(self, tmp_path, caplog):
        """Prepare; the Manager starts with `start()`."""
        self.tmp = tmp_path
        self.caplog = caplog
        self.manager = None
        self.shared = None
        self.peers = []
        self.beats = []

    @property
    def port(self):
        """Return the Manager's port."""
        return self.manager.port

    def start(self, heartbeat_timeout=SLOW, **kwargs):
        """Start the Manager with its shared directory inside tmp_path."""
        self.manager = start_manager(shared_dir=str(self.tmp),
                                     heartbeat_timeout=heartbeat_timeout,
                                     **kwargs)
        (self.shared,) = self.tmp.glob("mapreduce-shared-*")
        return self.manager

    def peer(self, registered=True, beating=False):
        """Return a new fake Worker, registered and beating if asked."""
        peer = FakePeer()
        self.peers.append(peer)
        if beating:
            self.beat(peer)
        if registered:
            register(peer, self.port)
        return peer

    def beat(self, peer):
        """Start sending heartbeats for `peer`."""
        self.beats.append(Heartbeats(self.port, peer.port))

    def inputs(self, names, name="input"):
        """Make an input directory holding files `names`; return it."""
        directory = self.tmp / name
        directory.mkdir()
        for index, file_name in enumerate(names):
            (directory / file_name).write_text(f"{file_name} word{index}\n")
        return directory

    def job(self, input_dir, output="output", num_mappers=2,
            num_reducers=2):
        """Submit a job; return its output directory."""
        output_dir = self.tmp / output
        send_json(self.port, job_message(input_dir, output_dir, MAPPER,
                                         REDUCER, num_mappers=num_mappers,
                                         num_reducers=num_reducers))
        return output_dir

    def job_dir(self, job_id):
        """Return the shared directory's directory for job `job_id`."""
        return self.shared / f"job-{job_id:05d}"

    def finished(self, peer, task_id, message_type="finished", **extra):
        """Send `finished` (or another report) for `peer`'s task."""
        send_json(self.port, {"message_type": message_type,
                              "task_id": task_id,
                              "worker_host": "localhost",
                              "worker_port": peer.port, **extra})

    def failed(self, peer, task_id, error):
        """Send the `task_failed` extension for `peer`'s task."""
        self.finished(peer, task_id, "task_failed", error=error)

    def records(self, level, *parts):
        """Return the Manager's log records at `level` containing `parts`."""
        name = f"Manager:{self.port}"
        return [r for r in list(self.caplog.records)
                if r.name == name and r.levelno == level
                and all(part in r.getMessage() for part in parts)]

    def job_end(self, job_id):
        """Wait until job `job_id` ends; return how (the status API's)."""
        return client.wait_for_job(("localhost", self.port), job_id,
                                   WAIT)["state"]

    def wait_log(self, level, *parts, timeout=30.0):
        """Wait for a Manager log record at `level` containing `parts`."""
        return wait_for(lambda: self.records(level, *parts),
                        timeout=timeout,
                        what=f"a {logging.getLevelName(level)} log line "
                             f"with {parts}")[0]

    def wait_dead(self, peer):
        """Wait until the Manager logs that it marked `peer` dead."""
        return self.wait_log(logging.WARNING, f"Marked {worker(peer)} dead")

    def close(self):
        """Stop the heartbeats, the Manager and the fake Workers."""
        for beat in self.beats:
            beat.stop()
        try:
            if self.manager is not None:
                self.manager.shutdown()
        finally:
            for peer in self.peers:
                peer.close()


def worker(peer):
    """Return how the Manager shows fake Worker `peer` in its log."""
    return f"RemoteWorker(host='localhost', port={peer.port})"


def do_map(env, peer, msg, partitions=None):
    """Do a map task as a Worker would: write its files, report finished.

    Writes `maptask{id}-part{p}` for every partition p in `partitions`
    (default: all of them) into the task's output directory.
    """
    if partitions is None:
        partitions = range(msg["num_partitions"])
    for partition in partitions:
        name = f"maptask{msg['task_id']:05d}-part{partition:05d}"
        path = pathlib.Path(msg["output_directory"]) / name
        path.write_text(f"map{msg['task_id']}\t1\n")
    env.finished(peer, msg["task_id"])


def do_reduce(env, peer, msg):
    """Do a reduce task as a Worker would: write its part file, report."""
    part = pathlib.Path(msg["output_directory"]) / f"part-{msg['task_id']:05d}"
    part.write_text(f"reduce{msg['task_id']}\t{len(msg['input_paths'])}\n")
    env.finished(peer, msg["task_id"])


def do_task(env, peer, msg):
    """Do whichever task `msg` is."""
    if msg["message_type"] == "new_map_task":
        do_map(env, peer, msg)
    else:
        assert msg["message_type"] == "new_reduce_task", msg
        do_reduce(env, peer, msg)


def next_task(peer, kind, task_id, timeout=30.0):
    """Return `peer`'s next message, checking it is the task expected."""
    msg = peer.next(timeout=timeout)
    assert msg["message_type"] == f"new_{kind}_task", msg
    assert msg["task_id"] == task_id, msg
    return msg


def tasks_sent(peers):
    """Return (kind, job directory or output, task_id) of every task sent."""
    return [(m["message_type"], m["output_directory"], m["task_id"])
            for peer in peers for m in peer.messages
            if m["message_type"] in ("new_map_task", "new_reduce_task")]


def map_message(env, task_id, paths, job_id=0, num_partitions=2):
    """Return the exact `new_map_task` message the Manager should send."""
    return {
        "message_type": "new_map_task",
        "task_id": task_id,
        "input_paths": [str(p) for p in paths],
        "executable": MAPPER,
        "output_directory": str(env.job_dir(job_id)),
        "num_partitions": num_partitions,
    }


def reduce_message(env, task_id, names, output, job_id=0):
    """Return the exact `new_reduce_task` message the Manager should send."""
    return {
        "message_type": "new_reduce_task",
        "task_id": task_id,
        "executable": REDUCER,
        "input_paths": [str(env.job_dir(job_id) / n) for n in names],
        "output_directory": str(output),
    }


@pytest.fixture(name="env")
def fixture_env(tmp_path, caplog):
    """Give an Env; shut everything down afterwards."""
    caplog.set_level(logging.DEBUG)
    env = Env(tmp_path, caplog)
    try:
        yield env
    finally:
        env.close()


# A full job, message by message.


def test_full_job_exact_message_sequence(env):
    """register, job, four map tasks, two reduce tasks, clean-up: exact."""
    env.start()
    peer = env.peer()
    assert peer.messages == [{"message_type": "register_ack"}]
    names = [f"file0{i}" for i in range(1, 6)]
    input_dir = env.inputs(names)
    output = env.job(input_dir, num_mappers=4, num_reducers=2)
    files = [input_dir / name for name in names]
    expected = [[files[0], files[4]], [files[1]], [files[2]], [files[3]]]
    # Which partitions each fake map task writes: a Worker writes no file
    # for a partition that got no lines.
    partitions = [[0, 1], [0], [1], [0, 1]]
    for task_id, paths in enumerate(expected):
        msg = peer.next()
        assert msg == map_message(env, task_id, paths), msg
        assert list(msg) == MAP_KEYS
        if task_id == 0:
            assert env.job_dir(0).is_dir()
            assert output.is_dir() and not any(output.iterdir())
        do_map(env, peer, msg, partitions[task_id])
    msg = peer.next()
    assert msg == reduce_message(env, 0, [
        "maptask00000-part00000", "maptask00001-part00000",
        "maptask00003-part00000"], output), msg
    assert list(msg) == REDUCE_KEYS
    do_reduce(env, peer, msg)
    msg = peer.next()
    assert msg == reduce_message(env, 1, [
        "maptask00000-part00001", "maptask00002-part00001",
        "maptask00003-part00001"], output), msg
    do_reduce(env, peer, msg)
    wait_for(lambda: not env.job_dir(0).exists(), what="job dir removed")
    peer.expect_none(QUIET)
    assert sorted(p.name for p in output.iterdir()) == ["part-00000",
                                                        "part-00001"]
    assert env.shared.is_dir() and not any(env.shared.iterdir())
    assert env.job_end(0) == "finished"
    env.wait_log(logging.INFO, "Finished Job(job_id=0")
    # State changes at INFO, objects shown through their repr, every
    # message at DEBUG.
    assert env.records(logging.INFO, "Assigned MapTask(job_id=0, task_id=0",
                       f"to {worker(peer)}")
    assert env.records(logging.DEBUG, "Received Register(")
    assert env.records(logging.DEBUG, "Sending NewReduceTask(task_id=1")


def test_round_robin_to_workers_in_registration_order(env):
    """SPEC.md's example: five files, four mappers, one task per Worker."""
    env.start()
    # Registration order, not port order, decides who gets work first:
    # register the highest port first.
    peers = sorted((env.peer(registered=False) for _ in range(4)),
                   key=lambda peer: -peer.port)
    for peer in peers:
        register(peer, env.port)
    names = [f"file0{i}" for i in range(1, 6)]
    input_dir = env.inputs(names)
    env.job(input_dir, num_mappers=4, num_reducers=3)
    files = [input_dir / name for name in names]
    groups = [[files[0], files[4]], [files[1]], [files[2]], [files[3]]]
    for task_id, (peer, paths) in enumerate(zip(peers, groups)):
        assert peer.next() == map_message(env, task_id, paths,
                                          num_partitions=3)


def test_tasks_in_order_one_per_worker_waiting_when_all_busy(env):
    """Tasks go in task_id order; a busy Worker gets nothing more."""
    env.start()
    first, second, third = peers = [env.peer() for _ in range(3)]
    env.job(env.inputs([f"f{i}" for i in range(5)]), num_mappers=5)
    assert [next_task(p, "map", i)["task_id"]
            for i, p in enumerate(peers)] == [0, 1, 2]
    for peer in peers:
        peer.expect_none(QUIET / 3)  # Every Worker is busy: wait.
    env.finished(second, 1)
    msg3 = next_task(second, "map", 3)
    env.finished(third, 2)
    msg4 = next_task(third, "map", 4)
    env.finished(first, 0)
    first.expect_none(QUIET)  # No map task left to give.
    do_map(env, second, msg3)
    do_map(env, third, msg4)
    # The reduce stage starts with every Worker ready: registration order.
    next_task(first, "reduce", 0)
    next_task(second, "reduce", 1)
    third.expect_none(QUIET)


def test_ready_order_is_registration_order_not_finishing_order(env):
    """When several Workers are ready, the earliest registered goes first."""
    env.start()
    first, second = env.peer(), env.peer()
    env.job(env.inputs(["a", "b"]), num_mappers=2, num_reducers=1)
    map0 = next_task(first, "map", 0)
    map1 = next_task(second, "map", 1)
    do_map(env, second, map1)
    second.expect_none(QUIET)  # Map 0 is not done: no reduce yet.
    do_map(env, first, map0)
    next_task(first, "reduce", 0)
    second.expect_none(QUIET)


def test_more_mappers_than_files(env):
    """Empty groups are not sent; task ids stay contiguous."""
    env.start()
    peer = env.peer()
    input_dir = env.inputs(["file01", "file02"])
    output = env.job(input_dir, num_mappers=5, num_reducers=1)
    for task_id, name in enumerate(["file01", "file02"]):
        msg = peer.next()
        assert msg == map_message(env, task_id, [input_dir / name],
                                  num_partitions=1)
        do_map(env, peer, msg)
    msg = peer.next()
    assert msg == reduce_message(env, 0, ["maptask00000-part00000",
                                          "maptask00001-part00000"], output)


def test_empty_input_directory_runs_reduce_on_nothing(env):
    """No files: no map tasks; every reduce task gets empty input_paths."""
    env.start()
    peers = [env.peer() for _ in range(3)]
    input_dir = env.inputs([])
    (input_dir / "only-a-subdirectory").mkdir()
    output = env.job(input_dir, num_mappers=2, num_reducers=3)
    msgs = [p.next() for p in peers]
    assert msgs == [reduce_message(env, r, [], output) for r in range(3)]
    for peer, msg in zip(peers, msgs):
        do_reduce(env, peer, msg)
    wait_for(lambda: not env.job_dir(0).exists(), what="job dir removed")


def test_subdirectories_of_the_input_are_skipped(env):
    """Only regular files are input; directories are not dealt out."""
    env.start()
    peer = env.peer()
    input_dir = env.inputs(["a", "c"])
    (input_dir / "b").mkdir()
    (input_dir / "b" / "inner").write_text("not input\n")
    env.job(input_dir, num_mappers=3, num_reducers=1)
    msg = peer.next()
    assert msg == map_message(env, 0, [input_dir / "a"], num_partitions=1)
    do_map(env, peer, msg)
    msg = peer.next()
    assert msg == map_message(env, 1, [input_dir / "c"], num_partitions=1)
    do_map(env, peer, msg)
    next_task(peer, "reduce", 0)


# Liveness.


def test_silent_worker_dead_and_task_goes_to_end_of_queue(env):
    """A silent Worker dies after the timeout; its task goes out last."""
    timeout = LIVENESS
    env.start(heartbeat_timeout=timeout)
    silent = env.peer()
    registered = time.monotonic()
    alive = env.peer(beating=True)
    env.job(env.inputs(["a", "b", "c"]), num_mappers=3, num_reducers=1)
    next_task(silent, "map", 0)
    msg1 = next_task(alive, "map", 1)
    env.wait_dead(silent)
    assert time.monotonic() - registered >= timeout * 0.9
    assert not env.records(logging.WARNING, f"Marked {worker(alive)} dead")
    do_map(env, alive, msg1)
    # The never-assigned task 2 goes out before task 0, taken back.
    do_map(env, alive, next_task(alive, "map", 2))
    do_map(env, alive, next_task(alive, "map", 0))
    next_task(alive, "reduce", 0)
    # register_ack and map task 0 only, and nothing still on its way.
    silent.expect_none(QUIET / 5, skip=())
    assert len(silent.messages) == 2


def test_new_worker_gets_never_assigned_task_before_taken_back_one(env):
    """After a death the queue is: never-assigned tasks, then taken back."""
    env.start(heartbeat_timeout=LIVENESS)
    silent = env.peer()
    busy = env.peer(beating=True)
    env.job(env.inputs(["a", "b", "c", "d"]), num_mappers=4)
    next_task(silent, "map", 0)
    next_task(busy, "map", 1)
    env.wait_dead(silent)
    late = env.peer(beating=True)
    next_task(late, "map", 2)
    env.finished(busy, 1)
    next_task(busy, "map", 3)
    env.finished(late, 2)
    next_task(late, "map", 0)


def test_heartbeats_keep_a_worker_alive(env):
    """A beating Worker outlives the timeout; a silent one does not."""
    timeout = LIVENESS
    env.start(heartbeat_timeout=timeout)
    alive = env.peer(beating=True)
    silent = env.peer()
    env.job(env.inputs(["a", "b"]), num_mappers=2, num_reducers=1)
    msg0 = next_task(alive, "map", 0)
    next_task(silent, "map", 1)
    env.wait_dead(silent)
    time.sleep(timeout)  # Another whole timeout: `alive` must not die.
    assert not env.records(logging.WARNING, f"Marked {worker(alive)} dead")
    do_map(env, alive, msg0)
    do_map(env, alive, next_task(alive, "map", 1))
    do_reduce(env, alive, next_task(alive, "reduce", 0))
    wait_for(lambda: not env.job_dir(0).exists(), what="job dir removed")


def test_heartbeats_from_unregistered_workers_are_ignored(env):
    """A heartbeat is not a registration: no task goes to a stranger."""
    env.start()
    stranger = env.peer(registered=False, beating=True)
    env.job(env.inputs(["a"]), num_mappers=1, num_reducers=1)
    stranger.expect_none(QUIET)
    assert not env.records(logging.INFO, "Registered")
    register(stranger, env.port)
    next_task(stranger, "map", 0)
    # Its first registration, not a registration "again".
    (record,) = env.records(logging.INFO, "Registered")
    assert record.getMessage() == f"Registered {worker(stranger)}"


def test_dead_worker_that_keeps_beating_stays_dead(env):
    """Heartbeats do not revive a dead Worker; registering again does."""
    env.start(heartbeat_timeout=LIVENESS)
    peer = env.peer()
    env.wait_dead(peer)
    env.beat(peer)
    env.job(env.inputs(["a"]), num_mappers=1, num_reducers=1)
    peer.expect_none(QUIET * 2)
    register(peer, env.port)
    env.wait_log(logging.INFO, f"Registered {worker(peer)} again (it was "
                               "dead)")
    do_map(env, peer, next_task(peer, "map", 0))
    next_task(peer, "reduce", 0)
    # Beating since it registered again: it stays alive this time.
    assert len(env.records(logging.WARNING, "Marked")) == 1


def test_dead_worker_that_keeps_beating_rejoins_and_is_used_again(env):
    """The rejoin extension: after `rejoin_after` s of beats, a dead Worker
    gets exactly `{"message_type": "rejoin"}`; it registers again, and
    gets its task back."""
    env.start(heartbeat_timeout=LIVENESS, rejoin_after=REJOIN_AFTER)
    silent = env.peer()
    env.job(env.inputs(["a"]), num_mappers=1, num_reducers=1)
    next_task(silent, "map", 0)
    env.wait_dead(silent)
    beating = time.monotonic()
    env.beat(silent)
    assert silent.next() == {"message_type": "rejoin"}
    assert time.monotonic() - beating >= REJOIN_AFTER * 0.9
    env.wait_log(logging.INFO, f"Told {worker(silent)} to register again: "
                               "it is marked dead but beats")
    register(silent, env.port)
    do_map(env, silent, next_task(silent, "map", 0))
    do_reduce(env, silent, next_task(silent, "reduce", 0))
    assert env.job_end(0) == "finished"
    silent.expect_none(REJOIN_AFTER * 1.5)  # Counted again: no rejoin.


def test_refused_worker_is_dead_at_once_and_task_goes_on(env):
    """A send that is refused marks the Worker dead; the task moves on."""
    env.start()
    gone = env.peer()
    gone.close()
    second, third = env.peer(), env.peer()
    env.job(env.inputs(["a", "b"]), num_mappers=2, num_reducers=1)
    # Task 0 went to `gone` (first registered), task 1 to `second`; the
    # refused task 0 then goes to the next ready Worker, long before any
    # heartbeat deadline.
    next_task(second, "map", 1, timeout=10)
    next_task(third, "map", 0, timeout=10)
    record = env.wait_dead(gone)
    assert "could not send" in record.getMessage()
    assert not env.records(logging.WARNING, f"Marked {worker(second)}")


def test_worker_registering_again_while_busy_gets_task_taken_back(env):
    """Re-registration takes back the task; the Worker is ready again."""
    env.start()
    first, second = env.peer(), env.peer()
    env.job(env.inputs(["a", "b", "c"]), num_mappers=3, num_reducers=1)
    next_task(first, "map", 0)
    msg1 = next_task(second, "map", 1)
    register(first, env.port)  # It restarted, say: task 0 is lost.
    env.wait_log(logging.INFO, f"Registered {worker(first)} again (it was "
                               "busy)")
    msg2 = next_task(first, "map", 2)  # Task 0 went to the end.
    do_map(env, second, msg1)
    msg0 = next_task(second, "map", 0)
    env.finished(first, 0)  # A late report from before the restart.
    env.wait_log(logging.WARNING, "Ignored finished of task 0 from "
                                  f"{worker(first)}")
    do_map(env, first, msg2)
    first.expect_none(QUIET)  # Map 0 is still running on `second`.
    do_map(env, second, msg0)
    next_task(first, "reduce", 0)


# Jobs.


def test_job_before_any_worker_runs_once_one_registers(env):
    """A job waits for a Worker, then runs."""
    env.start()
    output = env.job(env.inputs(["a"]), num_mappers=1, num_reducers=1)
    # The output directory is made first, the job directory just after.
    wait_for(lambda: output.is_dir() and env.job_dir(0).is_dir(),
             what="the output and job directories")
    peer = env.peer()
    do_map(env, peer, next_task(peer, "map", 0))
    do_reduce(env, peer, next_task(peer, "reduce", 0))
    wait_for(lambda: not env.job_dir(0).exists(), what="job dir removed")


def test_job_waits_while_every_worker_is_dead(env):
    """All Workers dead: the job waits for a registration, then goes on."""
    env.start(heartbeat_timeout=LIVENESS)
    silent = env.peer()
    env.job(env.inputs(["a"]), num_mappers=1, num_reducers=1)
    next_task(silent, "map", 0)
    env.wait_dead(silent)
    silent.expect_none(QUIET)
    rescuer = env.peer(beating=True)
    do_map(env, rescuer, next_task(rescuer, "map", 0))
    do_reduce(env, rescuer, next_task(rescuer, "reduce", 0))
    wait_for(lambda: not env.job_dir(0).exists(), what="job dir removed")
    silent.expect_none(QUIET / 5, skip=())
    assert len(silent.messages) == 2


def test_queued_jobs_run_one_at_a_time_in_order(env):
    """Job ids 0, 1, 2; each job starts after the last; outputs reset."""
    env.start()
    peer = env.peer()
    input_dir = env.inputs(["a"])
    stale = env.tmp / "out1" / "stale"
    stale.parent.mkdir()
    stale.write_text("from an old run\n")
    outputs = []
    for job_id in range(3):
        outputs.append(env.job(input_dir, f"out{job_id}", 1, 1))
        env.wait_log(logging.INFO, f"Received Job(job_id={job_id},",
                     f"out{job_id}'")
    for job_id, output in enumerate(outputs):
        msg = next_task(peer, "map", 0)
        assert msg["output_directory"] == str(env.job_dir(job_id))
        assert env.job_dir(job_id).is_dir()
        # Only the running job's output directory has been reset.
        assert stale.exists() == (job_id == 0)
        assert output.is_dir()
        do_map(env, peer, msg)
        msg = next_task(peer, "reduce", 0)
        assert msg["output_directory"] == str(output)
        assert msg["input_paths"] == [
            str(env.job_dir(job_id) / "maptask00000-part00000")]
        do_reduce(env, peer, msg)
        wait_for(lambda j=job_id: not env.job_dir(j).exists(),
                 what="job dir removed")
    assert [(p / "part-00000").is_file() for p in outputs] == [True] * 3
    assert sorted(p.name for p in outputs[1].iterdir()) == ["part-00000"]


def test_bad_finished_reports_do_not_corrupt_state(env):
    """Unknown task, unknown Worker, someone else's task, duplicates."""
    env.start()
    first, second = env.peer(), env.peer()
    stranger = FakePeer()
    env.peers.append(stranger)
    output = env.job(env.inputs(["a", "b"]), num_mappers=2, num_reducers=2)
    map0 = next_task(first, "map", 0)
    map1 = next_task(second, "map", 1)
    env.finished(first, 99)  # No such task.
    env.finished(stranger, 0)  # Never registered.
    env.finished(first, 1)  # Task 1 belongs to `second`.
    for _ in range(3):
        env.wait_log(logging.WARNING, "Ignored finished")
    wait_for(lambda: len(env.records(logging.WARNING, "Ignored finished"))
             == 3, what="three ignored reports")
    do_map(env, first, map0)
    env.finished(first, 0)  # Duplicate: `first` holds nothing now.
    wait_for(lambda: len(env.records(logging.WARNING, "Ignored finished"))
             == 4, what="the duplicate ignored")
    for peer in (first, second):
        peer.expect_none(QUIET / 2)  # Map 1 is not done yet.
    do_map(env, second, map1)
    reduce0 = next_task(first, "reduce", 0)
    reduce1 = next_task(second, "reduce", 1)
    do_reduce(env, first, reduce0)
    env.finished(first, 0)  # Duplicate again.
    env.finished(stranger, 1)  # A stranger claims the last task.
    second.expect_none(QUIET)
    assert env.job_dir(0).is_dir(), "the job ended early"
    do_reduce(env, second, reduce1)
    wait_for(lambda: not env.job_dir(0).exists(), what="job dir removed")
    sent = tasks_sent([first, second, stranger])
    assert len(sent) == len(set(sent)) == 4
    assert sorted(p.name for p in output.iterdir()) == ["part-00000",
                                                        "part-00001"]


def test_finished_from_a_dead_worker_is_ignored(env):
    """A dead Worker's report neither finishes its task nor revives it."""
    env.start(heartbeat_timeout=LIVENESS)
    dead = env.peer()
    alive = env.peer(beating=True)
    env.job(env.inputs(["a"]), num_mappers=1, num_reducers=1)
    next_task(dead, "map", 0)
    env.wait_dead(dead)
    map0 = next_task(alive, "map", 0)
    env.finished(dead, 0)
    env.wait_log(logging.WARNING, "Ignored finished of task 0",
                 "unknown or dead")
    alive.expect_none(QUIET)  # The map stage is not over.
    do_map(env, alive, map0)
    next_task(alive, "reduce", 0)
    dead.expect_none(QUIET / 2)  # Still dead: not given the reduce task.


# The task_failed extension.


def test_failed_task_is_retried_on_another_worker(env):
    """After a task_failed the task goes to a Worker it did not fail on."""
    env.start()
    first, second = env.peer(), env.peer()
    env.job(env.inputs(["a"]), num_mappers=1, num_reducers=1)
    next_task(first, "map", 0)
    env.failed(first, 0, "mapper exited with status 3")
    map0 = next_task(second, "map", 0)
    env.wait_log(logging.WARNING, f"{worker(first)} failed MapTask(",
                 "attempt 1 of 3", "mapper exited with status 3")
    first.expect_none(QUIET / 2)
    do_map(env, second, map0)
    next_task(first, "reduce", 0)


def test_third_failure_fails_the_job_and_the_next_job_runs(env):
    """Three attempts in all, then an ERROR, no output left, next job."""
    env.start()
    first, second = env.peer(), env.peer()
    input_dir = env.inputs(["a"])
    output = env.job(input_dir, "doomed", num_mappers=1, num_reducers=2)
    do_map(env, first, next_task(first, "map", 0))
    do_reduce(env, first, next_task(first, "reduce", 0))
    next_task(second, "reduce", 1)
    env.wait_log(logging.INFO, f"{worker(first)} finished ReduceTask(")
    assert (output / "part-00000").exists()
    env.job(input_dir, "next", num_mappers=1, num_reducers=1)
    env.failed(second, 1, "reducer said boom")
    next_task(first, "reduce", 1)  # A Worker it has not failed on.
    env.failed(first, 1, "reducer said boom")
    # Both have failed it; the first ready Worker tries the last time.
    next_task(first, "reduce", 1)
    env.failed(first, 1, "reducer said boom")
    assert env.job_end(0) == "failed"
    record = env.wait_log(logging.ERROR, "Job 0 failed")
    text = record.getMessage()
    assert "ReduceTask(job_id=0, task_id=1" in text
    assert REDUCER in text and "reducer said boom" in text
    line = logging.Formatter(LOG_FORMAT).format(record)
    assert line.startswith(f"Manager:{env.port} [ERROR] Job 0 failed")
    assert not output.exists()
    assert not env.job_dir(0).exists()
    # The next job runs, on the first ready Worker.
    msg = next_task(first, "map", 0)
    assert msg["output_directory"] == str(env.job_dir(1))
    attempts = [s for s in tasks_sent([first, second])
                if s == ("new_reduce_task", str(output), 1)]
    assert len(attempts) == 3


def test_failed_attempts_with_one_worker_stay_on_it(env):
    """With one Worker, the retries go to that Worker."""
    env.start()
    peer = env.peer()
    env.job(env.inputs(["a"]), num_mappers=1, num_reducers=1)
    next_task(peer, "map", 0)
    env.failed(peer, 0, "try again")
    next_task(peer, "map", 0)
    env.failed(peer, 0, "try again")
    do_map(env, peer, next_task(peer, "map", 0))  # Third time lucky.
    next_task(peer, "reduce", 0)
    assert not env.records(logging.ERROR)


# Malformed messages.


def _huge_register():
    """Return a register message far larger than any real message."""
    return (b'{"message_type": "register", "worker_host": "'
            + b"x" * (2 << 20) + b'", "worker_port": 6001}')


TCP_GARBAGE = {
    "invalid-json": b"this is not json",
    "truncated-json": b'{"message_type": "register", "worker_',
    "empty": b"",
    "not-utf8": b'{"message_type": "\xff\xfe"}',
    "deeply-nested": b"[" * 100000 + b"]" * 100000,
    "array": b'[{"message_type": "shutdown"}]',
    "string": b'"shutdown"',
    "number": b"6000",
    "null": b"null",
    "no-message-type": {"worker_host": "localhost", "worker_port": 6001},
    "unknown-type": {"message_type": "reboot"},
    "register-missing-port": {"message_type": "register",
                              "worker_host": "localhost"},
    "register-port-string": {"message_type": "register",
                             "worker_host": "localhost",
                             "worker_port": "6001"},
    "register-port-bool": {"message_type": "register",
                           "worker_host": "localhost", "worker_port": True},
    "register-port-zero": {"message_type": "register",
                           "worker_host": "localhost", "worker_port": 0},
    "register-host-int": {"message_type": "register", "worker_host": 127,
                          "worker_port": 6001},
    "job-missing-reducers": {
        key: value for key, value in job_message("in", "out").items()
        if key != "num_reducers"},
    "job-mappers-string": {**job_message("in", "out"), "num_mappers": "2"},
    "job-mappers-float": {**job_message("in", "out"), "num_mappers": 2.0},
    "job-input-list": {**job_message("in", "out"), "input_directory": ["in"]},
    "finished-task-null": {"message_type": "finished", "task_id": None,
                           "worker_host": "localhost", "worker_port": 6001},
    "task-failed-no-error": {"message_type": "task_failed", "task_id": 0,
                             "worker_host": "localhost",
                             "worker_port": 6001},
    "for-a-worker": {"message_type": "register_ack"},
    "task-for-a-worker": {"message_type": "new_reduce_task", "task_id": 0,
                          "executable": "x", "input_paths": [],
                          "output_directory": "y"},
    "huge": _huge_register(),
}


def _udp_garbage(env, name):
    """Return the datagram `name` of the UDP malformed-message cases.

    A register carries the port of a fake Worker of this test, so that
    nothing is ever sent to another program's port.
    """
    peer = env.peer(registered=False)
    return {
        "invalid-json": b"\x00\x01 not json",
        "array": b"[1, 2, 3]",
        "heartbeat-port-string": {"message_type": "heartbeat",
                                  "worker_host": "localhost",
                                  "worker_port": str(peer.port)},
        "heartbeat-missing-host": {"message_type": "heartbeat",
                                   "worker_port": peer.port},
        "shutdown": {"message_type": "shutdown"},
        "job": job_message(env.inputs(["a"], name="udp-input"),
                           env.tmp / "udp-output"),
        "register": {"message_type": "register", "worker_host": "localhost",
                     "worker_port": peer.port},
    }[name], peer


UDP_GARBAGE = ["invalid-json", "array", "heartbeat-port-string",
               "heartbeat-missing-host", "shutdown", "job", "register"]


def _still_works(env):
    """Check the Manager still registers a Worker and runs a job."""
    peer = env.peer()
    env.job(env.inputs(["a"], name="ok-input"), "ok-output", 1, 1)
    do_map(env, peer, next_task(peer, "map", 0))
    do_reduce(env, peer, next_task(peer, "reduce", 0))
    wait_for(lambda: not env.job_dir(0).exists(), what="job dir removed")


@pytest.mark.parametrize("garbage", TCP_GARBAGE.values(),
                         ids=TCP_GARBAGE.keys())
def test_malformed_tcp_message_is_logged_and_ignored(env, garbage):
    """Garbage over TCP is a WARNING; the Manager goes on working."""
    env.start()
    with contextlib.suppress(OSError):
        # The Manager may hang up on a huge message before it is all sent.
        send_json(env.port, garbage)
    env.wait_log(logging.WARNING, "Ignored")
    _still_works(env)
    assert not env.records(logging.ERROR)


@pytest.mark.parametrize("name", UDP_GARBAGE)
def test_malformed_or_misdirected_datagram_is_ignored(env, name):
    """Over UDP only heartbeats count; the rest is logged and ignored."""
    env.start()
    garbage, peer = _udp_garbage(env, name)
    send_udp(env.port, garbage)
    env.wait_log(logging.WARNING, "Ignored")
    _still_works(env)
    assert not env.records(logging.INFO, "Shutting down")
    assert not env.records(logging.INFO, "Received Job(", "udp-output")
    assert not (env.tmp / "udp-output").exists()
    assert not peer.messages


def test_extra_keys_are_ignored(env):
    """Extension keys on known messages change nothing."""
    env.start()
    peer = env.peer(registered=False)
    send_json(env.port, {"message_type": "register", "worker_host":
                         "localhost", "worker_port": peer.port,
                         "capabilities": ["gpu"]})
    assert peer.next() == {"message_type": "register_ack"}
    input_dir = env.inputs(["a"])
    send_json(env.port, {**job_message(input_dir, env.tmp / "out", MAPPER,
                                       REDUCER, num_mappers=1,
                                       num_reducers=1), "priority": 9})
    msg = next_task(peer, "map", 0)
    env.finished(peer, 0, note="extra")
    next_task(peer, "reduce", 0)
    assert msg == map_message(env, 0, [input_dir / "a"], num_partitions=1)


def test_connection_that_never_sends_blocks_nothing(env):
    """An open, silent connection does not stop other messages."""
    env.start()
    with socket.create_connection(("localhost", env.port)) as half, \
            socket.create_connection(("localhost", env.port)):
        half.sendall(b'{"message_type": "shut')
        _still_works(env)
    assert not env.records(logging.INFO, "Shutting down")


# Shutdown.


def test_shutdown_goes_to_live_workers_only_and_removes_shared_dir(env):
    """Live Workers get shutdown, dead ones do not; then it all ends."""
    env.start(heartbeat_timeout=LIVENESS)
    dead = env.peer()
    alive = env.peer(beating=True)
    env.wait_dead(dead)
    env.job(env.inputs(["a"]), num_mappers=1, num_reducers=1)
    next_task(alive, "map", 0)  # A job is running.
    assert env.job_dir(0).is_dir()
    env.manager.shutdown()
    assert alive.next() == {"message_type": "shutdown"}
    dead.expect_none(QUIET / 5)  # No shutdown, not even on its way.
    assert not any(m["message_type"] == "shutdown" for m in dead.messages)
    assert not list(env.tmp.glob("mapreduce-shared-*"))
    assert not port_open(env.port)


def test_shutdown_with_an_unreachable_live_worker_still_ends(env):
    """A refused shutdown does not keep the Manager from exiting."""
    env.start()
    gone = env.peer()
    gone.close()
    peer = env.peer()
    env.manager.shutdown()
    assert peer.next() == {"message_type": "shutdown"}
    assert not list(env.tmp.glob("mapreduce-shared-*"))


def test_shutdown_with_no_workers(env):
    """With nobody to tell, the Manager just stops and cleans up."""
    env.start()
    env.manager.shutdown()
    assert not list(env.tmp.glob("mapreduce-shared-*"))
    env.wait_log(logging.INFO, "Shutting down")


def test_a_slow_host_name_does_not_hold_the_manager_up(env, monkeypatch):
    """A register naming a host the resolver is slow on: the Manager
    answers others while it is looked up, then acknowledges it."""
    env.start()
    slow = SlowResolver(f"slow-{env.port}.invalid")
    monkeypatch.setattr(socket, "gethostbyname", slow)
    peer = env.peer(registered=False)
    send_json(env.port, {"message_type": "register",
                         "worker_host": slow.name,
                         "worker_port": peer.port})
    assert slow.started.wait(WAIT)
    assert client.status(("localhost", env.port))["workers"]
    assert not slow.done.is_set()
    slow.release.set()
    assert peer.next() == {"message_type": "register_ack"}
