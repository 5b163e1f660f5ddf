"""A Manager or a Worker in a thread, with the lines it logs collected.

For the failure and fuzz tests, whose subject is partly what the Manager
and the Workers log. The collector listens before the thread starts, so
no line is missed; a port taken before it is bound means another try.
"""

import logging

from mapreduce.localcluster import START_ATTEMPTS, LogCollector, free_port
from tests.util import start_manager, start_worker


def start_logged_manager(level=logging.INFO, **kwargs):
    """Run a Manager in a thread; return it and a LogCollector of its log."""
    error = None
    for _ in range(START_ATTEMPTS):
        port = free_port()
        log = LogCollector(f"Manager:{port}", level=level)
        manager = start_manager(port, **kwargs)
        if manager.thread.is_alive():
            return manager, log
        log.detach()
        error = manager.error
    raise AssertionError(f"could not start a Manager: {error!r}")


def start_logged_worker(manager_port, log, **kwargs):
    """Run a Worker in a thread, its lines collected by `log`; return it."""
    error = None
    for _ in range(START_ATTEMPTS):
        port = free_port()
        log.attach(f"Worker:{port}", log.level)
        worker = start_worker(manager_port, port, **kwargs)
        if worker.thread.is_alive():
            return worker
        error = worker.error
    raise AssertionError(f"could not start a Worker: {error!r}")
