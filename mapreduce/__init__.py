"""A small MapReduce framework: a Manager, Workers and streaming executables."""
