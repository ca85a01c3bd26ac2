"""Static shape/dtype checks at the public boundary.

Every check runs on shapes and dtypes only, so it costs nothing under
:func:`jax.jit` (it runs once, at trace time).  Messages name the argument and
give both sides: what it got and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

Dim = Union[int, str]


def _fmt(shape: Sequence[Dim]) -> str:
    inner = ", ".join(str(d) for d in shape)
    if len(shape) == 1:
        inner += ","
    return f"({inner})"


def as_float_array(x: Any, name: str) -> jax.Array:
    """Return ``x`` as an array, raising ``TypeError`` unless it is floating."""
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
        if x.dtype == np.float64 and not jax.config.jax_enable_x64:
            x = x.astype(np.float32)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name} has dtype {x.dtype} but a floating dtype is expected "
            "(float32, float64, bfloat16 or float16)"
        )
    return jnp.asarray(x)


def check_shape(x: jax.Array, name: str, expected: Sequence[Dim]) -> None:
    """Raise ``ValueError`` unless ``x.shape`` matches ``expected``.

    ``expected`` holds ints (fixed sizes) and strings (a named free size such
    as ``"T"``, which must be at least 1).
    """
    shape = tuple(x.shape)
    if len(shape) != len(expected):
        raise ValueError(
            f"{name} has shape {shape} (rank {len(shape)}) but a rank-{len(expected)} "
            f"array of shape {_fmt(expected)} is expected"
        )
    for got, want in zip(shape, expected):
        if isinstance(want, str):
            if got < 1:
                raise ValueError(
                    f"{name} has shape {shape}: axis {want} is empty, expected at least "
                    f"one element (shape {_fmt(expected)})"
                )
        elif got != want:
            raise ValueError(f"{name} has shape {shape} but shape {_fmt(expected)} is expected")


def check_array(x: Any, name: str, expected: Sequence[Dim]) -> jax.Array:
    """``as_float_array`` followed by ``check_shape``."""
    x = as_float_array(x, name)
    check_shape(x, name, expected)
    return x


def as_named_tuple(params: Any, cls: type, name: str, optional: Sequence[str] = ()) -> Any:
    """Turn a ``cls`` instance or a mapping with exactly ``cls``'s fields into ``cls``.

    Missing required leaves, unexpected leaves and leaves of the wrong kind are
    reported by name.  Optional leaves may be absent or ``None``.
    """
    fields = cls._fields
    if isinstance(params, cls):
        items = params._asdict()
    elif isinstance(params, Mapping):
        items = dict(params)
        extra = sorted(set(items) - set(fields), key=str)
        if extra:
            raise ValueError(
                f"{name} has unexpected leaves {extra}; a {cls.__name__} has exactly "
                f"{list(fields)}"
            )
    else:
        raise TypeError(
            f"{name} is a {type(params).__name__} but a {cls.__name__} (or a dict with keys "
            f"{list(fields)}) is expected"
        )
    missing = [f for f in fields if items.get(f) is None and f not in optional]
    if missing:
        raise ValueError(
            f"{name} is missing leaves {missing}; a {cls.__name__} needs {list(fields)}"
            + (f" ({list(optional)} may be None)" if optional else "")
        )
    return cls(**{f: items.get(f) for f in fields})


def common_dtype(name: str, **arrays: Any) -> jnp.dtype:
    """The dtype all leaves of a parameter tree share (``TypeError`` if they differ)."""
    dtypes = {k: v.dtype for k, v in arrays.items() if v is not None}
    kinds = set(dtypes.values())
    if len(kinds) > 1:
        detail = ", ".join(f"{k}: {d}" for k, d in dtypes.items())
        raise TypeError(f"{name} mixes dtypes ({detail}); all leaves must share one dtype")
    return next(iter(kinds))


def check_finite(tree: Any, name: str) -> None:
    """Raise ``ValueError`` if any leaf of ``tree`` holds NaN or ±inf.

    This is the library's opt-in NaN/inf check: the cells and runners do not
    inspect values (that would force a device round-trip on every call, and is
    impossible under ``jit``), so non-finite inputs propagate as in any JAX
    computation.  Call this on concrete inputs before a run, or use
    ``jax.experimental.checkify`` / ``jax_debug_nans`` inside compiled code.

    Raises:
      TypeError: if called on traced values (inside ``jit``/``vmap``/``grad``).
      ValueError: naming the leaf path and how many entries are not finite.
    """
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    for path, leaf in leaves:
        if leaf is None:
            continue
        label = name + jax.tree_util.keystr(path)
        if isinstance(leaf, jax.core.Tracer):
            raise TypeError(
                f"check_finite({label}) got a traced value; call it on concrete arrays outside "
                "jit, or use jax.experimental.checkify inside compiled code"
            )
        arr = np.asarray(leaf)
        if not np.issubdtype(arr.dtype, np.floating):
            if arr.dtype == jnp.bfloat16:
                arr = arr.astype(np.float32)
            else:
                continue
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ValueError(
                f"{label} has {bad} non-finite entries (NaN or inf) out of {arr.size}; "
                "expected all entries finite"
            )
