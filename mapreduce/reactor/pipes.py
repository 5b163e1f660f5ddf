"""Reading a child process's pipe line by line: from the loop, or anywhere.

`LineSplitter` cuts a stream of bytes into lines of bounded length;
`LineReader` feeds it from a pipe the loop watches.
"""

import os

READ_SIZE = 65536


class LineSplitter:
    """Cut bytes fed in pieces into lines; hand each to `on_line(bytes)`.

    Lines longer than `max_line` bytes are cut to that length, so memory
    stays bounded whatever the stream holds. `finish()` hands over the
    last line if it had no newline.
    """

    def __init__(self, on_line, max_line=4096):
        """Start with no partial line."""
        self.on_line = on_line
        self.max_line = max_line
        self._partial = bytearray()

    def feed(self, data):
        """Deliver every line that `data` completes; keep the rest."""
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:])
                return
            self._keep(data[start:end])
            self.on_line(bytes(self._partial))
            self._partial.clear()
            start = end + 1

    def finish(self):
        """Deliver the unfinished last line, if there is one."""
        if self._partial:
            self.on_line(bytes(self._partial))
            self._partial.clear()

    def _keep(self, piece):
        """Add `piece` to the current line, up to `max_line` bytes."""
        room = self.max_line - len(self._partial)
        self._partial += piece[:max(room, 0)]


class LineReader:
    """Hand each line of a pipe to `on_line(bytes)`, then call `on_eof()`.

    The pipe is read without blocking whenever the loop sees it readable.
    Lines longer than `max_line` bytes are cut to that length. The pipe is
    closed at EOF or by `close()`.
    """

    def __init__(self, reactor, pipe, on_line, on_eof=None, max_line=4096):
        """Start watching `pipe` (a file object or descriptor)."""
        self.reactor = reactor
        self.pipe = pipe
        self.fd = pipe if isinstance(pipe, int) else pipe.fileno()
        self.on_eof = on_eof
        self._lines = LineSplitter(on_line, max_line)
        os.set_blocking(self.fd, False)
        reactor.add_reader(self.fd, self._read)

    def _read(self):
        """Read what is there and deliver every complete line."""
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._lines.feed(data)
            return
        self._lines.finish()
        self.close()
        if self.on_eof is not None:
            self.on_eof()

    def close(self):
        """Stop watching the pipe and close it."""
        if self.fd < 0:
            return
        self.reactor.remove_reader(self.fd)
        if isinstance(self.pipe, int):
            os.close(self.fd)
        else:
            self.pipe.close()
        self.fd = -1
