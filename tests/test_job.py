"""A job's plan on real directories: map groups, reduce inputs, messages.

These tests call mapreduce.manager.job directly, without a Manager: they
pin the SPEC.md rules for which task gets which files and what message a
Worker receives, and the Stage bookkeeping the scheduler relies on.
"""

import os

import pytest

from mapreduce import protocol
from mapreduce.manager.job import Job, MapTask, ReduceTask, Stage, Task


def make_job(tmp_path, inputs=(), job_id=0, num_mappers=2, num_reducers=2):
    """Return a Job over a new input directory holding files `inputs`."""
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    for name in inputs:
        (input_dir / name).write_text(f"text of {name}\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    request = protocol.NewManagerJob(
        input_directory=str(input_dir),
        output_directory=str(tmp_path / "output"),
        mapper_executable="/opt/map.py",
        reducer_executable="/opt/reduce.py",
        num_mappers=num_mappers,
        num_reducers=num_reducers,
    )
    return Job(job_id, request, str(shared))


def input_names(tasks):
    """Return the input file names of each task, task by task."""
    return [[os.path.basename(path) for path in task.input_paths]
            for task in tasks]


def test_the_spec_example_deals_files_round_robin(tmp_path):
    """Five files, four mappers: [01, 05], [02], [03], [04], as SPEC.md."""
    job = make_job(tmp_path, [f"file0{i}" for i in range(1, 6)],
                   num_mappers=4)
    tasks = job.map_tasks()
    assert input_names(tasks) == [["file01", "file05"], ["file02"],
                                  ["file03"], ["file04"]]
    assert [task.task_id for task in tasks] == [0, 1, 2, 3]
    assert all(isinstance(task, MapTask) for task in tasks)
    assert all(task.job is job for task in tasks)
    assert tasks[0].input_paths == [
        os.path.join(job.input_directory, "file01"),
        os.path.join(job.input_directory, "file05")]


def test_files_are_dealt_in_byte_order_of_their_names(tmp_path):
    """Sorted by name, whatever order the directory lists them in."""
    names = ["b", "a10", "C", "a2", "_", "a1"]
    job = make_job(tmp_path, names, num_mappers=1)
    assert input_names(job.map_tasks()) == [sorted(names)]
    assert sorted(names) == ["C", "_", "a1", "a10", "a2", "b"]


def test_more_mappers_than_files_gives_contiguous_task_ids(tmp_path):
    """Groups left empty are not made: three files, eight mappers."""
    job = make_job(tmp_path, ["x", "y", "z"], num_mappers=8)
    tasks = job.map_tasks()
    assert [task.task_id for task in tasks] == [0, 1, 2]
    assert input_names(tasks) == [["x"], ["y"], ["z"]]


def test_as_many_mappers_as_files_gives_one_file_each(tmp_path):
    """The boundary between dealing and leaving groups out."""
    job = make_job(tmp_path, ["p", "q"], num_mappers=2)
    assert input_names(job.map_tasks()) == [["p"], ["q"]]


def test_an_empty_input_directory_has_no_map_tasks(tmp_path):
    """No files, no map tasks (the reduce tasks then run on nothing)."""
    assert not make_job(tmp_path, [], num_mappers=3).map_tasks()


def test_only_regular_files_are_input(tmp_path):
    """Directories, and links to directories, inside the input are skipped."""
    job = make_job(tmp_path, ["a", "c"], num_mappers=5)
    input_dir = tmp_path / "input"
    (input_dir / "b-dir").mkdir()
    (input_dir / "b-dir" / "inner").write_text("not input\n")
    (input_dir / "b-link").symlink_to(input_dir / "b-dir")
    assert input_names(job.map_tasks()) == [["a"], ["c"]]


def test_a_map_task_message_is_the_spec_new_map_task(tmp_path):
    """Mapper, the job's shared directory, num_partitions = num_reducers."""
    job = make_job(tmp_path, ["f1", "f2", "f3"], job_id=7, num_mappers=2,
                   num_reducers=5)
    first = job.map_tasks()[0]
    assert first.message() == protocol.NewMapTask(
        task_id=0,
        input_paths=[os.path.join(job.input_directory, "f1"),
                     os.path.join(job.input_directory, "f3")],
        executable="/opt/map.py",
        output_directory=str(tmp_path / "shared" / "job-00007"),
        num_partitions=5,
    )


@pytest.mark.parametrize("job_id, name", [
    (0, "job-00000"), (42, "job-00042"), (123456, "job-123456"),
])
def test_the_job_directory_is_named_after_the_job_id(tmp_path, job_id,
                                                     name):
    """`job-{job_id:05d}` inside the shared directory."""
    job = make_job(tmp_path, job_id=job_id)
    assert job.job_dir == str(tmp_path / "shared" / name)
    assert job.job_id == job_id


