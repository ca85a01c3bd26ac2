r"""Argument validation at the public boundary, and the package's error policy.

**Error policy** (applies to every public function of :mod:`lstm_jax`, to :mod:`lstm_jax.io`
and to the command line; docs/guide/errors.md):

1. Every argument is validated **before any work** (no computation, no file written):
   type, range, shape and dtype.
2. Bad input raises ``TypeError`` (wrong kind of object: a float where an int is needed,
   an int where a PRNG key is needed, an integer/complex/float8 array, an unknown object
   for a strategy argument) or ``ValueError`` (right kind, wrong value: out of range,
   wrong shape, unknown name, non-finite scalar).  The message names the argument, shows
   what it got and says what is accepted, e.g.
   ``ValueError: unroll must be an int in 1..T (the sequence length, T = 50 here); got 0``.
3. Checks look at Python scalars, shapes and dtypes only, so they cost nothing under
   :func:`jax.jit` (they run once, at trace time) and work under ``vmap``/``grad``.
   Array *values* are not inspected (that would force a device round-trip and is impossible
   under ``jit``): NaN in gives NaN out; :func:`check_finite` is the opt-in value check.
   Value checks that are cheap and only meaningful on concrete arrays (``lyapunov``'s ``q0``
   rank) run when the array is concrete and are skipped under tracing (documented there).
4. Floating dtypes accepted for arrays: float32, float64, bfloat16, float16.  float8 types,
   complex and integer arrays are a ``TypeError`` at the dtype check.
5. Scalars: ints must be Python/NumPy integers (``True``/``False`` and floats such as ``3.5``
   or ``2.0`` are rejected, not truncated); real scalars must be finite unless documented.
   Strategy arguments accept their objects and their documented names
   (``activation``: ``SIGMOID``/``TANH`` or ``"sigmoid"``/``"tanh"``; ``mode``:
   ``DENSE``/``DIAGONAL`` or ``"dense"``/``"diagonal"``).
6. Results that are not an error but need care are documented values, never silent:
   e.g. ``parallel_run_*`` reports ``converged=False`` and falls back when it stops on its
   iteration cap; ``lyapunov`` reports ``floored`` steps; ``gradient_flow_norms`` keeps
   finite log-norms where ``spectral`` under/overflows.

The command line maps ``ValueError``/``TypeError`` to one line on stderr and exit code 2,
``OSError`` to exit code 3, and uses exit code 1 only for "a check failed".
"""

from __future__ import annotations

import functools
import math
import operator
import os
from collections.abc import Mapping
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

Dim = Union[int, str]

#: The floating dtypes arrays may have (float8 and complex are rejected).
FLOAT_DTYPES = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
_FLOAT_NAMES = "float32, float64, bfloat16 or float16"


def _fmt(shape: Sequence[Dim]) -> str:
    inner = ", ".join(str(d) for d in shape)
    if len(shape) == 1:
        inner += ","
    return f"({inner})"


def _describe(value: Any) -> str:
    """``type value`` for messages, shortened (NumPy scalars shown as their Python values)."""
    if isinstance(value, np.generic) and value.ndim == 0:
        value = value.item()
    r = repr(value)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{type(value).__name__} {r}"


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def check_int(value: Any, name: str, *, lo: Optional[int] = None, hi: Optional[int] = None,
              accepts: Optional[str] = None) -> int:
    """``value`` as a Python int in ``lo..hi`` (either bound optional).

    Raises:
      TypeError: ``value`` is not an integer (bools and floats, even ``2.0``, are rejected).
      ValueError: out of range.
    """
    if accepts is None:
        if lo is not None and hi is not None:
            accepts = f"an int in {lo}..{hi}"
        elif lo is not None:
            accepts = f"an int >= {lo}"
        elif hi is not None:
            accepts = f"an int <= {hi}"
        else:
            accepts = "an int"
    if _is_bool(value):
        raise TypeError(f"{name} must be {accepts}; got {_describe(value)}")
    try:
        k = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {accepts}; got {_describe(value)}") from None
    if (lo is not None and k < lo) or (hi is not None and k > hi):
        raise ValueError(f"{name} must be {accepts}; got {k}")
    return int(k)


