"""The one place where a cell step is run over time with :func:`jax.lax.scan`."""

from __future__ import annotations

from typing import Any, Callable

import jax


def scan_steps(
    step: Callable[[Any, jax.Array], tuple[Any, Any]],
    carry0: Any,
    xs: jax.Array,
    *,
    unroll: int | bool,
    remat: bool,
) -> tuple[Any, Any]:
    """Run ``step`` over the leading (time) axis of ``xs``.

    ``remat=True`` wraps the step in :func:`jax.checkpoint`, so reverse-mode
    differentiation recomputes each step's internals instead of storing them
    (only the carries are kept).  ``unroll`` is passed to :func:`jax.lax.scan`.
    """
    body = jax.checkpoint(step) if remat else step
    return jax.lax.scan(body, carry0, xs, unroll=unroll)
