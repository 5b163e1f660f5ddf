"""The task engine's streaming side: real programs, real files.

What a task that carries the `streaming` record adds (a partitioner
program, a combiner, map-only output, Hadoop's environment, counters),
and compressed input, which every task reads. Expected answers come from
computations written out here, from the shell, or from madoop itself.
"""

import bz2
import collections
import concurrent.futures
import gzip
import hashlib
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tracemalloc

import pytest

from mapreduce.protocol import NewMapTask, NewReduceTask, Streaming
from mapreduce.worker import decompress
from mapreduce.worker import lines as lines_module
from mapreduce.worker import streaming as streaming_module
from mapreduce.worker.partition import EXTRA_NUMBERS
from mapreduce.worker.streaming import Reporter
from mapreduce.worker.tasks import (
    ProcessControl, TaskError, run_map, run_map_task, run_reduce,
    run_reduce_task,
)
from tests.util import EXEC, TESTDATA

CAT = shutil.which("cat")
WC_MAP = EXEC / "wc_map.sh"
WC_REDUCE = EXEC / "wc_reduce.sh"
INPUTS = sorted(str(path) for path in (TESTDATA / "input").iterdir())
# A record at its default is no record: a streaming task always carries
# the job's variables (the Manager puts them there).
JOB_ENVIRONMENT = {"mapreduce_job_id": "job_00007"}
TASK_WAIT = 60.0  # Seconds a small task may take before it counts as hung.


# Helpers.

def streaming(**fields):
    """Return a `streaming` record with the job's environment."""
    environment = {**JOB_ENVIRONMENT, **fields.pop("environment", {})}
    return Streaming(environment=environment, **fields)


def program(directory, name, text):
    """Write an executable Python program `name` with body `text`."""
    path = directory / name
    path.write_text(f"#!{sys.executable}\n{text}")
    path.chmod(0o755)
    return str(path)


def file_lines(path):
    """Return a file's lines without newlines; it must end with one."""
    data = pathlib.Path(path).read_bytes()
    assert not data or data.endswith(b"\n"), f"{path} lacks a last newline"
    return data.split(b"\n")[:-1] if data else []


def shell_output(executable, path):
    """Return what `executable` writes for the input file at `path`."""
    return subprocess.run([str(executable)], stdin=open(path, "rb"),
                          capture_output=True, check=True).stdout


def word_count(paths):
    """Return the word counts of files, computed here: {word: count}."""
    counts = collections.Counter()
    for path in paths:
        counts.update(pathlib.Path(path).read_bytes().split())
    return counts


def counts_in(paths):
    """Return {word: count} summed over files of `word<TAB>count` lines."""
    counts = collections.Counter()
    for path in paths:
        for line in file_lines(path):
            word, count = line.split(b"\t")
            counts[word] += int(count)
    return counts


def make_inputs(directory, contents):
    """Write each bytes object to its own input file; return the paths."""
    directory.mkdir(exist_ok=True)
    paths = []
    for number, data in enumerate(contents):
        path = directory / f"in{number:02d}"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def words_text(count, seed=1):
    """Return `count` lines of a few words each, deterministic, ASCII."""
    words = [b"alpha", b"beta", b"gamma", b"delta", b"eps", b"zeta", b"eta",
             b"theta", b"iota", b"kappa", b"Lambda", b"mu"]
    state = seed
    lines = []
    for _ in range(count):
        state = (state * 1103515245 + 12345) % (1 << 31)
        lines.append(b" ".join(words[(state >> shift) % len(words)]
                               for shift in (3, 9, 15)))
    return b"\n".join(lines) + b"\n"


@pytest.fixture(name="out")
def fixture_out(tmp_path):
    """Give an empty output directory."""
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def assert_clean(out, local_tmp):
    """Nothing was left in the output directory or the temp directory."""
    assert not any(out.iterdir())
    assert not any(local_tmp.iterdir())


# The combiner.

REVERSE_COMBINER = """
import sys
import tracemalloc
lines = sys.stdin.readlines()
sys.stdout.writelines(reversed(lines))
"""


def test_combiner_gives_the_same_answer_from_smaller_partitions(
        tmp_path, local_tmp):
    """Word count with its reducer as combiner: same counts, less data."""
    inputs = make_inputs(tmp_path / "in", [words_text(3000, seed)
                                           for seed in (1, 2)])
    plain, combined = tmp_path / "plain", tmp_path / "combined"
    plain.mkdir()
    combined.mkdir()
    run_map(NewMapTask(0, inputs, str(WC_MAP), str(plain), 3,
                       streaming()))
    result = run_map(NewMapTask(0, inputs, str(WC_MAP), str(combined), 3,
                                streaming(combiner=str(WC_REDUCE))))
    for name in result.names:
        small, large = combined / name, plain / name
        assert 0 < small.stat().st_size < large.stat().st_size / 10
        lines = file_lines(small)
        assert lines == sorted(lines)
        # Same words in the same partition, each once, with its count.
        assert counts_in([small]) == counts_in([large])
        assert len(lines) == len(counts_in([small]))
    assert counts_in(combined.iterdir()) == word_count(inputs)
    # And through the reducer, the same part file as without combining.
    for source, target in ((plain, "plain-out"), (combined, "comb-out")):
        (tmp_path / target).mkdir()
        for partition in range(3):
            name = f"maptask00000-part{partition:05d}"
            run_reduce_task(partition, str(WC_REDUCE), [str(source / name)],
                            str(tmp_path / target))
    for partition in range(3):
        name = f"part-{partition:05d}"
        assert ((tmp_path / "plain-out" / name).read_bytes()
                == (tmp_path / "comb-out" / name).read_bytes())
    assert not any(local_tmp.iterdir())


