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
import itertools
import jax
import jax.numpy as jnp

from ._activations import SIGMOID, Activation, as_activation
from ._cell import Weights, input_preactivation, recurrent_preactivation, vjp_blocks
from ._gru import CELL as GRU_CELL
from ._gru import GRUParams
from ._lstm import CELL as LSTM_CELL
from ._lstm import LSTMParams, LSTMState
from ._rnn import RNNParams, rnn_cell
from ._scan import previous_states
from ._validation import check_array, check_bool, check_unroll


def _proj(xs, W_x, b):
    """``xs (T, B, m) @ W_x (m, G n) + b`` as one GEMM over ``T·B`` rows."""
    T, B, m = xs.shape
    z = xs.reshape(T * B, m) @ W_x
    return (z if b is None else z + b).reshape(T, B, -1)


def _scan(cell, cfg, w, s0, xs, *, residuals):
    """The forward loop on ``(B, n)`` blocks; with ``residuals`` also the rows the backward needs: the
    recurrent block's states (for :math:`\bar W_h`), the outputs and the cell's factors."""
    hoist, unroll = cfg

    def body(blocks, z_x):
        new, F = cell.update(blocks, recurrent_preactivation(cell, w, blocks), z_x)
        out = new[cell.out_block]
        # the factors stored as one (B, K) row per step: one write per step instead of one per factor
        return new, ((out, jnp.concatenate(jax.tree_util.tree_leaves(F), axis=-1)) if residuals else out)

    if hoist:
        return jax.lax.scan(body, s0, _proj(xs, w.W_x, w.b_x), unroll=unroll)
    return jax.lax.scan(lambda blocks, x: body(blocks, input_preactivation(w, x)), s0, xs, unroll=unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _core(cell, cfg, w, s0, xs):
    return _scan(cell, cfg, w, s0, xs, residuals=False)


def _core_fwd(cell, cfg, w, s0, xs):
    final, (outs, F) = _scan(cell, cfg, w, s0, xs, residuals=True)
    return (final, outs), (w, s0, xs, outs, F)


def _factor_tree(cell, w, s0, xs):
    """The structure of the cell's factors (traced once, shapes only) and each leaf's width."""
    F = jax.eval_shape(lambda: cell.update(s0, recurrent_preactivation(cell, w, s0), input_preactivation(w, xs[0]))[1])
    leaves, tree = jax.tree_util.tree_flatten(F)
    return tree, [leaf.shape[-1] for leaf in leaves]


def _core_bwd(cell, cfg, res, cts):
    w, s0, xs, outs, F = res
    tree, widths = _factor_tree(cell, w, s0, xs)
    cuts = list(itertools.accumulate(widths))[:-1]
    d_final, d_outs = cts
    W_h_t = None if w.W_h is None else w.W_h.T
    o = cell.out_block

    def back(g, inp):
        d_out, packed = inp
        F_t = jax.tree_util.tree_unflatten(tree, jnp.split(packed, cuts, axis=-1))  # this step's factors
        g = tuple(v + d_out if j == o else v for j, v in enumerate(g))
        g, dz_h, dz_x = vjp_blocks(cell, W_h_t, F_t, g)
        # one stored row when the two pre-activations share their cotangent (LSTM, RNN, sLSTM)
        return g, ((dz_h,) if dz_x is dz_h else (dz_h, dz_x))

    d_s0, dZ = jax.lax.scan(back, tuple(d_final), (d_outs, F), reverse=True, unroll=cfg[1])
    dZ_h, dZ_x = (dZ[0], dZ[0]) if len(dZ) == 1 else dZ
    # the weight gradients after the loop, each one GEMM over all T·B rows
    T, B, m = xs.shape
    rows_x = dZ_x.reshape(T * B, -1)
    d_w = {"W_x": xs.reshape(T * B, m).T @ rows_x, "b_x": None if w.b_x is None else rows_x.sum(axis=0),
           "W_h": None, "b_h": None}
    if w.W_h is not None:
        rows_h = dZ_h.reshape(T * B, -1)
        # the recurrent block's states before each step; the outputs are those states for every cell here
        assert cell.rec_block == o, "the batch runner needs the recurrent block to be the output block"
        n = outs.shape[-1]
        prev = previous_states(s0[o], outs).reshape(T * B, n)
        d_w["W_h"] = prev.T @ rows_h
        d_w["b_h"] = None if w.b_h is None else rows_h.sum(axis=0)
    dxs = (rows_x @ w.W_x.T).reshape(xs.shape)
    return Weights(**d_w), d_s0, dxs


_core.defvjp(_core_fwd, _core_bwd)


def _run_batch(cell, params, state0, state_name, xs, time_major, hoist, unroll):
    """Validate, cast and run one cell over a batch (the public runners' common body)."""
    p, n, m = cell.check(params, "params")
    blocks = cell.to_blocks(cell.coerce(state0, state_name))
    names = [state_name] if cell.width == 1 else [f"{state_name}.{b}" for b in cell.blocks]
    first = check_array(blocks[0], names[0], ("B", n))
    blocks = (first,) + tuple(check_array(v, nm, (first.shape[0], n)) for v, nm in zip(blocks[1:], names[1:]))
    xs = _check_batch(xs, m, time_major, first, names[0])
    dtype = jnp.result_type(*[a.dtype for a in jax.tree_util.tree_leaves((p, blocks, xs))])
    cast = lambda t: jax.tree_util.tree_map(lambda a: a.astype(dtype), t)  # noqa: E731
    cfg = (check_bool(hoist, "hoist"), check_unroll(unroll, xs.shape[0]))
    final, outs = _core(cell, cfg, cell.weights(cast(p)), cast(blocks), cast(xs))
    return cell.from_blocks(final), (outs if time_major else jnp.swapaxes(outs, 0, 1))


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
    return _run_batch(LSTM_CELL, params, state0, "state0", xs, time_major, hoist, unroll)


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
    return _run_batch(rnn_cell(as_activation(activation)), params, c0, "c0", xs, time_major, False, 1)


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
    return _run_batch(GRU_CELL, params, h0, "h0", xs, time_major, False, 1)
