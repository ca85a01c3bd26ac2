"""Test configuration.

float64 is enabled here, for the test session only (the library never flips
it on import: see ``test_package.py``).  float32 paths are tested with
explicitly float32 arrays.
"""

import jax

jax.config.update("jax_enable_x64", True)


def pytest_terminal_summary(terminalreporter):
    """Print the largest relative error each analytic formula showed against autodiff in this run."""
    from _reference import MAX_ERR

    if not MAX_ERR:
        return
    terminalreporter.section("largest relative error per formula (vs jax.jacfwd / jax.jacrev)")
    width = max(map(len, MAX_ERR))
    for label in sorted(MAX_ERR):
        terminalreporter.write_line(f"{label.ljust(width)}  {MAX_ERR[label]:.2e}")


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
    """Drop JAX's compiled executables after each test module: the suite compiles thousands of functions in one
    process, and keeping them all made a late XLA compilation crash (a segfault in tests/test_train.py in the full
    run only; the file passes alone)."""
    yield
    jax.clear_caches()
