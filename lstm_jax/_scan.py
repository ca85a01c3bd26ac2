r"""The one place where a cell step is run over time with :func:`jax.lax.scan`.

Memory of reverse-mode differentiation (BPTT) through ``T`` steps, state of size ``S``:

* ``remat=False``: every step's internals are stored, :math:`O(T \cdot R)` with ``R`` the
  residuals of one step (for the LSTM, gates and pre-activations: several times ``S``).
* ``remat=True`` (``= 1``): :func:`jax.checkpoint` around each step; only the carries are
  stored, :math:`O(T \cdot S)`, and each step is recomputed once in the backward pass.
* ``remat=k > 1``: the sequence is cut into segments of ``k`` steps, each segment is one
  checkpointed inner scan (nested scans).  The forward pass stores one carry per segment,
  :math:`O(T/k \cdot S)`; the backward pass recomputes one segment at a time, storing its
  ``k`` steps' residuals, :math:`O(k \cdot R)`.  ``k \approx \sqrt{T}`` gives
  :math:`O(\sqrt{T})` memory for one extra forward pass
  (Chen et al. 2016, *Training deep nets with sublinear memory cost*, arXiv:1604.06174;
  Gruslys et al. 2016, *Memory-efficient backpropagation through time*, arXiv:1606.03401).

The stacked per-step outputs (the trajectory) are part of the result and cost :math:`O(T \cdot S)`
whatever ``remat`` is; under :func:`jax.jit` XLA drops them when the caller does not use them.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import check_unroll


def check_remat(remat: Any) -> int:
    """``remat`` as a segment length: ``False`` -> 0 (no checkpointing), ``True`` -> 1, ``k >= 1`` -> k.

    ``numpy.bool_`` counts as a bool; floats (``2.5``, ``2.0``), strings and ``None`` are a ``TypeError``.
    """
    if isinstance(remat, (bool, np.bool_)):
        return int(remat)
    accepts = "a bool or a positive int (segment length)"
    try:
        k = operator.index(remat)
    except TypeError:
        raise TypeError(f"remat must be {accepts}, got {type(remat).__name__} {remat!r}") from None
    if k < 1:
        raise ValueError(f"remat must be {accepts}, got {k}")
    return k


def scan_steps(
    step: Callable[[Any, jax.Array], tuple[Any, Any]],
    carry0: Any,
    xs: jax.Array,
    *,
    unroll: int | bool,
    remat: bool | int,
    seq_lengths: Any = None,
) -> tuple[Any, Any]:
    """Run ``step`` over the leading (time) axis of ``xs``; ``remat`` as in the module docstring.

    ``unroll`` (an int in ``1..T``, :func:`~lstm_jax._validation.check_unroll`: ``True`` or ``0``
    would unroll all ``T`` steps) is passed to every :func:`jax.lax.scan` (the inner one for
    segments, capped at the segment length).  A last segment shorter than ``k`` (when ``k`` does
    not divide ``T``) is checkpointed on its own.

    ``seq_lengths``: ``None``, or a scalar integer ``L`` (validated by :func:`check_seq_lengths`) for a
    right-padded sequence: at steps ``t > L`` (1-based) the carry is kept unchanged -- so the step map
    there is the identity and its Jacobian the identity matrix -- and the step's outputs are set to
    zeros (as ``torch.nn.utils.rnn.pad_packed_sequence`` pads).  The final carry is the state after
    step ``L``.
    """
    unroll = check_unroll(unroll, xs.shape[0])
    if seq_lengths is not None:
        return _scan_padded(step, carry0, xs, unroll=unroll, remat=remat, length=seq_lengths)
    k = check_remat(remat)
    if k <= 1:
        body = jax.checkpoint(step) if k == 1 else step
        return jax.lax.scan(body, carry0, xs, unroll=unroll)

    # Segments are read with dynamic_slice from the closed-over xs instead of reshaping xs to
    # (T/k, k, ...): under vmap the reshape moves the batch axis to the front and the outer scan moves it
    # back, two copies of xs (measured: 4096 vs 83 bytes of XLA temporaries per step, B = 8, m = 64).
    T = xs.shape[0]
    full, rest = divmod(T, k)

    def segment(length):
        @functools.partial(jax.checkpoint, prevent_cse=False)
        def run(carry, start):
            return jax.lax.scan(step, carry, jax.lax.dynamic_slice_in_dim(xs, start, length),
                                unroll=min(unroll, length))

        return run

    carry, ys = carry0, []
    if full:
        carry, y_head = jax.lax.scan(segment(k), carry, jnp.arange(full) * k)
        ys.append(jax.tree_util.tree_map(lambda y: y.reshape(full * k, *y.shape[2:]), y_head))
    if rest:
        carry, y_tail = segment(rest)(carry, full * k)
        ys.append(y_tail)
    if len(ys) == 1:
        return carry, ys[0]
    return carry, jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), *ys)


def previous_states(state0: Any, trajectory: Any) -> Any:
    r"""The states *before* each step: :math:`(s_0, s_1, \dots, s_{T-1})` from ``state0`` and a trajectory ``(s_1..s_T)``.

    Works leaf-wise on pytrees (e.g. :class:`~lstm_jax.LSTMState` of ``(T, n)`` arrays): each leaf is
    ``concatenate([s0[None], s[:-1]])``, shape ``(T, ...)``.  Step ``t`` of a runner maps
    ``previous_states(...)[t - 1]`` and ``x_t`` to ``trajectory[t - 1]``.
    """
    return jax.tree_util.tree_map(lambda a0, a: jnp.concatenate([a0[None], a[:-1]], axis=0), state0, trajectory)
def check_seq_lengths(seq_lengths: Any, T: int) -> Any:
    """Validate ``seq_lengths`` for a sequence of ``T`` steps: ``None`` or an integer scalar ``0 <= L <= T``.

    Concrete values are range-checked; traced values (under :func:`jax.vmap` / :func:`jax.jit`) only
    for shape and dtype.  Returns ``None`` or an int32 scalar array.
    """
    if seq_lengths is None:
        return None
    if isinstance(seq_lengths, bool):
        raise TypeError(f"seq_lengths must be an integer number of valid steps, got {seq_lengths!r}")
    L = jnp.asarray(seq_lengths)
    if L.ndim != 0 or not jnp.issubdtype(L.dtype, jnp.integer):
        raise TypeError(
            f"seq_lengths must be an integer scalar (the valid steps of this (T, m) sequence; batch with "
            f"jax.vmap), got shape {L.shape} dtype {L.dtype}"
        )
    if not isinstance(L, jax.core.Tracer) and not 0 <= int(L) <= T:
        raise ValueError(f"seq_lengths must be in 0..T = 0..{T}, got {int(L)}")
    return L.astype(jnp.int32)


def _scan_padded(step, carry0, xs, *, unroll, remat, length):
    """:func:`scan_steps` with a step counter in the carry; steps past ``length`` keep the carry, output zeros."""

    def masked(carry, x):
        t, c = carry
        c_new, y = step(c, x)
        keep = t < length
        c_new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), c_new, c)
        y = jax.tree_util.tree_map(lambda a: jnp.where(keep, a, jnp.zeros_like(a)), y)
        return (t + 1, c_new), y

    (_, carry), ys = scan_steps(masked, (jnp.zeros((), jnp.int32), carry0), xs, unroll=unroll, remat=remat)
    return carry, ys
