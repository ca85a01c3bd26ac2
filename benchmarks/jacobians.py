"""Analytic Jacobians vs autodiff (jax.jacfwd, jax.jacrev): one step over n, and whole sequences over T.

One step (float32, m = 32, n = 32 ... 512), each timed under jit after compilation:
  rnn      eq. 2, ``rnn_step_jacobian``                   vs jacfwd / jacrev of ``rnn_step`` in c_{t-1}
  terms    eq. 6 corrected, ``article_terms`` (A+B+C+D)   vs jacfwd / jacrev of ``article_cell_map``
  joint    exact (h, c) Jacobian, ``lstm_step_jacobian``  vs jacfwd / jacrev of ``lstm_step`` in (h, c)
Each row also reports the largest relative difference between the analytic and the jacfwd matrix
(float32: ~1e-7 expected), so a fast but wrong formula would show.

Whole sequence (float32, n = 16, m = 16, T = 10^3 ... 10^5):
  steps     all T joint step Jacobians: ``lstm_step_jacobians`` (one scan + one vmap of the formula)
            vs ``vmap(jacfwd(lstm_step))`` along the same trajectory
  products  prefix products dS_k/dS_0: ``jacobian_products`` (associative_scan) vs a sequential scan
  flow      dS_T/dS_0: last product from the analytic steps vs ``jacfwd``/``jacrev`` of ``lstm_flow_map``
  norms     ``gradient_flow_norms`` (suffix products + spectral/Frobenius norms) from the step Jacobians

    python -m benchmarks.jacobians            # ~5 minutes on 2 CPU cores
    python -m benchmarks.jacobians --quick    # seconds
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

import lstm_jax as lj

from . import _harness as H

M = 32


def _step_problems(n, m):
    k = jax.random.split(jax.random.PRNGKey(0), 6)
    rp = lj.init_rnn(k[0], n, m)
    lp = lj.init_lstm(k[1], n, m)
    x = jax.random.normal(k[2], (m,))
    c = jax.random.normal(k[3], (n,))
    h = 0.5 * jnp.tanh(jax.random.normal(k[4], (n,)))
    o = jax.nn.sigmoid(jax.random.normal(k[5], (n,)))
    s = jnp.concatenate([h, c])

    def joint_map(q, s, x):
        new = lj.lstm_step(q, lj.LSTMState(s[:n], s[n:]), x)
        return jnp.concatenate([new.h, new.c])

    def terms_sum(q, o, c, x):
        t = lj.article_terms(q, o, c, x)
        return t.A + t.B + t.C + t.D

    return {
        "rnn": (lambda q, c, x: lj.rnn_step_jacobian(q, c, x, lj.TANH),
                lambda q, c, x: lj.rnn_step(q, c, x, lj.TANH), 1, (rp, c, x)),
        "terms": (terms_sum, lambda q, o, c, x: lj.article_cell_map(q, o, x)(c), 2, (lp, o, c, x)),
        "joint": (lambda q, s, x: lj.lstm_step_jacobian(q, lj.LSTMState(s[:n], s[n:]), x), joint_map, 1, (lp, s, x)),
    }


def run_steps(ns, repeats):
    rows = []
    for n in ns:
        for name, (analytic, fmap, argnum, args) in _step_problems(n, M).items():
            ana, J = H.time_jitted(analytic, *args, repeats=repeats)
            fwd, Jf = H.time_jitted(jax.jacfwd(fmap, argnums=argnum), *args, repeats=repeats)
            rev, _ = H.time_jitted(jax.jacrev(fmap, argnums=argnum), *args, repeats=repeats)
            row = {"kind": "step", "jacobian": name, "n": n, "m": M, "analytic": ana, "jacfwd": fwd, "jacrev": rev,
                   "speedup_vs_jacfwd": fwd["median_s"] / ana["median_s"],
                   "speedup_vs_jacrev": rev["median_s"] / ana["median_s"],
                   "max_rel_diff_vs_jacfwd": float(jnp.max(jnp.abs(J - Jf)) / jnp.max(jnp.abs(Jf)))}
            rows.append(row)
            print(f"step {name:5s} n={n:4d}: analytic {ana['median_s'] * 1e6:9.1f} us, jacfwd ×{row['speedup_vs_jacfwd']:.1f}, "
                  f"jacrev ×{row['speedup_vs_jacrev']:.1f} slower; rel diff {row['max_rel_diff_vs_jacfwd']:.1e}", flush=True)
    return rows


def _sequence_fns(n):
    def autodiff_steps(q, s0, xs):
        _, traj = lj.run_lstm(q, s0, xs)
        prev = jnp.concatenate([jnp.concatenate([s0.h, s0.c])[None], jnp.concatenate([traj.h, traj.c], 1)[:-1]])

        def step_map(s, x):
            new = lj.lstm_step(q, lj.LSTMState(s[:n], s[n:]), x)
            return jnp.concatenate([new.h, new.c])

        return jax.vmap(jax.jacfwd(step_map))(prev, xs)

    def sequential_products(jacs):
        def body(P, J):
            P = J @ P
            return P, P

        return jax.lax.scan(body, jnp.eye(jacs.shape[-1], dtype=jacs.dtype), jacs)[1]

    def flow_map(q, s0, xs):
        return lj.lstm_flow_map(q, xs)(jnp.concatenate([s0.h, s0.c]))

    def flow_jacobian(autodiff):
        return lambda q, s0, xs: autodiff(lambda s: flow_map(q, lj.LSTMState(s[:n], s[n:]), xs))(
            jnp.concatenate([s0.h, s0.c]))

    return {
        "steps": (lj.lstm_step_jacobians, autodiff_steps),
        "products": (lj.jacobian_products, sequential_products),
        "flow": (lambda q, s0, xs: lj.jacobian_products(lj.lstm_step_jacobians(q, s0, xs))[-1],
                 flow_jacobian(jax.jacfwd), flow_jacobian(jax.jacrev)),
    }


def run_sequences(Ts, n, repeats):
    rows = []
    m = n
    p = lj.init_lstm(jax.random.PRNGKey(1), n, m)
    s0 = lj.zero_state(n)
    for T in Ts:
        xs = jax.random.normal(jax.random.PRNGKey(2), (T, m))
        fns = _sequence_fns(n)
        steps, J = H.time_jitted(fns["steps"][0], p, s0, xs, repeats=repeats)
        auto, Ja = H.time_jitted(fns["steps"][1], p, s0, xs, repeats=repeats)
        prod, P = H.time_jitted(fns["products"][0], J, repeats=repeats)
        seq, Ps = H.time_jitted(fns["products"][1], J, repeats=repeats)
        flow, F = H.time_jitted(fns["flow"][0], p, s0, xs, repeats=repeats)
        fwd, Ff = H.time_jitted(fns["flow"][1], p, s0, xs, repeats=repeats)
        rev, _ = H.time_jitted(fns["flow"][2], p, s0, xs, repeats=repeats)
        norms, _ = H.time_jitted(lj.gradient_flow_norms, J, repeats=repeats)
        scale = lambda A: float(jnp.max(jnp.abs(A)))  # noqa: E731
        row = {"kind": "sequence", "T": T, "n": n, "m": m,
               "steps_analytic": steps, "steps_autodiff": auto,
               "steps_speedup": auto["median_s"] / steps["median_s"],
               "steps_max_rel_diff": scale(J - Ja) / scale(Ja),
               "products_associative_scan": prod, "products_sequential_scan": seq,
               "products_speedup": seq["median_s"] / prod["median_s"],
               "products_max_rel_diff": scale(P - Ps) / max(scale(Ps), 1e-30),
               "flow_analytic": flow, "flow_jacfwd": fwd, "flow_jacrev": rev,
               "flow_speedup_vs_jacfwd": fwd["median_s"] / flow["median_s"],
               "flow_speedup_vs_jacrev": rev["median_s"] / flow["median_s"],
               "flow_max_abs_diff": scale(F - Ff), "flow_norm": scale(Ff),
               "gradient_flow_norms": norms}
        rows.append(row)
        print(f"sequence T={T:>7}: steps {steps['median_s'] * 1e3:.1f} ms (autodiff ×{row['steps_speedup']:.1f}), "
              f"products {prod['median_s'] * 1e3:.1f} ms (sequential ×{row['products_speedup']:.2f}), "
              f"flow {flow['median_s'] * 1e3:.1f} ms (jacfwd ×{row['flow_speedup_vs_jacfwd']:.2f}, "
              f"jacrev ×{row['flow_speedup_vs_jacrev']:.2f}), norms {norms['median_s'] * 1e3:.1f} ms", flush=True)
    return rows


def tables(step_rows, seq_rows):
    t1 = H.markdown_table(
        ["Jacobian", "n", "analytic (µs)", "jacfwd ÷ analytic", "jacrev ÷ analytic", "max rel diff"],
        [[r["jacobian"], str(r["n"]), f"{r['analytic']['median_s'] * 1e6:.1f}", f"{r['speedup_vs_jacfwd']:.1f}",
          f"{r['speedup_vs_jacrev']:.1f}", f"{r['max_rel_diff_vs_jacfwd']:.1e}"] for r in step_rows])
    t2 = H.markdown_table(
        ["T (n)", "all step Jacobians (ms)", "vmap(jacfwd) ÷", "prefix products (ms)", "sequential scan ÷",
         "dS_T/dS_0 (ms)", "jacfwd ÷", "jacrev ÷", "flow norms (ms)"],
        [[f"{r['T']} ({r['n']})", f"{r['steps_analytic']['median_s'] * 1e3:.1f}", f"{r['steps_speedup']:.2f}",
          f"{r['products_associative_scan']['median_s'] * 1e3:.1f}", f"{r['products_speedup']:.2f}",
          f"{r['flow_analytic']['median_s'] * 1e3:.1f}", f"{r['flow_speedup_vs_jacfwd']:.2f}",
          f"{r['flow_speedup_vs_jacrev']:.2f}", f"{r['gradient_flow_norms']['median_s'] * 1e3:.1f}"] for r in seq_rows])
    return t1 + "\n\n" + t2


def main(argv=None):
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_output_args(ap)
    args = ap.parse_args(argv)
    if args.quick:
        ns, Ts, n_seq, repeats = (8,), (50,), 4, 1
    else:
        ns, Ts, n_seq, repeats = (32, 64, 128, 256, 512), (1_000, 10_000, 100_000), 16, 5
    meta = {"benchmark": "jacobians", "dtype": "float32", "device": H.device_info()}
    print(f"device: {meta['device']['platform']} ({meta['device']['device_kind']}), jax {jax.__version__}")
    step_rows = run_steps(ns, repeats)
    seq_rows = run_sequences(Ts, n_seq, max(1, repeats - 2))
    table = tables(step_rows, seq_rows)
    H.report(args, "jacobians", step_rows + seq_rows, meta, table,
             "ratios: autodiff time / analytic time (above 1: analytic faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
