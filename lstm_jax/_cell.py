r"""The cell protocol: each recurrence written once, every algorithm a consumer of it.

A cell is a recurrence :math:`s_t = F(s_{t-1}, x_t)` on a state made of ``len(blocks)`` vectors of
size ``n`` (LSTM: ``(h, c)``; GRU: ``(h,)``; RNN: ``(c,)``), flattened as their concatenation
:math:`s \in \mathbb{R}^d`, ``d = len(blocks) n``.  Every cell of this package has the same two-stage form:

1. **pre-activations**, the only place a weight matrix meets the state:
   :math:`z^h_t = r_{t-1} W_h + b_h` and :math:`z^x_t = x_t W_x + b_x`, each of ``G n`` entries
   (``G`` the number of gate blocks), where :math:`r_{t-1}` is the state block named by ``rec_block``
   (the LSTM's and GRU's :math:`h_{t-1}`, the RNN's :math:`c_{t-1}`).  A cell whose gates read the
   input only has ``rec_block = None`` and no :math:`W_h`;
2. an **update** :math:`(s_{t-1}, z^h_t, z^x_t) \mapsto s_t` that acts **unit by unit**: unit ``j`` of
   :math:`s_t` reads unit ``j`` of every block of :math:`s_{t-1}`, :math:`z^h_t`, :math:`z^x_t`.  It returns
   the new state and its *factors* ``F``: the diagonal derivatives of that map (each ``(..., n)``).

With the factors the exact step Jacobian is

.. math::

    J_t = \frac{\partial s_t}{\partial s_{t-1}}
        = \underbrace{\frac{\partial s_t}{\partial z^h_t}}_{\text{diagonal blocks}} W_h^\top \Pi_{rec}
        + \underbrace{\frac{\partial s_t}{\partial s_{t-1}}\Big|_{z}}_{\text{diagonal blocks}},

(:math:`\Pi_{rec}` selects the ``rec_block`` rows of :math:`s`), which a cell states through two
linear maps on its factors: ``tangent(F, dz_h, ds)`` (the map :math:`(\delta z^h, \delta s_{t-1}) \mapsto
\delta s_t`) and its transpose ``cotangent(F, g)`` (:math:`\bar s_t \mapsto (\bar z^h, \bar z^x,
\bar s_{t-1}|_z)`).  Both act on **rows**: arrays ``(..., n)`` whose leading axes are directions or batch
members, so one definition serves one example, a batch, and ``k`` directions at once.  The consumers,
written once here for every cell:

* :func:`dense_jacobian` — :math:`J_t` ``(d, d)``;
* :func:`jacobian_diagonal` — :math:`\operatorname{diag} J_t` ``(d,)`` without forming :math:`J_t`
  (an impulse per state block, the diagonals of the :math:`W_h` blocks);
* :func:`jvp_rows` — :math:`(J_t Q)^\top` for ``Q^T`` rows ``(..., d)`` (Lyapunov exponents);
* :func:`vjp_rows` — :math:`(J_t^\top W)^\top` for ``W^T`` rows ``(..., d)`` (flow norms, backpropagation),
  also returning :math:`\bar z^h, \bar z^x` (the custom-VJP runners form the weight gradients from them);
  :func:`jvp_cols` / :func:`vjp_cols` the same maps on ``(d, k)`` columns, and :func:`vjp_wide`
  :math:`J_t^\top G` for a wide ``G`` (``k`` about ``d``: the whole product of ``lstm-jax diagnose``'s flow curve),
  with the ``rec_block`` rows of :math:`J_t^\top` formed once.

The exact Jacobians (:mod:`lstm_jax._jacobians`), the batch runners with a custom VJP
(:mod:`lstm_jax._fast`), the matrix-free diagnostics (:mod:`lstm_jax._matfree`), parallel-in-time evaluation
(:mod:`lstm_jax._parallel`) and the stack Jacobians (:mod:`lstm_jax._stack`) use only these.  Adding a cell
is one module defining a :class:`Cell` and one entry in :mod:`lstm_jax._registry`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._scan import previous_states, scan_steps
from ._validation import check_array


class Weights(NamedTuple):
    """A cell's weights in row layout: ``W_h (n, G n)`` or ``None``, ``W_x (m, G n)``, ``b_h, b_x (G n,)`` or ``None``
    (zero); ``extra``: what a cell's ``output`` readout needs (a pytree), else ``None``."""

    W_h: Optional[jax.Array]
    W_x: jax.Array
    b_h: jax.Array
    b_x: jax.Array
    extra: Any = None


