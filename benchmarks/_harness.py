"""Shared timing, reporting and child processes for the benchmark scripts (outside the installed package).

Timing follows the diffrax/JAX convention: the function is jitted, compiled once
(reported separately), warmed up, then run ``repeats`` times with
``jax.block_until_ready``; median and minimum are reported.

A script that needs a fresh process (``python -m benchmarks`` runs each script in one; ``memory`` and ``sharding``
run each configuration in one) calls :func:`run_child`: the child is ``python -m benchmarks.<name> ...`` with the
hidden option ``--result-to PATH``, writes its result there as JSON (:func:`write_child_result`) and the parent
reads that file; the child's printed output goes straight to the terminal and is never parsed.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import json
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from lstm_jax.outputs import AtomicOutputs, atomic_write

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ROOT = pathlib.Path(__file__).resolve().parents[1]  # the checkout's root: child modules run from here
RESULT_OPTION = "--result-to"  # the hidden option through which a child is told where to write its JSON result


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_info() -> dict:
    """The device in words: JAX platform and kind, CPU model and cores, library versions."""
    import os

    dev = jax.devices()[0]
    try:
        import torch

        torch_info = {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
        if torch.cuda.is_available():
            torch_info.update(torch_device=torch.cuda.get_device_name(0),
                              torch_cudnn_version=torch.backends.cudnn.version(),
                              torch_cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                              torch_matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    except ImportError:
        torch_info = {}
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        **torch_info,
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
    }


def torch_device():
    """``(device, sync)`` for the torch peers: ``"cuda"`` with ``torch.cuda.synchronize`` when torch sees a GPU
    (so a timed torch call ends when its kernels end, like ``jax.block_until_ready``), else ``"cpu"`` and a no-op."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.cuda.synchronize
    return "cpu", lambda: None


def torch_rnn_calls(net, B: int, m: int, T: int, grad: bool = True) -> tuple[dict, str | None]:
    """``(calls, note)`` for a ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` module ``net`` on ``randn(T, B, m)``:
    ``calls["forward"]`` (no grad) and, with ``grad``, ``calls["grad"]`` (backward of mean(h_T²)), each blocking
    (on the GPU when torch sees one — cuDNN — and synchronised so a call ends when its kernels do).  Each call is
    tried once here: where torch refuses the size (cuDNN answers CUDNN_STATUS_NOT_SUPPORTED for the LSTM at
    T = 10^5 on an H200), ``({}, note)`` with the exception's type and first line; else ``note`` is None."""
    import torch

    dev, sync = torch_device()
    net = net.to(dev)
    xs = torch.randn(T, B, m, generator=torch.Generator().manual_seed(1)).to(dev)

    def forward():
        with torch.no_grad():
            out = net(xs)[0]
        sync()
        return out

    def value_and_grad():
        net.zero_grad(set_to_none=True)
        loss = (net(xs)[0][-1] ** 2).mean()
        loss.backward()
        sync()
        return loss

    calls = {"forward": forward, **({"grad": value_and_grad} if grad else {})}
    try:
        for call in calls.values():
            call()
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is one too: the note names the type
        first = (str(e).splitlines() or [""])[0]
        return {}, f"torch.nn.{type(net).__name__} ({dev}) refused B={B} T={T}: {type(e).__name__}: {first}"
    return calls, None


def device_words(info: dict) -> str:
    """One line naming where the JAX side ran (the accelerator's kind, or the CPU model and core count) and where
    the torch peers ran when that is a GPU."""
    torch_gpu = f"; torch on {info['torch_device']}" if info.get("torch_device") else ""
    if info["platform"] == "cpu":
        return f"{info['cpu_model']} ({info['cpu_cores']} cores){torch_gpu}"
    return f"{info['device_kind']} ({info['platform']}; host {info['cpu_model']}, {info['cpu_cores']} cores){torch_gpu}"


MIN_SAMPLE_S = 0.02  # a timed sample loops a fast call until it lasts at least this long


def time_samples(call: Callable[[], Any], repeats: int, warmup: int) -> tuple[dict, Any]:
    """``(stats, last output)``: median/min seconds per call over ``repeats`` samples.

    A call faster than ``MIN_SAMPLE_S`` is looped ``number`` times per sample (timeit style) so that
    microsecond timings are not dominated by the clock and Python overhead; ``number`` is reported.
    """
    out = None
    for _ in range(max(warmup, 1)):
        t0 = time.perf_counter()
        out = call()
        once = time.perf_counter() - t0
    number = max(1, int(MIN_SAMPLE_S / max(once, 1e-9)))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            out = call()
        times.append((time.perf_counter() - t0) / number)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats, "number": number}, out


