"""Test configuration.

float64 is enabled here, for the test session only (the library never flips
it on import: see ``test_package.py``).  float32 paths are tested with
explicitly float32 arrays.
"""

import jax

jax.config.update("jax_enable_x64", True)
