"""The claim registry, the runner behind ``lstm-jax verify``, and its table / JSON / Markdown output.

A published formula found wrong is a finding (its verdict), not an error; a *corrected* formula that
disagrees with autodiff, or a verdict that differs from the one its proof derives, is (status not ok).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable, Optional, Sequence

import jax

from ._claims_lstm import LSTM_CLAIMS
from ._claims_modern import MODERN_CLAIMS
from ._claims_rnn import RNN_CLAIMS
from ._claims_training import TRAINING_CLAIMS
from ._root_causes import ROOT_CAUSES
from ._types import Claim, Context, Report, Verdict, bound_fmt

#: every claim, in report order
CLAIMS: tuple = (*RNN_CLAIMS, *LSTM_CLAIMS, *TRAINING_CLAIMS, *MODERN_CLAIMS)


def claim_ids(claims: Optional[Sequence[Claim]] = None) -> list[str]:
    """Ids of every registered claim (or of ``claims``), in report order."""
    return [c.id for c in (CLAIMS if claims is None else claims)]


def run_claims(
    seed: int = 0, only: Optional[Sequence[str]] = None, claims: Optional[Sequence[Claim]] = None,
    progress: Optional[Callable[[int, int, Report], None]] = None,
) -> list[Report]:
    """Run the claims (all, or the ids in ``only``) in float64 and return their reports.

    ``progress(i, total, report)`` (optional) is called as each claim finishes (``i`` from 1): the CLI
    prints a line per claim while the rest still run.

    Draws and trajectories that several claims use are computed once per run (the run's
    :class:`~lstm_jax.verify.Context`).

    Raises:
      RuntimeError: if float64 is not enabled (``jax.config.update("jax_enable_x64", True)``).
      ValueError: if ``only`` names an unknown claim id (the message lists the known ids).
    """
    claims = CLAIMS if claims is None else claims
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            "the claims are verified in float64: call jax.config.update('jax_enable_x64', True) "
            "before run_claims (the lstm-jax CLI does this)"
        )
    check_only(only, claims)
    if only:
        claims = [c for c in claims if c.id in set(only)]
    ctx = Context(jax.random.PRNGKey(seed))
    reports = []
    for claim in claims:
        t0 = time.perf_counter()
        try:
            finding = claim.check(ctx)
        except Exception as exc:  # a crashing check is reported, never hidden
            reports.append(Report(claim, None, f"error: {type(exc).__name__}: {exc}", time.perf_counter() - t0))
        else:
            if not finding.corrected_ok:
                status = "corrected formula disagrees"
            elif finding.verdict is not claim.expected:
                status = f"unexpected verdict (proof says {claim.expected.value})"
            else:
                status = "ok"
            reports.append(Report(claim, finding, status, time.perf_counter() - t0))
        if progress is not None:
            progress(len(reports), len(claims), reports[-1])
    return reports


def check_only(only: Optional[Sequence[str]], claims: Optional[Sequence[Claim]] = None) -> None:
    """Raise ``ValueError`` naming the unknown ids in ``only`` (and listing the known ones)."""
    if not only:
        return
    known = set(claim_ids(claims))
    unknown = [i for i in only if i not in known]
    if unknown:
        raise ValueError(f"unknown claim id(s) {unknown}; known ids: {sorted(known)}")


# ----------------------------------------------------------------------------- output


def _root_list(root) -> list:
    return [] if root is None else [root] if isinstance(root, str) else list(root)


def _root_json(root):
    return None if root is None else root if isinstance(root, str) else list(root)


def reports_to_json(reports: Sequence[Report], seed: int) -> dict:
    """The ``--json`` document (write it with :func:`lstm_jax.outputs.strict_json`): claims with verdicts, readings,
    root causes and exact numbers; the errata by root cause; jax version, device."""
    dev = jax.devices()[0]
    return {
        "claims": [
            {
                "id": r.claim.id,
                "title": r.claim.title,
                "equation": r.claim.equation,
                "verdict": r.finding.verdict.value if r.finding else "error",
                "expected_verdict": r.claim.expected.value,
                "root_cause": _root_json(r.claim.root_cause) if r.finding else None,
                "readings": [dict(x._asdict()) for x in r.finding.readings] if r.finding else [],
                "status": r.status,
                "statement": r.finding.statement if r.finding else "",
                "figure": r.finding.figure if r.finding else "",
                "measured": r.finding.measured if r.finding else {},
                "proof": r.claim.proof,
                "seconds": round(r.seconds, 3),
            }
            for r in reports
        ],
        "root_causes": {
            rc: {**ROOT_CAUSES[rc]._asdict(), "claims": ids} for rc, ids in _claims_by_root(reports).items()
        },
        "summary": summary_line(reports),
        "seed": seed,
        "dtype": "float64",
        "jax_version": jax.__version__,
        "device": f"{dev.platform}: {dev.device_kind}",
    }


_COLUMNS = ("id", "claim", "eq.", "verdict", "root cause", "measured", "status")


def _doc(reports_or_doc, seed: int = 0) -> dict:
    """The JSON document, from reports or as given (every formatter works on the JSON document)."""
    return reports_or_doc if isinstance(reports_or_doc, dict) else reports_to_json(reports_or_doc, seed)


def _rows(doc: dict) -> list[tuple[str, ...]]:
    return [
        (c["id"], c["title"], c["equation"], c["verdict"], ", ".join(_root_list(c["root_cause"])) or "—",
         c["figure"] or "—", c["status"])
        for c in doc["claims"]
    ]


def format_table(reports) -> str:
    """A fixed-width text table (what ``lstm-jax verify`` prints), from reports or their JSON document."""
    rows = [_COLUMNS, *_rows(_doc(reports))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), sep, *map(line, rows[1:])])


#: the terminal line per claim: (header, width) — the claim text and measured figure are in --markdown / --json
_COMPACT = (("claim", 5), ("id", 21), ("verdict", 30), ("root cause", 22), ("time", 6), ("status", 0))


def _clip(text: str, width: int) -> str:
    return text if not width or len(text) <= width else text[: width - 1] + "…"


def format_progress_header() -> str:
    """The header of :func:`format_progress_line`'s lines (at most 100 characters wide)."""
    return "  ".join(h.ljust(w) for h, w in _COMPACT).rstrip()


