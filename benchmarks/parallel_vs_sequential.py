"""Parallel-in-time LSTM evaluation (Newton/DEER dense, quasi-Newton diagonal) vs the sequential lax.scan.

Forward pass of one sequence (B = 1; batch with vmap), float32, over T and hidden size n. For each
(T, n): compile time, median/min run time, Newton iterations, whether it converged, and the ratio
sequential / parallel (> 1 means the parallel evaluator is faster). Dense mode is skipped where one
iteration would exceed a FLOP budget (T (2n)^3 > 3e10, the O(d^3) combine).

    python -m benchmarks.parallel_vs_sequential            # full grid (several minutes on 2 CPU cores)
    python -m benchmarks.parallel_vs_sequential --quick    # seconds; smoke test
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

import lstm_jax as lj

from . import _harness as H

DENSE_FLOP_BUDGET = 3e10


def run(Ts, ns, repeats, m=8):
    rows = []
    for T in Ts:
        for n in ns:
            key = jax.random.PRNGKey(0)
            p = lj.init_lstm(key, n, m)
            xs = jax.random.normal(jax.random.PRNGKey(1), (T, m), jnp.float32)
            s0 = lj.zero_state(n)
            seq, seq_h = H.time_jitted(lambda p, s, x: lj.run_lstm(p, s, x)[1].h, p, s0, xs, repeats=repeats)
            row = {"T": T, "n": n, "sequential": seq}
            for mode in (lj.DENSE, lj.DIAGONAL):
                if mode is lj.DENSE and T * (2 * n) ** 3 > DENSE_FLOP_BUDGET:
                    row[mode.name] = None
                    continue
                res, (traj, info) = H.time_jitted(lambda p, s, x, mode=mode, T=T: lj.parallel_run_lstm(p, s, x, mode=mode, max_iter=T),
                                    p, s0, xs, repeats=repeats)
                err = float(jnp.max(jnp.abs(traj.h - seq_h)))
                row[mode.name] = {**res, "iterations": int(info.iterations), "converged": bool(info.converged),
                                  "fell_back": bool(info.fell_back), "max_abs_err_vs_sequential": err,
                                  "speedup_vs_sequential": seq["median_s"] / res["median_s"]}
            rows.append(row)
            print(_fmt_row(row), flush=True)
    return rows


def _cell(r):
    if r is None:
        return "skipped (FLOP budget)"
    flag = "" if r["converged"] else " (fell back)"
    return f"{r['median_s'] * 1e3:.1f} ms, {r['iterations']} it, ×{r['speedup_vs_sequential']:.2f}{flag}"


def _fmt_row(row):
    return (f"T={row['T']:>7} n={row['n']:>3}  sequential {row['sequential']['median_s'] * 1e3:8.1f} ms | "
            f"dense {_cell(row['dense'])} | diagonal {_cell(row['diagonal'])}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_output_args(ap)
    args = ap.parse_args(argv)
    if args.quick:
        Ts, ns, repeats = (200,), (2,), 1
    else:
        Ts, ns, repeats = (1_000, 10_000, 100_000), (1, 4, 16, 64), 3
    meta = {"benchmark": "parallel_vs_sequential", "dtype": "float32", "batch": 1, "m": 8,
            "device": H.device_info(), "dense_flop_budget": DENSE_FLOP_BUDGET}
    print(f"device: {meta['device']['platform']} ({meta['device']['device_kind']}), jax {jax.__version__}")
    rows = run(Ts, ns, repeats)
    table = H.markdown_table(
        ["T", "n", "sequential (median)", "dense Newton", "diagonal quasi-Newton"],
        [[str(r["T"]), str(r["n"]), f"{r['sequential']['median_s'] * 1e3:.1f} ms", _cell(r["dense"]),
          _cell(r["diagonal"])] for r in rows],
    )
    H.report(args, "parallel_vs_sequential", rows, meta, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
