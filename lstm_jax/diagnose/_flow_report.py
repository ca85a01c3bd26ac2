"""``lstm-jax flow``: gradient flow of RNN-σ, RNN-tanh and LSTMs (forget bias 0 / 1 / 3) on the same inputs.

For every model, on one random input sequence (float64): the norm of the exact
:math:`\\partial s_T/\\partial s_t` against the lag ``T - t`` (RNN: :math:`c`;
LSTM: the joint :math:`(h, c)` Jacobian and its :math:`c`-block, and the
article's :math:`\\prod(A+B+C+D)` beside it), the leading Lyapunov exponent
(QR, log space), and for the LSTM with forget bias 1 the lag map
:math:`\\|\\partial c_t/\\partial c_u\\|` (over the first ``min(T, LAG_MAP_MAX)`` steps, said
in the figure and the JSON) and the sizes of the eq. (6) terms along the trajectory.
Written as strict JSON and three PNG figures, all published together
(:class:`lstm_jax.outputs.AtomicOutputs`): on any error no file is created or changed.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax import (
    SIGMOID,
    TANH,
    gradient_flow_norms,
    init_lstm,
    init_rnn,
    lag_map,
    lstm_step_jacobians,
    lstm_terms_along,
    lyapunov,
    rnn_step_jacobians,
    suffix_products,
    zero_state,
)
from lstm_jax._validation import SEED_MAX, _available_bytes, check_int

F64 = jnp.float64
FORGET_BIASES = (0.0, 1.0, 3.0)
LAG_MAP_MAX = 300  # the lag map costs O(T^2 d^3): it covers the first min(T, LAG_MAP_MAX) steps
#: readable names of the models (JSON keys stay the short ids)
LABELS = {
    "rnn-sigmoid": "RNN, σ (article's model)",
    "rnn-tanh": "RNN, tanh",
    "lstm-forget-bias0": "LSTM, forget bias 0",
    "lstm-forget-bias1": "LSTM, forget bias 1",
    "lstm-forget-bias3": "LSTM, forget bias 3",
}
FIGURES = ("flow_vs_lag.png", "lag_map.png", "terms.png")
TERM_LABELS = {
    "A": "‖A_t‖₂ (forget-gate path)",
    "B": "‖B_t‖₂ = max f_t (forget gate)",
    "C": "‖C_t‖₂ (input-gate path)",
    "D": "‖D_t‖₂ (candidate path)",
}


def estimate_bytes(T: int, n: int, m: int) -> int:
    """Peak memory of :func:`flow_report` in bytes, estimated from its largest float64 arrays.

    The LSTM part dominates: step Jacobians, direct suffix products with the associative
    scan's temporaries, the log-space products and the SVD inputs, about 12 arrays of
    ``(T, 2n, 2n)``; the eq. (6) terms, their total and products, about 10 of ``(T, n, n)``;
    the lag map's carry and products, 4 of ``(L, 2n, 2n)`` with ``L = min(T, LAG_MAP_MAX)``;
    plus 1 GiB for Python, JAX/XLA and matplotlib themselves (measured peak RSS: 0.8 GiB at the
    defaults T = 200, n = 32, estimate 1.1 GiB; 1.6 GiB at T = 300, n = 96, estimate 2.7 GiB).
    """
    L = min(T, LAG_MAP_MAX)
    d = 2 * n
    return 8 * (12 * T * d * d + 10 * T * n * n + 4 * L * d * d + 4 * T * (n + m)) + 2**30


def subplots(figsize=(6.4, 4.8), **kwargs):
    """``(fig, ax)``: a new :class:`matplotlib.figure.Figure` (not registered with pyplot: no global state, any
    backend of the caller's program) and its Axes; matplotlib is imported only when a figure is drawn."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(**kwargs)


def check_flow_args(seed, T, n, m, available: Optional[int] = None) -> tuple[int, int, int, int]:
    """Validate the report's arguments (names as on the command line) and refuse what cannot fit in memory.

    Raises:
      TypeError/ValueError: naming the option, what it got and what is accepted.
      MemoryError is never left to XLA: a ``ValueError`` says how much the run needs and how much is free.
    """
    seed = check_int(seed, "--seed", lo=0, hi=SEED_MAX)
    T = check_int(T, "--T", lo=2, accepts="an int >= 2 (eq. (6) terms need two steps)")
    n = check_int(n, "--n", lo=1)
    m = check_int(m, "--m", lo=1)
    need = estimate_bytes(T, n, m)
    avail = _available_bytes() if available is None else available
    if avail is not None and need > avail:
        raise ValueError(
            f"--T {T} --n {n} --m {m} needs about {need / 2**30:.1f} GiB of memory (the (T, 2n, 2n) float64 "
            f"Jacobian products dominate: ~{12 * 8 * T * 4 * n * n / 2**30:.1f} GiB) but {avail / 2**30:.1f} GiB "
            f"are available; reduce --n or --T"
        )
    return seed, T, n, m


def flow_report(seed: int = 0, T: int = 200, n: int = 32, m: int = 8,
                progress: Callable[[str], None] = lambda s: None) -> dict:
    """Compute every number of the report (float64; needs ``jax_enable_x64``).

    Arguments are validated first (:func:`check_flow_args`, including the memory estimate).
    """
    seed, T, n, m = check_flow_args(seed, T, n, m)
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
                        "log_spectral": norms.log_spectral, "lyapunov_top": lyapunov(J, k=1).exponents[0]}
    for bf in FORGET_BIASES:
        name = f"lstm-forget-bias{bf:g}"
        progress(name)
        p = init_lstm(k_lstm, n, m, forget_bias=bf, dtype=F64)
        s0 = zero_state(n, F64)
        J = jax.jit(lstm_step_jacobians)(p, s0, xs)
        norms = gradient_flow_norms(J)
        S = suffix_products(J)
        article = suffix_products(jax.jit(lstm_terms_along)(p, s0, xs).total())  # prod_{t+1..T}(A+B+C+D)
        models[name] = {
            "lag": norms.lag,
            "spectral": norms.spectral,
            "log_spectral": norms.log_spectral,
            "spectral_cc_block": jnp.linalg.norm(S[:, n:, n:], ord=2, axis=(-2, -1)),
            "article_product_spectral": jnp.concatenate(
                [jnp.linalg.norm(article, ord=2, axis=(-2, -1)), jnp.array([jnp.nan])]),
            "lyapunov_top": lyapunov(J, k=1).exponents[0],
        }
        del S, article
        if bf == 1.0:
            progress("lag map and eq. (6) term sizes, forget bias 1")
            terms = lstm_terms_along(p, s0, xs)
            lag_T = min(T, LAG_MAP_MAX)
            models[name]["lag_map_steps"] = lag_T
            models[name]["lag_map_cc"] = lag_map(J[:lag_T], lambda P: P[..., n:, n:])
            models[name]["term_spectral_norms"] = {
                k: jnp.linalg.norm(v, ord=2, axis=(-2, -1)) for k, v in terms._asdict().items()}
    dev = jax.devices()[0]
    return {"seed": seed, "T": T, "n": n, "m": m, "dtype": "float64", "jax_version": jax.__version__,
            "device": f"{dev.platform}: {dev.device_kind}", "models": models}


