"""End to end: `mapreduce-streaming` on a real cluster against real madoop.

Every test runs the real `mapreduce-streaming` command against a real
cluster (`ProcessCluster`: the `mapreduce-manager` and `mapreduce-worker`
commands on free ports), and compares what it leaves in the output
directory with madoop's output on the same input and programs, or with
the shell pipeline where madoop has no such feature (map-only jobs,
counters, compressed input). The comparisons with madoop skip, saying
so in one line, where madoop is not installed (CI installs it: it is a
development extra).
"""

import bz2
import gzip
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from mapreduce import client
from mapreduce.localcluster import (
    ProcessCluster, ProcessSettings, command, output_lines, pipeline_output,
)
from tests.util import EXEC, TESTDATA, find_madoop

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
INVINDEX = EXAMPLES / "invindex"
STAGE_OUTPUTS = ["output0", "output1", "output2", "output3", "output"]
WORD_COUNT = (EXAMPLES / "wc_map.py", EXAMPLES / "wc_reduce.py")
STREAMING = TESTDATA / "streaming"
COMMAND_TIMEOUT = 120
COUNTER = re.compile(r"reporter:counter:([^,]*),([^,]*),(-?\d+)$")


@pytest.fixture(scope="module", name="cluster")
def fixture_cluster(tmp_path_factory):
    """A Manager and two Workers as processes, for every test here."""
    directory = tmp_path_factory.mktemp("streaming-cluster")
    settings = ProcessSettings(directory, workers=2,
                               worker={"heartbeat_interval": 0.3})
    with ProcessCluster(settings) as cluster:
        yield cluster


@pytest.fixture(name="madoop")
def fixture_madoop():
    """The madoop command; the test skips without it."""
    return find_madoop()


