"""Failing tasks: a real Manager and real Workers meet broken executables.

A task fails when its executable cannot be started, exits non-zero, is
killed by a signal, or its input cannot be read or its output written. The
Worker then sends the extension message `task_failed` with the reason and
the tail of the executable's stderr; the Manager retries the task, up to 3
attempts in all and on a different Worker when one is free, then fails the
job: an ERROR line names the task, the executable and the reason, the job
directory and the output directory are removed, and the next job runs.
"""

import hashlib
import pathlib
import re

import pytest

from mapreduce import client
from mapreduce.localcluster import (
    WAIT, LogCollector, TaggedWorkers, kill_tagged, output_lines,
    peak_memory_kib, pipeline_output, port_open, stop_process, wait_for,
)
from tests.logged import start_logged_manager, start_logged_worker
from tests.util import (
    EXEC, TESTDATA, FakePeer, job_message, send_json, start_worker,
)

INPUT = TESTDATA / "input"
MAX_ATTEMPTS = 3


def job_end(port, job_id):
    """Wait until job `job_id` ends; return how (the status API's state)."""
    return client.wait_for_job(("localhost", port), job_id, WAIT)["state"]


class LoggedCluster:
    """A Manager and three Workers in threads, with their logs collected."""

    def __init__(self, tmp_path, markers, workers=3):
        """Start the Manager and the Workers; wait until all registered.

        The executables leave their markers in `markers`.
        """
        self.tmp_path = tmp_path
        self.markers = markers
        self.shared = tmp_path / "shared"
        self.shared.mkdir()
        self.manager, self.log = start_logged_manager(
            shared_dir=str(self.shared), heartbeat_timeout=5.0)
        self.worker_log = LogCollector()
        self.workers = []
        for _ in range(workers):
            worker = start_logged_worker(self.manager.port, self.worker_log,
                                         heartbeat_interval=0.5)
            self.workers.append(worker)
            self.log.wait_for(rf"Registered RemoteWorker\(host='localhost', "
                              rf"port={worker.port}\)")

    def submit(self, output, *, mapper=EXEC / "wc_map.sh",
               reducer=EXEC / "wc_reduce.sh", num_mappers=1, num_reducers=1,
               input_dir=INPUT):
        """Send a job; return its output directory."""
        output = self.tmp_path / output
        send_json(self.manager.port, job_message(
            input_dir, output, mapper, reducer, num_mappers=num_mappers,
            num_reducers=num_reducers))
        return output

    def wait_job(self, job_id):
        """Wait until job `job_id` ends; return the log line of its end.

        The status API tells when and how the job ended; the line that
        says so in the log is what the tests then check.
        """
        ended = {"finished": rf"Finished Job\(job_id={job_id},",
                 "failed": rf"Job {job_id} failed"}[
                     job_end(self.manager.port, job_id)]
        return self.log.wait_for(ended)[0]

    def job_dirs(self):
        """Return the job directories left in the shared directory."""
        return sorted(path.name for path in self.shared.glob("*/job-*"))

    def attempts(self, job_id, task=r"\w+Task\(job_id={job_id}, [^)]*\)"):
        """Return (worker port, attempt, error) of each failed attempt.

        `task` is a regular expression for the tasks to look at (default:
        every task of the job).
        """
        pattern = re.compile(
            r"RemoteWorker\(host='localhost', port=(\d+)\) failed "
            + task.format(job_id=job_id) + r" \(attempt (\d+) of 3\): (.*)")
        return [(int(m.group(1)), int(m.group(2)), m.group(3))
                for m in map(pattern.search, self.log.lines()) if m]

    def assert_all_alive(self):
        """Every thread still runs and every port still answers."""
        for process in [self.manager, *self.workers]:
            assert process.thread.is_alive(), f"{process.port} died"
            assert port_open(process.port), f"{process.port} is deaf"

    def close(self):
        """Shut the Manager down, which shuts the Workers down."""
        try:
            self.manager.shutdown()
            for worker in self.workers:
                worker.join()
        finally:
            self.log.detach()
            self.worker_log.detach()


@pytest.fixture(name="cluster")
def fixture_cluster(tmp_path, monkeypatch):
    """Give a running LoggedCluster; its executables see $C_MARKER_DIR."""
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("C_MARKER_DIR", str(markers))
    cluster = LoggedCluster(tmp_path, markers)
    try:
        yield cluster
    finally:
        cluster.close()


