r"""The models of the long-lag experiments, their loss (written once), and their optimisers.

A model is a cell of :mod:`lstm_jax` plus a linear readout of the state at each sequence's own last step:
:math:`\hat y = W_{out} s_L + b_{out}` with :math:`s_L = h_L` (LSTM) or :math:`c_L` (RNN).  Sequences are
right-padded (:class:`~lstm_jax.experiments.TaskBatch`); the runners (:func:`lstm_jax.run_lstm`,
:func:`lstm_jax.run_rnn`) return the whole trajectory and the readout takes trajectory index
``L - 1``.  This is **exact**: steps after ``L`` are computed but never read, so they change neither the
output nor any gradient (``tests/test_train.py`` checks it against an unpadded run).

Model ids (:data:`MODELS`; the same hidden size ``n`` for all):

=====================  ==========================================================================
``rnn-tanh``           :math:`c_t = \tanh(W_{rec} c_{t-1} + W_{in} x_t + b)`
``rnn-sigmoid``        the article's RNN, :math:`\phi = \sigma`
``rnn-floss``          ``rnn-tanh`` trained with gradient flossing (Engelken 2023): loss
                       :math:`+\ \beta \sum_{i\le k} \lambda_i^2`, :math:`\lambda_i` the ``k`` leading
                       Lyapunov exponents of the step Jacobians (:func:`lstm_jax.rnn_step_jacobians`)
                       by differentiable QR (:func:`lstm_jax.lyapunov`), pushing them toward 0
``lstm-bf0``           LSTM, forget bias 0
``lstm-bf1``           LSTM, forget bias 1 (Gers et al. 2000)
``lstm-bf2`` … ``6``   LSTM, forget bias 2, 3, 4, 6 (:math:`f_0 = \sigma(b_f)` = 0.88, 0.95, 0.98, 0.998): the
                       forget-bias threshold sweep (:data:`FORGET_BIAS_MODELS`; planned only when named in ``--models``)
``lstm-chrono``        chrono initialisation (Tallec & Ollivier 2018): :math:`b_f = \log u`,
                       :math:`u \sim U(1, T_{max} - 1)`, :math:`b_i = -b_f` (:math:`T_{max} = T`)
``lstm-1997``          no forget gate (H&S 1997): :math:`W_f = 0`, :math:`b_f = 10^4` frozen, so
                       :math:`f_t = \sigma(10^4) = 1` exactly in float32 and float64 and
                       :math:`\sigma'(10^4) = 0`; ``W_f, b_f`` are excluded from updates
``lstm-frozen-forget``  LSTM with forget bias 1 whose forget-gate parameters ``W_f, b_f`` are excluded
                       from updates (trained everything else)
``constant``           the control: no cell and no input, one trained output bias
                       :math:`\hat y = b_{out}` (the best constant under the training loss), trained
                       on the same seed's data stream with the same optimiser; a run whose test
                       predictions match it has collapsed to a constant (``docs/long-lag/``)
``torch-lstm-bf1``,    ``lstm-bf1`` / ``lstm-chrono`` trained by PyTorch (``torch.nn.LSTM``) from the same
``torch-lstm-chrono``  initial parameters on the same batches (:mod:`lstm_jax.experiments._torch_replica`)
``lstm-1997-ib``       the ablation of ``lstm-chrono``'s forget gate: the ``lstm-1997`` cell (no forget
                       gate, :math:`f \equiv 1`) with chrono's *input*-gate bias :math:`b_i = -\log u`,
                       :math:`u \sim U(1, T - 1)` (same key, so the same numbers as ``lstm-chrono``'s
                       :math:`b_i`) — H&S 1997's own remedy against state drift, "initially bias the
                       input gate towards zero"; it differs from ``lstm-chrono`` only in the forget gate
``mingru``             the modern cells whose gates read the input only (:data:`MODERN_MODELS`, with ``minlstm``
                       and ``rglru``; Feng et al. 2024, De et al. 2024): their step Jacobian is diagonal,
                       the article's :math:`A_t = C_t = D_t = 0`.  Initialised as :func:`lstm_jax.init_mingru`, :func:`lstm_jax.init_minlstm`,
                       :func:`lstm_jax.init_rglru` (the papers' initialisations) and **trained in the parallel
                       form** (:func:`lstm_jax.parallel_run_linear`, one associative scan over time; the same
                       values as the sequential scan up to summation order).  The RG-LRU keeps its input's
                       width, so ``rglru`` reads :math:`E x_t` with a trained input map :math:`E` ``(n, m)``
                       (entries :math:`N(0, 1)/\sqrt m`), as Griffin's recurrent block feeds it a linear
                       projection (its convolution and gating branch are not modelled)
``mlstm``              xLSTM's mLSTM (heads of size 4, :func:`lstm_jax.init_mlstm`), diagonal too: its memory
                       :math:`(C_t, n_t)` has Jacobian :math:`f_t I` per head; trained in the parallel form and
                       read out through :math:`h_t = o_t \odot C_t q_t/\max(|n_t^\top q_t|, 1)`
``slstm``              xLSTM's sLSTM (one head, :func:`lstm_jax.init_slstm`: forget biases linspace(3, 6)),
                       the modern cell with memory mixing; the readout reads :math:`h_L`
=====================  ==========================================================================

The optimiser is optax Adam after ``clip_by_global_norm``; frozen parameters go through
``optax.set_to_zero`` in an ``optax.multi_transform`` (their update is exactly 0 and they do not count in
the clipping norm).

References: F. Gers, J. Schmidhuber, F. Cummins, Neural Computation 12(10), 2000.  C. Tallec, Y. Ollivier,
"Can recurrent neural networks warp time?", ICLR 2018.  R. Engelken, "Gradient flossing: improving gradient
descent through dynamic control of Jacobians", NeurIPS 2023.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from .. import (
    SIGMOID,
    TANH,
    LSTMParams,
    LSTMState,
    RNNParams,
    cell_of,
    half_life,
    init_lstm,
    init_mingru,
    init_minlstm,
    init_mlstm,
    init_rglru,
    init_rnn,
    init_slstm,
    lyapunov,
    parallel_run_linear,
    run_cell,
    rnn_step_jacobians,
    run_lstm,
    run_lstm_batch,
    run_rnn,
    run_rnn_batch,
    zero_state,
)
from ._tasks import check_task

#: the LSTMs whose only difference is the initial forget bias b_f (f_0 = σ(b_f)): where does "closed" begin?
FORGET_BIAS_MODELS = ("lstm-bf2", "lstm-bf3", "lstm-bf4", "lstm-bf6")
#: the control of every (task, T, seed): one trained output bias, no cell, no input
CONSTANT = "constant"
#: ``lstm-bf1`` and ``lstm-chrono`` trained by PyTorch on the same batches (:mod:`._torch_replica`)
TORCH_MODELS = ("torch-lstm-bf1", "torch-lstm-chrono")
#: the modern cells (each model id is its kind): gates from the input only (diagonal Jacobian), then the sLSTM
MODERN_MODELS = ("mingru", "minlstm", "rglru", "mlstm", "slstm")
MODELS = ("rnn-tanh", "rnn-sigmoid", "rnn-floss", "lstm-bf0", "lstm-bf1", "lstm-chrono", "lstm-1997",
          "lstm-frozen-forget", "lstm-1997-ib") + FORGET_BIAS_MODELS + (CONSTANT,) + TORCH_MODELS + MODERN_MODELS
#: the mLSTM's head size in the long-lag models (n / MLSTM_HEAD heads)
MLSTM_HEAD = 4
_MODERN_INIT = {"mingru": init_mingru, "minlstm": init_minlstm, "slstm": init_slstm,
                "rglru": lambda key, n, m, dtype: init_rglru(key, n, dtype=dtype),
                "mlstm": lambda key, n, m, dtype: init_mlstm(key, n, m, heads=max(1, n // MLSTM_HEAD), dtype=dtype)}
#: models whose forget gate is not trained (``W_f, b_f`` excluded from updates)
NO_FORGET_TRAINING = ("lstm-1997", "lstm-frozen-forget", "lstm-1997-ib")
#: the LSTM variants of the main sweep (the forget-bias models run in their own sweep folder)
LSTM_MODELS = tuple(m for m in MODELS if m.startswith("lstm") and m not in FORGET_BIAS_MODELS)
RNN_MODELS = tuple(m for m in MODELS if m.startswith("rnn"))
#: the frozen pre-activation of the 1997 cell's "forget gate": sigma(1e4) == 1.0 exactly
NO_FORGET_BIAS = 1.0e4
#: gradient flossing: weight beta, number k of exponents, sequences of the batch used
FLOSS_WEIGHT, FLOSS_K, FLOSS_SEQS = 1.0, 4, 8


class ModelSpec(NamedTuple):
    """Everything static about a model: id, task, ``T`` (for chrono), sizes; ``forget_bias`` for ``lstm``."""

    model: str
    task: str
    T: int
    n: int
    forget_bias: float = 1.0  # only for the free-form id "lstm"


def check_model(model: str) -> str:
    if model not in MODELS + ("lstm",):
        raise ValueError(f"model must be one of {list(MODELS) + ['lstm']}, got {model!r}")
    return model


def is_lstm(model: str) -> bool:
    return model.startswith("lstm")


def is_modern(model: str) -> bool:
    return model in MODERN_MODELS


def init_model(key: jax.Array, spec: ModelSpec, dtype=jnp.float32) -> dict:
    """``{"cell": LSTMParams | RNNParams, "W_out": (out, n), "b_out": (out,)}`` from an explicit key (all ``dtype``);
    ``{"b_out": zeros (out,)}`` for the :data:`CONSTANT` control (the other models' ``b_out`` start too)."""
    check_model(spec.model)
    _, m, out, _, _ = check_task(spec.task)
    if spec.model == CONSTANT:
        return {"b_out": jnp.zeros((out,), dtype)}
    k_cell, k_out, k_chrono = jax.random.split(key, 3)
    n = spec.n
    extra = {}
    if is_modern(spec.model):
        cell = _MODERN_INIT[spec.model](k_cell, n, m, dtype=dtype)
        if spec.model == "rglru":  # the RG-LRU keeps its input's width: a trained input map E (n, m) first
            extra["embed"] = jax.random.normal(k_chrono, (n, m), dtype) / jnp.sqrt(m).astype(dtype)
    elif is_lstm(spec.model):
        bf = {"lstm-bf0": 0.0, "lstm-bf1": 1.0, "lstm-frozen-forget": 1.0, "lstm": spec.forget_bias,
              **{m: float(m[len("lstm-bf"):]) for m in FORGET_BIAS_MODELS}}.get(spec.model, 0.0)
        cell = init_lstm(k_cell, n, m, forget_bias=bf, dtype=dtype)
        if spec.model in ("lstm-chrono", "lstm-1997-ib"):
            b_f = jnp.log(jax.random.uniform(k_chrono, (n,), dtype, minval=1.0, maxval=max(spec.T - 1, 2)))
            cell = cell._replace(b_f=b_f, b_i=-b_f)
        if spec.model in ("lstm-1997", "lstm-1997-ib"):
            cell = cell._replace(W_f=jnp.zeros_like(cell.W_f), b_f=jnp.full((n,), NO_FORGET_BIAS, cell.W_f.dtype))
    else:
        cell = init_rnn(k_cell, n, m, bias=True, dtype=dtype)
    W_out = jax.random.normal(k_out, (out, n), dtype) / jnp.sqrt(n).astype(dtype)
    return {"cell": cell, "W_out": W_out, "b_out": jnp.zeros((out,), dtype), **extra}


def trainable_mask(params: dict, model: str) -> dict:
    """Pytree of labels ``"train"`` / ``"frozen"``: ``W_f, b_f`` frozen for :data:`NO_FORGET_TRAINING`."""
    if model == CONSTANT:
        return {"b_out": "train"}
    frozen = ("W_f", "b_f") if model in NO_FORGET_TRAINING else ()
    cell = params["cell"]
    cell_labels = type(cell)(*["frozen" if f in frozen else "train" for f in cell._fields])
    return {"cell": cell_labels, "W_out": "train", "b_out": "train", **{k: "train" for k in params if k == "embed"}}


def parameter_count(params: dict, model: str) -> tuple[int, int]:
    """(trainable, total) number of scalars."""
    labels = jax.tree_util.tree_leaves(trainable_mask(params, model))
    sizes = [int(x.size) for x in jax.tree_util.tree_leaves(params)]
    return sum(s for s, lab in zip(sizes, labels) if lab == "train"), sum(sizes)


def make_optimizer(model: str, params: dict, lr: float, clip: float | None) -> optax.GradientTransformation:
    """``clip_by_global_norm(clip)`` (if ``clip``) then ``adam(lr)`` on the trainable leaves; frozen ones get 0."""
    train = optax.chain(*([optax.clip_by_global_norm(clip)] if clip else []), optax.adam(lr))
    return optax.multi_transform({"train": train, "frozen": optax.set_to_zero()}, trainable_mask(params, model))


def _activation(model: str):
    return SIGMOID if model == "rnn-sigmoid" else TANH


def _at_lengths(traj: jax.Array, lengths: jax.Array) -> jax.Array:
    """``traj (B, T, n)`` read at each sequence's own last step (trajectory index ``lengths - 1``): ``(B, n)``."""
    return jnp.take_along_axis(traj, (lengths - 1)[:, None, None], axis=1)[:, 0]


def final_states(params: dict, xs: jax.Array, lengths: jax.Array, model: str) -> jax.Array:
    """``(B, n)`` state at each sequence's own last step, from :func:`lstm_jax.run_lstm` / :func:`lstm_jax.run_rnn`.

    The runner training uses (``python -m benchmarks.long_lag`` times it against :func:`final_states_batch` at the
    sweep's shape).
    """
    cell = params["cell"]
    if is_modern(model):
        traj = modern_outputs(params, xs, model)
    elif is_lstm(model):
        n = cell.W_f.shape[0]
        traj = jax.vmap(lambda x: run_lstm(cell, zero_state(n, xs.dtype), x)[1].h)(xs)
    else:
        n = cell.W_rec.shape[0]
        traj = jax.vmap(lambda x: run_rnn(cell, jnp.zeros(n, xs.dtype), x, _activation(model))[1])(xs)
    return _at_lengths(traj, lengths)


def final_states_batch(params: dict, xs: jax.Array, lengths: jax.Array, model: str) -> jax.Array:
    """:func:`final_states` on the batch runners with a custom VJP (:func:`lstm_jax.run_lstm_batch`,
    :func:`lstm_jax.run_rnn_batch`): the same values up to summation order, reverse mode only."""
    cell = params["cell"]
    B = xs.shape[0]
    if is_modern(model):
        return final_states(params, xs, lengths, model)  # the parallel form (linear cells) or the cell's scan
    if is_lstm(model):
        n = cell.W_f.shape[0]
        zeros = jnp.zeros((B, n), xs.dtype)
        traj = run_lstm_batch(cell, LSTMState(zeros, zeros), xs, time_major=False)[1]
    else:
        n = cell.W_rec.shape[0]
        traj = run_rnn_batch(cell, jnp.zeros((B, n), xs.dtype), xs, _activation(model), time_major=False)[1]
    return _at_lengths(traj, lengths)


def cell_inputs(params: dict, xs: jax.Array) -> jax.Array:
    """What the cell reads: ``xs`` itself, or :math:`E x_t` for a model with an input map ``embed`` (``rglru``)."""
    return xs @ params["embed"].T if "embed" in params else xs


def modern_outputs(params: dict, xs: jax.Array, model: str) -> jax.Array:
    r"""``(B, T, n)`` outputs :math:`h_t` of a :data:`MODERN_MODELS` cell from the zero state.

    The diagonal linear cells by :func:`lstm_jax.parallel_run_linear` (the parallel form over time), the sLSTM
    by its sequential scan (:func:`lstm_jax.run_cell`); both exact, differentiable by ordinary autodiff.
    """
    cell = cell_of(model)
    p, n, _ = cell.check(params["cell"], "params['cell']")
    u = cell_inputs(params, xs)
    s0 = cell.zero(n, u.dtype)
    if cell.diagonal_linear:
        states = jax.vmap(lambda x: parallel_run_linear(model, p, s0, x))(u)
    else:
        states = jax.vmap(lambda x: run_cell(model, p, s0, x)[1])(u)
    return cell.outputs(cell.weights(p), states, u)


def predict(params: dict, batch, model: str, final=final_states) -> jax.Array:
    """``(B, out)`` readout of the final states (``final``: :func:`final_states` or :func:`final_states_batch`);
    ``b_out`` for every sequence for the :data:`CONSTANT` control."""
    if model == CONSTANT:
        return jnp.broadcast_to(params["b_out"], (batch.y.shape[0],) + params["b_out"].shape)
    return final(params, batch.xs, batch.lengths, model) @ params["W_out"].T + params["b_out"]


def floss_penalty(cell: RNNParams, xs: jax.Array, k: int = FLOSS_K) -> jax.Array:
    r"""Gradient flossing penalty :math:`\frac1B\sum_b\sum_{i\le k}\lambda_i(b)^2` (Engelken 2023).

    :math:`\lambda_i(b)` are the ``k`` leading Lyapunov exponents of the tanh RNN along sequence ``b`` of
    ``xs (B, T, m)`` from :math:`c_0 = 0`: the step Jacobians come from
    :func:`lstm_jax.rnn_step_jacobians` and the exponents from the QR recursion of
    :func:`lstm_jax.lyapunov` (:math:`Q_tR_t = J_tQ_{t-1}`, :math:`\lambda_i = \frac1T\sum_t\log|R_{t,ii}|`),
    differentiated by JAX through the QR decompositions.
    """
    n = cell.W_rec.shape[0]

    def one(x):
        jacs = rnn_step_jacobians(cell, jnp.zeros(n, x.dtype), x, TANH)
        return jnp.sum(lyapunov(jacs, k=min(k, n)).exponents ** 2)

    return jnp.mean(jax.vmap(one)(xs))


def loss_terms(params: dict, batch, spec: ModelSpec, final=final_states) -> tuple[jax.Array, jax.Array]:
    """The training objective, written once: ``(loss, per-sequence |error| (B,))``.

    Regression tasks: mean squared error of the readout and ``|y_hat - y|``.  Temporal order:
    softmax cross-entropy and ``0`` (right) / ``1`` (wrong) per sequence.  ``rnn-floss`` adds
    :data:`FLOSS_WEIGHT` times :func:`floss_penalty` on the first :data:`FLOSS_SEQS` sequences over the
    first ``T`` steps (every sequence is at least ``T`` long).
    """
    _, _, _, _, regression = check_task(spec.task)
    out = predict(params, batch, spec.model, final)
    if regression:
        err = out[:, 0] - batch.y
        loss, abs_err = jnp.mean(err**2), jnp.abs(err)
    else:
        loss = optax.softmax_cross_entropy_with_integer_labels(out, batch.y).mean()
        abs_err = (jnp.argmax(out, -1) != batch.y).astype(out.dtype)
    if spec.model == "rnn-floss":
        loss = loss + FLOSS_WEIGHT * floss_penalty(params["cell"], batch.xs[:FLOSS_SEQS, : spec.T])
    return loss, abs_err


def forget_gate_is_one(params: dict) -> bool:
    """For ``lstm-1997``: ``W_f == 0`` and ``sigmoid(b_f) == 1`` exactly in the parameters' dtype."""
    c: LSTMParams = params["cell"]
    return bool(jnp.all(c.W_f == 0) and jnp.all(jax.nn.sigmoid(c.b_f) == 1))


def gradient_half_life(lyap: float | None) -> float | None:
    """Gradient half-life ``ln 2 / -lambda_1`` in steps (:func:`lstm_jax.half_life`) for a negative leading
    exponent; None when it is not measured or not negative (no decay)."""
    return float(half_life(lyap)) if lyap is not None and lyap < 0 else None
