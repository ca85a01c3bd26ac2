r"""The numbers of a diagnosis: gradient flow, Lyapunov exponents, eq. (6) terms and gates, per layer.

For one recurrence with step Jacobians :math:`J_t = \partial s_t/\partial s_{t-1}` (``t = 1..L`` on a
sequence of length ``L``; LSTM :math:`s_t = [h_t; c_t]`, RNN :math:`c_t`, GRU :math:`h_t`):

* **Flow.** :math:`\|\partial s_L/\partial s_{L-\ell}\|_2 = \|J_L\cdots J_{L-\ell+1}\|_2`, the spectral
  norm of the joint-state Jacobian, against the lag :math:`\ell`.  Accumulated backwards in **log
  space**: :math:`M \leftarrow M J_t/\|M J_t\|_F`, :math:`a \leftarrow a + \log\|M J_t\|_F`, so
  :math:`\log\|\cdot\|_2 = a + \log\|M\|_2` never under- or overflows (``T = 10^4`` in float32 is fine);
  :math:`\|M\|_2` is an SVD at the first lags and a warm-started block power iteration after them
  (:func:`lstm_jax.spectral_ritz`), checked against SVDs at a few lags on every run (:func:`_norm_method`).
  An exactly zero product is :math:`-\infty` and is said as such.  Lags are sampled every
  ``stride = ceil(T/200)`` steps.  Per sequence the **finite-time growth
  rate** :math:`r` is the least-squares slope of :math:`\log\|\cdot\|_2` against :math:`\ell` over
  ``transient <= lag <= L`` (natural log, per step); the report gives its mean over sequences with
  the standard error (std / sqrt(B)), and from it the **gradient half-life** :math:`\ln 2/(-r)`
  steps (or the doubling time :math:`\ln 2/r` when :math:`r > 0`).
* **Lyapunov exponents.** :func:`lstm_jax.lyapunov` (QR re-orthonormalisation, log space;
  Benettin et al. 1980, Engelken, Wolf & Abbott 2020) from ``k`` **random orthonormal** start
  directions (the Q factor of a Gaussian ``(d, k)`` matrix, one draw per sequence from ``key``);
  the first ``transient`` steps turn the directions towards the leading Lyapunov vectors and are
  not counted.  Mean and standard error over sequences.  The leading exponent is the
  :math:`T\to\infty` limit of the same rate :math:`r`, so the two are compared: they may differ at
  finite ``T`` (the norm curve bends while the product is still in its transient), through
  non-normal transient growth, or when the start directions have not aligned yet.
* **Eq. (6) terms** (LSTM; GRU analogue): spectral norms of :math:`A_t, B_t, C_t, D_t`
  (:func:`lstm_jax.lstm_terms_along`) at up to 50 steps, median over sequences: :math:`B_t` is diagonal, its
  norm :math:`\max_i |B_{t,ii}|` exactly; the others by block power iteration (``O(n^2)`` a step rather than an
  SVD's ``O(n^3)``), checked against SVDs at :data:`TERM_CHECKS` of the steps on every run
  (``terms.norm_method``).
* **Gates.** Histograms of every gate (tanh values mapped to ``[0, 1]``); per-unit mean of the
  memory gate (LSTM forget gate, GRU update gate) and the memory time constant
  :math:`\tau = -1/\log\bar f` (a cell decays as :math:`\bar f^{\,t} = e^{-t/\tau}`); a unit's gate is
  *saturated* when it is below 0.1 or above 0.9 on at least 90 % of the steps (the thresholds of
  Karpathy, Johnson & Fei-Fei, "Visualizing and understanding recurrent networks", 2015).
* **Padding.** With ``seq_lengths`` (right padding) the steps ``t > L`` get identity Jacobians and
  are left out of every statistic, so a padded sequence gives exactly the numbers of the sequence
  alone.  A reverse direction runs on each sequence's valid part reversed (``x_L, ..., x_1``), as
  PyTorch's packed bidirectional layers do.
* **Baseline.** The same statistics for a freshly initialised model of the same shape
  (:func:`lstm_jax.init_lstm` with forget bias 1 / :func:`lstm_jax.init_rnn`) on the same inputs.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

import lstm_jax
from lstm_jax import RecurrentLayer, RecurrentModel

from . import _kinds
from ._kinds import KINDS, kind_of

#: version of the diagnosis.json schema (lstm_jax.diagnose's docstring); a change of any field's meaning increments it
SCHEMA_VERSION = 1

MAX_POINTS = 200  # lag and time samples per curve
HIST_BINS = 40
SAT_LOW, SAT_HIGH, SAT_SHARE = 0.1, 0.9, 0.9
MEMORY_BUDGET = 512 * 2**20  # bytes of step Jacobians held at once (sequences are vmapped in chunks)
JAC_COPIES = 2  # (T, d, d) arrays per sequence: the Jacobians and their padded (identity) version
#: the flow curve's spectral norms (lags counted as points of the curve, one every stride steps): exact (SVD) for
#: the first EXACT_LAGS, then block power iteration with a block of RITZ_BLOCK vectors, EARLY_ITERS iterations a
#: lag up to lag EARLY_LAGS, WARMUP_ITERS up to lag WARMUP_LAGS and RITZ_ITERS after (the block follows the product
#: from lag 1), checked against an SVD at NORM_CHECKS lags.  Measured on random LSTMs, n = 48 and 128: the
#: largest relative error against an SVD at every lag is 1.5e-9 (n = 128; 4e-15 at n = 48, tests/test_diagnose.py)
EXACT_LAGS, EARLY_LAGS, EARLY_ITERS, WARMUP_LAGS, WARMUP_ITERS, RITZ_BLOCK, RITZ_ITERS, NORM_CHECKS = \
    2, 8, 16, 32, 8, 16, 1, 3
MAX_TERM_POINTS = 50  # times at which the eq. (6) terms' spectral norms are sampled
TERM_CHECKS = 4  # of those, times at which the power iteration is checked against an SVD
DISAGREE_SIGMAS = 2.0  # standard errors: a rate within them of 0 (or two rates of each other) is not resolved
ROUNDING_FLOOR = 1e3  # times eps * max(|rate|, 1): differences below it are rounding, whatever the stderr says


def _floor(eps: float, *rates: float) -> float:
    """The smallest rate (difference) that is more than rounding: ``1e3 * eps * max(|r|, 1)``."""
    return ROUNDING_FLOOR * eps * max([1.0] + [abs(r) for r in rates if math.isfinite(r)])


class LayerDiagnosis(NamedTuple):
    """Statistics of one recurrence (one layer, one direction); see the module docstring.

    ``flow``, ``lyapunov``, ``agreement``, ``terms``, ``gates`` are dicts of plain numbers and lists
    (the layout of ``diagnosis.json``, documented in :mod:`lstm_jax.diagnose`); ``terms``/``gates``
    are ``None`` for kinds without them; ``baseline`` holds the same dicts for a fresh model.
    """

    name: str
    kind: str
    layer: int
    reverse: bool
    n: int
    m: int
    flow: dict
    lyapunov: dict
    agreement: dict
    terms: Optional[dict]
    gates: Optional[dict]
    baseline: Optional[dict]


class Diagnosis(NamedTuple):
    """Result of :func:`diagnose`: ``model`` and ``inputs`` summaries and one :class:`LayerDiagnosis` per recurrence."""

    model: dict
    inputs: dict
    layers: tuple

    def to_json(self) -> dict:
        """The ``diagnosis.json`` document (schema 1, see :mod:`lstm_jax.diagnose`)."""

        layers = []
        for ld in self.layers:
            layers.append({"name": ld.name, "kind": ld.kind, "layer": ld.layer, "reverse": ld.reverse,
                           "n": ld.n, "m": ld.m, "flow": ld.flow, "lyapunov": ld.lyapunov,
                           "agreement": ld.agreement, "terms": ld.terms, "gates": ld.gates,
                           "baseline": ld.baseline})
        return {"schema": SCHEMA_VERSION, "model": self.model, "inputs": self.inputs, "layers": layers}


# --------------------------------------------------------------------------- device side


def _norm_plan(G: int, d: int) -> np.ndarray:
    """How the spectral norm at each of the ``G`` lags is computed: 0 exact (an SVD), 1 block power iteration
    (:func:`lstm_jax.spectral_ritz`, warm-started from the previous lag), 2 both (a check of the power
    iteration).  Exact for the first :data:`EXACT_LAGS` lags (short products, whose top singular vectors still
    turn from lag to lag) and for small states; :data:`NORM_CHECKS` evenly spaced checks among the rest."""
    if d <= 2 * RITZ_BLOCK:
        return np.zeros(G, np.int32)
    plan = np.where(np.arange(G) < EXACT_LAGS, 0, 1).astype(np.int32)
    rest = np.arange(EXACT_LAGS, G)
    if rest.size:
        plan[rest[np.unique(np.linspace(0, rest.size - 1, min(NORM_CHECKS, rest.size)).round().astype(int))]] = 2
    return plan


def _norm_method(logn: np.ndarray, check: np.ndarray, stride: int, d: int) -> dict:
    """How the flow curve's norms were computed, and how far the power iteration was from an SVD where checked."""
    sel = np.isfinite(check) & np.isfinite(logn)
    rel = np.abs(np.expm1(logn[sel] - check[sel]))
    plan = _norm_plan(logn.shape[1], d)
    if not np.any(plan):
        return {"method": "exact: an SVD at every lag", "checked_lags": [], "max_relative_error": None}
    return {"method": (f"exact (SVD) at the first {EXACT_LAGS} lags; block power iteration after (block {RITZ_BLOCK}, "
                       f"{EARLY_ITERS} iterations a lag up to lag {EARLY_LAGS}, {WARMUP_ITERS} up to lag "
                       f"{WARMUP_LAGS}, then {RITZ_ITERS}, warm-started "
                       "from the previous lag: a lower bound on the norm)"),
            "checked_lags": (stride * (1 + np.flatnonzero(plan == 2))).tolist(),
            "max_relative_error": float(rel.max()) if rel.size else None}


