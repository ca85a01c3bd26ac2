"""matplotlib, imported only when a figure is written (the ``plot`` extra)."""


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend, or a clear error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise RuntimeError("figures need matplotlib: pip install 'lstm-jax[plot]'") from exc
    return plt
