"""lstm_jax benchmark suite (outside the installed package): ``python -m benchmarks`` or ``lstm-jax bench``."""
