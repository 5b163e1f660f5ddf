"""A signed cluster, with real processes and sockets: what gets in, what not.

A cluster started with `--secret-file` runs jobs as before. A client
without the secret or with another one, a tampered message, a message
replayed (to the same process, to another, or to a later process at the
same address) and a stale one are each refused and logged, and nothing
runs or stops. The test plays the attacker with real sockets, and plays
a legitimate Worker (holding the secret) to capture real messages.
"""

import json
import os
import pathlib
import socket
import subprocess
import time

import pytest

from mapreduce import auth, client, protocol
from mapreduce.localcluster import (
    LOCALHOST, InThreadCluster, ProcessCluster, ProcessSettings, command,
    job, output_lines, pipeline_output, spawn, stop_process, wait_for,
    wait_listening, worker_alive,
)
from mapreduce.manager import ManagerOptions, ManagerServer
from mapreduce.reactor import request
from mapreduce.signing import RefusalLog
from tests.util import EXEC, TESTDATA, FakePeer, send_json, send_udp

SECRET = b"a test secret, long enough"
OTHER_SECRET = b"another secret, long enough"
FAST = {"heartbeat_interval": 0.3}


def _secret_file(path, secret=SECRET, mode=0o600):
    """Write `secret` to `path` with `mode`; return the path."""
    path.write_bytes(secret + b"\n")
    path.chmod(mode)
    return path


@pytest.fixture(name="secret_file")
def fixture_secret_file(tmp_path):
    """Give the path of a good secret file."""
    return _secret_file(tmp_path / "secret.key")


def _cluster(tmp_path, secret_file, workers=1):
    """Return a signed ProcessCluster (not started)."""
    return ProcessCluster(ProcessSettings(
        tmp_path / "cluster", workers=workers, worker=dict(FAST),
        secret_file=secret_file))


def _log(path):
    """Return the text of log file `path` ('' before it exists)."""
    try:
        return pathlib.Path(path).read_text(encoding="utf-8",
                                            errors="replace")
    except FileNotFoundError:
        return ""


def _wait_logged(path, text, count=1):
    """Wait until log file `path` holds `text` `count` times."""
    wait_for(lambda: _log(path).count(text) >= count, timeout=10,
             what=f"{text!r} in {path}")


def _marker_mapper(tmp_path):
    """Return a mapper that leaves a file in `tmp_path/ran` when it runs."""
    ran = tmp_path / "ran"
    ran.mkdir()
    script = tmp_path / "marker_map.sh"
    script.write_text(f'#!/bin/sh\ntouch "{ran}/$$"\nexec cat\n')
    script.chmod(0o755)
    return script, ran


def _job_bytes(tmp_path, mapper=EXEC / "wc_map.sh"):
    """Return a NewManagerJob over the test input, as bytes to send."""
    msg = job(TESTDATA / "input", tmp_path / "out",
              (mapper, EXEC / "wc_reduce.sh"))
    return protocol.encode(msg)


def _sealer(name, secret=SECRET, clock=time.time):
    """Return an Authenticator signing as `name` (and accepting it)."""
    return auth.Authenticator(secret, name, clock=clock)


def _wait_past_grace(envelope):
    """Wait until a process starting now counts `envelope` as signed before.

    A process refuses what was signed before it started, less
    auth.START_GRACE seconds (for clocks that disagree a little).
    """
    signed_at = json.loads(envelope)["time_ms"] / 1000
    wait_for(lambda: time.time() > signed_at + auth.START_GRACE + 0.05,
             timeout=auth.START_GRACE + 5, what="the start grace to pass")


def _jobs(cluster):
    """Return how many jobs the (signed) Manager knows of."""
    status = client.status(cluster.address)
    return (len(status["recent"]) + len(status["queue"])
            + (status["running"] is not None))


def _run(*args, env=None):
    """Run a console command; return the CompletedProcess (text)."""
    return subprocess.run([command(args[0]), *args[1:]], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})


