r"""Long-range benchmark tasks, generated on the fly from a PRNG key (no downloads).

Every generator returns a :class:`TaskBatch` ``(xs (B, T_max, m), y (B,), lengths (B,))``: batch-major
inputs, right-padded with zeros after each sequence's own length ``lengths[b]``.  The models read the
state at step ``lengths[b]`` (trajectory index ``lengths[b] - 1``), so the padding never influences an
output or a gradient (see :mod:`lstm_jax.experiments._models`).

* :func:`adding_problem_1997` — Hochreiter & Schmidhuber (1997), Experiment 4, **as specified there**:
  each input is a pair (value :math:`X \sim U[-1, 1]`, marker in :math:`\{-1, 0, 1\}`); the length
  :math:`L` is drawn uniformly from :math:`\{T, \dots, T + \lfloor T/10\rfloor\}`; exactly two pairs
  carry marker 1: the first is uniform among the first ten pairs, the second uniform among the first
  :math:`\lfloor T/2\rfloor - 1` pairs that are still unmarked; the first and the last pair carry marker
  :math:`-1` unless marked; if the first pair is marked its value is set to 0.  Target
  :math:`0.5 + (X_1 + X_2)/4 \in [0, 1]` (:math:`X_1, X_2` the marked values).  A sequence is right when
  :math:`|\text{error}| \le 0.04`.
* :func:`adding_problem` — the common variant of Le, Jaitly & Hinton (2015) / Arjovsky et al. (2016):
  fixed length ``T``, values :math:`U[0, 1]`, one mark in each half, target the sum of the marked values.
* :func:`temporal_order` — H&S (1997) Experiment 6a: two relevant symbols (X or Y) at random positions in
  :math:`[0.1T, 0.2T)` and :math:`[0.5T, 0.6T)` among four distractor symbols; class = the ordered pair
  (XX, XY, YX, YY), one-hot inputs over 6 symbols; chance accuracy 1/4.

:func:`stopping_rule` is the 1997 paper's: training stops when the mean squared training error over the
most recent 2000 training sequences is below 0.01 **and** all of those 2000 sequences have
:math:`|\text{error}| \le 0.04`.

Reference: S. Hochreiter, J. Schmidhuber, "Long short-term memory", Neural Computation 9(8), 1997, sec. 5.4.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class TaskBatch(NamedTuple):
    """``xs (B, T_max, m)`` right-padded inputs, ``y (B,)`` targets, ``lengths (B,)`` int32 true lengths."""

    xs: jax.Array
    y: jax.Array
    lengths: jax.Array


#: |error| threshold of a right answer (H&S 1997) and the stopping rule's window and mean-error bound.
ERROR_THRESHOLD = 0.04
STOP_WINDOW = 2000
STOP_MEAN_ERROR = 0.01
TEST_SIZE = 2560
TEMPORAL_ORDER_CLASSES = 4
TEMPORAL_ORDER_SYMBOLS = 6  # X, Y, and four distractors


def _check(batch: int, T: int, minimum: int):
    if not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if not isinstance(T, (int, np.integer)) or T < minimum:
        raise ValueError(f"T must be an integer >= {minimum} for this task, got {T!r}")


@functools.partial(jax.jit, static_argnames=("batch", "T", "dtype", "spread"))
def adding_problem_1997(key: jax.Array, batch: int, T: int, dtype=jnp.float32, *, spread: bool = True) -> TaskBatch:
    r"""H&S 1997 Experiment 4 (module docstring).  ``xs (batch, T + T//10, 2)``: channel 0 the value, 1 the marker.

    ``spread=False`` draws every length as exactly ``T`` (the diagnostics use it; the padding stays).
    Needs ``T >= 4`` (so that :math:`\lfloor T/2\rfloor - 1 \ge 1`).
    """
    _check(batch, T, 4)
    T_max = T + T // 10
    k_len, k_val, k1, k2 = jax.random.split(key, 4)
    lengths = (jax.random.randint(k_len, (batch,), T, T_max + 1) if spread
               else jnp.full((batch,), T)).astype(jnp.int32)
    pos = jnp.arange(T_max)[None, :]
    real = pos < lengths[:, None]
    values = jnp.where(real, jax.random.uniform(k_val, (batch, T_max), dtype, -1.0, 1.0), 0)
    i1 = jax.random.randint(k1, (batch,), 0, min(10, T))
    # second mark: uniform among the first T//2 - 1 positions that are not i1
    r = jax.random.randint(k2, (batch,), 0, T // 2 - 1)
    i2 = jnp.where(r < i1, r, r + 1)
    marked = (pos == i1[:, None]) | (pos == i2[:, None])
    ends = (pos == 0) | (pos == lengths[:, None] - 1)
    marker = jnp.where(marked, 1, jnp.where(ends & real, -1, 0)).astype(dtype)
    values = jnp.where(marked & (pos == 0), 0, values)  # a marked first pair has value 0
    y = 0.5 + jnp.sum(jnp.where(marked, values, 0), axis=1) / 4
    return TaskBatch(jnp.stack([values, marker], axis=-1), y.astype(dtype), lengths)


@functools.partial(jax.jit, static_argnames=("batch", "T", "dtype"))
def adding_problem(key: jax.Array, batch: int, T: int, dtype=jnp.float32) -> TaskBatch:
    """The Le et al. (2015) variant: ``xs (batch, T, 2)``, values U[0,1], one mark per half, ``y`` their sum."""
    _check(batch, T, 2)
    k_val, k1, k2 = jax.random.split(key, 3)
    values = jax.random.uniform(k_val, (batch, T), dtype)
    half = T // 2
    i1 = jax.random.randint(k1, (batch,), 0, half)
    i2 = jax.random.randint(k2, (batch,), half, T)
    marks = jax.nn.one_hot(i1, T, dtype=dtype) + jax.nn.one_hot(i2, T, dtype=dtype)
    y = jnp.sum(values * marks, axis=1)
    return TaskBatch(jnp.stack([values, marks], axis=-1), y, jnp.full((batch,), T, jnp.int32))


@functools.partial(jax.jit, static_argnames=("batch", "T", "dtype"))
def temporal_order(key: jax.Array, batch: int, T: int, dtype=jnp.float32) -> TaskBatch:
    """``xs (batch, T, 6)`` one-hot symbols, ``y (batch,)`` in 0..3 (XX, XY, YX, YY)."""
    _check(batch, T, 10)
    k_d, k_p1, k_p2, k_s = jax.random.split(key, 4)
    symbols = jax.random.randint(k_d, (batch, T), 2, TEMPORAL_ORDER_SYMBOLS)  # distractors
    p1 = jax.random.randint(k_p1, (batch,), T // 10, 2 * T // 10)
    p2 = jax.random.randint(k_p2, (batch,), 5 * T // 10, 6 * T // 10)
    s = jax.random.randint(k_s, (batch, 2), 0, 2)  # 0 = X, 1 = Y
    rows = jnp.arange(batch)
    symbols = symbols.at[rows, p1].set(s[:, 0]).at[rows, p2].set(s[:, 1])
    return TaskBatch(jax.nn.one_hot(symbols, TEMPORAL_ORDER_SYMBOLS, dtype=dtype), 2 * s[:, 0] + s[:, 1],
                     jnp.full((batch,), T, jnp.int32))


#: task id -> (generator, input size m, output size, minimum T, regression?)
TASKS = {
    "adding-1997": (adding_problem_1997, 2, 1, 4, True),
    "adding": (adding_problem, 2, 1, 2, True),
    "temporal-order": (temporal_order, TEMPORAL_ORDER_SYMBOLS, TEMPORAL_ORDER_CLASSES, 10, False),
}


def check_task(task: str) -> tuple:
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    return TASKS[task]


def stopping_rule(abs_errors: np.ndarray) -> bool:
    """H&S 1997's stopping rule on the absolute training errors seen so far (oldest first).

    True when at least :data:`STOP_WINDOW` sequences were seen, the mean squared error of the most recent
    2000 is below :data:`STOP_MEAN_ERROR` and every one of them has ``|error| <= 0.04``.
    """
    e = np.asarray(abs_errors, dtype=np.float64).reshape(-1)
    if e.size < STOP_WINDOW:
        return False
    w = e[-STOP_WINDOW:]
    return bool(np.mean(w**2) < STOP_MEAN_ERROR and np.all(w <= ERROR_THRESHOLD))
