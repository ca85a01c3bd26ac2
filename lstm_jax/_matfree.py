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

Gates, pre-activations and the diagonal factors come from the cell protocol (:mod:`lstm_jax._cell`: each
cell's ``update``, ``tangent`` and ``cotangent``, so every registered cell has these diagnostics); the QR step and the returned :class:`~lstm_jax.Lyapunov`
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

from ._activations import SIGMOID, Activation, as_activation
from ._cell import Cell, check_call, preactivations, run, step, tangent_cols, vjp_cols
from ._flow import FlowNorms, Lyapunov, log_renormalise, log_spectral, qr_step, start_directions
from ._gru import CELL as GRU_CELL
from ._gru import GRUParams
from ._lstm import CELL as LSTM_CELL
from ._lstm import LSTMParams, LSTMState
from ._rnn import RNNParams, rnn_cell
from ._scan import previous_states


def _qr_lyapunov(step, carry0, q0, inputs) -> Lyapunov:
    """QR re-orthonormalisation of ``J_t Q`` (as in :func:`~lstm_jax.lyapunov`) along the trajectory.

    ``step(state, Q, input) -> (next state, J_t Q)`` advances the cell and forms the product in the same
    step (the recurrent product of the trajectory and the Jacobian's weight product share one GEMM), so
    the trajectory is never stored: memory ``O(nk)`` plus the ``(T, k)`` logs.
    """

    def body(carry, inp):
        state, Q = carry
        state, X = step(state, Q, inp)
        Q, logs, low = qr_step(X)  # the QR step of lstm_jax.lyapunov (floored logs counted)
        return (state, Q), (logs, low)

    _, (logs, low) = jax.lax.scan(body, (carry0, q0), inputs)  # logs (T, k)
    means = jnp.mean(logs, axis=0)
    order = jnp.argsort(-means)
    return Lyapunov(means[order], jnp.cumsum(logs[:, 0]), jnp.cumsum(jnp.sum(logs, axis=1)), jnp.sum(low))


def _lyapunov(cell: Cell, params, state0, state_name, xs, k, q0) -> Lyapunov:
    """Matrix-free Lyapunov exponents of any cell: one GEMM :math:`[r_{t-1}; Q_{rec}^T] W_h` a step (module docstring)."""
    p, s0, xs, n, _ = check_call(cell, params, state0, state_name, xs, "xs")
    q0 = start_directions(q0, cell.width * n, k, xs.dtype)
    w = cell.weights(p)
    U = None if w.W_h is None else w.W_h.T  # (G n, n): the column GEMM (see lstm_jax._cell.tangent_cols)

    def one(s, Q, x):
        blocks = cell.to_blocks(s)
        z_x = preactivations(cell, w, blocks, x)[1]
        if cell.rec_block is None:
            new, F = cell.update(blocks, None, z_x)
            return cell.from_blocks(new), tangent_cols(cell, F, None, Q)
        r = cell.rec_block
        Z = U @ jnp.concatenate([blocks[r][:, None], Q[r * n:(r + 1) * n]], axis=1)  # (G n, 1 + k): trajectory, U Q_rec
        z_h = Z[:, 0] if w.b_h is None else Z[:, 0] + w.b_h
        new, F = cell.update(blocks, z_h, z_x)
        return cell.from_blocks(new), tangent_cols(cell, F, Z[:, 1:], Q)

    return _qr_lyapunov(one, s0, q0, xs)


def _flow(cell: Cell, params, state0, state_name, xs, k, q0) -> FlowNorms:
    """Matrix-free flow norms of any cell: adjoint columns :func:`~lstm_jax._cell.vjp_cols` a step, reverse QR scan."""
    p, s0, xs, n, _ = check_call(cell, params, state0, state_name, xs, "xs")
    q0 = start_directions(q0, cell.width * n, k, xs.dtype)
    w = cell.weights(p)
    _, traj = run(cell, w, s0, xs)
    prev = previous_states(s0, traj)

    def jtq(Q, inp):
        s, x = inp
        return vjp_cols(cell, w, step(cell, w, cell.to_blocks(s), x)[1], Q)

    return _flow_norms(jtq, q0, (prev, xs))


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
    return _lyapunov(LSTM_CELL, params, state0, "state0", xs, k, q0)


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
    return _lyapunov(rnn_cell(as_activation(activation)), params, c0, "c0", xs, k, q0)


def gru_lyapunov_matfree(
    params: GRUParams,
    h0: jax.Array,
    xs: jax.Array,
    k: Optional[int] = None,
    q0: Optional[jax.Array] = None,
) -> Lyapunov:
    r"""The ``k`` leading Lyapunov exponents of the GRU, matrix-free (the cell's factors, :class:`~lstm_jax._gru.GRUFactors`).

    Equals ``lyapunov(gru_step_jacobians(params, h0, xs), k, q0)`` without forming ``J_t``; per step one GEMM
    :math:`[h_{t-1}; Q^\top] W_h` (``(1 + k, n) @ (n, 3n)``).  ``h0 (n,)``, ``xs (T, m)``, ``k`` in ``1..n``, ``q0 (n, k)``.
    """
    return _lyapunov(GRU_CELL, params, h0, "h0", xs, k, q0)


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
        M, s = log_renormalise(R @ M, s)
        return (Q, M, s), (log_spectral(M, s), s)  # ||M||_F = 1 after the rescale

    init = (q0, jnp.eye(k, dtype=q0.dtype), jnp.zeros((), q0.dtype))
    _, (log_spec, log_fro) = jax.lax.scan(step, init, inputs, reverse=True)
    T = log_spec.shape[0]
    return FlowNorms(jnp.arange(T, 0, -1), jnp.exp(log_spec), jnp.exp(log_fro), log_spec, log_fro)


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
    return _flow(LSTM_CELL, params, state0, "state0", xs, k, q0)


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
    return _flow(rnn_cell(as_activation(activation)), params, c0, "c0", xs, k, q0)


def gru_flow_norms_matfree(
    params: GRUParams,
    h0: jax.Array,
    xs: jax.Array,
    k: Optional[int] = None,
    q0: Optional[jax.Array] = None,
) -> FlowNorms:
    r"""GRU version of :func:`lstm_flow_norms_matfree`: adjoint rows from the GRU's factors, one ``(k, 3n) @ (3n, n)`` GEMM a step.

    With ``k = n`` equal to ``gradient_flow_norms(gru_step_jacobians(params, h0, xs))``.
    """
    return _flow(GRU_CELL, params, h0, "h0", xs, k, q0)
