"""Shared fixtures: a Reactor, and a Reactor running in a background thread."""

import queue
import threading

import pytest

from mapreduce.reactor import Reactor

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
            """Run the function and hand its outcome to the caller."""
            try:
                answers.put((True, function(*args)))
            except Exception as exc:  # pylint: disable=broad-exception-caught
                # Any failure is re-raised in the test's own thread.
                answers.put((False, exc))

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
