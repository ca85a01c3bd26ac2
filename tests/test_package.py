"""Packaging contracts: importing never flips x64; the public API is what __all__ says; CI runs the README's test command."""

import pathlib
import re
import subprocess
import sys

import lstm_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_import_does_not_enable_x64():
    code = "import jax, lstm_jax; print(jax.config.jax_enable_x64)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_all_names_exist_and_internals_stay_private():
    for name in lstm_jax.__all__:
        assert hasattr(lstm_jax, name), name
    assert not [n for n in lstm_jax.__all__ if n.startswith("_")]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    test_cmd = blocks[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci
