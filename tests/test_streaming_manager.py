"""A real Manager running streaming jobs against fake Workers on loopback.

The `streaming` extension of `new_manager_job` (issue 12): what each task
message carries, message by message and key by key; map-only jobs; the
reduce stage over the partitions that got lines; the Hadoop variables of
each attempt; the counters of accepted reports, summed once; and the jobs
the Manager refuses. Fake Workers are real listening sockets that write
the files a Worker would and answer as one would.
"""

import logging
import os
import pathlib
import re
import shutil

import pytest

from mapreduce import client, protocol
from mapreduce.executables import locate
from mapreduce.localcluster import WAIT, wait_for
from mapreduce.manager.job import Job
from mapreduce.manager.safety import job_problem
from tests.util import EXEC, FakePeer, register, send_json, start_manager

MAPPER = str(EXEC / "wc_map.sh")
REDUCER = str(EXEC / "wc_reduce.sh")
COMBINER = str(EXEC / "wc_reduce.py")
PARTITIONER = str(EXEC / "t_head.sh")
MAP_KEYS = ["message_type", "task_id", "input_paths", "executable",
            "output_directory", "num_partitions", "streaming"]
REDUCE_KEYS = ["message_type", "task_id", "executable", "input_paths",
               "output_directory", "streaming"]
STAMP = re.compile(r"job_([0-9]{12})_0000")
QUIET = 0.25


class Cluster:
    """A Manager in a thread, fake Workers, and the test's files."""

    def __init__(self, tmp_path, **manager_options):
        """Start the Manager with its shared directory in `tmp_path`."""
        self.tmp = tmp_path
        self.manager = start_manager(shared_dir=str(tmp_path),
                                     heartbeat_timeout=30.0,
                                     **manager_options)
        (self.shared,) = tmp_path.glob("mapreduce-shared-*")
        self.peers = []

    @property
    def address(self):
        """Return the Manager's address."""
        return ("localhost", self.manager.port)

    def peer(self):
        """Return a new fake Worker, registered."""
        peer = FakePeer()
        self.peers.append(peer)
        register(peer, self.manager.port)
        return peer

    def submit(self, **fields):
        """Send a streaming job; the fields override the defaults."""
        job = {
            "message_type": "new_manager_job",
            "input_directory": str(self.tmp / "in"),
            "output_directory": str(self.tmp / "out"),
            "mapper_executable": MAPPER,
            "reducer_executable": REDUCER,
            "num_mappers": 2,
            "num_reducers": 3,
        }
        job.update(fields)
        send_json(self.manager.port, job)

    def report(self, peer, task_id, message_type="finished", **extra):
        """Send `finished` (or another report) for `peer`'s task."""
        send_json(self.manager.port, {
            "message_type": message_type, "task_id": task_id,
            "worker_host": "localhost", "worker_port": peer.port, **extra})

    def summary(self, job_id=0):
        """Return job `job_id`'s summary, once it has ended."""
        return client.wait_for_job(self.address, job_id, WAIT)

    def close(self):
        """Stop the Manager and the fake Workers."""
        try:
            self.manager.shutdown()
        finally:
            for peer in self.peers:
                peer.close()


@pytest.fixture(name="cluster")
def fixture_cluster(tmp_path):
    """Give a Cluster; stop it afterwards."""
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.close()


def inputs(tmp_path):
    """Make a file and a directory of inputs; return their paths.

    The directory holds two files, out of name order on disk, and a
    subdirectory, which is not input.
    """
    single = tmp_path / "single.txt"
    single.write_text("one\n")
    directory = tmp_path / "dir"
    directory.mkdir()
    (directory / "b.txt").write_text("bee\n")
    (directory / "a.txt").write_text("ay\n")
    (directory / "sub").mkdir()
    (directory / "sub" / "c.txt").write_text("sea\n")
    return single, directory


def hadoop(stamp, task, attempt=0, maps=2, reduces=3, inputs_=(),
           output=""):
    """Return the Hadoop variables the Manager gives one attempt.

    `task` is `("m", 1)` for map task 1, `("r", 0)` for reduce task 0.
    """
    kind, task_id = task
    tip = f"task_{stamp}_0000_{kind}_{task_id:06d}"
    attempt_id = f"attempt_{stamp}_0000_{kind}_{task_id:06d}_{attempt}"
    values = {
        "mapreduce_job_id": f"job_{stamp}_0000",
        "mapred_job_id": f"job_{stamp}_0000",
        "mapreduce_task_id": tip, "mapred_tip_id": tip,
        "mapreduce_task_attempt_id": attempt_id,
        "mapred_task_id": attempt_id,
        "mapreduce_task_partition": str(task_id),
        "mapred_task_partition": str(task_id),
        "mapreduce_task_ismap": "true" if kind == "m" else "false",
        "mapred_task_is_map": "true" if kind == "m" else "false",
        "mapreduce_job_maps": str(maps), "mapred_map_tasks": str(maps),
        "mapreduce_job_reduces": str(reduces),
        "mapred_reduce_tasks": str(reduces),
        "mapreduce_input_fileinputformat_inputdir": ",".join(inputs_),
        "mapred_input_dir": ",".join(inputs_),
        "mapreduce_output_fileoutputformat_outputdir": output,
        "mapred_output_dir": output,
    }
    return values


