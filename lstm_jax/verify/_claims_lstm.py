r"""The article's LSTM claims (eq. 5, eq. 6 and its appendix, the multi-step product, the "balancing"
example, the forget gate, and the lag structure of eq. 3) as a declarative table.

Notation as in ``proofs/_notation.md``: :math:`U_g` the ``h``-columns of :math:`W_g`,
:math:`d_{t-1} = o_{t-1}\odot\tanh'(c_{t-1})`; a vector :math:`v` printed after a Jacobian
:math:`M` is :math:`\operatorname{diag}(v)M` under the stated ("row") reading and
:math:`M\operatorname{diag}(v)` under the literal ("column") one.  Only public :mod:`lstm_jax` names.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

import lstm_jax as lj

from ._draws import DRAWS, SHAPES, lstm_draws, orthogonal
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

_dsig, _dtanh = lj.SIGMOID.deriv, lj.TANH.deriv


def _scale(v, M, reading):
    """The vector ``v`` printed after the Jacobian ``M``, under ``reading``: diag(v) M (row) or M diag(v) (column)."""
    return v[:, None] * M if reading == "row" else M * v[None, :]


def _audit_one(p: lj.LSTMParams, o_prev, c_prev, x):
    """Every eq. (6) / appendix quantity for one draw, against jacfwd and jacrev of the library's maps."""
    n = c_prev.shape[0]
    h_of = lambda c: o_prev * jnp.tanh(c)  # noqa: E731  h_(t-1) with o_(t-1) fixed
    gate = lambda name: (lambda c: getattr(lj.lstm_gates(p, h_of(c), x), name))  # noqa: E731
    g = lj.lstm_gates(p, h_of(c_prev), x)
    d = o_prev * _dtanh(c_prev)
    U_f, U_i, U_c = (W[:, :n] for W in (p.W_f, p.W_i, p.W_c))
    h_t = lambda c: lj.run_lstm(p, lj.LSTMState(h_of(c), c), x[None])[0].h  # noqa: E731  (h_t, not h_(t-1))

    def both(fn):  # (jacfwd, jacrev) of fn at c_prev
        return jax.jacfwd(fn)(c_prev), jax.jacrev(fn)(c_prev)

    def err(M, refs):
        return jnp.maximum(rel_err(M, refs[0]), rel_err(M, refs[1]))

    dfdc, didc, dgdc = both(gate("f")), both(gate("i")), both(gate("c_tilde"))
    dcdc = both(lj.article_cell_map(p, o_prev, x))
    ref_terms = [
        tuple(c_prev[:, None] * r for r in dfdc),  # A = diag(c_(t-1)) df_t/dc_(t-1) (product rule)
        (jnp.diag(g.f),) * 2,
        tuple(g.c_tilde[:, None] * r for r in didc),
        tuple(g.i[:, None] * r for r in dgdc),
    ]
    cor = lj.article_terms(p, o_prev, c_prev, x)
    out = {}
    for name, C_, R_ in zip("ABCD", cor, ref_terms):
        out[f"cor_{name}"] = err(C_, R_)
    out["cor_sum"] = err(cor.total(), dcdc)
    for reading in READINGS:
        pub = lj.article_terms_published(p, o_prev, c_prev, x, reading=reading)
        for name, P_, R_ in zip("ABCD", pub, ref_terms):
            out[f"pub_{reading}_{name}"] = err(P_, R_)
        out[f"pub_{reading}_sum"] = err(pub.total(), dcdc)
        # the article's product-rule line: df/dc·c + f + di/dc·c~ + dc~/dc·i, each "· v" under the reading
        rule = (_scale(c_prev, dfdc[0], reading) + jnp.diag(g.f) + _scale(g.c_tilde, didc[0], reading)
                + _scale(g.i, dgdc[0], reading))
        out[f"rule_{reading}"] = err(rule, dcdc)
    dht = jax.jacfwd(h_t)(c_prev)
    # appendix, forget gate: middle line with dh_t/dc_(t-1) (printed) vs dh_(t-1)/dc_(t-1) (its own last line)
    out["app_f_printed"] = err(_dsig(g.z_f)[:, None] * U_f @ dht, dfdc)
    out["app_f_intended"] = err(_dsig(g.z_f)[:, None] * U_f * d[None, :], dfdc)
    # appendix, input gate: sigma'(W_c .) W_c as printed (middle line with dH_t/dc, last line with d); W_i intended
    out["app_i_printed_middle"] = err(_dsig(g.z_c)[:, None] * U_c @ dht, didc)
    out["app_i_printed"] = err(_dsig(g.z_c)[:, None] * U_c * d[None, :], didc)
    out["app_i_intended"] = err(_dsig(g.z_i)[:, None] * U_i * d[None, :], didc)
    # appendix, candidate: d/dc[sigma(W_c .)] as printed (middle line with dH_t/dc, last line with d); tanh
    out["app_c_printed_middle"] = err(_dsig(g.z_c)[:, None] * U_c @ dht, dgdc)
    out["app_c_printed"] = err(_dsig(g.z_c)[:, None] * U_c * d[None, :], dgdc)
    out["app_c_corrected"] = err(_dtanh(g.z_c)[:, None] * U_c * d[None, :], dgdc)
    return out


