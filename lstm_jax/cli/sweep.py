"""``lstm-jax sweep``: the resumable long-lag sweep (one run saved per file in ``OUT/runs/``, finished runs
skipped when rerun) and its report (``results.json``, ``README.md``, figures), regenerated together."""

from __future__ import annotations

import argparse
import os
import pathlib

from ._options import id_list, int_list, integer
from .train import add_settings_arguments, settings_from

#: the committed report's folder (the long-lag study, docs/long-lag/README.md)
DEFAULT_OUT = "docs/long-lag"

HELP = "the resumable long-lag sweep on the 1997 adding problem and its report (docs/long-lag/)"
DESCRIPTION = (
    "Train every (model, T, seed) of the long-lag plan on the 1997 adding problem, each with its constant-predictor "
    "control, saving each finished run in OUT/runs/ (rerun: finished runs are skipped), then regenerate "
    "OUT/results.json, OUT/README.md and the figures together from every finished run. A study folder "
    "(OUT/<study>/runs/, one setting each) is reported by its parent. --report-only regenerates without training.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--Ts", default=None, help="comma-separated T values: restrict the sweep to these")
    p.add_argument("--models", default=None, help="comma-separated model ids: restrict the sweep to these")
    p.add_argument("--seeds", type=str, default=None, help="seeds per cell (default: 3 for RNNs, 5 for LSTMs, "
                   "3 at T = 1000)")
    add_settings_arguments(p)
    p.add_argument("--report-only", action="store_true", help="regenerate results.json/README.md/figures only")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")


def outputs(args: argparse.Namespace) -> list[str]:
    """The sweep's folder and, for a study folder, its parent, where the report is published."""
    from ..experiments._report import report_folder

    return [args.out, str(report_folder(pathlib.Path(args.out)))]


def run(args: argparse.Namespace) -> int:
    from ..experiments import MODELS

    Ts, models = int_list("Ts", args.Ts, 4), id_list("models", args.models, MODELS)
    seeds = None if args.seeds is None else integer("seeds", args.seeds, 1, 1000)
    n, settings = settings_from(args)
    from ..outputs import check_writable_dir

    out = check_writable_dir(pathlib.Path(args.out), "--out")

    from functools import partial

    from tqdm import tqdm

    from ..experiments._report import report_folder, write_report
    from ..experiments._sweep import load_runs, run_id, run_sweep, sweep_plan

    if not args.report_only:
        runs = out / "runs"
        plan_fn = partial(sweep_plan, Ts=Ts, models=models, seeds=seeds)
        plan = plan_fn(load_runs(runs) if runs.is_dir() else [])
        with tqdm(total=len(plan), desc="long-lag sweep", unit="run") as bar:
            bar.update(sum((runs / f"{run_id('adding-1997', *x)}.json").is_file() for x in plan))
            run_sweep(out, plan, n, settings, echo=tqdm.write, bar=bar, replan=plan_fn)
    folder = report_folder(out)  # a study folder's report is its parent's
    same = os.path.normpath(str(folder)) == os.path.normpath(DEFAULT_OUT)
    files = write_report(folder, "lstm-jax sweep --report-only" + ("" if same else f" --out {folder}"))
    print("wrote " + ", ".join(str(p) for p in files))
    return 0
