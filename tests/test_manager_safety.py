"""The Manager refuses jobs whose output directory it must not replace.

Starting a job removes its output directory, so a job whose output is a
precious place (the root, home, the working directory, the input, the
shared directory, the executables' directory, an ancestor of any of those,
a file or a symbolic link) is rejected with an ERROR that says why, and
nothing is deleted. So are jobs whose inputs or executables are missing.

Safety of the tests themselves: every directory a live Manager is asked to
use lies inside pytest's tmp_path. HOME and the working directory are
pointed into tmp_path first (the Manager, a thread, shares both), and each
case is first checked with `job_problem` directly, so a bug in the
Manager's checks fails the test before any job could remove anything. The
file-system root and the real home directory are checked only that way,
never sent to a live Manager.
"""

import logging
import os
import pathlib
import shutil
import stat

import pytest

from mapreduce import protocol
from mapreduce.localcluster import wait_for
from mapreduce.logs import LOG_FORMAT
from mapreduce.manager.job import Job
from mapreduce.manager.safety import job_problem
from tests.util import EXEC, FakePeer, register, send_json, start_manager

MARKER_TEXT = "precious: must survive\n"


def make_job(shared, **fields):
    """Return a Job (id 0) from a new_manager_job with `fields`."""
    request = protocol.NewManagerJob(**{
        "input_directory": "input", "output_directory": "output",
        "mapper_executable": "map", "reducer_executable": "reduce",
        "num_mappers": 1, "num_reducers": 1, **fields})
    return Job(0, request, str(shared))


def marker(directory, name="MARKER"):
    """Make `directory` (if needed) with a marker file in it; return it."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(MARKER_TEXT)
    return path


def copy_executable(source, target):
    """Copy an executable to `target` (making its directory); return it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    return target


class Layout:
    """A sandbox in tmp_path: home, working dir, input, tools, shared dir.

    tmp/homes/user     HOME, with a marker
    tmp/work/project   the working directory, with a marker
    tmp/data/input     the input directory, two files
    tmp/tools/bin      the mapper;  tmp/tools/rbin: the reducer
    tmp/sd             where the Manager makes its shared directory
    tmp/out            an existing output directory with a marker
    """

    def __init__(self, tmp_path, monkeypatch):
        """Build the sandbox and move HOME and the working dir into it."""
        self.tmp = tmp_path
        self.home = tmp_path / "homes" / "user"
        self.cwd = tmp_path / "work" / "project"
        self.input = tmp_path / "data" / "input"
        self.mapper = copy_executable(EXEC / "wc_map.sh",
                                      tmp_path / "tools" / "bin" / "map.sh")
        self.reducer = copy_executable(
            EXEC / "wc_reduce.sh", tmp_path / "tools" / "rbin" / "reduce.sh")
        self.shared_parent = tmp_path / "sd"
        self.shared = None  # Known once a Manager runs.
        self.output = tmp_path / "out"
        self.markers = [marker(self.home, ".profile"), marker(self.cwd),
                        marker(self.input, "file01"),
                        marker(self.input, "file02"),
                        marker(self.shared_parent), marker(self.output)]
        monkeypatch.setenv("HOME", str(self.home))
        monkeypatch.chdir(self.cwd)

    def fields(self, **overrides):
        """Return the fields of a valid job, changed by `overrides`."""
        return {"input_directory": str(self.input),
                "output_directory": str(self.output),
                "mapper_executable": str(self.mapper),
                "reducer_executable": str(self.reducer),
                "num_mappers": 2, "num_reducers": 2, **overrides}

    def check_markers(self):
        """Fail unless every marker and executable is still there, intact."""
        for path in self.markers:
            assert path.read_text() == MARKER_TEXT, path
        for path in (self.mapper, self.reducer):
            assert os.access(path, os.X_OK), path


# Each case: (name, function of a Layout returning (job fields, what the
# reason must say)); it may add markers to check.


def _home(lay):
    """Output: the home directory."""
    return lay.fields(output_directory=str(lay.home)), "home directory"


def _home_ancestor(lay):
    """Output: the directory holding the home directory."""
    return (lay.fields(output_directory=str(lay.home.parent)),
            "contains the home directory")


def _cwd(lay):
    """Output: the Manager's working directory, absolute."""
    return (lay.fields(output_directory=str(lay.cwd)),
            "the Manager's working directory")


def _cwd_relative(lay):
    """Output: `.`, the Manager's working directory."""
    return (lay.fields(output_directory="."),
            "is the Manager's working directory")


def _cwd_ancestor(lay):
    """Output: the parent of the working directory."""
    return (lay.fields(output_directory=str(lay.cwd.parent)),
            "contains the Manager's working directory")


