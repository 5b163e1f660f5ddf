"""What the cluster is measured against, and how outputs are compared.

The baselines run the same executables on the same input: the shell
pipeline (`cat input/* | map | LC_ALL=C sort | reduce`) and madoop. The
outputs of every run are compared as sorted lines before any time is
kept; a difference raises `OutputMismatch`.
"""

import os
import shutil
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_EXEC = os.path.join(ROOT, "tests", "testdata", "exec")
EXECUTABLES = {
    "shell": (os.path.join(TEST_EXEC, "wc_map.sh"),
              os.path.join(TEST_EXEC, "wc_reduce.sh")),
    "python": (os.path.join(TEST_EXEC, "wc_map.py"),
               os.path.join(TEST_EXEC, "wc_reduce.py")),
}
CAT = shutil.which("cat") or "/bin/cat"


class OutputMismatch(Exception):
    """Two runs that must agree produced different output."""


def read_lines(paths):
    """Return the sorted lines of `paths` (files, or directories' parts)."""
    lines = []
    for path in paths:
        names = ([os.path.join(path, name) for name in sorted(os.listdir(
            path)) if name.startswith("part-")]
            if os.path.isdir(path) else [path])
        for name in names:
            with open(name, "rb") as file:
                lines.extend(file.read().splitlines())
    return sorted(lines)


def check_equal(what, expected, actual_paths):
    """Raise OutputMismatch unless the sorted lines are the same."""
    actual = read_lines(actual_paths)
    if actual != expected:
        raise OutputMismatch(f"{what}: {len(actual)} lines, expected "
                             f"{len(expected)}; see {actual_paths}")


def timed(args, **kwargs):
    """Run a command to completion (it must succeed); return seconds."""
    start = time.monotonic()
    subprocess.run(args, check=True, **kwargs)
    return time.monotonic() - start


def run_pipeline(input_dir, mapper, reducer, output):
    """Time `cat input/* | map | LC_ALL=C sort | reduce > output`."""
    files = sorted(os.path.join(input_dir, name)
                   for name in os.listdir(input_dir))
    script = ('set -o pipefail; out="$1"; map="$2"; reduce="$3"; '
              'shift 3; cat "$@" | "$map" | LC_ALL=C sort | "$reduce" '
              '> "$out"')
    return timed(["bash", "-c", script, "pipeline", output, mapper,
                  reducer] + files)


def run_madoop(ctx, input_dir, mapper, reducer, output):
    """Time madoop with two reducers on the same input and executables."""
    shutil.rmtree(output, ignore_errors=True)
    return timed(["madoop", "-input", input_dir, "-output", output,
                  "-mapper", mapper, "-reducer", reducer,
                  "-numReduceTasks", "2"],
                 cwd=ctx.fresh_dir("madoop-cwd"), stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)


def time_baselines(opts, ctx, kind, dirs):
    """Time the pipeline and (unless skipped) madoop on word count once.

    `kind` names the executables (EXECUTABLES), `dirs` is (input
    directory, directory for the outputs). Returns ({"pipeline": s,
    "madoop": s}, the pipeline's sorted lines); madoop's must be the same.
    """
    input_dir, out = dirs
    mapper, reducer = EXECUTABLES[kind]
    times = {}
    pipe_out = os.path.join(out, f"pipeline-{kind}.txt")
    times["pipeline"] = run_pipeline(input_dir, mapper, reducer, pipe_out)
    expected = read_lines([pipe_out])
    if not opts.skip_madoop:
        mad_out = os.path.join(out, f"madoop-{kind}")
        times["madoop"] = run_madoop(ctx, input_dir, mapper, reducer,
                                     mad_out)
        check_equal(f"madoop {kind}", expected, [mad_out])
    return times, expected


def medians(rounds):
    """Return the figures of timed rounds ({name: seconds} each).

    `name_s` is the median of each, `runs` every round's, and `vs_*` the
    ratios of the median `cluster` to the median baselines.
    """
    times = {name: [one[name] for one in rounds] for name in rounds[0]}
    result = {name + "_s": statistics.median(values)
              for name, values in times.items()}
    result["runs"] = times
    result["vs_pipeline"] = result["cluster_s"] / result["pipeline_s"]
    if "madoop_s" in result:
        result["vs_madoop"] = result["cluster_s"] / result["madoop_s"]
    return result
