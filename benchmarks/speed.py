"""LSTM and RNN forward and value_and_grad: lstm_jax vs Flax, Equinox and PyTorch in the same run, plus the GEMM limit.

Workload: a batch of B sequences of length T, hidden n, input m, float32; forward = all hidden states;
gradient = value_and_grad w.r.t. all parameters of a last-step loss mean(h_T^2). Every library computes
the same recurrence with the same shapes (weights are not shared; speed does not depend on their values).

Peers are timed interleaved in the same process (A B C A B C ..., ``_harness.interleaved``), after a
compile + warm-up call each; each ratio is reported as the median of the per-round ratios with its min–max.
  LSTM  lstm_jax   jax.vmap(run_lstm) over batch-major (B, T, m) inputs, jit (exact; forward- and reverse-differentiable)
        fast       lstm_jax.run_lstm_batch on time-major (T, B, m) inputs (custom VJP, reverse mode only)
        flax       flax.linen.RNN(OptimizedLSTMCell), jit
        equinox    equinox.nn.LSTMCell under jax.lax.scan, vmap over the batch, jit
        torch      torch.nn.LSTM on time-major (T, B, m) inputs (MKL/oneDNN on CPU, cuDNN on GPU)
        jax_cudnn  jax.experimental.rnn (cuDNN through JAX), GPU only
  RNN   lstm_jax   jax.vmap(run_rnn) with tanh and a bias
        fast       lstm_jax.run_rnn_batch (custom VJP)
        flax       flax.linen.RNN(SimpleCell) (tanh, bias)
        torch      torch.nn.RNN(nonlinearity="tanh")
        (Equinox has no plain RNN cell.)
In-loop attribution (LSTM rows, interleaved with the peers): the recurrent GEMM (B, n) @ (n, 4n) + tanh
inside ONE lax.scan of T steps and the gate elementwise math inside one scan (``_inloop.py``); and the GEMM
limit: the same FLOPs as one GEMM (T*B, n+m) @ (n+m, 4n) through XLA, NumPy's BLAS and torch (the LSTM
forward's throughput is reported as a fraction of the best).

Sizes: latency (B=1, n=32, m=32, T=1000), medium (B=32, n=128 and 256, m=64, T=1000), long (B=8, n=64,
m=64, T=10^4, 10^5, 10^6). At T=10^6 the gradient is run only with lstm_jax's segment checkpointing
(remat=1000, O(sqrt T) memory): without checkpointing XLA plans tens of GiB of temporaries (the planned
size of each JAX peer's gradient is still compiled and reported), and torch keeps every step's activations.

    python -m benchmarks.speed              # all sizes (~15 minutes on 2 CPU cores)
    python -m benchmarks.speed --quick      # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import lstm_jax as lj

from . import _harness as H
from . import _inloop as L

# (label, B, n, m, T)
LATENCY_MEDIUM = (("latency", 1, 32, 32, 1000), ("medium", 32, 128, 64, 1000), ("medium", 32, 256, 64, 1000))
LONG = tuple(("long", 8, 64, 64, T) for T in (10_000, 100_000, 1_000_000))
QUICK = (("quick", 2, 8, 4, 50), ("quick-long", 2, 8, 4, 2000))
GRAD_ONLY_WITH_REMAT_FROM_T = 1_000_000  # peers without checkpointing are compiled (planned memory) but not run
QUICK_GRAD_ONLY_WITH_REMAT_FROM_T = 2000


def _lstm_peers(B, n, m, remat):
    """name -> (forward(params, xs) -> hs, params); xs is batch-major (B, T, m)."""
    key = jax.random.PRNGKey(0)
    p = lj.init_lstm(key, n, m)
    s0 = lj.zero_state(n)
    S0 = lj.LSTMState(jnp.zeros((B, n)), jnp.zeros((B, n)))
    peers = {"lstm_jax": (lambda q, xs: jax.vmap(lambda x: lj.run_lstm(q, s0, x, remat=remat)[1].h)(xs), p),
             "fast": (lambda q, xs: lj.run_lstm_batch(q, S0, xs, time_major=False)[1], p)}
    try:
        import flax.linen as nn

        rnn = nn.RNN(nn.OptimizedLSTMCell(features=n))
        peers["flax"] = (rnn.apply, rnn.init(key, jnp.zeros((B, 2, m))))
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
    if jax.devices()[0].platform == "gpu":
        peers.update(_jax_cudnn_peer(B, n, m))
    return peers


def _jax_cudnn_peer(B, n, m):
    """jax.experimental.rnn (cuDNN LSTM through JAX); only on GPU and only if it imports."""
    try:
        from jax.experimental import rnn as jrnn
    except ImportError:
        return {}
    weights = jrnn.init_lstm_weight(jax.random.PRNGKey(0), m, n, 1, False)

    def forward(w, xs):
        h0 = jnp.zeros((1, xs.shape[0], n), xs.dtype)
        lengths = jnp.full((xs.shape[0],), xs.shape[1], jnp.int32)
        return jrnn.lstm(xs, h0, h0, w, lengths, input_size=m, hidden_size=n, num_layers=1, dropout=0.0,
                         bidirectional=False)[0]

    return {"jax_cudnn": (forward, weights)}


def _rnn_peers(B, n, m, remat):
    key = jax.random.PRNGKey(0)
    p = lj.init_rnn(key, n, m, bias=True)
    c0 = jnp.zeros(n)
    C0 = jnp.zeros((B, n))
    peers = {"lstm_jax": (lambda q, xs: jax.vmap(lambda x: lj.run_rnn(q, c0, x, lj.TANH, remat=remat)[1])(xs), p),
             "fast": (lambda q, xs: lj.run_rnn_batch(q, C0, xs, lj.TANH, time_major=False)[1], p)}
    try:
        import flax.linen as nn

        rnn = nn.RNN(nn.SimpleCell(features=n))
        peers["flax"] = (rnn.apply, rnn.init(key, jnp.zeros((B, 2, m))))
    except ImportError:
        pass
    return peers


def _torch_module(model, n, m):
    import torch

    torch.manual_seed(0)
    return torch.nn.LSTM(m, n) if model == "lstm" else torch.nn.RNN(m, n, nonlinearity="tanh")


def _torch_calls(model, B, n, m, T, run_grad):
    """``(calls, info)``: blocking torch forward / gradient calls (:func:`_harness.torch_rnn_calls`) keyed
    ``("torch", "forward" | "grad")``, or ``({}, None)`` without torch; ``info["refused"]`` says why torch did
    not run a size it refused (no calls then)."""
    try:
        import torch
    except ImportError:
        return {}, None
    tcalls, note = H.torch_rnn_calls(_torch_module(model, n, m), B, m, T, grad=run_grad)
    info = {"threads": torch.get_num_threads(), "version": torch.__version__, "device": H.torch_device()[0]}
    if note:
        info["refused"] = note
    return {("torch", what): call for what, call in tcalls.items()}, info


def _gemm(B, n, m, T, repeats):
    rows, k, cols = T * B, n + m, 4 * n
    flops = 2.0 * rows * k * cols
    a = np.random.default_rng(0).standard_normal((rows, k), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((k, cols), dtype=np.float32)
    res = {"flops": flops, "xla": H.time_jitted(lambda x, y: x @ y, jnp.asarray(a), jnp.asarray(b), repeats=repeats)[0]["median_s"],
           "numpy": H.time_call(lambda: a @ b, repeats)["median_s"]}
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        res["torch"] = H.time_call(lambda: ta @ tb, repeats)["median_s"]
    except ImportError:
        pass
    res["best_gflops"] = flops / min(v for k_, v in res.items() if k_ in ("xla", "numpy", "torch")) / 1e9
    return res


def _planned_bytes(fn, *args):
    """Temporaries XLA plans for ``jit(fn)`` (compile only; nothing is run)."""
    ma = jax.jit(fn).lower(*args).compile().memory_analysis()
    return None if ma is None else int(ma.temp_size_in_bytes)


def _stats(times):
    sp = H.spread(times)
    return {"median_s": sp["median"], "min_s": sp["min"], "max_s": sp["max"], "rounds": sp["n"], "times_s": list(times)}


def run_size(model, label, B, n, m, T, repeats, remat_from_T):
    remat_only = T >= remat_from_T
    segment = int(math.isqrt(T)) if remat_only else False
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, m), jnp.float32)
    peers = (_lstm_peers if model == "lstm" else _rnn_peers)(B, n, m, segment)
    row = {"model": model, "size": label, "B": B, "n": n, "m": m, "T": T, "peers": {},
           "lstm_jax_remat": segment, "grad_skipped": {}, "compile_s": {}}
    calls = {}
    for name, (fwd, params) in peers.items():
        f = jax.jit(fwd)
        t0 = time.perf_counter()
        f.lower(params, xs).compile()
        row["compile_s"][f"{name}/forward"] = time.perf_counter() - t0
        calls[(name, "forward")] = lambda f=f, params=params: jax.block_until_ready(f(params, xs))
        vg = jax.value_and_grad(lambda q, x, fwd=fwd: jnp.mean(fwd(q, x)[:, -1] ** 2))
        if remat_only and name != "lstm_jax":
            row["grad_skipped"][name] = {"reason": "no checkpointing in this peer's API",
                                         "xla_planned_temp_bytes": _planned_bytes(vg, params, xs)}
            continue
        g = jax.jit(vg)
        calls[(name, "grad")] = lambda g=g, params=params: jax.block_until_ready(g(params, xs))
    tcalls, tinfo = _torch_calls(model, B, n, m, T, run_grad=not remat_only)
    calls.update(tcalls)
    if tinfo is not None:
        row["torch"] = tinfo
        if remat_only:
            row["grad_skipped"]["torch"] = {"reason": "torch.nn.LSTM/RNN keep every step's activations"}
    in_loop = model == "lstm" and T * B <= 100_000
    if in_loop:
        g, g_args, g_flops = L.scan_gemm(B, n, T)
        e, e_args = L.scan_gates(B, n, T)
        calls[("in_scan_gemm", "forward")] = lambda: jax.block_until_ready(g(*g_args))
        calls[("in_scan_gates", "forward")] = lambda: jax.block_until_ready(e(*e_args))
    times = H.interleaved(calls, repeats)
    for (name, what), ts in times.items():
        row["peers"].setdefault(name, {"forward": None, "grad": None})[what] = _stats(ts)
    if in_loop:
        row["gemm"] = _gemm(B, n, m, T, repeats)
        fwd_s = row["peers"]["lstm_jax"]["forward"]["median_s"]
        row["lstm_jax_forward_gflops"] = row["gemm"]["flops"] / fwd_s / 1e9
        row["fast_forward_gflops"] = row["gemm"]["flops"] / row["peers"]["fast"]["forward"]["median_s"] / 1e9
        row["lstm_jax_fraction_of_best_gemm"] = row["lstm_jax_forward_gflops"] / row["gemm"]["best_gflops"]
        row["in_scan_gemm_gflops"] = g_flops / row["peers"]["in_scan_gemm"]["forward"]["median_s"] / 1e9
    print(_line(row), flush=True)
    return row


def run(sizes, repeats_for, remat_from_T, models=("lstm", "rnn")):
    rows = []
    for model in models:
        for label, B, n, m, T in sizes:
            rows.append(run_size(model, label, B, n, m, T, repeats_for(T), remat_from_T))
            gc.collect()
    return rows


def _ms(res):
    return "—" if res is None else f"{res['median_s'] * 1e3:.1f}"


def _ratio(row, peer, what, ours="lstm_jax"):
    """Median (min–max) of the per-round ratios ours / peer (interleaved rounds)."""
    p = row["peers"].get(peer)
    o = row["peers"].get(ours, {}).get(what)
    if not p or p[what] is None or o is None:
        return "—"
    return H.fmt_spread(H.ratio_spread(o["times_s"], p[what]["times_s"]))


def _line(row):
    ours = row["peers"]["lstm_jax"]
    return (f"{row['model']} {row['size']:8s} B={row['B']} n={row['n']} m={row['m']} T={row['T']}: lstm_jax "
            f"{_ms(ours['forward'])}/{_ms(ours['grad'])} ms; "
            + ", ".join(f"{k} {_ms(v['forward'])}/{_ms(v['grad'])} ms" for k, v in row["peers"].items()
                        if k != "lstm_jax" and not k.startswith("in_scan"))
            + (f"; {row['lstm_jax_fraction_of_best_gemm']:.0%} of best GEMM" if "gemm" in row else ""))


def _inloop(r):
    p = r["peers"]
    if "in_scan_gemm" not in p:
        return "—"
    return (f"{_ms(p['in_scan_gemm']['forward'])} / {_ms(p['in_scan_gates']['forward'])} "
            f"({r['in_scan_gemm_gflops']:.0f} GFLOP/s)")


def table(rows):
    peers = ["fast", "flax", "equinox", "torch"] + (["jax_cudnn"] if any("jax_cudnn" in r["peers"] for r in rows) else [])
    return H.markdown_table(
        ["model", "size (B, n, m, T)", "lstm_jax fwd / grad (ms)"] + [f"÷ {p} fwd / grad" for p in peers]
        + ["fast ÷ torch fwd / grad", "in-scan GEMM+tanh / gate math (ms)", "fwd GFLOP/s lstm_jax / fast (best GEMM)"],
        [[r["model"], f"{r['size']} ({r['B']}, {r['n']}, {r['m']}, {r['T']})"
          + (f" remat={r['lstm_jax_remat']}" if r["lstm_jax_remat"] else ""),
          f"{_ms(r['peers']['lstm_jax']['forward'])} / {_ms(r['peers']['lstm_jax']['grad'])}"]
         + [f"{_ratio(r, p, 'forward')} / {_ratio(r, p, 'grad')}" for p in peers]
         + [f"{_ratio(r, 'torch', 'forward', 'fast')} / {_ratio(r, 'torch', 'grad', 'fast')}", _inloop(r),
            f"{r['lstm_jax_forward_gflops']:.1f} / {r['fast_forward_gflops']:.1f} ({r['gemm']['best_gflops']:.0f})"
            if "gemm" in r else "—"]
         for r in rows],
    )


def main(argv=None):
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_output_args(ap)
    ap.add_argument("--no-long", action="store_true", help="skip the long sizes (T = 10^4 ... 10^6)")
    args = ap.parse_args(argv)
    if args.quick:
        sizes, repeats_for, remat_from = QUICK, (lambda T: 2), QUICK_GRAD_ONLY_WITH_REMAT_FROM_T
    else:
        sizes = LATENCY_MEDIUM + (() if args.no_long else LONG)
        repeats_for, remat_from = (lambda T: 5 if T <= 10_000 else 3 if T <= 100_000 else 2), GRAD_ONLY_WITH_REMAT_FROM_T
    meta = {"benchmark": "speed", "dtype": "float32", "device": H.device_info(), "loss": "mean(h_T^2)",
            "ratios": "lstm_jax time / peer time per interleaved round: median (min-max) (below 1: lstm_jax faster)"}
    print(f"device: {meta['device']['platform']} ({meta['device']['device_kind']}), jax {jax.__version__}")
    rows = run(sizes, repeats_for, remat_from)
    md = table(rows)
    H.report(args, "speed", rows, meta, md,
             "ratios: lstm_jax time / peer time, median (min–max) over interleaved rounds (below 1: lstm_jax faster); "
             "in-scan: (B, n) @ (n, 4n) + tanh and the gate math alone, each inside one lax.scan of T steps; — = not run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
