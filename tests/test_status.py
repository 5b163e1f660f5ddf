"""mapreduce-status, the status_request and job_request extensions.

A real Manager (a ManagerServer in this process) with real Workers; a
gated mapper holds a job in its map stage while the test looks.
"""

import json

import pytest

from mapreduce import client, protocol
from mapreduce.localcluster import WAIT, free_port, wait_for
from mapreduce.manager import ManagerOptions, ManagerServer
from mapreduce.status import job_lines as status_job_lines
from tests.util import (
    EXEC, TESTDATA, job_message, run_command, send_json, start_worker,
)


@pytest.fixture(name="manager")
def fixture_manager(tmp_path):
    """Give a started ManagerServer; stop it afterwards."""
    server = ManagerServer("localhost", 0, ManagerOptions(
        shared_dir=str(tmp_path), poll_timeout=0.5)).start()
    yield server
    assert server.stop(timeout=WAIT), "the Manager did not stop"


@pytest.fixture(name="running_job")
def fixture_running_job(manager, tmp_path, monkeypatch):
    """Run job 0 held in its map stage by a gate; job 1 queued behind it.

    Yields the gate file: create it to let the job go on.
    """
    gate = tmp_path / "gate"
    monkeypatch.setenv("T_GATE", str(gate))
    worker = start_worker(manager.port)
    address = ("localhost", manager.port)
    for number in range(2):
        send_json(manager.port, job_message(
            TESTDATA / "input", tmp_path / f"out{number}",
            mapper=EXEC / "t_gate.sh", reducer=EXEC / "wc_reduce.sh",
            num_mappers=2, num_reducers=1))
    wait_for(lambda: [w["state"] for w in client.status(address)["workers"]]
             == ["busy"], what="the Worker to run a task")
    yield gate
    gate.touch()
    worker.shutdown()


def test_status_json(manager, running_job):
    """--json prints the snapshot: Workers, running job, queue."""
    del running_job
    result = run_command("mapreduce-status", "--port", manager.port,
                         "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert list(status) == ["manager", "workers", "running", "queue",
                            "recent"]
    assert status["manager"]["port"] == manager.port
    (worker,) = status["workers"]
    assert worker["state"] == "busy"
    assert worker["task"] == {"job_id": 0, "kind": "map", "task_id": 0}
    assert 0 <= worker["last_heartbeat_age"] < 10
    running = status["running"]
    assert (running["job_id"], running["state"], running["stage"]) == (
        0, "running", "map")
    assert running["map"] == {"done": 0, "total": 2}
    assert [job["job_id"] for job in status["queue"]] == [1]
    assert status["recent"] == []


def test_status_text(manager, running_job):
    """The text shows the Workers, the running job, queue, recent jobs."""
    result = run_command("mapreduce-status", "--port", manager.port)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Manager localhost:{manager.port}, up ")
    assert lines[1] == "Workers: 1"
    assert lines[2].startswith("  localhost:")
    assert " busy    map task 0 of job 0 " in lines[2]
    assert lines[2].endswith("ago, 0 tasks done")
    assert lines[3].startswith("Running: job 0 running (map stage): map "
                               "0/2, reduce 0/1, elapsed ")
    assert lines[5:] == ["Queue: 1", lines[6], "Recent jobs: 0"]
    assert lines[6].startswith("  job 1: ")
    running_job.touch()
    address = ("localhost", manager.port)
    wait_for(lambda: len(client.status(address)["recent"]) == 2,
             what="both jobs to end")
    lines = run_command("mapreduce-status", "--port",
                        manager.port).stdout.splitlines()
    assert lines[2].endswith("ago, 6 tasks done")
    assert lines[3:6] == ["Running: none", "Queue: 0", "Recent jobs: 2"]
    assert lines[6].startswith("  job 1 finished in ")
    assert lines[7].startswith("  job 0 finished in ")


def test_status_unreachable():
    """No Manager: one line, exit 1."""
    port = free_port()
    result = run_command("mapreduce-status", "--port", port)
    assert result.returncode == 1
    assert result.stderr == (f"Error: cannot reach the Manager at "
                             f"localhost:{port}: Connection refused\n")


def test_job_request_long_poll(manager, running_job):
    """A job_request waits for news, or answers after the poll timeout."""
    address = ("localhost", manager.port)
    version, summary = client.job_state(address, 0)
    assert summary["state"] == "running"
    again, same = client.job_state(address, 0, after=version)
    assert again == version and same["state"] == "running"
    running_job.touch()
    summary = client.wait_for_job(address, 0, timeout=WAIT)
    assert summary["state"] == "finished"
    assert summary["map"] == {"done": 2, "total": 2}
    assert summary["reduce"] == {"done": 1, "total": 1}
    assert summary["part_files"] == ["part-00000"]


