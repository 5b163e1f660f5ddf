"""The Manager's scheduling, driven message by message on a real reactor.

Each test builds a Scheduler on a real Reactor that runs in the test's own
thread, with a clock that moves only when the test moves it, and plays the
Workers with `FakeWorker`s: real listening sockets on the same reactor that
record the messages they receive. The test hands the Scheduler what Workers
would send (`register`, `heartbeat`, `finished`, `task_failed`) and checks
what comes back: the messages each Worker got, the files, and the events the
Scheduler reported to its History. No Manager, no thread, no sleep: a test
takes a few milliseconds, which keeps `bin/mutate` fast.
"""

import logging
import os
import socket
import time

import pytest

from mapreduce import protocol
from mapreduce.manager.events import History
from mapreduce.manager.manager import ManagerOptions
from mapreduce.manager.registry import BUSY, DEAD, JOINING, READY
from mapreduce.manager.scheduler import Scheduler
from mapreduce.reactor import MessageServer, Reactor
from tests.util import EXEC

MAPPER = str(EXEC / "wc_map.sh")
REDUCER = str(EXEC / "wc_reduce.sh")
LIMIT = 5.0  # Real seconds a test waits for the loop to get somewhere.
START = 1000.0  # The loop's clock when a test begins.


class ManualClock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self):
        """Start at START."""
        self.now = START

    def __call__(self):
        """Return the test's time."""
        return self.now


class FakeWorker:
    """A Worker's listening socket on the test's reactor.

    It decodes and keeps every message it receives, and answers nothing.
    """

    def __init__(self, reactor):
        """Listen on a free port of localhost."""
        self.received = []
        self.server = MessageServer(reactor, "localhost", 0, self._on_message)
        self.port = self.server.port

    def _on_message(self, data, _reply):
        """Keep one message."""
        self.received.append(protocol.decode(data))

    def types(self):
        """Return the message types received, in order."""
        return [msg.message_type for msg in self.received]

    def tasks(self):
        """Return the (message_type, task_id) of the tasks received."""
        return [(msg.message_type, msg.task_id) for msg in self.received
                if hasattr(msg, "task_id")]


