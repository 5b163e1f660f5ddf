"""`python -m bench`: run the benchmark, print a table and one JSON line.

Exit status: 0 when every section ran and every output check passed
(targets met or not), 1 when an output check failed or a section broke,
3 with `--strict` when everything ran but a target was missed.
"""

import argparse
import json
import os
import signal
import sys
import time
import traceback

from bench.baselines import ROOT, OutputMismatch
from bench.sections import SECTIONS, Context
from mapreduce.localcluster import KeepError

QUICK = {"size_mb": 2, "repeat": 1, "latency_jobs": 3, "idle_seconds": 1.0,
         "settle_seconds": 0.2, "sched_files": 20, "skip_large": True,
         "heap_mb": 1}


def parse(argv):
    """Return the options; --quick fills in small defaults."""
    parser = argparse.ArgumentParser(
        prog="bin/bench", description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="comma-separated sections to run")
    parser.add_argument("--quick", action="store_true",
                        help="a small smoke run: " + ", ".join(
                            f"{k}={v}" for k, v in QUICK.items()))
    parser.add_argument("--size-mb", type=float, default=None,
                        help="corpus size in MB (default 64)")
    parser.add_argument("--files", type=int, default=8,
                        help="number of corpus files")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per timed figure; medians are reported "
                             "(default 3)")
    parser.add_argument("--kinds", default="shell,python",
                        help="word count executables for throughput")
    parser.add_argument("--skip-madoop", action="store_true",
                        help="leave out the madoop baseline")
    parser.add_argument("--skip-large", action="store_true", default=None,
                        help="leave out the 4x memory job")
    parser.add_argument("--latency-jobs", type=int, default=None,
                        help="tiny jobs to time (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=None,
                        help="idle window (default 10)")
    parser.add_argument("--settle-seconds", type=float, default=None,
                        help="wait after start before the idle window "
                             "(default 1)")
    parser.add_argument("--sched-files", type=int, default=None,
                        help="one-line files (and map tasks) of the "
                             "scheduling job (default 1000)")
    parser.add_argument("--heap-mb", type=float, default=None,
                        help="input size of the heap section's tasks "
                             "(default 5)")
    parser.add_argument("--workdir", default=os.path.join(ROOT, "bench-work"),
                        help="where inputs, outputs and logs go")
    parser.add_argument("--strict", action="store_true",
                        help="exit 3 if a target is missed")
    opts = parser.parse_args(argv)
    defaults = {"size_mb": 64, "repeat": 3, "latency_jobs": 20,
                "idle_seconds": 10.0, "settle_seconds": 1.0,
                "sched_files": 1000, "skip_large": False, "heap_mb": 5}
    for name, default in defaults.items():
        if getattr(opts, name) is None:
            setattr(opts, name, QUICK[name] if opts.quick else default)
    opts.sections = [name.strip() for name in opts.only.split(",")
                     if name.strip()]
    unknown = set(opts.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(SECTIONS)}")
    opts.kinds = [kind.strip() for kind in opts.kinds.split(",")
                  if kind.strip()]
    return opts


def targets(results):
    """Return (name, measured text, limit text, passed) for each target."""
    rows = _against_baselines(
        "throughput", results, ("<= 1.5x", lambda ratio: ratio <= 1.5),
        ("<= 0.25x", lambda ratio: ratio <= 0.25))
    rows += _against_baselines(
        "combiner", results, ("< 1x", lambda ratio: ratio < 1),
        ("<= 0.2x", lambda ratio: ratio <= 0.2))
    if "latency" in results:
        fig = results["latency"]
        rows.append(("latency: median submit -> last part",
                     f"{fig['median_ms']:.1f} ms (max {fig['max_ms']:.1f})",
                     "<= 80 ms", fig["median_ms"] <= 80))
    if "idle" in results:
        fig = results["idle"]
        rows.append((f"idle: CPU-s of all 3 in {fig['seconds']:.0f} s",
                     f"{fig['cpu_s']:.3f} s", "< 0.05 s",
                     fig["cpu_s"] * 10 / fig["seconds"] < 0.05))
    for name, fig in results.get("memory", {}).items():
        worst = max(fig["workers_mb"])
        rows.append((f"memory: Worker peak RSS, {name} job",
                     " / ".join(f"{mb:.1f}" for mb in fig["workers_mb"])
                     + " MB", "< 40 MB", worst < 40))
    for name, fig in results.get("heap", {}).items():
        rows.append((f"heap: map / reduce task, {name}",
                     f"{fig['map_bytes'] / 1024:.0f} / "
                     f"{fig['reduce_bytes'] / 1024:.0f} KiB", "< 1024 KiB",
                     max(fig["map_bytes"], fig["reduce_bytes"]) < 1 << 20))
    if "scheduling" in results:
        fig = results["scheduling"]
        rows.append((f"scheduling: {fig['tasks']} tasks",
                     f"{fig['per_task_ms']:.2f} ms/task "
                     f"({fig['seconds']:.2f}s)", "< 10 ms",
                     fig["per_task_ms"] < 10))
        rows.append(("scheduling: signed / plain, median of rounds",
                     f"{fig['signed_ratio']:.3f}x (medians "
                     f"{fig['signed_seconds']:.2f}s / "
                     f"{fig['seconds']:.2f}s)", "< 1.05x",
                     fig["signed_ratio"] < 1.05))
    return rows


