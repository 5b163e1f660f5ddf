"""What a task's child processes write on stderr: logged, and its tail kept.

Each child's stderr is a pipe. Its lines go to a `ChildStderr`: every
line is logged (debug), the last few KB are kept for the error message,
and lines in the Hadoop Streaming `reporter:` form can be taken out by a
hook. Who reads the pipe is the task's choice: inside a Worker, the
Worker's reactor (`LoopStderr`, a `LineReader` on the loop); without
one, a small thread of its own (`read_in_thread`). Either way the pool
thread waits for the pipe's end (`ChildStderr.done`) before it judges
the child's exit.
"""

import logging
import os
import threading

from mapreduce.reactor import LineReader, LineSplitter

STDERR_TAIL = 2048
REPORTER_PREFIX = b"reporter:"
_READ_SIZE = 4096


class Tail:
    """The last `size` bytes of a stream of lines, and whether cut."""

    def __init__(self, size=STDERR_TAIL):
        """Start empty."""
        self.size = size
        self.data = bytearray()
        self.cut = False

    def add(self, line):
        """Append `line` and its newline; drop what falls out of the tail."""
        self.data += line + b"\n"
        extra = len(self.data) - self.size
        if extra > 0:
            del self.data[:extra]
            self.cut = True

    def text(self):
        """Return the tail as text, with "..." in front if it was cut."""
        text = self.data.decode("utf-8", "replace").strip()
        return ("..." if self.cut else "") + text


class ChildStderr:
    """The stderr of one child: its lines, its tail, and its end.

    The read end of the pipe (`claim()`) belongs to whoever reads it; the
    pool thread's side may `abandon()` it (closing it unless claimed).
    `on_report(line)`, when set, takes the `reporter:` lines out of the
    log and the tail (the Hadoop Streaming hook).
    """

    def __init__(self, fd, log, name, on_report=None):
        """Watch pipe end `fd` of child `name`, logging to `log`."""
        self.log = log
        self.name = name
        self.on_report = on_report
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._fd = fd
        self._tail = Tail()

    def claim(self):
        """Take the pipe's read end (a descriptor), or -1 if gone."""
        with self._lock:
            fd, self._fd = self._fd, -1
        return fd

    def abandon(self):
        """Stop waiting: close the pipe unless a reader has it; end."""
        fd = self.claim()
        if fd >= 0:
            os.close(fd)
        self.done.set()

    def line(self, data):
        """Take one line the child wrote (without its newline)."""
        if self.on_report is not None and data.startswith(REPORTER_PREFIX):
            self.on_report(data)
            return
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s: %s", self.name,
                           data.decode("utf-8", "backslashreplace"))
        with self._lock:
            self._tail.add(data)

    def eof(self):
        """Note that the pipe has ended: the pool thread may go on."""
        self.done.set()

    def tail(self):
        """Return the last few KB the child wrote, as text."""
        with self._lock:
            return self._tail.text()


def read_in_thread(stderr):
    """Read `stderr` (a ChildStderr) to its end in a small thread.

    The default where no reactor reads the children's pipes (the task
    functions called on their own).
    """
    fd = stderr.claim()
    if fd < 0:
        stderr.eof()
        return

    def read():
        lines = LineSplitter(stderr.line)
        try:
            while True:
                try:
                    data = os.read(fd, _READ_SIZE)
                except OSError:
                    data = b""
                if not data:
                    break
                lines.feed(data)
            lines.finish()
        finally:
            os.close(fd)
            stderr.eof()

    threading.Thread(target=read, daemon=True,
                     name=f"stderr-{stderr.name}").start()


class LoopStderr:
    """The children's stderr pipes, read by a reactor's loop.

    `watch` may be called from any thread: it posts the pipe to the loop,
    where a LineReader reads it. `close()` (once the loop is done) closes
    the pipes still open.
    """

    def __init__(self, reactor):
        """Read pipes on `reactor`'s loop."""
        self.reactor = reactor
        self._readers = {}
        self._closed = False

    def watch(self, stderr):
        """From any thread: have the loop read `stderr` (a ChildStderr)."""
        self.reactor.call_soon_threadsafe(self._start, stderr)

    def _start(self, stderr):
        """On the loop: start reading the pipe, unless it is gone."""
        fd = stderr.claim()
        if fd < 0:
            return
        if self._closed:
            os.close(fd)
            stderr.eof()
            return

        def ended():
            self._readers.pop(stderr, None)
            stderr.eof()
        self._readers[stderr] = LineReader(self.reactor, fd, stderr.line,
                                           ended)

    def close(self):
        """Close every pipe still read; their waiters go on."""
        self._closed = True
        for stderr, reader in list(self._readers.items()):
            reader.close()
            stderr.eof()
        self._readers.clear()
