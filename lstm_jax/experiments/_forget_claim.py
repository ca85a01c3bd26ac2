r"""The article's learning claim, measured on a trained network: does training use the forget gate?

The article (sec. on eq. 6) argues that the LSTM keeps :math:`\partial E/\partial W` from vanishing because
"we can find a suitable parameter update of the forget gate at time step k+1" - i.e. that *training* moves
the forget gate toward 1 on the units that carry information across the lag, and so the long-lag part of
the gradient survives and grows.  :func:`measure` tests that in a fast setting (seconds): an LSTM with
forget bias 0 (:math:`f \approx 0.5` at the start, so there is room to open) trained with Adam on the
H&S 1997 adding problem at a short lag (T = 20) and at a longer one (T = 50), with
:func:`~lstm_jax.experiments.flow_snapshot` before and after:

* ``f_lag``: mean forget activation on the lag-carrying units (the quarter of units whose cell state right
  after the first marked input the prediction is most sensitive to) over the steps that carry the lag;
* ``long_lag_share``: :math:`\|\sum_{T-t>T/2} g_t\|/\|\sum_t g_t\|` of :math:`\partial E/\partial W`.

:func:`verdict` turns the numbers into one of the three verdicts by fixed rules (stated in its docstring).
The strong form (does the forget gate *matter* at long lags, against the 1997 cell without one) is the
sweep's (``docs/long-lag/``, ``proofs/forget-gate-training.md``).
"""

from __future__ import annotations

import jax
import numpy as np

from ._flow_during import diagnostic_batch, flow_snapshot
from ._models import ModelSpec, init_model
from ._train import TrainSettings, make_chunk

CLAIM_ID = "forget-gate-training"
FAST = {"model": "lstm-bf0", "T": 20, "T_long": 50, "n": 8, "steps": 1000, "batch": 32, "lr": 1e-2, "clip": 1.0,
        "seeds": 5}
#: rule thresholds: learned = final training MSE below LEARNED_MSE (the target variance is 1/24 = 0.042);
#: a rise counts when it exceeds GATE_RISE (forget activation) / SHARE_RISE (share of the gradient)
LEARNED_MSE, GATE_RISE, SHARE_RISE = 0.01, 0.05, 0.05


