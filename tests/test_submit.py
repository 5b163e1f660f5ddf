"""mapreduce-submit: what it prints, what it sends, and what it refuses.

A FakePeer stands in for the Manager and records every connection, so a
test can check the exact JSON sent, or that nothing at all reached it (not
even a connection that sends nothing): `expect_no_more` proves that without
a waiting window, because the command has exited by then. It answers every
job on the same connection with a `job_accepted` and the ids 0, 1, 2, ...,
as our Manager does, or, playing a Manager of the bare specification,
answers nothing.
"""

import itertools
import os
import pathlib

import pytest

from mapreduce.localcluster import free_port
from tests.util import EXEC, TESTDATA, FakePeer, run_command

JOB_KEYS = ["message_type", "input_directory", "output_directory",
            "mapper_executable", "reducer_executable", "num_mappers",
            "num_reducers"]


def acknowledge_jobs():
    """Return a fake Manager's answer: job ids 0, 1, 2, ... for jobs."""
    job_ids = itertools.count()

    def answer(msg):
        """Acknowledge a job; answer nothing else."""
        if msg.get("message_type") == "new_manager_job":
            return {"message_type": "job_accepted", "job_id": next(job_ids)}
        return None
    return answer


@pytest.fixture(name="manager")
def fixture_manager():
    """Give a fake Manager that records what it receives."""
    with FakePeer(answer=acknowledge_jobs()) as peer:
        yield peer


@pytest.fixture(name="workdir")
def fixture_workdir(tmp_path):
    """Give a working directory with input, executables and a home."""
    work = tmp_path.resolve() / "work"
    (work / "input").mkdir(parents=True)
    (work / "input" / "file01").write_text("hello world\n")
    (work / "bin").mkdir()
    for name in ("map.sh", "reduce.sh"):
        (work / "bin" / name).write_bytes((EXEC / "wc_map.sh").read_bytes())
        (work / "bin" / name).chmod(0o755)
    (work / "home").mkdir()
    return work


def submit(workdir, *args):
    """Run mapreduce-submit in `workdir` with HOME inside it."""
    env = {**os.environ, "HOME": str(workdir / "home")}
    return run_command("mapreduce-submit", *args, cwd=workdir, env=env)


def job_args(port, **overrides):
    """Return the arguments of a valid job to `port`, with overrides."""
    options = {"--port": port, "--input": "input",
               "--output": "output", "--mapper": "bin/map.sh",
               "--reducer": "bin/reduce.sh"}
    options.update(overrides)
    args = []
    for option, value in options.items():
        if value is not None:
            args += [option, str(value)]
    return args


def test_job_output_and_message(manager, workdir):
    """The SPEC.md lines are printed; the message has absolute paths."""
    result = submit(workdir, *job_args(manager.port), "--nmappers", "3",
                    "--nreducers", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"Submitted job to Manager localhost:{manager.port}\n"
        "input directory      input\n"
        "output directory     output\n"
        "mapper executable    bin/map.sh\n"
        "reducer executable   bin/reduce.sh\n"
        "num mappers          3\n"
        "num reducers         5\n"
        "job id               0\n")
    msg = manager.next()
    assert list(msg) == JOB_KEYS
    assert msg == {
        "message_type": "new_manager_job",
        "input_directory": str(workdir / "input"),
        "output_directory": str(workdir / "output"),
        "mapper_executable": str(workdir / "bin" / "map.sh"),
        "reducer_executable": str(workdir / "bin" / "reduce.sh"),
        "num_mappers": 3,
        "num_reducers": 5,
    }
    manager.expect_no_more()


def test_manager_that_does_not_acknowledge(workdir):
    """A spec-only Manager gets exactly the job; no id is one error line.

    The seven lines are printed (the job was delivered), then the error
    says that no job id came back and what that likely means; exit 1.
    """
    with FakePeer() as spec_manager:
        result = submit(workdir, *job_args(spec_manager.port))
        msg = spec_manager.next()
    assert list(msg) == JOB_KEYS
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"Submitted job to Manager localhost:{spec_manager.port}",
        "input directory      input", "output directory     output",
        "mapper executable    bin/map.sh",
        "reducer executable   bin/reduce.sh", "num mappers          2",
        "num reducers         2"]
    assert result.stderr == (
        f"Error: no job id came back from localhost:{spec_manager.port} (it "
        "closed the connection without an answer): the job was sent, but "
        "that is probably not a Manager that acknowledges jobs (a Worker's "
        "port, or a Manager of the bare specification), so it may or may "
        "not run\n")