def _against_baselines(section, results, vs_pipeline, vs_madoop):
    """Return the target rows of a section timed against the baselines.

    `vs_pipeline` and `vs_madoop` are each (limit text, test of the
    ratio): the cluster's time over the pipeline's, and over madoop's.
    """
    rows = []
    for kind, fig in results.get(section, {}).items():
        rows.append((f"{section} {kind}: cluster / pipeline",
                     f"{fig['vs_pipeline']:.2f}x ({fig['cluster_s']:.2f}s / "
                     f"{fig['pipeline_s']:.2f}s)", vs_pipeline[0],
                     vs_pipeline[1](fig["vs_pipeline"])))
        if "vs_madoop" in fig:
            rows.append((f"{section} {kind}: cluster / madoop",
                         f"{fig['vs_madoop']:.3f}x ({fig['cluster_s']:.2f}s "
                         f"/ {fig['madoop_s']:.2f}s)", vs_madoop[0],
                         vs_madoop[1](fig["vs_madoop"])))
    return rows


def context_rows(results):
    """Return (name, value) rows that are measured but have no target."""
    rows = []
    for kind, fig in results.get("throughput", {}).items():
        rows.append((f"throughput {kind}: cluster, to last part file",
                     f"{fig['cluster_parts_s']:.2f} s"))
    for kind, fig in results.get("combiner", {}).items():
        rows.append((f"combiner {kind}: same job without the combiner",
                     f"{fig['plain_s']:.2f} s (the combiner's is "
                     f"{fig['combiner_speedup']:.2f}x faster)"))
        rows.append((f"combiner {kind}: shuffle bytes without / with",
                     f"{fig['shuffle_plain_bytes'] / 1e6:.2f} / "
                     f"{fig['shuffle_combined_bytes'] / 1e6:.2f} MB "
                     f"({fig['shuffle_ratio']:.3f}x)"))
    if "latency" in results:
        fig = results["latency"]
        rows.append(("latency: median to the job's end (status API)",
                     f"{fig['finished_median_ms']:.1f} ms"))
        rows.append(("latency: median with mapreduce-submit CLI",
                     f"{fig['with_submit_cli_median_ms']:.1f} ms"))
        rows.append(("latency: same job as a shell pipeline",
                     f"{fig['pipeline_ms']:.1f} ms"))
    if "idle" in results:
        fig = results["idle"]
        rows.append(("idle: Manager / Workers CPU-s",
                     f"{fig['manager_cpu_s']:.3f} / " + " / ".join(
                         f"{cpu:.3f}" for cpu in fig["workers_cpu_s"])))
    for name, fig in results.get("memory", {}).items():
        rows.append((f"memory: Manager peak RSS, {name} job",
                     f"{fig['manager_mb']:.1f} MB ({fig['seconds']:.1f}s)"))
    if "scheduling" in results:
        fig = results["scheduling"]
        rows.append(("scheduling: Manager CPU-s a job, plain / signed",
                     f"{fig['manager_cpu_s']:.2f} / "
                     f"{fig['signed_manager_cpu_s']:.2f} s"))
    return rows


def print_table(rows, extra):
    """Print the targets and the context figures as a plain table."""
    width = max([len(row[0]) for row in rows + extra] + [10])
    print(f"{'figure':<{width}}  {'measured':<34} {'target':<9} result")
    for name, measured, limit, passed in rows:
        print(f"{name:<{width}}  {measured:<34} {limit:<9} "
              f"{'PASS' if passed else 'MISS'}")
    for name, measured in extra:
        print(f"{name:<{width}}  {measured}")


def _interrupt(signum, _frame):
    """Turn a signal into KeyboardInterrupt."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv=None):
    """Run the chosen sections; print the table and the JSON line."""
    opts = parse(argv)
    # SIGTERM unwinds like Ctrl-C, so that every cluster gets shut down.
    signal.signal(signal.SIGTERM, _interrupt)
    ctx = Context(opts.workdir)
    results, errors = {}, {}
    started = time.monotonic()
    for name in opts.sections:
        print(f"== {name}", file=sys.stderr, flush=True)
        # One broken section must not hide the others' figures.
        with KeepError() as kept:
            results[name] = SECTIONS[name](opts, ctx)
        if isinstance(kept.error, OutputMismatch):
            errors[name] = f"output mismatch: {kept.error}"
        elif kept.error is not None:
            traceback.print_exception(type(kept.error), kept.error,
                                      kept.error.__traceback__)
            errors[name] = f"{type(kept.error).__name__}: {kept.error}"
    rows = targets(results)
    print_table(rows, context_rows(results))
    for name, error in errors.items():
        print(f"ERROR in {name}: {error}")
    summary = {
        "bench": "mapreduce",
        "options": {key: getattr(opts, key) for key in (
            "size_mb", "files", "seed", "repeat", "kinds", "sections",
            "skip_madoop", "skip_large", "latency_jobs", "idle_seconds",
            "sched_files", "heap_mb")},
        "seconds": round(time.monotonic() - started, 2),
        "outputs_equal": not any("mismatch" in e for e in errors.values()),
        "errors": errors,
        "results": results,
        "targets": [{"name": name, "measured": measured, "target": limit,
                     "pass": passed}
                    for name, measured, limit, passed in rows],
        "all_targets_met": all(row[3] for row in rows) and not errors,
    }
    print(json.dumps(summary, sort_keys=False))
    if errors:
        return 1
    if opts.strict and not summary["all_targets_met"]:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
