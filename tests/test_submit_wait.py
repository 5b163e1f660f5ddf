"""mapreduce-submit against a real Manager: job ids, --wait, --overwrite.

The Manager is a ManagerServer started in this process, on a free port,
with real Workers in threads; the commands run as real processes.
"""

import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

from mapreduce import client, protocol
from mapreduce.localcluster import (
    WAIT, free_port, output_lines, pipeline_output, wait_for,
)
from mapreduce.manager import ManagerOptions, ManagerServer
from mapreduce.progress import ProgressView
from tests.util import EXEC, TESTDATA, run_command, start_worker

SCRIPTS = pathlib.Path(sys.executable).parent


@pytest.fixture(name="manager")
def fixture_manager(tmp_path):
    """Give a started ManagerServer; stop it afterwards."""
    shared = tmp_path / "shared"
    shared.mkdir()
    server = ManagerServer("localhost", 0,
                           ManagerOptions(shared_dir=str(shared))).start()
    yield server
    assert server.stop(timeout=WAIT), "the Manager did not stop"


@pytest.fixture(name="workers")
def fixture_workers(manager):
    """Give two Workers registered with the Manager."""
    started = [start_worker(manager.port) for _ in range(2)]
    address = ("localhost", manager.port)
    wait_for(lambda: [w["state"] for w in client.status(address)["workers"]]
             == ["ready", "ready"], what="two ready Workers")
    yield started
    for worker in started:
        worker.shutdown()


def submit(port, output, *args, mapper=EXEC / "wc_map.sh",
           reducer=EXEC / "wc_reduce.sh"):
    """Run mapreduce-submit for word count over the test input."""
    return run_command("mapreduce-submit", "--port", port,
                       "--input", TESTDATA / "input", "--output", output,
                       "--mapper", mapper, "--reducer", reducer, *args)