def _audit(key):
    """The formula audit over DRAWS draws at each (n, m) in SHAPES: {shape: {quantity: (DRAWS,)}} (shared)."""
    fn = jit_vmap(_audit_one)
    return {(n, m): fn(*lstm_draws(jax.random.fold_in(key, i), n, m, DRAWS)) for i, (n, m) in enumerate(SHAPES)}


def _worst(audit, q, multi_unit_only=False, best=False):
    vals = [v[q] for (n, _), v in audit.items() if not (multi_unit_only and n == 1)]
    red = jnp.min if best else jnp.max
    return float(red(jnp.stack([red(v) for v in vals])))


def _readings(audit, quantity):
    """The published quantity under every reading: {reading: max rel err over all draws}."""
    return readings_of({r: _worst(audit, quantity.format(r=r)) for r in READINGS})


def _reading_figure(readings, corrected=None, draws=DRAWS * len(SHAPES)):
    parts = [f"max over {draws} draws, {readings[0].name}: {bound_fmt(readings[0].max_rel_err)}"]
    parts += [f"{r.name}: {bound_fmt(r.max_rel_err)}" for r in readings[1:]]
    if corrected is not None:
        parts.append(f"corrected: {bound_fmt(corrected)}")
    return "; ".join(parts)


_TERM_STATEMENTS = {
    "A": "A_t = diag(c_(t-1) ⊙ σ'(z_f)) U_f diag(o_(t-1) ⊙ tanh'(c_(t-1))): exactly the printed A_t with the trailing "
         "c_(t-1) scaling rows, as in the product-rule line (needs no non-zero c entries)",
    "B": "B_t = diag(f_t), exactly as published",
    "C": "C_t = diag(c̃_t ⊙ σ'(z_i)) U_i diag(o_(t-1) ⊙ tanh'(c_(t-1))): the printed C_t under the row reading",
    "D": "D_t = diag(i_t ⊙ tanh'(z_c)) U_c diag(o_(t-1) ⊙ tanh'(c_(t-1))): tanh'(z_c), not σ'(z_c); the printed D_t "
         "is off under every reading, by |σ'(z)/tanh'(z) − 1| per unit (0.75 at z = 0, unbounded as |z| grows)",
}

#: |z_c| at which the n = 1 error of the printed D_t is reported (ratio tanh'/σ' = 4, 1, 0.22, 0.028)
D_Z = (0.0, 1.66, 3.0, 5.0)


@jax.jit
def _d_single_unit(zs):
    """Relative error of the printed D_t for one unit with z_c = z exactly (U_c = 1, V_c = 0, b_c = z − h_(t-1))."""
    def one(z):
        o, c, x = jnp.array([0.5], F64), jnp.array([0.3], F64), jnp.array([0.0], F64)
        h = o * jnp.tanh(c)
        W = jnp.array([[0.7, 0.2]], F64)
        p = lj.LSTMParams(W, W, jnp.array([[1.0, 0.0]], F64), W, jnp.zeros(1, F64), jnp.zeros(1, F64),
                          z - h, jnp.zeros(1, F64))
        pub = lj.article_terms_published(p, o, c, x, reading="row").D
        cor = lj.article_terms(p, o, c, x).D
        return rel_err(pub, cor)

    return jax.vmap(one)(zs)


