"""Map and reduce tasks: plain functions of paths and numbers.

A map task pipes each input file through the mapper, deals the output
lines out into one file per partition, sorts those files and moves them
into place. A reduce task merges its sorted inputs through the reducer
into one file and moves it into place. The steps live in their own
modules (child processes, partitioning, merging, placing files); this one
reads top to bottom. The tasks know nothing of the network; the Worker
runs them in its pool.
"""

import contextlib
import logging
import os
import subprocess

from mapreduce import filenames
from mapreduce.worker.lines import copy_with_newline
from mapreduce.worker.merge import merge_lines
from mapreduce.worker.partition import partition_stream
from mapreduce.worker.placing import (
    OutputDirectory, local_dir, move_into, open_input,
)
from mapreduce.worker.processes import (
    ProcessControl, TaskCancelled, TaskError,
)

__all__ = ["ProcessControl", "TaskCancelled", "TaskError", "run_map_task",
           "run_reduce_task"]

LOG = logging.getLogger(__name__)
WRITE_BUFFER_TOTAL = 1 << 16
STDIN_BUFFER = 1 << 13
SORT_PARALLELISM = 4


def run_map_task(task_id, input_paths, executable, output_directory,
                 num_partitions, *, control=None):
    """Run a map task and return the names of the files it produced.

    Each input file is piped through `executable`; every output line goes
    to partition file `maptask{task_id:05d}-part{p:05d}` by the md5 of its
    key. The files are sorted with `LC_ALL=C sort` and then moved into
    `output_directory`, which is opened first: files go into the
    directory that was there when the task started, or nowhere. Raises
    TaskError (nothing moved) on failure.
    """
    control = control or ProcessControl(LOG)
    names = [filenames.map_output_name(task_id, partition)
             for partition in range(num_partitions)]
    with OutputDirectory.open(output_directory) as target, \
            local_dir(task_id) as directory:
        paths = [os.path.join(directory, name) for name in names]
        _map_into(paths, input_paths, executable, control)
        _sort_files(paths, control)
        for path in paths:
            move_into(path, target)
    return names


def run_reduce_task(task_id, executable, input_paths, output_directory, *,
                    control=None):
    """Run a reduce task and return the name of the file it produced.

    The sorted input files are merged into one sorted stream and piped
    into `executable`, whose output becomes `part-{task_id:05d}` in
    `output_directory` (opened first, as for a map task). Raises
    TaskError (nothing moved) on failure.
    """
    control = control or ProcessControl(LOG)
    name = filenames.reduce_output_name(task_id)
    with OutputDirectory.open(output_directory) as target, \
            local_dir(task_id) as directory:
        path = os.path.join(directory, name)
        with contextlib.ExitStack() as stack:
            inputs = [open_input(input_path, stack)
                      for input_path in input_paths]
            output = stack.enter_context(open(path, "wb", buffering=0))
            _reduce_into(output, inputs, executable, control,
                         f"reduce task {task_id}")
        move_into(path, target)
    return name


def _map_into(paths, input_paths, executable, control):
    """Pipe every input through the mapper into the partition files."""
    buffer_size = max(1, WRITE_BUFFER_TOTAL // len(paths))
    with contextlib.ExitStack() as stack:
        outputs = [stack.enter_context(open(path, "wb", buffer_size))
                   for path in paths]
        for input_path in input_paths:
            _map_one_input(executable, input_path, outputs, control)


def _map_one_input(executable, input_path, outputs, control):
    """Pipe one input file through the mapper into the partition files."""
    with contextlib.ExitStack() as stack:
        stdin = open_input(input_path, stack)
        with control.running([executable], stdin=stdin,
                             stdout=subprocess.PIPE, bufsize=0) as child:
            partition_stream(child.stdout, outputs, len(outputs))
            status = control.wait(child)
        control.check_exit(child, status, input_path)


def _sort_files(paths, control):
    """Sort each non-empty file in place with `sort`, a few at a time."""
    waiting = [path for path in paths if os.path.getsize(path) > 0]
    # Taken now, not at import: the caller's environment of the moment
    # (TMPDIR, PATH), with the byte-order locale on top.
    env = {**os.environ, "LC_ALL": "C"}
    while waiting:
        batch, waiting = (waiting[:SORT_PARALLELISM],
                          waiting[SORT_PARALLELISM:])
        with contextlib.ExitStack() as stack:
            running = [(path, stack.enter_context(control.running(
                ["sort", "-o", path, path], env=env,
                stdin=subprocess.DEVNULL)))
                for path in batch]
            for path, child in running:
                status = control.wait(child)
                if status != 0:
                    raise TaskError(
                        f"sort failed on {os.path.basename(path)} with "
                        f"status {status}: "
                        f"{control.stderr_tail(child)[-500:]}")


def _reduce_into(output, inputs, executable, control, what):
    """Pipe the merged `inputs` through the reducer into `output`.

    `what` is what the task is called in messages.
    """
    with control.running([executable], stdin=subprocess.PIPE,
                         stdout=output, bufsize=STDIN_BUFFER) as child:
        try:
            with child.stdin:
                if len(inputs) == 1:
                    copy_with_newline(inputs[0], child.stdin.write)
                else:
                    merge_lines(inputs, child.stdin.write)
        except BrokenPipeError:
            pass  # The reducer stopped reading; its status decides.
        status = control.wait(child)
    control.check_exit(child, status, what)