def _times_jacobian(M: jax.Array, J: jax.Array, width: int, rec: Optional[int]) -> jax.Array:
    r""":math:`M J_t` for a dense step Jacobian ``J (d, d)`` of a protocol cell with ``width`` state blocks of ``n``.

    Only the columns of the recurrent block ``rec`` are dense: every other column block is diagonal within each
    output block (the update is unit-wise and only the ``rec`` block meets a weight, :func:`lstm_jax._cell.dense_jacobian`).
    So :math:`M J_t` is one GEMM with the ``(d, n)`` dense columns and, for each other column block ``b``,
    :math:`\sum_j M_{:, j} \operatorname{diag}(J_{jb})` -- ``2 d^2 n`` flops instead of ``2 d^3`` (half, for the LSTM).
    """
    if width == 1 or rec is None:
        return M @ J
    n = J.shape[0] // width
    cols = []
    for b in range(width):
        if b == rec:
            cols.append(M @ J[:, b * n:(b + 1) * n])
        else:
            diag = jnp.stack([jnp.diagonal(J[j * n:(j + 1) * n, b * n:(b + 1) * n]) for j in range(width)])
            cols.append(jnp.einsum("djn,jn->dn", M.reshape(M.shape[0], width, n), diag))
    return jnp.concatenate(cols, axis=1)


