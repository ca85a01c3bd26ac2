r"""The weights of a TorchScript archive (``torch.jit.save`` of a scripted or traced module), read without
running any of its code.

A TorchScript archive is a zip: ``<name>/data.pkl`` pickles the module tree (objects of the archive's own
``__torch__.*`` classes whose state is a dict of attributes and tensors), ``<name>/data/<key>`` holds each
tensor storage's raw bytes (byte order in ``<name>/byteorder``), and ``<name>/code/`` the TorchScript
source that ``torch.jit.load`` would compile and run.  :func:`torchscript_tensors` unpickles ``data.pkl``
with a :class:`pickle.Unpickler` that resolves **only**

* ``torch._utils._rebuild_tensor_v2`` and ``torch._utils._rebuild_parameter`` (to a lazy view of a storage:
  offset, shape, strides), ``torch.<Type>Storage`` (to a dtype), ``collections.OrderedDict``, and the type
  tags of typed containers (``torch.jit._pickle.restore_type_tag`` …, to the value itself);
* ``__torch__.*`` classes, to an inert placeholder that keeps its attribute dict (nothing of the class runs:
  its methods are TorchScript in ``code/``, which is never read);

and refuses every other global with the name it asked for.  The module tree is then flattened to
``"submodule.path.weight_ih_l0" -> array`` for the tensors named like a torch recurrent module's (the same
names as a ``state_dict``: ``nn.LSTM``/``GRU``/``RNN`` and their cells); only those are materialised, after
their sizes (``numel × itemsize``, so zero-stride views count in full) are summed against
:func:`~lstm_jax.io._sniff.array_budget`.  float16/bfloat16 storages are promoted to float32.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import re
import zipfile
from typing import Any, NamedTuple

import numpy as np

from ._sniff import _refuse_size, array_budget

#: torch storage type -> NumPy dtype name (bfloat16 through ml_dtypes, which JAX installs)
_STORAGES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
             "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool"}
_MAX_DEPTH = 64


class _Storage(NamedTuple):
    dtype: str


class _TensorView(NamedTuple):
    """A tensor as the archive declares it; its bytes are read only if it is a recurrent weight."""

    key: str
    dtype: str
    offset: int
    shape: tuple
    stride: tuple


class _ScriptObject:
    """An inert stand-in for an archive's ``__torch__.*`` class: pickle's BUILD fills ``__dict__``; nothing runs."""


def _rebuild_tensor(storage, offset, size, stride, *_):
    key, dtype = storage
    return _TensorView(key, dtype, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data, *_):
    return data


def _identity(value, *_):
    return value


_TYPE_TAGS = ("restore_type_tag", "build_intlist", "build_doublelist", "build_boollist", "build_tensorlist")


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, what: str):
        super().__init__(fh)
        self.what = what

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return lambda *a: _rebuild_tensor(*a)  # a fresh callable: pickle's BUILD cannot touch the module's
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda *a: _rebuild_parameter(*a)
        if module == "torch" and name in _STORAGES:
            return _Storage(_STORAGES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in _TYPE_TAGS:
            return lambda *a: _identity(*a)  # typed containers (List[int] ...): the value itself
        if module == "__torch__" or module.startswith("__torch__."):
            return type(name, (_ScriptObject,), {"__module__": "lstm_jax.io._torchscript", "qualified": f"{module}.{name}"})
        raise ValueError(f"{self.what}: its data.pkl asks for {module}.{name}, which lstm_jax does not resolve (only "
                         "tensors, storages and the archive's own module classes are read; nothing of it is run)")

    def persistent_load(self, pid):
        # types checked before anything is formatted: a self-referencing tuple would make str() explode
        if not (type(pid) is tuple and len(pid) >= 3 and type(pid[0]) is str and pid[0] == "storage"
                and isinstance(pid[1], _Storage) and type(pid[2]) is str and len(pid[2]) <= 64):
            raise ValueError(f"{self.what}: its data.pkl references a {type(pid).__name__}, not a tensor storage")
        return (pid[2], pid[1].dtype)


_RECURRENT = re.compile(r"(?:^|\.)(?:weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)(?:_l\d+)?(?:_reverse)?$")


_MAX_NODES = 100_000


def _flatten(obj: Any, path: str, out: dict, seen: set, depth: int = 0) -> None:
    """Walk the module tree once per object: pickle's memo can make one object a child many times (a graph whose
    unfolding is exponential), so every object is visited once and the walk is bounded in depth and size."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"the archive nests modules deeper than {_MAX_DEPTH} levels (at {path[:80]!r}...)")
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if len(seen) > _MAX_NODES:
        raise ValueError(f"the archive's module tree has more than {_MAX_NODES:,} objects; not a model")
    items = obj.__dict__.items() if isinstance(obj, _ScriptObject) else obj.items() if isinstance(obj, dict) else ()
    for name, value in items:
        if type(name) is not str:
            continue
        full = f"{path}.{name}" if path else name
        if isinstance(value, _TensorView):
            if _RECURRENT.search(full):
                out[full] = value
        elif isinstance(value, (_ScriptObject, dict)):
            _flatten(value, full, out, seen, depth + 1)


