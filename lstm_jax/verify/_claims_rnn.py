r"""The article's RNN claims (eq. 1, eq. 2, eq. 3, vanishing, exploding) as a declarative table.

Each check measures in float64 with the public :mod:`lstm_jax` API and derives its verdict by the
rule written in its proof document (``proofs/<doc>``); readings as in ``proofs/_notation.md``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

import lstm_jax as lj

from ._draws import DRAWS, SHAPES, orthogonal, rnn_draws
from ._types import (
    F64,
    FAIL_AT,
    READINGS,
    TOL,
    Claim,
    Context,
    Finding,
    Verdict,
    bound_fmt,
    formula_verdict,
    jit_vmap,
    readings_of,
    rel_err,
)


def _same_under_every_reading(err: float) -> tuple:
    """Readings of a formula with no vector factor after a Jacobian: every reading is the same formula."""
    return readings_of({r: err for r in READINGS})


# ----------------------------------------------------------------------------- eq. 2


def _eq2_errors(act: lj.Activation):
    def one(p, c, x):
        flow = lj.rnn_flow_map(p, x[None], act)  # c_(t-1) -> c_t through run_rnn's scan
        J = lj.rnn_step_jacobian(p, c, x, act)  # diag(act'(z)) W_rec: sigma' printed left of W_rec
        fwd, rev = jax.jacfwd(flow)(c), jax.jacrev(flow)(c)
        transposed = p.W_rec * act.deriv(lj.rnn_preactivation(p, c, x))[None, :]  # W_rec diag(act'): not a reading
        return jnp.maximum(rel_err(J, fwd), rel_err(J, rev)), rel_err(transposed, fwd)

    return jit_vmap(one)


def _check_eq2(act: lj.Activation):
    def check(ctx: Context) -> Finding:
        worst, col_errs = 0.0, []
        fn = _eq2_errors(act)
        for idx, (n, m) in enumerate(SHAPES):
            err, col = fn(*rnn_draws(jax.random.fold_in(ctx.key, idx), n, m, DRAWS))
            worst = max(worst, float(jnp.max(err)))
            if n > 1:
                col_errs.append(float(jnp.min(col)))
        readings = _same_under_every_reading(worst)
        return Finding(
            formula_verdict(readings),
            {
                "max_rel_err_vs_jacfwd_jacrev": worst,
                "min_rel_err_of_W_rec_diag_misreading_n_gt_1": min(col_errs),
                "draws": DRAWS * len(SHAPES),
                "shapes_n_m": SHAPES,
                "activation": act.name,
            },
            f"dc_t/dc_(t-1) = diag({act.name}'(z_t)) W_rec: the printed σ'(z) stands left of W_rec and scales its "
            f"ROWS under every reading (W_rec diag(act'), which no reading gives, is off by ≥ {min(col_errs):.2g})",
            worst <= TOL,
            f"max rel err {bound_fmt(worst)}",
            readings,
        )

    return check


# ----------------------------------------------------------------------------- vanishing / exploding

N_FLOW, M_FLOW, T_FLOW = 32, 8, 60


def _log_norms_by_lag(Js: jax.Array) -> jax.Array:
    r"""``log ||J_T ... J_(T-l+1)||_2`` for lags ``l = 1..T`` (via :func:`lstm_jax.gradient_flow_norms`)."""
    fl = lj.gradient_flow_norms(Js)  # index t: lag T - t
    return jnp.log(fl.spectral[::-1])


def _rate(log_norms: jax.Array) -> float:
    """Least-squares slope of log ||product|| against the lag over the second half of the lags."""
    y = log_norms[log_norms.shape[0] // 2:]
    k = jnp.arange(y.shape[0], dtype=F64)
    return float(jnp.polyfit(k, y, 1)[0])


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _bound_run(key, act: lj.Activation, gain: float, input_scale: float = 1.0):
    """Random W_rec with gamma ||W_rec||_2 = gain; returns (log norms, log bound) over lags 1..T."""
    k = jax.random.split(key, 4)
    G = jax.random.normal(k[0], (N_FLOW, N_FLOW), F64)
    W_rec = G * (gain / act.max_slope / jnp.linalg.norm(G, ord=2))
    W_in = input_scale * jax.random.normal(k[1], (N_FLOW, M_FLOW), F64) / math.sqrt(M_FLOW)
    p = lj.RNNParams(W_rec, W_in, None)
    c0 = jax.random.normal(k[2], (N_FLOW,), F64)
    xs = jax.random.normal(k[3], (T_FLOW, M_FLOW), F64)
    ln = _log_norms_by_lag(lj.rnn_step_jacobians(p, c0, xs, act))
    return ln, jnp.arange(1, T_FLOW + 1) * math.log(gain)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _fixed_point_run(act: lj.Activation, key, gain: float):
    """c_t stays where z_t = 0 (act' = gamma): J_t = gamma W_rec for all t, W_rec = gain/gamma * Q (Q orthogonal)."""
    W_rec = (gain / act.max_slope) * orthogonal(key, N_FLOW)
    c_star = jnp.full((N_FLOW,), act.fn(0.0), F64)  # act(0): 0.5 for sigmoid, 0 for tanh
    p = lj.RNNParams(W_rec, jnp.zeros((N_FLOW, M_FLOW), F64), -W_rec @ c_star)
    return _log_norms_by_lag(lj.rnn_step_jacobians(p, c_star, jnp.zeros((T_FLOW, M_FLOW), F64), act))


def _check_vanishing(ctx: Context) -> Finding:
    measured, violations = {}, -math.inf
    for i, act in enumerate((lj.SIGMOID, lj.TANH)):
        ln, bound = _bound_run(jax.random.fold_in(ctx.key, i), act, 0.9)
        violations = max(violations, float(jnp.max(ln - bound)))
        measured[f"{act.name}_gain0.9_rate"] = _rate(ln)
        measured[f"{act.name}_gain0.9_log_norm_at_T"] = float(ln[-1])
    grow = _fixed_point_run(lj.TANH, jax.random.fold_in(ctx.key, 7), 1.5)
    measured["bound_rate_log0.9"] = math.log(0.9)
    measured["max_log_norm_minus_log_bound"] = violations
    measured["tanh_gain1.5_fixed_point_rate"] = _rate(grow)
    measured["T"] = T_FLOW
    bound_ok = violations <= 1e-12
    decays = all(measured[f"{a.name}_gain0.9_rate"] < math.log(0.9) + 1e-9 for a in (lj.SIGMOID, lj.TANH))
    counter = measured["tanh_gain1.5_fixed_point_rate"] > 0
    verdict = (Verdict.CONDITIONAL if (bound_ok and decays and counter)
               else Verdict.HOLDS if (bound_ok and decays) else Verdict.FAILS)
    return Finding(
        verdict,
        measured,
        "‖∏ dc_t/dc_(t-1)‖_2 ≤ (γ‖W_rec‖_2)^(k-1) (γ = 1/4 sigmoid, 1 tanh): vanishing is guaranteed when "
        "‖W_rec‖_2 < 1/γ, not by act' < 1 alone",
        bound_ok,
        f"rate σ {measured['sigmoid_gain0.9_rate']:.2f}, tanh {measured['tanh_gain0.9_rate']:.2f}/step "
        f"(bound {math.log(0.9):.3f}); tanh γ‖W‖=1.5: {measured['tanh_gain1.5_fixed_point_rate']:+.2f}/step",
    )


def _check_exploding(ctx: Context) -> Finding:
    explode = _fixed_point_run(lj.SIGMOID, jax.random.fold_in(ctx.key, 1), 1.25)
    ln_sat, bound_sat = _bound_run(jax.random.fold_in(ctx.key, 2), lj.TANH, 3.0, input_scale=20.0)
    ln_small, bound_small = _bound_run(jax.random.fold_in(ctx.key, 3), lj.SIGMOID, 0.99)
    measured = {
        "sigmoid_gain1.25_fixed_point_rate": _rate(explode),
        "expected_rate_log1.25": math.log(1.25),
        "tanh_gain3_saturated_rate": _rate(ln_sat),
        "sigmoid_gain0.99_max_log_norm": float(jnp.max(ln_small)),
        "max_log_norm_minus_log_bound": float(jnp.maximum(jnp.max(ln_sat - bound_sat), jnp.max(ln_small - bound_small))),
    }
    bound_ok = measured["max_log_norm_minus_log_bound"] <= 1e-12
    # "can explode if W_rec is large enough": one large-W_rec case that explodes at the predicted rate,
    # and no explosion without gamma ||W_rec|| > 1 (the bound), is what the sentence asserts.
    explodes = measured["sigmoid_gain1.25_fixed_point_rate"] > 0
    necessary = measured["sigmoid_gain0.99_max_log_norm"] <= 0
    verdict = Verdict.HOLDS if (explodes and necessary and bound_ok) else Verdict.FAILS
    return Finding(
        verdict,
        measured,
        "the product can explode once γ‖W_rec‖_2 > 1 (necessary; not sufficient: saturated units can still make it vanish)",
        bound_ok and abs(measured["sigmoid_gain1.25_fixed_point_rate"] - math.log(1.25)) < 1e-9,
        f"σ γ‖W‖=1.25: {measured['sigmoid_gain1.25_fixed_point_rate']:+.3f}/step; "
        f"tanh γ‖W‖=3 saturated: {measured['tanh_gain3_saturated_rate']:+.2f}/step",
    )


# ----------------------------------------------------------------------------- eq. 1 and eq. 3

N_G, M_G, P_G, T_G = 16, 8, 4, 20


def _readout_setup(key, act_scale=1.0):
    k = jax.random.split(key, 6)
    p = lj.RNNParams(
        act_scale * jax.random.normal(k[0], (N_G, N_G), F64) / math.sqrt(N_G),
        jax.random.normal(k[1], (N_G, M_G), F64) / math.sqrt(M_G),
        None,
    )
    W_out = jax.random.normal(k[2], (P_G, N_G), F64) / math.sqrt(N_G)
    c0 = jax.random.normal(k[3], (N_G,), F64)
    xs = jax.random.normal(k[4], (T_G, M_G), F64)
    ys = jax.random.normal(k[5], (T_G, P_G), F64)
    return p, W_out, c0, xs, ys


def _bptt_terms(p: lj.RNNParams, act: lj.Activation, W_out, c0, xs, y):
    """Per-step contributions G_t = (dE_k/dc_t)(d+c_t/dW) to dE_k/dW, E_k = 1/2 ||W_out c_k - y||^2, k = T.

    dE_k/dc_t = (J_k ... J_{t+1})^T dE_k/dc_k with the suffix products of the analytic step Jacobians
    (:func:`lstm_jax.suffix_products`); d+c_t/dW is the immediate partial of step t (a VJP of
    :func:`lstm_jax.rnn_step` with respect to the parameters).
    """
    _, cs = lj.run_rnn(p, c0, xs, act)  # one scan, shared below
    S = lj.suffix_products(lj.rnn_step_jacobians(p, c0, xs, act, trajectory=cs))  # S[t-1] = dc_T/dc_(t-1)
    delta_k = W_out.T @ (W_out @ cs[-1] - y)
    deltas = jnp.concatenate([jnp.einsum("tij,i->tj", S[1:], delta_k), delta_k[None]])  # dE_k/dc_t, t = 1..T
    c_prev = lj.previous_states(c0, cs)

    def local(c, x, d):
        return jax.vjp(lambda q: lj.rnn_step(q, c, x, act), p)[1](d)[0]

    G = jax.vmap(local)(c_prev, xs, deltas)
    return G.W_rec, G.W_in


def _eq1_errors(key):
    """(published rel err W_rec, W_in; corrected rel err) for one random draw; E_k at k = T."""
    act = lj.SIGMOID
    p, W_out, c0, xs, ys = _readout_setup(key, 2.0)
    loss = lambda q: 0.5 * jnp.sum((W_out @ lj.run_rnn(q, c0, xs, act)[0] - ys[-1]) ** 2)  # noqa: E731
    g = jax.grad(loss)(p)
    G_rec, G_in = _bptt_terms(p, act, W_out, c0, xs, ys[-1])
    corrected = jnp.maximum(rel_err(G_rec.sum(0), g.W_rec), rel_err(G_in.sum(0), g.W_in))
    return rel_err(G_rec[0], g.W_rec), rel_err(G_in[0], g.W_in), corrected


EQ1_DRAWS = 4


def _check_eq1(ctx: Context) -> Finding:
    pub_rec, pub_in, cor = jit_vmap(_eq1_errors)(jax.random.split(ctx.key, EQ1_DRAWS))
    pub_min = float(jnp.minimum(jnp.min(pub_rec), jnp.min(pub_in)))
    measured = {
        "published_rel_err_W_rec_min": float(jnp.min(pub_rec)),
        "published_rel_err_W_in_min": float(jnp.min(pub_in)),
        "corrected_rel_err": float(jnp.max(cor)),
        "k": T_G, "n": N_G, "m": M_G, "activation": lj.SIGMOID.name, "draws": EQ1_DRAWS,
    }
    readings = _same_under_every_reading(float(jnp.maximum(jnp.max(pub_rec), jnp.max(pub_in))))
    fails = pub_min > FAIL_AT
    return Finding(
        formula_verdict(readings) if not fails else Verdict.FAILS,
        measured,
        "dE_k/dW = Σ_{t=1..k} dE_k/dh_k dh_k/dc_k (∏_{s=t+1..k} dc_s/dc_(s-1)) d⁺c_t/dW "
        "(W enters every step; eq. 1 keeps only t = 1)",
        measured["corrected_rel_err"] <= TOL,
        f"eq.1 rel err 1 − {1 - pub_min:.0e} (min over {EQ1_DRAWS} draws); sum over t: "
        f"{bound_fmt(measured['corrected_rel_err'])}",
        readings,
    )


def _check_eq3(ctx: Context) -> Finding:
    p, W_out, c0, xs, ys = _readout_setup(ctx.key)

    def rnn_losses(q):
        cs = lj.run_rnn(q, c0, xs, lj.SIGMOID)[1]
        return 0.5 * jnp.sum((cs @ W_out.T - ys) ** 2, axis=1)  # E_t, t = 1..T

    lp = lj.init_lstm(jax.random.fold_in(ctx.key, 1), N_G, M_G, dtype=F64)
    s0 = lj.LSTMState(jnp.zeros(N_G, F64), c0)

    def lstm_losses(q):
        hs = lj.run_lstm(q, s0, xs)[1].h
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
    readings = _same_under_every_reading(worst)
    return Finding(
        formula_verdict(readings),
        {"max_rel_err_sum_of_per_step_grads_vs_grad": worst, "T": T_G, "models": ["rnn-sigmoid", "lstm"]},
        "dE/dW = Σ_t dE_t/dW for E = Σ_t E_t (linearity of the derivative)",
        worst <= TOL,
        f"max rel err {bound_fmt(worst)}",
        readings,
    )


#: one claim per row: id, the claim as published, equation, verdict its proof derives, root cause, proof, check
RNN_CLAIMS = (
    Claim("rnn-eq2-sigmoid", "RNN step Jacobian σ'(z)·W_rec (article's σ model)", "(2)", Verdict.HOLDS, None,
          "rnn-eq2.md", _check_eq2(lj.SIGMOID)),
    Claim("rnn-eq2-tanh", "RNN step Jacobian with tanh (the text's activation)", "(2)", Verdict.HOLDS, None,
          "rnn-eq2.md", _check_eq2(lj.TANH)),
    Claim("eq1-chain", "∂E_k/∂W is one chain through ∏ ∂c_t/∂c_{t-1}", "(1)", Verdict.FAILS, "one-term-chain",
          "eq1-chain.md", _check_eq1),
    Claim("eq3-sum", "∂E/∂W = Σ_t ∂E_t/∂W", "(3)", Verdict.HOLDS, None, "eq3-sum.md", _check_eq3),
    Claim("rnn-vanishing", "∏ σ'(z)·W_rec → 0 for large k, due to tanh' < 1", "(1)+(2)", Verdict.CONDITIONAL,
          "norm-condition-not-quantified", "rnn-vanishing-exploding.md", _check_vanishing),
    Claim("rnn-exploding", "the product can explode if W_rec is large enough", "(1)+(2)", Verdict.HOLDS, None,
          "rnn-vanishing-exploding.md", _check_exploding),
)
