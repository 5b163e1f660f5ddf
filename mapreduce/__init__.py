"""A small MapReduce framework: a Manager, Workers, streaming executables.

`import mapreduce` gives `mapreduce.manager.Manager` and
`mapreduce.worker.Worker`, as the spec's Python API promises.
"""

from mapreduce import manager, worker

__all__ = ["manager", "worker"]
