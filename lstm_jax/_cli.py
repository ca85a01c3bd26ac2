"""Command line: ``lstm-jax verify`` (also ``python -m lstm_jax verify``)."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Optional, Sequence


def _verify(args: argparse.Namespace) -> int:
    import jax

    # The claims are checked in float64; switching it on is this entry point's job,
    # never the library's on import.
    jax.config.update("jax_enable_x64", True)
    from ._verify import claim_ids, format_markdown, format_table, reports_to_json, run_claims

    if args.list:
        print("\n".join(claim_ids()))
        return 0
    try:
        reports = run_claims(seed=args.seed, only=args.only)
    except ValueError as exc:
        print(f"lstm-jax verify: error: {exc}", file=sys.stderr)
        return 2
    dev = jax.devices()[0]
    print(f"lstm-jax verify: {len(reports)} claims, float64, seed {args.seed}, jax {jax.__version__}, "
          f"device {dev.platform}: {dev.device_kind}\n")
    print(format_table(reports))
    bad = [r for r in reports if not r.ok]
    failed_published = sum(r.finding is not None and r.finding.verdict.value == "fails as published" for r in reports)
    print(f"\n{len(reports) - len(bad)} of {len(reports)} checks behave as their proofs say; "
          f"{failed_published} published statements fail and have a verified correction (see proofs/).")
    for r in bad:
        print(f"  {r.claim.id}: {r.status}", file=sys.stderr)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(reports_to_json(reports, args.seed), indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {path}")
    if args.markdown:
        path = pathlib.Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(format_markdown(reports) + "\n")
        print(f"wrote {path}")
    return 1 if bad else 0


def _flow(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from ._flow_report import run_flow_cli

    report = run_flow_cli(args.seed, args.T, args.n, args.m, args.out, not args.no_figures)
    print("\nleading Lyapunov exponent per step (log space, QR):")
    for name, r in report["models"].items():
        print(f"  {name:22s} {float(r['lyapunov_top']):+.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-jax",
        description="Check the claims of 'How LSTM networks solve the problem of vanishing gradients' "
        "against autodiff, in float64.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "verify",
        help="run every claim check and print a verdict table",
        description="Run every claim check in float64 and print: id, claim, article equation, verdict, "
        "measured figure, status. Exit 0 when every check behaves as its proof says (a published formula "
        "found wrong is a finding, not a failure); 1 when a corrected formula disagrees with autodiff, a "
        "verdict differs from its proof, or a check errors; 2 on bad arguments.",
    )
    v.add_argument("--json", metavar="PATH", help="write the full results as JSON")
    v.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    v.add_argument("--only", metavar="ID", nargs="+", help="run only these claim ids (see --list)")
    v.add_argument("--seed", type=int, default=0, help="PRNG seed of the random draws (default 0)")
    v.add_argument("--list", action="store_true", help="list the claim ids and exit")
    v.set_defaults(func=_verify)
    f = sub.add_parser(
        "flow",
        help="gradient-flow diagnostics of RNN-σ, RNN-tanh and LSTMs: JSON + PNG figures",
        description="On one random input sequence (float64): ‖∂s_T/∂s_t‖ vs lag for RNN-σ, RNN-tanh and LSTMs "
        "with forget bias 0/1/3 (the LSTM's exact joint Jacobian and the article's ∏(A+B+C+D) beside it), "
        "leading Lyapunov exponents (QR, log space), the LSTM lag map and eq. (6) term sizes. Writes "
        "OUT/flow.json and, with matplotlib, OUT/flow_vs_lag.png, OUT/lag_map.png, OUT/terms.png.",
    )
    f.add_argument("--out", default="flow-out", help="output directory (default flow-out)")
    f.add_argument("--T", type=int, default=200, help="sequence length (default 200)")
    f.add_argument("--n", type=int, default=32, help="hidden size (default 32)")
    f.add_argument("--m", type=int, default=8, help="input size (default 8)")
    f.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    f.add_argument("--no-figures", action="store_true", help="write the JSON only (no matplotlib needed)")
    f.set_defaults(func=_flow)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
