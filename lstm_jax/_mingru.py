r"""minGRU and minLSTM (Feng et al. 2024): gates that read the input only, so the step Jacobian is diagonal.

**minGRU**, with :math:`x_t \in \mathbb{R}^m`, :math:`h_t \in \mathbb{R}^n`:

.. math::

    z_t = \sigma(W_z x_t + b_z), \qquad \tilde h_t = W_h x_t + b_h, \qquad
    h_t = (1 - z_t)\odot h_{t-1} + z_t \odot \tilde h_t,

so :math:`\partial h_t/\partial h_{t-1} = \operatorname{diag}(1 - z_t)` exactly: the article's eq. (6) with
:math:`A_t = C_t = D_t = 0` and :math:`B_t = \operatorname{diag}(1 - z_t)` (the carousel alone), and the
``k``-step product is the product of diagonals, :math:`\prod_j \operatorname{diag}(1 - z_j)`: units never mix.

**minLSTM**:

.. math::

    f_t = \sigma(W_f x_t + b_f),\quad i_t = \sigma(W_i x_t + b_i),\quad \tilde h_t = W_h x_t + b_h,\quad
    f'_t = \frac{f_t}{f_t + i_t},\quad i'_t = \frac{i_t}{f_t + i_t},\quad
    h_t = f'_t \odot h_{t-1} + i'_t \odot \tilde h_t,

so :math:`\partial h_t/\partial h_{t-1} = \operatorname{diag}(f'_t)`.  (The paper's minLSTM normalises the
gates, as here, so that :math:`f' + i' = 1`.)

Both are **linear** recurrences :math:`h_t = a_t\odot h_{t-1} + b_t` with :math:`(a_t, b_t)` from the inputs
alone, which :func:`lstm_jax.parallel_run_linear` solves for all ``t`` at once with
:func:`jax.lax.associative_scan` over the affine maps :math:`(a, b)`.  The paper evaluates the same recurrence
in log space (Heinsen's cumulative sums, which divide by :math:`\prod a`); the associative scan composes the
pairs :math:`(a_2 a_1, a_2 b_1 + b_2)` directly, with no division, so it needs no log space for stability.
The paper's positive-output variant :math:`\tilde h = g(\cdot)` for the log-space form is not implemented.

Cell factors (:class:`~lstm_jax._cell.Cell`): the diagonal of :math:`J_t` and the derivatives with respect
to the pre-activations that the batch runner's weight gradients need.

References:
  L. Feng, F. Tung, M. O. Ahmed, Y. Bengio, H. Hajimirsadeghi, "Were RNNs all we needed?", 2024
  (arXiv:2410.01201).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._activations import SIGMOID
from ._cell import Cell, Weights
from ._validation import check_fields, check_init_args

_dsig = SIGMOID.deriv


def _linear_init(key, n, m, k, dtype, scale):
    """``k`` weight matrices ``(n, m)`` with entries ``scale * N(0, 1)/sqrt(m)`` (the papers' dense layers)."""
    return [scale * jax.random.normal(kk, (n, m), dtype) / jnp.sqrt(m).astype(dtype) for kk in jax.random.split(key, k)]


def _rows(*Ws):
    return jnp.concatenate([W.T for W in Ws], axis=1)


def _array_cell(kind, params_type, check, weights, update, tangent, cotangent, description, output=None):
    """A cell whose state is one ``(n,)`` vector ``h`` and whose gates read the input only (``rec_block = None``)."""
    return Cell(
        kind=kind, blocks=("h",), out_block=0, rec_block=None, params_type=params_type, check=check,
        weights=weights, update=update, tangent=tangent, cotangent=cotangent, to_blocks=lambda h: (h,),
        from_blocks=lambda b: b[0], zero=lambda n, dtype: jnp.zeros((n,), dtype), coerce=lambda s, name: s,
        description=description, diagonal_linear=True, output=output,
    )


# --------------------------------------------------------------------------- minGRU


class MinGRUParams(NamedTuple):
    """minGRU parameters: ``W_z, W_h (n, m)`` and ``b_z, b_h (n,)`` (module docstring)."""

    W_z: jax.Array
    W_h: jax.Array
    b_z: jax.Array
    b_h: jax.Array


class MinGRUFactors(NamedTuple):
    r""":math:`a_t = 1 - z_t = \sigma(-a_z)` (the Jacobian's diagonal), :math:`k_z = (\tilde h_t - h_{t-1})\sigma'(a_z)`
    and :math:`z_t` (the derivatives with respect to the two pre-activations)."""

    a: jax.Array
    k_z: jax.Array
    z: jax.Array


def init_mingru(key: jax.Array, n: int, m: int, *, scale: float = 1.0, dtype=jnp.float32) -> MinGRUParams:
    """minGRU parameters from ``key``: weights ``scale * N(0, 1)/sqrt(m)``, biases zero."""
    key, n, m, scale, _, dtype = check_init_args(key, n, m, scale, True, dtype, floats_per_unit=2, label="init_mingru")
    W_z, W_h = _linear_init(key, n, m, 2, dtype, scale)
    return MinGRUParams(W_z, W_h, jnp.zeros((n,), dtype), jnp.zeros((n,), dtype))


_SHAPES_MINGRU = {"W_z": ("n", "m"), "W_h": ("n", "m"), "b_z": ("n",), "b_h": ("n",)}


def check_mingru_params(params, name: str = "params"):
    """Validate minGRU parameters; ``(params, n, m)``."""
    p, d = check_fields(params, MinGRUParams, name, _SHAPES_MINGRU)
    return p, d["n"], d["m"]


def _mingru_update(blocks, z_h, z_x):
    (h_prev,) = blocks
    a_z, h_tilde = jnp.split(z_x, 2, axis=-1)
    z = jax.nn.sigmoid(a_z)
    return (h_tilde + jax.nn.sigmoid(-a_z) * (h_prev - h_tilde),), MinGRUFactors(
        jax.nn.sigmoid(-a_z), (h_tilde - h_prev) * _dsig(a_z), z)


MINGRU = _array_cell(
    "mingru", MinGRUParams, check_mingru_params,
    lambda p: Weights(None, _rows(p.W_z, p.W_h), None, jnp.concatenate([p.b_z, p.b_h])),
    _mingru_update,
    lambda F, dz, ds: (F.a * ds[0],),
    lambda F, g: (None, jnp.concatenate([g[0] * F.k_z, g[0] * F.z], axis=-1), (g[0] * F.a,)),
    "minGRU (Feng et al. 2024): h_t = (1 - z_t) h_(t-1) + z_t h~_t, gates from x_t only; J_t = diag(1 - z_t)",
)


# --------------------------------------------------------------------------- minLSTM


class MinLSTMParams(NamedTuple):
    """minLSTM parameters: ``W_f, W_i, W_h (n, m)`` and ``b_f, b_i, b_h (n,)`` (module docstring)."""

    W_f: jax.Array
    W_i: jax.Array
    W_h: jax.Array
    b_f: jax.Array
    b_i: jax.Array
    b_h: jax.Array


class MinLSTMFactors(NamedTuple):
    r""":math:`f'_t` (the Jacobian's diagonal), :math:`k_f = (h_{t-1} - \tilde h_t)\sigma'(a_f)\,i_t/(f_t + i_t)^2`,
    :math:`k_i = -(h_{t-1} - \tilde h_t)\sigma'(a_i)\,f_t/(f_t + i_t)^2` and :math:`i'_t`."""

    f: jax.Array
    k_f: jax.Array
    k_i: jax.Array
    i: jax.Array


def init_minlstm(key: jax.Array, n: int, m: int, *, scale: float = 1.0, dtype=jnp.float32) -> MinLSTMParams:
    """minLSTM parameters from ``key``: weights ``scale * N(0, 1)/sqrt(m)``, biases zero."""
    key, n, m, scale, _, dtype = check_init_args(key, n, m, scale, True, dtype, floats_per_unit=3, label="init_minlstm")
    Ws = _linear_init(key, n, m, 3, dtype, scale)
    return MinLSTMParams(*Ws, *[jnp.zeros((n,), dtype)] * 3)


_SHAPES_MINLSTM = {**{w: ("n", "m") for w in ("W_f", "W_i", "W_h")}, **{b: ("n",) for b in ("b_f", "b_i", "b_h")}}


def check_minlstm_params(params, name: str = "params"):
    """Validate minLSTM parameters; ``(params, n, m)``."""
    p, d = check_fields(params, MinLSTMParams, name, _SHAPES_MINLSTM)
    return p, d["n"], d["m"]


def _minlstm_update(blocks, z_h, z_x):
    (h_prev,) = blocks
    a_f, a_i, h_tilde = jnp.split(z_x, 3, axis=-1)
    f, i = jax.nn.sigmoid(a_f), jax.nn.sigmoid(a_i)
    s = f + i
    f_n, i_n = f / s, i / s
    diff = (h_prev - h_tilde) / (s * s)
    return (f_n * h_prev + i_n * h_tilde,), MinLSTMFactors(f_n, diff * _dsig(a_f) * i, -diff * _dsig(a_i) * f, i_n)


MINLSTM = _array_cell(
    "minlstm", MinLSTMParams, check_minlstm_params,
    lambda p: Weights(None, _rows(p.W_f, p.W_i, p.W_h), None, jnp.concatenate([p.b_f, p.b_i, p.b_h])),
    _minlstm_update,
    lambda F, dz, ds: (F.f * ds[0],),
    lambda F, g: (None, jnp.concatenate([g[0] * F.k_f, g[0] * F.k_i, g[0] * F.i], axis=-1), (g[0] * F.f,)),
    "minLSTM (Feng et al. 2024): h_t = f'_t h_(t-1) + i'_t h~_t with f' = f/(f + i), gates from x_t only; "
    "J_t = diag(f'_t)",
)
