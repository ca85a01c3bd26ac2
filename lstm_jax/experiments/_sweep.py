r"""The resumable long-lag sweep (``docs/long-lag/``; its report: :mod:`._report`).

Plan (:func:`sweep_plan`, in this order so the cheap, informative runs finish first;
within a stage every cell gets seed 0 before any gets seed 1):

1. every LSTM variant at T = 100, 5 seeds (the two T = 1000 candidates first), together with the plain RNNs
   (``rnn-tanh``, ``rnn-sigmoid``, ``rnn-floss``) at T = 10, 3 seeds;
2. plain RNNs at T = 25, 50 and 100, 3 seeds;
3. every LSTM variant at T = 500, 5 seeds;
4. the two most promising LSTM variants at T = 1000, 3 seeds: chosen by :func:`most_promising` from the
   finished T = 500 runs (largest fraction of seeds solved, then fewest mean training sequences); until T = 500 has
   finished runs, ``lstm-1997`` (the paper's own cell, which solved T = 1000 in 1997) and ``lstm-chrono``
   (whose forget biases are initialised for time constants up to T).

Named in ``--models`` only (never in the default plan): the forget-bias threshold models
(:data:`~lstm_jax.experiments._models.FORGET_BIAS_MODELS`, T = 100 and 500) and the PyTorch replicas
(:data:`~lstm_jax.experiments._models.TORCH_MODELS`: both at T = 100, ``torch-lstm-chrono`` also at T = 500) and
the modern cells (:data:`~lstm_jax.experiments._models.MODERN_MODELS`: T = 100, 500 and 1000, 5 seeds each, the
diagonal linear cells before the sLSTM within each seed).
Every ``(T, seed)`` gets its control, the ``constant`` model, before its first run.

Every run is saved at once (atomically) as ``runs/<id>.json``; a rerun skips every id that has a file, so
the sweep resumes across sessions.  A folder holds one setting (budget, n, lr): a variant of a setting is a
study folder of its own under the report folder (``docs/long-lag/<study>/runs/``), and
:func:`lstm_jax.experiments._report.write_report` regenerates one report over all of them.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from typing import Callable, Iterable, Optional

import numpy as np

from ..outputs import atomic_write, strict_json
from ._models import CONSTANT, FORGET_BIAS_MODELS, LSTM_MODELS, MODERN_MODELS, RNN_MODELS, TORCH_MODELS, ModelSpec, gradient_half_life, parameter_count
from ._train import TrainSettings, train_run

TASK = "adding-1997"
REPORT_MODELS = RNN_MODELS + LSTM_MODELS + FORGET_BIAS_MODELS
HS1997 = {  # H&S 1997 Table 7 (LSTM without forget gate, 10 runs each): mean sequences, test errors of 2560
    100: {"mean_sequences": 74_000, "test_errors": 1},
    500: {"mean_sequences": 209_000, "test_errors": 0},
    1000: {"mean_sequences": 853_000, "test_errors": 1, "range": "370k–2.02M"},
}
#: H&S 1997's success criterion on the test set: at most this many of the 2560 test sequences wrong (|error| > 0.04)
MAX_TEST_ERRORS = 3
FALLBACK_PROMISING = ("lstm-1997", "lstm-chrono")
#: seeds per cell of the plan: LSTMs at T = 100 and 500, the two chosen LSTMs at T = 1000, the RNNs
SEEDS_LSTM, SEEDS_T1000, SEEDS_RNN = 5, 3, 3


def run_id(task: str, model: str, T: int, seed: int) -> str:
    return f"{task}_{model}_T{T}_s{seed}"


def load_runs(runs_dir: pathlib.Path) -> list[dict]:
    runs = []
    for p in sorted(pathlib.Path(runs_dir).glob("*.json")):
        runs.append(json.loads(p.read_text()))
    return runs


def most_promising(runs: list[dict], T: int = 500, k: int = 2) -> tuple[str, ...]:
    """The ``k`` LSTM variants with the largest fraction of seeds solved at ``T`` (ties: fewer mean sequences)."""
    scores = []
    for m in LSTM_MODELS:
        rs = [r for r in runs if r["model"] == m and r["T"] == T]
        if not rs:
            continue
        solved = [r["sequences"] for r in rs if r["solved"]]
        scores.append((-len(solved) / len(rs), np.mean(solved) if solved else math.inf, m))
    if len(scores) < k:
        return FALLBACK_PROMISING[:k]
    return tuple(m for _, _, m in sorted(scores)[:k])


def sweep_plan(runs_done: list[dict], *, Ts: Optional[Iterable[int]] = None, models: Optional[Iterable[str]] = None,
               seeds: Optional[int] = None) -> list[tuple[str, int, int]]:
    """``[(model, T, seed), ...]`` in the order of the module docstring, filtered by ``Ts``/``models``;
    ``seeds`` replaces the per-stage seed counts.

    Every ``(T, seed)`` of the plan or of ``runs_done`` also gets its control, the :data:`CONSTANT` model on the
    same data stream, placed just before the first planned run that needs it (controls are cheap: no cell).
    ``models=["constant"]`` plans only the controls of the finished runs."""
    models = None if models is None else list(models)
    only_controls = models is not None and set(models) <= {CONSTANT}
    cells = [m for m in models if m != CONSTANT] if models is not None and not only_controls else None
    lstm_order = FALLBACK_PROMISING + tuple(m for m in LSTM_MODELS if m not in FALLBACK_PROMISING)
    stages = [[(lstm_order, 100, SEEDS_LSTM), (RNN_MODELS, 10, SEEDS_RNN)],
              [(RNN_MODELS, 25, SEEDS_RNN), (RNN_MODELS, 50, SEEDS_RNN), (RNN_MODELS, 100, SEEDS_RNN)],
              [(LSTM_MODELS, 500, SEEDS_LSTM)], [(most_promising(runs_done), 1000, SEEDS_T1000)]]
    if cells is not None and set(cells) & set(FORGET_BIAS_MODELS):
        # the forget-bias threshold (its own folder): only when asked for by name, never in the main sweep
        stages.insert(1, [(FORGET_BIAS_MODELS, 100, SEEDS_LSTM), (FORGET_BIAS_MODELS, 500, SEEDS_LSTM)])
    if cells is not None and set(cells) & set(TORCH_MODELS):
        # the PyTorch replication: only when asked for by name
        stages.insert(1, [(TORCH_MODELS, 100, SEEDS_LSTM), (("torch-lstm-chrono",), 500, SEEDS_T1000)])
    if cells is not None and set(cells) & set(MODERN_MODELS):
        # the modern cells (their own folder): only when asked for by name
        stages[1:1] = [[(MODERN_MODELS, T, SEEDS_LSTM)] for T in (100, 500, 1000)]
    plan = []
    for stage in [] if only_controls else stages:
        # seed-major within a stage: every (model, T) cell gets seed 0 before any gets seed 1
        for s in range(max(seeds or k for _, _, k in stage)):
            for ms, T, k in stage:
                for m in ms:
                    if s < (seeds or k) and (Ts is None or T in Ts) and (cells is None or m in cells):
                        plan.append((m, T, s))
    out, controlled = [], set()
    for m, T, s in plan + [(None, r["T"], r["seed"]) for r in runs_done if Ts is None or r["T"] in Ts]:
        if (T, s) not in controlled:
            controlled.add((T, s))
            out.append((CONSTANT, T, s))
        if m is not None:
            out.append((m, T, s))
    return out


def run_record(spec: ModelSpec, seed: int, settings: TrainSettings, r) -> dict:
    trainable, total = parameter_count(r.params, spec.model)
    pts = r.curves["points"]
    lyap = pts[-1].get("lyapunov") if pts else None
    return {"task": spec.task, "model": spec.model, "T": spec.T, "seed": seed, "solved": r.solved,
            "sequences": r.sequences if r.solved else None, "sequences_seen": r.sequences,
            "test_errors": r.test_errors, "test_errors_last_checks": list(r.test_errors_last_checks),
            "test_prediction_std": r.test_prediction_std,
            "tested": "parameters that scored the last training batch (no update after the stopping rule)",
            "n": spec.n, "parameters": {"trainable": trainable, "total": total},
            "final_lyapunov": lyap, "final_half_life_steps": gradient_half_life(lyap),
            "seconds": round(r.seconds, 1), "settings": settings._asdict(), "curves": r.curves}


def run_sweep(out: pathlib.Path, plan: list[tuple[str, int, int]], n: int, settings: TrainSettings,
              echo: Callable[[str], None] = print, bar=None, task: str = TASK, replan: Optional[Callable] = None) -> int:
    """Run every planned ``(model, T, seed)`` that has no ``runs/<id>.json`` yet; save each at once.

    Several processes may share one ``out`` folder if their plans are disjoint (``--Ts``/``--models``; a run
    still in progress in another process is invisible here): each saves atomically and, with ``replan``,
    re-reads the folder after every run, so it skips runs another process has finished meanwhile.

    ``replan(runs_done)`` (optional) is called after each run to refresh the rest of the plan (the
    T = 1000 choice depends on finished T = 500 runs).  Returns the number of runs trained.
    """
    runs_dir = pathlib.Path(out) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    done_ids = {p.stem for p in runs_dir.glob("*.json")}
    todo = [x for x in plan if run_id(task, *x) not in done_ids]
    trained = 0
    while todo:
        model, T, seed = todo.pop(0)
        rid = run_id(task, model, T, seed)
        spec = ModelSpec(model, task, T, n)
        t0 = time.perf_counter()
        r = train_run(spec, seed, settings)
        rec = run_record(spec, seed, settings, r)
        atomic_write(runs_dir / f"{rid}.json", strict_json(rec))
        trained += 1
        echo(f"{rid}: {'solved after ' + format(r.sequences, ',') + ' sequences' if r.solved else 'not solved'}, "
             f"{r.test_errors} test errors ({time.perf_counter() - t0:.0f} s)")
        if bar is not None:
            bar.update(1)
        if replan is not None:
            # re-read the folder: another sweep process (e.g. one per core, split by --Ts/--models) may have
            # finished runs of this plan in the meantime
            done_ids = {p.stem for p in runs_dir.glob("*.json")}
            todo = [x for x in replan(load_runs(runs_dir)) if run_id(task, *x) not in done_ids]
            if bar is not None:
                bar.total = bar.n + len(todo)
                bar.refresh()
    return trained
