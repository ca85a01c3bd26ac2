r"""Analytic one-step and multi-step Jacobians of the RNN and the LSTM.

Notation (see :mod:`lstm_jax._lstm`): :math:`W_g = [U_g \mid V_g]`,
:math:`U_g` the ``(n, n)`` block acting on :math:`h_{t-1}`; ``diag(v)`` a
diagonal matrix; :math:`\sigma' = \sigma(1-\sigma)`, :math:`\tanh' = 1-\tanh^2` (computed as :math:`\sigma(z)\sigma(-z)`, :math:`4\sigma(2z)\sigma(-2z)`: ``_activations``).

**RNN** (article eq. 2), with :math:`z_t = W_{rec} c_{t-1} + W_{in} x_t + b`:

.. math:: \frac{\partial c_t}{\partial c_{t-1}} = \operatorname{diag}(\phi'(z_t))\, W_{rec}.

**LSTM, the article's view** (eq. 6).  The article differentiates
:math:`c_t` w.r.t. :math:`c_{t-1}` through
:math:`h_{t-1} = o_{t-1} \odot \tanh(c_{t-1})` *with* :math:`o_{t-1}` *held
fixed*; with :math:`d_{t-1} = o_{t-1} \odot \tanh'(c_{t-1})` the exact
derivative of that map is :math:`A_t + B_t + C_t + D_t` with

.. math::

    A_t &= \operatorname{diag}(c_{t-1} \odot \sigma'(z_{f,t}))\, U_f\, \operatorname{diag}(d_{t-1}) \\
    B_t &= \operatorname{diag}(f_t) \\
    C_t &= \operatorname{diag}(\tilde c_t \odot \sigma'(z_{i,t}))\, U_i\, \operatorname{diag}(d_{t-1}) \\
    D_t &= \operatorname{diag}(i_t \odot \tanh'(z_{c,t}))\, U_c\, \operatorname{diag}(d_{t-1})

(:func:`article_terms`).  The article prints (:func:`article_terms_published`,
read literally left to right with vectors as diagonal factors)
:math:`A^{pub}_t = \operatorname{diag}(\sigma'(z_f)) U_f \operatorname{diag}(d_{t-1} \odot c_{t-1})`,
:math:`C^{pub}_t = \operatorname{diag}(\sigma'(z_i)) U_i \operatorname{diag}(d_{t-1} \odot \tilde c_t)`,
:math:`D^{pub}_t = \operatorname{diag}(\sigma'(z_c)) U_c \operatorname{diag}(d_{t-1} \odot i_t)`:
the factors :math:`c_{t-1}, \tilde c_t, i_t` sit on the wrong side of
:math:`U_g` (they scale rows, not columns) and :math:`D_t` has
:math:`\sigma'` where :math:`\tilde c_t = \tanh(\cdot)` needs :math:`\tanh'`.  The
article's :math:`W_g` must be restricted to :math:`U_g` in both readings: a
``(n, n+m)`` matrix cannot multiply an ``n``-vector.

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

Multi-step Jacobians are products of these
(:math:`\partial s_k/\partial s_j = J_k \cdots J_{j+1}`), formed by
:func:`jacobian_products` with :func:`jax.lax.associative_scan`.

References:
  N. Arbel, "How LSTM networks solve the problem of vanishing gradients" (the article).
  R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent
  neural networks", ICML 2013.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._activations import SIGMOID, TANH, Activation, as_activation
from ._lstm import LSTMParams, LSTMState, _gates, _update, check_lstm_call, check_lstm_params, run_lstm
from ._rnn import RNNParams, _check_rnn_call, rnn_preactivation, run_rnn
from ._scan import previous_states
from ._validation import check_array

_dsig = SIGMOID.deriv
_dtanh = TANH.deriv


# --------------------------------------------------------------------------- RNN


def _rnn_jac(p: RNNParams, c_prev, x, activation: Activation):
    return activation.deriv(rnn_preactivation(p, c_prev, x))[:, None] * p.W_rec


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
    c_prev = previous_states(c0, trajectory)
    return jax.vmap(lambda c, x: _rnn_jac(p, c, x, activation))(c_prev, xs)


# --------------------------------------------------------------------------- LSTM terms


class LSTMTerms(NamedTuple):
    r"""The four ``(n, n)`` terms of article eq. (6), :math:`\partial c_t/\partial c_{t-1} = A_t + B_t + C_t + D_t`.

    ``A`` comes from the forget gate, ``B = diag(f_t)``, ``C`` from the input
    gate, ``D`` from the candidate :math:`\tilde c_t`.  Along a sequence each
    field has a leading time axis.
    """

    A: jax.Array
    B: jax.Array
    C: jax.Array
    D: jax.Array

    def total(self) -> jax.Array:
        """:math:`A + B + C + D`."""
        return self.A + self.B + self.C + self.D


def _article_inputs(p: LSTMParams, o_prev, c_prev, x):
    n = c_prev.shape[-1]
    h_prev = o_prev * jnp.tanh(c_prev)
    g = _gates(p, h_prev, x)
    d = o_prev * _dtanh(c_prev)  # dh_{t-1}/dc_{t-1} with o_{t-1} fixed (diagonal)
    U = [W[:, :n] for W in (p.W_f, p.W_i, p.W_c)]
    return g, d, U


def _terms_corrected(p: LSTMParams, o_prev, c_prev, x) -> LSTMTerms:
    g, d, (U_f, U_i, U_c) = _article_inputs(p, o_prev, c_prev, x)
    a_f, a_i, a_c = _k_row_scales(g, c_prev)  # A + C + D = K_t diag(d_(t-1)): the same row scales as K_t
    A = a_f[:, None] * U_f * d[None, :]
    C = a_i[:, None] * U_i * d[None, :]
    D = a_c[:, None] * U_c * d[None, :]
    return LSTMTerms(A, jnp.diag(g.f), C, D)


#: readings of a vector factor ``v`` printed after a Jacobian ``M`` (``M · v``): see ``proofs/_notation.md``
READINGS = ("column", "row")


def _terms_published(p: LSTMParams, o_prev, c_prev, x, reading: str = "column") -> LSTMTerms:
    g, d, (U_f, U_i, U_c) = _article_inputs(p, o_prev, c_prev, x)

    def printed(lead, U, trailing):  # sigma'(z) · U · (o ⊗ tanh'(c)) · trailing, under the reading
        M = lead[:, None] * U * d[None, :]
        return trailing[:, None] * M if reading == "row" else M * trailing[None, :]

    A = printed(_dsig(g.z_f), U_f, c_prev)
    C = printed(_dsig(g.z_i), U_i, g.c_tilde)
    D = printed(_dsig(g.z_c), U_c, g.i)  # sigma' as printed (tanh' is right)
    return LSTMTerms(A, jnp.diag(g.f), C, D)


def _check_article_call(params, o_prev, c_prev, x):
    p, n, m = check_lstm_params(params)
    o_prev = check_array(o_prev, "o_prev", (n,))
    c_prev = check_array(c_prev, "c_prev", (n,))
    x = check_array(x, "x", (m,))
    dtype = jnp.result_type(p.W_f.dtype, o_prev.dtype, c_prev.dtype, x.dtype)
    p = jax.tree_util.tree_map(lambda a: a.astype(dtype), p)
    return p, o_prev.astype(dtype), c_prev.astype(dtype), x.astype(dtype)


def article_terms(params: LSTMParams, o_prev: jax.Array, c_prev: jax.Array, x: jax.Array) -> LSTMTerms:
    r"""Corrected terms of article eq. (6): exact :math:`\partial c_t/\partial c_{t-1}` with :math:`o_{t-1}` fixed.

    The map differentiated is :math:`c_{t-1} \mapsto c_t` with
    :math:`h_{t-1} = o_{t-1}\odot\tanh(c_{t-1})` and :math:`o_{t-1}, x_t` held
    fixed (:func:`article_cell_map`).  Formulas in the module docstring.

    Args:
      params: :class:`LSTMParams`; o_prev, c_prev: ``(n,)``; x: ``(m,)``.

    Returns:
      :class:`LSTMTerms` of ``(n, n)`` matrices.
    """
    return _terms_corrected(*_check_article_call(params, o_prev, c_prev, x))


def article_terms_published(
    params: LSTMParams, o_prev: jax.Array, c_prev: jax.Array, x: jax.Array, *, reading: str = "column"
) -> LSTMTerms:
    r"""Terms of article eq. (6) as printed (:math:`W_g \to U_g`, its ``h``-columns), under a reading.

    :math:`A = \sigma'(z_f)\cdot U_f\cdot o_{t-1}\otimes\tanh'(c_{t-1})\cdot c_{t-1}`,
    :math:`B = f_t`, :math:`C = \sigma'(z_i)\cdot U_i\cdot o_{t-1}\otimes\tanh'(c_{t-1})\cdot\tilde c_t`,
    :math:`D = \sigma'(z_c)\cdot U_c\cdot o_{t-1}\otimes\tanh'(c_{t-1})\cdot i_t`.  The leading
    :math:`\sigma'` and :math:`o_{t-1}\otimes\tanh'(c_{t-1}) = \partial h_{t-1}/\partial c_{t-1}`
    are diagonal factors in chain-rule order; the trailing vector :math:`v` (:math:`c_{t-1}`,
    :math:`\tilde c_t`, :math:`i_t`) is read by ``reading``:

    * ``"column"`` (default, the literal left-to-right reading): :math:`M\operatorname{diag}(v)`;
    * ``"row"`` (the reading the article's product-rule line
      :math:`\partial f_t/\partial c_{t-1}\cdot c_{t-1}` needs): :math:`\operatorname{diag}(v)M`.

    Under ``"row"`` :math:`A` and :math:`C` equal :func:`article_terms`; :math:`D` differs under
    both readings (:math:`\sigma'` where :math:`\tilde c_t = \tanh(\cdot)` needs :math:`\tanh'`).
    Exists so the article's formulas can be measured against autodiff.
    """
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
    return _terms_published(*_check_article_call(params, o_prev, c_prev, x), reading)


def article_cell_map(params: LSTMParams, o_prev: jax.Array, x: jax.Array) -> Callable[[jax.Array], jax.Array]:
    r"""The map the article differentiates: :math:`c_{t-1} \mapsto c_t` with :math:`h_{t-1} = o_{t-1}\odot\tanh(c_{t-1})`.

    Built on :func:`run_lstm` (one step of the same scan);
    ``jax.jacfwd(article_cell_map(p, o, x))(c)`` is the autodiff reference for :math:`A_t + B_t + C_t + D_t`.
    """
    return lambda c_prev: run_lstm(params, LSTMState(o_prev * jnp.tanh(c_prev), c_prev), x[None])[0].c


def _check_trajectory(trajectory, T: int, n: int) -> LSTMState:
    return LSTMState(check_array(trajectory.h, "trajectory.h", (T, n)), check_array(trajectory.c, "trajectory.c", (T, n)))


def lstm_terms_along(
    params: LSTMParams,
    state0: LSTMState,
    xs: jax.Array,
    terms: Callable[..., LSTMTerms] = article_terms,
    *,
    trajectory: Optional[LSTMState] = None,
) -> LSTMTerms:
    r"""Eq. (6) terms along a trajectory, for ``t = 2..T`` (leading axis ``T - 1``).

    Runs the LSTM from ``state0`` over ``xs (T, m)`` (or uses ``trajectory``, the
    :class:`LSTMState` of ``(T, n)`` arrays :func:`run_lstm` returned for these inputs);
    :math:`o_{t-1}` is the output gate of step ``t - 1``, so
    :math:`h_{t-1} = o_{t-1}\odot\tanh(c_{t-1})` holds along the trajectory.  ``terms`` is
    :func:`article_terms` (exact) or :func:`article_terms_published` (e.g.
    ``functools.partial(article_terms_published, reading="row")``).  Needs ``T >= 2``.
    """
    if not callable(terms):
        raise TypeError(f"terms is a {type(terms).__name__} ({terms!r}); expected lstm_jax.article_terms or "
                        "lstm_jax.article_terms_published (a function (params, o_prev, c_prev, x) -> LSTMTerms)")
    p, s0, xs, n, m = check_lstm_call(params, state0, "state0", xs, "xs", 2)
    if xs.shape[0] < 2:
        raise ValueError(f"xs has shape {xs.shape} but eq. (6) terms need T >= 2 steps (shape (T, {m}))")
    if trajectory is None:
        _, traj = run_lstm(p, s0, xs)  # the trajectory the runner itself produces
    else:
        traj = _check_trajectory(trajectory, xs.shape[0], n)
    h_prev = previous_states(s0.h, traj.h)
    o = jax.vmap(lambda h, x: _gates(p, h, x).o)(h_prev, xs)
    return jax.vmap(lambda o_, c_, x_: terms(p, o_, c_, x_))(o[:-1], traj.c[:-1], xs[1:])


# --------------------------------------------------------------------------- LSTM joint


def _k_row_scales(g, c_prev):
    r"""Row scales of :math:`K_t = \partial c_t/\partial h_{t-1}`: ``(a_f, a_i, a_c)`` with
    :math:`K_t = \operatorname{diag}(a_f)U_f + \operatorname{diag}(a_i)U_i + \operatorname{diag}(a_c)U_c`,
    :math:`a_f = c_{t-1}\odot\sigma'(z_f)`, :math:`a_i = \tilde c_t\odot\sigma'(z_i)`,
    :math:`a_c = i_t\odot\tanh'(z_c)`.  The one definition of :math:`K_t` (used by the joint
    Jacobian, and by ``_parallel``'s Jacobian diagonal with the diagonals of the ``U_g``)."""
    return c_prev * _dsig(g.z_f), g.c_tilde * _dsig(g.z_i), g.i * _dtanh(g.z_c)


def _k_matrix(p: LSTMParams, g, c_prev, n: int):
    r""":math:`K_t = \partial c_t/\partial h_{t-1}`, ``(n, n)`` (see :func:`_k_row_scales`)."""
    a_f, a_i, a_c = _k_row_scales(g, c_prev)
    return a_f[:, None] * p.W_f[:, :n] + a_i[:, None] * p.W_i[:, :n] + a_c[:, None] * p.W_c[:, :n]


def _joint_jac(p: LSTMParams, h_prev, c_prev, x):
    n = h_prev.shape[-1]
    g = _gates(p, h_prev, x)
    K = _k_matrix(p, g, c_prev, n)
    s = _update(c_prev, g.z_f, g.z_i, g.z_c, g.z_o)  # (h_t, c_t): the one cell update
    tc = jnp.tanh(s.c)
    e = g.o * _dtanh(s.c)  # tanh'(c_t) without cancellation (_activations)
    J_hh = (tc * _dsig(g.z_o))[:, None] * p.W_o[:, :n] + e[:, None] * K
    return _joint_blocks(J_hh, e * g.f, K, g.f)


def _joint_blocks(hh, hc_diag, ch, cc_diag):
    """``[[hh, diag(hc_diag)], [ch, diag(cc_diag)]]``, shape ``(2n, 2n)``, written by one elementwise fusion.

    Built as a ``(2, n, 2, n)`` array whose row-major reshape is the block matrix (a free reshape);
    ``jnp.block``'s concatenations and ``jnp.diag`` were measured 2-3x slower on CPU at n = 256
    (``benchmarks/jacobians.py``).
    """
    n = hh.shape[-1]
    top = (jnp.arange(2) == 0)[:, None, None, None]
    left = (jnp.arange(2) == 0)[None, None, :, None]
    on_diag = (jnp.arange(n)[:, None] == jnp.arange(n)[None, :])[None, :, None, :]
    dense = jnp.where(top, hh[None, :, None, :], ch[None, :, None, :])
    diag = jnp.where(on_diag, jnp.where(top, hc_diag[None, :, None, None], cc_diag[None, :, None, None]), 0)
    return jnp.where(left, dense, diag).reshape(2 * n, 2 * n)


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
        traj = _check_trajectory(trajectory, xs.shape[0], n)
    prev = previous_states(s0, traj)
    return jax.vmap(lambda h, c, x: _joint_jac(p, h, c, x))(prev.h, prev.c, xs)


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
