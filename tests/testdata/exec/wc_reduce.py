#!/usr/bin/env python3
"""Word count reducer: input sorted by word; sum the counts of each word."""
import itertools
import sys


def keyfunc(line):
    """Return the word of a "word<TAB>count" line."""
    return line.partition("\t")[0]


for word, group in itertools.groupby(sys.stdin, keyfunc):
    total = sum(int(line.partition("\t")[2]) for line in group)
    print(f"{word}\t{total}")
