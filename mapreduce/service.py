"""A process's server as an object: open it, run it, start it, stop it.

The Manager and the Worker share this life cycle. A `Service` owns a
reactor; a subclass opens its listeners in `listen(closing)` (putting
what must be closed on the ExitStack `closing`), may do something just
before the loop runs (`before_run`), and says how to shut down
(`shut_down`, loop thread). `run_blocking()` is the specification's
blocking form: signals stop it, and it returns when all is closed.

With a secret (`sign_with`), the reactor signs and checks every message
(mapreduce.signing); without one, a service listening where other
machines can reach it warns, once, what anyone there can do.
"""

import contextlib
import threading

from mapreduce.reactor.net import is_loopback
from mapreduce.signals import stop_on_signals
from mapreduce.signing import signing


class Service:
    """A server on a reactor that code can build, start and stop."""

    name = "service"
    # What anyone who reaches an unsigned service can do (for a warning).
    exposure = "anyone who can reach it can send it messages"

    def __init__(self, reactor):
        """Serve on `reactor`; nothing is open yet."""
        self.reactor = reactor
        self._running = _Running()

    @property
    def port(self):
        """Return the port the service listens on (known once open)."""
        raise NotImplementedError

    @property
    def host(self):
        """Return the address the service listens on."""
        raise NotImplementedError

    @property
    def signed_name(self):
        """Return the name the service signs as (see mapreduce.signing)."""
        raise NotImplementedError

    @property
    def log(self):
        """Return the service's logger (its reactor's, named by its port)."""
        return self.reactor.log

    @property
    def signed(self):
        """Tell whether the service signs and checks every message."""
        return self.reactor.envelope is not None

    def sign_with(self, secret, name_of):
        """Sign with bytes `secret` (None: send the spec's plain bytes).

        `name_of(address)` names the process at a destination.
        """
        self.reactor.envelope = signing(secret, "", name_of,
                                        lambda: self.log)

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
        self._announce_signing()

    def _announce_signing(self):
        """Start checking signatures, or warn if anyone can reach us."""
        envelope = self.reactor.envelope
        if envelope is not None:
            envelope.name = self.signed_name
            # Nothing signed before now was meant for this process.
            envelope.authenticator.refuse_older_than_now()
            self.log.info("Signing every message as %r; unsigned, "
                          "tampered, replayed and stale ones are refused",
                          envelope.name)
        elif not is_loopback(self.host):
            self.log.warning(
                "Listening on %s:%s without a secret: %s. Give every "
                "process of the cluster --secret-file (README: Security)",
                self.host, self.port, self.exposure)

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