def test_unknown_job_refused(manager):
    """Asking for a job that never was: request_refused."""
    with pytest.raises(client.Refused, match="no job 5"):
        client.job_state(("localhost", manager.port), 5)


def test_web_source_methods(manager, running_job):
    """status() and job() give the dashboard's objects, on the loop."""
    del running_job
    detail = _on_loop(manager, lambda: manager.job(0))
    assert detail["attempts"][0]["outcome"] == "running"
    assert detail["events"][0]["kind"] == "job_queued"
    assert _on_loop(manager, lambda: manager.job(99)) is None
    status = _on_loop(manager, manager.status)
    assert status["running"]["job_id"] == 0


def _on_loop(manager, function):
    """Run `function` on the Manager's loop thread; return its value."""
    answers = []
    manager.reactor.call_soon_threadsafe(
        lambda: answers.append(function()))
    wait_for(lambda: answers, what="the loop to answer")
    return answers[0]


def test_spec_messages_unchanged_by_extensions():
    """The job message without the extension is the spec's, key for key."""
    msg = protocol.NewManagerJob("in", "out", "m", "r", 1, 1)
    assert list(protocol.to_wire(msg)) == [
        "message_type", "input_directory", "output_directory",
        "mapper_executable", "reducer_executable", "num_mappers",
        "num_reducers"]


def _kinds(manager, kind):
    """Return the Manager-wide events of `kind`."""
    return [event for event in list(manager.history.events)
            if event.kind == kind]


def test_waiting_for_workers_said_once(manager, tmp_path, caplog):
    """A job with no live Worker is logged once per wait, not per turn."""
    caplog.set_level("INFO")
    address = ("localhost", manager.port)
    for number in range(2):
        client.submit(address, protocol.from_wire(
            job_message(TESTDATA / "input", tmp_path / f"out{number}")))
    wait_for(lambda: _kinds(manager, "job_waiting"), what="the wait to show")
    # A Worker that registers but cannot be reached dies at once: the
    # Manager schedules again, and must not say the same thing again.
    send_json(manager.port, {"message_type": "register",
                             "worker_host": "localhost",
                             "worker_port": free_port()})
    wait_for(lambda: _kinds(manager, "worker_dead"), what="the Worker dead")
    assert len(_kinds(manager, "job_waiting")) == 1
    lines = [r.getMessage() for r in caplog.records
             if "is waiting" in r.getMessage()]
    assert lines == ["Job 0 is waiting: no Worker has registered yet"]


def test_shutdown_abandons_every_job(manager, tmp_path, caplog):
    """A shutdown logs and records each running and queued job it drops."""
    caplog.set_level("INFO")
    address = ("localhost", manager.port)
    for number in range(3):
        client.submit(address, protocol.from_wire(
            job_message(TESTDATA / "input", tmp_path / f"out{number}")))
    assert manager.stop(timeout=WAIT)
    states = [(r.job_id, r.state, r.summary["reason"])
              for r in manager.history.book.recent()]
    assert [state[:2] for state in states] == [
        (2, "abandoned"), (1, "abandoned"), (0, "abandoned")]
    assert states[0][2] == "the Manager shut down"
    assert states[2][2].startswith("the Manager shut down; removed its "
                                   "output directory")
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("Abandoned")]
    assert [line.split(":")[0] for line in lines] == [
        "Abandoned job 0 (running)", "Abandoned job 1 (queued)",
        "Abandoned job 2 (queued)"]
    assert not (tmp_path / "out0").exists()


def test_status_text_shows_the_running_jobs_counters():
    """A running streaming job's counters: one line, sorted by name."""
    summary = {"job_id": 3, "state": "running", "stage": "map",
               "num_reducers": 0, "map": {"done": 1, "total": 2},
               "reduce": {"done": 0, "total": None}, "elapsed": 1.0,
               "input_directory": "/in", "output_directory": "/out",
               "counters": {"wc": {"words": 7, "lines": 2}, "a": {"b": 1}}}
    lines = status_job_lines({"running": summary, "queue": [],
                              "recent": []})
    assert lines[:3] == [
        "Running: job 3 running (map stage): map 1/2, no reduce "
        "(map-only), elapsed 1.0s",
        "  /in -> /out", "  counters: a.b=1, wc.lines=2, wc.words=7"]
    del summary["counters"]
    assert status_job_lines({"running": summary, "queue": [],
                             "recent": []})[2] == "Queue: 0"
