"""The benchmark's clusters and jobs: timing on top of mapreduce.localcluster.

A cluster is the harness's `ProcessCluster` (the console commands as
processes, free ports, its own log files and shared directory); this
module adds what only the benchmark needs: submitting as a user would
(the `mapreduce-submit` command) or as a program does (`client.submit`),
timing a job to its last part file and to its end (reported by the
Manager's status API), and reading a process's CPU time and peak memory.
"""

import os
import pathlib
import secrets
import subprocess
import time

from mapreduce import client
from mapreduce.localcluster import (
    ProcessCluster, ProcessSettings, WaitTimeout, command, job,
    peak_memory_kib,
)

POLL = 0.001


def start_cluster(directory, workers=2, secret_file=None):
    """Return a ProcessCluster (not started yet) working in `directory`.

    With `secret_file`, every process and client signs with its secret.
    """
    return ProcessCluster(ProcessSettings(pathlib.Path(directory),
                                          workers=workers,
                                          secret_file=secret_file))


def make_secret_file(path):
    """Write a fresh random secret to `path` (mode 600); return the path."""
    path = pathlib.Path(path)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(secrets.token_hex(32) + "\n")
    return path


def wait_until(condition, timeout, what):
    """Poll `condition()` every millisecond until true; return the time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for "
                              f"{what}")
        time.sleep(POLL)
    return time.monotonic()


def peak_rss_mb(pid):
    """Return the peak resident set size (VmHWM) of `pid`, in MB."""
    return peak_memory_kib(pid) / 1024


def submit_cli(cluster, new_job):
    """Submit `new_job` with the `mapreduce-submit` command; fail if it fails.

    The command returns once the Manager acknowledged the job.
    """
    subprocess.run([
        command("mapreduce-submit"), "--port", str(cluster.port),
        "--input", new_job.input_directory,
        "--output", new_job.output_directory,
        "--mapper", new_job.mapper_executable,
        "--reducer", new_job.reducer_executable,
        "--nmappers", str(new_job.num_mappers),
        "--nreducers", str(new_job.num_reducers)],
        check=True, stdout=subprocess.DEVNULL)


def submit_message(cluster, new_job):
    """Submit `new_job` as a program does (`client.submit`)."""
    client.submit(cluster.address, new_job)


def _failed(summary):
    """Raise RuntimeError if the job in `summary` ended without finishing."""
    if summary["state"] in client.ENDED and summary["state"] != "finished":
        raise RuntimeError(f"job {summary['job_id']} {summary['state']}: "
                           f"{summary['reason']}")


class PartsWatch:
    """Tells when every part file of a job is there; fails if it cannot be.

    Looks at the files at every call, and asks the Manager about the job
    at most every CHECK_EVERY seconds (a failed job makes no part files).
    """

    CHECK_EVERY = 0.25

    def __init__(self, cluster, job_id, output_dir):
        """Watch job `job_id` of `cluster`, which writes into `output_dir`."""
        self.cluster = cluster
        self.job_id = job_id
        summary = client.job_state(cluster.address, job_id)[1]
        self.names = [os.path.join(output_dir, f"part-{r:05d}")
                      for r in range(summary["num_reducers"])]
        self.next_check = time.monotonic() + self.CHECK_EVERY

    def __call__(self):
        """Tell whether every part file is there."""
        if all(map(os.path.exists, self.names)):
            return True
        if time.monotonic() > self.next_check:
            if self.cluster.manager.poll() is not None:
                raise RuntimeError("the Manager died; see "
                                   f"{self.cluster.manager_log}")
            _failed(client.job_state(self.cluster.address, self.job_id)[1])
            self.next_check = time.monotonic() + self.CHECK_EVERY
        return False


def wait_job(cluster, job_id, output_dir, timeout):
    """Wait for job `job_id`; return (parts_time, finished_time).

    `parts_time` is when the last part file appeared in `output_dir`;
    `finished_time` is when the Manager's status API said that the job
    finished. Both are time.monotonic(). A job that does not finish, and
    a Manager that dies, are RuntimeErrors.
    """
    parts = wait_until(PartsWatch(cluster, job_id, output_dir), timeout,
                       f"job {job_id}'s part files")
    summary = client.wait_for_job(cluster.address, job_id, timeout)
    finished = time.monotonic()
    _failed(summary)
    return parts, finished


def bench_job(paths, executables, nmappers, nreducers):
    """Return the NewManagerJob of (input_dir, output_dir) `paths`."""
    return job(*paths, executables, num_mappers=nmappers,
               num_reducers=nreducers)
