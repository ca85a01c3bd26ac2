r"""The LSTM cell in the article's convention.

With :math:`[h_{t-1}, x_t] \in \mathbb{R}^{n+m}` the concatenation of the
previous output and the input, one weight matrix per gate
:math:`W_g \in \mathbb{R}^{n \times (n+m)}` and optional biases :math:`b_g`:

.. math::

    f_t &= \sigma(W_f [h_{t-1}, x_t] + b_f)          && \text{forget gate}\\
    i_t &= \sigma(W_i [h_{t-1}, x_t] + b_i)          && \text{input gate}\\
    \tilde c_t &= \tanh(W_c [h_{t-1}, x_t] + b_c)    && \text{candidate}\\
    o_t &= \sigma(W_o [h_{t-1}, x_t] + b_o)          && \text{output gate}\\
    c_t &= c_{t-1} \odot f_t + \tilde c_t \odot i_t  && \text{article eq. (5)}\\
    h_t &= o_t \odot \tanh(c_t).

Gate order everywhere in this package (stacked and fused layouts): f, i, c̃, o.
We write :math:`W_g = [U_g \mid V_g]` with :math:`U_g \in \mathbb{R}^{n\times n}`
the columns acting on :math:`h_{t-1}` and :math:`V_g \in \mathbb{R}^{n\times m}`
those acting on :math:`x_t`; the Jacobians use :math:`U_g` only.

Cells work on one example: ``h, c`` of shape ``(n,)``, ``x`` of shape
``(m,)``, sequences time-major ``(T, m)``.  Batch with :func:`jax.vmap`, e.g.
``jax.vmap(run_lstm, in_axes=(None, 0, 0))`` for batch-major states
``LSTMState(h=(B, n), c=(B, n))`` and inputs ``(B, T, m)``.

References:
  S. Hochreiter, J. Schmidhuber, "Long short-term memory", Neural Computation 9(8), 1997.
  F. Gers, J. Schmidhuber, F. Cummins, "Learning to forget: continual prediction
  with LSTM", Neural Computation 12(10), 2000 (forget gate, forget bias 1.0).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._activations import SIGMOID, TANH
from ._cell import Cell, Weights, preactivations, run, step
from ._scan import check_seq_lengths
from ._validation import as_named_tuple, check_array, check_float_dtype, check_init_args, check_int, check_real, common_dtype

_dsig = SIGMOID.deriv
_dtanh = TANH.deriv


class LSTMParams(NamedTuple):
    """Per-gate LSTM parameters (a pytree), the article's layout.

    Attributes:
      W_f, W_i, W_c, W_o: ``(n, n + m)`` weights acting on ``[h_{t-1}, x_t]``.
      b_f, b_i, b_c, b_o: ``(n,)`` biases, or ``None`` (the article's bias-free cell).
    """

    W_f: jax.Array
    W_i: jax.Array
    W_c: jax.Array
    W_o: jax.Array
    b_f: Optional[jax.Array] = None
    b_i: Optional[jax.Array] = None
    b_c: Optional[jax.Array] = None
    b_o: Optional[jax.Array] = None


class FusedLSTMParams(NamedTuple):
    """Fused layout: one GEMM for all four gates.

    Attributes:
      W: ``(n + m, 4n)``; columns ``[g*n:(g+1)*n]`` are gate ``g`` in the order
        f, i, c̃, o, so ``[h, x] @ W`` gives all pre-activations.
      b: ``(4n,)`` or ``None``.
    """

    W: jax.Array
    b: Optional[jax.Array] = None


class LSTMState(NamedTuple):
    """LSTM state ``(h, c)``; each ``(n,)`` for one step or ``(T, n)`` along a sequence."""

    h: jax.Array
    c: jax.Array


class LSTMGates(NamedTuple):
    r"""Gate activations :math:`f_t, i_t, \tilde c_t, o_t` (each ``(n,)``) and pre-activations."""

    f: jax.Array
    i: jax.Array
    c_tilde: jax.Array
    o: jax.Array
    z_f: jax.Array
    z_i: jax.Array
    z_c: jax.Array
    z_o: jax.Array


_BIASES = ("b_f", "b_i", "b_c", "b_o")
_WEIGHTS = ("W_f", "W_i", "W_c", "W_o")


def init_lstm(
    key: jax.Array,
    n: int,
    m: int,
    *,
    scale: float = 1.0,
    forget_bias: float = 1.0,
    bias: bool = True,
    dtype: jnp.dtype = jnp.float32,
) -> LSTMParams:
    r"""Random LSTM parameters from an explicit PRNG ``key``.

    Each :math:`W_g = \text{scale}\cdot G_g/\sqrt{n+m}` with independent standard
    normal :math:`G_g`.  Biases are zero except :math:`b_f = ` ``forget_bias``
    (Gers et al. 2000 recommend 1.0).  ``bias=False`` gives the article's
    bias-free cell (all biases ``None``); ``forget_bias`` must then be 0.
    """
    key, n, m, scale, bias, dtype = check_init_args(key, n, m, scale, bias, dtype, floats_per_unit=4, label="init_lstm")
    forget_bias = check_real(forget_bias, "forget_bias")
    if not bias and forget_bias != 0:
        raise ValueError(f"forget_bias={forget_bias} needs bias=True (got bias=False); pass forget_bias=0.0")
    keys = jax.random.split(key, 4)
    norm = jnp.sqrt(n + m).astype(dtype)
    Ws = [scale * jax.random.normal(k, (n, n + m), dtype) / norm for k in keys]
    if bias:
        bs = [jnp.full((n,), forget_bias, dtype)] + [jnp.zeros((n,), dtype)] * 3
    else:
        bs = [None] * 4
    return LSTMParams(*Ws, *bs)


def check_lstm_params(params, name: str = "params") -> tuple[LSTMParams, int, int]:
    """Validate an LSTM parameter tree; return it as :class:`LSTMParams` with ``(n, m)``."""
    p = as_named_tuple(params, LSTMParams, name, optional=_BIASES)
    W_f = check_array(p.W_f, f"{name}.W_f", ("n", "n+m"))
    n = W_f.shape[0]
    m = W_f.shape[1] - n
    if m < 1:
        raise ValueError(
            f"{name}.W_f has shape {W_f.shape} but (n, n + m) with m >= 1 is expected: "
            f"with n = {n} rows it needs more than {n} columns"
        )
    leaves = {}
    for w in _WEIGHTS:
        leaves[w] = check_array(getattr(p, w), f"{name}.{w}", (n, n + m))
    for b in _BIASES:
        v = getattr(p, b)
        leaves[b] = None if v is None else check_array(v, f"{name}.{b}", (n,))
    common_dtype(name, **leaves)
    return LSTMParams(**leaves), n, m


def _fused(p: LSTMParams, n: int) -> FusedLSTMParams:
    W = jnp.concatenate([getattr(p, w).T for w in _WEIGHTS], axis=1)
    bs = [getattr(p, b) for b in _BIASES]
    if all(b is None for b in bs):
        return FusedLSTMParams(W, None)
    return FusedLSTMParams(W, jnp.concatenate([jnp.zeros((n,), W.dtype) if v is None else v for v in bs]))


def fuse_lstm_params(params: LSTMParams) -> FusedLSTMParams:
    """Per-gate :class:`LSTMParams` → :class:`FusedLSTMParams` (gate order f, i, c̃, o).

    Missing biases become zeros in the fused bias unless all four are ``None``.
    """
    p, n, _ = check_lstm_params(params)
    return _fused(p, n)


def unfuse_lstm_params(fused: FusedLSTMParams, n: int) -> LSTMParams:
    """:class:`FusedLSTMParams` → per-gate :class:`LSTMParams` (inverse of :func:`fuse_lstm_params`)."""
    n = check_int(n, "n", lo=1)
    f = as_named_tuple(fused, FusedLSTMParams, "fused", optional=("b",))
    W = check_array(f.W, "fused.W", ("n+m", 4 * n))
    if W.shape[0] <= n:
        raise ValueError(f"fused.W has shape {W.shape} but (n + m, 4n) with n = {n}, m >= 1 is expected")
    Ws = [W[:, g * n:(g + 1) * n].T for g in range(4)]
    if f.b is None:
        return LSTMParams(*Ws)
    b = check_array(f.b, "fused.b", (4 * n,))
    return LSTMParams(*Ws, *[b[g * n:(g + 1) * n] for g in range(4)])


class LSTMFactors(NamedTuple):
    r"""The six diagonal factors of one step's joint Jacobian, the LSTM's :class:`~lstm_jax._cell.Cell` factors.

    ``a`` ``(..., 4n)`` holds, in gate order f, i, c̃, o, :math:`a_f = c_{t-1}\sigma'(z_f)`,
    :math:`a_i = \tilde c_t\sigma'(z_i)`, :math:`a_c = i_t\tanh'(z_c)` (the row scales of
    :math:`K_t = \partial c_t/\partial h_{t-1} = \operatorname{diag}(a_f)U_f + \operatorname{diag}(a_i)U_i
    + \operatorname{diag}(a_c)U_c`) and :math:`a_o = \tanh(c_t)\sigma'(z_o)`, stored together so that the
    cotangent of all four pre-activations is one product; ``f`` is :math:`f_t`
    (:math:`\partial c_t/\partial c_{t-1}`, the article's :math:`B_t`) and ``e`` is :math:`e_t = o_t\tanh'(c_t)`:

    .. math::

        \delta c_t = a_f\,\delta z_f + a_i\,\delta z_i + a_c\,\delta z_c + f_t\,\delta c_{t-1}, \qquad
        \delta h_t = a_o\,\delta z_o + e_t\,\delta c_t,

    with :math:`\delta z_g = U_g\,\delta h_{t-1}`: the joint Jacobian of :func:`~lstm_jax.lstm_step_jacobian`.
    """

    a: jax.Array
    f: jax.Array
    e: jax.Array

    def gate(self, g: int) -> jax.Array:
        """The row scale of gate ``g`` (0 f, 1 i, 2 c̃, 3 o)."""
        n = self.f.shape[-1]
        return self.a[..., g * n:(g + 1) * n]

    a_f = property(lambda self: self.gate(0))
    a_i = property(lambda self: self.gate(1))
    a_c = property(lambda self: self.gate(2))
    a_o = property(lambda self: self.gate(3))


def _weights(p: LSTMParams) -> Weights:
    # Fused (n, 4n) and (m, 4n) weights, gate order f, i, c~, o: two GEMMs per step instead of eight.  The input
    # projection stays inside the step: hoisting it out as one (T, 4n) GEMM was measured slower for batches
    # on CPU (it streams a 4n-wide array through memory).
    n = p.W_f.shape[0]
    W, b = _fused(p, n)
    return Weights(W[:n], W[n:], None, b)


def _update(blocks, z_h, z_x):
    """The cell update from the pre-activations (gate order f, i, c~, o): eq. (5), the output and the factors."""
    _, c_prev = blocks
    z_f, z_i, z_c, z_o = jnp.split(z_h + z_x, 4, axis=-1)
    f, i, g, o = jax.nn.sigmoid(z_f), jax.nn.sigmoid(z_i), jnp.tanh(z_c), jax.nn.sigmoid(z_o)
    c = c_prev * f + g * i  # article eq. (5)
    tc = jnp.tanh(c)
    F = LSTMFactors(jnp.concatenate([c_prev * _dsig(z_f), g * _dsig(z_i), i * _dtanh(z_c), tc * _dsig(z_o)], axis=-1),
                    f, o * _dtanh(c))
    return (o * tc, c), F


def _tangent(F: LSTMFactors, dz, ds):
    p_f, p_i, p_c, p_o = jnp.split(F.a * dz, 4, axis=-1)
    dc = p_f + p_i + p_c + F.f * ds[1]
    return p_o + F.e * dc, dc


def _cotangent(F: LSTMFactors, g):
    g_h, g_c = g
    g_c = g_c + F.e * g_h  # the cotangent reaching c_t
    dz = F.a * jnp.concatenate([g_c, g_c, g_c, g_h], axis=-1)
    return dz, dz, (None, F.f * g_c)


def _zero(n, dtype):
    return LSTMState(jnp.zeros((n,), dtype), jnp.zeros((n,), dtype))


CELL = Cell(
    kind="lstm", blocks=("h", "c"), out_block=0, rec_block=0, params_type=LSTMParams,
    check=lambda params, name="params": check_lstm_params(params, name),
    weights=_weights, update=_update, tangent=_tangent, cotangent=_cotangent,
    to_blocks=lambda s: (s.h, s.c), from_blocks=lambda b: LSTMState(*b), zero=_zero,
    coerce=lambda s, name: as_named_tuple(s, LSTMState, name),
    description="LSTM; state s_t = [h_t; c_t] (2n), exact joint Jacobian; eq. (6) terms A_t, B_t, C_t, D_t of "
                "dc_t/dc_(t-1) (lstm_terms_along, corrected form)",
)


def _gates(p: LSTMParams, h_prev: jax.Array, x: jax.Array) -> LSTMGates:
    z_h, z_x = preactivations(CELL, _weights(p), (h_prev, None), x)
    z_f, z_i, z_c, z_o = jnp.split(z_h + z_x, 4, axis=-1)
    return LSTMGates(
        jax.nn.sigmoid(z_f), jax.nn.sigmoid(z_i), jnp.tanh(z_c), jax.nn.sigmoid(z_o),
        z_f, z_i, z_c, z_o,
    )


def _lstm_step(p: LSTMParams, state: LSTMState, x: jax.Array) -> LSTMState:
    return LSTMState(*step(CELL, _weights(p), (state.h, state.c), x)[0])


def _check_state(state, name: str, n: int) -> LSTMState:
    s = as_named_tuple(state, LSTMState, name)
    h = check_array(s.h, f"{name}.h", (n,))
    c = check_array(s.c, f"{name}.c", (n,))
    return LSTMState(h, c)


def check_lstm_call(params, state, state_name: str, x, x_name: str, x_rank: int):
    """Validate (params, state, input); promote all to one dtype.  Returns ``(p, state, x, n, m)``."""
    p, n, m = check_lstm_params(params)
    s = _check_state(state, state_name, n)
    x = check_array(x, x_name, (m,) if x_rank == 1 else ("T", m))
    dtype = jnp.result_type(p.W_f.dtype, s.h.dtype, s.c.dtype, x.dtype)
    cast = lambda a: a.astype(dtype)  # noqa: E731
    return jax.tree_util.tree_map(cast, p), jax.tree_util.tree_map(cast, s), cast(x), n, m


def lstm_gates(params: LSTMParams, h_prev: jax.Array, x: jax.Array) -> LSTMGates:
    r"""Gates :math:`f_t, i_t, \tilde c_t, o_t` and their pre-activations at one step.

    Args:
      params: :class:`LSTMParams`.
      h_prev: ``(n,)`` previous output :math:`h_{t-1}`.
      x: ``(m,)`` input :math:`x_t`.
    """
    p, n, m = check_lstm_params(params)
    h_prev = check_array(h_prev, "h_prev", (n,))
    x = check_array(x, "x", (m,))
    return _gates(p, h_prev, x)


def lstm_step(params: LSTMParams, state: LSTMState, x: jax.Array) -> LSTMState:
    r"""One LSTM step :math:`(h_{t-1}, c_{t-1}), x_t \mapsto (h_t, c_t)` (module docstring equations).

    Args:
      params: :class:`LSTMParams` (or a dict with the same keys).
      state: :class:`LSTMState` ``(h, c)``, each ``(n,)``.
      x: ``(m,)`` input.

    Returns:
      the new :class:`LSTMState`, in the promoted dtype of the arguments.
    """
    p, s, x, _, _ = check_lstm_call(params, state, "state", x, "x", 1)
    return _lstm_step(p, s, x)


def run_lstm(
    params: LSTMParams,
    state0: LSTMState,
    xs: jax.Array,
    *,
    unroll: int | bool = 1,
    remat: bool | int = False,
    seq_lengths=None,
) -> tuple[LSTMState, LSTMState]:
    r"""Run the LSTM over a time-major sequence with :func:`jax.lax.scan`.

    Args:
      params: :class:`LSTMParams`.
      state0: initial :class:`LSTMState` ``(h_0, c_0)``, each ``(n,)``.
      xs: ``(T, m)`` inputs :math:`x_1..x_T` (``T >= 1``).
      unroll: an int in ``1..T``, passed to :func:`jax.lax.scan` (``True``/``0``, which
        ``lax.scan`` reads as a full unroll, are rejected: pass ``T``).
      remat: memory of reverse-mode differentiation: ``False`` stores every step,
        ``True`` checkpoints each step (:func:`jax.checkpoint`), an int ``k > 1``
        checkpoints segments of ``k`` steps (nested scans; ``k ~ sqrt(T)`` for
        :math:`O(\sqrt{T})` memory).  See ``lstm_jax._scan``.
      seq_lengths: ``None`` or the number ``L`` (``0 <= L <= T``) of valid steps of this right-padded
        sequence: steps ``t > L`` keep the state (identity Jacobian) and output zeros; ``final`` is the
        state after step ``L``.  Batch with :func:`jax.vmap` (``L`` then has shape ``(B,)``).

    Returns:
      ``(final, trajectory)``: ``final`` is :math:`(h_T, c_T)`; ``trajectory``
      is an :class:`LSTMState` of ``(T, n)`` arrays holding :math:`(h_t, c_t)`
      for ``t = 1..T``.
    """
    p, s0, xs, _, _ = check_lstm_call(params, state0, "state0", xs, "xs", 2)
    L = check_seq_lengths(seq_lengths, xs.shape[0])
    return run(CELL, _weights(p), s0, xs, unroll=unroll, remat=remat, seq_lengths=L)


def zero_state(n: int, dtype: jnp.dtype = jnp.float32) -> LSTMState:
    """The zero state ``(h_0, c_0) = (0, 0)`` of size ``n`` (an int >= 1)."""
    n, dtype = check_int(n, "n", lo=1), check_float_dtype(dtype)
    return LSTMState(jnp.zeros((n,), dtype), jnp.zeros((n,), dtype))