def check_real(value: Any, name: str, *, lo: Optional[float] = None, hi: Optional[float] = None,
               lo_open: bool = False, hi_open: bool = False, finite: bool = True,
               accepts: Optional[str] = None) -> float:
    """``value`` as a Python float, finite (unless ``finite=False``) and within the given bounds.

    Raises:
      TypeError: not a real number (bools, complex, strings, arrays of size > 1).
      ValueError: NaN, ±inf (when ``finite``) or out of range.
    """
    if accepts is None:
        parts = ["a finite real number" if finite else "a real number"]
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {lo:g}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {hi:g}")
        accepts = " ".join(parts[:1]) + (" " + " and ".join(parts[1:]) if len(parts) > 1 else "")
    if _is_bool(value) or isinstance(value, (str, bytes, complex, np.complexfloating)):
        raise TypeError(f"{name} must be {accepts}; got {_describe(value)}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {accepts}; got {_describe(value)}") from None
    if math.isnan(x) or (finite and math.isinf(x)):
        raise ValueError(f"{name} must be {accepts}; got {x}")
    if lo is not None and (x <= lo if lo_open else x < lo):
        raise ValueError(f"{name} must be {accepts}; got {x:g}")
    if hi is not None and (x >= hi if hi_open else x > hi):
        raise ValueError(f"{name} must be {accepts}; got {x:g}")
    return x


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a Python bool (``True``/``False``/``numpy.bool_``); ``TypeError`` otherwise."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be a bool (True or False); got {_describe(value)}")
    return bool(value)


def check_float_dtype(dtype: Any, name: str = "dtype") -> jnp.dtype:
    """A dtype among float32, float64, bfloat16, float16 (``TypeError`` otherwise, float8 included)."""
    if dtype is None:  # numpy reads None as float64, which is never what a caller of these functions means
        raise TypeError(f"{name} must be a floating dtype ({_FLOAT_NAMES}); got None")
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be a floating dtype ({_FLOAT_NAMES}); got {_describe(dtype)}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating dtype ({_FLOAT_NAMES}); got {dt}")
    return dt


@functools.lru_cache(maxsize=None)
def _raw_key_shape(impl: str) -> tuple:
    return tuple(jax.eval_shape(lambda: jax.random.PRNGKey(0)).shape)


def check_key(key: Any, name: str = "key") -> Any:
    """A single PRNG key: a typed key (``jax.random.key``, shape ``()``) or a raw ``uint32`` key
    (``jax.random.PRNGKey``, shape ``(2,)`` for the default threefry implementation).

    Raises:
      TypeError: not a key (e.g. the int ``0``: pass ``jax.random.key(0)``).
      ValueError: a batch of keys (shape other than a single key's).
    """
    how = "a PRNG key, e.g. jax.random.key(0) or jax.random.PRNGKey(0)"
    dtype = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()))
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(f"{name} has shape {shape}: one PRNG key (shape ()) is expected, not a batch of keys")
        return key
    if dtype is not None and hasattr(key, "ndim") and jnp.dtype(dtype) == jnp.uint32:
        want = _raw_key_shape(str(jax.config.jax_default_prng_impl))
        if shape != want:
            raise ValueError(f"{name} has shape {shape}: one raw uint32 PRNG key of shape {want} is expected")
        return key
    what = f"an array of dtype {dtype}" if dtype is not None else _describe(key)
    raise TypeError(f"{name} must be {how}; got {what}")


def check_unroll(unroll: Any, T: int, name: str = "unroll") -> int:
    """``unroll`` for :func:`jax.lax.scan`: an int in ``1..T``.

    ``True`` (and ``0`` in some JAX versions) mean a *full* unroll in ``lax.scan``, which
    compiles a copy of the step per time step (minutes for ``T`` in the thousands); pass
    ``unroll=T`` explicitly if that is really wanted.
    """
    accepts = f"an int in 1..T (the sequence length, T = {T} here)"
    if _is_bool(unroll):
        raise TypeError(f"{name} must be {accepts}; got bool {bool(unroll)!r} (lax.scan would unroll every step; "
                        f"pass unroll={T} for that)")
    return check_int(unroll, name, lo=1, hi=T, accepts=accepts)


#: the largest PRNG seed any entry point accepts (jax.random.PRNGKey takes a signed 64-bit integer)
SEED_MAX = 2**63 - 1


def _available_bytes() -> Optional[int]:
    """Memory available to a new allocation: Linux's MemAvailable (free + reclaimable page cache), else
    the free pages (which undercount a machine whose page cache is full)."""
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def check_fits_memory(nbytes: int, what: str, available: Optional[int] = None) -> None:
    """Refuse (``ValueError``) an allocation of ``nbytes`` larger than the free physical memory.

    A cheap up-front estimate instead of an out-of-memory error from XLA halfway through (host memory;
    on an accelerator the device's own limit applies as well).  Skipped where the free memory is unknown.
    """
    avail = _available_bytes() if available is None else available
    if avail is not None and nbytes > avail:
        raise ValueError(f"{what} need about {nbytes / 2**30:.1f} GiB of memory but {avail / 2**30:.1f} GiB "
                         "are available; use smaller sizes")