def _cwd_parent_relative(lay):
    """Output: `..`, the parent of the working directory."""
    return (lay.fields(output_directory=".."),
            "contains the Manager's working directory")


def _input(lay):
    """Output: the input directory itself."""
    return (lay.fields(output_directory=str(lay.input)),
            "is the input directory")


def _input_ancestor(lay):
    """Output: the parent of the input directory."""
    return (lay.fields(output_directory=str(lay.input.parent)),
            "contains the input directory")


def _shared(lay):
    """Output: the Manager's shared directory."""
    lay.markers.append(marker(lay.shared))
    return (lay.fields(output_directory=str(lay.shared)),
            "is the shared directory")


def _shared_ancestor(lay):
    """Output: the directory holding the shared directory."""
    return (lay.fields(output_directory=str(lay.shared_parent)),
            "contains the shared directory")


def _inside_shared(lay):
    """Output: a directory inside the shared directory."""
    lay.markers.append(marker(lay.shared / "results"))
    return (lay.fields(output_directory=str(lay.shared / "results")),
            "inside the shared directory")


def _future_job_dir(lay):
    """Output: where the next job's directory will be."""
    return (lay.fields(output_directory=str(lay.shared / "job-00001")),
            "inside the shared directory")


def _mapper_dir(lay):
    """Output: the directory of the mapper."""
    return (lay.fields(output_directory=str(lay.mapper.parent)),
            "contains the mapper")


def _reducer_dir(lay):
    """Output: the directory of the reducer."""
    return (lay.fields(output_directory=str(lay.reducer.parent)),
            "contains the reducer")


def _executables_ancestor(lay):
    """Output: an ancestor of both executables."""
    return (lay.fields(output_directory=str(lay.tmp / "tools")),
            "contains the mapper")


def _regular_file(lay):
    """Output: an existing regular file."""
    path = lay.tmp / "results.txt"
    path.write_text(MARKER_TEXT)
    lay.markers.append(path)
    return (lay.fields(output_directory=str(path)),
            "exists and is not a directory")


def _symlink_to_dir(lay):
    """Output: a symbolic link to a directory."""
    lay.markers.append(marker(lay.tmp / "target"))
    link = lay.tmp / "link"
    link.symlink_to(lay.tmp / "target", target_is_directory=True)
    return (lay.fields(output_directory=str(link)),
            "exists and is not a directory")


def _dangling_symlink(lay):
    """Output: a symbolic link to nothing."""
    link = lay.tmp / "dangling"
    link.symlink_to(lay.tmp / "nowhere")
    return (lay.fields(output_directory=str(link)),
            "exists and is not a directory")


def _empty_output(lay):
    """Output: the empty string."""
    return lay.fields(output_directory=""), "output directory is empty"


def _input_missing(lay):
    """Input: a directory that does not exist."""
    return (lay.fields(input_directory=str(lay.tmp / "no-such-input")),
            "is not a directory")


def _input_is_file(lay):
    """Input: a regular file."""
    return (lay.fields(input_directory=str(lay.input / "file01")),
            "is not a directory")


def _mapper_missing(lay):
    """Mapper: no such file."""
    return (lay.fields(mapper_executable=str(lay.tmp / "no-such-map")),
            "mapper executable")


def _reducer_missing(lay):
    """Reducer: no such file."""
    return (lay.fields(reducer_executable=str(lay.tmp / "no-such-reduce")),
            "reducer executable")


def _not_executable(lay, role, source):
    """The `role` executable: a file without execute bits."""
    path = copy_executable(source, lay.tmp / "plain" / f"{role}.sh")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return (lay.fields(**{f"{role}_executable": str(path)}),
            f"{role} executable {str(path)!r} is not executable")


def _mapper_not_executable(lay):
    """Mapper: not executable."""
    return _not_executable(lay, "mapper", EXEC / "wc_map.sh")


def _reducer_not_executable(lay):
    """Reducer: not executable."""
    return _not_executable(lay, "reducer", EXEC / "wc_reduce.sh")


def _mapper_is_directory(lay):
    """Mapper: a directory."""
    return (lay.fields(mapper_executable=str(lay.mapper.parent)),
            "is not a file")


def _no_mappers(lay):
    """num_mappers 0."""
    return lay.fields(num_mappers=0), "num_mappers must be at least 1"


def _negative_mappers(lay):
    """num_mappers below 0."""
    return lay.fields(num_mappers=-3), "num_mappers must be at least 1"


def _no_reducers(lay):
    """num_reducers 0."""
    return lay.fields(num_reducers=0), "num_reducers must be"


def _negative_reducers(lay):
    """num_reducers below 0."""
    return lay.fields(num_reducers=-1), "num_reducers must be"


