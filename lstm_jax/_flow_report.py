"""``lstm-jax flow``: gradient flow of RNN-σ, RNN-tanh and LSTMs (forget bias 0 / 1 / 3) on the same inputs.

For every model, on one random input sequence (float64): the norm of the exact
:math:`\\partial s_T/\\partial s_t` against the lag ``T - t`` (RNN: :math:`c`;
LSTM: the joint :math:`(h, c)` Jacobian and its :math:`c`-block, and the
article's :math:`\\prod(A+B+C+D)` beside it), the leading Lyapunov exponent
(QR, log space), and for the LSTM with forget bias 1 the lag map
:math:`\\|\\partial c_t/\\partial c_u\\|` and the sizes of the eq. (6) terms
along the trajectory.  Written as JSON and, with matplotlib, three PNG figures.
"""

from __future__ import annotations

import json
import pathlib
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._activations import SIGMOID, TANH
from ._flow import gradient_flow_norms, lag_map, lyapunov, suffix_products
from ._jacobians import lstm_step_jacobians, lstm_terms_along, rnn_step_jacobians
from ._lstm import init_lstm, zero_state
from ._plotting import pyplot
from ._rnn import init_rnn

F64 = jnp.float64
FORGET_BIASES = (0.0, 1.0, 3.0)


def flow_report(seed: int = 0, T: int = 200, n: int = 32, m: int = 8,
                progress: Callable[[str], None] = lambda s: None) -> dict:
    """Compute every number of the report (float64; needs ``jax_enable_x64``)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError("flow_report computes in float64: enable jax_enable_x64 first (the CLI does)")
    key = jax.random.PRNGKey(seed)
    k_in, k_rnn, k_lstm = jax.random.split(key, 3)
    xs = jax.random.normal(k_in, (T, m), F64)
    models = {}
    for act in (SIGMOID, TANH):
        name = f"rnn-{act.name}"
        progress(name)
        p = init_rnn(k_rnn, n, m, dtype=F64)
        J = jax.jit(rnn_step_jacobians, static_argnums=3)(p, jnp.zeros(n, F64), xs, act)
        norms = gradient_flow_norms(J)
        models[name] = {"lag": norms.lag, "spectral": norms.spectral, "frobenius": norms.frobenius,
                        "lyapunov_top": lyapunov(J, k=1).exponents[0]}
    for bf in FORGET_BIASES:
        name = f"lstm-forget-bias{bf:g}"
        progress(name)
        p = init_lstm(k_lstm, n, m, forget_bias=bf, dtype=F64)
        s0 = zero_state(n, F64)
        J = jax.jit(lstm_step_jacobians)(p, s0, xs)
        S = suffix_products(J)
        article = suffix_products(jax.jit(lstm_terms_along)(p, s0, xs).total())  # prod_{t+1..T}(A+B+C+D)
        models[name] = {
            "lag": np.arange(T, 0, -1),
            "spectral": jnp.linalg.norm(S, ord=2, axis=(-2, -1)),
            "spectral_cc_block": jnp.linalg.norm(S[:, n:, n:], ord=2, axis=(-2, -1)),
            "article_product_spectral": jnp.concatenate(
                [jnp.linalg.norm(article, ord=2, axis=(-2, -1)), jnp.array([jnp.nan])]),
            "lyapunov_top": lyapunov(J, k=1).exponents[0],
        }
        if bf == 1.0:
            progress("lag map and eq. (6) term sizes, forget bias 1")
            terms = lstm_terms_along(p, s0, xs)
            lag_T = min(T, 120)
            models[name]["lag_map_cc"] = lag_map(J[:lag_T], lambda P: P[..., n:, n:])
            models[name]["term_spectral_norms"] = {
                k: jnp.linalg.norm(v, ord=2, axis=(-2, -1)) for k, v in terms._asdict().items()}
    dev = jax.devices()[0]
    return {"seed": seed, "T": T, "n": n, "m": m, "dtype": "float64", "jax_version": jax.__version__,
            "device": f"{dev.platform}: {dev.device_kind}", "models": models}


def _to_json(x):
    if isinstance(x, dict):
        return {k: _to_json(v) for k, v in x.items()}
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        a = np.asarray(x, dtype=float) if np.asarray(x).dtype.kind == "f" else np.asarray(x)
        return [None if (isinstance(v, float) and not np.isfinite(v)) else v for v in a.tolist()] \
            if a.ndim == 1 else (_to_json(list(a)) if a.ndim > 1 else a.item())
    if isinstance(x, list):
        return [_to_json(v) for v in x]
    return x


def write_figures(report: dict, out: pathlib.Path) -> list[pathlib.Path]:
    """Three PNGs: norm vs lag (log axis), the LSTM lag map, the eq. (6) term sizes over time."""
    plt = pyplot()
    paths = []
    T, n = report["T"], report["n"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, r in report["models"].items():
        ax.semilogy(r["lag"], np.asarray(r["spectral"]), label=f"{name} (λ₁ = {float(r['lyapunov_top']):+.3f})")
        if "article_product_spectral" in r and name.endswith("bias1"):
            ax.semilogy(r["lag"], np.asarray(r["article_product_spectral"]), "--", color="gray",
                        label=f"{name}: article's ∏(A+B+C+D)")
    ax.set_xlabel("lag T − t (steps)")
    ax.set_ylabel("‖∂s_T/∂s_t‖₂ (log scale)")
    ax.set_title(f"Gradient flow back from step T = {T} (n = {n}, random inputs, float64)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    paths.append(out / "flow_vs_lag.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    lstm = report["models"]["lstm-forget-bias1"]
    M = np.asarray(lstm["lag_map_cc"], dtype=float)
    fig, ax = plt.subplots(figsize=(5.8, 4.8))
    im = ax.imshow(np.log10(M), origin="lower", aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, label="log₁₀ ‖∂c_t/∂c_u‖₂")
    ax.set_xlabel("u (earlier step)")
    ax.set_ylabel("t (later step)")
    ax.set_title("LSTM, forget bias 1: lag map of the c-block")
    paths.append(out / "lag_map.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    t = np.arange(2, T + 1)
    for k, v in lstm["term_spectral_norms"].items():
        ax.plot(t, np.asarray(v), label=f"‖{k}_t‖₂", lw=1)
    ax.set_xlabel("t")
    ax.set_ylabel("spectral norm")
    ax.set_title("Eq. (6) terms along a trajectory (LSTM, forget bias 1, corrected terms)")
    ax.set_ylim(0, None)
    ax.margins(y=0.25)
    ax.legend(ncol=4, loc="upper center")
    ax.grid(True, alpha=0.3)
    paths.append(out / "terms.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def run_flow_cli(seed: int, T: int, n: int, m: int, out: str, figures: bool,
                 echo: Optional[Callable[[str], None]] = print) -> dict:
    outdir = pathlib.Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    with tqdm(total=2 + len(FORGET_BIASES) + 1, desc="flow", unit="stage") as bar:
        def progress(stage):
            bar.set_postfix_str(stage)
            bar.update(1)

        report = flow_report(seed, T, n, m, progress=progress)
    js = outdir / "flow.json"
    js.write_text(json.dumps(_to_json(report), indent=1) + "\n")
    echo(f"wrote {js}")
    if figures:
        for p in write_figures(report, outdir):
            echo(f"wrote {p}")
    return report
