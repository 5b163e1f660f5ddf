"""`bin/netbed`: try the network test bed by hand.

    bin/netbed up [--workers N] [--debug]   a bed, a Manager, N Workers
    bin/netbed job [--slow SECONDS]         word count over examples/input
    bin/netbed cut HOST [--wait]            unplug a host (--wait: until
                                            the Manager marks it dead)
    bin/netbed heal HOST                    plug it back in
    bin/netbed reboot HOST                  kill all on a host, start again
    bin/netbed status                       hosts, links, processes, log
    bin/netbed down                         stop everything, remove the bed
    bin/netbed sweep                        remove beds of crashed runs

The bed lives on after `up` returns: its owner is a `sleep` process (the
keeper) started by `up` and ended by `down`; if the keeper dies, the next
`sweep` (which every `up` and every test run does) removes the bed. The
state (which bed, which keeper) is in var/netbed/bed.json, the logs in
var/netbed/logs/.
"""

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import sys
import time

from mapreduce.localcluster import output_lines, pipeline_output, spawn
from tests.netbed import Bed, BedError, sweep, unavailable
from tests.netbed_cluster import (
    BedCluster, BedClusterOptions, JobSpec, remote_worker,
)

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
# Where the dashboard will be shown once there is one (another change).
DASHBOARD = None


class Session:
    """The bed recorded in the state directory, and its cluster."""

    def __init__(self, directory):
        """Read the state in `directory`, if any."""
        self.directory = pathlib.Path(directory)
        self.state_file = self.directory / "bed.json"
        self.state = None
        if self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())

    def bed(self):
        """Return the recorded bed, or raise BedError if there is none."""
        if self.state is None:
            raise BedError("no bed is up here (bin/netbed up)")
        return Bed(self.state["workers"], owner=self.state["keeper"],
                   tag=self.state["tag"])

    def cluster(self, bed=None):
        """Return the cluster of the recorded bed (processes detached)."""
        return BedCluster(bed or self.bed(), self.directory, BedClusterOptions(
            manager_loglevel=(self.state or {}).get("loglevel", "info"),
            detach=True))

    def save(self, state):
        """Record `state`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state) + "\n")
        self.state = state

    def forget(self):
        """Remove the record."""
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        self.state = None


def relative(path):
    """Return `path` relative to the project root when it is inside."""
    try:
        return pathlib.Path(path).resolve().relative_to(REPO)
    except ValueError:
        return path


def describe(cluster):
    """Print the hosts, what runs on them, and what to look at."""
    bed = cluster.bed
    print(f"bed {bed.tag}: a switch and {len(bed.hosts)} hosts on "
          f"10.77.0.0/24 (namespaces {bed.namespace('*')})")
    for host in bed.hosts.values():
        link = "CUT" if bed.is_cut(host.name) else "up"
        pids = bed.pids(host.name)
        running = f"pids {' '.join(map(str, pids))}" if pids else "-"
        print(f"  {host.name:<9} {host.address:<12} link {link:<4} "
              f"{running}")
    print(f"logs:      tail -f {relative(cluster.workdir / 'logs')}/*.log")
    print(f"dashboard: {DASHBOARD or 'not available yet'}")
    print(f"a shell on a host: ip netns exec {bed.namespace('worker1')} "
          f"bash")


def command_up(session, args):
    """Make a bed, start a Manager and the Workers in it."""
    sweep()
    if session.state is not None:
        if session.bed().exists():
            raise BedError("a bed is up already (bin/netbed down first)")
        session.forget()
    logs = session.directory / "logs"
    for old in logs.glob("*") if logs.is_dir() else []:
        old.unlink()
    for old in session.directory.glob("output-*"):
        shutil.rmtree(old, ignore_errors=True)
    # Owns the bed until `down`; runs on after this command returns.
    keeper = spawn(["sleep", "infinity"], start_new_session=True)
    bed = Bed(args.workers, owner=keeper.pid)
    session.save({"keeper": keeper.pid, "tag": bed.tag,
                  "workers": args.workers,
                  "loglevel": "debug" if args.debug else "info"})
    try:
        bed.create()
        cluster = session.cluster(bed)
        cluster.start()
    except BaseException:
        take_down(session)
        raise
    print("Manager and Workers are up; each Worker registered.")
    describe(cluster)
    print("next:      bin/netbed job --slow 2 & then bin/netbed cut worker2 "
          "--wait; bin/netbed heal worker2; bin/netbed down")


def slow_mapper(session, seconds):
    """Write a mapper that sleeps, then counts words; return its path."""
    path = session.directory / "slow_map.sh"
    path.write_text(f"#!/bin/sh\n# Written by bin/netbed job --slow.\n"
                    f"sleep {seconds}\nexec '{EXAMPLES / 'wc_map.py'}'\n")
    path.chmod(0o755)
    return path


def command_job(session, args):
    """Submit word count from the client host; wait for it; check it."""
    cluster = session.cluster()
    mapper = (slow_mapper(session, args.slow) if args.slow
              else EXAMPLES / "wc_map.py")
    # An output directory of its own: another `job` may run meanwhile.
    output = session.directory / f"output-{os.getpid()}"
    job = JobSpec(EXAMPLES / "input", output, mapper,
                  EXAMPLES / "wc_reduce.py", args.mappers, args.reducers)
    started = time.monotonic()
    # `mapreduce-submit --wait` follows the job (the status API) and
    # prints its job id, its progress and its outcome.
    process = cluster.follow_job(job)
    out, err = process.communicate(timeout=3600)
    print(out + err, end="")
    print(f"the job ended after {time.monotonic() - started:.1f}s: "
          f"{'finished' if process.returncode == 0 else 'did not finish'}")
    right = output_lines(job.output) == pipeline_output(
        job.input, EXAMPLES / "wc_map.py", job.reducer)
    print(f"output {relative(job.output)}: "
          f"{'same as' if right else 'DIFFERENT FROM'} the pipeline's")
    return 0 if right else 1


def command_cut(session, args):
    """Unplug a host; with --wait, time how long the Manager takes."""
    bed = session.bed()
    cluster = session.cluster(bed)
    cut = time.monotonic()
    bed.cut(args.host)
    print(f"{args.host} ({bed.host(args.host).address}) is cut off")
    if args.wait:
        worker = remote_worker(bed.host(args.host).address)
        found = cluster.log("manager").wait(rf"Marked {worker} dead",
                                            since=cut, timeout=120)
        print(f"after {found[0][0] - cut:.1f}s: {found[0][1]}")


def command_heal(session, args):
    """Plug a host back in."""
    bed = session.bed()
    bed.heal(args.host)
    print(f"{args.host} ({bed.host(args.host).address}) is back on the "
          f"network")


def command_reboot(session, args):
    """Kill every process on a host, then start its Manager or Worker."""
    bed = session.bed()
    cluster = session.cluster(bed)
    bed.power_off(args.host)
    print(f"{args.host}: every process killed; starting again")
    if args.host == "manager":
        cluster.start_manager()
        print("the Manager listens again")
    elif args.host.startswith("worker"):
        cluster.start_worker(args.host)
        print("the Worker registered")


def command_status(session, _args):
    """Show the hosts, their links and processes, the Manager's log end."""
    cluster = session.cluster()
    describe(cluster)
    lines = cluster.log("manager").texts()
    print("the Manager's log, last lines:")
    for line in lines[-8:]:
        print(f"  {line[:150]}")


