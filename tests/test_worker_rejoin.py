"""A real Worker told to `rejoin` by a fake Manager, over real sockets.

On `rejoin` the Worker drops every task it holds (running and queued),
reports none of them, stops beating, and registers again once their
processes are gone and every report on its way has been delivered or
given up; after the Manager's `register_ack` it beats again and runs new
tasks as ever. The fake Manager (tests.util.FakePeer) sees exactly the
specification's messages throughout.
"""

import logging
import os

from mapreduce.localcluster import wait_for
from tests.test_worker import (
    EXEC, HEARTBEAT, INPUTS, STOP_WAIT, WC_MAP, acknowledge,
    assert_exact, finished, fixture_manager, fixture_registered,
    fixture_worker, map_task, next_of, reduce_task,
)
from tests.util import (
    FakePeer, process_gone, read_pids, send_json, start_worker,
)

__all__ = ["fixture_manager", "fixture_registered", "fixture_worker"]

REJOIN = {"message_type": "rejoin"}
REPORTS = ("finished", "task_failed")


def reports(peer):
    """Return the reports (finished, task_failed) `peer` has received."""
    return [msg for msg in peer.messages
            if msg.get("message_type") in REPORTS]


def test_rejoin_drops_every_task_then_registers_again(
        manager, registered, tmp_path, local_tmp, pidfile):
    """The running task's processes are gone, the queued task never runs,
    neither is reported; no heartbeat until the new register_ack."""
    job = tmp_path / "job"
    job.mkdir()
    for task_id, executable in enumerate([EXEC / "t_hang.sh", WC_MAP]):
        send_json(registered.port,
                  map_task(task_id, INPUTS, executable, job, 2))
    pids = read_pids(pidfile)  # Task 0 runs; task 1 waits behind it.
    send_json(registered.port, REJOIN)
    msg = next_of(manager, "register")
    assert all(map(process_gone, pids)), "registered before its tasks ended"
    assert_exact(msg, {"message_type": "register",
                       "worker_host": "localhost",
                       "worker_port": registered.port})
    # Not beating while the register waits for its ack (one heartbeat
    # sent just before the rejoin may arrive after the register).
    manager.expect_none(within=5 * HEARTBEAT)
    received = manager.messages
    after = received[len(received) - received[::-1].index(msg):]
    assert [m["message_type"] for m in after] in (
        [], ["heartbeat"]), after
    send_json(registered.port, {"message_type": "register_ack"})
    next_of(manager, "heartbeat")
    assert not reports(manager)
    assert not any(job.iterdir())
    assert not any(local_tmp.iterdir())
    # Back in service: a new task runs and is reported as ever.
    send_json(registered.port, map_task(2, INPUTS, WC_MAP, job, 2))
    assert_exact(next_of(manager, "finished"), finished(2, registered.port))


def test_the_register_waits_until_the_dropped_task_has_ended(
        manager, registered, tmp_path, caplog):
    """However long a task takes to end once cancelled (here: blocked
    opening its input, a FIFO with no writer yet), no register goes out
    before it has."""
    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)
    output = tmp_path / "output"
    output.mkdir()
    try:
        send_json(registered.port,
                  reduce_task(0, EXEC / "wc_reduce.sh", [fifo], output))
        caplog.set_level(logging.INFO)
        wait_for(lambda: "Running reduce task 0" in caplog.text,
                 what="the task to start")
        send_json(registered.port, REJOIN)
        manager.expect_none(within=1.0)
    finally:
        unblock(fifo)
    next_of(manager, "register")
    assert not reports(manager)
    assert not any(output.iterdir())


def unblock(fifo):
    """Open `fifo` for writing once a reader waits on it, and close it.

    The task may not have reached its `open` yet (a loaded machine): the
    writer's end can be had only once it has.
    """
    def opened():
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return False
        return True
    wait_for(opened, what="the task to open its input")


def test_rejoin_when_idle_registers_at_once(manager, registered):
    """Nothing held: the register follows the rejoin straight away."""
    send_json(registered.port, REJOIN)
    next_of(manager, "register", timeout=STOP_WAIT)
    acknowledge(manager, registered.port)
    assert registered.thread.is_alive()


def test_reports_on_their_way_are_delivered_before_registering(
        tmp_path, local_tmp, caplog):
    """A `finished` that the Manager has not taken yet goes (or is given
    up) before the register; a task sent meanwhile is refused."""
    caplog.set_level(logging.DEBUG)
    job = tmp_path / "job"
    job.mkdir()
    with FakePeer(udp=True) as manager:
        port = manager.port
        worker = start_worker(port, heartbeat_interval=HEARTBEAT,
                              retry_interval=1.0, send_attempts=3)
        try:
            acknowledge(manager, worker.port)
        finally:
            manager.close()  # Not listening: the finished must wait.
    try:
        send_json(worker.port, map_task(0, INPUTS, WC_MAP, job, 2))
        wait_for(lambda: "Could not send finished to the Manager" in
                 caplog.text, what="a failed finished")
        send_json(worker.port, REJOIN)
        send_json(worker.port, map_task(9, INPUTS, WC_MAP, job, 2))
        wait_for(lambda: "Ignored map task 9: registering again" in
                 caplog.text, what="the task refused")
        given_up = wait_for(lambda: records(caplog, "Could not send "
                                            "Finished(task_id=0"),
                            what="the finished given up")[0]
        # The first register was at start-up; the second must wait.
        again = wait_for(lambda: records(caplog, "Sending Register(")[1:],
                         what="a register again")[0]
        assert again.created >= given_up.created, \
            "registered before the finished was given up"
        with FakePeer(port=port, udp=True) as manager:
            acknowledge(manager, worker.port)
            assert not reports(manager)
    finally:
        worker.shutdown(STOP_WAIT)
    assert sorted(p.name for p in job.iterdir()) == [
        "maptask00000-part00000", "maptask00000-part00001"]
    assert not any(local_tmp.iterdir())


def records(caplog, start):
    """Return the log records whose text begins with `start`, in order."""
    return [record for record in caplog.records
            if record.getMessage().startswith(start)]


def test_the_report_of_a_task_carries_its_assignment(manager, registered,
                                                     tmp_path):
    """A task with an `assignment` serial is reported with it; one without
    gets the specification's `finished`, keys in order."""
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port,
              {**map_task(3, INPUTS, WC_MAP, job, 1), "assignment": 41})
    assert_exact(next_of(manager, "finished"),
                 {**finished(3, registered.port), "assignment": 41})
    send_json(registered.port,
              {**map_task(4, INPUTS, EXEC / "t_fail.sh", job, 1),
               "assignment": 42})
    failed = next_of(manager, "task_failed")
    assert list(failed) == ["message_type", "task_id", "worker_host",
                            "worker_port", "error", "assignment"]
    assert failed["assignment"] == 42
    send_json(registered.port, map_task(5, INPUTS, WC_MAP, job, 1))
    assert_exact(next_of(manager, "finished"), finished(5, registered.port))
