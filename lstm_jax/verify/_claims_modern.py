r"""The article's lens on the recurrences trained since 2023: minGRU, minLSTM, RG-LRU, mLSTM and sLSTM.

Not claims of the article: they are this package's claims about what eq. (6) becomes when the gates read the
input only, checked the same way (float64, autodiff of the runner, the rule in the proof document):

* ``modern-diagonal``: for minGRU, minLSTM, RG-LRU and mLSTM the step Jacobian is exactly the diagonal gate
  (:math:`1 - z_t`, :math:`f'_t`, :math:`a_t`, and the mLSTM's head forget gate :math:`f_t` on every entry of
  the head's memory :math:`(C_t, n_t)`): :math:`A_t = C_t = D_t = 0`;
* ``modern-no-mixing``: their ``k``-step products are the products of those diagonals (units never mix), and
  their Lyapunov exponents are the time averages of the log gates, with no QR;
* ``slstm-terms``: the sLSTM's exact joint Jacobian (the cell protocol's closed form) equals autodiff; its
  :math:`\partial c_t/\partial c_{t-1} = \operatorname{diag}(f'_t)` (:math:`B_t`), and the terms through
  :math:`h_{t-1}` are exactly zero at xLSTM's initialisation (zero recurrent heads) and present otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import lstm_jax as lj

from ._types import F64, TOL, Claim, Context, Finding, Verdict, bound_fmt, rel_err

N, T, DRAWS = 8, 24, 4
_INIT = {
    "mingru": lambda k: lj.init_mingru(k, N, 3, scale=2.0, dtype=F64),
    "minlstm": lambda k: lj.init_minlstm(k, N, 3, scale=2.0, dtype=F64),
    "rglru": lambda k: lj.init_rglru(k, N, scale=2.0, dtype=F64),
    "mlstm": lambda k: lj.init_mlstm(k, N, 3, heads=2, scale=2.0, dtype=F64),
}
_GATE = {"mingru": "1 - z_t", "minlstm": "f_t / (f_t + i_t)", "rglru": "a_t", "mlstm": "f_t per head"}


def _perturbed(key, p):
    """Biases (and Lambda) drawn at random, so that the check does not rest on zero biases."""
    leaves, tree = jax.tree_util.tree_flatten(p)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tree, [v if v.ndim == 2 else jax.random.normal(k, v.shape, F64)
                                               for v, k in zip(leaves, keys)])


def _gate(kind, p, xs):
    """The cell's gate along ``xs`` from its defining equation, written here from the papers (not the protocol)."""
    if kind == "mingru":
        return jax.nn.sigmoid(-(xs @ p.W_z.T + p.b_z))
    if kind == "minlstm":
        f, i = jax.nn.sigmoid(xs @ p.W_f.T + p.b_f), jax.nn.sigmoid(xs @ p.W_i.T + p.b_i)
        return f / (f + i)
    if kind == "mlstm":  # one forget gate per head, on each of the head's d (d + 1) memory entries
        d = p.W_q.shape[0] // p.w_i.shape[0]
        return jnp.repeat(jax.nn.sigmoid(xs @ p.w_f.T + p.b_f), d * (d + 1), axis=-1)
    return jnp.exp(-8.0 * jax.nn.sigmoid(xs @ p.W_a.T + p.b_a) * jax.nn.softplus(p.Lambda))


