"""``lstm-jax diagnose MODEL``: the command line of :mod:`lstm_jax.diagnose`.

Every option is validated before any computation (``ValueError`` → exit 2, ``OSError`` → exit 3,
one line, through :func:`lstm_jax.cli.main`); the output folder is checked first and nothing is
written there unless the whole report succeeds.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Callable

import numpy as np

from ._options import bounded, x64

HELP = "diagnose the gradient flow of your own model file: report.html + diagnosis.json + PNGs"
DESCRIPTION = (
    "Per layer and direction of MODEL: ‖∂s_T/∂s_t‖ against the lag (median, 10–90 % band), the growth rate per "
    "step and gradient half-life, Lyapunov exponents from random start directions, eq. (6) terms, gate "
    "histograms and memory time constants, saturation, and the same for a freshly initialised model. Writes "
    "OUT/report.html (self-contained), OUT/diagnosis.json and the PNG figures, together or not at all.")

#: bounds of the integer options: beyond them XLA aborts the process (int32 sizes) long before memory runs out.
MAX_T, MAX_BATCH, MAX_K = 1_000_000, 100_000, 4096


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model file: a PyTorch state_dict/checkpoint (.pt/.pth), a TorchScript "
                   "archive (.jit, scripted/traced .pt), ONNX (.onnx), Keras 3 (.keras, .weights.h5), safetensors, "
                   "Flax variables (.msgpack), an lstm_jax .npz (lstm_jax.io.save, or the params.npz of lstm-jax "
                   "train); the format is read from the file's first bytes and no code from the file runs")
    p.add_argument("--layer", metavar="NAME", help="which recurrent module of the file, when it holds several")
    p.add_argument("--kind", choices=["lstm", "gru", "rnn-tanh", "rnn-sigmoid"],
                   help="the model kind; needed for a plain-RNN state_dict, whose nonlinearity the file does not record")
    p.add_argument("--data", metavar="FILE.npy", help="inputs of shape (B, T, m) or (T, m); default: Gaussian")
    p.add_argument("--lengths", metavar="FILE.npy", help="valid lengths (B,) of right-padded --data sequences")
    p.add_argument("--T", type=int, help=f"length of the generated Gaussian sequences, 2..{MAX_T:,} (default 200)")
    p.add_argument("--batch", type=int, help=f"number of generated Gaussian sequences, 1..{MAX_BATCH:,} (default 16)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of the inputs, start directions, fresh model, "
                   "0..2**63-1 (default 0)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="default float64")
    p.add_argument("--k", type=int, help="number of Lyapunov exponents (default min(8, state size))")
    p.add_argument("--transient", type=int, help="steps discarded before the exponents are averaged "
                   "(default min(100, shortest length / 4))")
    p.add_argument("--out", default="diagnose-out", help="output folder (default diagnose-out; created only when "
                   "the report is written)")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickled full modules "
                   "(unpickling runs code from the file: only for files you trust)")
    p.add_argument("--no-baseline", action="store_true", help="skip the freshly initialised comparison model")


def outputs(args: argparse.Namespace) -> list[str]:
    """The output folder (cleaned up after an interrupt by :func:`lstm_jax.cli.main`)."""
    return [args.out]


def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
    from .._validation import SEED_MAX
    from ..io import check_input_file, read_npy
    from ..outputs import check_writable_dir

    # 1. plain options, the output folder, the input files' kinds: all before any model is read.
    bounded("T", args.T, 2, MAX_T)
    bounded("batch", args.batch, 1, MAX_BATCH)
    bounded("k", args.k, 1, MAX_K)
    bounded("transient", args.transient, 0, MAX_T)
    bounded("seed", args.seed, 0, SEED_MAX)
    if args.data is not None and (args.T is not None or args.batch is not None):
        raise ValueError("--T and --batch size generated inputs; with --data the file gives (B, T, m)")
    if args.lengths is not None and args.data is None:
        raise ValueError("--lengths needs --data (generated inputs all have length --T)")
    out = check_writable_dir(args.out, "--out")
    check_input_file(args.model, "MODEL")
    for name in ("data", "lengths"):
        if getattr(args, name) is not None:
            check_input_file(getattr(args, name), f"--{name}")

    import jax

    from ..diagnose import diagnose, estimate_bytes, write_report
    from ..diagnose._report import GENERATED_NOTE, GENERATED_PREFIX
    from ..io import load_model

    x64(args.dtype)
    model = load_model(args.model, layer=args.layer, allow_pickle=args.allow_pickle, kind=args.kind, argument="MODEL")
    lengths = None
    if args.data is not None:
        xs = read_npy(args.data, "--data")
        if xs.ndim not in (2, 3) or xs.shape[-1] != model.m:
            raise ValueError(f"--data has shape {xs.shape}; expected (B, T, {model.m}) or (T, {model.m}) "
                             f"for this model's input size m = {model.m}")
        if not np.issubdtype(xs.dtype, np.floating):
            raise ValueError(f"--data has dtype {xs.dtype}; expected floating point")
        source = f"{pathlib.Path(args.data).name}"
        if args.lengths is not None:
            lengths = read_npy(args.lengths, "--lengths")
            B = xs.shape[0] if xs.ndim == 3 else 1
            if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
                raise ValueError(f"--lengths has shape {lengths.shape} and dtype {lengths.dtype}; expected ({B},) "
                                 "integers, one per sequence of --data")
            source += f" with lengths from {pathlib.Path(args.lengths).name}"
        B, T = (xs.shape[0] if xs.ndim == 3 else 1), xs.shape[-2]
    else:
        T, B = args.T or 200, args.batch or 16
        source = f"{GENERATED_PREFIX}, seed {args.seed}"
    # 2. the memory estimate, before any input is generated or any program compiled (exit 2).
    from .._validation import check_fits_memory

    check_fits_memory(estimate_bytes(model, B, T, args.dtype),
                      f"diagnose of {B} sequence(s) x T = {T} ({args.dtype}, n = {model.n}, "
                      f"{len(model.layers)} recurrence(s)) would")
    if args.data is None:
        xs = np.asarray(jax.random.normal(jax.random.PRNGKey(args.seed), (B, T, model.m), args.dtype))
    key = jax.random.fold_in(jax.random.PRNGKey(args.seed), 1)
    diagnosis = diagnose(model, xs, seq_lengths=lengths, k=args.k, transient=args.transient, key=key,
                         dtype=args.dtype, baseline=not args.no_baseline, inputs_source=source)
    paths = write_report(diagnosis, out)
    if args.data is None:
        echo(GENERATED_NOTE)
    for ld in diagnosis.layers:
        ly = ld.lyapunov
        echo(f"{ld.name}: {ld.flow['sentence']} Leading Lyapunov exponent {ly['exponents'][0]:+.4g}"
             f" ± {ly['stderr'][0]:.2g}.")
        if ld.agreement["agree"] is False:
            echo(f"  note: {ld.agreement['sentence']}")
    echo(f"wrote {out / 'report.html'}, {out / 'diagnosis.json'} and {len(paths) - 2} figures")
    return 0
