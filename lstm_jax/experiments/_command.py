"""The ``train`` subcommand (``lstm-jax train`` and ``python -m lstm_jax.experiments``): options, validation
before any work, and the outputs (written together through :class:`lstm_jax.outputs.AtomicOutputs`)."""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys

from ..outputs import AtomicOutputs, check_writable_dir, strict_json
from ._models import MODELS, ModelSpec, parameter_count
from ._tasks import TASKS

SWEEP_OUT = "docs/long-lag"


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--task", default="adding-1997", help=f"one of {', '.join(TASKS)} (default adding-1997)")
    t.add_argument("--T", type=str, default="100", help="sequence length (minimum length for adding-1997)")
    t.add_argument("--model", default="lstm-bf1",
                   help=f"one of {', '.join(MODELS)}, or lstm (LSTM with --forget-bias); default lstm-bf1")
    t.add_argument("--n", type=str, default="16", help="hidden size, the same for every model (default 16)")
    t.add_argument("--forget-bias", type=str, default="1.0", help="forget bias of --model lstm (finite)")
    t.add_argument("--lr", type=str, default="0.01", help="Adam learning rate, 0 < lr <= 10 (default 0.01)")
    t.add_argument("--clip", type=str, default="1.0", help="global-norm clipping threshold; 0 for none")
    t.add_argument("--batch", type=str, default="32", help="sequences per update (default 32)")
    t.add_argument("--budget", type=str, default="2000000", help="training sequences per run (default 2,000,000)")
    t.add_argument("--steps", type=str, default=None, help="budget in updates instead (budget = steps x batch)")
    t.add_argument("--eval-every", type=str, default="20",
                   help="updates between checks of the stopping rule (N = eval_every x batch sequences)")
    t.add_argument("--seed", type=str, default="0", help="PRNG seed, 0 <= seed < 2**32")
    t.add_argument("--no-diagnostics", action="store_true", help="skip the gradient-flow snapshots")
    t.add_argument("--sweep", action="store_true", help="the resumable long-lag sweep (docs/long-lag/README.md)")
    t.add_argument("--Ts", default=None, help="comma-separated T values: restrict the sweep to these")
    t.add_argument("--models", default=None, help="comma-separated model ids: restrict the sweep to these")
    t.add_argument("--seeds", type=str, default=None, help="seeds per cell (default: 3 for RNNs, 5 for LSTMs, "
                   "3 at T = 1000)")
    t.add_argument("--report-only", action="store_true", help="regenerate results.json/README.md/figures only")
    t.add_argument("--out", default=None, help=f"output folder (default train-out, or {SWEEP_OUT} with --sweep)")


def _int(name, raw, lo, hi=None):
    try:
        v = int(str(raw), 0)
    except ValueError:
        raise ValueError(f"--{name} must be an integer, got {raw!r}") from None
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"--{name} must be an integer {rng}, got {raw}")
    return v


def _float(name, raw, lo, hi, lo_open=False):
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"--{name} must be a number, got {raw!r}") from None
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
        rng = f"{'>' if lo_open else '>='} {lo:g} and <= {hi:g}"
        raise ValueError(f"--{name} must be a finite number {rng}, got {raw}")
    return v


