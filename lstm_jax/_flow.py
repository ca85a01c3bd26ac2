r"""Gradient-flow diagnostics: how fast products of step Jacobians shrink or grow.

For step Jacobians :math:`J_t = \partial s_t/\partial s_{t-1}`, ``t = 1..T``:

* :func:`suffix_products` gives :math:`\partial s_T/\partial s_{t-1} = J_T J_{T-1}\cdots J_t`
  for every ``t`` (what backpropagation from the last step multiplies by);
  :func:`gradient_flow_norms` their spectral and Frobenius norms against the lag.
* :func:`lyapunov` accumulates the product in **log space** with QR
  re-orthonormalisation (Benettin et al. 1980; Engelken, Wolf & Abbott 2020):
  :math:`Q_t R_t = J_t Q_{t-1}`, :math:`Q_0 = I_{d\times k}`.  Then
  :math:`\lambda_i = \frac1T\sum_t\log|(R_t)_{ii}|` are the ``k`` leading
  Lyapunov exponents (exponential rates of growth, ``< 0`` vanishing, ``> 0``
  exploding), and :math:`\sum_{u\le t}\log|(R_u)_{11}| = \log\|J_t\cdots J_1 q_1\|`
  exactly (``q_1`` the first column of :math:`Q_0`).  Nothing is ever
  multiplied out, so ``T = 10^5`` or more works in float32 without under- or
  overflow.

References:
  G. Benettin, L. Galgani, A. Giorgilli, J.-M. Strelcyn, "Lyapunov characteristic
  exponents for smooth dynamical systems", Meccanica 15, 1980.
  R. Engelken, F. Wolf, L. F. Abbott, "Lyapunov spectra of chaotic recurrent neural
  networks", arXiv:2006.02427, 2020.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._validation import check_array


def _check_jacs(jacs) -> jax.Array:
    jacs = check_array(jacs, "jacs", ("T", "d", "d"))
    if jacs.shape[1] != jacs.shape[2]:
        raise ValueError(f"jacs has shape {jacs.shape} but (T, d, d) square Jacobians are expected")
    return jacs


def suffix_products(jacs: jax.Array) -> jax.Array:
    r"""``out[t-1]`` :math:`= J_T J_{T-1}\cdots J_t = \partial s_T/\partial s_{t-1}`, ``t = 1..T``; shape ``(T, d, d)``.

    One reverse :func:`jax.lax.associative_scan`.  Direct products: use float64
    or :func:`lyapunov` for long horizons.
    """
    jacs = _check_jacs(jacs)
    return jax.lax.associative_scan(lambda later, earlier: later @ earlier, jacs, reverse=True)


class FlowNorms(NamedTuple):
    """Norms of :math:`\\partial s_T/\\partial s_{t}` for ``t = 0..T-1`` (``lag = T - t``)."""

    lag: jax.Array
    spectral: jax.Array
    frobenius: jax.Array


def gradient_flow_norms(jacs: jax.Array) -> FlowNorms:
    r"""Spectral and Frobenius norms of :math:`\partial s_T/\partial s_t`, ``t = 0..T-1``, with their lags ``T - t``."""
    S = suffix_products(jacs)
    T = S.shape[0]
    return FlowNorms(
        jnp.arange(T, 0, -1),
        jnp.linalg.norm(S, ord=2, axis=(-2, -1)),
        jnp.linalg.norm(S, ord="fro", axis=(-2, -1)),
    )


class Lyapunov(NamedTuple):
    """Result of :func:`lyapunov`.

    Attributes:
      exponents: ``(k,)`` leading Lyapunov exponents (per step, natural log), descending.
      log_growth: ``(T,)`` :math:`\\log\\|J_t\\cdots J_1 q_1\\|` for ``t = 1..T``.
      log_volume: ``(T,)`` :math:`\\sum_{u\\le t}\\sum_i\\log|(R_u)_{ii}|`, the log of the
        ``k``-dimensional volume growth.
    """

    exponents: jax.Array
    log_growth: jax.Array
    log_volume: jax.Array


def lyapunov(jacs: jax.Array, k: Optional[int] = None, q0: Optional[jax.Array] = None, *,
             transient: int = 0) -> Lyapunov:
    r"""Leading ``k`` Lyapunov exponents of :math:`J_T\cdots J_1` by QR re-orthonormalisation (log space).

    Args:
      jacs: ``(T, d, d)`` step Jacobians in time order.
      k: number of exponents (default ``d``).
      q0: ``(d, k)`` initial orthonormal directions (default the first ``k``
        columns of the identity).
      transient: the first ``transient`` steps re-orthonormalise ``Q`` (so it
        turns towards the leading directions) but are left out of the
        exponents: :math:`\lambda_i = \frac{1}{T - \text{transient}}\sum_{t > \text{transient}}\log|(R_t)_{ii}|`.
        ``log_growth`` and ``log_volume`` still cover every step.

    Returns:
      :class:`Lyapunov`.  The finite-``T`` exponents converge to the true ones as
      ``T`` grows (at rate ``O(1/T)`` for typical sequences).
    """
    jacs = _check_jacs(jacs)
    T, d, _ = jacs.shape
    k = d if k is None else k
    if not 1 <= k <= d:
        raise ValueError(f"k must be in 1..{d} (the state size), got {k}")
    if not 0 <= transient < T:
        raise ValueError(f"transient must be in 0..{T - 1} (fewer than the {T} steps), got {transient}")
    if q0 is None:
        q0 = jnp.eye(d, k, dtype=jacs.dtype)
    else:
        q0 = check_array(q0, "q0", (d, k)).astype(jacs.dtype)

    def step(Q, J):
        Q, R = jnp.linalg.qr(J @ Q)
        r = jnp.diagonal(R)
        sign = jnp.where(r < 0, -1.0, 1.0).astype(Q.dtype)
        return Q * sign[None, :], jnp.log(jnp.abs(r))

    _, logs = jax.lax.scan(step, q0, jacs)  # (T, k)
    rates = jnp.mean(logs[transient:], axis=0)
    order = jnp.argsort(-rates)
    return Lyapunov(
        rates[order],
        jnp.cumsum(logs[:, 0]),
        jnp.cumsum(jnp.sum(logs, axis=1)),
    )


def lag_map(jacs: jax.Array, select: Callable[[jax.Array], jax.Array] = lambda P: P) -> jax.Array:
    r"""Spectral norms :math:`\|\mathrm{select}(\partial s_t/\partial s_u)\|_2` for all ``u < t``; shape ``(T, T)``.

    Entry ``[t - 1, u]`` (``t = 1..T``, ``u = 0..T-1``) is the norm of
    ``select`` :math:`(J_t\cdots J_{u+1})`; entries with ``u >= t`` are NaN.
    ``select`` picks a block, e.g. ``lambda P: P[..., n:, n:]`` for
    :math:`\partial c_t/\partial c_u` with :math:`h_u` held fixed.  Cost
    ``O(T^2 d^3)`` in one scan: for moderate ``T`` (a few hundred).
    """
    jacs = _check_jacs(jacs)
    T, d, _ = jacs.shape
    eye = jnp.broadcast_to(jnp.eye(d, dtype=jacs.dtype), (T, d, d))

    def step(carry, inp):
        t, J = inp
        # carry[u] = J_(t-1) ... J_(u+1) for u < t - 1 (identity for u >= t - 1)
        prods = J[None] @ carry
        prods = jnp.where((jnp.arange(T) < t)[:, None, None], prods, eye)
        norms = jnp.linalg.norm(select(prods), ord=2, axis=(-2, -1))
        return prods, jnp.where(jnp.arange(T) < t, norms, jnp.nan)

    _, rows = jax.lax.scan(step, eye, (jnp.arange(1, T + 1), jacs))
    return rows