def assert_job_failed(cluster, job_id, output, executable, reason):
    """Check the end of a failed job: 3 attempts, an ERROR line, no trace."""
    line = cluster.wait_job(job_id)
    assert "[ERROR]" in line, line
    assert f"Job {job_id} failed" in line
    task = re.search(rf"(Map|Reduce)Task\(job_id={job_id}, task_id=\d+, "
                     r"inputs=\d+\)", line)
    assert task, line
    assert str(executable) in line, line
    assert re.search(reason, line), line
    attempts = cluster.attempts(job_id, re.escape(task.group()))
    assert [attempt for _, attempt, _ in attempts] == [1, 2, 3], attempts
    assert all(re.search(reason, error) for _, _, error in attempts)
    assert not output.exists(), "a failed job leaves no output directory"
    assert f"job-{job_id:05d}" not in cluster.job_dirs()
    return attempts


def assert_next_job_right(cluster, job_id, output):
    """Job `job_id` (word count) finished with the pipeline's output."""
    line = cluster.wait_job(job_id)
    assert "Finished" in line, line
    assert output_lines(output) == pipeline_output(
        INPUT, EXEC / "wc_map.sh", EXEC / "wc_reduce.sh")
    cluster.assert_all_alive()


@pytest.mark.parametrize("stage, executable, reason", [
    ("map", "c_bad_interp.sh", r"cannot run .*c_bad_interp\.sh"),
    ("map", "c_exit3.sh",
     r"exited with status 3 .*stderr: c_exit3: the input made no sense"),
    ("map", "c_kill_self.sh",
     r"killed by SIGKILL .*stderr: c_kill_self: killing myself"),
    ("reduce", "c_exit3.sh",
     r"exited with status 3 on reduce task 0.*c_exit3: the input made"),
    ("reduce", "c_kill_self.sh", r"killed by SIGKILL on reduce task 0"),
])
def test_failing_executable_fails_the_job(cluster, stage, executable,
                                          reason):
    """Three attempts on three Workers, then the job fails; the next runs."""
    executable = EXEC / executable
    bad = {"mapper": executable} if stage == "map" else {"reducer":
                                                         executable}
    failed = cluster.submit("failed", **bad)
    good = cluster.submit("good", num_mappers=2, num_reducers=2)
    attempts = assert_job_failed(cluster, 0, failed, executable, reason)
    # Three free Workers: each attempt ran on a different one.
    assert len({port for port, _, _ in attempts}) == MAX_ATTEMPTS, attempts
    assert_next_job_right(cluster, 1, good)
    # The reason, with the stderr tail, is in the Worker's log too.
    assert len(cluster.worker_log.grep(
        rf"\[ERROR\] Task 0 failed: .*{reason}")) == MAX_ATTEMPTS


def test_vanished_input_fails_the_job(cluster, tmp_path):
    """An input file that is gone when the Worker opens it fails the task."""
    inputs = tmp_path / "input"
    inputs.mkdir()
    victim = inputs / "file2"
    (inputs / "file1").write_text(f"hello world\nREMOVE {victim}\n")
    victim.write_text("hello again\n")
    failed = cluster.submit("failed", input_dir=inputs,
                            mapper=EXEC / "c_map_remove.py")
    good = cluster.submit("good")
    assert_job_failed(cluster, 0, failed, EXEC / "c_map_remove.py",
                      rf"cannot read input {re.escape(str(victim))}: No such "
                      "file")
    assert_next_job_right(cluster, 1, good)


def test_removed_output_directory_fails_the_job(cluster):
    """Output removed while reducers run: the moves fail, so does the job."""
    failed = cluster.submit("failed", reducer=EXEC / "c_gated_reduce.sh",
                            num_reducers=2)
    good = cluster.submit("good")
    wait_for(lambda: len(list(cluster.markers.glob("reduce-started-*"))) == 2,
             what="both reducers to start")
    for part in failed.iterdir():
        part.unlink()
    failed.rmdir()
    (cluster.markers / "go").touch()
    # The first attempt cannot place its part file (the directory it
    # opened is gone); the retries cannot even open it.
    where = re.escape(str(failed))
    assert_job_failed(cluster, 0, failed, EXEC / "c_gated_reduce.sh",
                      rf"cannot move part-0000\d into {where}: output "
                      rf"directory is gone|cannot open output directory "
                      rf"{where}: No such file")
    assert_next_job_right(cluster, 1, good)


