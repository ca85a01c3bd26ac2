r"""The article's eq. (6) for the LSTM, as published and corrected, and the map it differentiates.

Notation as in :mod:`lstm_jax._lstm`: :math:`W_g = [U_g \mid V_g]`, :math:`U_g` the ``(n, n)`` block acting
on :math:`h_{t-1}`.  The article differentiates :math:`c_t` w.r.t. :math:`c_{t-1}` through
:math:`h_{t-1} = o_{t-1} \odot \tanh(c_{t-1})` *with* :math:`o_{t-1}` *held fixed*; with
:math:`d_{t-1} = o_{t-1} \odot \tanh'(c_{t-1})` the exact derivative of that map is
:math:`A_t + B_t + C_t + D_t` with

.. math::

    A_t &= \operatorname{diag}(c_{t-1} \odot \sigma'(z_{f,t}))\, U_f\, \operatorname{diag}(d_{t-1}) \\
    B_t &= \operatorname{diag}(f_t) \\
    C_t &= \operatorname{diag}(\tilde c_t \odot \sigma'(z_{i,t}))\, U_i\, \operatorname{diag}(d_{t-1}) \\
    D_t &= \operatorname{diag}(i_t \odot \tanh'(z_{c,t}))\, U_c\, \operatorname{diag}(d_{t-1})

(:func:`article_terms`; the row scales are the cell's factors :math:`a_f, a_i, a_c`, :math:`f_t` of
:class:`~lstm_jax._lstm.LSTMFactors`).  The article prints (:func:`article_terms_published`, read literally
left to right with vectors as diagonal factors)
:math:`A^{pub}_t = \operatorname{diag}(\sigma'(z_f)) U_f \operatorname{diag}(d_{t-1} \odot c_{t-1})`,
:math:`C^{pub}_t = \operatorname{diag}(\sigma'(z_i)) U_i \operatorname{diag}(d_{t-1} \odot \tilde c_t)`,
:math:`D^{pub}_t = \operatorname{diag}(\sigma'(z_c)) U_c \operatorname{diag}(d_{t-1} \odot i_t)`:
the factors :math:`c_{t-1}, \tilde c_t, i_t` sit on the wrong side of :math:`U_g` (they scale rows, not
columns) and :math:`D_t` has :math:`\sigma'` where :math:`\tilde c_t = \tanh(\cdot)` needs :math:`\tanh'`.
The article's :math:`W_g` must be restricted to :math:`U_g` in both readings: a ``(n, n+m)`` matrix cannot
multiply an ``n``-vector.  ``lstm_jax.verify`` reads this module; the exact Jacobians
(:mod:`lstm_jax._jacobians`) do not.

References:
  N. Arbel, "How LSTM networks solve the problem of vanishing gradients" (the article).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._activations import SIGMOID, TANH
from ._cell import check_trajectory, step
from ._flow import ScaledMatrix, as_dense
from ._lstm import CELL as LSTM_CELL
from ._lstm import LSTMParams, LSTMState, _gates, check_lstm_call, check_lstm_params, run_lstm
from ._scan import previous_states
from ._validation import check_array

_dsig = SIGMOID.deriv
_dtanh = TANH.deriv


class LSTMTerms(NamedTuple):
    r"""The four ``(n, n)`` terms of article eq. (6), :math:`\partial c_t/\partial c_{t-1} = A_t + B_t + C_t + D_t`.

    ``A`` comes from the forget gate, ``B = diag(f_t)``, ``C`` from the input
    gate, ``D`` from the candidate :math:`\tilde c_t`.  Along a sequence each
    field has a leading time axis; from :func:`lstm_terms_along` with ``scaled=True`` each field is a
    :class:`ScaledMatrix` (the time axis on its ``row`` and ``col``).
    """

    A: jax.Array
    B: jax.Array
    C: jax.Array
    D: jax.Array

    def total(self) -> jax.Array:
        """:math:`A + B + C + D` (dense, also from the :class:`ScaledMatrix` fields of ``scaled=True``)."""
        return sum(as_dense(f) for f in self)


def _article_inputs(p: LSTMParams, o_prev, c_prev, x):
    n = c_prev.shape[-1]
    h_prev = o_prev * jnp.tanh(c_prev)
    g = _gates(p, h_prev, x)
    d = o_prev * _dtanh(c_prev)  # dh_{t-1}/dc_{t-1} with o_{t-1} fixed (diagonal)
    U = [W[:, :n] for W in (p.W_f, p.W_i, p.W_c)]
    return g, d, U


def _scaled_factors(p: LSTMParams, o_prev, c_prev, x):
    r"""One step's scalings: ``A = diag(a_f) U_f diag(d)``, ``C = diag(a_i) U_i diag(d)``, ``D = diag(a_c) U_c diag(d)``
    (:math:`A + C + D = K_t \operatorname{diag}(d_{t-1})`, the row scales of ``K_t`` the cell's own factors) and
    ``B = diag(f)``; returns ``(a_f, f, a_i, a_c, d)``."""
    d = o_prev * _dtanh(c_prev)  # dh_{t-1}/dc_{t-1} with o_{t-1} fixed (diagonal)
    F = step(LSTM_CELL, LSTM_CELL.weights(p), (o_prev * jnp.tanh(c_prev), c_prev), x)[1]
    return F.a_f, F.f, F.a_i, F.a_c, d


def _scaled_terms(p: LSTMParams, a_f, f, a_i, a_c, d) -> LSTMTerms:
    n = p.W_f.shape[0]
    U_f, U_i, U_c = (W[:, :n] for W in (p.W_f, p.W_i, p.W_c))
    return LSTMTerms(ScaledMatrix(a_f, U_f, d), ScaledMatrix(f, None, jnp.ones_like(f)), ScaledMatrix(a_i, U_i, d),
                     ScaledMatrix(a_c, U_c, d))


def _terms_corrected(p: LSTMParams, o_prev, c_prev, x) -> LSTMTerms:
    return LSTMTerms(*(M.dense() for M in _scaled_terms(p, *_scaled_factors(p, o_prev, c_prev, x))))


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


def lstm_terms_along(
    params: LSTMParams,
    state0: LSTMState,
    xs: jax.Array,
    terms: Callable[..., LSTMTerms] = article_terms,
    *,
    trajectory: Optional[LSTMState] = None,
    scaled: bool = False,
) -> LSTMTerms:
    r"""Eq. (6) terms along a trajectory, for ``t = 2..T`` (leading axis ``T - 1``).

    Runs the LSTM from ``state0`` over ``xs (T, m)`` (or uses ``trajectory``, the
    :class:`LSTMState` of ``(T, n)`` arrays :func:`run_lstm` returned for these inputs);
    :math:`o_{t-1}` is the output gate of step ``t - 1``, so
    :math:`h_{t-1} = o_{t-1}\odot\tanh(c_{t-1})` holds along the trajectory.  ``terms`` is
    :func:`article_terms` (exact) or :func:`article_terms_published` (e.g.
    ``functools.partial(article_terms_published, reading="row")``).  Needs ``T >= 2``.

    ``scaled=True`` (exact terms only) returns the same matrices in factors, each field a :class:`ScaledMatrix`:
    ``row`` and ``col`` ``(T - 1, n)``, ``U`` the shared ``(n, n)`` block of the recurrent weights (``None`` for
    ``B = diag(f_t)``), so no ``(T - 1, n, n)`` array is formed; ``lstm-jax diagnose`` takes the terms' norms this way.
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
        traj = check_trajectory(LSTM_CELL, trajectory, xs.shape[0], n)
    h_prev = previous_states(s0.h, traj.h)
    o = jax.vmap(lambda h, x: _gates(p, h, x).o)(h_prev, xs)
    if scaled:
        if terms is not article_terms:
            raise ValueError(f"scaled=True gives the exact terms (terms=lstm_jax.article_terms) only; got terms={terms!r}")
        return _scaled_terms(p, *jax.vmap(lambda o_, c_, x_: _scaled_factors(p, o_, c_, x_))(o[:-1], traj.c[:-1], xs[1:]))
    return jax.vmap(lambda o_, c_, x_: terms(p, o_, c_, x_))(o[:-1], traj.c[:-1], xs[1:])
