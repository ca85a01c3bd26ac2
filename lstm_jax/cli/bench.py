"""``lstm-jax bench``: the benchmark suite of a source checkout (``python -m benchmarks`` in its root; the suite is
not part of the installed package).  Options after ``--quick`` / ``--repo`` are passed on to it."""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

HELP = "run the benchmark suite of a source checkout (python -m benchmarks) and check the speed targets"
DESCRIPTION = (
    "Runs `python -m benchmarks` in the repository: speed vs Flax/Equinox/PyTorch, Jacobians vs autodiff, memory "
    "with/without checkpointing up to T = 10^6, scaling, sharding, parallel-in-time. --quick: tiny sizes, about a "
    "minute. Further options are passed on: --targets (only the speed targets, interleaved peers with "
    "spread-based verdicts, about 5-10 minutes), --only speed,memory, ...")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny sizes (about a minute); results under "
                   "benchmarks/results/quick")
    p.add_argument("--repo", default=".", help="repository root holding benchmarks/ (default: current directory)")


def run(args: argparse.Namespace) -> int:
    repo = pathlib.Path(args.repo).resolve()
    if not (repo / "benchmarks" / "__main__.py").is_file():
        raise ValueError(f"no benchmarks/__main__.py under --repo {repo}. The benchmark suite lives in the source "
                         "checkout (it is not part of the installed package): run this from the repository root "
                         "or pass --repo PATH.")
    cmd = [sys.executable, "-m", "benchmarks"] + (["--quick"] if args.quick else []) + list(args.rest)
    return subprocess.call(cmd, cwd=repo)
