r"""The GRU cell in the PyTorch / cuDNN convention, its exact step Jacobian and the GRU analogue of eq. (6).

With :math:`h_{t-1} \in \mathbb{R}^n`, :math:`x_t \in \mathbb{R}^m`, per-gate weights
:math:`W_g = [U_g \mid V_g] \in \mathbb{R}^{n\times(n+m)}` acting on :math:`[h_{t-1}, x_t]`
(the layout of :class:`~lstm_jax.LSTMParams`; :math:`U_g` on :math:`h_{t-1}`, :math:`V_g` on :math:`x_t`):

.. math::

    r_t &= \sigma(U_r h_{t-1} + V_r x_t + b_r)                          && \text{reset gate}\\
    z_t &= \sigma(U_z h_{t-1} + V_z x_t + b_z)                          && \text{update gate}\\
    q_t &= U_n h_{t-1} + b_{hn}                                         && \text{hidden part of the candidate}\\
    n_t &= \tanh(V_n x_t + b_{in} + r_t \odot q_t)                      && \text{candidate}\\
    h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}.

Gate order r, z, n (PyTorch's ``weight_ih_l0`` rows).  The reset gate multiplies the hidden
matmul *after* it is formed (:math:`r\odot(U_n h + b_{hn})`, PyTorch / cuDNN), not its input
(:math:`U_n(r\odot h)`, Cho et al. 2014's original), so the candidate has two biases:
:math:`b_{in}` outside and :math:`b_{hn}` inside the reset product.  PyTorch's ``b_ir + b_hr`` and
``b_iz + b_hz`` act only as sums and are stored summed in ``b_r``, ``b_z``.

**Exact step Jacobian.**  With :math:`a_r, a_z, a_n` the pre-activations of :math:`r, z, n`,
:math:`\sigma'(a) = \sigma(a)\sigma(-a)`, :math:`\tanh' = 1 - \tanh^2` and
:math:`1 - z_t = \sigma(-a_z)` (exact in float32 when :math:`z_t \to 1`):

.. math::

    \frac{\partial h_t}{\partial h_{t-1}} =
      \underbrace{\operatorname{diag}(z_t)}_{B_t}
    + \underbrace{\operatorname{diag}\big((h_{t-1} - n_t)\odot\sigma'(a_z)\big) U_z}_{Z_t}
    + \underbrace{\operatorname{diag}\big((1-z_t)\odot\tanh'(a_n)\odot q_t\odot\sigma'(a_r)\big) U_r}_{R_t}
    + \underbrace{\operatorname{diag}\big((1-z_t)\odot\tanh'(a_n)\odot r_t\big) U_n}_{N_t}.

This is the GRU counterpart of the article's eq. (6) :math:`A_t + B_t + C_t + D_t`
(:class:`GRUTerms`): :math:`B_t = \operatorname{diag}(z_t)` is the additive path, the analogue
of the LSTM's :math:`\operatorname{diag}(f_t)` (a unit with :math:`z_t \approx 1` copies its state
forward, the GRU's constant error carousel); :math:`Z_t, R_t, N_t` are the gated terms through
the update gate, the reset gate and the candidate.  The GRU state is :math:`h_t` alone, so unlike
the LSTM's eq. (6) (which holds :math:`o_{t-1}` fixed) the four terms sum to the *whole* step
Jacobian.

References:
  K. Cho et al., "Learning phrase representations using RNN encoder-decoder for statistical
  machine translation", EMNLP 2014 (the GRU).
  PyTorch ``torch.nn.GRU`` documentation (the convention used here, also cuDNN's).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._activations import SIGMOID, TANH
from ._cell import Cell, Weights, check_trajectory, dense_jacobian, jacobians_along, preactivations, run, step
from ._flow import ScaledMatrix, as_dense
from ._scan import check_seq_lengths, previous_states
from ._validation import as_named_tuple, check_array, check_init_args, common_dtype

_dsig = SIGMOID.deriv
_dtanh = TANH.deriv
_WEIGHTS = ("W_r", "W_z", "W_n")
_BIASES = ("b_r", "b_z", "b_in", "b_hn")


class GRUParams(NamedTuple):
    r"""Per-gate GRU parameters (a pytree), PyTorch / cuDNN convention (module docstring).

    Attributes:
      W_r, W_z, W_n: ``(n, n + m)`` weights acting on ``[h_{t-1}, x_t]``; ``W_g = [U_g | V_g]``.
      b_r, b_z: ``(n,)`` gate biases (PyTorch's ``b_i* + b_h*``), or ``None``.
      b_in: ``(n,)`` candidate bias outside the reset product, or ``None``.
      b_hn: ``(n,)`` candidate bias inside the reset product, :math:`r\odot(U_n h + b_{hn})`, or ``None``.
    """

    W_r: jax.Array
    W_z: jax.Array
    W_n: jax.Array
    b_r: Optional[jax.Array] = None
    b_z: Optional[jax.Array] = None
    b_in: Optional[jax.Array] = None
    b_hn: Optional[jax.Array] = None


class GRUGates(NamedTuple):
    r"""Gate values at one step: :math:`r_t, z_t, n_t`, the pre-activations :math:`a_r, a_z, a_n` and :math:`q_t = U_n h_{t-1} + b_{hn}`."""

    r: jax.Array
    z: jax.Array
    n: jax.Array
    a_r: jax.Array
    a_z: jax.Array
    a_n: jax.Array
    q: jax.Array


class GRUTerms(NamedTuple):
    r"""The four ``(n, n)`` terms of :math:`\partial h_t/\partial h_{t-1} = B_t + Z_t + R_t + N_t` (module docstring).

    ``B = diag(z_t)`` (the additive path), ``Z`` through the update gate, ``R`` through the reset gate,
    ``N`` through the candidate.  Along a sequence each field has a leading time axis; from
    :func:`gru_terms_along` with ``scaled=True`` each field is a :class:`ScaledMatrix` (the time axis on its ``row``
    and ``col``).
    """

    B: jax.Array
    Z: jax.Array
    R: jax.Array
    N: jax.Array

    def total(self) -> jax.Array:
        """:math:`B + Z + R + N`, the exact step Jacobian (dense, also from the :class:`ScaledMatrix` fields of
        ``scaled=True``)."""
        return sum(as_dense(f) for f in self)


def init_gru(
    key: jax.Array,
    n: int,
    m: int,
    *,
    scale: float = 1.0,
    bias: bool = True,
    dtype: jnp.dtype = jnp.float32,
) -> GRUParams:
    r"""Random GRU parameters from an explicit PRNG ``key``.

    Each :math:`W_g = \text{scale}\cdot G_g/\sqrt{n+m}` with independent standard normal :math:`G_g`;
    biases zero (``bias=True``) or ``None``.
    """
    key, n, m, scale, bias, dtype = check_init_args(key, n, m, scale, bias, dtype, floats_per_unit=3, label="init_gru")
    keys = jax.random.split(key, 3)
    norm = jnp.sqrt(n + m).astype(dtype)
    Ws = [scale * jax.random.normal(k, (n, n + m), dtype) / norm for k in keys]
    bs = [jnp.zeros((n,), dtype) for _ in _BIASES] if bias else [None] * 4
    return GRUParams(*Ws, *bs)


def check_gru_params(params, name: str = "params") -> tuple[GRUParams, int, int]:
    """Validate a GRU parameter tree; return it as :class:`GRUParams` with ``(n, m)``."""
    p = as_named_tuple(params, GRUParams, name, optional=_BIASES)
    W_r = check_array(p.W_r, f"{name}.W_r", ("n", "n+m"))
    n = W_r.shape[0]
    m = W_r.shape[1] - n
    if m < 1:
        raise ValueError(
            f"{name}.W_r has shape {W_r.shape} but (n, n + m) with m >= 1 is expected: "
            f"with n = {n} rows it needs more than {n} columns"
        )
    leaves = {w: check_array(getattr(p, w), f"{name}.{w}", (n, n + m)) for w in _WEIGHTS}
    for b in _BIASES:
        v = getattr(p, b)
        leaves[b] = None if v is None else check_array(v, f"{name}.{b}", (n,))
    common_dtype(name, **leaves)
    return GRUParams(**leaves), n, m


def _gates_from(a_r, a_z, q, v_n) -> GRUGates:
    """The gates from the pre-activations :math:`a_r, a_z`, :math:`q = U_n h + b_{hn}` and the candidate's
    input part :math:`v_n = V_n x + b_{in}` (any leading batch shape; shared with the batch runner)."""
    r = jax.nn.sigmoid(a_r)
    a_n = v_n + r * q
    return GRUGates(r, jax.nn.sigmoid(a_z), jnp.tanh(a_n), a_r, a_z, a_n, q)


class GRUFactors(NamedTuple):
    r"""The five diagonal factors of one step (each ``(..., n)``), the GRU's :class:`~lstm_jax._cell.Cell` factors.

    :math:`k_n = (1 - z_t)\tanh'(a_n)`, :math:`k_r = q_t\sigma'(a_r)`, :math:`r_t`,
    :math:`k_z = (h_{t-1} - n_t)\sigma'(a_z)` and :math:`z_t`, so that with :math:`\delta a^h_g = U_g\,\delta h_{t-1}`

    .. math::

        \delta h_t = k_n\,(k_r\,\delta a^h_r + r_t\,\delta q) + k_z\,\delta a^h_z + z_t\,\delta h_{t-1}

    (:math:`\delta q = \delta a^h_n`): the four terms :math:`N_t + R_t + Z_t + B_t` of the module docstring.
    """

    k_n: jax.Array
    k_r: jax.Array
    r: jax.Array
    k_z: jax.Array
    z: jax.Array


def _weights(p: GRUParams) -> Weights:
    """Row layout, blocks r, z, n: ``W_h = [U_r | U_z | U_n]^T``, ``b_h = [0, 0, b_hn]``, ``b_x = [b_r, b_z, b_in]``."""
    n = p.W_r.shape[0]
    Ws = (p.W_r, p.W_z, p.W_n)
    W_h = jnp.concatenate([W[:, :n].T for W in Ws], axis=1)
    W_x = jnp.concatenate([W[:, n:].T for W in Ws], axis=1)
    zero = jnp.zeros((n,), W_h.dtype)
    b_h = None if p.b_hn is None else jnp.concatenate([zero, zero, p.b_hn])
    bx = (p.b_r, p.b_z, p.b_in)
    b_x = None if all(v is None for v in bx) else jnp.concatenate([zero if v is None else v for v in bx])
    return Weights(W_h, W_x, b_h, b_x)


def _gates_of(z_h, z_x) -> GRUGates:
    """The gates from the pre-activations ``z_h = [U_r h, U_z h, U_n h + b_hn]``, ``z_x = V x + b_x``."""
    h_r, h_z, q = jnp.split(z_h, 3, axis=-1)
    x_r, x_z, x_n = jnp.split(z_x, 3, axis=-1)
    return _gates_from(h_r + x_r, h_z + x_z, q, x_n)


def _update_cell(blocks, z_h, z_x):
    (h_prev,) = blocks
    g = _gates_of(z_h, z_x)
    F = GRUFactors(jax.nn.sigmoid(-g.a_z) * _dtanh(g.a_n), g.q * _dsig(g.a_r), g.r, (h_prev - g.n) * _dsig(g.a_z), g.z)
    return (_update(h_prev, g),), F


def _tangent(F: GRUFactors, dz, ds):
    d_r, d_z, d_q = jnp.split(dz, 3, axis=-1)
    return (F.k_n * (F.k_r * d_r + F.r * d_q) + F.k_z * d_z + F.z * ds[0],)


def _cotangent(F: GRUFactors, g):
    (g_h,) = g
    da_n = g_h * F.k_n
    d_r, d_z = da_n * F.k_r, g_h * F.k_z
    return (jnp.concatenate([d_r, d_z, da_n * F.r], axis=-1), jnp.concatenate([d_r, d_z, da_n], axis=-1),
            (g_h * F.z,))


CELL = Cell(
    kind="gru", blocks=("h",), out_block=0, rec_block=0, params_type=GRUParams,
    check=lambda params, name="params": check_gru_params(params, name),
    weights=_weights, update=_update_cell, tangent=_tangent, cotangent=_cotangent,
    to_blocks=lambda h: (h,), from_blocks=lambda b: b[0], zero=lambda n, dtype: jnp.zeros((n,), dtype), coerce=lambda s, name: s,
    description="GRU (PyTorch convention, h_t = (1 - z_t) n_t + z_t h_(t-1)); state h_t (n); the additive diag(z_t) "
                "path plus the gated terms (gru_terms_along)",
)


def _gates(p: GRUParams, h_prev: jax.Array, x: jax.Array) -> GRUGates:
    return _gates_of(*preactivations(CELL, _weights(p), (h_prev,), x))


def _update(h_prev, g: GRUGates):
    # h_t = (1 - z) n + z h_{t-1} = n + z (h_{t-1} - n): one product, no 1 - z rounding
    return g.n + g.z * (h_prev - g.n)


def _gru_step(p: GRUParams, h_prev, x):
    return step(CELL, _weights(p), (h_prev,), x)[0][0]


def _check_gru_call(params, h, h_name, x, x_name, x_shape):
    p, n, m = check_gru_params(params)
    h = check_array(h, h_name, (n,))
    x = check_array(x, x_name, x_shape(m))
    dtype = jnp.result_type(p.W_r.dtype, h.dtype, x.dtype)
    p = jax.tree_util.tree_map(lambda a: a.astype(dtype), p)
    return p, h.astype(dtype), x.astype(dtype)


def gru_gates(params: GRUParams, h_prev: jax.Array, x: jax.Array) -> GRUGates:
    """Gates :math:`r_t, z_t, n_t`, their pre-activations and :math:`q_t` at one step (``h_prev (n,)``, ``x (m,)``)."""
    p, h_prev, x = _check_gru_call(params, h_prev, "h_prev", x, "x", lambda m: (m,))
    return _gates(p, h_prev, x)


def gru_step(params: GRUParams, h_prev: jax.Array, x: jax.Array) -> jax.Array:
    r"""One GRU step :math:`h_{t-1}, x_t \mapsto h_t` (module docstring equations).

    Args:
      params: :class:`GRUParams` (or a dict with the same keys).
      h_prev: ``(n,)``; x: ``(m,)``.

    Returns:
      ``(n,)`` new state, in the promoted dtype of the arguments.
    """
    p, h_prev, x = _check_gru_call(params, h_prev, "h_prev", x, "x", lambda m: (m,))
    return _gru_step(p, h_prev, x)


def run_gru(
    params: GRUParams,
    h0: jax.Array,
    xs: jax.Array,
    *,
    unroll: int | bool = 1,
    remat: bool | int = False,
    seq_lengths=None,
) -> tuple[jax.Array, jax.Array]:
    r"""Run the GRU over a time-major sequence with :func:`jax.lax.scan`.

    Args:
      params: :class:`GRUParams`.
      h0: ``(n,)`` initial state.
      xs: ``(T, m)`` inputs :math:`x_1..x_T` (``T >= 1``).
      unroll, remat: as in :func:`~lstm_jax.run_lstm` (see ``lstm_jax._scan``).
      seq_lengths: ``None`` or the number ``L`` (``0 <= L <= T``) of valid steps of this right-padded
        sequence: steps ``t > L`` keep the state (identity Jacobian) and output zeros.  Batch with
        :func:`jax.vmap` (``L`` then has shape ``(B,)``).

    Returns:
      ``(h_T, hs)``: ``h_T`` ``(n,)`` (the state after the last valid step) and ``hs`` ``(T, n)``.
    """
    p, h0, xs = _check_gru_call(params, h0, "h0", xs, "xs", lambda m: ("T", m))
    L = check_seq_lengths(seq_lengths, xs.shape[0])

    return run(CELL, _weights(p), h0, xs, unroll=unroll, remat=remat, seq_lengths=L)


def _scaled_factors(p: GRUParams, h_prev, x):
    """One step's row scalings of ``Z, R, N`` (``diag(s) U``) and the diagonal ``z`` of ``B``: ``(z, k_z, k_n k_r, k_n r)``."""
    F = step(CELL, _weights(p), (h_prev,), x)[1]
    return F.z, F.k_z, F.k_n * F.k_r, F.k_n * F.r


def _scaled_terms(p: GRUParams, z, s_z, s_r, s_n) -> GRUTerms:
    n = p.W_z.shape[0]
    U_r, U_z, U_n = (W[:, :n] for W in (p.W_r, p.W_z, p.W_n))
    one = jnp.ones_like(z)
    return GRUTerms(B=ScaledMatrix(z, None, one), Z=ScaledMatrix(s_z, U_z, one), R=ScaledMatrix(s_r, U_r, one),
                    N=ScaledMatrix(s_n, U_n, one))


def _terms(p: GRUParams, h_prev, x) -> GRUTerms:
    return GRUTerms(*(M.dense() for M in _scaled_terms(p, *_scaled_factors(p, h_prev, x))))


def _jac(p: GRUParams, h_prev, x):
    w = _weights(p)
    return dense_jacobian(CELL, w, step(CELL, w, (h_prev,), x)[1], h_prev.shape[-1])


def gru_terms(params: GRUParams, h_prev: jax.Array, x: jax.Array) -> GRUTerms:
    r"""The four terms :math:`B_t, Z_t, R_t, N_t` of :math:`\partial h_t/\partial h_{t-1}` (module docstring), each ``(n, n)``."""
    p, h_prev, x = _check_gru_call(params, h_prev, "h_prev", x, "x", lambda m: (m,))
    return _terms(p, h_prev, x)


def gru_terms_along(params: GRUParams, h0: jax.Array, xs: jax.Array, *, trajectory: Optional[jax.Array] = None,
                    scaled: bool = False) -> GRUTerms:
    """:class:`GRUTerms` along a trajectory from ``h0 (n,)`` over ``xs (T, m)``, for ``t = 1..T`` (leading axis ``T``).

    ``trajectory``: the ``(T, n)`` states :func:`run_gru` returned for these inputs (default: run it here).
    ``scaled=True``: the same matrices in factors, each field a :class:`ScaledMatrix` (``row`` and ``col`` ``(T, n)``,
    ``U`` the shared ``(n, n)`` recurrent block, ``None`` for ``B``), so no ``(T, n, n)`` array is formed.
    """
    p, h0, xs = _check_gru_call(params, h0, "h0", xs, "xs", lambda m: ("T", m))
    hs = run_gru(p, h0, xs)[1] if trajectory is None else check_trajectory(CELL, trajectory, xs.shape[0], h0.shape[0])
    if scaled:
        return _scaled_terms(p, *jax.vmap(lambda h, x: _scaled_factors(p, h, x))(previous_states(h0, hs), xs))
    return jax.vmap(lambda h, x: _terms(p, h, x))(previous_states(h0, hs), xs)


def gru_flow_map(params: GRUParams, xs: jax.Array):
    r"""The map :math:`h_0 \mapsto h_T` through :func:`run_gru` (the same ``lax.scan``): the autodiff reference
    for :math:`\partial h_T/\partial h_0` via ``jax.jacfwd(gru_flow_map(p, xs))(h0)``."""
    return lambda h0: run_gru(params, h0, xs)[0]


def gru_step_jacobian(params: GRUParams, h_prev: jax.Array, x: jax.Array) -> jax.Array:
    r"""Exact :math:`\partial h_t/\partial h_{t-1}`, ``(n, n)`` (module docstring; equals ``gru_terms(...).total()``)."""
    p, h_prev, x = _check_gru_call(params, h_prev, "h_prev", x, "x", lambda m: (m,))
    return _jac(p, h_prev, x)


def gru_step_jacobians(params: GRUParams, h0: jax.Array, xs: jax.Array, *, trajectory: Optional[jax.Array] = None) -> jax.Array:
    """All step Jacobians :math:`\\partial h_t/\\partial h_{t-1}`, ``t = 1..T``: ``(T, n, n)`` (one scan, one vmap).

    ``trajectory``: the ``(T, n)`` states :func:`run_gru` returned for these inputs (default: run it here).
    """
    p, h0, xs = _check_gru_call(params, h0, "h0", xs, "xs", lambda m: ("T", m))
    hs = run_gru(p, h0, xs)[1] if trajectory is None else check_trajectory(CELL, trajectory, xs.shape[0], h0.shape[0])
    return jacobians_along(CELL, _weights(p), h0, hs, xs)