def _term_check(name: str):
    def check(ctx: Context) -> Finding:
        a = ctx.shared("lstm-audit", _audit)
        cor = _worst(a, f"cor_{name}")
        readings = _readings(a, f"pub_{{r}}_{name}")
        measured = {
            "corrected_max_rel_err": cor,
            "readings_min_rel_err_n_gt_1": {r: _worst(a, f"pub_{r}_{name}", multi_unit_only=True, best=True)
                                            for r in READINGS},
            "readings_max_rel_err_n_eq_1": {r: float(jnp.max(a[SHAPES[0]][f"pub_{r}_{name}"])) for r in READINGS},
            "draws": DRAWS * len(SHAPES),
        }
        fig = _reading_figure(readings, None if name == "B" else cor)
        if name == "D":
            errs = _d_single_unit(jnp.array(D_Z, F64))
            measured["n_eq_1_rel_err_at_z_c"] = dict(zip(map(str, D_Z), map(float, errs)))
            fig += f"; n=1 at |z_c|=0, 3, 5: {float(errs[0]):.2f}, {float(errs[2]):.2g}, {float(errs[3]):.2g}"
        return Finding(formula_verdict(readings), measured, _TERM_STATEMENTS[name], cor <= TOL, fig, readings)

    return check


def _sum_check(ctx: Context) -> Finding:
    a = ctx.shared("lstm-audit", _audit)
    cor = _worst(a, "cor_sum")
    readings = _readings(a, "pub_{r}_sum")
    measured = {"corrected_max_rel_err": cor, "draws": DRAWS * len(SHAPES),
                "readings_min_rel_err": {r: _worst(a, f"pub_{r}_sum", best=True) for r in READINGS}}
    return Finding(
        formula_verdict(readings),
        measured,
        "with o_(t-1) held fixed, ∂c_t/∂c_(t-1) = A_t + B_t + C_t + D_t with D_t's tanh'(z_c) (exact); under the "
        "row reading σ' for tanh' in D_t is the only error",
        cor <= TOL,
        _reading_figure(readings, cor),
        readings,
    )


def _rule_check(ctx: Context) -> Finding:
    a = ctx.shared("lstm-audit", _audit)
    readings = _readings(a, "rule_{r}")
    return Finding(
        formula_verdict(readings),
        {"readings_max_rel_err": {r.name: r.max_rel_err for r in readings}, "draws": DRAWS * len(SHAPES)},
        "∂c_t/∂c_(t-1) = diag(c_(t-1)) ∂f_t/∂c_(t-1) + diag(f_t) + diag(c̃_t) ∂i_t/∂c_(t-1) + diag(i_t) ∂c̃_t/∂c_(t-1) "
        "(each trailing '· v' is diag(v) on the LEFT: the stated reading)",
        readings[0].holds,
        _reading_figure(readings),
        readings,
    )


def _appendix_check(printed: tuple, intended: str, statement: str, typo: bool):
    def check(ctx: Context) -> Finding:
        a = ctx.shared("lstm-audit", _audit)
        worst_printed = max(_worst(a, q) for q in printed)  # no vector after a Jacobian: readings coincide
        readings = readings_of({r: worst_printed for r in READINGS})
        cor = _worst(a, intended)
        measured = {f"{q}_min_rel_err": _worst(a, q, best=True) for q in printed}
        measured.update({f"{q}_max_rel_err": _worst(a, q) for q in printed})
        measured.update({"intended_max_rel_err" if typo else "corrected_max_rel_err": cor, "draws": DRAWS * len(SHAPES)})
        lo = min(_worst(a, q, best=True) for q in printed)
        return Finding(
            formula_verdict(readings, typo=typo),
            measured,
            statement,
            cor <= TOL,
            f"printed: {bound_fmt(lo)}–{bound_fmt(worst_printed)} (min–max over {DRAWS * len(SHAPES)} draws); "
            f"{'intended' if typo else 'corrected'}: {bound_fmt(cor)}",
            readings,
        )

    return check


# ----------------------------------------------------------------------------- multi-step product

N_MS, M_MS, T_MS, DRAWS_MS = 8, 4, 10, 8


def _lift(o1, c1):
    """d s_1 / d c_1 when h_1 = o_1 ⊙ tanh(c_1) with o_1 fixed: [[diag(o_1 ⊙ tanh'(c_1))], [I]]."""
    return jnp.concatenate([jnp.diag(o1 * _dtanh(c1)), jnp.eye(c1.shape[0], dtype=c1.dtype)])


