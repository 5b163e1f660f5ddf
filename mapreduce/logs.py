"""Logging set-up shared by the Manager and Worker: `Role:port [LEVEL] msg`."""

import logging
import sys

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
