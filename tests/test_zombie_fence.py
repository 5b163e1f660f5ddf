"""The zombie fence: a task's late files never land in a later job's.

A Worker opens a task's output directory when the task starts and places
its files through that open directory. When the directory is removed and
made again before the task places its files (its job ended; a later job
uses the same path), the files go nowhere, the task fails with a clear
error, and the new directory is left exactly as it was.
"""

import concurrent.futures
import logging
import shutil

import pytest

from mapreduce.localcluster import wait_for
from mapreduce.worker import placing
from mapreduce.worker.tasks import TaskError, run_map_task
from tests.test_worker import (
    EXEC, INPUTS, fixture_manager, fixture_registered, fixture_worker,
    next_of, reduce_task,
)
from tests.util import send_json

__all__ = ["fixture_manager", "fixture_registered", "fixture_worker"]

GATED = EXEC / "t_gate.sh"  # Waits until the file $T_GATE exists, then cats.
GONE = "output directory is gone: the job ended"


def remake(directory):
    """Remove `directory` with its files, make it again with one file."""
    shutil.rmtree(directory)
    directory.mkdir()
    (directory / "of-the-later-job").write_text("mine\n")


def task_started(local_tmp):
    """Tell whether a task has made its local directory (it opened its
    output directory just before)."""
    return any(local_tmp.glob("mapreduce-local-task*"))


def test_a_late_reduce_task_leaves_the_new_output_alone(
        manager, registered, tmp_path, local_tmp, monkeypatch, caplog):
    """A real Worker's reduce task, its output directory made again under
    it: task_failed saying why, the Worker's log too, nothing placed."""
    caplog.set_level(logging.INFO)
    gate = tmp_path / "gate"
    monkeypatch.setenv("T_GATE", str(gate))
    output = tmp_path / "output"
    output.mkdir()
    send_json(registered.port,
              reduce_task(3, GATED, [INPUTS[0]], output))
    wait_for(lambda: task_started(local_tmp), what="the task to start")
    remake(output)
    gate.touch()
    failed = next_of(manager, "task_failed")
    assert failed["task_id"] == 3
    assert failed["error"] == (f"cannot move part-00003 into {output}: "
                               f"{GONE}")
    assert f"Task 3 failed: cannot move part-00003 into {output}: {GONE}" \
        in caplog.text
    assert sorted(p.name for p in output.iterdir()) == ["of-the-later-job"]
    assert (output / "of-the-later-job").read_text() == "mine\n"
    wait_for(lambda: not task_started(local_tmp),
             what="the task's local directory to go")


def test_a_late_map_task_leaves_the_new_job_directory_alone(
        tmp_path, local_tmp, monkeypatch):
    """The same for a map task and the job directory in the shared one."""
    gate = tmp_path / "gate"
    monkeypatch.setenv("T_GATE", str(gate))
    job_dir = tmp_path / "job-00000"
    job_dir.mkdir()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_map_task, 0, INPUTS, str(GATED),
                             str(job_dir), 2)
        try:
            wait_for(lambda: task_started(local_tmp),
                     what="the task to start")
            remake(job_dir)
        finally:
            gate.touch()
        with pytest.raises(TaskError) as info:
            future.result()
    assert str(info.value) == (f"cannot move maptask00000-part00000 into "
                               f"{job_dir}: {GONE}")
    assert sorted(p.name for p in job_dir.iterdir()) == ["of-the-later-job"]
    assert not any(local_tmp.iterdir())


def test_a_task_whose_output_directory_is_missing_at_start_fails(
        tmp_path, local_tmp):
    """Nothing to open: the task fails at once, running nothing."""
    missing = tmp_path / "missing"
    with pytest.raises(TaskError) as info:
        run_map_task(0, INPUTS, str(EXEC / "t_fail.sh"), str(missing), 1)
    assert str(info.value) == (f"cannot open output directory {missing}: "
                               "No such file or directory")
    assert not missing.exists()
    assert not any(local_tmp.iterdir())


def test_a_directory_moved_away_and_replaced_takes_nothing(tmp_path):
    """Renamed, not removed, with a new one at its path: still the
    directory the task started with, so nothing goes anywhere."""
    output = tmp_path / "output"
    output.mkdir()
    source = tmp_path / "part-00000"
    source.write_text("late\n")
    with placing.OutputDirectory.open(str(output)) as target:
        output.rename(tmp_path / "moved")
        output.mkdir()
        with pytest.raises(TaskError) as info:
            placing.move_into(str(source), target)
    assert str(info.value) == f"cannot move part-00000 into {output}: {GONE}"
    assert not any(output.iterdir())
    assert not any((tmp_path / "moved").iterdir())
    assert source.read_text() == "late\n"


def test_a_directory_removed_between_check_and_move_takes_nothing(
        tmp_path, monkeypatch):
    """The race the check cannot close: the move itself fails, and the
    error still says why. (The check is made to miss: a race cannot be
    had on demand.)"""
    output = tmp_path / "output"
    output.mkdir()
    source = tmp_path / "part-00000"
    source.write_text("late\n")
    checks = []
    real_gone = placing.OutputDirectory.gone

    def late_check(directory):
        """Miss the first check, as if the directory went right after."""
        checks.append(directory)
        if len(checks) == 1:
            remake(output)
            return False
        return real_gone(directory)

    monkeypatch.setattr(placing.OutputDirectory, "gone", late_check)
    with placing.OutputDirectory.open(str(output)) as target:
        with pytest.raises(TaskError) as info:
            target.place(str(source))
    assert str(info.value) == f"cannot move part-00000 into {output}: {GONE}"
    assert sorted(p.name for p in output.iterdir()) == ["of-the-later-job"]
    assert len(checks) == 2
