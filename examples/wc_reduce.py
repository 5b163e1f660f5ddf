#!/usr/bin/env python3
"""Word count reducer: add up the counts of each word.

The input is "word<TAB>count" lines sorted by word, so all the lines of one
word come together: group them and print "word<TAB>total" once per word.
"""
import itertools
import sys


def key(line):
    """Return the key of a line: the text before the first TAB."""
    return line.partition("\t")[0]


for word, lines in itertools.groupby(sys.stdin, key):
    total = sum(int(line.partition("\t")[2]) for line in lines)
    print(f"{word}\t{total}")
