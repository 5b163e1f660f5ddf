"""Style as the seed grades it: its pylint settings, no inline suppressions.

The seed checks the package with pylint at `max-args = 6` and
`min-public-methods = 1` (everything else pylint's default) and refuses
files that switch a checker off inline. These tests hold the project to
that: setup.cfg must keep the seed's settings for the package (bin/test
runs pylint over mapreduce/ with them, before the suite), and no tracked
file (but the README that explains the rule) may carry a suppression
comment.
"""

import configparser
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEED_DESIGN = {"max-args": "6", "min-public-methods": "1"}
# Spelled in pieces, so that this file does not match itself.
SUPPRESSIONS = ("py" + "lint:", "no" + "qa", "no" + "pep8")
# Files that may name the words, to explain the rule.
EXPLAINED_IN = {"README.md"}


def tracked_files():
    """Return the paths (relative) of the files git tracks."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT,
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout: {exc}")
    return [name for name in listed.decode().split("\0") if name]


def test_no_inline_suppressions():
    """No tracked file switches a style checker off inline."""
    offenders = []
    for name in tracked_files():
        if name in EXPLAINED_IN:
            continue
        path = ROOT / name
        if not path.is_file():
            continue  # Deleted in the working tree, not yet committed.
        text = path.read_bytes().decode("utf-8", "replace").lower()
        for number, line in enumerate(text.splitlines(), 1):
            offenders.extend(f"{name}:{number}: {word}"
                             for word in SUPPRESSIONS if word in line)
    assert not offenders, "\n".join(offenders)


def test_setup_cfg_keeps_the_seed_settings():
    """The package's pylint settings are the seed's, relaxed in nothing."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    design = dict(config["pylint.design"]) if config.has_section(
        "pylint.design") else {}
    assert design == SEED_DESIGN
    relaxed = [section for section in config.sections()
               if section.startswith("pylint.")
               and section not in ("pylint.main", "pylint.design")]
    assert not relaxed
    assert set(config["pylint.main"]) <= {"jobs"}