def stamp_of(msg):
    """Return the Manager's stamp in a task message's job id."""
    return STAMP.fullmatch(
        msg["streaming"]["environment"]["mapreduce_job_id"]).group(1)


def write_partitions(msg, lines_by_partition):
    """Write a map task's partition files as a Worker would."""
    for partition in range(msg["num_partitions"]):
        name = f"maptask{msg['task_id']:05d}-part{partition:05d}"
        text = lines_by_partition.get(partition, "")
        (pathlib.Path(msg["output_directory"]) / name).write_text(text)


def test_streaming_job_messages_exactly(cluster, tmp_path):
    """Input paths, combiner, partitioner, environment: every key, in order.

    The inputs are a file and a directory's files by name; the map tasks
    carry the combiner, the partitioner and the environment, the reduce
    tasks the environment; partition 1 got no lines, so reduce task 1
    reads partition 2 (at most 3 part files, as madoop).
    """
    peer = cluster.peer()
    single, directory = inputs(tmp_path)
    output = tmp_path / "out"
    paths = [str(single), str(directory)]
    cluster.submit(streaming={
        "input_paths": paths, "combiner": COMBINER,
        "partitioner": PARTITIONER,
        "environment": {"WORD": "x y", "mapreduce_job_name": "wc"}})
    first = peer.next()
    shared_job = str(cluster.shared / "job-00000")
    groups = [[str(single), str(directory / "b.txt")],
              [str(directory / "a.txt")]]

    def environment(task):
        """Return the environment the Manager gives `task`."""
        return {"WORD": "x y", "mapreduce_job_name": "wc",
                **hadoop(stamp_of(first), task, inputs_=paths,
                         output=str(output))}

    for task_id, msg in enumerate([first, None]):
        msg = msg or peer.next()
        assert msg == {
            "message_type": "new_map_task", "task_id": task_id,
            "input_paths": groups[task_id], "executable": MAPPER,
            "output_directory": shared_job, "num_partitions": 3,
            "streaming": {"combiner": COMBINER, "partitioner": PARTITIONER,
                          "environment": environment(("m", task_id))}}, msg
        assert list(msg) == MAP_KEYS
        assert list(msg["streaming"]) == ["combiner", "partitioner",
                                          "environment"]
        write_partitions(msg, {0: f"k{task_id}\t1\n", 2: "z\t1\n"})
        cluster.report(peer, task_id)
    for task_id, partition in enumerate([0, 2]):
        msg = peer.next()
        assert msg == {
            "message_type": "new_reduce_task", "task_id": task_id,
            "executable": REDUCER,
            "input_paths": [f"{shared_job}/maptask0000{m}-part0000"
                            f"{partition}" for m in range(2)],
            "output_directory": str(output),
            "streaming": {"environment": environment(("r", task_id))}}, msg
        assert list(msg) == REDUCE_KEYS
        (output / f"part-{task_id:05d}").write_text("x\n")
        cluster.report(peer, task_id)
    summary = cluster.summary()
    assert summary["state"] == "finished"
    assert (summary["map"], summary["reduce"]) == (
        {"done": 2, "total": 2}, {"done": 2, "total": 2})
    assert summary["streaming"] == {"input_paths": paths,
                                    "combiner": COMBINER,
                                    "partitioner": PARTITIONER}
    assert summary["counters"] == {}
    peer.expect_none(QUIET)