def test_combiner_output_out_of_order_is_sorted_again(tmp_path, local_tmp,
                                                      out):
    """A combiner that reverses its input: the partition is still sorted."""
    combiner = program(tmp_path, "reverse.py", REVERSE_COMBINER)
    inputs = make_inputs(tmp_path / "in", [words_text(500)])
    result = run_map(NewMapTask(4, inputs, str(WC_MAP), str(out), 2,
                                streaming(combiner=combiner)))
    expected = sorted(line for line in file_lines_of_mapper(inputs))
    got = []
    for name in result.names:
        lines = file_lines(out / name)
        assert lines == sorted(lines)
        got += lines
    assert sorted(got) == expected
    assert not any(local_tmp.iterdir())


def file_lines_of_mapper(inputs):
    """Return the word count mapper's lines over `inputs`."""
    return [line for path in inputs
            for line in shell_output(WC_MAP, path).splitlines()]


def test_combiner_not_run_on_empty_partitions(tmp_path, local_tmp, out):
    """An empty partition stays empty: the combiner is not started for it."""
    combiner = program(tmp_path, "stamp.py", """
import sys
import tracemalloc
sys.stdin.read()
print("stamped\\t1")
""")
    inputs = make_inputs(tmp_path / "in", [b"only\n"])
    result = run_map(NewMapTask(0, inputs, str(WC_MAP), str(out), 5,
                                streaming(combiner=combiner)))
    sizes = [(out / name).stat().st_size for name in result.names]
    assert sizes.count(0) == 4
    contents = [(out / name).read_bytes() for name in result.names]
    assert b"stamped\t1\n" in contents
    assert not any(local_tmp.iterdir())


def test_combiner_without_last_newline_gets_one(tmp_path, local_tmp, out):
    """A combiner's last line without a newline still ends the file."""
    combiner = program(tmp_path, "nonl.py", """
import sys
import tracemalloc
data = sys.stdin.read()
sys.stdout.write(data.rstrip("\\n"))
""")
    inputs = make_inputs(tmp_path / "in", [b"b\na\n"])
    run_map(NewMapTask(0, inputs, str(WC_MAP), str(out), 1,
                       streaming(combiner=combiner)))
    assert (out / "maptask00000-part00000").read_bytes() == b"a\t1\nb\t1\n"
    assert not any(local_tmp.iterdir())


def test_combiner_failure_fails_the_task(tmp_path, local_tmp, out):
    """A combiner that exits non-zero: TaskError with its stderr."""
    combiner = program(tmp_path, "bad.py", """
import sys
import tracemalloc
sys.stdin.read()
sys.exit("combiner gave up")
""")
    inputs = make_inputs(tmp_path / "in", [b"a b c\n"])
    with pytest.raises(TaskError) as info:
        run_map(NewMapTask(0, inputs, str(WC_MAP), str(out), 2,
                           streaming(combiner=combiner)))
    assert "bad.py exited with status 1" in str(info.value)
    assert "combiner gave up" in str(info.value)
    assert_clean(out, local_tmp)


# The partitioner program.

FIRST_LETTER_PARTITIONER = """
import sys
import tracemalloc
n = int(sys.argv[1])
for line in sys.stdin:
    key = line.partition("\\t")[0]
    print(ord(key[0]) % n if key else 0)
"""

# Reads everything before it writes a thing: buffers all its output.
HOARDING_PARTITIONER = """
import sys
import tracemalloc
n = int(sys.argv[1])
lines = sys.stdin.readlines()
sys.stdout.write("".join(f"{len(line) % n}\\n" for line in lines))
"""


def madoop_partitions(tmp_path, map_output, partitioner, num_partitions):
    """Return madoop's partition files (sorted lines) for `map_output`."""
    madoop = pytest.importorskip("madoop.mapreduce")
    directory = tmp_path / "madoop"
    directory.mkdir()
    outpaths = [directory / f"part-{n:05d}" for n in range(num_partitions)]
    madoop.partition_keys_custom(
        pathlib.Path(map_output), outpaths, collections.defaultdict(set),
        collections.defaultdict(set), num_partitions, partitioner)
    return [sorted(file_lines(path)) if path.exists() else []
            for path in outpaths]


