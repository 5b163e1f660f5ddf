"""The Python heap of one map and one reduce task, as tracemalloc sees it.

Each task runs in this process between `tracemalloc.start()` and
`tracemalloc.stop()`: the peak counts every Python allocation of every
thread, from just before the task starts to just after it ends.
"""

import os
import shutil
import tracemalloc

from mapreduce.worker.tasks import run_map_task, run_reduce_task


def traced_peak(function, *args):
    """Run `function(*args)`; return (its result, the traced heap peak)."""
    tracemalloc.start()
    try:
        result = function(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def task_peaks(input_paths, executable, workdir, num_partitions):
    """Map `input_paths` with `executable`, reduce one partition with it.

    The reduce task takes every map output file, so with many partitions
    it merges many inputs. Returns the two peaks in bytes.
    """
    mapped = os.path.join(workdir, "mapped")
    reduced = os.path.join(workdir, "reduced")
    for directory in (mapped, reduced):
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    names, map_peak = traced_peak(run_map_task, 0, input_paths, executable,
                                  mapped, num_partitions)
    _, reduce_peak = traced_peak(
        run_reduce_task, 0, executable,
        [os.path.join(mapped, name) for name in names], reduced)
    shutil.rmtree(mapped)
    shutil.rmtree(reduced)
    return {"map_bytes": map_peak, "reduce_bytes": reduce_peak}