def _one_seed(key: jax.Array, spec: ModelSpec, settings: TrainSettings, dbatch, t1) -> dict:
    params = init_model(jax.random.fold_in(key, 0), spec)
    opt, chunk = make_chunk(spec, settings)
    before = flow_snapshot(params, dbatch, t1, spec.model, full=False)
    params, _, errs, _, _ = chunk(params, opt.init(params), jax.random.fold_in(key, 1), 0)
    after = flow_snapshot(params, dbatch, t1, spec.model, full=False)
    tail = np.asarray(errs[-max(1, 2000 // settings.batch):], np.float64)
    return {"f_lag_start": before["f_lag"], "f_lag_end": after["f_lag"],
            "f_other_start": before["f_other"], "f_other_end": after["f_other"],
            "share_start": before["long_lag_share"], "share_end": after["long_lag_share"],
            "mse_start": float(np.mean(np.asarray(errs[0], np.float64) ** 2)), "mse_end": float(np.mean(tail**2)),
            "decomposition_rel_err": max(before["decomposition_rel_err"], after["decomposition_rel_err"])}


def _arm(key: jax.Array, setting: dict, T: int) -> dict:
    spec = ModelSpec(setting["model"], "adding-1997", T, setting["n"])
    settings = TrainSettings(batch=setting["batch"], lr=setting["lr"], clip=setting["clip"],
                             check_every=setting["steps"], diagnostics=False)
    k_diag, k_seeds = jax.random.split(key)
    dbatch, t1 = diagnostic_batch(k_diag, spec.T, 32)
    per_seed = [_one_seed(k, spec, settings, dbatch, t1) for k in jax.random.split(k_seeds, setting["seeds"])]
    med = {k: float(np.median([r[k] for r in per_seed])) for k in per_seed[0]}
    med["decomposition_rel_err"] = max(r["decomposition_rel_err"] for r in per_seed)
    return {**med, "T": T, "per_seed": per_seed}


def measure(key: jax.Array, setting: dict = FAST) -> dict:
    """Two arms from ``key``: the short lag ``setting["T"]`` and the long lag ``setting["T_long"]`` (same
    model and optimiser), each ``setting["seeds"]`` seeds of one compiled program; per-seed start/end forget
    activations on the lag units, long-lag shares and training MSEs (last 2000 sequences), and their
    medians over seeds (what :func:`verdict` reads).  The short arm's medians are also at the top level."""
    k_short, k_long = jax.random.split(key)
    short = _arm(k_short, setting, setting["T"])
    long = _arm(k_long, setting, setting["T_long"])
    flat = {k: v for k, v in short.items() if k not in ("per_seed", "T")}
    return {**flat, "setting": dict(setting), "short": short, "long": long}


def _rules(m: dict) -> tuple[bool, bool, bool]:
    return (m["mse_end"] < LEARNED_MSE, m["f_lag_end"] - m["f_lag_start"] > GATE_RISE,
            m["share_end"] - m["share_start"] > SHARE_RISE)


def _nums(m: dict) -> str:
    return (f"forget gate on the lag units {m['f_lag_start']:.2f} → {m['f_lag_end']:.2f} (other units "
            f"{m['f_other_start']:.2f} → {m['f_other_end']:.2f}); long-lag share of ∂E/∂W "
            f"{m['share_start']:.2f} → {m['share_end']:.2f}; training MSE {m['mse_start']:.3f} → {m['mse_end']:.4f}")


def verdict(m: dict) -> tuple[str, str]:
    """Rules on the medians over seeds, per arm.  ``learned``: ``mse_end < 0.01``.  ``gate_up``:
    ``f_lag_end - f_lag_start > 0.05``.  ``share_up``: ``share_end - share_start > 0.05``.

    * **holds**: both arms learned with gate_up and share_up (training opens the gate at either lag);
    * **fails as published**: the short arm learned with neither gate_up nor share_up (the lag was learned
      without the mechanism the article describes);
    * **holds only under conditions**: every other case - typically the short arm shows the mechanism and
      the long arm does not (no gradient from the lag reaches the gate, so training does not open it); the
      statement names the arm and what moved.
    """
    s, lg = m["short"], m["long"]
    s_learned, s_gate, s_share = _rules(s)
    l_learned, l_gate, l_share = _rules(lg)
    both = f"T = {s['T']}: {_nums(s)}. T = {lg['T']}: {_nums(lg)}"
    if s_learned and s_gate and s_share and l_learned and l_gate and l_share:
        return "holds", f"training opened the forget gate on the lag-carrying units and the long-lag share grew at both lags. {both}"
    if s_learned and not s_gate and not s_share:
        return "fails as published", ("the short lag was learned but the forget gate on the lag units did not move "
                                      f"toward 1 and the long-lag share did not grow. {both}")
    if s_learned and s_gate and s_share:
        what = ("the long lag was not learned" if not l_learned else "the long lag was learned without it")
        return "holds only under conditions", (
            f"at the short lag training opened the forget gate on the lag units and the long-lag share grew; at the "
            f"long lag the gate {'opened' if l_gate else 'did not open'} and the share {'grew' if l_share else 'did not grow'} "
            f"({what}): training uses the forget gate only where a gradient from the lag already reaches it. {both}")
    if not s_learned:
        return "holds only under conditions", f"the short lag was not learned in this setting, so nothing is shown. {both}"
    which = "the forget gate opened on the lag units but the long-lag share did not grow" if s_gate else \
        "the long-lag share grew but the forget gate on the lag units did not move toward 1"
    return "holds only under conditions", f"at the short lag {which}. {both}"
