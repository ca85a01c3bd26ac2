"""Models in: loading real recurrent models (and their inputs) from the files and objects users have.

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

Output files (atomic writes, output sets, strict JSON) are :mod:`lstm_jax.outputs`, shared by every wing.
"""

from ._capture import Captured, capture_inputs
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
