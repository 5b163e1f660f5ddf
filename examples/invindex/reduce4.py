#!/usr/bin/env python3
"""Stage 4 reduce: one line of the inverted index per term.

Input: `term<TAB>idf<TAB>doc_id<TAB>tf<TAB>norm`, sorted by term, all of
one segment. Output: `term idf doc_id tf norm doc_id tf norm ...`, the
documents in increasing order of id.
"""
import itertools
import sys


def key_of(line):
    """Return the key of a line: the text before its first TAB."""
    return line.partition("\t")[0]


def main():
    """Print each term with its idf and its postings."""
    for term, lines in itertools.groupby(sys.stdin, key_of):
        postings = [line.rstrip("\n").split("\t")[1:] for line in lines]
        idf = postings[0][0]
        postings.sort(key=lambda posting: int(posting[1]))
        fields = [term, idf]
        for _, doc_id, frequency, norm in postings:
            fields.extend((doc_id, frequency, norm))
        print(" ".join(fields))


if __name__ == "__main__":
    main()
