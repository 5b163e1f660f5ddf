"""The job-level variables Hadoop Streaming gives every task attempt.

Hadoop exports its job configuration to a streaming program's
environment, with dots made underscores: `mapreduce.task.id` becomes
`mapreduce_task_id`. The Manager knows the job-level ones (the job, the
task, the attempt, the counts of tasks, the directories) and puts them,
under their current and their older (`mapred_*`) names, in the
`environment` of every task of a streaming job. What only a Worker knows
(the input file a mapper reads) the Worker adds.

Identifiers have Hadoop's shapes: `job_<stamp>_<job>`,
`task_<stamp>_<job>_m_<task>`, `attempt_<stamp>_<job>_m_<task>_<n>`,
where the stamp is the Manager's start time (`YYYYMMDDhhmm`), the job id
has at least four digits and the task id six, `m` is a map task and `r`
a reduce task, and `n` counts the attempts at the task from 0.
"""

import dataclasses
import time


def cluster_stamp(now=None):
    """Return the identifier of a Manager started at `now` (epoch s)."""
    return time.strftime("%Y%m%d%H%M", time.localtime(now))


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One attempt at one task: what its variables are made of."""

    stamp: str      # The Manager's cluster_stamp.
    job_id: int
    is_map: bool
    task_id: int
    attempt: int    # 0 for the first attempt at the task.


def job_ident(stamp, job_id):
    """Return Hadoop's job id, e.g. `job_202611241120_0003`."""
    return f"job_{stamp}_{job_id:04d}"


def task_ident(attempt):
    """Return Hadoop's task id, e.g. `task_202611241120_0003_m_000002`."""
    kind = "m" if attempt.is_map else "r"
    return (f"task_{attempt.stamp}_{attempt.job_id:04d}_{kind}_"
            f"{attempt.task_id:06d}")


def attempt_ident(attempt):
    """Return Hadoop's attempt id: the task id's, then `_<attempt>`."""
    return "attempt" + task_ident(attempt)[len("task"):] + \
        f"_{attempt.attempt}"


@dataclasses.dataclass(frozen=True)
class JobFacts:
    """What every task of a job is told about the job."""

    num_maps: int
    num_reduces: int
    input_paths: tuple
    output_directory: str


def variables(attempt, facts):
    """Return the job-level variables of one task attempt (str -> str)."""
    values = {
        ("mapreduce_job_id", "mapred_job_id"):
            job_ident(attempt.stamp, attempt.job_id),
        ("mapreduce_task_id", "mapred_tip_id"): task_ident(attempt),
        ("mapreduce_task_attempt_id", "mapred_task_id"):
            attempt_ident(attempt),
        ("mapreduce_task_partition", "mapred_task_partition"):
            str(attempt.task_id),
        ("mapreduce_task_ismap", "mapred_task_is_map"):
            "true" if attempt.is_map else "false",
        ("mapreduce_job_maps", "mapred_map_tasks"): str(facts.num_maps),
        ("mapreduce_job_reduces", "mapred_reduce_tasks"):
            str(facts.num_reduces),
        ("mapreduce_input_fileinputformat_inputdir", "mapred_input_dir"):
            ",".join(facts.input_paths),
        ("mapreduce_output_fileoutputformat_outputdir", "mapred_output_dir"):
            facts.output_directory,
    }
    return {name: value for names, value in values.items()
            for name in names}
