"""In-loop cost attribution: what one step of a scanned LSTM costs, timed inside ONE ``lax.scan``.

Timing ``(B, n) @ (n, 4n)`` as one jitted call per step measures dispatch (tens of µs), not the product;
inside a scan the loop overhead is paid the same way the LSTM pays it.  Three loops of ``T`` steps on a
``(B, n)`` carry, float32:

* ``scan_gemm``: the recurrent product and a tanh, ``h <- tanh((h @ W_h)[:, :n])`` (``2·B·n·4n`` FLOPs a step);
* ``scan_gates``: the LSTM gate elementwise math alone (3 sigmoid, 2 tanh, the products of eq. 5) on a
  ``(B, 4n)`` pre-activation formed without a GEMM (``[h, h, h, h] + b``);
* ``scan_gemm_gates``: the two together in one step, ``h <- LSTM gates(h @ W_h + b)``: the LSTM step
  without its input projection (the LSTM forward minus this is what ``x_t W_x`` costs inside the loop);
* ``scan_lyap_gemm``: the matrix-free Lyapunov loop's GEMM alone, ``Q <- tanh((U Q_h)[:2n])`` with
  ``U (4n, n)``, ``Q (2n, k)``: the floor of any method that forms ``U Q_h`` every step;
* ``big_gemm``: the same FLOPs as the LSTM forward as one ``(T·B, n+m) @ (n+m, 4n)`` GEMM (the limit no
  sequential recurrence reaches, kept for reference).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def scan_gemm(B: int, n: int, T: int):
    """``(fn, args, flops)``: ``T`` steps of ``h <- tanh((h @ W)[:, :n])`` in one scan."""
    W = jax.random.normal(jax.random.PRNGKey(3), (n, 4 * n), jnp.float32) / jnp.sqrt(n)
    h0 = jax.random.normal(jax.random.PRNGKey(2), (B, n), jnp.float32)

    def fn(h, W):
        return jax.lax.scan(lambda h, _: (jnp.tanh((h @ W)[:, :n]), None), h, None, length=T)[0]

    return jax.jit(fn), (h0, W), 2.0 * T * B * n * 4 * n


def _lstm_gates_update(h, c, z, n):
    f, i, g, o = (jax.nn.sigmoid(z[:, :n]), jax.nn.sigmoid(z[:, n:2 * n]), jnp.tanh(z[:, 2 * n:3 * n]),
                  jax.nn.sigmoid(z[:, 3 * n:]))
    c = c * f + g * i
    return o * jnp.tanh(c), c


def scan_gates(B: int, n: int, T: int):
    """``(fn, args)``: ``T`` steps of the LSTM gate math on ``z = [h, h, h, h] + b`` (no GEMM)."""
    b = jax.random.normal(jax.random.PRNGKey(4), (4 * n,), jnp.float32)
    h0 = jnp.zeros((B, n), jnp.float32)

    def step(carry, _):
        h, c = carry
        return _lstm_gates_update(h, c, jnp.tile(h, 4) + b, n), None

    def fn(h, b):
        return jax.lax.scan(step, (h, h), None, length=T)[0]

    return jax.jit(fn), (h0, b)


def scan_gemm_gates(B: int, n: int, T: int):
    """``(fn, args)``: ``T`` LSTM steps without the input projection, ``z = h @ W_h + b`` then the gate math."""
    W = jax.random.normal(jax.random.PRNGKey(3), (n, 4 * n), jnp.float32) / jnp.sqrt(n)
    b = jax.random.normal(jax.random.PRNGKey(4), (4 * n,), jnp.float32)
    h0 = jax.random.normal(jax.random.PRNGKey(2), (B, n), jnp.float32)

    def fn(h, W, b):
        return jax.lax.scan(lambda s, _: (_lstm_gates_update(*s, s[0] @ W + b, n), None), (h, h), None, length=T)[0]

    return jax.jit(fn), (h0, W, b)


def scan_lyap_gemm(n: int, k: int, T: int):
    """``(fn, args)``: ``T`` steps of ``Q <- tanh((U @ Q[:n])[:2n])``, ``U (4n, n)``, ``Q (2n, k)``."""
    U = jax.random.normal(jax.random.PRNGKey(7), (4 * n, n), jnp.float32) / jnp.sqrt(n)
    Q0 = jnp.eye(2 * n, k, dtype=jnp.float32)

    def fn(Q, U):
        return jax.lax.scan(lambda Q, _: (jnp.tanh((U @ Q[:n])[:2 * n]), None), Q, None, length=T)[0]

    return jax.jit(fn), (Q0, U)


def big_gemm(B: int, n: int, m: int, T: int):
    """``(fn, args, flops)``: one ``(T·B, n+m) @ (n+m, 4n)`` GEMM, the LSTM forward's FLOPs."""
    a = jax.random.normal(jax.random.PRNGKey(5), (T * B, n + m), jnp.float32)
    w = jax.random.normal(jax.random.PRNGKey(6), (n + m, 4 * n), jnp.float32)
    return jax.jit(lambda a, w: a @ w), (a, w), 2.0 * T * B * (n + m) * 4 * n
