"""matplotlib, imported only when a figure is written (it is a dependency; the import stays lazy)."""


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend, or a clear error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise RuntimeError("figures need matplotlib (a dependency of lstm-jax): pip install matplotlib") from exc
    return plt
