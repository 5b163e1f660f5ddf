#!/usr/bin/env python3
"""Stage 2 reduce: the inverse document frequency of each term.

Input: `term<TAB>doc_id<TAB>tf`, sorted by term. Output, one line per
document that holds the term: `term<TAB>doc_id<TAB>tf<TAB>idf`, where
idf = log10(N / number of documents that hold the term).

N, the number of documents, comes from stage 0 through the environment
variable DOC_COUNT: madoop's programs inherit the shell's environment,
a cluster's get it from `-cmdenv DOC_COUNT=N`.
"""
import itertools
import math
import os
import sys


def key_of(line):
    """Return the key of a line: the text before its first TAB."""
    return line.partition("\t")[0]


def document_count():
    """Return N from DOC_COUNT; exit with a message if it is missing."""
    value = os.environ.get("DOC_COUNT", "")
    if not value.isdigit() or int(value) == 0:
        sys.exit(f"reduce2.py: DOC_COUNT must be the number of documents, "
                 f"not {value!r}; pass it with -cmdenv DOC_COUNT=N")
    return int(value)


def main():
    """Print every posting of each term with the term's idf."""
    count = None
    for term, lines in itertools.groupby(sys.stdin, key_of):
        if count is None:
            count = document_count()
        postings = [line.rstrip("\n").split("\t")[1:] for line in lines]
        idf = math.log10(count / len(postings))
        for doc_id, frequency in postings:
            print(f"{term}\t{doc_id}\t{frequency}\t{idf:.10g}")


if __name__ == "__main__":
    main()
