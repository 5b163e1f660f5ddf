#!/usr/bin/env python3
"""Partitioner by first letter: the key's first letter, a..z, cut into N runs.

Called as `letter_partition.py N` (madoop's convention) with map output
on stdin; prints one partition number per line, in order. Keys that do
not start with a letter go to partition 0.
"""
import string
import sys


def main():
    """Print the partition of every line."""
    partitions = int(sys.argv[1])
    for line in sys.stdin:
        first = line[:1].lower()
        place = string.ascii_lowercase.find(first)
        print(max(place, 0) * partitions // 26)


if __name__ == "__main__":
    main()
