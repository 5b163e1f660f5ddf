"""The task engine's parts on their own: lines, merging, partitioning.

`tests/test_tasks.py` runs whole tasks with real executables; these tests
call the parts the tasks are made of with streams of bytes in memory and
check what they write, block by block: the contract that keeps a Worker's
memory flat (reads of bounded size) as well as the bytes.
"""

import contextlib
import hashlib
import heapq
import io
import itertools
import logging
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from mapreduce.worker import (
    lines, merge, partition, placing, processes, tasks,
)
from mapreduce.worker.processes import TaskError
from mapreduce.worker.stderr import STDERR_TAIL


class RecordingStream(io.BytesIO):
    """Bytes in memory that remember the size of every read asked of them."""

    def __init__(self, data):
        """Hold `data`, with no read yet."""
        super().__init__(data)
        self.sizes = []

    def read(self, size=-1):
        """Read as BytesIO does; note `size`."""
        self.sizes.append(size)
        return super().read(size)


def blocks_of(data, size=None):
    """Return the lists that line_blocks yields over `data`."""
    return list(lines.line_blocks(io.BytesIO(data), size))


# lines.line_blocks

@pytest.mark.parametrize("data, size, expected", [
    (b"aa\nbb\ncc\ndd\n", 8, [[b"aa", b"bb"], [b"cc", b"dd"]]),
    (b"aa\nbb\ncc\ndd\n", 100, [[b"aa", b"bb", b"cc", b"dd"]]),
    (b"abcdefghijkl\nxy", 4, [[b"abcdefghijkl"], [b"xy"]]),
    (b"abcdefgh", 4, [[b"abcdefgh"]]),
    (b"ab\n\ncd\n", 3, [[b"ab"], [b""], [b"cd"]]),
    (b"", 4, []),
    (b"\n", 4, [[b""]]),
])
def test_line_blocks_yields_whole_lines_a_block_at_a_time(data, size,
                                                          expected):
    """Blocks of about `size` bytes; a long line comes whole; no newlines."""
    assert blocks_of(data, size) == expected


