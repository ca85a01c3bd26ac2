r"""The article's learning claim, checked on networks being trained (not only on random weights).

The article (discussion of eq. 6 and eq. 3): "we can find a suitable parameter update of the forget gate at
time step k+1 such that ∂E_{k+1}/∂W ↛ 0".  The measurement and its verdict rules live in the experiments
wing (:func:`lstm_jax.experiments.measure_forget_claim`, :func:`lstm_jax.experiments.forget_claim_verdict`:
an LSTM with forget bias 0 trained with Adam on the Hochreiter & Schmidhuber 1997 adding problem at a short
and a longer lag; the forget activation on the lag-carrying units and the long-lag share of ∂E/∂W before
and after).  This table row turns its verdict string into a :class:`~lstm_jax.verify.Verdict`.  The strong
form (is the forget gate what makes long lags learnable?) is the sweep's: ``docs/long-lag/``.
"""

from __future__ import annotations

import lstm_jax.experiments as lx

from ._types import Claim, Context, Finding, Verdict


def _check_forget_training(ctx: Context) -> Finding:
    measured = lx.measure_forget_claim(ctx.key)
    verdict, statement = lx.forget_claim_verdict(measured)
    s, lg = measured["short"], measured["long"]
    figure = (f"median over {measured['setting']['seeds']} seeds: T={s['T']}: f on lag units "
              f"{s['f_lag_start']:.2f}→{s['f_lag_end']:.2f}, long-lag share {s['share_start']:.2f}→{s['share_end']:.2f}; "
              f"T={lg['T']}: f {lg['f_lag_start']:.2f}→{lg['f_lag_end']:.2f}, share "
              f"{lg['share_start']:.2f}→{lg['share_end']:.2f}, MSE {lg['mse_end']:.3f}")
    # the per-step gradient decomposition behind the long-lag share must sum to jax.grad (float32 training)
    decomposition_ok = max(s["decomposition_rel_err"], lg["decomposition_rel_err"]) < 1e-4
    return Finding(Verdict(verdict), measured, statement, decomposition_ok, figure)


TRAINING_CLAIMS = (
    Claim(lx.FORGET_CLAIM_ID, "training moves the forget gate so that ∂E/∂W does not vanish", "(6) discussion",
          Verdict.CONDITIONAL, "gradient-must-reach-gate", "forget-gate-training.md", _check_forget_training),
)
