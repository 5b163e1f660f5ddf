"""`mapreduce-streaming` against a real cluster: real Manager, real Workers.

The command runs as its own process (the installed console script), in a
working directory of the test's, against an in-thread cluster on free
ports; the tests check its exit status, what it prints, and the part
files, against the shell pipeline on the same data.
"""

import hashlib
import os
import pathlib
import re
import shutil
import stat
import sys

import pytest

from mapreduce.localcluster import (
    InThreadCluster, free_port, output_lines, pipeline_output,
)
from tests.util import EXEC, run_command

MAPPER = EXEC / "wc_map.py"
REDUCER = EXEC / "wc_reduce.py"


@pytest.fixture(name="cluster", scope="module")
def fixture_cluster():
    """Give a running cluster of two Workers for the module's tests."""
    with InThreadCluster(workers=2, worker={"heartbeat_interval": 0.3}) \
            as cluster:
        yield cluster


def streaming(cluster, *args, cwd=None, env=None):
    """Run mapreduce-streaming against `cluster`; return the process."""
    manager = [] if cluster is None else \
        ["--manager", f"localhost:{cluster.port}"]
    return run_command("mapreduce-streaming", *args, *manager, cwd=cwd,
                       env=env)


def texts(tmp_path):
    """Make a file and a directory of text; return them."""
    single = tmp_path / "single.txt"
    single.write_text("the cat saw the dog\nthe end\n")
    directory = tmp_path / "dir"
    directory.mkdir()
    (directory / "b.txt").write_text("a dog and a cat\n")
    (directory / "a.txt").write_text("cat cat cat\nbird\n")
    (directory / "empty").mkdir()
    return single, directory


def expected_lines(tmp_path, files, mapper=MAPPER, reducer=REDUCER):
    """Return the pipeline's sorted lines over `files`, in this order."""
    together = tmp_path / "together"
    together.mkdir()
    for index, path in enumerate(files):
        shutil.copy(path, together / f"{index:03d}")
    return pipeline_output(together, mapper, reducer)


def one_error_line(process):
    """Return the one `Error:` line a refused command printed."""
    lines = process.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), \
        process.stderr
    assert "Traceback" not in process.stderr + process.stdout
    return lines[0]


def partition(key, reducers):
    """Return the partition of `key` (bytes), as the Worker computes it."""
    return int(hashlib.md5(key).hexdigest(), 16) % reducers


def test_file_and_directory_inputs_give_the_pipeline_answer(cluster,
                                                            tmp_path):
    """-input a file and a directory: every line, madoop's part files.

    The default 4 reducers, as madoop: a part file for each partition
    that got lines, numbered from 0 in partition order.
    """
    single, directory = texts(tmp_path)
    output = tmp_path / "out"
    process = streaming(cluster, "-input", single, "-input", directory,
                        "-output", output, "-mapper", MAPPER,
                        "-reducer", REDUCER)
    assert process.returncode == 0, process.stderr
    assert output_lines(output) == expected_lines(
        tmp_path, [single, directory / "a.txt", directory / "b.txt"])
    lines = process.stdout.splitlines()
    assert lines[0].startswith("Submitted job ")
    assert f"output directory     {output}" in lines
    keys = {line.split(b"\t")[0] for line in output_lines(output)}
    used = sorted({partition(key, 4) for key in keys})
    parts = sorted(path.name for path in output.iterdir())
    assert parts == [f"part-{index:05d}" for index in range(len(used))]
    for name, number in zip(parts, used):
        assert {line.split(b"\t")[0] for line in
                (output / name).read_bytes().splitlines()} == \
            {key for key in keys if partition(key, 4) == number}


