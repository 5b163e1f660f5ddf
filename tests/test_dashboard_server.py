"""The dashboard served by a real Manager: switched on, JSON, slow clients.

The Manager is a ManagerServer in this process with real Workers and
real jobs (see tests/live_dashboard.py); the requests are real HTTP over
loopback. The page in a browser is in test_dashboard_page.py.
"""

import socket

import pytest

from mapreduce import client
from mapreduce.localcluster import WAIT, port_open, wait_for
from tests.live_dashboard import (FINISHED_JOB, QUEUED_JOB, RUNNING_JOB,
                                  live_cluster)
from tests.util import start_manager

JSON_TYPE = "application/json"
SUMMARY_KEYS = [
    "job_id", "state", "stage", "input_directory", "output_directory",
    "mapper_executable", "reducer_executable", "num_mappers",
    "num_reducers", "map", "reduce", "submitted_at", "started_at",
    "ended_at", "elapsed", "reason", "stderr_tail", "part_files",
    "counters", "streaming"]
ATTEMPT_KEYS = ["worker", "kind", "task_id", "started_at", "ended_at",
                "outcome"]


@pytest.fixture(name="cluster")
def fixture_cluster(tmp_path, monkeypatch):
    """Give a live cluster: job 0 finished, job 1 running, job 2 queued."""
    with live_cluster(tmp_path, monkeypatch) as cluster:
        yield cluster


def test_api_status(cluster):
    """/api/status is the documented status object of the Manager now."""
    status, content_type, body = cluster.get("/api/status")
    assert (status, content_type) == (200, JSON_TYPE)
    assert list(body) == ["manager", "workers", "running", "queue", "recent"]
    manager = body["manager"]
    assert list(manager) == ["host", "port", "shared_dir", "web_port",
                             "started_at", "now"]
    assert (manager["port"], manager["web_port"]) == (
        cluster.manager.port, cluster.manager.info.web_port)
    assert sorted(worker["port"] for worker in body["workers"]) == sorted(
        worker.port for worker in cluster.workers)
    for worker in body["workers"]:
        assert worker["state"] == "busy"
        assert worker["task"]["job_id"] == RUNNING_JOB
    running = body["running"]
    assert list(running) == SUMMARY_KEYS
    assert (running["job_id"], running["state"], running["stage"]) == (
        RUNNING_JOB, "running", "map")
    assert running["map"] == {"done": 0, "total": 3}
    assert [job["job_id"] for job in body["queue"]] == [QUEUED_JOB]
    (finished,) = body["recent"]
    assert (finished["job_id"], finished["state"]) == (FINISHED_JOB,
                                                       "finished")
    assert finished["part_files"] == ["part-00000"]


def test_api_job(cluster):
    """/api/jobs/<id>: the summary, one attempt per task given, events."""
    status, content_type, body = cluster.get(f"/api/jobs/{RUNNING_JOB}")
    assert (status, content_type) == (200, JSON_TYPE)
    assert list(body) == SUMMARY_KEYS + ["attempts", "events"]
    workers = {f"localhost:{worker.port}" for worker in cluster.workers}
    attempts = body["attempts"]
    assert [list(attempt) for attempt in attempts] == [ATTEMPT_KEYS] * 2
    assert {attempt["worker"] for attempt in attempts} == workers
    assert [(attempt["kind"], attempt["task_id"], attempt["outcome"],
             attempt["ended_at"]) for attempt in attempts] == [
        ("map", 0, "running", None), ("map", 1, "running", None)]
    kinds = [event["kind"] for event in body["events"]]
    assert kinds[:2] == ["job_queued", "job_started"]
    assert kinds.count("task_assigned") == 2
    _, _, finished = cluster.get(f"/api/jobs/{FINISHED_JOB}")
    assert finished["state"] == "finished"
    assert len(finished["attempts"]) == 4  # 3 map tasks, 1 reduce task
    assert {attempt["outcome"] for attempt in finished["attempts"]} == {
        "finished"}
    status, content_type, body = cluster.get("/api/jobs/99")
    assert (status, content_type) == (404, JSON_TYPE)
    assert body == {"error": "no job 99 is known"}


def test_slow_client_stalls_nothing(cluster):
    """Clients that send nothing, or half a request, block nobody.

    While they hold their connections open, the status answers and the
    running job, once its gate opens, finishes; so does the next one.
    """
    port = cluster.manager.info.web_port
    silent = [socket.create_connection(("localhost", port))
              for _ in range(3)]
    halfway = socket.create_connection(("localhost", port))
    halfway.sendall(b"GET /api/status HTTP/1.1\r\nHost: x")
    try:
        status, _, body = cluster.get("/api/status", timeout=5)
        assert status == 200 and body["running"]["job_id"] == RUNNING_JOB
        (cluster.outputs[0].parent / "gate").touch()
        for job_id in (RUNNING_JOB, QUEUED_JOB):
            summary = client.wait_for_job(cluster.address, job_id,
                                          timeout=WAIT)
            assert summary["state"] == "finished", summary
        status, _, body = cluster.get("/api/status", timeout=5)
        assert status == 200 and body["running"] is None
        assert [sock.fileno() >= 0 for sock in silent] == [True] * 3
    finally:
        for sock in [*silent, halfway]:
            sock.close()


@pytest.mark.parametrize("settings", [{}, {"web_port": 0}],
                         ids=["default", "asked"])
def test_python_api_serves_no_dashboard_unless_asked(tmp_path, settings):
    """Manager(host, port) serves no page; web_port=0 one on a free port."""
    manager = start_manager(shared_dir=str(tmp_path), **settings)
    try:
        port = client.status(("localhost", manager.port))["manager"][
            "web_port"]
        assert (port is not None) == bool(settings)
        assert port is None or port_open(port)
    finally:
        manager.shutdown()
    if port is not None:
        wait_for(lambda: not port_open(port),
                 what="the dashboard to close with the Manager")
