"""Tests of LineReader: a child process's pipe read from the loop."""

import os
import queue
import subprocess
import sys

import pytest

from mapreduce.reactor import LineReader

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0  # Seconds to wait for something that should happen at once.


class Lines:
    """Collect what a LineReader hands over, for the test thread."""

    def __init__(self):
        """Start with no lines and no EOF."""
        self.events = queue.Queue()

    def on_line(self, line):
        """Record one line."""
        self.events.put(line)

    def on_eof(self):
        """Record the end of the pipe."""
        self.events.put(None)

    def until_eof(self):
        """Return every line up to EOF, waiting for them."""
        lines = []
        while True:
            line = self.events.get(timeout=WAIT)
            if line is None:
                return lines
            lines.append(line)


def read_child(loop, command, **options):
    """Run `command`, read its stdout with a LineReader; return the lines."""
    lines = Lines()
    with subprocess.Popen(command, stdout=subprocess.PIPE) as child:
        reader = loop.call(lambda: LineReader(loop.reactor, child.stdout,
                                              lines.on_line, lines.on_eof,
                                              **options))
        try:
            received = lines.until_eof()
        finally:
            loop.call(reader.close)
        assert child.wait(WAIT) == 0
        assert child.stdout.closed
    return received


def test_lines_of_a_child_process(loop):
    """Each line of the child's output arrives without its newline."""
    lines = read_child(loop, ["printf", "first\\nsecond\\n\\nfourth\\n"])
    assert lines == [b"first", b"second", b"", b"fourth"]


def test_last_line_without_newline(loop):
    """A final line that lacks a newline is still delivered, before EOF."""
    lines = read_child(loop, ["printf", "one\\ntwo"])
    assert lines == [b"one", b"two"]


def test_no_output_is_just_eof(loop):
    """A child that writes nothing gives EOF and no line."""
    assert not read_child(loop, ["true"])


def test_overlong_lines_are_cut(loop):
    """Lines longer than max_line are cut; the next lines are intact."""
    script = ("import sys; sys.stdout.write('x' * 200000 + '\\n' + "
              "'short\\n' + 'y' * 150 + '\\n' + 'z' * 300)")
    lines = read_child(loop, [sys.executable, "-c", script], max_line=100)
    assert lines == [b"x" * 100, b"short", b"y" * 100, b"z" * 100]


def test_many_lines_across_reads(loop):
    """Lines split across many reads arrive whole and in order."""
    script = ("import sys\n"
              "for n in range(20000):\n"
              "    sys.stdout.write(f'line {n}\\n')\n")
    lines = read_child(loop, [sys.executable, "-c", script])
    assert lines == [f"line {n}".encode() for n in range(20000)]


def test_raw_descriptor_is_closed_at_eof(loop):
    """A pipe given as a descriptor is read and closed at EOF."""
    read_end, write_end = os.pipe()
    lines = Lines()
    try:
        reader = loop.call(lambda: LineReader(loop.reactor, read_end,
                                              lines.on_line, lines.on_eof))
        os.write(write_end, b"alpha\nbeta\n")
        assert lines.events.get(timeout=WAIT) == b"alpha"
        assert lines.events.get(timeout=WAIT) == b"beta"
    finally:
        os.close(write_end)
    assert not lines.until_eof()
    loop.sync()
    assert reader.fd == -1
    with pytest.raises(OSError):
        os.fstat(read_end)


def test_close_stops_reading(loop):
    """close() stops watching the pipe and closes it; no EOF is reported."""
    read_end, write_end = os.pipe()
    lines = Lines()
    try:
        reader = loop.call(lambda: LineReader(loop.reactor, read_end,
                                              lines.on_line, lines.on_eof))
        os.write(write_end, b"before\n")
        assert lines.events.get(timeout=WAIT) == b"before"
        loop.call(reader.close)
        loop.call(reader.close)
        with pytest.raises(BrokenPipeError):
            os.write(write_end, b"after\n")
    finally:
        os.close(write_end)
    loop.sync()
    assert lines.events.empty()
