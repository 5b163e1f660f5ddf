"""Partitioning map output: each line to the file of its partition.

By default the partition is the key's md5: the key is the text before
the first TAB (the whole line without its newline if there is none); its
partition is `int(md5(key).hexdigest(), 16) % num_partitions`. The work
runs in C a block of lines at a time: one `map` over a small cache of
frequent lines finds most partitions, the lines it misses are hashed
together by a chain of `map`s, and each file gets one write per block.

A job's partitioner program instead prints one partition number per line
of map output (madoop's `-partitioner`); `partition_by_numbers` deals
the lines out by those numbers, checking each.
"""

import collections
import itertools
import operator

try:
    # The interpreter's own md5: the same digests as hashlib's (OpenSSL),
    # at about half the cost for short keys, where setting up the hash
    # costs more than hashing.
    from _md5 import md5
except ImportError:
    from hashlib import md5

from mapreduce.worker.lines import (
    copy_with_newline, line_blocks, write_lines,
)


class PartitionNumberError(ValueError):
    """A partitioner's output does not give every line a valid partition."""


class PartitionCountError(PartitionNumberError):
    """A partitioner printed fewer or more numbers than there are lines."""


class TooManyNumbers(PartitionCountError):
    """A partitioner printed more numbers than there are lines.

    It may still be printing: at most EXTRA_NUMBERS more are read.
    """


# How many numbers past the last line are read, to say how many there
# are: a partitioner that prints for ever is not waited for.
EXTRA_NUMBERS = 1 << 16


CACHE_ENTRIES = 5400
CACHE_BYTES = 1 << 17

_key_of = operator.itemgetter(0)
_tabs = itertools.repeat(b"\t")
_digest_of = operator.methodcaller("digest")
_big_endian = itertools.repeat("big")


def partition_stream(stream, outputs, num_partitions):
    """Write each line of `stream` to its partition's file in `outputs`.

    A missing final newline is added. Memory stays bounded: the stream is
    read in blocks, and the cache of partitions holds few short lines.
    """
    if num_partitions == 1:
        copy_with_newline(stream, outputs[0].write)
        return
    cache = PartitionCache(num_partitions)
    for lines in line_blocks(stream):
        write_partitioned(lines, cache.partitions(lines), outputs)
        del lines  # Not kept alive while the next block is read.


class PartitionCache:
    """The partitions of frequent lines, and how to find the others.

    A line is let in when it misses twice close together: twice in one
    block, or in this block and the one before. In word count most lines
    are rare words, which would push the common ones out; the common ones
    come early and often. The cache takes up to CACHE_ENTRIES lines or
    CACHE_BYTES bytes of them. A full cache is kept as it is, not emptied
    to make room: on Zipf-like data the lines that filled it are the
    frequent ones, and emptying it would throw them out for lines that
    come once or twice. It is emptied only when it stops paying, a block
    that it served for less than half its lines: the data has changed,
    and the new frequent lines come in. 5400 entries keep the dict's
    table at 8192 slots.
    """

    __slots__ = ("known", "size", "_modulo", "_missed_before")

    def __init__(self, num_partitions):
        """Start empty, for `num_partitions` partitions."""
        self.known = {}
        self.size = 0
        self._modulo = num_partitions.__rmod__
        self._missed_before = {}

    def partitions(self, lines):
        """Return the list of the partitions of `lines`, in order."""
        parts = list(map(self.known.get, lines))
        if None in parts:
            missed = collections.Counter(itertools.compress(
                lines, map(operator.is_, parts, itertools.repeat(None))))
            found = self.hash_lines(missed)
            self.remember(_missed_twice(found, missed, self._missed_before),
                          stale=parts.count(None) * 2 > len(lines))
            self._missed_before = missed
            parts = list(map(found.get, lines, parts))
        else:
            self._missed_before = {}
        return parts

    def hash_lines(self, lines):
        """Return a dict of the partitions of distinct `lines`, by md5."""
        # int.from_bytes(digest, "big") equals int(hexdigest, 16).
        return dict(zip(lines, map(self._modulo, map(int.from_bytes, map(
            _digest_of, map(md5, map(_key_of, map(bytes.partition, lines,
                                                  _tabs)))),
            _big_endian))))

    def remember(self, found, stale):
        """Add the lines of dict `found` and their partitions, if room.

        Those that fit go in. If not all fit and the cache is `stale` (it
        served less than half the block), it is emptied first.
        """
        size = sum(map(len, found))
        if stale and (len(self.known) + len(found) > CACHE_ENTRIES
                      or self.size + size > CACHE_BYTES):
            self.known.clear()
            self.size = 0
        room = CACHE_ENTRIES - len(self.known)
        if room < len(found):
            found = dict(itertools.islice(found.items(), max(room, 0)))
            size = sum(map(len, found))
        if self.size + size <= CACHE_BYTES:
            self.known.update(found)
            self.size += size