def as_float_array(x: Any, name: str) -> jax.Array:
    """Return ``x`` as an array, raising ``TypeError`` unless its dtype is float32/64, bfloat16 or float16."""
    if x is None or isinstance(x, (str, bytes, Mapping)):
        raise TypeError(f"{name} is a {type(x).__name__} but a floating array ({_FLOAT_NAMES}) is expected")
    if not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} ({type(x).__name__}) cannot be read as an array: {exc}") from None
        if x.dtype.kind in "OUSV":
            raise TypeError(f"{name} is a {type(x).__name__} of dtype {x.dtype} but a floating array "
                            f"({_FLOAT_NAMES}) is expected")
        if x.dtype == np.float64 and not jax.config.jax_enable_x64:
            x = x.astype(np.float32)
    if jnp.dtype(x.dtype) not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {x.dtype} but a floating dtype is expected: {_FLOAT_NAMES} "
            "(float8, complex and integer arrays are not supported)"
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

    Floating (float16/32/64, bfloat16) and complex leaves are checked (a complex entry is
    non-finite when its real or imaginary part is); integer and bool leaves are skipped.
    This is the library's opt-in NaN/inf check: the cells and runners do not
    inspect values (that would force a device round-trip on every call, and is
    impossible under ``jit``), so non-finite inputs propagate as in any JAX
    computation.  Call this on concrete inputs before a run, or use
    ``jax.experimental.checkify`` / ``jax_debug_nans`` inside compiled code.

    Raises:
      TypeError: if called on traced values (inside ``jit``/``vmap``/``grad``).
      ValueError: naming the leaf path and how many entries are not finite.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (used in the message), got {_describe(name)}")
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
        if not np.issubdtype(arr.dtype, np.inexact):  # floating and complex (a complex NaN is not finite)
            if arr.dtype.kind == "V" or jnp.issubdtype(arr.dtype, jnp.floating):  # bfloat16, float8 (ml_dtypes)
                arr = arr.astype(np.float32)
            else:
                continue  # integers and bools are always finite
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ValueError(
                f"{label} has {bad} non-finite entries (NaN or inf) out of {arr.size}; "
                "expected all entries finite"
            )


def check_init_args(key: Any, n: Any, m: Any, scale: Any, bias: Any, dtype: Any, *, floats_per_unit: int,
                    label: str) -> tuple:
    """The shared arguments of ``init_rnn`` / ``init_lstm`` / ``init_gru``, validated before any work.

    Returns ``(key, n, m, scale, bias, dtype)``; refuses a parameter tree of about
    ``floats_per_unit * n * (n + m + 1)`` numbers that would not fit in memory.
    """
    key = check_key(key)
    n, m = check_int(n, "n", lo=1), check_int(m, "m", lo=1)
    scale = check_real(scale, "scale")
    bias = check_bool(bias, "bias")
    dtype = check_float_dtype(dtype)
    check_fits_memory(floats_per_unit * n * (n + m + 1) * dtype.itemsize, f"{label}(n={n}, m={m}) parameters")
    return key, n, m, scale, bias, dtype


def check_fields(params: Any, cls: type, name: str, shapes: dict, optional: Sequence[str] = ()) -> tuple:
    """Validate a parameter NamedTuple whose leaves have symbolic shapes (``shapes[field]``, e.g. ``("n", "m")``).

    The first field fixes the symbols it names; every other leaf must agree.  Returns ``(params, dims)`` with
    ``dims`` the symbol values (``{"n": .., "m": ..}``).  Optional leaves may be ``None``.
    """
    p = as_named_tuple(params, cls, name, optional=optional)
    dims: dict = {}
    leaves = {}
    for field in cls._fields:
        v = getattr(p, field)
        if v is None:
            leaves[field] = None
            continue
        want = shapes[field]
        arr = check_array(v, f"{name}.{field}", tuple(dims.get(s, s) if isinstance(s, str) else s for s in want))
        for s, size in zip(want, arr.shape):
            if isinstance(s, str):
                if dims.setdefault(s, size) != size:  # a symbol repeated within one array, e.g. ("H", "d", "d")
                    raise ValueError(f"{name}.{field} has shape {arr.shape} but {_fmt(want)} is expected "
                                     f"({s} = {dims[s]} and {size})")
        leaves[field] = arr
    common_dtype(name, **leaves)
    return cls(**leaves), dims
