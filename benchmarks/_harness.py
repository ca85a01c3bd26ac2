"""Shared timing and reporting for the benchmark scripts (outside the package).

Timing follows the diffrax/JAX convention: the function is jitted, compiled once
(reported separately), warmed up, then run ``repeats`` times with
``jax.block_until_ready``; median and minimum are reported.
"""

from __future__ import annotations

import datetime as _dt
import json
import pathlib
import platform
import statistics
import time
from typing import Any, Callable

import jax

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def device_info() -> dict:
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
    }


def time_jitted(fn: Callable, *args: Any, repeats: int = 5, warmup: int = 1) -> dict:
    """Compile ``jax.jit(fn)`` for ``args``, then time it; seconds."""
    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out = None
    for _ in range(warmup):
        out = jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "median_s": statistics.median(times), "min_s": min(times),
            "repeats": repeats, "output": out}


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict:
    """Time an already-compiled / eager callable (e.g. PyTorch, NumPy): median and min seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def write_results(name: str, rows: list[dict], meta: dict, markdown: str) -> pathlib.Path:
    """Write ``results/<name>-<platform>-<UTC timestamp>.json`` and the Markdown table beside it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = RESULTS / f"{name}-{meta['device']['platform']}-{stamp}"
    base.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown + "\n")
    return base.with_suffix(".json")


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