def write_map_outputs(job, names):
    """Create the job directory with (empty) files `names` in it."""
    os.mkdir(job.job_dir)
    for name in names:
        with open(os.path.join(job.job_dir, name), "w", encoding="utf-8"):
            pass


def test_reduce_task_r_gets_partition_r_of_every_map_task(tmp_path):
    """Sorted `maptask*-part{r:05d}` files: one reduce task per partition."""
    job = make_job(tmp_path, num_reducers=3)
    write_map_outputs(job, [
        "maptask00001-part00000", "maptask00000-part00001",
        "maptask00000-part00000", "maptask00002-part00000",
        "maptask00001-part00001",
    ])
    tasks = job.reduce_tasks()
    assert [task.task_id for task in tasks] == [0, 1, 2]
    assert all(isinstance(task, ReduceTask) for task in tasks)
    assert input_names(tasks) == [
        ["maptask00000-part00000", "maptask00001-part00000",
         "maptask00002-part00000"],
        ["maptask00000-part00001", "maptask00001-part00001"],
        [],
    ]
    assert tasks[1].input_paths[0] == os.path.join(
        job.job_dir, "maptask00000-part00001")


def test_reduce_inputs_ignore_files_that_are_not_map_outputs(tmp_path):
    """Partial, hidden and other partitions' files are not inputs."""
    job = make_job(tmp_path, num_reducers=2)
    write_map_outputs(job, [
        "maptask00000-part00001", "maptask00000-part00001.tmp",
        ".maptask00001-part00001", "maptask00000-part000010",
        "maptask00000-part00010", "xmaptask00002-part00001",
        "maptask00003-part0001",
    ])
    assert input_names(job.reduce_tasks()) == [
        [], ["maptask00000-part00001"]]


def test_partitions_are_named_with_five_digits_or_more(tmp_path):
    """Reduce task 12 reads part00012, not part12 nor part00002."""
    job = make_job(tmp_path, num_reducers=13)
    write_map_outputs(job, ["maptask00000-part00012",
                            "maptask00000-part00002"])
    tasks = job.reduce_tasks()
    assert len(tasks) == 13
    assert input_names(tasks)[12] == ["maptask00000-part00012"]
    assert input_names(tasks)[2] == ["maptask00000-part00002"]


def test_a_reduce_task_message_is_the_spec_new_reduce_task(tmp_path):
    """Reducer, the partition's files, the job's output directory."""
    job = make_job(tmp_path, num_reducers=2)
    write_map_outputs(job, ["maptask00000-part00001",
                            "maptask00001-part00001"])
    assert job.reduce_tasks()[1].message() == protocol.NewReduceTask(
        task_id=1,
        executable="/opt/reduce.py",
        input_paths=[os.path.join(job.job_dir, "maptask00000-part00001"),
                     os.path.join(job.job_dir, "maptask00001-part00001")],
        output_directory=str(tmp_path / "output"),
    )


def test_a_job_records_its_request_and_has_no_stage_yet(tmp_path):
    """Every field of new_manager_job is kept as sent."""
    job = make_job(tmp_path, job_id=3, num_mappers=4, num_reducers=6)
    assert (job.job_id, job.input_directory, job.output_directory,
            job.mapper_executable, job.reducer_executable,
            job.num_mappers, job.num_reducers, job.stage) == (
        3, str(tmp_path / "input"), str(tmp_path / "output"),
        "/opt/map.py", "/opt/reduce.py", 4, 6, None)


def test_the_log_shows_jobs_and_tasks_by_id(tmp_path):
    """The reprs that the Manager's log lines are made of."""
    job = make_job(tmp_path, ["a", "b", "c"], job_id=2, num_mappers=2,
                   num_reducers=1)
    assert repr(job) == (
        f"Job(job_id=2, input_directory={str(tmp_path / 'input')!r}, "
        f"output_directory={str(tmp_path / 'output')!r}, "
        "mapper_executable='/opt/map.py', "
        "reducer_executable='/opt/reduce.py', num_mappers=2, "
        "num_reducers=1)")
    assert [repr(task) for task in job.map_tasks()] == [
        "MapTask(job_id=2, task_id=0, inputs=2)",
        "MapTask(job_id=2, task_id=1, inputs=1)"]
    write_map_outputs(job, [])
    assert repr(job.reduce_tasks()[0]) == (
        "ReduceTask(job_id=2, task_id=0, inputs=0)")


