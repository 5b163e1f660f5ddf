"""The fixtures of more than one test module, defined once.

A Reactor, a Reactor running in a background thread, a private temp dir
for task files, the pid file of t_hang.sh, and the dashboard's sample
data.
"""

import queue
import threading

import pytest

from mapreduce.localcluster import KeepError
from mapreduce.reactor import Reactor
from tests.dashboard_sample import SampleSource
from tests.util import hang_pidfile, redirect_temp

WAIT = 5.0  # Seconds to wait for something that should happen at once.


class LoopThread:
    """A Reactor whose `run()` goes on in a background thread."""

    def __init__(self, reactor):
        """Start running `reactor` in a new thread."""
        self.reactor = reactor
        self.thread = threading.Thread(target=reactor.run,
                                       name="reactor-test-loop", daemon=True)
        self.thread.start()

    def call(self, function, *args):
        """Run `function(*args)` on the loop thread; return its result."""
        answers = queue.Queue()

        def work():
            """Run the function and hand its outcome to the caller.

            Any failure is kept and re-raised in the test's own thread.
            """
            with KeepError() as kept:
                answers.put((True, function(*args)))
            if kept.error is not None:
                answers.put((False, kept.error))

        self.reactor.call_soon_threadsafe(work)
        succeeded, value = answers.get(timeout=WAIT)
        if not succeeded:
            raise value
        return value

    def sync(self):
        """Wait until the loop has finished what it was doing."""
        self.call(lambda: None)

    def stop(self):
        """Stop the loop, wait for its thread, and close the Reactor."""
        if self.thread.is_alive():
            self.reactor.call_soon_threadsafe(self.reactor.stop)
            self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the loop did not stop"
        self.reactor.close()


@pytest.fixture(name="reactor")
def fixture_reactor():
    """Give a Reactor that the test runs itself; close it afterwards."""
    reactor = Reactor()
    yield reactor
    reactor.close()


@pytest.fixture(name="loop")
def fixture_loop():
    """Give a LoopThread; stop and close it afterwards."""
    loop = LoopThread(Reactor())
    yield loop
    loop.stop()


@pytest.fixture(name="local_tmp")
def fixture_local_tmp(tmp_path, monkeypatch):
    """Send every temporary file of the test into an empty directory."""
    return redirect_temp(tmp_path / "tmp", monkeypatch)


@pytest.fixture(name="pidfile")
def fixture_pidfile(tmp_path, monkeypatch):
    """Give the file where t_hang.sh writes its pids; kill them afterwards."""
    yield from hang_pidfile(tmp_path / "pids", monkeypatch)


@pytest.fixture(name="source")
def fixture_source():
    """Give the sample Manager data the dashboard is shown."""
    return SampleSource()
