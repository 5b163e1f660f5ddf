"""Map and reduce tasks called directly: real executables, real files.

No network here: `run_map_task` and `run_reduce_task` are plain functions.
Partition contents are checked against an md5 computation written out in
this module, not borrowed from the code under test.
"""

import concurrent.futures
import contextlib
import hashlib
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tracemalloc

import pytest

from mapreduce.worker import lines as lines_module
from mapreduce.worker import merge as merge_module
from mapreduce.worker import partition as partition_module
from mapreduce.worker.tasks import (
    ProcessControl, TaskCancelled, TaskError, run_map_task, run_reduce_task,
)
from tests.util import EXEC, TESTDATA, process_gone, read_pids, wait_for

CAT = shutil.which("cat")
WC_MAP = EXEC / "wc_map.sh"
STOP_WAIT = 10.0  # Seconds a cancelled task may take to return: "promptly".

# Mapper output that exercises every byte-handling rule at once.
AWKWARD_BYTES = (
    b"plain\tvalue\n"
    b"no tab at all\n"
    b"multi\ttab\tkey\tline\n"
    b"multi\tother\n"
    b"crlf\tline\r\n"
    b"crlf without tab\r\n"
    b"\xff\xfe not utf-8\t\x80\x81\n"
    b"latin-1 caf\xe9\tx\n"
    b"\n"
    b"\tempty key\n"
    b"Upper\t1\n"
    b"upper\t1\n"
    b"plain\tagain\n"
    b"last line without newline"
)


# Helpers.

def md5_partition(key, num_partitions):
    """Return the partition of `key` (bytes), computed independently."""
    return int(hashlib.md5(key).hexdigest(), 16) % num_partitions


def lines_of(data):
    """Split mapper output into lines without newlines (adding a last one)."""
    if not data:
        return []
    if not data.endswith(b"\n"):
        data += b"\n"
    return data.split(b"\n")[:-1]


def expected_partitions(outputs, num_partitions):
    """Return each partition's lines, sorted like `LC_ALL=C sort`.

    `outputs` is the mapper's output for each input file. The key is what
    comes before the first TAB, or the whole line without its newline.
    """
    partitions = [[] for _ in range(num_partitions)]
    for output in outputs:
        for line in lines_of(output):
            key = line.split(b"\t", 1)[0]
            partitions[md5_partition(key, num_partitions)].append(line)
    # `sort` compares lines without their newlines: so does this.
    return [sorted(lines) for lines in partitions]


def file_lines(path):
    """Return the lines of a file (without newlines); it must end in one."""
    data = pathlib.Path(path).read_bytes()
    assert not data or data.endswith(b"\n"), f"{path} lacks a last newline"
    return lines_of(data)


def part_names(task_id, num_partitions):
    """Return the file names a map task must produce."""
    return [f"maptask{task_id:05d}-part{p:05d}"
            for p in range(num_partitions)]


def write_inputs(directory, contents):
    """Write one input file per bytes object; return their paths as str."""
    directory.mkdir(exist_ok=True)
    paths = []
    for number, data in enumerate(contents):
        path = directory / f"file{number:02d}"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def run_in_thread(function, *args, **kwargs):
    """Start `function(*args, **kwargs)` in a thread; return its Future."""
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = executor.submit(function, *args, **kwargs)
    executor.shutdown(wait=False)
    return future


def sort_in_locale(data, name):
    """Return `data` sorted by `sort` under locale `name` (bytes)."""
    return subprocess.run(["sort"], input=data, capture_output=True,
                          check=True, env={**os.environ, "LC_ALL": name}
                          ).stdout


# Fixtures.

@pytest.fixture(name="out")
def fixture_out(tmp_path):
    """Give an empty output directory."""
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


# Map: partition contents.

