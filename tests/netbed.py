"""A test bed of real hosts on one machine: network namespaces on a bridge.

Every host (a Manager, Workers, a client, an outsider) is a Linux network
namespace with one address on a private subnet, 10.77.0.0/24. The hosts
are plugged into a switch: a bridge inside a namespace of its own, so
nothing is ever added to the machine's own network namespace, its
interfaces or its routes. Processes run inside a host with `ip netns
exec`; they share the file system, as NFS mounted at the same path on
every machine would give.

Cutting a host off unplugs its cable at the switch: the switch's end of
its link goes down, the host keeps its address and route and simply hears
nothing, as in a real network partition. Healing plugs it back in.

Names are unique per bed: `mrnb-<owner pid>-<random>-<host>`. The owner
is the process whose life the bed belongs to (the pytest process, or the
keeper process of `bin/netbed`). `sweep()` removes every bed whose owner
is gone, so a run that crashed or was killed leaves nothing behind for
long; `Bed.destroy()` kills every process inside the bed's namespaces and
deletes them, which removes their links and the bridge with them.

It needs root and `ip` (iproute2); `unavailable()` says why not in one
line. `tests/netbed_cluster.py` runs the real commands in a bed; `bin/netbed`
lets people try it by hand.
"""

import dataclasses
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time

PREFIX = "mrnb-"
SUBNET = "10.77.0"
SWITCH = "switch"
BRIDGE = "br0"
_NAME = re.compile(rf"^{PREFIX}(\d+)-([0-9a-f]+)-([a-z0-9]+)$")


class BedError(Exception):
    """A command of the bed failed; the message says which and why."""


def ip_command():
    """Return the path of `ip`, or None (sbin may be missing from PATH)."""
    path = os.pathsep.join(filter(None, [os.environ.get("PATH"),
                                         "/usr/sbin", "/sbin"]))
    return shutil.which("ip", path=path)


def unavailable():
    """Return why no bed can be made here (one line), or None if it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the network test bed needs root (network namespaces)"
    if ip_command() is None:
        return "the network test bed needs `ip` (iproute2), not found"
    return None


def ip(*args, check=True):
    """Run `ip ARGS`; return its output; raise BedError if it fails."""
    result = subprocess.run([ip_command() or "ip", *args], check=False,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise BedError(f"ip {' '.join(args)}: "
                       f"{result.stderr.strip() or result.returncode}")
    return result.stdout


def address_of(host, workers=3):
    """Return the address that host `host` gets in a bed."""
    fixed = {"manager": 1, "client": 100, "outsider": 200}
    if host in fixed:
        return f"{SUBNET}.{fixed[host]}"
    number = int(host[len("worker"):]) if host.startswith("worker") else 0
    if not 1 <= number <= min(workers, 89):
        raise BedError(f"no host {host!r} in this bed")
    return f"{SUBNET}.{10 + number}"


def host_names(workers):
    """Return the names of a bed's hosts: manager, workers, client, ..."""
    return (["manager"] + [f"worker{n}" for n in range(1, workers + 1)]
            + ["client", "outsider"])