def _multistep_one(p: lj.LSTMParams, s0: lj.LSTMState, xs):
    """Article products (corrected terms; printed terms under each reading) vs exact dc_k/dc_1, k = 2..T,
    and the exact one vs jacfwd through run_lstm.  One scan shared by every quantity."""
    n = s0.h.shape[0]
    _, traj = lj.run_lstm(p, s0, xs)
    along = functools.partial(lj.lstm_terms_along, p, s0, xs, trajectory=traj)
    art = lj.jacobian_products(along().total())  # prod_{t=2}^k, k = 2..T
    pub = {r: lj.jacobian_products(along(functools.partial(lj.article_terms_published, reading=r)).total())
           for r in READINGS}
    joint = lj.lstm_step_jacobians(p, s0, xs, trajectory=traj)  # t = 1..T
    o1 = lj.lstm_gates(p, s0.h, xs[0]).o
    exact = (lj.jacobian_products(joint[1:]) @ _lift(o1, traj.c[0]))[:, n:]  # dc_k/dc_1, k = 2..T

    def c_k(c1):  # c_1 -> (c_2..c_T) through the library's scan, h_1 = o_1 tanh(c_1)
        return lj.run_lstm(p, lj.LSTMState(o1 * jnp.tanh(c1), c1), xs[1:])[1].c

    ref = jax.jacfwd(c_k)(traj.c[0])  # (T-1, n, n): the autodiff reference
    return rel_err(art, exact), {r: rel_err(v, exact) for r, v in pub.items()}, rel_err(exact, ref)


def _multistep_draws(key, count, zero_output_h=False):
    k = jax.random.split(key, 4)
    Ws = jax.random.normal(k[0], (4, count, N_MS, N_MS + M_MS), F64) / math.sqrt(N_MS + M_MS) * 1.5
    if zero_output_h:  # U_o = 0: the output gate no longer depends on h_(t-1)
        Ws = Ws.at[3, :, :, :N_MS].set(0.0)
    bs = 0.5 * jax.random.normal(k[1], (4, count, N_MS), F64)
    p = lj.LSTMParams(*Ws, *bs)
    s0 = lj.LSTMState(jnp.tanh(jax.random.normal(k[2], (count, N_MS), F64)),
                      jax.random.normal(k[3], (count, N_MS), F64))
    xs = jax.random.normal(jax.random.fold_in(key, 9), (count, T_MS, M_MS), F64)
    return p, s0, xs


def _check_multistep(ctx: Context) -> Finding:
    fn = jit_vmap(_multistep_one)
    art, pub, exact = fn(*_multistep_draws(ctx.key, DRAWS_MS))
    art0, _, exact0 = fn(*_multistep_draws(jax.random.fold_in(ctx.key, 1), DRAWS_MS, zero_output_h=True))
    per_k = [float(v) for v in jnp.max(art, axis=0)]  # index 0 is k = 2
    per_k_min = [float(v) for v in jnp.min(art, axis=0)]
    readings = readings_of({r: float(jnp.max(v)) for r, v in pub.items()})
    measured = {
        "k": list(range(2, T_MS + 1)),
        "corrected_terms_product_max_rel_err_per_k": per_k,
        "corrected_terms_product_min_rel_err_per_k": per_k_min,
        "published_terms_product_min_rel_err": {r: float(jnp.min(v)) for r, v in pub.items()},
        "U_o_zero_product_max_rel_err": float(jnp.max(art0)),
        "exact_formula_max_rel_err_vs_jacfwd": float(jnp.maximum(jnp.max(exact), jnp.max(exact0))),
        "draws": DRAWS_MS,
    }
    k2_exact = per_k[0] <= TOL
    later_off = min(per_k[1:]) > FAIL_AT  # every k >= 3 has draws where the product is off
    path_found = measured["U_o_zero_product_max_rel_err"] <= TOL
    verdict = formula_verdict(readings) if (k2_exact and later_off and path_found) else Verdict.CONDITIONAL
    return Finding(
        verdict,
        measured,
        "∂c_k/∂c_1 = [0 I] J_k ⋯ J_2 [diag(o_1 ⊙ tanh'(c_1)); I] with the joint (h, c) Jacobians; "
        "∏(A+B+C+D) drops the path c_(t-2) → h_(t-2) → o_(t-1) → h_(t-1) (exact when U_o = 0, or k = 2)",
        measured["exact_formula_max_rel_err_vs_jacfwd"] <= TOL and path_found,
        f"corrected terms: k=2 {bound_fmt(per_k[0])}, k=3..{T_MS} {min(per_k_min[1:]):.2g}–{max(per_k[1:]):.2g} "
        f"(over {DRAWS_MS} draws), U_o=0 {bound_fmt(measured['U_o_zero_product_max_rel_err'])}",
        readings,
    )


# ----------------------------------------------------------------------------- balancing

K_BAL = 50
N_BAL = 16


