"""A small MapReduce framework: a Manager, Workers, streaming executables."""
