"""Map and reduce tasks: plain functions of paths and numbers.

A map task pipes each input file through the mapper, deals the output
lines out into one file per partition, sorts those files and moves them
into place. A reduce task merges its sorted inputs through the reducer
into one file and moves it into place. A task that carries a `streaming`
record (a job of `mapreduce-streaming`) may also have a partitioner
program, a combiner over each sorted partition, or no partitions at all
(map-only); its programs get Hadoop's environment and report counters
(mapreduce.worker.streaming). The steps live in their own modules (child
processes, decompressing, partitioning, merging, placing files); this
one reads top to bottom. The tasks know nothing of the network; the
Worker runs them in its pool.
"""

import contextlib
import dataclasses
import logging
import os
import subprocess
import typing

from mapreduce import filenames
from mapreduce.protocol import NewMapTask, NewReduceTask
from mapreduce.worker import decompress
from mapreduce.worker.lines import copy_with_newline, in_byte_order
from mapreduce.worker.merge import merge_lines
from mapreduce.worker.partition import (
    PartitionCountError, PartitionNumberError, TooManyNumbers,
    partition_by_numbers, partition_stream,
)
from mapreduce.worker.placing import (
    OutputDirectory, local_dir, move_into, open_input,
)
from mapreduce.worker.processes import (
    ProcessControl, TaskCancelled, TaskError, exit_failure,
)
from mapreduce.worker.streaming import Programs

__all__ = ["ProcessControl", "TaskCancelled", "TaskError", "TaskResult",
           "run_map", "run_map_task", "run_reduce", "run_reduce_task"]

LOG = logging.getLogger(__name__)
WRITE_BUFFER_TOTAL = 1 << 16
STDIN_BUFFER = 1 << 13
SORT_PARALLELISM = 4
COMBINED_SUFFIX = ".combined"


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """What a task produced: its files, and what its programs reported.

    `counters` (group -> counter -> amount) and `status` (the last one
    reported) stay empty for a task of the specification.
    """

    names: typing.List[str]
    counters: typing.Dict[str, typing.Dict[str, int]]
    status: str = ""


def run_map_task(task_id, input_paths, executable, output_directory,
                 num_partitions, *, control=None):
    """Run a map task and return the names of the files it produced.

    Each input file is piped through `executable`; every output line goes
    to partition file `maptask{task_id:05d}-part{p:05d}` by the md5 of its
    key. The files are sorted with `LC_ALL=C sort` and then moved into
    `output_directory`. Raises TaskError (nothing moved) on failure.
    """
    task = NewMapTask(task_id, input_paths, executable, output_directory,
                      num_partitions)
    return run_map(task, control=control).names


def run_reduce_task(task_id, executable, input_paths, output_directory, *,
                    control=None):
    """Run a reduce task and return the name of the file it produced.

    The sorted input files are merged into one sorted stream and piped
    into `executable`, whose output becomes `part-{task_id:05d}` in
    `output_directory`. Raises TaskError (nothing moved) on failure.
    """
    task = NewReduceTask(task_id, executable, input_paths, output_directory)
    return run_reduce(task, control=control).names[0]


def run_map(task, *, control=None):
    """Run map task `task` and return its TaskResult.

    `task` is the task as the Worker was given it (a NewMapTask message);
    only its `streaming` record, when it carries one, adds to what a task
    of the specification does.

    Each input file is piped through the mapper (decompressed first if
    its name ends in .gz or .bz2). Every output line goes to partition
    file `maptask{task_id:05d}-part{p:05d}`: by the md5 of its key, or by
    the number the job's partitioner prints for it. The files are sorted
    with `LC_ALL=C sort`, put through the job's combiner if it has one,
    and moved into `output_directory`. (With a combiner and the md5
    partitioner, the whole map output is sorted and combined first, and
    the combined lines are partitioned: the same files, for less work.)
    A map-only task (num_partitions 0) writes the mapper's output, input
    by input, to `part-{task_id:05d}`
    instead. The output directory is opened first: files go into the
    directory that was there when the task started, or nowhere (the
    zombie fence). Raises TaskError (nothing moved) on failure.
    """
    control = control or ProcessControl(LOG)
    programs = Programs(task, control.log)
    streaming = programs.streaming
    with OutputDirectory.open(task.output_directory) as target, \
            local_dir(task.task_id) as directory:
        if task.num_partitions == 0:
            names = [filenames.map_only_output_name(task.task_id)]
            paths = [os.path.join(directory, names[0])]
            _map_to_file(paths[0], task, control, programs)
        else:
            names = [filenames.map_output_name(task.task_id, partition)
                     for partition in range(task.num_partitions)]
            paths = [os.path.join(directory, name) for name in names]
            if streaming is not None and streaming.partitioner:
                _map_by_partitioner(paths, task, control, programs)
                _sort_files(paths, control)
                if streaming.combiner:
                    _combine_files(paths, streaming.combiner, control,
                                   programs)
            elif streaming is not None and streaming.combiner:
                _map_combine_partition(paths, task, control, programs)
            else:
                _map_into(paths, task, control, programs)
                _sort_files(paths, control)
        for path in paths:
            move_into(path, target)
    return TaskResult(names, programs.counters(), programs.status)


