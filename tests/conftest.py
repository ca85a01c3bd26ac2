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
