"""``lstm-jax train``: one training run to H&S 1997's stopping rule, ``OUT/log.json`` and ``OUT/params.npz`` together.

The training settings (``--n --lr --clip --batch --budget --eval-every``) are shared with ``lstm-jax sweep``
(:func:`add_settings_arguments`, :func:`settings_from`).
"""

from __future__ import annotations

import argparse
import pathlib

from ._options import integer, number

HELP = "train one RNN/LSTM on the 1997 adding problem (or temporal order) to the 1997 stopping rule"
DESCRIPTION = (
    "Train one model to H&S 1997's stopping rule (2000 consecutive training sequences with |error| <= 0.04; the "
    "paper's MSE < 0.01 clause is implied), recording gradient flow on held-out sequences, then count errors on "
    "2560 test sequences. Writes OUT/log.json and OUT/params.npz together. Options are validated before any work "
    "(bad value: one line, exit 2). The resumable long-lag sweep is `lstm-jax sweep`.")


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """The options of :class:`lstm_jax.experiments.TrainSettings` and the hidden size (``train`` and ``sweep``)."""
    p.add_argument("--n", type=str, default="16", help="hidden size, the same for every model (default 16)")
    p.add_argument("--lr", type=str, default="0.01", help="Adam learning rate, 0 < lr <= 10 (default 0.01)")
    p.add_argument("--clip", type=str, default="1.0", help="global-norm clipping threshold; 0 for none")
    p.add_argument("--batch", type=str, default="32", help="sequences per update (default 32)")
    p.add_argument("--budget", type=str, default="2000000", help="training sequences per run (default 2,000,000)")
    p.add_argument("--steps", type=str, default=None, help="budget in updates instead (budget = steps x batch)")
    p.add_argument("--eval-every", type=str, default="20",
                   help="updates between checks of the stopping rule (N = eval_every x batch sequences)")


def settings_from(args: argparse.Namespace, diagnostics: bool = True):
    """``(n, TrainSettings)`` from the options of :func:`add_settings_arguments`, each checked (``ValueError``)."""
    from ..experiments import TrainSettings

    n = integer("n", args.n, 1, 4096)
    batch = integer("batch", args.batch, 1, 65536)
    budget = integer("budget", args.budget, 1, 10**9)
    if args.steps is not None:
        budget = integer("steps", args.steps, 1, 10**9) * batch
    clip = number("clip", args.clip, 0.0, 1e6)
    return n, TrainSettings(batch=batch, lr=number("lr", args.lr, 0.0, 10.0, lo_open=True), clip=clip or None,
                            budget=budget, check_every=integer("eval-every", args.eval_every, 1, 10**6),
                            diagnostics=diagnostics)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..experiments import MODELS
    from ..experiments._tasks import TASKS

    p.add_argument("--task", default="adding-1997", help=f"one of {', '.join(TASKS)} (default adding-1997)")
    p.add_argument("--T", type=str, default="100", help="sequence length (minimum length for adding-1997)")
    p.add_argument("--model", default="lstm-bf1",
                   help=f"one of {', '.join(MODELS)}, or lstm (LSTM with --forget-bias); default lstm-bf1")
    p.add_argument("--forget-bias", type=str, default="1.0", help="forget bias of --model lstm (finite)")
    add_settings_arguments(p)
    p.add_argument("--seed", type=str, default="0", help="PRNG seed, 0 <= seed < 2**32")
    p.add_argument("--no-diagnostics", action="store_true", help="skip the gradient-flow snapshots")
    p.add_argument("--out", default="train-out", help="output folder (default train-out)")


def outputs(args: argparse.Namespace) -> list[str]:
    return [args.out]


def run(args: argparse.Namespace) -> int:
    from ..experiments import MODELS, ModelSpec
    from ..experiments._tasks import TASKS

    if args.task not in TASKS:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {args.task!r}")
    if args.model not in MODELS + ("lstm",):
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, lstm; got {args.model!r}")
    T = integer("T", args.T, TASKS[args.task][3], 100_000)
    forget_bias = number("forget-bias", args.forget_bias, -50, 50)
    n, settings = settings_from(args, diagnostics=not args.no_diagnostics)
    seed = integer("seed", args.seed, 0, 2**32 - 1)
    from ..outputs import AtomicOutputs, check_writable_dir, strict_json

    out = check_writable_dir(pathlib.Path(args.out), "--out")

    from tqdm import tqdm

    from ..experiments import train_run
    from ..experiments._models import parameter_count
    from ..experiments._train import params_npz_bytes

    spec = ModelSpec(args.model, args.task, T, n, forget_bias)
    with tqdm(total=settings.budget, desc=f"{spec.model} T={spec.T}", unit="seq", unit_scale=True) as bar:
        def progress(seqs, mse):
            bar.update(seqs - bar.n)
            bar.set_postfix(train_mse=f"{mse:.4f}")

        r = train_run(spec, seed, settings, progress)
    trainable, total = parameter_count(r.params, spec.model)
    log = {"config": {**spec._asdict(), **settings._asdict(), "seed": seed}, "solved": r.solved,
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
