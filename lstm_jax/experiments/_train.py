r"""One training run to the 1997 stopping rule, with gradient-flow snapshots.

:func:`train_run` trains one model (:data:`~lstm_jax.experiments.MODELS`) on one task with optax Adam
(global-norm clipping), ``batch`` sequences per update, drawing fresh sequences from
``fold_in(data_key, step)``.  Every ``check_every`` steps (``N = check_every * batch`` sequences; the
sweep uses ``N = 640``) it applies :func:`~lstm_jax.experiments.stopping_rule` to the absolute errors of
the most recent 2000 training sequences (each scored by the parameters *before* the update that used it,
as in online training), and stops at success or when the budget of training sequences is spent.  At
log-spaced moments (and at the end) it records a :func:`flow_snapshot`.  Finally it counts the test
errors (``|error| > 0.04``) on :data:`TEST_SIZE` = 2560 test sequences drawn from the fixed key
``PRNGKey(TEST_KEY)``, scoring **the parameters that scored the last training batch of the window that
passed** — no update after the rule fired — and, for the spread, the same for the last :data:`LAST_CHECKS`
checks (``test_errors_last_checks``).

The stopping rule as it binds (:func:`~lstm_jax.experiments.stopping_rule`, H&S 1997's two clauses: mean
squared error of the most recent 2000 training sequences below 0.01 *and* all of them within |error| <= 0.04):
the first clause is implied by the second (all |e| <= 0.04 gives a mean squared error <= 0.0016), so the
rule that decides is "2000 consecutive training sequences right".

Keys: ``PRNGKey(seed)`` splits into (init, data, diagnostics); the test set key does not depend on the seed.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._flow_during import diagnostic_batch, flow_snapshot
from ._models import CONSTANT, ModelSpec, init_model, loss_terms, make_optimizer, predict
from ._torch_replica import TORCH_MODELS, base_model, torch_chunk
from ._tasks import ERROR_THRESHOLD, STOP_WINDOW, TEST_SIZE, check_task, stopping_rule

TEST_KEY = 1997


class TrainSettings(NamedTuple):
    """Hyper-parameters of a run (static)."""

    batch: int = 32
    lr: float = 1e-2
    clip: Optional[float] = 1.0
    budget: int = 2_000_000  # training sequences
    check_every: int = 20  # steps between stopping-rule checks
    snapshot_growth: float = 1.6  # snapshots at sequences ~ growth**k (and the start and end)
    diagnostics: bool = True


class RunResult(NamedTuple):
    params: dict  # the parameters scored on the test set (see train_run)
    solved: bool
    sequences: int  # training sequences seen (at the stop or when the budget ran out)
    test_errors: Optional[int]
    curves: dict
    seconds: float
    #: test errors of the parameters that scored the last training batch at each of the last
    #: LAST_CHECKS checks (oldest first; the last entry is ``test_errors``)
    test_errors_last_checks: tuple = ()
    #: standard deviation of the tested parameters' predictions over the test set (regression tasks; else
    #: None): about 0 for a model that collapsed to a constant (the targets' own is 1/sqrt(24) = 0.204)
    test_prediction_std: Optional[float] = None


#: how many of the last stopping-rule checks get their parameters scored on the test set
LAST_CHECKS = 3


@functools.lru_cache(maxsize=64)
def make_chunk(spec: ModelSpec, settings: TrainSettings):
    """``(optimizer, chunk)`` with ``chunk(params, opt_state, data_key, step0) -> (params, opt_state,
    abs_errors (K, B), losses (K,), scored)``: ``K = check_every`` optimiser steps; ``scored`` are the parameters
    that scored the chunk's last batch (those before its last update) in one ``jax.jit``-ed ``lax.scan``
    (cached per model and settings, so seeds of one cell compile once)."""
    gen = check_task(spec.task)[0]
    opt = make_optimizer(spec.model, init_model(jax.random.PRNGKey(0), spec), settings.lr, settings.clip)

    def one(carry, i):
        params, state, key, _ = carry
        batch = gen(jax.random.fold_in(key, i), settings.batch, spec.T)
        (loss, abs_err), grads = jax.value_and_grad(loss_terms, has_aux=True)(params, batch, spec)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state, key, params), (abs_err, loss)

    def chunk(params, state, key, step0):
        (params, state, _, scored), (errs, losses) = jax.lax.scan(
            one, (params, state, key, params), step0 + jnp.arange(settings.check_every))
        return params, state, errs, losses, scored

    return opt, jax.jit(chunk)


@functools.lru_cache(maxsize=64)
def _scorer(spec: ModelSpec):
    # the test error is the task's error: rnn-floss is scored without its penalty (it only changes the loss)
    plain = spec._replace(model="rnn-tanh") if spec.model == "rnn-floss" else spec
    return jax.jit(lambda p, b: (loss_terms(p, b, plain)[1], predict(p, b, plain.model)[:, 0]))


def test_scores(params: dict, spec: ModelSpec, size: int = TEST_SIZE, chunk: int = 256) -> tuple[int, Optional[float]]:
    """``(errors, prediction_std)`` on the test set (fixed key ``PRNGKey(TEST_KEY)``, independent of the seed):
    the number of sequences with ``|error| > 0.04`` (a wrong class for temporal order) and, for regression
    tasks, the standard deviation of the predictions (None otherwise); scored in chunks of ``chunk``."""
    gen, _, _, _, regression = check_task(spec.task)
    batch = gen(jax.random.PRNGKey(TEST_KEY), size, spec.T)
    f = _scorer(spec)
    wrong, preds = 0, []
    for s in range(0, size, chunk):
        b = jax.tree_util.tree_map(lambda a: a[s:s + chunk], batch)
        err, pred = f(params, b)
        wrong += int(jnp.sum(err > ERROR_THRESHOLD))
        preds.append(np.asarray(pred, np.float64))
    return wrong, float(np.std(np.concatenate(preds))) if regression else None


def count_test_errors(params: dict, spec: ModelSpec, size: int = TEST_SIZE, chunk: int = 256) -> int:
    """The error count of :func:`test_scores`."""
    return test_scores(params, spec, size, chunk)[0]


def train_run(spec: ModelSpec, seed: int, settings: TrainSettings = TrainSettings(),
              progress: Optional[Callable[[int, float], None]] = None) -> RunResult:
    """Train until the stopping rule fires or ``settings.budget`` training sequences were seen.

    ``progress(sequences, window_mse)`` is called after every check.  ``curves`` holds, at each
    snapshot, ``sequences``, the training window's mean squared error and fraction right, and (with
    ``settings.diagnostics``, the adding-1997 task only) the :func:`flow_snapshot` fields.
    """
    check_task(spec.task)
    k_init, k_data, k_diag = jax.random.split(jax.random.PRNGKey(seed), 3)
    jax_spec = spec._replace(model=base_model(spec.model))  # the JAX model a PyTorch replica copies
    params = init_model(k_init, jax_spec)
    if spec.model in TORCH_MODELS:
        state, chunk = torch_chunk(spec, settings, params)
    else:
        opt, chunk = make_chunk(spec, settings)
        state = opt.init(params)
    diag = settings.diagnostics and spec.task == "adding-1997" and spec.model != CONSTANT
    if diag:
        dbatch, t1 = diagnostic_batch(k_diag, spec.T)
    window = deque(maxlen=STOP_WINDOW)
    last_scored: deque = deque(maxlen=LAST_CHECKS)
    curves: list[dict] = []

    def snapshot(seqs):
        w = np.asarray(window, np.float64)
        rec = {"sequences": seqs, "train_mse": float(np.mean(w**2)) if w.size else None,
               "train_right": float(np.mean(w <= ERROR_THRESHOLD)) if w.size else None}
        if diag:
            rec.update(flow_snapshot(params, dbatch, t1, jax_spec.model))
        curves.append(rec)

    t0 = time.perf_counter()
    seqs, step, solved = 0, 0, False
    next_snap = 0.0
    per_chunk = settings.check_every * settings.batch
    while seqs < settings.budget:
        if seqs >= next_snap:
            snapshot(seqs)
            next_snap = max(per_chunk, next_snap * settings.snapshot_growth)
        params, state, errs, _, scored = chunk(params, state, k_data, step)
        last_scored.append(scored)
        step += settings.check_every
        seqs += per_chunk
        window.extend(np.asarray(errs, np.float64).reshape(-1).tolist())
        if progress:
            progress(seqs, float(np.mean(np.square(window))))
        if stopping_rule(np.asarray(window)):
            solved = True
            break
    params = last_scored[-1] if last_scored else params  # no update after the rule fired (or the budget ran out)
    snapshot(seqs)
    curves[-1]["final"] = True
    earlier = tuple(count_test_errors(p, jax_spec) for p in list(last_scored)[:-1])
    errors, spread = test_scores(params, jax_spec)
    return RunResult(params, solved, seqs, errors, {"points": curves}, time.perf_counter() - t0,
                     earlier + (errors,), spread)


def params_npz_bytes(params: dict) -> bytes:
    """``params.npz``: one array per leaf, keyed by ``jax.tree_util.keystr`` of its path (e.g.
    ``['cell'].W_f``, ``['W_out']``)."""
    import io

    import jax
    import numpy as np

    buf = io.BytesIO()
    leaves = jax.tree_util.tree_leaves_with_path(params)
    np.savez(buf, **{jax.tree_util.keystr(k): np.asarray(a) for k, a in leaves})
    return buf.getvalue()


def load_params(path, like: dict) -> dict:
    """Load a ``params.npz`` written by the ``train`` command into the structure of ``like``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    data = np.load(path)
    paths = jax.tree_util.tree_leaves_with_path(like)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like),
                                        [jnp.asarray(data[jax.tree_util.keystr(k)]) for k, _ in paths])