class Cell(NamedTuple):
    r"""One recurrence, described once (module docstring).

    Attributes:
      kind: the registry name (``"lstm"``, ``"gru"``, ``"rnn-tanh"``, ...).
      blocks: names of the ``n``-vectors that make up the state, in flat order (``("h", "c")``).
      out_block: index of the block the next layer reads (the output :math:`h_t`).
      rec_block: index of the block multiplied by :math:`W_h`, or ``None`` (gates read the input only).
      params_type: the cell's parameter NamedTuple (e.g. :class:`~lstm_jax.LSTMParams`).
      check: ``(params, name) -> (params, n, m)``: validation, the params as the cell's NamedTuple.
      weights: ``params -> Weights`` (row layout, fused gate blocks).
      update: ``(blocks, z_h, z_x) -> (blocks, F)``: the unit-wise update and its factors.
      tangent: ``(F, dz_h, ds) -> ds_new``: its derivative, on rows (``dz_h`` is ``None`` exactly when ``rec_block`` is).
      cotangent: ``(F, g) -> (dz_h, dz_x, ds)``: the transpose; ``ds`` entries may be ``None`` (zero).
      to_blocks: the cell's state object -> tuple of blocks;  from_blocks: the inverse.
      zero: ``(n, dtype) -> state``.
      coerce: ``(state, name) -> state``: a user's state (e.g. a dict) as the cell's state object, or a clear error.
      description: one line for reports.
      diagonal_linear: ``True`` for a cell whose update is :math:`s_t = a_t\odot s_{t-1} + b_t` with
        :math:`a_t, b_t` from the input alone (``rec_block`` is ``None``): its Jacobian is
        :math:`\operatorname{diag}(a_t)` and :func:`lstm_jax.parallel_run_linear` solves it in parallel over time.
      output: ``None`` (the layer's output is the ``out_block`` of the state) or ``(w, blocks, x) -> h`` for a cell
        whose output is a readout of the new state and the input that does not feed back (the mLSTM's
        :math:`h_t = o_t \odot C_t q_t / \max(|n_t^\top q_t|, 1)`); :func:`outputs` applies it.
    """

    kind: str
    blocks: tuple
    out_block: int
    rec_block: Optional[int]
    params_type: type
    check: Callable
    weights: Callable
    update: Callable
    tangent: Callable
    cotangent: Callable
    to_blocks: Callable
    from_blocks: Callable
    zero: Callable
    coerce: Callable
    description: str
    diagonal_linear: bool = False
    output: Optional[Callable] = None

    @property
    def width(self) -> int:
        """Number of ``n``-blocks in the flat state (``d = width * n``)."""
        return len(self.blocks)

    # The consumers as methods, for the wings (diagnose, io, experiments) that hold a cell from the registry.
    def run(self, w: "Weights", state0: Any, xs: jax.Array, **kw):
        """:func:`run` of this cell: ``(final, trajectory)``."""
        return run(self, w, state0, xs, **kw)

    def jacobians_along(self, w: "Weights", state0: Any, trajectory: Any, xs: jax.Array) -> jax.Array:
        """:func:`jacobians_along` of this cell: ``(T, d, d)``."""
        return jacobians_along(self, w, state0, trajectory, xs)

    def factors_along(self, w: "Weights", state0: Any, trajectory: Any, xs: jax.Array) -> Any:
        """:func:`factors_along` of this cell from a run's ``state0`` and ``trajectory``: every step's ``F_t``."""
        return factors_along(self, w, previous_states(state0, trajectory), xs)

    def jvp_cols(self, w: "Weights", F: Any, Q: jax.Array) -> jax.Array:
        """:func:`jvp_cols` of this cell: :math:`J_t Q`."""
        return jvp_cols(self, w, F, Q)

    def vjp_wide(self, w: "Weights", F: Any, G: jax.Array) -> jax.Array:
        """:func:`vjp_wide` of this cell: :math:`J_t^\\top G` for a wide ``G``."""
        return vjp_wide(self, w, F, G)

    def jacobian_diagonal(self, w: "Weights", F: Any, n: int) -> jax.Array:
        """:func:`jacobian_diagonal` of this cell: :math:`\\operatorname{diag} J_t`."""
        return jacobian_diagonal(self, w, F, n)

    def preactivations(self, w: "Weights", blocks: tuple, x: jax.Array) -> tuple:
        """:func:`preactivations` of this cell: ``(z_h, z_x)``."""
        return preactivations(self, w, blocks, x)

    def step(self, w: "Weights", blocks: tuple, x: jax.Array) -> tuple:
        """:func:`step` of this cell: ``(blocks_t, F_t)`` (rows ``(..., n)``, inputs ``(..., m)``)."""
        return step(self, w, blocks, x)

    def flat(self, state: Any) -> jax.Array:
        """:func:`flat` of this cell."""
        return flat(self, state)

    def outputs(self, w: "Weights", states: Any, xs: jax.Array) -> jax.Array:
        """:func:`outputs` of this cell."""
        return outputs(self, w, states, xs)

    def output_width(self, params: Any) -> int:
        """:func:`output_width` of this cell."""
        return output_width(self, params)


