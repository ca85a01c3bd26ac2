"""Command line: ``lstm-jax verify | flow | train | bench | diagnose`` (also ``python -m lstm_jax ...``)."""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Optional, Sequence


#: the claim checks are ~40 small programs, each compiled once and run for well under a second: LLVM's
#: optimisation passes were measured to take ~55 % of ``lstm-jax verify``'s CPU time (81 s → 35 s without
#: them, the verdicts and the printed table unchanged), so the verify entry point turns them off.
_VERIFY_XLA_FLAG = "--xla_backend_optimization_level=0"


def _verify(args: argparse.Namespace) -> int:
    import os

    import jax

    # XLA reads XLA_FLAGS once, when the backend starts: start it here with the flag, then restore the
    # environment so that no child process inherits it.  An explicit user setting of the same flag wins;
    # if the backend already runs (main() called in-process after other work) this changes nothing.
    saved = os.environ.get("XLA_FLAGS")
    if "xla_backend_optimization_level" not in (saved or ""):
        os.environ["XLA_FLAGS"] = f"{saved or ''} {_VERIFY_XLA_FLAG}".strip()
        try:
            jax.devices()
        finally:
            if saved is None:
                del os.environ["XLA_FLAGS"]
            else:
                os.environ["XLA_FLAGS"] = saved

    from .outputs import atomic_write, check_writable_file, strict_json

    # The claims are checked in float64; switching it on is this entry point's job,
    # never the library's on import.
    jax.config.update("jax_enable_x64", True)
    from .verify import check_only, claim_ids, format_markdown, reports_to_json, run_claims, summary_line
    from .verify._runner import format_progress_header, format_progress_line

    if args.list:
        print("\n".join(claim_ids()))
        return 0
    from ._validation import SEED_MAX

    if not 0 <= args.seed <= SEED_MAX:
        raise ValueError(f"--seed must be in 0..2**63-1, got {args.seed}")
    check_only(args.only)  # ValueError -> exit 2, before any work
    outputs = {name: check_writable_file(path, f"--{name}")  # OSError -> exit 3, before any work
               for name, path in (("json", args.json), ("markdown", args.markdown)) if path}
    dev = jax.devices()[0]
    n = len(set(args.only)) if args.only else len(claim_ids())
    print(f"lstm-jax verify: {n} claims, float64, seed {args.seed}, jax {jax.__version__}, "
          f"device {dev.platform}: {dev.device_kind}\n")
    print(format_progress_header(), flush=True)  # a line per claim as it finishes (the full table: --markdown)
    reports = run_claims(seed=args.seed, only=args.only,
                         progress=lambda i, total, r: print(format_progress_line(i, total, r), flush=True))
    bad = [r for r in reports if not r.ok]
    print(f"\n{len(reports) - len(bad)} of {len(reports)} checks behave as their proofs say. {summary_line(reports)}")
    if "markdown" not in outputs:
        print("The claims and their measured figures: --markdown PATH (the README's table); every number: --json PATH.")
    for r in bad:
        print(f"  {r.claim.id}: {r.status}", file=sys.stderr)
    if "json" in outputs:
        print(f"wrote {atomic_write(outputs['json'], strict_json(reports_to_json(reports, args.seed), indent=2))}")
    if "markdown" in outputs:
        print(f"wrote {atomic_write(outputs['markdown'], format_markdown(reports) + chr(10))}")
    return 1 if bad else 0


