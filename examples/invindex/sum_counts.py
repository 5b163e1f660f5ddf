#!/usr/bin/env python3
"""Sum the counts of each key: combiner and reducer of stages 0 and 1.

Input: `key<TAB>count` lines, sorted, so that the lines of one key come
together. Output: one `key<TAB>total` line per key. Its output has the
shape of its input, so it also serves as the combiner: run over each map
task's sorted output before the shuffle, it changes how many lines travel
to the reducers, never the answer.
"""
import itertools
import sys


def key_of(line):
    """Return the key of a line: the text before its first TAB."""
    return line.partition("\t")[0]


def main():
    """Print each key once, with the sum of its counts."""
    for key, lines in itertools.groupby(sys.stdin, key_of):
        total = sum(int(line.partition("\t")[2]) for line in lines)
        print(f"{key}\t{total}")


if __name__ == "__main__":
    main()
