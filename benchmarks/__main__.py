"""Run the benchmark suite and check the speed targets.

    python -m benchmarks --targets        # only the speed targets, interleaved and repeated (about
                                          # 5-10 minutes on 2 CPU cores); benchmarks/results/
    python -m benchmarks --quick          # every script at tiny sizes (about a minute); results under
                                          # benchmarks/results/quick/ (not committed)
    python -m benchmarks                  # full sizes (about an hour on 2 CPU cores); benchmarks/results/
    python -m benchmarks --only speed,memory
    python -m benchmarks --summarize      # the targets from the newest results already in benchmarks/results/
    python -m benchmarks --readme         # docs/guide/benchmarks.md's targets tables from every committed targets-*.json

``lstm-jax bench ...`` runs the same from a source checkout. Each script runs in its own process
(``python -m benchmarks.<name>``: fresh JAX runtime, its own peak memory), prints its table, writes
``<name>-<platform>-<UTC time>.json/.md`` and hands its results back through a JSON file (``_harness.run_child``).
Afterwards the targets are evaluated from those results and written as ``summary-...json/.md``:

  targets    (targets.py) forward <= 1.0x and value_and_grad <= 0.8x torch.nn.LSTM at five sizes,
             >= 70 % of the in-scan GEMM rate, value_and_grad >= 2x run_lstm at the long-lag shape,
             matrix-free Lyapunov >= 10x the dense-jacfwd recipe and n = 1024, T = 10^5 within 10 min / 4 GiB;
             each a median ratio with its min-max over interleaved rounds, "met" only if the whole
             spread is on the right side ("inconclusive" if it straddles the limit)
  jacobian   analytic joint step Jacobian >= 10x faster than jax.jacfwd at n = 256
  memory     gradient at T = 10^6 (B = 8, n = 64) within 24 GiB, time linear in T (log-log slope <= 1.1)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

from . import _harness as H

HERE = pathlib.Path(__file__).resolve().parent

SCRIPTS = {
    "speed": "speed.py",
    "jacobians": "jacobians.py",
    "memory": "memory.py",
    "scaling": "scaling.py",
    "sharding": "sharding.py",
    "parallel": "parallel_vs_sequential.py",
    "linear": "linear_parallel.py",
    "diagnose": "diagnose.py",
    "targets": "targets.py",
}
GIB = 2**30


def _verdict(ok):
    return "met" if ok else "not met"


def targets(results: dict) -> list[dict]:
    """Each target with its measured figures, from the JSON results of this run."""
    out = []
    tgt = results.get("targets")
    if tgt:
        out += [{k: r[k] for k in ("target", "where", "measured", "verdict")} for r in tgt["rows"]]
    jac = results.get("jacobians")
    if jac:
        for r in jac["rows"]:
            if r["kind"] == "step" and r["n"] == 256:
                s = r["speedup_vs_jacfwd"]
                out.append({"target": "analytic step Jacobian >= 10x faster than jacfwd (n = 256)", "where": r["jacobian"],
                            "measured": f"{s:.1f}x", "value": s, "verdict": _verdict(s >= 10)})
    mem = results.get("memory")
    if mem:
        big = [r for r in mem["rows"] if r["T"] == 1_000_000 and r.get("ran")]
        for r in big:
            peak = r.get("device_peak_bytes", r["peak_rss_bytes"])
            out.append({"target": "gradient at T = 10^6 (B = 8, n = 64) within 24 GiB", "where": f"remat {r['strategy']} ({r['remat']})",
                        "measured": f"{peak / GIB:.2f} GiB peak, {r['median_s']:.1f} s", "value": peak / GIB,
                        "verdict": _verdict(peak <= 24 * GIB)})
        if not big and any(r["T"] == 1_000_000 for r in mem["rows"]):
            out.append({"target": "gradient at T = 10^6 (B = 8, n = 64) within 24 GiB", "where": "any remat",
                        "measured": "no configuration ran", "value": None, "verdict": "not met"})
        for s, v in mem["meta"]["time_vs_T_loglog_slope"].items():
            if v is not None:
                out.append({"target": "gradient time linear in T (log-log slope <= 1.1)", "where": f"remat {s}",
                            "measured": f"slope {v:.2f}", "value": v, "verdict": _verdict(v <= 1.1)})
    return out


README = HERE.parent / "docs" / "guide" / "benchmarks.md"  # the benchmarks guide holds the generated tables
README_MARKER = "bench-targets"


def across_runs(verdicts: list[str]) -> str:
    """One target's verdict over repeated runs: ``met`` / ``not met`` only if every run says so."""
    if all(v == "met" for v in verdicts):
        return "met"
    if all(v == "not measured" for v in verdicts):
        return "not measured"
    met, inconclusive = sum(v == "met" for v in verdicts), sum(v == "inconclusive" for v in verdicts)
    if met == 0:
        return "**not met**" + (f" (inconclusive in {inconclusive} of {len(verdicts)})" if inconclusive else "")
    return f"**not confirmed** (met in {met} of {len(verdicts)})"


