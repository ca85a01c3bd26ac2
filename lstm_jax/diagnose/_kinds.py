r"""What :func:`~lstm_jax.diagnose.diagnose` needs from each cell kind beyond the cell protocol.

The state, the runner and the exact step Jacobians come from the core's registry
(:func:`lstm_jax.cell_of`: ``cell.width * n`` is the size ``d`` of the diagnosed state, LSTM
:math:`s_t = [h_t; c_t]`); this table adds what only a report needs.  Every entry works on **one**
sequence ``xs (T, m)`` and on the states the layer's one scan produced, ``states`` (the cell's state
object of ``(T + 1, n)`` arrays, :math:`s_0..s_T`), so that no entry runs the layer again:

* ``terms(params, xs, states, times, checks)``: spectral norms of the article's eq. (6) terms (or the GRU's
  analogue) at the steps ``times`` (each ``>= 2``), a dict ``name -> (len(times),)``, and the same norms by SVD at
  the steps ``checks``; ``None`` for kinds without them.
* ``gates(params, xs, states)``: dict ``name -> (T, n)`` activations mapped to ``[0, 1]`` (a tanh value
  ``v`` as ``(v + 1)/2``), used for histograms and saturation; ``memory_gate`` names the one whose
  mean :math:`\bar f` sets the per-unit memory time constant :math:`\tau = -1/\log\bar f`
  (LSTM and sLSTM: the forget gate ``f``; GRU: the update gate ``z``; minGRU and RG-LRU: the retention ``a``;
  minLSTM: the normalised forget gate ``f``; mLSTM: the head's forget gate ``f`` on each memory entry; RNN: none).
* ``fresh(key, like, n, m, dtype)``: a freshly initialised layer of the same shape (the baseline).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

import lstm_jax


class Kind(NamedTuple):
    name: str
    cell: lstm_jax.Cell
    terms: Optional[Callable[..., dict]]
    gates: Callable[..., dict]
    memory_gate: Optional[str]
    fresh: Callable[..., Any]

    @property
    def description(self) -> str:
        return self.cell.description

    def state_size(self, n: int) -> int:
        return self.cell.width * n


#: the terms' spectral norms: Lanczos (:func:`lstm_jax.spectral_lanczos_norm`) with TERM_STEPS Krylov vectors from a
#: fixed random start, a lower bound on the norm; an SVD at the check times of every run says how far it is
#: (``terms.norm_method`` of diagnosis.json)
TERM_STEPS = 32


def _spectral(M: jax.Array) -> jax.Array:
    return jnp.linalg.norm(M, ord=2, axis=(-2, -1))


def _lanczos_norm(M: lstm_jax.ScaledMatrix) -> jax.Array:
    n = M.shape[-1]
    v0 = jax.random.normal(jax.random.PRNGKey(0), (n,), M.dtype)
    return lstm_jax.spectral_lanczos_norm(M, v0, min(TERM_STEPS, n))


def _as01(v: jax.Array) -> jax.Array:
    return (v + 1) / 2


def _window_terms(along, states, xs, times, checks):
    """The terms' spectral norms at step ``t`` for each ``t`` in ``times``: ``along(s_{t-2}, xs[t-2:t],
    trajectory=s_{t-1..t})``'s last entry, on the layer's own states (no second scan).  Each term is a
    :class:`lstm_jax.ScaledMatrix` ``diag(r_t) U diag(c_t)`` with ``U`` a block of the recurrent weights shared by
    all times, so the Lanczos products of every sampled time (and sequence, under ``vmap``) with ``U`` are one
    matrix–matrix product per Krylov step and no ``(n, n)`` matrix is formed per time.  ``B`` is diagonal by
    construction (the additive path, diag(f_t) or diag(z_t)): its norm is max |B_ii|, exactly, with no SVD; the
    others by the Lanczos recurrence (:func:`_lanczos_norm`, ``O(n^2)`` per Krylov vector instead of an SVD's
    ``O(n^3)``), all of them one stacked call.  Returns ``(norms, exact)``: ``exact`` holds the SVD values at the
    steps ``checks`` (a subset of ``times``), from the same factors."""

    def at(t):
        window = jax.lax.dynamic_slice_in_dim(xs, t - 2, 2)
        start = jax.tree_util.tree_map(lambda a: a[t - 2], states)
        traj = jax.tree_util.tree_map(lambda a: jax.lax.dynamic_slice_in_dim(a, t - 1, 2), states)
        terms = along(start, window, traj)._asdict()
        return {k: (M.row[-1], M.col[-1]) for k, M in terms.items()}, {k: M.U for k, M in terms.items()}  # step t

    scales, U = jax.vmap(at, out_axes=(0, None))(times)
    diag = [k for k in scales if U[k] is None]
    names = [k for k in scales if U[k] is not None]
    norms = {k: jnp.max(jnp.abs(scales[k][0] * scales[k][1]), axis=-1) for k in diag}
    # the others stacked along a leading axis (term, time): one traced norm, one batched call
    U_all = jnp.stack([U[k] for k in names])
    row, col = (jnp.stack([scales[k][i] for k in names]) for i in (0, 1))
    lanczos = jax.vmap(lambda U, r, c: jax.vmap(lambda r, c: _lanczos_norm(lstm_jax.ScaledMatrix(r, U, c)))(r, c))
    norms.update(zip(names, lanczos(U_all, row, col)))
    # the SVD checks (batched LAPACK) ordered after the Lanczos values, which call none: two independent batched
    # LAPACK calls running at once can deadlock jaxlib 0.10's CPU thread pool, so no LAPACK call may join them later
    norms, row, col = jax.lax.optimization_barrier((norms, row, col))
    at_checks = jnp.searchsorted(times, checks)
    exact = {k: jnp.max(jnp.abs(scales[k][0][at_checks] * scales[k][1][at_checks]), axis=-1) for k in diag}
    dense = jax.vmap(lambda U, r, c: jax.vmap(lambda r, c: lstm_jax.ScaledMatrix(r, U, c).dense())(r, c))(
        U_all, row[:, at_checks], col[:, at_checks])
    exact.update(zip(names, _spectral(dense)))
    return norms, exact


# --------------------------------------------------------------------------- LSTM


def _lstm_terms(params, xs, states, times, checks):
    # eq. (6) at step t needs o_{t-1}: lstm_terms_along over the two steps t-1, t from s_{t-2}.
    return _window_terms(lambda s, w, tr: lstm_jax.lstm_terms_along(params, s, w, trajectory=tr, scaled=True), states, xs, times,
                         checks)


def _lstm_gates(params, xs, states):
    g = jax.vmap(lambda h, x: lstm_jax.lstm_gates(params, h, x))(states.h[:-1], xs)
    return {"f": g.f, "i": g.i, "c_tilde": _as01(g.c_tilde), "o": g.o}


def _lstm_fresh(key, like, n, m, dtype):
    bias = like.b_f is not None
    return lstm_jax.init_lstm(key, n, m, bias=bias, forget_bias=1.0 if bias else 0.0, dtype=dtype)


def _lstmp_gates(params, xs, states):
    cell = lstm_jax.cell_of("lstm-proj")
    z_h, z_x = cell.preactivations(cell.weights(params), (states.h[:-1], states.c[:-1]), xs)
    z_f, z_i, z_c, z_o = jnp.split(z_h + z_x, 4, axis=-1)  # gate order f, i, c~, o
    return {"f": jax.nn.sigmoid(z_f), "i": jax.nn.sigmoid(z_i), "c_tilde": _as01(jnp.tanh(z_c)), "o": jax.nn.sigmoid(z_o)}


def _lstmp_fresh(key, like, n, m, dtype):
    q = lstm_jax.init_lstmp(key, n, m, like.W_hr.shape[0], dtype=dtype)
    return q if like.b_f is not None else q._replace(b_f=None, b_i=None, b_c=None, b_o=None)


# --------------------------------------------------------------------------- plain RNN


def _rnn_kind(activation: lstm_jax.Activation) -> Kind:
    def gates(params, xs, states):
        return {"state": _as01(states[1:]) if activation is lstm_jax.TANH else states[1:]}

    def fresh(key, like, n, m, dtype):
        return lstm_jax.init_rnn(key, n, m, bias=like.b is not None, dtype=dtype)

    name = f"rnn-{activation.name}"
    return Kind(name, lstm_jax.cell_of(name), None, gates, None, fresh)


# --------------------------------------------------------------------------- GRU


def _gru_terms(params, xs, states, times, checks):
    return _window_terms(lambda h, w, tr: lstm_jax.gru_terms_along(params, h, w, trajectory=tr, scaled=True), states, xs, times,
                         checks)


def _gru_gates(params, xs, states):
    g = jax.vmap(lambda h, x: lstm_jax.gru_gates(params, h, x))(states[:-1], xs)
    return {"z": g.z, "r": g.r, "n": _as01(g.n)}


def _gru_fresh(key, like, n, m, dtype):
    return lstm_jax.init_gru(key, n, m, bias=like.b_z is not None, dtype=dtype)


# --------------------------------------------------------------------------- modern cells (lstm_jax._mingru, _rglru, _slstm)


def _factors(kind, params, xs, states):
    """The cell's factors at every step, from the layer's own states (the protocol's step, no scan)."""
    cell = lstm_jax.cell_of(kind)
    w = cell.weights(params)
    prev = jax.tree_util.tree_map(lambda a: a[:-1], states)
    return cell.step(w, cell.to_blocks(prev), xs)[1]


def _mingru_gates(params, xs, states):
    F = _factors("mingru", params, xs, states)
    return {"a": F.a, "z": F.z}  # a = 1 - z: the retention, the whole step Jacobian


def _minlstm_gates(params, xs, states):
    F = _factors("minlstm", params, xs, states)
    return {"f": F.f, "i": F.i}  # the normalised gates f' = f/(f + i), i' = 1 - f'


def _rglru_gates(params, xs, states):
    F = _factors("rglru", params, xs, states)
    return {"a": F.a, "r": jax.nn.sigmoid(xs @ params.W_a.T + params.b_a), "i": jax.nn.sigmoid(xs @ params.W_x.T + params.b_x)}


def _mlstm_gates(params, xs, states):
    F = _factors("mlstm", params, xs, states)
    # per memory entry: the head's forget gate f (the whole step Jacobian's diagonal) and input gate exp(i~) mapped
    # to [0, 1] as i / (1 + i)
    i = jnp.exp(jnp.split(lstm_jax.cell_of("mlstm").preactivations(lstm_jax.cell_of("mlstm").weights(params), None, xs)[1],
                          4, axis=-1)[1])
    return {"f": F.a, "i": i / (1 + i)}


def _slstm_gates(params, xs, states):
    F = _factors("slstm", params, xs, states)
    cell = lstm_jax.cell_of("slstm")
    z_h, z_x = cell.preactivations(cell.weights(params), (states.h[:-1],), xs)
    z_f = jnp.split(z_h + z_x, 4, axis=-1)[1]  # gate order i, f, z, o
    # "f" is the forget gate sigma(f~) (its mean sets tau); the stabilised f' = exp(log sigma(f~) + m_(t-1) - m_t)
    # is exactly 1 whenever the max takes the forget branch, so it is reported apart; i' = exp(i~ - m_t) in (0, 1];
    # the output gate from e = o / n_t
    return {"f": jax.nn.sigmoid(z_f), "f_stabilised": F.f, "i": F.i, "z": _as01(F.z), "o": F.e * states.n[1:]}


KINDS = {
    "lstm": Kind("lstm", lstm_jax.cell_of("lstm"), _lstm_terms, _lstm_gates, "f", _lstm_fresh),
    # the projected LSTM (torch proj_size): its state is (u, c), u = o tanh(c), h = W_hr u (lstm_jax._lstmp)
    "lstm-proj": Kind("lstm-proj", lstm_jax.cell_of("lstm-proj"), None, _lstmp_gates, "f", _lstmp_fresh),
    "rnn-tanh": _rnn_kind(lstm_jax.TANH),
    "rnn-sigmoid": _rnn_kind(lstm_jax.SIGMOID),
    "gru": Kind("gru", lstm_jax.cell_of("gru"), _gru_terms, _gru_gates, "z", _gru_fresh),
    "slstm": Kind("slstm", lstm_jax.cell_of("slstm"), None, _slstm_gates, "f",
                  lambda key, like, n, m, dtype: lstm_jax.init_slstm(key, n, m, heads=like.R_i.shape[0], dtype=dtype)),
    "mingru": Kind("mingru", lstm_jax.cell_of("mingru"), None, _mingru_gates, "a",
                   lambda key, like, n, m, dtype: lstm_jax.init_mingru(key, n, m, dtype=dtype)),
    "minlstm": Kind("minlstm", lstm_jax.cell_of("minlstm"), None, _minlstm_gates, "f",
                    lambda key, like, n, m, dtype: lstm_jax.init_minlstm(key, n, m, dtype=dtype)),
    "rglru": Kind("rglru", lstm_jax.cell_of("rglru"), None, _rglru_gates, "a",
                  lambda key, like, n, m, dtype: lstm_jax.init_rglru(key, n, dtype=dtype)),
    # n here is the memory size H d (d + 1); the fresh layer takes the output width and heads of ``like``
    "mlstm": Kind("mlstm", lstm_jax.cell_of("mlstm"), None, _mlstm_gates, "f",
                  lambda key, like, n, m, dtype: lstm_jax.init_mlstm(key, like.W_q.shape[0], m, heads=like.w_i.shape[0],
                                                                      dtype=dtype)),
}


def kind_of(name: str) -> Kind:
    if name not in KINDS:
        raise ValueError(f"model kind {name!r} is not diagnosable; expected one of {sorted(KINDS)}")
    return KINDS[name]