def test_removed_job_directory_fails_the_job(cluster):
    """The shared job directory removed while a mapper runs: job fails."""
    failed = cluster.submit("failed", mapper=EXEC / "c_gated_map.sh")
    good = cluster.submit("good")
    wait_for(lambda: list(cluster.markers.glob("map-started-*")),
             what="the mapper to start")
    (job_dir,) = cluster.shared.glob("*/job-00000")
    job_dir.rmdir()
    (cluster.markers / "go").touch()
    assert_job_failed(cluster, 0, failed, EXEC / "c_gated_map.sh",
                      r"cannot move maptask00000-part00000 into "
                      r".*job-00000: output directory is gone|cannot open "
                      r"output directory .*job-00000: No such file")
    assert_next_job_right(cluster, 1, good)


def test_flaky_mapper_is_retried(cluster):
    """A mapper that fails once only: the retry succeeds, output is right."""
    output = cluster.submit("output", mapper=EXEC / "c_flaky_map.sh",
                            num_mappers=3, num_reducers=2)
    assert_next_job_right(cluster, 0, output)
    attempts = cluster.attempts(0)
    assert len(attempts) == 1 and attempts[0][1] == 1, attempts
    assert "c_flaky_map: failing on purpose" in attempts[0][2]
    assert not cluster.log.grep(r"\[ERROR\]")
    assert cluster.job_dirs() == []


def _partition(word, partitions=2):
    """Return the partition of `word`, as the Worker computes it."""
    return int(hashlib.md5(word.encode()).hexdigest(), 16) % partitions


def test_failed_job_leftovers_cannot_touch_the_next_job(cluster, tmp_path):
    """A failed job's task still running must not write into the next job.

    Job 0's reducer fails at once on the partition holding "boom" and
    waits on the other one; after job 0 fails, job 1 uses the same output
    directory. Whatever the slow reducer of job 0 does when it ends, job
    1's output is exactly its own.
    """
    words = ["boom"] + [w for w in ("alpha", "beta", "gamma", "delta")
                        if _partition(w) != _partition("boom")]
    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / "words").write_text(" ".join(words * 3) + "\n")
    reducer = EXEC / "c_boom_reduce.py"
    output = cluster.submit("output", input_dir=inputs, reducer=reducer,
                            num_reducers=2)
    cluster.submit("output")
    line = cluster.wait_job(0)
    assert "failed" in line and "c_boom_reduce: boom" in line, line
    cluster.log.wait_for(r"Waiting for 1 reduce task\(s\) of job 0 to end "
                         r"before the next job starts")
    wait_for(lambda: list(cluster.markers.glob("boom-waiting-*")),
             what="the slow reducer of job 0")
    (cluster.markers / "go").touch()
    stale = rf"RemoteWorker\(host='localhost', port=\d+\) (finished|failed) " \
            rf"ReduceTask\(job_id=0, task_id={1 - _partition('boom')}"
    cluster.log.wait_for(stale)
    assert_next_job_right(cluster, 1, output)
    assert sorted(p.name for p in output.iterdir()) == ["part-00000"]


def test_worker_sends_task_failed(tmp_path):
    """The extension message on the wire: fields, order, reason, stderr."""
    with FakePeer(udp=True) as manager:
        worker = start_worker(manager.port, heartbeat_interval=0.5)
        try:
            msg = manager.next()
            assert msg["message_type"] == "register"
            send_json(worker.port, {"message_type": "register_ack"})
            send_json(worker.port, {
                "message_type": "new_map_task", "task_id": 7,
                "input_paths": [str(INPUT / "file01")],
                "executable": str(EXEC / "c_exit3.sh"),
                "output_directory": str(tmp_path),
                "num_partitions": 2})
            msg = manager.next()
            assert list(msg) == ["message_type", "task_id", "worker_host",
                                 "worker_port", "error"]
            assert msg["message_type"] == "task_failed"
            assert msg["task_id"] == 7
            assert msg["worker_port"] == worker.port
            assert "exited with status 3" in msg["error"]
            assert "c_exit3: the input made no sense" in msg["error"]
            # The Worker goes on: the next task works.
            send_json(worker.port, {
                "message_type": "new_reduce_task", "task_id": 8,
                "executable": str(EXEC / "wc_reduce.sh"),
                "input_paths": [], "output_directory": str(tmp_path)})
            assert manager.next()["message_type"] == "finished"
        finally:
            worker.shutdown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00008"]


