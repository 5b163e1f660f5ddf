"""The combiner section: word count by `mapreduce-streaming` with a combiner.

The job a madoop user moves to the cluster: word count on the corpus,
submitted with the `mapreduce-streaming` command (timed from its start
to its exit: it waits for the job's end), with the reducer as combiner.
In every round, on the same input and executables: the shell pipeline,
madoop (which has no combiner; its flags are otherwise the same), the
cluster job without the combiner, and the cluster job with it. Their
sorted output lines must all be the pipeline's.

The shuffle is measured once per kind of executables, as the bytes of
the map tasks' output: a job with `cat` as its reducer writes exactly
the lines that left the map tasks, so its part files' sizes are the
shuffle's, with and without the combiner.
"""

import os
import shutil
import subprocess
import time

from bench.baselines import (
    CAT, EXECUTABLES, check_equal, medians, time_baselines,
)
from mapreduce.localcluster import command

MAPPERS = 4
REDUCERS = 2


def run_streaming(cluster, flags, output, combine_with=None):
    """Run one `mapreduce-streaming` job to its end; return its seconds."""
    shutil.rmtree(output, ignore_errors=True)
    args = [command("mapreduce-streaming"),
            "--manager", f"localhost:{cluster.port}",
            "-D", f"mapreduce.job.maps={MAPPERS}",
            "-numReduceTasks", str(REDUCERS), *flags, "-output", output]
    if combine_with:
        args += ["-combiner", combine_with]
    start = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def part_bytes(directory):
    """Return the total size of the part files in `directory`."""
    return sum(os.path.getsize(os.path.join(directory, name))
               for name in os.listdir(directory) if name.startswith("part-"))


def combiner(opts, ctx):
    """Word count with a combiner: cluster vs pipeline vs madoop."""
    input_dir = ctx.corpus(opts, opts.size_mb)
    out = ctx.fresh_dir("out-combiner")
    with ctx.cluster("combiner") as cluster:
        return {kind: _combiner_of(opts, ctx, cluster, kind,
                                   (input_dir, out))
                for kind in opts.kinds}


def _combiner_of(opts, ctx, cluster, kind, dirs):
    """Run the rounds of one kind of executables; return its figures."""
    result = medians([_combiner_round(opts, ctx, cluster, kind, dirs)
                      for _ in range(opts.repeat)])
    result["combiner_speedup"] = result["plain_s"] / result["cluster_s"]
    result.update(_shuffle(cluster, kind, dirs))
    return result


def _combiner_round(opts, ctx, cluster, kind, dirs):
    """Time pipeline, madoop and both cluster jobs once; check outputs."""
    input_dir, out = dirs
    mapper, reducer = EXECUTABLES[kind]
    flags = ["-input", input_dir, "-mapper", mapper, "-reducer", reducer]
    times, expected = time_baselines(opts, ctx, kind, dirs)
    plain_out = os.path.join(out, f"plain-{kind}")
    times["plain"] = run_streaming(cluster, flags, plain_out)
    check_equal(f"cluster without combiner, {kind}", expected, [plain_out])
    job_out = os.path.join(out, f"combined-{kind}")
    times["cluster"] = run_streaming(cluster, flags, job_out, reducer)
    check_equal(f"cluster with combiner, {kind}", expected, [job_out])
    return times


def _shuffle(cluster, kind, dirs):
    """Return the bytes the map tasks sent on, with and without combiner."""
    input_dir, out = dirs
    mapper, reducer = EXECUTABLES[kind]
    flags = ["-input", input_dir, "-mapper", mapper, "-reducer", CAT]
    sizes = {}
    for name, with_combiner in (("shuffle_plain_bytes", None),
                                ("shuffle_combined_bytes", reducer)):
        output = os.path.join(out, f"shuffle-{kind}")
        run_streaming(cluster, flags, output, with_combiner)
        sizes[name] = part_bytes(output)
        shutil.rmtree(output)
    sizes["shuffle_ratio"] = (sizes["shuffle_combined_bytes"]
                              / sizes["shuffle_plain_bytes"])
    return sizes
