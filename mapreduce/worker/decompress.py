"""Compressed input files: which they are, and a child that decompresses.

A map task's input file whose name ends in `.gz` or `.bz2` is read
decompressed, as Hadoop's text input reads it, for every job. A child
process (`command(path)`: this file, run by the Worker's interpreter in
isolated mode) reads the file on its stdin (opened by the task, which so
reports a missing file as it does for any input) and writes the
decompressed bytes to its stdout, which is the mapper's stdin; so the
data streams through a pipe a block at a time,
and cancelling the task kills it as it kills the mapper. It exits 0 when
the reader stops reading early (a mapper may), and 1 with a one-line
message on stderr when the file is not valid.

Run as a program, this module needs the standard library only.
"""

import bz2
import gzip
import os
import sys
import zlib

DECOMPRESSORS = {".gz": ("gzip", gzip.open), ".bz2": ("bzip2", bz2.open)}
BLOCK = 1 << 16


def compression_of(path):
    """Return the name of `path`'s compression ("gzip", ...) or None."""
    path = os.fspath(path)
    for suffix, (name, _) in DECOMPRESSORS.items():
        if path.endswith(suffix):
            return name
    return None


def command(path):
    """Return the arguments of a child that decompresses `path`."""
    return [sys.executable, "-I", os.path.abspath(__file__), os.fspath(path)]


def decompress(path, source, output_fd):
    """Write the decompressed bytes of file `source` to `output_fd`.

    `source` is file `path`, open for reading bytes. Returns an exit
    status: 0 when done (or when the reader has gone), 1 with a message
    on stderr when the file cannot be read.
    """
    suffix = next(suffix for suffix in DECOMPRESSORS
                  if path.endswith(suffix))
    name, opener = DECOMPRESSORS[suffix]
    try:
        with opener(source, "rb") as data:
            while True:
                block = data.read(BLOCK)
                if not block:
                    return 0
                view = memoryview(block)
                while view:
                    view = view[os.write(output_fd, view):]
    except BrokenPipeError:
        return 0
    except (OSError, EOFError, zlib.error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and \
            exc.strerror else str(exc)
        print(f"not valid {name} data: {reason}",
              file=sys.stderr)
        return 1


def main():
    """Decompress stdin to stdout; the one argument is the file's name."""
    if len(sys.argv) != 2 or compression_of(sys.argv[1]) is None:
        print("usage: decompress.py FILE.gz|FILE.bz2", file=sys.stderr)
        return 2
    return decompress(sys.argv[1], sys.stdin.buffer, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
