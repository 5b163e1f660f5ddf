"""Stopping a process cleanly on SIGINT and SIGTERM, for Manager and Worker.

A signal handler runs between two bytecodes of the main thread, which may
be in the middle of anything; so the handler only posts the stop to the
reactor's loop (`call_soon_threadsafe`), where the process's state lives.
"""

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(reactor, stop):
    """While inside, SIGINT and SIGTERM run `stop()` on the reactor's loop.

    Only the main thread may set signal handlers; elsewhere (a Manager or
    Worker run in a thread, as tests do) this does nothing. The previous
    handlers come back on the way out.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, _frame):
        reactor.log.info("Received %s", signal.Signals(signum).name)
        reactor.call_soon_threadsafe(stop)

    previous = {signum: signal.signal(signum, handle)
                for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
