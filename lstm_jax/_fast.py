r"""Batch-aware fast runners for training and benchmarks: an explicit batch axis and a custom VJP for the whole scan.

:func:`run_lstm_batch`, :func:`run_rnn_batch` and :func:`run_gru_batch` compute exactly the recurrences of
:func:`~lstm_jax.run_lstm`, :func:`~lstm_jax.run_rnn` and :func:`~lstm_jax.run_gru` (same equations, same gate
order — f, i, c̃, o for the LSTM — same parameters) for a batch of ``B`` sequences at once, time-major: ``xs`` of shape ``(T, B, m)``,
states ``(B, n)``.  They differ from the public runners in how reverse-mode derivatives are formed:

* **Forward**: one :func:`jax.lax.scan` over time on ``(B, n)`` states (no :func:`jax.vmap`, no
  per-step strided slicing), fused weights ``W_h (n, 4n)``, ``W_x (m, 4n)``: per step
  :math:`z_t = h_{t-1} W_h + x_t W_x + b` — two GEMMs of ``B`` rows (or, ``hoist=True``, the input
  projection :math:`X W_x + b` as one ``(T·B, m) @ (m, 4n)`` GEMM before the loop).
* **Backward** (:func:`jax.custom_vjp` on the whole scan): the forward stores six ``(B, n)`` arrays per
  step — the products the backward needs, :math:`a_f = c_{t-1}\sigma'(z_f)`, :math:`a_i = \tilde c_t\sigma'(z_i)`,
  :math:`a_c = i_t\tanh'(z_c)`, :math:`a_o = \tanh(c_t)\sigma'(z_o)`, :math:`e_t = o_t\tanh'(c_t)` and
  :math:`f_t` — plus the outputs :math:`h_t`.  The reverse loop is then multiply-adds and one GEMM per step,

  .. math::

      \bar c_t &\mathrel{+}= e_t \odot \bar h_t, \qquad
      \bar z_t = [a_f\odot\bar c_t,\ a_i\odot\bar c_t,\ a_c\odot\bar c_t,\ a_o\odot\bar h_t],\\
      \bar h_{t-1} &= \bar z_t W_h^\top (+\ \text{the output cotangent}), \qquad \bar c_{t-1} = f_t\odot\bar c_t,

  and the weight gradients are formed **after** the loop as one large GEMM over all ``T·B`` rows:
  :math:`\bar W_h = H_{prev}^\top \bar Z`, :math:`\bar W_x = X^\top \bar Z`, :math:`\bar b = \sum \bar Z`
  (``H_prev, X, Z̄`` reshaped to ``(T·B, ·)``), instead of ``T`` small ``(n, B) @ (B, 4n)`` products inside it.

Cost model (per step, LSTM, FLOPs): forward ``2B(n+m)·4n`` (the two GEMMs) plus ``O(Bn)`` elementwise with
five transcendentals per unit; value_and_grad about 3× the forward's GEMM FLOPs (forward, ``Z̄ W_hᵀ`` in the
loop, ``H_prevᵀ Z̄`` and ``Xᵀ Z̄`` after it).  Memory: ``6·T·B·n`` stored values plus the outputs
``T·B·n`` (``torch.nn.LSTM`` stores a similar amount).

Derivatives use the exact functions of :mod:`lstm_jax._activations` (``SIGMOID.deriv``, ``TANH.deriv``)
in every dtype; gate values use :func:`jax.nn.sigmoid` / :func:`jax.numpy.tanh`.  No float32
approximation of our own: XLA:CPU's float32 ``tanh`` is already a rational approximation (the same max
ulp error on [-20, 20] as the rational form ``benchmarks/_inloop.py`` times), and the cheap sigmoid
:math:`(1 + \tanh(z/2))/2` loses relative accuracy for :math:`z \ll 0` (``benchmarks/targets.py`` prints
both errors and the in-scan time of each).

Forward-mode differentiation: a :func:`jax.custom_vjp` function cannot be differentiated with
:func:`jax.jvp` / :func:`jax.jacfwd`.  Use these runners for training and timing (``jax.grad``,
``jax.value_and_grad``), and :func:`~lstm_jax.run_lstm` / :func:`~lstm_jax.run_rnn` (exact, both
modes) for Jacobians and the article's checks.
"""