def _log_suffix_norms(jacs: jax.Array, length, stride: int, G: int, width: int = 1,
                      rec: Optional[int] = None) -> tuple[jax.Array, jax.Array]:
    r"""Log spectral norms of the products of the last ``g * stride`` valid step Jacobians, ``g = 1..G``.

    ``jacs (T, d, d)`` in time order, valid for ``t < length``.  Returns ``(G,)`` twice: entry ``g - 1`` of the
    first is :math:`\log\|J_L\cdots J_{L-g\,\mathrm{stride}+1}\|_2` (lag ``g * stride``; steps before the first
    count as identities); the second holds the exact (SVD) value at the check lags of :func:`_norm_plan` and NaN
    elsewhere.  Accumulated from the last valid step backwards in log space (:func:`lstm_jax.log_renormalise`
    every step), reading ``jacs`` in place (no shifted copy); an exactly zero product is ``-inf``.  The norm is
    an SVD at the exact lags and the warm-started block power iteration elsewhere (``O(d^2 k)`` instead of
    ``O(d^3)``); the block follows the product at every lag, so it is warm where the power iteration takes over.
    """
    T, d, _ = jacs.shape
    eye = jnp.eye(d, dtype=jacs.dtype)
    offset = G * stride - length  # position p holds step p - offset
    plan = jnp.asarray(_norm_plan(G, d))
    k = min(RITZ_BLOCK, d)

    def inner(carry, p):
        src = p - offset
        J = jnp.where(src >= 0, jax.lax.dynamic_index_in_dim(jacs, jnp.clip(src, 0, T - 1), keepdims=False), eye)
        return lstm_jax.log_renormalise(_times_jacobian(carry[0], J, width, rec), carry[1]), None

    def outer(carry, inp):
        positions, how, g = inp
        (M, a), _ = jax.lax.scan(inner, carry[:2], positions, reverse=True)
        iters = jnp.where(g < EARLY_LAGS, EARLY_ITERS, jnp.where(g < WARMUP_LAGS, WARMUP_ITERS, RITZ_ITERS))
        ritz, U = lstm_jax.spectral_ritz(M, carry[2], iters)
        exact = jax.lax.cond(how != 1, lambda: lstm_jax.log_spectral(M, a), lambda: jnp.asarray(jnp.nan, a.dtype))
        value = jnp.where(how == 0, exact, a + jnp.log(ritz))
        return (M, a, U), (value, jnp.where(how == 2, exact, jnp.nan))

    start = (eye, jnp.zeros((), jacs.dtype), jnp.eye(d, k, dtype=jacs.dtype))
    xs = (jnp.arange(G * stride).reshape(G, stride)[::-1], plan, jnp.arange(G))
    _, (out, check) = jax.lax.scan(outer, start, xs)
    return out, check