def _missed_twice(found, counts, counted_before):
    """Return the entries of `found` for lines missed twice lately.

    That is, those `counts` more than once, or that are in dict
    `counted_before` (the previous block's misses).
    """
    again = counts.keys() & counted_before.keys()
    again.update(itertools.compress(
        counts, map(operator.gt, counts.values(), itertools.repeat(1))))
    return dict(zip(again, map(found.__getitem__, again)))


def write_partitioned(lines, parts, outputs):
    """Write `lines[i]` and a newline to `outputs[parts[i]]`."""
    if len(outputs) == 2:
        chosen = (itertools.compress(lines, map(operator.not_, parts)),
                  itertools.compress(lines, parts))
        for output, selected in zip(outputs, chosen):
            write_lines(output.write, list(selected))
        return
    buckets = [[] for _ in outputs]
    appends = [bucket.append for bucket in buckets]
    for line, part in zip(lines, parts):
        appends[part](line)
    for bucket, output in zip(buckets, outputs):
        write_lines(output.write, bucket)


def partition_by_numbers(stream, numbers, outputs):
    """Write each line of `stream` to the output its line in `numbers` says.

    `numbers` holds one partition number per line of `stream`, in order,
    each an integer from 0 to len(outputs) - 1 (as `int` reads it, so
    spaces around it are allowed). Both are read a block at a time.
    Raises PartitionNumberError, saying which line and why, on the first
    bad number, or PartitionCountError when there are fewer numbers than
    lines (both read to their ends), or TooManyNumbers when there are
    more (at most EXTRA_NUMBERS more read).
    """
    parts = itertools.chain.from_iterable(line_blocks(numbers))
    done = 0
    blocks = line_blocks(stream)
    for lines in blocks:
        given = list(itertools.islice(parts, len(lines)))
        if len(given) < len(lines):
            total = done + len(lines) + sum(map(len, blocks))
            raise PartitionCountError(
                f"printed {done + len(given)} partition numbers for "
                f"{total} lines")
        write_partitioned(lines, _checked(given, len(outputs), done),
                          outputs)
        done += len(lines)
        del lines
    extra = sum(1 for _ in itertools.islice(parts, EXTRA_NUMBERS))
    if extra:
        more = "at least " if extra == EXTRA_NUMBERS else ""
        raise TooManyNumbers(f"printed {more}{done + extra} partition "
                             f"numbers for {done} lines")


def _checked(given, num_partitions, done):
    """Return the partition numbers in `given` (lines of bytes) as ints.

    `done` lines came before these. Raises PartitionNumberError for the
    first that is not an integer from 0 to num_partitions - 1.
    """
    try:
        parts = list(map(int, given))
        if parts and min(parts) >= 0 and max(parts) < num_partitions:
            return parts
    except ValueError:
        pass
    for number, text in enumerate(given, done + 1):
        try:
            part = int(text)
        except ValueError:
            part = None
        if part is None or not 0 <= part < num_partitions:
            raise PartitionNumberError(
                f"printed {_shown(text)!r} for line {number}: not a partition "
                f"number from 0 to {num_partitions - 1}")
    return []


def _shown(text):
    """Return the start of a line of bytes as text, to show in a message."""
    return text[:80].decode("utf-8", "backslashreplace")