class Bench:
    """A Scheduler on a manual-clock reactor, and the Workers it talks to."""

    def __init__(self, tmp_path, options):
        """Build the Scheduler with `options`; shared files in `tmp_path`."""
        self.tmp_path = tmp_path
        self.clock = ManualClock()
        self.reactor = Reactor(logging.getLogger("Manager:6000"), self.clock)
        self.history = History(self.reactor.log)
        self.scheduler = Scheduler(self.reactor, self.history, options)
        shared = tmp_path / "shared"
        shared.mkdir()
        self.scheduler.shared_dir = str(shared)
        self.servers = []
        self.done_calls = 0

    # Running the loop.

    def run_until(self, condition, what):
        """Run the loop until `condition()` holds; fail after LIMIT s."""
        deadline = time.monotonic() + LIMIT

        def check():
            try:
                if condition() or time.monotonic() > deadline:
                    self.reactor.stop()
                    return
            except Exception:
                self.reactor.stop()  # The assertion below raises it again.
                raise
            self.reactor.call_soon(check)
        self.reactor.call_soon(check)
        self.reactor.run()
        assert condition(), f"the loop never got to: {what}"

    def run_turns(self, count=3):
        """Run `count` turns of the loop: what is due now runs."""
        left = [count]

        def tick():
            left[0] -= 1
            if left[0] > 0:
                self.reactor.call_soon(tick)
            else:
                self.reactor.stop()
        self.reactor.call_soon(tick)
        self.reactor.run()

    def in_flight(self):
        """Return how many messages are being sent or received.

        Every outgoing message holds a timer until it is sent or has
        failed; the only other timers are the Workers' liveness deadlines.
        """
        watched = sum(1 for worker in self.scheduler.registry.workers()
                      if worker.liveness_timer is not None
                      and not worker.liveness_timer.cancelled)
        receiving = sum(server.open_connections
                        for server in self.servers)
        return self.reactor.timer_counts().scheduled - watched + receiving

    def settle(self):
        """Run the loop until every message on its way has arrived."""
        self.run_until(lambda: self.in_flight() == 0, "all messages sent")

    def advance(self, seconds):
        """Move the clock on and run what became due."""
        self.clock.now += seconds
        self.settle()

    # Workers.

    def worker(self):
        """Return a new FakeWorker (not registered)."""
        fake = FakeWorker(self.reactor)
        self.servers.append(fake.server)
        return fake

    def register(self, port):
        """Hand the Scheduler a `register` from localhost:`port`."""
        self.scheduler.handle(protocol.Register(worker_host="localhost",
                                                worker_port=port))

    def ready_worker(self):
        """Return a FakeWorker that has registered and got its ack.

        It is ready, or busy with a task that was waiting for a Worker.
        """
        fake = self.worker()
        self.register(fake.port)
        self.settle()
        assert fake.received[:1] == [protocol.RegisterAck()]
        assert self.state(fake.port) == (BUSY if fake.tasks() else READY)
        return fake

    def heartbeat(self, port):
        """Hand the Scheduler a heartbeat from localhost:`port`."""
        self.scheduler.handle(protocol.Heartbeat(worker_host="localhost",
                                                 worker_port=port))

    def finished(self, port, task_id):
        """Hand the Scheduler a `finished` and let its messages arrive."""
        self.scheduler.handle(protocol.Finished(
            task_id=task_id, worker_host="localhost", worker_port=port))
        self.settle()

    def failed(self, port, task_id, error="boom"):
        """Hand the Scheduler a `task_failed`; let its messages arrive."""
        self.scheduler.handle(protocol.TaskFailed(
            task_id=task_id, worker_host="localhost", worker_port=port,
            error=error))
        self.settle()

    def registry_rejoins(self):
        """Return the Scheduler's watch over uncounted heartbeats."""
        return self.scheduler.registry.rejoins

    def state(self, port):
        """Return the state of the Worker at localhost:`port`."""
        return self.scheduler.registry.get("localhost", port).state

    # Jobs.

    def submit(self, name="job", files=3, **fields):
        """Queue a job over `files` new input files; return the Job.

        `fields` override the `new_manager_job` fields.
        """
        input_dir = self.tmp_path / f"{name}-input"
        input_dir.mkdir()
        for number in range(files):
            (input_dir / f"file{number:02d}").write_text(f"line {number}\n")
        request = {
            "input_directory": str(input_dir),
            "output_directory": str(self.tmp_path / f"{name}-output"),
            "mapper_executable": MAPPER, "reducer_executable": REDUCER,
            "num_mappers": 2, "num_reducers": 2, **fields}
        job = self.scheduler.on_new_job(protocol.NewManagerJob(**request))
        self.settle()
        return job

    def events(self, *kinds):
        """Return the messages of the History's events of `kinds`."""
        return [event.message for event in self.history.events
                if event.kind in kinds]

    def kinds(self):
        """Return the kinds of every event so far, in order."""
        return [event.kind for event in self.history.events]

    def summary(self, job):
        """Return the job's summary as the status answers show it."""
        return self.history.job(job.job_id).view(0.0)

    def shut_down(self):
        """Start the Scheduler's shutdown; count the calls of its `done`."""
        def done():
            self.done_calls += 1
        self.scheduler.shut_down(done)

    def close(self):
        """Close every listener and the loop."""
        for server in self.servers:
            server.close()
        self.reactor.close()


def make_bench(tmp_path, **options):
    """Return a Bench; `options` are ManagerOptions fields."""
    return Bench(tmp_path, ManagerOptions(**options))


@pytest.fixture(name="bench")
def fixture_bench(tmp_path):
    """Give a Bench with the default timings: 10 s, 3 attempts, 5 s."""
    bench = make_bench(tmp_path)
    yield bench
    bench.close()


