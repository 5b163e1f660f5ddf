"""Scenarios across hosts: a Manager, three Workers and a client, each on a
host of its own in the network test bed (tests/netbed.py), running the
real commands, with hosts cut off from the network and powered off.

The timings are the commands' own: a Worker beats every 2 s, the Manager
declares it dead after 10 s of silence (the CLIs have no option for
them), so the scenarios with a cut last a little over 10 s each. Each
prints what it measured (time to notice a cut, the job's time).

Needs root and `ip`; elsewhere every test here skips with one line.
"""

import re
import subprocess
import sys
import time

import pytest

from bench.chaos_runs import check_assignments
from mapreduce.localcluster import output_lines, pipeline_output, wait_for
from tests.netbed import Bed, BedError, bed_namespaces, sweep, unavailable
from tests.netbed_cluster import (
    BedCluster, BedClusterOptions, JobSpec, remote_worker,
)
from tests.util import EXEC, TESTDATA

REASON = unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

WORKERS = ("worker1", "worker2", "worker3")
DEAD_TIMEOUT = 10.0  # The Manager's, fixed by its CLI.
BEAT = 2.0  # The Worker's heartbeat interval, fixed by its CLI.


def make_bed(workers):
    """Make a bed, after sweeping; skip the test if this machine cannot."""
    sweep()
    bed = Bed(workers=workers)
    try:
        return bed.create()
    except BedError as exc:
        pytest.skip(f"cannot make network namespaces here: {exc}")
        raise  # Not reached: skip() raises.


@pytest.fixture(name="bed")
def fixture_bed():
    """Give a bed of 3 Worker hosts; remove it and its processes after."""
    bed = make_bed(len(WORKERS))
    try:
        yield bed
    finally:
        bed.destroy()


@pytest.fixture(name="cluster")
def fixture_cluster(bed, tmp_path):
    """Give a running cluster in the bed; shut it down after."""
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    cluster = BedCluster(bed, tmp_path, BedClusterOptions(
        env={"C_MARKER_DIR": str(marker_dir)}))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def job_in(cluster, mapper="wc_map.sh", reducer="wc_reduce.sh", **counts):
    """Return a JobSpec over the test input, output in the work dir."""
    return JobSpec(TESTDATA / "input", cluster.workdir / "output",
                   EXEC / mapper, EXEC / reducer, **counts)


def expected(job):
    """Return the shell pipeline's answer for word count over `job`'s input.

    The gated executables are word count once the gate opens.
    """
    return pipeline_output(job.input, EXEC / "wc_map.sh",
                           EXEC / "wc_reduce.sh")


def gated(cluster, kind):
    """Return the marker files the gated executables left so far."""
    return list((cluster.workdir / "markers").glob(f"{kind}-started-*"))


def release(cluster):
    """Let the gated executables go on."""
    (cluster.workdir / "markers" / "go").touch()


def address(cluster, host):
    """Return the address of `host` in the cluster's bed."""
    return cluster.bed.host(host).address


def heartbeat_of(cluster, host):
    """Return the pattern of a heartbeat from `host` in the Manager's log."""
    return (rf"Received Heartbeat\(worker_host='{address(cluster, host)}', "
            r"worker_port=6001\)")


def run_job(cluster, job):
    """Submit `job` and follow it; return the moment it was submitted.

    `mapreduce-submit --wait` follows it to its end (the status API).
    """
    started = time.monotonic()
    cluster.following = cluster.follow_job(job)
    return started


def finish(cluster, job, started):
    """Wait for the job's end; check its output; return the job's time."""
    cluster.job_outcome(cluster.following, timeout=90)
    seconds = time.monotonic() - started
    parts = sorted(path.name for path in job.output.iterdir())
    assert parts == [f"part-{r:05d}" for r in range(job.reducers)]
    assert output_lines(job.output) == expected(job)
    return seconds