def _materialise(z: zipfile.ZipFile, prefix: str, t: _TensorView, little: bool) -> np.ndarray:
    import ml_dtypes  # noqa: F401  (registers numpy's "bfloat16")

    if t.offset < 0 or any(s < 0 for s in t.shape) or any(st < 0 for st in t.stride) or len(t.shape) != len(t.stride):
        raise ValueError(f"tensor storage {t.key}: offset {t.offset}, shape {t.shape}, strides {t.stride} are not a "
                         "valid view (negative or mismatched)")
    dtype = np.dtype(ml_dtypes.bfloat16 if t.dtype == "bfloat16" else t.dtype).newbyteorder("<" if little else ">")
    raw = np.frombuffer(z.read(f"{prefix}data/{t.key}"), dtype=dtype)
    need = t.offset + sum((s - 1) * st for s, st in zip(t.shape, t.stride)) + 1 if all(t.shape) else 0
    if need > raw.size:
        raise ValueError(f"tensor storage {t.key} holds {raw.size} elements; the tensor reads up to {need}")
    arr = np.lib.stride_tricks.as_strided(raw[t.offset:], shape=t.shape,
                                          strides=tuple(s * dtype.itemsize for s in t.stride))
    return np.array(arr, dtype=np.float64 if t.dtype == "float64" else np.float32)


def torchscript_tensors(path, argument: str) -> tuple[dict, set]:
    """``({"sub.module.weight_ih_l0": float array, ...}, promoted half dtypes)``: the recurrent tensors of a TorchScript archive (module
    docstring), keyed like the module's ``state_dict``.  The zip's declared sizes are checked by the caller."""
    what = f"{argument}: {str(path)!r}"
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError(f"{what} is a TorchScript archive without one <name>/data.pkl (found {len(pkl)})")
        prefix = pkl[0][: -len("data.pkl")]
        order = z.read(f"{prefix}byteorder").decode().strip() if f"{prefix}byteorder" in names else "little"
        if order not in ("little", "big"):
            raise ValueError(f"{what}: unknown byte order {order[:20]!r} in {prefix}byteorder")
        try:
            root = _Unpickler(io.BytesIO(z.read(pkl[0])), what).load()
        except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, OverflowError, RecursionError,
                IndexError, KeyError) as e:
            raise ValueError(f"{what}: its data.pkl cannot be read ({type(e).__name__}: {e})") from None
        views: dict = {}
        _flatten(root, "", views, set())
        if not views:
            raise ValueError(f"{what} is a TorchScript archive with no recurrent module (no weight_ih/weight_hh "
                             "tensors in its module tree)")
        bad = {k: v.dtype for k, v in views.items() if v.dtype not in ("float32", "float64", "float16", "bfloat16")}
        if bad:
            k = next(iter(bad))
            raise ValueError(f"{what}: tensor {k!r} has dtype {bad[k]}; recurrent weights are floating point")
        total = sum(math.prod(v.shape) * np.dtype(v.dtype if v.dtype != "bfloat16" else "float16").itemsize
                    for v in views.values())
        budget = array_budget()
        if total > budget:
            raise _refuse_size(f"{what}: its recurrent tensors", total, budget)
        missing = [v.key for v in views.values() if f"{prefix}data/{v.key}" not in names]
        if missing:
            raise ValueError(f"{what}: tensor storage {missing[0]} is missing from the archive")
        promoted = {v.dtype for v in views.values() if v.dtype in ("float16", "bfloat16")}
        return {k: _materialise(z, prefix, v, order == "little") for k, v in views.items()}, promoted