@pytest.mark.parametrize("num_partitions", [1, 2, 5])
def test_partitioner_equals_madoops_partition(tmp_path, local_tmp, out,
                                              num_partitions):
    """Each line lands where madoop's partition stage puts it."""
    partitioner = program(tmp_path, "first.py", FIRST_LETTER_PARTITIONER)
    inputs = make_inputs(tmp_path / "in", [words_text(400, 3),
                                           words_text(300, 4)])
    result = run_map(NewMapTask(1, inputs, str(WC_MAP), str(out),
                                num_partitions,
                                streaming(partitioner=partitioner)))
    map_output = tmp_path / "map-output"
    map_output.write_bytes(b"".join(shell_output(WC_MAP, path)
                                    for path in inputs))
    expected = madoop_partitions(tmp_path, map_output, partitioner,
                                 num_partitions)
    assert [file_lines(out / name) for name in result.names] == expected
    assert sum(map(len, expected)) > 1000
    if num_partitions > 1:
        # Not the md5 partition by accident.
        md5_first = [line for line in expected[0] if int(hashlib.md5(
            line.split(b"\t")[0]).hexdigest(), 16) % num_partitions]
        assert md5_first
    assert not any(local_tmp.iterdir())


def test_partitioner_that_hoards_its_output_does_not_block(tmp_path,
                                                           local_tmp, out,
                                                           monkeypatch):
    """Megabytes of numbers written only at the end: no deadlock.

    Small read blocks make the task read the map output far ahead of the
    numbers, which a pipe could never hold.
    """
    monkeypatch.setattr(lines_module, "READ_BLOCK", 512)
    partitioner = program(tmp_path, "hoard.py", HOARDING_PARTITIONER)
    inputs = make_inputs(tmp_path / "in", [b"".join(
        b"k%d\t%s\n" % (n, b"v" * (n % 7)) for n in range(200000))])
    result = run_map(NewMapTask(0, inputs, CAT, str(out), 4,
                                streaming(partitioner=partitioner)))
    for partition, name in enumerate(result.names):
        lines = file_lines(out / name)
        assert all((len(line) + 1) % 4 == partition for line in lines)
    assert sum(len(file_lines(out / name)) for name in result.names) == 200000
    assert not any(local_tmp.iterdir())


def test_partitioner_keeps_lines_of_every_input(tmp_path, local_tmp, out):
    """Inputs whose output lacks a last newline keep their lines apart."""
    partitioner = program(tmp_path, "zero.py", """
import sys
import tracemalloc
for _ in sys.stdin:
    print(0)
""")
    inputs = make_inputs(tmp_path / "in", [b"x\t1", b"y\t2", b""])
    run_map(NewMapTask(0, inputs, CAT, str(out), 2,
                       streaming(partitioner=partitioner)))
    assert file_lines(out / "maptask00000-part00000") == [b"x\t1", b"y\t2"]
    assert file_lines(out / "maptask00000-part00001") == []
    assert not any(local_tmp.iterdir())


@pytest.mark.parametrize("body, message", [
    ("print('two' if i == 2 else 0)",
     "printed 'two' for line 3: not a partition number from 0 to 2"),
    ("print(3 if i == 1 else 0)",
     "printed '3' for line 2: not a partition number from 0 to 2"),
    ("print(-1)", "printed '-1' for line 1: not a partition number"),
    ("print('' if i == 4 else 1)", "printed '' for line 5"),
    ("print(0) if i < 3 else None", "printed 3 partition numbers for 6 lines"),
    ("print(0); print(0) if i == 5 else None",
     "printed 7 partition numbers for 6 lines"),
], ids=["not-int", "too-big", "negative", "empty", "missing", "extra"])
def test_bad_partition_numbers_fail_the_task(tmp_path, local_tmp, out, body,
                                             message):
    """A bad number, or too few or too many: TaskError saying which."""
    partitioner = program(tmp_path, "bad.py", f"""
import sys
import tracemalloc
for i, line in enumerate(sys.stdin):
    {body}
""")
    inputs = make_inputs(tmp_path / "in", [b"a\t1\nb\t1\nc\t1\n",
                                           b"d\t1\ne\t1\nf\t1\n"])
    with pytest.raises(TaskError) as info:
        run_map(NewMapTask(2, inputs, CAT, str(out), 3,
                           streaming(partitioner=partitioner)))
    assert str(info.value).startswith(f"partitioner {partitioner} ")
    assert message in str(info.value)
    assert_clean(out, local_tmp)


@pytest.mark.timeout(60)  # What it checks, broken, is a hang.
def test_partitioner_that_prints_for_ever_fails_the_task(
        tmp_path, local_tmp, out):
    """Numbers past the last line are counted up to a bound, not waited for:
    the task fails, and the partitioner is stopped."""
    partitioner = program(tmp_path, "forever.py", """
import sys
import tracemalloc
sys.stdin.read()
while True:
    print(0)
""")
    inputs = make_inputs(tmp_path / "in", [b"a\t1\nb\t1\n"])
    with pytest.raises(TaskError) as info:
        run_map(NewMapTask(0, inputs, CAT, str(out), 2,
                           streaming(partitioner=partitioner)))
    assert (f"printed at least {2 + EXTRA_NUMBERS} partition numbers for 2 "
            "lines") in str(info.value)
    assert_clean(out, local_tmp)