def test_tasks_know_their_kind_and_start_without_failures(tmp_path):
    """The scheduler counts failed attempts from zero, per task."""
    job = make_job(tmp_path, ["a", "b"])
    write_map_outputs(job, [])
    map_task, reduce_task = job.map_tasks()[0], job.reduce_tasks()[0]
    assert (map_task.kind, reduce_task.kind) == ("map", "reduce")
    for task in (map_task, reduce_task):
        assert task.failures == 0
        assert task.failed_on == set()
    map_task.failed_on.add(("localhost", 6001))
    assert job.map_tasks()[1].failed_on == set(), "failed_on is shared"


def test_a_plain_task_has_no_message(tmp_path):
    """Only map and reduce tasks can be sent."""
    task = Task(make_job(tmp_path), 0, [])
    with pytest.raises(NotImplementedError):
        task.message()


def tasks_of(job, count):
    """Return `count` map tasks of `job`, with no input files."""
    return [MapTask(job, task_id, []) for task_id in range(count)]


def pending_ids(stage):
    """Return the task ids in the stage's queue, front first."""
    return [task.task_id for task in stage.pending]


def test_a_stage_queues_its_tasks_in_order(tmp_path):
    """A new stage holds every task, pending and unfinished."""
    tasks = tasks_of(make_job(tmp_path), 3)
    stage = Stage("map", tasks)
    assert stage.name == "map"
    assert pending_ids(stage) == [0, 1, 2]
    assert not stage.done
    assert repr(stage) == "Stage('map', pending=3, unfinished=3)"


def test_a_requeued_task_goes_to_the_end_or_to_the_front(tmp_path):
    """Taken from a dead Worker: the end; failed: the front (`first`)."""
    tasks = tasks_of(make_job(tmp_path), 4)
    stage = Stage("reduce", tasks)
    taken = [stage.pending.popleft() for _ in range(3)]
    assert pending_ids(stage) == [3]
    assert stage.requeue(taken[0]) is True
    assert pending_ids(stage) == [3, 0]
    assert stage.requeue(taken[2], first=True) is True
    assert pending_ids(stage) == [2, 3, 0]
    assert repr(stage) == "Stage('reduce', pending=3, unfinished=4)"


def test_only_the_stage_s_own_unfinished_tasks_are_requeued(tmp_path):
    """A finished task, or another job's task with the same id, is not."""
    job = make_job(tmp_path)
    tasks = tasks_of(job, 2)
    stage = Stage("map", tasks)
    stage.pending.clear()
    stranger = MapTask(job, 0, [])
    assert stage.requeue(stranger) is False
    assert stage.requeue(stranger, first=True) is False
    assert stage.finish(tasks[1]) is True
    assert stage.requeue(tasks[1], first=True) is False
    assert stage.requeue(tasks[1]) is False
    assert not stage.pending


def test_a_stage_is_done_when_every_task_finished_once(tmp_path):
    """finish() counts each task once and refuses strangers."""
    job = make_job(tmp_path)
    tasks = tasks_of(job, 2)
    stage = Stage("map", tasks)
    assert stage.finish(MapTask(job, 1, [])) is False
    assert stage.finish(tasks[1]) is True
    assert stage.finish(tasks[1]) is False
    assert not stage.done
    assert stage.finish(tasks[0]) is True
    assert stage.done
    assert repr(stage) == "Stage('map', pending=2, unfinished=0)"


def test_a_stage_without_tasks_is_done_at_once(tmp_path):
    """An empty input: the map stage has nothing to wait for."""
    assert Stage("map", make_job(tmp_path, []).map_tasks()).done


def make_streaming_job(tmp_path, streaming, num_reducers=3, job_id=2):
    """Return a streaming Job (stamp 202601020304) over tmp_path."""
    shared = tmp_path / "shared"
    shared.mkdir(exist_ok=True)
    request = protocol.NewManagerJob(
        input_directory=str(tmp_path / "unused"),
        output_directory=str(tmp_path / "output"),
        mapper_executable="/opt/map.py", reducer_executable="/opt/red.py",
        num_mappers=2, num_reducers=num_reducers,
        streaming=protocol.Streaming(**streaming))
    return Job(job_id, request, str(shared), stamp="202601020304")


def test_input_paths_replace_the_input_directory(tmp_path):
    """Files as given, directories' regular files by name, in order."""
    (tmp_path / "d").mkdir()
    for name in ("b", "a"):
        (tmp_path / "d" / name).write_text(name)
    (tmp_path / "d" / "sub").mkdir()
    (tmp_path / "z").write_text("z")
    paths = [str(tmp_path / "z"), str(tmp_path / "d"), str(tmp_path / "z")]
    job = make_streaming_job(tmp_path, {"input_paths": paths})
    assert job.input_files() == [str(tmp_path / "z"),
                                 str(tmp_path / "d" / "a"),
                                 str(tmp_path / "d" / "b"),
                                 str(tmp_path / "z")]
    assert [task.input_paths for task in job.map_tasks()] == [
        [str(tmp_path / "z"), str(tmp_path / "d" / "b")],
        [str(tmp_path / "d" / "a"), str(tmp_path / "z")]]
    assert job.num_map_tasks == 2
    assert job.input_paths == paths


