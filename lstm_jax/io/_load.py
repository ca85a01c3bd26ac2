r"""Load a recurrent model from whatever a user has: a live module, a ``state_dict``, variables or a file.

:func:`load_model` accepts

* a PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (tanh; any ``num_layers``, ``bidirectional``), one of
  their cells, or any ``nn.Module`` that contains them (found by ``named_modules``);
* a PyTorch ``state_dict`` (keys ``[prefix.]weight_ih_l{k}[_reverse]`` ...; the kind follows from the
  shapes: ``4n`` rows LSTM, ``3n`` GRU, ``n`` plain RNN, taken as tanh unless ``kind="rnn-sigmoid"``),
  also nested in a checkpoint dict (e.g. ``{"model": state_dict, "optimizer": ...}``);
* a ``.pt`` / ``.pth`` file: a zip of tensors in dicts (a ``state_dict`` or checkpoint dict) is read by the
  restricted unpickler of :mod:`lstm_jax.io._torchscript` (PyTorch not needed, half precision promoted to
  float32 and said in the source); anything else by ``torch.load(weights_only=True)``; a file that pickles a
  whole module loads only with ``allow_pickle=True`` (unpickling runs code from the file: trusted files only);
  a plain RNN ``state_dict`` needs ``kind`` (its nonlinearity is not in the file; ReLU RNNs are refused);
* Flax variables of ``linen``/``nnx`` ``LSTMCell``/``OptimizedLSTMCell``/``GRUCell`` anywhere in a
  dict tree (``{'params': ...}``, ``nnx.state(model)``, ``nnx.to_pure_dict(...)``), an ``nnx.Module``
  containing cells, or the same dicts serialised by ``flax.serialization`` (msgpack ``bytes`` or file);
* a TorchScript archive (``torch.jit.save`` of a scripted or traced module, e.g. ``.jit``): its weights are
  read without running any of its code (:mod:`lstm_jax.io._torchscript`), named as in the module's
  ``state_dict``;
* an ONNX model's ``LSTM``/``GRU``/``RNN`` operators (the ``onnx`` package; :mod:`lstm_jax.io._onnx`: gate
  orders converted exactly, chained operators read as one stack, unsupported options refused by name);
* a Keras 3 ``.keras`` or ``.weights.h5`` file's ``LSTM``/``GRU``/``SimpleRNN``/``Bidirectional`` layers, read
  from its JSON and HDF5 with h5py — Keras is never imported (:mod:`lstm_jax.io._keras`);
* a safetensors file whose names are a torch ``state_dict``'s (read by the ``safetensors`` package: a JSON
  header plus raw bytes, no code runs; only the recurrent tensors are read, after their declared sizes are
  checked; float16/bfloat16 weights are promoted to float32, bfloat16 through torch since NumPy has none);
* an Equinox module containing ``eqx.nn.LSTMCell`` / ``GRUCell`` (from Python: an Equinox file needs
  its skeleton to deserialise, so build the skeleton, ``eqx.tree_deserialise_leaves``, and pass it);
* lstm_jax's own ``.npz`` files (:func:`save`) and the ``params.npz`` that ``lstm-jax train`` writes
  (keys are pytree paths such as ``['cell'].W_f``; the readout ``W_out``/``b_out`` is ignored; a plain
  RNN's activation is read from the ``log.json`` that ``lstm-jax train`` writes beside it, or given as ``kind``);
* an :class:`~lstm_jax.LSTMParams` / :class:`~lstm_jax.GRUParams` (or :class:`~lstm_jax.RNNParams` with
  ``kind``), or a :class:`RecurrentModel` (returned as is).

**Files are checked before they are read** (``lstm_jax/io/_sniff.py``): a regular file (never a folder,
FIFO or device), of bounded size, its format taken from its first bytes rather than its name (a
file of a format lstm_jax does not read is named as such and refused with the list of
accepted formats), every declared array size summed against a stated limit before any array is
built.  Weights are checked like inputs: NaN/inf weights and tensors of the wrong shape are refused
naming the tensor; a ``state_dict`` that lacks a tensor torch itself would require is refused.

Several recurrent modules/cells in one source: ``layer=NAME`` picks one; the error lists the names.
Flax and Equinox cells are single recurrences (1 layer, 1 direction): those libraries stack them in
user code whose wiring a file does not record.

**lstm_jax ``.npz`` format** (version 1, written by :func:`save`): one array per parameter, named
``layer{k}.{forward|reverse}.{field}`` (fields of the kind's NamedTuple; ``None`` biases absent), and
``__lstm_jax__``, a ``uint8`` array holding UTF-8 JSON ``{"format": "lstm_jax.model", "version": 1,
"kind", "n", "m", "num_layers", "directions", "source", "arrays": {name: {"shape", "dtype"}}}``.  No
pickled objects: :func:`load` reads with ``allow_pickle=False`` and checks every array against the
declared shape and dtype.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import sys
import zipfile
from collections.abc import Mapping
from typing import Any, Callable, Optional

import jax
import numpy as np

import lstm_jax as lj
from lstm_jax import GRUParams, LSTMParams, RNNParams

from ..outputs import MANIFEST, atomic_write, check_output_set
from ._interop import (
    _flax_gate_fns,
    _flax_gru,
    _flax_lstm,
    _nnx_pure,
    _torch_recurrent_kind,
    flax_cell_kind,
    from_equinox,
    from_torch_arrays,
)
from .._model import RecurrentLayer, RecurrentModel
from ._keras import keras_recurrences
from ._onnx import onnx_recurrences
from ._torchscript import torchscript_tensors
from ._sniff import (
    MAX_DEPTH,
    _refuse_size,
    array_budget,
    check_input_file,
    check_tensor_sizes,
    check_zip_declared_size,
    describe,
    read_npz,
    sniff,
    unsupported_error,
)

FORMAT, VERSION, HEADER = "lstm_jax.model", 1, "__lstm_jax__"
_PARAMS = {kind: cell.params_type for kind, cell in lj.CELLS.items()}  # the registry's kinds
#: lstm_jax parameter types whose kind the type alone says (all but the RNN's, whose activation it does not record)
_KIND_OF_TYPE = {cell.params_type: kind for kind, cell in lj.CELLS.items() if cell.params_type is not RNNParams}
_OWN_TYPES = (*_KIND_OF_TYPE, RNNParams)
_TORCH_KEY = re.compile(
    r"^(?:(?P<prefix>.*)\.)?(?P<what>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)(?:_l(?P<k>\d+))?(?P<rev>_reverse)?$"
)
_ACCEPTED = (
    "a torch nn.LSTM/GRU/RNN (or a module containing one), a state_dict, a .pt/.pth/.npz/.msgpack file path, "
    "Flax variables (dict or msgpack bytes), an nnx or Equinox module containing LSTM/GRU cells, "
    "LSTMParams/GRUParams/RNNParams, or a RecurrentModel"
)


# --------------------------------------------------------------------------- assembling a model


def _model(records: list, source: str, kind: Optional[str] = None) -> RecurrentModel:
    """``records``: ``(depth, reverse, kind, params)``; validated into a :class:`RecurrentModel`."""
    records = sorted(records, key=lambda r: (r[0], r[1]))
    kinds = {r[2] for r in records}
    if len(kinds) != 1:
        raise ValueError(f"{source}: layers of different kinds {sorted(kinds)} in one model")
    k0 = kinds.pop()
    if kind is not None and kind != k0:
        raise ValueError(f"kind={kind!r} but {source} holds a {k0} model")
    depths = sorted({r[0] for r in records})
    if depths != list(range(len(depths))):
        raise ValueError(f"{source}: layer depths {depths} are not 0..K-1")
    directions = 2 if any(r[1] for r in records) else 1
    layers, n0, m0, out0 = [], None, None, None
    for depth, reverse, knd, params in records:
        name = f"layer{depth}.{'reverse' if reverse else 'forward'}"
        params, n, m = lj.check_recurrent_params(knd, params, f"{source} {name}")
        _check_finite_weights(params, f"{source} {name}")
        if n0 is None:
            n0, m0, out0 = n, m, lj.cell_of(knd).output_width(params)  # out0: p for a projected LSTM
        if n != n0:
            raise ValueError(f"{source}: {name} has hidden size {n}, layer0 has {n0}")
        want = m0 if depth == 0 else directions * out0
        if m != want:
            raise ValueError(f"{source}: {name} reads inputs of size {m} but {want} are expected "
                             f"({'the model input' if depth == 0 else f'{directions} x hidden size of the layer below'})")
        layers.append(RecurrentLayer(name, knd, params, depth, bool(reverse)))
    for depth in depths:
        if [r.reverse for r in layers if r.layer == depth] != ([False, True] if directions == 2 else [False]):
            raise ValueError(f"{source}: depth {depth} lacks a direction (a bidirectional model needs both)")
    return RecurrentModel(tuple(layers), k0, n0, m0, len(depths), directions, source)


def _check_finite_weights(params, where: str) -> None:
    """Refuse NaN/inf weights, naming the parameter: no diagnosis of such a model means anything."""
    for field, value in params._asdict().items():
        if value is None:
            continue
        a = np.asarray(value)
        bad = ~np.isfinite(a)
        if bad.any():
            raise ValueError(f"{where}: parameter {field} {a.shape} holds {int(np.isnan(a).sum())} NaN and "
                             f"{int(np.isinf(a).sum())} inf values; a model with non-finite weights is not read")


def _torch_records(group: dict, kind: Optional[str], where: str) -> list:
    """``group``: ``(what, k, reverse) -> array`` of one torch recurrent module → records."""
    cells = sorted({(k, rev) for _, k, rev in group})
    records = []
    for k, rev in cells:
        get = lambda what: group.get((what, k, rev))  # noqa: E731
        suffix = f"_l{k}{'_reverse' if rev else ''}"
        if get("weight_ih") is None or get("weight_hh") is None:
            raise ValueError(f"{where}: layer {k}{' reverse' if rev else ''} lacks weight_ih{suffix} or weight_hh{suffix}")
        if (get("bias_ih") is None) != (get("bias_hh") is None):
            have, lack = ("bias_ih", "bias_hh") if get("bias_hh") is None else ("bias_hh", "bias_ih")
            raise ValueError(f"{where}: has {have}{suffix} but no {lack}{suffix}; a torch recurrent module with "
                             f"bias=True has both (bias=False neither), and torch refuses such a state_dict too")
        knd, params = from_torch_arrays(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), kind=kind,
                                        weight_hr=get("weight_hr"))
        records.append((k, rev, knd, params))
    return records


def _torch_groups(flat: dict) -> dict:
    """Flat ``key -> array`` → ``prefix -> {(what, k, reverse): array}`` for torch recurrent keys."""
    groups: dict = {}
    for key, value in flat.items():
        mt = _TORCH_KEY.match(str(key))
        if mt is None or not hasattr(value, "shape"):
            continue
        prefix = mt["prefix"] or ""
        groups.setdefault(prefix, {})[(mt["what"], int(mt["k"] or 0), bool(mt["rev"]))] = value
    return groups


# --------------------------------------------------------------------------- finding recurrences


class _Found:
    """Candidates ``name -> builder()``, in discovery order."""

    def __init__(self):
        self.items: dict[str, Callable[[], RecurrentModel]] = {}

    def add(self, name: str, build: Callable[[], RecurrentModel]) -> None:
        self.items.setdefault(name, build)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _walk_mapping(tree: Mapping, path: str, found: _Found, kind, origin: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"the source nests dicts deeper than {MAX_DEPTH} levels (at {path[:80]!r}...); not a checkpoint")
    if _is_instance_of(tree, "flax.nnx", "State") and hasattr(sys.modules["flax.nnx"], "to_pure_dict"):
        tree = sys.modules["flax.nnx"].to_pure_dict(tree)  # Variables -> arrays
    fk = flax_cell_kind(tree)
    if fk is not None:
        build = _flax_lstm if fk == "lstm" else _flax_gru
        label = f"flax {'LSTM' if fk == 'lstm' else 'GRU'} cell" + (f" '{path}'" if path else "") + origin
        found.add(path, lambda: _model([(0, False, fk, build(tree))], label, kind))
        return
    flat = {}
    for key, value in tree.items():
        if isinstance(value, _OWN_TYPES):
            _add_params(_join(path, key), value, found, kind, origin)
        elif isinstance(value, Mapping):
            _walk_mapping(value, _join(path, key), found, kind, origin, depth + 1)
        else:
            flat[str(key)] = value
    for prefix, group in _torch_groups(flat).items():
        name = _join(path, prefix) if prefix else path
        label = "torch state_dict" + (f" '{name}'" if name else "") + origin
        found.add(name, lambda group=group, label=label: _model(_torch_records(group, kind, label), label, kind))


def _add_params(name, params, found, kind, origin):
    if type(params) in _KIND_OF_TYPE:
        knd = _KIND_OF_TYPE[type(params)]
    else:
        if kind not in ("rnn-tanh", "rnn-sigmoid"):
            raise ValueError(f"RNNParams{f' at {name!r}' if name else ''} do not say their activation: pass "
                             f"kind='rnn-sigmoid' or kind='rnn-tanh'")
        knd = kind
    label = f"lstm_jax {type(params).__name__}" + (f" '{name}'" if name else "") + origin
    found.add(name, lambda: _model([(0, False, knd, params)], label, kind))


def _walk_torch(module, found: _Found, kind, origin: str) -> None:
    import torch

    for name, sub in module.named_modules():
        if isinstance(sub, (torch.nn.RNNBase, torch.nn.RNNCellBase)):
            def build(sub=sub, name=name):
                knd = _torch_recurrent_kind(sub)
                label = f"torch nn.{type(sub).__name__}" + (f" '{name}'" if name else "") + origin
                if kind is not None and kind != knd:
                    raise ValueError(f"kind={kind!r} but {label} is a {knd} module")
                return _model(_torch_records(_torch_groups(sub.state_dict())[""], knd, label), label, kind)

            found.add(name, build)


def _walk_nnx(module, found: _Found, kind, origin: str) -> None:
    from flax import nnx

    cells = tuple(c for c in (getattr(nnx, "LSTMCell", None), getattr(nnx, "OptimizedLSTMCell", None),
                              getattr(nnx, "GRUCell", None)) if c is not None)
    for path, node in nnx.iter_graph(module):
        if isinstance(node, cells):
            name = ".".join(map(str, path))

            def build(node=node, name=name):
                _flax_gate_fns(node, f"nnx.{type(node).__name__} {name!r}")
                pure = _nnx_pure(node)
                fk = flax_cell_kind(pure)
                label = f"flax nnx.{type(node).__name__}" + (f" '{name}'" if name else "") + origin
                return _model([(0, False, fk, (_flax_lstm if fk == "lstm" else _flax_gru)(pure))], label, kind)

            found.add(name, build)


def _walk_equinox(module, found: _Found, kind, origin: str) -> None:
    import equinox as eqx

    cells = (eqx.nn.LSTMCell, eqx.nn.GRUCell)
    leaves = jax.tree_util.tree_flatten_with_path(module, is_leaf=lambda x: isinstance(x, cells))[0]
    for path, leaf in leaves:
        if isinstance(leaf, cells):
            name = jax.tree_util.keystr(path).lstrip(".")
            knd = "lstm" if isinstance(leaf, eqx.nn.LSTMCell) else "gru"
            label = f"equinox {type(leaf).__name__}" + (f" '{name}'" if name else "") + origin
            found.add(name, lambda leaf=leaf, knd=knd, label=label: _model([(0, False, knd, from_equinox(leaf))], label, kind))


def _is_instance_of(obj, module_name: str, attr_path: str) -> bool:
    mod = sys.modules.get(module_name)
    if mod is None:
        return False
    cls = mod
    for part in attr_path.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            return False
    return isinstance(obj, cls)


def _describe(obj) -> str:
    shape = getattr(obj, "shape", None)
    return f"{type(obj).__module__}.{type(obj).__qualname__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


def _collect(source, found: _Found, kind, origin: str, argument: str, allow_pickle: bool) -> None:
    if _is_instance_of(source, "torch", "nn.Module"):
        _walk_torch(source, found, kind, origin)
    elif _is_instance_of(source, "torch", "Tensor"):
        raise TypeError(f"{argument} is a torch tensor of shape {tuple(source.shape)}, not a model; expected {_ACCEPTED}")
    elif _is_instance_of(source, "flax.nnx", "Module"):
        _walk_nnx(source, found, kind, origin)
    elif _is_instance_of(source, "equinox", "Module"):
        _walk_equinox(source, found, kind, origin)
    elif isinstance(source, _OWN_TYPES):
        _add_params("", source, found, kind, origin)
    elif isinstance(source, Mapping):
        _walk_mapping(source, "", found, kind, origin)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        _walk_mapping(_msgpack(bytes(source), "bytes"), "", found, kind, " from msgpack bytes")
    elif isinstance(source, (str, os.PathLike)):
        _collect_file(pathlib.Path(source), found, kind, argument, allow_pickle)
    else:
        raise TypeError(f"{argument} is {_describe(source) if source is not None else 'None'}; expected {_ACCEPTED}")


# --------------------------------------------------------------------------- files


def _msgpack(data: bytes, what: str) -> Mapping:
    try:
        from flax import serialization
    except ImportError as e:  # pragma: no cover - flax is installed with the compare extra
        raise ModuleNotFoundError(f"reading msgpack ({what}) needs flax: pip install flax") from e
    try:
        tree = serialization.msgpack_restore(data)
    except RecursionError:
        raise ValueError(f"{what} nests msgpack maps too deeply to be Flax variables") from None
    except Exception as e:  # noqa: BLE001 - msgpack raises many types for garbage
        raise ValueError(f"{what} is not a flax.serialization msgpack file ({type(e).__name__}: {e})") from None
    if not isinstance(tree, Mapping):
        raise ValueError(f"{what} holds a msgpack {type(tree).__name__}, not a Flax variables dict")
    return tree


def _torch_load(path: pathlib.Path, allow_pickle: bool, argument: str):
    try:
        import torch
    except ImportError as e:
        raise ModuleNotFoundError(f"reading {path} needs PyTorch: pip install torch (or lstm-jax[compare])") from e
    import pickle

    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle, mmap=sniff(path) == "torch-zip")
    except pickle.UnpicklingError as e:
        if allow_pickle:
            raise ValueError(f"{argument}: {path} is not a readable PyTorch checkpoint ({_first_line(e)})") from None
        raise ValueError(
            f"{argument}: {path} holds pickled Python objects (e.g. a whole module saved with torch.save(model)), "
            f"which are not loaded by default because unpickling runs code from the file. If you trust it, pass "
            f"allow_pickle=True (CLI: --allow-pickle); or save model.state_dict() instead"
        ) from None
    except (AttributeError, ImportError) as e:  # the pickled class is not importable here
        raise ValueError(
            f"{argument}: {path} pickles an object whose class cannot be imported here ({_first_line(e)}); a whole "
            f"module loads only where its class is importable. Save model.state_dict() with torch.save and pass "
            f"that file instead") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, IndexError, ValueError) as e:
        if isinstance(e, (FileNotFoundError, PermissionError)):
            raise
        raise ValueError(f"{argument}: {path} is not a readable PyTorch checkpoint (truncated or corrupt: "
                         f"{type(e).__name__}: {_first_line(e)})") from None
    check_tensor_sizes(obj, f"{argument} {str(path)!r}")
    return obj


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _collect_file(path: pathlib.Path, found: _Found, kind, argument: str, allow_pickle: bool) -> None:
    path = check_input_file(path, argument)
    origin = f" from {path.name}"
    fmt = sniff(path)
    if fmt == "npz":
        _check_set(path)
        _collect_npz(path, found, kind, argument)
    elif fmt in ("torch-zip", "pickle"):
        if fmt == "torch-zip":
            check_zip_declared_size(path, argument)
            plain = None if allow_pickle else _plain_torch_zip(path, argument)
            if plain is not None:  # tensors in dicts: read as a TorchScript archive's weights, no torch needed
                _walk_mapping(plain[0], "", found, kind, origin + _promoted_note(plain[1]))
                return
        else:  # a legacy pickle is read whole before its tensors can be sized
            _check_read_whole(path, argument)
        obj = _torch_load(path, allow_pickle, argument)
        if obj is None or not (_is_instance_of(obj, "torch", "nn.Module") or isinstance(obj, Mapping)):
            raise ValueError(f"{argument}: {path} holds {_describe(obj)}; expected a state_dict, a checkpoint dict "
                             f"or an nn.Module")
        _collect(obj, found, kind, origin, argument, allow_pickle)
    elif fmt == "msgpack":
        _check_read_whole(path, argument)
        _walk_mapping(_msgpack(path.read_bytes(), str(path)), "", found, kind, origin)
    elif fmt == "safetensors":
        arrays, promoted = _safetensors(path, argument)
        _walk_mapping(arrays, "", found, kind, origin + _promoted_note(promoted))
    elif fmt in ("onnx", "keras", "hdf5"):
        if fmt == "keras":
            check_zip_declared_size(path, argument)
        else:  # a protobuf is parsed whole; an HDF5 file is bounded by its size too
            _check_read_whole(path, argument)
        if fmt == "onnx":
            modules = [(name, k, sd, "ONNX", _promoted_note(promoted))
                       for name, k, sd, promoted in onnx_recurrences(path, argument)]
        else:
            modules = [(name, k, sd, "Keras", note) for name, k, sd, note in keras_recurrences(path, argument, fmt)]
        for name, rnn_kind, sd, lib, note in modules:
            label = f"{lib} {name!r}{origin}{note}"
            for group in _torch_groups(sd).values():
                found.add(name, lambda group=group, label=label, k=kind or rnn_kind: _model(
                    _torch_records(group, k, label), label, k))
    elif fmt == "torchscript":
        check_zip_declared_size(path, argument)
        arrays, promoted = torchscript_tensors(path, argument)
        _walk_mapping(arrays, "", found, kind, origin + _promoted_note(promoted))
    else:
        raise unsupported_error(path, argument, fmt)


def _plain_torch_zip(path: pathlib.Path, argument: str):
    """The recurrent tensors of a ``torch.save`` zip that holds only tensors in (nested) dicts -- a ``state_dict`` or
    a checkpoint dict, what nearly every ``.pt`` is -- read by the restricted unpickler of
    :mod:`lstm_jax.io._torchscript` (the same zip layout: ``<name>/data.pkl`` plus raw storages), so neither PyTorch
    nor its import time (seconds) is needed; ``(arrays, promoted)``, or ``None`` when the file holds anything that
    unpickler refuses (other globals, no recurrent tensors, a layout it does not read), which then goes through
    ``torch.load(weights_only=True)`` and its messages.  Names are the same as :func:`_walk_mapping` gives the
    ``torch.load`` result: ``{"model": {"rnn.weight_ih_l0": ...}}`` is ``model.rnn``."""
    try:
        return torchscript_tensors(path, argument)
    except ValueError:
        return None


def _promoted_note(promoted) -> str:
    """`` (float16 weights promoted to float32)`` for a model's source, or ``""``."""
    return f" ({' and '.join(sorted(promoted))} weights promoted to float32)" if promoted else ""