def check_call(cell: Cell, params: Any, state: Any, state_name: str, xs: Any, xs_name: str, x_rank: int = 2) -> tuple:
    """Validate ``(params, state, xs)`` for one sequence (``x_rank = 2``: ``xs (T, m)``) or one step (``1``:
    ``(m,)``); every block of ``state`` must be ``(n,)``.  All are cast to their common floating dtype.

    Returns ``(params, state, xs, n, m)``.
    """
    p, n, m = cell.check(params, "params")
    blocks = cell.to_blocks(cell.coerce(state, state_name))
    names = [state_name] if cell.width == 1 else [f"{state_name}.{b}" for b in cell.blocks]
    blocks = tuple(check_array(v, nm, (n,)) for v, nm in zip(blocks, names))
    xs = check_array(xs, xs_name, ("T", m) if x_rank == 2 else (m,))
    dtype = jnp.result_type(*[a.dtype for a in jax.tree_util.tree_leaves((p, blocks, xs))])
    cast = lambda t: jax.tree_util.tree_map(lambda a: a.astype(dtype), t)  # noqa: E731
    return cast(p), cell.from_blocks(cast(blocks)), cast(xs), n, m


# --------------------------------------------------------------------------- the recurrence


def _add(a, b):
    return a if b is None else a + b


def recurrent_preactivation(cell: Cell, w: Weights, blocks: tuple) -> Optional[jax.Array]:
    """:math:`z^h = r_{t-1} W_h + b_h` for rows ``(..., n)``, or ``None`` for a cell whose gates read the input only."""
    return None if cell.rec_block is None else _add(blocks[cell.rec_block] @ w.W_h, w.b_h)


def input_preactivation(w: Weights, x: jax.Array) -> jax.Array:
    """:math:`z^x = x_t W_x + b_x` for inputs ``(..., m)``."""
    return _add(x @ w.W_x, w.b_x)


def preactivations(cell: Cell, w: Weights, blocks: tuple, x: jax.Array) -> tuple:
    """``(z_h, z_x)`` (module docstring, step 1) for rows ``(..., n)`` and inputs ``(..., m)``."""
    return recurrent_preactivation(cell, w, blocks), input_preactivation(w, x)


def step(cell: Cell, w: Weights, blocks: tuple, x: jax.Array) -> tuple:
    """One step on blocks: ``(blocks_t, F_t)``."""
    z_h, z_x = preactivations(cell, w, blocks, x)
    return cell.update(blocks, z_h, z_x)


def run(cell: Cell, w: Weights, state0: Any, xs: jax.Array, *, unroll=1, remat=False, seq_lengths=None):
    """The sequential runner of every cell: :func:`jax.lax.scan` of :func:`step` (arguments as ``run_lstm``)."""

    def body(s, x):
        new = cell.from_blocks(step(cell, w, cell.to_blocks(s), x)[0])
        return new, new

    return scan_steps(body, state0, xs, unroll=unroll, remat=remat, seq_lengths=seq_lengths)


def outputs(cell: Cell, w: Weights, states: Any, xs: jax.Array) -> jax.Array:
    """The layer's outputs for states ``s_t`` (the cell's state object, leading axes as ``xs``'s) and the inputs
    ``x_t`` that produced them: the ``out_block``, or the cell's ``output`` readout."""
    blocks = cell.to_blocks(states)
    return blocks[cell.out_block] if cell.output is None else cell.output(w, blocks, xs)


