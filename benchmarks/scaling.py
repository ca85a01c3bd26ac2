"""Scaling of lstm_jax's LSTM and RNN forward and gradient with sequence length T and hidden size n.

float32, B = 8, m = 64, batch by vmap, loss mean(h_T^2); gradient = value_and_grad w.r.t. all parameters.
  vs T: n = 64, T = 10^3 ... 10^5 (the sequential scan should be linear: log-log slope 1)
  vs n: T = 1000, n = 16 ... 512 (per-step GEMMs: slope -> 2 once the GEMM dominates the loop overhead)
  unroll: LSTM at B = 1 and B = 32 (n = 128), T = 1000, lax.scan unroll = 1, 2, 4, 8, 16 (the while loop's
          per-iteration overhead vs code size; on GPU this overhead is larger)
Reports times and the fitted log-log slopes. (T = 10^6 with checkpointing: benchmarks/memory.py.)

    python -m benchmarks.scaling            # ~5 minutes on 2 CPU cores
    python -m benchmarks.scaling --quick    # seconds
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

import lstm_jax as lj

from . import _harness as H

B, M = 8, 64


def _forward(model, n, unroll=1):
    if model == "lstm":
        p, s0 = lj.init_lstm(jax.random.PRNGKey(0), n, M), lj.zero_state(n)
        return p, lambda q, xs: jax.vmap(lambda x: lj.run_lstm(q, s0, x, unroll=unroll)[1].h)(xs)
    p, c0 = lj.init_rnn(jax.random.PRNGKey(0), n, M, bias=True), jnp.zeros(n)
    return p, lambda q, xs: jax.vmap(lambda x: lj.run_rnn(q, c0, x, lj.TANH)[1])(xs)


def measure(model, n, T, repeats, batch=B, unroll=1):
    p, fwd = _forward(model, n, unroll)
    xs = jax.random.normal(jax.random.PRNGKey(1), (batch, T, M), jnp.float32)
    f, _ = H.time_jitted(fwd, p, xs, repeats=repeats)
    g, _ = H.time_jitted(jax.value_and_grad(lambda q, x: jnp.mean(fwd(q, x)[:, -1] ** 2)), p, xs, repeats=repeats)
    return {"model": model, "n": n, "T": T, "B": batch, "m": M, "unroll": unroll,
            "forward": f, "grad": g}


def main(argv=None):
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_output_args(ap)
    args = ap.parse_args(argv)
    if args.quick:
        Ts, ns, n_T, T_n, repeats = (100, 400), (8, 16), 8, 100, 1
    else:
        Ts, ns, n_T, T_n, repeats = (1_000, 3_000, 10_000, 30_000, 100_000), (16, 32, 64, 128, 256, 512), 64, 1000, 3
    meta = {"benchmark": "scaling", "dtype": "float32", "B": B, "m": M, "device": H.device_info()}
    print(f"device: {meta['device']['platform']} ({meta['device']['device_kind']}), jax {jax.__version__}")
    rows, slopes, lines = [], {}, []
    for model in ("lstm", "rnn"):
        for sweep, pairs in (("T", [(n_T, T) for T in Ts]), ("n", [(n, T_n) for n in ns])):
            part = []
            for n, T in pairs:
                r = {**measure(model, n, T, repeats), "sweep": sweep}
                part.append(r)
                print(f"{model} n={n:4d} T={T:7d}: forward {r['forward']['median_s'] * 1e3:9.2f} ms, "
                      f"grad {r['grad']['median_s'] * 1e3:9.2f} ms", flush=True)
            rows += part
            for what in ("forward", "grad"):
                slopes[f"{model} {what} vs {sweep}"] = H.loglog_slope([r[sweep] for r in part],
                                                                       [r[what]["median_s"] for r in part])
            lines.append([model, sweep, ", ".join(f"{r[sweep]}" for r in part),
                          ", ".join(f"{r['forward']['median_s'] * 1e3:.1f}" for r in part),
                          ", ".join(f"{r['grad']['median_s'] * 1e3:.1f}" for r in part),
                          f"{slopes[f'{model} forward vs {sweep}']:.2f} / {slopes[f'{model} grad vs {sweep}']:.2f}"])
    unrolls, u_lines = ((1, 4) if args.quick else (1, 2, 4, 8, 16)), []
    for batch in (1, 8 if args.quick else 32):
        part = [{**measure("lstm", n_T if args.quick else 128, T_n if args.quick else 1000, repeats, batch, u),
                 "sweep": "unroll"} for u in unrolls]
        rows += part
        base = part[0]
        u_lines.append([f"lstm B={batch} n={base['n']} T={base['T']}", "unroll", ", ".join(str(u) for u in unrolls),
                        ", ".join(f"{r['forward']['median_s'] * 1e3:.1f}" for r in part),
                        ", ".join(f"{r['grad']['median_s'] * 1e3:.1f}" for r in part), "—"])
        print(f"{u_lines[-1][0]} unroll {u_lines[-1][2]}: forward {u_lines[-1][3]} ms, grad {u_lines[-1][4]} ms", flush=True)
    meta["loglog_slopes"] = slopes
    md = H.markdown_table(["model", "varied", "values", "forward (ms)", "grad (ms)", "log-log slope fwd / grad"],
                          lines + u_lines)
    H.report(args, "scaling", rows, meta, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