#: bytes per element of the safetensors dtypes (the format's own names)
_ST_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _safetensors(path: pathlib.Path, argument: str) -> dict:
    """The recurrent tensors of a safetensors file (names as a torch ``state_dict``), as float arrays, and the
    half-precision dtypes that were promoted.

    Read with the ``safetensors`` package (no code runs: the format is a JSON header plus raw bytes).  Only the
    tensors named like a torch recurrent module's (``weight_ih_l0`` …) are read, after their declared sizes are
    checked against :func:`~lstm_jax.io._sniff.array_budget`.  float16 and bfloat16 weights are promoted to
    float32 (NumPy has no bfloat16, so those are read through PyTorch when it is installed).
    """
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise ValueError(f"{argument}: {path} is a safetensors file; reading it needs the safetensors package "
                         "(pip install safetensors)") from None
    try:
        with safe_open(str(path), framework="numpy") as f:
            wanted = [k for k in f.keys() if _TORCH_KEY.match(k)]
            total, dtypes = 0, {}
            for k in wanted:
                sl = f.get_slice(k)
                dtypes[k] = sl.get_dtype()
                if dtypes[k] not in ("F64", "F32", "F16", "BF16"):
                    raise ValueError(f"{argument}: {path}: tensor {k!r} has dtype {dtypes[k]}; recurrent weights are "
                                     "floating point (F64, F32, F16 or BF16)")
                total += int(np.prod(sl.get_shape(), dtype=np.int64)) * _ST_BYTES[dtypes[k]]
            budget = array_budget()
            if total > budget:
                raise _refuse_size(f"{argument}: {path}: its recurrent tensors", total, budget)
            out = {k: f.get_tensor(k).astype(np.float64 if dtypes[k] == "F64" else np.float32)
                   for k in wanted if dtypes[k] != "BF16"}
    except SafetensorError as e:
        raise ValueError(f"{argument}: {path} is not a readable safetensors file ({_first_line(e)})") from None
    bf16 = [k for k in wanted if dtypes[k] == "BF16"]
    if bf16:
        try:
            import torch  # noqa: F401  (safetensors' NumPy reader has no bfloat16)
        except ImportError:
            raise ValueError(f"{argument}: {path} holds bfloat16 weights ({bf16[0]!r} …), which NumPy cannot hold; "
                             "install torch to read them (pip install torch)") from None
        with safe_open(str(path), framework="pt") as f:
            out.update({k: f.get_tensor(k).float().numpy() for k in bf16})
    names = {"F16": "float16", "BF16": "bfloat16"}
    return out, {names[d] for d in dtypes.values() if d in names}


