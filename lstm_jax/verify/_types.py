r"""The shared types of the claim checks: verdicts, readings, findings, claims, the run context.

Imported by the claim tables and by the runner; it imports neither (no import circle).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp

#: float64 agreement bound for "formula equals autodiff" (relative Frobenius error).  Both sides
#: differ by rounding only: the largest error any exact formula shows in ``lstm-jax verify`` is
#: 6.2e-14 (max over its draws; the JSON keeps each one), so 1e-12 leaves a margin of 16.
TOL = 1e-12
#: a formula "fails" when some draw is off by more than this (relative): six orders above TOL; the
#: smallest genuine formula error the checks meet is 1.7e-5 (``lstm-eq6-sum`` under the row reading).
FAIL_AT = 1e-6
F64 = jnp.float64

#: the two readings of a vector factor ``v`` standing after a Jacobian ``M`` (``M · v``), see
#: ``proofs/_notation.md``: ``row`` is the reading the article's product-rule line needs
#: (:math:`\operatorname{diag}(v)M`), ``column`` the literal left-to-right one (:math:`M\operatorname{diag}(v)`).
STATED_READING = "row"
READINGS = ("row", "column")


class Verdict(str, enum.Enum):
    """The verdict vocabulary (stable strings: they are the JSON values)."""

    HOLDS = "holds"
    HOLDS_UNDER_READING = "holds under the stated reading"
    TYPO = "typo"
    FAILS = "fails as published"
    CONDITIONAL = "holds only under conditions"


class Reading(NamedTuple):
    """One reading of a published formula: its name, the worst relative error over the draws, and whether it holds."""

    name: str
    max_rel_err: float
    holds: bool


class Finding(NamedTuple):
    """What a check measured.

    Attributes:
      verdict: derived from ``measured`` by the rule in the claim's proof.
      measured: numbers (arrays allowed; written with ``lstm_jax.outputs.strict_json``).
      statement: the corrected statement, the intended formula (typo) or the conditions, in one sentence.
      corrected_ok: whether the corrected / exact statement agreed with its reference within :data:`TOL`.
      figure: the short measured figure for the table (round-off-level numbers printed as upper bounds).
      readings: the published formula under every reading (empty for claims about rates and shares).
    """

    verdict: Verdict
    measured: dict
    statement: str
    corrected_ok: bool
    figure: str
    readings: tuple = ()


RootCause = Union[None, str, tuple]


@dataclass(frozen=True)
class Claim:
    """One row of a claim table.

    Attributes:
      id: stable id (``lstm-jax verify --only ID``).
      title: the claim as the article states it.
      equation: the article's equation number or place.
      expected: the verdict the proof document derives.
      root_cause: stable short id of the error (a tuple when several), ``None`` when the claim holds.
      proof: the proof document under ``proofs/``.
      check: ``Context -> Finding``.
    """

    id: str
    title: str
    equation: str
    expected: Verdict
    root_cause: RootCause
    proof: str
    check: Callable[["Context"], Finding]


class Context:
    """Per-run inputs of the checks: a PRNG key, and draws/trajectories shared by several claims.

    Shared values are computed lazily, once per run, and live only as long as this object (no
    global cache): claims that need the same trajectory or the same random draws ask for it by name.
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
    status: str  # "ok", "unexpected verdict ...", "corrected formula disagrees", "error: ..."
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def jit_vmap(fn: Callable) -> Callable:
    """``jit(vmap(fn))``: the checks evaluate many random draws of one shape at once."""
    return jax.jit(jax.vmap(fn))


def rel_err(a: jax.Array, b: jax.Array) -> jax.Array:
    """Relative Frobenius error ``||a - b|| / ||b||`` over the last two axes (traceable)."""
    num = jnp.sqrt(jnp.sum((a - b) ** 2, axis=(-2, -1)))
    den = jnp.sqrt(jnp.sum(b**2, axis=(-2, -1)))
    return num / jnp.where(den == 0, 1.0, den)


def readings_of(errors: dict) -> tuple:
    """``{reading name: max rel err}`` → :class:`Reading` tuple (holds = error ≤ :data:`TOL`)."""
    return tuple(Reading(name, float(e), float(e) <= TOL) for name, e in errors.items())


def formula_verdict(readings: Sequence[Reading], *, typo: bool = False) -> Verdict:
    """The verdict rule for a published formula (``proofs/_notation.md``).

    ``holds`` under every reading; ``holds under the stated reading`` when the stated (row) reading
    holds and another does not; otherwise ``typo`` when the claim's proof identifies a one-symbol
    slip (whose intended formula must hold: checked through ``corrected_ok``), else ``fails as published``.
    """
    if all(r.holds for r in readings):
        return Verdict.HOLDS
    if any(r.holds and r.name == STATED_READING for r in readings):
        return Verdict.HOLDS_UNDER_READING
    return Verdict.TYPO if typo else Verdict.FAILS


def bound_fmt(x: float, floor: float = TOL) -> str:
    """A figure for the table: ``< 1e-12`` (:data:`TOL`) at round-off level, so that the table is identical
    on every machine and compiler setting (round-off itself is not); else 2 significant digits."""
    x = float(x)
    if x < floor:
        return f"< {floor:.0e}"
    return f"{x:.2g}"
