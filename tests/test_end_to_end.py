"""End to end: a real Manager and real Workers give the pipeline's answer."""

import pytest

from mapreduce.localcluster import output_lines, pipeline_output
from tests.util import (
    EXEC, TESTDATA, job_message, send_json, start_manager, start_worker,
    wait_for_output,
)


@pytest.mark.parametrize("mapper, reducer, num_mappers, num_reducers", [
    ("wc_map.sh", "wc_reduce.sh", 2, 2),
    ("wc_map.py", "wc_reduce.py", 4, 3),
    ("wc_map.sh", "wc_reduce.py", 1, 1),
])
def test_word_count_matches_pipeline(tmp_path, mapper, reducer, num_mappers,
                                     num_reducers):
    """A job's output equals `cat | map | sort | reduce` on the input."""
    manager = start_manager(shared_dir=str(tmp_path))
    workers = [start_worker(manager.port) for _ in range(2)]
    output = tmp_path / "output"
    send_json(manager.port, job_message(
        TESTDATA / "input", output, EXEC / mapper, EXEC / reducer,
        num_mappers=num_mappers, num_reducers=num_reducers))
    wait_for_output(output, num_reducers)
    assert output_lines(output) == pipeline_output(
        TESTDATA / "input", EXEC / mapper, EXEC / reducer)
    manager.shutdown()
    for worker in workers:
        worker.join()
    assert [p.name for p in tmp_path.iterdir()] == ["output"]