@jax.jit
def _balancing_numbers(key):
    k = jax.random.split(key, 3)
    eye = jnp.eye(N_BAL, dtype=F64)
    # (a) the article's picture: every term a diagonal (vector) of the stated size
    diag_norm = lj.gradient_flow_norms(jnp.broadcast_to((0.1 + 0.7 + 0.1 + 0.1) * eye, (K_BAL, N_BAL, N_BAL))).spectral
    # (b) same sizes (spectral norms 0.1, 0.7, 0.1, 0.1) but A, C, D in random orthogonal directions
    Q = jax.vmap(lambda kk: orthogonal(kk, N_BAL))(jax.random.split(k[0], 3 * K_BAL)).reshape(K_BAL, 3, N_BAL, N_BAL)
    norms = lj.gradient_flow_norms(0.7 * eye + 0.1 * Q.sum(axis=1)).spectral  # index 0: the full product
    # (c) real weights: an LSTM at Gers init (forget bias 1) on random inputs
    p = lj.init_lstm(k[1], N_BAL, 8, forget_bias=1.0, dtype=F64)
    xs = jax.random.normal(k[2], (K_BAL + 1, 8), F64)
    terms = lj.lstm_terms_along(p, lj.zero_state(N_BAL, F64), xs)
    spec = lambda A: jnp.median(jnp.linalg.norm(A, ord=2, axis=(-2, -1)))  # noqa: E731
    real_norm = lj.gradient_flow_norms(terms.total()).spectral[0]
    term_norms = jnp.stack([spec(t) for t in terms])
    f_median = jnp.median(jnp.diagonal(terms.B, axis1=1, axis2=2))
    return diag_norm[0], norms, term_norms, real_norm, f_median


def _check_balancing(ctx: Context) -> Finding:
    diag_norm, norms, term_norms, real_norm, f_median = _balancing_numbers(ctx.key)
    measured = {
        "k": K_BAL,
        "diagonal_terms_product_norm": float(diag_norm),
        "random_directions_product_norm": float(norms[0]),
        "random_directions_rate_per_step": float(jnp.log(norms[0]) / K_BAL),
        "lower_bound_norm_(0.7-0.3)^k": 0.4**K_BAL,
        "real_weights_median_spectral_norm_A_B_C_D": [float(v) for v in term_norms],
        "real_weights_product_norm": float(real_norm),
        "real_weights_median_forget_gate": float(f_median),
    }
    upper_ok = bool(jnp.all(norms <= 1 + 1e-12))
    diag_one = abs(measured["diagonal_terms_product_norm"] - 1) < 1e-12
    random_vanishes = measured["random_directions_product_norm"] < 0.5
    verdict = Verdict.CONDITIONAL if (diag_one and random_vanishes) else (Verdict.HOLDS if diag_one else Verdict.FAILS)
    return Finding(
        verdict,
        measured,
        "term sizes summing to 1 only bound the product: (σ_min(B) − ‖A‖ − ‖C‖ − ‖D‖)^(k−1) ≤ ‖∏‖ ≤ 1; it stays ≈ 1 "
        "when the terms are aligned (diagonal, positive, as the article's vectors), and decays otherwise",
        upper_ok,
        f"diagonal terms: |‖∏‖ − 1| {bound_fmt(abs(measured['diagonal_terms_product_norm'] - 1), 1e-12)}; "
        f"same sizes, random directions: {measured['random_directions_product_norm']:.1e} at k={K_BAL}",
    )


# ----------------------------------------------------------------------------- forget gate

K_FG, N_FG, M_FG = 50, 16, 8
FORGET_BIASES = (-4.0, -2.0, 0.0, 2.0, 4.0, 8.0)
FG_SCALES = (0.001, 0.1, 3.0)
#: "alive" over the k - 1 = 49 steps: at least half of the gradient's size survives (a closed gate gives < 1e-6)
ALIVE_NORM = 0.5


