r"""Training RNNs and LSTMs on the long-range tasks with optax (the article's gradient descent, Adam, clipping).

A model is a cell (:class:`~lstm_jax.RNNParams` or :class:`~lstm_jax.LSTMParams`)
plus a linear readout of the final state (``c_T`` for the RNN, ``h_T`` for the
LSTM).  The optimiser is an optax chain: optional
``optax.clip_by_global_norm`` (Pascanu, Mikolov & Bengio 2013's remedy for
exploding gradients) followed by ``optax.sgd`` (the article's update
:math:`W \leftarrow W - \alpha\,\partial E/\partial W`) or ``optax.adam``.
"""

from __future__ import annotations

import json
import pathlib
import time
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._activations import SIGMOID, TANH
from ._lstm import init_lstm, run_lstm, zero_state
from ._plotting import pyplot
from ._rnn import init_rnn, run_rnn
from ._tasks import TEMPORAL_ORDER_CLASSES, adding_problem, temporal_order


@dataclass(frozen=True)
class TrainConfig:
    task: str = "adding"  # or "temporal-order"
    T: int = 50
    model: str = "lstm"  # "rnn-sigmoid", "rnn-tanh", "lstm"
    n: int = 32
    forget_bias: float = 1.0
    optimizer: str = "adam"  # or "sgd"
    lr: float = 1e-2
    clip: Optional[float] = 1.0  # global-norm clipping; None for none
    batch: int = 64
    steps: int = 2000
    eval_every: int = 100
    eval_size: int = 1000
    seed: int = 0


TASKS = {
    "adding": (adding_problem, 2, 1),
    "temporal-order": (temporal_order, 6, TEMPORAL_ORDER_CLASSES),
}
SOLVED_FRACTION = 0.95  # share of held-out sequences that must be right


def init_model(key, cfg: TrainConfig) -> dict:
    if cfg.task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {cfg.task!r}")
    _, m, out = TASKS[cfg.task]
    k_cell, k_out = jax.random.split(key)
    if cfg.model == "lstm":
        cell = init_lstm(k_cell, cfg.n, m, forget_bias=cfg.forget_bias)
    elif cfg.model in ("rnn-sigmoid", "rnn-tanh"):
        cell = init_rnn(k_cell, cfg.n, m, bias=True)
    else:
        raise ValueError(f"model must be 'lstm', 'rnn-sigmoid' or 'rnn-tanh', got {cfg.model!r}")
    W_out = jax.random.normal(k_out, (out, cfg.n)) / jnp.sqrt(cfg.n)
    return {"cell": cell, "W_out": W_out, "b_out": jnp.zeros((out,))}


def _final_state(params, xs, model: str):
    if model == "lstm":
        n = params["cell"].W_f.shape[0]
        return run_lstm(params["cell"], zero_state(n, xs.dtype), xs)[0].h
    act = SIGMOID if model == "rnn-sigmoid" else TANH
    n = params["cell"].W_rec.shape[0]
    return run_rnn(params["cell"], jnp.zeros(n, xs.dtype), xs, act)[0]


def predict(params, xs, model: str):
    """Readout of the final state for a batch ``xs (B, T, m)``: ``(B, out)``."""
    h = jax.vmap(lambda x: _final_state(params, x, model))(xs)
    return h @ params["W_out"].T + params["b_out"]


def loss_and_metric(params, batch, cfg: TrainConfig):
    """(loss, fraction correct): MSE and |err| < 0.04 for adding; cross-entropy and accuracy for temporal order."""
    out = predict(params, batch.xs, cfg.model)
    if cfg.task == "adding":
        err = out[:, 0] - batch.y
        return jnp.mean(err**2), jnp.mean(jnp.abs(err) < 0.04)
    loss = optax.softmax_cross_entropy_with_integer_labels(out, batch.y).mean()
    return loss, jnp.mean(jnp.argmax(out, -1) == batch.y)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    base = {"sgd": optax.sgd, "adam": optax.adam}.get(cfg.optimizer)
    if base is None:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")
    parts = ([optax.clip_by_global_norm(cfg.clip)] if cfg.clip else []) + [base(cfg.lr)]
    return optax.chain(*parts)


class TrainResult(NamedTuple):
    params: dict
    log: dict  # per-step loss and grad norm; per-eval held-out metric
    solved: bool
    steps_to_solve: Optional[int]
    final_metric: float
    final_loss: float
    seconds: float


