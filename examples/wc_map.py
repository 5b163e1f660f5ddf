#!/usr/bin/env python3
"""Word count mapper: print "word<TAB>1" for every word on stdin.

A word is a run of ASCII letters and digits, lower-cased: "The" and "the,"
are the same word. The key is the word; the value is 1.
"""
import re
import sys

WORD = re.compile(r"[A-Za-z0-9]+")

# Undecodable bytes cannot be part of a word: replace them, do not crash.
sys.stdin.reconfigure(errors="replace")
for line in sys.stdin:
    for word in WORD.findall(line):
        print(f"{word.lower()}\t1")