def format_progress_line(i: int, total: int, report: Report) -> str:
    """One compact line for a finished claim: ``i/total``, id, verdict, root cause, seconds, status."""
    verdict = report.finding.verdict.value if report.finding is not None else "—"
    root = ", ".join(_root_list(report.claim.root_cause)) or "—"
    cells = (f"{i}/{total}", report.claim.id, verdict, root, f"{report.seconds:.1f} s", report.status)
    return "  ".join(_clip(c, w).ljust(w) for c, (_, w) in zip(cells, _COMPACT)).rstrip()


def _md(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def format_markdown(reports, proofs_prefix: str = "proofs/") -> str:
    """The table as GitHub Markdown, each id linking to its proof (what ``--markdown`` writes)."""
    doc = _doc(reports)
    out = [_md(_COLUMNS), "|" + "---|" * len(_COLUMNS)]
    for c, row in zip(doc["claims"], _rows(doc)):
        out.append(_md((f"[{row[0]}]({proofs_prefix}{c['proof']})", *row[1:])))
    return "\n".join(out)


def _claims_by_root(reports: Sequence[Report]) -> dict:
    by_root: dict = {}
    for r in reports:
        for rc in _root_list(r.claim.root_cause):
            by_root.setdefault(rc, []).append(r.claim.id)
    return by_root


_KIND_WORDS = {"error": "error", "typo": "typo", "condition": "unstated condition"}


def summary_line(reports: Sequence[Report]) -> str:
    """One line counting verdicts over claims and errata over root causes (not rows)."""
    verdicts = Counter(r.finding.verdict for r in reports if r.finding)
    kinds = Counter(ROOT_CAUSES[rc].kind for rc in _claims_by_root(reports))
    parts = [f"{v.value}: {verdicts[v]}" for v in Verdict if verdicts.get(v, 0)]
    kind_txt = ", ".join(f"{kinds[k]} {_KIND_WORDS[k]}{'s' if kinds[k] != 1 else ''}" for k in _KIND_WORDS if kinds[k])
    return f"{len(reports)} claims ({'; '.join(parts)}); {sum(kinds.values())} root causes: {kind_txt}."


def format_errata(reports) -> str:
    """The errata as Markdown: one row per root cause with the claims it affects, then the summary line."""
    doc = _doc(reports)
    proof = {c["id"]: c["proof"] for c in doc["claims"]}
    out = [_md(("root cause", "kind", "where", "as published", "corrected", "claims")), "|---|---|---|---|---|---|"]
    for rc, c in doc["root_causes"].items():
        out.append(_md((f"`{rc}`", _KIND_WORDS[c["kind"]], c["where"], c["published"], c["corrected"],
                        ", ".join(f"[{i}]({proof[i]})" for i in c["claims"]))))
    out += ["", f"**Summary:** {doc['summary']}"]
    return "\n".join(out)


def format_claim_block(claim: dict) -> str:
    """The measured block of one proof document (Markdown), from one claim entry of the JSON document."""
    lines = [f"Output of `lstm-jax verify --only {claim['id']}` (seed 0; exact numbers in its `--json` output):", "",
             "| | |", "|---|---|",
             _md(("verdict", f"**{claim['verdict']}**")),
             _md(("root cause", ", ".join(f"`{x}`" for x in _root_list(claim["root_cause"])) or "—")),
             _md(("measured", claim["figure"] or "—"))]
    for rd in claim["readings"]:
        lines.append(_md((f"reading `{rd['name']}`", f"max rel. error {bound_fmt(rd['max_rel_err'])}: "
                          f"{'holds' if rd['holds'] else 'fails'}")))
    lines.append(_md(("statement", claim["statement"] or "—")))
    lines.append(_md(("status", claim["status"])))
    return "\n".join(lines)