def run_reduce(task, *, control=None):
    """Run reduce task `task` (a NewReduceTask) and return its TaskResult.

    The sorted input files are merged into one sorted stream and piped
    into the reducer, whose output becomes `part-{task_id:05d}` in
    `output_directory` (opened first, as for a map task). Raises
    TaskError (nothing moved) on failure.
    """
    control = control or ProcessControl(LOG)
    programs = Programs(task, control.log)
    name = filenames.reduce_output_name(task.task_id)
    with OutputDirectory.open(task.output_directory) as target, \
            local_dir(task.task_id) as directory:
        path = os.path.join(directory, name)
        with contextlib.ExitStack() as stack:
            inputs = [open_input(input_path, stack)
                      for input_path in task.input_paths]
            output = stack.enter_context(open(path, "wb", buffering=0))
            _reduce_into(output, inputs, task, control, programs)
        move_into(path, target)
    return TaskResult([name], programs.counters(), programs.status)


def _map_into(paths, task, control, programs):
    """Pipe every input through the mapper into the partition files."""
    buffer_size = max(1, WRITE_BUFFER_TOTAL // len(paths))
    with contextlib.ExitStack() as stack:
        outputs = [stack.enter_context(open(path, "wb", buffer_size))
                   for path in paths]
        for input_path in task.input_paths:
            _run_mapper(task, input_path, (control, programs),
                        subprocess.PIPE, lambda mapped: partition_stream(
                            mapped, outputs, len(outputs)))


def _run_mapper(task, input_path, runners, stdout, consume=None):
    """Run `task`'s mapper over one input file, its output to `stdout`.

    `runners` is (ProcessControl, Programs). `stdout` is a file, or
    subprocess.PIPE with `consume(pipe)` reading the pipe meanwhile.
    """
    control, programs = runners
    with _mapper_input(input_path, control) as stdin:
        with control.running([task.executable], stdin=stdin, stdout=stdout,
                             bufsize=0, **programs.popen_args(input_path)
                             ) as child:
            stdin.close()  # The mapper has it; if it stops, so does input.
            if consume is not None:
                consume(child.stdout)
            status = control.wait(child)
    control.check_exit(child, status, input_path)


@contextlib.contextmanager
def _mapper_input(input_path, control):
    """Open what the mapper reads for `input_path`; yield it.

    A compressed file is read by a child that decompresses it into a
    pipe: the block yields the pipe, and leaving it raises TaskError if
    that child failed (a corrupt file). The caller closes the yielded
    stream once the mapper has been started with it.
    """
    with contextlib.ExitStack() as stack:
        stream = open_input(input_path, stack)
        if decompress.compression_of(input_path) is None:
            yield stream
            return
        with control.running(decompress.command(input_path), stdin=stream,
                             stdout=subprocess.PIPE, bufsize=0) as child:
            stream.close()
            yield child.stdout
            status = control.wait(child)
        why = control.stderr_tail(child) or exit_failure(status)
        control.forget(child)
        if status != 0:
            raise TaskError(f"cannot read input {input_path}: {why}")


def _map_to_file(path, task, control, programs):
    """Pipe every input through the mapper into the one file `path`.

    The output of each input ends with a newline (one is added if the
    mapper's last line lacks it).
    """
    with open(path, "w+b", buffering=0) as output:
        for input_path in task.input_paths:
            _run_mapper(task, input_path, (control, programs), output)
            _end_with_newline(output)


def _map_combine_partition(paths, task, control, programs):
    """Map into one file, sort it, combine it once, then partition that.

    The same as combining each sorted partition, for less work: with the
    md5 partitioner all the lines of a key go to one partition, so the
    combiner sees each key's lines together either way, and only the
    combined lines, far fewer than the map's, are partitioned. Lines in
    byte order stay in order in every partition.
    """
    map_output = os.path.join(os.path.dirname(paths[0]), "map-output")
    _map_to_file(map_output, task, control, programs)
    _sort_files([map_output], control)
    _combine_files([map_output], programs.streaming.combiner, control,
                   programs)
    buffer_size = max(1, WRITE_BUFFER_TOTAL // len(paths))
    with contextlib.ExitStack() as stack:
        combined = stack.enter_context(open(map_output, "rb", buffering=0))
        outputs = [stack.enter_context(open(path, "wb", buffer_size))
                   for path in paths]
        partition_stream(combined, outputs, len(outputs))
    os.unlink(map_output)


def _end_with_newline(output):
    """Add a newline to file `output` unless it is empty or ends in one.

    Its children wrote through the same open file, so the end is found
    by seeking there; `output` is open for reading too, to look at it.
    """
    end = output.seek(0, os.SEEK_END)
    if end and os.pread(output.fileno(), 1, end - 1) != b"\n":
        output.write(b"\n")


def _map_by_partitioner(paths, task, control, programs):
    """Map into one file, then deal its lines out by the partitioner.

    The partitioner (madoop's convention) is run as `partitioner
    NUM_PARTITIONS` with the map output as its stdin, and prints one
    partition number per line; its stdin is a file, so however it
    buffers, reading its numbers alongside the file's lines cannot wait
    on it forever.
    """
    partitioner = programs.streaming.partitioner
    map_output = os.path.join(os.path.dirname(paths[0]), "map-output")
    _map_to_file(map_output, task, control, programs)
    buffer_size = max(1, WRITE_BUFFER_TOTAL // len(paths))
    with contextlib.ExitStack() as stack:
        lines = stack.enter_context(open(map_output, "rb", buffering=0))
        stdin = stack.enter_context(open(map_output, "rb", buffering=0))
        outputs = [stack.enter_context(open(path, "wb", buffer_size))
                   for path in paths]
        with control.running([partitioner, str(len(paths))], stdin=stdin,
                             stdout=subprocess.PIPE, bufsize=0,
                             **programs.popen_args()) as child:
            stdin.close()
            try:
                partition_by_numbers(lines, child.stdout, outputs)
                mismatch = None
            except TooManyNumbers as exc:
                # It may print for ever: leaving the block kills it.
                raise TaskError(f"partitioner {partitioner} {exc}") from exc
            except PartitionCountError as exc:
                mismatch = exc  # Its exit status may say why: first that.
            except PartitionNumberError as exc:
                raise TaskError(f"partitioner {partitioner} {exc}") from exc
            status = control.wait(child)
    control.check_exit(child, status, f"map task {task.task_id}'s output")
    if mismatch is not None:
        raise TaskError(f"partitioner {partitioner} {mismatch}")
    os.unlink(map_output)


def _combine_files(paths, combiner, control, programs):
    """Put each non-empty sorted partition file through the combiner.

    Its output replaces the file, sorted again with `sort` unless it came
    out in order. A few combiners run at a time.
    """
    out_of_order = []
    for batch in _batches(paths):
        with contextlib.ExitStack() as stack:
            running = []
            for path in batch:
                stdin = stack.enter_context(open(path, "rb", buffering=0))
                output = stack.enter_context(
                    open(path + COMBINED_SUFFIX, "w+b", buffering=0))
                running.append((path, output, stack.enter_context(
                    control.running([combiner], stdin=stdin, stdout=output,
                                    **programs.popen_args()))))
            for path, output, child in running:
                status = control.wait(child)
                control.check_exit(child, status,
                                   f"partition {os.path.basename(path)}")
                _end_with_newline(output)
        for path in batch:
            os.replace(path + COMBINED_SUFFIX, path)
            with open(path, "rb", buffering=0) as combined:
                if not in_byte_order(combined):
                    out_of_order.append(path)
    _sort_files(out_of_order, control)


def _sort_files(paths, control):
    """Sort each non-empty file in place with `sort`, a few at a time."""
    # Taken now, not at import: the caller's environment of the moment
    # (TMPDIR, PATH), with the byte-order locale on top.
    env = {**os.environ, "LC_ALL": "C"}
    for batch in _batches(paths):
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
                control.forget(child)


def _batches(paths):
    """Yield the non-empty files of `paths`, SORT_PARALLELISM at a time."""
    waiting = [path for path in paths if os.path.getsize(path) > 0]
    for start in range(0, len(waiting), SORT_PARALLELISM):
        yield waiting[start:start + SORT_PARALLELISM]


def _reduce_into(output, inputs, task, control, programs):
    """Pipe the merged `inputs` through `task`'s reducer into `output`."""
    with control.running([task.executable], stdin=subprocess.PIPE,
                         stdout=output, bufsize=STDIN_BUFFER,
                         **programs.popen_args()) as child:
        try:
            with child.stdin:
                if len(inputs) == 1:
                    copy_with_newline(inputs[0], child.stdin.write)
                else:
                    merge_lines(inputs, child.stdin.write)
        except BrokenPipeError:
            pass  # The reducer stopped reading; its status decides.
        status = control.wait(child)
    control.check_exit(child, status, f"reduce task {task.task_id}")
