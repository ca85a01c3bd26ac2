"""Generated blocks of README.md and proofs/: what ``lstm-jax verify`` prints now, between marker comments.

``<!-- verify-table:start -->`` … ``<!-- verify-table:end -->`` in README.md (the claims table),
``verify-index`` and ``verify-errata`` in proofs/README.md, ``verify-measured:ID`` in each proof
document.  :func:`stale_docs` lists the files whose blocks differ from a run; :func:`sync_docs` rewrites them.
"""

from __future__ import annotations

import pathlib
import re

from ._runner import format_claim_block, format_errata, format_markdown
from ._runner import _doc


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
