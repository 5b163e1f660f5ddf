"""Liveness on a fake clock: dead after the timeout, and not much later.

The Manager runs for real (threads, sockets, fake Workers) but its reactor
reads a clock that moves only when the test moves it, so the default
10-second timeout is checked exactly and without waiting 10 s. The clock is
injected by replacing the `Reactor` the Manager module builds with one that
takes the fake clock; nothing else is faked.
"""

import importlib
import logging
import threading

import pytest

from mapreduce.localcluster import start_in_thread
from mapreduce.manager import Manager
from mapreduce.reactor import Reactor
from tests.util import (
    EXEC, FakePeer, job_message, register, send_json, send_udp,
)

MANAGER_MODULE = importlib.import_module("mapreduce.manager.manager")
CLI_MODULE = importlib.import_module("mapreduce.manager.__main__")
SPEC_TIMEOUT = 10.0  # SPEC.md: a Worker silent for 10 s is dead.
EARLY = 0.1  # This long before its deadline a Worker must still be alive.
LATE = 0.5  # By this long after its deadline it must be marked dead.
SYNC_WAIT = 10.0  # Real seconds to wait for the loop to catch up.


class FakeClock:
    """A monotonic clock for the reactor that moves only when told to."""

    def __init__(self, start=1000.0):
        """Start at `start` seconds."""
        self.now = start
        self._lock = threading.Lock()

    def __call__(self):
        """Return the current fake time."""
        with self._lock:
            return self.now

    def advance(self, seconds):
        """Move the clock forward by `seconds`."""
        with self._lock:
            self.now += seconds


class FakeTime:
    """The fake clock and the reactors that read it."""

    def __init__(self):
        """Start with a fresh clock and no reactor."""
        self.clock = FakeClock()
        self.reactors = []

    def make_reactor(self, logger=None):
        """Build a Reactor on the fake clock (stands in for `Reactor`)."""
        reactor = Reactor(logger, clock=self.clock)
        self.reactors.append(reactor)
        return reactor

    def sync(self):
        """Wait until every loop has run all it was due to run by now.

        A callback posted from here runs in the same turn as the timers that
        are due; the one it posts runs in the turn after, once they are done.
        """
        for reactor in self.reactors:
            done = threading.Event()
            reactor.call_soon_threadsafe(reactor.call_soon, done.set)
            assert done.wait(SYNC_WAIT), "the loop did not catch up"

    def advance(self, seconds):
        """Move the clock on, wake the loops and let them catch up."""
        self.clock.advance(seconds)
        self.sync()


@pytest.fixture(name="fake_time")
def fixture_fake_time(monkeypatch):
    """Make every Manager built in this test run on a fake clock."""
    fake = FakeTime()
    monkeypatch.setattr(MANAGER_MODULE, "Reactor", fake.make_reactor)
    return fake


def dead_lines(caplog, peer):
    """Return the log lines that mark fake Worker `peer` dead."""
    name = f"RemoteWorker(host='localhost', port={peer.port})"
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING
            and r.getMessage().startswith(f"Marked {name} dead")]


def run_manager_cli(port, shared_dir):
    """Run `mapreduce-manager` as its command line would, in this process."""
    CLI_MODULE.main.main(["--port", str(port), "--shared_dir", shared_dir],
                         standalone_mode=False)


def check_dies_on_time(fake_time, caplog, manager_port, timeout):
    """Register a silent Worker; check it dies at `timeout`, not before."""
    caplog.set_level(logging.DEBUG)
    with FakePeer() as silent:
        register(silent, manager_port)
        fake_time.sync()
        fake_time.advance(timeout - EARLY)
        assert not dead_lines(caplog, silent), "dead before the timeout"
        fake_time.advance(EARLY + LATE)
        assert dead_lines(caplog, silent), "not dead soon after the timeout"


def test_silent_worker_dies_at_the_default_timeout(fake_time, caplog,
                                                   tmp_path):
    """A Manager built with its defaults marks a silent Worker dead at 10 s."""
    manager = start_in_thread(Manager, host="localhost",
                              shared_dir=str(tmp_path))
    try:
        check_dies_on_time(fake_time, caplog, manager.port, SPEC_TIMEOUT)
    finally:
        manager.shutdown()