from __future__ import annotations

import functools
import jax
import jax.numpy as jnp

from ._scan import previous_states
from ._activations import SIGMOID, TANH, Activation, as_activation
from ._lstm import LSTMParams, LSTMState, _fused, check_lstm_params
from ._gru import GRUParams, _gates_from as _gru_gates_from, _update as _gru_update, check_gru_params
from ._rnn import RNNParams, check_rnn_params
from ._validation import as_named_tuple, check_array, check_bool, check_unroll

_dsig = SIGMOID.deriv
_dtanh = TANH.deriv


def _split4(z):
    n = z.shape[-1] // 4
    return z[..., :n], z[..., n:2 * n], z[..., 2 * n:3 * n], z[..., 3 * n:]


def _proj(xs, W_x, b):
    """``xs (T, B, m) @ W_x (m, 4n) + b`` as one GEMM over ``T·B`` rows."""
    T, B, m = xs.shape
    return (xs.reshape(T * B, m) @ W_x + b).reshape(T, B, -1)


def _after_loop(state0, states, xs, rows_h, rows_x, W_x):
    r"""The gradients a recurrence's custom VJP forms **after** its backward loop, each one GEMM over all ``T·B``
    rows: :math:`\bar W_h = S_{prev}^\top \bar U`, :math:`\bar W_x = X^\top \bar V`, :math:`\bar X = \bar V W_x^\top`.

    ``states (T, B, n)`` the outputs (``S_prev`` = ``state0`` then ``states[:-1]``); ``rows_h (T·B, k)``, ``rows_x
    (T·B, k)`` the cotangents of the recurrent and the input product (the same array for the LSTM and the RNN);
    ``W_x (m, k)`` the input weights in row layout.  Returns ``(dW_h (n, k), dW_x (m, k), dxs (T, B, m))``.
    """
    T, B, n = states.shape
    s_prev = previous_states(state0, states).reshape(T * B, n)
    return s_prev.T @ rows_h, xs.reshape(T * B, -1).T @ rows_x, (rows_x @ W_x.T).reshape(xs.shape)


# --------------------------------------------------------------------------- LSTM core


