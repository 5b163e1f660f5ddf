"""Scenarios across hosts: a Manager, three Workers and a client, each on a
host of its own in the network test bed (tests/netbed.py), running the
real commands, with hosts cut off from the network, powered off, their
tasks frozen, and an outsider attacking a signed cluster.

The timings are the commands' defaults: a Worker beats every 2 s, the
Manager declares it dead after 10 s of silence and tells a Worker it does
not know, which keeps beating for 4 s, to register again (`rejoin`), so
the scenarios with a long cut last a little over 15 s each (the zombie
scenario, which only needs a Worker marked dead, has a 3 s timeout).
Each prints what it measured ("[netbed] ...": the time to notice a cut,
to register again after a heal or a Manager restart, the job's time);
the bounds asserted are only those the issue states: a healed Worker,
or one whose Manager restarted, registers within REJOIN_WITHIN seconds.

Needs root and `ip`; elsewhere every test here skips with one line.
"""

import contextlib
import dataclasses
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from bench.chaos_runs import check_assignments
from mapreduce.localcluster import (
    command, output_lines, pipeline_output, wait_for,
)
from tests.netbed import (
    Bed, BedError, bed_namespaces, running, sweep, unavailable,
)
from tests.netbed_cluster import (
    BedCluster, BedClusterOptions, JobSpec, remote_worker,
)
from tests.netbed_outsider import Outsider, Recorder, pwn_script, write_secret
from tests.util import EXEC, TESTDATA

REASON = unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

WORKERS = ("worker1", "worker2", "worker3")
DEAD_TIMEOUT = 10.0  # The Manager's, fixed by its CLI.
BEAT = 2.0  # The Worker's heartbeat interval, fixed by its CLI.
# A healed Worker, or one whose Manager restarted, registers within this.
REJOIN_WITHIN = 10.0


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


@contextlib.contextmanager
def running_cluster(bed, workdir, **options):
    """Run a cluster in `bed` (BedClusterOptions `options`); stop it after.

    The gated executables find their markers in `workdir`/markers.
    """
    marker_dir = workdir / "markers"
    marker_dir.mkdir()
    cluster = BedCluster(bed, workdir, BedClusterOptions(
        env={"C_MARKER_DIR": str(marker_dir)}, **options))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(name="cluster")
def fixture_cluster(bed, tmp_path):
    """Give a running cluster in the bed, with the default timings."""
    with running_cluster(bed, tmp_path) as cluster:
        yield cluster


@pytest.fixture(name="quick_cluster")
def fixture_quick_cluster(bed, tmp_path):
    """Give a cluster that marks a Worker dead after 3 s of silence.

    For a scenario that needs a Worker marked dead, not the time it takes.
    """
    with running_cluster(bed, tmp_path,
                         manager_settings={"heartbeat_timeout": 3},
                         worker_settings={"heartbeat_interval": 0.5}) \
            as cluster:
        yield cluster


@pytest.fixture(name="signed_cluster")
def fixture_signed_cluster(bed, tmp_path):
    """Give a running cluster in the bed whose every command has a secret."""
    with running_cluster(bed, tmp_path, secret_file=write_secret(
            tmp_path / "secret.key")) as cluster:
        yield cluster


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


def seconds_to(cluster, pattern, since, within=REJOIN_WITHIN):
    """Wait for a Manager's log line, at most `within` s after `since`.

    Returns the seconds from `since` to the first such line.
    """
    found = cluster.log("manager").wait(
        pattern, since=since,
        timeout=max(0.0, since + within - time.monotonic()))
    return found[0][0] - since


def back_in_use(cluster, host, healed):
    """Wait for `host` to register again and get a task after its heal.

    Returns (seconds from the heal to its registration, to its next
    assignment). Both must come within REJOIN_WITHIN seconds.
    """
    worker = remote_worker(address(cluster, host))
    return (seconds_to(cluster, rf"Registered {worker}", healed),
            seconds_to(cluster, rf"Assigned .* to {worker}", healed))


@dataclasses.dataclass
class CutFigures:
    """What a long cut measured, in seconds."""

    to_notice: float = 0.0  # From the cut to `Marked ... dead`.
    to_register: float = 0.0  # From the heal to `Registered ...`.
    to_assign: float = 0.0  # From the heal to its next `Assigned ...`.
    job: float = 0.0

    def line(self, stage):
        """Return the figures as a line of the test's output."""
        return (f"[netbed] long cut, {stage} stage: noticed after "
                f"{self.to_notice:.1f}s; healed: registered again after "
                f"{self.to_register:.1f}s, next task after "
                f"{self.to_assign:.1f}s; job {self.job:.1f}s")


