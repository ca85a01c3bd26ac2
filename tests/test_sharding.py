"""Batch sharding across devices (Mesh + NamedSharding) gives the single-device results.

Runs in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=4 (the flag must be set before JAX
starts). Float64, equality to 1e-12 relative: the per-example computation is the same, only placed elsewhere.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import lstm_jax as lj

    assert jax.device_count() == 4, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    shard = NamedSharding(mesh, P("batch"))
    B, T, n, m = 8, 40, 6, 3
    p = lj.init_lstm(jax.random.PRNGKey(0), n, m, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, m), jnp.float64)
    s0 = lj.LSTMState(jnp.zeros((B, n), jnp.float64), jax.random.normal(jax.random.PRNGKey(2), (B, n), jnp.float64))

    seq = jax.jit(jax.vmap(lambda s, x: lj.run_lstm(p, s, x)[1].h))
    par = jax.jit(jax.vmap(lambda s, x: lj.parallel_run_lstm(p, s, x)[0].h))
    jac = jax.jit(jax.vmap(lambda s, x: lj.lstm_step_jacobians(p, s, x)))
    xs_s, s0_s = jax.device_put(xs, shard), jax.device_put(s0, shard)
    for f in (seq, par, jac):
        ref = f(s0, xs)
        out = f(s0_s, xs_s)
        assert len(out.sharding.device_set) == 4, out.sharding
        err = float(jnp.max(jnp.abs(out - ref)) / jnp.max(jnp.abs(ref)))
        assert err < 1e-12, err
    print("ok")
    """
)


def test_batch_sharded_runners_parallel_evaluator_and_jacobians_equal_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
