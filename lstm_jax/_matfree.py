r"""Matrix-free Lyapunov exponents: products :math:`J_t Q` from the structure of the analytic step Jacobians.

:func:`~lstm_jax.lyapunov` takes dense step Jacobians ``(T, d, d)``; for the LSTM ``d = 2n`` and at
``n = 1024`` one Jacobian is 16 MiB, ``T = 10^5`` of them 1.6 TiB.  The QR iteration only ever needs
:math:`J_t Q_{t-1}` for a ``(d, k)`` orthonormal ``Q``, and the analytic Jacobians are diagonal gate
factors times weight blocks, so :math:`J_t Q` costs one ``(4n, n) @ (n, k)`` GEMM and ``O(nk)``
elementwise work, without ever forming :math:`J_t`.

LSTM (the joint Jacobian of :func:`~lstm_jax.lstm_step_jacobian`, state ordering ``[h; c]``,
:math:`Q = [Q_h; Q_c]`): with :math:`U_g` the ``h``-columns of :math:`W_g` and
:math:`P_g = U_g Q_h` (one GEMM for all four gates),

.. math::

    \partial c\,Q &= \operatorname{diag}(c_{t-1}\sigma'(z_f)) P_f + \operatorname{diag}(\tilde c_t\sigma'(z_i)) P_i
                   + \operatorname{diag}(i_t\tanh'(z_c)) P_c + \operatorname{diag}(f_t) Q_c,\\
    \partial h\,Q &= \operatorname{diag}(\tanh(c_t)\sigma'(z_o)) P_o + \operatorname{diag}(o_t\tanh'(c_t))\,\partial c\,Q.

RNN (:func:`~lstm_jax.rnn_step_jacobian`): :math:`J_t Q = \operatorname{diag}(\phi'(z_t))\,W_{rec} Q`.

Gates and pre-activations come from the library's own cell (``_gates``, :func:`~lstm_jax.run_lstm`'s
trajectory, the derivatives of :mod:`lstm_jax._activations`); the QR step and the returned
:class:`~lstm_jax.Lyapunov` are those of :func:`~lstm_jax.lyapunov` (Benettin et al. 1980; Engelken,
Wolf & Abbott 2020).  Cost per step: LSTM ``2·4n·n·k`` FLOPs for the GEMM plus a ``(2n, k)`` QR
(``O(nk^2)``), versus ``O(n^2 (n+m))`` for one dense ``jax.jacfwd`` Jacobian and ``O(n^2 k)`` for
``J @ Q`` (the recipe of Vogt et al. 2022, *On Lyapunov exponents for RNNs*, arXiv:2110.07238).
Memory: ``O(nk)`` per step plus the trajectory ``(T, 2n)`` and the ``(T, k)`` logs.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from ._activations import SIGMOID, TANH, Activation
from ._flow import Lyapunov
from ._lstm import LSTMParams, LSTMState, _gates, check_lstm_call, run_lstm
from ._rnn import RNNParams, _check_rnn_call, rnn_preactivation, run_rnn
from ._validation import check_array

_dsig = SIGMOID.deriv
_dtanh = TANH.deriv


def _q0(q0, d: int, k: Optional[int], dtype) -> jax.Array:
    k = d if k is None else k
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int in 1..{d} (the state size), got {type(k).__name__}")
    if not 1 <= k <= d:
        raise ValueError(f"k must be in 1..{d} (the state size), got {k}")
    if q0 is None:
        return jnp.eye(d, k, dtype=dtype)
    return check_array(q0, "q0", (d, k)).astype(dtype)


def _qr_lyapunov(jq, q0, carry_in) -> Lyapunov:
    """QR re-orthonormalisation of ``jq(Q, inp) = J_t Q`` along ``carry_in`` (as in :func:`~lstm_jax.lyapunov`)."""

    def step(Q, inp):
        Q, R = jnp.linalg.qr(jq(Q, inp))
        r = jnp.diagonal(R)
        sign = jnp.where(r < 0, -1.0, 1.0).astype(Q.dtype)
        return Q * sign[None, :], jnp.log(jnp.abs(r))

    _, logs = jax.lax.scan(step, q0, carry_in)  # (T, k)
    means = jnp.mean(logs, axis=0)
    order = jnp.argsort(-means)
    return Lyapunov(means[order], jnp.cumsum(logs[:, 0]), jnp.cumsum(jnp.sum(logs, axis=1)))


def _lstm_jq(p: LSTMParams, U: jax.Array, h_prev: jax.Array, c_prev: jax.Array, x: jax.Array, Q: jax.Array) -> jax.Array:
    r""":math:`J_t Q` for the joint LSTM Jacobian at one step, ``Q (2n, k)``, ``U = [U_f; U_i; U_c; U_o] (4n, n)``."""
    n = h_prev.shape[-1]
    g = _gates(p, h_prev, x)
    P = U @ Q[:n]  # (4n, k): U_g Q_h for the four gates in one GEMM
    P_f, P_i, P_c, P_o = P[:n], P[n:2 * n], P[2 * n:3 * n], P[3 * n:]
    dc = ((c_prev * _dsig(g.z_f))[:, None] * P_f + (g.c_tilde * _dsig(g.z_i))[:, None] * P_i
          + (g.i * _dtanh(g.z_c))[:, None] * P_c + g.f[:, None] * Q[n:])
    c = c_prev * g.f + g.c_tilde * g.i
    dh = (jnp.tanh(c) * _dsig(g.z_o))[:, None] * P_o + (g.o * _dtanh(c))[:, None] * dc
    return jnp.concatenate([dh, dc], axis=0)


def lstm_lyapunov_matfree(
    params: LSTMParams,
    state0: LSTMState,
    xs: jax.Array,
    k: Optional[int] = None,
    q0: Optional[jax.Array] = None,
) -> Lyapunov:
    r"""The ``k`` leading Lyapunov exponents of the LSTM along ``xs``, matrix-free (module docstring).

    Equals ``lyapunov(lstm_step_jacobians(params, state0, xs), k, q0)`` (same trajectory, same QR
    steps; float64 agreement to rounding) without forming any ``(2n, 2n)`` Jacobian.

    Args:
      params: :class:`~lstm_jax.LSTMParams`.
      state0: :class:`~lstm_jax.LSTMState` ``(h_0, c_0)``, each ``(n,)``.
      xs: ``(T, m)`` inputs.
      k: number of exponents, ``1..2n`` (default ``2n``).
      q0: ``(2n, k)`` initial orthonormal directions (default the first ``k`` identity columns).

    Returns:
      :class:`~lstm_jax.Lyapunov` (exponents descending, ``log_growth``, ``log_volume``).
    """
    p, s0, xs, n, _ = check_lstm_call(params, state0, "state0", xs, "xs", 2)
    q0 = _q0(q0, 2 * n, k, xs.dtype)
    _, traj = run_lstm(p, s0, xs)
    h_prev = jnp.concatenate([s0.h[None], traj.h[:-1]], axis=0)
    c_prev = jnp.concatenate([s0.c[None], traj.c[:-1]], axis=0)
    U = jnp.concatenate([W[:, :n] for W in (p.W_f, p.W_i, p.W_c, p.W_o)], axis=0)
    return _qr_lyapunov(lambda Q, inp: _lstm_jq(p, U, *inp, Q), q0, (h_prev, c_prev, xs))


def rnn_lyapunov_matfree(
    params: RNNParams,
    c0: jax.Array,
    xs: jax.Array,
    activation: Activation = SIGMOID,
    k: Optional[int] = None,
    q0: Optional[jax.Array] = None,
) -> Lyapunov:
    r"""The ``k`` leading Lyapunov exponents of the RNN, :math:`J_t Q = \operatorname{diag}(\phi'(z_t)) W_{rec} Q`.

    Equals ``lyapunov(rnn_step_jacobians(params, c0, xs, activation), k, q0)`` without forming ``J_t``.
    ``c0 (n,)``, ``xs (T, m)``, ``k`` in ``1..n``, ``q0 (n, k)``.
    """
    if not isinstance(activation, Activation):
        raise TypeError(f"activation must be an lstm_jax Activation (SIGMOID or TANH), got {type(activation).__name__}")
    p, c0, xs = _check_rnn_call(params, c0, "c0", xs, "xs", lambda m: ("T", m))
    n = c0.shape[0]
    q0 = _q0(q0, n, k, xs.dtype)
    _, cs = run_rnn(p, c0, xs, activation)
    c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)

    def jq(Q, inp):
        c, x = inp
        return activation.deriv(rnn_preactivation(p, c, x))[:, None] * (p.W_rec @ Q)

    return _qr_lyapunov(jq, q0, (c_prev, xs))
