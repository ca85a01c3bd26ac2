r"""The mLSTM of xLSTM (Beck et al. 2024): a matrix memory per head, gates from the input only.

With :math:`x_t \in \mathbb{R}^m`, ``H`` heads of size ``d`` (``n = H d`` output units) and, per head,

.. math::

    q_t &= W_q x_t + b_q, \quad k_t = \tfrac{1}{\sqrt d} W_k x_t + b_k, \quad v_t = W_v x_t + b_v
        && (d,)\\
    i_t &= \exp(\tilde\imath_t),\ \ \tilde\imath_t = w_i^\top x_t + b_i, \qquad
    f_t = \sigma(\tilde f_t),\ \ \tilde f_t = w_f^\top x_t + b_f && \text{scalars}\\
    C_t &= f_t\, C_{t-1} + i_t\, v_t k_t^\top \quad (d \times d), \qquad
    n_t = f_t\, n_{t-1} + i_t\, k_t \quad (d,)\\
    h_t &= o_t \odot \frac{C_t q_t}{\max(|n_t^\top q_t|,\ 1)}, \qquad o_t = \sigma(W_o x_t + b_o)

(the paper's eqs. for the mLSTM with the sigmoid forget gate that the ``xlstm`` package uses,
``logsigmoid`` of the forget pre-activation).  No gate reads :math:`h_{t-1}`: the recurrence on the memory
:math:`s_t = (C_t, n_t)` is **linear and diagonal**, :math:`s_t = f_t s_{t-1} + i_t (v_t k_t^\top, k_t)`, so

.. math::

    \frac{\partial s_t}{\partial s_{t-1}} = f_t\, I \quad\text{per head}

exactly: the article's eq. (6) with :math:`A_t = C_t = D_t = 0` and :math:`B_t = f_t I`, and the ``k``-step
product is :math:`\prod_j f_j I` per head — no entry of the memory ever mixes with another.  :math:`h_t` is a
*readout* of :math:`s_t` (it does not feed back), so it is not part of the state.

**The stabiliser.**  The reference kernels carry :math:`m_t = \max(\log f_t + m_{t-1}, \tilde\imath_t)` and
store :math:`\tilde C_t = e^{-m_t} C_t`, :math:`\tilde n_t = e^{-m_t} n_t`, dividing by
:math:`\max(|\tilde n_t^\top q_t|, e^{-m_t})`.  That is a change of variables which leaves :math:`h_t` unchanged in
exact arithmetic (:math:`\max(|\tilde n^\top q|, e^{-m}) = e^{-m}\max(|n^\top q|, 1)`); here the state is the
unstabilised :math:`(C_t, n_t)`, whose Jacobian is the :math:`f_t I` above (the stabilised variables'
Jacobian differs from it by the factor :math:`e^{m_{t-1} - m_t}`, a property of the coordinates, not of the
gradient).  It is exact while :math:`i_t` and the sums stay in floating range (float32: input
pre-activations :math:`\tilde\imath \lesssim 80`); convert a reference state by :math:`C = e^{m}\tilde C`.

**Cell protocol layout.**  The memory of head ``h`` is stored as the ``(d + 1, d)`` array whose first ``d`` rows
are :math:`C_t` and whose last row is :math:`n_t`, flattened head by head into one state block of
``N = H d (d + 1)`` units.  Entry :math:`u = (h, r, c)` evolves as
:math:`s_u \leftarrow \sigma(\tilde f_u) s_u + e^{\tilde\imath_u} v_u k_u` with :math:`\tilde f_u = \tilde f_h`,
:math:`\tilde\imath_u = \tilde\imath_h`, :math:`v_u = v_{h,r}` (``1`` on the normaliser row) and
:math:`k_u = k_{h,c}`: four pre-activation blocks that are linear in :math:`x_t` (the head's scalars and the
vectors replicated by the weight layout), so the update is unit by unit and
:func:`lstm_jax.parallel_run_linear` solves it over time.  The readout :math:`h_t` is the cell's ``output``.

Initialisation (the ``xlstm`` package's ``mLSTMCell.reset_parameters``): ``w_f = 0`` and ``b_f = linspace(3, 6)``
over the heads, ``w_i = 0`` and ``b_i ~ N(0, 0.1^2)``; projections ``N(0, 1)/sqrt(m)``, their biases zero.

References:
  M. Beck et al., "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024 (arXiv:2405.04517); NX-AI/xlstm.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._activations import SIGMOID
from ._cell import Weights
from ._mingru import _array_cell, _linear_init
from ._slstm import check_heads
from ._validation import check_fields, check_init_args

_dsig = SIGMOID.deriv


class MLSTMParams(NamedTuple):
    """mLSTM parameters: projections ``W_q, W_k, W_v, W_o (n, m)`` with biases ``b_q, b_k, b_v, b_o (n,)``; the head
    gates ``w_i, w_f (H, m)`` with ``b_i, b_f (H,)``.  ``n = H d``: head ``h`` owns units ``h d .. h d + d - 1``."""

    W_q: jax.Array
    W_k: jax.Array
    W_v: jax.Array
    W_o: jax.Array
    b_q: jax.Array
    b_k: jax.Array
    b_v: jax.Array
    b_o: jax.Array
    w_i: jax.Array
    w_f: jax.Array
    b_i: jax.Array
    b_f: jax.Array


class MLSTMFactors(NamedTuple):
    r"""Per memory entry: :math:`f` (the Jacobian's diagonal) and the derivatives of the new entry with respect to
    the four pre-activation blocks: :math:`\sigma'(\tilde f) s_{t-1}`, :math:`i v k`, :math:`i k`, :math:`i v`."""

    a: jax.Array
    k_f: jax.Array
    k_i: jax.Array
    k_v: jax.Array
    k_k: jax.Array


def init_mlstm(key: jax.Array, n: int, m: int, *, heads: int = 1, scale: float = 1.0, dtype=jnp.float32) -> MLSTMParams:
    """mLSTM parameters from ``key`` (module docstring's initialisation); ``heads`` must divide ``n``."""
    key, n, m, scale, _, dtype = check_init_args(key, n, m, scale, True, dtype, floats_per_unit=4, label="init_mlstm")
    heads = check_heads(heads, n)
    k_w, k_i = jax.random.split(key)
    Ws = _linear_init(k_w, n, m, 4, dtype, scale)
    zn, zh = jnp.zeros((n,), dtype), jnp.zeros((heads, m), dtype)
    b_i = 0.1 * jax.random.normal(k_i, (heads,), dtype)
    return MLSTMParams(*Ws, zn, zn, zn, zn, zh, zh, b_i, jnp.linspace(3.0, 6.0, heads, dtype=dtype))


_SHAPES = {**{f"W_{g}": ("n", "m") for g in "qkvo"}, **{f"b_{g}": ("n",) for g in "qkvo"},
           "w_i": ("H", "m"), "w_f": ("H", "m"), "b_i": ("H",), "b_f": ("H",)}


def check_mlstm_params(params, name: str = "params"):
    """Validate mLSTM parameters; ``(params, N, m)`` with ``N = H d (d + 1)`` the size of the memory state."""
    p, dims = check_fields(params, MLSTMParams, name, _SHAPES)
    H, n = dims["H"], dims["n"]
    if n % H:
        raise ValueError(f"{name}.w_i has {H} rows (heads), which do not divide the n = {n} units of {name}.W_q")
    d = n // H
    return p, H * d * (d + 1), dims["m"]


def memory_shape(params: MLSTMParams) -> tuple:
    """``(H, d)``: the number of heads and their size."""
    H = params.w_i.shape[0]
    return H, params.W_q.shape[0] // H


def _weights(p: MLSTMParams) -> Weights:
    H, d = memory_shape(p)
    m = p.W_q.shape[1]
    dt = p.W_q.dtype
    rep = lambda a: jnp.broadcast_to(a[:, None, None], (H, d + 1, d) + a.shape[1:]).reshape((H * (d + 1) * d,) + a.shape[1:])  # noqa: E731
    Wv = jnp.concatenate([p.W_v.reshape(H, d, 1, m).repeat(d, axis=2), jnp.zeros((H, 1, d, m), dt)], axis=1)
    bv = jnp.concatenate([p.b_v.reshape(H, d, 1).repeat(d, axis=2), jnp.ones((H, 1, d), dt)], axis=1)
    scale = 1 / jnp.sqrt(jnp.asarray(d, dt))
    Wk = jnp.broadcast_to((scale * p.W_k).reshape(H, 1, d, m), (H, d + 1, d, m))
    bk = jnp.broadcast_to(p.b_k.reshape(H, 1, d), (H, d + 1, d))
    N = H * (d + 1) * d
    W_x = jnp.concatenate([rep(p.w_f), rep(p.w_i), Wv.reshape(N, m), Wk.reshape(N, m)], axis=0).T
    b_x = jnp.concatenate([rep(p.b_f), rep(p.b_i), bv.reshape(N), bk.reshape(N)])
    return Weights(None, W_x, None, b_x, (p.W_q, p.b_q, p.W_o, p.b_o))


def _update(blocks, z_h, z_x):
    (s_prev,) = blocks
    z_f, z_i, v, k = jnp.split(z_x, 4, axis=-1)
    f, i = jax.nn.sigmoid(z_f), jnp.exp(z_i)
    ivk = i * v * k
    return (f * s_prev + ivk,), MLSTMFactors(f, _dsig(z_f) * s_prev, ivk, i * k, i * v)


def _output(w: Weights, blocks: tuple, x: jax.Array) -> jax.Array:
    r""":math:`h_t = o_t \odot C_t q_t / \max(|n_t^\top q_t|, 1)` for memory rows ``(..., N)`` and inputs ``(..., m)``."""
    W_q, b_q, W_o, b_o = w.extra
    n = W_q.shape[0]
    N = blocks[0].shape[-1]
    # N = H d (d + 1) and n = H d  =>  d + 1 = N / n
    d = N // n - 1
    H = n // d
    mem = blocks[0].reshape(blocks[0].shape[:-1] + (H, d + 1, d))
    q = (x @ W_q.T + b_q).reshape(x.shape[:-1] + (H, d))
    num = jnp.einsum("...hrc,...hc->...hr", mem[..., :d, :], q)
    den = jnp.maximum(jnp.abs(jnp.sum(mem[..., d, :] * q, axis=-1)), 1.0)
    return (jax.nn.sigmoid(x @ W_o.T + b_o) * (num / den[..., None]).reshape(x.shape[:-1] + (n,)))


MLSTM = _array_cell(
    "mlstm", MLSTMParams, check_mlstm_params, _weights, _update,
    lambda F, dz, ds: (F.a * ds[0],),
    lambda F, g: (None, jnp.concatenate([g[0] * F.k_f, g[0] * F.k_i, g[0] * F.k_v, g[0] * F.k_k], axis=-1),
                  (g[0] * F.a,)),
    "mLSTM (xLSTM, Beck et al. 2024): C_t = f_t C_(t-1) + i_t v_t k_t^T, n_t = f_t n_(t-1) + i_t k_t per head, gates "
    "from x_t only; J_t = f_t I per head; state [C; n] (H d (d + 1)), output h_t = o_t C_t q_t / max(|n_t q_t|, 1)",
    output=_output,
)
