"""Files and models in and out: atomic output files, strict JSON, and loading real recurrent models.

Front door of the ``lstm_jax.io`` wing; it uses only the public names of :mod:`lstm_jax`.

* :func:`load_model` reads a (stacked, bidirectional) LSTM / GRU / RNN from PyTorch modules,
  ``state_dict``\\ s and ``.pt`` files, TorchScript archives (without running them), ONNX models, Keras 3
  files (without Keras), safetensors, Flax variables and msgpack files, Equinox and nnx modules, and
  lstm_jax's own ``.npz`` files (:func:`save` / :func:`load`), into a :class:`RecurrentModel`.
* :func:`capture_inputs`: what one recurrent layer of a user's PyTorch model receives on the user's inputs
  (:class:`Captured`), for ``lstm-jax diagnose --data``.
* :func:`check_input_file`, :func:`sniff`, :func:`read_npy`: a user's file checked (regular file, size, format
  from its first bytes, declared array sizes) before anything in it is read.
* ``from_*`` / ``to_*``: one cell's weights between lstm_jax and Flax, Equinox, PyTorch.
* :func:`atomic_write`, :class:`AtomicOutputs`, :func:`check_writable_dir`, :func:`check_writable_file`,
  :func:`strict_json`, :func:`check_output_set`, :func:`complete_outputs`: output files
  that appear whole or not at all, output sets with a manifest that is all or nothing under a kill.
"""

from ._capture import Captured, capture_inputs
from ._files import (
    AtomicOutputs,
    atomic_write,
    check_output_set,
    check_writable_dir,
    check_writable_file,
    complete_outputs,
    strict_json,
)
from ._interop import (
    from_equinox,
    from_flax_linen,
    from_flax_nnx,
    from_torch_arrays,
    state_from_flax,
    state_to_flax,
    to_equinox,
    to_flax_linen,
    to_torch_state_dict,
)
from ._load import from_torch, from_torch_layers, load, load_model, save
from .._model import RecurrentLayer, RecurrentModel
from ._sniff import check_input_file, read_npy, sniff

__all__ = [
    "capture_inputs",
    "Captured",
    "AtomicOutputs",
    "atomic_write",
    "check_writable_dir",
    "check_writable_file",
    "check_output_set",
    "complete_outputs",
    "strict_json",
    # models
    "RecurrentLayer",
    "RecurrentModel",
    "load_model",
    "save",
    "load",
    "check_input_file",
    "read_npy",
    "sniff",
    # one cell's weights
    "from_torch",
    "from_torch_layers",
    "from_torch_arrays",
    "to_torch_state_dict",
    "from_flax_linen",
    "to_flax_linen",
    "from_flax_nnx",
    "from_equinox",
    "to_equinox",
    "state_from_flax",
    "state_to_flax",
]