def test_defaults_and_short_options(manager, workdir):
    """Short options work; input, output and task counts have defaults."""
    default_input = workdir / "tests" / "testdata" / "input"
    default_input.mkdir(parents=True)
    reducer = str(workdir / "bin" / "reduce.sh")
    result = submit(workdir, "-h", "localhost", "-p", str(manager.port),
                    "-m", "bin/map.sh", "-r", reducer)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    shown_input = os.path.join("tests", "testdata", "input")
    assert lines[1] == f"input directory      {shown_input}"
    assert lines[2] == "output directory     output"
    assert lines[5:] == ["num mappers          2", "num reducers         2",
                         "job id               0"]
    msg = manager.next()
    assert msg["input_directory"] == str(default_input)
    assert msg["output_directory"] == str(workdir / "output")
    assert (msg["num_mappers"], msg["num_reducers"]) == (2, 2)


@pytest.mark.parametrize("args", [["--shutdown"], ["-s"]])
def test_shutdown(manager, workdir, args):
    """--shutdown sends exactly a shutdown message and says so."""
    result = submit(workdir, "--port", str(manager.port), *args)
    assert (result.returncode, result.stdout) == (
        0, f"Shut down Manager localhost:{manager.port}\n")
    assert manager.next() == {"message_type": "shutdown"}
    manager.expect_no_more()


def _not_executable(workdir):
    """Make a mapper without the execute permission."""
    path = workdir / "bin" / "plain.sh"
    path.write_text("#!/bin/sh\ncat\n")
    path.chmod(0o644)
    return {"--mapper": "bin/plain.sh"}


def _symlink_output(workdir):
    """Make an output path that is a symbolic link to a directory."""
    (workdir / "elsewhere").mkdir()
    (workdir / "link").symlink_to(workdir / "elsewhere")
    return {"--output": "link"}


def _file_output(workdir):
    """Make an output path that is a regular file."""
    (workdir / "notes.txt").write_text("precious\n")
    return {"--output": "notes.txt"}


def _output_above_input(workdir):
    """Make an input directory nested in the output directory."""
    (workdir / "nest" / "input").mkdir(parents=True)
    return {"--input": "nest/input", "--output": "nest"}


def _file_input(workdir):
    """Make an input path that is a regular file."""
    (workdir / "data.txt").write_text("hello\n")
    return {"--input": "data.txt"}


INVALID = {
    "input missing": lambda w: {"--input": "no-such-dir"},
    "input is a file": _file_input,
    "mapper missing": lambda w: {"--mapper": "bin/no-such-map"},
    "mapper is a directory": lambda w: {"--mapper": "bin"},
    "mapper not executable": _not_executable,
    "reducer missing": lambda w: {"--reducer": str(w / "nothing")},
    "no mapper option": lambda w: {"--mapper": None},
    "no reducer option": lambda w: {"--reducer": None},
    "zero mappers": lambda w: {"--nmappers": 0},
    "zero reducers": lambda w: {"--nreducers": 0},
    "negative reducers": lambda w: {"--nreducers": -2},
    "too many reducers": lambda w: {"--nreducers": 10001},
    "not a number": lambda w: {"--nmappers": "two"},
    "output is root": lambda w: {"--output": "/"},
    "output is home": lambda w: {"--output": str(w / "home")},
    "output is cwd": lambda w: {"--output": "."},
    "output is an ancestor of cwd": lambda w: {"--output": ".."},
    "output is the input": lambda w: {"--output": "input"},
    "output contains the input": _output_above_input,
    "output contains the mapper": lambda w: {"--output": "bin"},
    "output is a file": _file_output,
    "output is a symlink": _symlink_output,
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_job_is_not_sent(manager, workdir, case):
    """A bad job is one `Error:` line, a non-zero exit and nothing sent."""
    overrides = INVALID[case](workdir)
    before = sorted(str(p) for p in workdir.rglob("*"))
    result = submit(workdir, *job_args(manager.port, **overrides))
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    manager.expect_no_more()
    if case.startswith("output"):
        after = sorted(str(p) for p in workdir.rglob("*"))
        assert after == before, "a refused job changed files"


@pytest.mark.parametrize("args", [[], ["--shutdown"]])
def test_manager_unreachable(workdir, args):
    """No Manager listening: one line, non-zero exit, no traceback."""
    port = free_port()
    result = submit(workdir, *job_args(port), *args)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr == (f"Error: cannot reach the Manager at "
                             f"localhost:{port}: Connection refused\n")


def test_paths_from_anywhere(manager, tmp_path):
    """Relative paths are made absolute from the submitter's directory."""
    result = run_command(
        "mapreduce-submit", "--port", manager.port,
        "--input", os.path.relpath(TESTDATA / "input", tmp_path),
        "--output", "out",
        "--mapper", os.path.relpath(EXEC / "wc_map.py", tmp_path),
        "--reducer", EXEC / "wc_reduce.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    msg = manager.next()
    for key in ("input_directory", "output_directory", "mapper_executable",
                "reducer_executable"):
        assert os.path.isabs(msg[key]), msg
    assert pathlib.Path(msg["input_directory"]).resolve() == \
        (TESTDATA / "input").resolve()
    assert pathlib.Path(msg["mapper_executable"]).resolve() == \
        (EXEC / "wc_map.py").resolve()
    assert msg["output_directory"] == str(tmp_path.resolve() / "out")
