r"""The LSTM with a projected output (``torch.nn.LSTM(proj_size=p)``; Sak, Senior & Beaufays 2014).

The cell of :mod:`lstm_jax._lstm` whose output is projected to ``p < n`` units by :math:`W_{hr} \in
\mathbb{R}^{p\times n}` before it is fed back:

.. math::

    g_t &= \text{gates from } W_g [h_{t-1}, x_t] + b_g, \quad W_g \in \mathbb{R}^{n\times(p+m)}
        && \text{(as the LSTM)}\\
    c_t &= c_{t-1}\odot f_t + \tilde c_t \odot i_t, \qquad u_t = o_t \odot \tanh(c_t)  && (n,)\\
    h_t &= W_{hr}\, u_t                                                                 && (p,)

**The state.**  :math:`h_{t-1}` enters the step only through :math:`W_g [h_{t-1}, \cdot] = U_g W_{hr}
u_{t-1}`, so the recurrence is the plain LSTM's on :math:`s_t = (u_t, c_t)` (``2n``, the cell protocol's
equal blocks) with recurrent weights :math:`U_g W_{hr}` (``n x n``), and :math:`h_t = W_{hr} u_t` is a readout
(the cell's ``output``).  Its exact step Jacobian is therefore the LSTM's joint Jacobian with :math:`U_g`
replaced by :math:`U_g W_{hr}` (the protocol's factors, unchanged).  Relation to torch's state
:math:`(h_t, c_t)` (``p + n``): with :math:`P = \operatorname{diag}(W_{hr}, I)` and
:math:`A_t = \partial(u_t, c_t)/\partial(h_{t-1}, c_{t-1})`, torch's Jacobian is :math:`P A_t` and ours
:math:`A_t P`, so their products over ``k`` steps are :math:`P (A P)^{k-1} A` and :math:`A (P A)^{k-1} P`: the
same non-zero Lyapunov exponents, and ours has ``n - p`` more directions that the step annihilates (exponent
:math:`-\infty`: the part of :math:`u` that :math:`W_{hr}` does not see).  A zero initial state is the same in
both; a non-zero torch :math:`h_0` has a :math:`u_0` only when it lies in the range of :math:`W_{hr}`.

References:
  H. Sak, A. Senior, F. Beaufays, "Long short-term memory recurrent neural network architectures for large scale
  acoustic modeling", Interspeech 2014; PyTorch ``torch.nn.LSTM`` (``proj_size``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._cell import Cell, Weights
from ._lstm import _BIASES, _WEIGHTS, LSTMParams, LSTMState, _fused
from ._lstm import CELL as _LSTM
from ._validation import as_named_tuple, check_array, check_init_args, check_int, check_real, common_dtype


class LSTMPParams(NamedTuple):
    """Projected-LSTM parameters: ``W_f, W_i, W_c, W_o (n, p + m)`` acting on ``[h_{t-1}, x_t]``, the projection
    ``W_hr (p, n)``, biases ``b_f, b_i, b_c, b_o (n,)`` or ``None``."""

    W_f: jax.Array
    W_i: jax.Array
    W_c: jax.Array
    W_o: jax.Array
    W_hr: jax.Array
    b_f: Optional[jax.Array] = None
    b_i: Optional[jax.Array] = None
    b_c: Optional[jax.Array] = None
    b_o: Optional[jax.Array] = None


def init_lstmp(key: jax.Array, n: int, m: int, p: int, *, scale: float = 1.0, forget_bias: float = 1.0,
               dtype=jnp.float32) -> LSTMPParams:
    """Projected-LSTM parameters from ``key``: each ``W_g = scale * N(0, 1)/sqrt(p + m)`` on ``[h, x]``, ``W_hr`` with
    entries ``scale * N(0, 1)/sqrt(n)``, biases zero except ``b_f = forget_bias``; ``1 <= p < n``."""
    key, n, m, scale, _, dtype = check_init_args(key, n, m, scale, True, dtype, floats_per_unit=4, label="init_lstmp")
    p = check_int(p, "p", lo=1, hi=n - 1, accepts=f"an int in 1..{n - 1} (a projection to fewer than n = {n} units)")
    forget_bias = check_real(forget_bias, "forget_bias")
    k_g, k_r = jax.random.split(key)
    Ws = [scale * jax.random.normal(k, (n, p + m), dtype) / jnp.sqrt(p + m).astype(dtype)
          for k in jax.random.split(k_g, 4)]
    W_hr = scale * jax.random.normal(k_r, (p, n), dtype) / jnp.sqrt(n).astype(dtype)
    return LSTMPParams(*Ws, W_hr, jnp.full((n,), forget_bias, dtype), *[jnp.zeros((n,), dtype)] * 3)


def check_lstmp_params(params, name: str = "params"):
    """Validate projected-LSTM parameters; ``(params, n, m)`` (``n`` the cell size, ``p = W_hr.shape[0]``)."""
    q = as_named_tuple(params, LSTMPParams, name, optional=_BIASES)
    W_hr = check_array(q.W_hr, f"{name}.W_hr", ("p", "n"))
    p, n = W_hr.shape
    if p >= n:
        raise ValueError(f"{name}.W_hr has shape {W_hr.shape}: a projection (p, n) to fewer units, p < n, is "
                         "expected (p = n is the plain LSTM)")
    W_f = check_array(q.W_f, f"{name}.W_f", (n, "p+m"))
    m = W_f.shape[1] - p
    if m < 1:
        raise ValueError(f"{name}.W_f has shape {W_f.shape}; expected (n, p + m) = ({n}, {p} + m) with m >= 1")
    leaves = {"W_hr": W_hr}
    for w in _WEIGHTS:
        leaves[w] = check_array(getattr(q, w), f"{name}.{w}", (n, p + m))
    for b in _BIASES:
        v = getattr(q, b)
        leaves[b] = None if v is None else check_array(v, f"{name}.{b}", (n,))
    common_dtype(name, **leaves)
    return LSTMPParams(**leaves), n, m


def _weights(q: LSTMPParams) -> Weights:
    p, n = q.W_hr.shape
    # the LSTM's fused layout of the gates, (p + m, 4n) with rows [h; x]
    W, b = _fused(LSTMParams(*(getattr(q, f) for f in _WEIGHTS + _BIASES)), n)
    # h_(t-1) W[:p] = u_(t-1) W_hr^T W[:p]: the recurrence on u with (n, 4n) recurrent weights
    return Weights(q.W_hr.T @ W[:p], W[p:], None, b, q.W_hr)


def _output(w: Weights, blocks: tuple, x: jax.Array) -> jax.Array:
    """:math:`h_t = W_{hr} u_t` for rows ``(..., n)``."""
    return blocks[0] @ w.extra.T


CELL = Cell(
    kind="lstm-proj", blocks=("u", "c"), out_block=0, rec_block=0, params_type=LSTMPParams,
    check=lambda params, name="params": check_lstmp_params(params, name),
    weights=_weights, update=_LSTM.update, tangent=_LSTM.tangent, cotangent=_LSTM.cotangent,
    to_blocks=lambda s: (s.h, s.c), from_blocks=lambda b: LSTMState(*b), zero=_LSTM.zero,
    coerce=lambda s, name: as_named_tuple(s, LSTMState, name),
    description="LSTM with projection (torch proj_size): state s_t = [u_t; c_t] (2n) with u_t = o_t tanh(c_t), "
                "output h_t = W_hr u_t (p); exact joint Jacobian with recurrent weights U_g W_hr",
    output=_output,
)