def test_a_signed_cluster_runs_a_job(tmp_path, secret_file):
    """Manager, Workers and client all signing: the job's output is right."""
    with _cluster(tmp_path, secret_file, workers=2) as cluster:
        new_job = job(TESTDATA / "input", tmp_path / "out",
                      (EXEC / "wc_map.sh", EXEC / "wc_reduce.sh"))
        summary = cluster.run_job(new_job)
        assert summary["state"] == "finished", summary
        result = _run("mapreduce-submit", "--port", str(cluster.port),
                      "--input", str(TESTDATA / "input"), "--output",
                      str(tmp_path / "out2"), "--mapper",
                      str(EXEC / "wc_map.sh"), "--reducer",
                      str(EXEC / "wc_reduce.sh"), "--wait",
                      env={auth.SECRET_FILE_VARIABLE: str(secret_file)})
        assert result.returncode == 0, result.stderr
        log = _log(cluster.manager_log)
    expected = pipeline_output(TESTDATA / "input", EXEC / "wc_map.sh",
                               EXEC / "wc_reduce.sh")
    assert output_lines(tmp_path / "out") == expected
    assert output_lines(tmp_path / "out2") == expected
    refused = [line for line in log.splitlines() if "Refused" in line]
    # The harness's probes for the port are empty connections.
    assert all("(char 0)" in line for line in refused), refused
    assert "Signing every message as 'manager'" in log


def test_a_signed_cluster_in_threads_runs_a_job(tmp_path):
    """The Python API: Manager, Workers and client given the secret."""
    with InThreadCluster(2, ManagerOptions(shared_dir=str(tmp_path)),
                         secret=SECRET) as cluster:
        summary = cluster.run_job(job(
            TESTDATA / "input", tmp_path / "out",
            (EXEC / "wc_map.sh", EXEC / "wc_reduce.sh")))
        assert summary["state"] == "finished", summary
        with pytest.raises(client.NotAManager, match="--secret-file"):
            client.status((LOCALHOST, cluster.port))
    assert output_lines(tmp_path / "out") == pipeline_output(
        TESTDATA / "input", EXEC / "wc_map.sh", EXEC / "wc_reduce.sh")


def test_clients_without_the_secret_are_refused(tmp_path, secret_file):
    """No secret, or another one: one-line errors, nothing runs or stops."""
    wrong = _secret_file(tmp_path / "wrong.key", OTHER_SECRET)
    with _cluster(tmp_path, secret_file) as cluster:
        port = str(cluster.port)
        submit = ["mapreduce-submit", "--port", port, "--input",
                  str(TESTDATA / "input"), "--output", str(tmp_path / "out"),
                  "--mapper", str(EXEC / "wc_map.sh"), "--reducer",
                  str(EXEC / "wc_reduce.sh")]
        for extra in ([], ["--secret-file", str(wrong)]):
            for args in (submit, ["mapreduce-status", "--port", port]):
                result = _run(*args, *extra)
                assert result.returncode != 0, result
                assert len(result.stderr.splitlines()) == 1, result.stderr
                assert "secret" in result.stderr or not extra
        refused = _run("mapreduce-submit", "--port", port, "--shutdown",
                       "--secret-file", str(wrong))
        assert refused.returncode != 0
        assert "same secret" in refused.stderr
        # A client of the specification cannot tell: it never gets an answer.
        _run("mapreduce-submit", "--port", port, "--shutdown")
        _wait_logged(cluster.manager_log, "not signed: a plain 'shutdown'")
        _wait_logged(cluster.manager_log, "bad signature", count=3)
        assert "not signed: a plain 'new_manager_job'" in _log(
            cluster.manager_log)
        assert _jobs(cluster) == 0
        assert cluster.manager.poll() is None
        worker_port = next(iter(cluster.workers))
        assert worker_alive(cluster.address, worker_port)
    assert not (tmp_path / "out").exists()


def test_a_tampered_message_is_refused(tmp_path, secret_file):
    """A right signature over other bytes: refused, logged, not run."""
    mapper, ran = _marker_mapper(tmp_path)
    with _cluster(tmp_path, secret_file) as cluster:
        envelope = json.loads(_sealer("client-x").seal(
            _job_bytes(tmp_path, mapper), "manager"))
        inner = json.loads(envelope["message"])
        inner["num_mappers"] = 3
        envelope["message"] = json.dumps(inner)
        assert request(LOCALHOST, cluster.port,
                       json.dumps(envelope).encode(), 5) == b""
        _wait_logged(cluster.manager_log, "bad signature")
        assert _jobs(cluster) == 0
    assert not list(ran.iterdir())