@pytest.mark.parametrize("partitions", [0, -5, 10001, 10 ** 30])
def test_worker_refuses_senseless_partitions(tmp_path, partitions):
    """A map task with no or absurdly many partitions fails at once."""
    with FakePeer(udp=True) as manager:
        worker = start_worker(manager.port, heartbeat_interval=0.5)
        try:
            assert manager.next()["message_type"] == "register"
            send_json(worker.port, {"message_type": "register_ack"})
            send_json(worker.port, {
                "message_type": "new_map_task", "task_id": 3,
                "input_paths": [str(INPUT / "file01")],
                "executable": str(EXEC / "wc_map.sh"),
                "output_directory": str(tmp_path),
                "num_partitions": partitions})
            msg = manager.next(timeout=10)
            assert msg["message_type"] == "task_failed", msg
            assert msg["task_id"] == 3
            assert f"num_partitions must be between 1 and 10000, not " \
                   f"{partitions}" in msg["error"]
        finally:
            worker.shutdown()
    assert not list(tmp_path.iterdir())


def test_stderr_is_bounded(tmp_path):
    """32 MiB of stderr: logged as a bounded tail; the Worker stays small."""
    noise = 32 << 20
    shared = tmp_path / "shared"
    shared.mkdir()
    manager, log = start_logged_manager(shared_dir=str(shared))
    port = manager.port
    tag = f"failures-{port}"
    process = None
    try:
        worker_port, process = TaggedWorkers(
            tmp_path, tag, tmp_path, {"heartbeat_interval": 0.5},
            env={"C_NOISE_BYTES": str(noise)}).spawn_registered(port)
        worker_log = tmp_path / f"worker-{worker_port}.log"
        before = peak_memory_kib(process.pid)
        output = tmp_path / "output"
        send_json(port, job_message(INPUT, output, EXEC / "c_noisy_map.sh",
                                    num_mappers=1, num_reducers=1))
        send_json(port, job_message(INPUT, tmp_path / "failed",
                                    EXEC / "c_noisy_fail.sh",
                                    num_mappers=1, num_reducers=1))
        assert job_end(port, 0) == "finished"
        assert job_end(port, 1) == "failed"
        line = log.wait_for(r"Job 1 failed")[0]
        after = peak_memory_kib(process.pid)
        assert process.poll() is None
        assert output_lines(output) == pipeline_output(
            INPUT, EXEC / "wc_map.sh", EXEC / "wc_reduce.sh")
        # The reason is at the end of stderr, so it is in the tail.
        assert "c_noisy_fail: the real reason is at the end" in line
        assert len(line) < 8192, len(line)
        # With one Worker, every attempt ran on it.
        assert len(log.grep(r"failed MapTask\(job_id=1,")) == MAX_ATTEMPTS
        worker_lines = worker_log.read_text().splitlines()
        assert any("wrote to stderr on" in line for line in worker_lines)
        assert max(map(len, worker_lines)) < 8192
        print(f"Worker peak memory {before} KiB before, {after} KiB after")
        assert after - before < noise // 1024 // 4, (before, after)
    finally:
        manager.shutdown()
        if process is not None:
            stop_process(process)
        kill_tagged(tag)
        log.detach()


def test_missing_executable_never_reaches_a_worker(cluster):
    """Checked up front: a job whose mapper is missing is rejected."""
    missing = pathlib.Path(cluster.tmp_path) / "no-such-mapper"
    failed = cluster.submit("failed", mapper=missing)
    good = cluster.submit("good")
    line = cluster.log.wait_for(r"Rejected Job\(job_id=0,")[0]
    assert "[ERROR]" in line and str(missing) in line
    assert_next_job_right(cluster, 1, good)
    assert not failed.exists()
    assert not cluster.attempts(0)