def test_partitioner_exit_status_comes_before_a_short_output(
        tmp_path, local_tmp, out):
    """A partitioner that dies half way: its status and stderr, not a count."""
    partitioner = program(tmp_path, "dies.py", """
import sys
import tracemalloc
print(0)
sys.stdout.flush()
sys.exit("partitioner fell over")
""")
    inputs = make_inputs(tmp_path / "in", [b"a\t1\nb\t1\n"])
    with pytest.raises(TaskError) as info:
        run_map(NewMapTask(2, inputs, CAT, str(out), 3,
                           streaming(partitioner=partitioner)))
    assert "dies.py exited with status 1" in str(info.value)
    assert "partitioner fell over" in str(info.value)
    assert_clean(out, local_tmp)


def test_partitioner_gets_the_number_of_partitions(tmp_path, local_tmp, out):
    """Its one argument is num_partitions, as madoop gives it."""
    partitioner = program(tmp_path, "arg.py", """
import sys
import tracemalloc
for _ in sys.stdin:
    print(int(sys.argv[1]) - 1)
""")
    inputs = make_inputs(tmp_path / "in", [b"a\t1\n"])
    run_map(NewMapTask(0, inputs, CAT, str(out), 7,
                       streaming(partitioner=partitioner)))
    assert file_lines(out / "maptask00000-part00006") == [b"a\t1"]
    assert not any(local_tmp.iterdir())


# Map-only.

def test_map_only_output_is_the_mappers_lines(tmp_path, local_tmp, out):
    """num_partitions 0: part-NNNNN holds the mapper's lines, unsorted."""
    inputs = INPUTS + make_inputs(tmp_path / "in", [b"no newline at end"])
    result = run_map(NewMapTask(12, inputs, str(WC_MAP), str(out), 0,
                                streaming()))
    assert result.names == ["part-00012"]
    assert [path.name for path in out.iterdir()] == ["part-00012"]
    expected = b"".join(shell_output(WC_MAP, path) for path in inputs)
    assert (out / "part-00012").read_bytes() == expected
    assert expected != b"".join(sorted(expected.splitlines(True)))
    assert not any(local_tmp.iterdir())


def test_map_only_adds_a_missing_newline_per_input(tmp_path, local_tmp, out):
    """Each input's last line stays a line of its own."""
    inputs = make_inputs(tmp_path / "in", [b"one", b"two\n", b"", b"three"])
    run_map(NewMapTask(0, inputs, CAT, str(out), 0, streaming()))
    assert (out / "part-00000").read_bytes() == b"one\ntwo\nthree\n"
    assert not any(local_tmp.iterdir())


def test_map_only_failure_leaves_nothing(tmp_path, local_tmp, out):
    """A failing mapper in a map-only task: no part file appears."""
    inputs = make_inputs(tmp_path / "in", [b"a\n"])
    with pytest.raises(TaskError) as info:
        run_map(NewMapTask(0, inputs, str(EXEC / "t_fail.sh"), str(out), 0,
                           streaming()))
    assert "status 3" in str(info.value)
    assert_clean(out, local_tmp)


# The environment.

SHOW_ENVIRONMENT = """
import os, sys
sys.stdin.read()
names = ["mapreduce_map_input_file", "map_input_file",
         "mapreduce_map_input_start", "mapreduce_map_input_length",
         "map_input_length", "mapreduce_task_partition",
         "mapreduce_task_ismap", "mapreduce_job_id", "FROM_CMDENV", "HOME"]
for name in names:
    print(f"{name}={os.environ.get(name, '<unset>')}")
"""


def environment_lines(path):
    """Return the `name=value` lines of a file as a list of dicts."""
    shown = []
    for line in file_lines(path):
        name, value = line.decode().split("=", 1)
        if name == "mapreduce_map_input_file":
            shown.append({})
        shown[-1][name] = value
    return shown


def test_mapper_sees_each_input_file_and_the_job(tmp_path, local_tmp, out,
                                                 monkeypatch):
    """Hadoop's variables per input file, the job's, and the Worker's own."""
    monkeypatch.setenv("HOME", "/the/workers/home")
    mapper = program(tmp_path, "env.py", SHOW_ENVIRONMENT)
    inputs = make_inputs(tmp_path / "in", [b"a\n", b"bb\nbb\n"])
    run_map(NewMapTask(5, inputs, mapper, str(out), 0, streaming(
        environment={"FROM_CMDENV": "x y=z"})))
    shown = environment_lines(out / "part-00005")
    assert len(shown) == 2
    for path, variables in zip(inputs, shown):
        assert variables == {
            "mapreduce_map_input_file": path, "map_input_file": path,
            "mapreduce_map_input_start": "0",
            "mapreduce_map_input_length": str(os.path.getsize(path)),
            "map_input_length": str(os.path.getsize(path)),
            "mapreduce_task_partition": "5", "mapreduce_task_ismap": "true",
            "mapreduce_job_id": "job_00007", "FROM_CMDENV": "x y=z",
            "HOME": "/the/workers/home"}
    assert not any(local_tmp.iterdir())


