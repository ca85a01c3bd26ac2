r"""The sLSTM of xLSTM (Beck et al. 2024): exponential gating, a normaliser and a stabiliser, heads as a
block-diagonal recurrent matrix — the one modern cell in which the article's gated terms through
:math:`h_{t-1}` survive.

State :math:`s_t = (h_t, c_t, n_t, m_t)`, each ``(n,)``; gate order i, f, z, o (the ``xlstm`` package's
``slstm_forward_pointwise``); pre-activations :math:`\tilde g_t = W_g x_t + R_g h_{t-1} + b_g` with
:math:`R_g` block-diagonal over ``H`` heads of size ``n / H``:

.. math::

    \ell_t &= \log\sigma(\tilde f_t) \qquad\text{(the log forget gate)}\\
    m_t &= \max(\ell_t + m_{t-1},\ \tilde\imath_t)          && \text{stabiliser}\\
    i'_t &= \exp(\tilde\imath_t - m_t), \quad f'_t = \exp(\ell_t + m_{t-1} - m_t)\\
    c_t &= f'_t \odot c_{t-1} + i'_t \odot \tanh(\tilde z_t)\\
    n_t &= f'_t \odot n_{t-1} + i'_t                          && \text{normaliser}\\
    h_t &= \sigma(\tilde o_t) \odot c_t / n_t.

**Exact step Jacobian.**  With :math:`s = [\ell_t + m_{t-1} \ge \tilde\imath_t]` (the branch the max takes; at
a tie the derivative is one-sided), every unit's update is a function of its own pre-activations and state,
so :math:`J_t` is the cell protocol's :math:`\frac{\partial s_t}{\partial \tilde g}\,R\,\Pi_h +
\frac{\partial s_t}{\partial s_{t-1}}|_{\tilde g}` with the differentials

.. math::

    \delta m &= s(\sigma(-\tilde f)\delta\tilde f + \delta m_{t-1}) + (1 - s)\,\delta\tilde\imath, \quad
    \delta i' = i'(\delta\tilde\imath - \delta m), \quad
    \delta f' = f'(\sigma(-\tilde f)\delta\tilde f + \delta m_{t-1} - \delta m),\\
    \delta c &= f'\delta c_{t-1} + c_{t-1}\delta f' + \tanh(\tilde z)\,\delta i' + i'\tanh'(\tilde z)\,\delta\tilde z,
    \quad \delta n = f'\delta n_{t-1} + n_{t-1}\delta f' + \delta i',\\
    \delta h &= \frac{c_t}{n_t}\sigma'(\tilde o)\,\delta\tilde o + \frac{o_t}{n_t}\delta c - \frac{o_t c_t}{n_t^2}\delta n.

The article's reading: :math:`\partial c_t/\partial c_{t-1} = \operatorname{diag}(f'_t)` is its :math:`B_t`;
the terms through :math:`h_{t-1}` (the analogues of :math:`A_t, C_t, D_t`: forget, input and cell-input gates
read :math:`R h_{t-1}`) remain, as in the LSTM, and the normaliser and stabiliser add paths
:math:`\partial h_t/\partial n_{t-1}` and :math:`\partial(c_t, n_t)/\partial m_{t-1}`.

A unit whose normaliser is empty (:math:`n_{t-1} = 0`, the first step from the zero state) takes
:math:`m_t = \tilde\imath_t` (:math:`s = 0`), as the ``xlstm`` reference does for its first step (there a global
"all normalisers zero" test; here unit by unit, which is the same from the zero state).  Without it :math:`i'_1`
underflows when :math:`\tilde\imath_1 \ll \log\sigma(\tilde f_1)` and :math:`h_1 = 0/0`.  Such a unit also
takes :math:`f'_t = 0` (it multiplies :math:`c_{t-1} = n_{t-1} = 0`; the reference's :math:`\exp(\ell + m - \tilde\imath)`
there can overflow to ``inf`` and give ``inf * 0 = nan``).

Initialisation: input weights ``N(0, 1)/sqrt(m)``, recurrent blocks zero, forget-gate bias
``linspace(3, 6)`` over the units (xLSTM's ``bias_linspace_init``), other biases zero.

References:
  M. Beck et al., "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024 (arXiv:2405.04517); NX-AI/xlstm.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import block_diag

from ._activations import SIGMOID, TANH
from ._cell import Cell, Weights
from ._mingru import _linear_init
from ._validation import as_named_tuple, check_fields, check_init_args, check_int

_dsig = SIGMOID.deriv
_dtanh = TANH.deriv
_GATES = ("i", "f", "z", "o")


class SLSTMParams(NamedTuple):
    """sLSTM parameters: input weights ``W_g (n, m)``, recurrent heads ``R_g (H, n/H, n/H)``, biases ``b_g (n,)``,
    for the gates ``g`` in the order i, f, z, o."""

    W_i: jax.Array
    W_f: jax.Array
    W_z: jax.Array
    W_o: jax.Array
    R_i: jax.Array
    R_f: jax.Array
    R_z: jax.Array
    R_o: jax.Array
    b_i: jax.Array
    b_f: jax.Array
    b_z: jax.Array
    b_o: jax.Array


class SLSTMState(NamedTuple):
    """sLSTM state ``(h, c, n, m)``: output, cell, normaliser, stabiliser; each ``(n,)`` (``(T, n)`` along a run)."""

    h: jax.Array
    c: jax.Array
    n: jax.Array
    m: jax.Array


class SLSTMFactors(NamedTuple):
    """The per-unit derivatives of one step (module docstring): branch ``s``, ``sig_nf = sigma(-f~)``, ``i'``,
    ``f'``, the previous ``c`` and ``n``, ``tanh(z~)``, ``i' tanh'(z~)``, ``(c/n) sigma'(o~)``, ``o/n``, ``o c/n^2``."""

    s: jax.Array
    sig_nf: jax.Array
    i: jax.Array
    f: jax.Array
    c_prev: jax.Array
    n_prev: jax.Array
    z: jax.Array
    k_z: jax.Array
    a_o: jax.Array
    e: jax.Array
    e2: jax.Array


def check_heads(heads, n: int) -> int:
    """``heads``: an int in ``1..n`` that divides ``n`` (the xLSTM cells' heads tile the units)."""
    heads = check_int(heads, "heads", lo=1, hi=n, accepts=f"an int in 1..{n} that divides n = {n}")
    if n % heads:
        raise ValueError(f"heads must divide n = {n}; got heads = {heads}")
    return heads


def init_slstm(key: jax.Array, n: int, m: int, *, heads: int = 1, scale: float = 1.0, dtype=jnp.float32) -> SLSTMParams:
    """sLSTM parameters from ``key`` (module docstring's initialisation); ``heads`` must divide ``n``."""
    key, n, m, scale, _, dtype = check_init_args(key, n, m, scale, True, dtype, floats_per_unit=4, label="init_slstm")
    heads = check_heads(heads, n)
    Ws = _linear_init(key, n, m, 4, dtype, scale)
    R = [jnp.zeros((heads, n // heads, n // heads), dtype)] * 4
    zero = jnp.zeros((n,), dtype)
    return SLSTMParams(*Ws, *R, zero, jnp.linspace(3.0, 6.0, n, dtype=dtype), zero, zero)


_SHAPES = {**{f"W_{g}": ("n", "m") for g in _GATES}, **{f"R_{g}": ("H", "d", "d") for g in _GATES},
           **{f"b_{g}": ("n",) for g in _GATES}}


def check_slstm_params(params, name: str = "params"):
    """Validate sLSTM parameters; ``(params, n, m)``.  The heads must tile the units: ``H * d == n``."""
    p, dims = check_fields(params, SLSTMParams, name, _SHAPES)
    if dims["H"] * dims["d"] != dims["n"]:
        raise ValueError(f"{name}.R_i has shape {p.R_i.shape}: {dims['H']} heads of size {dims['d']} do not tile "
                         f"the n = {dims['n']} units (expected (H, n/H, n/H))")
    return p, dims["n"], dims["m"]


def _weights(p: SLSTMParams) -> Weights:
    W_h = jnp.concatenate([block_diag(*getattr(p, f"R_{g}")).T for g in _GATES], axis=1)
    W_x = jnp.concatenate([getattr(p, f"W_{g}").T for g in _GATES], axis=1)
    return Weights(W_h, W_x, None, jnp.concatenate([getattr(p, f"b_{g}") for g in _GATES]))


def _update(blocks, z_h, z_x):
    _, c_prev, n_prev, m_prev = blocks
    zi, zf, zz, zo = jnp.split(z_h + z_x, 4, axis=-1)
    log_f = jax.nn.log_sigmoid(zf)
    lfm = log_f + m_prev
    # a unit with an empty normaliser (n_(t-1) = 0: the first step from the zero state) takes m_t = i~_t, as the
    # xlstm reference does; otherwise i' can underflow and h_t = 0/0
    s = ((lfm >= zi) & (n_prev != 0)).astype(zi.dtype)
    m = jnp.where(s > 0, lfm, zi)
    # f' = 0 on an empty normaliser: it multiplies c_(t-1) = n_(t-1) = 0 there, and exp(l + m - i~) may overflow
    i, f = jnp.exp(zi - m), jnp.where(n_prev != 0, jnp.exp(lfm - m), 0)
    z, o = jnp.tanh(zz), jax.nn.sigmoid(zo)
    c = f * c_prev + i * z
    nn = f * n_prev + i
    h = o * c / nn
    F = SLSTMFactors(s, jax.nn.sigmoid(-zf), i, f, c_prev, n_prev, z, i * _dtanh(zz), c / nn * _dsig(zo), o / nn,
                     o * c / (nn * nn))
    return (h, c, nn, m), F


def _tangent(F: SLSTMFactors, dz, ds):
    d_i, d_f, d_z, d_o = jnp.split(dz, 4, axis=-1)
    _, dc_p, dn_p, dm_p = ds
    dlf = F.sig_nf * d_f
    dm = F.s * (dlf + dm_p) + (1 - F.s) * d_i
    di = F.i * (d_i - dm)
    df = F.f * (dlf + dm_p - dm)
    dc = F.f * dc_p + F.c_prev * df + F.z * di + F.k_z * d_z
    dn = F.f * dn_p + F.n_prev * df + di
    return F.a_o * d_o + F.e * dc - F.e2 * dn, dc, dn, dm


def _cotangent(F: SLSTMFactors, g):
    g_h, g_c, g_n, g_m = g
    G_c = g_c + F.e * g_h
    G_n = g_n - F.e2 * g_h
    g_i = F.z * G_c + G_n  # cotangent of i'
    g_f = F.c_prev * G_c + F.n_prev * G_n  # cotangent of f'
    bar_m = g_m - F.i * g_i - F.f * g_f
    bar_lf = F.f * g_f + F.s * bar_m
    d_i = F.i * g_i + (1 - F.s) * bar_m
    dz = jnp.concatenate([d_i, F.sig_nf * bar_lf, F.k_z * G_c, F.a_o * g_h], axis=-1)
    return dz, dz, (None, F.f * G_c, F.f * G_n, F.f * g_f + F.s * bar_m)


def _zero(n, dtype):
    z = jnp.zeros((n,), dtype)
    return SLSTMState(z, z, z, z)


SLSTM = Cell(
    kind="slstm", blocks=("h", "c", "n", "m"), out_block=0, rec_block=0, params_type=SLSTMParams,
    check=check_slstm_params, weights=_weights, update=_update, tangent=_tangent, cotangent=_cotangent,
    to_blocks=lambda s: (s.h, s.c, s.n, s.m), from_blocks=lambda b: SLSTMState(*b), zero=_zero,
    coerce=lambda s, name: as_named_tuple(s, SLSTMState, name),
    description="sLSTM (xLSTM, Beck et al. 2024): exponential gates, normaliser n_t, stabiliser m_t, block-diagonal "
                "recurrent heads; state [h; c; n; m] (4n)",
)
