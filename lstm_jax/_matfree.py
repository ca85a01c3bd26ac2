r"""Matrix-free Lyapunov exponents and flow norms: products :math:`J_t Q` / :math:`J_t^\top W` from the structure of the analytic step Jacobians.

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

The flow norms (:func:`lstm_flow_norms_matfree`, :func:`rnn_flow_norms_matfree`) run the adjoint products
:math:`J_t^\top W` backwards from ``t = T`` (the same factors, transposed: one ``(n, 4n) @ (4n, k)`` GEMM a
step for the LSTM) with QR re-orthonormalisation, giving the norms of
:math:`q_0^\top \partial s_T/\partial s_t` for every ``t`` — those of :func:`~lstm_jax.gradient_flow_norms`
when ``k`` is the full state size.

Gates and pre-activations come from the library's own cell (``_gates`` / the cell update ``_update``,
the derivatives of :mod:`lstm_jax._activations`); the QR step and the returned :class:`~lstm_jax.Lyapunov`
are those of :func:`~lstm_jax.lyapunov` (Benettin et al. 1980; Engelken, Wolf & Abbott 2020).  The
Lyapunov loop advances the trajectory in the same step: one GEMM :math:`U\,[h_{t-1} \mid Q_h]`
(``(4n, n) @ (n, 1 + k)``) gives the recurrent pre-activation and :math:`P = U Q_h`, so no trajectory is
stored (the memory of a ``T = 10^5`` run is the ``(T, k)`` logs).  Cost per step: LSTM ``2·4n·n·(k + 1)`` FLOPs for the GEMM plus a ``(2n, k)`` QR
(``O(nk^2)``), versus ``O(n^2 (n+m))`` for one dense ``jax.jacfwd`` Jacobian and ``O(n^2 k)`` for
``J @ Q`` (the recipe of Vogt, Puelma Touzel, Shlizerman & Lajoie 2022, *On Lyapunov exponents for RNNs*,
Frontiers in Applied Mathematics and Statistics 8).
Memory: Lyapunov ``O(nk)`` plus the ``(T, k)`` logs; the flow norms also keep the trajectory ``(T, 2n)``
(their reverse scan needs it).

Threads: the QR is LAPACK's (through scipy's OpenBLAS on CPU).  OpenBLAS worker threads contend with XLA's
thread pool inside the loop; a ``(1024, 32)`` QR per step was measured orders of magnitude slower with OpenBLAS's
default threading than with ``OPENBLAS_NUM_THREADS=1`` on a busy 2-core machine (``benchmarks/targets.py``
sets it).  Set it in your entry point, before importing numpy / jax.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from ._scan import previous_states
from ._activations import SIGMOID, TANH, Activation, as_activation
from ._flow import FlowNorms, Lyapunov, _orthonormal_q0
from ._lstm import LSTMParams, LSTMState, _fused, _gates, _update, check_lstm_call, run_lstm
from ._rnn import RNNParams, _check_rnn_call, rnn_preactivation, run_rnn
from ._validation import check_int

_dsig = SIGMOID.deriv
_dtanh = TANH.deriv


def _q0(q0, d: int, k: Optional[int], dtype) -> jax.Array:
    """``k`` and ``q0`` checked and prepared exactly as :func:`lstm_jax.lyapunov` does (one check for both)."""
    k = d if k is None else check_int(k, "k", lo=1, hi=d, accepts=f"an int in 1..{d} (the state size d)")
    return jnp.eye(d, k, dtype=dtype) if q0 is None else _orthonormal_q0(q0, d, k, dtype)


def _qr_lyapunov(step, carry0, q0, inputs) -> Lyapunov:
    """QR re-orthonormalisation of ``J_t Q`` (as in :func:`~lstm_jax.lyapunov`) along the trajectory.

    ``step(state, Q, input) -> (next state, J_t Q)`` advances the cell and forms the product in the same
    step (the recurrent product of the trajectory and the Jacobian's weight product share one GEMM), so
    the trajectory is never stored: memory ``O(nk)`` plus the ``(T, k)`` logs.
    """
    tiny = jnp.finfo(q0.dtype).tiny

    def body(carry, inp):
        state, Q = carry
        state, X = step(state, Q, inp)
        Q, R = jnp.linalg.qr(X)
        r = jnp.diagonal(R)
        sign = jnp.where(r < 0, -1.0, 1.0).astype(Q.dtype)
        a = jnp.abs(r)  # floored at the smallest normal number and counted, as lstm_jax.lyapunov does
        return (state, Q * sign[None, :]), (jnp.log(jnp.maximum(a, tiny)), jnp.sum(a < tiny))

    _, (logs, low) = jax.lax.scan(body, (carry0, q0), inputs)  # logs (T, k)
    means = jnp.mean(logs, axis=0)
    order = jnp.argsort(-means)
    return Lyapunov(means[order], jnp.cumsum(logs[:, 0]), jnp.cumsum(jnp.sum(logs, axis=1)), jnp.sum(low))


def _lstm_factors(c_prev, z_f, z_i, z_c, z_o) -> tuple[LSTMState, jax.Array]:
    r"""The next state and the six diagonal factors of the joint Jacobian at one step, ``(6, n)``.

    :math:`c_{t-1}\sigma'(z_f)`, :math:`\tilde c_t\sigma'(z_i)`, :math:`i_t\tanh'(z_c)`, :math:`f_t`,
    :math:`\tanh(c_t)\sigma'(z_o)`, :math:`o_t\tanh'(c_t)`; the state from the library's cell update ``_update``.
    """
    new = _update(c_prev, z_f, z_i, z_c, z_o)
    F = jnp.stack([c_prev * _dsig(z_f), jnp.tanh(z_c) * _dsig(z_i), jax.nn.sigmoid(z_i) * _dtanh(z_c),
                   jax.nn.sigmoid(z_f), jnp.tanh(new.c) * _dsig(z_o), jax.nn.sigmoid(z_o) * _dtanh(new.c)])
    return new, F


def _lstm_jq_factors(F: jax.Array, P: jax.Array, Q: jax.Array) -> jax.Array:
    """``J_t Q`` from the factors ``F (6, n)`` and ``P = U Q_h (4n, k)`` (``U = [U_f; U_i; U_c; U_o]``)."""
    n = F.shape[-1]
    dc = F[0][:, None] * P[:n] + F[1][:, None] * P[n:2 * n] + F[2][:, None] * P[2 * n:3 * n] + F[3][:, None] * Q[n:]
    dh = F[4][:, None] * P[3 * n:] + F[5][:, None] * dc
    return jnp.concatenate([dh, dc], axis=0)


def _split_weights(p: LSTMParams, n: int):
    """``U = [U_f; U_i; U_c; U_o] (4n, n)``, ``V`` the input columns ``(4n, m)`` and ``b (4n,)`` (a missing
    gate bias is zero), from the library's fused layout."""
    W, b = _fused(p, n)  # W (n + m, 4n): rows [h; x]
    return W[:n].T, W[n:].T, (jnp.zeros((4 * n,), W.dtype) if b is None else b)


def lstm_lyapunov_matfree(
    params: LSTMParams,
    state0: LSTMState,
    xs: jax.Array,
    k: Optional[int] = None,
    q0: Optional[jax.Array] = None,
) -> Lyapunov:
    r"""The ``k`` leading Lyapunov exponents of the LSTM along ``xs``, matrix-free (module docstring).

    Equals ``lyapunov(lstm_step_jacobians(params, state0, xs), k, q0)`` (the same recurrence and QR steps;
    the pre-activation is summed as :math:`U h + V x + b` instead of :math:`W [h; x] + b`, so the trajectories
    agree to rounding — in float64 to ~1e-15 here, while in float32 a chaotic trajectory drifts apart and only the
    exponents, as statistics, agree) without forming any ``(2n, 2n)`` Jacobian.  Per step one GEMM
    :math:`U\,[h_{t-1} \mid Q_h]` (``(4n, n) @ (n, 1 + k)``) gives both the trajectory's recurrent
    pre-activation and :math:`P = U Q_h`; the input part :math:`V x_t + b` is a GEMV with the
    ``(4n, m)`` input columns.

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
    U, V, b = _split_weights(p, n)

    def step(s, Q, x):
        Z = U @ jnp.concatenate([s.h[:, None], Q[:n]], axis=1)  # (4n, 1 + k)
        z = Z[:, 0] + V @ x + b
        new, F = _lstm_factors(s.c, z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:])
        return new, _lstm_jq_factors(F, Z[:, 1:], Q)

    return _qr_lyapunov(step, s0, q0, xs)


def rnn_lyapunov_matfree(
    params: RNNParams,
    c0: jax.Array,
    xs: jax.Array,
    activation: Activation = SIGMOID,
    k: Optional[int] = None,
    q0: Optional[jax.Array] = None,
) -> Lyapunov:
    r"""The ``k`` leading Lyapunov exponents of the RNN, :math:`J_t Q = \operatorname{diag}(\phi'(z_t)) W_{rec} Q`.

    Equals ``lyapunov(rnn_step_jacobians(params, c0, xs, activation), k, q0)`` without forming ``J_t``;
    per step one GEMM :math:`W_{rec}\,[c_{t-1} \mid Q]` gives the pre-activation and :math:`W_{rec} Q`.
    ``c0 (n,)``, ``xs (T, m)``, ``k`` in ``1..n``, ``q0 (n, k)``.
    """
    activation = as_activation(activation)  # SIGMOID/TANH or "sigmoid"/"tanh"; anything else: TypeError
    p, c0, xs = _check_rnn_call(params, c0, "c0", xs, "xs", lambda m: ("T", m))
    n = c0.shape[0]
    q0 = _q0(q0, n, k, xs.dtype)
    b = jnp.zeros((n,), xs.dtype) if p.b is None else p.b

    def step(c, Q, x):
        Z = p.W_rec @ jnp.concatenate([c[:, None], Q], axis=1)  # (n, 1 + k)
        z = Z[:, 0] + p.W_in @ x + b
        return activation.fn(z), activation.deriv(z)[:, None] * Z[:, 1:]

    return _qr_lyapunov(step, c0, q0, xs)


# --------------------------------------------------------------------------- flow norms (adjoint products)


def _flow_norms(jtq, q0, inputs) -> FlowNorms:
    r"""Norms of :math:`P_t^\top q_0 = J_{t+1}^\top\cdots J_T^\top q_0` for ``t = 0..T-1`` by a reverse QR scan.

    :math:`J_t^\top Q_t R_t`-style re-orthonormalisation: ``X = J^T Q``, ``Q', R = qr(X)``, and the
    ``(k, k)`` product :math:`M = R_{t+1}\cdots R_T` is kept with its log scale, so
    :math:`P_t^\top q_0 = Q' M e^{s}` and its norms are those of ``M`` times :math:`e^s` (``Q'`` has
    orthonormal columns).  Nothing under- or overflows before the final ``exp``; the log fields are always finite.
    """
    k = q0.shape[1]

    def step(carry, inp):
        Q, M, s = carry
        Q, R = jnp.linalg.qr(jtq(Q, inp))
        M = R @ M
        scale = jnp.linalg.norm(M)
        M = M / scale
        s = s + jnp.log(scale)
        return (Q, M, s), (s + jnp.log(jnp.linalg.norm(M, ord=2)), s)  # ||M||_F = 1 after the rescale

    init = (q0, jnp.eye(k, dtype=q0.dtype), jnp.zeros((), q0.dtype))
    _, (log_spec, log_fro) = jax.lax.scan(step, init, inputs, reverse=True)
    T = log_spec.shape[0]
    return FlowNorms(jnp.arange(T, 0, -1), jnp.exp(log_spec), jnp.exp(log_fro), log_spec, log_fro)


def _lstm_jtq(p: LSTMParams, U: jax.Array, h_prev, c_prev, x, Wc: jax.Array) -> jax.Array:
    r""":math:`J_t^\top W` for the joint LSTM Jacobian, ``W = [W_h; W_c] (2n, k)``: one ``(n, 4n) @ (4n, k)`` GEMM."""
    n = h_prev.shape[-1]
    g = _gates(p, h_prev, x)
    _, F = _lstm_factors(c_prev, g.z_f, g.z_i, g.z_c, g.z_o)
    W_h, W_c = Wc[:n], Wc[n:]
    Y = F[5][:, None] * W_h + W_c  # cotangent reaching c_t
    stacked = jnp.concatenate([F[0][:, None] * Y, F[1][:, None] * Y, F[2][:, None] * Y, F[4][:, None] * W_h], axis=0)
    return jnp.concatenate([U.T @ stacked, F[3][:, None] * Y], axis=0)


def lstm_flow_norms_matfree(
    params: LSTMParams,
    state0: LSTMState,
    xs: jax.Array,
    k: Optional[int] = None,
    q0: Optional[jax.Array] = None,
) -> FlowNorms:
    r"""Norms of :math:`\partial s_T/\partial s_t` (``t = 0..T-1``) restricted to ``k`` output directions, matrix-free.

    Returns :class:`~lstm_jax.FlowNorms` with the spectral and Frobenius norms of
    :math:`q_0^\top\,\partial s_T/\partial s_t` (``q0 (2n, k)`` orthonormal, default the first ``k``
    identity columns), from adjoint products :math:`J^\top W` built from the gate factors (one
    ``(n, 4n) @ (4n, k)`` GEMM a step) and a reverse QR scan; with ``k = 2n`` they are exactly the norms
    of :func:`~lstm_jax.gradient_flow_norms` (``lstm_step_jacobians``), without any ``(2n, 2n)`` matrix.
    For ``k < 2n`` they are lower bounds (the gradient of ``k`` chosen output directions, e.g. the
    readout's rows).  ``log_spectral``/``log_frobenius`` hold their natural logs (no under/overflow at long ``T``).
    Cost per step ``O(n^2 k)`` + a ``(2n, k)`` QR + a ``(k, k)`` SVD; memory ``O(nk)`` + the trajectory.
    """
    p, s0, xs, n, _ = check_lstm_call(params, state0, "state0", xs, "xs", 2)
    q0 = _q0(q0, 2 * n, k, xs.dtype)
    _, traj = run_lstm(p, s0, xs)
    h_prev = previous_states(s0.h, traj.h)
    c_prev = previous_states(s0.c, traj.c)
    U = _split_weights(p, n)[0]
    return _flow_norms(lambda Q, inp: _lstm_jtq(p, U, *inp, Q), q0, (h_prev, c_prev, xs))


def rnn_flow_norms_matfree(
    params: RNNParams,
    c0: jax.Array,
    xs: jax.Array,
    activation: Activation = SIGMOID,
    k: Optional[int] = None,
    q0: Optional[jax.Array] = None,
) -> FlowNorms:
    r"""RNN version of :func:`lstm_flow_norms_matfree`: :math:`J_t^\top W = W_{rec}^\top(\phi'(z_t)\odot W)`.

    With ``k = n`` equal to ``gradient_flow_norms(rnn_step_jacobians(params, c0, xs, activation))``.
    """
    activation = as_activation(activation)  # SIGMOID/TANH or "sigmoid"/"tanh"; anything else: TypeError
    p, c0, xs = _check_rnn_call(params, c0, "c0", xs, "xs", lambda m: ("T", m))
    n = c0.shape[0]
    q0 = _q0(q0, n, k, xs.dtype)
    _, cs = run_rnn(p, c0, xs, activation)
    c_prev = previous_states(c0, cs)

    def jtq(Q, inp):
        c, x = inp
        return p.W_rec.T @ (activation.deriv(rnn_preactivation(p, c, x))[:, None] * Q)

    return _flow_norms(jtq, q0, (c_prev, xs))
