r"""The article's plain RNN cell.

.. math::

    z_t = W_{rec}\, c_{t-1} + W_{in}\, x_t + b, \qquad c_t = \phi(z_t),

with :math:`c_t \in \mathbb{R}^n`, :math:`x_t \in \mathbb{R}^m`,
:math:`W_{rec} \in \mathbb{R}^{n\times n}`, :math:`W_{in} \in \mathbb{R}^{n\times m}`,
an optional bias :math:`b \in \mathbb{R}^n` (the article leaves it out) and
:math:`\phi` = :data:`~lstm_jax.SIGMOID` (the article's model) or
:data:`~lstm_jax.TANH`.

Cells work on one example: ``c`` has shape ``(n,)`` and ``x`` shape ``(m,)``;
sequences are time-major, ``xs`` of shape ``(T, m)``.  Batch with
:func:`jax.vmap`, e.g. ``jax.vmap(run_rnn, in_axes=(None, 0, 0))`` for
batch-major ``c0 (B, n)`` and ``xs (B, T, m)``.
"""

from __future__ import annotations

import functools

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._activations import SIGMOID, Activation, as_activation
from ._cell import Cell, Weights, preactivations, run, step
from ._scan import check_seq_lengths
from ._validation import as_named_tuple, check_array, check_init_args, check_shape, common_dtype


class RNNParams(NamedTuple):
    """Parameters of the plain RNN (a pytree).

    Attributes:
      W_rec: ``(n, n)`` recurrent weights.
      W_in: ``(n, m)`` input weights.
      b: ``(n,)`` bias, or ``None`` for the article's bias-free model.
    """

    W_rec: jax.Array
    W_in: jax.Array
    b: Optional[jax.Array] = None


def init_rnn(
    key: jax.Array,
    n: int,
    m: int,
    *,
    scale: float = 1.0,
    bias: bool = False,
    dtype: jnp.dtype = jnp.float32,
) -> RNNParams:
    r"""Random RNN parameters from an explicit PRNG ``key``.

    :math:`W_{rec} = \text{scale}\cdot G/\sqrt{n}` and :math:`W_{in} = G'/\sqrt{m}`
    with standard normal :math:`G, G'`, so ``scale`` sets the recurrent gain
    (:math:`\|W_{rec}\|_2 \approx 2\,\text{scale}` for large ``n``, by the
    circular law / Marchenko-Pastur edge).  The bias is zero, or ``None`` when
    ``bias=False`` (the article's model).
    """
    key, n, m, scale, bias, dtype = check_init_args(key, n, m, scale, bias, dtype, floats_per_unit=1, label="init_rnn")
    k_rec, k_in = jax.random.split(key)
    W_rec = scale * jax.random.normal(k_rec, (n, n), dtype) / jnp.sqrt(n).astype(dtype)
    W_in = jax.random.normal(k_in, (n, m), dtype) / jnp.sqrt(m).astype(dtype)
    return RNNParams(W_rec, W_in, jnp.zeros((n,), dtype) if bias else None)


def check_rnn_params(params, name: str = "params") -> tuple[RNNParams, int, int]:
    """Validate an RNN parameter tree; return it as :class:`RNNParams` with ``(n, m)``."""
    p = as_named_tuple(params, RNNParams, name, optional=("b",))
    W_rec = check_array(p.W_rec, f"{name}.W_rec", ("n", "n"))
    n = W_rec.shape[0]
    check_shape(W_rec, f"{name}.W_rec", (n, n))
    W_in = check_array(p.W_in, f"{name}.W_in", (n, "m"))
    m = W_in.shape[1]
    b = None if p.b is None else check_array(p.b, f"{name}.b", (n,))
    common_dtype(name, W_rec=W_rec, W_in=W_in, b=b)
    return RNNParams(W_rec, W_in, b), n, m


class RNNFactors(NamedTuple):
    r"""The one diagonal factor of a step, :math:`\phi'(z_t)` ``(..., n)``: :math:`J_t = \operatorname{diag}(\phi'(z_t)) W_{rec}` (eq. 2)."""

    d: jax.Array


def _weights(p: RNNParams) -> Weights:
    # Speed: the transposed weights are formed once, outside the loop (as run_lstm fuses its weights once);
    # taking W^T inside the step measured 15-20 % slower forward at B = 32, n = 128 (benchmarks/speed.py).
    return Weights(p.W_rec.T, p.W_in.T, None, p.b)


def _tangent(F: RNNFactors, dz, ds):
    return (F.d * dz,)


def _cotangent(F: RNNFactors, g):
    dz = F.d * g[0]
    return dz, dz, (None,)


