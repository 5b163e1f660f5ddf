"""Rejoin and assignments, driven message by message (see test_scheduler).

A dead or unknown Worker that keeps beating is told to register again
(the `rejoin` extension), never more often than the rules allow, whatever
a flood of forged heartbeats does; a Worker that signs its messages gets
an assignment serial with each task, and a report must answer the
assignment its Worker holds.
"""

import dataclasses
import logging

from mapreduce import defaults, protocol
from mapreduce.manager.registry import BUSY, DEAD, READY
from mapreduce.manager.rejoin import REJOIN, TURNED_AWAY, RejoinWatch
from tests.test_scheduler import fixture_bench, map_message, worker_name

__all__ = ["fixture_bench"]  # The `bench` fixture, used here as it is.


# Rejoin (an extension): Workers beating uncounted are told to register.

def beat_every(bench, port, seconds, interval=2.0):
    """Beat from localhost:`port` every `interval` s for `seconds` s.

    The first beat is now; the clock ends `seconds` s on.
    """
    for _ in range(round(seconds / interval)):
        bench.heartbeat(port)
        bench.advance(interval)


def test_the_watch_says_when_to_tell():
    """Its verdicts, one address, on a clock given by hand."""
    watch = RejoinWatch(rejoin_after=4.0, forget_after=10.0, limit=1)
    stranger, other, known = ("h", 1), ("h", 2), ("h", 3)
    assert [watch.beat(stranger, now, True) for now in (0, 2, 3.99)] == [
        None, None, None]
    assert watch.beat(stranger, 4.0, True) == REJOIN
    assert watch.beat(stranger, 7.99, True) is None
    assert watch.beat(stranger, 8.0, True) == REJOIN
    # The one place for a stranger is taken; a known Worker still counts.
    assert watch.beat(other, 8.0, True) == TURNED_AWAY
    assert watch.beat(other, 9.0, True) is None  # Said once per 4 s.
    assert watch.beat(other, 12.0, True) == TURNED_AWAY
    assert watch.turned_away == 3
    assert watch.beat(known, 8.0, False) is None
    assert watch.beat(known, 12.0, False) == REJOIN
    watch.forget(stranger)
    assert watch.beat(other, 12.0, True) is None
    assert len(watch) == 2
    # Silent for 10 s: forgotten; its next beat starts from nothing.
    assert watch.beat(known, 22.0, False) is None
    assert len(watch) == 1


def test_a_dead_worker_that_keeps_beating_is_told_to_rejoin(bench):
    """After 4 s of beats (not before), then at most once every 4 s."""
    fake = bench.ready_worker()
    bench.advance(10)
    assert bench.state(fake.port) == DEAD
    beat_every(bench, fake.port, 4)  # Beats at 0 and 2 s: nothing yet.
    assert fake.types() == ["register_ack"]
    bench.heartbeat(fake.port)  # 4 s.
    bench.settle()
    assert fake.received[1:] == [protocol.Rejoin()]
    assert bench.events("worker_rejoin") == [
        f"Told {worker_name(fake.port)} to register again: it is marked "
        "dead but beats"]
    for _ in range(39):  # Beats every 0.1 s: 3.9 s more.
        bench.advance(0.1)
        bench.heartbeat(fake.port)
    bench.settle()
    assert fake.types() == ["register_ack", "rejoin"]
    bench.advance(0.1)
    bench.heartbeat(fake.port)  # 4 s after the first rejoin.
    bench.settle()
    assert fake.types() == ["register_ack", "rejoin", "rejoin"]
    # It registers: back in service, and no more rejoins.
    bench.register(fake.port)
    bench.settle()
    assert bench.state(fake.port) == READY
    beat_every(bench, fake.port, 20)
    assert fake.types() == ["register_ack", "rejoin", "rejoin",
                            "register_ack"]
    assert bench.state(fake.port) == READY


def test_the_beats_count_from_each_death(bench):
    """A Worker that came back and died again beats 4 s anew first."""
    fake = bench.ready_worker()
    bench.advance(10)
    beat_every(bench, fake.port, 6)
    assert len(bench.events("worker_rejoin")) == 1
    fake.server.close()  # Its register_ack cannot be delivered: dead.
    bench.register(fake.port)
    bench.settle()
    assert bench.state(fake.port) == DEAD
    beat_every(bench, fake.port, 4)
    assert len(bench.events("worker_rejoin")) == 1
    bench.heartbeat(fake.port)
    assert len(bench.events("worker_rejoin")) == 2


def test_a_stranger_that_keeps_beating_is_told_to_register(bench):
    """An address that never registered gets `rejoin` after 4 s of beats.

    The same as a Worker whose Manager restarted: it registers and is an
    ordinary new Worker.
    """
    fake = bench.worker()
    beat_every(bench, fake.port, 4)
    assert not fake.received
    assert len(bench.scheduler.registry) == 0
    bench.heartbeat(fake.port)
    bench.settle()
    assert fake.received == [protocol.Rejoin()]
    assert bench.events("worker_rejoin") == [
        f"Told localhost:{fake.port} to register again: it beats but has "
        "not registered"]
    bench.register(fake.port)
    bench.settle()
    assert bench.events("worker_registered") == [
        f"Registered {worker_name(fake.port)}"]
    assert bench.state(fake.port) == READY


def test_a_beating_stranger_that_pauses_starts_counting_again(bench):
    """Silent for the heartbeat timeout: its next beats count from zero."""
    fake = bench.worker()
    beat_every(bench, fake.port, 2)
    bench.advance(10)
    beat_every(bench, fake.port, 4)
    assert not fake.received
    bench.heartbeat(fake.port)
    bench.settle()
    assert fake.received == [protocol.Rejoin()]


