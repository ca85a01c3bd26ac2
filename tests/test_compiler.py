"""Compiler canary: XLA must compute a vmapped reduction the way plain arithmetic does.

jax/jaxlib 0.10.2 miscompile on CPU a jitted ``vmap(lambda row: jnp.sum((M @ row) ** 2))`` once the batch
passes a size threshold (jax-ml/jax#39103; the YNNPACK reduce fusion): float64 at 16,385 rows gives
266342400.0 instead of 268435456.0, float32 at 32,769 rows 1065369600.0 instead of 1073741824.0.
``pyproject.toml`` excludes that release; these tests fail on it (and on the next release that gets a
vmapped reduction wrong), so CI catches a compiler that would make every other number in this suite
unreliable.  The reference is exact integer arithmetic, not the eager result (an eager path may share the bug).

Measured on this project's machine: with jax 0.10.2 every case below fails (the figures above, and the
lstm_jax case gives 16320.0 for the norm 16384.0); with 0.10.1 every case passes with zero error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj

# (dtype, rows): the smallest batch sizes at which jax 0.10.2 goes wrong, and one inside the affected range.
# Measured with 0.10.2: float64 rows 16,385..~65,536 are affected (1 wrong value at 16,385, 3,616 at 20,000,
# 23,616 at 40,000), float32 32,769..~65,536 (7,232 wrong at 40,000); 65,537 and more compile correctly again.
SIZES = [(jnp.float64, 16_385), (jnp.float32, 32_769), (jnp.float64, 40_000), (jnp.float32, 40_000)]


def _rows(dtype, n: int) -> jax.Array:
    """Rows ``(i, 0, 0)``, ``i = 0..n-1``: every result below is an exact integer in the dtype."""
    i = jnp.arange(n, dtype=dtype)
    return jnp.stack((i, jnp.zeros_like(i), jnp.zeros_like(i)), axis=1)


@pytest.mark.parametrize("dtype,n", SIZES, ids=[f"{jnp.dtype(d).name}-{n}" for d, n in SIZES])
def test_jitted_vmapped_sum_of_squares_of_a_matvec_is_exact(dtype, n):
    rows = _rows(dtype, n)
    M = jnp.eye(3, dtype=dtype)
    f = jax.jit(jax.vmap(lambda row: jnp.sum((M @ row) ** 2)))
    got = np.asarray(f(rows))
    want = np.arange(n, dtype=np.float64) ** 2  # exact; i*i rounded once to the dtype, plus two exact zeros
    assert got.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(got.astype(np.float64), want.astype(jnp.dtype(dtype)).astype(np.float64))


@pytest.mark.parametrize("dtype,n", SIZES[:2], ids=[f"{jnp.dtype(d).name}-{n}" for d, n in SIZES[:2]])
def test_norms_of_an_lstm_jax_step_jacobian_applied_to_many_directions_are_exact(dtype, n):
    """The quantity the flow diagnostics measure, ‖J q‖ for many directions q, with J from
    ``lj.rnn_step_jacobian`` (tanh RNN at the origin with W_rec = I: J = I exactly), jitted and vmapped."""
    R = lj.RNNParams(W_rec=jnp.eye(3, dtype=dtype), W_in=jnp.zeros((3, 1), dtype), b=None)
    J = lj.rnn_step_jacobian(R, jnp.zeros(3, dtype), jnp.zeros(1, dtype), "tanh")
    np.testing.assert_array_equal(np.asarray(J), np.eye(3))
    norms = jax.jit(jax.vmap(lambda q: jnp.linalg.norm(J @ q)))(_rows(dtype, n))
    np.testing.assert_array_equal(np.asarray(norms, np.float64), np.arange(n, dtype=np.float64))