def test_reducer_environment(tmp_path, local_tmp, out):
    """A reducer is told it is not a map, and its partition."""
    reducer = program(tmp_path, "env.py", SHOW_ENVIRONMENT)
    inputs = make_inputs(tmp_path / "in", [b"a\t1\n"])
    run_reduce(NewReduceTask(3, reducer, inputs, str(out), streaming()))
    shown = environment_lines(out / "part-00003")
    assert len(shown) == 1
    variables = shown[0]
    assert variables["mapreduce_map_input_file"] == "<unset>"
    assert variables["mapreduce_task_ismap"] == "false"
    assert variables["mapreduce_task_partition"] == "3"
    assert variables["mapreduce_job_id"] == "job_00007"
    assert not any(local_tmp.iterdir())


def test_job_environment_wins_over_the_workers(tmp_path, local_tmp, out):
    """As Hadoop's -cmdenv: the job's value is set last."""
    mapper = program(tmp_path, "env.py", SHOW_ENVIRONMENT)
    inputs = make_inputs(tmp_path / "in", [b"a\n"])
    run_map(NewMapTask(0, inputs, mapper, str(out), 0, streaming(
        environment={"mapreduce_task_ismap": "told", "HOME": "/job"})))
    shown = environment_lines(out / "part-00000")
    assert len(shown) == 1
    variables = shown[0]
    assert variables["mapreduce_task_ismap"] == "told"
    assert variables["HOME"] == "/job"
    assert not any(local_tmp.iterdir())


@pytest.mark.parametrize("value", ["nul\0byte", "lone \ud800 surrogate"])
def test_unusable_environment_value_fails_the_task_cleanly(
        tmp_path, local_tmp, out, value):
    """A value no process can have: a TaskError, not a crash."""
    inputs = make_inputs(tmp_path / "in", [b"a\n"])
    with pytest.raises(TaskError) as info:
        run_map(NewMapTask(0, inputs, CAT, str(out), 1,
                           streaming(environment={"BAD": value})))
    assert str(info.value).startswith(f"cannot run {CAT!r}: ")
    assert_clean(out, local_tmp)


def test_spec_task_environment_is_the_workers(tmp_path, local_tmp, out):
    """No record: no Hadoop variable, exactly the Worker's environment."""
    mapper = program(tmp_path, "env.py", SHOW_ENVIRONMENT)
    inputs = make_inputs(tmp_path / "in", [b"a\n"])
    run_map_task(0, inputs, mapper, str(out), 1)
    lines = file_lines(out / "maptask00000-part00000")
    assert b"HOME=" + os.environ["HOME"].encode() in lines
    assert all(line.endswith(b"=<unset>") for line in lines
               if not line.startswith(b"HOME="))
    assert not any(local_tmp.iterdir())


# Counters and status.

COUNTING_MAPPER = """
import sys
import tracemalloc
lines = 0
for line in sys.stdin:
    lines += 1
    for word in line.split():
        print(f"{word}\\t1")
        sys.stderr.write("reporter:counter:Words,seen,1\\n")
sys.stderr.write(f"reporter:counter:Lines,seen,{lines}\\n")
sys.stderr.write("reporter:counter:Lines,files,+1\\n")
sys.stderr.write("reporter:status:mapped a file\\n")
sys.stderr.write("reporter:counter:Broken,no amount\\n")
sys.stderr.write("an ordinary complaint\\n")
"""

COUNTING_COMBINER = """
import sys
import tracemalloc
sys.stdout.write(sys.stdin.read())
sys.stderr.write("reporter:counter:Combiner,runs,1\\n")
sys.stderr.write("reporter:counter:Lines,seen,-0\\n")
"""


def test_counters_are_the_sums_the_programs_wrote(tmp_path, local_tmp, out,
                                                  caplog):
    """Every reporter:counter line of mapper and combiner, summed."""
    caplog.set_level(logging.DEBUG)
    mapper = program(tmp_path, "count.py", COUNTING_MAPPER)
    combiner = program(tmp_path, "comb.py", COUNTING_COMBINER)
    contents = [words_text(700, 5), words_text(20, 6), b"one more line"]
    inputs = make_inputs(tmp_path / "in", contents)
    result = run_map(NewMapTask(0, inputs, mapper, str(out), 4,
                                streaming(combiner=combiner)))
    # The combiner runs once, over the whole sorted map output (the md5
    # partitioner puts each key in one partition), before partitioning.
    assert sum(1 for name in result.names
               if (out / name).stat().st_size) > 1
    assert result.counters == {
        "Words": {"seen": sum(len(data.split()) for data in contents)},
        "Lines": {"seen": 721, "files": 3},
        "Combiner": {"runs": 1},
    }
    assert result.status == "mapped a file"
    assert "reporter:" not in " ".join(
        record.getMessage() for record in caplog.records
        if record.levelno < logging.INFO)
    statuses = [record for record in caplog.records
                if "status: mapped a file" in record.getMessage()]
    assert len(statuses) == 3
    assert all(record.levelno == logging.INFO for record in statuses)
    malformed = [record for record in caplog.records
                 if "malformed reporter line" in record.getMessage()]
    assert len(malformed) == 3
    assert all(record.levelno == logging.WARNING for record in malformed)
    assert "an ordinary complaint" in caplog.text
    assert not any(local_tmp.iterdir())