def test_map_only_job_writes_to_the_output_and_has_no_reduce(cluster,
                                                             tmp_path):
    """num_reducers 0: num_partitions 0, the output directory, no reduce."""
    peer = cluster.peer()
    single, _ = inputs(tmp_path)
    output = tmp_path / "out"
    cluster.submit(num_reducers=0, reducer_executable="",
                   streaming={"input_paths": [str(single)]})
    msg = peer.next()
    environment = hadoop(stamp_of(msg), ("m", 0), maps=1, reduces=0,
                         inputs_=[str(single)], output=str(output))
    assert msg == {
        "message_type": "new_map_task", "task_id": 0,
        "input_paths": [str(single)], "executable": MAPPER,
        "output_directory": str(output), "num_partitions": 0,
        "streaming": {"environment": environment}}, msg
    (output / "part-00000").write_text("one\n")
    cluster.report(peer, 0, counters={"wc": {"lines": 1}})
    summary = cluster.summary()
    assert (summary["state"], summary["part_files"]) == (
        "finished", ["part-00000"])
    assert (summary["reduce"], summary["counters"]) == (
        {"done": 0, "total": None}, {"wc": {"lines": 1}})
    assert not (cluster.shared / "job-00000").exists()
    peer.expect_none(QUIET)


def test_a_job_of_the_specification_cannot_be_map_only(cluster, tmp_path):
    """Without the streaming record, num_reducers 0 is still refused."""
    cluster.peer()
    inputs(tmp_path)
    cluster.submit(input_directory=str(tmp_path / "dir"), num_reducers=0)
    summary = cluster.summary()
    assert summary["state"] == "rejected"
    assert "num_reducers must be between 1 and" in summary["reason"]


def worker_state(cluster, peer):
    """Return the state the Manager's status gives fake Worker `peer`."""
    return next(worker["state"]
                for worker in client.status(cluster.address)["workers"]
                if worker["port"] == peer.port)


def test_counters_of_each_task_count_once(cluster, tmp_path, caplog):
    """Only the accepted report of each task counts; sums per job.

    Map task 2 goes to a Worker that cannot be reached (dead at once), so
    it goes to another Worker; the dead one's late report is ignored.
    Map task 0 fails once (a failure brings no counters) and its retry
    finishes. A repeated report of a finished task is ignored.
    """
    first, second, gone = cluster.peer(), cluster.peer(), cluster.peer()
    gone.close()
    caplog.set_level(logging.INFO)
    directory = tmp_path / "in"
    directory.mkdir()
    for name in ("a", "b", "c"):
        (directory / name).write_text(f"{name}\n")
    cluster.submit(num_mappers=3, num_reducers=1,
                   streaming={"input_paths": [str(directory)]})
    assert next_task(first)["task_id"] == 0
    task1 = next_task(second)
    wait_for(lambda: worker_state(cluster, gone) == "dead",
             what="the unreachable Worker marked dead")
    cluster.report(gone, 2, counters={"wc": {"words": 1000}})
    cluster.report(first, 0, "task_failed", error="boom")
    retry0 = next_task(first)
    assert attempt_of(retry0) == (0, "1")
    write_partitions(task1, {0: "b\t1\n"})
    cluster.report(second, 1, counters={"wc": {"words": 2}})
    task2 = next_task(second)
    assert attempt_of(task2) == (2, "1")
    cluster.report(second, 1, counters={"wc": {"words": 100}})
    write_partitions(task2, {0: "c\t1\n"})
    cluster.report(second, 2, counters={"wc": {"words": 3},
                                        "other": {"n": 1}})
    write_partitions(retry0, {0: "a\t1\n"})
    cluster.report(first, 0, counters={"wc": {"words": 4}})
    reduce = next_task(first)
    assert reduce["message_type"] == "new_reduce_task"
    cluster.report(first, 0, counters={"wc": {"reduced": 1}})
    cluster.report(first, 0, counters={"wc": {"reduced": 1}})
    summary = cluster.summary()
    assert summary["state"] == "finished"
    assert summary["counters"] == {"wc": {"words": 9, "reduced": 1},
                                   "other": {"n": 1}}
    # The log lines are the events' messages: the accepted reports' and
    # the job's sums are there, the ignored reports' are not.
    lines = manager_lines(caplog, cluster, "counters: ")
    assert [line.partition(" finished ")[2] for line in lines[:-1]] == [
        "MapTask(job_id=0, task_id=1, inputs=1); counters: wc.words=2",
        "MapTask(job_id=0, task_id=2, inputs=1); counters: other.n=1, "
        "wc.words=3",
        "MapTask(job_id=0, task_id=0, inputs=1); counters: wc.words=4",
        "ReduceTask(job_id=0, task_id=0, inputs=3); counters: "
        "wc.reduced=1"]
    assert lines[-1].startswith("Finished Job(job_id=0, ")
    assert lines[-1].endswith(", input_paths=['" + str(directory) + "'])"
                              "; counters: other.n=1, wc.reduced=1, "
                              "wc.words=9")


def manager_lines(caplog, cluster, part):
    """Return the Manager's log lines that contain `part`."""
    name = f"Manager:{cluster.manager.port}"
    return [record.getMessage() for record in caplog.records
            if record.name == name and part in record.getMessage()]


