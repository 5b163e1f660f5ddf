"""Load: 50 Workers on one Manager, 20 jobs queued at once.

The Manager runs as its own process (`mapreduce-manager`) so that its CPU
time can be read from /proc; the Workers are real Worker objects in
threads of this process. Every job's output must equal the pipeline's,
the jobs must run one at a time in job_id order, and the Manager's CPU
must stay modest, busy or idle. `MAPREDUCE_LONG=1` runs a heavier load;
`python -m bench.chaos --load` too.
"""

import os
import re

import pytest

from bench.chaos_runs import LoadRun

LONG = os.environ.get("MAPREDUCE_LONG") == "1"


@pytest.fixture(name="load")
def fixture_load(tmp_path):
    """Give a started LoadRun; shut it down afterwards."""
    with LoadRun(tmp_path, workers=100 if LONG else 50,
                 jobs=60 if LONG else 20, seed=5, say=print) as run:
        yield run
    assert run.manager.returncode == 0
    assert not list((tmp_path / "shared").iterdir())


def test_many_workers_many_jobs(load):
    """Every output right, in job_id order, with little Manager CPU."""
    figures = load.run()
    assert figures.right == figures.jobs, figures.report()
    expected = []
    for job_id in range(figures.jobs):
        expected += [("Started", job_id), ("Finished", job_id)]
    assert figures.order == expected
    # Generous bounds: the Manager only hands out tasks; the Workers and
    # their executables do the work, on the same two cores.
    assert figures.manager_cpu < 0.5 * figures.seconds, figures.report()
    assert figures.idle_cpu < 0.1 * figures.idle_seconds, figures.report()
    lines = load.manager_lines()
    registered = {match.group(1) for match in map(
        re.compile(r"Registered (RemoteWorker\(.*?\))").search, lines)
        if match}
    assert len(registered) == figures.workers
    troubles = [line for line in lines
                if "[ERROR]" in line or "Traceback" in line]
    assert not troubles, troubles[:5]