def closed_port():
    """Return a port of localhost that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_name(port):
    """Return how the log lines name the Worker at localhost:`port`."""
    return f"RemoteWorker(host='localhost', port={port})"


def map_message(job, task_id, names, partitions=2):
    """Return the `new_map_task` of `job` over its input files `names`."""
    return protocol.NewMapTask(
        task_id=task_id,
        input_paths=[os.path.join(job.input_directory, name)
                     for name in names],
        executable=MAPPER, output_directory=job.job_dir,
        num_partitions=partitions)


# Registration.

def test_a_registered_worker_is_acknowledged_then_ready(bench):
    """Joining until its register_ack is sent, then ready for tasks."""
    fake = bench.worker()
    bench.register(fake.port)
    assert bench.state(fake.port) == JOINING
    assert bench.events("worker_registered") == [
        f"Registered {worker_name(fake.port)}"]
    bench.settle()
    assert fake.received == [protocol.RegisterAck()]
    assert bench.state(fake.port) == READY
    assert bench.scheduler.registry.get("localhost", fake.port).last_seen \
        == START


def test_every_message_sent_is_logged_at_debug_level(bench, caplog):
    """One DEBUG line names the message and the Worker it goes to."""
    caplog.set_level(logging.DEBUG, logger="Manager:6000")
    fake = bench.worker()
    bench.register(fake.port)
    assert [(record.levelno, record.getMessage())
            for record in caplog.records
            if record.getMessage().startswith("Sending")] == [
        (logging.DEBUG,
         f"Sending RegisterAck() to {worker_name(fake.port)}")]


def test_a_worker_that_registers_again_gives_its_task_back(bench):
    """Its task goes to the end of the queue; it is acknowledged again."""
    fake = bench.ready_worker()
    job = bench.submit(files=2)
    assert fake.tasks() == [("new_map_task", 0)]
    bench.clock.now += 4
    bench.register(fake.port)
    assert bench.events("worker_back", "task_taken_back") == [
        f"Registered {worker_name(fake.port)} again (it was busy)",
        f"Took MapTask(job_id=0, task_id=0, inputs=1) back from "
        f"{worker_name(fake.port)}"]
    bench.settle()
    assert fake.received[2:] == [protocol.RegisterAck(),
                                 map_message(job, 1, ["file01"])]
    assert bench.scheduler.registry.get("localhost", fake.port).last_seen \
        == START + 4
    bench.finished(fake.port, 1)
    assert fake.tasks()[-1] == ("new_map_task", 0)


def test_a_worker_that_cannot_be_reached_is_dead(bench):
    """A register_ack that cannot be delivered marks the Worker dead."""
    port = closed_port()
    bench.register(port)
    bench.settle()
    assert bench.state(port) == DEAD
    (line,) = bench.events("worker_dead")
    assert line.startswith(f"Marked {worker_name(port)} dead: could not "
                           "send register_ack: ")
    assert "refused" in line
    assert bench.reactor.timer_counts().scheduled == 0, \
        "a dead Worker keeps a liveness deadline"


def blocked_listener():
    """Return a listening socket whose queue is full, and its filler.

    A connection to it neither completes nor fails: a send to it waits
    until its deadline.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.socket()
    filler.setblocking(False)
    filler.connect_ex(listener.getsockname())
    return listener, filler


@pytest.mark.parametrize("send_timeout, heartbeat_timeout, reason", [
    (3.0, 10.0, "could not send register_ack: no answer from "
                "localhost:{port} within 3s"),
    (3.0, 2.0, "no heartbeat for 2.0s"),
])
def test_a_worker_dies_once_of_what_comes_first(
        tmp_path, send_timeout, heartbeat_timeout, reason):
    """A send that never ends fails at the send timeout; dead only once."""
    bench = make_bench(tmp_path, send_timeout=send_timeout,
                       heartbeat_timeout=heartbeat_timeout)
    listener, filler = blocked_listener()
    try:
        port = listener.getsockname()[1]
        bench.register(port)
        first = min(send_timeout, heartbeat_timeout)
        bench.clock.now += first - 0.01
        bench.run_turns()
        assert bench.state(port) == JOINING
        bench.clock.now += 0.01
        bench.run_turns()
        assert bench.state(port) == DEAD
        bench.advance(max(send_timeout, heartbeat_timeout))
        assert bench.events("worker_dead") == [
            f"Marked {worker_name(port)} dead: {reason.format(port=port)}"]
        assert bench.reactor.timer_counts().scheduled == 0
    finally:
        filler.close()
        listener.close()
        bench.close()


# Liveness.

def test_a_silent_worker_is_dead_at_the_timeout_not_before(bench):
    """SPEC.md: 10 s without a heartbeat (the default) and it is dead."""
    fake = bench.ready_worker()
    assert_dead_ten_seconds_on(bench, fake)


def assert_dead_ten_seconds_on(bench, fake):
    """Check that `fake` lives 9.99 s more, and is dead at 10 s."""
    bench.advance(9.99)
    assert bench.state(fake.port) == READY
    bench.advance(0.01)
    assert bench.state(fake.port) == DEAD
    assert bench.events("worker_dead") == [
        f"Marked {worker_name(fake.port)} dead: no heartbeat for 10.0s"]


def test_heartbeats_move_the_deadline(bench):
    """Each heartbeat restarts the 10 s; the last one counts."""
    fake = bench.ready_worker()
    bench.advance(6)
    bench.heartbeat(fake.port)
    assert bench.scheduler.registry.get("localhost", fake.port).last_seen \
        == START + 6
    assert_dead_ten_seconds_on(bench, fake)


