r"""What :func:`~lstm_jax.diagnose.diagnose` needs from each cell kind, as one small dispatch table.

Every entry works on **one** sequence ``xs (T, m)`` started from the zero state, calls only
public :mod:`lstm_jax` functions (the cells, runners and analytic Jacobians are written once
there), and is traced inside ``jax.jit`` / ``jax.vmap``:

* ``state_size(n)``: size ``d`` of the state whose Jacobian is diagnosed (LSTM: the joint
  :math:`s_t = [h_t; c_t]`, ``d = 2n``; RNN and GRU: ``d = n``).
All take the hidden size ``n`` (static) after ``xs``.

* ``outputs(params, xs, n)``: ``(T, n)`` what the next layer reads (LSTM/GRU: :math:`h_t`; RNN: :math:`c_t`).
* ``jacobians(params, xs, n)``: ``(T, d, d)`` exact step Jacobians :math:`\partial s_t/\partial s_{t-1}`.
* ``terms(params, xs, n, times)``: spectral norms of the article's eq. (6) terms at the steps
  ``times`` (each ``>= 2``), a dict ``name -> (len(times),)``; ``None`` for kinds without them.
* ``gates(params, xs, n)``: dict ``name -> (T, n)`` activations mapped to ``[0, 1]`` (a tanh value
  ``v`` as ``(v + 1)/2``), used for histograms and saturation; ``memory_gate`` names the one whose
  mean :math:`\bar f` sets the per-unit memory time constant :math:`\tau = -1/\log\bar f`
  (LSTM: the forget gate ``f``; GRU: the update gate ``z``; RNN: none).
* ``fresh(key, like, n, m, dtype)``: a freshly initialised layer of the same shape (the baseline).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

import lstm_jax


class Kind(NamedTuple):
    name: str
    state_size: Callable[[int], int]
    outputs: Callable[..., jax.Array]
    jacobians: Callable[..., jax.Array]
    terms: Optional[Callable[..., dict]]
    gates: Callable[..., dict]
    memory_gate: Optional[str]
    fresh: Callable[..., Any]
    description: str


def _spectral(M: jax.Array) -> jax.Array:
    return jnp.linalg.norm(M, ord=2, axis=(-2, -1))


def _as01(v: jax.Array) -> jax.Array:
    return (v + 1) / 2


# --------------------------------------------------------------------------- LSTM


def _lstm_prev(params, xs, n):
    """``(H, C)`` with ``H[j] = h_j``, ``j = 0..T`` (``h_0 = 0``), from :func:`lstm_jax.run_lstm`."""
    s0 = lstm_jax.zero_state(n, xs.dtype)
    _, traj = lstm_jax.run_lstm(params, s0, xs)
    return jnp.concatenate([s0.h[None], traj.h]), jnp.concatenate([s0.c[None], traj.c])


def _lstm_outputs(params, xs, n):
    return lstm_jax.run_lstm(params, lstm_jax.zero_state(n, xs.dtype), xs)[1].h


def _lstm_jacobians(params, xs, n):
    return lstm_jax.lstm_step_jacobians(params, lstm_jax.zero_state(n, xs.dtype), xs)


def _lstm_terms(params, xs, n, times):
    # eq. (6) at step t needs o_{t-1}: lstm_terms_along over the two steps t-1, t from s_{t-2}.
    H, C = _lstm_prev(params, xs, n)

    def at(t):
        window = jax.lax.dynamic_slice_in_dim(xs, t - 2, 2)
        terms = lstm_jax.lstm_terms_along(params, lstm_jax.LSTMState(H[t - 2], C[t - 2]), window)
        return {k: _spectral(v[-1]) for k, v in terms._asdict().items()}  # the entry of step t

    return jax.vmap(at)(times)


def _lstm_gates(params, xs, n):
    H, _ = _lstm_prev(params, xs, n)
    g = jax.vmap(lambda h, x: lstm_jax.lstm_gates(params, h, x))(H[:-1], xs)
    return {"f": g.f, "i": g.i, "c_tilde": _as01(g.c_tilde), "o": g.o}


def _lstm_fresh(key, like, n, m, dtype):
    bias = like.b_f is not None
    return lstm_jax.init_lstm(key, n, m, bias=bias, forget_bias=1.0 if bias else 0.0, dtype=dtype)


LSTM = Kind(
    "lstm", lambda n: 2 * n, _lstm_outputs, _lstm_jacobians, _lstm_terms, _lstm_gates, "f", _lstm_fresh,
    "LSTM; state s_t = [h_t; c_t] (2n), exact joint Jacobian (lstm_step_jacobians); eq. (6) terms "
    "A_t, B_t, C_t, D_t of dc_t/dc_{t-1} (lstm_terms_along, corrected form)",
)


# --------------------------------------------------------------------------- plain RNN


def _rnn_kind(activation: lstm_jax.Activation) -> Kind:
    def outputs(params, xs, n):
        return lstm_jax.run_rnn(params, jnp.zeros(n, xs.dtype), xs, activation)[1]

    def jacobians(params, xs, n):
        return lstm_jax.rnn_step_jacobians(params, jnp.zeros(n, xs.dtype), xs, activation)

    def gates(params, xs, n):
        cs = outputs(params, xs, n)
        return {"state": _as01(cs) if activation is lstm_jax.TANH else cs}

    def fresh(key, like, n, m, dtype):
        return lstm_jax.init_rnn(key, n, m, bias=like.b is not None, dtype=dtype)

    return Kind(
        f"rnn-{activation.name}", lambda n: n, outputs, jacobians, None, gates, None, fresh,
        f"plain RNN c_t = {activation.name}(W_rec c_(t-1) + W_in x_t + b); state c_t (n), Jacobian eq. (2)",
    )


RNN_TANH = _rnn_kind(lstm_jax.TANH)
RNN_SIGMOID = _rnn_kind(lstm_jax.SIGMOID)


# --------------------------------------------------------------------------- GRU
def _gru_outputs(params, xs, n):
    return lstm_jax.run_gru(params, jnp.zeros(n, xs.dtype), xs)[1]


def _gru_jacobians(params, xs, n):
    return lstm_jax.gru_step_jacobians(params, jnp.zeros(n, xs.dtype), xs)


def _gru_terms(params, xs, n, times):
    H = jnp.concatenate([jnp.zeros((1, n), xs.dtype), _gru_outputs(params, xs, n)])

    def at(t):
        window = jax.lax.dynamic_slice_in_dim(xs, t - 2, 2)
        terms = lstm_jax.gru_terms_along(params, H[t - 2], window)
        return {k: _spectral(v[-1]) for k, v in terms._asdict().items()}  # the entry of step t

    return jax.vmap(at)(times)


def _gru_gates(params, xs, n):
    H = jnp.concatenate([jnp.zeros((1, n), xs.dtype), _gru_outputs(params, xs, n)])
    g = jax.vmap(lambda h, x: lstm_jax.gru_gates(params, h, x))(H[:-1], xs)
    return {"z": g.z, "r": g.r, "n": _as01(g.n)}


def _gru_fresh(key, like, n, m, dtype):
    return lstm_jax.init_gru(key, n, m, bias=like.b_z is not None, dtype=dtype)


GRU = Kind(
    "gru", lambda n: n, _gru_outputs, _gru_jacobians, _gru_terms, _gru_gates, "z", _gru_fresh,
    "GRU (PyTorch convention, h_t = (1 - z_t) n_t + z_t h_(t-1)); state h_t (n); the additive diag(z_t) "
    "path plus the gated terms (gru_terms_along)",
)


KINDS = {"lstm": LSTM, "rnn-tanh": RNN_TANH, "rnn-sigmoid": RNN_SIGMOID, "gru": GRU}


def kind_of(name: str) -> Kind:
    if name not in KINDS:
        raise ValueError(f"model kind {name!r} is not diagnosable; expected one of {sorted(KINDS)}")
    return KINDS[name]