def test_stale_and_future_messages_are_refused(tmp_path, secret_file):
    """Signed with the secret, but long ago or ahead: refused, not run."""
    mapper, ran = _marker_mapper(tmp_path)
    with _cluster(tmp_path, secret_file) as cluster:
        for skew in (-120, 120):
            sealer = _sealer("client-x", clock=lambda s=skew: time.time() + s)
            assert request(LOCALHOST, cluster.port, sealer.seal(
                _job_bytes(tmp_path, mapper), "manager"), 5) == b""
        _wait_logged(cluster.manager_log, "stale: signed")
        _wait_logged(cluster.manager_log, "in the future")
        assert _jobs(cluster) == 0
    assert not list(ran.iterdir())


class SignedFakeWorker:
    """A Worker played by the test: it holds the secret, records messages."""

    def __init__(self, manager_port):
        """Listen on a free port; nothing sent yet."""
        self.peer = FakePeer()
        self.name = f"{LOCALHOST}:{self.peer.port}"
        self.sealer = _sealer(self.name)
        self.manager_port = manager_port

    def send(self, msg):
        """Send `msg` sealed to the Manager over TCP; return the bytes."""
        data = self.sealer.seal(protocol.encode(msg), "manager")
        send_json(self.manager_port, data)
        return data

    def beat(self):
        """Send one sealed heartbeat; return its bytes."""
        data = self.sealer.seal(protocol.encode(protocol.Heartbeat(
            worker_host=LOCALHOST, worker_port=self.peer.port)), "manager")
        send_udp(self.manager_port, data)
        return data

    def next(self):
        """Return the next message: (its envelope bytes, the message)."""
        envelope = self.peer.next()
        data = json.dumps(envelope).encode()
        return data, protocol.decode(self.sealer.open(data, self.name))

    def close(self):
        """Stop listening."""
        self.peer.close()


def test_replayed_messages_to_the_manager_are_refused(tmp_path,
                                                      secret_file):
    """A heartbeat, a finished and a job, each sent twice: taken once."""
    fake = None
    with _cluster(tmp_path, secret_file, workers=0) as cluster:
        try:
            fake = SignedFakeWorker(cluster.port)
            fake.send(protocol.Register(worker_host=LOCALHOST,
                                        worker_port=fake.peer.port))
            assert isinstance(fake.next()[1], protocol.RegisterAck)
            beat = fake.beat()
            job_bytes = _sealer("client-x").seal(_job_bytes(tmp_path),
                                                 "manager")
            assert request(LOCALHOST, cluster.port, job_bytes, 5)
            task = fake.next()[1]
            assert isinstance(task, protocol.NewMapTask)
            # A Worker that signs gets the `assignment` extension.
            assert task.assignment > 0, task
            finished = fake.send(protocol.Finished(
                task_id=task.task_id, worker_host=LOCALHOST,
                worker_port=fake.peer.port, assignment=task.assignment))
            # Replays, as an eavesdropper would send them.
            send_udp(cluster.port, beat)
            send_json(cluster.port, finished)
            assert request(LOCALHOST, cluster.port, job_bytes, 5) == b""
            _wait_logged(cluster.manager_log, "replayed", count=3)
            assert _jobs(cluster) == 1
            status = client.status(cluster.address)
            assert status["running"]["map"]["done"] == 1, status["running"]
        finally:
            if fake is not None:
                fake.close()


