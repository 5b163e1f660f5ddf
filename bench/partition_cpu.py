"""CPU time of partitioning word count output: this tree against a commit.

    python -m bench.partition_cpu [--baseline REV] [--size-mb 16]
                                  [--repeat 5] [--workdir bench-work]

The input is the shell word count mapper's output of the benchmark's
corpus (`bench/corpus.py`): short lines, Zipf-like, the most lines per
byte. Each round reads that file through `partition_stream` of the
baseline commit and of this tree, one after the other, into 2 and into
100 partitions written to /dev/null, and counts `time.process_time()`
(user + system CPU of this process), so that the machine's load does not
count. The table gives, in CPU milliseconds per MB of map output, the
median and the least over the rounds, and this tree's time over the
baseline's: the median of the rounds' ratios (the two runs of a round
are next to each other in time, so a load that comes and goes touches
both alike) and the ratio of the least times.

The baseline's `partition_stream` is the one in REV's
`mapreduce/worker/partition.py` or, before the task engine was split into
modules, in `mapreduce/worker/tasks.py`; it is loaded from `git show`.
"""

import argparse
import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench.corpus import make_corpus
from bench.baselines import EXECUTABLES, ROOT
from mapreduce.worker import tasks
from mapreduce.worker.partition import partition_stream

BASELINE = "b3e0447"
BASELINE_PATHS = ("mapreduce/worker/partition.py", "mapreduce/worker/tasks.py")
# The old task engine's write buffers: 1 MiB over all partition files.
BASELINE_WRITE_BUFFERS = 1 << 20
PARTITION_COUNTS = (2, 100)


def load_baseline(revision):
    """Return `partition_stream` as it was at git `revision`."""
    for path in BASELINE_PATHS:
        shown = subprocess.run(["git", "-C", ROOT, "show",
                                f"{revision}:{path}"],
                               capture_output=True, text=True, check=False)
        if shown.returncode == 0:
            with tempfile.TemporaryDirectory() as directory:
                source = os.path.join(directory, "baseline.py")
                with open(source, "w", encoding="utf-8") as file:
                    file.write(shown.stdout)
                spec = importlib.util.spec_from_file_location(
                    "baseline", source)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            return module.partition_stream
    sys.exit(f"partition_cpu: no partition_stream at {revision}")


def word_count_input(workdir, size_mb):
    """Return the path of the word count mapper's output of the corpus."""
    corpus = make_corpus(os.path.join(workdir, "input-partition"), size_mb, 1)
    counted = os.path.join(workdir, f"input-partition-wc-{size_mb}.txt")
    if not os.path.exists(counted):
        with open(corpus[0], "rb") as stdin, open(counted, "wb") as stdout:
            subprocess.run([EXECUTABLES["shell"][0]], stdin=stdin,
                           stdout=stdout, check=True)
    return counted


def cpu_seconds(function, path, num_partitions, write_buffers):
    """Return the CPU seconds `function` takes to partition `path`."""
    buffer_size = max(1, write_buffers // num_partitions)
    with contextlib.ExitStack() as stack:
        outputs = [stack.enter_context(open(os.devnull, "wb", buffer_size))
                   for _ in range(num_partitions)]
        stream = stack.enter_context(open(path, "rb", buffering=0))
        start = time.process_time()
        function(stream, outputs, num_partitions)
        for output in outputs:
            output.flush()
        return time.process_time() - start


def _row(times, megabytes, names):
    """Return the table cells of (baseline, current) `times`."""
    cells = "  ".join(
        f"{name}: {statistics.median(runs) * 1000 / megabytes:.1f} "
        f"({min(runs) * 1000 / megabytes:.1f})"
        for name, runs in zip(names, times))
    baseline, current = times
    ratios = [now / then for then, now in zip(baseline, current)]
    return (f"{cells}  ratio {statistics.median(ratios):.3f} "
            f"(least {min(current) / min(baseline):.3f})")


def parse(argv):
    """Return the command line's options."""
    parser = argparse.ArgumentParser(prog="python -m bench.partition_cpu",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE,
                        help=f"git revision to compare with ({BASELINE})")
    parser.add_argument("--size-mb", type=float, default=16,
                        help="corpus size; word count output is ~1.3x")
    parser.add_argument("--repeat", type=int, default=5,
                        help="rounds; medians are shown")
    parser.add_argument("--workdir", default=os.path.join(ROOT,
                                                          "bench-work"))
    return parser.parse_args(argv)


def main(argv=None):
    """Time both versions, round after round; print the medians."""
    opts = parse(argv)
    os.makedirs(opts.workdir, exist_ok=True)
    path = word_count_input(opts.workdir, opts.size_mb)
    megabytes = os.path.getsize(path) / 1e6
    versions = {
        opts.baseline: (load_baseline(opts.baseline), BASELINE_WRITE_BUFFERS),
        "this tree": (partition_stream, tasks.WRITE_BUFFER_TOTAL),
    }
    print(f"{megabytes:.1f} MB of word count lines, {opts.repeat} rounds, "
          "CPU ms per MB: median (least)")
    for num_partitions in PARTITION_COUNTS:
        times = {name: [] for name in versions}
        for _ in range(opts.repeat):
            for name, (function, buffers) in versions.items():
                times[name].append(cpu_seconds(function, path,
                                               num_partitions, buffers))
        print(f"{num_partitions:3d} partitions  "
              + _row(list(times.values()), megabytes, versions))


if __name__ == "__main__":
    main()
