"""bin/mapreduce and bin/demo: a real local cluster, on private ports.

Every test runs its own cluster on free ports with its var/ directory and
shared directory in tmp_path, so it can run while another cluster (the
default one on 6000-6002, or another test's) is up.
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from mapreduce import client
from mapreduce.localcluster import (
    START_ATTEMPTS, WAIT, free_port, output_lines, pipeline_output, wait_for,
)
from tests.util import (
    EXEC, TESTDATA, process_running, run_command, wait_for_output,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
INIT = ROOT / "bin" / "mapreduce"
DEMO = ROOT / "bin" / "demo"
NAMES = ("manager", "worker-1", "worker-2")
# What `start` prints: the dashboard's address when it serves one.
STARTED = re.compile(r"starting mapreduce \.\.\.\n"
                     r"Dashboard on http://localhost:([0-9]+)/\n")


def command_line(pid):
    """Return the command line of process `pid`, or "" if it is gone."""
    try:
        raw = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace")


class InitScriptCluster:
    """The settings of one private cluster and ways to drive it."""

    def __init__(self, tmp_path):
        """Choose free ports and directories under `tmp_path`."""
        self.manager_port, *self.worker_ports = self.free_ports()
        self.var = tmp_path / "var"
        self.cwd = ROOT  # Where the script runs.
        self.shared = tmp_path / "shared"
        self.shared.mkdir()
        scripts = pathlib.Path(sys.executable).parent
        self.env = {
            **os.environ,
            "VIRTUAL_ENV": str(scripts.parent),
            "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}",
            **self.port_settings(),
            "MAPREDUCE_VAR": str(self.var),
            "MAPREDUCE_SHARED_DIR": str(self.shared),
            "MAPREDUCE_STOP_TIMEOUT": "10",
            "MAPREDUCE_WEB_PORT": "0",
        }

    @staticmethod
    def free_ports():
        """Return three different free ports, in order."""
        ports = set()
        while len(ports) < 3:
            ports.add(free_port())
        return sorted(ports)

    def port_settings(self):
        """Return the environment variables that give the ports."""
        return {"MAPREDUCE_MANAGER_PORT": str(self.manager_port),
                "MAPREDUCE_WORKER_PORTS": " ".join(map(str,
                                                       self.worker_ports))}

    def run(self, *args, script=INIT, **env):
        """Run bin/mapreduce (or `script`) with `args`; return the result."""
        return subprocess.run([str(script), *args], capture_output=True,
                              text=True, check=False, timeout=120,
                              env={**self.env, **env}, cwd=self.cwd)

    def pid_file(self, name):
        """Return the pid file of "manager", "worker-1" or "worker-2"."""
        if name != "manager":
            port = self.worker_ports[int(name[-1]) - 1]
            name = f"worker-{port}"
        return self.var / "run" / f"{name}.pid"

    def pid(self, name):
        """Return the pid recorded for `name`, or None."""
        try:
            return int(self.pid_file(name).read_text())
        except (OSError, ValueError):
            return None

    def ours(self, name):
        """Return the pid of `name` if that process is still ours."""
        pid = self.pid(name)
        if pid is None or not process_running(pid):
            return None
        command = "mapreduce-manager" if name == "manager" else \
            "mapreduce-worker"
        return pid if command in command_line(pid) else None

    def log(self, name):
        """Return the text of the log of `name` (e.g. "manager")."""
        if name != "manager":
            name = f"worker-{self.worker_ports[int(name[-1]) - 1]}"
        path = self.var / "log" / f"{name}.log"
        return path.read_text("utf-8") if path.exists() else ""

    def start(self):
        """Start the cluster and wait until both Workers registered.

        If one of the free ports was taken in the meantime (by another
        test), start again on other ports.
        """
        for _ in range(START_ATTEMPTS):
            result = self.run("start")
            if result.returncode == 0 or not any(
                    taken in result.stderr
                    for taken in ("is in use", "Address already in use")):
                break
            self.manager_port, *self.worker_ports = self.free_ports()
            self.env.update(self.port_settings())
        assert result.returncode == 0, result
        assert STARTED.fullmatch(result.stdout), result.stdout
        wait_for(lambda: self.log("manager").count("Registered") == 2,
                 what="both Workers to register")

    def kill_leftovers(self):
        """Kill, by recorded pid, whatever this cluster left running."""
        for name in NAMES:
            pid = self.ours(name)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)


@pytest.fixture(name="cluster")
def fixture_cluster(tmp_path):
    """Give a private cluster's settings; stop whatever it left running."""
    cluster = InitScriptCluster(tmp_path)
    try:
        yield cluster
    finally:
        for name in NAMES:
            pid = cluster.ours(name)
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        cluster.run("stop", MAPREDUCE_STOP_TIMEOUT="2")
        cluster.kill_leftovers()


