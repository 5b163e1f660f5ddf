#!/usr/bin/env python3
"""Stage 3 map: key the postings by document.

`term<TAB>doc_id<TAB>tf<TAB>idf` becomes `doc_id<TAB>term<TAB>tf<TAB>idf`.
"""
import sys


def main():
    """Move the document id to the front, as the key."""
    for line in sys.stdin:
        term, doc_id, rest = line.rstrip("\n").split("\t", 2)
        print(f"{doc_id}\t{term}\t{rest}")


if __name__ == "__main__":
    main()
