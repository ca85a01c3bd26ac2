r"""In-loop cost attribution: what one step of a scanned LSTM costs, timed inside ONE ``lax.scan``.

Timing ``(B, n) @ (n, 4n)`` as one jitted call per step measures dispatch (tens of µs), not the product;
inside a scan the loop overhead is paid the same way the LSTM pays it.  Three loops of ``T`` steps on a
``(B, n)`` carry, float32:

* ``scan_gemm``: the recurrent product and a tanh, ``h <- tanh((h @ W_h)[:, :n])`` (``2·B·n·4n`` FLOPs a step);
* ``scan_gates``: the LSTM gate elementwise math alone (3 sigmoid, 2 tanh, the products of eq. 5) on a
  ``(B, 4n)`` pre-activation formed without a GEMM (``[h, h, h, h] + b``);
* ``scan_gemm_gates``: the two together in one step, ``h <- LSTM gates(h @ W_h + b)``: the LSTM step
  without its input projection and output store (the LSTM forward minus this is what ``x_t W_x`` and
  storing ``h_t`` cost inside the loop);
* ``scan_lyap_gemm``: the matrix-free Lyapunov loop's GEMM alone, ``Q <- tanh((U Q_h)[:2n])`` with
  ``U (4n, n)``, ``Q (2n, k)``: the floor of any method that forms ``U Q_h`` every step;
* ``scan_gates_rational``: ``scan_gates`` with a float32 fast path in plain multiply/add/divide: the
  rational tanh :func:`rational_tanh` and :math:`\sigma(z) = (1 + \tanh(z/2))/2`, so the table shows what
  approximate activations could save (and :func:`activation_errors` what they cost in accuracy);
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


def _lstm_gates_update(h, c, z, n, sigmoid=jax.nn.sigmoid, tanh=jnp.tanh):
    f, i, g, o = sigmoid(z[:, :n]), sigmoid(z[:, n:2 * n]), tanh(z[:, 2 * n:3 * n]), sigmoid(z[:, 3 * n:])
    c = c * f + g * i
    return o * tanh(c), c


def scan_gates(B: int, n: int, T: int, sigmoid=jax.nn.sigmoid, tanh=jnp.tanh):
    """``(fn, args)``: ``T`` steps of the LSTM gate math on ``z = [h, h, h, h] + b`` (no GEMM)."""
    b = jax.random.normal(jax.random.PRNGKey(4), (4 * n,), jnp.float32)
    h0 = jnp.zeros((B, n), jnp.float32)

    def step(carry, _):
        h, c = carry
        return _lstm_gates_update(h, c, jnp.tile(h, 4) + b, n, sigmoid, tanh), None

    def fn(h, b):
        return jax.lax.scan(step, (h, h), None, length=T)[0]

    return jax.jit(fn), (h0, b)


# Rational minimax tanh on [-c, c] (the float32 form used by Eigen's fast tanh; odd numerator of degree 13,
# even denominator of degree 6), clamped beyond c where float32 tanh is +-1.
_TANH_CLAMP = 7.90531110763549805
_TANH_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
           -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


def _horner(coeffs, x2):
    acc = jnp.full_like(x2, coeffs[-1])
    for a in coeffs[-2::-1]:
        acc = acc * x2 + a
    return acc


def rational_tanh(x):
    """float32 tanh as a rational function: multiply/add and one divide, no transcendental call."""
    x = jnp.clip(x, -_TANH_CLAMP, _TANH_CLAMP)
    x2 = x * x
    return x * _horner(_TANH_P, x2) / _horner(_TANH_Q, x2)


def rational_sigmoid(x):
    r""":math:`\sigma(x) = (1 + \tanh(x/2))/2` with :func:`rational_tanh` (absolute, not relative, accuracy)."""
    return 0.5 + 0.5 * rational_tanh(0.5 * x)


def activation_errors(lo: float = -20.0, hi: float = 20.0, points: int = 2_000_001) -> dict:
    """Max errors of XLA's float32 ``tanh``/``logistic`` and of the rational forms against float64 NumPy on a grid:
    tanh in ulps of the float32 result, sigmoid as max absolute and max relative error."""
    import numpy as np

    x = np.linspace(lo, hi, points).astype(np.float32)
    x64 = x.astype(np.float64)
    t_ref, s_ref = np.tanh(x64), 1.0 / (1.0 + np.exp(-x64))
    ulp = np.spacing(np.abs(t_ref).astype(np.float32)).astype(np.float64)
    out = {"grid": [lo, hi, points]}
    for name, t, s in (("xla", jnp.tanh, jax.nn.sigmoid), ("rational", rational_tanh, rational_sigmoid)):
        tv = np.asarray(jax.jit(t)(x), np.float64)
        sv = np.asarray(jax.jit(s)(x), np.float64)
        out[name] = {"tanh_max_ulp": float(np.max(np.abs(tv - t_ref) / ulp)),
                     "sigmoid_max_abs": float(np.max(np.abs(sv - s_ref))),
                     "sigmoid_max_rel": float(np.max(np.abs(sv - s_ref) / s_ref))}
    return out


def scan_gates_rational(B: int, n: int, T: int):
    """``(fn, args)``: :func:`scan_gates` with :func:`rational_sigmoid` / :func:`rational_tanh`."""
    return scan_gates(B, n, T, sigmoid=rational_sigmoid, tanh=rational_tanh)


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