def test_line_blocks_reads_blocks_of_the_size_asked():
    """The stream is read `size` bytes at a time, READ_BLOCK by default."""
    data = b"word\n" * (lines.READ_BLOCK // 2)
    for size, expected in ((None, lines.READ_BLOCK), (100, 100)):
        stream = RecordingStream(data)
        produced = list(lines.line_blocks(stream, size))
        assert set(stream.sizes) == {expected}
        assert len(produced) >= len(data) // expected
        assert list(itertools.chain.from_iterable(produced)) == (
            [b"word"] * (lines.READ_BLOCK // 2))


@pytest.mark.parametrize("data", [b"", b"x", b"x\n", b"a\nb",
                                  b"y" * (lines.READ_BLOCK * 2 + 5)])
def test_copy_with_newline_copies_in_blocks_and_ends_lines(data):
    """The bytes, a newline added if missing, in writes of READ_BLOCK."""
    writes = []
    stream = RecordingStream(data)
    lines.copy_with_newline(stream, writes.append)
    expected = data if data.endswith(b"\n") or not data else data + b"\n"
    assert b"".join(writes) == expected
    assert set(stream.sizes) == {lines.READ_BLOCK}
    assert all(len(write) <= lines.READ_BLOCK for write in writes)


def test_write_lines_joins_a_slice_at_a_time():
    """Every line ends with a newline; JOIN_LINES lines a write at most."""
    writes = []
    many = [b"%d" % number for number in range(lines.JOIN_LINES * 2 + 1)]
    lines.write_lines(writes.append, many)
    assert b"".join(writes) == b"".join(line + b"\n" for line in many)
    assert len(writes) == 3
    writes.clear()
    lines.write_lines(writes.append, [])
    assert not writes


# merge.merge_lines

def merged(inputs):
    """Return what merge_lines writes for `inputs` (lists of lines)."""
    writes = []
    streams = [RecordingStream(b"".join(line + b"\n" for line in lines_in))
               for lines_in in inputs]
    merge.merge_lines(streams, writes.append)
    return b"".join(writes), streams


def plain_merge(inputs):
    """Return what heapq.merge makes of `inputs`, as bytes."""
    return b"".join(line + b"\n" for line in heapq.merge(*inputs))


def sorted_words(rng, count, width=6):
    """Return `count` sorted random lines of up to `width` letters."""
    return sorted(bytes(rng.choice(b"ab\tc") for _ in range(
        rng.randint(0, width))) for _ in range(count))


@pytest.mark.parametrize("count", [1, 2, 3, 7, 70])
def test_merge_equals_the_plain_merge(count):
    """Any number of sorted inputs: the lines of all, in byte order."""
    rng = random.Random(count)
    inputs = [sorted_words(rng, rng.randint(0, 9000 // count))
              for _ in range(count)]
    output, _ = merged(inputs)
    assert output == plain_merge(inputs)


def test_merge_reads_each_input_in_its_share_of_the_budget():
    """MERGE_BUDGET split among the inputs, never under MERGE_BLOCK_MIN."""
    rng = random.Random(5)
    for count, length in ((1, 3000), (3, 2000), (5, 1000), (200, 20)):
        inputs = [sorted_words(rng, length) for _ in range(count)]
        _, streams = merged(inputs)
        share = max(merge.MERGE_BLOCK_MIN, merge.MERGE_BUDGET // count)
        assert {size for stream in streams for size in stream.sizes} == {
            share}


def test_merge_keeps_a_line_before_its_longer_neighbours():
    """'a' before 'a<TAB>1' before 'ab': compared without the newline."""
    output, _ = merged([[b"a\t1", b"ab"], [b"a", b"a\t2"]])
    assert output == b"a\na\t1\na\t2\nab\n"


@pytest.mark.parametrize("where", ["first", "middle", "last", "across"])
def test_an_input_out_of_order_is_merged_as_the_plain_merge(where):
    """From an input found out of order on, heapq.merge does the work."""
    rng = random.Random(where)
    inputs = [sorted_words(rng, 3000) for _ in range(3)]
    bad = inputs[1]
    spot = {"first": 0, "middle": 1500, "last": len(bad) - 1,
            "across": 1200}[where]
    if where == "across":
        # The blocks are in order within, not from one to the next.
        bad[:] = bad[spot:] + bad[:spot]
    else:
        bad.insert(spot, b"zzzz")
    output, _ = merged(inputs)
    assert output == plain_merge(inputs)


def test_the_fallback_merge_writes_as_it_reads():
    """Out of order from the start: output begins before the input ends."""
    rng = random.Random(3)
    inputs = [sorted_words(rng, 20000) for _ in range(2)]
    inputs[0].insert(0, b"zzzz")
    streams = [io.BytesIO(b"".join(line + b"\n" for line in lines_in))
               for lines_in in inputs]
    total = sum(len(stream.getvalue()) for stream in streams)
    read_at_write = []
    writes = []

    def write(data):
        read_at_write.append(sum(stream.tell() for stream in streams))
        writes.append(data)
    merge.merge_lines(streams, write)
    assert b"".join(writes) == plain_merge(inputs)
    assert read_at_write[0] < total / 2


def test_merge_of_empty_inputs_writes_nothing():
    """No lines anywhere: no write."""
    assert merged([[], []])[0] == b""
    assert merged([])[0] == b""


def test_merge_writes_in_bounded_pieces():
    """No write holds more than the lines of one round, or FALLBACK_LINES."""
    rng = random.Random(9)
    inputs = [sorted_words(rng, 5000) for _ in range(2)]
    inputs[0].insert(2500, b"zzzz")  # The fallback for the second half.
    writes = []
    streams = [io.BytesIO(b"".join(line + b"\n" for line in lines_in))
               for lines_in in inputs]
    merge.merge_lines(streams, writes.append)
    assert b"".join(writes) == plain_merge(inputs)
    assert max(write.count(b"\n") for write in writes) <= max(
        lines.JOIN_LINES, merge.FALLBACK_LINES)


def md5_partition(line, num_partitions):
    """Return the partition of `line` as SPEC.md defines it."""
    key = line.partition(b"\t")[0]
    return int(hashlib.md5(key).hexdigest(), 16) % num_partitions


# partition

def random_lines(rng, count):
    """Return `count` lines: repeated keys, tabs, empty lines, odd bytes."""
    keys = [b"", b"the", b"a", b"\xff\xfe", b"x" * 40, b"tab\tinside"]
    keys += [b"w%d" % number for number in range(50)]
    return [rng.choice(keys) + rng.choice([b"", b"\t1", b"\t\t2", b" 3"])
            for _ in range(count)]


def partitioned(data, num_partitions):
    """Return the bytes partition_stream writes to each output."""
    outputs = [io.BytesIO() for _ in range(num_partitions)]
    partition.partition_stream(io.BytesIO(data), outputs, num_partitions)
    return [output.getvalue() for output in outputs]


@pytest.mark.parametrize("num_partitions", [1, 2, 3, 10, 100])
@pytest.mark.parametrize("ending", [b"\n", b""])
def test_each_line_goes_to_the_partition_of_its_keys_md5(
        num_partitions, ending):
    """SPEC.md's md5 rule, lines in order, a missing newline added."""
    rng = random.Random(num_partitions)
    all_lines = random_lines(rng, 6000) + [b"last\tline"]
    data = b"\n".join(all_lines) + ending
    expected = [[] for _ in range(num_partitions)]
    for line in all_lines:
        expected[md5_partition(line, num_partitions)].append(line + b"\n")
    assert partitioned(data, num_partitions) == [b"".join(part)
                                                 for part in expected]


def test_an_empty_stream_writes_nothing():
    """No line, no byte, whatever the number of partitions."""
    assert partitioned(b"", 1) == [b""]
    assert partitioned(b"", 3) == [b""] * 3


def test_the_cache_keeps_only_lines_seen_twice_in_a_block():
    """Rare lines are hashed and forgotten; repeated ones are kept."""
    cache = partition.PartitionCache(7)
    block = [b"once", b"twice", b"twice", b"k\tv", b"k\tv", b"k\tv"]
    assert cache.partitions(block) == [md5_partition(line, 7)
                                       for line in block]
    assert cache.known == {b"twice": md5_partition(b"twice", 7),
                           b"k\tv": md5_partition(b"k\tv", 7)}
    assert cache.size == len(b"twice") + len(b"k\tv")
    again = [b"k\tv", b"new", b"twice"]
    assert cache.partitions(again) == [md5_partition(line, 7)
                                       for line in again]
    assert b"new" not in cache.known


def test_the_cache_takes_what_fits_and_empties_only_when_stale():
    """Up to CACHE_ENTRIES lines and CACHE_BYTES bytes, never more.

    A full cache keeps what it has (what does not fit is left out) unless
    it is stale, when it starts afresh; exactly the limit still fits, and
    what alone is over it is never kept.
    """
    entries, size = partition.CACHE_ENTRIES, partition.CACHE_BYTES
    cache = partition.PartitionCache(3)
    cache.remember({b"a": 0}, stale=False)
    cache.remember({b"c%d" % n: 0 for n in range(entries)}, stale=False)
    assert len(cache.known) == entries and b"a" in cache.known
    assert b"c%d" % (entries - 2) in cache.known
    assert b"c%d" % (entries - 1) not in cache.known
    cache.remember({b"b": 1}, stale=False)
    assert b"b" not in cache.known and len(cache.known) == entries
    cache.remember({b"b": 1}, stale=True)
    assert cache.known == {b"b": 1} and cache.size == 1
    cache.remember({b"d" * (size - 1): 2}, stale=False)
    assert cache.known == {b"b": 1, b"d" * (size - 1): 2}
    assert cache.size == size
    cache.remember({b"e": 0}, stale=False)
    assert b"e" not in cache.known and cache.size == size
    cache.remember({b"e": 0}, stale=True)
    assert cache.known == {b"e": 0} and cache.size == 1
    cache.remember({b"y" * size: 2}, stale=True)
    assert cache.known == {b"y" * size: 2} and cache.size == size
    cache.remember({b"x" * (size + 1): 2}, stale=True)
    assert not cache.known and cache.size == 0
    cache.remember({b"x" * (size + 1): 2}, stale=False)
    assert not cache.known and cache.size == 0


@pytest.mark.parametrize("num_outputs", [2, 3])
def test_write_partitioned_writes_each_line_to_its_output(num_outputs):
    """Line i to output parts[i], with a newline, in order."""
    outputs = [io.BytesIO() for _ in range(num_outputs)]
    block = [b"l%d" % number for number in range(12)]
    parts = [number % num_outputs for number in range(12)]
    partition.write_partitioned(block, parts, outputs)
    assert [output.getvalue() for output in outputs] == [
        b"".join(line + b"\n" for line, part in zip(block, parts)
                 if part == number) for number in range(num_outputs)]


# placing

@pytest.fixture(name="other_device")
def fixture_other_device(tmp_path):
    """Give a directory on another file system than `tmp_path`, or skip."""
    for parent in ("/dev/shm", "/run/shm"):
        if (os.path.isdir(parent) and os.access(parent, os.W_OK)
                and os.stat(parent).st_dev != os.stat(tmp_path).st_dev):
            directory = tempfile.mkdtemp(prefix="test-task-engine-",
                                         dir=parent)
            yield pathlib.Path(directory)
            shutil.rmtree(directory, ignore_errors=True)
            return
    pytest.skip("no writable file system other than the temp dir's")


@pytest.mark.parametrize("across", [False, True])
def test_move_into_replaces_the_file_of_that_name(tmp_path, other_device,
                                                  across, monkeypatch):
    """Same or other file system: the file is there whole, nothing else.

    The copy across file systems is made in the target directory (here
    the working directory is on the source's file system).
    """
    monkeypatch.chdir(other_device)
    source_dir = other_device if across else tmp_path / "source"
    source_dir.mkdir(exist_ok=True)
    target = tmp_path / "target"
    target.mkdir()
    (target / "part-00000").write_bytes(b"old\n")
    source = source_dir / "part-00000"
    source.write_bytes(b"new\n" * 1000)
    placing.move_into(str(source), str(target))
    assert (target / "part-00000").read_bytes() == b"new\n" * 1000
    assert sorted(os.listdir(target)) == ["part-00000"]
    # Across file systems the source stays: the local directory it is
    # in is removed with the task.
    assert source.exists() is across


@pytest.mark.parametrize("across", [False, True])
def test_move_into_a_missing_directory_is_a_task_error(tmp_path,
                                                       other_device, across):
    """One line that names the file and the directory; nothing left over."""
    source_dir = other_device if across else tmp_path
    source = source_dir / "maptask00001-part00002"
    source.write_bytes(b"x\n")
    missing = tmp_path / "gone"
    with pytest.raises(TaskError) as info:
        placing.move_into(str(source), str(missing))
    assert str(info.value) == (f"cannot move maptask00001-part00002 into "
                               f"{missing}: No such file or directory")
    assert not missing.exists()


def test_a_failed_copy_leaves_no_hidden_file(tmp_path, other_device):
    """Across file systems, a copy that fails removes its hidden file."""
    target = tmp_path / "target"
    target.mkdir()
    (target / "part-00003").mkdir()  # A directory cannot be replaced.
    (target / "part-00003" / "inside").write_bytes(b"")
    source = other_device / "part-00003"
    source.write_bytes(b"data\n")
    with pytest.raises(TaskError, match="cannot move part-00003 into "):
        placing.move_into(str(source), str(target))
    assert sorted(os.listdir(target)) == ["part-00003"]


def test_a_directory_cannot_be_moved_across_file_systems(
        tmp_path, other_device):
    """The copy fails before it made anything: one error, nothing left."""
    (other_device / "part-00001").mkdir()
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(TaskError) as info:
        placing.move_into(str(other_device / "part-00001"), str(target))
    assert str(info.value) == (f"cannot move part-00001 into {target}: "
                               "Is a directory")
    assert not os.listdir(target)


def test_open_input_names_the_file_it_cannot_read(tmp_path):
    """A missing input is a TaskError with the path and the reason."""
    with contextlib.ExitStack() as stack:
        with pytest.raises(TaskError) as info:
            placing.open_input(str(tmp_path / "nope"), stack)
        assert str(info.value) == (f"cannot read input {tmp_path / 'nope'}: "
                                   "No such file or directory")
        (tmp_path / "there").write_bytes(b"abc")
        opened = placing.open_input(str(tmp_path / "there"), stack)
        # Unbuffered: a read of N bytes asks the file for N bytes.
        assert isinstance(opened, io.RawIOBase)
        assert opened.read(2) == b"ab"
    assert opened.closed


def test_local_dir_is_named_for_its_task_and_removed(tmp_path, monkeypatch):
    """mapreduce-local-taskNNNNN-* in the temp dir, gone at the end."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with placing.local_dir(42) as directory:
        assert os.path.dirname(directory) == str(tmp_path)
        assert os.path.basename(directory).startswith(
            "mapreduce-local-task00042-")
        assert os.path.isdir(directory)
    assert not os.listdir(tmp_path)


# processes

@pytest.mark.parametrize("status, failure", [
    (0, None),
    (1, "exited with status 1"),
    (255, "exited with status 255"),
    (-signal.SIGKILL, "was killed by SIGKILL"),
    (-signal.SIGPIPE, "was killed by SIGPIPE"),
    (-40, "was killed by signal 40"),
])
def test_exit_failure_says_how_a_child_failed(status, failure):
    """Exit 0 is success; a status or a signal name otherwise."""
    assert processes.exit_failure(status) == failure


def finished_child(data, status=0, name="map.sh", log=None):
    """Run a child that writes `data` on stderr and exits with `status`.

    Returns the control, the child and its status, once its stderr ended.
    """
    code = ("import sys; sys.stderr.buffer.write(bytes.fromhex(sys.argv[1]));"
            " sys.exit(int(sys.argv[2]))")
    control = processes.ProcessControl(log)
    with control.running([sys.executable, "-c", code, data.hex(),
                          str(status)]) as child:
        child.args[0] = name  # How check_exit names the executable.
        return control, child, control.wait(child)


@pytest.mark.parametrize("data, tail", [
    (b"", ""),
    (b"  warning: x\n\n", "warning: x"),
    (b"\xff oops\n", "\ufffd oops"),
    (b"a" * (STDERR_TAIL - 1) + b"\n", "a" * (STDERR_TAIL - 1)),
    (b"b" + b"a" * (STDERR_TAIL - 1) + b"\n",
     "..." + "a" * (STDERR_TAIL - 1)),
])
def test_stderr_tail_is_the_last_bytes_as_text(data, tail):
    """At most STDERR_TAIL bytes from the end, '...' when cut, stripped."""
    control, child, _ = finished_child(data)
    assert control.stderr_tail(child) == tail


def test_check_exit_logs_stderr_of_a_success(caplog):
    """Exit 0: the stderr, if any, is one INFO line; no error."""
    caplog.set_level(logging.INFO, logger="test.engine")
    log = logging.getLogger("test.engine")
    control, child, status = finished_child(b"note\n", log=log)
    control.check_exit(child, status, "file01")
    control, child, status = finished_child(b"", log=log)
    control.check_exit(child, status, "file02")
    assert [(record.levelno, record.getMessage())
            for record in caplog.records
            if record.levelno >= logging.INFO] == [
        (logging.INFO, "map.sh wrote to stderr on file01: note")]


def test_check_exit_raises_with_the_stderr_of_a_failure():
    """Non-zero: a TaskError naming the work, the stderr after a marker."""
    control, child, status = finished_child(b"Traceback\nKeyError\n", 2)
    with pytest.raises(TaskError) as info:
        control.check_exit(child, status, "file01")
    assert str(info.value) == ("map.sh exited with status 2 on file01; "
                               "stderr: Traceback\nKeyError")
    control, child, _ = finished_child(b"", name="reduce.sh")
    with pytest.raises(TaskError) as info:
        control.check_exit(child, -9, "reduce task 3")
    assert str(info.value) == (
        "reduce.sh was killed by SIGKILL on reduce task 3")


def test_wait_reads_stderr_to_its_end_before_it_returns():
    """The whole stderr is in the tail once wait() returns, last line too."""
    code = ("import sys\nfor n in range(20000):\n"
            "    sys.stderr.write(f'line {n}\\n')\n")
    control = processes.ProcessControl()
    with control.running([sys.executable, "-c", code]) as child:
        assert control.wait(child) == 0
        assert control.stderr_tail(child).endswith("line 19999")


def test_a_child_with_stderr_elsewhere_has_no_tail():
    """Stderr given by the caller is not read: the tail is empty."""
    control = processes.ProcessControl()
    with control.running(["sh", "-c", "echo x >&2"],
                         stderr=subprocess.DEVNULL) as child:
        assert control.wait(child) == 0
        assert control.stderr_tail(child) == ""


def test_stderr_lines_are_logged_under_the_programs_name(caplog):
    """Each stderr line is a DEBUG line naming the program (basename)."""
    caplog.set_level(logging.DEBUG, logger="test.engine")
    control = processes.ProcessControl(logging.getLogger("test.engine"))
    with control.running(["sh", "-c", "echo hello >&2"]) as child:
        control.wait(child)
    assert ("sh: hello" in [record.getMessage()
                            for record in caplog.records])


def test_what_a_child_leaves_holding_its_stderr_is_killed(monkeypatch,
                                                          caplog):
    """A child gone, its stderr still open: warn, kill the group, go on."""
    monkeypatch.setattr(processes, "STDERR_GRACE", 0.2)
    caplog.set_level(logging.WARNING, logger="test.engine")
    control = processes.ProcessControl(logging.getLogger("test.engine"))
    with control.running(["sh", "-c", "sleep 30 & echo $!"],
                         stdout=subprocess.PIPE) as child:
        left = int(child.stdout.readline())
        assert control.wait(child) == 0
    assert [record.getMessage() for record in caplog.records] == [
        "sh exited but its stderr is still open; killing what it left "
        "running"]
    deadline = time.monotonic() + 5
    while _alive(left):
        assert time.monotonic() < deadline, "the process left is alive"
        time.sleep(0.01)


def _alive(pid):
    """Tell whether process `pid` runs (not a zombie)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        state = stat.split()[2]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_child_runs_and_its_status_is_returned():
    """running() starts it in its own session; wait() gives the status."""
    control = processes.ProcessControl()
    with control.running(["sh", "-c", "exit 3"]) as child:
        assert os.getsid(child.pid) == child.pid
        assert control.wait(child) == 3
    assert child.returncode == 3


def test_a_child_that_cannot_start_is_a_task_error(tmp_path):
    """Missing, or missing its interpreter: one line, with a hint."""
    control = processes.ProcessControl()
    missing = str(tmp_path / "missing")
    with pytest.raises(TaskError) as info:
        with control.running([missing]):
            pass
    assert str(info.value) == (f"cannot run {missing!r}: No such file or "
                               "directory")
    orphan = tmp_path / "orphan"
    orphan.write_text("#!/no/such/interpreter\n")
    orphan.chmod(0o755)
    with pytest.raises(TaskError) as info:
        with control.running([str(orphan)]):
            pass
    assert str(info.value) == (
        f"cannot run {str(orphan)!r}: No such file or directory (is the "
        "interpreter on its #! line missing?)")


def test_leaving_the_block_by_an_error_kills_the_child():
    """An exception in the with block kills the child's process group."""
    control = processes.ProcessControl()
    with pytest.raises(RuntimeError):
        with control.running(["sleep", "60"]) as child:
            raise RuntimeError("the task broke")
    assert child.returncode == -signal.SIGKILL


def test_cancel_kills_the_children_and_refuses_new_ones():
    """After cancel(): wait() and running() raise TaskCancelled."""
    control = processes.ProcessControl()
    with pytest.raises(processes.TaskCancelled):
        with control.running(["sleep", "60"]) as child:
            control.cancel()
            control.wait(child)
    assert child.returncode == -signal.SIGKILL
    assert control.cancelled
    with pytest.raises(processes.TaskCancelled) as info:
        with control.running(["true"]):
            pass
    assert str(info.value) == "task cancelled"


def test_an_error_after_the_child_is_gone_is_the_error_raised():
    """Killing the group of a child that has exited already is no error."""
    control = processes.ProcessControl()
    with pytest.raises(RuntimeError, match="after the end"):
        with control.running(["true"]) as child:
            child.wait()
            raise RuntimeError("after the end")


def test_a_control_logs_to_its_logger_or_the_modules():
    """The children's stderr goes to the logger given, by default this one."""
    log = logging.getLogger("Worker:6001")
    assert processes.ProcessControl(log).log is log
    assert processes.ProcessControl().log is logging.getLogger(
        "mapreduce.worker.processes")
    assert processes.ProcessControl().cancelled is False


# tasks: what a failing or talkative child is called in messages

def script(path, body):
    """Write an executable shell script `path` with `body`; return it."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture(name="task_dirs")
def fixture_task_dirs(tmp_path, monkeypatch):
    """Give (input file, output directory); temp files in tmp_path/tmp."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    source = tmp_path / "input01"
    source.write_bytes(b"b\t1\na\t1\n")
    output = tmp_path / "out"
    output.mkdir()
    return str(source), output


@pytest.mark.parametrize("give_control", [False, True])
def test_a_talkative_mapper_and_reducer_are_logged(tmp_path, task_dirs,
                                                   caplog, give_control):
    """Their stderr is an INFO line naming the input or the reduce task."""
    caplog.set_level(logging.INFO)
    source, output = task_dirs
    noisy = script(tmp_path / "noisy.sh", "echo note >&2\nexec cat\n")
    log = logging.getLogger("Worker:6001")

    def control():
        return processes.ProcessControl(log) if give_control else None
    tasks.run_map_task(0, [source], noisy, str(output), 1,
                       control=control())
    tasks.run_reduce_task(3, noisy, [source], str(output),
                          control=control())
    assert [(record.name, record.getMessage())
            for record in caplog.records] == [
        (log.name if give_control else "mapreduce.worker.tasks", text)
        for text in (f"{noisy} wrote to stderr on {source}: note",
                     f"{noisy} wrote to stderr on reduce task 3: note")]


def test_a_failing_mapper_or_reducer_is_named_with_its_work(tmp_path,
                                                            task_dirs):
    """The TaskError names the input file, or the reduce task."""
    source, output = task_dirs
    failing = script(tmp_path / "fail.sh", "cat >/dev/null\necho bad >&2\n"
                                           "exit 4\n")
    with pytest.raises(TaskError) as info:
        tasks.run_map_task(0, [source], failing, str(output), 2)
    assert str(info.value) == (f"{failing} exited with status 4 on "
                               f"{source}; stderr: bad")
    with pytest.raises(TaskError) as info:
        tasks.run_reduce_task(7, failing, [source, source], str(output))
    assert str(info.value) == (f"{failing} exited with status 4 on reduce "
                               "task 7; stderr: bad")
    assert not os.listdir(output)


def test_a_failing_sort_fails_the_map_task(tmp_path, task_dirs,
                                           monkeypatch):
    """Its status and the end of its stderr, as text; nothing moved."""
    source, output = task_dirs
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    script(fake_bin / "sort", "printf 'sort: \\377 ' >&2\n"
                              f"printf '{'x' * 600}\\n' >&2\nexit 2\n")
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(TaskError) as info:
        tasks.run_map_task(5, [source], "cat", str(output), 1)
    assert str(info.value) == ("sort failed on maptask00005-part00000 with "
                               f"status 2: {'x' * 500}")
    script(fake_bin / "sort", "printf 'sort: \\377 cannot' >&2\nexit 2\n")
    with pytest.raises(TaskError) as info:
        tasks.run_map_task(5, [source], "cat", str(output), 1)
    assert str(info.value) == ("sort failed on maptask00005-part00000 with "
                               "status 2: sort: \ufffd cannot")
    assert not os.listdir(output)
