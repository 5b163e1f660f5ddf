"""Map and reduce tasks: plain functions of paths and numbers.

They run user executables as child processes, stream data through them
without holding it in memory, and move finished files into place. They know
nothing of the network; the Worker runs them in its pool.
"""

import bisect
import contextlib
import errno
import hashlib
import heapq
import itertools
import logging
import operator
import os
import shutil
import signal
import subprocess
import tempfile
import threading

LOG = logging.getLogger(__name__)
PIPE_BUFFER = 1 << 18
WRITE_BUFFER_TOTAL = 1 << 20
READ_BLOCK = 1 << 18
MERGE_BUDGET = 1 << 16
MERGE_BLOCK_MIN = 1 << 12
KEY_CACHE_LIMIT = 1 << 16
KEY_CACHE_BYTES = 2 << 20
CACHE_LINE_LIMIT = 256
KEY_TRIAL = 4096
STDERR_TAIL = 2048
SORT_PARALLELISM = 4


class TaskError(Exception):
    """A task could not be completed; the message says why."""


class TaskCancelled(TaskError):
    """The task was stopped from outside (the Worker is shutting down)."""


class ProcessControl:
    """Starts a task's child processes and can stop them all at once.

    `cancel()` may be called from any thread: it kills every child (with
    its own children) and makes later starts fail with TaskCancelled.
    """

    def __init__(self):
        """Start with no children and not cancelled."""
        self._lock = threading.Lock()
        self._children = set()
        self.cancelled = False

    def start(self, args, **popen_args):
        """Start a child in a session of its own and return its Popen."""
        with self._lock:
            if self.cancelled:
                raise TaskCancelled("task cancelled")
            try:
                # Waited for in `wait`, not in a with block.
                # pylint: disable-next=consider-using-with
                child = subprocess.Popen(args, start_new_session=True,
                                         **popen_args)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if isinstance(exc, FileNotFoundError) and os.path.isfile(
                        args[0]):
                    reason += " (is the interpreter on its #! line missing?)"
                raise TaskError(f"cannot run {args[0]!r}: {reason}") from exc
            self._children.add(child)
            return child

    def wait(self, child):
        """Wait for `child` to exit, forget it, and return its exit status."""
        status = child.wait()
        with self._lock:
            self._children.discard(child)
            if self.cancelled:
                raise TaskCancelled("task cancelled")
        return status

    def cancel(self):
        """Kill every child process group and refuse new ones."""
        with self._lock:
            self.cancelled = True
            for child in self._children:
                with contextlib.suppress(OSError):
                    os.killpg(child.pid, signal.SIGKILL)


def _stderr_tail(stderr_file):
    """Return the last few KB the child wrote to stderr, as text."""
    stderr_file.seek(0, os.SEEK_END)
    size = stderr_file.tell()
    stderr_file.seek(max(0, size - STDERR_TAIL))
    tail = stderr_file.read().decode("utf-8", "replace").strip()
    return ("..." if size > STDERR_TAIL else "") + tail


def _check_status(executable, status, stderr_file, what, log):
    """Log the child's stderr and raise TaskError if it did not exit 0."""
    tail = _stderr_tail(stderr_file)
    if status == 0:
        if tail:
            log.info("%s wrote to stderr on %s: %s", executable, what, tail)
        return
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:  # Real-time signals have no name here.
            name = f"signal {-status}"
        reason = f"was killed by {name}"
    else:
        reason = f"exited with status {status}"
    message = f"{executable} {reason} on {what}"
    if tail:
        message += f"; stderr: {tail}"
    raise TaskError(message)


def _local_dir(task_id):
    """Make the task's local temporary directory (a context manager)."""
    return tempfile.TemporaryDirectory(
        prefix=f"mapreduce-local-task{task_id:05d}-")