def long_cut(cluster, kind, job):
    """Cut worker2 off while it holds a gated task; see the task move.

    The Manager marks worker2 dead and takes its task back; the others
    hold their gated tasks, so the task waits. Once worker2 is healed it
    is told to rejoin, registers again and gets work; then the gate opens
    and the job ends. Returns the CutFigures.
    """
    log = cluster.log("manager")
    figures = CutFigures()
    started = run_job(cluster, job)
    marker = "map" if kind == "MapTask" else "reduce"
    wait_for(lambda: len(gated(cluster, marker)) == 3,
             what=f"every Worker to hold a gated {marker} task")
    task = held_by(cluster, "worker2", kind)
    worker2 = remote_worker(address(cluster, "worker2"))
    cut = time.monotonic()
    cluster.bed.cut("worker2")
    figures.to_notice = seconds_to(cluster, rf"Marked {worker2} dead", cut,
                                   DEAD_TIMEOUT + 5)
    log.wait(rf"Took {re.escape(task)} back from {worker2}", timeout=10)
    healed = time.monotonic()
    cluster.bed.heal("worker2")
    figures.to_register, figures.to_assign = back_in_use(
        cluster, "worker2", healed)
    release(cluster)
    figures.job = finish(cluster, job, started)
    assert check_assignments(log.texts()).reassigned == 1
    assert len(log.grep(rf"finished {re.escape(task)}")) == 1
    # Silence counts from the last beat before the cut, up to a beat earlier.
    assert figures.to_notice >= DEAD_TIMEOUT - BEAT
    return figures


def test_long_cut_in_map_stage(cluster):
    """A Worker host cut off past the dead timeout in the map stage.

    The Manager marks it dead and takes its map task back; healed, the
    Worker rejoins within a few seconds and is given work again, and the
    result is right.
    """
    job = job_in(cluster, "c_gated_map.sh", mappers=3, reducers=2)
    print(long_cut(cluster, "MapTask", job).line("map"))


def test_long_cut_in_reduce_stage(cluster):
    """The same in the reduce stage: its reduce task moves; output right."""
    job = job_in(cluster, reducer="c_gated_reduce.sh", mappers=3,
                 reducers=3)
    print(long_cut(cluster, "ReduceTask", job).line("reduce"))


def local_dir_of(cluster, task):
    """Return the local directory of map task `task` (as the log names it).

    A Worker makes `mapreduce-local-taskTTTTT-*` in its temporary
    directory for each task it runs.
    """
    task_id = int(re.search(r"task_id=(\d+)", task).group(1))
    found = list((cluster.workdir / "tmp").glob(
        f"mapreduce-local-task{task_id:05d}-*"))
    assert len(found) == 1, found
    return found[0]


def test_host_reboot_mid_task(cluster):
    """A Worker host powered off mid-task and booted again at its address.

    Every process on it dies (the Worker and its mapper), leaving the
    task's local directory behind; the new Worker sweeps it at start, but
    not those of the Workers running on the other hosts (the bed's hosts
    share one temporary directory, as Workers on one machine do). It
    registers again, the Manager takes the task back and the job's result
    is right.
    """
    log = cluster.log("manager")
    job = job_in(cluster, "c_gated_map.sh", mappers=3, reducers=2)
    started = run_job(cluster, job)
    wait_for(lambda: len(gated(cluster, "map")) == 3,
             what="every Worker to hold a gated map task")
    task = held_by(cluster, "worker2", "MapTask")
    local = {host: local_dir_of(cluster, held_by(cluster, host, "MapTask"))
             for host in WORKERS}
    cluster.bed.power_off("worker2")
    assert not cluster.bed.pids("worker2")
    assert local["worker2"].exists()
    booted = time.monotonic()
    cluster.start_worker("worker2")
    worker2 = remote_worker(address(cluster, "worker2"))
    log.wait(rf"Registered {worker2} again \(it was busy\)", since=booted)
    log.wait(rf"Took {re.escape(task)} back from {worker2}", timeout=10)
    # The sweep runs beside the registration; its line may come after.
    cluster.log("worker2").wait(
        rf"Removed .*{re.escape(local['worker2'].name)}", timeout=10)
    assert not local["worker2"].exists()
    assert local["worker1"].exists() and local["worker3"].exists()
    release(cluster)
    seconds = finish(cluster, job, started)
    assert check_assignments(log.texts()).reassigned == 1
    print(f"[netbed] host reboot mid-task: re-registered after "
          f"{time.monotonic() - booted:.1f}s from boot; job {seconds:.1f}s")