def take_down(session):
    """Shut the cluster down, remove the bed, end the keeper."""
    if session.state is None:
        return
    bed = session.bed()
    if bed.exists():
        session.cluster(bed).submit("--shutdown")
        deadline = time.monotonic() + 10
        while any(bed.pids(name) for name in bed.hosts) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        bed.destroy()
    keeper = pathlib.Path(f"/proc/{session.state['keeper']}/cmdline")
    with contextlib.suppress(OSError):
        if keeper.read_bytes().startswith(b"sleep\0"):
            os.kill(session.state["keeper"], 15)
    session.forget()


def command_down(session, _args):
    """Stop everything and remove the bed; keep the logs."""
    take_down(session)
    print(f"the bed is gone; logs stay in "
          f"{relative(session.directory / 'logs')}")


def command_sweep(_session, _args):
    """Remove the beds whose owner is gone."""
    removed = sweep()
    print(f"removed {len(removed)} leftover namespace(s)"
          + "".join(f"\n  {name}" for name in removed))


def parser():
    """Return the command-line parser."""
    top = argparse.ArgumentParser(prog="bin/netbed", description=__doc__,
                                  formatter_class=argparse.
                                  RawDescriptionHelpFormatter)
    top.add_argument("--dir", default=str(REPO / "var" / "netbed"),
                     help="state and logs (default: var/netbed)")
    commands = top.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="make a bed and start a cluster")
    up.add_argument("--workers", type=int, default=3)
    up.add_argument("--debug", action="store_true",
                    help="the Manager logs every message and heartbeat")
    job = commands.add_parser("job", help="run word count from the client")
    job.add_argument("--slow", type=float, default=0,
                     help="each mapper run sleeps this long first")
    job.add_argument("--mappers", type=int, default=6)
    job.add_argument("--reducers", type=int, default=3)
    for name, text in (("cut", "cut a host off"), ("heal", "plug it back"),
                       ("reboot", "kill all on a host and start again")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("host")
        if name == "cut":
            sub.add_argument("--wait", action="store_true",
                             help="wait until the Manager marks it dead")
    for name, text in (("status", "show the bed"), ("down", "remove it"),
                       ("sweep", "remove beds of crashed runs")):
        commands.add_parser(name, help=text)
    return top


def main(argv=None):
    """Run one sub-command; errors are one line and exit status 1."""
    args = parser().parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"Error: {reason}", file=sys.stderr)
        return 1
    command = globals()[f"command_{args.command}"]
    try:
        return command(Session(args.dir), args) or 0
    except (BedError, AssertionError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