def _flow(args: argparse.Namespace) -> int:
    # Every option (memory estimate included) and the output folder are checked inside run_flow_cli
    # before any computation; the files are published together or not at all.
    import jax

    jax.config.update("jax_enable_x64", True)
    from ._flow_report import run_flow_cli

    report = run_flow_cli(args.seed, args.T, args.n, args.m, args.out, not args.no_figures)
    print("\nleading Lyapunov exponent per step (log space, QR):")
    for name, r in report["models"].items():
        print(f"  {name:22s} {float(r['lyapunov_top']):+.4f}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .experiments._command import train_command

    return train_command(args)


def _bench(args: argparse.Namespace) -> int:
    import subprocess

    repo = pathlib.Path(args.repo).resolve()
    if not (repo / "benchmarks" / "__main__.py").is_file():
        print(f"lstm-jax bench: error: no benchmarks/__main__.py under --repo {repo}. The benchmark suite lives in the "
              "source checkout (it is not part of the installed package): run this from the repository root "
              "or pass --repo PATH.", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "benchmarks"] + (["--quick"] if args.quick else []) + args.rest
    return subprocess.call(cmd, cwd=repo)


def _diagnose(args: argparse.Namespace) -> int:
    from .diagnose._cli import run

    return run(args)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lstm-jax")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without an install
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-jax",
        description="lstm_jax: check the claims of 'How LSTM networks solve the problem of vanishing gradients' "
        "against autodiff in float64 (verify), measure gradient flow (flow), run the long-range training "
        "experiments (train), and run the benchmark suite of a source checkout (bench).",
    )
    parser.add_argument("--version", action="version", version=f"lstm-jax {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "verify",
        help="run every claim check and print a verdict table",
        description="Run every claim check in float64 and print: id, claim, article equation, verdict, "
        "root cause, measured figure, status. Exit 0 when every check behaves as its proof says (a published "
        "formula found wrong is a finding, not a failure); 1 when a corrected formula disagrees with autodiff, a "
        "verdict differs from its proof, or a check errors; 2 on bad arguments; 3 when an output path cannot "
        "be written (checked before any claim runs).",
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
        "OUT/flow.json (strict JSON) and OUT/flow_vs_lag.png, OUT/lag_map.png, OUT/terms.png, all together or none. "
        "Exit 0 ok, 2 bad option, 3 I/O error.",
    )
    f.add_argument("--out", default="flow-out", help="output directory (default flow-out); checked before computing")
    f.add_argument("--T", type=int, default=200, help="sequence length, >= 2 (default 200)")
    f.add_argument("--n", type=int, default=32, help="hidden size, >= 1 (default 32); runs needing more memory "
                   "than is available are refused up front")
    f.add_argument("--m", type=int, default=8, help="input size, >= 1 (default 8)")
    f.add_argument("--seed", type=int, default=0, help="PRNG seed, 0..2**63-1 (default 0)")
    f.add_argument("--no-figures", action="store_true", help="write the JSON only (no matplotlib needed)")
    f.set_defaults(func=_flow)
    t = sub.add_parser(
        "train",
        help="train RNNs/LSTMs on the 1997 adding problem (or temporal order) to the 1997 stopping rule; --sweep",
        description="Train one model to H&S 1997's stopping rule (MSE of the last 2000 training sequences < 0.01 "
        "and all |error| <= 0.04), recording gradient flow on held-out sequences, then count errors on 2560 "
        "test sequences. Writes OUT/log.json and OUT/params.npz together. --sweep: the resumable long-lag sweep "
        "(runs saved one by one in OUT/runs/, skipped when rerun), then OUT/results.json, README.md and figures "
        "(default OUT docs/long-lag). Options are validated before any work (bad value: one line, exit 2).",
    )
    from .experiments._command import add_train_arguments

    add_train_arguments(t)
    t.set_defaults(func=_train)
    b = sub.add_parser(
        "bench",
        help="run the benchmark suite of a source checkout (python -m benchmarks) and check the speed targets",
        description="Runs `python -m benchmarks` in the repository: speed vs Flax/Equinox/PyTorch, Jacobians vs "
        "autodiff, memory with/without checkpointing up to T = 10^6, scaling, sharding, parallel-in-time. "
        "--quick: tiny sizes, about a minute. Further options are passed on: --targets (only the speed "
        "targets, interleaved peers with spread-based verdicts, about 5-10 minutes), --only speed,memory, ...",
    )
    b.add_argument("--quick", action="store_true", help="tiny sizes (about a minute); results under benchmarks/results/quick")
    b.add_argument("--repo", default=".", help="repository root holding benchmarks/ (default: current directory)")
    b.set_defaults(func=_bench)
    from .diagnose._cli import add_arguments as _diagnose_arguments

    g = sub.add_parser(
        "diagnose",
        help="diagnose the gradient flow of your own model file: report.html + diagnosis.json + PNGs",
        description="Per layer and direction of MODEL: ‖∂s_T/∂s_t‖ against the lag (median, 10–90 % band), the "
        "growth rate per step and gradient half-life, Lyapunov exponents from random start directions, eq. (6) "
        "terms, gate histograms and memory time constants, saturation, and the same for a freshly initialised "
        "model. Writes OUT/report.html (self-contained), OUT/diagnosis.json and the PNG figures, together or "
        "not at all.",
    )
    _diagnose_arguments(g)
    g.set_defaults(func=_diagnose)
    return parser


