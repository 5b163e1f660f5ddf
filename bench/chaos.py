"""The long chaos run, by hand: kill Workers for many rounds, then load.

    python -m bench.chaos --rounds 50
    python -m bench.chaos --rounds 0 --load --load-workers 100 --load-jobs 60

Each round runs one job of many small files on Worker processes while
Workers are killed with SIGKILL at random moments of the map and reduce
stages and restarted on the same port (at once, or after the Manager
marked them dead). Every output is compared with the shell pipeline's and
the Manager's log is replayed to prove that no task was ever held by two
live Workers at once. `--load` then queues many jobs at once on one
Manager process with many Workers. The figures are printed at the end; the
exit status is 1 if any output was wrong or the rule was broken.
"""

import argparse
import logging
import pathlib
import shutil
import sys
import tempfile

from bench.chaos_runs import ChaosRun, ChaosSettings, LoadRun


def parse_args(argv):
    """Return the options of the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__.split("\n", maxsplit=1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20,
                        help="chaos rounds (jobs) to run; 0 for none")
    parser.add_argument("--workers", type=int, default=4,
                        help="Worker processes in the chaos run")
    parser.add_argument("--files", type=int, default=40,
                        help="input files of each chaos job")
    parser.add_argument("--mappers", type=int, default=10)
    parser.add_argument("--reducers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heartbeat-timeout", type=float, default=2.0,
                        help="the Manager's, in seconds (the CLI's is 10)")
    parser.add_argument("--heartbeat-interval", type=float, default=0.3,
                        help="the Workers', in seconds (2 runs the "
                             "mapreduce-worker command itself)")
    parser.add_argument("--worker-tmp", type=pathlib.Path,
                        help="the Workers' TMPDIR, e.g. on another file "
                             "system than --workdir (default: inside it)")
    parser.add_argument("--load", action="store_true",
                        help="also run the load test")
    parser.add_argument("--load-workers", type=int, default=50)
    parser.add_argument("--load-jobs", type=int, default=20)
    parser.add_argument("--workdir", type=pathlib.Path,
                        help="where to work (default: a temporary "
                             "directory, removed at the end)")
    parser.add_argument("--verbose", action="store_true",
                        help="print every kill and log warnings")
    return parser.parse_args(argv)


def run_chaos(args, workdir):
    """Run the chaos rounds; return (figures, problem or None)."""
    (workdir / "chaos").mkdir(parents=True, exist_ok=True)
    run = ChaosRun(workdir / "chaos", ChaosSettings(
        workers=args.workers, files=args.files, mappers=args.mappers,
        reducers=args.reducers, seed=args.seed,
        heartbeat_timeout=args.heartbeat_timeout,
        heartbeat_interval=args.heartbeat_interval,
        worker_tmp=args.worker_tmp),
        say=print if args.verbose else None)
    problem = None
    try:
        with run:
            for number in range(args.rounds):
                right = run.round()
                if not args.verbose:
                    print(f"round {number + 1}/{args.rounds}: "
                          f"{'right' if right else 'WRONG OUTPUT'}",
                          flush=True)
    except AssertionError as exc:
        problem = f"{exc}"
    return run.figures, problem


def run_load(args, workdir):
    """Run the load test; return (figures, problem or None)."""
    (workdir / "load").mkdir(parents=True, exist_ok=True)
    run = LoadRun(workdir / "load", workers=args.load_workers,
                  jobs=args.load_jobs, seed=args.seed)
    problem = None
    try:
        with run:
            figures = run.run()
        expected = [(event, job_id) for job_id in range(args.load_jobs)
                    for event in ("Started", "Finished")]
        if figures.order != expected:
            problem = "the jobs did not run one at a time in order"
    except AssertionError as exc:
        problem = f"{exc}"
    return run.figures, problem


def main(argv=None):
    """Run what the options ask for and print the figures."""
    args = parse_args(argv)
    # The Manager's log goes to the figures; only trouble is printed.
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING if args.verbose else logging.CRITICAL)
    logging.basicConfig(handlers=[handler],
                        format="%(name)s [%(levelname)s] %(message)s")
    workdir = args.workdir or pathlib.Path(
        tempfile.mkdtemp(prefix="mapreduce-chaos-"))
    problems = []
    try:
        if args.rounds:
            figures, problem = run_chaos(args, workdir)
            print(f"chaos: {figures.report()}")
            problems += [problem] if problem else []
            if figures.lost_data:
                problems.append(f"{figures.lost_data} job(s) lost data")
        if args.load:
            figures, problem = run_load(args, workdir)
            print(f"load: {figures.report()}")
            problems += [problem] if problem else []
            if figures.right != figures.jobs:
                problems.append(f"{figures.jobs - figures.right} load "
                                "job(s) wrong")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