def _move_into(path, directory):
    """Move file `path` into `directory`, replacing a file of that name.

    The file appears there whole: across file systems it is copied under
    a hidden name first and renamed in place.
    """
    name = os.path.basename(path)
    target = os.path.join(directory, name)
    try:
        os.replace(path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise TaskError(f"cannot move {name} into {directory}: "
                            f"{exc.strerror}") from exc
        hidden = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(path, hidden)
            os.replace(hidden, target)
        except OSError as copy_exc:
            with contextlib.suppress(OSError):
                os.unlink(hidden)
            raise TaskError(f"cannot move {name} into {directory}: "
                            f"{copy_exc.strerror}") from copy_exc


def _open_input(path):
    """Open an input file for reading bytes, or raise TaskError."""
    try:
        # Closed by the caller, not in a with block.
        return open(path, "rb")  # pylint: disable=consider-using-with
    except OSError as exc:
        raise TaskError(f"cannot read input {path}: {exc.strerror}") from exc


def partition_stream(stream, outputs, num_partitions):
    """Write each line of `stream` to its partition's file in `outputs`.

    The key is the text before the first TAB (the whole line without its
    newline if there is none). A missing final newline is added. Memory
    stays bounded: the stream is read in blocks, and the cache of
    partitions already computed is emptied when it grows large.

    The per-line work runs in C: a block is split into lines, their
    partitions come from one `map` over the cache (keyed by whole lines,
    which repeat in typical map output, and by keys), and each file gets
    one write per block. Only cache misses are hashed in Python.
    """
    if num_partitions == 1:
        _copy_with_newline(stream, outputs[0])
        return
    cache = _PartitionCache()
    for lines in _line_blocks(stream):
        parts = list(map(cache.get, lines))
        if None in parts:
            _fill_misses(lines, parts, cache, num_partitions)
        _write_partitioned(lines, parts, outputs)


class _PartitionCache(dict):
    """Partitions already computed, by line or key, and their bytes.

    Emptied when it holds KEY_CACHE_LIMIT entries or KEY_CACHE_BYTES
    bytes of lines and keys. Keys are kept as well as lines only while
    that pays: when a line is new, is its key known from another line?
    In word count never (each key has one line), and keeping the keys
    would halve the room for lines.
    """

    __slots__ = ("size", "key_lookups", "key_hits")

    def __init__(self):
        """Start empty."""
        super().__init__()
        self.size = 0
        self.key_lookups = 0
        self.key_hits = 0

    @property
    def keeps_keys(self):
        """Tell whether keys have been found often enough to keep them."""
        return (self.key_lookups < KEY_TRIAL
                or self.key_hits * 10 >= self.key_lookups)


def _line_blocks(stream, size=READ_BLOCK):
    """Yield lists of the lines of `stream`, without their newlines.

    Each list holds the whole lines of a block of about `size` bytes; a
    last line without a newline comes alone at the end.
    """
    pieces = []
    while True:
        block = stream.read(size)
        if not block:
            break
        if b"\n" not in block:
            pieces.append(block)
            continue
        if pieces:
            pieces.append(block)
            block = b"".join(pieces)
            pieces = []
        lines = block.split(b"\n")
        tail = lines.pop()
        if tail:
            pieces.append(tail)
        yield lines
    if pieces:
        yield [b"".join(pieces)]


def _fill_misses(lines, parts, cache, num_partitions):
    """Compute the partitions missing (None) in `parts`; cache them.

    The cache maps a line, and a key, to the partition of its key (a key
    is its own key, so one dict serves both). Keys are looked up and kept
    while the cache says they pay, and always for lines too long to keep.
    """
    keep_keys = cache.keeps_keys
    lookups = hits = 0
    index = -1
    try:
        while True:
            index = parts.index(None, index + 1)
            line = lines[index]
            part = cache.get(line)  # The same line earlier in the block.
            if part is None:
                if (len(cache) >= KEY_CACHE_LIMIT
                        or cache.size >= KEY_CACHE_BYTES):
                    cache.clear()
                    cache.size = 0
                key = line.split(b"\t", 1)[0]
                short = len(line) <= CACHE_LINE_LIMIT
                by_key = keep_keys or not short
                if by_key:
                    lookups += 1
                    part = cache.get(key)
                if part is None:
                    # Equal to int(md5(key).hexdigest(), 16).
                    part = (int.from_bytes(hashlib.md5(key).digest(), "big")
                            % num_partitions)
                    if by_key:
                        cache[key] = part
                        cache.size += len(key)
                else:
                    hits += 1
                if short:
                    cache[line] = part
                    cache.size += len(line)
            parts[index] = part
    except ValueError:
        pass  # No more misses in this block.
    cache.key_lookups += lookups
    cache.key_hits += hits


def _write_partitioned(lines, parts, outputs):
    """Write `lines[i]` and a newline to `outputs[parts[i]]`.

    Each file gets one write; a list ends with an empty line so that
    joining with newlines ends every line with one.
    """
    if len(outputs) == 2:
        chosen = (itertools.compress(lines, map(operator.not_, parts)),
                  itertools.compress(lines, parts))
        for output, selected in zip(outputs, chosen):
            chunk = b"\n".join(itertools.chain(selected, (b"",)))
            if chunk:
                output.write(chunk)
        return
    buckets = [[] for _ in outputs]
    appends = [bucket.append for bucket in buckets]
    for line, part in zip(lines, parts):
        appends[part](line)
    for bucket, output in zip(buckets, outputs):
        if bucket:
            bucket.append(b"")
            output.write(b"\n".join(bucket))


def _copy_with_newline(stream, output):
    """Copy `stream` to `output` in large blocks, ending with a newline."""
    last = b"\n"
    while True:
        block = stream.read(PIPE_BUFFER)
        if not block:
            break
        output.write(block)
        last = block[-1:]
    if last != b"\n":
        output.write(b"\n")


class _Run:
    """One sorted input of the reduce merge: its lines, a block at a time.

    Lines come without their newlines, so that comparing them is comparing
    what `LC_ALL=C sort` compares.
    """

    __slots__ = ("blocks", "block", "pos", "ordered")

    def __init__(self, file, size):
        """Read `file` in blocks of about `size` bytes."""
        self.blocks = _line_blocks(file, size)
        self.block = []
        self.pos = 0
        self.ordered = True

    def load(self):
        """Read the next block; return False at the end of the input.

        Notes in `ordered` whether the input is still in byte order: within
        the block, and from the end of the block before.
        """
        previous = self.block[-1:]
        self.block = next(self.blocks, [])
        self.pos = 0
        self.ordered = (previous <= self.block[:1]
                        and all(map(operator.le, self.block,
                                    itertools.islice(self.block, 1, None))))
        return bool(self.block)

    def rest(self):
        """Return an iterator over the lines not merged yet."""
        return itertools.chain(itertools.islice(self.block, self.pos, None),
                               itertools.chain.from_iterable(self.blocks))


def _write_lines(write, lines):
    """Write each of `lines` with a newline, in one write (extends `lines`)."""
    if lines:
        lines.append(b"")
        write(b"\n".join(lines))


def _merge_lines(inputs, write):
    """Write the lines of the sorted `inputs`, merged, through `write`.

    This is `heapq.merge` over the inputs' lines taken without their
    newlines, so the order is that of `LC_ALL=C sort` ("a" before "a<TAB>1",
    which raw lines, newline included, would put the other way round). The
    work is done a block at a time in C: every line up to the smallest of
    the last lines of the blocks in hand can be given out, after one `sort`
    of those few sorted runs. An input found out of order is merged by
    `heapq.merge` itself from there on, as the plain merge would.
    """
    size = max(MERGE_BLOCK_MIN, MERGE_BUDGET // max(1, len(inputs)))
    live = [run for run in (_Run(file, size) for file in inputs)
            if run.load()]
    while live and all(run.ordered for run in live):
        bound = min(run.block[-1] for run in live)
        chunk = []
        for run in live:
            cut = bisect.bisect_right(run.block, bound, run.pos)
            chunk.extend(itertools.islice(run.block, run.pos, cut))
            run.pos = cut
        chunk.sort()
        _write_lines(write, chunk)
        live = [run for run in live
                if run.pos < len(run.block) or run.load()]
    merged = heapq.merge(*(run.rest() for run in live))
    for lines in iter(lambda: list(itertools.islice(merged, 4096)), []):
        _write_lines(write, lines)


def _sort_files(paths, control):
    """Sort each non-empty file in place with `sort`, a few at a time."""
    waiting = [path for path in paths if os.path.getsize(path) > 0]
    # Taken now, not at import: the caller's environment of the moment
    # (TMPDIR, PATH), with the byte-order locale on top.
    env = {**os.environ, "LC_ALL": "C"}
    while waiting:
        batch, waiting = (waiting[:SORT_PARALLELISM],
                          waiting[SORT_PARALLELISM:])
        running = []
        for path in batch:
            child = control.start(["sort", "-o", path, path], env=env,
                                  stdin=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
            running.append((path, child))
        for path, child in running:
            error = child.stderr.read().decode("utf-8", "replace").strip()
            child.stderr.close()
            status = control.wait(child)
            if status != 0:
                raise TaskError(f"sort failed on {os.path.basename(path)} "
                                f"with status {status}: {error[-500:]}")


def _map_one_input(executable, input_path, outputs, control, log):
    """Pipe one input file through the mapper into the partition files."""
    with _open_input(input_path) as stdin, \
            tempfile.TemporaryFile() as stderr_file:
        child = control.start([executable], stdin=stdin,
                              stdout=subprocess.PIPE, stderr=stderr_file,
                              bufsize=PIPE_BUFFER)
        with child.stdout:
            partition_stream(child.stdout, outputs, len(outputs))
        status = control.wait(child)
        _check_status(executable, status, stderr_file, input_path, log)


def run_map_task(task_id, input_paths, executable, output_directory,
                 num_partitions, control=None, log=LOG):
    """Run a map task and return the names of the files it produced.

    Each input file is piped through `executable`; every output line goes
    to partition file `maptask{task_id:05d}-part{p:05d}` by the md5 of its
    key. The files are sorted with `LC_ALL=C sort` and then moved into
    `output_directory`. Raises TaskError (nothing moved) on failure.
    """
    control = control or ProcessControl()
    buffer_size = max(4096, min(PIPE_BUFFER,
                                WRITE_BUFFER_TOTAL // num_partitions))
    with _local_dir(task_id) as local_dir:
        paths = [os.path.join(local_dir,
                              f"maptask{task_id:05d}-part{p:05d}")
                 for p in range(num_partitions)]
        with contextlib.ExitStack() as stack:
            outputs = [stack.enter_context(open(path, "wb", buffer_size))
                       for path in paths]
            for input_path in input_paths:
                _map_one_input(executable, input_path, outputs, control, log)
        _sort_files(paths, control)
        for path in paths:
            _move_into(path, output_directory)
    return [os.path.basename(path) for path in paths]


def run_reduce_task(task_id, executable, input_paths, output_directory,
                    control=None, log=LOG):
    """Run a reduce task and return the name of the file it produced.

    The sorted input files are merged into one sorted stream and piped
    into `executable`, whose output becomes `part-{task_id:05d}` in
    `output_directory`. Raises TaskError (nothing moved) on failure.
    """
    control = control or ProcessControl()
    name = f"part-{task_id:05d}"
    with _local_dir(task_id) as local_dir:
        path = os.path.join(local_dir, name)
        with contextlib.ExitStack() as stack:
            inputs = [stack.enter_context(_open_input(input_path))
                      for input_path in input_paths]
            output = stack.enter_context(open(path, "wb"))
            stderr_file = stack.enter_context(tempfile.TemporaryFile())
            child = control.start([executable], stdin=subprocess.PIPE,
                                  stdout=output, stderr=stderr_file,
                                  bufsize=PIPE_BUFFER)
            try:
                with child.stdin:
                    if len(inputs) == 1:
                        _copy_with_newline(inputs[0], child.stdin)
                    else:
                        _merge_lines(inputs, child.stdin.write)
            except BrokenPipeError:
                pass  # The reducer stopped reading; its status decides.
            status = control.wait(child)
            _check_status(executable, status, stderr_file,
                          f"reduce task {task_id}", log)
        _move_into(path, output_directory)
    return name