def start_submit(port, output, *args, mapper=EXEC / "wc_map.sh"):
    """Start mapreduce-submit as a process that the test ends."""
    return subprocess.Popen(
        [str(SCRIPTS / "mapreduce-submit"), "--port", str(port),
         "--input", str(TESTDATA / "input"), "--output", str(output),
         "--mapper", str(mapper), "--reducer", str(EXEC / "wc_reduce.sh"),
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def job_state(port, job_id):
    """Return the state of a job, as the Manager reports it."""
    return client.job_state(("localhost", port), job_id)[1]["state"]


def test_job_id_after_the_seven_lines(manager, workers, tmp_path):
    """The job id follows the specification's lines; ids count up."""
    del workers
    for job_id in range(2):
        result = submit(manager.port, tmp_path / f"out{job_id}")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 8
        assert lines[0] == f"Submitted job to Manager localhost:{manager.port}"
        assert lines[6] == "num reducers         2"
        assert lines[7] == f"job id               {job_id}"


def test_wait_success(manager, workers, tmp_path):
    """--wait shows progress lines, then the summary, and exits 0."""
    del workers
    output = tmp_path / "out"
    result = submit(manager.port, output, "--wait")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[7] == "job id               0"
    assert any(line.startswith("job 0 ") and "map " in line
               for line in lines[8:-3]), lines
    assert lines[-3].startswith("job 0 finished in ")
    assert lines[-2] == f"output directory     {output}"
    assert lines[-1] == "part files           2: part-00000, part-00001"
    assert output_lines(output) == pipeline_output(
        TESTDATA / "input", EXEC / "wc_map.sh", EXEC / "wc_reduce.sh")


def test_wait_failing_mapper(manager, workers, tmp_path):
    """A mapper that always fails: exit 1, the reason and its stderr."""
    del workers
    result = submit(manager.port, tmp_path / "out", "--wait",
                    mapper=EXEC / "t_fail.sh")
    assert result.returncode == 1, result.stdout
    assert "job 0 failed after" in result.stderr
    assert "failed 3 times" in result.stderr
    assert "stderr of the failing executable" in result.stderr
    assert "  t_fail: the last complaint" in result.stderr.splitlines()
    assert not (tmp_path / "out").exists()


def test_wait_rejected_job(manager):
    """A job the Manager rejects: exit 1 with the Manager's reason."""
    output = pathlib.Path(manager.info.shared_dir) / "out"
    result = submit(manager.port, output, "--wait")
    assert result.returncode == 1, result.stdout
    assert "job 0 rejected" in result.stderr
    assert "is inside the shared directory" in result.stderr


def test_wait_told_when_the_manager_shuts_down(manager, tmp_path):
    """A waiting client hears that its job was abandoned, and exits 3."""
    with start_submit(manager.port, tmp_path / "out", "--wait") as process:
        try:
            wait_for(lambda: len(manager.followers) == 1,
                     what="the client to wait for news of its job")
            assert manager.stop(timeout=WAIT)
            _, stderr = process.communicate(timeout=WAIT)
        finally:
            process.kill()
    assert process.returncode == 3, stderr
    assert "job 0 abandoned" in stderr
    assert "the Manager shut down" in stderr


def test_wait_manager_killed(tmp_path):
    """The Manager process dies mid-job: a clear message, exit 3."""
    port = free_port()
    with subprocess.Popen(
            [str(SCRIPTS / "mapreduce-manager"), "--port", str(port),
             "--shared_dir", str(tmp_path)],
            stderr=subprocess.DEVNULL) as manager:
        try:
            wait_for(lambda: _answers(port), what="the Manager to listen")
            with start_submit(port, tmp_path / "out", "--wait") as process:
                try:
                    wait_for(lambda: client.status(("localhost", port))[
                        "running"], what="the job to start (no Workers)")
                    manager.send_signal(signal.SIGKILL)
                    _, stderr = process.communicate(timeout=WAIT)
                finally:
                    process.kill()
        finally:
            manager.kill()
    assert process.returncode == 3, stderr
    assert stderr.startswith(f"Error: lost the Manager at localhost:{port} "
                             "while following job 0")


def _answers(port):
    """Tell whether a Manager answers a status request on `port`."""
    try:
        client.status(("localhost", port))
    except client.ClientError:
        return False
    return True


SEVEN_LINES = 7


def test_no_acknowledgement_from_a_worker(manager, workers, tmp_path):
    """A job sent to a Worker's port: seven lines, one error line, exit 1."""
    del manager
    result = submit(workers[0].port, tmp_path / "out")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == SEVEN_LINES
    assert lines[0] == f"Submitted job to Manager localhost:{workers[0].port}"
    assert result.stderr.startswith(
        f"Error: no job id came back from localhost:{workers[0].port} (it "
        "closed the connection without an answer): the job was sent, but ")
    assert "a Worker's port" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_no_acknowledgement_from_something_else(tmp_path):
    """A port that answers nonsense is a one-line error too."""
    with socket.socket() as server:
        server.bind(("localhost", 0))
        server.listen()
        port = server.getsockname()[1]
        with start_submit(port, tmp_path / "out") as process:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(WAIT)
                while conn.recv(65536):
                    pass
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            stdout, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 1
    assert len(stdout.splitlines()) == SEVEN_LINES
    assert stderr.startswith(f"Error: no job id came back from localhost:"
                             f"{port} (it answered, but not as a Manager: "
                             "not valid JSON")
    assert len(stderr.splitlines()) == 1


def spec_job(output):
    """Return a word count job message, exactly the specification's."""
    return protocol.NewManagerJob(
        input_directory=str(TESTDATA / "input"),
        output_directory=str(output),
        mapper_executable=str(EXEC / "wc_map.sh"),
        reducer_executable=str(EXEC / "wc_reduce.sh"),
        num_mappers=2, num_reducers=1)


def test_client_hangs_up_before_the_answer(manager, tmp_path, caplog):
    """Clients that close without reading do not disturb the Manager.

    Half of them half-close first (as our client does), half just send
    and close (as the specification's client does); the answers that
    cannot be delivered are logged at debug level, never as errors.
    """
    caplog.set_level("DEBUG")
    job = spec_job(tmp_path / "out")
    for number in range(20):
        with socket.create_connection(("localhost", manager.port)) as sock:
            sock.sendall(protocol.encode(job))
            if number % 2:
                sock.shutdown(socket.SHUT_WR)
    address = ("localhost", manager.port)
    wait_for(lambda: len(client.status(address)["queue"]) == 19,
             what="20 jobs (one running, 19 queued)")
    assert client.submit(address, job) == 20
    complaints = [record.getMessage() for record in caplog.records
                  if record.levelno >= logging.WARNING]
    assert complaints == ["Job 0 is waiting: no Worker has registered yet"]


def test_spec_client_sees_the_spec(manager, tmp_path):
    """The job message is the spec's; a client that reads gets the id.

    A client of the specification sends and closes: it never reads the
    answer and the job is queued all the same. The answer is exactly one
    `job_accepted` object.
    """
    with socket.create_connection(("localhost", manager.port)) as sock:
        sock.sendall(protocol.encode(spec_job(tmp_path / "out0")))
    wait_for(lambda: job_state(manager.port, 0) == "running",
             what="job 0 to run")
    with socket.create_connection(("localhost", manager.port)) as sock:
        sock.sendall(protocol.encode(spec_job(tmp_path / "out1")))
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(WAIT)
        answer = b""
        while chunk := sock.recv(100):
            answer += chunk
    assert answer == b'{"message_type": "job_accepted", "job_id": 1}'


class TestOverwrite:
    """--overwrite: what an existing output directory may hold."""

    @staticmethod
    def refused(tmp_path, *args):
        """Run submit to a closed port; return its result."""
        return submit(free_port(), tmp_path / "out", *args)

    def test_foreign_files_refused(self, tmp_path):
        """A file that no job made: one line naming it, nothing sent."""
        out = tmp_path / "out"
        out.mkdir()
        (out / "part-00000").write_text("old\n")
        (out / "notes.txt").write_text("precious\n")
        (out / "part-00001").mkdir()
        result = self.refused(tmp_path)
        assert result.returncode == 1
        assert result.stderr == (
            f"Error: output directory '{out}' holds notes.txt, "
            "part-00001/, not just part files of an earlier job; the job "
            "would delete them (use --overwrite to allow it)\n")
        assert (out / "notes.txt").exists()

    def test_many_foreign_files_summed_up(self, tmp_path):
        """More than three foreign entries: the first three and a count."""
        out = tmp_path / "out"
        out.mkdir()
        for name in "abcde":
            (out / name).write_text("x")
        result = self.refused(tmp_path)
        assert "holds a, b, c and 2 more," in result.stderr
        assert len(result.stderr.splitlines()) == 1

    @pytest.mark.parametrize("entries", [[], ["part-00000", "part-00001"]])
    def test_earlier_output_accepted(self, manager, tmp_path, entries):
        """An empty directory, or earlier part files, may be replaced."""
        out = tmp_path / "out"
        out.mkdir()
        for name in entries:
            (out / name).write_text("old\n")
        result = submit(manager.port, out)
        assert result.returncode == 0, result.stderr

    def test_overwrite_allows_it(self, manager, workers, tmp_path):
        """With --overwrite the job runs and replaces the directory."""
        del workers
        out = tmp_path / "out"
        out.mkdir()
        (out / "notes.txt").write_text("precious\n")
        result = submit(manager.port, out, "--overwrite", "--wait")
        assert result.returncode == 0, result.stderr
        assert sorted(os.listdir(out)) == ["part-00000", "part-00001"]


def _summary(**changes):
    """Return a running job's summary with `changes`."""
    summary = {"job_id": 7, "state": "running", "stage": "map",
               "map": {"done": 1, "total": 4},
               "reduce": {"done": 0, "total": None}, "num_reducers": 2,
               "elapsed": 1.25}
    summary.update(changes)
    return summary


def test_progress_on_a_terminal_redraws_one_line():
    """On a terminal: one line, redrawn with a bar, ended at close."""
    written = []
    view = ProgressView(written.append, terminal=True)
    view.show(_summary())
    view.show(_summary(map={"done": 4, "total": 4}, stage="reduce"))
    view.close()
    assert written[0] == ("\r[####--------------------] job 7 running (map "
                          "stage): map 1/4, reduce 0/2, elapsed 1.2s\033[K")
    assert written[1].startswith("\r[################--------] job 7 "
                                 "running (reduce stage): map 4/4")
    assert written[2] == "\n"


def test_progress_without_a_terminal_prints_changes_and_ticks():
    """Not a terminal: a line per stage change, else one per interval."""
    written, now = [], [0.0]
    view = ProgressView(written.append, terminal=False,
                        clock=lambda: now[0])
    view.show(_summary())
    view.show(_summary(map={"done": 2, "total": 4}))
    now[0] = 6.0
    view.show(_summary(map={"done": 3, "total": 4}))
    view.show(_summary(stage="reduce"))
    view.close()
    assert [line.split(":")[1] for line in written] == [
        " map 1/4, reduce 0/2, elapsed 1.2s\n",
        " map 3/4, reduce 0/2, elapsed 1.2s\n",
        " map 1/4, reduce 0/2, elapsed 1.2s\n"]
    assert "(reduce stage)" in written[2]
