"""Option parsing shared by the subcommands: integers and numbers checked against their ranges, naming the option.

Every function raises ``ValueError`` with ``--name must be ..., got ...`` (exit 2 through :func:`lstm_jax.cli.main`).
"""

from __future__ import annotations

import math
from typing import Optional


def integer(name: str, raw, lo: int, hi: Optional[int] = None) -> int:
    """``raw`` (a string from argparse, or an int) as an integer in ``lo..hi``."""
    try:
        v = int(str(raw), 0)
    except ValueError:
        raise ValueError(f"--{name} must be an integer, got {raw!r}") from None
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"--{name} must be an integer {rng}, got {raw}")
    return v


def number(name: str, raw, lo: float, hi: float, lo_open: bool = False) -> float:
    """``raw`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"--{name} must be a number, got {raw!r}") from None
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
        rng = f"{'>' if lo_open else '>='} {lo:g} and <= {hi:g}"
        raise ValueError(f"--{name} must be a finite number {rng}, got {raw}")
    return v


def bounded(name: str, value: Optional[int], lo: int, hi: int) -> Optional[int]:
    """An optional integer option (``None`` = its default) in ``lo..hi``."""
    if value is not None and not lo <= value <= hi:
        raise ValueError(f"--{name} must be in {lo}..{hi:,}, got {value}")
    return value


def int_list(name: str, raw: Optional[str], lo: int) -> Optional[list[int]]:
    """A comma-separated list of integers ``>= lo`` (``None`` stays ``None``)."""
    if raw is None:
        return None
    try:
        values = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < lo:
        raise ValueError(f"--{name} must be comma-separated integers >= {lo}, e.g. 100,500; got {raw!r}")
    return values


def id_list(name: str, raw: Optional[str], allowed) -> Optional[list[str]]:
    """A comma-separated list of ids from ``allowed`` (``None`` stays ``None``)."""
    if raw is None:
        return None
    ids = [x.strip() for x in raw.split(",") if x.strip()]
    if not ids or any(x not in allowed for x in ids):
        raise ValueError(f"--{name} must be comma-separated ids from {', '.join(allowed)}; got {raw!r}")
    return ids


def x64(dtype: str = "float64") -> None:
    """Switch JAX to float64 when ``dtype`` asks for it: an entry point's job, never the library's on import."""
    if dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
