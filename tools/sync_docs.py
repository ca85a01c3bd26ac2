"""Repository tooling (not part of the installed package): the generated blocks of README.md and proofs/.

What ``lstm-jax verify`` prints now, between marker comments: ``<!-- verify-table:start -->`` …
``<!-- verify-table:end -->`` in README.md (the claims table), ``verify-index`` and ``verify-errata`` in
proofs/README.md, ``verify-measured:ID`` in each proof document.  :func:`stale_docs` lists the files whose blocks
differ from a run (``tests/test_claims.py`` keeps them in sync); :func:`sync_docs` rewrites them.  From the
repository root::

    python -m tools.sync_docs                    # run every claim (float64, seed 0) and rewrite the blocks
    python -m tools.sync_docs --json v.json      # from a saved `lstm-jax verify --json v.json`
    python -m tools.sync_docs --check            # exit 1 and list the stale files, rewrite nothing
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

from lstm_jax.verify import format_claim_block, format_errata, format_markdown, reports_to_json

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _doc(reports) -> dict:
    """The verify JSON document, from reports or as given."""
    return reports if isinstance(reports, dict) else reports_to_json(reports, 0)


def _blocks(reports) -> dict:
    """{relative path: {marker: text}}, from reports or their JSON document."""
    doc = _doc(reports)
    out = {
        "README.md": {"verify-table": format_markdown(doc, "proofs/")},
        "proofs/README.md": {"verify-index": format_markdown(doc, ""), "verify-errata": format_errata(doc)},
    }
    for c in doc["claims"]:
        out.setdefault(f"proofs/{c['proof']}", {})[f"verify-measured:{c['id']}"] = format_claim_block(c)
    return out


def _splice(text: str, marker: str, block: str, path: str) -> str:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    pat = re.compile(rf"{re.escape(start)}\n.*?{re.escape(end)}", re.S)
    if not pat.search(text):
        raise ValueError(f"{path}: no {start} … {end} block")
    return pat.sub(lambda m: f"{start}\n{block}\n{end}", text, count=1)


def rendered_docs(reports, root) -> dict:
    """{path: (committed text, text with every generated block replaced by this run's output)}."""
    root = pathlib.Path(root)
    out = {}
    for rel, blocks in _blocks(reports).items():
        text = (root / rel).read_text(encoding="utf-8")
        new = text
        for marker, block in blocks.items():
            new = _splice(new, marker, block, rel)
        out[rel] = (text, new)
    return out


def stale_docs(reports, root) -> list[str]:
    """Files whose generated blocks differ from what this run prints."""
    return [rel for rel, (old, new) in rendered_docs(reports, root).items() if old != new]


def sync_docs(reports, root) -> list[str]:
    """Rewrite the generated blocks (atomically, through :func:`lstm_jax.outputs.atomic_write`); returns the files changed."""
    from lstm_jax.outputs import atomic_write

    changed = []
    for rel, (old, new) in rendered_docs(reports, root).items():
        if old != new:
            atomic_write(pathlib.Path(root) / rel, new)
            changed.append(rel)
    return changed


def main(argv=None) -> int:
    """Exit 0 done (or, with ``--check``, up to date), 1 stale blocks (``--check``), 2 a bad ``--json`` file or a
    missing marker block, 3 a file that cannot be read or written; one line on stderr, no traceback."""
    ap = argparse.ArgumentParser(prog="python -m tools.sync_docs", description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH", help="a saved `lstm-jax verify --json PATH` document (default: run now)")
    ap.add_argument("--check", action="store_true", help="list the stale files and exit 1 if any; rewrite nothing")
    args = ap.parse_args(argv)
    try:
        doc = _verify_document(args.json)
        if args.check:
            stale = stale_docs(doc, ROOT)
            print("\n".join(stale) if stale else "generated blocks are up to date")
            return 1 if stale else 0
        changed = sync_docs(doc, ROOT)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"python -m tools.sync_docs: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"python -m tools.sync_docs: I/O error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 3
    print("rewrote " + ", ".join(changed) if changed else "generated blocks were up to date")
    return 0


def _verify_document(path) -> dict:
    """The verify JSON document: read from ``path`` (checked for kind and size first) or produced by a run now."""
    if path is not None:
        from lstm_jax.io import check_input_file

        doc = json.loads(check_input_file(path, "--json").read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "claims" not in doc:
            raise ValueError(f"--json {path}: not an `lstm-jax verify --json` document (no 'claims')")
        return doc
    import jax

    from lstm_jax.cli.verify import _start_backend_without_llvm_passes
    from lstm_jax.verify import run_claims

    _start_backend_without_llvm_passes()  # as lstm-jax verify runs them (the verdicts do not depend on it)
    jax.config.update("jax_enable_x64", True)  # the claims are checked in float64
    return reports_to_json(run_claims(seed=0), 0)


if __name__ == "__main__":
    sys.exit(main())
