"""The package as the spec's Python API promises it."""

import subprocess
import sys


def test_import_mapreduce_exposes_manager_and_worker():
    """A bare `import mapreduce` reaches both classes (a fresh interpreter).

    The course's tests write `mapreduce.manager.Manager(...)` after
    `import mapreduce` alone; in a fresh interpreter nothing else has
    imported the subpackages first.
    """
    code = ("import mapreduce\n"
            "print(mapreduce.manager.Manager.__name__, "
            "mapreduce.worker.Worker.__name__)\n")
    result = subprocess.run([sys.executable, "-c", code], check=False,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Manager", "Worker"]