def test_reducer_counters(tmp_path, local_tmp, out):
    """A reducer's counters are its task's."""
    reducer = program(tmp_path, "red.py", """
import sys
import tracemalloc
for line in sys.stdin:
    sys.stderr.write("reporter:counter:Reduce,in,1\\n")
""")
    inputs = make_inputs(tmp_path / "in", [b"a\t1\nb\t1\n", b"c\t1\n"])
    result = run_reduce(NewReduceTask(0, reducer, inputs, str(out),
                                      streaming()))
    assert result.counters == {"Reduce": {"in": 3}}
    assert not any(local_tmp.iterdir())


def test_failing_streaming_program_tail_has_no_reporter_lines(
        tmp_path, local_tmp, out):
    """The error shows the complaint, not the counters."""
    mapper = program(tmp_path, "fail.py", """
import sys
import tracemalloc
sys.stderr.write("reporter:counter:G,c,1\\nthe real problem\\n")
sys.exit(4)
""")
    inputs = make_inputs(tmp_path / "in", [b"a\n"])
    with pytest.raises(TaskError) as info:
        run_map(NewMapTask(0, inputs, mapper, str(out), 2, streaming()))
    assert "the real problem" in str(info.value)
    assert "reporter:" not in str(info.value)
    assert_clean(out, local_tmp)


def test_spec_task_keeps_reporter_lines_in_stderr(tmp_path, local_tmp, out):
    """No record: reporter lines are stderr like any other, no counters."""
    mapper = program(tmp_path, "fail.py", """
import sys
import tracemalloc
sys.stderr.write("reporter:counter:G,c,1\\nthe real problem\\n")
sys.exit(4)
""")
    inputs = make_inputs(tmp_path / "in", [b"a\n"])
    with pytest.raises(TaskError) as info:
        run_map_task(0, inputs, mapper, str(out), 2)
    assert "reporter:counter:G,c,1" in str(info.value)
    ok = program(tmp_path, "ok.py", """
import sys
import tracemalloc
sys.stdin.read()
sys.stderr.write("reporter:counter:G,c,1\\n")
""")
    assert not run_map(NewMapTask(0, inputs, ok, str(out), 2)).counters
    assert not any(local_tmp.iterdir())


@pytest.mark.parametrize("line, counters", [
    (b"reporter:counter:G,c,5", {"G": {"c": 5}}),
    (b"reporter:counter:G,c,-5", {"G": {"c": -5}}),
    (b"reporter:counter:G,c,+5\r", {"G": {"c": 5}}),
    (b"reporter:counter:,,0", {"": {"": 0}}),
    (b"reporter:counter:Gr\xc3\xbcn,c,1", {"Gr\u00fcn": {"c": 1}}),
    (b"reporter:counter:G,c,9223372036854775807",
     {"G": {"c": (1 << 63) - 1}}),
    (b"reporter:counter:G,c,9223372036854775808", {}),
    (b"reporter:counter:G,c,1.5", {}),
    (b"reporter:counter:G,c, 1", {}),
    (b"reporter:counter:G,c", {}),
    (b"reporter:counter:G,c,1,2", {}),
    (b"reporter:counter:G,c,", {}),
    (b"reporter:other:thing", {}),
    (b"reporter:status:fine", {}),
])
def test_reporter_parses_counter_lines(line, counters):
    """Hadoop's form exactly: group,counter,amount with a 64-bit amount."""
    reporter = Reporter(logging.getLogger(__name__), "map task 0")
    reporter.line(line)
    assert reporter.counters() == counters


@pytest.mark.parametrize("line, why", [
    (b"reporter:counter:G,c", "not group,counter,amount"),
    (b"reporter:counter:G,c,x", "the amount is not a 64-bit integer"),
    (b"reporter:junk", "neither reporter:counter: nor reporter:status:"),
    (b"reporter:counter:\xff", "not group,counter,amount"),
])
def test_reporter_says_why_a_line_is_malformed(caplog, line, why):
    """One warning, naming the task, the reason and the line as written."""
    reporter = Reporter(logging.getLogger(__name__), "reduce task 4")
    reporter.line(line)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"reduce task 4: ignored a malformed reporter line ({why}): "
        + line.decode("utf-8", "backslashreplace"))
    assert not reporter.counters()
    assert reporter.status == ""


def test_reporter_text_is_utf8_with_replacements(caplog):
    """Names and status are UTF-8; bytes that are not become U+FFFD."""
    caplog.set_level(logging.INFO)
    reporter = Reporter(logging.getLogger(__name__), "map task 1")
    reporter.line(b"reporter:counter:G\xff,c\xc3\xa9,2\r")
    reporter.line(b"reporter:status:half \xff done\r")
    assert reporter.counters() == {"G\ufffd": {"c\u00e9": 2}}
    assert reporter.status == "half \ufffd done"
    assert caplog.messages == ["map task 1 status: half \ufffd done"]