@partial(jax.jit, static_argnames=("kind", "n", "k", "transient", "stride"))
def _layer_stats(params, xs, lengths, keys, times, term_checks, *, kind, n, k, transient, stride):
    """Per-sequence raw statistics and outputs of one layer for a batch ``xs (B, T, m)`` (vmapped).

    One scan per sequence: its states feed the step Jacobians (the cell protocol's dense consumer), the
    gates, the eq. (6) terms and the outputs the next layer reads (zero on padded steps).
    """
    K = KINDS[kind]
    cell = K.cell
    w = cell.weights(params)

    def one(x, L, key):
        T = x.shape[0]
        s0 = cell.zero(n, x.dtype)
        _, traj = cell.run(w, s0, x)
        states = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), s0, traj)  # s_0..s_T
        J = cell.jacobians_along(w, s0, traj, x)
        d = J.shape[-1]
        eye = jnp.eye(d, dtype=J.dtype)
        t = jnp.arange(T)
        valid_t = t < L
        # Lyapunov: time order, identities after the sequence's end (they add log 1 = 0).
        J_right = jnp.where(valid_t[:, None, None], J, eye)
        if cell.diagonal_linear:
            # J_t = diag(a_t): the exponents are the time averages of log a_t per unit, exactly, with no QR
            # (a QR from random directions reaches them only as T grows)
            # padded steps: log 1 = 0; floored at the smallest normal number, as lstm_jax.lyapunov does
            logs = jnp.log(jnp.maximum(jnp.diagonal(J_right, axis1=1, axis2=2), jnp.finfo(J.dtype).tiny))
            mean = jnp.sum(jnp.where((t >= transient)[:, None], logs, 0), axis=0) / (L - transient).astype(J.dtype)
            exponents = -jnp.sort(-mean)[:k]
        else:
            q0, _ = jnp.linalg.qr(jax.random.normal(key, (d, k), J.dtype))
            ly = lstm_jax.lyapunov(J_right, k, q0, transient=transient)
            exponents = ly.exponents * ((T - transient) / (L - transient).astype(J.dtype))  # mean over valid steps
        # Flow: lags counted back from each sequence's own last step L.
        G = -(-T // stride)
        lags = stride * jnp.arange(1, G + 1)
        logn, check = _log_suffix_norms(J_right, L, stride, G, cell.width, cell.rec_block)
        logn, check = jnp.where(lags <= L, logn, jnp.nan), jnp.where(lags <= L, check, jnp.nan)
        # Gates: masked sums per unit and histograms.
        valid = valid_t[:, None]
        gates = {}
        for name, v in K.gates(params, x, states).items():
            wt = jnp.broadcast_to(valid, v.shape).astype(v.dtype)
            gates[name] = {
                "sum": jnp.sum(v * wt, axis=0),
                "low": jnp.sum((v < SAT_LOW) & valid, axis=0),
                "high": jnp.sum((v > SAT_HIGH) & valid, axis=0),
                "hist": jnp.histogram(v.ravel(), bins=HIST_BINS, range=(0.0, 1.0), weights=wt.ravel())[0],
            }
        terms = None
        if K.terms is not None:
            values, exact = K.terms(params, x, states, times, term_checks)
            terms = ({name: jnp.where(times <= L, v, jnp.nan) for name, v in values.items()},
                     {name: jnp.where(term_checks <= L, v, jnp.nan) for name, v in exact.items()})
        outputs = jnp.where(valid, cell.outputs(w, traj, x), 0)
        return (logn, check, exponents, gates, terms), outputs

    return jax.vmap(one)(xs, lengths, keys)


def _reverse_valid(xs, lengths):
    """Reverse each sequence's valid part in time (an involution; padding stays in place)."""
    t = jnp.arange(xs.shape[1])[None, :]
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return jnp.take_along_axis(xs, idx[:, :, None], axis=1)


# --------------------------------------------------------------------------- host side


def _nan_stats(a: np.ndarray, axis=0):
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # order statistics for the band (no interpolation: an exactly vanished product is -inf, and -inf
            # interpolated with a finite value is NaN)
            return (np.nanmedian(a, axis=axis), np.nanquantile(a, 0.1, axis=axis, method="lower"),
                    np.nanquantile(a, 0.9, axis=axis, method="higher"))


def _mean_se(v: np.ndarray):
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    mean = float(np.mean(v))
    se = float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return mean, se


def _exp(x: float) -> float:
    """``exp(x)``, ``inf`` past float64's range (a report never overflows), ``nan`` for ``nan``."""
    return math.nan if not math.isfinite(x) else math.inf if x > 709 else math.exp(x)


def _flow_summary(logn: np.ndarray, lengths: np.ndarray, stride: int, transient: int, eps: float) -> dict:
    B, G = logn.shape
    lags = stride * np.arange(1, G + 1)
    # an exactly vanished product is log 0 = -inf (a step Jacobian, or a product of them, is exactly 0: dead or
    # saturated units) and stays -inf at every longer lag; it is a value of the curve, not a missing one
    zero = np.isneginf(logn)
    keep = np.any(np.isfinite(logn) | zero, axis=0)
    rates = np.full(B, np.nan)
    fit_from, fit_to = max(transient, 1), None
    for b in range(B):
        sel = np.isfinite(logn[b]) & (lags >= fit_from) & (lags <= lengths[b])
        if sel.sum() >= 2:
            rates[b] = np.polyfit(lags[sel], logn[b, sel], 1)[0]
            fit_to = max(fit_to or 0, int(lags[sel].max()))
    rate, se = _mean_se(rates)
    med, q10, q90 = _nan_stats(logn[:, keep] / math.log(10))
    half_width = max(DISAGREE_SIGMAS * se if math.isfinite(se) else 0.0, _floor(eps, rate))
    lo_r, hi_r = rate - half_width, rate + half_width
    measurable = math.isfinite(rate) and (hi_r < 0 or lo_r > 0)
    half_life = lstm_jax.half_life
    half = float(half_life(rate)) if measurable and rate < 0 else None
    double = float(half_life(-rate)) if measurable and rate > 0 else None
    # the interval of ln2/|r| from the rate's interval (measurable: the interval excludes 0)
    half_iv = [float(half_life(lo_r)), float(half_life(hi_r))] if half is not None else None
    double_iv = [float(half_life(-hi_r)), float(half_life(-lo_r))] if double is not None else None
    fit = [fit_from, fit_to if fit_to is not None else int(lengths.max())]
    window = fit[1] - fit[0]
    extrapolated = any(v is not None and v > window for v in (half, double))
    return {"norm": "spectral norm of the joint-state Jacobian ds_T/ds_(T-lag), log10",
            "lags": lags[keep].tolist(), "median": med.tolist(), "q10": q10.tolist(), "q90": q90.tolist(),
            "rate": rate, "rate_stderr": se, "rate_interval": [lo_r, hi_r], "measurable": bool(measurable),
            "half_life": half, "half_life_interval": half_iv, "doubling_time": double,
            "doubling_time_interval": double_iv, "extrapolated": bool(extrapolated),
            "factor_over_fit": _exp(rate * window),
            "fit_lags": fit, "per_sequence_rate": rates.tolist(),
            "exact_zero": {"sequences": int(np.any(zero, axis=1).sum()),
                           "from_lag": int(lags[np.argmax(np.any(zero, axis=0))]) if zero.any() else None}}


def _lyapunov_summary(exps: np.ndarray, k: int, transient: int) -> dict:
    ms = [_mean_se(exps[:, i]) for i in range(exps.shape[1])]
    return {"exponents": [m for m, _ in ms], "stderr": [s for _, s in ms], "k": k, "transient": transient,
            "start_directions": "random orthonormal (QR of a Gaussian matrix), one draw per sequence",
            "per_sequence_leading": exps[:, 0].tolist()}


def _agreement(flow: dict, lyap: dict, T: int, transient: int, eps: float) -> dict:
    r, se_r = flow["rate"], flow["rate_stderr"]
    l1, se_l = lyap["exponents"][0], lyap["stderr"][0]
    diff = r - l1
    combined = math.hypot(se_r, se_l) if math.isfinite(se_r) and math.isfinite(se_l) else math.nan
    if not math.isfinite(r):
        return {"agree": None, "difference": diff, "combined_stderr": combined,
                "sentence": f"No finite-time growth rate could be fitted, so there is nothing to compare with the "
                            f"leading Lyapunov exponent ({l1:+.4g}/step)."}
    if math.isfinite(diff) and abs(diff) <= _floor(eps, r, l1):
        return {"agree": True, "difference": diff, "combined_stderr": combined,
                "sentence": f"The finite-time growth rate of the norms ({r:+.4g} per step) and the leading Lyapunov "
                            f"exponent ({l1:+.4g}) differ by {diff:+.2g}, which is rounding (below "
                            f"{_floor(eps, r, l1):.2g}): they agree."}
    if not math.isfinite(combined):
        return {"agree": None, "difference": diff, "combined_stderr": combined,
                "sentence": "With fewer than two sequences whose rate could be fitted there is no standard error, so "
                            f"the finite-time rate ({r:+.4g}/step) and the leading Lyapunov exponent ({l1:+.4g}/step) "
                            "cannot be compared statistically; pass several sequences."}
    agree = abs(diff) <= DISAGREE_SIGMAS * combined
    if agree:
        s = (f"The finite-time growth rate of the norms ({r:+.4g} ± {se_r:.2g} per step) and the leading "
             f"Lyapunov exponent ({l1:+.4g} ± {se_l:.2g}) agree within {DISAGREE_SIGMAS:g} combined standard "
             "errors: over these sequences the gradient norm decays or grows at its asymptotic rate.")
    else:
        s = (f"The finite-time growth rate of the norms ({r:+.4g} ± {se_r:.2g} per step) and the leading "
             f"Lyapunov exponent ({l1:+.4g} ± {se_l:.2g}) disagree by {diff:+.3g}, more than "
             f"{DISAGREE_SIGMAS:g} combined standard errors ({combined:.2g}). Why this can happen: "
             f"(1) finite time: the exponent is the T → ∞ rate, the norms are fitted over lags up to T = {T}, "
             "and the product may not have reached its asymptotic regime (try a longer --T); "
             "(2) non-normal transient growth: products of non-normal Jacobians can grow or stall for many "
             "steps before decaying at the exponent's rate, which bends the norm curve; "
             f"(3) start directions: the exponents come from random directions after a transient of "
             f"{transient} steps; too short a transient leaves them unaligned (try a larger --transient). "
             "For training on sequences of this length, the finite-time rate is the number that describes "
             "your gradients.")
    return {"agree": bool(agree), "difference": diff, "combined_stderr": combined, "sentence": s}


def _flow_sentence(name: str, flow: dict, T: int) -> str:
    """What the fitted rate establishes, and no more: "no measurable decay or growth" when its interval
    (``DISAGREE_SIGMAS`` standard errors, at least the rounding floor) contains 0; otherwise the half-life or
    doubling time with its interval and the factor over the fitted lags; an extrapolation beyond them is said."""
    zero = flow.get("exact_zero") or {}
    prefix = (f"In {zero['sequences']} of {len(flow['per_sequence_rate'])} sequences the gradient through {name} is "
              f"exactly zero from lag {zero['from_lag']} on (a product of step Jacobians is exactly 0: dead or "
              "saturated units); the rate uses the non-zero products only. " if zero.get("sequences") else "")
    return prefix + _rate_sentence(name, flow)


def _rate_sentence(name: str, flow: dict) -> str:
    r, se = flow["rate"], flow["rate_stderr"]
    err = f" ± {se:.2g}" if math.isfinite(se) else ""
    lo, hi = flow["fit_lags"]
    if not math.isfinite(r):
        return f"The growth rate of gradients through {name} could not be fitted (too few non-zero lags)."
    fit = f"growth rate {r:+.4g}{err} per step, fitted over lags {lo}–{hi}"
    if not flow["measurable"]:
        a, b = flow["rate_interval"]
        return (f"Gradients flowing back through {name} show no measurable decay or growth over lags {lo}–{hi} "
                f"({fit}; the interval [{a:+.2g}, {b:+.2g}] contains 0).")
    if flow["half_life"] is not None:
        iv, what, t = flow["half_life_interval"], "halve", flow["half_life"]
    else:
        iv, what, t = flow["doubling_time_interval"], "double", flow["doubling_time"]
    log10 = r * (hi - lo) / math.log(10)
    amount = (f"×{flow['factor_over_fit']:.3g}" if abs(log10) < 50 else f"×10^{log10:.4g}") + f" over those {hi - lo} lags"
    ivs = f"interval {iv[0]:.3g}–{iv[1]:.3g}" if math.isfinite(se) else "one sequence: no standard error, so no interval"
    extra = (f" — longer than the {hi - lo} fitted lags, so an extrapolation of the fitted rate"
             if flow["extrapolated"] else "")
    return (f"Gradients flowing back through {name} {what} every {t:.3g} steps ({ivs}){extra} "
            f"({fit}: {amount}).")


def _term_checks(times: np.ndarray) -> np.ndarray:
    """The steps (among ``times``) at which the eq. (6) terms' norms are also computed by SVD."""
    return times[np.unique(np.linspace(0, times.size - 1, min(TERM_CHECKS, times.size)).round().astype(int))]


def _terms_summary(raw: Optional[tuple], times: np.ndarray) -> Optional[dict]:
    if raw is None:
        return None
    raw, exact = raw
    checks = _term_checks(times)
    at = np.searchsorted(times, checks)
    rel = [np.abs(np.asarray(raw[k], float)[:, at] / np.asarray(exact[k], float) - 1) for k in exact if k != "B"]
    rel = np.concatenate([r[np.isfinite(r)] for r in rel]) if rel else np.zeros(0)
    method = {"method": (f"B_t diagonal: max |B_ii|, exact; the others by block power iteration (block "
                         f"{_kinds.TERM_BLOCK}, {_kinds.TERM_ITERS} iterations from a fixed random start: a lower "
                         "bound on the norm), checked against an SVD at the checked times"),
              "checked_times": checks.tolist(), "max_relative_error": float(rel.max()) if rel.size else None}
    med, overall = {}, {}
    order = ["A", "B", "C", "D", "Z", "R", "N"]  # LSTMTerms / GRUTerms field order (jax sorts dict keys)
    for name in sorted(raw, key=lambda t: (order.index(t) if t in order else len(order), t)):
        v = np.asarray(raw[name], dtype=float)
        med[name] = _nan_stats(v)[0].tolist()
        overall[name] = float(np.nanmedian(v))
    return {"norm": "spectral", "times": times.tolist(), "median": med, "overall_median": overall,
            "norm_method": method}


def _gates_summary(raw: dict, lengths: np.ndarray, memory_gate: Optional[str], T: int) -> dict:
    steps = float(np.sum(lengths))
    gates = {}
    any_sat = None
    order = ["f", "i", "c_tilde", "o", "z", "r", "state"]  # the cell's own order (jax sorts dict keys)
    for name in sorted(raw, key=lambda g: (order.index(g) if g in order else len(order), g)):
        g = raw[name]
        low = np.sum(np.asarray(g["low"], float), axis=0) / steps
        high = np.sum(np.asarray(g["high"], float), axis=0) / steps
        sat_low, sat_high = low >= SAT_SHARE, high >= SAT_SHARE
        sat = sat_low | sat_high
        any_sat = sat if any_sat is None else (any_sat | sat)
        gates[name] = {"unit_mean": (np.sum(np.asarray(g["sum"], float), axis=0) / steps).tolist(),
                       "hist": np.sum(np.asarray(g["hist"], float), axis=0).tolist(),
                       "saturated_low": float(np.mean(sat_low)), "saturated_high": float(np.mean(sat_high)),
                       "saturated": float(np.mean(sat))}
    out = {"bins": np.linspace(0.0, 1.0, HIST_BINS + 1).tolist(), "memory_gate": memory_gate,
           "saturation_rule": f"A unit's gate is saturated when below {SAT_LOW} or above {SAT_HIGH} on at least "
                              f"{SAT_SHARE:.0%} of the steps; tanh values v are mapped to (v + 1)/2",
           "gates": gates, "saturated_units": float(np.mean(any_sat))}
    if memory_gate is not None:
        fbar = np.asarray(gates[memory_gate]["unit_mean"])
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = lstm_jax.time_constant(fbar)
        out["tau"] = tau.tolist()
        out["tau_median"] = float(np.median(tau))
        out["tau_longer_than_T"] = float(np.mean(tau > T))
    return out


# --------------------------------------------------------------------------- API


def _check_inputs(model, xs, seq_lengths, dtype):
    if not isinstance(model, RecurrentModel):
        raise TypeError(f"model is a {type(model).__name__}; expected lstm_jax.io.RecurrentModel "
                        "(from lstm_jax.io.load_model)")
    if not model.layers:
        raise ValueError("model has no layers")
    for layer in model.layers:
        if not isinstance(layer, RecurrentLayer):
            raise TypeError(f"model.layers holds a {type(layer).__name__}; expected lstm_jax.io.RecurrentLayer")
        kind_of(layer.kind)
    if dtype is None:
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax_enable_x64: call jax.config.update('jax_enable_x64', True) "
                         "in your entry point (the lstm-jax command does), or pass dtype='float32'")
    x = np.asarray(xs)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"xs has shape {np.shape(xs)}; expected (B, T, m) or (T, m) with m = {model.m}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"xs has dtype {x.dtype}; expected a floating dtype")
    B, T, m = x.shape
    if m != model.m:
        raise ValueError(f"xs has shape {x.shape}: input size {m}, but the model reads m = {model.m}")
    if B < 1 or T < 2:
        raise ValueError(f"xs has shape {x.shape}; expected at least one sequence of T >= 2 steps")
    if not np.all(np.isfinite(x)):
        raise ValueError("xs holds NaN or inf")
    if seq_lengths is None:
        lengths = np.full(B, T, np.int64)
    else:
        lengths = np.asarray(seq_lengths)
        if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"seq_lengths has shape {lengths.shape} and dtype {lengths.dtype}; expected ({B},) "
                             "integers (one length per sequence)")
        if lengths.min() < 2 or lengths.max() > T:
            raise ValueError(f"seq_lengths must lie in 2..{T} (T of xs), got min {lengths.min()}, max {lengths.max()}")
    return x.astype(dtype), lengths.astype(np.int32), dtype