def readme_block(results_dir: pathlib.Path = H.RESULTS) -> str:
    """The README's targets tables: per platform, every committed ``targets-<platform>-*.json`` run side by side
    (median ratio with its min–max over interleaved rounds, and that run's verdict) and the verdict across runs."""
    parts = []
    for platform in ("cpu", "gpu", "tpu"):
        files = sorted(results_dir.glob(f"targets-{platform}-*.json"))
        if not files:
            continue
        runs = [json.loads(f.read_text()) for f in files]
        devices = sorted({H.device_words(r["meta"]["device"]) for r in runs})
        keys = list(dict.fromkeys((row["target"], row["where"]) for r in runs for row in r["rows"]))
        rows = []
        for target, where in keys:
            cells = [next((row for row in r["rows"] if (row["target"], row["where"]) == (target, where)), None)
                     for r in runs]
            rows.append([target, where] + [f"{c['measured']} {c['verdict']}" if c else "–" for c in cells]
                        + [across_runs([c["verdict"] for c in cells if c])])
        stamps = [f.stem.rsplit("-", 1)[1] for f in files]
        parts += [f"**{platform.upper()}** ({'; '.join(devices)}; {len(files)} runs of `benchmarks/targets.py`, "
                  f"files `benchmarks/results/targets-{platform}-<run>.json`):", "",
                  H.markdown_table(["target", "where"] + [f"run {s}" for s in stamps] + ["across runs"], rows), ""]
    return "\n".join(parts).rstrip("\n")


DIAGNOSE_GUIDE = HERE.parent / "docs" / "guide" / "diagnose.md"  # holds the generated runtime table
DIAGNOSE_MARKER = "diagnose-runtime"


def diagnose_block(results_dir: pathlib.Path = H.RESULTS) -> str:
    """The diagnose guide's runtime tables: every committed ``diagnose-<platform>-*.md`` (benchmarks/diagnose.py),
    oldest first, under the run's time stamp."""
    parts = []
    for f in sorted(results_dir.glob("diagnose-*.md")):
        parts += [f"Run `{f.stem.split('-', 1)[1]}` (file `benchmarks/results/{f.name}`), {f.read_text(encoding='utf-8').strip()}", ""]
    return "\n".join(parts).rstrip("\n") or "No run committed yet: `python -m benchmarks.diagnose`."


def splice_readme(text: str, block: str, marker: str = README_MARKER) -> str:
    """``text`` with the block between ``<!-- <marker>:start -->`` and ``<!-- <marker>:end -->`` replaced."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    pat = re.compile(rf"{re.escape(start)}\n.*?{re.escape(end)}", re.S)
    if not pat.search(text):
        raise ValueError(f"no {start} … {end} block")
    return pat.sub(lambda _: f"{start}\n{block}\n{end}", text, count=1)


def _usage_error(message: str) -> int:
    """One line on stderr, exit status 2 (bad arguments)."""
    print(f"python -m benchmarks: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (about a minute); results under results/quick/")
    ap.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated subset of: %(default)s")
    ap.add_argument("--targets", action="store_true", help="only the speed targets (same as --only targets)")
    ap.add_argument("--out", default=None, help="results directory (default: benchmarks/results, or results/quick with --quick)")
    ap.add_argument("--summarize", action="store_true",
                    help="run nothing: evaluate the targets from the newest targets/jacobians/memory JSON in the results directory")
    ap.add_argument("--readme", action="store_true",
                    help="run nothing: rewrite docs/guide/benchmarks.md's targets tables from every committed targets-*.json")
    args = ap.parse_args(argv)
    if args.readme:
        others = [f for f, v in (("--quick", args.quick), ("--targets", args.targets), ("--out", args.out),
                                 ("--summarize", args.summarize), ("--only", args.only != ap.get_default("only")))
                  if v]
        if others:
            return _usage_error(f"--readme runs nothing and reads benchmarks/results/; it takes no {', '.join(others)}")
        from lstm_jax.outputs import atomic_write

        try:
            atomic_write(README, splice_readme(README.read_text(encoding="utf-8"), readme_block()))
            atomic_write(DIAGNOSE_GUIDE, splice_readme(DIAGNOSE_GUIDE.read_text(encoding="utf-8"), diagnose_block(),
                                                       DIAGNOSE_MARKER))
        except (OSError, ValueError) as e:  # no README, no marker block, not writable: one line, exit 3
            print(f"error: --readme: {e}", file=sys.stderr)
            return 3
        print(f"wrote {README} and {DIAGNOSE_GUIDE}")
        return 0
    names = ["targets"] if args.targets else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCRIPTS]
    if unknown:
        return _usage_error(f"--only: unknown benchmark(s) {unknown}; choose from {list(SCRIPTS)}")
    out = pathlib.Path(args.out) if args.out else H.RESULTS / "quick" if args.quick else H.RESULTS
    results, failed, files_used = {}, [], {}
    if args.summarize:
        import jax

        platform = jax.devices()[0].platform
        for name in ("targets", "jacobians", "memory"):
            files = sorted(out.glob(f"{name}-{platform}-*.json"))
            if files:
                results[name] = json.loads(files[-1].read_text())
                files_used[name] = files[-1].name
                print(f"{name}: {files[-1].name}")
        names = []
    for name in names:
        print(f"\n=== {name} ({SCRIPTS[name]}) ===", flush=True)
        module = f"{__package__}.{pathlib.Path(SCRIPTS[name]).stem}"
        try:  # the child runs from the checkout's root: pass the results directory as an absolute path
            results[name] = H.run_child(module, ["--out", out.resolve()] + (["--quick"] if args.quick else []))
        except H.ChildFailed as e:
            print(f"{name}: {e}", file=sys.stderr, flush=True)
            failed.append(name)
    rows = targets(results)
    if rows:
        md = H.markdown_table(["target", "where", "measured", "verdict"],
                              [[r["target"], r["where"], r["measured"], r["verdict"]] for r in rows])
        print("\n=== speed targets ===\n" + md)
        meta = {"benchmark": "summary", "device": H.device_info(), "quick": args.quick,
                "sources": {k: v["meta"] for k, v in results.items()}}
        if args.summarize:
            meta["summarized_from"] = files_used
        print(f"wrote {H.write_results('summary', rows, meta, md, out)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
