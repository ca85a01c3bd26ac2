"""Peak memory and time of the LSTM gradient at T = 10^4 ... 10^6, with and without checkpointing (remat).

Workload: value_and_grad of mean(h_T^2) w.r.t. all parameters, B = 8 sequences (vmap over batch-major
(B, T, m) inputs), n = 64, m = 64, float32. Checkpointing strategies of ``run_lstm(..., remat=...)``:
  none      remat=False   every step's internals stored, O(T) with a large constant
  step      remat=True    jax.checkpoint per step; only the (h, c) carries stored, O(T * 2n)
  segments  remat=sqrt(T) nested scans; one carry per segment plus one segment's internals, O(sqrt T)

Each configuration runs in its own Python process. Reported per configuration: XLA's planned temporaries
for the compiled gradient (``memory_analysis().temp_size_in_bytes``, from compilation alone); the resident
memory when the runs start (JAX runtime + the (B, T, m) inputs, 1.9 GiB at T = 10^6) and the peak resident
memory during the runs (Linux VmHWM, reset after the inputs are made and the function compiled, so input
generation does not count; elsewhere ru_maxrss over the whole process); on GPU the device's
``peak_bytes_in_use``; the median time. A configuration whose planned temporaries exceed 75 % of the
machine's physical memory is compiled but not run (reported as such). Also: the remat time overhead
(time / time without remat, same T) and the log-log slope of time vs T (1.0 = linear).

    python -m benchmarks.memory            # ~10 minutes on 2 CPU cores
    python -m benchmarks.memory --quick    # seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import resource
import sys
import time

from . import _harness as H

STRATEGIES = ("none", "step", "segments")
B, N, M = 8, 64, 64


def _remat(strategy: str, T: int):
    return {"none": False, "step": True, "segments": max(1, math.isqrt(T))}[strategy]


def _peak_rss_bytes() -> int:
    """The process's resident-memory high-water mark: VmHWM on Linux (resettable), else ru_maxrss."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident size (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _physical_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def child(T: int, strategy: str, repeats: int, budget: int) -> dict:
    """One configuration, in this (fresh) process; returns the measurements."""
    import jax
    import jax.numpy as jnp

    import lstm_jax as lj

    remat = _remat(strategy, T)
    p = lj.init_lstm(jax.random.PRNGKey(0), N, M)
    s0 = lj.zero_state(N)
    # block: random generation is asynchronous, and its own peak must be over before the runs are measured
    xs = jax.block_until_ready(jax.random.normal(jax.random.PRNGKey(1), (B, T, M), jnp.float32))

    def loss(q, xs):
        final = jax.vmap(lambda x: lj.run_lstm(q, s0, x, remat=remat)[0])(xs)
        return jnp.mean(final.h ** 2)

    t0 = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss)).lower(p, xs).compile()
    out = {"T": T, "strategy": strategy, "remat": remat, "compile_s": time.perf_counter() - t0,
           "input_bytes": int(xs.size * xs.dtype.itemsize)}
    ma = compiled.memory_analysis()
    out["xla_temp_bytes"] = None if ma is None else int(ma.temp_size_in_bytes)
    if out["xla_temp_bytes"] is not None and out["xla_temp_bytes"] > budget:
        out["ran"] = False
        out["reason"] = f"XLA plans {out['xla_temp_bytes'] / 2**30:.1f} GiB of temporaries > budget {budget / 2**30:.1f} GiB"
        return out
    # Generating the inputs and compiling have their own (earlier) peaks; reset the high-water mark so the
    # figure is the run's: resident memory before it (runtime + inputs) plus what the gradient adds.
    out["peak_rss_before_run_bytes"] = _peak_rss_bytes()
    out["peak_rss_reset"] = _reset_peak_rss()
    out["rss_at_run_start_bytes"] = _peak_rss_bytes() if out["peak_rss_reset"] else None
    res, _ = H.time_samples(lambda: jax.block_until_ready(compiled(p, xs)), repeats, warmup=1)
    out.update(ran=True, **res, peak_rss_bytes=_peak_rss_bytes())
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    return out