def _check_read_whole(path: pathlib.Path, argument: str) -> None:
    """A format read into memory whole (msgpack, legacy pickle) is bounded by the array budget by its file size."""
    size, budget = path.stat().st_size, array_budget()
    if size > budget:
        raise ValueError(f"{argument}: {str(path)!r} has {size / 2**30:.2f} GiB and is read whole; at most "
                         f"{budget / 2**30:.2f} GiB are read (the smaller of 2 GiB and half the free memory)")


def _check_set(path: pathlib.Path) -> None:
    """A file published in an output set (``manifest.json`` beside it) must be the one published."""
    if (path.parent / MANIFEST).is_file() or (path.parent / f".{MANIFEST}.pending").is_file():
        check_output_set(path.parent)  # ValueError for a mixed or edited set


_FIELDS = {f: kind for kind, cls in (("lstm", LSTMParams), ("gru", GRUParams), ("rnn", RNNParams)) for f in cls._fields}


def _collect_npz(path: pathlib.Path, found: _Found, kind, argument: str) -> None:
    arrays = read_npz(path, argument)
    if HEADER in arrays:
        model = _from_own_npz(path, arrays)
        if kind is not None and kind != model.kind:
            raise ValueError(f"kind={kind!r} but {path} holds a {model.kind} model")
        found.add("", lambda: model)
        return
    # lstm-jax train's params.npz: pytree paths such as "['cell'].W_f" (plus the readout, ignored)
    groups: dict = {}
    for key, value in arrays.items():
        prefix, _, field = key.rpartition(".")
        if field in _FIELDS:
            groups.setdefault(prefix, {})[field] = value
    if not groups:
        raise ValueError(f"{path}: an .npz without lstm_jax model arrays (found {sorted(arrays)[:8]}); expected a "
                         f"file written by lstm_jax.io.save or by lstm-jax train (params.npz)")
    for prefix, fields in groups.items():
        name = re.sub(r"\['([^']*)'\]", r".\1", prefix).strip(".")
        knd = {"W_f": "lstm", "W_r": "gru", "W_rec": "rnn"}.get(next((f for f in ("W_f", "W_r", "W_rec") if f in fields), ""), None)
        if knd is None:
            raise ValueError(f"{path}: arrays {sorted(fields)} under {prefix!r} are not a whole LSTM/GRU/RNN")
        if knd == "rnn":
            knd = kind or _train_rnn_kind(path)
            if knd not in ("rnn-tanh", "rnn-sigmoid"):
                raise ValueError(f"{path} holds a plain RNN whose activation the file does not record (no log.json "
                                 f"from lstm-jax train beside it): pass kind='rnn-sigmoid' or kind='rnn-tanh'")
        cls = _PARAMS[knd]
        params = cls(**{f: fields.get(f) for f in cls._fields})
        label = f"lstm-jax train checkpoint{f' {name!r}' if name else ''} from {path.name}"
        found.add(name, lambda knd=knd, params=params, label=label: _model([(0, False, knd, params)], label, kind))