@jax.jit
def _forget_row(p: lj.LSTMParams, xs):
    """(||P||, ||P - I||, mean f, sum_t ||A_t + C_t + D_t||) for P = exact dc_k/dc_1 from the zero state (one scan)."""
    n = p.W_f.shape[0]
    s0 = lj.zero_state(n, F64)
    _, traj = lj.run_lstm(p, s0, xs)
    joint = lj.lstm_step_jacobians(p, s0, xs, trajectory=traj)
    o1 = lj.lstm_gates(p, s0.h, xs[0]).o
    P = (lj.suffix_products(joint[1:])[0] @ _lift(o1, traj.c[0]))[n:]  # J_T ... J_2 lifted: dc_T/dc_1
    terms = lj.lstm_terms_along(p, s0, xs, trajectory=traj)
    drift = jnp.sum(jnp.linalg.norm(terms.A + terms.C + terms.D, ord=2, axis=(-2, -1)))
    f_mean = jnp.mean(jnp.diagonal(terms.B, axis1=1, axis2=2))
    return (jnp.linalg.norm(P, ord=2), jnp.linalg.norm(P - jnp.eye(n, dtype=F64), ord=2), f_mean, drift)


def _check_forget(ctx: Context) -> Finding:
    xs = jax.random.normal(jax.random.fold_in(ctx.key, 1), (K_FG, M_FG), F64)
    rows = {}
    for scale in FG_SCALES:
        base = lj.init_lstm(jax.random.fold_in(ctx.key, 2), N_FG, M_FG, scale=scale, forget_bias=0.0, dtype=F64)
        for bf in FORGET_BIASES:
            vals = _forget_row(base._replace(b_f=jnp.full((N_FG,), bf, F64)), xs)
            rows[f"scale{scale:g}_bf{bf:+g}"] = dict(
                zip(("norm", "dist_to_identity", "mean_f", "sum_norm_A_C_D"), map(float, vals)))
    # the claim as published: an open gate keeps the product away from 0 ("alive"), a closed one kills it
    alive = all(rows[f"scale{s:g}_bf+8"]["norm"] >= ALIVE_NORM for s in FG_SCALES)
    collapse = all(rows[f"scale{s:g}_bf-4"]["norm"] < 1e-6 for s in FG_SCALES)
    verdict = Verdict.HOLDS if (alive and collapse) else Verdict.FAILS
    r = lambda key, q: rows[key][q]  # noqa: E731
    norms = ", ".join(f"{r(f'scale{s:g}_bf+8', 'norm'):.2g} (W×{s:g})" for s in FG_SCALES)
    grows = r("scale3_bf+8", "norm") > 1
    return Finding(
        verdict,
        {"k": K_FG, "n": N_FG, "forget_biases": FORGET_BIASES, "weight_scales": FG_SCALES, "alive_norm": ALIVE_NORM,
         "by_weight_scale_and_forget_bias": rows},
        (f"with f_t ≈ 1 (b_f = 8) ‖∂c_k/∂c_1‖ stays ≥ {ALIVE_NORM:g} at every weight scale ({norms}) and with f_t ≈ 0 "
         "(b_f = −4) it collapses" if alive and collapse else
         "the product does not stay away from 0 with an open gate, or does not collapse with a closed one")
        + (f"; a separate note: alive is not bounded — with larger weights the open-gate product grows "
           f"(‖P‖ = {r('scale3_bf+8', 'norm'):.2g} at W×3, ‖P − I‖ = {r('scale3_bf+8', 'dist_to_identity'):.2g}) and stays "
           f"≈ I only for small weights (‖P − I‖ = {r('scale0.001_bf+8', 'dist_to_identity'):.1e} at W×0.001): the LSTM "
           "can explode, which the article does not discuss" if grows else ""),
        True,
        f"b_f=8: ‖P‖ = {norms}; b_f=−4: ‖P‖ ≤ {max(r(f'scale{s:g}_bf-4', 'norm') for s in FG_SCALES):.0e}",
    )


# ----------------------------------------------------------------------------- lag shares of eq. 3

N_LAG, M_LAG, T_LAG, L_LAG, SEEDS_LAG = 32, 8, 100, 20, 4


def _per_step_grads(step, params, s0, xs, readout, reference_loss):
    """g_s = dE_T/dW restricted to the use of W at step s: the gradient w.r.t. per-step copies of the
    parameters (all at the same value), through the public one-step function ``step``.  Returns the
    (T, P) per-step gradients and the relative error of their sum against ``jax.grad(reference_loss)``."""
    T = xs.shape[0]
    copies = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (T, *a.shape)), params)

    def loss(ps):
        sT, _ = jax.lax.scan(lambda s, inp: (step(inp[0], s, inp[1]), None), s0, (ps, xs))
        return readout(sT)

    flat = lambda tree, lead: jnp.concatenate(  # noqa: E731
        [a.reshape(*lead, -1) for a in jax.tree_util.tree_leaves(tree)], axis=-1)
    g = flat(jax.grad(loss)(copies), (T,))
    ref = flat(jax.grad(reference_loss)(params), ())
    return g, rel_err(g.sum(0)[None, None], ref[None, None])