def test_heartbeats_of_unknown_and_dead_workers_change_nothing(bench):
    """A heartbeat never registers a Worker nor brings one back."""
    bench.heartbeat(6001)
    assert len(bench.scheduler.registry) == 0
    assert not bench.kinds()
    fake = bench.ready_worker()
    bench.advance(10)
    bench.heartbeat(fake.port)
    worker = bench.scheduler.registry.get("localhost", fake.port)
    assert (worker.state, worker.last_seen) == (DEAD, START)
    assert fake.types() == ["register_ack"]


def test_a_dead_worker_that_registers_again_is_watched_again(bench):
    """Back from the dead: ready, then dead again 10 s after it went quiet."""
    fake = bench.ready_worker()
    bench.advance(10)
    assert bench.state(fake.port) == DEAD
    bench.advance(30)
    bench.register(fake.port)
    assert bench.events("worker_back") == [
        f"Registered {worker_name(fake.port)} again (it was dead)"]
    bench.settle()
    assert bench.state(fake.port) == READY
    bench.advance(9.99)
    assert bench.state(fake.port) == READY
    bench.advance(0.01)
    assert bench.state(fake.port) == DEAD


def test_the_timeout_is_the_options(tmp_path):
    """A Scheduler made with heartbeat_timeout=2 declares death at 2 s."""
    bench = make_bench(tmp_path, heartbeat_timeout=2.0)
    try:
        fake = bench.ready_worker()
        bench.advance(1.99)
        assert bench.state(fake.port) == READY
        bench.advance(0.01)
        assert bench.events("worker_dead") == [
            f"Marked {worker_name(fake.port)} dead: no heartbeat for 2.0s"]
    finally:
        bench.close()


# Tasks.

def test_a_job_runs_its_maps_then_its_reduces_then_ends(bench):
    """The SPEC.md messages, in order; the files; the events."""
    fake = bench.ready_worker()
    output = bench.tmp_path / "job-output"
    output.mkdir()
    (output / "old-result").write_text("from an earlier run\n")
    job = bench.submit(files=3)
    assert job.job_id == 0
    assert job.job_dir == os.path.join(bench.scheduler.shared_dir,
                                       "job-00000")
    assert os.listdir(output) == [], "the output directory was not emptied"
    assert os.path.isdir(job.job_dir)
    assert fake.received[1:] == [map_message(job, 0, ["file00", "file02"])]
    assert bench.state(fake.port) == BUSY
    bench.finished(fake.port, 0)
    assert fake.received[2:] == [map_message(job, 1, ["file01"])]
    for name in ("maptask00000-part00000", "maptask00001-part00000",
                 "maptask00001-part00001"):
        (bench.tmp_path / "shared" / "job-00000" / name).write_text("x\t1\n")
    bench.finished(fake.port, 1)
    assert bench.events("job_stage") == [
        "Job 0: map stage done, starting reduce stage"]
    assert fake.received[3:] == [protocol.NewReduceTask(
        task_id=0, executable=REDUCER,
        input_paths=[os.path.join(job.job_dir, "maptask00000-part00000"),
                     os.path.join(job.job_dir, "maptask00001-part00000")],
        output_directory=str(output))]
    bench.finished(fake.port, 0)
    assert fake.received[4:] == [protocol.NewReduceTask(
        task_id=1, executable=REDUCER,
        input_paths=[os.path.join(job.job_dir, "maptask00001-part00001")],
        output_directory=str(output))]
    for name in ("part-00001", "part-00000", "notes"):
        (output / name).write_text("x\t2\n")
    bench.finished(fake.port, 1)
    assert not os.path.exists(job.job_dir)
    assert bench.scheduler.job is None
    assert bench.state(fake.port) == READY
    summary = bench.summary(job)
    assert (summary["state"], summary["part_files"]) == (
        "finished", ["part-00000", "part-00001"])
    assert (summary["map"], summary["reduce"]) == (
        {"done": 2, "total": 2}, {"done": 2, "total": 2})
    assert bench.kinds() == [
        "worker_registered", "job_queued", "job_started", "task_assigned",
        "task_finished", "task_assigned", "task_finished", "job_stage",
        "task_assigned", "task_finished", "task_assigned", "task_finished",
        "job_finished"]
    assert len(fake.received) == 5