def _train_rnn_kind(path: pathlib.Path) -> Optional[str]:
    """The RNN activation of an ``lstm-jax train`` checkpoint: from the ``log.json`` written beside it
    (``config.model``: ``rnn-tanh``, ``rnn-sigmoid``, or ``rnn-floss`` = a tanh RNN trained with gradient
    flossing) or, for files of earlier versions, from ``params.npz.json``."""
    for side, pick in ((path.parent / "log.json", lambda d: d.get("config", {}).get("model")),
                       (pathlib.Path(str(path) + ".json"), lambda d: d.get("model"))):
        try:
            doc = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        model = pick(doc) if isinstance(doc, dict) else None
        if isinstance(model, str):
            return {"rnn-floss": "rnn-tanh"}.get(model, model)
    return None


# --------------------------------------------------------------------------- lstm_jax's own format


#: the most layers an lstm_jax model file may declare.
MAX_LAYERS = 1024


def _header_error(path, what: str) -> ValueError:
    return ValueError(f"{path}: the {HEADER} header {what}; expected the lstm_jax.io.save format (lstm_jax.io module "
                      f"docstring)")


def _check_header(path, header) -> dict:
    """Validate the JSON header of an lstm_jax ``.npz`` against its schema before anything is built from it."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: header format is {header.get('format') if isinstance(header, dict) else header!r}, "
                         f"expected {FORMAT!r}")
    if header.get("version") != VERSION:
        raise ValueError(f"{path}: format version {header.get('version')!r}; this lstm_jax reads version {VERSION}")
    missing = [k for k in ("kind", "n", "m", "num_layers", "directions", "arrays") if k not in header]
    if missing:
        raise _header_error(path, f"lacks {missing}")
    if header["kind"] not in _PARAMS:
        raise ValueError(f"{path}: kind {header['kind']!r} is not one of {tuple(_PARAMS)}")
    for key, hi in (("n", 10**6), ("m", 10**6), ("num_layers", MAX_LAYERS), ("directions", 2)):
        v = header[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise _header_error(path, f"gives {key} = {v!r}; expected an integer in 1..{hi}")
    declared = header["arrays"]
    if not isinstance(declared, dict):
        raise _header_error(path, f"gives arrays as a {type(declared).__name__}; expected a dict name -> {{shape, dtype}}")
    for name, spec in declared.items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
                or not isinstance(spec.get("dtype"), str)):
            raise _header_error(path, f"declares array {name!r} as {spec!r}; expected {{'shape': [ints >= 0], 'dtype': str}}")
    return header


def _from_own_npz(path, arrays: dict) -> RecurrentModel:
    try:
        header = json.loads(bytes(arrays.pop(HEADER).astype(np.uint8)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: unreadable {HEADER} header ({type(e).__name__}: {e})") from None
    header = _check_header(path, header)
    declared = header["arrays"]
    missing = sorted(set(declared) - set(arrays))
    extra = sorted(set(arrays) - set(declared))
    if missing or extra:
        raise ValueError(f"{path}: arrays {missing} declared but absent, {extra} present but undeclared")
    for name, spec in declared.items():
        a = arrays[name]
        if list(a.shape) != list(spec["shape"]) or str(a.dtype) != spec["dtype"]:
            raise ValueError(f"{path}: array {name!r} has shape {a.shape} dtype {a.dtype}, but the file declares "
                             f"shape {tuple(spec['shape'])} dtype {spec['dtype']}")
    kind = header["kind"]
    cls = _PARAMS[kind]
    layer_names = {f"layer{d}.{'reverse' if r else 'forward'}" for d in range(header["num_layers"])
                   for r in range(header["directions"])}
    stray = sorted({name.rpartition(".")[0] for name in arrays} - layer_names)
    if stray:
        raise ValueError(f"{path}: arrays of {stray} do not belong to the {header['num_layers']} layer(s) x "
                         f"{header['directions']} direction(s) the header declares")
    records = []
    for depth in range(header["num_layers"]):
        for rev in range(header["directions"]):
            pre = f"layer{depth}.{'reverse' if rev else 'forward'}."
            if not any(name.startswith(pre) for name in arrays):
                raise ValueError(f"{path}: the header declares {header['num_layers']} layer(s) x {header['directions']} "
                                 f"direction(s) but the file has no arrays for {pre[:-1]}")
            params = cls(**{f: (jax.numpy.asarray(arrays[pre + f]) if pre + f in arrays else None) for f in cls._fields})
            records.append((depth, bool(rev), kind, params))
    model = _model(records, str(header.get("source") or f"lstm_jax file {path.name}"))
    for key in ("n", "m"):
        if getattr(model, key) != header.get(key):
            raise ValueError(f"{path}: the arrays give {key} = {getattr(model, key)} but the header declares {header.get(key)}")
    return model


def save(path: str | os.PathLike, model: Any, *, kind: Optional[str] = None) -> pathlib.Path:
    """Write ``model`` to ``path`` in lstm_jax's ``.npz`` format (module docstring), atomically.

    ``model`` is anything :func:`load_model` accepts in memory (a :class:`RecurrentModel`, params, a torch
    module, ...).  Returns the path written.
    """
    model = load_model(model, kind=kind, argument="model")
    arrays, declared = {}, {}
    for rec in model.layers:
        for field, value in rec.params._asdict().items():
            if value is not None:
                a = np.asarray(value)
                arrays[f"{rec.name}.{field}"] = a
                declared[f"{rec.name}.{field}"] = {"shape": list(a.shape), "dtype": str(a.dtype)}
    header = {"format": FORMAT, "version": VERSION, "kind": model.kind, "n": model.n, "m": model.m,
              "num_layers": model.num_layers, "directions": model.directions, "source": model.source,
              "arrays": declared}
    arrays[HEADER] = np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = pathlib.Path(path)
    atomic_write(path, buf.getvalue())
    return path


def load(path: str | os.PathLike) -> RecurrentModel:
    """Read a model written by :func:`save`, checking every array against the shape and dtype the file declares.

    Raises:
      OSError: the file is missing or unreadable.  ValueError: not an lstm_jax model file, corrupt or
      truncated, or an array that disagrees with the header.
    """
    path = check_input_file(path, "path")
    fmt = sniff(path)
    if fmt not in ("npz", "zip", "broken-zip"):
        raise ValueError(f"path: {str(path)!r} is {describe(fmt)}; expected an .npz file written by lstm_jax.io.save")
    arrays = read_npz(path, "path")
    if HEADER not in arrays:
        raise ValueError(f"{path}: no {HEADER} header: not a file written by lstm_jax.io.save "
                         f"(for other checkpoints use lstm_jax.io.load_model)")
    return _from_own_npz(path, arrays)


# --------------------------------------------------------------------------- front door


def load_model(
    source: Any,
    *,
    layer: Optional[str] = None,
    allow_pickle: bool = False,
    kind: Optional[str] = None,
    argument: str = "source",
) -> RecurrentModel:
    """Read a recurrent model from ``source`` (anything listed in the module docstring).

    Args:
      source: a module, state_dict, variables dict, msgpack bytes, file path, params or model.
      layer: the name of the recurrent module / cell to take when ``source`` holds several (the error
        lists the names).
      allow_pickle: let ``torch.load`` unpickle whole modules (runs code from the file; trusted files only).
      kind: ``"lstm"``, ``"gru"``, ``"rnn-tanh"`` or ``"rnn-sigmoid"``: required for a plain RNN whose
        activation the source does not record; otherwise checked against what is found.
      argument: the argument name used in error messages.

    Returns:
      a :class:`RecurrentModel` (layers bottom to top, forward before reverse).

    Raises:
      TypeError / ValueError: what was found and what is accepted.  OSError: missing/unreadable files.
    """
    if kind is not None and kind not in _PARAMS:
        raise ValueError(f"kind must be one of {tuple(_PARAMS)} or None, got {kind!r}")
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"layer must be the name of a recurrent module (str), got {type(layer).__name__}")
    if isinstance(source, RecurrentModel):
        return source
    found = _Found()
    _collect(source, found, kind, "", argument, allow_pickle)
    names = list(found.items)
    shown = ", ".join(repr(n) for n in names)
    if not names:
        raise ValueError(f"{argument} ({_describe(source) if not isinstance(source, (str, os.PathLike)) else source}) "
                         f"holds no LSTM/GRU/RNN; expected {_ACCEPTED}")
    if layer is None:
        if len(names) > 1:
            raise ValueError(f"{argument} holds {len(names)} recurrent modules ({shown}): pick one with layer=NAME "
                             f"(CLI: --layer NAME)")
        return found.items[names[0]]()
    if layer not in found.items:
        if names == [""]:
            raise ValueError(f"layer={layer!r} given, but {argument} holds a single recurrence, which has no name; "
                             f"drop layer (CLI: --layer)")
        raise ValueError(f"layer={layer!r} is not a recurrent module of {argument}; it holds {shown}")
    return found.items[layer]()


def from_torch(module: Any, layer: int = 0, *, reverse: bool = False) -> Any:
    """Parameters of depth ``layer`` (direction ``reverse``) of a ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` or a cell.

    Returns :class:`~lstm_jax.LSTMParams`, :class:`~lstm_jax.GRUParams` or :class:`~lstm_jax.RNNParams`
    (tanh); paired biases summed where they act only as a sum.  For a module that *contains* a recurrent
    module, a ``state_dict`` or a file, use :func:`lstm_jax.io.load_model`.
    """
    model = load_model(module, argument="module")
    for rec in model.layers:
        if rec.layer == layer and rec.reverse == bool(reverse):
            return rec.params
    dirs = "forward and reverse" if model.directions == 2 else "forward only"
    raise ValueError(f"layer must be in 0..{model.num_layers - 1} and reverse={bool(reverse)} must exist "
                     f"({dirs}); got layer={layer}")


def from_torch_layers(module: Any) -> list:
    """Every depth of a unidirectional multi-layer ``torch.nn.LSTM``/``GRU``/``RNN`` (layer ``k`` reads ``h`` of ``k-1``).

    Bidirectional modules: use :func:`lstm_jax.io.load_model` (each direction is its own record).
    """
    model = load_model(module, argument="module")
    if model.directions != 1:
        raise ValueError("module is bidirectional: from_torch_layers returns one direction per depth; use "
                         "lstm_jax.io.load_model(module).layers (forward and reverse records)")
    return [rec.params for rec in model.layers]