CASES = {
    "home": _home,
    "home-ancestor": _home_ancestor,
    "cwd": _cwd,
    "cwd-relative-dot": _cwd_relative,
    "cwd-ancestor": _cwd_ancestor,
    "cwd-relative-parent": _cwd_parent_relative,
    "input": _input,
    "input-ancestor": _input_ancestor,
    "shared": _shared,
    "shared-ancestor": _shared_ancestor,
    "inside-shared": _inside_shared,
    "inside-shared-future-job-dir": _future_job_dir,
    "mapper-directory": _mapper_dir,
    "reducer-directory": _reducer_dir,
    "executables-ancestor": _executables_ancestor,
    "regular-file": _regular_file,
    "symlink-to-directory": _symlink_to_dir,
    "dangling-symlink": _dangling_symlink,
    "empty-output": _empty_output,
    "input-missing": _input_missing,
    "input-is-a-file": _input_is_file,
    "mapper-missing": _mapper_missing,
    "reducer-missing": _reducer_missing,
    "mapper-not-executable": _mapper_not_executable,
    "reducer-not-executable": _reducer_not_executable,
    "mapper-is-a-directory": _mapper_is_directory,
    "zero-mappers": _no_mappers,
    "negative-mappers": _negative_mappers,
    "zero-reducers": _no_reducers,
    "negative-reducers": _negative_reducers,
}


class Env:
    """A sandbox, a live Manager in it and one registered fake Worker."""

    def __init__(self, tmp_path, monkeypatch, caplog):
        """Build the sandbox, then start the Manager and the Worker."""
        self.caplog = caplog
        self.layout = Layout(tmp_path, monkeypatch)
        self.manager = start_manager(
            shared_dir=str(self.layout.shared_parent), heartbeat_timeout=60)
        (self.layout.shared,) = self.layout.shared_parent.glob(
            "mapreduce-shared-*")
        self.peer = FakePeer()
        register(self.peer, self.manager.port)

    def send(self, fields):
        """Send a job with `fields`."""
        send_json(self.manager.port,
                  {"message_type": "new_manager_job", **fields})

    def errors(self):
        """Return the Manager's ERROR records."""
        return [r for r in list(self.caplog.records)
                if r.name == f"Manager:{self.manager.port}"
                and r.levelno == logging.ERROR]

    def close(self):
        """Shut the Manager down and stop the fake Worker."""
        try:
            self.manager.shutdown()
        finally:
            self.peer.close()


@pytest.fixture(name="env")
def fixture_env(tmp_path, monkeypatch, caplog):
    """Give an Env; shut it down afterwards."""
    caplog.set_level(logging.INFO)
    env = Env(tmp_path, monkeypatch, caplog)
    try:
        yield env
    finally:
        env.close()


def expect_task(env, job_id):
    """Check the fake Worker's next message is map task 0 of `job_id`."""
    msg = env.peer.next(timeout=10)
    assert msg["message_type"] == "new_map_task", msg
    assert msg["task_id"] == 0
    assert msg["output_directory"] == str(env.layout.shared
                                          / f"job-{job_id:05d}")
    return msg


def finish(env, msg):
    """Report `msg`'s task finished for the fake Worker."""
    send_json(env.manager.port, {"message_type": "finished",
                                 "task_id": msg["task_id"],
                                 "worker_host": "localhost",
                                 "worker_port": env.peer.port})


def wait_received(env, job_id):
    """Wait until the Manager has taken job `job_id` in."""
    wait_for(lambda: [r for r in list(env.caplog.records)
                      if f"Received Job(job_id={job_id}," in r.getMessage()],
             what=f"job {job_id} to arrive")


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_dangerous_job_is_rejected_and_nothing_is_deleted(env, case):
    """ERROR with the reason; no file lost; the next job still runs."""
    lay = env.layout
    fields, reason = case(lay)
    # Guard first: if the check itself were wrong, stop before a live
    # Manager could act on the job.
    problem = job_problem(make_job(lay.shared, **fields), str(lay.shared))
    assert problem is not None and reason in problem, problem
    env.send(fields)
    wait_for(env.errors, what="the rejection")
    env.send(lay.fields(output_directory=str(lay.tmp / "good")))
    expect_task(env, 1)
    (record,) = env.errors()
    line = logging.Formatter(LOG_FORMAT).format(record)
    assert line.startswith(f"Manager:{env.manager.port} [ERROR] Rejected "
                           "Job(job_id=0, ")
    assert reason in line
    lay.check_markers()
    assert not (lay.shared / "job-00000").exists()
    assert len(env.peer.messages) == 2  # register_ack, then job 1's task.
    assert (lay.tmp / "good").is_dir()