def validate(args: argparse.Namespace) -> dict:
    """All options checked and converted before any work; raises ValueError naming the option."""
    if args.task not in TASKS:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {args.task!r}")
    if not args.sweep and args.model not in MODELS + ("lstm",):
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, lstm; got {args.model!r}")
    min_T = TASKS[args.task][3]
    v = {
        "task": args.task, "model": args.model,
        "T": _int("T", args.T, min_T, 100_000),
        "n": _int("n", args.n, 1, 4096),
        "forget_bias": _float("forget-bias", args.forget_bias, -50, 50),
        "lr": _float("lr", args.lr, 0.0, 10.0, lo_open=True),
        "clip": _float("clip", args.clip, 0.0, 1e6),
        "batch": _int("batch", args.batch, 1, 65536),
        "budget": _int("budget", args.budget, 1, 10**9),
        "eval_every": _int("eval-every", args.eval_every, 1, 10**6),
        "seed": _int("seed", args.seed, 0, 2**32 - 1),
    }
    if args.steps is not None:
        v["budget"] = _int("steps", args.steps, 1, 10**9) * v["batch"]
    v["Ts"] = None
    if args.Ts is not None:
        try:
            v["Ts"] = [int(x) for x in args.Ts.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--Ts must be comma-separated integers >= 4, e.g. 100,500; got {args.Ts!r}") from None
        if not v["Ts"] or min(v["Ts"]) < 4:
            raise ValueError(f"--Ts must be comma-separated integers >= 4, e.g. 100,500; got {args.Ts!r}")
    v["models"] = None
    if args.models is not None:
        v["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
        bad = [m for m in v["models"] if m not in MODELS]
        if bad or not v["models"]:
            raise ValueError(f"--models must be comma-separated ids from {', '.join(MODELS)}; got {args.models!r}")
    v["seeds"] = None if args.seeds is None else _int("seeds", args.seeds, 1, 1000)
    if args.sweep and args.task != "adding-1997":
        raise ValueError(f"--sweep runs the adding-1997 task only, got --task {args.task}")
    return v


def _settings(v, diagnostics=True):
    from ._train import TrainSettings

    return TrainSettings(batch=v["batch"], lr=v["lr"], clip=v["clip"] or None, budget=v["budget"],
                         check_every=v["eval_every"], diagnostics=diagnostics)


def params_npz_bytes(params: dict) -> bytes:
    """``params.npz``: one array per leaf, keyed by ``jax.tree_util.keystr`` of its path (e.g.
    ``['cell'].W_f``, ``['W_out']``)."""
    import io

    import jax
    import numpy as np

    buf = io.BytesIO()
    leaves = jax.tree_util.tree_leaves_with_path(params)
    np.savez(buf, **{jax.tree_util.keystr(k): np.asarray(a) for k, a in leaves})
    return buf.getvalue()


def load_params(path, like: dict) -> dict:
    """Load a ``params.npz`` written by the ``train`` command into the structure of ``like``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    data = np.load(path)
    paths = jax.tree_util.tree_leaves_with_path(like)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like),
                                        [jnp.asarray(data[jax.tree_util.keystr(k)]) for k, _ in paths])


def command_text(args: argparse.Namespace, prog: str = "lstm-jax train") -> str:
    """The command line that reproduces ``args`` (options that differ from their defaults), for the report."""
    defaults = vars(build_defaults())
    parts = [prog]
    for k, val in vars(args).items():
        if k in defaults and val != defaults[k]:
            flag = "--" + k.replace("_", "-")
            parts.append(flag if val is True else f"{flag} {val}")
    return " ".join(parts)


def build_defaults() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    return p.parse_args([])


def train_command(args: argparse.Namespace, argv_text: str | None = None) -> int:
    argv_text = argv_text or command_text(args)
    v = validate(args)
    out = pathlib.Path(args.out or (SWEEP_OUT if args.sweep else "train-out"))
    check_writable_dir(out, "--out")
    if args.sweep:
        return _sweep(args, v, out, argv_text)
    from tqdm import tqdm

    from ._train import train_run

    spec = ModelSpec(v["model"], v["task"], v["T"], v["n"], v["forget_bias"])
    settings = _settings(v, not args.no_diagnostics)
    with tqdm(total=settings.budget, desc=f"{spec.model} T={spec.T}", unit="seq", unit_scale=True) as bar:
        def progress(seqs, mse):
            bar.update(seqs - bar.n)
            bar.set_postfix(train_mse=f"{mse:.4f}")

        r = train_run(spec, v["seed"], settings, progress)
    trainable, total = parameter_count(r.params, spec.model)
    log = {"config": {**spec._asdict(), **settings._asdict(), "seed": v["seed"]}, "solved": r.solved,
           "sequences": r.sequences if r.solved else None, "sequences_seen": r.sequences,
           "test_errors": r.test_errors, "test_errors_last_checks": list(r.test_errors_last_checks),
           "parameters": {"trainable": trainable, "total": total},
           "seconds": r.seconds, "curves": r.curves}
    with AtomicOutputs() as files:
        files.write(out / "log.json", strict_json(log))
        files.write(out / "params.npz", params_npz_bytes(r.params))
    print(f"{'solved after ' + format(r.sequences, ',') + ' training sequences' if r.solved else 'not solved'}; "
          f"{r.test_errors} of 2560 test sequences wrong; wrote {out / 'log.json'}, {out / 'params.npz'}")
    return 0


def _sweep(args, v, out: pathlib.Path, argv_text: str) -> int:
    from functools import partial

    from tqdm import tqdm

    from ._report import report_folder, write_report
    from ._sweep import load_runs, run_sweep, sweep_plan

    settings = _settings(v)
    if not args.report_only:
        plan_fn = partial(sweep_plan, Ts=v["Ts"], models=v["models"], seeds=v["seeds"])
        plan = plan_fn(load_runs(out / "runs") if (out / "runs").is_dir() else [])
        with tqdm(total=len(plan), desc="long-lag sweep", unit="run") as bar:
            done = len([x for x in plan if (out / "runs").is_dir()
                        and (out / "runs" / f"adding-1997_{x[0]}_T{x[1]}_s{x[2]}.json").is_file()])
            bar.update(done)
            run_sweep(out, plan, v["n"], settings, echo=tqdm.write, bar=bar, replan=plan_fn)
    folder = report_folder(out)  # a study folder's report is its parent's
    same = os.path.normpath(str(folder)) == os.path.normpath(SWEEP_OUT)
    files = write_report(folder, "lstm-jax train --sweep --report-only" + ("" if same else f" --out {folder}"))
    print("wrote " + ", ".join(str(p) for p in files))
    return 0


def main(argv=None) -> int:
    """``python -m lstm_jax.experiments [train options]``: the same options and exit codes as ``lstm-jax train``
    (bad input: one line, exit 2; I/O error: exit 3).  The wing does not import the package's private CLI."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m lstm_jax.experiments", description="= lstm-jax train")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return train_command(args, command_text(args, "python -m lstm_jax.experiments"))
    except (ValueError, TypeError) as exc:
        print(f"lstm-jax train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lstm-jax train: I/O error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 3
