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

Gates and pre-activations come from the library's own cell (``_gates``, :func:`~lstm_jax.run_lstm`'s
trajectory, the derivatives of :mod:`lstm_jax._activations`); the QR step and the returned
:class:`~lstm_jax.Lyapunov` are those of :func:`~lstm_jax.lyapunov` (Benettin et al. 1980; Engelken,
Wolf & Abbott 2020).  Cost per step: LSTM ``2·4n·n·k`` FLOPs for the GEMM plus a ``(2n, k)`` QR
(``O(nk^2)``), versus ``O(n^2 (n+m))`` for one dense ``jax.jacfwd`` Jacobian and ``O(n^2 k)`` for
``J @ Q`` (the recipe of Vogt, Puelma Touzel, Shlizerman & Lajoie 2022, *On Lyapunov exponents for RNNs*,
Frontiers in Applied Mathematics and Statistics 8).
Memory: ``O(nk)`` per step plus the trajectory ``(T, 2n)`` and the ``(T, k)`` logs.

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
from ._flow import FlowNorms, Lyapunov
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


_CHUNK = 128  # steps whose gate factors are formed together (one batched GEMM per gate), memory O(_CHUNK * n)


def _qr_lyapunov(prep, jq, q0, inputs, T: int) -> Lyapunov:
    """QR re-orthonormalisation of ``J_t Q`` (as in :func:`~lstm_jax.lyapunov`), chunked over time.

    ``prep`` maps one step's ``inputs`` to the step's diagonal factors and is vmapped over chunks of
    ``_CHUNK`` steps (batched GEMMs instead of ``_CHUNK`` GEMVs); ``jq(Q, factors) = J_t Q``.  Padded
    steps at the end apply the identity (``R = I``, log 0) and are cut off.
    """
    L = min(T, _CHUNK)
    chunks = -(-T // L)
    pad = chunks * L - T

    def blocks(a):
        return jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]).reshape((chunks, L) + a.shape[1:])

    inputs = jax.tree_util.tree_map(blocks, inputs)
    valid = (jnp.arange(chunks * L) < T).reshape(chunks, L)
    tiny = jnp.finfo(q0.dtype).tiny

    def step(Q, inp):
        F, v = inp
        Q, R = jnp.linalg.qr(jnp.where(v, jq(Q, F), Q))
        r = jnp.diagonal(R)
        sign = jnp.where(r < 0, -1.0, 1.0).astype(Q.dtype)
        a = jnp.abs(r)  # floored at the smallest normal number and counted, as lstm_jax.lyapunov does
        return Q * sign[None, :], (jnp.where(v, jnp.log(jnp.maximum(a, tiny)), 0.0), jnp.sum(v & (a < tiny)))

    def chunk(Q, inp):
        block, v = inp
        return jax.lax.scan(step, Q, (jax.vmap(prep)(*block), v))

    _, (logs, low) = jax.lax.scan(chunk, q0, (inputs, valid))
    logs = logs.reshape(chunks * L, -1)[:T]  # (T, k)
    means = jnp.mean(logs, axis=0)
    order = jnp.argsort(-means)
    return Lyapunov(means[order], jnp.cumsum(logs[:, 0]), jnp.cumsum(jnp.sum(logs, axis=1)), jnp.sum(low))


def _lstm_factors(p: LSTMParams, h_prev, c_prev, x) -> jax.Array:
    r"""The six diagonal factors of the joint Jacobian at one step, ``(6, n)``.

    :math:`c_{t-1}\sigma'(z_f)`, :math:`\tilde c_t\sigma'(z_i)`, :math:`i_t\tanh'(z_c)`, :math:`f_t`,
    :math:`\tanh(c_t)\sigma'(z_o)`, :math:`o_t\tanh'(c_t)`, from the library's gates.
    """
    g = _gates(p, h_prev, x)
    c = c_prev * g.f + g.c_tilde * g.i
    return jnp.stack([c_prev * _dsig(g.z_f), g.c_tilde * _dsig(g.z_i), g.i * _dtanh(g.z_c), g.f,
                      jnp.tanh(c) * _dsig(g.z_o), g.o * _dtanh(c)])


def _lstm_jq_factors(F: jax.Array, U: jax.Array, Q: jax.Array) -> jax.Array:
    """``J_t Q`` from the factors ``F (6, n)`` and ``U = [U_f; U_i; U_c; U_o] (4n, n)``: one GEMM."""
    n = F.shape[-1]
    P = U @ Q[:n]  # (4n, k): U_g Q_h for the four gates in one GEMM
    dc = F[0][:, None] * P[:n] + F[1][:, None] * P[n:2 * n] + F[2][:, None] * P[2 * n:3 * n] + F[3][:, None] * Q[n:]
    dh = F[4][:, None] * P[3 * n:] + F[5][:, None] * dc
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
    h_prev = previous_states(s0.h, traj.h)
    c_prev = previous_states(s0.c, traj.c)
    U = jnp.concatenate([W[:, :n] for W in (p.W_f, p.W_i, p.W_c, p.W_o)], axis=0)
    return _qr_lyapunov(lambda h, c, x: _lstm_factors(p, h, c, x), lambda Q, F: _lstm_jq_factors(F, U, Q), q0,
                        (h_prev, c_prev, xs), xs.shape[0])


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
    activation = as_activation(activation)  # SIGMOID/TANH or "sigmoid"/"tanh"; anything else: TypeError
    p, c0, xs = _check_rnn_call(params, c0, "c0", xs, "xs", lambda m: ("T", m))
    n = c0.shape[0]
    q0 = _q0(q0, n, k, xs.dtype)
    _, cs = run_rnn(p, c0, xs, activation)
    c_prev = previous_states(c0, cs)

    return _qr_lyapunov(lambda c, x: activation.deriv(rnn_preactivation(p, c, x)),
                        lambda Q, d: d[:, None] * (p.W_rec @ Q), q0, (c_prev, xs), xs.shape[0])


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
    c = c_prev * g.f + g.c_tilde * g.i
    W_h, W_c = Wc[:n], Wc[n:]
    Y = (g.o * _dtanh(c))[:, None] * W_h + W_c  # cotangent reaching c_t
    stacked = jnp.concatenate([(c_prev * _dsig(g.z_f))[:, None] * Y, (g.c_tilde * _dsig(g.z_i))[:, None] * Y,
                               (g.i * _dtanh(g.z_c))[:, None] * Y, (jnp.tanh(c) * _dsig(g.z_o))[:, None] * W_h], axis=0)
    return jnp.concatenate([U.T @ stacked, g.f[:, None] * Y], axis=0)


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
    U = jnp.concatenate([W[:, :n] for W in (p.W_f, p.W_i, p.W_c, p.W_o)], axis=0)
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
