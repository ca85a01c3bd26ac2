"""``lstm-jax diagnose`` end to end: its speed targets as a user runs it, and its flow curve against torch autograd.

**Targets.** Each configuration is a ``torch.nn.LSTM`` ``state_dict`` (PyTorch's own initialisation,
``torch.manual_seed(0)``: the timing does not depend on the weights' values) diagnosed with the CLI's defaults
(16 Gaussian sequences, k = 8, the fresh-initialisation baseline) by a **fresh process**,
``python -m lstm_jax diagnose MODEL --batch B --T T --dtype D --out DIR`` (the README's command), ``--repeats``
times one after the other.  Each run's wall time (import, loading, compiling, every chunk, the report) and its peak
resident memory (``os.wait4``) are recorded; a target is **met** only if every run is within its limit, **not met**
if none is, **not confirmed** otherwise.  A run over its limit ends the repeats, and a run still going at 1.5x
its limit is stopped (its time is then a lower bound).

    1-layer nn.LSTM(64, 128), 16 x T = 200, float64      <= 30 s
    2-layer nn.LSTM(64, 256), 16 x T = 200, float64      <= 90 s
    1-layer nn.LSTM(64, 512),  8 x T = 1000, float32     <= 180 s

**Peer.** The curve :math:`\\|\\partial s_T/\\partial s_{T-\\ell}\\|_2`, ``l = 1..T``, of layer 0 for the same model and
inputs, one sequence at a time: lstm_jax as diagnose computes it (the cell protocol's step factors and vjp_wide, the log-space
product from the last step, Lanczos / warm-started power-iteration norms: ``lstm_jax.diagnose._core``), against
torch: step Jacobians by ``torch.func.jacrev`` of the ``LSTMCell`` step, ``torch.func.vmap``-ed over time, the
same renormalised product and ``torch.linalg.matrix_norm(ord=2)`` (an SVD) at every lag.  Timed interleaved
(lstm_jax, torch, lstm_jax, ...) after a warm-up each; the ratio torch / lstm_jax per round with its min–max, and
the largest difference of the two curves (relative, on the norms).

    python -m benchmarks.diagnose              # the targets (about 10 minutes on 2 CPU cores) and the peer
    python -m benchmarks.diagnose --quick      # tiny sizes; smoke test
"""

from __future__ import annotations

import argparse
from functools import partial
import pathlib
import sys
import tempfile

import jax
import numpy as np

from . import _harness as H

#: (name, layers, n, batch, T, dtype, limit in seconds)
TARGETS = [("lstm1-n128", 1, 128, 16, 200, "float64", 30.0),
           ("lstm2-n256", 2, 256, 16, 200, "float64", 90.0),
           ("lstm1-n512", 1, 512, 8, 1000, "float32", 180.0)]
QUICK = [("lstm1-n8", 1, 8, 2, 20, "float64", 60.0)]
M = 64  # input width of every benchmarked model
STOP_FACTOR = 1.5  # a cold run still going at this multiple of its limit is stopped (the target is not met)


def _state_dict(path: pathlib.Path, layers: int, n: int, m: int) -> None:
    import torch

    torch.manual_seed(0)
    torch.save(torch.nn.LSTM(m, n, num_layers=layers).state_dict(), path)


def _fmt_run(r: dict) -> str:
    if r["stopped"]:
        return f"> {r['seconds']:.0f} s (stopped)"
    return f"{r['seconds']:.1f} s" + ("" if r["rc"] == 0 else f" (exit {r['rc']}: {' '.join(r['error'])})")