def test_start_status_stop(cluster):
    """The messages and exit codes of SPEC.md, and processes really gone."""
    result = cluster.run("status")
    assert (result.returncode, result.stdout) == (
        1, "manager not running\nworkers not running\n")

    cluster.start()
    pids = [cluster.ours(name) for name in NAMES]
    assert all(pids), pids
    assert "Listening on localhost:" in cluster.log("manager")
    for name in ("worker-1", "worker-2"):
        assert "Registered with the Manager" in cluster.log(name)
    assert len(list(cluster.shared.iterdir())) == 1

    result = cluster.run("status")
    assert (result.returncode, result.stdout) == (
        0, "manager running\nworkers running\n")

    result = cluster.run("start")
    assert (result.returncode, result.stdout) == (
        1, "Error: mapreduce-manager is already running\n")
    assert [cluster.ours(name) for name in NAMES] == pids

    result = cluster.run("stop")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "stopping mapreduce ...\n", "")
    assert not any(process_running(pid) for pid in pids)
    assert not list(cluster.shared.iterdir()), "shared dir left behind"
    assert "Shutting down" in cluster.log("worker-1")

    result = cluster.run("status")
    assert (result.returncode, result.stdout) == (
        1, "manager not running\nworkers not running\n")


def test_status_needs_manager_and_a_worker(cluster):
    """Status exits 0 only with the Manager and at least one Worker up."""
    cluster.start()
    os.kill(cluster.ours("worker-1"), signal.SIGTERM)
    wait_for(lambda: cluster.ours("worker-1") is None, what="worker-1 exit")
    result = cluster.run("status")
    assert (result.returncode, result.stdout) == (
        0, "manager running\nworkers running\n")

    os.kill(cluster.ours("worker-2"), signal.SIGTERM)
    wait_for(lambda: cluster.ours("worker-2") is None, what="worker-2 exit")
    result = cluster.run("status")
    assert (result.returncode, result.stdout) == (
        1, "manager running\nworkers not running\n")

    result = cluster.run("stop")
    assert (result.returncode, result.stdout) == (
        0, "stopping mapreduce ...\n")
    assert cluster.ours("manager") is None


def test_workers_without_manager(cluster):
    """Workers alone: status fails; stop kills them without a Manager."""
    cluster.start()
    workers = [cluster.ours("worker-1"), cluster.ours("worker-2")]
    os.kill(cluster.ours("manager"), signal.SIGKILL)
    wait_for(lambda: cluster.ours("manager") is None, what="manager exit")
    result = cluster.run("status")
    assert (result.returncode, result.stdout) == (
        1, "manager not running\nworkers running\n")

    result = cluster.run("stop", MAPREDUCE_STOP_TIMEOUT="1")
    assert (result.returncode, result.stdout) == (
        0, "stopping mapreduce ...\nkilling mapreduce worker ...\n")
    assert not any(process_running(pid) for pid in workers)