def _long_lag_share(g):
    """||sum over steps s with lag T - s > L of g_s|| / ||sum_s g_s|| (s = 1..T)."""
    T = g.shape[0]
    lag = T - jnp.arange(1, T + 1)
    return jnp.linalg.norm(jnp.where((lag > L_LAG)[:, None], g, 0.0).sum(0)) / jnp.linalg.norm(g.sum(0))


def _lag_shares(key, act_scales, forget_biases):
    """Long-lag shares for one seed: RNN (act, scale) configs, then LSTM forget biases (weights only, no biases)."""
    k = jax.random.split(key, 5)
    xs = jax.random.normal(k[0], (T_LAG, M_LAG), F64)
    W_out = jax.random.normal(k[1], (4, N_LAG), F64) / math.sqrt(N_LAG)
    y = jax.random.normal(k[2], (4,), F64)
    G = jax.random.normal(k[3], (N_LAG, N_LAG), F64) / math.sqrt(N_LAG)
    W_in = jax.random.normal(k[4], (N_LAG, M_LAG), F64) / math.sqrt(M_LAG)
    err = lambda v: 0.5 * jnp.sum((W_out @ v - y) ** 2)  # noqa: E731
    runs = []
    for act, scale in act_scales:
        p = lj.RNNParams(scale * G, W_in, None)
        c0 = jnp.zeros(N_LAG, F64)
        runs.append(_per_step_grads(lambda q, c, x, a=act: lj.rnn_step(q, c, x, a), p, c0, xs, err,
                                    lambda q, a=act: err(lj.run_rnn(q, c0, xs, a)[0])))
    for bf in forget_biases:
        full = lj.init_lstm(k[3], N_LAG, M_LAG, forget_bias=bf, dtype=F64)
        Ws, bs = full[:4], full[4:]
        s0 = lj.zero_state(N_LAG, F64)
        runs.append(_per_step_grads(lambda W, s, x, b=bs: lj.lstm_step(lj.LSTMParams(*W, *b), s, x), tuple(Ws), s0,
                                    xs, lambda s: err(s.h),
                                    lambda W, b=bs: err(lj.run_lstm(lj.LSTMParams(*W, *b), s0, xs)[0].h)))
    return jnp.stack([_long_lag_share(g) for g, _ in runs]), jnp.max(jnp.stack([e for _, e in runs]))


_LAG_RNNS = ((lj.SIGMOID, 1.0), (lj.TANH, 0.5), (lj.TANH, 1.0))
_LAG_LSTMS = (0.0, 1.0, 3.0)


def _check_lag_share(ctx: Context) -> Finding:
    keys = jax.random.split(ctx.key, SEEDS_LAG)
    table, errs = jax.jit(jax.vmap(lambda k: _lag_shares(k, _LAG_RNNS, _LAG_LSTMS)))(keys)  # (seeds, configs)
    decomposition_err = float(jnp.max(errs))
    names = [f"rnn-{a.name}-scale{s:g}" for a, s in _LAG_RNNS] + [f"lstm-forget-bias{b:g}" for b in _LAG_LSTMS]
    shares = {name: [float(v) for v in table[:, j]] for j, name in enumerate(names)}
    med = {k: float(jnp.median(jnp.array(v))) for k, v in shares.items()}
    rnn_vanish = {k: v < 1e-3 for k, v in med.items() if k.startswith("rnn")}
    lstm_alive = {k: v >= 1e-2 for k, v in med.items() if k.startswith("lstm")}
    if all(rnn_vanish.values()) and all(lstm_alive.values()):
        verdict = Verdict.HOLDS
    elif any(rnn_vanish.values()) and any(lstm_alive.values()):
        verdict = Verdict.CONDITIONAL
    else:
        verdict = Verdict.FAILS
    return Finding(
        verdict,
        {"T": T_LAG, "L": L_LAG, "n": N_LAG, "seeds": SEEDS_LAG, "median_long_lag_share": med,
         "per_seed_long_lag_share": shares, "sum_of_per_step_grads_max_rel_err_vs_jax_grad": decomposition_err},
        f"share of ‖∂E_T/∂W‖ from lags > {L_LAG}: vanishes for RNNs with γ‖W_rec‖ < 1, survives for the LSTM "
        "when its forget gate stays open — a property of the weights, not of the architecture alone",
        decomposition_err <= TOL,
        "median over 4 seeds: " + ", ".join(
            f"{k.replace('forget-bias', 'b_f=').replace('-scale', ' s=')}: {v:.0e}" for k, v in med.items()),
    )