def _owner_alive(pid):
    """Tell whether process `pid` still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(pid):
    """Tell whether process `pid` runs (exists and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            return file.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def namespace_pids(namespace):
    """Return the pids of the processes living in `namespace`."""
    return [int(pid) for pid in
            ip("netns", "pids", namespace, check=False).split()]


def empty_namespace(namespace, timeout=10.0):
    """SIGKILL every process in `namespace` until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        pids = namespace_pids(namespace)
        if not pids:
            return
        if time.monotonic() > deadline:
            raise BedError(f"processes {pids} in {namespace} do not die")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def remove_namespace(namespace):
    """Kill what runs in `namespace`, then delete it and its links."""
    empty_namespace(namespace)
    ip("netns", "delete", namespace, check=False)


def bed_namespaces():
    """Return {namespace: owner pid} of every bed namespace on the machine."""
    found = {}
    for line in ip("netns", "list", check=False).splitlines():
        name = line.split(" ", 1)[0]
        match = _NAME.match(name)
        if match:
            found[name] = int(match.group(1))
    return found


def sweep():
    """Remove the namespaces of every bed whose owner is gone.

    Only names of this bed's own form are looked at. Host namespaces go
    before switches. Returns the names removed.
    """
    leftovers = sorted((name for name, owner in bed_namespaces().items()
                        if not _owner_alive(owner)),
                       key=lambda name: name.endswith(f"-{SWITCH}"))
    for name in leftovers:
        remove_namespace(name)
    return leftovers


@dataclasses.dataclass(frozen=True)
class Host:
    """One host of a bed: its name, namespace and address."""

    name: str
    namespace: str
    address: str

    @property
    def port(self):
        """Return the name of its link's end in the switch."""
        return f"p-{self.name}"


class Bed:
    """Network namespaces on a bridge: one per host, plus the switch.

    Use as a context manager (`with Bed(...) as bed:`): the namespaces are
    made on entry and removed, with everything running in them, on exit.
    """

    def __init__(self, workers=3, owner=None, tag=None):
        """Name the bed's hosts; make nothing yet."""
        self.owner = os.getpid() if owner is None else owner
        self.tag = tag or secrets.token_hex(3)
        self.workers = workers
        self.hosts = {name: Host(name, self.namespace(name),
                                 address_of(name, workers))
                      for name in host_names(workers)}
        self.switch = self.namespace(SWITCH)

    def namespace(self, name):
        """Return the namespace name of host `name` in this bed."""
        return f"{PREFIX}{self.owner}-{self.tag}-{name}"

    def create(self):
        """Make the switch and every host; remove them again on failure."""
        try:
            ip("netns", "add", self.switch)
            ip("-n", self.switch, "link", "add", BRIDGE, "type", "bridge")
            ip("-n", self.switch, "link", "set", BRIDGE, "up")
            for host in self.hosts.values():
                self._plug(host)
        except BaseException:
            self.destroy()
            raise
        return self

    def _plug(self, host):
        """Make `host`'s namespace and link it to the switch."""
        ip("netns", "add", host.namespace)
        ip("-n", self.switch, "link", "add", host.port, "type", "veth",
           "peer", "name", "eth0", "netns", host.namespace)
        ip("-n", self.switch, "link", "set", host.port, "master", BRIDGE,
           "up")
        ip("-n", host.namespace, "link", "set", "lo", "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24",
           "dev", "eth0")
        ip("-n", host.namespace, "link", "set", "eth0", "up")

    def destroy(self):
        """Kill every process in the bed; delete every namespace of it."""
        errors = []
        for namespace in [h.namespace for h in self.hosts.values()] + [
                self.switch]:
            try:
                remove_namespace(namespace)
            except BedError as exc:
                errors.append(str(exc))
        if errors:
            raise BedError("; ".join(errors))

    def host(self, name):
        """Return host `name`, or raise BedError naming the hosts."""
        if name not in self.hosts:
            raise BedError(f"no host {name!r}; hosts: "
                           f"{', '.join(self.hosts)}")
        return self.hosts[name]

    def cut(self, name):
        """Unplug host `name` at the switch: its link goes down."""
        ip("-n", self.switch, "link", "set", self.host(name).port, "down")

    def heal(self, name):
        """Plug host `name` back in."""
        ip("-n", self.switch, "link", "set", self.host(name).port, "up")

    def is_cut(self, name):
        """Tell whether host `name` is cut off."""
        shown = ip("-n", self.switch, "-o", "link", "show",
                   self.host(name).port)
        flags = shown.partition("<")[2].partition(">")[0].split(",")
        return "UP" not in flags

    def command(self, name, argv):
        """Return the argv that runs `argv` inside host `name`."""
        return [ip_command() or "ip", "netns", "exec",
                self.host(name).namespace, *map(str, argv)]

    def reaches(self, name, address, port, timeout=1.0):
        """Tell whether host `name` can open a TCP connection to a port."""
        probe = ("import socket, sys; socket.create_connection("
                 "(sys.argv[1], int(sys.argv[2])), float(sys.argv[3]))")
        result = subprocess.run(
            self.command(name, [sys.executable, "-c", probe, address, port,
                                timeout]),
            capture_output=True, check=False, timeout=timeout + 30)
        return result.returncode == 0

    def pids(self, name):
        """Return the pids of the processes running on host `name`."""
        return namespace_pids(self.host(name).namespace)

    def power_off(self, name):
        """Kill every process on host `name` (SIGKILL), as a crash would."""
        empty_namespace(self.host(name).namespace)

    def exists(self):
        """Tell whether this bed's switch namespace exists."""
        return self.switch in bed_namespaces()

    def __enter__(self):
        """Make the bed."""
        return self.create()

    def __exit__(self, *exc_info):
        """Remove the bed and everything running in it."""
        self.destroy()