def _diagonal_measures(kind):
    """One draw's measures for ``kind`` (traced once, vmapped over the draws)."""

    def one(key):
        kp, kx, kh = jax.random.split(key, 3)
        p = _perturbed(kp, _INIT[kind](kp))
        _, d, m = lj.cell_of(kind).check(p)
        xs = jax.random.normal(kx, (T, m), F64)
        h0 = jax.random.normal(kh, (d,), F64)
        step = lambda h, x: lj.run_cell(kind, p, h, x[None])[0]  # noqa: E731  one step of the runner
        hs = lj.run_cell(kind, p, h0, xs)[1]
        prev = jnp.concatenate([h0[None], hs[:-1]])
        J = jax.vmap(jax.jacfwd(step))(prev, xs)
        whole = jax.jacrev(lambda h: lj.run_cell(kind, p, h, xs)[0])(h0)
        a = _gate(kind, p, xs)
        diag = jnp.diagonal(J, axis1=1, axis2=2)
        ly = lj.lyapunov(lj.step_jacobians(kind, p, xs, state0=h0))
        return {
            "offdiag_max": jnp.max(jnp.abs(J - jax.vmap(jnp.diag)(diag))),
            "diag_rel_err": jnp.max(jnp.abs(diag - a)) / jnp.max(jnp.abs(a)),
            "product_rel_err": rel_err(whole, jnp.diag(jnp.prod(a, axis=0))),
            "product_offdiag_max": jnp.max(jnp.abs(whole - jnp.diag(jnp.diagonal(whole)))),
            "lyapunov_rel_err": jnp.max(jnp.abs(ly.exponents - jnp.sort(jnp.mean(jnp.log(a), 0))[::-1]))
                                / jnp.max(jnp.abs(ly.exponents)),
            "gate_min": jnp.min(a), "gate_max": jnp.max(a),
        }

    return jax.jit(jax.vmap(one))


def _diagonal_draws(ctx: Context):
    def compute(key):
        out = {}
        for i, kind in enumerate(_INIT):
            keys = jax.random.split(jax.random.fold_in(key, i), DRAWS)
            r = _diagonal_measures(kind)(keys)
            out[kind] = [{k: float(v[d]) for k, v in r.items()} for d in range(DRAWS)]
        return out

    return ctx.shared("modern-diagonal-draws", compute)


def _worst(d, field):
    return max(r[field] for rows in d.values() for r in rows)


def _check_diagonal(ctx: Context) -> Finding:
    d = _diagonal_draws(ctx)
    off, err = _worst(d, "offdiag_max"), _worst(d, "diag_rel_err")
    ok = off == 0.0 and err <= TOL
    measured = {"draws": d, "offdiag_max": off, "diag_rel_err": err, "shape": {"n": N, "T": T, "draws": DRAWS}}
    figure = (f"{', '.join(_INIT)}: off-diagonal of jacfwd(J_t) max {off:.1g} (exactly 0 required), diagonal vs "
              f"the gate max rel. error {bound_fmt(err)} over {DRAWS} draws each")
    statement = ("∂s_t/∂s_{t-1} = diag(" + "), diag(".join(_GATE.values()) + ") for minGRU, minLSTM, RG-LRU, mLSTM "
                 "(s = h; the mLSTM's s = its memory C_t, n_t): the article's A_t = C_t = D_t = 0 and B_t is the whole "
                 "Jacobian")
    return Finding(Verdict.HOLDS if ok else Verdict.FAILS, measured, statement, ok, figure)


def _check_no_mixing(ctx: Context) -> Finding:
    d = _diagonal_draws(ctx)
    off, err, ly = _worst(d, "product_offdiag_max"), _worst(d, "product_rel_err"), _worst(d, "lyapunov_rel_err")
    ok = off == 0.0 and err <= TOL and ly <= TOL
    measured = {"product_offdiag_max": off, "product_rel_err": err, "lyapunov_rel_err": ly,
                "shape": {"n": N, "T": T, "draws": DRAWS}}
    figure = (f"dh_T/dh_0 (jacrev of the scan, T={T}) vs ∏ diag(gate): off-diagonal max {off:.1g}, rel. error "
              f"{bound_fmt(err)}; QR exponents vs mean log gate: rel. error {bound_fmt(ly)}")
    statement = ("∂s_T/∂s_0 = ∏_t diag(gate_t): no unit ever feeds another, so each unit's gradient decays at "
                 "its own rate, the time average of log gate (its Lyapunov exponent, no QR needed)")
    return Finding(Verdict.HOLDS if ok else Verdict.FAILS, measured, statement, ok, figure)