def test_tasks_go_to_ready_workers_in_registration_order(bench):
    """Busy and joining Workers get nothing; the first ready one does."""
    first, second, third = (bench.ready_worker() for _ in range(3))
    late = bench.worker()
    bench.register(late.port)  # Joining until the loop sends its ack.
    bench.submit(files=3, num_mappers=3)
    assert [fake.tasks() for fake in (first, second, third, late)] == [
        [("new_map_task", 0)], [("new_map_task", 1)],
        [("new_map_task", 2)], []]
    assert not bench.scheduler.job.stage.pending


def test_a_finished_job_with_no_output_directory_has_no_part_files(bench):
    """Its directories gone: the job ends all the same."""
    fake = bench.ready_worker()
    job = bench.submit(files=1, num_reducers=1)
    bench.finished(fake.port, 0)
    os.rmdir(job.output_directory)
    os.rmdir(job.job_dir)
    bench.finished(fake.port, 0)
    summary = bench.summary(job)
    assert (summary["state"], summary["part_files"]) == ("finished", [])


def test_jobs_run_one_at_a_time_in_order(bench):
    """A second job waits for the first, then runs with the next id."""
    fake = bench.ready_worker()
    first = bench.submit("first", files=1, num_reducers=1)
    second = bench.submit("second", files=1, num_reducers=1)
    assert (first.job_id, second.job_id) == (0, 1)
    assert bench.scheduler.job is first
    assert list(bench.scheduler.queue.waiting) == [second]
    assert bench.summary(second)["state"] == "queued"
    bench.finished(fake.port, 0)
    bench.finished(fake.port, 0)
    assert bench.scheduler.job is second
    assert fake.received[-1] == map_message(second, 0, ["file00"], 1)
    assert bench.events("job_started") == [f"Started {first!r}",
                                           f"Started {second!r}"]


def rejected_behind_a_running_job(bench, bad_fields):
    """Queue a bad job and a good one behind a running job, end it.

    Returns the fake Worker, the bad job and the good one.
    """
    fake = bench.ready_worker()
    bench.submit("first", files=1, num_reducers=1)
    bad = bench.submit("bad", files=1, **bad_fields)
    good = bench.submit("good", files=1)
    assert bench.summary(bad)["state"] == "queued"
    bench.finished(fake.port, 0)
    bench.finished(fake.port, 0)
    return fake, bad, good


def test_a_job_fails_its_checks_and_the_next_one_runs(bench):
    """A rejected job never touches its output; the next job starts."""
    output = bench.tmp_path / "kept"
    output.mkdir()
    (output / "precious").write_text("keep me\n")
    missing = str(bench.tmp_path / "missing")
    fake, bad, good = rejected_behind_a_running_job(bench, {
        "input_directory": missing, "output_directory": str(output)})
    assert bench.events("job_rejected") == [
        f"Rejected {bad!r}: input directory {missing!r} is not a directory"]
    assert bench.summary(bad)["state"] == "rejected"
    assert (output / "precious").exists()
    assert bench.scheduler.job is good
    assert fake.received[-1] == map_message(good, 0, ["file00"])


def test_a_job_may_not_write_into_the_shared_directory(bench):
    """The Manager's own files are not a job's output directory."""
    inside = os.path.join(bench.scheduler.shared_dir, "output")
    _, bad, good = rejected_behind_a_running_job(
        bench, {"output_directory": inside})
    assert bench.events("job_rejected") == [
        f"Rejected {bad!r}: output directory {inside!r} is inside the "
        "shared directory"]
    assert bench.scheduler.job is good


def test_a_job_whose_directories_cannot_be_made_is_rejected(bench):
    """An output directory under a file: rejected, and the next job runs."""
    (bench.tmp_path / "a-file").write_text("not a directory\n")
    fake, bad, good = rejected_behind_a_running_job(bench, {
        "output_directory": str(bench.tmp_path / "a-file" / "output")})
    (line,) = bench.events("job_rejected")
    assert line.startswith(f"Rejected {bad!r}: could not prepare its "
                           "directories: [Errno 20] Not a directory")
    assert not os.path.exists(bad.job_dir)
    assert bench.scheduler.job is good
    assert fake.received[-1] == map_message(good, 0, ["file00"])


def test_a_job_that_waits_for_workers_says_so_once(bench):
    """With no live Worker the job waits, and one line says why."""
    job = bench.submit(files=2)
    assert bench.events("job_waiting") == [
        "Job 0 is waiting: no Worker has registered yet"]
    bench.register(closed_port())
    bench.settle()
    assert len(bench.events("job_waiting")) == 1
    fake = bench.ready_worker()
    assert fake.tasks() == [("new_map_task", 0)]
    bench.advance(10)
    assert bench.state(fake.port) == DEAD
    assert bench.events("job_waiting")[1:] == [
        "Job 0 is waiting: no live Worker to run its tasks"]
    assert bench.summary(job)["state"] == "running"