class Streaming:
    """The `mapreduce-streaming` command, pointed at the test's cluster."""

    def __init__(self, cluster):
        """Talk to `cluster`."""
        self.path = pathlib.Path(command("mapreduce-streaming"))
        if not self.path.is_file():
            pytest.fail("mapreduce-streaming is not installed next to "
                        f"{sys.executable}: run bin/setup-env")
        self.manager = f"localhost:{cluster.port}"
        self.cluster = cluster

    def environment(self):
        """Return this environment, with the cluster's address in it.

        The command reads the Manager's address from MAPREDUCE_MANAGER,
        so that a pipeline script needs no flag that madoop lacks.
        """
        return {**os.environ, "MAPREDUCE_MANAGER": self.manager}

    def run(self, cwd, *args):
        """Run the command with `args` in `cwd`; return the finished run."""
        return subprocess.run(
            [str(self.path), "--manager", self.manager, *map(str, args)],
            cwd=cwd, capture_output=True, text=True, check=False,
            timeout=COMMAND_TIMEOUT)

    def check(self, cwd, *args):
        """Run the command; fail the test unless it exits 0."""
        result = self.run(cwd, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def summary_of(self, output_dir):
        """Return the Manager's summary of the last job into `output_dir`."""
        wanted = os.path.abspath(output_dir)
        for summary in client.status(self.cluster.address)["recent"]:
            if summary["output_directory"] == wanted:
                return summary
        raise AssertionError(f"no ended job wrote {wanted}")


@pytest.fixture(name="streaming")
def fixture_streaming(cluster):
    """The streaming command for this test's cluster."""
    return Streaming(cluster)


def run_madoop(madoop, cwd, *args):
    """Run madoop with `args` in `cwd`; fail the test unless it exits 0."""
    result = subprocess.run([str(madoop), *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, check=False,
                            timeout=COMMAND_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def part_files(directory):
    """Return {name: bytes} of the part files in `directory`."""
    return {path.name: path.read_bytes()
            for path in sorted(pathlib.Path(directory).glob("part-*"))}


def copy_example(destination):
    """Copy the inverted index example, without old outputs; return it."""
    shutil.copytree(INVINDEX, destination,
                    ignore=shutil.ignore_patterns("output*", "__pycache__"))
    return destination


def run_pipeline(directory, mapreduce, env=None):
    """Run the example's pipeline.sh in `directory` with `mapreduce`."""
    result = subprocess.run(
        [str(directory / "pipeline.sh"), str(mapreduce)], cwd=directory,
        capture_output=True, text=True, check=False, env=env,
        timeout=5 * COMMAND_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def mapper_output(mapper, input_dir, paths=None):
    """Run `mapper` once per input file; return (stdout lines, stderr).

    The files are those of `input_dir`, or `paths` when given.
    """
    lines, stderr = [], []
    for path in paths or sorted(pathlib.Path(input_dir).iterdir()):
        with open(path, "rb") as stdin:
            result = subprocess.run([str(mapper)], stdin=stdin, check=True,
                                    capture_output=True)
        lines.extend(result.stdout.splitlines())
        stderr.extend(result.stderr.decode().splitlines())
    return lines, stderr


def test_example_pipeline_gives_madoop_part_files(tmp_path, madoop,
                                                  streaming):
    """Every stage of the example leaves the part files madoop leaves.

    The same pipeline.sh, run once with madoop and once with
    mapreduce-streaming: only the command name differs. Stage 2 needs
    DOC_COUNT, which reaches the cluster's reducers only by -cmdenv.
    """
    with_madoop = copy_example(tmp_path / "madoop")
    on_cluster = copy_example(tmp_path / "cluster")
    run_pipeline(with_madoop, madoop)
    run_pipeline(on_cluster, streaming.path, streaming.environment())
    for stage in STAGE_OUTPUTS:
        expected = part_files(with_madoop / stage)
        assert expected, f"madoop left no part files in {stage}"
        assert part_files(on_cluster / stage) == expected, stage
    # Not vacuous: three segments, each of the documents k mod 3.
    segments = part_files(on_cluster / "output")
    assert len(segments) == 3
    for number, (_, text) in enumerate(sorted(segments.items())):
        documents = {int(doc_id) for line in text.decode().splitlines()
                     for doc_id in line.split()[2::3]}
        assert documents and {doc % 3 for doc in documents} == {number}


def test_partitioner_gives_madoop_part_files(tmp_path, madoop, streaming):
    """A `-partitioner` job splits its keys as madoop does, file by file."""
    mapper, reducer = WORD_COUNT
    partitioner = STREAMING / "letter_partition.py"
    flags = ["-input", EXAMPLES / "input", "-mapper", mapper,
             "-reducer", reducer, "-partitioner", partitioner,
             "-numReduceTasks", "3"]
    run_madoop(madoop, tmp_path, *flags, "-output", tmp_path / "madoop")
    streaming.check(tmp_path, *flags, "-output", tmp_path / "cluster")
    expected = part_files(tmp_path / "madoop")
    assert len(expected) == 3
    assert part_files(tmp_path / "cluster") == expected
    # Not the default md5 split: every word is where its letter sends it.
    for number, text in enumerate(expected.values()):
        for line in text.decode().splitlines():
            place = max(ord(line[0]) - ord("a"), 0)
            assert place * 3 // 26 == number, line


def repeated_input(directory, times):
    """Return `directory`, made with the word count inputs `times` over."""
    directory.mkdir()
    for path in sorted((EXAMPLES / "input").iterdir()):
        (directory / path.name).write_bytes(path.read_bytes() * times)
    return directory


def test_combiner_same_answer_smaller_shuffle(tmp_path, streaming):
    """A combiner changes nothing in the answer and shrinks the shuffle.

    The shuffle is measured as the bytes of the map outputs: with `cat`
    as the reducer, the part files hold exactly the lines that left the
    map tasks.
    """
    inputs = repeated_input(tmp_path / "input", 20)
    mapper, reducer = WORD_COUNT
    flags = ["-input", inputs, "-mapper", mapper, "-numReduceTasks", "2"]
    streaming.check(tmp_path, *flags, "-reducer", reducer,
                    "-output", tmp_path / "plain")
    streaming.check(tmp_path, *flags, "-reducer", reducer,
                    "-combiner", reducer, "-output", tmp_path / "combined")
    answer = part_files(tmp_path / "plain")
    assert part_files(tmp_path / "combined") == answer
    assert output_lines(tmp_path / "plain") == pipeline_output(
        inputs, mapper, reducer)

    streaming.check(tmp_path, *flags, "-reducer", "cat",
                    "-output", tmp_path / "shuffle-plain")
    streaming.check(tmp_path, *flags, "-reducer", "cat", "-combiner",
                    reducer, "-output", tmp_path / "shuffle-combined")
    plain = b"".join(part_files(tmp_path / "shuffle-plain").values())
    combined = b"".join(part_files(tmp_path / "shuffle-combined").values())
    assert len(plain) == len(b"".join(mapper_output(mapper, inputs)[0])) + \
        plain.count(b"\n")
    assert len(combined) * 5 < len(plain), (len(combined), len(plain))

    def total(data):
        """Return the sum of the counts in `word<TAB>count` lines."""
        return sum(int(line.split(b"\t")[1]) for line in data.splitlines())
    assert total(combined) == total(plain)


def test_map_only_output_is_the_mappers_lines(tmp_path, streaming):
    """`-numReduceTasks 0`: the part files hold the mapper's own lines.

    Each part file is the output of its map task's mapper runs, one whole
    input file after another, as the mapper wrote it: nothing partitioned,
    sorted or reduced.
    """
    mapper = WORD_COUNT[0]
    inputs = EXAMPLES / "input"
    output = tmp_path / "output"
    streaming.check(tmp_path, "-input", inputs, "-output", output,
                    "-mapper", mapper, "-numReduceTasks", "0")
    parts = part_files(output)
    assert parts and all(re.fullmatch(r"part-\d{5}", name) for name in parts)
    runs = []
    for path in sorted(inputs.iterdir()):
        runs.append(b"".join(line + b"\n" for line in mapper_output(
            mapper, path.parent, [path])[0]))
    for name, data in parts.items():
        while data:
            run = next((run for run in runs if data.startswith(run)), None)
            assert run, f"{name} is not made of whole mapper outputs"
            runs.remove(run)
            data = data[len(run):]
    assert not runs, "some input files left no output"


def expected_counters(stderr_lines):
    """Return {group: {counter: sum}} of the `reporter:counter:` lines."""
    counters = {}
    for line in stderr_lines:
        found = COUNTER.match(line)
        if found:
            group, name, amount = found.groups()
            counters.setdefault(group, {}).setdefault(name, 0)
            counters[group][name] += int(amount)
    return counters


def test_counters_are_the_sums_the_mappers_wrote(tmp_path, streaming):
    """The job's counters add up the mappers' `reporter:counter:` lines."""
    mapper = INVINDEX / "map1.py"
    inputs = INVINDEX / "input"
    output = tmp_path / "output"
    result = streaming.check(tmp_path, "-input", inputs, "-output", output,
                             "-mapper", mapper,
                             "-reducer", INVINDEX / "sum_counts.py")
    expected = expected_counters(mapper_output(mapper, inputs)[1])
    assert expected["InvertedIndex"]["Documents"] == 15
    counters = streaming.summary_of(output)["counters"]
    assert counters.get("InvertedIndex") == expected["InvertedIndex"]
    for name, amount in expected["InvertedIndex"].items():
        assert re.search(rf"{name}\W+{amount}\b", result.stdout), name


def compress(source, destination, opener, suffix):
    """Write each file of `source` into `destination` compressed."""
    destination.mkdir()
    for path in sorted(source.iterdir()):
        with opener(destination / (path.name + suffix), "wb") as file:
            file.write(path.read_bytes())
    return destination


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"),
                                           (bz2.open, ".bz2")])
def test_compressed_input_equals_its_plain_twin(tmp_path, streaming, opener,
                                                suffix):
    """`.gz` and `.bz2` input files are read decompressed."""
    mapper, reducer = WORD_COUNT
    plain = EXAMPLES / "input"
    packed = compress(plain, tmp_path / "packed", opener, suffix)
    flags = ["-mapper", mapper, "-reducer", reducer, "-numReduceTasks", "2"]
    streaming.check(tmp_path, "-input", plain, "-output",
                    tmp_path / "from-plain", *flags)
    streaming.check(tmp_path, "-input", packed, "-output",
                    tmp_path / "from-packed", *flags)
    expected = part_files(tmp_path / "from-plain")
    assert expected and part_files(tmp_path / "from-packed") == expected


def test_failing_stage_exits_nonzero_with_the_programs_stderr(tmp_path,
                                                              streaming):
    """A failing mapper fails the command, which shows what it wrote."""
    result = streaming.run(tmp_path, "-input", EXAMPLES / "input",
                           "-output", tmp_path / "output",
                           "-mapper", EXEC / "t_fail.sh",
                           "-reducer", WORD_COUNT[1])
    assert result.returncode not in (0, None)
    assert "t_fail: the last complaint" in result.stderr
    assert "Traceback" not in result.stderr
    assert not part_files(tmp_path / "output")


def test_mapper_sees_hadoop_input_file_variable(tmp_path, streaming):
    """The mapper learns its input file from `mapreduce_map_input_file`."""
    inputs = EXAMPLES / "input"
    output = tmp_path / "output"
    streaming.check(tmp_path, "-input", inputs, "-output", output,
                    "-mapper", STREAMING / "input_file_map.py",
                    "-reducer", WORD_COUNT[1])
    expected = sorted(
        f"{path.name}\t{len(path.read_bytes().splitlines())}".encode()
        for path in inputs.iterdir())
    assert output_lines(output) == expected