def time_jitted(fn: Callable, *args: Any, repeats: int = 5, warmup: int = 1) -> tuple[dict, Any]:
    """Compile ``jax.jit(fn)`` for ``args`` (compile time reported separately), then time it.

    Returns ``(stats, output)``: seconds (``compile_s``, ``median_s``, ``min_s``, ...) and the function's output.
    """
    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    stats, out = time_samples(lambda: jax.block_until_ready(compiled(*args)), repeats, warmup)
    return {"compile_s": compile_s, **stats}, out


PAUSE_S = 0.2  # untimed pause between peers: lets a peer's spinning worker threads (OpenMP blocktime) go idle


def interleaved(calls: dict[str, Callable[[], Any]], rounds: int = 5, warmup: int = 1,
                pause_s: float = PAUSE_S) -> dict[str, list[float]]:
    """Seconds per call of each peer, measured **interleaved** (A B C A B C ...) for ``rounds`` rounds.

    Each peer's calls are made blocking by the caller (``jax.block_until_ready`` / ``cuda.synchronize``).
    A call faster than ``MIN_SAMPLE_S`` is looped ``number`` times per sample (chosen once per peer after
    the warm-up).  Interleaving puts every peer under the same machine load in each round, so the per-round
    ratios (:func:`ratio_spread`) are far steadier than ratios of separately-timed medians on a busy machine.
    An untimed ``pause_s`` before each peer's sample keeps one peer's idle-spinning threads (torch's OpenMP
    pool spins after each call) from slowing the next peer down.
    """
    number = {}
    for name, call in calls.items():
        for _ in range(max(warmup, 1)):
            t0 = time.perf_counter()
            call()
            once = time.perf_counter() - t0
        number[name] = max(1, int(MIN_SAMPLE_S / max(once, 1e-9)))
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            if pause_s:
                time.sleep(pause_s)
            t0 = time.perf_counter()
            for _ in range(number[name]):
                call()
            times[name].append((time.perf_counter() - t0) / number[name])
    return times


def spread(values) -> dict:
    """``median``, ``min``, ``max``, ``q1``, ``q3`` of a list of samples."""
    v = np.asarray(values, float)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "q1": float(np.percentile(v, 25)), "q3": float(np.percentile(v, 75)), "n": int(v.size)}


def ratio_spread(num: list[float], den: list[float]) -> dict:
    """Per-round ratios ``num[r] / den[r]`` of two interleaved peers, summarised by :func:`spread`."""
    return spread([a / b for a, b in zip(num, den)])


def verdict(sp: dict, limit: float, below: bool = True) -> str:
    """``met`` only if the whole spread (min..max) is on the right side of ``limit``; ``not met`` if it is
    entirely on the wrong side; otherwise ``inconclusive``."""
    lo, hi = sp["min"], sp["max"]
    good, bad = (hi <= limit, lo > limit) if below else (lo >= limit, hi < limit)
    return "met" if good else "not met" if bad else "inconclusive"


def fmt_spread(sp: dict, digits: int = 2, suffix: str = "") -> str:
    """``median (min–max)``."""
    return f"{sp['median']:.{digits}f}{suffix} ({sp['min']:.{digits}f}–{sp['max']:.{digits}f})"


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict:
    """Time an already-compiled / eager callable (e.g. PyTorch, NumPy): median and min seconds."""
    return time_samples(fn, repeats, warmup)[0]


def write_results(name: str, rows: list[dict], meta: dict, markdown: str, out: pathlib.Path | str = RESULTS) -> pathlib.Path:
    """Write ``<out>/<name>-<platform>-<UTC timestamp>.json`` and the Markdown table beside it."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = out / f"{name}-{meta['device']['platform']}-{stamp}"
    with AtomicOutputs(manifest=None) as files:  # both or neither (new names: no earlier set to mix with)
        files.write(base.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        files.write(base.with_suffix(".md"), f"device: {device_words(meta['device'])}\n\n{markdown}\n")
    return base.with_suffix(".json")


def add_output_args(ap) -> None:
    """The options every script shares: ``--quick``, ``--no-write``, ``--out`` (and the hidden ``--result-to``)."""
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test, seconds)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write JSON/Markdown")
    ap.add_argument("--out", default=str(RESULTS), help="directory for the JSON + Markdown results (default: %(default)s)")
    add_result_arg(ap)


def add_result_arg(ap) -> None:
    """The hidden ``--result-to PATH`` of a script run by :func:`run_child` (``args.result_to``, None if absent)."""
    ap.add_argument(RESULT_OPTION, dest="result_to", default=None, metavar="PATH", help=argparse.SUPPRESS)


def write_child_result(path: pathlib.Path | str, result: Any) -> pathlib.Path:
    """Write a child's ``result`` as JSON to ``path`` (atomically: the parent reads all of it or none)."""
    return atomic_write(path, json.dumps(result) + "\n")