def test_a_silent_dead_worker_and_a_live_one_are_not_told(bench):
    """Dead and silent, or alive and beating: no rejoin, ever."""
    dead = bench.ready_worker()
    bench.advance(10)
    alive = bench.ready_worker()
    beat_every(bench, alive.port, 30)
    assert dead.types() == ["register_ack"]
    assert alive.types() == ["register_ack"]
    assert not bench.events("worker_rejoin")


def messages(caplog, start):
    """Return the texts of the log records that begin with `start`."""
    return [record.getMessage() for record in caplog.records
            if record.getMessage().startswith(start)]


def test_a_flood_of_forged_heartbeats_is_bounded(bench, caplog):
    """Past the limit, new strangers are turned away (and said so, rarely).

    The Manager follows at most MAX_STRANGERS of them, so that it
    connects to at most that many addresses per 4 s; the Workers it
    knows are followed whatever the flood.
    """
    caplog.set_level(logging.INFO, logger="Manager:6000")
    limit = defaults.MAX_STRANGERS
    dead = bench.ready_worker()
    bench.advance(10)
    caplog.clear()
    ports = range(40000, 40000 + limit + 50)
    for _ in range(3):  # 4 s of beats from every port.
        for port in ports:
            bench.scheduler.handle(protocol.Heartbeat(
                worker_host="127.0.0.2", worker_port=port))
        bench.heartbeat(dead.port)
        bench.advance(2)
    rejoins = bench.registry_rejoins()
    assert len(rejoins) == limit + 1
    assert rejoins.turned_away == 3 * 50
    told = messages(caplog, "Told ")
    assert len(told) == limit + 1
    assert f"Told {worker_name(dead.port)} to register again" in told[-1]
    assert dead.types()[-1] == "rejoin"
    # Said at the first stranger turned away, and 4 s later (the third
    # round of beats), not for each.
    assert messages(caplog, "Ignoring heartbeats") == [
        f"Ignoring heartbeats from new unregistered addresses: already "
        f"following {limit} ({count} heartbeats turned away so far)"
        for count in (1, 101)]
    # Silent for the heartbeat timeout: forgotten, room for others.
    bench.advance(10)
    bench.heartbeat(dead.port)
    assert len(bench.registry_rejoins()) == 1


# Assignments.

def signing_worker(bench):
    """Return a ready FakeWorker whose register came signed."""
    fake = bench.worker()
    bench.scheduler.handle(protocol.Register(worker_host="localhost",
                                             worker_port=fake.port),
                           signed=True)
    bench.settle()
    assert fake.received == [protocol.RegisterAck()]
    return fake


def report(bench, kind, port, task_id, assignment):
    """Hand the Scheduler a report that carries an assignment serial."""
    fields = {"task_id": task_id, "worker_host": "localhost",
              "worker_port": port, "assignment": assignment}
    if kind is protocol.TaskFailed:
        fields["error"] = "boom"
    bench.scheduler.handle(kind(**fields))
    bench.settle()


def test_a_signing_worker_gets_serials_and_its_reports_must_match(
        bench, caplog):
    """Each assignment has its own serial; a report of an older one of the
    same task (sent before the Worker came back, say) is dropped."""
    caplog.set_level(logging.WARNING)
    fake = signing_worker(bench)
    job = bench.submit(files=1, num_reducers=1)
    first = fake.received[-1]
    assert first == dataclasses.replace(map_message(job, 0, ["file00"], 1),
                                        assignment=1)
    assert protocol.to_wire(first)["assignment"] == 1
    # It registers again (it restarted): map 0 goes out again, as 2.
    bench.scheduler.handle(protocol.Register(worker_host="localhost",
                                             worker_port=fake.port),
                           signed=True)
    bench.settle()
    assert fake.received[-1].assignment == 2
    caplog.clear()
    for kind in (protocol.Finished, protocol.TaskFailed):
        report(bench, kind, fake.port, 0, 1)  # Late, of assignment 1.
    assert messages(caplog, "Ignored") == [
        f"Ignored {kind} of task 0 from {worker_name(fake.port)}: it "
        "answers assignment 1, the Worker holds Assignment(2, job_id=0, "
        "stage='map', task_id=0)" for kind in ("finished", "task_failed")]
    assert bench.state(fake.port) == BUSY
    assert bench.scheduler.job.stage.name == "map"
    report(bench, protocol.Finished, fake.port, 0, 2)
    assert bench.scheduler.job.stage.name == "reduce"
    assert fake.received[-1].assignment == 3
    assert fake.received[-1].task_id == 0
    report(bench, protocol.Finished, fake.port, 0, 2)  # Of the map task.
    assert bench.scheduler.job is job
    report(bench, protocol.Finished, fake.port, 0, 3)
    assert bench.summary(job)["state"] == "finished"


def test_serials_go_only_to_workers_that_sign(bench):
    """A Worker that registers unsigned gets the specification's tasks, and
    its reports (without a serial) are matched on task_id."""
    plain = bench.ready_worker()
    signing = signing_worker(bench)
    job = bench.submit(files=2, num_reducers=1)
    assert plain.received[-1] == map_message(job, 0, ["file00"], 1)
    assert list(protocol.to_wire(plain.received[-1])) == [
        "message_type", "task_id", "input_paths", "executable",
        "output_directory", "num_partitions"]
    assert signing.received[-1].assignment == 2
    # A signing Worker's report without the field is matched on task_id.
    bench.finished(signing.port, 1)
    bench.finished(plain.port, 0)
    assert bench.scheduler.job.stage.name == "reduce"
    # Registered again, unsigned: no serial any more.
    bench.register(signing.port)
    bench.settle()
    assert bench.scheduler.registry.get("localhost",
                                        signing.port).signs is False