def output_width(cell: Cell, params: Any) -> int:
    """The size of the layer's output :math:`h_t` (what the next layer reads): ``n``, or the readout's width (the
    projected LSTM's ``p``, the mLSTM's ``H d``), from shapes only."""
    p, n, m = cell.check(params)
    if cell.output is None:
        return n
    w = cell.weights(p)
    zeros = tuple(jnp.zeros((n,), w.W_x.dtype) for _ in range(cell.width))
    return jax.eval_shape(lambda: cell.output(w, zeros, jnp.zeros((m,), w.W_x.dtype))).shape[-1]


def flat(cell: Cell, state: Any) -> jax.Array:
    """The state object as one ``(..., d)`` vector (blocks concatenated)."""
    return jnp.concatenate(cell.to_blocks(state), axis=-1)


def unflat(cell: Cell, s: jax.Array) -> Any:
    """Inverse of :func:`flat`."""
    return cell.from_blocks(tuple(jnp.split(s, cell.width, axis=-1)))


def check_trajectory(cell: Cell, trajectory: Any, T: int, n: int, name: str = "trajectory") -> Any:
    """A runner's trajectory (the cell's state object of ``(T, n)`` arrays) checked block by block."""
    blocks = cell.to_blocks(trajectory)
    names = [name] if cell.width == 1 else [f"{name}.{b}" for b in cell.blocks]
    return cell.from_blocks(tuple(check_array(v, nm, (T, n)) for v, nm in zip(blocks, names)))


def factors_along(cell: Cell, w: Weights, prev: Any, xs: jax.Array):
    """The factors of every step at once from the previous states ``prev`` (leading time axis) and ``xs``."""
    return step(cell, w, cell.to_blocks(prev), xs)[1]


def jacobians_along(cell: Cell, w: Weights, state0: Any, trajectory: Any, xs: jax.Array) -> jax.Array:
    """Every step's dense Jacobian ``(T, d, d)`` along a trajectory (the runner's states :math:`s_1..s_T`)."""
    n = cell.to_blocks(state0)[0].shape[-1]
    F = factors_along(cell, w, previous_states(state0, trajectory), xs)
    return jax.vmap(lambda F_t: dense_jacobian(cell, w, F_t, n))(F)


# --------------------------------------------------------------------------- the four consumers


def _gate_rows(w: Weights, rec_rows: jax.Array) -> jax.Array:
    return rec_rows @ w.W_h


def jvp_rows(cell: Cell, w: Weights, F: Any, V: jax.Array) -> jax.Array:
    r"""Rows of :math:`(J_t Q)^\top` for tangent rows ``V = Q^T`` of shape ``(..., d)``: ``(..., d)``.

    One GEMM :math:`V_{rec} W_h` (``(..., n) @ (n, G n)``) and the cell's elementwise tangent.
    """
    blocks = tuple(jnp.split(V, cell.width, axis=-1))
    dz = None if cell.rec_block is None else _gate_rows(w, blocks[cell.rec_block])
    return jnp.concatenate(cell.tangent(F, dz, blocks), axis=-1)


def tangent_cols(cell: Cell, F: Any, dz: Optional[jax.Array], Q: jax.Array) -> jax.Array:
    r"""The cell's tangent on **columns**: :math:`(\delta z^h, \delta s_{t-1}) \mapsto \delta s_t` for ``k``
    directions at once, ``dz (G n, k)`` (or ``None``) and ``Q (d, k)``, giving ``(d, k)``.

    The same map as on rows (:func:`jvp_rows`), vmapped over the column axis so that XLA keeps the column layout:
    on the CPU a ``(G n, n) @ (n, k)`` GEMM followed by this is about 1.5x faster than the row form
    ``(k, n) @ (n, G n)`` at ``n = 1024, k = 32`` (the matrix-free Lyapunov loop, ``benchmarks/targets.py``).
    """
    blocks = tuple(jnp.split(Q, cell.width, axis=0))
    return jax.vmap(lambda dz, ds: jnp.concatenate(cell.tangent(F, dz, ds)), in_axes=(None if dz is None else 1, 1),
                    out_axes=1)(dz, blocks)