# 256 = 1 (mod 3), so 3 partitions cannot tell md5's byte order apart:
# the counts below can.
@pytest.mark.parametrize("num_partitions", [1, 2, 7, 10, 100])
def test_map_word_count_partitions(tmp_path, local_tmp, out, num_partitions):
    """Real mapper on real input: md5 partitions, sorted, all files there."""
    inputs = sorted(str(p) for p in (TESTDATA / "input").iterdir())
    names = run_map_task(3, inputs, str(WC_MAP), str(out), num_partitions)

    assert names == part_names(3, num_partitions)
    assert sorted(p.name for p in out.iterdir()) == names
    outputs = [subprocess.run([str(WC_MAP)],
                              input=pathlib.Path(path).read_bytes(),
                              capture_output=True, check=True).stdout
               for path in inputs]
    expected = expected_partitions(outputs, num_partitions)
    for name, lines in zip(names, expected):
        assert file_lines(out / name) == lines
    assert sum(map(len, expected)) > 20
    assert not any(local_tmp.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tmp"]


@pytest.mark.parametrize("shape", ["one-line-per-key", "many-per-key",
                                   "long-lines"])
def test_map_partitions_survive_a_small_cache(tmp_path, out, monkeypatch,
                                              shape):
    """With a tiny cache, every line still lands by its key's md5.

    The cache is emptied over and over, lines repeat (one line per key,
    as in word count) or not (many lines per key), and blocks too large
    to cache go uncached: none of it may change a partition.
    """
    monkeypatch.setattr(partition_module, "CACHE_ENTRIES", 16)
    monkeypatch.setattr(partition_module, "CACHE_BYTES", 96)
    monkeypatch.setattr(lines_module, "READ_BLOCK", 64)
    rng = random.Random(shape)
    words = [b"w%d" % n for n in range(60)]
    if shape == "one-line-per-key":
        lines = [rng.choice(words) + b"\t1" for _ in range(2000)]
    elif shape == "many-per-key":
        lines = [rng.choice(words) + b"\tdoc%d" % rng.randrange(500)
                 for _ in range(2000)]
    else:
        lines = [rng.choice(words) + b"\t" + b"x" * rng.randrange(30)
                 for _ in range(2000)]
    data = b"".join(line + b"\n" for line in lines)
    inputs = write_inputs(tmp_path / "input", [data])
    names = run_map_task(0, inputs, CAT, str(out), 10)
    for name, expected in zip(names, expected_partitions([data], 10)):
        assert file_lines(out / name) == expected


def test_partition_cache_keeps_frequent_lines_until_they_stop_paying(
        monkeypatch):
    """A full cache stays while it serves; new data empties and refills it.

    Blocks of lines that repeat fill the cache; more lines that repeat do
    not push out the ones that keep coming, but when the data changes (the
    cache serves less than half a block), the new lines take their place.
    """
    monkeypatch.setattr(partition_module, "CACHE_ENTRIES", 40)
    cache = partition_module.PartitionCache(7)
    first = [b"a%d\t1" % n for n in range(40)]
    extra = [b"b%d\t1" % n for n in range(10)]
    second = [b"c%d\t1" % n for n in range(40)]
    cache.partitions(first * 2)
    assert set(cache.known) == set(first)
    cache.partitions(first * 2 + extra * 2)
    assert set(cache.known) == set(first)
    parts = cache.partitions(second * 2)
    assert set(cache.known) == set(second)
    assert parts == [md5_partition(line.split(b"\t")[0], 7)
                     for line in second * 2]


def test_partition_cache_lets_in_lines_missed_twice_close_together():
    """Twice in a block, or in two blocks in a row: in; else: out."""
    cache = partition_module.PartitionCache(7)
    cache.partitions([b"twice", b"once", b"twice", b"gap", b"next"])
    assert set(cache.known) == {b"twice"}
    cache.partitions([b"next", b"other"])
    assert set(cache.known) == {b"twice", b"next"}
    cache.partitions([b"gap", b"twice"])
    assert set(cache.known) == {b"twice", b"next"}
    cache.partitions([b"gap"])
    assert set(cache.known) == {b"twice", b"next", b"gap"}
    cache.partitions([b"late"])
    cache.partitions([b"twice"])
    cache.partitions([b"late"])
    assert set(cache.known) == {b"twice", b"next", b"gap"}
    long_line = b"x" * (partition_module.CACHE_BYTES + 1)
    cache.partitions([long_line, long_line])
    assert long_line not in cache.known


@pytest.mark.parametrize("num_partitions", [1, 3, 7, 100])
def test_map_handles_awkward_bytes(tmp_path, local_tmp, out, num_partitions):
    """Non-UTF-8, no TAB, several TABs, CRLF, no last newline, empty."""
    inputs = write_inputs(tmp_path / "input", [
        AWKWARD_BYTES, b"", b"second file\twithout newline", b"\n\n"])
    names = run_map_task(0, inputs, CAT, str(out), num_partitions)

    assert sorted(p.name for p in out.iterdir()) == names
    expected = expected_partitions(
        [pathlib.Path(path).read_bytes() for path in inputs], num_partitions)
    for name, lines in zip(names, expected):
        lines_there = file_lines(out / name)
        assert lines_there == lines
        assert lines_there == sorted(lines_there)
    assert not any(local_tmp.iterdir())


def test_map_key_is_text_before_first_tab(tmp_path, local_tmp, out):
    """A line with several TABs goes where its first field's md5 says."""
    # Keys whose line would land elsewhere if hashed whole or up to the
    # last TAB: the test can only pass on the first-TAB rule.
    num_partitions = 7
    lines = []
    for number in range(200):
        key = b"key%d" % number
        line = key + b"\tsecond\tthird"
        right = md5_partition(key, num_partitions)
        if right not in (md5_partition(line, num_partitions),
                         md5_partition(key + b"\tsecond", num_partitions)):
            lines.append(line)
    assert len(lines) > 50
    inputs = write_inputs(tmp_path / "input", [b"\n".join(lines) + b"\n"])
    run_map_task(1, inputs, CAT, str(out), num_partitions)
    for line in lines:
        key = line.split(b"\t", 1)[0]
        name = f"maptask00001-part{md5_partition(key, num_partitions):05d}"
        assert line in file_lines(out / name)
    assert not any(local_tmp.iterdir())


@pytest.mark.parametrize("num_partitions", [1, 4])
def test_map_adds_missing_last_newline_per_input(tmp_path, local_tmp, out,
                                                 num_partitions):
    """Each input's unterminated last line stays a line of its own."""
    inputs = write_inputs(tmp_path / "input", [b"same", b"same", b"x\ty"])
    run_map_task(2, inputs, CAT, str(out), num_partitions)
    data = b"".join(p.read_bytes() for p in sorted(out.iterdir()))
    assert sorted(data.split(b"\n")) == [b"", b"same", b"same", b"x\ty"]
    assert not any(local_tmp.iterdir())


@pytest.mark.parametrize("inputs", [[], [b""], [b"", b""]],
                         ids=["no-inputs", "one-empty", "two-empty"])
def test_map_empty_output_gives_every_empty_partition(tmp_path, local_tmp, out,
                                                      inputs):
    """No output at all still gives one (empty) file per partition."""
    paths = write_inputs(tmp_path / "input", inputs)
    names = run_map_task(12, paths, CAT, str(out), 5)
    assert names == part_names(12, 5)
    assert sorted(p.name for p in out.iterdir()) == names
    assert all((out / name).read_bytes() == b"" for name in names)
    assert not any(local_tmp.iterdir())


def test_map_uses_prefixed_local_dir_and_removes_it(tmp_path, local_tmp, out,
                                                    monkeypatch):
    """Files are made in mapreduce-local-taskNNNNN-*, removed at the end."""
    gate = tmp_path / "gate"
    monkeypatch.setenv("T_GATE", str(gate))
    inputs = write_inputs(tmp_path / "input", [b"a\t1\nb\t2\n"])
    future = run_in_thread(run_map_task, 42, inputs, str(EXEC / "t_gate.sh"),
                           str(out), 2)
    try:
        local = wait_for(lambda: list(local_tmp.iterdir()),
                         what="the local directory")
        assert len(local) == 1
        assert local[0].is_dir()
        assert local[0].name.startswith("mapreduce-local-task00042-")
        # While the mapper runs, the partition files live there, not in out.
        wait_for(lambda: sorted(p.name for p in local[0].iterdir())
                 == part_names(42, 2), what="the partition files")
        assert not any(out.iterdir())
    finally:
        gate.touch()
        concurrent.futures.wait([future], STOP_WAIT)
    assert future.result(0)
    assert sorted(p.name for p in out.iterdir()) == part_names(42, 2)
    assert not any(local_tmp.iterdir())


def test_map_sorts_in_byte_order(tmp_path, local_tmp, out):
    """Mixed case, punctuation, digits and non-ASCII sort bytewise."""
    keys = [b"b", b"B", b"a", b"A", b"_x", b"-y", b"a b", b"ab", b"aB",
            b"\xc3\xa9t\xc3\xa9", b"e", b"z", b"Z", b"10", b"9", b"~", b".",
            b"a\tb", b"a-c", b"\xff"]
    inputs = write_inputs(tmp_path / "input", [b"\n".join(keys) + b"\n"])
    run_map_task(0, inputs, CAT, str(out), 1)
    assert file_lines(out / "maptask00000-part00000") == sorted(keys)
    assert not any(local_tmp.iterdir())


def test_map_sort_runs_with_lc_all_c(tmp_path, local_tmp, out, monkeypatch):
    """Every `sort` the map task starts gets LC_ALL=C, whatever the caller's.

    Needs no installed locale: a `sort` first on PATH writes down the
    environment it was given, then runs the real one.
    """
    real_sort = shutil.which("sort")
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    records = tmp_path / "sort-env"
    records.mkdir()
    wrapper = fake_bin / "sort"
    wrapper.write_text(f'#!/bin/sh\nenv > "{records}/$$"\n'
                       f'exec "{real_sort}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    monkeypatch.setenv("LC_COLLATE", "en_US.UTF-8")
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    data = b"".join(b"key%d\t1\n" % n for n in range(50))
    inputs = write_inputs(tmp_path / "input", [data])
    names = run_map_task(0, inputs, CAT, str(out), 4)
    environments = [path.read_text().splitlines()
                    for path in records.iterdir()]
    non_empty = [name for name in names if (out / name).stat().st_size]
    assert len(environments) == len(non_empty) == 4
    for environment in environments:
        assert "LC_ALL=C" in environment, environment
    assert not any(local_tmp.iterdir())


def test_map_sort_ignores_callers_locale(tmp_path, local_tmp, out,
                                         monkeypatch):
    """`sort` runs with LC_ALL=C even when the caller's locale differs."""
    name = "en_US.UTF-8"
    keys = [b"b", b"B", b"a", b"A", b"_x", b"-y", b"a b", b"ab", b"Ab"]
    data = b"".join(key + b"\n" for key in keys)
    # Only meaningful if that locale exists and orders differently.
    if sort_in_locale(data, name) == b"".join(
            key + b"\n" for key in sorted(keys)):
        pytest.skip(f"no {name} locale here; byte order is still checked "
                    "by test_map_sorts_in_byte_order")
    monkeypatch.setenv("LC_ALL", name)
    monkeypatch.setenv("LANG", name)
    inputs = write_inputs(tmp_path / "input", [data])
    run_map_task(0, inputs, CAT, str(out), 1)
    assert file_lines(out / "maptask00000-part00000") == sorted(keys)
    assert not any(local_tmp.iterdir())


# Reduce.

def write_sorted_inputs(directory, groups):
    """Write each group of lines, sorted like LC_ALL=C sort, to a file."""
    return write_inputs(directory, [
        b"".join(line + b"\n" for line in sorted(group)) for group in groups])


def test_reduce_merges_inputs_in_byte_order(tmp_path, local_tmp, out):
    """The reducer gets one stream: every input line, sorted bytewise."""
    groups = [
        [b"apple\t1", b"cherry\t1", b"Zebra\t1", b"\xff\xfe\t1"],
        [b"banana\t1", b"apple\t2", b"date\t1", b"\xc3\xa9clair\t1"],
        [],
        [b"apple\t3", b"Banana\t1", b"cherry\t2", b"eel\t1", b"_\t1"],
    ]
    inputs = write_sorted_inputs(tmp_path / "input", groups)
    name = run_reduce_task(4, CAT, inputs, str(out))
    assert name == "part-00004"
    assert [p.name for p in out.iterdir()] == ["part-00004"]
    everything = sorted(line for group in groups for line in group)
    assert file_lines(out / name) == everything
    assert not any(local_tmp.iterdir())


@pytest.mark.usefixtures("local_tmp")
def test_reduce_merge_agrees_with_sort_on_prefix_lines(tmp_path, out):
    """A line that is a prefix of another before a TAB sorts first."""
    groups = [[b"a", b"a\t1"], [b"a\t0"]]
    inputs = write_sorted_inputs(tmp_path / "input", groups)
    run_reduce_task(0, CAT, inputs, str(out))
    assert file_lines(out / "part-00000") == [b"a", b"a\t0", b"a\t1"]


@pytest.mark.parametrize("seed", range(5))
def test_reduce_merge_equals_sort_at_every_block_size(tmp_path, out,
                                                      monkeypatch, seed):
    """Random sorted inputs merge into exactly `LC_ALL=C sort` of them all.

    Tiny merge blocks put block edges everywhere; the lines share
    prefixes and hold TABs and bytes below the newline.
    """
    monkeypatch.setattr(merge_module, "MERGE_BUDGET", 64)
    monkeypatch.setattr(merge_module, "MERGE_BLOCK_MIN", 8)
    rng = random.Random(seed)
    alphabet = [b"a", b"b", b"\t", b"\x01", b" ", b"\xff"]
    lines = [b"".join(rng.choice(alphabet)
                      for _ in range(rng.randrange(0, 5)))
             for _ in range(400)]
    groups = [[] for _ in range(rng.randrange(2, 6))]
    for line in lines:
        rng.choice(groups).append(line)
    inputs = write_sorted_inputs(tmp_path / "input", groups)
    run_reduce_task(0, CAT, inputs, str(out))
    everything = b"".join(line + b"\n" for line in lines)
    expected = subprocess.run(["sort"], input=everything, check=True,
                              capture_output=True,
                              env={**os.environ, "LC_ALL": "C"}).stdout
    assert (out / "part-00000").read_bytes() == expected


def test_reduce_single_input(tmp_path, local_tmp, out):
    """One input file goes through the reducer unchanged in order."""
    inputs = write_sorted_inputs(tmp_path / "input",
                                 [[b"k%03d\tv" % n for n in range(300)]])
    run_reduce_task(0, CAT, inputs, str(out))
    assert file_lines(out / "part-00000") == [b"k%03d\tv" % n
                                              for n in range(300)]
    assert not any(local_tmp.iterdir())


@pytest.mark.parametrize("groups", [[], [[]], [[], []]],
                         ids=["no-inputs", "one-empty", "two-empty"])
def test_reduce_empty_input_writes_part_file(tmp_path, local_tmp, out,
                                             groups):
    """Every reduce task writes its part file, even with nothing to do."""
    inputs = write_sorted_inputs(tmp_path / "input", groups)
    assert run_reduce_task(7, CAT, inputs, str(out)) == "part-00007"
    assert [p.name for p in out.iterdir()] == ["part-00007"]
    assert (out / "part-00007").read_bytes() == b""
    assert not any(local_tmp.iterdir())


def test_reducer_that_stops_reading_succeeds(tmp_path, local_tmp, out):
    """A reducer may exit 0 before reading everything (`head -n 1`)."""
    groups = [[b"%07d\t%s" % (n, b"x" * 60) for n in range(k, 60000, 3)]
              for k in range(3)]
    inputs = write_sorted_inputs(tmp_path / "input", groups)
    run_reduce_task(1, str(EXEC / "t_head.sh"), inputs, str(out))
    assert file_lines(out / "part-00001") == [b"0000000\t" + b"x" * 60]
    # And with one input, which takes another path.
    run_reduce_task(2, str(EXEC / "t_head.sh"), inputs[1:2], str(out))
    assert file_lines(out / "part-00002") == [b"0000001\t" + b"x" * 60]
    assert not any(local_tmp.iterdir())


def test_reduce_uses_prefixed_local_dir_and_removes_it(tmp_path, local_tmp,
                                                       out, monkeypatch):
    """The part file is made in mapreduce-local-taskNNNNN-*, then moved."""
    gate = tmp_path / "gate"
    monkeypatch.setenv("T_GATE", str(gate))
    inputs = write_sorted_inputs(tmp_path / "input", [[b"a\t1"], [b"b\t1"]])
    future = run_in_thread(run_reduce_task, 9, str(EXEC / "t_gate.sh"),
                           inputs, str(out))
    try:
        local = wait_for(lambda: list(local_tmp.iterdir()),
                         what="the local directory")
        assert len(local) == 1
        assert local[0].name.startswith("mapreduce-local-task00009-")
        wait_for(lambda: [p.name for p in local[0].iterdir()]
                 == ["part-00009"], what="the part file")
        assert not any(out.iterdir())
    finally:
        gate.touch()
        concurrent.futures.wait([future], STOP_WAIT)
    assert future.result(0)
    assert file_lines(out / "part-00009") == [b"a\t1", b"b\t1"]
    assert not any(local_tmp.iterdir())


# Failures.

def run_task(kind, tmp_path, executable, out, inputs=None):
    """Run a map or reduce task on small input; return what it raised."""
    if inputs is None:
        inputs = write_inputs(tmp_path / "input", [b"a\t1\n" * 20000,
                                                   b"b\t1\n"])
    with pytest.raises(TaskError) as info:
        if kind == "map":
            run_map_task(5, inputs, str(executable), str(out), 3)
        else:
            run_reduce_task(5, str(executable), inputs, str(out))
    return str(info.value)


def assert_clean(out, local_tmp):
    """Nothing was left in the output directory or the temp directory."""
    if out.exists():
        assert not any(out.iterdir())
    assert not any(local_tmp.iterdir())


@pytest.mark.parametrize("kind", ["map", "reduce"])
def test_missing_executable(tmp_path, local_tmp, out, kind):
    """An executable that does not exist is a TaskError naming it."""
    missing = tmp_path / "no-such-mapper.sh"
    message = run_task(kind, tmp_path, missing, out)
    assert str(missing) in message
    assert "No such file" in message
    assert_clean(out, local_tmp)


@pytest.mark.parametrize("kind", ["map", "reduce"])
def test_executable_not_executable(tmp_path, local_tmp, out, kind):
    """A file without the execute bit is a TaskError naming it."""
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\ncat\n")
    script.chmod(0o644)
    if os.access(script, os.X_OK):
        pytest.skip("running as a user who may execute anything")
    message = run_task(kind, tmp_path, script, out)
    assert str(script) in message
    assert "Permission denied" in message
    assert_clean(out, local_tmp)


@pytest.mark.parametrize("kind", ["map", "reduce"])
def test_executable_exits_non_zero(tmp_path, local_tmp, out, kind):
    """A non-zero exit gives its status and the end of its stderr."""
    message = run_task(kind, tmp_path, EXEC / "t_fail.sh", out)
    assert "t_fail.sh" in message
    assert "status 3" in message
    assert "the last complaint" in message
    assert_clean(out, local_tmp)


@pytest.mark.parametrize("case", [
    (kind, *signal_case) for kind in ("map", "reduce")
    for signal_case in (("KILL", "SIGKILL"), ("TERM", "SIGTERM"),
                        ("40", "signal 40"))])
def test_executable_killed_by_signal(tmp_path, local_tmp, out, monkeypatch,
                                     case):
    """Death by a signal is a TaskError that names the signal."""
    kind, signal_name, shown = case
    monkeypatch.setenv("T_SIGNAL", signal_name)
    message = run_task(kind, tmp_path, EXEC / "t_signal.sh", out)
    assert "t_signal.sh" in message
    assert f"killed by {shown}" in message
    assert_clean(out, local_tmp)


@pytest.mark.parametrize("kind", ["map", "reduce"])
def test_input_file_missing(tmp_path, local_tmp, out, kind):
    """A missing input (after one that exists) is a TaskError naming it."""
    inputs = write_inputs(tmp_path / "input", [b"a\t1\n"])
    missing = str(tmp_path / "input" / "gone")
    message = run_task(kind, tmp_path, CAT, out, inputs + [missing])
    assert missing in message
    assert_clean(out, local_tmp)


@pytest.mark.parametrize("kind", ["map", "reduce"])
def test_output_directory_missing(tmp_path, local_tmp, kind):
    """A missing output directory is a TaskError naming it."""
    out = tmp_path / "no-such-output"
    message = run_task(kind, tmp_path, CAT, out)
    assert str(out) in message
    assert not out.exists()
    assert_clean(out, local_tmp)


# Cancelling.

@pytest.mark.parametrize("kind", ["map", "reduce"])
def test_cancel_stops_children_and_grandchildren(tmp_path, local_tmp, out,
                                                 pidfile, kind):
    """cancel() from another thread: TaskCancelled soon, no process left."""
    inputs = write_inputs(tmp_path / "input", [b"k\tv\n" * 100000] * 2)
    control = ProcessControl()
    hang = str(EXEC / "t_hang.sh")
    if kind == "map":
        future = run_in_thread(run_map_task, 0, inputs, hang, str(out), 3,
                               control=control)
    else:
        future = run_in_thread(run_reduce_task, 0, hang, inputs, str(out),
                               control=control)
    try:
        pids = read_pids(pidfile)
        assert not any(map(process_gone, pids))
        control.cancel()
        concurrent.futures.wait([future], STOP_WAIT)
        assert future.done(), "the task did not stop"
    finally:
        control.cancel()
        concurrent.futures.wait([future], STOP_WAIT)
    assert isinstance(future.exception(0), TaskCancelled), future
    wait_for(lambda: all(map(process_gone, pids)), timeout=STOP_WAIT,
             what="the task's processes to end")
    assert_clean(out, local_tmp)


def test_cancel_before_start(tmp_path, local_tmp, out):
    """A cancelled control starts nothing."""
    control = ProcessControl()
    control.cancel()
    inputs = write_inputs(tmp_path / "input", [b"a\n"])
    with pytest.raises(TaskCancelled):
        run_map_task(0, inputs, CAT, str(out), 2, control=control)
    with pytest.raises(TaskCancelled):
        run_reduce_task(0, CAT, inputs, str(out), control=control)
    assert_clean(out, local_tmp)


# Memory.

# The peak is read from VmHWM, not ru_maxrss: Linux carries ru_maxrss
# over from the parent through fork and exec, so a child of a big pytest
# process would report pytest's size.
MEMORY_SCRIPT = """
import re, sys
from mapreduce.worker.tasks import run_map_task, run_reduce_task
kind, executable, out, inputs = sys.argv[1], sys.argv[2], sys.argv[3], \\
    sys.argv[4:]
if kind == "map":
    run_map_task(0, inputs, executable, out, 4)
else:
    run_reduce_task(0, executable, inputs, out)
with open("/proc/self/status") as status:
    print(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1))
"""
MEMORY_LIMIT_KB = 60 * 1024
MEMORY_GROWTH_KB = 10 * 1024


def generate_input(path, megabytes):
    """Write about `megabytes` MB of word-count-like lines, quickly."""
    block = b"".join(b"key%05d\t%s\n" % (n, b"v" * (n % 150))
                     for n in range(20000))
    with open(path, "wb") as file:
        for number in range(megabytes * (1 << 20) // len(block) + 1):
            # Vary the blocks a little so that sort has work to do.
            file.write(block.replace(b"key", b"k%02d" % (number % 7)))


def peak_memory_kb(kind, executable, out, inputs, local_tmp):
    """Run one task in a fresh interpreter; return its peak RSS in KB."""
    env = {**os.environ, "TMPDIR": str(local_tmp)}
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, kind, executable, str(out),
         *map(str, inputs)],
        capture_output=True, text=True, check=False, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


def test_memory_stays_constant_over_a_large_task(tmp_path, local_tmp):
    """Peak RSS of map and reduce barely moves from 12 MB to 120 MB input."""
    peaks = {}
    for size in (12, 120):
        inputs = [tmp_path / f"input-{size}-{n}" for n in range(2)]
        for path in inputs:
            generate_input(path, size // 2)
        mapped = tmp_path / f"mapped-{size}"
        mapped.mkdir()
        peaks["map", size] = peak_memory_kb("map", CAT, mapped, inputs,
                                            local_tmp)
        for path in inputs:
            path.unlink()
        reduced = tmp_path / f"reduced-{size}"
        reduced.mkdir()
        parts = sorted(mapped.iterdir())
        assert len(parts) == 4
        assert sum(p.stat().st_size for p in parts) > size * (1 << 20)
        peaks["reduce", size] = peak_memory_kb("reduce", CAT, reduced, parts,
                                               local_tmp)
        assert ((reduced / "part-00000").stat().st_size
                == sum(p.stat().st_size for p in parts))
        shutil.rmtree(mapped)
        shutil.rmtree(reduced)
    for kind in ("map", "reduce"):
        small, large = peaks[kind, 12], peaks[kind, 120]
        assert large < MEMORY_LIMIT_KB, peaks
        assert large - small < MEMORY_GROWTH_KB, peaks
    assert not any(local_tmp.iterdir())


# The Python heap.

HEAP_LIMIT = 1 << 20
HEAP_INPUT_BYTES = 5 << 20


@contextlib.contextmanager
def heap_peak():
    """Trace the heap in the with block; the yielded list gets its peak."""
    peak = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def word_count_lines(path, size):
    """Write about `size` bytes of word count lines (short, Zipf-like)."""
    rng = random.Random(5)
    words = [b"w%d" % n for n in range(30000)]
    weights = [1 / (rank + 2) for rank in range(len(words))]
    with open(path, "wb") as file:
        while file.tell() < size:
            file.write(b"".join(word + b"\t1\n" for word in rng.choices(
                words, weights, k=50000)))


@pytest.mark.parametrize("num_partitions", [2, 100])
@pytest.mark.parametrize("shape", ["word-count", "long-lines"])
def test_heap_peak_stays_under_one_mib(tmp_path, local_tmp, num_partitions,
                                       shape):
    """5 MB through `cat`: map and reduce each peak under 1 MiB of heap.

    The reduce task merges every map output file: with 100 partitions,
    100 inputs.
    """
    source = tmp_path / "input"
    if shape == "word-count":
        word_count_lines(source, HEAP_INPUT_BYTES)
    else:
        generate_input(source, HEAP_INPUT_BYTES >> 20)
    mapped, reduced = tmp_path / "mapped", tmp_path / "reduced"
    mapped.mkdir()
    reduced.mkdir()
    with heap_peak() as map_peak:
        names = run_map_task(0, [str(source)], CAT, str(mapped),
                             num_partitions)
    inputs = [str(mapped / name) for name in names]
    with heap_peak() as reduce_peak:
        run_reduce_task(0, CAT, inputs, str(reduced))
    assert map_peak[0] < HEAP_LIMIT, f"map task peaked at {map_peak} bytes"
    assert reduce_peak[0] < HEAP_LIMIT, f"reduce task: {reduce_peak} bytes"
    assert ((reduced / "part-00000").stat().st_size
            == source.stat().st_size)
    assert not any(local_tmp.iterdir())