def report(args, name: str, rows: list[dict], meta: dict, markdown: str, footer: str = "") -> None:
    """Print the table (and a footer line), then write the results unless ``--no-write``; under ``--result-to``
    also hand the results (``meta``, ``rows`` and the path of the JSON written, or None) to the parent."""
    print("\n" + markdown + (f"\n\n{footer}" if footer else ""), flush=True)
    written = None
    if not args.no_write:
        written = write_results(name, rows, meta, markdown, args.out)
        print(f"wrote {written}", flush=True)
    if getattr(args, "result_to", None):
        write_child_result(args.result_to, {"meta": meta, "rows": rows, "json": None if written is None else str(written)})


class ChildFailed(RuntimeError):
    """A child run by :func:`run_child` exited with an error, ran past its time limit or wrote no JSON result.

    ``returncode`` is the child's exit status (negative: killed by that signal; None if it was stopped for its
    time limit) and ``stderr`` the last lines it wrote to stderr."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.returncode, self.stderr = returncode, stderr


STDERR_TAIL_LINES = 50


def _exit_words(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with status {rc}"


def run_timed(cmd: Sequence[str], stop_s: float) -> dict:
    """Run the command ``cmd`` (a cold process, from the checkout's root, output discarded but for the last line of
    stderr) and return its wall ``seconds``, ``peak_rss_bytes`` (``os.wait4``: the child's own peak), exit ``rc``,
    ``error`` (the last stderr line, or None on success) and ``stopped``: a run still going after ``stop_s`` seconds
    is killed, and its time is then a lower bound."""
    import os

    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        stopped = False
        while True:  # os.wait4 reaps the child and reports its peak memory (Popen.poll would reap it first)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if not stopped and time.perf_counter() - t0 > stop_s:
                proc.kill()
                stopped = True
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        err.seek(0)
        last = err.read().decode(errors="replace").strip().splitlines()[-1:]
    return {"seconds": wall, "stopped": stopped, "rc": rc, "error": None if rc == 0 else last,
            "peak_rss_bytes": usage.ru_maxrss * 1024}


def run_child(module: str, args: Sequence[Any] = (), *, env: Mapping[str, str] | None = None,
              timeout: float | None = None, echo_stderr: bool = True) -> Any:
    """Run ``python -m <module> <args> --result-to PATH`` in its own process and return the JSON it wrote to PATH.

    The child runs from the checkout's root (so ``benchmarks.<name>`` imports) with ``env`` (default: this
    process's environment), in a fresh interpreter: its own JAX runtime, its own peak memory, its own XLA flags.
    PATH lies in a temporary directory removed afterwards. The child's stdout is this process's stdout (its tables
    print as they come); its stderr is passed on as it comes too (``echo_stderr``) and its last lines are kept for
    the error. Raises :class:`ChildFailed` if the child exits non-zero or is killed, runs past ``timeout`` seconds,
    or exits 0 without writing a readable JSON file to PATH.
    """
    what = f"python -m {module}"
    with tempfile.TemporaryDirectory(prefix="lstm-jax-bench-") as tmp:
        path = pathlib.Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, *map(str, args), RESULT_OPTION, str(path)]
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=None if env is None else dict(env), stderr=subprocess.PIPE,
                                text=True, errors="replace")

        def pump():
            for line in proc.stderr:
                tail.append(line)
                if echo_stderr:
                    sys.stderr.write(line)
                    sys.stderr.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            reader.join()
            raise ChildFailed(f"{what} did not finish in {timeout:g} s", None, "".join(tail)) from None
        except BaseException:  # Ctrl-C and the like: the child does not outlive the parent
            proc.kill()
            proc.wait()
            raise
        finally:
            reader.join()
            proc.stderr.close()
        err = "".join(tail)
        if rc != 0:
            last = err.strip().splitlines()[-1:]
            raise ChildFailed(f"{what} {_exit_words(rc)}" + (f": {last[0]}" if last else ""), rc, err)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ChildFailed(f"{what} exited with status 0 but wrote no result ({RESULT_OPTION} {path.name})",
                              rc, err) from None
        try:
            return json.loads(text)
        except ValueError as e:
            raise ChildFailed(f"{what} wrote a result that is not JSON: {e}", rc, err) from None


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (1 = linear scaling, 2 = quadratic)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
