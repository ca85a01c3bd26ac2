r"""Gradient-flow snapshots taken during training, on fixed held-out sequences.

:func:`flow_snapshot` measures, for the current parameters on ``D`` held-out 1997 adding sequences of length
exactly ``T`` (first mark at :math:`t_1 \le 10`, lag :math:`T - t_1`):

* ``f_mean``, ``f_quantiles`` (5/25/50/75/95 %) of the forget-gate activations :math:`f_{t,j}` over
  sequences, steps and units (LSTM only, via :func:`lstm_jax.lstm_gates` on the runner's trajectory);
  ``tau`` the per-unit time constants :math:`\tau_j = -1/\log\bar f_j` (:math:`\bar f_j` the unit's mean
  activation; ``None`` = infinite, :math:`\bar f_j = 1`);
* ``lag_units``: the quarter of units with the largest :math:`|\partial\hat y/\partial c_{t_1, j}|` (the
  sensitivity of the prediction to the cell state right after the first marked value was read), and
  ``f_lag`` / ``f_other``: the mean forget activation on those units / the others over the steps
  :math:`t_1 < t \le T` that carry the lag;
* ``terms``: mean spectral norms of the four terms of the article's eq. (6)
  (:func:`lstm_jax.lstm_terms_along`, exact form) along the sequence;
* ``long_lag_share``: :math:`\|\sum_{t:\,T - t > T/2} g_t\| / \|\sum_t g_t\|` where :math:`g_t` is the part
  of :math:`\partial E/\partial W` (recurrent and input weights) from the use of :math:`W` at step ``t``
  (gradient w.r.t. per-step copies of :math:`W` at zero perturbation); ``decomposition_rel_err`` is
  :math:`\|\sum_t g_t - \nabla_W E\|/\|\nabla_W E\|` with :math:`\nabla_W E` from ``jax.grad`` through the
  library's runner (must be at rounding level).  The share can exceed 1 when the short- and long-lag
  parts point in opposite directions;
* ``log_dsds``: :math:`\log\|\partial s_T/\partial s_{t_1}\|_2` (natural log; ``s = (h, c)`` for the
  LSTM, ``c`` for the RNN), the product of the exact step Jacobians accumulated with rescaling so it never
  under- or overflows;
* ``lyapunov``: the leading Lyapunov exponent (:func:`lstm_jax.lyapunov`, ``k = 1``) along the sequence,
  mean over sequences.

For the modern cells (:data:`~lstm_jax.experiments._models.MODERN_MODELS`) the ``f_*`` fields, ``tau`` and
``lag_units`` measure the **retention** :math:`\partial m_{t,j}/\partial m_{t-1,j}` of their memory block
:math:`m` (the diagonal of that block of the exact step Jacobian, :func:`lstm_jax.step_jacobians`): minGRU
:math:`1 - z_t`, minLSTM :math:`f'_t`, RG-LRU :math:`a_t`, mLSTM :math:`f_t` on each entry of its memory
:math:`(C_t, n_t)` (the whole Jacobian, which is diagonal), sLSTM
:math:`f'_t` (its ``c`` block, :math:`\partial c_t/\partial c_{t-1} = \operatorname{diag}(f'_t)` exactly).
The lag units are ranked by :math:`|\partial\hat y/\partial m_{t_1+1, j}|`, the readout row pulled back through
the exact Jacobians.  ``terms``, ``long_lag_share`` and ``decomposition_rel_err`` are LSTM/RNN measurements and
are not recorded for them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import (
    LSTMParams,
    LSTMState,
    cell_of,
    log_renormalise,
    log_spectral,
    lstm_gates,
    lstm_step,
    lstm_step_jacobians,
    lstm_terms_along,
    lyapunov,
    rnn_step,
    rnn_step_jacobians,
    run_cell,
    run_lstm,
    step_jacobians,
    time_constant,
    zero_state,
)
from ._models import _activation, cell_inputs, is_lstm, is_modern, predict
from ._tasks import adding_problem_1997

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
DIAG_SEQS = 8


def diagnostic_batch(key: jax.Array, T: int, size: int = DIAG_SEQS):
    """``size`` held-out 1997 adding sequences of length exactly ``T`` (unpadded view ``xs[:, :T]``) and ``t_1``."""
    b = adding_problem_1997(key, size, T, spread=False)
    xs = b.xs[:, :T]
    t1 = jnp.argmax(b.xs[:, :, 1] == 1, axis=1)  # first marked pair (0-based index)
    return b._replace(xs=xs), t1


def _weights(cell):
    return (cell.W_f, cell.W_i, cell.W_c, cell.W_o) if isinstance(cell, LSTMParams) else (cell.W_rec, cell.W_in)


def _with_weights(cell, Ws):
    return cell._replace(**dict(zip(("W_f", "W_i", "W_c", "W_o") if isinstance(cell, LSTMParams)
                                    else ("W_rec", "W_in"), Ws)))


def per_step_gradients(params: dict, batch, model: str):
    r"""``(g (T, P), c_sens (B, T, n), grad_ref (P,))``.

    ``g[t]``: :math:`\partial E/\partial W` from the use of the weights at step ``t+1`` (sum over the
    batch of :math:`E = \tfrac12\sum_b(\hat y_b - y_b)^2`); ``c_sens[b, t]``:
    :math:`\partial\hat y_b/\partial c_{t+1}`; ``grad_ref``: ``jax.grad`` of the same ``E`` through the
    library's runner (:func:`predict`), flattened like ``g``.  Sequences are unpadded, length ``T``.
    """
    cell, W_out, b_out = params["cell"], params["W_out"], params["b_out"]
    xs, y = batch.xs, batch.y
    T = xs.shape[1]
    lstm = is_lstm(model)
    n = W_out.shape[1]
    Ws = _weights(cell)

    def run_one(eps_W, eps_c, x):
        def step(s, inp):
            x_t, eW, ec = inp
            q = _with_weights(cell, [W + e for W, e in zip(Ws, eW)])
            if lstm:
                s = lstm_step(q, s, x_t)
                s = LSTMState(s.h, s.c + ec)
                return s, None
            return rnn_step(q, s, x_t, _activation(model)) + ec, None

        s0 = zero_state(n, x.dtype) if lstm else jnp.zeros(n, x.dtype)
        sT, _ = jax.lax.scan(step, s0, (x, eps_W, eps_c))
        return ((sT.h if lstm else sT) @ W_out.T + b_out)[0]

    eps_W = [jnp.zeros((T, *W.shape), W.dtype) for W in Ws]
    eps_c = jnp.zeros((xs.shape[0], T, n), xs.dtype)

    def E(eW):
        yh = jax.vmap(run_one, in_axes=(None, 0, 0))(eW, eps_c, xs)
        return 0.5 * jnp.sum((yh - y) ** 2)

    g = jax.grad(E)(eps_W)
    g = jnp.concatenate([gi.reshape(T, -1) for gi in g], axis=1)
    c_sens = jax.vmap(jax.grad(run_one, argnums=1), in_axes=(None, 0, 0))(eps_W, eps_c, xs)

    def E_ref(Ws_):
        p = {**params, "cell": _with_weights(cell, Ws_)}
        return 0.5 * jnp.sum((predict(p, batch, model)[:, 0] - y) ** 2)

    ref = jax.grad(E_ref)(list(Ws))
    return g, c_sens, jnp.concatenate([r.reshape(-1) for r in ref])


def _log_norm_from(jacs: jax.Array, t1: jax.Array) -> jax.Array:
    r""":math:`\log\|J_T\cdots J_{t_1+2}\|_2` for ``jacs (T, d, d)`` (0-based ``jacs[t]`` = step ``t+1``):
    the Jacobian :math:`\partial s_T/\partial s_{t_1+1}` from the state after the first mark to the end;
    the product is carried in log space (:func:`lstm_jax.log_renormalise`)."""
    d = jacs.shape[-1]

    def step(carry, inp):
        t, J = inp
        return jax.tree.map(lambda new, old: jnp.where(t > t1, new, old),
                            log_renormalise(J @ carry[0], carry[1]), carry), None

    carry, _ = jax.lax.scan(step, (jnp.eye(d, dtype=jacs.dtype), jnp.zeros((), jacs.dtype)),
                            (jnp.arange(jacs.shape[0]), jacs))
    return log_spectral(*carry)


def _gate_statistics(f: jax.Array, sens: jax.Array, t1: jax.Array) -> dict:
    """Forget-gate (or retention) statistics of ``f (B, T, n)``; the lag units are the quarter of the units with
    the largest sensitivity ``sens (n,)``; the lag is carried over the steps after ``t1 (B,)``."""
    B, T, n = f.shape
    k = max(1, n // 4)
    lag_units = jnp.argsort(-sens)[:k]
    is_lag = jnp.zeros(n, bool).at[lag_units].set(True)
    carry = (jnp.arange(T)[None, :] > t1[:, None])[:, :, None]  # (B, T, 1)
    w_lag = (carry & is_lag[None, None]).astype(f.dtype)
    w_oth = (carry & ~is_lag[None, None]).astype(f.dtype)
    return dict(f_mean=jnp.mean(f), f_quantiles=jnp.quantile(f, jnp.array(QUANTILES)),
                f_unit=jnp.mean(f, axis=(0, 1)), lag_units=lag_units,
                f_lag=jnp.sum(f * w_lag) / jnp.sum(w_lag), f_other=jnp.sum(f * w_oth) / jnp.maximum(jnp.sum(w_oth), 1))


def _pull_back(jacs: jax.Array, row: jax.Array, t1: jax.Array) -> jax.Array:
    r""":math:`r^\top J_T\cdots J_{t_1+2}` for ``jacs (T, d, d)`` (0-based ``jacs[t]`` = step ``t+1``), ``row (d,)``:
    the sensitivity of :math:`r^\top s_T` to the state after the first mark."""
    def step(v, inp):
        t, J = inp
        return jnp.where(t > t1, v @ J, v), None

    return jax.lax.scan(step, row, (jnp.arange(jacs.shape[0]), jacs), reverse=True)[0]


def _modern_arrays(params: dict, xs: jax.Array, t1: jax.Array, model: str) -> tuple:
    """``(jacs (B, T, d, d), retention statistics)`` of a modern cell (module docstring)."""
    cell = cell_of(model)
    p, n, _ = cell.check(params["cell"], "params['cell']")  # n: units per state block (the mLSTM: its memory)
    w = cell.weights(p)
    unflat = lambda s: cell.from_blocks(tuple(jnp.split(s, cell.width, axis=-1)))  # noqa: E731

    def one(x):
        traj = run_cell(model, p, cell.zero(n, x.dtype), x)[1]
        s_T = cell.flat(jax.tree_util.tree_map(lambda a: a[-1], traj))
        # d y_hat / d s_T: the readout row through the cell's output map (the out block, or the mLSTM's h_t)
        row = jax.grad(lambda s: params["W_out"][0] @ cell.outputs(w, unflat(s), x[-1]))(s_T)
        return step_jacobians(model, p, x), row

    jacs, rows = jax.vmap(one)(cell_inputs(params, xs))
    mem = 1 if cell.width > 1 else 0  # the memory block: sLSTM's c, the diagonal cells' h (the mLSTM's C, n)
    blk = slice(mem * n, (mem + 1) * n)
    f = jnp.diagonal(jacs[..., blk, blk], axis1=-2, axis2=-1)  # (B, T, n)
    sens = jnp.mean(jnp.abs(jax.vmap(_pull_back)(jacs, rows, t1)[:, blk]), axis=0)
    return jacs, _gate_statistics(f, sens, t1)


def _snapshot_arrays(params: dict, batch, t1, model: str, full: bool = True) -> dict:
    cell = params["cell"]
    xs = batch.xs
    B, T, _ = xs.shape
    n = params["W_out"].shape[1]
    lag = T - t1 - 1  # steps from the state after the first mark (index t1) to the last
    if is_modern(model):
        jacs, out = _modern_arrays(params, xs, t1, model)
        out["lag"] = jnp.mean(lag.astype(jnp.float32))
        return out if not full else {**out, **_flow_of(jacs, t1)}
    g, c_sens, ref = per_step_gradients(params, batch, model)
    steps = jnp.arange(1, T + 1)
    long = jnp.where(((T - steps) > T / 2)[:, None], g, 0).sum(0)
    total = g.sum(0)
    out = {
        "long_lag_share": jnp.linalg.norm(long) / jnp.linalg.norm(total),
        "decomposition_rel_err": jnp.linalg.norm(total - ref) / jnp.linalg.norm(ref),
        "lag": jnp.mean(lag.astype(jnp.float32)),
    }
    if is_lstm(model):
        jacs = jax.vmap(lambda x: lstm_step_jacobians(cell, zero_state(n, x.dtype), x))(xs)
        traj = jax.vmap(lambda x: run_lstm(cell, zero_state(n, x.dtype), x)[1])(xs)
        h_prev = jnp.concatenate([jnp.zeros((B, 1, n), xs.dtype), traj.h[:, :-1]], axis=1)
        f = jax.vmap(jax.vmap(lambda h, x: lstm_gates(cell, h, x).f))(h_prev, xs)  # (B, T, n)
        sens = jnp.mean(jnp.abs(c_sens[jnp.arange(B), t1]), axis=0)  # (n,)
        out.update(_gate_statistics(f, sens, t1))
        if not full:
            return out
        terms = jax.vmap(lambda x: lstm_terms_along(cell, zero_state(n, x.dtype), x))(xs[:2])
        out["terms"] = {name: jnp.mean(jnp.linalg.norm(getattr(terms, name), ord=2, axis=(-2, -1)))
                        for name in ("A", "B", "C", "D")}
    else:
        if not full:
            return out
        jacs = jax.vmap(lambda x: rnn_step_jacobians(cell, jnp.zeros(n, x.dtype), x, _activation(model)))(xs)
    return {**out, **_flow_of(jacs, t1)}


def _flow_of(jacs: jax.Array, t1: jax.Array) -> dict:
    """``log_dsds`` and ``lyapunov`` (module docstring) from the step Jacobians ``(B, T, d, d)``."""
    return {"log_dsds": jnp.mean(jax.vmap(_log_norm_from)(jacs, t1)),
            "lyapunov": jnp.mean(jax.vmap(lambda J: lyapunov(J, k=1).exponents[0])(jacs))}


_snapshot_jit = jax.jit(_snapshot_arrays, static_argnames=("model", "full"))


def flow_snapshot(params: dict, batch, t1, model: str, full: bool = True) -> dict:
    """The measurements of the module docstring as plain Python numbers / lists (JSON-ready).

    ``full=False`` measures only the forget-gate statistics and the gradient decomposition (faster to
    compile; what the forget-gate claim needs)."""
    a = jax.device_get(_snapshot_jit(params, batch, t1, model, full))
    res = {k: float(v) for k, v in a.items() if k in ("long_lag_share", "decomposition_rel_err", "lag",
                                                      "log_dsds", "lyapunov")}
    if "terms" in a:
        res["terms"] = {k: float(v) for k, v in a["terms"].items()}
    if "f_mean" in a:
        f_unit = np.asarray(a["f_unit"], np.float64)
        tau = [None if fu >= 1.0 else float(time_constant(fu)) for fu in f_unit]
        res.update(f_mean=float(a["f_mean"]), f_quantiles=[float(q) for q in a["f_quantiles"]],
                   f_lag=float(a["f_lag"]), f_other=float(a["f_other"]), lag_units=[int(u) for u in a["lag_units"]],
                   tau=tau)
    return res