def test_manager_killed_and_restarted(cluster):
    """The Manager host crashes mid-job and the Manager starts again.

    Killed with SIGKILL while every Worker holds a gated map task, the
    Manager is started again on its host and port. The Workers, still
    beating, are told to register again and do so by themselves; the new
    Manager sweeps the shared directory the old one left, and a new job
    completes on all three.
    """
    log = cluster.log("manager")
    old_dirs = sorted((cluster.workdir / "shared").glob("mapreduce-shared-*"))
    assert len(old_dirs) == 1
    cluster.submit_job(job_in(cluster, "c_gated_map.sh", mappers=3))
    wait_for(lambda: len(gated(cluster, "map")) == 3,
             what="every Worker to hold a gated map task")
    cluster.bed.power_off("manager")
    cluster.processes["manager"].wait()
    killed = time.monotonic()
    cluster.start_manager()
    listening = log.wait(r"Listening on", since=killed)[0][0]
    to_register = [seconds_to(cluster, rf"Registered "
                              rf"{remote_worker(address(cluster, host))}",
                              listening) for host in WORKERS]
    log.wait(rf"Removed .*{re.escape(old_dirs[0].name)}", since=killed,
             timeout=10)
    assert not old_dirs[0].exists()
    release(cluster)  # Whatever was left of the gated mappers may end.
    job = job_in(cluster, mappers=6, reducers=3)
    seconds = finish(cluster, job, run_job(cluster, job))
    for host in WORKERS:
        assert log.grep(rf"Assigned .* to "
                        rf"{remote_worker(address(cluster, host))}",
                        since=listening)
    print(f"[netbed] Manager killed and restarted: listening after "
          f"{listening - killed:.1f}s; Workers registered again after "
          + ", ".join(f"{t:.1f}s" for t in to_register)
          + f" (from listening); old shared directory swept; new job "
          f"{seconds:.1f}s")


def freeze_tasks(cluster, host):
    """Stop (SIGSTOP) every process on `host` but its Worker; return them.

    As a task's file operations hang on a network file system cut off
    with its host, the task's processes make no progress; its Worker runs
    on. Stops until no new process appears (a shell may fork meanwhile).
    """
    worker = cluster.processes[host].pid
    frozen = set()
    while True:
        found = set(cluster.bed.pids(host)) - {worker} - frozen
        if not found:
            return frozen
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        frozen |= found


