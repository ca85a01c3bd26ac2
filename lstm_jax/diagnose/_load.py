"""Reading a model file for ``lstm-jax diagnose``.

>>> REPLACE WHEN ISSUE #13 PART A LANDS: ``lstm_jax.io.load_model`` reads every supported format
(PyTorch, Flax, Equinox, lstm_jax ``.npz``).  :func:`load_model_file` already defers to it when it
exists; the fallback below reads only the ``params.npz`` that ``lstm-jax train`` writes
(``save_checkpoint``: leaves keyed by ``jax.tree_util.keystr``, e.g. ``"['cell'].W_f"``, and the
training config as JSON in ``params.npz.json``) and can then be deleted.
"""

from __future__ import annotations

import json
import pathlib
import zipfile
from typing import Optional

import numpy as np

import lstm_jax
import lstm_jax.io as lio
from lstm_jax.io import RecurrentLayer, RecurrentModel

_LSTM = ("W_f", "W_i", "W_c", "W_o", "b_f", "b_i", "b_c", "b_o")
_RNN = ("W_rec", "W_in", "b")


def load_model_file(path, *, layer: Optional[str] = None, allow_pickle: bool = False) -> RecurrentModel:
    """A :class:`lstm_jax.io.RecurrentModel` from a file (``lstm_jax.io.load_model`` when available).

    Raises:
      OSError: the file is missing or unreadable.  ValueError: its content is not a model this
      reader knows (the message says what was found and what is accepted).
    """
    load = getattr(lio, "load_model", None)
    p = pathlib.Path(path)
    if load is not None:
        try:
            return load(path, layer=layer, allow_pickle=allow_pickle)
        except ValueError:
            if not _is_train_checkpoint(p):  # lstm-jax train's own params.npz must always be readable
                raise
    if not p.is_file():
        raise FileNotFoundError(f"MODEL: {str(p)!r} does not exist or is not a file")
    if p.suffix != ".npz":
        raise ValueError(f"MODEL {str(p)!r}: this installation reads only lstm_jax .npz checkpoints "
                         "(written by lstm-jax train); PyTorch/Flax/Equinox files need lstm_jax.io.load_model")
    if layer is not None:
        raise ValueError(f"--layer {layer!r}: an lstm-jax train checkpoint holds one recurrence ('cell'); "
                         "--layer picks among several recurrent modules of a PyTorch/Flax/Equinox file")
    return _load_train_npz(p)


def _is_train_checkpoint(p: pathlib.Path) -> bool:
    try:
        with zipfile.ZipFile(p) as z:
            return p.suffix == ".npz" and any(name.startswith("['cell'].") for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _load_train_npz(p: pathlib.Path) -> RecurrentModel:
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise ValueError(f"MODEL {str(p)!r} is not a readable .npz archive ({exc})") from None
    cell = {k[len("['cell']."):]: v for k, v in arrays.items() if k.startswith("['cell'].")}
    if not cell:
        raise ValueError(f"MODEL {str(p)!r} holds {sorted(arrays)[:8]} but no \"['cell'].W_...\" leaves; expected "
                         "the params.npz written by lstm-jax train")
    config = {}
    cfg_path = pathlib.Path(str(p) + ".json")
    if cfg_path.is_file():
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(cfg_path)!r} is not valid JSON ({exc})") from None
    if set(cell) <= set(_LSTM) and "W_f" in cell:
        kind, params = "lstm", lstm_jax.LSTMParams(**{k: cell.get(k) for k in _LSTM})
        n = params.W_f.shape[0]
        m = params.W_f.shape[1] - n
    elif set(cell) <= set(_RNN) and "W_rec" in cell:
        kind = config.get("model")
        if kind not in ("rnn-tanh", "rnn-sigmoid"):
            raise ValueError(f"MODEL {str(p)!r} is a plain RNN, but its activation is unknown: {str(cfg_path)!r} "
                             "(written beside it by lstm-jax train, with \"model\": \"rnn-tanh\" or \"rnn-sigmoid\") "
                             "is missing or says otherwise")
        params = lstm_jax.RNNParams(cell["W_rec"], cell["W_in"], cell.get("b"))
        n, m = params.W_in.shape
    else:
        raise ValueError(f"MODEL {str(p)!r}: cell leaves {sorted(cell)} are neither an LSTM {list(_LSTM[:4])} "
                         f"nor an RNN {list(_RNN[:2])}")
    if m < 1 or any(v.ndim not in (1, 2) for v in cell.values()):
        raise ValueError(f"MODEL {str(p)!r}: cell leaves have inconsistent shapes {({k: v.shape for k, v in cell.items()})}")
    layer = RecurrentLayer("layer0.forward", kind, params, 0, False)
    return RecurrentModel((layer,), kind, int(n), int(m), 1, 1, f"lstm-jax train checkpoint {p.name} ({kind})")
