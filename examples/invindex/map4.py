#!/usr/bin/env python3
"""Stage 4 map: key the postings by term again, for the final index.

`doc_id<TAB>norm<TAB>term<TAB>tf<TAB>idf` becomes
`term<TAB>idf<TAB>doc_id<TAB>tf<TAB>norm`. The partitioner reads the
document id in the third field.
"""
import sys


def main():
    """Reorder the fields of each posting."""
    for line in sys.stdin:
        doc_id, norm, term, frequency, idf = line.rstrip("\n").split("\t")
        print(f"{term}\t{idf}\t{doc_id}\t{frequency}\t{norm}")


if __name__ == "__main__":
    main()