def test_streaming_tasks_carry_the_record_and_hadoop_variables(tmp_path):
    """Map tasks: combiner, partitioner, environment; reduce: environment.

    The attempt number is the task's latest assignment, counted from 0.
    """
    (tmp_path / "in").write_text("x\n")
    job = make_streaming_job(tmp_path, {
        "input_paths": [str(tmp_path / "in")], "combiner": "/opt/c",
        "partitioner": "/opt/p", "environment": {"A": "1",
                                                 "mapreduce_job_id": "x"}})
    (task,) = job.map_tasks()
    task.assigned += 1  # As the Scheduler does when it sends the task.
    record = task.message().streaming
    assert (record.input_paths, record.combiner, record.partitioner) == (
        [], "/opt/c", "/opt/p")
    environment = record.environment
    assert environment["A"] == "1"
    assert environment["mapreduce_job_id"] == "job_202601020304_0002"
    assert environment["mapreduce_task_attempt_id"] == \
        "attempt_202601020304_0002_m_000000_0"
    task.assigned = 3
    assert task.message().streaming.environment[
        "mapred_task_id"] == "attempt_202601020304_0002_m_000000_2"
    reduce = ReduceTask(job, 1, [])
    record = reduce.message().streaming
    assert (record.combiner, record.partitioner) == ("", "")
    assert record.environment["mapreduce_task_id"] == \
        "task_202601020304_0002_r_000001"
    assert record.environment["mapreduce_job_maps"] == "1"
    assert record.environment["mapreduce_job_reduces"] == "3"
    assert record.environment["mapreduce_task_ismap"] == "false"
    assert record.environment["mapred_output_dir"] == \
        str(tmp_path / "output")


def test_a_job_without_input_files_tells_its_tasks_so(tmp_path):
    """No input files: no map tasks, and `mapreduce_job_maps` is 0."""
    (tmp_path / "empty").mkdir()
    job = make_streaming_job(tmp_path,
                             {"input_paths": [str(tmp_path / "empty")]})
    assert job.map_tasks() == []
    environment = ReduceTask(job, 0, []).message().streaming.environment
    assert environment["mapreduce_job_maps"] == "0"


def test_a_map_only_task_writes_to_the_output_directory(tmp_path):
    """num_reducers 0: no partitions, the job's output directory."""
    (tmp_path / "in").write_text("x\n")
    job = make_streaming_job(tmp_path, {"input_paths": [str(tmp_path / "in")]},
                             num_reducers=0)
    assert job.map_only
    message = job.map_tasks()[0].message()
    assert (message.output_directory, message.num_partitions) == (
        str(tmp_path / "output"), 0)


def test_streaming_reduce_tasks_skip_empty_partitions(tmp_path):
    """Partitions whose every file is empty get no task; ids from 0."""
    job = make_streaming_job(tmp_path, {"environment": {"A": "1"}})
    os.makedirs(job.job_dir)
    for name, text in (("maptask00000-part00000", ""),
                       ("maptask00001-part00000", ""),
                       ("maptask00000-part00001", ""),
                       ("maptask00001-part00001", "k\t1\n"),
                       ("maptask00000-part00002", "j\t1\n"),
                       ("maptask00001-part00002", "")):
        with open(os.path.join(job.job_dir, name), "w",
                  encoding="utf-8") as file:
            file.write(text)
    tasks = job.reduce_tasks()
    assert [(task.task_id, [os.path.basename(path)
                            for path in task.input_paths])
            for task in tasks] == [
        (0, ["maptask00000-part00001", "maptask00001-part00001"]),
        (1, ["maptask00000-part00002", "maptask00001-part00002"])]


def test_a_streaming_jobs_repr_leaves_out_its_environment(tmp_path):
    """Input paths, combiner, partitioner shown; no environment value."""
    job = make_streaming_job(tmp_path, {
        "input_paths": ["/in"], "combiner": "/c",
        "environment": {"TOKEN": "secret"}})
    assert repr(job).endswith(
        "num_reducers=3, input_paths=['/in'], combiner='/c')")
    job = make_streaming_job(tmp_path, {"partitioner": "/p"})
    assert repr(job).endswith("num_reducers=3, partitioner='/p')")
    assert "secret" not in repr(job)
    assert job.is_streaming and not job.map_only