def _lstm_scan(cfg, W_h, W_x, b, h0, c0, xs, *, residuals):
    """The forward loop; with ``residuals`` also the per-step products the backward needs."""
    hoist, unroll = cfg

    def cell(h, c, z):
        z_f, z_i, z_c, z_o = _split4(z)
        f, i, g, o = jax.nn.sigmoid(z_f), jax.nn.sigmoid(z_i), jnp.tanh(z_c), jax.nn.sigmoid(z_o)
        c_new = c * f + g * i  # article eq. (5)
        tc = jnp.tanh(c_new)
        h_new = o * tc
        if not residuals:
            return h_new, c_new, h_new
        a = jnp.concatenate([c * _dsig(z_f), g * _dsig(z_i), i * _dtanh(z_c), tc * _dsig(z_o)], axis=-1)
        return h_new, c_new, (h_new, a, o * _dtanh(c_new), f)

    if hoist:
        def step(carry, zx):
            h, c = carry
            h, c, out = cell(h, c, zx + h @ W_h)
            return (h, c), out

        return jax.lax.scan(step, (h0, c0), _proj(xs, W_x, b), unroll=unroll)

    def step(carry, x):
        h, c = carry
        h, c, out = cell(h, c, h @ W_h + x @ W_x + b)
        return (h, c), out

    return jax.lax.scan(step, (h0, c0), xs, unroll=unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lstm_core(cfg, W_h, W_x, b, h0, c0, xs):
    (h, c), hs = _lstm_scan(cfg, W_h, W_x, b, h0, c0, xs, residuals=False)
    return h, c, hs


def _lstm_core_fwd(cfg, W_h, W_x, b, h0, c0, xs):
    (h, c), (hs, a, e, f) = _lstm_scan(cfg, W_h, W_x, b, h0, c0, xs, residuals=True)
    return (h, c, hs), (W_h, W_x, h0, xs, hs, a, e, f)


def _lstm_core_bwd(cfg, res, cts):
    W_h, W_x, h0, xs, hs, a, e, f = res
    dh_T, dc_T, dhs = cts
    n = W_h.shape[0]
    W_h_t = W_h.T
    dhs = dhs.at[-1].add(dh_T)

    def step(carry, inp):
        dh_next, dc = carry  # dh_next: cotangent of h_t from step t + 1
        dh_out, a_t, e_t, f_t = inp
        dh = dh_next + dh_out
        dc = dc + e_t * dh
        dz = a_t * jnp.concatenate([dc, dc, dc, dh], axis=-1)
        return (dz @ W_h_t, f_t * dc), dz

    (dh0, dc0), dZ = jax.lax.scan(step, (jnp.zeros_like(dh_T), dc_T), (dhs, a, e, f), reverse=True, unroll=cfg[1])
    rows = dZ.reshape(-1, 4 * n)
    dW_h, dW_x, dxs = _after_loop(h0, hs, xs, rows, rows, W_x)
    return dW_h, dW_x, rows.sum(axis=0), dh0, dc0, dxs


_lstm_core.defvjp(_lstm_core_fwd, _lstm_core_bwd)


def _check_batch(xs, m, time_major, state, state_name):
    """``xs`` validated and time-major ``(T >= 1, B, m)``, ``B`` the leading size of the ``state`` array."""
    xs = check_array(xs, "xs", ("T", "B", m) if time_major else ("B", "T", m))
    xs = xs if time_major else jnp.swapaxes(xs, 0, 1)
    B = state.shape[0]
    if xs.shape[1] != B or xs.shape[0] < 1:
        raise ValueError(f"xs has shape {xs.shape} (time-major) but (T >= 1, B = {B}, m = {m}) is expected "
                         f"from {state_name} of shape {state.shape}")
    return xs


def run_lstm_batch(
    params: LSTMParams,
    state0: LSTMState,
    xs: jax.Array,
    *,
    time_major: bool = True,
    hoist: bool = False,
    unroll: int = 1,
) -> tuple[LSTMState, jax.Array]:
    r"""The LSTM of :func:`~lstm_jax.run_lstm` over a batch, with a custom VJP for fast ``jax.grad`` (module docstring).

    Args:
      params: :class:`~lstm_jax.LSTMParams` (gate order f, i, c̃, o; biases may be ``None``).
      state0: :class:`~lstm_jax.LSTMState` ``(h_0, c_0)``, each ``(B, n)``.
      xs: ``(T, B, m)`` inputs (``(B, T, m)`` with ``time_major=False``), ``T >= 1``.
      time_major: layout of ``xs`` and of the returned outputs.
      hoist: compute the input projection :math:`X W_x + b` as one GEMM before the loop
        (``(T, B, 4n)`` streamed through memory) instead of one small GEMM per step; measured slower
        on CPU (``benchmarks/README.md``), hence off by default.
      unroll: steps per loop iteration of the forward and backward scans (:func:`jax.lax.scan`).

    Returns:
      ``(final, hs)``: ``final`` the :class:`~lstm_jax.LSTMState` :math:`(h_T, c_T)`, each ``(B, n)``;
      ``hs`` the outputs :math:`h_1..h_T`, ``(T, B, n)`` (``(B, T, n)`` with ``time_major=False``).
      Equal to ``jax.vmap(run_lstm, in_axes=(None, 0, 1))`` up to rounding (summation order of the GEMMs).

    Reverse mode only (``jax.grad``, ``jax.vjp``); for ``jax.jvp`` / ``jax.jacfwd`` use :func:`~lstm_jax.run_lstm`.
    Drop-in for a batch-major training loss on the final output::

        h_T = run_lstm_batch(p, LSTMState(jnp.zeros((B, n)), jnp.zeros((B, n))), xs_bTm, time_major=False)[0].h
    """
    p, n, m = check_lstm_params(params)
    s = as_named_tuple(state0, LSTMState, "state0")
    h0 = check_array(s.h, "state0.h", ("B", n))
    c0 = check_array(s.c, "state0.c", (h0.shape[0], n))
    xs = _check_batch(xs, m, time_major, h0, "state0.h")
    dtype = jnp.result_type(p.W_f.dtype, h0.dtype, c0.dtype, xs.dtype)
    p = jax.tree_util.tree_map(lambda v: v.astype(dtype), p)
    W, b = _fused(p, n)
    b = jnp.zeros((4 * n,), dtype) if b is None else b
    cfg = (check_bool(hoist, "hoist"), check_unroll(unroll, xs.shape[0]))
    h, c, hs = _lstm_core(cfg, W[:n], W[n:], b, h0.astype(dtype), c0.astype(dtype), xs.astype(dtype))
    return LSTMState(h, c), (hs if time_major else jnp.swapaxes(hs, 0, 1))


# --------------------------------------------------------------------------- RNN core


def _rnn_scan(activation, W_rec_t, W_in_t, b, c0, xs, *, residuals):
    def step(c, x):
        z = c @ W_rec_t + x @ W_in_t + b
        c_new = activation.fn(z)
        return c_new, ((c_new, activation.deriv(z)) if residuals else c_new)

    return jax.lax.scan(step, c0, xs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _rnn_core(activation, W_rec_t, W_in_t, b, c0, xs):
    return _rnn_scan(activation, W_rec_t, W_in_t, b, c0, xs, residuals=False)


def _rnn_core_fwd(activation, W_rec_t, W_in_t, b, c0, xs):
    c, (cs, d) = _rnn_scan(activation, W_rec_t, W_in_t, b, c0, xs, residuals=True)
    return (c, cs), (W_rec_t, W_in_t, c0, xs, cs, d)


def _rnn_core_bwd(activation, res, cts):
    W_rec_t, W_in_t, c0, xs, cs, d = res
    dc_T, dcs = cts
    W_rec = W_rec_t.T
    dcs = dcs.at[-1].add(dc_T)

    def step(dc_next, inp):
        dc_out, d_t = inp
        dz = d_t * (dc_next + dc_out)
        return dz @ W_rec, dz

    dc0, dZ = jax.lax.scan(step, jnp.zeros_like(dc_T), (dcs, d), reverse=True)
    rows = dZ.reshape(-1, dZ.shape[-1])
    dW_rec_t, dW_in_t, dxs = _after_loop(c0, cs, xs, rows, rows, W_in_t)
    return dW_rec_t, dW_in_t, rows.sum(axis=0), dc0, dxs


_rnn_core.defvjp(_rnn_core_fwd, _rnn_core_bwd)


def run_rnn_batch(
    params: RNNParams,
    c0: jax.Array,
    xs: jax.Array,
    activation: Activation = SIGMOID,
    *,
    time_major: bool = True,
) -> tuple[jax.Array, jax.Array]:
    r"""The RNN of :func:`~lstm_jax.run_rnn` over a batch, with a custom VJP for the whole scan.

    :math:`c_t = \phi(W_{rec} c_{t-1} + W_{in} x_t + b)` for ``c0 (B, n)``, ``xs (T, B, m)``
    (``(B, T, m)`` with ``time_major=False``).  The forward stores :math:`c_t` and :math:`\phi'(z_t)`;
    the backward loop runs :math:`\bar z_t = \phi'(z_t)\odot\bar c_t`, :math:`\bar c_{t-1} = \bar z_t W_{rec}`
    and forms :math:`\bar W_{rec} = \bar Z^\top C_{prev}`, :math:`\bar W_{in} = \bar Z^\top X` as single GEMMs
    over all ``T·B`` rows after the loop.  Cost per step ``2B(n+m)n`` FLOPs forward, about 3× that for
    value_and_grad; memory ``2·T·B·n``.  Reverse mode only; :func:`~lstm_jax.run_rnn` for ``jax.jacfwd``.

    Returns:
      ``(c_T (B, n), cs (T, B, n))`` (``cs`` batch-major with ``time_major=False``).
    """
    activation = as_activation(activation)  # SIGMOID/TANH or "sigmoid"/"tanh"; anything else: TypeError
    p, n, m = check_rnn_params(params)
    c0 = check_array(c0, "c0", ("B", n))
    xs = _check_batch(xs, m, time_major, c0, "c0")
    dtype = jnp.result_type(p.W_rec.dtype, c0.dtype, xs.dtype)
    b = jnp.zeros((n,), dtype) if p.b is None else p.b.astype(dtype)
    c, cs = _rnn_core(activation, p.W_rec.T.astype(dtype), p.W_in.T.astype(dtype), b, c0.astype(dtype), xs.astype(dtype))
    return c, (cs if time_major else jnp.swapaxes(cs, 0, 1))


# --------------------------------------------------------------------------- GRU core


def _gru_scan(W_h, W_x, b, h0, xs, *, residuals):
    """The GRU forward loop (:mod:`lstm_jax._gru` equations, row layout); with ``residuals`` the backward's factors.

    ``W_h (n, 3n)`` and ``W_x (m, 3n)`` hold the r, z, n blocks; ``b (4, n)`` is ``b_r, b_z, b_in, b_hn``.
    """
    n = h0.shape[-1]

    def step(h, x):
        Uh, Vx = h @ W_h, x @ W_x
        g = _gru_gates_from(Uh[:, :n] + Vx[:, :n] + b[0], Uh[:, n:2 * n] + Vx[:, n:2 * n] + b[1],
                            Uh[:, 2 * n:] + b[3], Vx[:, 2 * n:] + b[2])
        h_new = _gru_update(h, g)
        if not residuals:
            return h_new, h_new
        # da_n = dh * k_n;  da_r = da_n * k_r;  dq = da_n * r;  da_z = dh * k_z;  dh_prev (direct) = dh * z
        k_n = jax.nn.sigmoid(-g.a_z) * _dtanh(g.a_n)  # (1 - z) tanh'(a_n), 1 - z = sigma(-a_z) exactly
        return h_new, (h_new, jnp.stack([k_n, g.q * _dsig(g.a_r), g.r, (h - g.n) * _dsig(g.a_z), g.z]))

    return jax.lax.scan(step, h0, xs)


@jax.custom_vjp
def _gru_core(W_h, W_x, b, h0, xs):
    return _gru_scan(W_h, W_x, b, h0, xs, residuals=False)


def _gru_core_fwd(W_h, W_x, b, h0, xs):
    h, (hs, k) = _gru_scan(W_h, W_x, b, h0, xs, residuals=True)
    return (h, hs), (W_h, W_x, h0, xs, hs, k)


def _gru_core_bwd(res, cts):
    W_h, W_x, h0, xs, hs, k = res
    dh_T, dhs = cts
    W_h_t = W_h.T
    dhs = dhs.at[-1].add(dh_T)

    def step(dh_next, inp):
        dh_out, k_t = inp
        dh = dh_next + dh_out
        da_n = dh * k_t[0]
        da_r, dq, da_z = da_n * k_t[1], da_n * k_t[2], dh * k_t[3]
        dU = jnp.concatenate([da_r, da_z, dq], axis=-1)  # cotangent of h @ W_h
        return dh * k_t[4] + dU @ W_h_t, (dU, da_n)

    dh0, (dU, da_n) = jax.lax.scan(step, jnp.zeros_like(dh_T), (dhs, k), reverse=True)
    n = dU.shape[-1] // 3
    rows_U = dU.reshape(-1, 3 * n)
    rows_V = jnp.concatenate([rows_U[:, :2 * n], da_n.reshape(-1, n)], axis=-1)  # cotangent of x @ W_x
    db = jnp.stack([rows_V[:, :n].sum(0), rows_V[:, n:2 * n].sum(0), rows_V[:, 2 * n:].sum(0), rows_U[:, 2 * n:].sum(0)])
    dW_h, dW_x, dxs = _after_loop(h0, hs, xs, rows_U, rows_V, W_x)
    return dW_h, dW_x, db, dh0, dxs


_gru_core.defvjp(_gru_core_fwd, _gru_core_bwd)


def run_gru_batch(
    params: GRUParams,
    h0: jax.Array,
    xs: jax.Array,
    *,
    time_major: bool = True,
) -> tuple[jax.Array, jax.Array]:
    r"""The GRU of :func:`~lstm_jax.run_gru` over a batch, with a custom VJP for the whole scan.

    Same equations and PyTorch / cuDNN convention as :mod:`lstm_jax._gru`, for ``h0 (B, n)`` and
    ``xs (T, B, m)`` (``(B, T, m)`` with ``time_major=False``).  Per step two GEMMs,
    :math:`h_{t-1} W_h` and :math:`x_t W_x` with the r, z, n blocks fused (``(n, 3n)``, ``(m, 3n)``).  The
    forward stores :math:`h_t` and five ``(B, n)`` factors; the backward loop runs

    .. math::

        \bar a_n = \bar h\,(1 - z)\tanh'(a_n),\quad \bar a_r = \bar a_n\, q\,\sigma'(a_r),\quad
        \bar q = \bar a_n\, r,\quad \bar a_z = \bar h\,(h_{t-1} - n_t)\sigma'(a_z),\\
        \bar h_{t-1} = \bar h\, z + [\bar a_r, \bar a_z, \bar q]\, W_h^\top

    (:math:`1 - z = \sigma(-a_z)`, robust derivatives of :mod:`lstm_jax._activations`) and forms the weight
    and bias gradients after the loop as single GEMMs / sums over all ``T·B`` rows.  Cost per step
    ``2B(n+m)·3n`` FLOPs forward, about 3× for value_and_grad; memory ``6·T·B·n``.  Reverse mode only;
    :func:`~lstm_jax.run_gru` for ``jax.jacfwd``.

    Returns:
      ``(h_T (B, n), hs (T, B, n))`` (``hs`` batch-major with ``time_major=False``).
    """
    p, n, m = check_gru_params(params)
    h0 = check_array(h0, "h0", ("B", n))
    xs = _check_batch(xs, m, time_major, h0, "h0")
    dtype = jnp.result_type(p.W_r.dtype, h0.dtype, xs.dtype)
    Ws = [getattr(p, w).astype(dtype) for w in ("W_r", "W_z", "W_n")]
    W_h = jnp.concatenate([W[:, :n].T for W in Ws], axis=1)
    W_x = jnp.concatenate([W[:, n:].T for W in Ws], axis=1)
    b = jnp.stack([jnp.zeros((n,), dtype) if v is None else v.astype(dtype) for v in (p.b_r, p.b_z, p.b_in, p.b_hn)])
    h, hs = _gru_core(W_h, W_x, b, h0.astype(dtype), xs.astype(dtype))
    return h, (hs if time_major else jnp.swapaxes(hs, 0, 1))
