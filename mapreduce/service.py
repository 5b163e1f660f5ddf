"""A process's server as an object: open it, run it, start it, stop it.

The Manager and the Worker share this life cycle. A `Service` owns a
reactor; a subclass opens its listeners in `listen(closing)` (putting
what must be closed on the ExitStack `closing`), may do something just
before the loop runs (`before_run`), and says how to shut down
(`shut_down`, loop thread). `run_blocking()` is the specification's
blocking form: signals stop it, and it returns when all is closed.
"""

import contextlib
import threading

from mapreduce.signals import stop_on_signals


class Service:
    """A server on a reactor that code can build, start and stop."""

    name = "service"

    def __init__(self, reactor):
        """Serve on `reactor`; nothing is open yet."""
        self.reactor = reactor
        self._running = _Running()

    @property
    def port(self):
        """Return the port the service listens on (known once open)."""
        raise NotImplementedError

    @property
    def log(self):
        """Return the service's logger (its reactor's, named by its port)."""
        return self.reactor.log

    def listen(self, closing):
        """Open the listeners; push what must be closed onto `closing`."""
        raise NotImplementedError

    def before_run(self):
        """Do what must be done just before the loop runs (nothing here)."""

    def shut_down(self):
        """Stop serving, ending with `reactor.stop()`; loop thread only."""
        raise NotImplementedError

    def open(self):
        """Listen; the loop does not run yet.

        Raises OSError (nothing left open) when a port cannot be had.
        """
        closing = self._running.closing
        closing.callback(self.reactor.close)
        try:
            self.listen(closing)
        except BaseException:
            self.close()
            raise
        self._running.opened = True

    def close(self):
        """Close the listeners and the loop (and what `listen` added)."""
        self._running.closing.close()

    def run(self):
        """Open (unless open), run the loop until shutdown, then close."""
        try:
            if not self._running.opened:
                self.open()
            self.before_run()
            self.reactor.run()
        finally:
            self.close()

    def run_blocking(self):
        """Run in this thread until shutdown, SIGINT or SIGTERM."""
        # Signals are caught from the start to the very end, so that one
        # arriving early or during clean-up still ends in a clean exit.
        with stop_on_signals(self.reactor, self.shut_down):
            self.run()

    def start(self):
        """Open, then run the loop in a thread of its own; return self."""
        self.open()
        self._running.thread = threading.Thread(
            target=self.run, daemon=True, name=f"{self.name}-{self.port}")
        self._running.thread.start()
        return self

    def stop(self, timeout=None):
        """Shut down as a `shutdown` message would; wait for the thread.

        Returns whether the loop's thread has ended (everything is closed
        by then).
        """
        thread = self._running.thread
        if thread is None:
            return True
        if thread.is_alive():
            self.reactor.call_soon_threadsafe(self.shut_down)
            thread.join(timeout)
        return not thread.is_alive()


class _Running:
    """What a started service holds: what to close, and its thread."""

    def __init__(self):
        """Hold nothing yet."""
        self.closing = contextlib.ExitStack()
        self.thread = None
        self.opened = False

    def __repr__(self):
        """Show the thread and whether the service is open."""
        return f"_Running(thread={self.thread!r}, opened={self.opened})"
