"""The file-name contract between the Manager and the Workers.

One job's files live in `job-NNNNN` under the shared directory; map task
T writes `maptaskTTTTT-partPPPPP` there for every partition P; reduce task
R writes `part-RRRRR` into the job's output directory (and in a map-only
job, map task T writes `part-TTTTT` there). A task's scratch
files live in a temporary directory whose name starts with
`mapreduce-local-taskTTTTT-`.
"""

import fnmatch


def job_dir_name(job_id):
    """Return the name of job `job_id`'s directory in the shared directory."""
    return f"job-{job_id:05d}"


def map_output_name(task_id, partition):
    """Return the name of map task `task_id`'s file for `partition`."""
    return f"maptask{task_id:05d}-part{partition:05d}"


def map_outputs_pattern(partition):
    """Return the glob pattern of every map task's file for `partition`."""
    return f"maptask*-part{partition:05d}"


def map_outputs_of(names, partition):
    """Return the names among `names` that are map outputs of `partition`."""
    return fnmatch.filter(names, map_outputs_pattern(partition))


def reduce_output_name(task_id):
    """Return the name of reduce task `task_id`'s output file."""
    return f"part-{task_id:05d}"


def map_only_output_name(task_id):
    """Return the name of map-only task `task_id`'s output file."""
    return reduce_output_name(task_id)


def local_dir_prefix(task_id):
    """Return the prefix of task `task_id`'s local temporary directory."""
    return f"mapreduce-local-task{task_id:05d}-"