def train(cfg: TrainConfig, progress: Optional[Callable[[int, float, Optional[float]], None]] = None) -> TrainResult:
    """Train one model.

    ``progress(step, loss, metric)`` is called after every step with the batch loss, and ``metric`` the
    held-out fraction correct at evaluation steps (``None`` otherwise).  Training stops at the budget or
    at the first evaluation that counts as solved.
    """
    gen, _, _ = TASKS.get(cfg.task, (None, 0, 0))
    if gen is None:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {cfg.task!r}")
    key = jax.random.PRNGKey(cfg.seed)
    k_init, k_data, k_eval = jax.random.split(key, 3)
    params = init_model(k_init, cfg)
    opt = make_optimizer(cfg)
    state = opt.init(params)
    held_out = gen(k_eval, cfg.eval_size, cfg.T)

    @jax.jit
    def step(params, state, k):
        batch = gen(k, cfg.batch, cfg.T)
        (loss, _), grads = jax.value_and_grad(loss_and_metric, has_aux=True)(params, batch, cfg)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss, optax.tree.norm(grads)

    evaluate = jax.jit(lambda p: loss_and_metric(p, held_out, cfg))
    log = {"step": [], "loss": [], "grad_norm": [], "eval_step": [], "eval_loss": [], "eval_metric": []}
    solved_at = None
    t0 = time.perf_counter()
    for i in range(1, cfg.steps + 1):
        params, state, loss, gnorm = step(params, state, jax.random.fold_in(k_data, i))
        log["step"].append(i)
        log["loss"].append(float(loss))
        log["grad_norm"].append(float(gnorm))
        metric = None
        if i % cfg.eval_every == 0 or i == cfg.steps:
            e_loss, metric = map(float, evaluate(params))
            log["eval_step"].append(i)
            log["eval_loss"].append(e_loss)
            log["eval_metric"].append(metric)
            if metric >= SOLVED_FRACTION:
                solved_at = i
        if progress:
            progress(i, log["loss"][-1], metric)
        if solved_at is not None:
            break
    e_loss, metric = map(float, evaluate(params))
    return TrainResult(params, log, solved_at is not None, solved_at, metric, e_loss, time.perf_counter() - t0)


def save_checkpoint(params: dict, path: pathlib.Path, cfg: TrainConfig) -> None:
    """Parameters as ``.npz`` (leaf paths as keys) plus the config as JSON beside it."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    np.savez(path, **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})
    pathlib.Path(str(path) + ".json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")


def load_checkpoint(path: pathlib.Path, like: dict) -> dict:
    """Load an ``.npz`` written by :func:`save_checkpoint` into the structure of ``like``."""
    data = np.load(path)
    paths = jax.tree_util.tree_leaves_with_path(like)
    treedef = jax.tree_util.tree_structure(like)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(data[jax.tree_util.keystr(k)]) for k, _ in paths])


SWEEP_MODELS = (("rnn-sigmoid", 0.0), ("rnn-tanh", 0.0), ("lstm", 0.0), ("lstm", 1.0))


def _label(model: str, bf: float) -> str:
    return f"lstm-forget-bias{bf:g}" if model == "lstm" else model


def sweep(base: TrainConfig, Ts, seeds: int, echo: Callable[[str], None] = print,
          progress: Optional[Callable[[int, float, Optional[float]], None]] = None) -> list[dict]:
    """Every model of :data:`SWEEP_MODELS` at every ``T``, ``seeds`` seeds, the same step budget."""
    rows = []
    total = len(Ts) * len(SWEEP_MODELS) * seeds
    k = 0
    for T in Ts:
        for model, bf in SWEEP_MODELS:
            for seed in range(seeds):
                k += 1
                cfg = TrainConfig(**{**asdict(base), "T": T, "model": model, "forget_bias": bf, "seed": seed})
                r = train(cfg, progress)
                rows.append({"T": T, "model": _label(model, bf), "seed": seed, "solved": r.solved,
                             "steps_to_solve": r.steps_to_solve, "final_metric": r.final_metric,
                             "final_loss": r.final_loss, "seconds": round(r.seconds, 2)})
                echo(f"[{k}/{total}] T={T:<4} {_label(model, bf):22s} seed {seed}: "
                     f"{'solved at step ' + str(r.steps_to_solve) if r.solved else 'not solved'}, "
                     f"held-out correct {r.final_metric:.3f}, loss {r.final_loss:.4f} ({r.seconds:.0f} s)")
    return rows


def sweep_table(rows: list[dict]) -> str:
    """Markdown: for each (model, T), solved seeds, median steps to solve, mean final held-out metric."""
    Ts = sorted({r["T"] for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    out = ["| model | " + " | ".join(f"T = {T}" for T in Ts) + " |", "|---|" + "---|" * len(Ts)]
    for m in models:
        cells = []
        for T in Ts:
            rs = [r for r in rows if r["model"] == m and r["T"] == T]
            solved = [r["steps_to_solve"] for r in rs if r["solved"]]
            steps = f", {int(np.median(solved))} steps" if solved else ""
            cells.append(f"{len(solved)}/{len(rs)} solved{steps}; correct {np.mean([r['final_metric'] for r in rs]):.2f}")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def sweep_figure(rows: list[dict], path: pathlib.Path, title: str) -> None:
    plt = pyplot()
    Ts = sorted({r["T"] for r in rows})
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m in dict.fromkeys(r["model"] for r in rows):
        ys = [np.mean([r["final_metric"] for r in rows if r["model"] == m and r["T"] == T]) for T in Ts]
        ax.plot(Ts, ys, "o-", label=m)
    ax.axhline(SOLVED_FRACTION, color="gray", ls="--", lw=1, label=f"solved ({SOLVED_FRACTION:.0%})")
    ax.set_xscale("log")
    ax.set_xticks(Ts, [str(T) for T in Ts])
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("held-out fraction correct (mean over seeds)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