def test_stop_kills_an_unresponsive_cluster(cluster):
    """A stopped Manager cannot shut down: stop kills, and says so.

    It is woken first, so that SIGTERM lets it clean up: no process and no
    shared directory is left behind.
    """
    cluster.start()
    pids = [cluster.ours(name) for name in NAMES]
    assert len(list(cluster.shared.iterdir())) == 1
    os.kill(pids[0], signal.SIGSTOP)
    result = cluster.run("stop", MAPREDUCE_STOP_TIMEOUT="1")
    assert (result.returncode, result.stdout) == (
        0, "stopping mapreduce ...\nkilling mapreduce manager ...\n"
           "killing mapreduce worker ...\n")
    assert not any(process_running(pid) for pid in pids)
    assert not list(cluster.shared.iterdir()), "shared dir left behind"
    assert not any(cluster.pid_file(name).exists() for name in NAMES)
    result = cluster.run("status")
    assert result.returncode == 1


def test_restart(cluster):
    """Restart stops the running cluster and starts a new one."""
    cluster.start()
    old = [cluster.ours(name) for name in NAMES]
    result = cluster.run("restart")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("stopping mapreduce ...\n")
    assert STARTED.fullmatch(result.stdout.split("\n", 1)[1])
    assert not any(process_running(pid) for pid in old)
    new = [cluster.ours(name) for name in NAMES]
    assert all(new) and not set(new) & set(old)
    assert cluster.run("status").returncode == 0


def test_start_prints_the_dashboard(cluster):
    """`start` prints the address the Manager's dashboard answers on."""
    result = cluster.run("start")
    assert result.returncode == 0, result.stderr
    port = int(STARTED.fullmatch(result.stdout).group(1))
    with urllib.request.urlopen(f"http://localhost:{port}/api/status",
                                timeout=10) as answer:
        manager = json.load(answer)["manager"]
    assert (manager["port"], manager["web_port"]) == (cluster.manager_port,
                                                      port)
    assert "--web-port 0 " in command_line(cluster.ours("manager"))


def test_start_without_dashboard(cluster):
    """MAPREDUCE_WEB_PORT=off: no dashboard, and `start` says nothing."""
    result = cluster.run("start", MAPREDUCE_WEB_PORT="off")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "starting mapreduce ...\n", "")
    assert "--web-port off " in command_line(cluster.ours("manager"))
    assert "Dashboard" not in cluster.log("manager")


def test_dashboard_port_taken(cluster):
    """A taken web port: the cluster runs anyway, with a warning."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cluster.run("start", MAPREDUCE_WEB_PORT=str(port))
    assert (result.returncode, result.stdout) == (
        0, "starting mapreduce ...\n")
    assert result.stderr.startswith(
        f"Warning: the Manager serves no dashboard on port {port};")
    assert "No dashboard: cannot serve it on localhost:" in \
        cluster.log("manager")
    assert cluster.run("status").returncode == 0


@pytest.mark.parametrize("args", [["frobnicate"], [], ["start", "now"]])
def test_usage(cluster, args):
    """A wrong sub-command prints the usage on stderr and exits 1."""
    result = cluster.run(*args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Usage:" in result.stderr
    assert "start|stop|status|restart" in result.stderr
    assert not (cluster.var / "run").exists()


def test_other_processes_are_never_ours(cluster):
    """Pid files naming other processes: not running, and never killed."""
    with subprocess.Popen(["sleep", "60"]) as stranger:
        try:
            (cluster.var / "run").mkdir(parents=True)
            for name in NAMES:
                cluster.pid_file(name).write_text(f"{stranger.pid}\n")
            result = cluster.run("status")
            assert (result.returncode, result.stdout) == (
                1, "manager not running\nworkers not running\n")
            result = cluster.run("stop", MAPREDUCE_STOP_TIMEOUT="1")
            assert (result.returncode, result.stdout) == (
                0, "stopping mapreduce ...\n")
            cluster.start()
            cluster.run("stop")
            assert stranger.poll() is None, "killed a process not ours"
        finally:
            stranger.kill()


def test_start_refuses_a_busy_port(cluster):
    """Another program on a Worker's port: nothing starts, clear error."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", cluster.worker_ports[1]))
        busy.listen()
        result = cluster.run("start")
    assert result.returncode == 1
    assert f"port {cluster.worker_ports[1]} is in use" in result.stderr
    assert not any(cluster.ours(name) for name in NAMES)


