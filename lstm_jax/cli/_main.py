"""``lstm-jax``'s parser (one sub-parser per subcommand module) and its error policy (one place)."""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Optional, Sequence

from . import bench, diagnose, flow, sweep, train, verify

#: the subcommands in the order ``lstm-jax --help`` lists them
SUBCOMMANDS = {"verify": verify, "diagnose": diagnose, "flow": flow, "train": train, "sweep": sweep, "bench": bench}

#: Exit codes of every subcommand (the error policy, docs/guide/errors.md).
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_IO = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lstm-jax")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without an install
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: `lstm-jax sweep --model X` must not be read as --models X (a sweep of hours)
    parser = argparse.ArgumentParser(
        prog="lstm-jax", allow_abbrev=False,
        description="lstm_jax: check the claims of 'How LSTM networks solve the problem of vanishing gradients' "
        "against autodiff in float64 (verify), diagnose your own recurrent model (diagnose), measure gradient "
        "flow (flow), train on the 1997 adding problem (train, sweep), and run the benchmark suite of a source "
        "checkout (bench). Exit codes: 0 ok, 1 a check failed, 2 bad option or input file, 3 I/O error.",
    )
    parser.add_argument("--version", action="version", version=f"lstm-jax {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION, allow_abbrev=False)
        module.add_arguments(p)
        p.set_defaults(run=module.run, outputs=getattr(module, "outputs", lambda args: []))
    return parser


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so that ``finally`` blocks and ``with`` exits run (staged output
    files are removed) exactly as for Ctrl-C."""


def _on_sigterm(signum, frame):
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Terminated()


def _output_folders(args: argparse.Namespace) -> list[tuple[pathlib.Path, str, bool]]:
    """``(folder, glob of this run's temporary files, look into subfolders)`` for every output of ``args``: the
    subcommand's output folder (its module's ``outputs(args)``) and the folders of its single output files."""
    found = [(pathlib.Path(folder), ".*.tmp*", True) for folder in args.outputs(args)]
    found += [(pathlib.Path(p).parent, f".{pathlib.Path(p).name}.*.tmp*", False)
              for p in (getattr(args, "json", None), getattr(args, "markdown", None)) if p]
    return [f for f in found if f[0].is_dir()]


def _after_interrupt(args: argparse.Namespace, started: float) -> str:
    """Finish or remove what an interrupted run left in its output folders; say what is true afterwards."""
    from ..outputs import complete_outputs

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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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
        if rest and args.command != "bench":  # bench passes the rest on to python -m benchmarks
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as exc:  # argparse: usage error (2) or --help (0); return it so in-process callers get a code
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.rest = rest
    started = time.time()
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return args.run(args)
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