def held_by(cluster, host, kind):
    """Return the task `host` was assigned, as the Manager's log names it."""
    worker = remote_worker(address(cluster, host))
    lines = cluster.log("manager").grep(
        rf"Assigned ({kind}\([^)]*\)) to {worker}")
    assert len(lines) == 1, lines
    return lines[0][1].split("Assigned ", 1)[1].split(" to ", 1)[0]


def test_word_count_across_hosts(cluster):
    """One Manager and three Worker hosts give the pipeline's answer."""
    job = job_in(cluster, mappers=6, reducers=3)
    seconds = finish(cluster, job, run_job(cluster, job))
    for host in WORKERS:  # Every host did its share, at its own address.
        assert cluster.log("manager").grep(
            rf"Assigned MapTask.* to {remote_worker(address(cluster, host))}")
    print(f"[netbed] word count, 3 Worker hosts: job {seconds:.2f}s")


def test_short_cut_reassigns_nothing(cluster):
    """A Worker host cut off for less than the dead timeout keeps its task.

    The cut lasts until the other Workers have each beaten twice more
    (about 4 s) and the cut one not once; after healing, its beats arrive
    again, and the job ends with every task assigned exactly once.
    """
    log = cluster.log("manager")
    job = job_in(cluster, "c_gated_map.sh", mappers=3, reducers=2)
    started = run_job(cluster, job)
    wait_for(lambda: len(gated(cluster, "map")) == 3,
             what="every Worker to hold a gated map task")
    cut = time.monotonic()
    cluster.bed.cut("worker2")
    for host in ("worker1", "worker3"):
        log.wait(heartbeat_of(cluster, host), count=2, since=cut)
    assert not log.grep(heartbeat_of(cluster, "worker2"), since=cut + 0.5)
    cluster.bed.heal("worker2")
    log.wait(heartbeat_of(cluster, "worker2"), since=time.monotonic())
    silent = time.monotonic() - cut
    release(cluster)
    seconds = finish(cluster, job, started)
    lines = log.texts()
    assert not [line for line in lines if "Marked" in line
                or "Took" in line], "a Worker was given up on"
    replay = check_assignments(lines)
    assert (replay.assignments, replay.reassigned) == (5, 0)
    print(f"[netbed] short cut: worker2 silent about {silent:.1f}s "
          f"(dead timeout {DEAD_TIMEOUT:g}s), nothing reassigned; job "
          f"{seconds:.2f}s")


def long_cut(cluster, kind, job):
    """Cut worker2 off while it holds a gated task; see the task move.

    Returns (seconds from the cut to `Marked ... dead`, the job's time).
    """
    log = cluster.log("manager")
    started = run_job(cluster, job)
    marker = "map" if kind == "MapTask" else "reduce"
    wait_for(lambda: len(gated(cluster, marker)) == 3,
             what=f"every Worker to hold a gated {marker} task")
    task = held_by(cluster, "worker2", kind)
    worker2 = remote_worker(address(cluster, "worker2"))
    cut = time.monotonic()
    cluster.bed.cut("worker2")
    noticed = log.wait(rf"Marked {worker2} dead", timeout=30, since=cut)
    to_notice = noticed[0][0] - cut
    assert log.grep(rf"Took {re.escape(task)} back from {worker2}")
    cluster.bed.heal("worker2")
    release(cluster)
    seconds = finish(cluster, job, started)
    replay = check_assignments(log.texts())
    assert replay.reassigned == 1
    moved = log.grep(rf"finished {re.escape(task)}")
    assert len(moved) == 1
    assert address(cluster, "worker2") not in moved[0][1]
    # Silence counts from the last beat before the cut, up to a beat earlier.
    assert DEAD_TIMEOUT - BEAT <= to_notice < DEAD_TIMEOUT + 5
    return to_notice, seconds


def test_long_cut_in_map_stage(cluster):
    """A Worker host cut off past the dead timeout in the map stage.

    The Manager marks it dead, another Worker runs its map task, and after
    healing (the cut Worker's own copy of the task ends too, late) the
    result is still right.
    """
    job = job_in(cluster, "c_gated_map.sh", mappers=3, reducers=2)
    to_notice, seconds = long_cut(cluster, "MapTask", job)
    print(f"[netbed] long cut, map stage: noticed after {to_notice:.1f}s; "
          f"job {seconds:.1f}s")


