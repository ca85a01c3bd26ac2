r"""The numbers of a diagnosis: gradient flow, Lyapunov exponents, eq. (6) terms and gates, per layer.

For one recurrence with step Jacobians :math:`J_t = \partial s_t/\partial s_{t-1}` (``t = 1..L`` on a
sequence of length ``L``; LSTM :math:`s_t = [h_t; c_t]`, RNN :math:`c_t`, GRU :math:`h_t`):

* **Flow.** :math:`\|\partial s_L/\partial s_{L-\ell}\|_2 = \|J_L\cdots J_{L-\ell+1}\|_2`, the spectral
  norm of the joint-state Jacobian, against the lag :math:`\ell`.  Accumulated backwards in **log
  space**: :math:`M \leftarrow M J_t/\|M J_t\|_F`, :math:`a \leftarrow a + \log\|M J_t\|_F`, so
  :math:`\log\|\cdot\|_2 = a + \log\|M\|_2` never under- or overflows (``T = 10^4`` in float32 is fine);
  :math:`\|M\|_2` is Lanczos for the first :data:`LANCZOS_LAGS` lags (:func:`lstm_jax.spectral_lanczos`, each
  lag warm-started from the previous one's top Ritz vectors) and a warm-started block power iteration after them
  (:func:`lstm_jax.spectral_ritz`), both lower bounds, checked against SVDs at three lags on every run
  (:func:`_norm_method`).
  No ``(T, d, d)`` Jacobian is formed: the transposed product is pushed through the cell protocol's
  :func:`lstm_jax.vjp_wide` (the recurrent block's ``d x n`` columns of :math:`J_t` formed once a step, the others
  diagonal).  After the first :data:`WINDOW_STEPS` steps only the product's top-``r`` singular part is carried
  (:func:`_suffix_tail`: a lower bound; ``r`` chosen so that the discarded share :math:`\sigma_{r+1}/\sigma_1` is at
  most :data:`TAIL_SHARE` in every sequence, else no truncation), ``2 d n r`` flops a step instead of ``2 d^2 n``.
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
  (:func:`lstm_jax.lstm_terms_along`) at up to :data:`MAX_TERM_POINTS` steps, median over sequences: :math:`B_t` is diagonal, its
  norm :math:`\max_i |B_{t,ii}|` exactly; the others, kept in factors :math:`\operatorname{diag}(r_t)\,U\,
  \operatorname{diag}(c_t)` (:class:`lstm_jax.ScaledMatrix`, ``U`` shared by every time), by the Lanczos recurrence
  (:func:`lstm_jax.spectral_lanczos_norm`: ``O(n^2)`` a Krylov vector rather than an SVD's ``O(n^3)``), checked against SVDs at :data:`TERM_CHECKS` of the steps on every run
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
MEMORY_BUDGET = 2**30  # bytes held at once inside a layer's statistics (sequences are vmapped in chunks)
#: at most this many sequences vmapped at once: on 2 CPU cores larger batches ran slower per sequence (n = 128,
#: T = 200, float64: 0.32, 0.29, 0.28 s a sequence at 2, 4, 8; the 16-sequence target run 37.2 s against 35.2 s
#: at 8), while a single sequence is the slowest case of all (:func:`_over_sequences`)
VMAP_MAX = 8
#: the flow curve's spectral norms (lags counted as points of the curve, one every stride steps): for the first
#: LANCZOS_LAGS, Lanczos with LANCZOS_STEPS Krylov vectors (lstm_jax.spectral_lanczos; the first from a fixed random
#: vector, the next from the previous lag's top RITZ_BLOCK Ritz vectors), after them a block power iteration with a
#: block of RITZ_BLOCK vectors, RITZ_ITERS iterations a lag (the block follows the product's fixed end); SVD checks at
#: the first lag of each method and at the last lag.  Relative error against an SVD of every full product bounded in
#: tests/test_diagnose.py (random LSTM n = 48): Lanczos 1e-12 (forget bias 1 and 5), the power iteration after it
#: 1e-12 (forget bias 1) and 1e-7 (forget bias 5: crowded top singular values); each run reports its own at the
#: checked lags (diagnosis.json flow.norm_method.max_relative_error)
LANCZOS_LAGS, LANCZOS_STEPS, RITZ_BLOCK, RITZ_ITERS = 32, 32, 16, 1
#: the methods of _norm_plan (a CHECKED one is also computed by an SVD at that lag)
SVD, RITZ, RITZ_CHECKED, LANCZOS, LANCZOS_CHECKED = 0, 1, 2, 3, 4
#: the full d x d product is carried for the first WINDOW_STEPS steps; after them only its top-r singular part, r the
#: smallest of 16, 32, ... (below d/2) whose discarded share sigma_(r+1)/sigma_1 is at most TAIL_SHARE in every
#: sequence (else no truncation).  Measured against the full product (tests/test_diagnose.py): the tail's
#: relative error stays below the share squared
WINDOW_STEPS, TAIL_SHARE = 64, 1e-4
MAX_TERM_POINTS = 25  # times at which the eq. (6) terms' spectral norms are sampled
TERM_CHECKS = 2  # of those, times at which the Lanczos values are checked against an SVD
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
    """How the spectral norm at each of the ``G`` lags is computed: ``SVD`` (every lag of a small state,
    ``d <= 2 RITZ_BLOCK``), ``RITZ`` block power iteration (:func:`lstm_jax.spectral_ritz`), ``LANCZOS``
    (:func:`lstm_jax.spectral_lanczos`, the first :data:`LANCZOS_LAGS` lags); ``RITZ_CHECKED`` and
    ``LANCZOS_CHECKED`` the same checked against an SVD, at the first lag of each method and at the last lag."""
    if d <= 2 * RITZ_BLOCK:
        return np.zeros(G, np.int32)
    plan = np.where(np.arange(G) < LANCZOS_LAGS, LANCZOS, RITZ).astype(np.int32)
    plan[sorted({0, min(LANCZOS_LAGS, G - 1), G - 1})] += 1  # RITZ -> RITZ_CHECKED, LANCZOS -> LANCZOS_CHECKED
    return plan


def _norm_method(logn: np.ndarray, check: np.ndarray, stride: int, d: int, rank: int, share: float) -> dict:
    """How the flow curve's norms were computed, and how far they were from an SVD where checked."""
    sel = np.isfinite(check) & np.isfinite(logn)
    rel = np.abs(np.expm1(logn[sel] - check[sel]))
    plan = _norm_plan(logn.shape[1], d)
    window = min(logn.shape[1], -(-WINDOW_STEPS // stride)) * stride
    tail = {"window_steps": window, "tail_rank": rank, "tail_discarded_share": share}
    if rank < d:
        tail_text = (f"; after the first {window} steps the product is carried at rank {rank} of {d} (its top "
                     f"singular part; discarded share sigma_{rank + 1}/sigma_1 <= {share:.2g}, a lower bound whose "
                     "relative error measured below the share squared)")
    else:
        tail_text = "; the full product at every lag"
    if not np.any(plan):
        return {"method": "exact: an SVD at every lag" + tail_text, "checked_lags": [], "max_relative_error": None,
                **tail}
    return {"method": (f"Lanczos ({LANCZOS_STEPS} Krylov vectors, full reorthogonalisation) up to lag "
                       f"{stride * LANCZOS_LAGS}, warm-started from the previous lag, then block power iteration "
                       f"(block {RITZ_BLOCK}, {RITZ_ITERS} iteration a lag, warm-started): lower bounds on the norm"
                       + tail_text),
            "checked_lags": (stride * (1 + np.flatnonzero(np.isin(plan, (RITZ_CHECKED, LANCZOS_CHECKED))))).tolist(),
            "max_relative_error": float(rel.max()) if rel.size else None, **tail}


def _segments(plan: np.ndarray) -> list[tuple[int, int, int]]:
    """``plan`` cut into runs of lags computed the same way: ``(start, stop, how)``.  Each run is one ``lax.scan``
    with its method fixed at trace time, so no SVD is traced into a branch that a ``vmap`` over sequences would
    turn into a select (computing it at every lag)."""
    out = []
    for i, how in enumerate(plan.tolist()):
        if out and out[-1][2] == how:
            out[-1] = (out[-1][0], i + 1, how)
        else:
            out.append((i, i + 1, int(how)))
    return out


def _window_lags(G: int, stride: int) -> int:
    """Lags (points of the curve) of the full product before the tail: the first :data:`WINDOW_STEPS` steps."""
    return min(G, -(-WINDOW_STEPS // stride))


def _suffix_lags(vjp, F, length, stride: int, G: int, d: int, carry, first: int, count: int):
    """Lags ``first .. first + count - 1`` (0-based) of the flow curve from ``carry = (Y, a, U)``: the (possibly
    truncated, ``(d, r)``) transposed product with its log scale and the top Ritz vectors' block.  Returns the new
    carry and ``(logn, check)`` of those lags (:func:`_log_suffix_norms`)."""
    leaves = jax.tree_util.tree_leaves(F)
    T = leaves[0].shape[0]
    offset = G * stride - length  # position p holds step p - offset

    def inner(c, p):
        src = p - offset
        F_t = jax.tree_util.tree_map(lambda v: jax.lax.dynamic_index_in_dim(v, jnp.clip(src, 0, T - 1),
                                                                             keepdims=False), F)
        Y = jnp.where(src >= 0, vjp(F_t, c[0]), c[0])
        return lstm_jax.log_renormalise(Y, c[1]), None

    def segment(how: int):
        def outer(c, positions):
            (M, a), _ = jax.lax.scan(inner, c[:2], positions, reverse=True)
            nan = jnp.asarray(jnp.nan, a.dtype)
            if how == SVD:  # an SVD of the product (a small state)
                return (M, a, c[2]), (lstm_jax.log_spectral(M, a), nan)
            # on M^T = the product itself, so the block follows its fixed end (step L), whose top singular vectors
            # settle as the lag grows (the carried transpose's left vectors sit at the moving end)
            if how in (LANCZOS, LANCZOS_CHECKED):
                ritz, U = lstm_jax.spectral_lanczos(M.T, jnp.sum(c[2], axis=1), min(LANCZOS_STEPS, M.shape[1]),
                                                    c[2].shape[1])
            else:
                ritz, U = lstm_jax.spectral_ritz(M.T, c[2], RITZ_ITERS)
            value = a + jnp.log(ritz)
            if how in (RITZ, LANCZOS):
                return (M, a, U), (value, nan)
            # the check's SVD after the iteration's QRs and SVD: two independent batched LAPACK calls running
            # at once can deadlock jaxlib 0.10's CPU thread pool (batched over the vmapped sequences)
            M_, value = jax.lax.optimization_barrier((M, value))
            return (M, a, U), (value, lstm_jax.log_spectral(M_, a))
        return outer

    positions = jnp.arange(G * stride).reshape(G, stride)[::-1][first:first + count]
    plan = _norm_plan(G, d)[first:first + count]
    outs, checks = [], []
    for start, stop, how in _segments(plan):
        carry, (v, c) = jax.lax.scan(segment(how), carry, positions[start:stop])
        outs.append(v)
        checks.append(c)
    return carry, (jnp.concatenate(outs), jnp.concatenate(checks))


def _suffix_window(vjp, F, length, stride: int, G: int, d: int):
    r"""The flow curve's first :func:`_window_lags` lags from the full transposed product, and what the tail needs.

    Returns ``(logn, check, Z, a, sv)``: the window's log norms and SVD checks; the product at the window's end
    as :math:`Y = A\Sigma B^\top` (an SVD), ``Z = A Sigma`` ``(d, d)`` (columns by decreasing singular value, so
    ``Z[:, :r]`` is the best rank-``r`` part), its log scale ``a`` and the singular values ``sv`` (relative to the
    largest) from which :func:`_tail_rank` picks ``r``.
    """
    dtype = jax.tree_util.tree_leaves(F)[0].dtype
    # the first Lanczos start: the sum of a fixed random orthonormal block's columns (a generic direction)
    U0 = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(0), (d, min(RITZ_BLOCK, d)), dtype))[0]
    carry = (jnp.eye(d, dtype=dtype), jnp.zeros((), dtype), U0)
    (Y, a, _), (logn, check) = _suffix_lags(vjp, F, length, stride, G, d, carry, 0, _window_lags(G, stride))
    Y, logn = jax.lax.optimization_barrier((Y, logn))  # after the window's QRs and SVDs (see _suffix_lags)
    A, sv, _ = jnp.linalg.svd(Y, full_matrices=False)
    return logn, check, A * sv[None, :], a, sv / jnp.where(sv[0] > 0, sv[0], 1)


def _suffix_tail(vjp, F, length, stride: int, G: int, d: int, Z, a):
    r"""The flow curve's lags after the window, from the rank-``r`` part ``Z (d, r)`` of the product there.

    With the product at the window's end :math:`P_W = U_P \Sigma V^\top` and the later steps
    :math:`Q = J_{L-W}\cdots J_{L-\ell+1}`, :math:`\|P_\ell\|_2 = \|\Sigma V^\top Q\|_2`; keeping the top ``r``
    singular triplets gives :math:`\|\Sigma_r V_r^\top Q\|_2`, a **lower bound** (the discarded rows are orthogonal
    to the kept ones: :math:`\|P_\ell x\|^2 = \|\Sigma_r V_r^\top Q x\|^2 + \|\Sigma_\perp V_\perp^\top Q x\|^2`) whose
    error is set by the discarded share :math:`\sigma_{r+1}/\sigma_1` of the window's end.  Carried transposed,
    ``Z <- J_t^T Z``: ``2 d n r`` flops a step instead of ``2 d^2 n``.  Returns ``(logn, check)`` of those lags.
    """
    Gw = _window_lags(G, stride)
    r = Z.shape[1]
    # the truncated product's fixed-end coordinates are its singular directions at the window's end, sorted: the
    # identity block is its exact top-k block there
    U = jnp.eye(r, min(RITZ_BLOCK, r), dtype=Z.dtype)
    _, out = _suffix_lags(vjp, F, length, stride, G, d, (Z, a, U), Gw, G - Gw)
    return out


def _tail_rank(sv: np.ndarray) -> int:
    """The tail's rank: the smallest of 16, 32, 64, ... (below ``d/2``) at which every sequence's discarded share
    ``sv[:, r]`` (singular values relative to the largest, ``(B, d)``) is at most :data:`TAIL_SHARE`; else ``d``
    (no truncation)."""
    d = sv.shape[-1]
    r = 16
    while r <= d // 2:
        if np.all(np.nan_to_num(sv[:, r], nan=0.0) <= TAIL_SHARE):
            return r
        r *= 2
    return d


def _log_suffix_norms(vjp, F, length, stride: int, G: int, d: int) -> tuple[np.ndarray, np.ndarray, dict]:
    r"""Log spectral norms of the products of the last ``g * stride`` valid step Jacobians, ``g = 1..G``, as
    :func:`diagnose` computes them (window, rank choice, tail), for one sequence.

    ``vjp(F_t, Y)`` is :math:`J_t^\top Y` for ``Y (d, k)`` (the cell protocol's :func:`lstm_jax.vjp_wide`, or
    ``J_t.T @ Y`` for dense Jacobians ``F``); ``F`` holds one entry per step (leading time axis), valid for
    ``t < length``.  The transposed product :math:`Y = (J_L\cdots J_{L-\ell+1})^\top` (same singular values) is
    accumulated from the last valid step backwards in log space (:func:`lstm_jax.log_renormalise` every step),
    steps before the first counting as identities; no ``(T, d, d)`` Jacobian is formed.  The norm is the
    Lanczos / block power iteration schedule of :func:`_norm_plan` (``O(d^2 k)`` instead of an SVD's ``O(d^3)``;
    an SVD for small ``d``), following the product's fixed end.  After the window (:func:`_suffix_window`) the product is carried at the
    rank :func:`_tail_rank` picks (:func:`_suffix_tail`).  Returns ``(logn, check, {"rank", "share"})``: ``(G,)``
    log norms (``-inf`` for an exactly zero product), the SVD values at the check lags of :func:`_norm_plan` (NaN
    elsewhere), the tail's rank and the discarded share (0 without truncation).
    """
    logn, check, Z, a, sv = jax.jit(_suffix_window, static_argnums=(0, 3, 4, 5))(vjp, F, length, stride, G, d)
    r = _tail_rank(np.asarray(sv)[None])
    Gw = _window_lags(G, stride)
    share = float(np.asarray(sv)[r]) if r < d else 0.0
    if Gw < G:
        tl, tc = jax.jit(_suffix_tail, static_argnums=(0, 3, 4, 5))(vjp, F, length, stride, G, d, Z[:, :r], a)
        logn, check = jnp.concatenate([logn, tl]), jnp.concatenate([check, tc])
    return np.asarray(logn), np.asarray(check), {"rank": r, "share": share}


def _lyapunov_exponents(cell, w, F, valid, q0, transient: int, length) -> jax.Array:
    r"""The ``k`` leading Lyapunov exponents along one sequence, sorted: Benettin's QR iteration on
    :math:`J_t Q` (the protocol's :func:`lstm_jax.jvp_cols`, ``O(d n k)`` a step, no dense Jacobian) from the
    orthonormal ``q0 (d, k)``, over the valid steps (``valid (T,)``; padded steps leave ``Q`` unchanged and add
    :math:`\log 1 = 0`), the first ``transient`` left out of the average (:func:`lstm_jax.lyapunov`'s rule)."""
    def step(Q, inp):
        F_t, v, t = inp
        Qn, logs, _ = lstm_jax.qr_step(cell.jvp_cols(w, F_t, Q))
        return jnp.where(v, Qn, Q), jnp.where(v & (t >= transient), logs, 0)

    T = valid.shape[0]
    _, logs = jax.lax.scan(step, q0, (F, valid, jnp.arange(T)))
    rates = jnp.sum(logs, axis=0) / jnp.asarray(length - transient, logs.dtype)
    return -jnp.sort(-rates)


def _over_sequences(f, *args):
    """``jax.vmap(f)(*args)`` over the leading (sequence) axis, except that a single sequence is a plain call: XLA's
    CPU programs for a batch dimension of size 1 run about twice as slow as the unbatched ones (measured on
    ``_layer_stats``, n = 512, T = 1000, float32: 11.0 s against 5.7 s a sequence)."""
    if jax.tree_util.tree_leaves(args)[0].shape[0] != 1:
        return jax.vmap(f)(*args)
    out = f(*jax.tree_util.tree_map(lambda a: a[0], args))
    return jax.tree_util.tree_map(lambda a: a[None], out)


@partial(jax.jit, static_argnames=("kind", "n", "k", "transient", "stride"))
def _layer_stats(params, xs, lengths, layer_key, seq, times, term_checks, *, kind, n, k, transient, stride):
    """Per-sequence raw statistics and outputs of one layer for a batch ``xs (B, T, m)`` (vmapped); sequence
    ``seq[b]``'s Lyapunov start directions are drawn from ``fold_in(layer_key, seq[b])``.

    One scan per sequence: its states give the step factors ``F_t`` (the cell protocol), from which the flow
    product (:func:`lstm_jax.vjp_wide`), the Lyapunov directions (:func:`lstm_jax.jvp_cols`), the gates, the
    eq. (6) terms and the outputs the next layer reads (zero on padded steps) are computed.  The three stages
    are ordered by ``optimization_barrier``: each runs batched LAPACK calls (QR, SVD), and two of those running at
    once can deadlock jaxlib 0.10's CPU thread pool.
    """
    K = KINDS[kind]
    cell = K.cell
    w = cell.weights(params)

    def one(x, L, key):
        T = x.shape[0]
        s0 = cell.zero(n, x.dtype)
        _, traj = cell.run(w, s0, x)
        states = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), s0, traj)  # s_0..s_T
        F = cell.factors_along(w, s0, traj, x)
        d = cell.width * jax.tree_util.tree_leaves(cell.to_blocks(s0))[0].shape[-1]
        t = jnp.arange(T)
        valid_t = t < L
        if cell.diagonal_linear:
            # J_t = diag(a_t): the exponents are the time averages of log a_t per unit, exactly, with no QR
            # (a QR from random directions reaches them only as T grows); padded steps add log 1 = 0; floored at
            # the smallest normal number, as lstm_jax.lyapunov does
            diag = jax.vmap(lambda F_t: cell.jacobian_diagonal(w, F_t, d // cell.width))(F)
            logs = jnp.log(jnp.maximum(jnp.where(valid_t[:, None], diag, 1), jnp.finfo(x.dtype).tiny))
            mean = jnp.sum(jnp.where((t >= transient)[:, None], logs, 0), axis=0) / (L - transient).astype(x.dtype)
            exponents = -jnp.sort(-mean)[:k]
        else:
            q0, _ = jnp.linalg.qr(jax.random.normal(key, (d, k), x.dtype))
            exponents = _lyapunov_exponents(cell, w, F, valid_t, q0, transient, L)
        exponents, F = jax.lax.optimization_barrier((exponents, F))
        # Flow: lags counted back from each sequence's own last step L.
        G = -(-T // stride)
        lags = stride * jnp.arange(1, G + 1)
        Gw = _window_lags(G, stride)
        logn, check, Z, a, sv = _suffix_window(partial(cell.vjp_wide, w), F, L, stride, G, d)
        logn, check = jnp.where(lags[:Gw] <= L, logn, jnp.nan), jnp.where(lags[:Gw] <= L, check, jnp.nan)
        (logn, check, Z), states = jax.lax.optimization_barrier(((logn, check, Z), states))
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
        return (logn, check, exponents, gates, terms), outputs, (Z, a, sv)

    return _over_sequences(one, xs, lengths, jax.vmap(lambda b: jax.random.fold_in(layer_key, b))(seq))


@partial(jax.jit, static_argnames=("kind", "n", "stride"))
def _flow_tail(params, xs, lengths, Z, a, *, kind, n, stride):
    """The flow curve after the window (:func:`_suffix_tail`) for a batch, from the rank-``r`` parts ``Z (B, d, r)``
    of :func:`_layer_stats`' products; the trajectory is recomputed (one scan, cheaper than keeping the factors)."""
    cell = KINDS[kind].cell
    w = cell.weights(params)

    def one(x, L, Z, a):
        T = x.shape[0]
        s0 = cell.zero(n, x.dtype)
        _, traj = cell.run(w, s0, x)
        F = cell.factors_along(w, s0, traj, x)
        G = -(-T // stride)
        lags = stride * jnp.arange(_window_lags(G, stride) + 1, G + 1)
        logn, check = _suffix_tail(partial(cell.vjp_wide, w), F, L, stride, G, Z.shape[0], Z, a)
        return jnp.where(lags <= L, logn, jnp.nan), jnp.where(lags <= L, check, jnp.nan)

    return _over_sequences(one, xs, lengths, Z, a)


def _reverse_valid(xs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Reverse each sequence's valid part in time (an involution; padding stays in place); NumPy, on the host."""
    t = np.arange(xs.shape[1])[None, :]
    idx = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return np.take_along_axis(xs, idx[:, :, None], axis=1)


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
    method = {"method": (f"B_t diagonal: max |B_ii|, exact; the others by Lanczos ({_kinds.TERM_STEPS} Krylov vectors "
                         "from a fixed random start, the three-term recurrence on the factored terms diag(r) U "
                         "diag(c): a lower bound on the norm), checked against an SVD at the checked times"),
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
    each: the array and its cast); one chunk of sequences (:func:`_chunk_plan`) of :func:`_per_sequence_bytes`
    each, counted twice for XLA's temporaries; plus 1 GiB for Python, JAX/XLA and matplotlib.  The baseline runs
    after the model, so it does not add to the peak.  Used by ``lstm-jax diagnose`` to refuse a run up front
    (exit 2) instead of an allocation failure inside XLA: a guard against runs far beyond the machine, not a
    bound on the peak (``benchmarks/diagnose.py`` records the measured peaks).
    """
    isz = jnp.dtype(dtype).itemsize
    (_, size) = _chunk_plan(model, B, T, dtype)
    io = 2 * B * T * (model.m + 2 * model.directions * model.n) * isz
    return int(io + 2 * size * _per_sequence_bytes(model, T, dtype) + 2**30)


def _per_sequence_bytes(model: RecurrentModel, T: int, dtype) -> int:
    """Bytes one sequence holds inside :func:`_layer_stats` (the largest layer): the trajectory, factors and gates,
    ``(T, 32 n)`` at most; the flow product, its next value, the renormalised copy and the power iteration's
    block, ``4 d^2``; the eq. (6) terms at :data:`MAX_TERM_POINTS` times, each a two-step window of the four
    ``(n, n)`` terms and their SVD inputs, ``16 n^2`` a time."""
    def one(kind):
        d = kind.state_size(model.n)
        b = d // kind.cell.width  # the block size (the mLSTM's memory block is wider than the hidden size)
        return 32 * T * b + 4 * d * d + 16 * min(T, MAX_TERM_POINTS) * b * b

    return int(max(one(kind_of(layer.kind)) for layer in model.layers) * jnp.dtype(dtype).itemsize)


def _chunk_plan(model, B, T, dtype):
    """Sequences vmapped at once: as many as :data:`MEMORY_BUDGET` holds (at least one, at most :data:`VMAP_MAX`), in
    chunks ``(start, stop)``."""
    size = int(max(1, min(B, VMAP_MAX, MEMORY_BUDGET // _per_sequence_bytes(model, T, dtype))))
    return [(s, min(B, s + size)) for s in range(0, B, size)], size


def _run_model(model, x, lengths, key, k, transient, chunks, bar):
    """Every layer of ``model`` on ``x`` (NumPy ``(B, T, m)``), chunk by chunk, deepest last.  Host-side arrays stay
    NumPy (the chunks, casts, reversals and the next depth's inputs): each eager JAX operation would compile a
    program of its own, seconds in all in a cold process."""
    plan, size = chunks
    B, T, _ = x.shape
    stride = max(1, -(-T // MAX_POINTS))
    times = np.unique(np.linspace(2, T, min(T - 1, MAX_TERM_POINTS)).round().astype(np.int32))
    checks = _term_checks(times)
    out = []
    inputs = x
    depth_outputs: list = []
    current_depth = 0
    for i, layer in enumerate(model.layers):
        if layer.layer != current_depth:
            inputs = np.concatenate(depth_outputs, axis=-1)
            depth_outputs, current_depth = [], layer.layer
        kind = kind_of(layer.kind)
        params = jax.tree_util.tree_map(lambda a: np.asarray(a, x.dtype), layer.params)
        xin = _reverse_valid(inputs, lengths) if layer.reverse else inputs
        layer_key = jax.random.fold_in(key, i)  # sequence b's directions depend on (layer, b) only, not on the batch
        raw, outs, ends = [], [], []
        chunk_idx = [np.arange(s, s + size) % B if e - s < size else np.arange(s, e) for s, e in plan]  # one shape
        for (s, e), idx in zip(plan, chunk_idx):
            r, y, end = _layer_stats(params, xin[idx], lengths[idx], layer_key, idx.astype(np.int32), times, checks,
                                     kind=kind.name, n=model.n, k=k, transient=transient, stride=stride)
            raw.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[: e - s], r))
            outs.append(np.asarray(y)[: e - s])
            ends.append(tuple(np.asarray(v) for v in end))
            bar.update(1)
        d = kind.state_size(model.n)
        sv = np.concatenate([end[2][: e - s] for end, (s, e) in zip(ends, plan)])
        rank = _tail_rank(sv)
        share = float(np.max(sv[:, rank])) if rank < d else 0.0
        if _window_lags(-(-T // stride), stride) < -(-T // stride):
            for j, ((s, e), idx, (Z, a, _)) in enumerate(zip(plan, chunk_idx, ends)):
                tl, tc = _flow_tail(params, xin[idx], lengths[idx], Z[:, :, :rank], a, kind=kind.name, n=model.n,
                                    stride=stride)
                raw[j] = (np.concatenate([raw[j][0], np.asarray(tl)[: e - s]], axis=1),
                          np.concatenate([raw[j][1], np.asarray(tc)[: e - s]], axis=1)) + tuple(raw[j][2:])
        logn, check, exps, gates, terms = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *raw)
        eps = float(jnp.finfo(x.dtype).eps)
        flow = _flow_summary(np.asarray(logn, float), lengths, stride, transient, eps)
        flow["norm_method"] = _norm_method(np.asarray(logn, float), np.asarray(check, float), stride, d, rank,
                                           share)
        flow["sentence"] = _flow_sentence(layer.name, flow, T)
        lyap = _lyapunov_summary(np.asarray(exps, float), k, transient)
        lyap["method"] = ("time average of log diag(J_t) per unit: J_t is diagonal, so this is exact and needs no QR"
                          if kind.cell.diagonal_linear else "QR re-orthonormalisation from random directions (Benettin)")
        out.append({"m": int(xin.shape[-1]), "flow": flow, "lyapunov": lyap,
                    "agreement": _agreement(flow, lyap, T, transient, eps),
                    "terms": _terms_summary(terms, times), "gates": _gates_summary(gates, lengths, kind.memory_gate, T)})
        y = np.concatenate(outs)  # the plan's chunks are s = 0, size, 2 size, ... in order
        depth_outputs.append(_reverse_valid(y, lengths) if layer.reverse else y)
    return out