def test_reducers_from_d_and_manager_from_the_environment(cluster, tmp_path):
    """-D mapreduce.job.reduces sets the reducers; MAPREDUCE_MANAGER finds."""
    single, _ = texts(tmp_path)
    output = tmp_path / "out"
    env = {**os.environ, "MAPREDUCE_MANAGER": f"localhost:{cluster.port}"}
    process = streaming(None, "-D", "mapreduce.job.reduces=1",
                        "-input", single, "-output", output,
                        "-mapper", MAPPER, "-reducer", REDUCER, env=env)
    assert process.returncode == 0, process.stderr
    assert sorted(path.name for path in output.iterdir()) == ["part-00000"]
    assert output_lines(output) == expected_lines(tmp_path, [single])


def copy_executable(source, target):
    """Copy an executable script; make sure the copy is executable."""
    shutil.copy(source, target)
    target.chmod(target.stat().st_mode | stat.S_IXUSR)


def test_bare_names_are_files_in_the_current_directory(cluster, tmp_path):
    """`-mapper map.py` is ./map.py, as madoop and Hadoop users expect."""
    single, _ = texts(tmp_path)
    copy_executable(MAPPER, tmp_path / "map.py")
    copy_executable(REDUCER, tmp_path / "reduce.py")
    process = streaming(cluster, "-input", "single.txt", "-output", "out",
                        "-mapper", "map.py", "-reducer", "reduce.py",
                        cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert output_lines(tmp_path / "out") == expected_lines(tmp_path,
                                                            [single])


def test_submit_takes_bare_names_in_the_current_directory(cluster,
                                                          tmp_path):
    """mapreduce-submit resolves `-m map.py` the same way, and waits."""
    _, directory = texts(tmp_path)
    copy_executable(MAPPER, tmp_path / "map.py")
    copy_executable(REDUCER, tmp_path / "reduce.py")
    process = run_command("mapreduce-submit", "-p", cluster.port,
                          "-i", "dir", "-o", "out", "-m", "map.py",
                          "-r", "reduce.py", "--wait", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert output_lines(tmp_path / "out") == pipeline_output(
        directory, MAPPER, REDUCER)


def test_a_failing_stage_exits_non_zero_with_its_stderr(cluster, tmp_path):
    """A mapper that fails: exit 1, the reason, the end of its stderr."""
    single, _ = texts(tmp_path)
    output = tmp_path / "out"
    process = streaming(cluster, "-input", single, "-output", output,
                        "-mapper", EXEC / "t_fail.sh", "-reducer", REDUCER)
    assert process.returncode == 1
    assert "Traceback" not in process.stderr
    assert process.stderr.startswith("Error: job ")
    assert "failed 3 times" in process.stderr
    assert "stderr of the failing executable (last lines):\n" \
        in process.stderr
    assert process.stderr.rstrip().endswith("t_fail: the last complaint")
    # Once, as lines under the reason, not also at the reason's end.
    assert process.stderr.count("the last complaint") == 1
    assert not output.exists()


@pytest.mark.parametrize("args, exit_code, text", [
    (["-bogus", "x"], 2, "Error: no such option: -bogus"),
    (["-output", "out", "-mapper", "cat"], 2,
     "Error: Missing option '-input'."),
    (["-input", "in", "-mapper", "cat", "-reducer", "cat"], 2,
     "Error: Missing option '-output'."),
    (["-input", "in", "-output", "out", "-mapper", "cat"], 2,
     "Error: missing option -reducer (or -numReduceTasks 0 for a "
     "map-only job)"),
    (["-input", "in", "-output", "out", "-mapper", "cat", "-reducer",
      "cat", "-cmdenv", "NOVALUE"], 2,
     "Error: -cmdenv 'NOVALUE' is not NAME=VALUE"),
    (["-input", "in", "-output", "out", "-mapper", "cat", "-reducer",
      "cat", "-D", "mapreduce.job.reduces=two"], 2,
     "Error: -D mapreduce.job.reduces=two: not a whole number from 0 to "
     "10000"),
    (["-input", "in", "-output", "out", "-mapper", "cat", "-reducer",
      "cat", "-D", "mapred.map.tasks=0"], 2,
     "Error: -D mapred.map.tasks=0: not a whole number from 1 to "
     "1000000"),
    (["-input", "in", "-output", "out", "-mapper", "cat", "-reducer",
      "cat", "-numReduceTasks", "-1"], 2, "Error: Invalid value for "
     "'-numReduceTasks': -1 is not in the range 0<=x<=10000."),
    (["-input", "in", "-output", "out", "-mapper", "cat", "-reducer",
      "cat", "--manager", "nowhere"], 2,
     "Error: --manager 'nowhere' is not HOST:PORT"),
    (["-input", "missing", "-output", "out", "-mapper", "cat",
      "-reducer", "cat"], 1, "Error: input 'missing' does not exist"),
    (["-input", "in", "-output", "out", "-mapper", "nothing-here.py",
      "-reducer", "cat"], 1, "Error: mapper 'nothing-here.py' is neither "
     "a file in the current directory nor found on PATH"),
    (["-input", "in", "-output", "in", "-mapper", "cat", "-reducer",
      "cat"], 1, "Error: output directory 'in' already exists (remove "
     "it, or choose another)"),
])
def test_bad_arguments_are_one_line(tmp_path, args, exit_code, text):
    """Every refusal is one `Error:` line and a meaningful exit status.

    Nothing is sent: the Manager's address is a free port.
    """
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "text").write_text("words\n")
    env = {**os.environ, "MAPREDUCE_MANAGER": f"localhost:{free_port()}"}
    process = run_command("mapreduce-streaming", *args, cwd=tmp_path,
                          env=env)
    assert process.returncode == exit_code, process.stderr
    assert one_error_line(process) == text
    assert process.stdout == ""


def test_an_unreachable_manager_is_one_line(tmp_path):
    """No Manager at the address: one line, exit 1, nothing made."""
    single, _ = texts(tmp_path)
    port = free_port()
    process = run_command("mapreduce-streaming", "-input", single,
                          "-output", tmp_path / "out", "-mapper", "cat",
                          "-reducer", "cat", "--manager",
                          f"localhost:{port}")
    assert process.returncode == 1
    assert one_error_line(process) == (
        f"Error: cannot reach the Manager at localhost:{port}: "
        "Connection refused")
    assert not (tmp_path / "out").exists()


def test_installed_next_to_the_other_commands():
    """`pip install -e .` (bin/setup-env) installs the console script.

    It lands next to mapreduce-submit, in the environment's scripts
    directory, which an activated environment puts on PATH.
    """
    scripts = pathlib.Path(sys.executable).parent
    assert (scripts / "mapreduce-streaming").is_file()
    assert (scripts / "mapreduce-submit").is_file()
    process = run_command("mapreduce-streaming", "--help")
    assert process.returncode == 0
    assert "-numReduceTasks" in process.stdout


def script(path, text):
    """Write an executable shell script; return its path."""
    path.write_text("#!/usr/bin/env bash\nset -Eeuo pipefail\n" + text)
    path.chmod(0o755)
    return path


def test_map_only_output_is_the_mappers_lines(cluster, tmp_path):
    """-numReduceTasks 0: one part file per map task, the mapper's lines."""
    single, directory = texts(tmp_path)
    output = tmp_path / "out"
    process = streaming(cluster, "-input", single, "-input", directory,
                        "-output", output, "-mapper", "cat",
                        "-numReduceTasks", "0")
    assert process.returncode == 0, process.stderr
    assert sorted(path.name for path in output.iterdir()) == [
        "part-00000", "part-00001", "part-00002"]
    assert (output / "part-00000").read_text() == single.read_text()
    assert output_lines(output) == sorted(
        b"".join(path.read_bytes() for path in
                 (single, directory / "a.txt", directory / "b.txt"))
        .splitlines())
    assert "no reduce (map-only)" in process.stdout


def test_cmdenv_d_and_hadoop_variables_reach_the_programs(cluster,
                                                          tmp_path):
    """-cmdenv, -D (dots made underscores) and Hadoop's own variables."""
    single, _ = texts(tmp_path)
    mapper = script(tmp_path / "env_map.sh", (
        'cat > /dev/null\n'
        'printf "%s|%s|%s|%s|%s|%s\\n" "$GREETING" "$my_setting" '
        '"$mapreduce_job_reduces" "$mapreduce_task_ismap" '
        '"$mapreduce_task_id" "$mapreduce_map_input_file"\n'))
    output = tmp_path / "out"
    process = streaming(cluster, "-input", single, "-output", output,
                        "-mapper", mapper, "-reducer", "NONE",
                        "-cmdenv", "GREETING=hello there",
                        "-D", "my.setting=on")
    assert process.returncode == 0, process.stderr
    fields = (output / "part-00000").read_text().rstrip("\n").split("|")
    assert fields[:4] == ["hello there", "on", "0", "true"]
    assert re.fullmatch(r"task_[0-9]{12}_[0-9]{4}_m_000000", fields[4])
    assert fields[5] == str(single)


def test_counters_of_a_retried_task_count_once(cluster, tmp_path):
    """A mapper that counts, then fails its first attempt: counted once.

    Its summary shows the job's counters: the sum over the one accepted
    attempt of each task, not over every attempt.
    """
    single, directory = texts(tmp_path)
    mapper = script(tmp_path / "count_map.sh", (
        'while IFS= read -r line; do\n'
        '  echo "reporter:counter:text,lines,1" >&2\n'
        '  printf "%s\\t1\\n" "$line"\n'
        'done\n'
        'echo "reporter:counter:text,files,1" >&2\n'
        'if [[ "$mapreduce_task_attempt_id" == *_0 ]]; then\n'
        '  echo "first attempts fail" >&2; exit 1\n'
        'fi\n'))
    output = tmp_path / "out"
    process = streaming(cluster, "-input", single, "-input", directory,
                        "-output", output, "-mapper", mapper,
                        "-reducer", "cat", "-D", "mapreduce.job.maps=2")
    assert process.returncode == 0, process.stderr
    assert process.stdout.splitlines()[-4:] == [
        "counters             2", "  text", "    files=3", "    lines=5"]


def test_combiner_and_partitioner_give_the_pipeline_answer(cluster,
                                                           tmp_path):
    """A combiner and a partitioner: same lines, keys split as it says.

    The partitioner (madoop's convention) gets the number of reducers as
    its argument and prints 0 for keys before "d", else 1.
    """
    single, directory = texts(tmp_path)
    partitioner = script(tmp_path / "split.sh", (
        'test "$1" = 2\n'
        'while IFS=$\'\\t\' read -r key _; do\n'
        '  if [[ "$key" < "d" ]]; then echo 0; else echo 1; fi\n'
        'done\n'))
    output = tmp_path / "out"
    process = streaming(cluster, "-input", single, "-input", directory,
                        "-output", output, "-mapper", MAPPER,
                        "-reducer", REDUCER, "-combiner", REDUCER,
                        "-partitioner", partitioner, "-numReduceTasks", "2")
    assert process.returncode == 0, process.stderr
    assert output_lines(output) == expected_lines(
        tmp_path, [single, directory / "a.txt", directory / "b.txt"])
    first = (output / "part-00000").read_text().split()
    second = (output / "part-00001").read_text().split()
    assert all(key < "d" for key in first[::2])
    assert all(key >= "d" for key in second[::2])


def test_a_bad_secret_file_is_one_line(tmp_path):
    """--secret-file, as for the other commands: checked before anything."""
    texts(tmp_path)
    missing = tmp_path / "no-such-secret"
    process = run_command("mapreduce-streaming", "-input", "single.txt",
                          "-output", "out", "-mapper", "cat", "-reducer",
                          "cat", "--secret-file", missing,
                          "--manager", f"localhost:{free_port()}",
                          cwd=tmp_path)
    assert process.returncode != 0
    assert str(missing) in one_error_line(process)
    assert not (tmp_path / "out").exists()