def test_a_job_waits_quietly_while_a_worker_is_busy(bench):
    """Tasks queue behind a live Worker: nothing to say."""
    bench.ready_worker()
    bench.submit(files=3, num_mappers=3)
    assert not bench.events("job_waiting")


def test_reports_that_do_not_match_the_assignment_are_ignored(
        bench, caplog):
    """Unknown, dead, idle Workers and wrong task ids: logged, no effect."""
    caplog.set_level(logging.WARNING)
    idle = bench.ready_worker()
    busy = bench.ready_worker()
    dead = bench.ready_worker()
    bench.submit(files=1, num_reducers=1)
    assert busy.tasks() == [] and idle.tasks() == [("new_map_task", 0)]
    bench.scheduler.registry.get("localhost", dead.port).state = DEAD
    caplog.clear()
    bench.finished(6001, 0)
    bench.failed(dead.port, 0)
    bench.finished(busy.port, 0)
    bench.finished(idle.port, 1)
    assert [record.getMessage() for record in caplog.records] == [
        "Ignored finished of task 0 from localhost:6001: unknown or dead "
        "Worker",
        f"Ignored task_failed of task 0 from localhost:{dead.port}: "
        "unknown or dead Worker",
        f"Ignored finished of task 0 from {worker_name(busy.port)}: it "
        "holds None",
        f"Ignored finished of task 1 from {worker_name(idle.port)}: it "
        "holds MapTask(job_id=0, task_id=0, inputs=1)"]
    assert bench.state(idle.port) == BUSY
    assert bench.scheduler.job.stage.name == "map"
    assert not bench.events("task_finished", "task_failed")


def test_a_forged_host_cannot_write_lines_into_the_log(bench, caplog):
    """A report from an unknown host shows that host escaped, on one line.

    Raw, a newline would forge a log line, and a lone surrogate (valid in
    JSON) could not even be written to a UTF-8 log.
    """
    caplog.set_level(logging.WARNING)
    forged = "x\nManager:6000 [INFO] Finished Job(job_id=0)\ud800"
    bench.scheduler.handle(protocol.Finished(
        task_id=0, worker_host=forged, worker_port=6001))
    assert [record.getMessage() for record in caplog.records] == [
        f"Ignored finished of task 0 from {forged!r}:6001: unknown or dead "
        "Worker"]


# Failures.

def test_a_failed_task_is_retried_first_and_on_another_worker(bench):
    """Front of the queue; a Worker it has not failed on, if one is ready."""
    first = bench.ready_worker()
    job = bench.submit(files=3, num_mappers=3)
    bench.failed(first.port, 0, "mapper exited with 1")
    assert bench.events("task_failed") == [
        f"{worker_name(first.port)} failed MapTask(job_id=0, task_id=0, "
        "inputs=1) (attempt 1 of 3): mapper exited with 1"]
    # Only the Worker it failed on is ready: it gets it again, before 1.
    assert first.received[-1] == map_message(job, 0, ["file00"])
    second = bench.ready_worker()
    bench.finished(second.port, 1)
    bench.finished(second.port, 2)
    assert second.tasks() == [("new_map_task", 1), ("new_map_task", 2)]
    bench.failed(first.port, 0)
    assert second.tasks()[-1] == ("new_map_task", 0)
    assert len(first.tasks()) == 2


def test_a_task_is_given_to_a_fresh_worker_before_one_it_failed_on(bench):
    """Of the ready Workers, the first it has not failed on gets it."""
    first, second, third = (bench.ready_worker() for _ in range(3))
    bench.submit(files=1, num_reducers=1)
    bench.failed(first.port, 0)
    assert second.tasks() == [("new_map_task", 0)]
    bench.failed(second.port, 0)
    assert third.tasks() == [("new_map_task", 0)]
    assert len(first.tasks()) == 1