def test_long_cut_in_reduce_stage(cluster):
    """The same in the reduce stage: its reduce task moves; output right."""
    job = job_in(cluster, reducer="c_gated_reduce.sh", mappers=3,
                 reducers=3)
    to_notice, seconds = long_cut(cluster, "ReduceTask", job)
    print(f"[netbed] long cut, reduce stage: noticed after "
          f"{to_notice:.1f}s; job {seconds:.1f}s")


def test_host_reboot_mid_task(cluster):
    """A Worker host powered off mid-task and booted again at its address.

    Every process on it dies (the Worker and its mapper); the new Worker
    registers again, the Manager takes the task back and the job's result
    is right.
    """
    log = cluster.log("manager")
    job = job_in(cluster, "c_gated_map.sh", mappers=3, reducers=2)
    started = run_job(cluster, job)
    wait_for(lambda: len(gated(cluster, "map")) == 3,
             what="every Worker to hold a gated map task")
    task = held_by(cluster, "worker2", "MapTask")
    cluster.bed.power_off("worker2")
    assert not cluster.bed.pids("worker2")
    booted = time.monotonic()
    cluster.start_worker("worker2")
    worker2 = remote_worker(address(cluster, "worker2"))
    log.wait(rf"Registered {worker2} again \(it was busy\)", since=booted)
    assert log.grep(rf"Took {re.escape(task)} back from {worker2}")
    release(cluster)
    seconds = finish(cluster, job, started)
    assert check_assignments(log.texts()).reassigned == 1
    print(f"[netbed] host reboot mid-task: re-registered after "
          f"{time.monotonic() - booted:.1f}s from boot; job {seconds:.1f}s")


def running(pid):
    """Tell whether process `pid` runs (exists and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            return file.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_bed_cuts_and_heals_a_host(bed):
    """A cut host is unreachable, a healed one reachable; others unharmed."""
    worker1 = bed.host("worker1").address
    with subprocess.Popen(bed.command("worker1", [
            sys.executable, "-m", "http.server", "--bind", worker1,
            "8000"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        wait_for(lambda: bed.reaches("client", worker1, 8000),
                 what="the listener on worker1")
        assert bed.reaches("outsider", worker1, 8000)
        bed.cut("worker1")
        assert bed.is_cut("worker1") and not bed.is_cut("client")
        assert not bed.reaches("client", worker1, 8000)
        bed.heal("worker1")
        wait_for(lambda: bed.reaches("client", worker1, 8000),
                 what="worker1 to be reachable again")
        bed.power_off("worker1")
    assert not bed.pids("worker1")


def test_bed_leaves_nothing_behind():
    """Leaving a bed by an exception removes it and what ran in it; a
    sweep removes the bed of a dead owner (processes too), not a live one's.
    """
    make_bed(1).destroy()  # Or skip here.
    with pytest.raises(RuntimeError), Bed(workers=1) as bed:
        orphan_pid = int(subprocess.run(
            bed.command("worker1",
                        ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"]),
            capture_output=True, check=True, timeout=30).stdout)
        assert bed.pids("worker1") == [orphan_pid]
        raise RuntimeError("a failing test")
    assert not [n for n in bed_namespaces() if bed.tag in n]
    assert not running(orphan_pid)
    with subprocess.Popen(["true"]) as gone:
        gone.wait()
    orphan = Bed(workers=1, owner=gone.pid).create()
    mine = Bed(workers=1).create()
    try:
        with subprocess.Popen(orphan.command("worker1", ["sleep", "60"])) \
                as sleeper:
            removed = sweep()
            assert sleeper.wait(10) == -9
        assert set(removed) == {orphan.switch, *(
            host.namespace for host in orphan.hosts.values())}
        assert removed[-1] == orphan.switch  # Hosts first.
        assert not orphan.exists() and mine.exists()
    finally:
        orphan.destroy()
        mine.destroy()
