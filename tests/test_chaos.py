"""Chaos: Workers die (SIGKILL) and come back while jobs run.

Four real Worker processes run jobs of 40 small files (10 mappers, 4
reducers; the executables sleep a little so that the kills land inside
tasks). Workers are killed at random moments of the map and the reduce
stage and restarted on the same port, some at once (they register again
before the Manager notices the death), some after the Manager marked them
dead. Every job's output must equal the shell pipeline's, no task may be
counted as failed, and the Manager's log must show that no task was ever
held by two live Workers at once.

`MAPREDUCE_LONG=1` runs more rounds; `python -m bench.chaos` runs as many
as you like and prints the figures.
"""

import os

import pytest

from bench.chaos_runs import ChaosRun, ChaosSettings, check_assignments

LONG = os.environ.get("MAPREDUCE_LONG") == "1"


@pytest.fixture(name="chaos")
def fixture_chaos(tmp_path):
    """Give a started ChaosRun; stop it and kill its leftovers afterwards."""
    with ChaosRun(tmp_path, ChaosSettings(seed=6), say=print) as run:
        yield run
    print(run.figures.report())


def test_kills_lose_nothing(chaos):
    """Outputs stay right and no task ever has two live holders."""
    rounds = 25 if LONG else 5
    results = [chaos.round() for _ in range(rounds)]
    chaos.stop()
    figures = chaos.figures
    assert results == [True] * rounds, figures.report()
    assert figures.lost_data == 0
    assert figures.task_failures == 0, "a killed Worker's task is not a " \
                                       "failure"
    assert figures.failed_jobs == 0
    replay = check_assignments(chaos.log.lines())
    assert replay.assignments >= rounds * 14
    assert not replay.holders, "tasks still held after shutdown"
    # The kills did hit what they were meant to hit.
    assert figures.killed >= 2 * rounds
    assert figures.kills_by_stage.get("map", 0) >= 1
    assert figures.kills_by_stage.get("reduce", 0) >= 1
    assert figures.killed_holding_task >= 1
    assert figures.reassigned >= 1
    assert figures.registered_again_alive >= 1, \
        "no Worker came back before the Manager noticed its death"
    assert figures.registered_again_dead >= 1
    # Every job directory is gone from the shared directory.
    shared = list((chaos.workdir / "shared").iterdir())
    assert not shared, shared


def test_replay_catches_a_double_assignment():
    """The log replay fails when a task goes to a second live Worker."""
    task = "MapTask(job_id=0, task_id=3, inputs=4)"
    first = "RemoteWorker(host='localhost', port=6001)"
    second = "RemoteWorker(host='localhost', port=6002)"
    fine = [f"Manager:6000 [INFO] Assigned {task} to {first}",
            f"Manager:6000 [WARNING] Marked {first} dead: no heartbeat",
            f"Manager:6000 [INFO] Assigned {task} to {second}",
            f"Manager:6000 [INFO] {second} finished {task}"]
    assert check_assignments(fine).reassigned == 1
    with pytest.raises(AssertionError, match="while"):
        check_assignments([fine[0], fine[2]])
    again = f"Manager:6000 [INFO] Registered {first} again (it was busy)"
    assert check_assignments([fine[0], again, fine[2]]).assignments == 2