def test_a_task_that_fails_every_attempt_fails_its_job(bench):
    """Third failure: the job fails, its files are removed, next job runs."""
    fake = bench.ready_worker()
    job = bench.submit(files=1, num_reducers=1)
    bench.submit("next", files=1)
    (bench.tmp_path / "job-output" / "part-00000").write_text("half\n")
    bench.failed(fake.port, 0, "first")
    bench.failed(fake.port, 0, "second")
    assert bench.scheduler.job is job
    bench.failed(fake.port, 0, "mapper exited with 1; stderr: oops")
    assert bench.events("job_failed") == [
        f"Job 0 failed: MapTask(job_id=0, task_id=0, inputs=1) with "
        f"executable {MAPPER!r} failed 3 times; last error: mapper exited "
        f"with 1; stderr: oops; removed its output directory "
        f"{job.output_directory}"]
    assert bench.summary(job)["stderr_tail"] == "oops"
    assert not os.path.exists(job.output_directory)
    assert not os.path.exists(job.job_dir)
    assert bench.scheduler.job.job_id == 1
    assert fake.tasks()[-1] == ("new_map_task", 0)
    assert not bench.events("job_held")


def test_a_job_fails_even_when_its_directories_are_gone(bench):
    """Nothing left to remove is no reason to stop failing the job."""
    fake = bench.ready_worker()
    job = bench.submit(files=1, num_reducers=1)
    os.rmdir(job.output_directory)
    for _ in range(3):
        bench.failed(fake.port, 0)
    assert bench.summary(job)["state"] == "failed"
    assert bench.summary(job)["stderr_tail"] is None
    assert bench.scheduler.job is None


def test_max_attempts_is_the_options(tmp_path):
    """With max_attempts=1 the first failure fails the job."""
    bench = make_bench(tmp_path, max_attempts=1)
    try:
        fake = bench.ready_worker()
        job = bench.submit(files=1)
        bench.failed(fake.port, 0)
        assert bench.summary(job)["state"] == "failed"
        assert bench.events("task_failed")[0].endswith(
            "(attempt 1 of 1): boom")
    finally:
        bench.close()


def test_reports_about_a_failed_job_change_nothing_of_the_next(tmp_path):
    """Late reports of an ended job free the Worker and count for nothing."""
    bench = make_bench(tmp_path, max_attempts=1)
    try:
        first, second, third = (bench.ready_worker() for _ in range(3))
        old = bench.submit("old", files=3, num_mappers=3)
        new = bench.submit("new", files=2)
        bench.failed(first.port, 0)
        assert bench.scheduler.job is new
        assert first.tasks()[-1] == ("new_map_task", 0)
        bench.failed(second.port, 1)
        assert bench.events("task_failed")[-1].endswith(
            "(attempt 1 of 1): boom")
        assert second.tasks()[-1] == ("new_map_task", 1)
        bench.register(third.port)  # Back: its old task is not requeued.
        bench.finished(first.port, 0)
        bench.finished(second.port, 1)
        assert bench.summary(old)["state"] == "failed"
        assert bench.summary(new)["map"]["done"] == 2
        assert bench.scheduler.job.stage.name == "reduce"
        assert not bench.events("task_taken_back")
    finally:
        bench.close()


def finish_maps(bench, workers, count):
    """Have `workers[0]` finish map tasks 0 .. count-1 one by one."""
    for task_id in range(count):
        bench.finished(workers[0].port, task_id)


def test_reduce_tasks_of_a_failed_job_hold_the_next_job(tmp_path):
    """The next job starts once no reduce task of the failed one runs."""
    bench = make_bench(tmp_path, max_attempts=1)
    try:
        first, second = bench.ready_worker(), bench.ready_worker()
        old = bench.submit("old", files=1)
        finish_maps(bench, [first], 1)
        assert first.tasks()[-1] == ("new_reduce_task", 0)
        assert second.tasks()[-1] == ("new_reduce_task", 1)
        new = bench.submit("new", files=1)
        bench.failed(first.port, 0)
        assert bench.summary(old)["state"] == "failed"
        assert bench.events("job_held") == [
            "Waiting for 1 reduce task(s) of job 0 to end before the next "
            "job starts"]
        assert bench.scheduler.job is None
        assert first.tasks()[-1] == ("new_reduce_task", 0)
        bench.finished(second.port, 1)
        assert bench.scheduler.job is new
        assert first.received[-1] == map_message(new, 0, ["file00"])
        assert bench.summary(old)["reduce"]["done"] == 0
    finally:
        bench.close()


def test_a_job_fails_when_its_map_output_cannot_be_listed(bench):
    """The job directory gone before the reduce stage: the job fails."""
    fake = bench.ready_worker()
    job = bench.submit(files=1)
    os.rmdir(job.job_dir)
    bench.finished(fake.port, 0)
    (line,) = bench.events("job_failed")
    assert line.startswith("Job 0 failed: could not list the map output: "
                           "[Errno 2] No such file or directory")
    assert bench.scheduler.job is None
    assert not os.path.exists(job.output_directory)


