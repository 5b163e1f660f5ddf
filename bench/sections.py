"""The benchmark's sections: each runs real processes and returns figures.

Every function takes the parsed options and a `Context` (paths, a job
counter per cluster) and returns a dict of plain numbers for the report.
Correctness is checked before any time is kept: a mismatch raises
`OutputMismatch`.
"""

import os
import shutil
import statistics
import subprocess
import time

from bench.baselines import (
    CAT, EXECUTABLES, OutputMismatch, check_equal, medians, read_lines,
    run_pipeline, time_baselines,
)
from bench.cluster import (
    bench_job, make_secret_file, peak_rss_mb, start_cluster, submit_cli,
    submit_message, wait_job,
)
from bench.heap import task_peaks
from bench.streaming import combiner
from bench.corpus import make_corpus, make_one_line_inputs, make_tiny_inputs
from mapreduce.localcluster import cpu_seconds

JOB_TIMEOUT = 1800.0


class Context:
    """Where the benchmark keeps its files, and what it has made so far."""

    def __init__(self, workdir):
        """Use `workdir` for inputs, outputs and cluster directories."""
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.expected = {}

    def path(self, *parts):
        """Return a path inside the work directory."""
        return os.path.join(self.workdir, *parts)

    def fresh_dir(self, *parts):
        """Return an empty directory inside the work directory."""
        path = self.path(*parts)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def corpus(self, opts, size_mb):
        """Make (or reuse) the corpus of `size_mb` MB; return its directory.

        `opts` gives its number of files and seed.
        """
        paths = make_corpus(self.path(f"input-{size_mb:g}mb"), size_mb,
                            opts.files, opts.seed)
        return os.path.dirname(paths[0])

    def cluster(self, name, signed=False):
        """Start a Manager and two Workers in a fresh directory.

        `signed`: with a fresh secret, so that every message is signed.
        """
        directory = self.fresh_dir("cluster-" + name)
        secret_file = (make_secret_file(os.path.join(directory, "secret"))
                       if signed else None)
        return start_cluster(directory, workers=2, secret_file=secret_file)


class JobRunner:
    """Submits jobs to one cluster, counting job ids."""

    def __init__(self, cluster):
        """Submit to `cluster`, whose first job has id 0."""
        self.cluster = cluster
        self.next_id = 0

    def run(self, input_dir, output_dir, mapper, reducer, nmappers,
            nreducers, cli=True):
        """Run one job; return (seconds to parts, seconds to Finished)."""
        submit = submit_cli if cli else submit_message
        new_job = bench_job((input_dir, output_dir), (mapper, reducer),
                            nmappers, nreducers)
        shutil.rmtree(output_dir, ignore_errors=True)
        start = time.monotonic()
        submit(self.cluster, new_job)
        parts, finished = wait_job(self.cluster, self.next_id, output_dir,
                                   JOB_TIMEOUT)
        self.next_id += 1
        return parts - start, finished - start


def throughput(opts, ctx):
    """Word count on the corpus: cluster vs pipeline vs madoop."""
    input_dir = ctx.corpus(opts, opts.size_mb)
    out = ctx.fresh_dir("out-throughput")
    with ctx.cluster("throughput") as cluster:
        runner = JobRunner(cluster)
        return {kind: _throughput_of(opts, ctx, runner, kind, input_dir, out)
                for kind in opts.kinds}


def _throughput_of(opts, ctx, runner, kind, input_dir, out):
    """Run the rounds of one kind of executables; return its figures."""
    return medians([_throughput_round(opts, ctx, runner, kind, input_dir,
                                      out) for _ in range(opts.repeat)])


def _throughput_round(opts, ctx, runner, kind, input_dir, out):
    """Time pipeline, madoop and cluster once; check their outputs."""
    mapper, reducer = EXECUTABLES[kind]
    times, expected = time_baselines(opts, ctx, kind, (input_dir, out))
    job_out = os.path.join(out, f"cluster-{kind}")
    times["cluster_parts"], times["cluster"] = runner.run(
        input_dir, job_out, mapper, reducer, 4, 2)
    check_equal(f"cluster {kind}", expected, [job_out])
    return times


def latency(opts, ctx):
    """Tiny jobs one after another: submit to the last part file."""
    input_dir = make_tiny_inputs(ctx.path("input-tiny"))
    mapper, reducer = EXECUTABLES["shell"]
    pipe_out = ctx.path("out-latency-pipeline.txt")
    pipeline = statistics.median(run_pipeline(input_dir, mapper, reducer,
                                              pipe_out) for _ in range(5))
    expected = read_lines([pipe_out])
    output = ctx.path("out-latency")
    runs, cli = [], []
    with ctx.cluster("latency") as cluster:
        runner = JobRunner(cluster)
        job = (input_dir, output, mapper, reducer, 2, 2)
        runner.run(*job, cli=False)  # Warm-up, not counted.
        for _ in range(opts.latency_jobs):
            runs.append(runner.run(*job, cli=False))
            check_equal("latency job", expected, [output])
        for _ in range(3):
            cli.append(runner.run(*job, cli=True)[0])
    parts = [run[0] for run in runs]
    return {"jobs": len(parts), "median_ms": statistics.median(parts) * 1e3,
            "max_ms": max(parts) * 1e3,
            "finished_median_ms": statistics.median(
                run[1] for run in runs) * 1e3,
            "with_submit_cli_median_ms": statistics.median(cli) * 1e3,
            "pipeline_ms": pipeline * 1e3}


