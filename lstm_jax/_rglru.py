r"""The RG-LRU (Griffin / RecurrentGemma, De et al. 2024): a real-gated diagonal linear recurrence.

With :math:`x_t \in \mathbb{R}^n` (the recurrence keeps the width of its input), a learnable
:math:`\Lambda \in \mathbb{R}^n` and the fixed :math:`c = 8` of the paper:

.. math::

    r_t &= \sigma(W_a x_t + b_a)                 && \text{recurrence gate}\\
    i_t &= \sigma(W_x x_t + b_x)                 && \text{input gate}\\
    \log a_t &= -c\, r_t \odot \operatorname{softplus}(\Lambda)\\
    h_t &= a_t \odot h_{t-1} + \sqrt{1 - a_t^2} \odot (i_t \odot x_t),

computed as RecurrentGemma does (``log_a = -8 * gate_a * softplus(a_param)``; :math:`1 - a_t^2` as
``-expm1(2 log a_t)``, exact as :math:`a_t \to 1`).  So :math:`\partial h_t/\partial h_{t-1} =
\operatorname{diag}(a_t)` with :math:`0 < a_t < 1`: eq. (6) with :math:`A_t = C_t = D_t = 0`, :math:`B_t =
\operatorname{diag}(a_t)`; the ``k``-step product is :math:`\prod_j \operatorname{diag}(a_j)` (units never mix)
and the Lyapunov exponents are the time averages of :math:`\log a_t` per unit.

:math:`\Lambda` is initialised as RecurrentGemma's ``rnn_param_init``: :math:`a = e^{-\operatorname{softplus}(\Lambda)}`
uniform on the ring :math:`a^2 \sim U(0.9^2, 0.999^2)`.  RecurrentGemma's gate weights are block-diagonal over
heads; here they are dense ``(n, n)`` (a block-diagonal matrix is one such).  Document resets (``segment_pos ==
0``) are not modelled: one sequence is one document.

In the cell protocol the input enters the update through two extra pre-activation blocks that are not
weights: the identity (:math:`x_t` itself) and a bias-only block (:math:`\Lambda`), so that
:math:`z^x_t = [W_a x + b_a,\ W_x x + b_x,\ x,\ \Lambda]` and the batch runner's gradients reach :math:`\Lambda`
through that block.

References:
  S. De et al., "Griffin: mixing gated linear recurrences with local attention for efficient language
  models", 2024 (arXiv:2402.19427); google-deepmind/recurrentgemma (the JAX reference).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._activations import SIGMOID
from ._cell import Weights
from ._mingru import _array_cell, _linear_init, _rows
from ._validation import check_fields, check_init_args, check_real

_dsig = SIGMOID.deriv
C = 8.0  #: the paper's fixed exponent scale c


class RGLRUParams(NamedTuple):
    """RG-LRU parameters: gate weights ``W_a, W_x (n, n)``, biases ``b_a, b_x (n,)``, ``Lambda (n,)``."""

    W_a: jax.Array
    W_x: jax.Array
    b_a: jax.Array
    b_x: jax.Array
    Lambda: jax.Array


class RGLRUFactors(NamedTuple):
    r""":math:`a_t` (the Jacobian's diagonal) and the derivatives of :math:`h_t` with respect to the four
    pre-activation blocks: :math:`k_r` (through :math:`r_t`), :math:`k_i` (through :math:`i_t`), :math:`k_x`
    (the identity block, :math:`\sqrt{1-a^2}\,i_t`) and :math:`k_\Lambda`."""

    a: jax.Array
    k_r: jax.Array
    k_i: jax.Array
    k_x: jax.Array
    k_lam: jax.Array


def init_rglru(key: jax.Array, n: int, *, min_rad: float = 0.9, max_rad: float = 0.999, scale: float = 1.0,
               dtype=jnp.float32) -> RGLRUParams:
    """RG-LRU parameters from ``key``: gate weights ``scale * N(0, 1)/sqrt(n)``, biases zero, ``Lambda`` on the ring
    ``a^2 ~ U(min_rad^2, max_rad^2)`` (RecurrentGemma's ``rnn_param_init``; ``0 < min_rad <= max_rad < 1``)."""
    key, n, _, scale, _, dtype = check_init_args(key, n, n, scale, True, dtype, floats_per_unit=2, label="init_rglru")
    max_rad = check_real(max_rad, "max_rad", lo=0, lo_open=True, hi=1, hi_open=True)
    min_rad = check_real(min_rad, "min_rad", lo=0, lo_open=True, hi=max_rad,
                         accepts=f"a radius in (0, max_rad = {max_rad}]")
    k_w, k_l = jax.random.split(key)
    W_a, W_x = _linear_init(k_w, n, n, 2, dtype, scale)
    u = jax.random.uniform(k_l, (n,), dtype, min_rad ** 2, max_rad ** 2)
    neg_log_a = -0.5 * jnp.log(u)  # softplus(Lambda) = -log a
    return RGLRUParams(W_a, W_x, jnp.zeros((n,), dtype), jnp.zeros((n,), dtype), jnp.log(jnp.expm1(neg_log_a)))


_SHAPES = {"W_a": ("n", "n"), "W_x": ("n", "n"), "b_a": ("n",), "b_x": ("n",), "Lambda": ("n",)}


def check_rglru_params(params, name: str = "params"):
    """Validate RG-LRU parameters; ``(params, n, m)`` with ``m = n``."""
    p, d = check_fields(params, RGLRUParams, name, _SHAPES)
    return p, d["n"], d["n"]


def _weights(p: RGLRUParams) -> Weights:
    n = p.W_a.shape[0]
    eye = jnp.eye(n, dtype=p.W_a.dtype)
    W_x = jnp.concatenate([_rows(p.W_a, p.W_x), eye, jnp.zeros((n, n), eye.dtype)], axis=1)
    return Weights(None, W_x, None, jnp.concatenate([p.b_a, p.b_x, jnp.zeros((n,), eye.dtype), p.Lambda]))


def _update(blocks, z_h, z_x):
    (h_prev,) = blocks
    z_r, z_i, x, lam = jnp.split(z_x, 4, axis=-1)
    r, i = jax.nn.sigmoid(z_r), jax.nn.sigmoid(z_i)
    sp = jax.nn.softplus(lam)
    log_a = -C * r * sp
    a = jnp.exp(log_a)
    mult = jnp.sqrt(-jnp.expm1(2 * log_a))  # sqrt(1 - a^2)
    u = i * x
    # d h / d log_a = a h_prev - a^2 u / sqrt(1 - a^2)   (d sqrt(1 - a^2) / d log_a = -a^2 / sqrt(1 - a^2))
    dlog = a * h_prev - a * a * u / mult
    F = RGLRUFactors(a, dlog * (-C * sp) * _dsig(z_r), mult * x * _dsig(z_i), mult * i,
                     dlog * (-C * r) * jax.nn.sigmoid(lam))
    return (a * h_prev + mult * u,), F


RGLRU = _array_cell(
    "rglru", RGLRUParams, check_rglru_params, _weights, _update,
    lambda F, dz, ds: (F.a * ds[0],),
    lambda F, g: (None, jnp.concatenate([g[0] * F.k_r, g[0] * F.k_i, g[0] * F.k_x, g[0] * F.k_lam], axis=-1),
                  (g[0] * F.a,)),
    "RG-LRU (De et al. 2024): h_t = a_t h_(t-1) + sqrt(1 - a_t^2) (i_t x_t), log a_t = -8 r_t softplus(Lambda); "
    "J_t = diag(a_t)",
)