def _lag_axis_limits(report: dict) -> tuple[float, float]:
    """y-limits of the norm-vs-lag plot: all LSTM curves (the point of the figure) and a decade of margin.

    The RNN curves fall much further (σ: ~1e-130 at lag 200); they leave through the bottom,
    marked with an arrow and their value at the longest lag.
    """
    lstm = [np.asarray(r["spectral"], float) for k, r in report["models"].items() if k.startswith("lstm")]
    vals = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in lstm])
    lo = 10.0 ** (np.floor(np.log10(vals.min())) - 1)
    hi = 10.0 ** (np.ceil(np.log10(vals.max())) + 1)
    return lo, hi


def flow_figures(report: dict) -> dict:
    """The three figures as free-standing ``matplotlib.figure.Figure`` objects: ``{file name: figure}``."""
    figs = {}
    T, n = report["T"], report["n"]
    models = report["models"]
    fig, ax = subplots(figsize=(10.5, 5.0))
    lo, hi = _lag_axis_limits(report)
    colors = dict(zip(models, ["tab:red", "tab:orange", "tab:purple", "tab:blue", "tab:green"]))
    for name, r in models.items():
        y = np.asarray(r["spectral"], float)
        lag = np.asarray(r["lag"])
        ax.semilogy(lag, y, color=colors[name], lw=2.4, zorder=2,
                    label=f"{LABELS.get(name, name)}: λ₁ = {float(r['lyapunov_top']):+.3f}/step")
        if y[0] < lo:  # leaves the plot through the bottom: mark where, and say how far it falls
            x_exit = float(lag[np.nonzero(y < lo)[0].max()])
            right = x_exit > 0.6 * T
            ax.annotate(f"{LABELS.get(name, name).split(' (')[0]} falls to {y[0]:.0e} at lag {int(lag[0])}",
                        xy=(x_exit, lo), xytext=(-10 if right else 10, 28), textcoords="offset points",
                        color=colors[name], fontsize=7, ha="right" if right else "left",
                        arrowprops=dict(arrowstyle="->", color=colors[name], lw=1))
    art = np.asarray(models["lstm-forget-bias1"]["article_product_spectral"], float)
    ax.semilogy(models["lstm-forget-bias1"]["lag"], art, color="black", lw=1.0, ls=(0, (4, 3)), zorder=3,
                label="LSTM, forget bias 1: article's ∏(A+B+C+D) (c-block only)")
    ax.set_ylim(lo, hi)
    ax.set_xlim(0, T)
    ax.set_xlabel("lag T − t (steps)")
    ax.set_ylabel("‖∂s_T/∂s_t‖₂ (log scale)")
    ax.set_title(f"Gradient flow back from step T = {T} (n = {n}, random inputs, float64)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(True, which="major", alpha=0.3)
    figs["flow_vs_lag.png"] = fig

    lstm = models["lstm-forget-bias1"]
    M = np.asarray(lstm["lag_map_cc"], dtype=float)
    L = int(lstm.get("lag_map_steps", M.shape[0]))
    fig, ax = subplots(figsize=(6.2, 5.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        logM = np.log10(M)
    im = ax.imshow(logM, origin="lower", aspect="auto", cmap="viridis", extent=(-0.5, L - 0.5, 0.5, L + 0.5))
    fig.colorbar(im, ax=ax, label="log₁₀ ‖∂c_t/∂c_u‖₂ (h_u held fixed)")
    ax.set_xlabel("u (earlier step)")
    ax.set_ylabel("t (later step)")
    span = f"all {T} steps" if L == T else f"steps 1..{L} of T = {T} (the map costs O(T²))"
    ax.set_title(f"LSTM, forget bias 1: lag map of the c-block, {span}", fontsize=9)
    figs["lag_map.png"] = fig

    fig, ax = subplots(figsize=(9.0, 4.2))
    t = np.arange(2, T + 1)
    for k, v in lstm["term_spectral_norms"].items():
        ax.plot(t, np.asarray(v), label=TERM_LABELS.get(k, k), lw=1)
    ax.set_xlabel("step t")
    ax.set_ylabel("spectral norm")
    ax.set_title("Eq. (6) terms along a trajectory (LSTM, forget bias 1, corrected terms)")
    ax.set_ylim(0, None)
    ax.set_xlim(1, T + 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    ax.grid(True, alpha=0.3)
    figs["terms.png"] = fig
    return figs


def run_flow_cli(seed: int, T: int, n: int, m: int, out: str, figures: bool,
                 echo: Optional[Callable[[str], None]] = print) -> dict:
    """``lstm-jax flow``: validate everything, check ``out``, compute, then publish all files together.

    Order: arguments (:func:`check_flow_args`, memory estimate included) and the output folder
    (:func:`lstm_jax.outputs.check_writable_dir`) are checked before any computation; flow.json
    (strict JSON: NaN/inf as ``null``, counted in ``non_finite_replaced_by_null``) and the
    figures are staged and renamed into place only when all of them were written.
    """
    from tqdm import tqdm

    from ..outputs import AtomicOutputs, check_writable_dir, check_writable_file, strict_json

    seed, T, n, m = check_flow_args(seed, T, n, m)
    outdir = check_writable_dir(out, "--out")
    for name in ["flow.json"] + (list(FIGURES) if figures else []):
        check_writable_file(outdir / name, "--out")
    with tqdm(total=2 + len(FORGET_BIASES) + 1, desc="flow", unit="stage") as bar:
        def progress(stage):
            bar.set_postfix_str(stage)
            bar.update(1)

        report = flow_report(seed, T, n, m, progress=progress)
    figs = flow_figures(report) if figures else {}
    with AtomicOutputs() as files:
        written = [files.write(outdir / "flow.json", strict_json(report))]
        for name, fig in figs.items():
            written.append(files.write_with(outdir / name, lambda tmp, f=fig: f.savefig(tmp, format="png", dpi=120)))
    for path in written:
        echo(f"wrote {path}")
    return report