def diagnose(model: RecurrentModel, xs, *, seq_lengths=None, k: Optional[int] = None,
             transient: Optional[int] = None, key: jax.Array, dtype=None, baseline: bool = True,
             inputs_source: str = "array passed to diagnose()", progress: bool = True) -> Diagnosis:
    r"""Diagnose the gradient flow of every layer and direction of ``model`` on the inputs ``xs``.

    Args:
      model: a :class:`lstm_jax.io.RecurrentModel` (``lstm_jax.io.load_model``).
      xs: ``(B, T, m)`` or ``(T, m)`` input sequences (batch-major; ``m = model.m``).
      seq_lengths: ``(B,)`` valid lengths (right padding), each in ``2..T``; default all ``T``.
      k: number of Lyapunov exponents (default ``min(8, d)``, ``d`` the state size; at most ``d``).
      transient: steps discarded before the exponents are averaged, and the smallest lag of the rate
        fit; default ``min(100, L_min // 4)``; must be below ``L_min - 1``.
      key: PRNG key of the random start directions and of the fresh baseline model.
      dtype: ``float32`` or ``float64`` (default float64 when ``jax_enable_x64`` is on, else float32);
        parameters and inputs are cast to it.
      baseline: also diagnose a freshly initialised model of the same shape.
      inputs_source: a description of the inputs for the report.
      progress: show a tqdm progress bar.

    Returns:
      :class:`Diagnosis`; its layout and every formula are in the module docstrings of
      :mod:`lstm_jax.diagnose` and ``lstm_jax.diagnose._core``.
    """
    x, lengths, dtype = _check_inputs(model, xs, seq_lengths, dtype)
    B, T, _ = x.shape
    d_min = min(kind_of(layer.kind).state_size(model.n) for layer in model.layers)
    if k is None:
        k = min(8, d_min)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= d_min:
        raise ValueError(f"k must be an integer in 1..{d_min} (the state size), got {k!r}")
    L_min = int(lengths.min())
    if transient is None:
        transient = min(100, L_min // 4)
    if isinstance(transient, bool) or not isinstance(transient, (int, np.integer)) or not 0 <= transient <= L_min - 2:
        raise ValueError(f"transient must be an integer in 0..{L_min - 2} (below the shortest length {L_min} "
                         f"minus one), got {transient!r}")
    key = jnp.asarray(key)
    if key.shape != (2,) and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        raise TypeError(f"key must be a PRNG key (jax.random.PRNGKey(seed) or jax.random.key(seed)), got shape {key.shape}")
    k_main, k_fresh = jax.random.split(key)
    T_max = int(lengths.max())
    x, k, transient = x[:, :T_max], int(k), int(transient)

    fresh = _fresh_model(model, k_fresh, dtype) if baseline else None
    from tqdm.auto import tqdm

    chunks = _chunk_plan(model, B, T_max, dtype)
    bar = tqdm(total=len(model.layers) * len(chunks[0]) * (2 if baseline else 1), desc="diagnose",
               unit="chunk", disable=not progress, leave=False)
    with bar:
        main = _run_model(model, x, lengths, k_main, k, transient, chunks, bar)
        base = _run_model(fresh, x, lengths, k_main, k, transient, chunks, bar) if baseline else None
    layers = []
    for i, layer in enumerate(model.layers):
        stats = main[i]
        stats_b = None
        if base is not None:
            b = base[i]
            stats_b = {"flow": b["flow"], "lyapunov": b["lyapunov"], "agreement": b["agreement"],
                       "terms": b["terms"], "gates": b["gates"],
                       "init": "lstm_jax.init_lstm (forget bias 1)" if layer.kind == "lstm" else
                               f"lstm_jax.init_{'rnn' if layer.kind.startswith('rnn') else layer.kind}"}
        layers.append(LayerDiagnosis(layer.name, layer.kind, layer.layer, layer.reverse, model.n,
                                     stats["m"], stats["flow"], stats["lyapunov"], stats["agreement"],
                                     stats["terms"], stats["gates"], stats_b))
    dev = jax.devices()[0]
    info = {"source": inputs_source, "batch": B, "T": T, "m": model.m, "dtype": str(dtype),
            "lengths": {"min": int(lengths.min()), "max": int(lengths.max()), "mean": float(lengths.mean())},
            "padded": bool(seq_lengths is not None), "k": k, "transient": transient,
            "jax_version": jax.__version__, "device": f"{dev.platform}: {dev.device_kind}"}
    summary = {"kind": model.kind, "n": model.n, "m": model.m, "layers": model.num_layers,
               "directions": model.directions, "source": model.source,
               "recurrences": [layer.name for layer in model.layers]}
    return Diagnosis(summary, info, tuple(layers))


def _fresh_model(model: RecurrentModel, key, dtype) -> RecurrentModel:
    layers = []
    for i, layer in enumerate(model.layers):
        m = kind_of(layer.kind).cell.check(layer.params)[2]  # the layer's own input width
        params = kind_of(layer.kind).fresh(jax.random.fold_in(key, i), layer.params, model.n, m, dtype)
        layers.append(layer._replace(params=params))
    return model._replace(layers=tuple(layers), source=f"fresh initialisation of {model.source}")


def estimate_bytes(model: RecurrentModel, B: int, T: int, dtype="float64") -> int:
    """Peak host memory of :func:`diagnose` in bytes, estimated before anything is allocated.

    The terms: the inputs and each depth's outputs, ``(B, T, m)`` and ``(B, T, directions * n)`` (two copies
    each: the array and its cast); one chunk of sequences (:func:`_chunk_plan`) holding ``JAC_COPIES``
    ``(T, d, d)`` step Jacobians per sequence, counted twice for XLA's temporaries, and ``(T, n)`` gate
    activations (four per gate kind); plus 1 GiB for Python, JAX/XLA and matplotlib.  The baseline runs
    after the model, so it does not add to the peak.  Used by ``lstm-jax diagnose`` to refuse a run up front
    (exit 2) instead of an allocation failure inside XLA.

    Measured (2-layer LSTM n = 64, 16 x 400, float64, with baseline; estimate 2.0 GiB): peak resident memory
    1.44 GiB in three runs, but 4.1 GiB in one run inside the full test suite, not explained — so this is a
    guard against runs far beyond the machine, not a bound on the peak.
    """
    isz = jnp.dtype(dtype).itemsize
    d = max(kind_of(layer.kind).state_size(model.n) for layer in model.layers)
    (_, size) = _chunk_plan(model, B, T, dtype)
    io = 2 * B * T * (model.m + 2 * model.directions * model.n) * isz
    chunk = size * T * (2 * JAC_COPIES * d * d + 16 * model.n) * isz
    return int(io + chunk + 2**30)


def _chunk_plan(model, B, T, dtype):
    d = max(kind_of(layer.kind).state_size(model.n) for layer in model.layers)
    per_seq = JAC_COPIES * T * d * d * jnp.dtype(dtype).itemsize
    size = int(max(1, min(B, MEMORY_BUDGET // per_seq)))
    return [(s, min(B, s + size)) for s in range(0, B, size)], size


def _run_model(model, x, lengths, key, k, transient, chunks, bar):
    plan, size = chunks
    B, T, _ = x.shape
    stride = max(1, -(-T // MAX_POINTS))
    times = np.unique(np.linspace(2, T, min(T - 1, MAX_TERM_POINTS)).round().astype(np.int32))
    lens = jnp.asarray(lengths)
    out = []
    inputs = jnp.asarray(x)
    depth_outputs: list = []
    current_depth = 0
    for i, layer in enumerate(model.layers):
        if layer.layer != current_depth:
            inputs = jnp.concatenate(depth_outputs, axis=-1)
            depth_outputs, current_depth = [], layer.layer
        kind = kind_of(layer.kind)
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, x.dtype), layer.params)
        xin = _reverse_valid(inputs, lens) if layer.reverse else inputs
        layer_key = jax.random.fold_in(key, i)  # sequence b's directions depend on (layer, b) only,
        keys = jax.vmap(lambda b: jax.random.fold_in(layer_key, b))(jnp.arange(B))  # not on the batch size
        raw, outs = [], []
        for s, e in plan:
            idx = np.arange(s, s + size) % B if e - s < size else np.arange(s, e)  # fixed shape: compile once
            r, y = _layer_stats(params, xin[idx], lens[idx], keys[idx], jnp.asarray(times),
                                jnp.asarray(_term_checks(times)), kind=kind.name,
                                n=model.n, k=k, transient=transient, stride=stride)
            raw.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[: e - s], r))
            outs.append(y[: e - s])
            bar.update(1)
        logn, check, exps, gates, terms = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *raw)
        eps = float(jnp.finfo(x.dtype).eps)
        flow = _flow_summary(np.asarray(logn, float), lengths, stride, transient, eps)
        flow["norm_method"] = _norm_method(np.asarray(logn, float), np.asarray(check, float), stride,
                                           kind.state_size(model.n))
        flow["sentence"] = _flow_sentence(layer.name, flow, T)
        lyap = _lyapunov_summary(np.asarray(exps, float), k, transient)
        lyap["method"] = ("time average of log diag(J_t) per unit: J_t is diagonal, so this is exact and needs no QR"
                          if kind.cell.diagonal_linear else "QR re-orthonormalisation from random directions (Benettin)")
        out.append({"m": int(xin.shape[-1]), "flow": flow, "lyapunov": lyap,
                    "agreement": _agreement(flow, lyap, T, transient, eps),
                    "terms": _terms_summary(terms, times), "gates": _gates_summary(gates, lengths, kind.memory_gate, T)})
        y = jnp.concatenate(outs)  # the plan's chunks are s = 0, size, 2 size, ... in order
        depth_outputs.append(_reverse_valid(y, lens) if layer.reverse else y)
    return out
