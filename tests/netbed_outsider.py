"""An outsider in the network test bed: a host that reaches every port.

It has no secret (or a wrong one) and tries what anyone on the network
could: run `mapreduce-submit`, send a task to a Worker, forge heartbeats,
`finished` reports and `shutdown`s, and replay a signed message captured
on its way from a real client to the Manager. Every try runs on the
`outsider` host with the tools of tests/netbed_tools.py; the test then
checks that nothing ran, nothing stopped and nothing was lost.
"""

import os
import pathlib
import secrets
import subprocess
import sys

from mapreduce import auth, protocol
from mapreduce.localcluster import command, spawn
from tests.netbed_cluster import MANAGER_PORT, WORKER_PORT

REPO = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 30.0


def write_secret(path):
    """Write a new random secret to `path` (mode 600); return the path."""
    path = pathlib.Path(path)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
              "w", encoding="ascii") as file:
        file.write(secrets.token_urlsafe(32) + "\n")
    return path


def unsigned_environment():
    """Return this process's environment without a secret file in it."""
    return {name: value for name, value in os.environ.items()
            if name != auth.SECRET_FILE_VARIABLE}


def pwn_script(path, trophies):
    """Write an executable that leaves a file in `trophies` if it ever runs.

    It then copies stdin to stdout, so as a mapper it would "work".
    """
    path = pathlib.Path(path)
    path.write_text(f"#!/bin/sh\ntouch '{trophies}/ran-$$'\nexec cat\n",
                    encoding="utf-8")
    path.chmod(0o755)
    return path


class Recorder:
    """A recorder on a host: passes one message on, keeping its bytes."""

    def __init__(self, bed, host, port, keep):
        """Listen on `host`'s address, port `port`; keep bytes in `keep`."""
        self.bed = bed
        self.address = (bed.host(host).address, port)
        self.keep = pathlib.Path(keep)
        # Waited for in captured().
        self.process = spawn(bed.command(host, [
            sys.executable, "-m", "tests.netbed_tools", "record",
            *self.address, bed.host("manager").address, MANAGER_PORT,
            self.keep]), cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if line.strip() != "listening":
            self.process.kill()
            _, err = self.process.communicate()
            raise AssertionError(f"the recorder did not start: {line}{err}")

    def captured(self):
        """Wait for the recorder to pass its message on; return the bytes."""
        _, err = self.process.communicate(timeout=TIMEOUT)
        assert self.process.returncode == 0, f"the recorder failed: {err}"
        return self.keep.read_bytes()


class Outsider:
    """The `outsider` host of a bed, with a directory for its files."""

    def __init__(self, bed, directory):
        """Act on `bed`'s outsider host; keep files in `directory`."""
        self.bed = bed
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        wrong = self.directory / "wrong.key"
        if not wrong.exists():
            write_secret(wrong)
        self.wrong = auth.Authenticator(auth.load_secret(wrong), "outsider")
        self.sent = 0

    def address(self, host):
        """Return the address of host `host` of the bed."""
        return self.bed.host(host).address

    def run(self, argv):
        """Run `argv` on the outsider host; return the CompletedProcess."""
        return subprocess.run(self.bed.command("outsider", argv), cwd=REPO,
                              env=unsigned_environment(), text=True,
                              capture_output=True, check=False,
                              timeout=TIMEOUT)

    def send(self, kind, host, port, data):
        """Send bytes `data` to `host` by `kind` (tcp or udp); return it.

        Returns the tool's CompletedProcess (an unanswered TCP message
        prints `0`).
        """
        self.sent += 1
        path = self.directory / f"message-{self.sent}"
        path.write_bytes(data)
        return self.run([sys.executable, "-m", "tests.netbed_tools", kind,
                         self.address(host), port, path])

    def forge(self, kind, host, port, msg):
        """Send `msg` twice: as is, and sealed with a wrong secret."""
        data = protocol.encode(msg)
        recipient = ("manager" if host == "manager"
                     else f"{self.address(host)}:{port}")
        return [self.send(kind, host, port, data),
                self.send(kind, host, port,
                          self.wrong.seal(data, recipient))]

    def submit(self, job, secret_file=None):
        """Run `mapreduce-submit` for `job`, without a secret or another."""
        extra = [] if secret_file is None else ["--secret-file", secret_file]
        return self.run([command("mapreduce-submit"), "--host",
                         self.address("manager"), "--port", MANAGER_PORT,
                         *extra, *job.arguments()])

    def task_to_worker(self, host, executable, input_file, output):
        """Send a map task running `executable` to the Worker on `host`."""
        return self.forge("tcp", host, WORKER_PORT, protocol.NewMapTask(
            task_id=0, input_paths=[str(input_file)],
            executable=str(executable), output_directory=str(output),
            num_partitions=1))

    def heartbeat(self, host):
        """Forge heartbeats of the Worker at `host`'s address."""
        return self.forge("udp", "manager", MANAGER_PORT, protocol.Heartbeat(
            worker_host=self.address(host), worker_port=WORKER_PORT))

    def finished(self, host, task_id):
        """Forge the Worker on `host` reporting task `task_id` finished."""
        return self.forge("tcp", "manager", MANAGER_PORT, protocol.Finished(
            task_id=task_id, worker_host=self.address(host),
            worker_port=WORKER_PORT))

    def shutdown(self, host):
        """Tell the process on `host` to shut down."""
        port = MANAGER_PORT if host == "manager" else WORKER_PORT
        return self.forge("tcp", host, port, protocol.Shutdown())

    def replay(self, host, data):
        """Send captured bytes `data` to `host` again, unchanged."""
        port = MANAGER_PORT if host == "manager" else WORKER_PORT
        return self.send("tcp", host, port, data)
