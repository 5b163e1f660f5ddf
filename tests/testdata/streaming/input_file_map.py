#!/usr/bin/env python3
"""Mapper: `<input file name><TAB>1` for every line, from Hadoop's variables.

The name is the last part of `mapreduce_map_input_file`, the variable that
Hadoop Streaming sets for a mapper; `map_input_file` (its old name) must
say the same.
"""
import os
import sys


def main():
    """Print the input file's name once per input line."""
    path = os.environ["mapreduce_map_input_file"]
    if os.environ.get("map_input_file") != path:
        sys.exit(f"map_input_file is {os.environ.get('map_input_file')!r}, "
                 f"mapreduce_map_input_file is {path!r}")
    name = os.path.basename(path)
    for _ in sys.stdin:
        print(f"{name}\t1")


if __name__ == "__main__":
    main()