def thaw(pids):
    """Let stopped processes go on (SIGCONT)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def snapshot(directory):
    """Return {name: (inode, mtime_ns, bytes)} of the files in a directory."""
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns,
                        path.read_bytes())
            for path in sorted(pathlib.Path(directory).iterdir())}


def test_zombie_reduce_task_cannot_touch_a_later_job(quick_cluster):
    """A Worker cut off during a reduce task comes back after later jobs.

    worker2 is cut off while running a gated reduce task, with its task's
    processes frozen (the file system is gone with the network). The
    Manager marks it dead and the task runs elsewhere; job 1 ends, then
    job 2, over other input, replaces the same output directory. Healed
    and thawed, the zombie's reducer ends and its Worker places the part
    file through the directory it opened for job 1, which is gone: job 2's
    output stays exactly right, its files untouched. (A cluster with a
    3 s dead timeout: the scenario needs worker2 marked dead, no more.)
    """
    cluster = quick_cluster
    log = cluster.log("manager")
    worker2 = remote_worker(address(cluster, "worker2"))
    job1 = job_in(cluster, reducer="c_gated_reduce.sh", mappers=3,
                  reducers=3)
    started = run_job(cluster, job1)
    wait_for(lambda: len(gated(cluster, "reduce")) == 3,
             what="every Worker to hold a gated reduce task")
    held_by(cluster, "worker2", "ReduceTask")
    frozen = freeze_tasks(cluster, "worker2")
    assert frozen, "worker2 runs no task process"
    try:
        cut = time.monotonic()
        cluster.bed.cut("worker2")
        log.wait(rf"Marked {worker2} dead", timeout=30, since=cut)
        release(cluster)
        finish(cluster, job1, started)
        other_input = cluster.workdir / "input2"
        other_input.mkdir()
        (other_input / "words").write_text("zombie words never land\n"
                                           "only the living words land\n")
        job2 = JobSpec(other_input, job1.output, EXEC / "wc_map.sh",
                       EXEC / "wc_reduce.sh", mappers=2, reducers=3)
        finish(cluster, job2, run_job(cluster, job2))
        before = snapshot(job2.output)
        healed = time.monotonic()
        cluster.bed.heal("worker2")
    finally:
        thaw(frozen)
    wait_for(lambda: not set(cluster.bed.pids("worker2")) & frozen,
             what="the zombie's reducer to end")
    to_register = seconds_to(cluster, rf"Registered {worker2}", healed)
    # The zombie did try: its reducer ended, and placing its part failed.
    cluster.log("worker2").wait(r"failed: cannot move part-", since=healed,
                                timeout=10)
    assert snapshot(job2.output) == before
    assert output_lines(job2.output) == expected(job2)
    print(f"[netbed] zombie reduce task: cut {healed - cut:.1f}s, through "
          f"2 jobs; healed: registered again after "
          f"{to_register:.1f}s; the later job's output untouched")


REFUSED = r"Refused a message from 10\.77\.0\.200:"


def attack(cluster, outsider, captured):
    """Have the outsider try everything it can while a job runs.

    Returns {host: how many refusals its log must show}. (A process logs
    at most 10 refusals a minute, then counts them: the Manager gets 9.)
    """
    outsider.replay("manager", captured)
    outsider.replay("worker1", captured)
    trophies = cluster.workdir / "trophies"
    trophies.mkdir()
    pwn = pwn_script(cluster.workdir / "pwn.sh", trophies)
    job = JobSpec(TESTDATA / "input", cluster.workdir / "pwned", pwn, pwn)
    submitted = [outsider.submit(job), outsider.submit(
        job, outsider.directory / "wrong.key")]
    assert all(result.returncode != 0 for result in submitted), submitted
    outsider.task_to_worker("worker1", pwn, TESTDATA / "input" / "file01",
                            cluster.workdir / "pwned")
    outsider.heartbeat("worker1")
    task_id = int(re.search(r"task_id=(\d+)", held_by(
        cluster, "worker1", "MapTask")).group(1))
    outsider.finished("worker1", task_id)
    for host in ("manager", *WORKERS):
        outsider.shutdown(host)
    return {"manager": 1 + 2 + 2 + 2 + 2, "worker1": 1 + 2 + 2,
            "worker2": 2, "worker3": 2}


def test_outsider_can_do_nothing_to_a_signed_cluster(signed_cluster):
    """An outsider reaching every port of a signed cluster achieves nothing.

    A real client submits a gated job through a recorder on the client
    host (so the test holds the exact bytes of a signed message that
    reached the Manager). While every Worker holds a map task, the
    outsider submits jobs (no secret, a wrong one), sends a task to a
    Worker, forges heartbeats, a `finished` and a `shutdown` to every
    process, and replays the captured job to the Manager and a Worker.
    Nothing runs, nothing stops, the job is not run twice, the Workers
    keep their tasks, every log shows its refusals, and the job's
    result is right.
    """
    cluster = signed_cluster
    log = cluster.log("manager")
    recorder = Recorder(cluster.bed, "client", 7000,
                        cluster.workdir / "captured")
    job = job_in(cluster, "c_gated_map.sh", mappers=3, reducers=2)
    relayed = subprocess.run(cluster.bed.command("client", [
        command("mapreduce-submit"), "--host", address(cluster, "client"),
        "--port", 7000, *cluster.options.secret_options(),
        *job.arguments()]), capture_output=True, text=True, check=False,
        timeout=60)
    assert relayed.returncode == 0, relayed.stderr
    captured = recorder.captured()
    wait_for(lambda: len(gated(cluster, "map")) == 3,
             what="every Worker to hold a gated map task")
    log.poll()  # Lines written before the attack are stamped before it.
    attacked = time.monotonic()
    outsider = Outsider(cluster.bed, cluster.workdir / "outsider")
    refusals = attack(cluster, outsider, captured)
    for host, count in refusals.items():
        cluster.log(host).wait(REFUSED, count=count, since=0, timeout=10)
    lasted = time.monotonic() - attacked
    assert log.grep(REFUSED + r".*replayed")
    assert cluster.log("worker1").grep(REFUSED + r".*meant for 'manager'")
    assert all(process.poll() is None
               for process in cluster.processes.values())
    assert not list((cluster.workdir / "trophies").iterdir())
    assert not (cluster.workdir / "pwned").exists()
    assert len(log.grep(r"Received Job")) == 1
    assert not log.grep(r"\) finished |Marked|Registered|Took|Shutting down"
                        r"|Received Job", since=attacked)
    release(cluster)
    log.wait(r"Finished Job", timeout=60)
    assert output_lines(job.output) == expected(job)
    assert check_assignments(log.texts()).reassigned == 0
    # A task let in would have waited behind worker1's gated one, then run
    # before the job's end: each Worker ran exactly what the Manager sent.
    for host in WORKERS:
        worker = remote_worker(address(cluster, host))
        assert len(cluster.log(host).grep(r"Running \w+ task")) == len(
            log.grep(rf"Assigned .* to {worker}")), host
    assert not list((cluster.workdir / "trophies").iterdir())
    print(f"[netbed] outsider against a signed cluster: {outsider.sent} "
          f"forged or replayed messages and 2 submits in {lasted:.1f}s, "
          "every one refused and logged (" + ", ".join(
              f"{host} {len(cluster.log(host).grep(REFUSED))}"
              for host in refusals) + "); nothing ran, nothing stopped, "
          "the job's output right")


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
