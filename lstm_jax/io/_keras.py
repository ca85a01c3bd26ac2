r"""The recurrent layers of a Keras 3 model, read from its files without Keras.

Keras is never imported and ``keras.saving.load_model`` never called (it can run code from the file even with
``safe_mode=True``: CVE-2025-1550, CVE-2025-9906).  A ``.keras`` file is a zip of ``config.json`` (the
architecture, plain JSON) and ``model.weights.h5``; a ``.weights.h5`` file is that HDF5 file alone.  In the
HDF5 file each layer's variables are ``layers/<key>/cell/vars/0, 1, 2`` (kernel, recurrent kernel, bias),
``<key>`` the snake-case class name made unique in layer order (``lstm``, ``lstm_1``, …), and a
``Bidirectional`` wrapper's are under ``layers/<key>/forward_layer`` and ``backward_layer``.  Read with h5py.

Converted exactly to the PyTorch layout that :func:`lstm_jax.io.from_torch_arrays` reads:

* ``LSTM``: kernel ``(m, 4n)``, recurrent ``(n, 4n)``, bias ``(4n,)``, gate order ``i, f, c, o`` — PyTorch's
  ``i, f, g, o``: ``weight_ih = kernel.T``, ``weight_hh = recurrent.T``, ``bias_ih = bias``, ``bias_hh = 0``;
* ``GRU`` with ``reset_after=True`` (Keras 3's default, the cuDNN/PyTorch cell): kernel ``(m, 3n)`` in order
  ``z, r, h``, bias ``(2, 3n)`` = input and recurrent biases → PyTorch order ``r, z, n``; Keras's
  :math:`h_t = z\odot h_{t-1} + (1-z)\odot\tilde h` is PyTorch's.  ``reset_after=False`` is another cell
  (the reset gate before the recurrent product) and is refused;
* ``SimpleRNN``: kernel ``(m, n)``, activation ``tanh`` or ``sigmoid`` (the kind).

With ``config.json`` each layer is checked: activations must be ``tanh`` with recurrent ``sigmoid``
(anything else is refused by name), ``go_backwards`` is refused, ``use_bias=False`` gives no biases.  A bare
``.weights.h5`` has no architecture: the class is read from the key, the defaults are assumed (and said in the
model's source), and a SimpleRNN needs ``kind``.  Each Keras layer is one recurrent module named after it
(``Bidirectional`` gives the two directions); Keras records no stacking beyond the layer order, so layers are
not joined into a stack.  Keras 2 ``.h5`` files (``model_weights/…``) are a layout this module does not read.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np

from ._sniff import _refuse_size, array_budget

_CLASSES = {"LSTM": (4, "lstm"), "GRU": (3, "gru"), "SimpleRNN": (1, "simple_rnn")}
_KEY = re.compile(r"^(lstm|gru|simple_rnn|bidirectional)(?:_\d+)?$")


def _snake(name: str) -> str:
    """Keras's own snake case: ``SimpleRNN`` → ``simple_rnn``, ``LSTM`` → ``lstm``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _keys(layer_classes: list) -> list:
    """The HDF5 group key of each layer, as Keras 3 names them: snake-case class name, ``_1``, ``_2`` … on repeats."""
    seen: dict = {}
    out = []
    for cls in layer_classes:
        base = _snake(cls)
        out.append(base if base not in seen else f"{base}_{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return out


def _child(group, key: str, what: str):
    """``group[key]`` only through a hard link: HDF5 external and soft links (other files, other paths) are refused."""
    import h5py

    link = group.get(key, getlink=True)
    if link is None:
        raise ValueError(f"{what}: no {key!r} in the weights (a layout lstm_jax does not read)")
    if not isinstance(link, h5py.HardLink):
        raise ValueError(f"{what}: {key!r} is an HDF5 {type(link).__name__}; only data stored in the file itself is read")
    return group[key]


def _vars(group, what: str) -> list:
    import h5py

    v = _child(_child(group, "cell", what), "vars", what)
    for i in range(len(v)):
        ds = _child(v, str(i), what)
        if not isinstance(ds, h5py.Dataset) or ds.external or ds.is_virtual:
            raise ValueError(f"{what}: variable {i} is not a dataset stored in the file (external or virtual "
                             "storage reads other files)")
    declared = sum(int(v[str(i)].size) * v[str(i)].dtype.itemsize for i in range(len(v)))
    if declared > array_budget():  # a compressed dataset can declare far more than the file holds
        raise _refuse_size(what, declared, array_budget())
    return [np.asarray(v[str(i)], dtype=np.float64 if v[str(i)].dtype == np.float64 else np.float32)
            for i in range(len(v))]


def _torch_arrays(cls: str, arrays: list, cfg: dict, what: str) -> dict:
    G, _ = _CLASSES[cls]
    if len(arrays) not in (2, 3):
        raise ValueError(f"{what}: {len(arrays)} variables; a {cls} cell has kernel, recurrent kernel and bias")
    kernel, rec = arrays[0], arrays[1]
    n = rec.shape[0]
    if kernel.ndim != 2 or rec.shape != (n, G * n) or kernel.shape[1] != G * n:
        raise ValueError(f"{what}: kernel {kernel.shape} and recurrent kernel {rec.shape} are not a {cls}'s "
                         f"(m, {G}·n) and (n, {G}·n)")
    bias = arrays[2] if len(arrays) == 3 else None
    if cls == "GRU":
        if not cfg.get("reset_after", True):
            raise ValueError(f"{what}: GRU with reset_after=False (the reset gate before the recurrent product); "
                             "lstm_jax's GRU is the reset_after=True (PyTorch/cuDNN) cell")
        order = lambda w: np.concatenate([np.split(w, 3, axis=0)[i] for i in (1, 0, 2)], axis=0)  # noqa: E731
        out = {"weight_ih": order(kernel.T), "weight_hh": order(rec.T)}
        if bias is not None:
            if bias.shape != (2, 3 * n):
                raise ValueError(f"{what}: GRU bias {bias.shape}; reset_after=True has (2, 3·n)")
            out.update(bias_ih=order(bias[0]), bias_hh=order(bias[1]))
        return out
    out = {"weight_ih": kernel.T.copy(), "weight_hh": rec.T.copy()}
    if bias is not None:
        if bias.shape != (G * n,):
            raise ValueError(f"{what}: bias {bias.shape}; a {cls} has ({G}·n,)")
        out.update(bias_ih=bias, bias_hh=np.zeros_like(bias))
    return out


def _check_config(cls: str, cfg: dict, what: str) -> None:
    act = cfg.get("activation", "tanh")
    if cls != "SimpleRNN" and (act != "tanh" or cfg.get("recurrent_activation", "sigmoid") != "sigmoid"):
        raise ValueError(f"{what}: activation {act!r} / recurrent_activation {cfg.get('recurrent_activation')!r}; "
                         "lstm_jax's cells are tanh with sigmoid gates")
    if cls == "SimpleRNN" and act not in ("tanh", "sigmoid"):
        raise ValueError(f"{what}: SimpleRNN activation {act!r}; lstm_jax reads tanh or sigmoid")
    if cfg.get("go_backwards"):
        raise ValueError(f"{what}: go_backwards=True (a reverse-only layer) is not read; wrap it in Bidirectional")


def keras_recurrences(path, argument: str, fmt: str) -> list:
    """``[(name, rnn_kind | None, {torch state_dict key: array}, note)]`` for each recurrent layer of a Keras 3
    ``.keras`` (``fmt="keras"``) or ``.weights.h5`` (``fmt="hdf5"``) file; zip sizes are checked by the caller."""
    try:
        import h5py
    except ImportError:
        raise ValueError(f"{argument}: {path} is a Keras file; reading it needs h5py (pip install h5py)") from None
    what = f"{argument}: {str(path)!r}"
    config = None
    if fmt == "keras":
        with zipfile.ZipFile(path) as z:
            try:
                config = json.loads(z.read("config.json"))
            except (KeyError, ValueError) as e:
                raise ValueError(f"{what}: its config.json cannot be read ({e})") from None
            names = [n for n in z.namelist() if n.endswith(".weights.h5")]
            if len(names) != 1:
                raise ValueError(f"{what}: a .keras archive holds one *.weights.h5; found {len(names)}")
            weights = io.BytesIO(z.read(names[0]))
    else:
        weights = path
    out = []
    with h5py.File(weights, "r") as f:
        if "layers" not in f:
            raise ValueError(f"{what} is an HDF5 file without a layers/ group: not a Keras 3 weights file (Keras 2 "
                             ".h5 files and other HDF5 layouts are not read)")
        if config is not None:
            layers = config.get("config", {}).get("layers", [])
            if not isinstance(layers, list):
                raise ValueError(f"{what}: config.json has no list of layers (a functional or subclassed model "
                                 "with nested models is not read)")
            entries = [(l.get("class_name"), l.get("config", {})) for l in layers if isinstance(l, dict)]
            keys = _keys([c for c, _ in entries])
            note = ""
        else:
            keys = sorted((k for k in f["layers"] if _KEY.match(k)),  # layer order: lstm, lstm_1, …, lstm_10
                          key=lambda k: (k.rsplit("_", 1)[0] if k.rsplit("_", 1)[-1].isdigit() else k,
                                         int(k.rsplit("_", 1)[1]) if k.rsplit("_", 1)[-1].isdigit() else -1))
            entries = [({"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN", "bidirectional": "Bidirectional"}[
                _KEY.match(k).group(1)], {}) for k in keys]
            note = " (a .weights.h5 without its config: default activations assumed)"
        for key, (cls, cfg) in zip(keys, entries):
            name = cfg.get("name", key)
            lwhat = f"{what}: Keras {cls} layer {name!r}"
            if cls in _CLASSES:
                if config is not None:
                    _check_config(cls, cfg, lwhat)
                g = _child(f["layers"], key, lwhat)
                sd = {f"{name}.{k}_l0": a for k, a in _torch_arrays(cls, _vars(g, lwhat), cfg, lwhat).items()}
                out.append((name, _rnn_kind(cls, cfg, config is not None), sd, note))
            elif cls == "Bidirectional":
                inner = cfg.get("layer", {}) if config is not None else {}
                icls = inner.get("class_name") if inner else None
                g = _child(f["layers"], key, lwhat)
                sides = {side: _child(g, side, lwhat) for side in ("forward_layer", "backward_layer")}
                if icls is None:  # no config: the class from the kernel's width
                    rec = _vars(sides["forward_layer"], lwhat)[1]
                    icls = {4: "LSTM", 3: "GRU", 1: "SimpleRNN"}.get(rec.shape[1] // max(rec.shape[0], 1))
                if icls not in _CLASSES:
                    raise ValueError(f"{lwhat} wraps {icls!r}; lstm_jax reads LSTM, GRU and SimpleRNN")
                icfg = inner.get("config", {})
                if config is not None:
                    _check_config(icls, icfg, lwhat)
                    back = cfg.get("backward_layer") or {}
                    if back and back.get("class_name") != icls:
                        raise ValueError(f"{lwhat}: its backward layer is a {back.get('class_name')!r}, not a {icls}")
                    if back:
                        # its go_backwards=True is what makes it the backward layer
                        _check_config(icls, {**back.get("config", {}), "go_backwards": False}, f"{lwhat} (backward layer)")
                    if cfg.get("merge_mode", "concat") != "concat":
                        raise ValueError(f"{lwhat}: merge_mode {cfg.get('merge_mode')!r}; a stack of directions is "
                                         "concatenated (merge_mode='concat')")
                sd = {}
                for side, suffix in (("forward_layer", ""), ("backward_layer", "_reverse")):
                    arrays = _torch_arrays(icls, _vars(sides[side], f"{lwhat} ({side})"), icfg, lwhat)
                    sd.update({f"{name}.{k}_l0{suffix}": a for k, a in arrays.items()})
                out.append((name, _rnn_kind(icls, icfg, config is not None), sd, note))
    return out


def _rnn_kind(cls: str, cfg: dict, known: bool):
    if cls != "SimpleRNN" or not known:
        return None
    return "rnn-tanh" if cfg.get("activation", "tanh") == "tanh" else "rnn-sigmoid"
