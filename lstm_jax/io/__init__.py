"""Files in and out: atomic output files and strict JSON (models and checkpoints join here).

Front door of the ``lstm_jax.io`` wing; it uses only the public names of :mod:`lstm_jax`.
"""

from ._files import AtomicOutputs, atomic_write, check_writable_dir, check_writable_file, strict_json
from ._model import RecurrentLayer, RecurrentModel

__all__ = ["AtomicOutputs", "atomic_write", "check_writable_dir", "check_writable_file", "strict_json",
           "RecurrentLayer", "RecurrentModel"]
