r"""Exact one-step and multi-step Jacobians of the RNN and the LSTM (consumers of the cell protocol).

Notation (see :mod:`lstm_jax._lstm`): :math:`W_g = [U_g \mid V_g]`,
:math:`U_g` the ``(n, n)`` block acting on :math:`h_{t-1}`; ``diag(v)`` a
diagonal matrix; :math:`\sigma' = \sigma(1-\sigma)`, :math:`\tanh' = 1-\tanh^2` (computed as :math:`\sigma(z)\sigma(-z)`, :math:`4\sigma(2z)\sigma(-2z)`: ``_activations``).

**RNN** (article eq. 2), with :math:`z_t = W_{rec} c_{t-1} + W_{in} x_t + b`:

.. math:: \frac{\partial c_t}{\partial c_{t-1}} = \operatorname{diag}(\phi'(z_t))\, W_{rec}.

The article's eq. (6) terms, as published and corrected, are :mod:`lstm_jax._article`'s.

**LSTM, exact joint state.**  For :math:`s_t = [h_t; c_t] \in \mathbb{R}^{2n}`,
with :math:`K_t = \partial c_t / \partial h_{t-1} =
\operatorname{diag}(c_{t-1}\odot\sigma'(z_f))U_f + \operatorname{diag}(\tilde c_t\odot\sigma'(z_i))U_i
+ \operatorname{diag}(i_t\odot\tanh'(z_c))U_c` and :math:`e_t = o_t \odot \tanh'(c_t)`:

.. math::

    \frac{\partial s_t}{\partial s_{t-1}} =
    \begin{bmatrix}
      \operatorname{diag}(\tanh(c_t)\odot\sigma'(z_o))U_o + \operatorname{diag}(e_t) K_t
        & \operatorname{diag}(e_t \odot f_t) \\
      K_t & \operatorname{diag}(f_t)
    \end{bmatrix}.

Both are :func:`lstm_jax._cell.dense_jacobian` of the cells' factors (:class:`~lstm_jax._lstm.LSTMFactors`:
:math:`K_t = \operatorname{diag}(a_f)U_f + \operatorname{diag}(a_i)U_i + \operatorname{diag}(a_c)U_c`,
:math:`\tanh(c_t)\sigma'(z_o) = a_o`, :math:`e_t`, :math:`f_t`); nothing here writes a cell's maths.

Multi-step Jacobians are products of these
(:math:`\partial s_k/\partial s_j = J_k \cdots J_{j+1}`), formed by
:func:`jacobian_products` with :func:`jax.lax.associative_scan`.

References:
  N. Arbel, "How LSTM networks solve the problem of vanishing gradients" (the article).
  R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent
  neural networks", ICML 2013.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._activations import SIGMOID, Activation, as_activation
from ._cell import check_trajectory, dense_jacobian, jacobians_along, step
from ._lstm import CELL as LSTM_CELL
from ._lstm import LSTMParams, LSTMState, check_lstm_call, run_lstm
from ._rnn import RNNParams, _check_rnn_call, rnn_cell, run_rnn
from ._validation import check_array

# --------------------------------------------------------------------------- RNN


def _rnn_jac(p: RNNParams, c_prev, x, activation: Activation):
    cell = rnn_cell(activation)
    w = cell.weights(p)
    return dense_jacobian(cell, w, step(cell, w, (c_prev,), x)[1], c_prev.shape[-1])


def rnn_step_jacobian(
    params: RNNParams, c_prev: jax.Array, x: jax.Array, activation: Activation = SIGMOID
) -> jax.Array:
    r"""Article eq. (2): :math:`\partial c_t/\partial c_{t-1} = \operatorname{diag}(\phi'(z_t)) W_{rec}`.

    Args:
      params: :class:`RNNParams`; c_prev: ``(n,)``; x: ``(m,)``.
      activation: :data:`SIGMOID` or :data:`TANH`.

    Returns:
      ``(n, n)``; row ``r`` of :math:`W_{rec}` scaled by :math:`\phi'(z_{t,r})`.
    """
    activation = as_activation(activation)
    p, c_prev, x = _check_rnn_call(params, c_prev, "c_prev", x, "x", lambda m: (m,))
    return _rnn_jac(p, c_prev, x, activation)


def rnn_step_jacobians(
    params: RNNParams,
    c0: jax.Array,
    xs: jax.Array,
    activation: Activation = SIGMOID,
    *,
    trajectory: Optional[jax.Array] = None,
) -> jax.Array:
    r"""All step Jacobians :math:`\partial c_t/\partial c_{t-1}`, ``t = 1..T``, shape ``(T, n, n)``.

    One scan for the states (skipped when ``trajectory``, the ``(T, n)`` states :math:`c_1..c_T`
    that :func:`run_rnn` returned for these inputs, is passed), then one vectorised (``vmap``)
    evaluation of eq. (2).
    """
    activation = as_activation(activation)
    p, c0, xs = _check_rnn_call(params, c0, "c0", xs, "xs", lambda m: ("T", m))
    if trajectory is None:
        _, trajectory = run_rnn(p, c0, xs, activation)  # the trajectory the runner itself produces
    else:
        trajectory = check_array(trajectory, "trajectory", (xs.shape[0], c0.shape[0]))
    cell = rnn_cell(activation)
    return jacobians_along(cell, cell.weights(p), c0, trajectory, xs)


# --------------------------------------------------------------------------- LSTM joint


def _joint_jac(p: LSTMParams, h_prev, c_prev, x):
    w = LSTM_CELL.weights(p)
    return dense_jacobian(LSTM_CELL, w, step(LSTM_CELL, w, (h_prev, c_prev), x)[1], h_prev.shape[-1])


def lstm_step_jacobian(params: LSTMParams, state: LSTMState, x: jax.Array) -> jax.Array:
    r"""Exact joint Jacobian :math:`\partial (h_t, c_t)/\partial (h_{t-1}, c_{t-1})`, shape ``(2n, 2n)``.

    State ordering ``[h; c]``: blocks ``[:n, :n]`` = :math:`\partial h_t/\partial h_{t-1}`,
    ``[:n, n:]`` = :math:`\partial h_t/\partial c_{t-1}`, ``[n:, :n]`` =
    :math:`\partial c_t/\partial h_{t-1}`, ``[n:, n:]`` = :math:`\partial c_t/\partial c_{t-1} = \operatorname{diag}(f_t)`.
    Formula in the module docstring; :func:`split_joint` names the blocks.
    """
    p, s, x, _, _ = check_lstm_call(params, state, "state", x, "x", 1)
    return _joint_jac(p, s.h, s.c, x)


def lstm_step_jacobians(
    params: LSTMParams, state0: LSTMState, xs: jax.Array, *, trajectory: Optional[LSTMState] = None
) -> jax.Array:
    """All joint step Jacobians along a sequence, ``t = 1..T``: shape ``(T, 2n, 2n)`` (one scan, one vmap).

    ``trajectory``: the :class:`LSTMState` of ``(T, n)`` arrays :func:`run_lstm` returned for these
    inputs, to share one scan between several diagnostics (default: run it here).
    """
    p, s0, xs, n, _ = check_lstm_call(params, state0, "state0", xs, "xs", 2)
    if trajectory is None:
        _, traj = run_lstm(p, s0, xs)  # the trajectory the runner itself produces
    else:
        traj = check_trajectory(LSTM_CELL, trajectory, xs.shape[0], n)
    return jacobians_along(LSTM_CELL, LSTM_CELL.weights(p), s0, traj, xs)


class JointBlocks(NamedTuple):
    """The four ``(..., n, n)`` blocks of a joint ``(h, c)`` Jacobian."""

    hh: jax.Array
    hc: jax.Array
    ch: jax.Array
    cc: jax.Array


def split_joint(J: jax.Array) -> JointBlocks:
    """Split ``(..., 2n, 2n)`` joint Jacobians into named ``(..., n, n)`` blocks."""
    J = check_array(J, "J", (*J.shape[:-2], "2n", "2n"))
    d = J.shape[-1]
    if J.shape[-2] != d or d % 2:
        raise ValueError(f"J has shape {J.shape} but (..., 2n, 2n) is expected")
    n = d // 2
    return JointBlocks(J[..., :n, :n], J[..., :n, n:], J[..., n:, :n], J[..., n:, n:])


# --------------------------------------------------------------------------- products


def jacobian_products(jacs: jax.Array) -> jax.Array:
    r"""Prefix products :math:`P_k = J_k J_{k-1} \cdots J_1` for ``k = 1..T``.

    Args:
      jacs: ``(T, d, d)`` step Jacobians :math:`J_1..J_T` (time order).

    Returns:
      ``(T, d, d)``; entry ``k-1`` is :math:`\partial s_k/\partial s_0` when
      :math:`J_t = \partial s_t/\partial s_{t-1}`.  Computed with
      :func:`jax.lax.associative_scan` (``O(log T)`` depth, no Python loop).
      For :math:`\partial s_k/\partial s_j` pass ``jacs[j:k]``.  Direct
      products under- or overflow for long ``T``; use float64 or log-space
      accumulation for long horizons.
    """
    jacs = check_array(jacs, "jacs", ("T", "d", "d"))
    if jacs.shape[1] != jacs.shape[2]:
        raise ValueError(f"jacs has shape {jacs.shape} but (T, d, d) square Jacobians are expected")
    return jax.lax.associative_scan(lambda earlier, later: later @ earlier, jacs)
