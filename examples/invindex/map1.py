#!/usr/bin/env python3
"""Stage 1 map: `term doc_id<TAB>1` for every term of every document.

A term is a run of ASCII letters and digits, lower-cased; stop words are
left out. The key is the pair `term doc_id`, so that the reducer (and the
combiner) count how often each term occurs in each document. At the end
it reports three counters on stderr, as Hadoop Streaming programs do:
`reporter:counter:InvertedIndex,<name>,<amount>`.
"""
import re
import sys

TERM = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset("""
    a all also an and are as at back by for from has in is it its of on one
    or out s the their them to when while who with
""".split())


def main():
    """Print the terms of each `doc_id<TAB>text` line; report counters."""
    counters = {"Documents": 0, "Terms": 0, "StopWords": 0}
    for line in sys.stdin:
        doc_id, _, text = line.rstrip("\n").partition("\t")
        if not text:
            continue
        counters["Documents"] += 1
        for term in TERM.findall(text.lower()):
            if term in STOP_WORDS:
                counters["StopWords"] += 1
            else:
                counters["Terms"] += 1
                print(f"{term} {doc_id}\t1")
    for name, amount in counters.items():
        print(f"reporter:counter:InvertedIndex,{name},{amount}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
