#!/usr/bin/env python3
"""Chaos test reducer: fails on the key "boom"; otherwise waits for a gate.

Without "boom" in its input it leaves a marker in $C_MARKER_DIR, waits (at
most 30 s) until the test creates $C_MARKER_DIR/go, then sums the counts
of each word like wc_reduce.py.
"""
import itertools
import os
import pathlib
import sys
import time


def keyfunc(line):
    """Return the word of a "word<TAB>count" line."""
    return line.partition("\t")[0]


lines = sys.stdin.readlines()
if any(keyfunc(line) == "boom" for line in lines):
    sys.exit("c_boom_reduce: boom")
markers = pathlib.Path(os.environ["C_MARKER_DIR"])
(markers / f"boom-waiting-{os.getpid()}").touch()
deadline = time.monotonic() + 30
while not (markers / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
for word, group in itertools.groupby(lines, keyfunc):
    total = sum(int(line.partition("\t")[2]) for line in group)
    print(f"{word}\t{total}")
