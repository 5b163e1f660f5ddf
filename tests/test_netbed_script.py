"""`bin/netbed` as the README tells a person to use it, step by step.

Up with a secret and the dashboard forwarded, a job, the dashboard from
the machine itself, a Worker cut off and healed (each waited for), a
second job, down: then nothing of the bed is left. Runs the sub-commands
as `python -m tests.netbed_cli` (what bin/netbed runs once the virtual
environment is set up). Needs root and `ip`, like the bed.
"""

import json
import pathlib
import re
import subprocess
import sys
import urllib.request

import pytest

from mapreduce.localcluster import free_port
from tests.netbed import bed_namespaces, running, unavailable

REASON = unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
REPO = pathlib.Path(__file__).resolve().parent.parent


def netbed(directory, *args, timeout=120):
    """Run `bin/netbed --dir DIRECTORY ARGS`; return its output; check it."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.netbed_cli", "--dir", str(directory),
         *args], cwd=REPO, capture_output=True, text=True, check=False,
        timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def waited(output):
    """Return the `after N.Ns` that a --wait sub-command printed."""
    return re.search(r"after \d+\.\ds", output).group(0)


def test_netbed_by_hand(tmp_path):
    """Up, job, dashboard, cut, heal, job, down, as the README says."""
    directory = tmp_path / "netbed"
    port = free_port()
    state = None
    try:
        out = netbed(directory, "up", "--workers", "2", "--secret",
                     "--dashboard-port", str(port))
        state = json.loads((directory / "bed.json").read_text())
        assert f"dashboard: http://localhost:{port}/" in out
        assert (directory / "secret.key").stat().st_mode & 0o077 == 0
        assert "same as the pipeline's" in netbed(directory, "job")
        with urllib.request.urlopen(
                f"http://localhost:{port}/api/status", timeout=10) as page:
            status = json.load(page)
        assert [w["state"] for w in status["workers"]] == ["ready"] * 2
        cut = netbed(directory, "cut", "worker2", "--wait")
        assert "Marked RemoteWorker(host='10.77.0.12'" in cut
        healed = netbed(directory, "heal", "worker2", "--wait")
        assert "Registered RemoteWorker(host='10.77.0.12'" in healed
        assert "again (it was dead)" in healed
        assert "same as the pipeline's" in netbed(directory, "job")
        print(f"[netbed] bin/netbed by hand: worker2 marked dead "
              f"{waited(cut)} the cut, registered again {waited(healed)} "
              f"the heal")
    finally:
        netbed(directory, "down")
    assert not [name for name in bed_namespaces() if state["tag"] in name]
    assert not running(state["keeper"])