def test_queued_dangerous_job_is_skipped_after_the_running_job(env):
    """A rejection between two queued jobs does not stop the queue."""
    lay = env.layout
    env.send(lay.fields(output_directory=str(lay.tmp / "first"),
                        num_mappers=1, num_reducers=1))
    msg = expect_task(env, 0)
    env.send(lay.fields(output_directory=str(lay.home)))
    wait_received(env, 1)
    env.send(lay.fields(output_directory=str(lay.tmp / "third"),
                        num_mappers=1, num_reducers=1))
    env.peer.expect_none(0.3)
    assert not env.errors()  # Checked when the job starts, not before.
    finish(env, msg)
    reduce_msg = env.peer.next(timeout=10)
    assert reduce_msg["message_type"] == "new_reduce_task"
    finish(env, reduce_msg)
    expect_task(env, 2)
    (record,) = env.errors()
    assert "Rejected Job(job_id=1, " in record.getMessage()
    assert "home directory" in record.getMessage()
    lay.check_markers()


def test_output_made_dangerous_while_queued_is_checked_at_start(env):
    """A queued job's output that turns into a symlink is not followed."""
    lay = env.layout
    env.send(lay.fields(output_directory=str(lay.tmp / "first"),
                        num_mappers=1, num_reducers=1))
    msg = expect_task(env, 0)
    later = lay.tmp / "later"
    env.send(lay.fields(output_directory=str(later)))
    wait_received(env, 1)
    env.send(lay.fields(output_directory=str(lay.tmp / "third"),
                        num_mappers=1, num_reducers=1))
    lay.markers.append(marker(lay.tmp / "elsewhere"))
    later.symlink_to(lay.tmp / "elsewhere", target_is_directory=True)
    finish(env, msg)
    finish(env, env.peer.next(timeout=10))
    expect_task(env, 2)
    (record,) = env.errors()
    assert "Rejected Job(job_id=1, " in record.getMessage()
    lay.check_markers()
    assert later.is_symlink()


# Cases never sent to a live Manager: the real root and the real home.


@pytest.mark.parametrize("root", ["/", "//", "/.", "/tmp/..", "/./"])
def test_root_is_refused(tmp_path, root):
    """The file-system root, however it is spelled, is refused."""
    inputs = tmp_path / "input"
    inputs.mkdir()
    job = make_job(tmp_path, input_directory=str(inputs),
                   output_directory=root,
                   mapper_executable=str(EXEC / "wc_map.sh"),
                   reducer_executable=str(EXEC / "wc_reduce.sh"))
    problem = job_problem(job, str(tmp_path / "shared"))
    assert problem is not None and "file-system root" in problem


def test_real_home_and_its_ancestors_are_refused(tmp_path):
    """The user's real home directory is refused (checked, never sent)."""
    home = pathlib.Path(os.path.expanduser("~"))
    inputs = tmp_path / "input"
    inputs.mkdir()
    for output in (home, home.parent):
        job = make_job(tmp_path, input_directory=str(inputs),
                       output_directory=str(output),
                       mapper_executable=str(EXEC / "wc_map.sh"),
                       reducer_executable=str(EXEC / "wc_reduce.sh"))
        problem = job_problem(job, str(tmp_path / "shared"))
        assert problem is not None
        assert "home directory" in problem or "root" in problem, problem


def test_home_is_read_from_the_environment(tmp_path, monkeypatch):
    """HOME decides the home directory (through os.path.expanduser)."""
    inputs = tmp_path / "input"
    inputs.mkdir()
    fake_home = tmp_path / "someone"
    fake_home.mkdir()
    monkeypatch.setenv("HOME", str(fake_home))
    job = make_job(tmp_path, input_directory=str(inputs),
                   output_directory=str(fake_home),
                   mapper_executable=str(EXEC / "wc_map.sh"),
                   reducer_executable=str(EXEC / "wc_reduce.sh"))
    problem = job_problem(job, str(tmp_path / "shared"))
    assert problem is not None and "home directory" in problem, problem


def test_a_plain_new_output_directory_is_accepted(tmp_path, monkeypatch):
    """The checks do not refuse an ordinary job: they can be passed."""
    monkeypatch.chdir(tmp_path)
    inputs = tmp_path / "input"
    inputs.mkdir()
    for output in (tmp_path / "output", tmp_path / "a" / "b" / "c", "rel"):
        job = make_job(tmp_path / "shared", input_directory=str(inputs),
                       output_directory=str(output),
                       mapper_executable=str(EXEC / "wc_map.sh"),
                       reducer_executable=str(EXEC / "wc_reduce.sh"))
        assert job_problem(job, str(tmp_path / "shared")) is None