def next_task(peer):
    """Return `peer`'s next task message."""
    msg = peer.next()
    assert msg["message_type"] in ("new_map_task", "new_reduce_task"), msg
    return msg


def attempt_of(msg):
    """Return (task_id, attempt number) of a streaming task message."""
    attempt_id = msg["streaming"]["environment"]["mapreduce_task_attempt_id"]
    return msg["task_id"], attempt_id.rpartition("_")[2]


def streaming_job(tmp_path, streaming, **fields):
    """Return a Job (id 0) of a streaming request over tmp_path's files."""
    request = protocol.NewManagerJob(**{
        "input_directory": str(tmp_path / "nowhere"),
        "output_directory": str(tmp_path / "out"),
        "mapper_executable": MAPPER, "reducer_executable": REDUCER,
        "num_mappers": 1, "num_reducers": 2, **fields},
        streaming=protocol.Streaming(**streaming))
    return Job(0, request, str(tmp_path / "shared"))


def not_executable(tmp_path):
    """Return a file in tmp_path that is not executable."""
    path = tmp_path / "plain.py"
    path.write_text("print()\n")
    return str(path)


@pytest.mark.parametrize("make, problem", [
    (lambda tmp: ({"input_paths": [str(tmp / "gone")]}, {}),
     "input path '{tmp}/gone' does not exist"),
    (lambda tmp: ({"input_paths": [str(tmp / "fifo")]}, {}),
     "input path '{tmp}/fifo' is neither a file nor a directory"),
    (lambda tmp: ({"input_paths": [str(tmp / "out" / "in.txt")]}, {}),
     "output directory '{tmp}/out' contains input path "
     "'{tmp}/out/in.txt'"),
    (lambda tmp: ({"input_paths": [str(tmp / "in.txt")],
                   "environment": {"A=B": "c"}}, {}),
     "environment variable name 'A=B' is empty or holds '='"),
    (lambda tmp: ({"input_paths": [str(tmp / "in.txt")],
                   "environment": {"A": "c\0d"}}, {}),
     "environment variable 'A' 'c\\x00d' contains a NUL character"),
    (lambda tmp: ({"input_paths": [str(tmp / "in.txt")],
                   "combiner": not_executable(tmp)}, {}),
     "combiner executable '{tmp}/plain.py' is not executable"),
    (lambda tmp: ({"input_paths": [str(tmp / "in.txt")],
                   "partitioner": "no-such-partitioner"}, {}),
     "partitioner executable 'no-such-partitioner' is neither a file in "
     "the Manager's working directory nor found on PATH"),
    (lambda tmp: ({"input_paths": [str(tmp / "in.txt")]},
                  {"num_reducers": 10001}),
     "num_reducers must be between 0 and 10000, not 10001"),
    (lambda tmp: ({"input_paths": [str(tmp / "in.txt")]},
                  {"reducer_executable": ""}),
     "reducer executable '' is neither a file in the Manager's working "
     "directory nor found on PATH"),
    # Accepted: the input directory is not read when input paths are
    # given, and a map-only job needs no reducer.
    (lambda tmp: ({"input_paths": [str(tmp / "in.txt"), str(tmp)]}, {}),
     None),
    (lambda tmp: ({"input_paths": [str(tmp / "in.txt")]},
                  {"num_reducers": 0, "reducer_executable": ""}), None),
])
def test_what_the_manager_refuses_of_a_streaming_job(tmp_path, make,
                                                     problem):
    """Each refusal says why; a good job, map-only too, passes."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "in.txt").write_text("x\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "in.txt").write_text("y\n")
    streaming, fields = make(tmp_path)
    job = streaming_job(tmp_path, streaming, **fields)
    expected = problem and problem.format(tmp=tmp_path)
    assert job_problem(job, str(tmp_path / "shared")) == expected


def test_bare_names_are_files_in_the_managers_working_directory(
        tmp_path, monkeypatch):
    """The Manager checks `map.py` as ./map.py when that file exists."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(MAPPER, tmp_path / "map.sh")
    (tmp_path / "in.txt").write_text("x\n")
    job = streaming_job(tmp_path, {"input_paths": [str(tmp_path / "in.txt")]},
                        mapper_executable="map.sh",
                        output_directory=str(tmp_path / "sub" / "out"))
    assert locate("map.sh") == os.path.join(".", "map.sh")
    assert job_problem(job, None) is None
    (tmp_path / "map.sh").unlink()
    assert job_problem(job, None) == (
        "mapper executable 'map.sh' is neither a file in the Manager's "
        "working directory nor found on PATH")