def test_a_task_whose_message_cannot_be_sent_goes_first(bench):
    """Lost on the way: the Worker is dead, its task is next in line."""
    first = bench.ready_worker()
    second = bench.ready_worker()
    second.server.close()
    job = bench.submit(files=3, num_mappers=3)
    assert bench.state(second.port) == DEAD
    assert bench.events("task_taken_back") == [
        f"Took MapTask(job_id=0, task_id=1, inputs=1) back from "
        f"{worker_name(second.port)}"]
    bench.finished(first.port, 0)
    assert first.received[-1] == map_message(job, 1, ["file01"])


def test_a_dead_workers_task_goes_to_the_end_of_the_queue(bench):
    """Taken back from a silent Worker, it runs after the queued ones."""
    first, second = bench.ready_worker(), bench.ready_worker()
    bench.submit(files=3, num_mappers=3)
    bench.advance(5)
    bench.heartbeat(second.port)
    bench.advance(5)
    assert bench.state(first.port) == DEAD
    assert bench.events("task_taken_back") == [
        f"Took MapTask(job_id=0, task_id=0, inputs=1) back from "
        f"{worker_name(first.port)}"]
    bench.finished(second.port, 1)
    bench.finished(second.port, 2)
    assert second.tasks() == [("new_map_task", 1), ("new_map_task", 2),
                              ("new_map_task", 0)]


# Shutdown.

def test_shutdown_abandons_the_jobs_and_stops_the_live_workers(bench):
    """Output removed, every job abandoned, `shutdown` to live Workers."""
    busy, idle = bench.ready_worker(), bench.ready_worker()
    dead = bench.ready_worker()
    bench.scheduler.registry.get("localhost", dead.port).state = DEAD
    unreachable = bench.ready_worker()
    unreachable.server.close()
    running = bench.submit("running", files=1, num_reducers=1)
    queued = bench.submit("queued", files=1)
    bench.shut_down()
    assert bench.scheduler.stopping
    assert bench.done_calls == 0
    bench.settle()
    assert bench.done_calls == 1
    assert busy.received[-1] == idle.received[-1] == protocol.Shutdown()
    assert dead.types() == ["register_ack"]
    assert not os.path.exists(running.output_directory)
    assert not os.path.exists(running.job_dir)
    assert bench.events("manager_stopping", "job_abandoned") == [
        "Shutting down",
        f"Abandoned job 0 (running): the Manager shut down; removed its "
        f"output directory {running.output_directory}",
        "Abandoned job 1 (queued): the Manager shut down"]
    assert bench.scheduler.job is None
    assert not bench.scheduler.queue.waiting
    assert bench.summary(queued)["state"] == "abandoned"
    bench.shut_down()
    bench.finished(busy.port, 0)
    bench.settle()
    assert bench.done_calls == 1
    assert bench.events("manager_stopping") == ["Shutting down"]
    assert busy.received[-1] == protocol.Shutdown()
    assert len(busy.received) == 3


def test_shutdown_with_the_running_jobs_directories_gone(bench):
    """Nothing left to remove: the job is abandoned all the same."""
    bench.ready_worker()
    job = bench.submit(files=1)
    os.rmdir(job.output_directory)
    os.rmdir(job.job_dir)
    bench.shut_down()
    bench.settle()
    assert bench.summary(job)["state"] == "abandoned"
    assert bench.done_calls == 1


def test_shutdown_gives_each_worker_the_send_timeout(tmp_path):
    """A Worker that never takes its `shutdown` holds the end that long."""
    bench = make_bench(tmp_path, send_timeout=3.0, heartbeat_timeout=100.0)
    listener, filler = blocked_listener()
    try:
        bench.register(listener.getsockname()[1])
        bench.clock.now += 1
        bench.shut_down()
        bench.clock.now += 2.99
        bench.run_turns()
        assert bench.done_calls == 0
        bench.clock.now += 0.01
        bench.run_turns()
        assert bench.done_calls == 1
    finally:
        filler.close()
        listener.close()
        bench.close()


def test_shutdown_with_no_live_worker_is_done_at_once(bench):
    """Nothing to tell: `done` runs before shut_down returns."""
    bench.shut_down()
    assert bench.done_calls == 1
    assert bench.kinds() == ["manager_stopping"]