def idle(opts, ctx):
    """CPU seconds used by an idle Manager and two Workers."""
    with ctx.cluster("idle") as cluster:
        time.sleep(opts.settle_seconds)
        before = [cpu_seconds(pid) for pid in cluster.pids]
        start = time.monotonic()
        time.sleep(opts.idle_seconds)
        after = [cpu_seconds(pid) for pid in cluster.pids]
        elapsed = time.monotonic() - start
    used = [a - b for a, b in zip(after, before)]
    return {"seconds": elapsed, "cpu_s": sum(used), "manager_cpu_s": used[0],
            "workers_cpu_s": used[1:]}


def _word_total(input_dir):
    """Count the words of the input with `wc -w`."""
    files = sorted(os.path.join(input_dir, name)
                   for name in os.listdir(input_dir))
    result = subprocess.run(["bash", "-c", 'cat "$@" | wc -w', "words"]
                            + files, check=True, capture_output=True)
    return int(result.stdout)


def memory(opts, ctx):
    """Peak RSS of each Worker on the corpus job and one 4x larger."""
    mapper, reducer = EXECUTABLES["shell"]
    sizes = [opts.size_mb] + ([] if opts.skip_large else [opts.size_mb * 4])
    results = {}
    for size in sizes:
        input_dir = ctx.corpus(opts, size)
        output = ctx.path("out-memory")
        with ctx.cluster("memory") as cluster:
            seconds = JobRunner(cluster).run(input_dir, output, mapper,
                                             reducer, 4, 2)[1]
            rss = [peak_rss_mb(pid) for pid in cluster.pids]
        total = sum(int(line.rsplit(b"\t", 1)[1])
                    for line in read_lines([output]))
        if total != _word_total(input_dir):
            raise OutputMismatch(f"memory job on {size:g} MB: counted "
                                 f"{total} words, wc -w disagrees")
        results[f"{size:g}mb"] = {"size_mb": size, "seconds": seconds,
                                  "manager_mb": rss[0], "workers_mb": rss[1:]}
    return results


def scheduling(opts, ctx):
    """Many one-line files, `cat` as mapper and reducer: time per task.

    The same job on a signed cluster too (every message signed and
    checked), its rounds taking turns with the plain one's (in
    alternating order) so that both see the same load: `signed_ratio` is
    the median over the rounds of the signed run's time over the plain
    one's.
    """
    count = opts.sched_files
    input_dir = make_one_line_inputs(ctx.path(f"input-lines-{count}"),
                                     count)
    (runs, cpu), (signed_runs, signed_cpu) = _scheduling_rounds(
        opts, ctx, input_dir, count)
    tasks = count + 2
    seconds = statistics.median(runs)
    signed_seconds = statistics.median(signed_runs)
    return {"files": count, "tasks": tasks, "seconds": seconds,
            "runs": runs, "per_task_ms": seconds / tasks * 1e3,
            "signed_seconds": signed_seconds, "signed_runs": signed_runs,
            # Each round's two runs ran back to back, under the same load.
            "signed_ratio": statistics.median(
                signed_run / run for run, signed_run in zip(runs,
                                                            signed_runs)),
            "manager_cpu_s": statistics.median(cpu),
            "signed_manager_cpu_s": statistics.median(signed_cpu)}


def _scheduling_rounds(opts, ctx, input_dir, count):
    """Run the job in turns, plain and signed.

    Returns, for each, the seconds of each run and the Manager's CPU
    seconds in each.
    """
    expected = read_lines([input_dir + os.sep + name
                           for name in os.listdir(input_dir)])
    plain, signed = ([], []), ([], [])
    with ctx.cluster("scheduling") as plain_cluster, \
            ctx.cluster("scheduling-signed", signed=True) as signed_cluster:
        runners = [(JobRunner(plain_cluster), plain),
                   (JobRunner(signed_cluster), signed)]
        for round_number in range(opts.repeat):
            # Plain first in one round, signed first in the next: a load
            # that grows or falls during the rounds favours neither.
            if round_number:
                runners.reverse()
            for runner, (times, cpu) in runners:
                before = cpu_seconds(runner.cluster.manager.pid)
                times.append(_scheduling_run(ctx, runner, input_dir, count,
                                             expected))
                cpu.append(cpu_seconds(runner.cluster.manager.pid) - before)
    return plain, signed


def _scheduling_run(ctx, runner, input_dir, count, expected):
    """Run the scheduling job once, check its output; return its seconds."""
    output = ctx.path("out-scheduling")
    seconds = runner.run(input_dir, output, CAT, CAT, count, 2,
                         cli=False)[1]
    check_equal("scheduling job", expected, [output])
    return seconds


def heap(opts, ctx):
    """Tracemalloc peaks of one map and one reduce task, `cat` on ~5 MB.

    Two inputs: the corpus text, and the word count mapper's output of it
    (short lines, the most objects per byte). Each with 2 and with 100
    partitions.
    """
    (text,) = make_corpus(ctx.path("input-heap"), opts.heap_mb, 1,
                          opts.seed)
    counted = ctx.path("input-heap-wc.txt")
    with open(text, "rb") as stdin, open(counted, "wb") as stdout:
        subprocess.run([EXECUTABLES["shell"][0]], stdin=stdin, stdout=stdout,
                       check=True)
    results = {}
    for name, path in (("text", text), ("wordcount", counted)):
        for partitions in (2, 100):
            results[f"{name}_{partitions}"] = {
                "input_mb": os.path.getsize(path) / 1e6,
                "partitions": partitions,
                **task_peaks([path], CAT, ctx.fresh_dir("heap"), partitions)}
    return results


SECTIONS = {
    "throughput": throughput,
    "latency": latency,
    "idle": idle,
    "memory": memory,
    "heap": heap,
    "scheduling": scheduling,
    "combiner": combiner,
}
