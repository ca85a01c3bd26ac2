"""Random draws shared by the formula checks (float64, explicit keys)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

import lstm_jax as lj

from ._types import F64

#: (n, m) of the formula draws; DRAWS draws at each (compiled once per shape, vmapped over draws).
SHAPES = ((1, 1), (8, 4), (32, 16))
DRAWS = 16


def log_uniform(key, shape, lo, hi):
    return jnp.exp(jax.random.uniform(key, shape, F64, math.log(lo), math.log(hi)))


def orthogonal(key, n):
    """A Haar-random orthogonal ``(n, n)`` matrix (QR of a Gaussian, signs fixed)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), F64))
    return q * jnp.sign(jnp.diag(r))[None, :]


def rnn_draws(key, n: int, m: int, count: int):
    """``count`` random (params, c, x): weight scale log-uniform in [0.1, 3], random biases."""
    k = jax.random.split(key, 6)
    scale = log_uniform(k[0], (count, 1, 1), 0.1, 3.0)
    W_rec = scale * jax.random.normal(k[1], (count, n, n), F64) / math.sqrt(n)
    W_in = jax.random.normal(k[2], (count, n, m), F64) / math.sqrt(m)
    b = 0.5 * jax.random.normal(k[3], (count, n), F64)
    c = jax.random.normal(k[4], (count, n), F64)
    x = jax.random.normal(k[5], (count, m), F64)
    return lj.RNNParams(W_rec, W_in, b), c, x


def lstm_draws(key, n: int, m: int, count: int):
    """``count`` random (params, o_prev, c_prev, x): scale log-uniform in [0.1, 3], random biases,
    :math:`c_{t-1}\\sim 2\\mathcal N(0, 1)`, :math:`o_{t-1}\\sim U(0.05, 0.95)`."""
    k = jax.random.split(key, 7)
    scale = log_uniform(k[0], (count, 1, 1), 0.1, 3.0)
    Ws = scale[None] * jax.random.normal(k[1], (4, count, n, n + m), F64) / math.sqrt(n + m)
    bs = 0.5 * jax.random.normal(k[2], (4, count, n), F64)
    p = lj.LSTMParams(*Ws, *bs)
    o_prev = jax.random.uniform(k[3], (count, n), F64, 0.05, 0.95)
    c_prev = 2.0 * jax.random.normal(k[4], (count, n), F64)
    x = jax.random.normal(k[5], (count, m), F64)
    return p, o_prev, c_prev, x
