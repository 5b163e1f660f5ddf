"""A task's child processes: starting them, killing them, judging their exit.

Every child runs in a session of its own, so that killing its process
group also kills whatever it started. `ProcessControl.cancel()` may come
from any thread; it stops every child of the task at once. Each child's
stderr is a pipe handed to a reader (see mapreduce.worker.stderr); its
exit is judged once that pipe has ended.
"""

import contextlib
import logging
import os
import signal
import subprocess
import threading

from mapreduce.worker.stderr import ChildStderr, read_in_thread

# Seconds to wait for a child's stderr to end once the child has exited
# (a process it left behind may hold the pipe; it is then killed).
STDERR_GRACE = 5.0


class TaskError(Exception):
    """A task could not be completed; the message says why."""


class TaskCancelled(TaskError):
    """The task was stopped from outside (the Worker is shutting down)."""


class ProcessControl:
    """Starts a task's child processes and can stop them all at once.

    `cancel()` may be called from any thread: it kills every child (with
    its own children) and makes later starts fail with TaskCancelled.
    What the children say on stderr goes to logger `log`; `read_stderr`
    (a function of a ChildStderr) starts reading each child's stderr pipe.
    """

    def __init__(self, log=None, read_stderr=read_in_thread):
        """Start with no children and not cancelled, logging to `log`."""
        self.log = log or logging.getLogger(__name__)
        self.read_stderr = read_stderr
        self._lock = threading.Lock()
        self._children = set()
        self._stderr = {}
        self.cancelled = False

    @contextlib.contextmanager
    def running(self, args, on_report=None, **popen_args):
        """Run `args` as a child for the with block; yield its Popen.

        Leaving the block by an exception kills the child's process group;
        either way the child is waited for and its pipes are closed. Unless
        `popen_args` say where stderr goes, it is a pipe read by
        `read_stderr` (see `wait` and `check_exit`), whose `reporter:`
        lines go to `on_report(line)` instead of the log when it is given.
        """
        self._refuse_if_cancelled()
        read_fd = write_fd = -1
        if "stderr" not in popen_args:
            read_fd, write_fd = os.pipe()
            popen_args["stderr"] = write_fd
        try:
            child = subprocess.Popen(args, start_new_session=True,
                                     **popen_args)
        except (OSError, ValueError) as exc:
            # ValueError: a NUL or an unencodable character in an
            # argument or in the environment.
            if read_fd >= 0:
                os.close(read_fd)
            raise TaskError(f"cannot run {args[0]!r}: "
                            f"{_start_failure(args[0], exc)}") from exc
        finally:
            if write_fd >= 0:
                os.close(write_fd)
        if read_fd >= 0:
            self._read_stderr_of(child, read_fd, on_report)
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

    def _read_stderr_of(self, child, fd, on_report):
        """Hand `child`'s stderr pipe end `fd` to the reader."""
        stderr = ChildStderr(fd, self.log, os.path.basename(child.args[0]),
                             on_report)
        with self._lock:
            self._stderr[child] = stderr
            if self.cancelled:
                stderr.abandon()
                return
        self.read_stderr(stderr)

    def wait(self, child):
        """Wait for `child` to exit and its stderr to end; return its status.

        Raises TaskCancelled if the task was cancelled meanwhile: the
        status of a killed child says nothing about the task.
        """
        status = child.wait()
        stderr = self._stderr.get(child)
        if stderr is not None and not stderr.done.wait(STDERR_GRACE):
            self.log.warning("%s exited but its stderr is still open; "
                             "killing what it left running", child.args[0])
            _kill_group(child)
            if not stderr.done.wait(STDERR_GRACE):
                stderr.abandon()
        self._refuse_if_cancelled()
        return status

    def stderr_tail(self, child):
        """Return the last few KB `child` wrote on stderr, as text."""
        stderr = self._stderr.get(child)
        return stderr.tail() if stderr is not None else ""

    def forget(self, child):
        """Let go of `child`'s stderr, once it is waited for and read.

        A task may run thousands of children (a mapper per input file):
        what each wrote is kept only until it is judged.
        """
        with self._lock:
            self._stderr.pop(child, None)

    @property
    def followed(self):
        """Return how many children's stderr this task still keeps."""
        with self._lock:
            return len(self._stderr)

    def check_exit(self, child, status, what):
        """Log `child`'s stderr tail; raise TaskError unless it exited 0.

        `status` is what `wait` returned; `what` names the work the child
        did, for the messages. The child is forgotten after.
        """
        executable = child.args[0]
        tail = self.stderr_tail(child)
        self.forget(child)
        failure = exit_failure(status)
        if failure is None:
            if tail:
                self.log.info("%s wrote to stderr on %s: %s", executable,
                              what, tail)
            return
        message = f"{executable} {failure} on {what}"
        if tail:
            message += f"; stderr: {tail}"
        raise TaskError(message)

    def cancel(self):
        """Kill every child process group and refuse new ones.

        Whoever waits for a child's stderr stops waiting.
        """
        with self._lock:
            self.cancelled = True
            for child in self._children:
                _kill_group(child)
            waiting = list(self._stderr.values())
        for stderr in waiting:
            stderr.abandon()

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
    reason = getattr(exc, "strerror", None) or str(exc)
    if isinstance(exc, FileNotFoundError) and os.path.isfile(executable):
        reason += " (is the interpreter on its #! line missing?)"
    return reason


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
