"""The documentation: the Sphinx site builds from the docstrings with warnings as errors, and every Python code
block of the README and the guides runs (in a fresh folder, each file's blocks in order in one namespace), so
that no example rots."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs" / "guide").glob("*.md"))


def test_the_docs_site_builds_with_warnings_as_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"),
                          str(tmp_path / "html")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    import importlib

    import lstm_jax

    missing = [name for name in lstm_jax.__all__ if f'id="lstm_jax.{name}"' not in api]
    for wing in ("lstm_jax.io", "lstm_jax.outputs", "lstm_jax.diagnose", "lstm_jax.verify", "lstm_jax.experiments"):
        mod = importlib.import_module(wing)  # its functions and classes (constants and re-exports are documented where
        for name in mod.__all__:              # they are defined or in the module docstring)
            obj = getattr(mod, name)
            if callable(obj) and getattr(obj, "__module__", "").startswith(wing) and f'id="{wing}.{name}"' not in api:
                missing.append(f"{wing}.{name}")
    assert not missing, f"public names without an API entry: {missing}"


def _python_blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def test_every_guide_holds_the_sections_readme_links_to():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for g in GUIDES:
        assert f"docs/guide/{g.name}" in readme, g.name
    assert len(readme.splitlines()) <= 200


@pytest.mark.parametrize("path", [ROOT / "README.md", *[g for g in GUIDES if _python_blocks(g)]], ids=lambda p: p.name)
def test_the_python_examples_run(path, tmp_path):
    code = "\n\n".join(_python_blocks(path))
    assert code.strip()
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 0, f"{path.name}:\n{out.stderr[-3000:]}"
