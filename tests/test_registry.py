"""The Manager's record of Workers: states, lookups, registration order.

The scheduler hands tasks to `ready()` Workers in the order they come back,
and SPEC.md wants registration order; these tests pin that order and what
each state means, without a Manager.
"""

import pytest

from mapreduce import protocol
from mapreduce.manager.job import Job, MapTask, ReduceTask
from mapreduce.manager.registry import (
    BUSY, DEAD, JOINING, READY, Assignment, RemoteWorker, WorkerRegistry,
)


def test_a_new_worker_is_joining_with_no_task():
    """Registered: waiting for its register_ack, holding nothing."""
    worker = RemoteWorker("localhost", 6001, now=12.5)
    assert (worker.host, worker.port, worker.key) == (
        "localhost", 6001, ("localhost", 6001))
    assert worker.state == JOINING
    assert worker.task is None and worker.assignment is None
    assert worker.signs is False
    assert worker.last_seen == 12.5
    assert worker.liveness_timer is None
    assert repr(worker) == "RemoteWorker(host='localhost', port=6001)"


@pytest.mark.parametrize("state, alive", [
    (JOINING, True), (READY, True), (BUSY, True), (DEAD, False),
])
def test_only_a_dead_worker_is_not_alive(state, alive):
    """Joining, ready and busy Workers are all alive."""
    worker = RemoteWorker("10.0.0.2", 6002, now=0.0)
    worker.state = state
    assert worker.alive is alive


def test_the_four_states_are_distinct():
    """A state compares equal only to itself."""
    assert len({JOINING, READY, BUSY, DEAD}) == 4


def test_an_empty_registry_knows_no_one():
    """Nothing registered: no Worker to find, ready or alive."""
    registry = WorkerRegistry()
    assert len(registry) == 0
    assert registry.get("localhost", 6001) is None
    assert not registry.ready()
    assert not registry.alive()


def test_get_finds_a_worker_by_host_and_port():
    """Both halves of the address must match."""
    registry = WorkerRegistry()
    added = registry.add("localhost", 6001, now=3.0)
    assert isinstance(added, RemoteWorker)
    assert (added.host, added.port, added.last_seen) == (
        "localhost", 6001, 3.0)
    assert registry.get("localhost", 6001) is added
    assert registry.get("localhost", 6002) is None
    assert registry.get("127.0.0.1", 6001) is None
    assert len(registry) == 1


def add_workers(registry, states):
    """Register one Worker per state, ports 6001, 6002, ...; return them."""
    workers = []
    for offset, state in enumerate(states):
        worker = registry.add("localhost", 6001 + offset, now=float(offset))
        worker.state = state
        workers.append(worker)
    return workers


def ports(workers):
    """Return the Workers' ports, in order."""
    return [worker.port for worker in workers]


def test_ready_lists_ready_workers_in_registration_order():
    """Not busy, joining or dead ones; order of add(), not of port."""
    registry = WorkerRegistry()
    registry.add("localhost", 7000, now=0.0).state = READY
    add_workers(registry, [READY, BUSY, READY, JOINING, DEAD, READY])
    assert ports(registry.ready()) == [7000, 6001, 6003, 6006]


def test_alive_lists_every_worker_not_dead_in_registration_order():
    """Joining, ready and busy Workers, in the order they registered."""
    registry = WorkerRegistry()
    add_workers(registry, [DEAD, JOINING, READY, BUSY, DEAD, READY])
    assert ports(registry.alive()) == [6002, 6003, 6004, 6006]


def test_the_lists_follow_state_changes():
    """ready() and alive() look at the states as they are now."""
    registry = WorkerRegistry()
    workers = add_workers(registry, [READY, READY])
    first, second = workers[0], workers[1]
    first.state = BUSY
    assert registry.ready() == [second]
    second.state = DEAD
    assert not registry.ready()
    assert registry.alive() == [first]
    second.state = READY
    assert registry.alive() == [first, second]


def test_dead_workers_stay_in_the_records():
    """SPEC.md: dead Workers are kept, found by get() and counted."""
    registry = WorkerRegistry()
    add_workers(registry, [DEAD, DEAD, READY])
    assert len(registry) == 3
    assert registry.get("localhost", 6001).state == DEAD


def test_workers_lists_every_worker_in_registration_order():
    """Dead ones too, in the order of add(), whatever their ports."""
    registry = WorkerRegistry()
    assert not registry.workers()
    late = registry.add("localhost", 7000, now=0.0)
    workers = add_workers(registry, [DEAD, READY, BUSY])
    assert registry.workers() == [late, *workers]
    listed = registry.workers()
    listed.clear()
    assert len(registry.workers()) == 4, "workers() gave its own list"


def test_assignments_get_serials_unique_in_the_registrys_life():
    """Each assignment a new serial, from 1; the Worker holds the last."""
    registry = WorkerRegistry()
    first = registry.add("localhost", 6001, now=0.0)
    second = registry.add("localhost", 6002, now=0.0)
    job = Job(4, None, "/shared")
    map0, map1 = MapTask(job, 0, ["/in/a"]), MapTask(job, 1, ["/in/b"])
    one = registry.assign(first, map0)
    two = registry.assign(second, map1)
    three = registry.assign(first, map1)
    assert [one.serial, two.serial, three.serial] == [1, 2, 3]
    assert (first.assignment, first.task) == (three, map1)
    assert (three.job_id, three.stage, three.task_id, three.worker) == (
        4, "map", 1, ("localhost", 6001))
    assert repr(three) == "Assignment(3, job_id=4, stage='map', task_id=1)"


@pytest.mark.parametrize("task_id, serial, answers", [
    (1, 0, True),  # No serial in the report: matched on task_id.
    (1, 7, True),
    (1, 6, False),  # An older assignment of the same task.
    (2, 0, False),
    (2, 7, False),
])
def test_a_report_answers_the_assignment_only_if_it_matches(
        task_id, serial, answers):
    """The task_id must match, and the serial too when the report has one."""
    job = Job(0, None, "/shared")
    assignment = Assignment(ReduceTask(job, 1, []), ("localhost", 6001), 7)
    report = protocol.Finished(task_id=task_id, worker_host="localhost",
                               worker_port=6001, assignment=serial)
    assert assignment.answers(report) is answers
