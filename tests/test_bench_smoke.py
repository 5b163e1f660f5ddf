"""Smoke run of the benchmark harness: it runs and its outputs agree.

Correctness only: no figure is compared with a target here, because the
machine running the suite is shared and noisy.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.util import find_madoop

SECTIONS = ["throughput", "latency", "idle", "memory", "heap", "scheduling",
            "combiner"]
SMALL = ["--quick", "--size-mb", "0.5", "--repeat", "1", "--files", "3"]


def check_idle(idle):
    """The idle figures add up and no process used more CPU than it could."""
    used = [idle["manager_cpu_s"], *idle["workers_cpu_s"]]
    assert len(used) == 3
    assert idle["cpu_s"] == pytest.approx(sum(used))
    assert idle["seconds"] >= 0.5
    # One process cannot use more CPU than every core for the whole time.
    assert all(0 <= cpu <= idle["seconds"] * os.cpu_count() for cpu in used)


def run_bench(tmp_path, *args):
    """Run `python -m bench` with `args`; return (stdout lines, summary).

    Fails the test unless it exits 0. madoop comes from this environment
    (or PATH); without it the test skips.
    """
    scripts = find_madoop().parent
    env = {**os.environ,
           "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args,
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300, check=False, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


def check_combiner(figures):
    """The combiner section's figures are there and the shuffle shrank."""
    for key in ("pipeline_s", "madoop_s", "plain_s", "cluster_s",
                "vs_pipeline", "vs_madoop", "combiner_speedup"):
        assert figures[key] > 0, key
    assert 0 < figures["shuffle_combined_bytes"] < figures[
        "shuffle_plain_bytes"]
    assert figures["shuffle_ratio"] == pytest.approx(
        figures["shuffle_combined_bytes"] / figures["shuffle_plain_bytes"])


def test_quick_bench_runs_and_outputs_agree(tmp_path):
    """`python -m bench --quick` exits 0 and reports every section."""
    lines, summary = run_bench(
        tmp_path, *SMALL, "--latency-jobs", "2", "--idle-seconds", "0.5",
        "--sched-files", "10")
    assert summary["outputs_equal"] is True
    assert summary["errors"] == {}
    assert list(summary["results"]) == SECTIONS
    throughput = summary["results"]["throughput"]
    assert set(throughput) == {"shell", "python"}
    for figures in throughput.values():
        for key in ("pipeline_s", "madoop_s", "cluster_s", "vs_pipeline",
                    "vs_madoop"):
            assert figures[key] > 0
    assert summary["results"]["latency"]["jobs"] == 2
    assert summary["results"]["scheduling"]["tasks"] == 12
    workers = summary["results"]["memory"]["0.5mb"]["workers_mb"]
    assert len(workers) == 2 and all(mb > 0 for mb in workers)
    check_idle(summary["results"]["idle"])
    assert set(summary["results"]["combiner"]) == {"shell", "python"}
    for figures in summary["results"]["combiner"].values():
        check_combiner(figures)
    names = [target["name"] for target in summary["targets"]]
    assert any(name.startswith("latency") for name in names)
    assert all(isinstance(target["pass"], bool)
               for target in summary["targets"])
    assert lines[0].startswith("figure")
    assert sum(" PASS" in line or " MISS" in line
               for line in lines) == len(names)


def test_combiner_section_runs_alone(tmp_path):
    """`--only combiner` runs that section and nothing else."""
    lines, summary = run_bench(tmp_path, *SMALL, "--only", "combiner",
                               "--kinds", "shell")
    assert list(summary["results"]) == ["combiner"]
    check_combiner(summary["results"]["combiner"]["shell"])
    names = [target["name"] for target in summary["targets"]]
    assert names == ["combiner shell: cluster / pipeline",
                     "combiner shell: cluster / madoop"]
    assert any(line.startswith("combiner shell: shuffle bytes")
               for line in lines)
