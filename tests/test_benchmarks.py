"""The benchmark suite runs end to end in quick mode (as `lstm-jax bench --quick`), and its target verdicts
follow the measured numbers. Timings themselves are reported by the scripts, never asserted here."""

import json
import pathlib
import subprocess
import sys

import pytest

from benchmarks.__main__ import targets

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_lstm_jax_bench_quick_runs_every_script_and_writes_results(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lstm_jax", "bench", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for header in ("| model | size (B, n, m, T) | lstm_jax fwd / grad (ms) |",            # speed
                   "| Jacobian | n | analytic (µs) | jacfwd ÷ analytic |",                  # jacobians
                   "| T | remat | XLA temporaries (MiB) | RSS at start / peak during runs (MiB) |",                                 # memory
                   "| model | varied | values |",                                           # scaling
                   "| devices | forward (ms, ×1-device) |",                                  # sharding
                   "| T | n | sequential (median) | dense Newton |",                        # parallel
                   "| cell | T | forward: sequential | parallel |",                          # linear
                   "| configuration | command | runs (s, cold process) | peak memory (GiB) |",  # diagnose
                   "| target | where | measured: median (min–max over rounds) | verdict |",  # targets
                   "| size (median ms) | fast_fwd | fast_vg |",                            # targets, every peer
                   "| in-loop breakdown (B=",                                              # targets attribution
                   "=== speed targets ==="):
        assert header in out.stdout, header
    names = {p.name.split("-")[0] for p in tmp_path.glob("*.json")}
    assert names == {"speed", "jacobians", "memory", "scaling", "sharding", "parallel_vs_sequential", "linear_parallel",
                     "diagnose", "targets", "summary"}
    diag = json.loads(next(tmp_path.glob("diagnose-*.json")).read_text())
    # every cold CLI run finished, and the flow curve equals torch autograd's (float64, exact SVDs at d = 16)
    assert [r["rc"] for row in diag["rows"] for r in row["runs"]] == [0]
    assert diag["meta"]["peer"]["max_relative_difference"] < 1e-12
    lin = json.loads(next(tmp_path.glob("linear_parallel-*.json")).read_text())
    assert {r["cell"] for r in lin["rows"]} == {"mingru", "minlstm", "rglru", "mlstm"}
    # the two forms agree (float32, T = 200: one associative scan against T sequential steps)
    assert all(r["max_abs_diff"] <= 1e-5 * max(1.0, r["max_abs_output"]) for r in lin["rows"])
    speed = json.loads(next(tmp_path.glob("speed-*.json")).read_text())
    assert {"lstm_jax", "fast", "flax", "equinox", "torch", "in_scan_gemm", "in_scan_gates"} <= set(speed["rows"][0]["peers"])
    # peers were interleaved: every peer has one time per round
    assert {len(p["forward"]["times_s"]) for p in speed["rows"][0]["peers"].values()} == {2}
    tg = json.loads(next(tmp_path.glob("targets-*.json")).read_text())
    assert tg["meta"]["device"]["cpu_cores"] >= 1 and tg["meta"]["device"]["cpu_model"]
    assert {r["verdict"] for r in tg["rows"]} <= {"met", "not met", "inconclusive", "not measured"}
    assert all((r["verdict"] == "not measured") == (r["ratio"] is None) for r in tg["rows"])
    # the matrix-free exponents agree with the dense-jacfwd recipe in the same run (float32, n = 16, T = 50)
    assert tg["meta"]["lyapunov"]["dense"]["max_abs_exponent_diff"] < 1e-4
    jac = json.loads(next(tmp_path.glob("jacobians-*.json")).read_text())
    # the benchmark also checks the analytic Jacobians against jacfwd (float32)
    assert all(r["max_rel_diff_vs_jacfwd"] < 1e-4 for r in jac["rows"] if r["kind"] == "step")