def jvp_cols(cell: Cell, w: Weights, F: Any, Q: jax.Array) -> jax.Array:
    r""":math:`J_t Q` for ``Q (d, k)``: ``(d, k)`` (one GEMM :math:`W_h^\top Q_{rec}` and :func:`tangent_cols`)."""
    n = Q.shape[0] // cell.width
    r = cell.rec_block
    dz = None if r is None else w.W_h.T @ Q[r * n:(r + 1) * n]
    return tangent_cols(cell, F, dz, Q)


def vjp_cols(cell: Cell, w: Weights, F: Any, G: jax.Array) -> jax.Array:
    r""":math:`J_t^\top W` for ``W = G (d, k)``: ``(d, k)`` (the cell's cotangent vmapped over columns, as
    :func:`tangent_cols`, and one GEMM :math:`W_h \bar z^h`)."""
    n = G.shape[0] // cell.width
    g = tuple(jnp.split(G, cell.width, axis=0))
    dz_h, _, direct = jax.vmap(lambda g: cell.cotangent(F, g), in_axes=1, out_axes=1)(g)
    out = [jnp.zeros((n, G.shape[1]), G.dtype) if b is None else b for b in direct]
    if cell.rec_block is not None:
        out[cell.rec_block] = out[cell.rec_block] + w.W_h @ dz_h
    return jnp.concatenate(out, axis=0)


def vjp_blocks(cell: Cell, W_h_t: Optional[jax.Array], F: Any, g: tuple) -> tuple:
    r"""The transpose step on blocks: cotangents of :math:`s_t` (a tuple of ``(..., n)`` rows) to those of
    :math:`s_{t-1}`, with :math:`\bar z^h, \bar z^x`.  ``W_h_t`` is :math:`W_h^\top` ``(G n, n)`` (formed once by
    the caller).  Returns ``(blocks, dz_h, dz_x)``; every block is an array (zeros where the cell has no path).
    """
    dz_h, dz_x, direct = cell.cotangent(F, g)
    out = list(direct)
    if cell.rec_block is not None:
        back = dz_h @ W_h_t
        r = cell.rec_block
        out[r] = back if out[r] is None else out[r] + back
    return tuple(jnp.zeros_like(g[j]) if b is None else b for j, b in enumerate(out)), dz_h, dz_x


def vjp_rows(cell: Cell, w: Weights, F: Any, G: jax.Array) -> jax.Array:
    r"""Rows of :math:`(J_t^\top W)^\top` for cotangent rows ``G = W^T`` of shape ``(..., d)``: ``(..., d)``.

    One GEMM :math:`\bar z^h W_h^\top` and the cell's elementwise cotangent (:func:`vjp_blocks`).
    """
    W_h_t = None if w.W_h is None else w.W_h.T
    blocks = vjp_blocks(cell, W_h_t, F, tuple(jnp.split(G, cell.width, axis=-1)))[0]
    return jnp.concatenate(blocks, axis=-1)


def _column_blocks(cell: Cell, w: Weights, F: Any, n: int) -> list:
    r"""The column blocks of :math:`J_t` (``F`` entries ``(n,)``), each as the cell's tangent gives it.

    Entry ``b`` is ``("rows", R)`` for the ``rec_block`` -- ``R[j]`` ``(n, n)`` is :math:`J_{jb}^\top` (the tangent
    of the ``n`` unit directions of that block, the GEMM replaced by its value, the rows of :math:`W_h`) -- and
    ``("diag", D)`` for every other block -- ``D[j]`` ``(n,)`` the diagonal of :math:`J_{jb}` (the update is unit-wise
    and only the ``rec_block`` meets a weight, so those blocks are diagonal: one impulse of ones through the tangent).
    """
    dtype = w.W_x.dtype
    eye = jnp.eye(n, dtype=dtype)
    zero = jnp.zeros((), dtype)
    out = []
    for b in range(cell.width):
        if b == cell.rec_block:
            ds = tuple(eye if j == b else zero for j in range(cell.width))
            out.append(("rows", tuple(jnp.broadcast_to(r, (n, n)) for r in cell.tangent(F, w.W_h, ds))))
        else:
            ones = tuple(jnp.ones((n,), dtype) if j == b else jnp.zeros((n,), dtype) for j in range(cell.width))
            dz = None if cell.rec_block is None else jnp.zeros((w.W_h.shape[1],), dtype)
            out.append(("diag", tuple(jnp.broadcast_to(v, (n,)) for v in cell.tangent(F, dz, ones))))
    return out


