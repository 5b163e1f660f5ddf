"""`bin/netbed`: try the network test bed by hand.

    bin/netbed up [--workers N] [--debug] [--secret] [--dashboard-port P]
                                            a bed, a Manager, N Workers
    bin/netbed job [--slow SECONDS]         word count over examples/input
    bin/netbed cut HOST [--wait]            unplug a host (--wait: until
                                            the Manager marks it dead)
    bin/netbed heal HOST [--wait]           plug it back in (--wait: until
                                            its Worker registers again)
    bin/netbed reboot HOST                  kill all on a host, start again
    bin/netbed outsider                     a stranger tries a job, a task
                                            and a shutdown
    bin/netbed status                       hosts, links, processes, log
    bin/netbed down                         stop everything, remove the bed
    bin/netbed sweep                        remove beds of crashed runs

The bed lives on after `up` returns: its owner is a `sleep` process (the
keeper) started by `up` and ended by `down`; if the keeper dies, the next
`sweep` (which every `up` and every test run does) removes the bed. The
state (which bed, which keeper) is in var/netbed/bed.json, the logs in
var/netbed/logs/.

`up --secret` makes a signed cluster: a new secret in var/netbed/secret.key
(mode 600) and `--secret-file` on every command the bed runs. The
Manager's dashboard (10.77.0.1:6080 inside the bed) is forwarded to
http://localhost:6080/ on the machine itself (`--dashboard-port`): a
small relay on the client host takes the connections of a listening
socket that `up` made in the machine's own network.
"""

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import socket
import sys
import time

from mapreduce.localcluster import output_lines, pipeline_output, spawn
from tests.netbed import Bed, BedError, sweep, unavailable
from tests.netbed_cluster import (
    BedCluster, BedClusterOptions, JobSpec, remote_worker,
)
from tests.netbed_outsider import Outsider, pwn_script, write_secret

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
WEB_PORT = 6080  # The Manager's dashboard, on its address in the bed.


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
        state = self.state or {}
        return BedCluster(bed or self.bed(), self.directory, BedClusterOptions(
            manager_loglevel=state.get("loglevel", "info"), detach=True,
            secret_file=state.get("secret_file")))

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


def describe(session, cluster):
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
    manager = f"http://{bed.host('manager').address}:{WEB_PORT}/"
    port = session.state.get("dashboard_port")
    if port:
        print(f"dashboard: http://localhost:{port}/ (the Manager's "
              f"{manager}, forwarded by the client host)")
    else:
        print(f"dashboard: {manager} inside the bed, e.g. ip netns exec "
              f"{bed.namespace('client')} curl -s {manager}api/status")
    secret = session.state.get("secret_file")
    print(f"signed:    {'with ' + str(relative(secret)) if secret else 'no'}"
          f" (every command of the bed gets --secret-file)")
    print(f"a shell on a host: ip netns exec {bed.namespace('worker1')} "
          f"bash")


def dashboard_listener(port):
    """Return a socket listening on localhost:`port`, or on a free port.

    Says so when `port` is taken and another one is used.
    """
    try:
        return socket.create_server(("127.0.0.1", port))
    except OSError as exc:
        listener = socket.create_server(("127.0.0.1", 0))
        print(f"localhost:{port} cannot be had ({exc.strerror or exc}): "
              f"the dashboard is forwarded to port "
              f"{listener.getsockname()[1]} instead")
        return listener


def forward_dashboard(session, bed, port):
    """Serve the Manager's dashboard on localhost:`port` (or a free one).

    The listening socket is made here, in the machine's own network; a
    relay on the client host (tests/netbed_tools.py) inherits it and
    connects each visitor to the Manager.
    """
    with dashboard_listener(port) as listener:
        # Runs in the client's namespace until the bed is removed.
        spawn(bed.command("client", [
            sys.executable, "-m", "tests.netbed_tools", "forward",
            listener.fileno(), bed.host("manager").address, WEB_PORT]),
            cwd=REPO, pass_fds=[listener.fileno()], start_new_session=True)
        port = listener.getsockname()[1]
    session.save({**session.state, "dashboard_port": port})


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
    secret = None
    if args.secret:
        session.directory.mkdir(parents=True, exist_ok=True)
        secret = session.directory / "secret.key"
        with contextlib.suppress(FileNotFoundError):
            secret.unlink()
        write_secret(secret)
    # Owns the bed until `down`; runs on after this command returns.
    keeper = spawn(["sleep", "infinity"], start_new_session=True)
    bed = Bed(args.workers, owner=keeper.pid)
    session.save({"keeper": keeper.pid, "tag": bed.tag,
                  "workers": args.workers,
                  "loglevel": "debug" if args.debug else "info",
                  "secret_file": secret and str(secret)})
    try:
        bed.create()
        cluster = session.cluster(bed)
        cluster.start()
        if args.dashboard_port != "off":
            forward_dashboard(session, bed, int(args.dashboard_port))
    except BaseException:
        take_down(session)
        raise
    print("Manager and Workers are up; each Worker registered.")
    describe(session, cluster)
    print("next:      bin/netbed job --slow 6 & then bin/netbed cut worker2 "
          "--wait; bin/netbed heal worker2 --wait; bin/netbed down")


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
    cluster.log("manager").poll()  # What is there already came before.
    cut = time.monotonic()
    bed.cut(args.host)
    print(f"{args.host} ({bed.host(args.host).address}) is cut off")
    if args.wait:
        worker = remote_worker(bed.host(args.host).address)
        found = cluster.log("manager").wait(rf"Marked {worker} dead",
                                            since=cut, timeout=120)
        print(f"after {found[0][0] - cut:.1f}s: {found[0][1]}")


