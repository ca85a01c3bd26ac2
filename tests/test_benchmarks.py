"""The benchmark scripts run (smoke test, seconds); their numbers are reported by the scripts, not asserted here."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run_quick(script: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--no-write"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out


def test_parallel_benchmark_quick_mode_runs_and_prints_its_table():
    out = _run_quick("parallel_vs_sequential.py")
    assert "device: cpu" in out.stdout
    assert "| T | n | sequential (median) | dense Newton | diagonal quasi-Newton |" in out.stdout


def test_lstm_speed_benchmark_quick_mode_runs_against_its_peers():
    out = _run_quick("lstm_speed.py")
    assert "| size (B, n, m, T) | lstm_jax fwd / grad (ms) |" in out.stdout
    assert "torch" in out.stdout and "flax" in out.stdout and "equinox" in out.stdout
