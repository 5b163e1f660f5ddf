#!/usr/bin/env python3
"""Stage 0 map: one `documents<TAB>1` line for every document.

The input is the document set, one document a line: `doc_id<TAB>text`.
"""
import sys


def main():
    """Count every non-blank input line as one document."""
    for line in sys.stdin:
        if line.strip():
            print("documents\t1")


if __name__ == "__main__":
    main()
