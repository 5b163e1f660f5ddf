"""Streams as blocks of lines, and lines back into streams.

Lines are handled without their newlines, a block at a time, so that the
per-line work happens in C (`bytes.split`, `bytes.join`) and memory holds
one block, never a whole stream.
"""

import itertools
import operator

READ_BLOCK = 1 << 14
JOIN_LINES = 1 << 10


def line_blocks(stream, size=None):
    """Yield lists of the lines of `stream`, without their newlines.

    Each list holds the whole lines of a block of about `size` bytes
    (READ_BLOCK by default; a line longer than that comes whole); a last
    line without a newline comes alone at the end.
    """
    size = size or READ_BLOCK
    pieces = []
    while True:
        block = stream.read(size)
        if not block:
            break
        if b"\n" not in block:
            pieces.append(block)
            continue
        if pieces:
            pieces.append(block)
            block = b"".join(pieces)
            pieces = []
        lines = block.split(b"\n")
        del block
        tail = lines.pop()
        if tail:
            pieces.append(tail)
        yield lines
        del lines  # Not kept alive while the next block is read.
    if pieces:
        yield [b"".join(pieces)]


def write_lines(write, lines):
    """Write each line of list `lines` with a newline.

    Lines are joined a slice of JOIN_LINES at a time: `bytes.join` holds a
    buffer descriptor of 80 bytes for each item it joins.
    """
    for start in range(0, len(lines), JOIN_LINES):
        piece = lines[start:start + JOIN_LINES]
        piece.append(b"")
        write(b"\n".join(piece))


def copy_with_newline(stream, write):
    """Copy `stream` through `write` in blocks, ending with a newline."""
    size = READ_BLOCK
    last = b"\n"
    while True:
        block = stream.read(size)
        if not block:
            break
        write(block)
        last = block[-1:]
    if last != b"\n":
        write(b"\n")


def in_byte_order(stream):
    """Tell whether the lines of `stream` are in `LC_ALL=C sort` order.

    Lines compare without their newlines, as bytes; the stream is read a
    block at a time.
    """
    last = []
    for lines in line_blocks(stream):
        if last > lines[:1] or not all(map(
                operator.le, lines, itertools.islice(lines, 1, None))):
            return False
        last = lines[-1:]
    return True