@functools.lru_cache(maxsize=None)
def rnn_cell(activation: Activation) -> Cell:
    """The :class:`~lstm_jax._cell.Cell` of the RNN with ``activation`` (kinds ``"rnn-tanh"``, ``"rnn-sigmoid"``)."""

    def update(blocks, z_h, z_x):
        z = z_h + z_x
        return (activation.fn(z),), RNNFactors(activation.deriv(z))

    return Cell(
        kind=f"rnn-{activation.name}", blocks=("c",), out_block=0, rec_block=0, params_type=RNNParams,
        check=check_rnn_params, weights=_weights, update=update, tangent=_tangent, cotangent=_cotangent,
        to_blocks=lambda c: (c,), from_blocks=lambda b: b[0], zero=lambda n, dtype: jnp.zeros((n,), dtype), coerce=lambda s, name: s,
        description=f"plain RNN c_t = {activation.name}(W_rec c_(t-1) + W_in x_t + b); state c_t (n), Jacobian eq. (2)",
    )


def rnn_preactivation(params: RNNParams, c_prev: jax.Array, x: jax.Array) -> jax.Array:
    r""":math:`z_t = W_{rec} c_{t-1} + W_{in} x_t (+ b)`, shape ``(n,)`` (no validation)."""
    z_h, z_x = preactivations(rnn_cell(SIGMOID), _weights(params), (c_prev,), x)
    return z_h + z_x


def _rnn_step(params: RNNParams, c_prev, x, activation: Activation):
    return step(rnn_cell(activation), _weights(params), (c_prev,), x)[0][0]


def _check_rnn_call(params, c, c_name, x, x_name, x_shape):
    p, n, m = check_rnn_params(params)
    c = check_array(c, c_name, (n,))
    x = check_array(x, x_name, x_shape(m))
    dtype = jnp.result_type(p.W_rec.dtype, c.dtype, x.dtype)
    p = jax.tree_util.tree_map(lambda a: a.astype(dtype), p)
    return p, c.astype(dtype), x.astype(dtype)


def rnn_step(params: RNNParams, c_prev: jax.Array, x: jax.Array, activation: Activation = SIGMOID) -> jax.Array:
    r"""One RNN step :math:`c_t = \phi(W_{rec} c_{t-1} + W_{in} x_t + b)`.

    Args:
      params: :class:`RNNParams` (or a dict with the same keys).
      c_prev: ``(n,)`` previous state :math:`c_{t-1}`.
      x: ``(m,)`` input :math:`x_t`.
      activation: :data:`SIGMOID` (default, the article's model) or :data:`TANH` (or ``"sigmoid"``/``"tanh"``).

    Returns:
      ``(n,)`` new state :math:`c_t`, in the promoted dtype of the arguments.
    """
    activation = as_activation(activation)
    p, c_prev, x = _check_rnn_call(params, c_prev, "c_prev", x, "x", lambda m: (m,))
    return _rnn_step(p, c_prev, x, activation)


def run_rnn(
    params: RNNParams,
    c0: jax.Array,
    xs: jax.Array,
    activation: Activation = SIGMOID,
    *,
    unroll: int | bool = 1,
    remat: bool | int = False,
    seq_lengths=None,
) -> tuple[jax.Array, jax.Array]:
    r"""Run the RNN over a time-major sequence with :func:`jax.lax.scan`.

    Args:
      params: :class:`RNNParams`.
      c0: ``(n,)`` initial state :math:`c_0`.
      xs: ``(T, m)`` inputs :math:`x_1, \dots, x_T` (``T >= 1``).
      activation: :data:`SIGMOID` or :data:`TANH` (or the names ``"sigmoid"``, ``"tanh"``).
      unroll: an int in ``1..T``, passed to :func:`jax.lax.scan` (``True``/``0``, which
        ``lax.scan`` reads as a full unroll, are rejected: pass ``T``).
      remat: memory of reverse-mode differentiation: ``False`` stores every step,
        ``True`` checkpoints each step (:func:`jax.checkpoint`), an int ``k > 1``
        checkpoints segments of ``k`` steps (nested scans; ``k ~ sqrt(T)`` for
        :math:`O(\sqrt{T})` memory).  See ``lstm_jax._scan``.
      seq_lengths: ``None`` or the number ``L`` (``0 <= L <= T``) of valid steps of this right-padded
        sequence: steps ``t > L`` keep the state (identity Jacobian) and output zeros; ``c_T`` is the
        state after step ``L``.  Batch with :func:`jax.vmap` (``L`` then has shape ``(B,)``).

    Returns:
      ``(c_T, cs)`` with ``c_T`` of shape ``(n,)`` and ``cs`` of shape
      ``(T, n)`` holding :math:`c_1, \dots, c_T`.
    """
    activation = as_activation(activation)
    p, c0, xs = _check_rnn_call(params, c0, "c0", xs, "xs", lambda m: ("T", m))
    L = check_seq_lengths(seq_lengths, xs.shape[0])
    return run(rnn_cell(activation), _weights(p), c0, xs, unroll=unroll, remat=remat, seq_lengths=L)