def test_silent_worker_dies_at_the_command_lines_timeout(
        fake_time, caplog, tmp_path, monkeypatch):
    """`mapreduce-manager` marks a silent Worker dead at 10 s too."""
    # The command's own log set-up would add a handler to this process.
    monkeypatch.setattr(CLI_MODULE, "configure", lambda *args: None)
    manager = start_in_thread(run_manager_cli, shared_dir=str(tmp_path))
    try:
        check_dies_on_time(fake_time, caplog, manager.port, SPEC_TIMEOUT)
    finally:
        manager.shutdown()


def test_beating_worker_lives_on_and_dies_a_timeout_after_its_last_beat(
        fake_time, caplog, tmp_path):
    """Beats keep a Worker alive for ever; the timeout counts from the last.

    The Worker is also busy with a task, which must not change either rule.
    """
    caplog.set_level(logging.DEBUG)
    manager = start_in_thread(Manager, host="localhost",
                              shared_dir=str(tmp_path))
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "a").write_text("a\n")
    try:
        with FakePeer() as peer:
            register(peer, manager.port)
            send_tcp_job(manager.port, tmp_path)
            assert peer.next()["message_type"] == "new_map_task"
            beat = {"message_type": "heartbeat", "worker_host": "localhost",
                    "worker_port": peer.port}
            for _ in range(20):  # 40 s of beats, one every 2 s.
                send_udp(manager.port, beat)
                fake_time.sync()
                fake_time.advance(2.0)
            assert not dead_lines(caplog, peer), "died although beating"
            send_udp(manager.port, beat)
            fake_time.sync()
            fake_time.advance(SPEC_TIMEOUT - EARLY)
            assert not dead_lines(caplog, peer), "dead before the timeout"
            fake_time.advance(EARLY + LATE)
            assert dead_lines(caplog, peer), "not dead after the timeout"
    finally:
        manager.shutdown()


def send_tcp_job(manager_port, tmp_path):
    """Submit a one-task job reading tmp_path/input."""
    send_json(manager_port, job_message(
        tmp_path / "input", tmp_path / "output", EXEC / "wc_map.sh",
        EXEC / "wc_reduce.sh", num_mappers=1, num_reducers=1))


def beat_at_fake_times(fake_time, manager_port, peer, times):
    """Send `peer`'s heartbeat at each of `times` (s from now, rising)."""
    beat = {"message_type": "heartbeat", "worker_host": "localhost",
            "worker_port": peer.port}
    now = 0.0
    for when in times:
        fake_time.advance(when - now)
        now = when
        send_udp(manager_port, beat)
        fake_time.sync()


def test_a_beating_stranger_is_told_to_rejoin_at_4_seconds(fake_time,
                                                           tmp_path):
    """Beats at 0, 2 and 3.9 s get nothing; the one at 4 s gets `rejoin`,
    exactly the extension's message; the next ones nothing until 8 s."""
    manager = start_in_thread(Manager, host="localhost",
                              shared_dir=str(tmp_path))
    try:
        with FakePeer() as stranger:
            beat_at_fake_times(fake_time, manager.port, stranger,
                               [0.0, 2.0, 3.9])
            stranger.expect_none(0.3)
            beat_at_fake_times(fake_time, manager.port, stranger, [0.1])
            assert stranger.next(skip=()) == {"message_type": "rejoin"}
            beat_at_fake_times(fake_time, manager.port, stranger,
                               [2.0, 3.9])
            stranger.expect_none(0.3)
            beat_at_fake_times(fake_time, manager.port, stranger, [0.1])
            assert stranger.next(skip=()) == {"message_type": "rejoin"}
            register(stranger, manager.port)
            beat_at_fake_times(fake_time, manager.port, stranger,
                               [2.0, 4.0, 6.0, 8.0])
            stranger.expect_none(0.3)
    finally:
        manager.shutdown()
