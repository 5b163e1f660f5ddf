"""The cluster harness (mapreduce.localcluster) and the hidden timing options.

Both clusters run a real job to its end, as the status API reports it;
the process cluster's hidden options reach the real commands (a Worker
that beats every 0.2 s stays alive under a 1 s heartbeat timeout, and a
killed one is marked dead within seconds, not the default ten); the
options stay out of `--help`; a cluster that cannot start stops what it
started.
"""

import signal
import time

import pytest

from mapreduce import client
from mapreduce.localcluster import (
    InThreadCluster, ProcessCluster, ProcessSettings, job,
    output_lines, pipeline_output, registered_workers, wait_for,
    worker_alive,
)
from mapreduce.manager import ManagerOptions
from tests.util import EXEC, TESTDATA, run_command

WORD_COUNT = (EXEC / "wc_map.sh", EXEC / "wc_reduce.sh")


def word_count(output):
    """Return the word-count job over the test input into `output`."""
    return job(TESTDATA / "input", output, WORD_COUNT, num_mappers=2,
               num_reducers=2)


def test_in_thread_cluster_runs_a_job(tmp_path):
    """A ManagerServer and two Workers in threads finish a word count."""
    shared = tmp_path / "shared"
    shared.mkdir()
    with InThreadCluster(2, ManagerOptions(shared_dir=str(shared))) as run:
        assert registered_workers(run.address) == 2
        summary = run.run_job(word_count(tmp_path / "out"))
        assert summary["state"] == "finished", summary
    assert output_lines(tmp_path / "out") == pipeline_output(
        TESTDATA / "input", *WORD_COUNT)
    assert all(not worker.thread.is_alive() for worker in run.workers)
    assert not list(shared.iterdir())


def test_process_cluster_passes_the_hidden_timings(tmp_path):
    """The commands get --heartbeat-interval and --heartbeat-timeout."""
    settings = ProcessSettings(tmp_path, workers=2,
                               manager={"heartbeat_timeout": 1.0},
                               worker={"heartbeat_interval": 0.2})
    with ProcessCluster(settings) as run:
        summary = run.run_job(word_count(tmp_path / "out"))
        assert summary["state"] == "finished", summary
        # With the default 2 s interval, 1 s of silence would kill them.
        time.sleep(1.5)
        assert registered_workers(run.address) == 2
        port, process = next(iter(run.workers.items()))
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed = time.monotonic()
        wait_for(lambda: not worker_alive(run.address, port), timeout=5,
                 what="the killed Worker to be marked dead")
        assert time.monotonic() - killed < 5
        pids = run.pids
    assert run.manager.returncode == 0
    assert all(process.poll() is not None for process in run.workers.values())
    assert len(pids) == 3
    assert (tmp_path / "log" / "manager.log").exists()


def test_timing_options_are_hidden():
    """`--help` shows none of the hidden timing options."""
    for command, options in (
            ("mapreduce-manager", ("--heartbeat-timeout", "--max-attempts",
                                   "--send-timeout")),
            ("mapreduce-worker", ("--heartbeat-interval",
                                  "--retry-interval", "--send-timeout"))):
        result = run_command(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "--port" in result.stdout
        assert not [name for name in options if name in result.stdout]


def test_a_cluster_that_cannot_start_stops_what_it_started(tmp_path):
    """A Manager that exits at once: a clear error, nothing left running."""
    run = ProcessCluster(ProcessSettings(
        tmp_path, workers=1, manager={"max_attempts": "many"}))
    with pytest.raises(RuntimeError, match="the Manager exited"):
        with run:
            pass
    assert run.manager.poll() is not None
    assert not run.workers


def test_wait_job_reports_a_failed_job(tmp_path):
    """A failing mapper: the summary says failed, with the reason."""
    with InThreadCluster(1, ManagerOptions(shared_dir=str(tmp_path))) as run:
        summary = run.run_job(job(TESTDATA / "input", tmp_path / "out",
                                  (EXEC / "t_fail.sh", WORD_COUNT[1]),
                                  num_mappers=1, num_reducers=1))
    assert summary["state"] == "failed", summary
    assert summary["reason"]
    assert summary["state"] in client.ENDED
