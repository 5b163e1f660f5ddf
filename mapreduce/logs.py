"""Logging set-up shared by the Manager and Worker: `Role:port [LEVEL] msg`."""

import contextlib
import logging
import signal
import sys
import threading

LOG_FORMAT = "%(name)s [%(levelname)s] %(message)s"
LEVELS = ("debug", "info", "warning", "error", "critical")


def get_logger(role, port):
    """Return the logger of one process, named like `Manager:6000`."""
    return logging.getLogger(f"{role}:{port}")


def configure(logfile=None, loglevel="info"):
    """Send log lines to `logfile` (or stderr) at `loglevel` and above."""
    if logfile:
        # Paths in messages may hold bytes that are not valid UTF-8.
        handler = logging.FileHandler(logfile, errors="backslashreplace")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(loglevel.upper())


@contextlib.contextmanager
def stop_on_signals(reactor, stop):
    """While inside, SIGINT and SIGTERM run `stop()` on the reactor's loop.

    Only the main thread may set signal handlers; elsewhere (a Manager or
    Worker run in a thread, as tests do) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, _frame):
        reactor.log.info("Received %s", signal.Signals(signum).name)
        reactor.call_soon_threadsafe(stop)

    previous = {signum: signal.signal(signum, handle)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
