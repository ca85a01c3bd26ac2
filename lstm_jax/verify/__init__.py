"""``lstm_jax.verify``: the article's claims, checked in float64 against autodiff (``lstm-jax verify``).

Front door of the verify wing.  Every claim is one row of a declarative table (``RNN_CLAIMS``,
``LSTM_CLAIMS``): the claim as published, its equation, the verdict and root cause its proof in
``proofs/`` derives, and a check that measures with the public :mod:`lstm_jax` API only.  Verdicts:
:class:`Verdict`; each published formula is evaluated under every reasonable reading of its notation
(:class:`Reading`, ``proofs/_notation.md``).

Example::

    import jax
    jax.config.update("jax_enable_x64", True)
    from lstm_jax.verify import run_claims, format_table
    print(format_table(run_claims(seed=0, only=["lstm-eq6-D"])))
"""

from ._runner import (
    check_only,
    claim_ids,
    format_claim_block,
    format_errata,
    format_markdown,
    format_table,
    reports_to_json,
    run_claims,
    summary_line,
)
from ._types import Claim, Finding, Reading, Report, Verdict

__all__ = [
    "run_claims",
    "claim_ids",
    "check_only",
    "Claim",
    "Finding",
    "Reading",
    "Report",
    "Verdict",
    "format_table",
    "format_markdown",
    "format_errata",
    "reports_to_json",
    "summary_line",
    "format_claim_block",
]
