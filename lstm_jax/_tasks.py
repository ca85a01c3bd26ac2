r"""Long-range benchmark tasks, generated on the fly from a PRNG key (no downloads).

* :func:`adding_problem` — Hochreiter & Schmidhuber (1997), experiment 4, in the
  form used by Le, Jaitly & Hinton (2015) and Arjovsky, Shah & Bengio (2016):
  inputs ``(T, 2)``, channel 0 uniform in ``[0, 1]``, channel 1 marks one
  position in the first half and one in the second half; the target is the sum
  of the two marked values.  A sequence counts as solved when the absolute error
  is below 0.04 (H&S's criterion).  Predicting the mean (1.0) gives MSE ~ 1/6.
* :func:`temporal_order` — Hochreiter & Schmidhuber (1997), experiment 6a:
  a sequence of distractor symbols holds two relevant symbols, each X or Y, at
  random positions in ``[0.1T, 0.2T)`` and ``[0.5T, 0.6T)``; the class is the
  ordered pair (XX, XY, YX, YY).  Inputs are one-hot over 6 symbols
  (X, Y and four distractors).  Chance accuracy is 1/4.

Both return batch-major arrays: ``xs (B, T, m)`` and targets ``(B,)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class TaskBatch(NamedTuple):
    xs: jax.Array
    y: jax.Array


def _check(batch: int, T: int, minimum: int):
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if T < minimum:
        raise ValueError(f"T must be >= {minimum} for this task, got {T}")


def adding_problem(key: jax.Array, batch: int, T: int, dtype=jnp.float32) -> TaskBatch:
    """``xs (batch, T, 2)``, ``y (batch,)`` = sum of the two marked values."""
    _check(batch, T, 2)
    k_val, k1, k2 = jax.random.split(key, 3)
    values = jax.random.uniform(k_val, (batch, T), dtype)
    half = T // 2
    i1 = jax.random.randint(k1, (batch,), 0, half)
    i2 = jax.random.randint(k2, (batch,), half, T)
    marks = jax.nn.one_hot(i1, T, dtype=dtype) + jax.nn.one_hot(i2, T, dtype=dtype)
    y = jnp.sum(values * marks, axis=1)
    return TaskBatch(jnp.stack([values, marks], axis=-1), y)


TEMPORAL_ORDER_CLASSES = 4
TEMPORAL_ORDER_SYMBOLS = 6  # X, Y, and four distractors


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
    return TaskBatch(jax.nn.one_hot(symbols, TEMPORAL_ORDER_SYMBOLS, dtype=dtype), 2 * s[:, 0] + s[:, 1])