def _spawn(T, strategy, repeats, budget):
    """One configuration in its own process (``--child``); a child that fails is recorded as not run, with why."""
    try:
        return H.run_child(__spec__.name, ["--child", T, strategy, repeats, budget], echo_stderr=False)
    except H.ChildFailed as e:
        return {"T": T, "strategy": strategy, "ran": False, "reason": str(e)}


def run(Ts, repeats_for, budget):
    rows = []
    for T in Ts:
        for s in STRATEGIES:
            r = _spawn(T, s, repeats_for(T), budget)
            rows.append(r)
            print(_line(r), flush=True)
    base = {r["T"]: r for r in rows if r["strategy"] == "none" and r.get("ran")}
    for r in rows:
        if r.get("ran") and r["T"] in base:
            r["time_vs_no_remat"] = r["median_s"] / base[r["T"]]["median_s"]
    ran = {s: [r for r in rows if r["strategy"] == s and r.get("ran")] for s in STRATEGIES}
    slopes = {s: H.loglog_slope([r["T"] for r in rs], [r["median_s"] for r in rs]) if len(rs) >= 2 else None
              for s, rs in ran.items()}
    return rows, slopes


def _mib(b):
    return "—" if b is None else f"{b / 2**20:.1f}"


def _line(r):
    if not r.get("ran"):
        return f"T={r['T']:>8} {r['strategy']:8s}: not run ({r['reason']})"
    return (f"T={r['T']:>8} {r['strategy']:8s}: XLA temporaries {_mib(r['xla_temp_bytes'])} MiB, "
            f"RSS at start {_mib(r.get('rss_at_run_start_bytes'))} MiB, peak {_mib(r['peak_rss_bytes'])} MiB, grad {r['median_s']:.2f} s")


def table(rows, slopes):
    t = H.markdown_table(
        ["T", "remat", "XLA temporaries (MiB)", "RSS at start / peak during runs (MiB)", "grad time (s)", "÷ no remat"],
        [[str(r["T"]), f"{r['strategy']} ({r.get('remat')})", _mib(r.get("xla_temp_bytes")),
          f"{_mib(r.get('rss_at_run_start_bytes'))} / {_mib(r['peak_rss_bytes'])}" if r.get("ran") else "not run",
          f"{r['median_s']:.2f}" if r.get("ran") else "—",
          f"{r['time_vs_no_remat']:.2f}" if "time_vs_no_remat" in r else "—"] for r in rows])
    return t + "\n\nlog-log slope of time vs T (1 = linear): " + ", ".join(
        f"{s} {v:.2f}" if v is not None else f"{s} —" for s, v in slopes.items())


def main(argv=None):
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_output_args(ap)
    ap.add_argument("--child", nargs=4, metavar=("T", "STRATEGY", "REPEATS", "BUDGET"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        T, s, rep, budget = args.child
        out = child(int(T), s, int(rep), int(budget))
        if args.result_to:
            H.write_child_result(args.result_to, out)
        else:  # run by hand
            print(json.dumps(out))
        return 0
    import jax

    budget = int(0.75 * _physical_bytes())
    Ts, repeats_for = ((500, 2000), lambda T: 1) if args.quick else \
        ((10_000, 100_000, 1_000_000), lambda T: 3 if T < 1_000_000 else 2)
    meta = {"benchmark": "memory", "dtype": "float32", "B": B, "n": N, "m": M, "device": H.device_info(),
            "physical_memory_bytes": _physical_bytes(), "budget_bytes": budget}
    print(f"device: {meta['device']['platform']} ({meta['device']['device_kind']}), jax {jax.__version__}, "
          f"physical memory {meta['physical_memory_bytes'] / 2**30:.1f} GiB")
    rows, slopes = run(Ts, repeats_for, budget)
    meta["time_vs_T_loglog_slope"] = slopes
    md = table(rows, slopes)
    H.report(args, "memory", rows, meta, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
