"""Partitioning map output: each line to the file of its key's md5.

The key is the text before the first TAB (the whole line without its
newline if there is none); its partition is `int(md5(key).hexdigest(), 16)
% num_partitions`. The work runs in C a block of lines at a time: one
`map` over a small cache of lines seen lately finds most partitions, the
lines it misses are hashed together by a chain of `map`s, and each file
gets one write per block.
"""

import collections
import functools
import hashlib
import itertools
import operator

from mapreduce.worker.lines import (
    copy_with_newline, line_blocks, write_lines,
)

CACHE_ENTRIES = 5400
CACHE_BYTES = 1 << 17

_key_of = operator.itemgetter(0)
_split_at_tab = operator.methodcaller("partition", b"\t")
_digest_of = operator.methodcaller("digest")
# Equal to int(md5(key).hexdigest(), 16), without the text in between.
_number_of = functools.partial(int.from_bytes, byteorder="big")


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
    """The partitions of lines seen lately, and how to find the others.

    Only lines that came more than once in their block are kept (in word
    count most lines are rare words, which would push the common ones
    out), and the cache is emptied when it would hold more than
    CACHE_ENTRIES lines or CACHE_BYTES bytes of them. 5400 entries keep
    the dict's table at 8192 slots.
    """

    __slots__ = ("known", "size", "_modulo")

    def __init__(self, num_partitions):
        """Start empty, for `num_partitions` partitions."""
        self.known = {}
        self.size = 0
        self._modulo = num_partitions.__rmod__

    def partitions(self, lines):
        """Return the list of the partitions of `lines`, in order."""
        parts = list(map(self.known.get, lines))
        if None in parts:
            missed = collections.Counter(itertools.compress(
                lines, map(operator.is_, parts, itertools.repeat(None))))
            found = self.hash_lines(missed)
            self.remember(_repeated(found, missed))
            parts = list(map(found.get, lines, parts))
        return parts

    def hash_lines(self, lines):
        """Return a dict of the partitions of distinct `lines`, by md5."""
        return dict(zip(lines, map(self._modulo, map(_number_of, map(
            _digest_of, map(hashlib.md5, map(_key_of, map(
                _split_at_tab, lines))))))))

    def remember(self, found):
        """Add the lines of dict `found` and their partitions, if room."""
        size = sum(map(len, found))
        if (len(self.known) + len(found) > CACHE_ENTRIES
                or self.size + size > CACHE_BYTES):
            self.known.clear()
            self.size = 0
            if len(found) > CACHE_ENTRIES or size > CACHE_BYTES:
                return
        self.known.update(found)
        self.size += size


def _repeated(found, counts):
    """Return the entries of `found` whose lines `counts` more than once."""
    repeated = list(itertools.compress(
        counts, map(operator.gt, counts.values(), itertools.repeat(1))))
    return dict(zip(repeated, map(found.__getitem__, repeated)))


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