def test_start_reports_a_process_that_dies(cluster):
    """The Manager cannot bind its UDP port: start fails with its log."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", cluster.manager_port))
        result = cluster.run("start")
    assert result.returncode == 1
    assert result.stdout == "starting mapreduce ...\n"
    assert "manager exited at start-up" in result.stderr
    assert "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(cluster.ours(name) for name in NAMES)
    assert cluster.run("status").returncode == 1


def test_job_through_the_init_script(cluster, tmp_path):
    """bin/mapreduce + mapreduce-submit give the shell pipeline's answer."""
    cluster.start()
    output = tmp_path / "output"
    result = run_command(
        "mapreduce-submit", "--port", cluster.manager_port,
        "--input", "tests/testdata/input", "--output", output,
        "--mapper", "tests/testdata/exec/wc_map.sh",
        "--reducer", "tests/testdata/exec/wc_reduce.py",
        "--nmappers", 3, "--nreducers", 3, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    summary = client.wait_for_job(("localhost", cluster.manager_port), 0,
                                  WAIT)
    assert summary["state"] == "finished", summary
    wait_for_output(output, 3)
    assert output_lines(output) == pipeline_output(
        TESTDATA / "input", EXEC / "wc_map.sh", EXEC / "wc_reduce.py")
    result = cluster.run("stop")
    assert (result.returncode, result.stdout) == (
        0, "stopping mapreduce ...\n")
    assert not list(cluster.shared.iterdir())


def test_a_signed_cluster(cluster, tmp_path):
    """MAPREDUCE_SECRET_FILE (relative to where one stands) signs it all.

    Every process signs; a client without the secret is refused; `stop`
    shuts the cluster down with a signed shutdown, killing nothing.
    """
    secret = tmp_path / "secret.key"
    secret.write_text("a secret for the init script test\n")
    secret.chmod(0o600)
    cluster.cwd = tmp_path
    cluster.env["MAPREDUCE_SECRET_FILE"] = "secret.key"
    cluster.start()
    assert "Signing every message as 'manager'" in cluster.log("manager")
    for name, port in zip(("worker-1", "worker-2"), cluster.worker_ports):
        assert (f"Signing every message as 'localhost:{port}'"
                in cluster.log(name))
    signed = run_command("mapreduce-status", "--port", cluster.manager_port,
                         "--secret-file", secret)
    assert signed.returncode == 0, signed.stderr
    plain = run_command("mapreduce-status", "--port", cluster.manager_port)
    assert plain.returncode == 1
    assert "answers only with --secret-file" in plain.stderr
    result = cluster.run("stop")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "stopping mapreduce ...\n", "")
    assert "Refused a message" in cluster.log("manager")
    assert not list(cluster.shared.iterdir())


def test_demo(cluster):
    """bin/demo runs a job end to end and stops its cluster after."""
    result = cluster.run("shell", script=DEMO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: the cluster's output is the same as the pipeline's" in \
        result.stdout
    assert result.stdout.rstrip().endswith("stopping mapreduce ...")
    assert not any(cluster.ours(name) for name in NAMES)
    assert (cluster.var / "demo-output" / "part-00000").exists()


def test_demo_refuses_a_running_cluster(cluster):
    """bin/demo does not take over (or stop) a cluster it did not start."""
    cluster.start()
    pids = [cluster.ours(name) for name in NAMES]
    result = cluster.run(script=DEMO)
    assert result.returncode == 1
    assert "already running" in result.stderr
    assert [cluster.ours(name) for name in NAMES] == pids