def test_reporter_caps_counters_and_warnings(caplog, monkeypatch):
    """New counters past the limit are dropped; warnings stop at a few."""
    monkeypatch.setattr(streaming_module, "MAX_COUNTERS", 3)
    reporter = Reporter(logging.getLogger(__name__), "map task 0")
    for number in range(5):
        reporter.line(b"reporter:counter:G,c%d,1" % number)
    reporter.line(b"reporter:counter:G,c0,1")
    assert reporter.counters() == {"G": {"c0": 2, "c1": 1, "c2": 1}}
    assert caplog.messages == [
        "map task 0: more than 3 counters; counter 'c3' in group 'G' and "
        "later new ones are dropped"]
    for _ in range(streaming_module.MAX_WARNINGS + 5):
        reporter.line(b"reporter:junk")
    assert caplog.text.count("malformed reporter line") == (
        streaming_module.MAX_WARNINGS)
    assert "further ones are not logged" in caplog.text


# Compressed input.

def compressed_twins(tmp_path):
    """Return the plain test inputs and their .gz and .bz2 copies."""
    directory = tmp_path / "compressed"
    directory.mkdir()
    gz, bz = [], []
    for path in INPUTS:
        data = pathlib.Path(path).read_bytes()
        name = os.path.basename(path)
        (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        (directory / f"{name}.bz2").write_bytes(bz2.compress(data))
        gz.append(str(directory / f"{name}.gz"))
        bz.append(str(directory / f"{name}.bz2"))
    return INPUTS, gz, bz


def test_compressed_input_equals_its_plain_twin(tmp_path, local_tmp):
    """A spec task reads .gz and .bz2 inputs decompressed."""
    outputs = []
    for number, inputs in enumerate(compressed_twins(tmp_path)):
        out = tmp_path / f"out{number}"
        out.mkdir()
        run_map_task(0, inputs, str(WC_MAP), str(out), 3)
        outputs.append([(out / f"maptask00000-part{p:05d}").read_bytes()
                        for p in range(3)])
    assert outputs[0] == outputs[1] == outputs[2]
    assert sum(map(len, outputs[0])) > 100
    assert not any(local_tmp.iterdir())


@pytest.mark.parametrize("record", [None, "combiner", "partitioner"])
def test_a_task_keeps_no_child_it_is_done_with(tmp_path, local_tmp, record):
    """Each child's stderr is let go once it is judged: a map task over
    many inputs (compressed too) and its sorts, combiner or partitioner,
    then a reduce task, keep none at their ends."""
    plain, gz, bz = compressed_twins(tmp_path)
    inputs = (plain + gz + bz) * 4
    extras = {"combiner": {"combiner": str(WC_REDUCE)},
              "partitioner": {"partitioner": program(
                  tmp_path, "zero.py", "import sys\nfor _ in sys.stdin:\n"
                                       "    print(0)\n")}}
    out = tmp_path / "out"
    out.mkdir()
    control = ProcessControl(logging.getLogger(__name__))
    record_ = None if record is None else streaming(**extras[record])
    map_task = (NewMapTask(0, inputs, str(WC_MAP), str(out), 2)
                if record_ is None else
                NewMapTask(0, inputs, str(WC_MAP), str(out), 2, record_))
    run_map(map_task, control=control)
    assert control.followed == 0
    run_reduce(NewReduceTask(0, str(WC_REDUCE),
                             [str(out / "maptask00000-part00000")],
                             str(out)), control=control)
    assert control.followed == 0
    assert not any(local_tmp.iterdir())


def test_compressed_input_in_a_map_only_task(tmp_path, local_tmp, out):
    """Streaming and map-only: the mapper still reads the decompressed text;
    map_input_file names the compressed file."""
    mapper = program(tmp_path, "echo.py", """
import os, sys
for line in sys.stdin:
    print(os.environ["map_input_file"] + "\\t" + line, end="")
""")
    _, gz, _ = compressed_twins(tmp_path)
    run_map(NewMapTask(0, gz[:1], mapper, str(out), 0, streaming()))
    expected = [gz[0].encode() + b"\t" + line
                for line in file_lines(INPUTS[0])]
    assert file_lines(out / "part-00000") == expected
    assert not any(local_tmp.iterdir())


@pytest.mark.parametrize("damage", ["not-gzip", "truncated", "bad-crc",
                                    "bad-bzip2"])
def test_corrupt_compressed_input_fails_cleanly(tmp_path, local_tmp, out,
                                                damage):
    """A corrupt file: TaskError naming it, nothing left, no hang."""
    data = b"".join(b"line %d of the input\n" % n for n in range(50000))
    if damage == "not-gzip":
        name, content = "x.gz", b"this was never gzip\n" * 10
    elif damage == "truncated":
        name, content = "x.gz", gzip.compress(data)[:-2000]
    elif damage == "bad-crc":
        packed = bytearray(gzip.compress(data))
        packed[-6] ^= 0xFF
        name, content = "x.gz", bytes(packed)
    else:
        packed = bytearray(bz2.compress(data))
        packed[len(packed) // 2] ^= 0xFF
        name, content = "x.bz2", bytes(packed)
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TaskError) as info:
        run_map_task(0, [INPUTS[0], str(path)], CAT, str(out), 2)
    message = str(info.value)
    assert message.startswith(f"cannot read input {path}: ")
    assert "gzip" in message or "bzip2" in message
    assert_clean(out, local_tmp)


@pytest.mark.parametrize("suffix, pack", [(".gz", gzip.compress),
                                          (".bz2", bz2.compress)])
def test_decompress_writes_the_text_to_a_descriptor(tmp_path, suffix, pack):
    """The child's work, in this process: every byte, in blocks, exit 0."""
    data = b"".join(b"line %d\n" % n for n in range(100000))
    path = tmp_path / f"x{suffix}"
    path.write_bytes(pack(data))
    target = tmp_path / "plain"
    with open(path, "rb") as source, open(target, "wb") as output:
        assert decompress.decompress(str(path), source,
                                     output.fileno()) == 0
    assert target.read_bytes() == data


def test_decompress_reports_corrupt_data_and_ignores_a_gone_reader(
        tmp_path, capsys):
    """Exit 1 and one line on stderr when corrupt; 0 when nobody reads."""
    path = tmp_path / "x.gz"
    path.write_bytes(b"not gzip at all")
    with open(path, "rb") as source:
        assert decompress.decompress(str(path), source, 1) == 1
    assert capsys.readouterr().err == (
        "not valid gzip data: Not a gzipped file (b'no')\n")
    path.write_bytes(gzip.compress(b"x" * 1000000))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with open(path, "rb") as source:
            assert decompress.decompress(str(path), source, write_end) == 0
    finally:
        os.close(write_end)
    assert capsys.readouterr().err == ""


def test_decompress_command_and_usage(monkeypatch, capsys):
    """Which files are compressed; the child's command; a bad call is 2."""
    assert decompress.compression_of(pathlib.Path("a/b.gz")) == "gzip"
    assert decompress.compression_of("a/b.tar.bz2") == "bzip2"
    assert decompress.compression_of("a/b.gz.txt") is None
    assert decompress.compression_of("a/gz") is None
    command = decompress.command(pathlib.Path("in.gz"))
    assert command[:2] == [sys.executable, "-I"]
    assert command[2] == os.path.abspath(decompress.__file__)
    assert command[3] == "in.gz"
    monkeypatch.setattr(sys, "argv", ["decompress.py", "in.txt"])
    assert decompress.main() == 2
    assert "usage:" in capsys.readouterr().err


def test_mapper_that_stops_reading_compressed_input_succeeds(
        tmp_path, local_tmp, out):
    """`head -n 1` on megabytes of .gz: done, the decompressor gone too."""
    data = b"".join(b"line %d\n" % n for n in range(1000000))
    path = tmp_path / "big.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1))
    control = ProcessControl()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = executor.submit(run_map_task, 0, [str(path)],
                             str(EXEC / "t_head.sh"), str(out), 1,
                             control=control)
    executor.shutdown(wait=False)
    done, _ = concurrent.futures.wait([future], TASK_WAIT)
    if not done:
        control.cancel()
        pytest.fail("the task hung on a decompressor nobody reads")
    future.result()
    assert file_lines(out / "maptask00000-part00000") == [b"line 0"]
    assert not any(local_tmp.iterdir())


def test_missing_compressed_input_fails_like_any_input(tmp_path, local_tmp,
                                                       out):
    """A .gz that is not there: the same error as a plain missing file."""
    missing = str(tmp_path / "gone.gz")
    with pytest.raises(TaskError) as info:
        run_map_task(0, [missing], CAT, str(out), 1)
    assert str(info.value).startswith(f"cannot read input {missing}: ")
    assert "No such file" in str(info.value)
    assert_clean(out, local_tmp)


# Memory.

HEAP_LIMIT = 1 << 20


@pytest.mark.parametrize("shape", ["partitioner", "combiner", "map-only",
                                   "gzip"])
def test_heap_stays_flat_on_megabytes(tmp_path, local_tmp, out, shape):
    """5 MB of map output: each streaming path peaks under 1 MiB of heap."""
    data = b"".join(b"key%d\t%s\n" % (n % 5000, b"v" * (n % 40))
                    for n in range(200000))
    assert len(data) > 5 << 20
    source = tmp_path / "input"
    source.write_bytes(data)
    inputs = [str(source)]
    record, partitions = streaming(), 3
    if shape == "partitioner":
        record = streaming(partitioner=program(
            tmp_path, "first.py", FIRST_LETTER_PARTITIONER))
    elif shape == "combiner":
        record = streaming(combiner=CAT)
    elif shape == "map-only":
        partitions = 0
    else:
        inputs = [str(source) + ".gz"]
        pathlib.Path(inputs[0]).write_bytes(gzip.compress(data, 1))
    tracemalloc.start()
    try:
        result = run_map(NewMapTask(0, inputs, CAT, str(out), partitions,
                                    record))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < HEAP_LIMIT, f"{shape}: the heap peaked at {peak} bytes"
    assert sum((out / name).stat().st_size
               for name in result.names) == len(data)
    assert not any(local_tmp.iterdir())
