"""The diagonal linear cells (minGRU, minLSTM, RG-LRU, mLSTM) in parallel over time vs the sequential scan.

Both evaluate the same recurrence s_t = a_t * s_(t-1) + b_t: ``lstm_jax.parallel_run_linear`` (one
``jax.lax.associative_scan``, O(log T) depth) and ``lstm_jax.run_cell`` (``lax.scan``, T dependent steps).  For each
cell and T: the forward pass and ``value_and_grad`` of a scalar loss (sum of sin of the outputs) over ``B``
sequences (vmapped), float32, timed **interleaved** (sequential, parallel, sequential, ...) for ``rounds`` rounds;
the ratio sequential / parallel per round (> 1: the parallel form is faster) with its min–max spread, and the
largest difference between the two forms' outputs.

    python -m benchmarks.linear_parallel            # T = 10^3, 10^4, 10^5 (a few minutes on 2 CPU cores)
    python -m benchmarks.linear_parallel --quick    # seconds; smoke test
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

import lstm_jax as lj

from . import _harness as H

#: cell -> parameters at width n from a key (the mLSTM: heads of size 4, so its memory is n (4 + 1) entries)
CELLS = {
    "mingru": lambda k, n, m: lj.init_mingru(k, n, m),
    "minlstm": lambda k, n, m: lj.init_minlstm(k, n, m),
    "rglru": lambda k, n, m: lj.init_rglru(k, n),
    "mlstm": lambda k, n, m: lj.init_mlstm(k, n, m, heads=n // 4),
}


def _forms(kind, p, s0, xs):
    """``{"sequential": f, "parallel": f}`` of ``(p, xs (B, T, m)) -> outputs (B, T, n)``."""
    cell = lj.cell_of(kind)
    w = lambda p: cell.weights(cell.check(p)[0])  # noqa: E731

    def seq(p, xs):
        return jax.vmap(lambda x: cell.outputs(w(p), lj.run_cell(kind, p, s0, x)[1], x))(xs)

    def par(p, xs):
        return jax.vmap(lambda x: cell.outputs(w(p), lj.parallel_run_linear(kind, p, s0, x), x))(xs)

    return {"sequential": seq, "parallel": par}


def run(Ts, n, B, rounds):
    rows = []
    for kind, init in CELLS.items():
        for T in Ts:
            p = init(jax.random.PRNGKey(0), n, n)
            cell = lj.cell_of(kind)
            s0 = cell.zero(cell.check(p)[1], jnp.float32)
            xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, n), jnp.float32)
            forms = _forms(kind, p, s0, xs)
            fwd = {k: jax.jit(f) for k, f in forms.items()}
            vg = {k: jax.jit(jax.value_and_grad(lambda p, x, f=f: jnp.sum(jnp.sin(f(p, x))))) for k, f in forms.items()}
            outs = {k: f(p, xs) for k, f in fwd.items()}
            err = float(jnp.max(jnp.abs(outs["parallel"] - outs["sequential"])))
            scale = float(jnp.max(jnp.abs(outs["sequential"])))
            row = {"cell": kind, "T": T, "n": n, "B": B, "max_abs_diff": err, "max_abs_output": scale}
            for what, fns in (("forward", fwd), ("value_and_grad", vg)):
                times = H.interleaved({k: (lambda f=f: jax.block_until_ready(f(p, xs))) for k, f in fns.items()},
                                      rounds=rounds)
                row[what] = {"sequential": H.spread(times["sequential"]), "parallel": H.spread(times["parallel"]),
                             "speedup": H.ratio_spread(times["sequential"], times["parallel"])}
            rows.append(row)
            print(_fmt_row(row), flush=True)
    return rows


def _ms(sp):
    return f"{sp['median'] * 1e3:.1f} ms"


def _fmt_row(r):
    return (f"{r['cell']:>8} T={r['T']:>7}: forward seq {_ms(r['forward']['sequential'])}, par "
            f"{_ms(r['forward']['parallel'])}, ×{H.fmt_spread(r['forward']['speedup'])}; value_and_grad seq "
            f"{_ms(r['value_and_grad']['sequential'])}, par {_ms(r['value_and_grad']['parallel'])}, "
            f"×{H.fmt_spread(r['value_and_grad']['speedup'])}; max |diff| {r['max_abs_diff']:.1e}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_output_args(ap)
    args = ap.parse_args(argv)
    if args.quick:
        Ts, n, B, rounds = (200,), 8, 2, 2
    else:
        Ts, n, B, rounds = (1_000, 10_000, 100_000), 16, 8, 5
    meta = {"benchmark": "linear_parallel", "dtype": "float32", "batch": B, "n": n, "m": n, "rounds": rounds,
            "loss": "sum(sin(outputs))", "device": H.device_info()}
    print(f"device: {H.device_words(meta['device'])}, jax {jax.__version__}")
    rows = run(Ts, n, B, rounds)
    table = H.markdown_table(
        ["cell", "T", "forward: sequential", "parallel", "speed-up (min–max)", "value_and_grad: sequential",
         "parallel", "speed-up (min–max)", "max abs. difference, parallel vs sequential"],
        [[r["cell"], f"{r['T']:,}", _ms(r["forward"]["sequential"]), _ms(r["forward"]["parallel"]),
          "×" + H.fmt_spread(r["forward"]["speedup"]), _ms(r["value_and_grad"]["sequential"]),
          _ms(r["value_and_grad"]["parallel"]), "×" + H.fmt_spread(r["value_and_grad"]["speedup"]),
          f"{r['max_abs_diff']:.1e} (outputs up to {r['max_abs_output']:.2g})"] for r in rows],
    )
    H.report(args, "linear_parallel", rows, meta, table,
             footer=f"B = {B} sequences (vmapped), n = m = {n}, float32; {rounds} interleaved rounds; speed-up = "
                    "sequential / parallel per round, median (min–max); > 1: the parallel form is faster.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