def run_targets(configs, repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name, layers, n, B, T, dtype, limit in configs:
            model = tmp / f"{name}.pt"
            _state_dict(model, layers, n, M)
            runs = []
            for r in range(repeats):
                cmd = [sys.executable, "-m", "lstm_jax", "diagnose", str(model), "--batch", str(B), "--T", str(T),
                       "--dtype", dtype, "--out", str(tmp / f"{name}-{r}")]
                runs.append(H.run_timed(cmd, STOP_FACTOR * limit))
                if runs[-1]["rc"] != 0 or runs[-1]["seconds"] > limit:
                    break  # a run over the limit: the target cannot be met in this run set; no further repeats
            ok = [r["rc"] == 0 and r["seconds"] <= limit for r in runs]
            verdict = "met" if all(ok) else "not met" if not any(ok) else "not confirmed"
            row = {"config": name, "layers": layers, "n": n, "m": M, "batch": B, "T": T, "dtype": dtype, "k": 8,
                   "baseline": True, "limit_s": limit, "runs": runs, "verdict": verdict,
                   "command": f"lstm-jax diagnose {name}.pt --batch {B} --T {T} --dtype {dtype}"}
            rows.append(row)
            print(f"{name}: " + ", ".join(_fmt_run(r) for r in runs) + f" (limit {limit:.0f} s): {verdict}", flush=True)
    return rows


# --------------------------------------------------------------------------- the peer: the same curve by torch


def _torch_curve(layer0: dict, n: int, dtype: str):
    """``curve(x (T, m) numpy) -> log ||ds_T/ds_(T-l)||_2, l = 1..T`` by torch autograd (module docstring)."""
    import torch

    tdt = torch.float64 if dtype == "float64" else torch.float32
    cell = torch.nn.LSTMCell(M, n).to(tdt)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh"):
            getattr(cell, name).copy_(layer0[f"{name}_l0"].to(tdt))
        # lstm_jax's reader adds torch's two biases in the file's float32; the same sum here, so that the curves
        # differ by the algorithms only (in float64 the float32 sum alone moves the curve by ~1e-8)
        cell.bias_ih.copy_((layer0["bias_ih_l0"] + layer0["bias_hh_l0"]).to(tdt))
        cell.bias_hh.zero_()

    def step(s, x):
        h, c = cell(x[None], (s[None, :n], s[None, n:]))
        return torch.cat([h[0], c[0]])

    jac = torch.func.vmap(torch.func.jacrev(step), in_dims=(0, 0))

    def curve(x):
        x = torch.as_tensor(x, dtype=tdt)
        with torch.no_grad():
            s, prev = torch.zeros(2 * n, dtype=tdt), []
            for t in range(x.shape[0]):
                prev.append(s)
                s = step(s, x[t])
            J = jac(torch.stack(prev), x)  # (T, d, d): J[t] = ds_(t+1)/ds_t
            P, a, out = torch.eye(2 * n, dtype=tdt), torch.zeros((), dtype=tdt), []
            for t in range(x.shape[0] - 1, -1, -1):
                P = P @ J[t]
                nu = torch.linalg.matrix_norm(P)  # Frobenius: the log-space renormalisation
                P, a = P / nu, a + torch.log(nu)
                out.append(a + torch.log(torch.linalg.matrix_norm(P, ord=2)))
        return torch.stack(out).numpy()

    return curve


def _jax_curve(params, n: int, dtype: str):
    import jax.numpy as jnp

    import lstm_jax
    from lstm_jax.diagnose import _core

    cell = lstm_jax.cell_of("lstm")
    w = cell.weights(jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params))

    vjp = partial(cell.vjp_wide, w)  # one object: _log_suffix_norms compiles once per shape

    @jax.jit
    def factors(x):
        s0 = cell.zero(n, x.dtype)
        _, traj = cell.run(w, s0, x)
        return cell.factors_along(w, s0, traj, x)

    def curve(x):  # the window, the rank choice and the tail, as diagnose runs them
        x = jnp.asarray(x, dtype)
        return _core._log_suffix_norms(vjp, factors(x), x.shape[0], 1, x.shape[0], 2 * n)[0]

    return curve


def run_peer(n: int, B: int, T: int, dtype: str, rounds: int) -> dict:
    import torch

    import lstm_jax.io

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "model.pt"
        _state_dict(path, 1, n, M)
        sd = torch.load(path, weights_only=True)
        params = lstm_jax.io.load_model(path).layers[0].params
    xs = np.random.default_rng(0).standard_normal((B, T, M))
    jx, tc = _jax_curve(params, n, dtype), _torch_curve(sd, n, dtype)
    a, b = np.stack([jx(x) for x in xs]), np.stack([tc(x) for x in xs])
    times = H.interleaved({"lstm_jax": lambda: [jx(x) for x in xs], "torch": lambda: [tc(x) for x in xs]},
                          rounds=rounds)
    return {"n": n, "m": M, "batch": B, "T": T, "dtype": dtype, "rounds": rounds,
            "lstm_jax": H.spread(times["lstm_jax"]), "torch": H.spread(times["torch"]),
            "torch_over_lstm_jax": H.ratio_spread(times["torch"], times["lstm_jax"]),
            "max_relative_difference": float(np.max(np.abs(np.expm1(a - b))))}


def main(argv=None):
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_output_args(ap)
    ap.add_argument("--repeats", type=int, default=2, help="cold runs per target (default %(default)s)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    jax.config.update("jax_enable_x64", True)  # an entry point: the float64 peer needs it
    configs, peer = (QUICK, (8, 2, 20, "float64", 2)) if args.quick else (TARGETS, (128, 4, 200, "float64", 3))
    meta = {"benchmark": "diagnose", "device": H.device_info(), "repeats": args.repeats}
    print(f"device: {H.device_words(meta['device'])}, jax {jax.__version__}", flush=True)
    rows = run_targets(configs, 1 if args.quick else args.repeats)
    try:
        meta["peer"] = run_peer(*peer)
    except ImportError as e:  # torch is the compare extra's
        meta["peer"] = {"not_measured": f"torch is not installed ({e})"}
    gib = 2**30
    table = H.markdown_table(
        ["configuration", "command", "runs (s, cold process)", "peak memory (GiB)", "limit", "verdict"],
        [[f"{r['layers']}-layer nn.LSTM({r['m']}, {r['n']}), {r['batch']} x T = {r['T']}, {r['dtype']}",
          f"`{r['command']}`", ", ".join(_fmt_run(x) for x in r["runs"]),
          ", ".join("–" if x["peak_rss_bytes"] is None else f"{x['peak_rss_bytes'] / gib:.2f}" for x in r["runs"]),
          f"{r['limit_s']:.0f} s", r["verdict"]]
         for r in rows])
    p = meta["peer"]
    if "not_measured" in p:
        footer = f"Peer not measured: {p['not_measured']}."
    else:
        footer = (f"The flow curve of layer 0 (n = {p['n']}, {p['batch']} sequences of T = {p['T']}, {p['dtype']}, "
                  f"every lag), {p['rounds']} interleaved rounds: lstm_jax {p['lstm_jax']['median']:.2f} s, torch "
                  f"autograd (jacrev + SVD per lag) {p['torch']['median']:.2f} s; torch / lstm_jax "
                  f"×{H.fmt_spread(p['torch_over_lstm_jax'])} (median, min–max over rounds); the curves differ by at "
                  f"most {p['max_relative_difference']:.1e} (relative, on the norms).")
    H.report(args, "diagnose", rows, meta, table + "\n\n" + footer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
