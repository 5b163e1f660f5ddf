"""A real Manager serving its dashboard, with real Workers and jobs.

`live_cluster()` starts a ManagerServer in this process with the
dashboard on a free port, two Workers in threads, and three jobs: job 0
(word count) has finished, job 1 is held in its map stage by a gated
mapper (`t_gate.sh`, three map tasks, so both Workers run one), and job 2
waits in the queue. The tests then look at the page and its JSON while
job 1 runs. Leaving the block stops everything (the Workers kill their
gated tasks), then opens the gate for anything left.
"""

import contextlib
import json
import urllib.error
import urllib.request

from mapreduce import client, protocol
from mapreduce.localcluster import WAIT, wait_for
from mapreduce.manager import ManagerOptions, ManagerServer
from tests.util import EXEC, TESTDATA, start_worker

FINISHED_JOB, RUNNING_JOB, QUEUED_JOB = 0, 1, 2


class LiveCluster:
    """What a test needs of the running cluster."""

    def __init__(self, manager, workers, outputs):
        """Hold the started Manager, its Workers and the jobs' outputs."""
        self.manager = manager
        self.workers = workers
        self.outputs = outputs

    @property
    def address(self):
        """Return the Manager's (host, port)."""
        return ("localhost", self.manager.port)

    @property
    def url(self):
        """Return the dashboard's address, ending in '/'."""
        return f"http://localhost:{self.manager.info.web_port}/"

    def get(self, path, timeout=WAIT):
        """Return (status, content type, decoded JSON) of GET `path`."""
        try:
            with urllib.request.urlopen(self.url + path.lstrip("/"),
                                        timeout=timeout) as answer:
                return (answer.status, answer.headers["Content-Type"],
                        json.load(answer))
        except urllib.error.HTTPError as error:
            with error:
                return (error.code, error.headers["Content-Type"],
                        json.load(error))


def job(output, mapper):
    """Return a word count job over the test input, as the spec sends it."""
    return protocol.NewManagerJob(
        input_directory=str(TESTDATA / "input"),
        output_directory=str(output), mapper_executable=str(mapper),
        reducer_executable=str(EXEC / "wc_reduce.sh"), num_mappers=3,
        num_reducers=1)


@contextlib.contextmanager
def live_cluster(tmp_path, monkeypatch):
    """Run the cluster described above; yield a LiveCluster."""
    gate = tmp_path / "gate"
    monkeypatch.setenv("T_GATE", str(gate))
    shared = tmp_path / "shared"
    shared.mkdir()
    manager = ManagerServer("localhost", 0, ManagerOptions(
        shared_dir=str(shared), web_port=0)).start()
    workers = []
    try:
        workers = [start_worker(manager.port) for _ in range(2)]
        address = ("localhost", manager.port)
        wait_for(lambda: len(client.status(address)["workers"]) == 2,
                 what="both Workers to register")
        outputs = [tmp_path / f"out{number}" for number in range(3)]
        first = client.submit(address, job(outputs[0], EXEC / "wc_map.sh"))
        assert client.wait_for_job(address, first,
                                   timeout=WAIT)["state"] == "finished"
        for output in outputs[1:]:
            client.submit(address, job(output, EXEC / "t_gate.sh"))
        wait_for(lambda: [worker["state"] for worker in
                          client.status(address)["workers"]]
                 == ["busy", "busy"], what="both Workers to run job 1")
        yield LiveCluster(manager, workers, outputs)
    finally:
        try:
            assert manager.stop(timeout=WAIT), "the Manager did not stop"
            for worker in workers:
                worker.shutdown()
        finally:
            gate.touch()