def test_captured_messages_are_refused_by_other_processes(tmp_path,
                                                          secret_file):
    """A task and a shutdown captured, replayed to other Workers: refused.

    The task was meant for the Worker at port P: a Worker at port Q
    refuses it (another recipient), and so does a new Worker at port P
    (signed before it started). A shutdown meant for the Manager is
    refused by a Worker. The mapper never runs; the Workers live on.
    """
    mapper, ran = _marker_mapper(tmp_path)
    workers = []
    with _cluster(tmp_path, secret_file, workers=0) as cluster, \
            FakePeer(udp=True) as elsewhere:
        try:
            # Worker Q runs before the capture; P starts after it.
            workers.append(_spawn_worker(tmp_path, secret_file,
                                         elsewhere.port))
            fake = SignedFakeWorker(cluster.port)
            try:
                fake.send(protocol.Register(worker_host=LOCALHOST,
                                            worker_port=fake.peer.port))
                fake.next()
                assert request(LOCALHOST, cluster.port, _sealer(
                    "client-x").seal(_job_bytes(tmp_path, mapper),
                                     "manager"), 5)
                task_bytes, task = fake.next()
                assert isinstance(task, protocol.NewMapTask)
            finally:
                fake.close()
            _wait_past_grace(task_bytes)
            workers.append(_spawn_worker(tmp_path, secret_file,
                                         elsewhere.port, fake.peer.port))
            shutdown = _sealer("client-x").seal(
                protocol.encode(protocol.Shutdown()), "manager")
            reasons = [f"meant for '{fake.name}'",
                       "signed before this process started"]
            for (process, logfile), reason in zip(workers, reasons):
                send_json(process.port, task_bytes)
                send_json(process.port, shutdown)
                _wait_logged(logfile, reason)
                _wait_logged(logfile, "meant for 'manager'")
            for process, _ in workers:
                assert process.poll() is None
        finally:
            for process, _ in workers:
                process.terminate()
                stop_process(process)
    assert not list(ran.iterdir())


def _spawn_worker(tmp_path, secret_file, manager_port, port=None):
    """Start a signed Worker process; return it (with `.port`) and its log."""
    port = port or _free_port()
    logfile = tmp_path / f"worker-{port}.log"
    process = spawn([command("mapreduce-worker"), "--port", str(port),
                     "--manager-port", str(manager_port), "--secret-file",
                     str(secret_file), "--logfile", str(logfile)])
    process.port = port
    assert wait_listening(process, port), _log(logfile)
    return process, logfile


