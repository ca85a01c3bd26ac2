"""LSTM forward and forward+gradient: lstm_jax vs Flax, Equinox and PyTorch in the same run, plus the GEMM limit.

Workload: a batch of B sequences of length T, hidden n, input m, float32; forward = all hidden states;
gradient = value_and_grad w.r.t. all parameters of a last-step loss mean(h_T^2). Each library computes the
same LSTM (same shapes; weights are not shared — speed does not depend on the values).

Peers, timed the same way (compile separately, 1 warm-up, median/min of repeats):
  lstm_jax   jax.vmap(run_lstm) over the batch, jit
  flax       flax.linen.RNN(OptimizedLSTMCell), jit
  equinox    equinox.nn.LSTMCell under jax.lax.scan, vmap over the batch, jit
  torch      torch.nn.LSTM (CPU here; cuDNN on a GPU), torch.no_grad for the forward
GEMM limit: the same FLOPs as one large GEMM (T*B, n+m) @ (n+m, 4n), through XLA, NumPy's BLAS and torch;
the table reports the LSTM forward's throughput as a fraction of the best GEMM.

    python benchmarks/lstm_speed.py            # latency and medium sizes (a few minutes on 2 CPU cores)
    python benchmarks/lstm_speed.py --quick    # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

import lstm_jax as lj  # noqa: E402

FULL_SIZES = (("latency", 1, 32, 32, 1000), ("medium", 32, 128, 64, 1000), ("medium", 32, 256, 64, 1000))
QUICK_SIZES = (("quick", 2, 8, 4, 50),)


def _jax_peers(B, n, m):
    """name -> (forward(params, xs) -> hs, params) for the JAX libraries; xs is (B, T, m)."""
    key = jax.random.PRNGKey(0)
    peers = {}
    p = lj.init_lstm(key, n, m)
    s0 = lj.zero_state(n)
    peers["lstm_jax"] = (lambda q, xs: jax.vmap(lambda x: lj.run_lstm(q, s0, x)[1].h)(xs), p)
    try:
        import flax.linen as nn

        rnn = nn.RNN(nn.OptimizedLSTMCell(features=n))
        fp = rnn.init(key, jnp.zeros((B, 2, m)))
        peers["flax"] = (lambda q, xs: rnn.apply(q, xs), fp)
    except ImportError:
        pass
    try:
        import equinox as eqx

        cell = eqx.nn.LSTMCell(m, n, key=key)
        params, static = eqx.partition(cell, eqx.is_array)

        def eqx_forward(q, xs):
            c = eqx.combine(q, static)

            def one(x):
                def step(carry, xt):
                    carry = c(xt, carry)
                    return carry, carry[0]

                return jax.lax.scan(step, (jnp.zeros(n), jnp.zeros(n)), x)[1]

            return jax.vmap(one)(xs)

        peers["equinox"] = (eqx_forward, params)
    except ImportError:
        pass
    return peers


def _time_torch(B, n, m, T, repeats):
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(m, n)
    xs = torch.randn(T, B, m)
    out = {}

    def fwd():
        with torch.no_grad():
            return lstm(xs)[0]

    def grad():
        lstm.zero_grad(set_to_none=True)
        h = lstm(xs)[0]
        loss = (h[-1] ** 2).mean()
        loss.backward()
        return loss

    for name, fn in (("forward", fwd), ("grad", grad)):
        out[name] = {**H.time_call(fn, repeats), "compile_s": 0.0}
    out["threads"] = torch.get_num_threads()
    out["version"] = torch.__version__
    return out


def _gemm(B, n, m, T, repeats):
    rows, k, cols = T * B, n + m, 4 * n
    flops = 2.0 * rows * k * cols
    a = np.random.default_rng(0).standard_normal((rows, k), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((k, cols), dtype=np.float32)
    res = {"flops": flops}
    xla = H.time_jitted(lambda x, y: x @ y, jnp.asarray(a), jnp.asarray(b), repeats=repeats)
    res["xla"] = xla["median_s"]
    res["numpy"] = H.time_call(lambda: a @ b, repeats)["median_s"]
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        res["torch"] = H.time_call(lambda: ta @ tb, repeats)["median_s"]
    except ImportError:
        pass
    res["best_gflops"] = flops / min(v for k_, v in res.items() if k_ in ("xla", "numpy", "torch")) / 1e9
    return res


def run(sizes, repeats):
    rows = []
    for label, B, n, m, T in sizes:
        xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, m), jnp.float32)
        row = {"size": label, "B": B, "n": n, "m": m, "T": T, "peers": {}}
        for name, (fwd, params) in _jax_peers(B, n, m).items():
            f = H.time_jitted(fwd, params, xs, repeats=repeats)
            loss = lambda q, x, fwd=fwd: jnp.mean(fwd(q, x)[:, -1] ** 2)  # noqa: E731
            g = H.time_jitted(jax.value_and_grad(loss), params, xs, repeats=repeats)
            row["peers"][name] = {"forward": {k: v for k, v in f.items() if k != "output"},
                                  "grad": {k: v for k, v in g.items() if k != "output"}}
        t = _time_torch(B, n, m, T, repeats)
        if t is not None:
            row["peers"]["torch"] = t
        row["gemm"] = _gemm(B, n, m, T, repeats)
        # LSTM forward FLOPs: the gate GEMMs dominate, 2 * T * B * (n + m) * 4n
        lstm_fwd = row["peers"]["lstm_jax"]["forward"]["median_s"]
        row["lstm_jax_forward_gflops"] = row["gemm"]["flops"] / lstm_fwd / 1e9
        row["lstm_jax_fraction_of_best_gemm"] = row["lstm_jax_forward_gflops"] / row["gemm"]["best_gflops"]
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _ratio(row, peer, what):
    p = row["peers"].get(peer)
    if not p:
        return "—"
    return f"{row['peers']['lstm_jax'][what]['median_s'] / p[what]['median_s']:.2f}"


def _line(row):
    ours = row["peers"]["lstm_jax"]
    return (f"{row['size']:8s} B={row['B']} n={row['n']} m={row['m']} T={row['T']}: lstm_jax forward "
            f"{ours['forward']['median_s'] * 1e3:.1f} ms, grad {ours['grad']['median_s'] * 1e3:.1f} ms; "
            + ", ".join(f"{k} {v['forward']['median_s'] * 1e3:.1f}/{v['grad']['median_s'] * 1e3:.1f} ms"
                        for k, v in row["peers"].items() if k != "lstm_jax")
            + f"; {row['lstm_jax_fraction_of_best_gemm']:.0%} of best GEMM")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    sizes, repeats = (QUICK_SIZES, 1) if args.quick else (FULL_SIZES, 5)
    meta = {"benchmark": "lstm_speed", "dtype": "float32", "device": H.device_info()}
    print(f"device: {meta['device']['platform']} ({meta['device']['device_kind']}), jax {jax.__version__}")
    rows = run(sizes, repeats)
    table = H.markdown_table(
        ["size (B, n, m, T)", "lstm_jax fwd / grad (ms)", "÷ flax fwd / grad", "÷ equinox fwd / grad",
         "÷ torch fwd / grad", "fwd GFLOP/s (best GEMM)"],
        [[f"{r['size']} ({r['B']}, {r['n']}, {r['m']}, {r['T']})",
          f"{r['peers']['lstm_jax']['forward']['median_s'] * 1e3:.1f} / {r['peers']['lstm_jax']['grad']['median_s'] * 1e3:.1f}",
          f"{_ratio(r, 'flax', 'forward')} / {_ratio(r, 'flax', 'grad')}",
          f"{_ratio(r, 'equinox', 'forward')} / {_ratio(r, 'equinox', 'grad')}",
          f"{_ratio(r, 'torch', 'forward')} / {_ratio(r, 'torch', 'grad')}",
          f"{r['lstm_jax_forward_gflops']:.1f} ({r['gemm']['best_gflops']:.0f})"] for r in rows],
    )
    print("\n" + table + "\n\nratios: lstm_jax time / peer time (below 1: lstm_jax faster)")
    if not args.no_write:
        print(f"wrote {H.write_results('lstm_speed', rows, meta, table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
