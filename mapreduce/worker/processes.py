"""A task's child processes: starting them, killing them, judging their exit.

Every child runs in a session of its own, so that killing its process
group also kills whatever it started. `ProcessControl.cancel()` may come
from any thread; it stops every child of the task at once.
"""

import contextlib
import logging
import os
import signal
import subprocess
import threading

STDERR_TAIL = 2048


class TaskError(Exception):
    """A task could not be completed; the message says why."""


class TaskCancelled(TaskError):
    """The task was stopped from outside (the Worker is shutting down)."""


class ProcessControl:
    """Starts a task's child processes and can stop them all at once.

    `cancel()` may be called from any thread: it kills every child (with
    its own children) and makes later starts fail with TaskCancelled.
    What the children say on stderr goes to logger `log`.
    """

    def __init__(self, log=None):
        """Start with no children and not cancelled, logging to `log`."""
        self.log = log or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._children = set()
        self.cancelled = False

    @contextlib.contextmanager
    def running(self, args, **popen_args):
        """Run `args` as a child for the with block; yield its Popen.

        Leaving the block by an exception kills the child's process group;
        either way the child is waited for and its pipes are closed.
        """
        self._refuse_if_cancelled()
        try:
            child = subprocess.Popen(args, start_new_session=True,
                                     **popen_args)
        except OSError as exc:
            raise TaskError(f"cannot run {args[0]!r}: "
                            f"{_start_failure(args[0], exc)}") from exc
        with child:
            try:
                self._adopt(child)
                yield child
            except BaseException:
                _kill_group(child)
                raise
            finally:
                with self._lock:
                    self._children.discard(child)

    def wait(self, child):
        """Wait for `child` to exit and return its exit status.

        Raises TaskCancelled if the task was cancelled meanwhile: the
        status of a killed child says nothing about the task.
        """
        status = child.wait()
        self._refuse_if_cancelled()
        return status

    def cancel(self):
        """Kill every child process group and refuse new ones."""
        with self._lock:
            self.cancelled = True
            for child in self._children:
                _kill_group(child)

    def _refuse_if_cancelled(self):
        """Raise TaskCancelled if the task was cancelled."""
        with self._lock:
            if self.cancelled:
                raise TaskCancelled("task cancelled")

    def _adopt(self, child):
        """Remember `child`, or kill it if the task was cancelled meanwhile."""
        with self._lock:
            if self.cancelled:
                _kill_group(child)
                raise TaskCancelled("task cancelled")
            self._children.add(child)


def _kill_group(child):
    """Kill `child`'s process group (it may be gone already)."""
    with contextlib.suppress(OSError):
        os.killpg(child.pid, signal.SIGKILL)


def _start_failure(executable, exc):
    """Say why `executable` could not be started, with a hint if one fits."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError) and os.path.isfile(executable):
        reason += " (is the interpreter on its #! line missing?)"
    return reason


def stderr_tail(stderr_file):
    """Return the last few KB a child wrote to `stderr_file`, as text."""
    stderr_file.seek(0, os.SEEK_END)
    size = stderr_file.tell()
    stderr_file.seek(max(0, size - STDERR_TAIL))
    tail = stderr_file.read().decode("utf-8", "replace").strip()
    return ("..." if size > STDERR_TAIL else "") + tail


def exit_failure(status):
    """Return why a child with exit `status` failed, or None if it did not."""
    if status == 0:
        return None
    if status > 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:  # Real-time signals have no name here.
        name = f"signal {-status}"
    return f"was killed by {name}"


def check_exit(executable, status, stderr_file, what, log):
    """Log the child's stderr to `log`; raise TaskError unless it exited 0.

    `what` names the work the child did, for the messages.
    """
    tail = stderr_tail(stderr_file)
    failure = exit_failure(status)
    if failure is None:
        if tail:
            log.info("%s wrote to stderr on %s: %s", executable, what, tail)
        return
    message = f"{executable} {failure} on {what}"
    if tail:
        message += f"; stderr: {tail}"
    raise TaskError(message)
