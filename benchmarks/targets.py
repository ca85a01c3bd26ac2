"""The speed targets, measured in one run with interleaved peers (A B A B ...), repeated.

Every figure is a ratio of peers timed in the same process, in the same rounds (``_harness.interleaved``);
each target reports the median ratio with its min–max over the rounds, and is ``met`` only if the whole
spread is on the right side of the limit, ``not met`` if all of it is on the wrong side, else
``inconclusive``.  float32, loss ``mean(h_T^2)`` for value_and_grad (the same for every peer).

Peers:
  fast       lstm_jax.run_lstm_batch: time-major (T, B, m), custom VJP for the whole scan
  run_lstm   jax.vmap(lstm_jax.run_lstm) over batch-major inputs (the exact, forward/reverse-differentiable runner)
  torch      torch.nn.LSTM on (T, B, m) (MKL/oneDNN on CPU)
In-loop attribution (B = 32, n = 256, benchmarks/_inloop.py): the recurrent GEMM + tanh inside one scan,
the gate elementwise math inside one scan, and the same-FLOP single GEMM.
Lyapunov (k = 32): lstm_jax.lstm_lyapunov_matfree vs the published recipe (QR on dense jax.jacfwd step
Jacobians every step, Vogt et al. 2022) at n = 512, T = 10^3; matrix-free at n = 1024 timed at
--lyap-T steps and extrapolated linearly to T = 10^5 (the loop is a fixed cost per step), with the memory
XLA plans for the full T = 10^5 run (compiled, not run); --lyap-T 100000 runs it in full.

    python -m benchmarks.targets              # all targets (about 5-10 minutes on 2 CPU cores)
    python -m benchmarks.targets --quick      # tiny sizes (seconds)
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

# LAPACK (jnp.linalg.qr in the Lyapunov loops) goes through scipy's OpenBLAS; its worker threads contend with
# XLA's own thread pool, and a (1024, 32) QR inside a scan was measured orders of magnitude slower with the default threading
# on this 2-core machine than with one thread. Set before numpy/jax load OpenBLAS; recorded in the results.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax
import jax.numpy as jnp
import numpy as np

import lstm_jax as lj

from . import _harness as H
from . import _inloop as L

# (label, B, n, m, T, also time run_lstm)
SIZES = (("latency", 1, 32, 32, 1000, True), ("medium", 32, 128, 64, 1000, True), ("medium", 32, 256, 64, 1000, True),
         ("long", 8, 64, 64, 10_000, True), ("long", 8, 64, 64, 100_000, False))
QUICK_SIZES = (("quick", 2, 8, 4, 50, True), ("quick-long", 2, 8, 4, 200, False))
LONG_LAG = (64, 32, 2, 1000)  # B, n, m, T of the long-lag sweep (adding problem)
QUICK_LONG_LAG = (4, 8, 2, 50)
ATTRIBUTION = (32, 256, 64, 1000)
GRU_SIZE = (32, 128, 64, 1000)  # B, n, m, T of the GRU comparison (no target)
QUICK_ATTRIBUTION = (2, 8, 4, 50)
LYAP_DENSE = (512, 32, 1000)  # n, k, T
QUICK_LYAP_DENSE = (16, 4, 50)
LYAP_BIG = (1024, 32, 100_000)  # n, k, T (target)
QUICK_LYAP_BIG = (32, 4, 1000)
GIB = 2**30


def _block(f, *a):
    return lambda: jax.block_until_ready(f(*a))


def _peer_calls(cell, params, fast, ref, B, n, m, T, with_ref=True, extra=()):
    """``(calls, torch_note)``: name -> blocking zero-argument call, forward (``*_fwd``) and value_and_grad of
    mean(h_T²) (``*_vg``): ``fast_*`` the batch runner on time-major ``(T, B, m)``, ``run_<cell>_*`` the exact
    runner under ``jax.vmap`` on batch-major input, ``torch_*`` ``torch.nn.LSTM``/``GRU`` when torch is installed
    and accepts the size (``torch_note`` says why not otherwise, else None); ``extra``: more ``(name, fn)``
    time-major runners.  ``fast(q, xs)`` and ``ref(q, xs)`` return ``(h_T, hs)``."""
    xs = jax.random.normal(jax.random.PRNGKey(1), (T, B, m), jnp.float32)
    runs = [("fast", fast, xs)] + [(name, f, xs) for name, f in extra] + (
        [(f"run_{cell}", ref, jnp.swapaxes(xs, 0, 1))] if with_ref else [])
    calls = {}
    for name, run, x in runs:
        calls[f"{name}_fwd"] = _block(jax.jit(lambda q, x, run=run: run(q, x)[1]), params, x)
        calls[f"{name}_vg"] = _block(jax.jit(jax.value_and_grad(lambda q, x, run=run: jnp.mean(run(q, x)[0] ** 2))),
                                     params, x)
    try:
        import torch
    except ImportError:
        return calls, "torch is not installed"
    tcalls, note = _torch_calls(getattr(torch.nn, cell.upper()), B, n, m, T)
    calls.update(tcalls)
    return calls, note


def lstm_calls(B, n, m, T, with_run_lstm=True):
    """:func:`_peer_calls` for the LSTM: ``run_lstm_batch`` / ``vmap(run_lstm)`` / ``torch.nn.LSTM``; on a GPU also
    ``run_lstm_batch(unroll=8)`` as ``fast_u8`` (no target: a scan step there costs kernel launches, which
    unrolling amortises)."""
    S0 = lj.LSTMState(jnp.zeros((B, n)), jnp.zeros((B, n)))
    s0 = lj.zero_state(n)

    def fast(q, x):
        final, hs = lj.run_lstm_batch(q, S0, x)
        return final.h, hs

    def ref(q, x):
        final, traj = jax.vmap(lambda xx: lj.run_lstm(q, s0, xx))(x)
        return final.h, traj.h

    def fast_u8(q, x):
        final, hs = lj.run_lstm_batch(q, S0, x, unroll=min(8, T))
        return final.h, hs

    extra = (("fast_u8", fast_u8),) if jax.devices()[0].platform == "gpu" else ()
    return _peer_calls("lstm", lj.init_lstm(jax.random.PRNGKey(0), n, m), fast, ref, B, n, m, T, with_run_lstm, extra)


def _torch_calls(module, B, n, m, T):
    """``({torch_fwd, torch_vg}, note)``: :func:`_harness.torch_rnn_calls` for ``torch.nn.LSTM`` / ``GRU``."""
    import torch

    torch.manual_seed(0)
    calls, note = H.torch_rnn_calls(module(m, n), B, m, T)
    return ({"torch_fwd": calls["forward"], "torch_vg": calls["grad"]} if calls else {}), note


def gru_comparison(B, n, m, T, rounds):
    """No target: ``run_gru_batch`` against ``jax.vmap(run_gru)`` and ``torch.nn.GRU`` (forward, value_and_grad)."""
    h0 = jnp.zeros((B, n))
    ref = lambda q, x: jax.vmap(lambda xx: lj.run_gru(q, jnp.zeros(n), xx))(x)  # noqa: E731
    calls, note = _peer_calls("gru", lj.init_gru(jax.random.PRNGKey(0), n, m), lambda q, x: lj.run_gru_batch(q, h0, x),
                        ref, B, n, m, T)
    times = H.interleaved(calls, rounds)
    ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    pairs = (("run_gru_batch ÷ vmap(run_gru), forward", "fast_fwd", "run_gru_fwd"),
             ("run_gru_batch ÷ vmap(run_gru), value_and_grad", "fast_vg", "run_gru_vg"),
             ("run_gru_batch ÷ torch.nn.GRU, forward", "fast_fwd", "torch_fwd"),
             ("run_gru_batch ÷ torch.nn.GRU, value_and_grad", "fast_vg", "torch_vg"))
    ratios = {label: H.ratio_spread(times[a], times[b]) for label, a, b in pairs if a in times and b in times}
    print(f"GRU B={B} n={n} m={m} T={T}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()), flush=True)
    return {"B": B, "n": n, "m": m, "T": T, "times_s": times, "median_ms": ms, "ratios": ratios, "torch_note": note}


def gru_table(info):
    note = [["torch.nn.GRU", info["torch_note"]]] if info.get("torch_note") else []
    return H.markdown_table([f"GRU, no target (B={info['B']}, n={info['n']}, m={info['m']}, T={info['T']})",
                             "median (min–max over rounds)"],
                            [[k, H.fmt_spread(v)] for k, v in info["ratios"].items()] + note)


def _row(target, where, sp, limit, below, unit="x", what=None):
    return {"target": target, "where": where, "ratio": sp, "limit": limit, "below": below,
            "measured": H.fmt_spread(sp, 2, unit), "verdict": H.verdict(sp, limit, below), "what": what}


def speed_targets(sizes, rounds):
    rows, meas = [], []
    for label, B, n, m, T, with_ref in sizes:
        t0 = time.perf_counter()
        calls, note = lstm_calls(B, n, m, T, with_ref)
        times = H.interleaved(calls, rounds)
        where = f"B={B} n={n} m={m} T={T}"
        meas.append({"size": label, "B": B, "n": n, "m": m, "T": T, "times_s": times, "torch_note": note,
                     "median_ms": {k: 1e3 * float(np.median(v)) for k, v in times.items()}})
        for what, limit, suffix in (("forward", 1.0, "fwd"), ("value_and_grad", 0.8, "vg")):
            target = f"LSTM {what} <= {limit:.1f}x torch.nn.LSTM"
            if f"torch_{suffix}" in times:
                rows.append(_row(target, where, H.ratio_spread(times[f"fast_{suffix}"], times[f"torch_{suffix}"]),
                                 limit, True))
            elif note:
                rows.append({"target": target, "where": where, "ratio": None, "limit": limit, "below": True,
                             "measured": "no peer", "verdict": "not measured", "what": note})
        print(f"{where}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in meas[-1]["median_ms"].items())
              + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
        del calls
        gc.collect()
    return rows, meas


def long_lag_target(B, n, m, T, rounds):
    calls = lstm_calls(B, n, m, T, True)[0]
    calls = {k: calls[k] for k in ("fast_vg", "run_lstm_vg")}
    times = H.interleaved(calls, rounds)
    sp = H.ratio_spread(times["run_lstm_vg"], times["fast_vg"])
    print(f"long-lag B={B} n={n} T={T}: run_lstm ÷ fast value_and_grad {H.fmt_spread(sp)}", flush=True)
    return [_row("value_and_grad >= 2x faster than run_lstm (long-lag sweep shape)", f"B={B} n={n} m={m} T={T}",
                 sp, 2.0, False)], {"B": B, "n": n, "m": m, "T": T, "times_s": times}


def attribution(B, n, m, T, rounds):
    """LSTM fast forward / value_and_grad GFLOP/s against the in-scan GEMM rate; the in-loop breakdown."""
    calls = {k: v for k, v in lstm_calls(B, n, m, T, False)[0].items() if not k.startswith("fast_u8")}
    g, g_args, g_flops = L.scan_gemm(B, n, T)
    e, e_args = L.scan_gates(B, n, T)
    ge, ge_args = L.scan_gemm_gates(B, n, T)
    er, er_args = L.scan_gates_rational(B, n, T)
    big, big_args, flops = L.big_gemm(B, n, m, T)
    calls.update(scan_gemm=_block(g, *g_args), scan_gates=_block(e, *e_args), scan_gemm_gates=_block(ge, *ge_args),
                 scan_gates_rational=_block(er, *er_args), big_gemm=_block(big, *big_args))
    times = H.interleaved(calls, rounds)
    gemm_rate = [g_flops / t for t in times["scan_gemm"]]
    fwd_frac = H.spread([100 * flops / t / r for t, r in zip(times["fast_fwd"], gemm_rate)])  # percent
    vg_frac = H.spread([100 * 3 * flops / t / r for t, r in zip(times["fast_vg"], gemm_rate)])
    where = f"B={B} n={n} m={m} T={T}"
    rows = [_row("LSTM forward >= 70 % of the in-scan GEMM rate", where, fwd_frac, 70.0, False, " %",
                 "forward FLOPs 2TB(n+m)4n / time, over the rate of (B,n)@(n,4n)+tanh inside one scan"),
            _row("LSTM value_and_grad >= 70 % of the in-scan GEMM rate", where, vg_frac, 70.0, False, " %",
                 "3x the forward FLOPs / time, over the in-scan GEMM rate")]
    ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    info = {"B": B, "n": n, "m": m, "T": T, "times_s": times, "median_ms": ms,
            "in_scan_gemm_gflops": H.spread([r / 1e9 for r in gemm_rate]),
            "big_gemm_gflops": H.spread([flops / t / 1e9 for t in times["big_gemm"]]),
            "fast_fwd_gflops": H.spread([flops / t / 1e9 for t in times["fast_fwd"]]),
            "gates_over_gemm": H.ratio_spread(times["scan_gates"], times["scan_gemm"]),
            "rational_over_xla_gates": H.ratio_spread(times["scan_gates_rational"], times["scan_gates"]),
            "activation_errors": L.activation_errors()}
    print(f"attribution {where}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()), flush=True)
    return rows, info


def _dense_recipe(p, s0, xs, k):
    """QR on dense jax.jacfwd step Jacobians every step (Vogt et al. 2022), one scan: the k leading exponents."""
    n = s0.h.shape[0]

    def step_map(s, x):
        st = lj.lstm_step(p, lj.LSTMState(s[:n], s[n:]), x)
        return jnp.concatenate([st.h, st.c])

    def body(carry, x):
        s, Q = carry
        J = jax.jacfwd(step_map)(s, x)
        Q, R = jnp.linalg.qr(J @ Q)
        r = jnp.diagonal(R)
        return (step_map(s, x), Q * jnp.where(r < 0, -1.0, 1.0)[None, :]), jnp.log(jnp.abs(r))

    _, logs = jax.lax.scan(body, (jnp.concatenate([s0.h, s0.c]), jnp.eye(2 * n, k, dtype=xs.dtype)), xs)
    return -jnp.sort(-jnp.mean(logs, axis=0))


def _lyap_inputs(n, T, m=32):
    p = lj.init_lstm(jax.random.PRNGKey(0), n, m, scale=2.0)
    xs = jax.random.normal(jax.random.PRNGKey(1), (T, m), jnp.float32)
    return p, lj.zero_state(n), xs


def lyapunov_targets(dense, big, lyap_T, rounds):
    n, k, T = dense
    p, s0, xs = _lyap_inputs(n, T)
    free = jax.jit(lambda p, s, x: lj.lstm_lyapunov_matfree(p, s, x, k).exponents)
    rec = jax.jit(lambda p, s, x: _dense_recipe(p, s, x, k))
    last = {}

    def keep(name, f):
        def call():
            last[name] = jax.block_until_ready(f(p, s0, xs))
        return call

    g, g_args = L.scan_lyap_gemm(n, k, T)
    times = H.interleaved({"matfree": keep("matfree", free), "dense_jacfwd_qr": keep("dense", rec),
                           "gemm_only": _block(g, *g_args)}, rounds)
    agree = float(jnp.max(jnp.abs(last["matfree"] - last["dense"])))  # outputs of the timed calls
    sp = H.ratio_spread(times["dense_jacfwd_qr"], times["matfree"])
    bound = H.ratio_spread(times["dense_jacfwd_qr"], times["gemm_only"])
    rows = [_row(f"matrix-free Lyapunov (k={k}) >= 10x faster than QR on dense jacfwd Jacobians", f"n={n} T={T}",
                 sp, 10.0, False, "x", f"exponents agree to {agree:.1e} (float32); dense ÷ the loop of its "
                 f"(4n,n)@(n,k) GEMM alone {H.fmt_spread(bound)} (the ceiling of this ratio)")]
    print(f"lyapunov n={n} T={T} k={k}: dense ÷ matfree {H.fmt_spread(sp)}; dense ÷ GEMM-only loop "
          f"{H.fmt_spread(bound)}; max |Δλ| {agree:.1e}", flush=True)
    info = {"dense": {"n": n, "k": k, "T": T, "times_s": times, "max_abs_exponent_diff": agree,
                      "median_ms": {k_: 1e3 * float(np.median(v)) for k_, v in times.items()},
                      "ceiling_dense_over_gemm_only": bound}}

    n, k, T_target = big
    T_run = min(lyap_T, T_target)
    p, s0, xs_full = _lyap_inputs(n, T_target)
    run = jax.jit(lambda p, s, x: lj.lstm_lyapunov_matfree(p, s, x, k).exponents)
    ma = run.lower(p, s0, xs_full).compile().memory_analysis()
    planned = None if ma is None else int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes)
    xs = xs_full[:T_run]
    run.lower(p, s0, xs).compile()
    times = H.interleaved({"matfree": _block(run, p, s0, xs)}, max(1, rounds))["matfree"]
    st = {"median_s": float(np.median(times)), "times_s": times}
    est = H.spread([t / T_run * T_target / 60 for t in times])  # minutes, linear in T
    where = f"n={n} T={T_target}" + ("" if T_run == T_target else f" (timed at T={T_run}, extrapolated linearly)")
    rows.append(_row(f"matrix-free Lyapunov (k={k}) completes in <= 10 min", where, est, 10.0, True, " min"))
    if planned is not None:
        rows.append({"target": f"matrix-free Lyapunov (k={k}) within 4 GiB", "where": f"n={n} T={T_target}",
                     "ratio": {"median": planned / GIB, "min": planned / GIB, "max": planned / GIB},
                     "limit": 4.0, "below": True, "measured": f"{planned / GIB:.2f} GiB planned by XLA (args + temps + outputs)",
                     "verdict": "met" if planned <= 4 * GIB else "not met", "what": "compiled for the full T, not run"})
    print(f"lyapunov n={n} k={k}: {st['median_s']:.1f} s at T={T_run} -> {est['median']:.1f} min at T={T_target}; "
          f"planned {planned and planned / GIB:.2f} GiB", flush=True)
    info["big"] = {"n": n, "k": k, "T_target": T_target, "T_run": T_run, "stats": st, "planned_bytes": planned}
    return rows, info


def table(rows):
    return H.markdown_table(["target", "where", "measured: median (min–max over rounds)", "verdict", "note"],
                            [[r["target"], r["where"], r["measured"], r["verdict"], r["what"] or ""] for r in rows])


def times_table(meas):
    """Median ms of every peer at each size (the rows the ratios above come from)."""
    peers = list(dict.fromkeys(k for r in meas for k in r["median_ms"]))
    return H.markdown_table(["size (median ms)"] + peers,
                            [[f"B={r['B']} n={r['n']} T={r['T']}"] + [f"{r['median_ms'][p]:.1f}" if p in r["median_ms"]
                                                                     else "–" for p in peers] for r in meas])


def breakdown_table(info):
    ms = info["median_ms"]
    names = [("fast_fwd", "LSTM forward (run_lstm_batch)"), ("fast_vg", "LSTM value_and_grad (run_lstm_batch)"),
             ("torch_fwd", "torch.nn.LSTM forward"), ("torch_vg", "torch.nn.LSTM value_and_grad"),
             ("scan_gemm", "in-scan (B,n)@(n,4n) + tanh"), ("scan_gates", "in-scan gate elementwise math (no GEMM)"),
             ("scan_gates_rational", "in-scan gate math, rational float32 tanh and sigmoid = (1 + tanh(z/2))/2"),
             ("scan_gemm_gates", "in-scan (B,n)@(n,4n) + gate math (the LSTM step without x_t W_x and the h_t store)"),
             ("big_gemm", "same-FLOP single GEMM (T·B, n+m)@(n+m, 4n)")]
    return H.markdown_table(["in-loop breakdown " + f"(B={info['B']}, n={info['n']}, m={info['m']}, T={info['T']})", "median ms"],
                            [[label, f"{ms[k]:.1f}"] for k, label in names if k in ms]) + (
        f"\n\nin-scan GEMM rate {H.fmt_spread(info['in_scan_gemm_gflops'], 0)} GFLOP/s; "
        f"same-FLOP single GEMM {H.fmt_spread(info['big_gemm_gflops'], 0)} GFLOP/s; "
        f"LSTM forward {H.fmt_spread(info['fast_fwd_gflops'], 0)} GFLOP/s; "
        f"gate math ÷ in-scan GEMM time {H.fmt_spread(info['gates_over_gemm'])}"
        f"; inside the loop, the gate math adds {ms['scan_gemm_gates'] - ms['scan_gemm']:.0f} ms to the recurrent GEMM "
        f"and the rest of the LSTM step (the input projection x_t W_x, storing h_t) another "
        f"{ms['fast_fwd'] - ms['scan_gemm_gates']:.0f} ms (LSTM forward − the step without them; medians)"
        + _activation_text(info))


def _activation_text(info):
    e, r = info["activation_errors"], info["rational_over_xla_gates"]
    return (f"\n\nfloat32 activations on {e['grid'][2]:,} points of [{e['grid'][0]:g}, {e['grid'][1]:g}] against float64: "
            f"XLA tanh {e['xla']['tanh_max_ulp']:.2f} ulp, rational tanh {e['rational']['tanh_max_ulp']:.2f} ulp; "
            f"XLA sigmoid max abs {e['xla']['sigmoid_max_abs']:.1e} / rel {e['xla']['sigmoid_max_rel']:.1e}, "
            f"(1 + tanh(z/2))/2 max abs {e['rational']['sigmoid_max_abs']:.1e} / rel {e['rational']['sigmoid_max_rel']:.1e}; "
            f"rational ÷ XLA gate math time {H.fmt_spread(r)}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_output_args(ap)
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per comparison (default 5; quick 2)")
    ap.add_argument("--lyap-T", type=int, default=None,
                    help="steps actually run for the n = 1024 Lyapunov target (default 2000, extrapolated to 10^5)")
    args = ap.parse_args(argv)
    q = args.quick
    rounds = args.rounds or (2 if q else 5)
    if rounds < 1:
        ap.error(f"--rounds must be >= 1, got {rounds}")
    lyap_T = args.lyap_T or (200 if q else 2000)
    if lyap_T < 1:
        ap.error(f"--lyap-T must be >= 1, got {lyap_T}")
    meta = {"benchmark": "targets", "dtype": "float32", "device": H.device_info(), "rounds": rounds,
            "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "loss": "mean(h_T^2)", "verdicts": "met only if the whole min-max spread of the per-round ratios is on the right side"}
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None  # a busy machine skews torch's OpenMP badly
    print(f"device: {H.device_words(meta['device'])}, jax {jax.__version__}", flush=True)
    rows, meas = speed_targets(QUICK_SIZES if q else SIZES, rounds)
    r, long_lag = long_lag_target(*(QUICK_LONG_LAG if q else LONG_LAG), rounds)
    rows += r
    r, info = attribution(*(QUICK_ATTRIBUTION if q else ATTRIBUTION), rounds)
    rows += r
    gru = gru_comparison(*(QUICK_ATTRIBUTION if q else GRU_SIZE), rounds)
    r, lyap = lyapunov_targets(QUICK_LYAP_DENSE if q else LYAP_DENSE, QUICK_LYAP_BIG if q else LYAP_BIG, lyap_T,
                               max(2, rounds - 2))
    rows += r
    meta.update(sizes=meas, long_lag=long_lag, attribution=info, lyapunov=lyap, gru=gru,
                load_average_start_end=[load0, os.getloadavg() if hasattr(os, "getloadavg") else None])
    load = meta["load_average_start_end"]
    md = table(rows) + "\n\n" + times_table(meas) + "\n\n" + breakdown_table(info) + "\n\n" + gru_table(gru) + (
        f"\n\nmachine load average (1, 5, 15 min) at start {tuple(round(v, 1) for v in load[0])}, at end "
        f"{tuple(round(v, 1) for v in load[1])} on {meta['device']['cpu_cores']} cores" if load[0] and load[1] else "")
    H.report(args, "targets", rows, meta, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