def _free_port():
    """Return a port free now."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def test_a_shutdown_replayed_to_a_new_manager_is_refused(tmp_path,
                                                         secret_file):
    """A shutdown that stopped one Manager does not stop the next one."""
    port = _free_port()
    shutdown = None
    logs = [tmp_path / "manager-1.log", tmp_path / "manager-2.log"]
    for logfile in logs:
        process = spawn([command("mapreduce-manager"), "--port", str(port),
                         "--web-port", "off", "--secret-file",
                         str(secret_file), "--logfile", str(logfile)])
        try:
            assert wait_listening(process, port), _log(logfile)
            shutdown = shutdown or _sealer("client-x").seal(
                protocol.encode(protocol.Shutdown()), "manager")
            answer = request(LOCALHOST, port, shutdown, 5)
            if logfile == logs[0]:
                assert answer, "a signed shutdown is confirmed"
                assert process.wait(10) == 0
                _wait_past_grace(shutdown)
            else:
                assert answer == b""
                _wait_logged(logfile, "signed before this process started")
                assert process.poll() is None
        finally:
            process.terminate()
            stop_process(process)


def test_an_unsigned_flood_is_logged_briefly(tmp_path, secret_file):
    """Many unsigned heartbeats: a few warning lines, then a count."""
    with _cluster(tmp_path, secret_file, workers=0) as cluster:
        beat = protocol.encode(protocol.Heartbeat(worker_host=LOCALHOST,
                                                  worker_port=1))
        for _ in range(300):
            send_udp(cluster.port, beat)
        _wait_logged(cluster.manager_log, "counted, not logged")
        client.status(cluster.address)  # Still answering.
        assert _log(cluster.manager_log).count("Refused a message") <= 10


def test_refusal_log_counts_what_it_does_not_log():
    """Past the burst, refusals are counted and the count comes later."""
    lines = []

    class Log:
        """Collects warnings."""

        @staticmethod
        def warning(text, *args):
            """Keep one line."""
            lines.append(text % args)

    now = [0.0]
    refusals = RefusalLog(burst=2, period=10, clock=lambda: now[0])
    for _ in range(5):
        refusals.warn(Log, "peer", "reason")
    assert len(lines) == 2 and "counted, not logged" in lines[1]
    now[0] = 11
    refusals.warn(Log, "peer", "reason")
    assert "Refused 3 more messages" in lines[2]
    assert lines[3] == "Refused a message from peer: reason"


@pytest.mark.parametrize("name", ["mapreduce-manager", "mapreduce-worker",
                                  "mapreduce-submit", "mapreduce-status"])
def test_a_bad_secret_file_is_a_one_line_error(tmp_path, name):
    """Open to others, missing, too short: one line, exit 1, nothing runs."""
    bad = {
        "open": _secret_file(tmp_path / "open.key", mode=0o644),
        "missing": tmp_path / "missing.key",
        "short": _secret_file(tmp_path / "short.key", b"short"),
    }
    for why, path in bad.items():
        result = _run(name, "--port", str(_free_port()), "--secret-file",
                      str(path))
        assert result.returncode == 1, (why, result)
        assert result.stderr.startswith("Error: "), result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert str(path) in result.stderr


@pytest.mark.parametrize("host,secret,warned", [
    ("0.0.0.0", None, True), (LOCALHOST, None, False),
    ("0.0.0.0", SECRET, False)])
def test_an_unsigned_listener_others_can_reach_warns(caplog, host, secret,
                                                     warned):
    """Without a secret on a non-loopback address: one clear warning."""
    manager = ManagerServer(host, 0, ManagerOptions(), secret)
    with caplog.at_level("INFO"):
        manager.open()
        manager.close()
    warnings = [record.getMessage() for record in caplog.records
                if "without a secret" in record.getMessage()]
    assert len(warnings) == (1 if warned else 0)
    if warned:
        assert "run any program" in warnings[0]
        assert "shut the cluster down" in warnings[0]


def test_forged_heartbeats_keep_no_worker_alive(tmp_path, secret_file):
    """Plain heartbeats for a silent Worker: refused; it is marked dead."""
    settings = ProcessSettings(tmp_path / "cluster", workers=0,
                               manager={"heartbeat_timeout": 1.0},
                               secret_file=secret_file)
    with ProcessCluster(settings) as cluster:
        fake = SignedFakeWorker(cluster.port)
        try:
            fake.send(protocol.Register(worker_host=LOCALHOST,
                                        worker_port=fake.peer.port))
            fake.next()
            forged = protocol.encode(protocol.Heartbeat(
                worker_host=LOCALHOST, worker_port=fake.peer.port))
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                send_udp(cluster.port, forged)
                time.sleep(0.1)
            assert not worker_alive(cluster.address, fake.peer.port)
            _wait_logged(cluster.manager_log, "not signed: a plain "
                                              "'heartbeat'")
        finally:
            fake.close()


def test_a_signed_client_and_a_manager_without_a_secret(tmp_path,
                                                        secret_file):
    """Each says what is wrong; the Manager neither answers nor stops."""
    settings = ProcessSettings(tmp_path / "cluster", workers=0)
    with ProcessCluster(settings) as cluster:
        port = str(cluster.port)
        for args in (["mapreduce-status"], ["mapreduce-submit", "-s"]):
            result = _run(*args, "--port", port, "--secret-file",
                          str(secret_file))
            assert result.returncode == 1, result
            assert "same secret" in result.stderr
            assert len(result.stderr.splitlines()) == 1, result.stderr
        _wait_logged(cluster.manager_log, "a signed message, but this "
                                          "process has no secret", count=2)
        assert cluster.manager.poll() is None
        client.status(cluster.address)


def test_a_peer_whose_clock_is_a_little_behind_is_heard_at_start(
        tmp_path, secret_file):
    """An answer to a Worker's first message, dated just before its start.

    The Manager's clock is half a second behind: its `register_ack` is
    signed "before" the Worker started, within auth.START_GRACE, and
    taken; the Worker beats at once.
    """
    with FakePeer(udp=True) as manager:
        process, logfile = _spawn_worker(tmp_path, secret_file, manager.port)
        try:
            manager.next(skip=())  # The Worker's register.
            behind = _sealer("manager", clock=lambda: time.time() - 0.5)
            send_json(process.port, behind.seal(
                protocol.encode(protocol.RegisterAck()),
                f"{LOCALHOST}:{process.port}"))
            _wait_logged(logfile, "Registered with the Manager")
            assert "signed before" not in _log(logfile)
        finally:
            process.terminate()
            stop_process(process)
