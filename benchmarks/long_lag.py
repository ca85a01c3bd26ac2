"""The long-lag sweep's own timings: ``docs/long-lag/vmap_timing.json``, which the long-lag report quotes.

* seeds as one ``jax.vmap``-ed program vs one after another (the same chunk of optimiser steps), and
* one jitted ``value_and_grad`` of the training objective at the sweep's shape and at a larger one, interleaved
  with the plain fixed-length loss and with the same objective on the custom-VJP runner.

Interleaved (A B A B), repeated, compile excluded; the machine's load is recorded with the numbers.

    python -m benchmarks.long_lag            # rewrite docs/long-lag/vmap_timing.json, then:
    lstm-jax sweep --report-only     # regenerate the report that quotes it
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax import run_lstm, zero_state
from lstm_jax.experiments import ModelSpec, TrainSettings, adding_problem_1997, init_model, loss_terms
from lstm_jax.experiments._models import final_states_batch
from lstm_jax.experiments._train import make_chunk
from lstm_jax.outputs import atomic_write, strict_json

TASK = "adding-1997"
OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "long-lag" / "vmap_timing.json"


def time_vmapped_seeds(T: int, seeds: int, n: int, settings: TrainSettings, model: str = "lstm-bf1",
                       reps: int = 3) -> dict:
    """Wall time of one chunk (``check_every`` steps) for ``seeds`` seeds: one after another vs one
    ``jax.vmap``-ed program; interleaved A B A B, ``reps`` repeats, compile excluded."""
    spec = ModelSpec(model, TASK, T, n)
    params = [init_model(jax.random.PRNGKey(s), spec) for s in range(seeds)]
    opt, one = make_chunk(spec, settings)
    states = [opt.init(p) for p in params]
    keys = [jax.random.PRNGKey(100 + s) for s in range(seeds)]
    many = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)))
    stack = lambda xs: jax.tree_util.tree_map(lambda *a: np.stack(a), *xs)  # noqa: E731
    P, S, K = stack(params), stack(states), stack(keys)

    def seq():
        return [one(p, s, k, 0) for p, s, k in zip(params, states, keys)]

    def vm():
        return many(P, S, K, 0)

    jax.block_until_ready(seq())
    jax.block_until_ready(vm())
    a, b = [], []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(seq())
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        jax.block_until_ready(vm())
        b.append(time.perf_counter() - t)
    ratios = [x / y for x, y in zip(a, b)]
    return {"T": T, "seeds": seeds, "steps": settings.check_every, "batch": settings.batch, "n": n,
            "sequential_s": float(np.median(a)), "vmapped_s": float(np.median(b)),
            "ratio": float(np.median(ratios)), "ratio_min": float(min(ratios)), "ratio_max": float(max(ratios))}


def time_value_and_grad(B: int, n: int, T: int, model: str = "lstm-bf1", reps: int = 5) -> dict:
    """Milliseconds of one jitted ``value_and_grad`` of :func:`loss_terms` (the training objective) on a batch
    of ``B`` 1997 adding sequences of minimum length ``T`` (padded to ``T + T//10``, read out at each own
    length), interleaved with the plain baseline (the same cell on exactly ``T`` steps, final state only;
    a plain fixed-length loss) and with the same objective on the fast runner
    (:func:`lstm_jax.run_lstm_batch`, custom VJP; the choice of runner for training); compile excluded."""
    spec = ModelSpec(model, TASK, T, n)
    params = init_model(jax.random.PRNGKey(0), spec)
    batch = adding_problem_1997(jax.random.PRNGKey(1), B, T)
    def plain(p, b):
        hT = jax.vmap(lambda x: run_lstm(p["cell"], zero_state(n), x)[0].h)(b.xs[:, :T])
        return jnp.mean(((hT @ p["W_out"].T + p["b_out"])[:, 0] - b.y) ** 2)

    calls = {"training": jax.jit(jax.value_and_grad(lambda p, b: loss_terms(p, b, spec)[0])),
             "baseline": jax.jit(jax.value_and_grad(plain)),
             "fast": jax.jit(jax.value_and_grad(lambda p, b: loss_terms(p, b, spec, final_states_batch)[0]))}
    first = {k: jax.block_until_ready(g(params, batch)) for k, g in calls.items()}  # compile + warm up every peer
    same = abs(float(first["fast"][0]) - float(first["training"][0]))
    if same > 1e-5:  # float32 rounding of two summation orders; anything larger means different objectives
        raise RuntimeError(f"the fast-runner objective differs from loss_terms by {same:.2e}")
    ms = {k: [] for k in calls}
    for _ in range(reps):
        for k, g in calls.items():
            t = time.perf_counter()
            jax.block_until_ready(g(params, batch))
            ms[k].append(1e3 * (time.perf_counter() - t))
    out = {"B": B, "n": n, "T": T, "padded_T": T + T // 10, "model": model, "reps": reps}
    for k, prefix in (("training", ""), ("baseline", "baseline_"), ("fast", "fast_")):
        out.update({f"{prefix}median_ms": float(np.median(ms[k])), f"{prefix}min_ms": float(min(ms[k])),
                    f"{prefix}max_ms": float(max(ms[k]))})
    return out


def main(argv=None) -> int:
    """Measure and write :data:`OUT` (the sweep's settings: batch 32, n = 16)."""
    settings = TrainSettings()
    dev = jax.devices()[0]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # other jobs skew every figure below
    rows = [time_vmapped_seeds(T, 5, 16, settings._replace(check_every=10)) for T in (100, 500)]
    step = time_value_and_grad(64, 32, 1000)
    own = time_value_and_grad(settings.batch, 16, 1000)
    atomic_write(OUT, strict_json({"device": f"{dev.platform}: {dev.device_kind}", "cpu_count": os.cpu_count(),
                                   "load_average_1min": load, "rows": rows, "value_and_grad": step,
                                   "value_and_grad_sweep_shape": own}))
    for r in rows:
        print(f"vmapped seeds, T = {r['T']}: sequential {r['sequential_s']:.3f} s, vmapped {r['vmapped_s']:.3f} s, "
              f"ratio {r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})")
    print(f"wrote {OUT}; regenerate the report with: lstm-jax sweep --report-only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
