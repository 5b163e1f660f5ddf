"""The reduce merge: sorted inputs into one sorted stream.

Lines are compared without their newlines, so the order is that of
`LC_ALL=C sort`, and the result is that of `heapq.merge` over the inputs'
lines ("a" before "a<TAB>1", which raw lines, newline included, would put
the other way round).
"""

import bisect
import heapq
import itertools
import operator

from mapreduce.worker.lines import line_blocks, write_lines

MERGE_BUDGET = 1 << 15
MERGE_BLOCK_MIN = 1 << 9
FALLBACK_LINES = 1024


class _Run:
    """One sorted input of the merge: its lines, a block at a time."""

    __slots__ = ("blocks", "block", "pos", "ordered")

    def __init__(self, file, size):
        """Read `file` in blocks of about `size` bytes."""
        self.blocks = line_blocks(file, size)
        self.block = []
        self.pos = 0
        self.ordered = True

    def load(self):
        """Read the next block; return False at the end of the input.

        Notes in `ordered` whether the input is still in byte order: within
        the block, and from the end of the block before.
        """
        previous = self.block[-1:]
        self.block = next(self.blocks, [])
        self.pos = 0
        self.ordered = (previous <= self.block[:1]
                        and all(map(operator.le, self.block,
                                    itertools.islice(self.block, 1, None))))
        return bool(self.block)

    def take_until(self, bound, chunk):
        """Move the lines up to `bound` from the block into `chunk`."""
        cut = bisect.bisect_right(self.block, bound, self.pos)
        chunk.extend(itertools.islice(self.block, self.pos, cut))
        self.pos = cut

    def rest(self):
        """Return an iterator over the lines not merged yet."""
        return itertools.chain(itertools.islice(self.block, self.pos, None),
                               itertools.chain.from_iterable(self.blocks))


def merge_lines(inputs, write):
    """Write the lines of the sorted `inputs`, merged, through `write`.

    The work is done a block at a time in C: every line up to the smallest
    of the last lines of the blocks in hand can be given out, after one
    `sort` of those few sorted runs. An input found out of order is merged
    by `heapq.merge` itself from there on, as the plain merge would.
    Memory holds about MERGE_BUDGET bytes of lines in all.
    """
    size = max(MERGE_BLOCK_MIN, MERGE_BUDGET // max(1, len(inputs)))
    live = [run for run in (_Run(file, size) for file in inputs)
            if run.load()]
    while live and all(run.ordered for run in live):
        bound = min(run.block[-1] for run in live)
        chunk = []
        for run in live:
            run.take_until(bound, chunk)
        chunk.sort()
        write_lines(write, chunk)
        del chunk
        live = [run for run in live
                if run.pos < len(run.block) or run.load()]
    merged = heapq.merge(*(run.rest() for run in live))
    for lines in iter(lambda: list(itertools.islice(merged, FALLBACK_LINES)),
                      []):
        write_lines(write, lines)
