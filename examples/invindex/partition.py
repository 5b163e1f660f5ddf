#!/usr/bin/env python3
"""Stage 4 partitioner: segment the index by document id.

Called as `partition.py N` (N reduce tasks) with the map output on
stdin, it prints one partition number per input line, in order:
doc_id mod N, where doc_id is the third field of
`term<TAB>idf<TAB>doc_id<TAB>...`. So segment k of the index holds the
documents whose id is k mod N, whatever their terms.
"""
import sys


def main():
    """Print the partition of every line."""
    partitions = int(sys.argv[1])
    for line in sys.stdin:
        doc_id = line.split("\t", 3)[2]
        print(int(doc_id) % partitions)


if __name__ == "__main__":
    main()
