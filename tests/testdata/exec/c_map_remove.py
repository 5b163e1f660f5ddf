#!/usr/bin/env python3
"""Chaos test mapper: word count, but a line `REMOVE <path>` deletes a file.

It simulates an input file that vanishes after the Manager listed it and
before a Worker opens it.
"""
import contextlib
import os
import sys

for line in sys.stdin:
    if line.startswith("REMOVE "):
        with contextlib.suppress(FileNotFoundError):
            os.remove(line[len("REMOVE "):].strip())
        continue
    for word in line.split():
        print(f"{word}\t1")
