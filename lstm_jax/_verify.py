"""The claim registry, the runner behind ``lstm-jax verify``, and its table/JSON/Markdown output.

A :class:`Claim` pairs a statement of the article (with its equation number and
the proof document under ``proofs/``) with an executable check.  A check
*measures* and derives its verdict from the measurement by the rule its proof
states; the runner then compares that verdict with the one the proof predicts.
A published formula found wrong is a finding (verdict "fails as published"),
not an error; a *corrected* formula that disagrees with autodiff, or a verdict
that differs from the proof's, is.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np

#: float64 agreement bound for "formula equals autodiff" (relative Frobenius
#: error).  The two sides differ by rounding only (~1e-15 at these sizes); the
#: smallest genuine formula error the checks meet is above 1e-6.
TOL = 1e-10


class Verdict(str, enum.Enum):
    HOLDS = "holds"
    FAILS = "fails as published"
    CONDITIONAL = "holds only under conditions"


class Finding(NamedTuple):
    """What a check measured.

    Attributes:
      verdict: derived from ``measured`` by the rule in the claim's proof.
      measured: JSON-serialisable numbers.
      statement: the corrected statement (or the conditions) in one sentence.
      corrected_ok: whether the corrected / exact statement agreed with its
        reference (autodiff, a bound) within :data:`TOL`.
      figure: the short measured figure for the table.
    """

    verdict: Verdict
    measured: dict
    statement: str
    corrected_ok: bool
    figure: str


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    equation: str
    expected: Verdict
    proof: str
    check: Callable[["Context"], Finding]


class Context:
    """Per-run inputs of the checks: a PRNG key and measurements shared by several claims.

    Shared measurements are computed lazily, once per run, and live only as long
    as this object (no global cache).
    """

    def __init__(self, key: jax.Array):
        self.key = key
        self._memo: dict[str, Any] = {}

    def shared(self, name: str, compute: Callable[[jax.Array], Any]) -> Any:
        if name not in self._memo:
            self._memo[name] = compute(jax.random.fold_in(self.key, sum(map(ord, name))))
        return self._memo[name]


class Report(NamedTuple):
    claim: Claim
    finding: Optional[Finding]
    status: str  # "ok", "unexpected verdict", "corrected formula disagrees", "error: ..."
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _registry() -> list[Claim]:
    from ._claims_lstm import LSTM_CLAIMS
    from ._claims_rnn import RNN_CLAIMS

    return [*RNN_CLAIMS, *LSTM_CLAIMS]


def claim_ids() -> list[str]:
    """Ids of every registered claim, in report order."""
    return [c.id for c in _registry()]


def run_claims(seed: int = 0, only: Optional[Sequence[str]] = None) -> list[Report]:
    """Run the claims (all, or the ids in ``only``) in float64 and return their reports.

    Raises:
      RuntimeError: if float64 is not enabled (``jax.config.update("jax_enable_x64", True)``).
      ValueError: if ``only`` names an unknown claim id (the message lists the known ids).
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            "the claims are verified in float64: call jax.config.update('jax_enable_x64', True) "
            "before run_claims (the lstm-jax CLI does this)"
        )
    claims = _registry()
    if only:
        known = {c.id for c in claims}
        unknown = [i for i in only if i not in known]
        if unknown:
            raise ValueError(f"unknown claim id(s) {unknown}; known ids: {sorted(known)}")
        claims = [c for c in claims if c.id in set(only)]
    ctx = Context(jax.random.PRNGKey(seed))
    reports = []
    for claim in claims:
        t0 = time.perf_counter()
        try:
            finding = claim.check(ctx)
        except Exception as exc:  # a crashing check is reported, never hidden
            reports.append(Report(claim, None, f"error: {type(exc).__name__}: {exc}", time.perf_counter() - t0))
            continue
        if not finding.corrected_ok:
            status = "corrected formula disagrees"
        elif finding.verdict != claim.expected:
            status = f"unexpected verdict (proof says {claim.expected.value})"
        else:
            status = "ok"
        reports.append(Report(claim, finding, status, time.perf_counter() - t0))
    return reports


# ----------------------------------------------------------------------------- output


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, (np.generic, np.ndarray, jax.Array)):
        return _jsonable(np.asarray(x).tolist())
    return x


def reports_to_json(reports: Sequence[Report], seed: int) -> dict:
    """The ``--json`` document: claims with verdicts and numbers, jax version, device."""
    dev = jax.devices()[0]
    return {
        "claims": [
            {
                "id": r.claim.id,
                "title": r.claim.title,
                "equation": r.claim.equation,
                "verdict": r.finding.verdict.value if r.finding else "error",
                "expected_verdict": r.claim.expected.value,
                "status": r.status,
                "statement": r.finding.statement if r.finding else "",
                "measured": _jsonable(r.finding.measured) if r.finding else {},
                "proof": r.claim.proof,
                "seconds": round(r.seconds, 3),
            }
            for r in reports
        ],
        "seed": seed,
        "dtype": "float64",
        "jax_version": jax.__version__,
        "device": f"{dev.platform}: {dev.device_kind}",
    }


_COLUMNS = ("id", "claim", "eq.", "verdict", "measured", "status")


def _rows(reports: Sequence[Report]) -> list[tuple[str, ...]]:
    return [
        (
            r.claim.id,
            r.claim.title,
            r.claim.equation,
            r.finding.verdict.value if r.finding else "—",
            r.finding.figure if r.finding else "—",
            r.status,
        )
        for r in reports
    ]


def format_table(reports: Sequence[Report]) -> str:
    """A fixed-width text table (what ``lstm-jax verify`` prints)."""
    rows = [_COLUMNS, *_rows(reports)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), sep, *map(line, rows[1:])])


def format_markdown(reports: Sequence[Report], proofs_prefix: str = "proofs/") -> str:
    """The table as GitHub Markdown, each id linking to its proof."""
    out = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for r, row in zip(reports, _rows(reports)):
        link = f"[{row[0]}]({proofs_prefix}{r.claim.proof})"
        cells = (link, *row[1:])
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def jit_vmap(fn: Callable) -> Callable:
    """``jit(vmap(fn))``: the checks evaluate many random draws of one shape at once."""
    return jax.jit(jax.vmap(fn))


def rel_err(a: jax.Array, b: jax.Array) -> jax.Array:
    """Relative Frobenius error ``||a - b|| / ||b||`` over the last two axes (traceable)."""
    import jax.numpy as jnp

    num = jnp.sqrt(jnp.sum((a - b) ** 2, axis=(-2, -1)))
    den = jnp.sqrt(jnp.sum(b**2, axis=(-2, -1)))
    return num / jnp.where(den == 0, 1.0, den)


