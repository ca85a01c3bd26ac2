"""Batch sharding over several devices (Mesh + NamedSharding): time and agreement vs one device.

The batch axis of the inputs is placed on a 1-D mesh of d devices; the same jitted functions run
unchanged (no code changes for the user): LSTM forward, value_and_grad of mean(h_T^2), and the
diagnostics (all joint step Jacobians, their suffix products and Frobenius norms, per sequence). float32, B = 32.
On CPU the d devices are XLA host devices (``--xla_force_host_platform_device_count=d``, set before JAX
starts, so each d runs in its own process) sharing this machine's cores: a 1-device run already uses all
cores for its GEMMs, so the table measures the overhead/benefit of partitioning, not extra hardware.
On a multi-GPU/TPU host the real devices are used (d up to the device count).

    python -m benchmarks.sharding            # ~3 minutes on 2 CPU cores
    python -m benchmarks.sharding --quick    # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from . import _harness as H


CHILD_TIMEOUT_S = 900


def child(d: int, B: int, n: int, T: int, n_diag: int, T_diag: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    import lstm_jax as lj

    devices = jax.devices()[:d]
    shard = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
    m = 64
    p, s0 = lj.init_lstm(jax.random.PRNGKey(0), n, m), lj.zero_state(n)
    xs = jax.device_put(jax.random.normal(jax.random.PRNGKey(1), (B, T, m), jnp.float32), shard)
    pd, sd = lj.init_lstm(jax.random.PRNGKey(2), n_diag, m), lj.zero_state(n_diag)
    xd = jax.device_put(jax.random.normal(jax.random.PRNGKey(3), (B, T_diag, m), jnp.float32), shard)

    def fwd(q, x):
        return jax.vmap(lambda x1: lj.run_lstm(q, s0, x1)[1].h)(x)

    def diagnostics(q, x):
        # Frobenius norms of the suffix products. (gradient_flow_norms' spectral norm, an SVD per matrix, hung
        # inside this jit on 2 and 4 XLA host devices in jax 0.10.2 - an XLA CPU issue.)
        return jax.vmap(lambda x1: jnp.linalg.norm(lj.suffix_products(lj.lstm_step_jacobians(q, sd, x1)),
                                                   axis=(-2, -1)))(x)

    out = {"devices": d, "device_kind": devices[0].device_kind, "B": B, "n": n, "T": T, "n_diag": n_diag,
           "T_diag": T_diag}
    for name, fn, args in (("forward", fwd, (p, xs)),
                           ("grad", jax.value_and_grad(lambda q, x: jnp.mean(fwd(q, x)[:, -1] ** 2)), (p, xs)),
                           ("diagnostics", diagnostics, (pd, xd))):
        res, val = H.time_jitted(fn, *args, repeats=repeats)
        leaf = jax.tree_util.tree_leaves(val)[-1]
        out[name] = {**res, "checksum": float(jnp.sum(jnp.abs(leaf))),
                     "output_devices": len(leaf.sharding.device_set)}
    return out


def _spawn(d, args, base_env):
    env = {**base_env}
    if base_env.get("JAX_PLATFORMS", "cpu") == "cpu":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={d}").strip()
    try:  # its own process: XLA_FLAGS are read once, when JAX starts
        return H.run_child(__spec__.name, ["--child", json.dumps([d, *args])], env=env, timeout=CHILD_TIMEOUT_S,
                           echo_stderr=False)
    except H.ChildFailed as e:
        raise RuntimeError(f"sharding child with {d} devices failed: {e}\n{e.stderr[-2000:]}") from None


def main(argv=None):
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_output_args(ap)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        out = child(*json.loads(args.child))
        if args.result_to:
            H.write_child_result(args.result_to, out)
        else:  # run by hand
            print(json.dumps(out))
        return 0
    import jax

    sizes = (8, 8, 50, 4, 20, 1) if args.quick else (32, 128, 1000, 32, 500, 5)
    on_accelerator = jax.devices()[0].platform != "cpu"
    if on_accelerator:
        ds = [d for d in (1, 2, 4, 8) if d <= jax.device_count()]
        env = dict(os.environ)
    else:
        ds = (1, 2) if args.quick else (1, 2, 4)
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    meta = {"benchmark": "sharding", "dtype": "float32", "device": H.device_info(),
            "B, n, T, n_diag, T_diag, repeats": sizes, "cpu_cores": os.cpu_count()}
    print(f"device: {meta['device']['platform']} ({meta['device']['device_kind']}), jax {jax.__version__}, "
          f"{os.cpu_count()} CPU cores")
    rows = []
    for d in ds:
        r = _spawn(d, sizes, env)
        rows.append(r)
        print(f"{d} device(s): " + ", ".join(f"{k} {r[k]['median_s'] * 1e3:.1f} ms" for k in ("forward", "grad", "diagnostics")),
              flush=True)
    one = rows[0]
    for r in rows:
        for k in ("forward", "grad", "diagnostics"):
            r[k]["speedup_vs_1"] = one[k]["median_s"] / r[k]["median_s"]
            r[k]["checksum_rel_diff_vs_1"] = abs(r[k]["checksum"] - one[k]["checksum"]) / abs(one[k]["checksum"])
    md = H.markdown_table(
        ["devices", "forward (ms, ×1-device)", "grad (ms, ×1-device)", "diagnostics (ms, ×1-device)",
         "output on devices", "max checksum rel diff vs 1 device"],
        [[str(r["devices"])] + [f"{r[k]['median_s'] * 1e3:.1f} (×{r[k]['speedup_vs_1']:.2f})"
                                for k in ("forward", "grad", "diagnostics")]
         + [str(r["forward"]["output_devices"]),
            f"{max(r[k]['checksum_rel_diff_vs_1'] for k in ('forward', 'grad', 'diagnostics')):.1e}"] for r in rows])
    H.report(args, "sharding", rows, meta, md, "×: time on 1 device / time on d devices (above 1: faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
