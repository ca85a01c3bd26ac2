r"""Stacked and bidirectional recurrent models: the runner, each layer's own inputs, the exact stack Jacobian.

A stack is a sequence of *layer records*, each with attributes ``kind`` (``"lstm"``, ``"gru"``,
``"rnn-tanh"``, ``"rnn-sigmoid"``), ``params`` (:class:`~lstm_jax.LSTMParams`,
:class:`~lstm_jax.GRUParams`, :class:`~lstm_jax.RNNParams`), ``layer`` (depth, 0 reads the model's
inputs) and ``reverse`` (the backward direction of a bidirectional layer), ordered bottom to top,
forward before reverse at each depth -- ``lstm_jax.RecurrentLayer`` is such a record, and
``lstm_jax.io.load_model(...).layers`` such a sequence.  As ``torch.nn.LSTM``/``GRU``/``RNN`` with
``num_layers``/``bidirectional``: layer ``k > 0`` reads, at time ``t``, the concatenation of the
outputs :math:`h_t` of every direction of layer ``k - 1`` (forward first).

**Reverse direction on reversed time.**  The reverse direction of a right-padded sequence of
``L`` valid steps reads :math:`x_L, x_{L-1}, \dots, x_1` followed by the padding (PyTorch's packed
sequences start it at the last *valid* step); in its own time it is an ordinary right-padded
recurrence of length ``L``, so every single-recurrence diagnostic applies to it unchanged
(:attr:`StackRun.inputs` holds each recurrence's inputs in its own time order).

**Exact step Jacobian of a unidirectional stack.**  With the joint state
:math:`S_t = [s^0_t; s^1_t; \dots]` (:math:`s^k = [h; c]` for an LSTM layer, :math:`h` for a GRU or
RNN layer) and :math:`X^k_t = \partial s^k_t/\partial x^k_t` the input Jacobian of layer ``k`` whose
input is :math:`x^k_t = h^{k-1}_t`:

.. math::

    \frac{\partial s^k_t}{\partial s^j_{t-1}} =
    \begin{cases}
      J^k_t & j = k \quad\text{(the layer's own step Jacobian)}\\
      X^k_t\, \Pi_h \frac{\partial s^{k-1}_t}{\partial s^j_{t-1}} & j < k\\
      0 & j > k,
    \end{cases}

with :math:`\Pi_h` the rows of :math:`h` in :math:`s^{k-1}`: block lower-triangular across layers.
The diagonal blocks are the analytic step Jacobians of this package; :math:`X^k_t` is the
forward-mode derivative (:func:`jax.jacfwd`) of the same cell step.  The flow from the top output back
to every layer's state is then read from the suffix products of these Jacobians
(:func:`stack_flow`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from ._cell import check_call, flat, jacobians_along, run, step, unflat
from ._flow import suffix_products
from ._registry import KINDS, cell_of
from ._scan import check_seq_lengths
from ._validation import check_array


class StackRun(NamedTuple):
    """What :func:`run_stack` returns.

    Attributes:
      outputs: ``(T, directions * n)`` outputs of the top layer at each (original) time step,
        forward direction first; zeros at padded steps.
      inputs: per layer record, the ``(T, m_k)`` inputs it reads **in its own time order** (reversed
        for a reverse direction, padding kept at the end), so that
        ``run_<kind>(params, state0, inputs[i], seq_lengths=L)`` is that recurrence alone.
      finals: per layer record, its final state (:class:`~lstm_jax.LSTMState` or ``(n,)``), after its
        last valid step.
      trajectories: per layer record, its states in its own time order (``LSTMState`` of ``(T, n)``
        or ``(T, n)``).
    """

    outputs: jax.Array
    inputs: tuple
    finals: tuple
    trajectories: tuple


def check_recurrent_params(kind: str, params: Any, name: str = "params") -> tuple[Any, int, int]:
    """Validate the parameters of one recurrence of kind ``kind`` (one of ``"lstm"``, ``"gru"``,
    ``"rnn-tanh"``, ``"rnn-sigmoid"``); return ``(params, n, m)`` with ``params`` as the kind's NamedTuple.

    Raises:
      ValueError / TypeError: naming ``name``, what was found and what is expected.
    """
    return cell_of(kind).check(params, name)


def _check_layers(layers, name="layers"):
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not len(layers):
        raise TypeError(
            f"{name} must be a non-empty sequence of layer records (attributes kind, params, layer, reverse; "
            f"e.g. lstm_jax.io.load_model(...).layers), got {type(layers).__name__}"
        )
    out = []
    for i, rec in enumerate(layers):
        missing = [a for a in ("kind", "params", "layer", "reverse") if not hasattr(rec, a)]
        if missing and type(rec).__name__ in ("LSTMParams", "GRUParams", "RNNParams"):
            raise TypeError(f"{name}[{i}] is one cell's {type(rec).__name__}, not a layer record; make records with "
                            f"lstm_jax.io.load_model(params).layers (or lstm_jax.RecurrentLayer)")
        if missing:
            raise TypeError(f"{name}[{i}] is a {type(rec).__name__} without {missing}; expected a layer record "
                            f"with kind, params, layer, reverse (e.g. lstm_jax.RecurrentLayer)")
        if rec.kind not in KINDS:
            raise ValueError(f"{name}[{i}].kind must be one of {KINDS}, got {rec.kind!r}")
        _, n, m = check_recurrent_params(rec.kind, rec.params, f"{name}[{i}].params")
        out.append((rec, n, m))
    depths = sorted({rec.layer for rec, _, _ in out})
    if depths != list(range(len(depths))):
        raise ValueError(f"{name}: layer depths must be 0..K-1, got {depths}")
    for k in depths:
        dirs = [rec.reverse for rec, _, _ in out if rec.layer == k]
        if dirs not in ([False], [False, True]):
            raise ValueError(f"{name}: depth {k} must hold one forward record, then optionally one reverse record; "
                             f"got reverse flags {dirs}")
    if [rec.layer for rec, _, _ in out] != sorted(rec.layer for rec, _, _ in out):
        raise ValueError(f"{name} must be ordered bottom to top")
    return out


def _reverse_index(T: int, L):
    t = jnp.arange(T)
    return T - 1 - t if L is None else jnp.where(t < L, L - 1 - t, t)


def _run_one(kind, params, state0, xs, L, state_name="state0"):
    cell = cell_of(kind)
    p, s0, xs, _, _ = check_call(cell, params, state0, state_name, xs, "xs")  # validated and cast to one dtype
    w = cell.weights(p)
    final, traj = run(cell, w, s0, xs, seq_lengths=L)
    return final, traj, cell.outputs(w, traj, xs)


def run_stack(layers: Sequence[Any], xs: jax.Array, *, states0: Sequence[Any] | None = None, seq_lengths=None) -> StackRun:
    r"""Run a stacked (possibly bidirectional) model over ``xs (T, m)`` (module docstring).

    Args:
      layers: layer records (``kind``, ``params``, ``layer``, ``reverse``), bottom to top.
      xs: ``(T, m)`` inputs of layer 0, time-major.
      states0: ``None`` (zero initial states) or one initial state per record.
      seq_lengths: ``None`` or the number of valid steps ``L`` of this right-padded sequence (see
        :func:`~lstm_jax.run_lstm`); batch with :func:`jax.vmap`.

    Returns:
      :class:`StackRun`.
    """
    recs = _check_layers(layers)
    xs = check_array(xs, "xs", ("T", recs[0][2]))
    T = xs.shape[0]
    L = check_seq_lengths(seq_lengths, T)
    if states0 is not None and len(states0) != len(recs):
        raise ValueError(f"states0 must hold one initial state per layer record ({len(recs)}), got {len(states0)}")
    valid = jnp.ones((T, 1), bool) if L is None else (jnp.arange(T) < L)[:, None]
    rev = _reverse_index(T, L)
    inputs, finals, trajs = [], [], []
    layer_in = xs
    for k in range(recs[-1][0].layer + 1):
        outs = []
        for i, (rec, n, m) in enumerate(recs):
            if rec.layer != k:
                continue
            if layer_in.shape[1] != m:
                raise ValueError(f"layers[{i}] ({rec.kind}, depth {k}) expects inputs of size {m}, "
                                 f"but depth {k - 1} outputs {layer_in.shape[1]}")
            x_own = layer_in[rev] if rec.reverse else layer_in
            s0 = cell_of(rec.kind).zero(n, xs.dtype) if states0 is None else states0[i]
            final, traj, hs = _run_one(rec.kind, rec.params, s0, x_own, L, f"states0[{i}]")
            inputs.append(x_own)
            finals.append(final)
            trajs.append(traj)
            outs.append(jnp.where(valid, hs[rev], 0) if rec.reverse else hs)
        layer_in = jnp.concatenate(outs, axis=-1)
    return StackRun(layer_in, tuple(inputs), tuple(finals), tuple(trajs))


def mask_padded_jacobians(jacs: jax.Array, seq_lengths) -> jax.Array:
    """Step Jacobians ``(T, d, d)`` with every step ``t > L`` replaced by the identity (a padded step keeps its state).

    ``seq_lengths`` is the scalar ``L`` (batch with :func:`jax.vmap`); ``None`` returns ``jacs`` unchanged.
    """
    jacs = check_array(jacs, "jacs", ("T", "d", "d"))
    L = check_seq_lengths(seq_lengths, jacs.shape[0])
    if L is None:
        return jacs
    keep = (jnp.arange(jacs.shape[0]) < L)[:, None, None]
    return jnp.where(keep, jacs, jnp.eye(jacs.shape[-1], dtype=jacs.dtype))


def _own_jacobians(kind, params, s0, xs):
    """The exact step Jacobians of one recurrence from ``s0`` (the cell protocol's dense consumer)."""
    cell = cell_of(kind)
    p, s0, xs, _, _ = check_call(cell, params, s0, "state0", xs, "xs")
    w = cell.weights(p)
    return jacobians_along(cell, w, s0, run(cell, w, s0, xs)[1], xs)


def run_cell(kind: str, params: Any, state0: Any, xs: jax.Array, *, unroll: int = 1, remat: bool | int = False,
             seq_lengths=None) -> tuple:
    """Run one recurrence of any registered kind over ``xs (T, m)``: ``(final, trajectory)``.

    The runner of every cell (the cell protocol's ``lax.scan``); for the LSTM, GRU and RNN it is exactly
    :func:`~lstm_jax.run_lstm`, :func:`~lstm_jax.run_gru`, :func:`~lstm_jax.run_rnn`.  ``state0`` is the cell's
    state (``cell_of(kind).zero(n, dtype)`` gives zeros); ``unroll``, ``remat``, ``seq_lengths`` as in
    :func:`~lstm_jax.run_lstm`.
    """
    cell = cell_of(kind)
    p, s0, xs, _, _ = check_call(cell, params, state0, "state0", xs, "xs")
    return run(cell, cell.weights(p), s0, xs, unroll=unroll, remat=remat, seq_lengths=check_seq_lengths(seq_lengths, xs.shape[0]))


def step_jacobians(kind: str, params: Any, xs: jax.Array, *, state0: Any = None, seq_lengths=None) -> jax.Array:
    r"""The exact step Jacobians of one recurrence of any kind along ``xs (T, m)``: ``(T, d, d)``.

    Dispatches to :func:`~lstm_jax.lstm_step_jacobians` (``d = 2n``, joint state ``[h; c]``),
    :func:`~lstm_jax.gru_step_jacobians` or :func:`~lstm_jax.rnn_step_jacobians` (``d = n``); ``state0``
    defaults to zeros; with ``seq_lengths = L`` the steps past ``L`` are the identity
    (:func:`mask_padded_jacobians`).  For one record of a stack: ``step_jacobians(rec.kind, rec.params,
    run_stack(layers, xs).inputs[i])`` (the record starts from zeros in :func:`run_stack` too).
    """
    params, n, m = check_recurrent_params(kind, params)
    xs = check_array(xs, "xs", ("T", m))
    s0 = cell_of(kind).zero(n, jnp.result_type(params[0].dtype, xs.dtype)) if state0 is None else state0
    return mask_padded_jacobians(_own_jacobians(kind, params, s0, xs), seq_lengths)


class StackJacobians(NamedTuple):
    """What :func:`stack_step_jacobians` returns.

    Attributes:
      jacs: ``(T, D, D)`` exact step Jacobians :math:`\\partial S_t/\\partial S_{t-1}` of the joint state
        (identity at padded steps).
      slices: per layer, ``(start, stop)`` of its state :math:`s^k` in :math:`S` (``[h; c]`` for an LSTM layer).
      h_slices: per layer, ``(start, stop)`` of its output :math:`h^k` in :math:`S`.
    """

    jacs: jax.Array
    slices: tuple
    h_slices: tuple


def stack_step_jacobians(layers: Sequence[Any], xs: jax.Array, *, seq_lengths=None) -> StackJacobians:
    r"""Exact step Jacobians of a **unidirectional** stack from zero states over ``xs (T, m)`` (module docstring).

    Bidirectional models have no joint step map (the two directions run on opposite time orders):
    diagnose each direction as its own recurrence with :attr:`StackRun.inputs`.
    """
    recs = _check_layers(layers)
    if any(rec.reverse for rec, _, _ in recs):
        raise ValueError("stack_step_jacobians needs a unidirectional stack: a bidirectional layer has no joint "
                         "step map; diagnose each direction as its own recurrence (run_stack(...).inputs)")
    stack = run_stack(layers, xs, seq_lengths=seq_lengths)
    blocks, slices, h_slices, start = [], [], [], 0
    prev_rows = None  # d h^{k-1}_t / d S_{t-1} restricted to layers 0..k-1: (T, n_{k-1}, start)
    for (rec, n, m), x_own, traj in zip(recs, stack.inputs, stack.trajectories):
        cell = cell_of(rec.kind)
        d = cell.width * n
        s0 = cell.zero(n, stack.outputs.dtype)
        w = cell.weights(cell.check(rec.params, "params")[0])
        # (T, d, d), analytic, on the trajectory run_stack computed (masked below: steps past L keep the state)
        own = jacobians_along(cell, w, s0, traj, x_own)
        if prev_rows is None:
            row = own
        else:
            prev_vec = jnp.concatenate([flat(cell, s0)[None], flat(cell, traj)[:-1]], axis=0)
            X = jax.vmap(lambda sv, x: jax.jacfwd(
                lambda x_: jnp.concatenate(step(cell, w, cell.to_blocks(unflat(cell, sv)), x_)[0]))(x)
            )(prev_vec, x_own)  # (T, d, m): input Jacobian of the same cell step
            row = jnp.concatenate([X @ prev_rows, own], axis=-1)
        blocks.append(row)
        slices.append((start, start + d))
        h_slices.append((start, start + n))
        prev_rows = row[:, :n, :]  # the h rows of this layer's block row
        start += d
    D = start
    jacs = jnp.concatenate([jnp.pad(b, ((0, 0), (0, 0), (0, D - b.shape[-1]))) for b in blocks], axis=1)
    return StackJacobians(mask_padded_jacobians(jacs, seq_lengths), tuple(slices), tuple(h_slices))


def stack_flow(stack: StackJacobians) -> tuple:
    r"""Flow from the top layer's output back to every layer's state: per layer, ``(T, n_top, d_k)``.

    Entry ``t - 1`` of layer ``k``'s array is :math:`\partial h^{top}_T/\partial s^k_{t-1}` for
    ``t = 1..T`` (so entry 0 is the derivative w.r.t. the initial state, entry ``T-1`` w.r.t.
    :math:`s^k_{T-1}`), the rows of :func:`~lstm_jax.suffix_products` of the stack Jacobians.
    """
    P = suffix_products(stack.jacs)  # P[t] = J_T ... J_{t+1}: d S_T / d S_t
    a, b = stack.h_slices[-1]
    return tuple(P[:, a:b, lo:hi] for lo, hi in stack.slices)