def command_heal(session, args):
    """Plug a host back in; with --wait, time its Worker's return."""
    bed = session.bed()
    cluster = session.cluster(bed)
    cluster.log("manager").poll()  # What is there already came before.
    healed = time.monotonic()
    bed.heal(args.host)
    print(f"{args.host} ({bed.host(args.host).address}) is back on the "
          f"network")
    if args.wait and args.host.startswith("worker"):
        worker = remote_worker(bed.host(args.host).address)
        found = cluster.log("manager").wait(rf"Registered {worker}",
                                            since=healed, timeout=60)
        print(f"after {found[0][0] - healed:.1f}s: {found[0][1]}")


def command_reboot(session, args):
    """Kill every process on a host, then start its Manager or Worker."""
    bed = session.bed()
    cluster = session.cluster(bed)
    bed.power_off(args.host)
    print(f"{args.host}: every process killed; starting again")
    if args.host == "manager":
        cluster.log("manager").poll()  # What is there already came before.
        cluster.start_manager()
        started = time.monotonic()
        print("the Manager listens again; waiting for the Workers, which "
              "are told to register again")
        for host in cluster.worker_hosts():
            found = cluster.log("manager").wait(
                rf"Registered {remote_worker(bed.host(host).address)}",
                since=started, timeout=60)
            print(f"after {found[0][0] - started:.1f}s: {found[0][1]}")
    elif args.host.startswith("worker"):
        cluster.start_worker(args.host)
        print("the Worker registered")


def command_outsider(session, _args):
    """Try from the outsider host what a stranger could; show what came of it.

    It submits a job and sends a task to worker1, each running a program
    that leaves a file if it runs, and tells the Manager to shut down. A
    signed cluster refuses all three and logs it; one without a secret
    runs the programs and shuts down.
    """
    bed = session.bed()
    cluster = session.cluster(bed)
    for host in ("manager", "worker1"):
        cluster.log(host).poll()  # What is there already came before.
    started = time.monotonic()
    outsider = Outsider(bed, session.directory / "outsider")
    trophies = session.directory / "outsider" / "trophies"
    trophies.mkdir(exist_ok=True)
    pwn = pwn_script(session.directory / "outsider" / "pwn.sh", trophies)
    output = session.directory / "outsider" / "output"
    tries = [
        ("submits a job, no secret", outsider.submit(JobSpec(
            EXAMPLES / "input", output, pwn, pwn))),
        ("sends worker1 a task", outsider.task_to_worker(
            "worker1", pwn, EXAMPLES / "input" / "river.txt", output)[0]),
        ("tells the Manager to shut down", outsider.shutdown("manager")[0])]
    for what, result in tries:
        said = (result.stdout + result.stderr).strip().splitlines() or [""]
        if said[-1] == "0":  # The tool's way of saying "no answer".
            said[-1] = "sent; no answer"
        print(f"the outsider {what}: {said[-1][:110]}")
    time.sleep(1.0)  # For what the outsider started to run, if anything.
    for host in ("manager", "worker1"):
        for _, line in cluster.log(host).grep(r"Refused|Shutting down",
                                              since=started):
            print(f"{host}.log: {line[:150]}")
    ran = list(trophies.iterdir())
    print(f"programs of the outsider that ran: {len(ran)}; the Manager "
          f"{'runs' if bed.pids('manager') else 'has STOPPED'}")


def command_status(session, _args):
    """Show the hosts, their links and processes, the Manager's log end."""
    cluster = session.cluster()
    describe(session, cluster)
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


def port_or_off(text):
    """Return `text` if it is `off` or a port number; else raise."""
    if text == "off" or (text.isdigit() and 0 < int(text) < 65536):
        return text
    raise argparse.ArgumentTypeError(f"not a port number or off: {text!r}")


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
    up.add_argument("--secret", action="store_true",
                    help="a signed cluster: a new var/netbed/secret.key, "
                    "--secret-file on every command")
    up.add_argument("--dashboard-port", default=str(WEB_PORT),
                    type=port_or_off,
                    help="show the dashboard on localhost:PORT (default "
                    "6080, or a free port if taken; off: no forward)")
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
        if name == "heal":
            sub.add_argument("--wait", action="store_true",
                             help="wait until its Worker registers again")
    for name, text in (("status", "show the bed"), ("down", "remove it"),
                       ("outsider", "try what a stranger could"),
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
