"""A real Worker given streaming tasks by a fake Manager, over loopback.

The `streaming` record comes in on `new_map_task` and `new_reduce_task`;
the counters go out in `finished`, and only for a task that carried it.
"""

import logging
import sys

from tests.test_worker import (
    INPUTS, WC_MAP, WC_REDUCE, assert_exact, finished, fixture_manager,
    fixture_registered, fixture_worker, map_task, reduce_task,
)
from tests.util import send_json

# The fake Manager and the registered Worker of tests.test_worker.
__all__ = ["fixture_manager", "fixture_registered", "fixture_worker"]

STREAMING = {"environment": {"mapreduce_job_id": "job_00001"}}

COUNTING_MAPPER = """
import sys
for line in sys.stdin:
    for word in line.split():
        print(word + "\\t1")
        sys.stderr.write("reporter:counter:Map,words,1\\n")
sys.stderr.write("reporter:status:one file done\\n")
"""


def counting_mapper(tmp_path):
    """Write the counting mapper; return its path."""
    path = tmp_path / "count.py"
    path.write_text(f"#!{sys.executable}\n{COUNTING_MAPPER}")
    path.chmod(0o755)
    return path


def words_in(paths):
    """Return how many words the files hold."""
    return sum(len(path.read_bytes().split()) for path in paths)


def test_streaming_map_task_reports_its_counters(manager, registered,
                                                 tmp_path, local_tmp, caplog):
    """finished carries the counters after the spec's keys; status logged."""
    caplog.set_level(logging.INFO)
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port, {
        **map_task(3, INPUTS, counting_mapper(tmp_path), job, 2),
        "streaming": STREAMING})
    assert_exact(manager.next(), {
        **finished(3, registered.port),
        "counters": {"Map": {"words": words_in(INPUTS)}}})
    assert caplog.text.count("map task 3 status: one file done") == len(
        INPUTS)
    assert not any(local_tmp.iterdir())


def test_spec_task_sends_no_counters(manager, registered, tmp_path):
    """Without the record: the spec's `finished`, reporter lines or not."""
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port,
              map_task(0, INPUTS, counting_mapper(tmp_path), job, 2))
    assert_exact(manager.next(), finished(0, registered.port))


def test_streaming_task_without_counters_sends_none(manager, registered,
                                                    tmp_path):
    """Nothing counted: `counters` stays out (it would be empty)."""
    job = tmp_path / "job"
    job.mkdir()
    send_json(registered.port, {**map_task(1, INPUTS, WC_MAP, job, 2),
                                "streaming": STREAMING})
    assert_exact(manager.next(), finished(1, registered.port))
    output = tmp_path / "output"
    output.mkdir()
    names = [job / f"maptask00001-part{p:05d}" for p in range(2)]
    send_json(registered.port, {**reduce_task(0, WC_REDUCE, names, output),
                                "streaming": STREAMING})
    assert_exact(manager.next(), finished(0, registered.port))


def test_map_only_task_is_taken_only_with_the_record(manager, registered,
                                                     tmp_path, local_tmp):
    """num_partitions 0: map-only for a streaming task, refused otherwise."""
    output = tmp_path / "output"
    output.mkdir()
    send_json(registered.port, {**map_task(7, INPUTS, WC_MAP, output, 0),
                                "streaming": STREAMING})
    assert_exact(manager.next(), finished(7, registered.port))
    assert [path.name for path in output.iterdir()] == ["part-00007"]
    send_json(registered.port, map_task(8, INPUTS, WC_MAP, output, 0))
    refused = manager.next()
    assert refused["message_type"] == "task_failed"
    assert "num_partitions must be between 1 and" in refused["error"]
    assert [path.name for path in output.iterdir()] == ["part-00007"]
    assert not any(local_tmp.iterdir())