def _slstm_measures(rec_scale: float):
    """One draw's sLSTM measures (traced once, vmapped over the draws)."""
    cell = lj.cell_of("slstm")

    def one(key):
        kp, kr, kx = jax.random.split(key, 3)
        p = lj.init_slstm(kp, N, 3, heads=2, dtype=F64)
        if rec_scale:
            ks = jax.random.split(kr, 4)
            p = p._replace(**{f"R_{g}": rec_scale * jax.random.normal(k, p.R_i.shape, F64) / jnp.sqrt(N // 2)
                              for g, k in zip("ifzo", ks)})
        xs = jax.random.normal(kx, (T, 3), F64)
        s0 = cell.zero(N, F64)
        traj = lj.run_cell("slstm", p, s0, xs)[1]
        J = lj.step_jacobians("slstm", p, xs)
        flat_prev = jnp.concatenate([cell.flat(s0)[None], cell.flat(traj)[:-1]])
        step = lambda s, x: cell.flat(lj.run_cell("slstm", p, cell.from_blocks(tuple(jnp.split(s, 4))), x[None])[0])  # noqa: E731
        ref = jax.vmap(jax.jacfwd(step))(flat_prev, xs)
        Jcc = J[:, N:2 * N, N:2 * N]
        return {"err": jnp.max(rel_err(J, ref)),
                "offdiag": jnp.max(jnp.abs(Jcc - jax.vmap(jnp.diag)(jnp.diagonal(Jcc, axis1=1, axis2=2)))),
                "dc_dh": jnp.median(jnp.linalg.norm(J[1:, N:2 * N, :N], ord=2, axis=(1, 2))),
                "dc_dc": jnp.median(jnp.linalg.norm(Jcc[1:], ord=2, axis=(1, 2)))}

    return jax.jit(jax.vmap(one))


def _check_slstm(ctx: Context) -> Finding:
    def compute(key):
        rows = {}
        for label, rec_scale in (("xlstm init (R = 0)", 0.0), ("random R, scale 1", 1.0)):
            r = _slstm_measures(rec_scale)(jax.random.split(key, DRAWS))
            rows[label] = {"max_rel_err_vs_jacfwd": float(jnp.max(r["err"])), "dc_dc_offdiag_max": float(jnp.max(r["offdiag"])),
                           "median_norm_dc_dh": float(jnp.median(r["dc_dh"])),
                           "median_norm_dc_dc": float(jnp.median(r["dc_dc"]))}
        return rows

    rows = ctx.shared("slstm-draws", compute)
    init, rand = rows["xlstm init (R = 0)"], rows["random R, scale 1"]
    err = max(r["max_rel_err_vs_jacfwd"] for r in rows.values())
    ok = (err <= TOL and init["median_norm_dc_dh"] == 0.0 and rand["median_norm_dc_dh"] > 0
          and max(r["dc_dc_offdiag_max"] for r in rows.values()) == 0.0)
    figure = (f"closed form vs jacfwd max rel. error {bound_fmt(err)}; median ‖∂c_t/∂h_(t-1)‖: {init['median_norm_dc_dh']:.2g} "
              f"at xLSTM's init, {rand['median_norm_dc_dh']:.2g} with random heads; ‖∂c_t/∂c_(t-1)‖ = ‖diag(f')‖ "
              f"{init['median_norm_dc_dc']:.2g} / {rand['median_norm_dc_dc']:.2g}")
    statement = ("sLSTM: ∂c_t/∂c_{t-1} = diag(f'_t) (B_t); the terms through h_{t-1} (A, C, D's analogues, via the "
                 "block-diagonal R) are exactly 0 at xLSTM's initialisation (R = 0) and non-zero once R is")
    return Finding(Verdict.HOLDS if ok else Verdict.FAILS, {"settings": rows, "n": N, "T": T, "draws": DRAWS},
                   statement, err <= TOL, figure)


MODERN_CLAIMS = (
    Claim("modern-diagonal", "gates from x_t only ⇒ ∂s_t/∂s_{t-1} = diag(gate): A = C = D = 0 (minGRU, minLSTM, RG-LRU, "
          "mLSTM)",
          "(6) lens", Verdict.HOLDS, None, "modern-diagonal.md", _check_diagonal),
    Claim("modern-no-mixing", "their k-step products never mix units; λ = mean log gate", "(4)+(6) lens",
          Verdict.HOLDS, None, "modern-diagonal.md", _check_no_mixing),
    Claim("slstm-terms", "sLSTM keeps B_t = diag(f'_t) and gated terms through h_{t-1}", "(6) lens", Verdict.HOLDS,
          None, "slstm.md", _check_slstm),
)