def dense_jacobian(cell: Cell, w: Weights, F: Any, n: int) -> jax.Array:
    r""":math:`J_t` as a dense ``(d, d)`` matrix (for one step; ``F`` entries ``(n,)``).

    Column block by column block (:func:`_column_blocks`): the ``rec_block`` columns are the tangent's rows
    transposed; every other column block has its diagonals placed on ``n x n`` blocks.  ``O(G n^2)`` elementwise
    work, no GEMM; the rec columns are a transpose of the row layout, which makes this slower than an assembly
    written for one cell (``benchmarks/jacobians.py`` times the dense Jacobians).
    """
    eye = jnp.eye(n, dtype=w.W_x.dtype)
    cols = []
    for how, parts in _column_blocks(cell, w, F, n):
        if how == "rows":
            cols.append(jnp.concatenate([r.T for r in parts], axis=0))
        else:
            cols.append(jnp.concatenate([v[:, None] * eye for v in parts], axis=0))
    return jnp.concatenate(cols, axis=1)


def vjp_wide(cell: Cell, w: Weights, F: Any, G: jax.Array) -> jax.Array:
    r""":math:`J_t^\top G` for a **wide** ``G (d, k)``, ``k`` of the order of ``n`` or more: ``(d, k)``.

    The ``rec_block`` rows of :math:`J_t^\top` are formed once (:func:`_column_blocks`, ``O(G n^2)`` elementwise)
    and applied as ``width`` GEMMs :math:`\sum_j J_{j,rec}^\top G_j` (``2 d n k`` flops); every other block is
    :math:`\sum_j \operatorname{diag}(J_{jb}) G_j`.  :func:`vjp_cols` instead pushes all ``k`` columns through the
    ``G n``-wide gate cotangent and one ``(n, G n) @ (G n, k)`` GEMM (``2 G n^2 k`` flops): for the whole
    ``d x d`` product of the flow curve (``k = d``) this is ``G n / d`` times fewer flops (2x for the LSTM, 3x for
    the GRU).
    """
    n = G.shape[0] // cell.width
    g = jnp.split(G, cell.width, axis=0)
    out = []
    for how, parts in _column_blocks(cell, w, F, n):
        if how == "rows":
            out.append(sum(r @ gj for r, gj in zip(parts, g)))
        else:
            out.append(sum(v[:, None] * gj for v, gj in zip(parts, g)))
    return jnp.concatenate(out, axis=0)


def jacobian_diagonal(cell: Cell, w: Weights, F: Any, n: int) -> jax.Array:
    r""":math:`\operatorname{diag} J_t`, ``(d,)``, without forming :math:`J_t`.

    The update is unit-wise, so the impulse "every unit of block ``b`` at once" gives, in block ``b``
    of the result, each unit's derivative with respect to itself; for the ``rec_block`` the gate
    directions are the diagonals of the ``n x n`` blocks of :math:`W_h`.
    """
    dtype = w.W_x.dtype
    out = []
    for b in range(cell.width):
        ones = tuple(jnp.ones((n,), dtype) if j == b else jnp.zeros((n,), dtype) for j in range(cell.width))
        dz = None  # a cell whose gates read the input only
        if cell.rec_block == b:
            G = w.W_h.shape[1] // n
            dz = jnp.concatenate([jnp.diagonal(w.W_h[:, g * n:(g + 1) * n]) for g in range(G)])
        elif cell.rec_block is not None:
            dz = jnp.zeros((w.W_h.shape[1],), dtype)
        out.append(cell.tangent(F, dz, ones)[b])
    return jnp.concatenate(out)


# --------------------------------------------------------------------------- the diagonal linear cells


def linear_coefficients(cell: Cell, w: Weights, xs: jax.Array, n: int) -> tuple:
    r"""``(a, b)``, each ``(T, d)``, of a ``diagonal_linear`` cell: :math:`s_t = a_t \odot s_{t-1} + b_t` for all ``t``.

    :math:`b_t` is the update from the zero state and :math:`a_t` the Jacobian's diagonal (both from the inputs
    alone), evaluated for every step at once.
    """
    zero = tuple(jnp.zeros(xs.shape[:-1] + (n,), xs.dtype) for _ in range(cell.width))
    blocks, F = cell.update(zero, None, input_preactivation(w, xs))
    ones = tuple(jnp.ones_like(z) for z in zero)
    return jnp.concatenate(cell.tangent(F, None, ones), axis=-1), jnp.concatenate(blocks, axis=-1)