#: Exit codes of every subcommand (the error policy, docs/guide/errors.md).
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_IO = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so that ``finally`` blocks and ``with`` exits run (staged output
    files are removed) exactly as for Ctrl-C."""


def _on_sigterm(signum, frame):
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Terminated()


def _output_folders(args: argparse.Namespace) -> list[tuple[pathlib.Path, str, bool]]:
    """``(folder, glob of this run's temporary files, look into subfolders)`` for every output of ``args``."""
    out = getattr(args, "out", None)
    if out is None and args.command == "train":
        from .experiments._command import SWEEP_OUT

        out = SWEEP_OUT if getattr(args, "sweep", False) else "train-out"
    found = [(pathlib.Path(out), ".*.tmp*", True)] if out else []
    found += [(pathlib.Path(p).parent, f".{pathlib.Path(p).name}.*.tmp*", False)
              for p in (getattr(args, "json", None), getattr(args, "markdown", None)) if p]
    return [f for f in found if f[0].is_dir()]


def _after_interrupt(args: argparse.Namespace, started: float) -> str:
    """Finish or remove what an interrupted run left in its output folders; say what is true afterwards."""
    from .outputs import complete_outputs

    completed, removed = [], 0
    for folder, pattern, deep in _output_folders(args):
        for sub in [folder, *(p for p in folder.iterdir() if p.is_dir() and deep)]:
            try:
                if complete_outputs(sub):
                    completed.append(str(sub))
            except (OSError, ValueError):
                return f"interrupted while publishing into {str(sub)!r}; its outputs may be incomplete: rerun"
            for stray in sub.glob(pattern):
                try:
                    if stray.stat().st_mtime >= started - 1:
                        stray.unlink()
                        removed += 1
                except OSError:
                    return f"interrupted; a temporary file {str(stray)!r} could not be removed"
    what = [f"completed the interrupted output set in {', '.join(completed)}"] if completed else []
    what += [f"removed {removed} temporary file(s)"] if removed else []
    return "interrupted; " + ("; ".join(what) + "; " if what else "") + "no partial output was left"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse, dispatch, and map errors to one line on stderr and an exit code.

    Subcommands validate their arguments before any work and raise ``ValueError``/``TypeError``
    for bad input — a bad option, an input file of the wrong kind, format, size or content — (exit 2,
    like argparse's own usage errors) and ``OSError`` for files that cannot be read or written (exit 3);
    they return 1 when a check fails and 0 otherwise.  Ctrl-C and SIGTERM remove the staged output files
    (or finish a set whose commit point was passed) and say so (exit 130 / 143).  No traceback is printed
    for these; any other exception is a bug and keeps its traceback.
    """
    import signal
    import time

    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
    except SystemExit as exc:  # argparse: usage error (2) or --help (0); return it so in-process callers get a code
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "bench":
        args.rest = rest  # passed on to python -m benchmarks, which validates them
    elif rest:
        try:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    started = time.time()
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"lstm-jax {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"lstm-jax {args.command}: I/O error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_IO
    except KeyboardInterrupt as exc:
        print(f"lstm-jax {args.command}: {_after_interrupt(args, started)}", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
