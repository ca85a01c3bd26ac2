"""``lstm-jax flow``: gradient flow of RNN-σ, RNN-tanh and LSTMs on one input sequence (the diagnose wing's
:mod:`lstm_jax.diagnose._flow_report`), JSON + PNG figures published together."""

from __future__ import annotations

import argparse

from ._options import x64

HELP = "gradient-flow diagnostics of RNN-σ, RNN-tanh and LSTMs: JSON + PNG figures"
DESCRIPTION = (
    "On one random input sequence (float64): ‖∂s_T/∂s_t‖ vs lag for RNN-σ, RNN-tanh and LSTMs with forget bias "
    "0/1/3 (the LSTM's exact joint Jacobian and the article's ∏(A+B+C+D) beside it), leading Lyapunov exponents "
    "(QR, log space), the LSTM lag map and eq. (6) term sizes. Writes OUT/flow.json (strict JSON) and "
    "OUT/flow_vs_lag.png, OUT/lag_map.png, OUT/terms.png, all together or none. Exit 0 ok, 2 bad option, 3 I/O "
    "error.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="flow-out", help="output directory (default flow-out); checked before computing")
    p.add_argument("--T", type=int, default=200, help="sequence length, >= 2 (default 200)")
    p.add_argument("--n", type=int, default=32, help="hidden size, >= 1 (default 32); runs needing more memory "
                   "than is available are refused up front")
    p.add_argument("--m", type=int, default=8, help="input size, >= 1 (default 8)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed, 0..2**63-1 (default 0)")
    p.add_argument("--no-figures", action="store_true", help="write the JSON only")


def outputs(args: argparse.Namespace) -> list[str]:
    return [args.out]


def run(args: argparse.Namespace) -> int:
    # Every option (memory estimate included) and the output folder are checked inside run_flow_cli
    # before any computation; the files are published together or not at all.
    x64()
    from ..diagnose._flow_report import run_flow_cli

    report = run_flow_cli(args.seed, args.T, args.n, args.m, args.out, not args.no_figures)
    print("\nleading Lyapunov exponent per step (log space, QR):")
    for name, r in report["models"].items():
        print(f"  {name:22s} {float(r['lyapunov_top']):+.4f}")
    return 0
