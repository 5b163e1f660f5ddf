#!/usr/bin/env python3
"""Stage 2 map: key the term frequencies by term.

`term doc_id<TAB>tf` becomes `term<TAB>doc_id<TAB>tf`, so that one reduce
call sees every document that holds the term.
"""
import sys


def main():
    """Move the document id from the key to the value."""
    for line in sys.stdin:
        pair, _, frequency = line.rstrip("\n").partition("\t")
        term, _, doc_id = pair.partition(" ")
        print(f"{term}\t{doc_id}\t{frequency}")


if __name__ == "__main__":
    main()
