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

from ._scan import check_seq_lengths, scan_steps
from ._validation import as_named_tuple, check_array, check_float_dtype, check_init_args, check_int, check_real, common_dtype



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


def _preact(W: jax.Array, b: Optional[jax.Array], h: jax.Array, x: jax.Array) -> jax.Array:
    # One GEMV on [h; x] (a vector concatenation) instead of W[:, :n] @ h + W[:, n:] @ x: column slices
    # of W are strided copies of the matrix (measured 3x slower at n = 256, benchmarks/jacobians.py).
    z = W @ jnp.concatenate([h, x], axis=-1)
    return z if b is None else z + b


def _gates(p: LSTMParams, h_prev: jax.Array, x: jax.Array) -> LSTMGates:
    z_f = _preact(p.W_f, p.b_f, h_prev, x)
    z_i = _preact(p.W_i, p.b_i, h_prev, x)
    z_c = _preact(p.W_c, p.b_c, h_prev, x)
    z_o = _preact(p.W_o, p.b_o, h_prev, x)
    return LSTMGates(
        jax.nn.sigmoid(z_f), jax.nn.sigmoid(z_i), jnp.tanh(z_c), jax.nn.sigmoid(z_o),
        z_f, z_i, z_c, z_o,
    )


def _update(c_prev: jax.Array, z_f, z_i, z_c, z_o) -> LSTMState:
    """The cell update from the four pre-activations: eq. (5) and the output."""
    c = c_prev * jax.nn.sigmoid(z_f) + jnp.tanh(z_c) * jax.nn.sigmoid(z_i)  # article eq. (5)
    return LSTMState(jax.nn.sigmoid(z_o) * jnp.tanh(c), c)


def _lstm_step(p: LSTMParams, state: LSTMState, x: jax.Array) -> LSTMState:
    g = _gates(p, state.h, x)
    return _update(state.c, g.z_f, g.z_i, g.z_c, g.z_o)


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
    p, s0, xs, n, _ = check_lstm_call(params, state0, "state0", xs, "xs", 2)
    L = check_seq_lengths(seq_lengths, xs.shape[0])
    # Speed: fused (n, 4n) and (m, 4n) weights, gate order f, i, c~, o: two GEMMs per step instead of eight.
    # The input projection stays inside the step: hoisting it out as one (T, 4n) GEMM was measured slower
    # for batches on CPU (it streams a 4n-wide array through memory).
    W, b = _fused(p, n)
    W_h, W_x = W[:n], W[n:]

    def step(s, x):
        z = s.h @ W_h + x @ W_x
        s_new = _update(s.c, *jnp.split(z if b is None else z + b, 4, axis=-1))
        return s_new, s_new

    return scan_steps(step, s0, xs, unroll=unroll, remat=remat, seq_lengths=L)


def zero_state(n: int, dtype: jnp.dtype = jnp.float32) -> LSTMState:
    """The zero state ``(h_0, c_0) = (0, 0)`` of size ``n`` (an int >= 1)."""
    n, dtype = check_int(n, "n", lo=1), check_float_dtype(dtype)
    return LSTMState(jnp.zeros((n,), dtype), jnp.zeros((n,), dtype))
