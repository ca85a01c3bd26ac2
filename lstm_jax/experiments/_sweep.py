r"""The resumable long-lag sweep and its report (``docs/long-lag/``).

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

Every run is saved at once (atomically) as ``runs/<id>.json``; a rerun skips every id that has a file, so
the sweep resumes across sessions.  :func:`write_report` regenerates ``results.json`` (schema 1),
``README.md`` (the table next to H&S 1997's Table 7) and the figures from whatever runs are finished.
"""

from __future__ import annotations

import json
import math
import pathlib
import platform
import time
from typing import Callable, Iterable, Optional

import jax
import numpy as np

from ..io import AtomicOutputs, atomic_write, strict_json
from ._models import FORGET_BIAS_MODELS, LSTM_MODELS, RNN_MODELS, ModelSpec, half_life, init_model, parameter_count
from ._tasks import ERROR_THRESHOLD, STOP_MEAN_ERROR, STOP_WINDOW, TEST_SIZE
from ._train import TEST_KEY, TrainSettings, train_run

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
    ``seeds`` replaces the per-stage seed counts."""
    lstm_order = FALLBACK_PROMISING + tuple(m for m in LSTM_MODELS if m not in FALLBACK_PROMISING)
    stages = [[(lstm_order, 100, SEEDS_LSTM), (RNN_MODELS, 10, SEEDS_RNN)],
              [(RNN_MODELS, 25, SEEDS_RNN), (RNN_MODELS, 50, SEEDS_RNN), (RNN_MODELS, 100, SEEDS_RNN)],
              [(LSTM_MODELS, 500, SEEDS_LSTM)], [(most_promising(runs_done), 1000, SEEDS_T1000)]]
    if models is not None and set(models) & set(FORGET_BIAS_MODELS):
        # the forget-bias threshold (its own folder): only when asked for by name, never in the main sweep
        stages.insert(1, [(FORGET_BIAS_MODELS, 100, SEEDS_LSTM), (FORGET_BIAS_MODELS, 500, SEEDS_LSTM)])
    plan = []
    for stage in stages:
        # seed-major within a stage: every (model, T) cell gets seed 0 before any gets seed 1
        for s in range(max(seeds or k for _, _, k in stage)):
            for ms, T, k in stage:
                for m in ms:
                    if s < (seeds or k) and (Ts is None or T in Ts) and (models is None or m in models):
                        plan.append((m, T, s))
    return plan


def run_record(spec: ModelSpec, seed: int, settings: TrainSettings, r) -> dict:
    trainable, total = parameter_count(r.params, spec.model)
    pts = r.curves["points"]
    lyap = pts[-1].get("lyapunov") if pts else None
    return {"task": spec.task, "model": spec.model, "T": spec.T, "seed": seed, "solved": r.solved,
            "sequences": r.sequences if r.solved else None, "sequences_seen": r.sequences,
            "test_errors": r.test_errors, "test_errors_last_checks": list(r.test_errors_last_checks),
            "tested": "parameters that scored the last training batch (no update after the stopping rule)",
            "n": spec.n, "parameters": {"trainable": trainable, "total": total},
            "final_lyapunov": lyap, "final_half_life_steps": half_life(lyap),
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


# ----------------------------------------------------------------------------- report


def _fmt_k(x: float) -> str:
    return f"{x / 1000:.0f}k" if x < 1e6 else f"{x / 1e6:.2f}M"


def results_document(runs: list[dict], meta: dict) -> dict:
    return {"schema": 1, "meta": meta, "runs": sorted(runs, key=lambda r: (r["T"], r["model"], r["seed"]))}


def table_rows(runs: list[dict]) -> list[dict]:
    """One row per (model, T): solved k/N, mean/min/max sequences of the solved runs, test errors, half-life."""
    rows = []
    for m in dict.fromkeys(r["model"] for r in sorted(runs, key=lambda r: r["model"])):
        for T in sorted({r["T"] for r in runs if r["model"] == m}):
            rs = [r for r in runs if r["model"] == m and r["T"] == T]
            seqs = [r["sequences"] for r in rs if r["solved"]]
            lyap = [r["final_lyapunov"] for r in rs if r.get("final_lyapunov") is not None]
            rows.append({"model": m, "T": T, "solved": len(seqs), "runs": len(rs),
                         "mean_sequences": float(np.mean(seqs)) if seqs else None,
                         "min_sequences": min(seqs) if seqs else None, "max_sequences": max(seqs) if seqs else None,
                         "test_errors": [r["test_errors"] for r in rs],
                         "lyapunov_median": float(np.median(lyap)) if lyap else None})
    return rows


def markdown_table(runs: list[dict]) -> str:
    lines = ["| model | T | solved | mean sequences (range) of solved runs | test errors of 2560 (per seed) | "
             "λ₁ at end (median) | gradient half-life |", "|---|---|---|---|---|---|---|"]
    for T, ref in HS1997.items():
        lines.append(f"| **H&S 1997 LSTM** (no forget gate) | {T} | 10/10 | {_fmt_k(ref['mean_sequences'])}"
                     f"{' (' + ref['range'] + ')' if 'range' in ref else ''} | {ref['test_errors']} | – | – |")
    for row in sorted(table_rows(runs), key=lambda r: (r["T"], r["model"])):
        seq = (f"{_fmt_k(row['mean_sequences'])} ({_fmt_k(row['min_sequences'])}–{_fmt_k(row['max_sequences'])})"
               if row["solved"] else "–")
        lam = row["lyapunov_median"]
        hl = half_life(lam)
        lines.append(f"| {row['model']} | {row['T']} | {row['solved']}/{row['runs']} | {seq} | "
                     f"{', '.join(str(e) for e in row['test_errors'])} | "
                     f"{'–' if lam is None else f'{lam:+.3f}'} | {'–' if hl is None else f'{hl:.1f} steps'} |")
    return "\n".join(lines)


_METRICS = (("train_mse", "training MSE (last 2000)", True),
            ("f_lag", "forget f: lag units (—), others (--),\nall 5–95 % (band)", False),
            ("long_lag_share", "share of ∂E/∂W from lags > T/2", False),
            ("log_dsds", "log ‖∂s_T/∂s_t₁‖", False), ("lyapunov", "leading Lyapunov exponent", False),
            ("terms", "eq. 6 terms ‖A‖,‖B‖,‖C‖,‖D‖ (mean)", True))


def figure(runs: list[dict], T: int):
    """``matplotlib.figure.Figure``: rows = measurements, one column per model, lines = seeds, vs training
    sequences (log axis); a dotted vertical line marks the moment the stopping rule fired."""
    from matplotlib.figure import Figure

    models = [m for m in REPORT_MODELS if any(r["model"] == m and r["T"] == T for r in runs)]
    fig = Figure(figsize=(max(7.0, 2.6 * len(models) + 1), 2.0 * len(_METRICS) + 0.6))
    axes = fig.subplots(len(_METRICS), len(models), squeeze=False, sharex="col")
    colors = ("C0", "C1", "C2", "C3", "C4", "C5")
    for j, m in enumerate(models):
        rs = [r for r in runs if r["model"] == m and r["T"] == T]
        for i, (key, label, logy) in enumerate(_METRICS):
            ax = axes[i, j]
            for r in rs:
                pts = [p for p in r["curves"]["points"] if p["sequences"] > 0]
                x = [p["sequences"] for p in pts]
                c = colors[r["seed"] % len(colors)]
                if key == "terms":
                    for name, ls in zip("ABCD", ("-", "--", ":", "-.")):
                        y = [p["terms"][name] if "terms" in p else np.nan for p in pts]
                        ax.plot(x, y, ls, color=c, lw=1, label=name if r is rs[0] else None)
                else:
                    ax.plot(x, [np.nan if p.get(key) is None else p[key] for p in pts], color=c, lw=1)
                if key == "f_lag" and pts and "f_quantiles" in pts[-1]:
                    # all units: 5-95 % band of the forget activations, and the other units' mean (dashed)
                    q = np.array([p.get("f_quantiles", [np.nan] * 5) for p in pts], float)
                    ax.fill_between(x, q[:, 0], q[:, 4], color=c, alpha=0.08, lw=0)
                    ax.plot(x, [p.get("f_other", np.nan) for p in pts], "--", color=c, lw=0.7)
                if r["solved"]:
                    ax.axvline(r["sequences"], color=c, ls=":", lw=1)
            ax.set_xscale("log")
            ys = [v for line in ax.get_lines() if len(line.get_xdata()) > 2  # data lines, not axvline
                  for v in np.asarray(line.get_ydata(), float) if np.isfinite(v)]
            if not ys:
                ax.text(0.5, 0.5, "n/a", transform=ax.transAxes, ha="center", va="center", color="gray")
            elif logy and min(ys) > 0:
                ax.set_yscale("log")
            if i == 0:
                ax.set_title(m, fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
            if key == "terms" and j == len(models) - 1:
                ax.legend(fontsize=6)
            if i == len(_METRICS) - 1:
                ax.set_xlabel("training sequences", fontsize=8)
            ax.tick_params(labelsize=6)
            ax.grid(True, alpha=0.3)
    fig.suptitle(f"adding problem (H&S 1997), T = {T}: gradient flow during training\n"
                 "(dotted line: stopping rule fired)", fontsize=10)
    fig.tight_layout()
    return fig


def meta_document(n: int, settings: TrainSettings, command: str) -> dict:
    import optax

    from .. import __version__

    dev = jax.devices()[0]
    counts = {}
    for m in REPORT_MODELS:
        p = init_model(jax.random.PRNGKey(0), ModelSpec(m, TASK, 100, n))
        counts[m] = dict(zip(("trainable", "total"), parameter_count(p, m)))
    return {"task": TASK, "n": n, "settings": settings._asdict(),
            "check_every_sequences": settings.check_every * settings.batch,
            "stopping_rule": f"MSE of the most recent {STOP_WINDOW} training sequences < {STOP_MEAN_ERROR} and all "
                             f"of them |error| <= {ERROR_THRESHOLD}",
            "test_set": f"{TEST_SIZE} sequences from PRNGKey({TEST_KEY}); an error is |error| > {ERROR_THRESHOLD}",
            "parameters": counts, "hs1997": HS1997,
            "versions": {"lstm_jax": __version__, "jax": jax.__version__, "optax": optax.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
            "device": f"{dev.platform}: {dev.device_kind}", "command": command}


def _first_last(run: dict, key: str):
    pts = [p for p in run["curves"]["points"] if p.get(key) is not None and p["sequences"] > 0]
    return (pts[0][key], pts[-1][key]) if len(pts) >= 2 else None


def findings(runs: list[dict]) -> list[str]:
    """Sentences computed from the runs (no hand-typed numbers): per T, the fastest LSTM variant, the 1997
    cell against the best forget-gate variant, the frozen vs trained forget gate, flossing vs plain tanh;
    and, over all forget-gate LSTM runs that solved, how f on the lag units and the long-lag share moved
    from the first snapshot to the last."""
    out = []
    rows = table_rows(runs)
    gated = ("lstm-bf0", "lstm-bf1", "lstm-chrono")
    for T in sorted({r["T"] for r in rows if r["model"] in LSTM_MODELS}):
        cells = {r["model"]: r for r in rows if r["T"] == T and r["model"] in LSTM_MODELS}

        def key(r):
            return (-r["solved"] / r["runs"], r["mean_sequences"] if r["mean_sequences"] is not None else math.inf)

        best = min(cells.values(), key=key)
        desc = lambda r: (f"{r['model']} {r['solved']}/{r['runs']} solved" +  # noqa: E731
                          (f", mean {_fmt_k(r['mean_sequences'])} sequences" if r["solved"] else ""))
        ref = f" (H&S 1997: {_fmt_k(HS1997[T]['mean_sequences'])})" if T in HS1997 else ""
        if best["solved"] == 0:
            out.append(f"T = {T}: no LSTM run has solved within the budget yet ("
                       + "; ".join(desc(r) for r in cells.values()) + ").")
            continue
        line = f"T = {T}: fastest {desc(best)}{ref}"
        g = [cells[m] for m in gated if m in cells]
        if "lstm-1997" in cells and g:
            bg = min(g, key=key)
            verdict = ("solves at least as reliably and as fast as" if key(cells["lstm-1997"]) <= key(bg)
                       else "is behind")
            line += f"; the 1997 cell without forget gate ({desc(cells['lstm-1997'])}) {verdict} the best " \
                    f"forget-gate variant ({desc(bg)})"
        if "lstm-1997-ib" in cells and "lstm-chrono" in cells:
            ib, ch = cells["lstm-1997-ib"], cells["lstm-chrono"]
            errs = lambda r: f"median {np.median(r['test_errors']):g} test errors"  # noqa: E731
            line += (f"; forget gate ablated from chrono (same input-gate bias, f ≡ 1): {desc(ib)}, {errs(ib)} vs "
                     f"{desc(ch)}, {errs(ch)}")
        if "lstm-frozen-forget" in cells and "lstm-bf1" in cells:
            line += (f"; frozen forget gate: {desc(cells['lstm-frozen-forget'])} vs trained (same init) "
                     f"{desc(cells['lstm-bf1'])}")
        out.append(line + ".")
    for T in sorted({r["T"] for r in rows if r["model"] == "rnn-floss"}):
        cells = {r["model"]: r for r in rows if r["T"] == T and r["model"] in ("rnn-floss", "rnn-tanh")}
        if len(cells) == 2:
            fl, pl = cells["rnn-floss"], cells["rnn-tanh"]
            lam = lambda r: "–" if r["lyapunov_median"] is None else f"{r['lyapunov_median']:+.3f}"  # noqa: E731
            out.append(f"T = {T}: flossed tanh RNN {fl['solved']}/{fl['runs']} solved (median "
                       f"{np.median(fl['test_errors']):g} test errors of 2560, λ₁ {lam(fl)}), plain tanh "
                       f"RNN {pl['solved']}/{pl['runs']} (median {np.median(pl['test_errors']):g}, λ₁ {lam(pl)}).")
    for T, ref in HS1997.items():
        at_T = [r for r in rows if r["T"] == T and r["model"] in LSTM_MODELS]
        need = SEEDS_T1000 if T == 1000 else SEEDS_LSTM
        good = [r for r in at_T if r["solved"] == r["runs"] >= need and r["mean_sequences"] < ref["mean_sequences"]]
        out.append(f"Target at T = {T} (every seed solved, ≥ {need} seeds, mean below the 1997 "
                   f"{_fmt_k(ref['mean_sequences'])}): " + (
                       "met by " + ", ".join(f"{r['model']} ({r['solved']}/{r['runs']}, mean {_fmt_k(r['mean_sequences'])})"
                                             for r in good) if good else
                       "not met" + (" yet: " + ", ".join(f"{r['model']} {r['solved']}/{r['runs']}" for r in at_T)
                                    if at_T else " (no LSTM run at this T yet)")) + ".")
        if good:  # the stopping rule fired in every seed; the 1997 test asks more of each final network
            strict = [r["model"] for r in good if max(r["test_errors"]) <= MAX_TEST_ERRORS]
            out.append(f"Of those, also passing the 1997 test in every seed (≤ {MAX_TEST_ERRORS} of 2560 test errors): "
                       + (", ".join(strict) if strict else "none") + "; per-seed test errors: "
                       + "; ".join(f"{r['model']} {', '.join(str(e) for e in r['test_errors'])}" for r in good) + ".")
    for solved in (True, False):
        moves = [(_first_last(r, "f_lag"), _first_last(r, "long_lag_share"), _first_last(r, "f_other"))
                 for r in runs if r["model"] in gated and r["solved"] == solved]
        moves = [m for m in moves if all(x is not None for x in m)]
        if not moves:
            continue
        up_f = sum(f[1] > f[0] + 0.01 for f, _, _ in moves)
        up_s = sum(s_[1] > s_[0] + 0.01 for _, s_, _ in moves)
        lag_gt = sum(f[1] > o[1] for f, _, o in moves)
        out.append(f"Forget-gate LSTM runs (bf0, bf1, chrono) that {'solved' if solved else 'did not solve'} "
                   f"({len(moves)}): the forget activation on the lag-carrying units rose by more than 0.01 from the first "
                   f"snapshot to the last in {up_f}, and ended above the other units' in {lag_gt}; the long-lag share "
                   f"of ∂E/∂W rose by more than 0.01 in {up_s}. Medians, first → last: f_lag {np.median([f[0] for f, _, _ in moves]):.2f} → "
                   f"{np.median([f[1] for f, _, _ in moves]):.2f}, long-lag share "
                   f"{np.median([s_[0] for _, s_, _ in moves]):.2f} → {np.median([s_[1] for _, s_, _ in moves]):.2f}.")
    return out


def thousand_text(runs: list[dict]) -> str:
    """Which LSTM variants have T = 1000 runs, and the T = 500 record the plan chose them from."""
    ran = sorted({r["model"] for r in runs if r["T"] == 1000 and r["model"] in LSTM_MODELS})
    at500 = {m: [r for r in runs if r["T"] == 500 and r["model"] == m] for m in LSTM_MODELS}
    record = "; ".join(f"{m} {sum(r['solved'] for r in rs)}/{len(rs)}" for m, rs in at500.items() if rs)
    return ("T = 1000 runs only the two most promising LSTM variants, chosen by the plan from the finished T = 500 "
            "runs (largest fraction of seeds solved, then fewest mean sequences; before any T = 500 run: "
            f"{', '.join(FALLBACK_PROMISING)}). Variants with T = 1000 runs: {', '.join(ran) or 'none yet'}; "
            f"T = 500 solved/run: {record or 'no runs yet'}.")


def readme_text(runs: list[dict], meta: dict, figures: list[str], vmap_timing: Optional[dict]) -> str:
    s = meta["settings"]
    parts = [
        "# Long-lag training: the 1997 adding problem (generated)",
        "",
        f"Generated by `{meta['command']}` from the finished runs in `runs/` ({len(runs)} runs); "
        "do not edit by hand. All numbers below come from `results.json`. The runs come from "
        "`lstm-jax train --sweep` (`nice -n 19`; resumable: the same command skips finished runs and "
        "continues), this file from `lstm-jax train --sweep --report-only`.",
        "",
        f"Task: H&S 1997 Experiment 4 exactly as specified (lengths T…T+T/10, markers −1/0/1, target "
        f"0.5 + (X₁+X₂)/4). Hidden size n = {meta['n']} for every model; Adam lr {s['lr']}, global-norm clip "
        f"{s['clip']}, {s['batch']} sequences per update, budget {s['budget']:,} training sequences per run. "
        f"Stopping rule (the paper's), checked every {meta['check_every_sequences']} sequences: "
        f"{meta['stopping_rule']}. Test: {meta['test_set']}. Device: {meta['device']}.",
        "",
        "Parameters (trainable/total): " + ", ".join(f"{m} {c['trainable']}/{c['total']}"
                                                     for m, c in meta["parameters"].items()) + ".",
        "",
        markdown_table(runs),
        "",
        "“sequences” = training sequences seen until the stopping rule fired (solved runs only); "
        "“–” = not solved within the budget or not measured. λ₁ is the leading Lyapunov exponent per step "
        "on held-out sequences at the end of the run; the half-life ln 2/(−λ₁) is how many steps halve "
        "a gradient (the reason a plain RNN fails when it is far below T).",
        "",
        "## Findings (computed from the runs above)",
        "",
        *([f"- {line}" for line in findings(runs)] or ["- (no LSTM run has finished yet)"]),
        "",
        thousand_text(runs),
        "",
    ]
    if vmap_timing:
        parts += ["Seeds as one vmapped program vs one after another (same chunk of steps, interleaved, "
                  f"{vmap_timing['device']}): " + "; ".join(
                      f"T = {r['T']}, {r['seeds']} seeds: sequential {r['sequential_s']:.3f} s, vmapped "
                      f"{r['vmapped_s']:.3f} s (ratio {r['ratio']:.2f}, spread {r['ratio_min']:.2f}–{r['ratio_max']:.2f})"
                      for r in vmap_timing["rows"]) + ". " + (
                      "A vmapped program is not reliably faster here (a ratio spread reaches below 1), so the sweep "
                      "runs seeds one after another (each run saved as it finishes)."
                      if any(r["ratio_min"] < 1 for r in vmap_timing["rows"]) else
                      "The vmapped program is faster at every size measured, by the ratios above; the sweep still "
                      "runs seeds one after another, because a vmapped program runs every seed until the last one "
                      "stops (seeds meet the stopping rule at different times, and a solved seed would keep "
                      "computing) and saves nothing until all are done."), ""]
        load = vmap_timing["load_average_1min"]
        where = f"{vmap_timing['device']}, {vmap_timing['cpu_count']} cores" + (
            "" if load is None else f", 1-minute load average {load:.1f} at the start")
        for k in ("value_and_grad", "value_and_grad_sweep_shape"):
            if k not in vmap_timing:
                continue
            v = vmap_timing[k]
            line = (f"One jitted value_and_grad of the training loss at B = {v['B']}, n = {v['n']}, T = {v['T']} "
                    f"(padded to {v['padded_T']}{', the sweep’s own shape' if k.endswith('shape') else ''}): "
                    f"{v['median_ms']:.1f} ms (min {v['min_ms']:.1f}, max {v['max_ms']:.1f}, {v['reps']} repeats; {where})")
            if "baseline_median_ms" in v:
                line += (f"; interleaved with it, the plain fixed-length loss (exactly T steps, final state): "
                         f"{v['baseline_median_ms']:.1f} ms (min {v['baseline_min_ms']:.1f}, max "
                         f"{v['baseline_max_ms']:.1f})")
            if "fast_median_ms" in v:
                line += (f"; the same objective on the fast runner run_lstm_batch (custom VJP): "
                         f"{v['fast_median_ms']:.1f} ms (min {v['fast_min_ms']:.1f}, max {v['fast_max_ms']:.1f}); "
                         "training runs on run_lstm" + (" although the fast runner measures faster here"
                                                        if v["fast_max_ms"] < v["min_ms"] else ""))
            parts += [line + ".", ""]
    parts += [f"![{f}]({f})" for f in figures]
    return "\n".join(parts) + "\n"


def write_report(out: pathlib.Path, n: int, settings: TrainSettings, command: str) -> list[pathlib.Path]:
    """Regenerate ``results.json``, ``README.md`` and ``flow_T<T>.png`` from ``out/runs/*.json`` (together)."""
    out = pathlib.Path(out)
    runs = load_runs(out / "runs")
    stated = json.loads(strict_json(settings._asdict()))
    differ = sorted({k for r in runs for k, v in r["settings"].items() if stated.get(k) != v})
    if differ:  # the report states one set of settings: it must be the one every run was trained with
        seen = {k: sorted({json.dumps(r["settings"][k]) for r in runs}) for k in differ}
        raise ValueError(f"the runs in {out / 'runs'} were trained with {seen}, but this command would report "
                         f"{ {k: stated.get(k) for k in differ} }: pass the options the runs were made with")
    meta = meta_document(n, settings, command)
    vmap_path = out / "vmap_timing.json"
    vmap_timing = json.loads(vmap_path.read_text()) if vmap_path.is_file() else None
    Ts = sorted({r["T"] for r in runs})
    figs = [f"flow_T{T}.png" for T in Ts]
    written = []
    with AtomicOutputs() as files:
        written.append(files.write(out / "results.json", strict_json(results_document(runs, meta))))
        written.append(files.write(out / "README.md", readme_text(runs, meta, figs, vmap_timing)))
        for T, name in zip(Ts, figs):
            fig = figure(runs, T)
            written.append(files.write_with(out / name, lambda p, fig=fig: fig.savefig(p, dpi=90, format="png")))
    return written


def time_vmapped_seeds(T: int, seeds: int, n: int, settings: TrainSettings, model: str = "lstm-bf1",
                       reps: int = 3) -> dict:
    """Wall time of one chunk (``check_every`` steps) for ``seeds`` seeds: one after another vs one
    ``jax.vmap``-ed program; interleaved A B A B, ``reps`` repeats, compile excluded."""
    spec = ModelSpec(model, TASK, T, n)
    from ._train import make_chunk

    params = [init_model(jax.random.PRNGKey(s), spec) for s in range(seeds)]
    opt, one = make_chunk(spec, settings)
    states = [opt.init(p) for p in params]
    keys = [jax.random.PRNGKey(100 + s) for s in range(seeds)]
    many = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)))
    stack = lambda xs: jax.tree_util.tree_map(lambda *a: np.stack(a), *xs)  # noqa: E731
    P, S, K = stack(params), stack(states), stack(keys)

    def seq():
        return [one(p, s, k, 0) for p, s, k in zip(params, states, keys)]

    def vm():
        return many(P, S, K, 0)

    jax.block_until_ready(seq())
    jax.block_until_ready(vm())
    a, b = [], []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(seq())
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        jax.block_until_ready(vm())
        b.append(time.perf_counter() - t)
    ratios = [x / y for x, y in zip(a, b)]
    return {"T": T, "seeds": seeds, "steps": settings.check_every, "batch": settings.batch, "n": n,
            "sequential_s": float(np.median(a)), "vmapped_s": float(np.median(b)),
            "ratio": float(np.median(ratios)), "ratio_min": float(min(ratios)), "ratio_max": float(max(ratios))}


def time_value_and_grad(B: int, n: int, T: int, model: str = "lstm-bf1", reps: int = 5) -> dict:
    """Milliseconds of one jitted ``value_and_grad`` of :func:`loss_terms` (the training objective) on a batch
    of ``B`` 1997 adding sequences of minimum length ``T`` (padded to ``T + T//10``, read out at each own
    length), interleaved with the plain baseline (the same cell on exactly ``T`` steps, final state only;
    the earlier ``lstm_jax._train`` loss) and with the same objective on the fast runner
    (:func:`lstm_jax.run_lstm_batch`, custom VJP; the choice of runner for training); compile excluded."""
    import jax.numpy as jnp

    from .. import run_lstm, zero_state
    from ._models import final_states_batch, loss_terms
    from ._tasks import adding_problem_1997

    spec = ModelSpec(model, TASK, T, n)
    params = init_model(jax.random.PRNGKey(0), spec)
    batch = adding_problem_1997(jax.random.PRNGKey(1), B, T)
    def plain(p, b):
        hT = jax.vmap(lambda x: run_lstm(p["cell"], zero_state(n), x)[0].h)(b.xs[:, :T])
        return jnp.mean(((hT @ p["W_out"].T + p["b_out"])[:, 0] - b.y) ** 2)

    calls = {"training": jax.jit(jax.value_and_grad(lambda p, b: loss_terms(p, b, spec)[0])),
             "baseline": jax.jit(jax.value_and_grad(plain)),
             "fast": jax.jit(jax.value_and_grad(lambda p, b: loss_terms(p, b, spec, final_states_batch)[0]))}
    first = {k: jax.block_until_ready(g(params, batch)) for k, g in calls.items()}  # compile + warm up every peer
    same = abs(float(first["fast"][0]) - float(first["training"][0]))
    if same > 1e-5:  # float32 rounding of two summation orders; anything larger means different objectives
        raise RuntimeError(f"the fast-runner objective differs from loss_terms by {same:.2e}")
    ms = {k: [] for k in calls}
    for _ in range(reps):
        for k, g in calls.items():
            t = time.perf_counter()
            jax.block_until_ready(g(params, batch))
            ms[k].append(1e3 * (time.perf_counter() - t))
    out = {"B": B, "n": n, "T": T, "padded_T": T + T // 10, "model": model, "reps": reps}
    for k, prefix in (("training", ""), ("baseline", "baseline_"), ("fast", "fast_")):
        out.update({f"{prefix}median_ms": float(np.median(ms[k])), f"{prefix}min_ms": float(min(ms[k])),
                    f"{prefix}max_ms": float(max(ms[k]))})
    return out
