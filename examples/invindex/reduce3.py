#!/usr/bin/env python3
"""Stage 3 reduce: the normalization factor of each document.

Input: `doc_id<TAB>term<TAB>tf<TAB>idf`, sorted by document. The factor
is the sum over the document's terms of (tf * idf) squared. Output, one
line per term of the document: `doc_id<TAB>norm<TAB>term<TAB>tf<TAB>idf`.
"""
import itertools
import sys


def key_of(line):
    """Return the key of a line: the text before its first TAB."""
    return line.partition("\t")[0]


def main():
    """Print each posting of a document with the document's factor."""
    for doc_id, lines in itertools.groupby(sys.stdin, key_of):
        postings = [line.rstrip("\n").split("\t")[1:] for line in lines]
        norm = sum((int(tf) * float(idf)) ** 2 for _, tf, idf in postings)
        for term, frequency, idf in postings:
            print(f"{doc_id}\t{norm:.10g}\t{term}\t{frequency}\t{idf}")


if __name__ == "__main__":
    main()
