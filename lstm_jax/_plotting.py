"""matplotlib through its object API only (``matplotlib.figure.Figure``): no ``pyplot``, no backend switch.

Library code never touches matplotlib's global state (``matplotlib.use``, pyplot's figure
registry): a :class:`~matplotlib.figure.Figure` made directly renders with the Agg canvas in
``savefig`` whatever backend the caller's program uses.  matplotlib is imported lazily (only
when a figure is drawn).
"""

from __future__ import annotations



def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - only without the dependency
        raise RuntimeError("figures need matplotlib (a dependency of lstm-jax): pip install matplotlib") from exc
    return Figure


def subplots(figsize=(6.4, 4.8), layout="constrained", **kwargs):
    """``(fig, ax)``: a new :class:`matplotlib.figure.Figure` (not registered with pyplot) and one Axes."""
    fig = _figure_class()(figsize=figsize, layout=layout)
    return fig, fig.subplots(**kwargs)