def test_bench_outside_a_checkout_names_the_missing_directory(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lstm_jax", "bench", "--quick", "--repo", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "no benchmarks/__main__.py" in out.stderr


def test_a_target_is_met_only_if_the_whole_spread_is_on_the_right_side():
    from benchmarks._harness import ratio_spread, verdict

    assert verdict({"min": 0.7, "max": 0.79}, 0.8) == "met"
    assert verdict({"min": 0.7, "max": 0.85}, 0.8) == "inconclusive"   # spread crosses the limit
    assert verdict({"min": 0.81, "max": 0.9}, 0.8) == "not met"
    assert verdict({"min": 9.5, "max": 12.0}, 10.0, below=False) == "inconclusive"
    assert verdict({"min": 10.0, "max": 12.0}, 10.0, below=False) == "met"
    sp = ratio_spread([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])  # per-round ratios 0.5, 1.0, 1.5
    assert (sp["min"], sp["median"], sp["max"]) == (0.5, 1.0, 1.5)


def test_summary_takes_the_target_rows_and_verdicts_of_the_targets_run():
    rows = targets({"targets": {"rows": [{"target": "LSTM forward <= 1.0x torch.nn.LSTM", "where": "B=1", "measured": "0.9x",
                                          "verdict": "inconclusive", "ratio": {"min": 0.8, "max": 1.1}}]},
                    "jacobians": {"rows": [{"kind": "step", "n": 256, "jacobian": "joint", "speedup_vs_jacfwd": 9.9}]},
                    "memory": {"rows": [{"T": 1_000_000, "ran": True, "strategy": "segments", "remat": 1000,
                                         "peak_rss_bytes": 25 * 2**30, "median_s": 1.0}],
                               "meta": {"time_vs_T_loglog_slope": {"segments": 1.02}}}})
    verdict = {r["target"]: r["verdict"] for r in rows}
    assert verdict["LSTM forward <= 1.0x torch.nn.LSTM"] == "inconclusive"
    assert [r["verdict"] for r in rows if "jacfwd" in r["target"]] == ["not met"]  # 9.9x < 10x
    assert [r["verdict"] for r in rows if "24 GiB" in r["target"]] == ["not met"]  # 25 GiB
    assert [r["verdict"] for r in rows if "linear" in r["target"]] == ["met"]


def test_rational_float32_tanh_is_within_5_ulp_and_its_sigmoid_loses_relative_accuracy():
    # the figures the targets table prints (benchmarks/_inloop.py): the rational tanh is as accurate as XLA's own
    # float32 tanh (the same max ulp error; 5 ulp bounds the minimax form's error), while
    # sigma = (1 + tanh(z/2))/2 cancels for z << 0
    import jax

    from benchmarks import _inloop

    if jax.default_backend() != "cpu":  # XLA:GPU has its own tanh: 5.31 ulp (rational 6.12) on an H200, targets-gpu-*
        pytest.skip("the 5-ulp figure is XLA:CPU's float32 tanh")
    e = _inloop.activation_errors(-20.0, 20.0, 200_001)
    assert e["rational"]["tanh_max_ulp"] <= 5.0 and e["xla"]["tanh_max_ulp"] <= 5.0
    assert e["rational"]["sigmoid_max_abs"] < 3e-7 and e["xla"]["sigmoid_max_rel"] < 1e-6
    assert e["rational"]["sigmoid_max_rel"] > 1.0  # sigma(-20) ~ 2e-9 is lost below float32 resolution of 0.5


def test_a_size_torch_refuses_is_reported_with_torch_s_error_not_timed():
    # a real refusal: torch.nn.LSTM raises on an empty sequence (on the GPU, cuDNN refuses T = 10^5 the same way)
    torch = pytest.importorskip("torch")
    from benchmarks import _harness as H
    from benchmarks import targets as tg

    calls, note = H.torch_rnn_calls(torch.nn.LSTM(3, 4), 2, 3, 0)
    assert calls == {}
    assert note.startswith("torch.nn.LSTM (") and "refused B=2 T=0: RuntimeError: " in note
    assert "sequence length" in note
    calls, note = H.torch_rnn_calls(torch.nn.GRU(3, 4), 2, 3, 5, grad=False)
    assert note is None and set(calls) == {"forward"}
    calls, note = tg._torch_calls(torch.nn.LSTM, 2, 4, 3, 5)  # the targets' peer: both calls, under its names
    assert note is None and set(calls) == {"torch_fwd", "torch_vg"} and float(calls["torch_vg"]().detach()) > 0


def test_readme_targets_tables_are_generated_from_every_committed_targets_run():
    from benchmarks.__main__ import README, readme_block, splice_readme

    text = README.read_text(encoding="utf-8")
    assert splice_readme(text, readme_block()) == text, "run: python -m benchmarks --readme"
    for f in (ROOT / "benchmarks" / "results").glob("targets-*.json"):  # every committed run has its column
        assert f"run {f.stem.rsplit('-', 1)[1]}" in text


def test_diagnose_runtime_table_is_generated_from_every_committed_diagnose_run():
    from benchmarks.__main__ import DIAGNOSE_GUIDE, DIAGNOSE_MARKER, diagnose_block, splice_readme

    text = DIAGNOSE_GUIDE.read_text(encoding="utf-8")
    assert splice_readme(text, diagnose_block(), DIAGNOSE_MARKER) == text, "run: python -m benchmarks --readme"
    assert list((ROOT / "benchmarks" / "results").glob("diagnose-*.json")), "no committed diagnose run"


def test_a_target_counts_as_met_across_runs_only_if_every_run_met_it():
    from benchmarks.__main__ import across_runs

    assert across_runs(["met", "met"]) == "met"
    assert across_runs(["met", "inconclusive", "met"]) == "**not confirmed** (met in 2 of 3)"
    assert across_runs(["met", "not met"]) == "**not confirmed** (met in 1 of 2)"
    assert across_runs(["not met", "inconclusive"]) == "**not met** (inconclusive in 1 of 2)"
    assert across_runs(["not met", "not met"]) == "**not met**"
    assert across_runs(["not measured", "not measured"]) == "not measured"


def test_readme_mode_names_a_conflicting_option_and_a_missing_block_in_one_line():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--readme", "--quick"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 2 and "--readme runs nothing" in out.stderr and "--quick" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    from benchmarks.__main__ import splice_readme

    with pytest.raises(ValueError, match="no <!-- bench-targets:start -->"):
        splice_readme("# a README without the block\n", "table")


def test_compiler_comparison_is_generated_from_its_committed_runs():
    """benchmarks/results/compiler/README.md: the targets under jax 0.10.1 and 0.10.2, regenerated from the runs."""
    from benchmarks.compiler import DIR, table

    runs = sorted(DIR.glob("targets-*.json"))
    versions = {json.loads(f.read_text())["meta"]["device"]["jax_version"] for f in runs}
    assert versions == {"0.10.1", "0.10.2"} and len(runs) >= 4
    assert (DIR / "README.md").read_text(encoding="utf-8") == table(), "run: python -m benchmarks.compiler"


def test_the_runner_timing_compares_the_training_objective_with_the_same_objective_on_the_fast_runner():
    # time_value_and_grad raises if the two objectives differ by more than float32 rounding, so a fast-runner
    # loss that read the wrong step (or the wrong state) would fail here before any timing is reported
    from benchmarks.long_lag import time_value_and_grad

    t = time_value_and_grad(4, 4, 20, reps=1)
    assert (t["B"], t["n"], t["T"], t["padded_T"]) == (4, 4, 20, 22)
    assert min(t["median_ms"], t["baseline_median_ms"], t["fast_median_ms"]) > 0


TINY_CHILD = '''
import json, sys, time
args = sys.argv[1:]
path = args[args.index("--result-to") + 1]
if "fail" in args:
    print("tiny child: asked to fail", file=sys.stderr)
    sys.exit(3)
if "hang" in args:
    time.sleep(60)
if "not-json" in args:
    open(path, "w").write("{half")
if "ok" in args:
    print("a table on stdout, never parsed")
    json.dump({"args": args[:args.index("--result-to")]}, open(path, "w"))
'''


def test_the_child_runner_returns_the_child_s_json_and_reports_a_child_that_fails_or_writes_nothing(tmp_path):
    # a tiny real child module, run as python -m tiny_bench_child from the checkout's root like every benchmark
    import os

    from benchmarks import _harness as H

    (tmp_path / "tiny_bench_child.py").write_text(TINY_CHILD)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    assert H.run_child("tiny_bench_child", ["ok", 3], env=env) == {"args": ["ok", "3"]}
    with pytest.raises(H.ChildFailed, match="tiny_bench_child exited with status 3: tiny child: asked to fail") as e:
        H.run_child("tiny_bench_child", ["fail"], env=env, echo_stderr=False)
    assert e.value.returncode == 3 and "asked to fail" in e.value.stderr
    with pytest.raises(H.ChildFailed, match="exited with status 0 but wrote no result"):
        H.run_child("tiny_bench_child", ["silent"], env=env)
    with pytest.raises(H.ChildFailed, match="wrote a result that is not JSON"):
        H.run_child("tiny_bench_child", ["not-json"], env=env)
    with pytest.raises(H.ChildFailed, match="did not finish in 2 s"):
        H.run_child("tiny_bench_child", ["hang"], env=env, timeout=2)
    with pytest.raises(H.ChildFailed, match="No module named"):  # an unknown module: the child's own error
        H.run_child("no_such_bench_child", env=env, echo_stderr=False)


def test_a_memory_configuration_runs_in_its_own_process_and_comes_back_as_json():
    from benchmarks import _harness as H
    from benchmarks import memory

    r = memory._spawn(50, "step", 1, 2**40)
    assert r["ran"] is True and (r["T"], r["strategy"], r["remat"]) == (50, "step", True) and r["median_s"] > 0
    with pytest.raises(H.ChildFailed, match="benchmarks.memory exited with status 1: .*KeyError"):
        H.run_child("benchmarks.memory", ["--child", 50, "no-such-strategy", 1, 2**40], echo_stderr=False)
    bad = memory._spawn(50, "no-such-strategy", 1, 2**40)  # memory records a failed child as not run, with why
    assert bad["ran"] is False and "exited with status 1" in bad["reason"]


def test_no_benchmarks_file_edits_sys_path_and_only_the_harness_starts_processes():
    files = sorted((ROOT / "benchmarks").rglob("*.py"))
    assert len(files) >= 10
    assert [f.name for f in files if "sys.path" in f.read_text(encoding="utf-8")] == []
    assert [f.name for f in files if "subprocess" in f.read_text(encoding="utf-8")] == ["_harness.py"]
