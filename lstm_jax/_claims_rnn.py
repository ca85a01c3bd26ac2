r"""Executable checks of the article's RNN claims (eq. 1, eq. 2, eq. 3, vanishing, exploding).

Each check measures in float64 and derives its verdict by the rule written in
its proof document (``proofs/<id>.md``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from ._activations import SIGMOID, TANH, Activation
from ._jacobians import jacobian_products, rnn_flow_map, rnn_step_jacobian, rnn_step_jacobians
from ._lstm import LSTMState, init_lstm, run_lstm
from ._rnn import RNNParams, rnn_preactivation, run_rnn
from ._verify import TOL, Claim, Context, Finding, Verdict, jit_vmap, rel_err

F64 = jnp.float64
SHAPES = ((1, 1), (8, 4), (32, 16))  # (n, m) of the random draws
DRAWS = 16  # draws per shape


def _log_uniform(key, shape, lo, hi):
    return jnp.exp(jax.random.uniform(key, shape, F64, math.log(lo), math.log(hi)))


def rnn_draws(key, n: int, m: int, count: int):
    """``count`` random (params, c, x): weight scale log-uniform in [0.1, 3], random biases."""
    k = jax.random.split(key, 6)
    scale = _log_uniform(k[0], (count, 1, 1), 0.1, 3.0)
    W_rec = scale * jax.random.normal(k[1], (count, n, n), F64) / math.sqrt(n)
    W_in = jax.random.normal(k[2], (count, n, m), F64) / math.sqrt(m)
    b = 0.5 * jax.random.normal(k[3], (count, n), F64)
    c = jax.random.normal(k[4], (count, n), F64)
    x = jax.random.normal(k[5], (count, m), F64)
    return RNNParams(W_rec, W_in, b), c, x


# ----------------------------------------------------------------------------- eq. 2


def _eq2_errors(act: Activation):
    def one(p, c, x):
        flow = rnn_flow_map(p, x[None], act)  # c_{t-1} -> c_t through run_rnn's scan
        J = rnn_step_jacobian(p, c, x, act)  # diag(act'(z)) W_rec
        fwd, rev = jax.jacfwd(flow)(c), jax.jacrev(flow)(c)
        col = p.W_rec * act.deriv(rnn_preactivation(p, c, x))[None, :]  # misreading W_rec diag(act')
        return jnp.maximum(rel_err(J, fwd), rel_err(J, rev)), rel_err(col, fwd)

    return jit_vmap(one)


def _check_eq2(act: Activation):
    def check(ctx: Context) -> Finding:
        worst, col_errs = 0.0, []
        fn = _eq2_errors(act)
        for idx, (n, m) in enumerate(SHAPES):
            err, col = fn(*rnn_draws(jax.random.fold_in(ctx.key, idx), n, m, DRAWS))
            worst = max(worst, float(jnp.max(err)))
            if n > 1:
                col_errs.append(float(jnp.min(col)))
        holds = worst <= TOL
        return Finding(
            Verdict.HOLDS if holds else Verdict.FAILS,
            {
                "max_rel_err_vs_jacfwd_jacrev": worst,
                "min_rel_err_of_column_reading_W_rec_diag": min(col_errs),
                "draws": DRAWS * len(SHAPES),
                "shapes_n_m": SHAPES,
                "activation": act.name,
            },
            f"dc_t/dc_(t-1) = diag({act.name}'(z_t)) W_rec: act' scales the ROWS of W_rec "
            f"(the reading W_rec diag(act') is off by >= {min(col_errs):.2g} relative)",
            holds,
            f"max rel err {worst:.1e}",
        )

    return check


# ----------------------------------------------------------------------------- vanishing / exploding


def _log_norms(Js: jax.Array) -> jax.Array:
    """log ||J_k ... J_1||_2 for k = 1..T (float64 products; T here is small enough)."""
    P = jacobian_products(Js)
    return jnp.log(jnp.linalg.norm(P, ord=2, axis=(-2, -1)))


def _rate(log_norms: jax.Array) -> float:
    """Least-squares slope of log ||P_k|| against k over the second half of the horizon."""
    y = log_norms[log_norms.shape[0] // 2:]
    k = jnp.arange(y.shape[0], dtype=F64)
    return float(jnp.polyfit(k, y, 1)[0])


def _scaled_to_norm(W: jax.Array, target: float) -> jax.Array:
    return W * (target / jnp.linalg.norm(W, ord=2))


def _orthogonal(key, n):
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), F64))
    return q * jnp.sign(jnp.diag(r))[None, :]


N_FLOW, M_FLOW, T_FLOW = 32, 8, 60


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _bound_run(key, act: Activation, gain: float, input_scale: float = 1.0):
    """Random W_rec with gamma ||W_rec||_2 = gain; returns (log norms, log bound) over k = 1..T."""
    k = jax.random.split(key, 4)
    W_rec = _scaled_to_norm(jax.random.normal(k[0], (N_FLOW, N_FLOW), F64), gain / act.max_slope)
    W_in = input_scale * jax.random.normal(k[1], (N_FLOW, M_FLOW), F64) / math.sqrt(M_FLOW)
    p = RNNParams(W_rec, W_in, None)
    c0 = jax.random.normal(k[2], (N_FLOW,), F64)
    xs = jax.random.normal(k[3], (T_FLOW, M_FLOW), F64)
    ln = _log_norms(rnn_step_jacobians(p, c0, xs, act))
    bound = jnp.arange(1, T_FLOW + 1) * math.log(gain)
    return ln, bound


@functools.partial(jax.jit, static_argnums=(0, 2))
def _fixed_point_run(act: Activation, key, gain: float):
    """c_t stays at the point where z_t = 0 (act' = gamma): J_t = gamma W_rec for all t, W_rec = gain/gamma * Q."""
    Q = _orthogonal(key, N_FLOW)
    W_rec = (gain / act.max_slope) * Q
    c_star = jnp.full((N_FLOW,), act.fn(0.0), F64)  # act(0): 0.5 for sigmoid, 0 for tanh
    p = RNNParams(W_rec, jnp.zeros((N_FLOW, M_FLOW), F64), -W_rec @ c_star)
    xs = jnp.zeros((T_FLOW, M_FLOW), F64)
    return _log_norms(rnn_step_jacobians(p, c_star, xs, act))


def _check_vanishing(ctx: Context) -> Finding:
    measured, violations = {}, -math.inf
    for i, act in enumerate((SIGMOID, TANH)):
        ln, bound = _bound_run(jax.random.fold_in(ctx.key, i), act, 0.9)
        violations = max(violations, float(jnp.max(ln - bound)))
        measured[f"{act.name}_gain0.9_rate"] = _rate(ln)
        measured[f"{act.name}_gain0.9_log_norm_at_T"] = float(ln[-1])
    grow = _fixed_point_run(TANH, jax.random.fold_in(ctx.key, 7), 1.5)
    measured["bound_rate_log0.9"] = math.log(0.9)
    measured["max_log_norm_minus_log_bound"] = violations
    measured["tanh_gain1.5_fixed_point_rate"] = _rate(grow)
    measured["T"] = T_FLOW
    bound_ok = violations <= 1e-12
    decays = all(measured[f"{a.name}_gain0.9_rate"] < math.log(0.9) + 1e-9 for a in (SIGMOID, TANH))
    counter = measured["tanh_gain1.5_fixed_point_rate"] > 0
    verdict = Verdict.CONDITIONAL if (bound_ok and decays and counter) else (Verdict.HOLDS if bound_ok and decays else Verdict.FAILS)
    return Finding(
        verdict,
        measured,
        "||prod dc_t/dc_(t-1)||_2 <= (gamma ||W_rec||_2)^(k-1) (gamma = 1/4 sigmoid, 1 tanh): vanishing is "
        "guaranteed when ||W_rec||_2 < 1/gamma, not by act' < 1 alone",
        bound_ok,
        f"rate σ {measured['sigmoid_gain0.9_rate']:.2f}, tanh {measured['tanh_gain0.9_rate']:.2f}/step "
        f"(bound {math.log(0.9):.3f}); tanh ‖W‖=1.5: {measured['tanh_gain1.5_fixed_point_rate']:+.2f}",
    )


def _check_exploding(ctx: Context) -> Finding:
    explode = _fixed_point_run(SIGMOID, jax.random.fold_in(ctx.key, 1), 1.25)
    ln_sat, bound_sat = _bound_run(jax.random.fold_in(ctx.key, 2), TANH, 3.0, input_scale=20.0)
    ln_small, bound_small = _bound_run(jax.random.fold_in(ctx.key, 3), SIGMOID, 0.99)
    measured = {
        "sigmoid_gain1.25_fixed_point_rate": _rate(explode),
        "expected_rate_log1.25": math.log(1.25),
        "tanh_gain3_saturated_rate": _rate(ln_sat),
        "sigmoid_gain0.99_max_log_norm": float(jnp.max(ln_small)),
        "max_log_norm_minus_log_bound": float(jnp.maximum(jnp.max(ln_sat - bound_sat), jnp.max(ln_small - bound_small))),
    }
    bound_ok = measured["max_log_norm_minus_log_bound"] <= 1e-12
    explodes = measured["sigmoid_gain1.25_fixed_point_rate"] > 0
    large_but_vanishing = measured["tanh_gain3_saturated_rate"] < 0
    necessary = measured["sigmoid_gain0.99_max_log_norm"] <= 0
    verdict = Verdict.CONDITIONAL if (explodes and large_but_vanishing and necessary) else Verdict.FAILS
    return Finding(
        verdict,
        measured,
        "exploding needs gamma ||W_rec||_2 > 1 (necessary, not sufficient: saturation can still make it vanish)",
        bound_ok and abs(measured["sigmoid_gain1.25_fixed_point_rate"] - math.log(1.25)) < 1e-9,
        f"σ γ‖W‖=1.25: {measured['sigmoid_gain1.25_fixed_point_rate']:+.3f}/step; "
        f"tanh γ‖W‖=3 saturated: {measured['tanh_gain3_saturated_rate']:+.2f}/step",
    )


# ----------------------------------------------------------------------------- eq. 1 and eq. 3

N_G, M_G, P_G, T_G = 16, 8, 4, 20


def _readout_setup(key, act_scale=1.0):
    k = jax.random.split(key, 6)
    p = RNNParams(
        act_scale * jax.random.normal(k[0], (N_G, N_G), F64) / math.sqrt(N_G),
        jax.random.normal(k[1], (N_G, M_G), F64) / math.sqrt(M_G),
        None,
    )
    W_out = jax.random.normal(k[2], (P_G, N_G), F64) / math.sqrt(N_G)
    c0 = jax.random.normal(k[3], (N_G,), F64)
    xs = jax.random.normal(k[4], (T_G, M_G), F64)
    ys = jax.random.normal(k[5], (T_G, P_G), F64)
    return p, W_out, c0, xs, ys


def _bptt_terms(p: RNNParams, act: Activation, W_out, c0, xs, y):
    """Per-step contributions G_t = (dE_k/dc_t)(d+c_t/dW) to dE_k/dW, E_k = 1/2 ||W_out c_k - y||^2, k = T.

    dE_k/dc_t = (J_k ... J_{t+1})^T dE_k/dc_k, accumulated by a reverse scan over
    the analytic step Jacobians; d+c_t/dW is the immediate partial at step t.
    """
    Js = rnn_step_jacobians(p, c0, xs, act)
    _, cs = run_rnn(p, c0, xs, act)
    c_prev = jnp.concatenate([c0[None], cs[:-1]])
    delta_k = W_out.T @ (W_out @ cs[-1] - y)

    def back(delta, J):  # delta_t -> delta_(t-1) = J_t^T delta_t
        return J.T @ delta, delta

    _, deltas = jax.lax.scan(back, delta_k, Js, reverse=True)  # deltas[t] = dE_k/dc_(t+1)
    local = jax.vmap(lambda c, x: act.deriv(rnn_preactivation(p, c, x)))(c_prev, xs) * deltas
    return jnp.einsum("ti,tj->tij", local, c_prev), jnp.einsum("ti,tj->tij", local, xs)


def _eq1_errors(key):
    """(published rel err W_rec, W_in; corrected rel err) for one random draw; E_k at k = T."""
    act = SIGMOID
    p, W_out, c0, xs, ys = _readout_setup(key, 2.0)
    loss = lambda q: 0.5 * jnp.sum((W_out @ run_rnn(q, c0, xs, act)[0] - ys[-1]) ** 2)  # noqa: E731
    g = jax.grad(loss)(p)
    G_rec, G_in = _bptt_terms(p, act, W_out, c0, xs, ys[-1])
    corrected = jnp.maximum(rel_err(G_rec.sum(0), g.W_rec), rel_err(G_in.sum(0), g.W_in))
    return rel_err(G_rec[0], g.W_rec), rel_err(G_in[0], g.W_in), corrected


def _check_eq1(ctx: Context) -> Finding:
    pub_rec, pub_in, cor = jit_vmap(_eq1_errors)(jax.random.split(ctx.key, 4))
    measured = {
        "published_rel_err_W_rec": float(jnp.min(pub_rec)),
        "published_rel_err_W_in": float(jnp.min(pub_in)),
        "corrected_rel_err": float(jnp.max(cor)),
        "k": T_G, "n": N_G, "m": M_G, "activation": SIGMOID.name, "draws": 4,
    }
    corrected_ok = measured["corrected_rel_err"] <= TOL
    fails = max(measured["published_rel_err_W_rec"], measured["published_rel_err_W_in"]) > 1e-6
    return Finding(
        Verdict.FAILS if fails else Verdict.HOLDS,
        measured,
        "dE_k/dW = sum_{t=1..k} dE_k/dh_k dh_k/dc_k (prod_{s=t+1..k} dc_s/dc_(s-1)) d+c_t/dW "
        "(W enters every step; eq. 1 keeps only t = 1)",
        corrected_ok,
        f"eq.1 rel err ≥ {min(measured['published_rel_err_W_rec'], measured['published_rel_err_W_in']):.2f}; "
        f"sum over t: {measured['corrected_rel_err']:.1e}",
    )


def _check_eq3(ctx: Context) -> Finding:
    p, W_out, c0, xs, ys = _readout_setup(ctx.key)

    def rnn_losses(q):
        cs = run_rnn(q, c0, xs, SIGMOID)[1]
        return 0.5 * jnp.sum((cs @ W_out.T - ys) ** 2, axis=1)  # E_t, t = 1..T

    lp = init_lstm(jax.random.fold_in(ctx.key, 1), N_G, M_G, dtype=F64)
    s0 = LSTMState(jnp.zeros(N_G, F64), c0)

    def lstm_losses(q):
        hs = run_lstm(q, s0, xs)[1].h
        return 0.5 * jnp.sum((hs @ W_out.T - ys) ** 2, axis=1)

    @jax.jit
    def errors(rnn_params, lstm_params):
        errs = []
        for losses, params in ((rnn_losses, rnn_params), (lstm_losses, lstm_params)):
            total = jax.grad(lambda q: jnp.sum(losses(q)))(params)
            per_t = jax.jacrev(losses)(params)  # leaves (T, ...): dE_t/dW for each t
            for a, b in zip(jax.tree_util.tree_leaves(per_t), jax.tree_util.tree_leaves(total)):
                errs.append(rel_err(a.sum(0).reshape(b.shape[0], -1), b.reshape(b.shape[0], -1)))
        return jnp.max(jnp.stack(errs))

    worst = float(errors(p, lp))
    holds = worst <= TOL
    return Finding(
        Verdict.HOLDS if holds else Verdict.FAILS,
        {"max_rel_err_sum_of_per_step_grads_vs_grad": worst, "T": T_G, "models": ["rnn-sigmoid", "lstm"]},
        "dE/dW = sum_t dE_t/dW for E = sum_t E_t (linearity of the derivative)",
        holds,
        f"max rel err {worst:.1e}",
    )


RNN_CLAIMS = [
    Claim("rnn-eq2-sigmoid", "RNN step Jacobian σ'(z)·W_rec (article's σ model)", "(2)", Verdict.HOLDS,
          "rnn-eq2.md", _check_eq2(SIGMOID)),
    Claim("rnn-eq2-tanh", "RNN step Jacobian with tanh (the text's activation)", "(2)", Verdict.HOLDS,
          "rnn-eq2.md", _check_eq2(TANH)),
    Claim("eq1-chain", "∂E_k/∂W is one chain through ∏ ∂c_t/∂c_{t-1}", "(1)", Verdict.FAILS,
          "eq1-chain.md", _check_eq1),
    Claim("eq3-sum", "∂E/∂W = Σ_t ∂E_t/∂W", "(3)", Verdict.HOLDS, "eq3-sum.md", _check_eq3),
    Claim("rnn-vanishing", "∏ σ'(z)·W_rec → 0 for large k (blamed on tanh' < 1)", "(1)+(2)", Verdict.CONDITIONAL,
          "rnn-vanishing-exploding.md", _check_vanishing),
    Claim("rnn-exploding", "the product explodes if W_rec is large enough", "(1)+(2)", Verdict.CONDITIONAL,
          "rnn-vanishing-exploding.md", _check_exploding),
]