#: one claim per row: id, the claim as published, equation, verdict its proof derives, root cause, proof, check
LSTM_CLAIMS = (
    Claim("lstm-eq6-product-rule", "∂c_t/∂c_{t-1} = ∂f/∂c·c + f + ∂i/∂c·c̃ + ∂c̃/∂c·i", "(5)→(6)",
          Verdict.HOLDS_UNDER_READING, None, "lstm-eq6-sum.md", _rule_check),
    Claim("lstm-eq6-A", "A_t = σ'(W_f·)·W_f·o_{t-1}⊗tanh'(c_{t-1})·c_{t-1}", "(6)", Verdict.HOLDS_UNDER_READING, None,
          "lstm-eq6-A.md", _term_check("A")),
    Claim("lstm-eq6-B", "B_t = f_t", "(6)", Verdict.HOLDS, None, "lstm-eq6-B.md", _term_check("B")),
    Claim("lstm-eq6-C", "C_t = σ'(W_i·)·W_i·o_{t-1}⊗tanh'(c_{t-1})·c̃_t", "(6)", Verdict.HOLDS_UNDER_READING, None,
          "lstm-eq6-C.md", _term_check("C")),
    Claim("lstm-eq6-D", "D_t = σ'(W_c·)·W_c·o_{t-1}⊗tanh'(c_{t-1})·i_t", "(6)", Verdict.FAILS, "sigma-for-tanh",
          "lstm-eq6-D.md", _term_check("D")),
    Claim("lstm-eq6-sum", "∂c_t/∂c_{t-1} = A_t + B_t + C_t + D_t", "(6)", Verdict.FAILS, "sigma-for-tanh",
          "lstm-eq6-sum.md", _sum_check),
    Claim("appendix-df", "∂f_t/∂c_{t-1} = σ'(W_f·)·W_f·∂h_t/∂c_{t-1}", "appendix", Verdict.TYPO, "h_t-for-h_t-1",
          "appendix-df.md",
          _appendix_check(("app_f_printed",), "app_f_intended",
                          "intended: ∂f_t/∂c_(t-1) = σ'(z_f)·U_f·∂h_(t-1)/∂c_(t-1) (the article's own next line)", True)),
    Claim("appendix-di", "∂i_t/∂c_{t-1} = σ'(W_c·)·W_c·∂H_t/∂c_{t-1}", "appendix", Verdict.TYPO,
          ("W_c-for-W_i", "h_t-for-h_t-1"), "appendix-di.md",
          _appendix_check(("app_i_printed_middle", "app_i_printed"), "app_i_intended",
                          "intended: ∂i_t/∂c_(t-1) = σ'(z_i)·U_i·∂h_(t-1)/∂c_(t-1) (W_i, as its first line and C_t "
                          "have it; h_(t-1))", True)),
    Claim("appendix-dc", "∂c̃_t/∂c_{t-1} = ∂/∂c_{t-1}[σ(W_c·)]", "appendix", Verdict.FAILS,
          ("sigma-for-tanh", "h_t-for-h_t-1"), "appendix-dc.md",
          _appendix_check(("app_c_printed_middle", "app_c_printed"), "app_c_corrected",
                          "∂c̃_t/∂c_(t-1) = tanh'(z_c)·U_c·∂h_(t-1)/∂c_(t-1) (c̃ = tanh(·), not σ(·))", False)),
    Claim("lstm-multistep", "∂c_k/∂c_1 = ∏_{t=2}^k (A_t + B_t + C_t + D_t)", "(4)+(6)", Verdict.FAILS,
          ("missing-output-gate-path", "sigma-for-tanh"), "lstm-multistep.md", _check_multistep),
    Claim("balancing", "A≈0.1, B≈0.7, C≈0.1, D≈0.1 ⇒ ∏ ≈ 1", "(6) example", Verdict.CONDITIONAL,
          "aligned-terms-assumed", "balancing.md", _check_balancing),
    Claim("forget-gate", "f_t → 1 keeps the product alive (f_t → 0 kills it)", "(6) discussion", Verdict.HOLDS,
          None, "forget-gate.md", _check_forget),
    Claim("lag-share", "eq. 3's sum does not vanish for the LSTM; it does for the RNN", "(3)", Verdict.CONDITIONAL,
          "open-forget-gate-assumed", "lag-share.md", _check_lag_share),
)
