r"""The long-lag report (``docs/long-lag/README.md``, ``results.json``, figures), generated from committed runs.

One report folder holds **studies**: its own ``runs/`` (the main sweep) and every ``<name>/runs/`` below it
(the chrono/ablation study, the forget-bias threshold and its n/lr variants).  A study's settings are read from
its runs (one set per study; mixed settings in one folder are refused), never from the command line.
:func:`write_report` regenerates everything together (:class:`lstm_jax.outputs.AtomicOutputs`).

What the report states and how (each sentence is computed from the runs, with its test — :mod:`._stats`):

* **Controls.**  Every ``(T, seed)`` of a study has the :data:`~lstm_jax.experiments._models.CONSTANT` run:
  one trained output bias on the same data stream with the same optimiser.  A run is **collapsed to a
  constant** (:func:`collapse`) when it did not solve, its last training window's mean squared error is at
  least :data:`COLLAPSE_MSE_FRACTION` of the control's (it explains less than 10 % of what the constant leaves),
  its test error count is within :data:`COLLAPSE_ERRORS` of the control's, and — where the run records it —
  its test predictions' standard deviation is below :data:`COLLAPSE_SPREAD` of the targets' (1/√24).  A
  collapsed run's gate and lag-unit statistics are undefined (the lag units are chosen by a sensitivity that
  is ≈ 0 for every unit) and are never used as evidence.
* **Solved k/N** with the Clopper–Pearson 95 % interval; two arms by Fisher's exact test.
* **Sequences to success** of the solved runs: mean with its bootstrap 95 % interval; two arms by the ratio
  of means with its bootstrap interval, and equivalence only by TOST at :data:`EQUIVALENCE_MARGIN`.
* **Test errors** of the solved runs: exact Mann–Whitney.
"""

from __future__ import annotations

import json
import math
import pathlib
import platform
from typing import Optional

import jax
import numpy as np

from ..outputs import AtomicOutputs, strict_json
from . import _stats
from ._models import (CONSTANT, FORGET_BIAS_MODELS, LSTM_MODELS, MODERN_MODELS, RNN_MODELS, TORCH_MODELS, ModelSpec,
                      gradient_half_life,
                      init_model, parameter_count)
from ._sweep import FALLBACK_PROMISING, HS1997, MAX_TEST_ERRORS, SEEDS_LSTM, SEEDS_T1000, TASK, load_runs
from ._tasks import ERROR_THRESHOLD, STOP_WINDOW, TEST_SIZE
from ._train import TEST_KEY

#: collapse rule (module docstring): MSE fraction of the control's, error-count distance, prediction spread
COLLAPSE_MSE_FRACTION = 0.9
COLLAPSE_ERRORS = 51  # 2 % of the 2560 test sequences
COLLAPSE_SPREAD = 0.1
TARGET_STD = 1 / math.sqrt(24)  # the 1997 adding target 0.5 + (X1 + X2)/4, X ~ U[-1, 1]
#: the ratio of sequences within which two arms are called equivalent (TOST)
EQUIVALENCE_MARGIN = 1.25
#: display order of the models in a table; the control first
ORDER = (CONSTANT,) + RNN_MODELS + LSTM_MODELS + FORGET_BIAS_MODELS + TORCH_MODELS + MODERN_MODELS
#: known studies: folder name -> title and what it is for
STUDIES = {
    "": ("Main sweep", "every model of the plan; budget and scoring as recorded"),
    "chrono": ("Chrono initialisation and its forget-gate ablation, 10 seeds",
               "does removing the forget gate (f ≡ 1) change speed or test errors when the carousel starts open?"),
    "forget-bias": ("The forget-bias threshold", "where does a closed forget gate begin? b_f = 0 … 6"),
    "forget-bias-n64": ("The forget-bias threshold at n = 64", "does a wider layer move the threshold?"),
    "forget-bias-lr1e-3": ("The forget-bias threshold at lr 10⁻³", "does a smaller step move the threshold?"),
    "modern": ("The modern cells: minGRU, minLSTM, RG-LRU (diagonal Jacobian, trained in parallel over time) and sLSTM",
               "do cells without the article's A, C, D terms learn long lags as fast as the LSTM?"),
}
COMMAND = "lstm-jax sweep --report-only"


def forget_bias_of(model: str) -> Optional[float]:
    """Initial forget bias of the plain forget-bias LSTMs (``lstm-bf<k>``, ``torch-lstm-bf1``), else None."""
    base = model[len("torch-"):] if model.startswith("torch-") else model
    return float(base[len("lstm-bf"):]) if base.startswith("lstm-bf") else None


def _fmt_k(x: float) -> str:
    return f"{x / 1000:.0f}k" if x < 1e6 else f"{x / 1e6:.2f}M"


def _p(p: float) -> str:
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 10⁻⁴"


# ----------------------------------------------------------------------------- studies


def load_studies(out: pathlib.Path) -> list[dict]:
    """``[{"name", "title", "purpose", "runs", "settings", "n"}]`` for ``out/runs`` and every ``out/*/runs``."""
    out = pathlib.Path(out)
    folders = ([out] if (out / "runs").is_dir() else []) + sorted(
        p for p in out.iterdir() if p.is_dir() and (p / "runs").is_dir())
    studies = []
    for folder in folders:
        runs = load_runs(folder / "runs")
        if not runs:
            continue
        name = "" if folder == out else folder.name
        settings = {json.dumps(r["settings"], sort_keys=True) for r in runs}
        ns = {r["n"] for r in runs}
        if len(settings) > 1 or len(ns) > 1:
            raise ValueError(f"the runs in {folder / 'runs'} were trained with {len(settings)} different settings "
                             f"and hidden sizes {sorted(ns)}: one study folder holds one setting (move the others to "
                             "a folder of their own)")
        title, purpose = STUDIES.get(name, (name, ""))
        studies.append({"name": name, "title": title, "purpose": purpose, "runs": runs,
                        "settings": json.loads(settings.pop()), "n": ns.pop()})
    return studies


def _final(run: dict, key: str):
    pts = run["curves"]["points"]
    return pts[-1].get(key) if pts else None


def collapse(run: dict, control: Optional[dict]) -> Optional[bool]:
    """Has ``run`` collapsed to the constant ``control`` (same study, T, seed)?  None without a control
    (or for the control itself); False for every solved run.  Rule: module docstring."""
    if run["model"] == CONSTANT or control is None:
        return None
    if run["solved"]:
        return False
    mse, mse_c = _final(run, "train_mse"), _final(control, "train_mse")
    if mse is None or mse_c is None or not (math.isfinite(mse) and math.isfinite(mse_c)):
        return None  # no window, or a diverged run: undetermined, never gate evidence
    spread = run.get("test_prediction_std")
    return bool(mse >= COLLAPSE_MSE_FRACTION * mse_c and abs(run["test_errors"] - control["test_errors"]) <= COLLAPSE_ERRORS
                and (spread is None or spread < COLLAPSE_SPREAD * TARGET_STD))


def label_runs(runs: list[dict]) -> list[dict]:
    """The runs with ``collapsed`` (True/False/None) from their study's controls."""
    controls = {(r["T"], r["seed"]): r for r in runs if r["model"] == CONSTANT}
    return [dict(r, collapsed=collapse(r, controls.get((r["T"], r["seed"])))) for r in runs]


def cells(runs: list[dict]) -> dict:
    """``{(model, T): [runs sorted by seed]}`` in :data:`ORDER`."""
    out = {}
    for m in sorted({r["model"] for r in runs}, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER)):
        for T in sorted({r["T"] for r in runs if r["model"] == m}):
            out[(m, T)] = sorted((r for r in runs if r["model"] == m and r["T"] == T), key=lambda r: r["seed"])
    return out


# ----------------------------------------------------------------------------- table


def half_life_text(lam: Optional[float], T: int) -> str:
    """The half-life column, with the reason when it is empty and a flag when it is extrapolated past T."""
    if lam is None:
        return "– (not measured)"
    hl = gradient_half_life(lam)
    if hl is None:
        return "– (λ₁ ≥ 0: no decay)"
    return f"{hl:.1f} steps" + (f" (> T = {T}: extrapolated)" if hl > T else "")


def table_rows(runs: list[dict]) -> list[dict]:
    """One row per (model, T) of labelled runs (:func:`label_runs`)."""
    rows = []
    for (m, T), rs in cells(runs).items():
        seqs = [r["sequences"] for r in rs if r["solved"]]
        lyap = [r["final_lyapunov"] for r in rs if r.get("final_lyapunov") is not None]
        rows.append({"model": m, "T": T, "runs": len(rs), "solved": len(seqs), "sequences": seqs,
                     "collapsed": sum(r.get("collapsed") is True for r in rs),
                     "undetermined": sum(r.get("collapsed") is None for r in rs),
                     "test_errors": [r["test_errors"] for r in rs],
                     "solved_test_errors": [r["test_errors"] for r in rs if r["solved"]],
                     "lyapunov_median": float(np.median(lyap)) if lyap else None,
                     "cpu_s": float(sum(r.get("seconds", 0.0) for r in rs))})
    return rows


def _solved_text(row: dict) -> str:
    ci = _stats.solved_interval(row["solved"], row["runs"])
    return f"{row['solved']}/{row['runs']} [{ci.low:.2f}, {ci.high:.2f}]"


def _sequences_text(seqs: list) -> str:
    if not seqs:
        return "–"
    mi = _stats.mean_interval(seqs)
    return (f"{_fmt_k(mi.estimate)} [{_fmt_k(mi.low)}, {_fmt_k(mi.high)}] ({_fmt_k(min(seqs))}–{_fmt_k(max(seqs))})"
            if len(seqs) > 1 else f"{_fmt_k(mi.estimate)} (one run)")


def markdown_table(runs: list[dict], hs1997: bool = False) -> str:
    lines = ["| model | T | solved [95 % CI] | collapsed to the constant | mean sequences of solved runs [95 % CI] "
             "(range) | test errors of 2560 (per seed) | λ₁ at end (median) | gradient half-life |",
             "|---|---|---|---|---|---|---|---|"]
    if hs1997:
        for T, ref in HS1997.items():
            lines.append(f"| **H&S 1997 LSTM** (no forget gate) | {T} | 10/10 | – | {_fmt_k(ref['mean_sequences'])}"
                         f"{' (' + ref['range'] + ')' if 'range' in ref else ''} | {ref['test_errors']} | – | – |")
    for row in sorted(table_rows(runs), key=lambda r: (r["T"], ORDER.index(r["model"]) if r["model"] in ORDER else 99)):
        errs = ", ".join(str(e) for e in row["test_errors"])
        if row["model"] == CONSTANT:
            lines.append(f"| *constant predictor (control)* | {row['T']} | – | – | – | {errs} | – | – |")
            continue
        known = row["runs"] - row["undetermined"]
        col = ("– (no control)" if not known else f"{row['collapsed']}/{known}"
               + (f" ({row['undetermined']} without control)" if row["undetermined"] else ""))
        lam = row["lyapunov_median"]
        lines.append(f"| {row['model']} | {row['T']} | {_solved_text(row)} | {col} | {_sequences_text(row['sequences'])} "
                     f"| {errs} | {'–' if lam is None else f'{lam:+.3f}'} | {half_life_text(lam, row['T'])} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- contrasts


def contrast(a: dict, b: dict) -> str:
    """One sentence comparing two table rows (``a`` against ``b``), each number with its test or interval."""
    name = lambda r: f"{r['model']} (T = {r['T']})"  # noqa: E731
    parts = [f"{name(a)} vs {name(b)}: solved {a['solved']}/{a['runs']} vs {b['solved']}/{b['runs']} "
             f"(Fisher exact {_p(_stats.fisher_solved(a['solved'], a['runs'], b['solved'], b['runs']))})"]
    sa, sb = a["sequences"], b["sequences"]
    if len(sa) >= 2 and len(sb) >= 2:
        r = _stats.ratio_interval(sa, sb)
        p_eq = _stats.equivalence_ratio(sa, sb, EQUIVALENCE_MARGIN)
        p_diff = _stats.rank_test(sa, sb)
        line = (f"mean sequences to success {_fmt_k(np.mean(sa))} vs {_fmt_k(np.mean(sb))}, ratio {r.estimate:.2f} "
                f"[{r.low:.2f}, {r.high:.2f}] (bootstrap 95 %; Mann–Whitney {_p(p_diff)})")
        excludes_1 = not (r.low <= 1 <= r.high)
        if p_eq < 0.05:
            line += f", equivalent within a factor {EQUIVALENCE_MARGIN} (TOST on the geometric means, {_p(p_eq)})"
        elif excludes_1 and p_diff < 0.05:  # a direction only when the interval and the rank test agree
            line += f", {'more' if r.low > 1 else 'fewer'} sequences for {a['model']}"
        elif excludes_1:
            line += (f"; the interval lies {'above' if r.low > 1 else 'below'} 1 but the rank test does not reject: "
                     f"suggestive of {'more' if r.low > 1 else 'fewer'} sequences for {a['model']}, not established")
        else:
            line += (f", no difference detected and equivalence within a factor {EQUIVALENCE_MARGIN} not shown (TOST "
                     f"{_p(p_eq)}): the interval allows anything from {_pct(r.low)} to {_pct(r.high)}")
        parts.append(line)
    ea, eb = a["solved_test_errors"], b["solved_test_errors"]
    if ea and eb:
        test = (f" (exact Mann–Whitney {_p(_stats.rank_test(ea, eb))})" if min(len(ea), len(eb)) >= 2 else
                " (one solved run on a side: no test)")
        parts.append(f"test errors of the solved runs median {np.median(ea):g} vs {np.median(eb):g}{test}")
    if a["collapsed"] or b["collapsed"]:
        parts.append(f"collapsed to the constant {a['collapsed']}/{a['runs']} vs {b['collapsed']}/{b['runs']}")
    return "; ".join(parts) + "."


def _pct(ratio: float) -> str:
    return f"{(1 - ratio) * 100:.0f} % fewer" if ratio < 1 else f"{(ratio - 1) * 100:.0f} % more"


def _both_collapsed(a: dict, b: dict) -> bool:
    return a["collapsed"] == a["runs"] and b["collapsed"] == b["runs"]


def _pair(a: dict, b: dict, what: str) -> str:
    if _both_collapsed(a, b):
        return (f"{what}: {a['model']} vs {b['model']} at T = {a['T']}: both arms collapsed to the constant predictor in "
                f"every seed ({a['collapsed']}/{a['runs']}, {b['collapsed']}/{b['runs']}), so the comparison is of a "
                "constant with itself and says nothing about the gate.")
    return f"{what}: {contrast(a, b)}"


#: the contrasts a table supports: (model a, model b, what the contrast asks)
PAIRS = (("lstm-1997-ib", "lstm-chrono", "forget gate removed from chrono (same input-gate bias, f ≡ 1)"),
         ("lstm-frozen-forget", "lstm-bf1", "forget gate frozen vs trained (same initialisation)"),
         ("rnn-floss", "rnn-tanh", "gradient flossing vs the plain tanh RNN"),
         ("torch-lstm-chrono", "lstm-chrono", "PyTorch replication vs JAX (same initial parameters and batches)"),
         ("torch-lstm-bf1", "lstm-bf1", "PyTorch replication vs JAX (same initial parameters and batches)"))
GATED = ("lstm-bf0", "lstm-bf1", "lstm-chrono") + FORGET_BIAS_MODELS


def _first_last(run: dict, key: str):
    pts = [p for p in run["curves"]["points"] if p.get(key) is not None and p["sequences"] > 0]
    return (pts[0][key], pts[-1][key]) if len(pts) >= 2 else None


def findings(runs: list[dict]) -> list[str]:
    """Sentences computed from one study's labelled runs (:func:`label_runs`); no hand-typed numbers."""
    out = []
    rows = {(r["model"], r["T"]): r for r in table_rows(runs)}
    unsolved = [r for r in runs if r["model"] != CONSTANT and not r["solved"]]
    if unsolved:
        out.append(f"Of the {len(unsolved)} runs that did not solve, {sum(r.get('collapsed') is True for r in unsolved)} "
                   "collapsed to the constant predictor (rule above; their test errors are the control's within "
                   f"{COLLAPSE_ERRORS}), {sum(r.get('collapsed') is None for r in unsolved)} are undetermined (no control, "
                   "or no finite training error).")
    for T in sorted({T for _, T in rows}):
        lstm = [r for (m, t), r in rows.items() if t == T and m in LSTM_MODELS + FORGET_BIAS_MODELS]
        if lstm:
            best = min(lstm, key=lambda r: (-r["solved"] / r["runs"], np.mean(r["sequences"]) if r["sequences"] else math.inf))
            ref = f" (H&S 1997: {_fmt_k(HS1997[T]['mean_sequences'])})" if T in HS1997 else ""
            out.append(f"T = {T}: " + (f"no LSTM variant solved within the budget ({len(lstm)} variants)." if not best["solved"]
                                        else f"most reliable, then fastest: {best['model']} {_solved_text(best)} solved, "
                                             f"mean {_sequences_text(best['sequences'])} sequences{ref}."))
            gated = [r for r in lstm if r["model"] in ("lstm-bf0", "lstm-bf1", "lstm-chrono")]
            if (("lstm-1997", T) in rows) and gated:
                bg = min(gated, key=lambda r: (-r["solved"] / r["runs"], np.mean(r["sequences"]) if r["sequences"] else math.inf))
                out.append(_pair(rows[("lstm-1997", T)], bg, "the 1997 cell (no forget gate) vs the best forget-gate variant"))
        for a, b, what in PAIRS:
            if (a, T) in rows and (b, T) in rows:
                out.append(_pair(rows[(a, T)], rows[(b, T)], what))
        bf = sorted((forget_bias_of(m), r) for (m, t), r in rows.items() if t == T and m.startswith("lstm-bf"))
        if len(bf) >= 3:
            text = ", ".join(f"b_f = {b:g} (f₀ = {_sigmoid(b):.3f}): {_solved_text(r)}" for b, r in bf)
            adjacent = "; ".join(f"{a[0]:g} vs {b[0]:g} {_p(_stats.fisher_solved(a[1]['solved'], a[1]['runs'], b[1]['solved'], b[1]['runs']))}"
                                 for a, b in zip(bf, bf[1:]))
            line = f"Forget-bias threshold at T = {T}, solved [95 % CI]: {text}. Adjacent biases, Fisher exact: {adjacent}"
            none = [(b, r) for b, r in bf if r["solved"] == 0]
            half = [(b, r) for b, r in bf if 2 * r["solved"] >= r["runs"] and (not none or b > none[-1][0])]
            if none and half:  # the last bias that solved nothing against the first that solved half or more
                (b0, r0), (b1, r1) = none[-1], half[0]
                line += (f"; b_f = {b0:g} (the largest that solved none) vs b_f = {b1:g} (the smallest above it that solved "
                         f"at least half) {_p(_stats.fisher_solved(r0['solved'], r0['runs'], r1['solved'], r1['runs']))}")
            out.append(line + ".")
    moves, excluded = [], 0
    for r in runs:
        if r["model"] not in GATED:
            continue
        if r.get("collapsed") is not False:
            excluded += 1
            continue
        m = (_first_last(r, "f_lag"), _first_last(r, "long_lag_share"), _first_last(r, "f_other"))
        if all(x is not None for x in m):
            moves.append(m)
    if moves:
        up_f = sum(f[1] > f[0] + 0.01 for f, _, _ in moves)
        up_s = sum(s_[1] > s_[0] + 0.01 for _, s_, _ in moves)
        lag_gt = sum(f[1] > o[1] for f, _, o in moves)
        out.append(f"Forget-gate LSTM runs that did not collapse ({len(moves)}; {excluded} collapsed or without control "
                   f"excluded, their lag units are undefined): the forget activation on the lag-carrying units rose by more "
                   f"than 0.01 from the first snapshot to the last in {up_f}, and ended above the other units' in {lag_gt}; "
                   f"the long-lag share of ∂E/∂W rose by more than 0.01 in {up_s}. Medians, first → last: f_lag "
                   f"{np.median([f[0] for f, _, _ in moves]):.2f} → {np.median([f[1] for f, _, _ in moves]):.2f}, long-lag "
                   f"share {np.median([s_[0] for _, s_, _ in moves]):.2f} → {np.median([s_[1] for _, s_, _ in moves]):.2f}.")
    for T, ref in HS1997.items():
        at_T = [r for (m, t), r in rows.items() if t == T and m in LSTM_MODELS + FORGET_BIAS_MODELS]
        if not at_T:
            continue
        need = SEEDS_T1000 if T == 1000 else SEEDS_LSTM
        good = [r for r in at_T if r["solved"] == r["runs"] >= need and np.mean(r["sequences"]) < ref["mean_sequences"]]
        out.append(f"Target at T = {T} (every seed solved, ≥ {need} seeds, mean below the 1997 "
                   f"{_fmt_k(ref['mean_sequences'])}): " + (
                       "met by " + ", ".join(f"{r['model']} ({r['solved']}/{r['runs']}, mean {_fmt_k(np.mean(r['sequences']))})"
                                             for r in good) if good else
                       "not met: " + ", ".join(f"{r['model']} {r['solved']}/{r['runs']}" for r in at_T)) + ".")
        if good:
            strict = [r["model"] for r in good if max(r["test_errors"]) <= MAX_TEST_ERRORS]
            out.append(f"Of those, also passing the 1997 test in every seed (≤ {MAX_TEST_ERRORS} of 2560 test errors): "
                       + (", ".join(strict) if strict else "none") + "; per-seed test errors: "
                       + "; ".join(f"{r['model']} {', '.join(str(e) for e in r['test_errors'])}" for r in good) + ".")
    return out


def _sigmoid(b: float) -> float:
    return 1 / (1 + math.exp(-b))


# ----------------------------------------------------------------------------- threshold


def threshold_rows(studies: list[dict]) -> list[dict]:
    """Solve probability against the initial forget activation: one row per (study, T, b_f) of the
    ``forget-bias*`` studies, plus the main study's ``lstm-bf0``/``lstm-bf1`` at a T the threshold study lacks,
    counted as solved only within the threshold study's budget (valid because the main budget is larger)."""
    rows = []
    thr = [s for s in studies if s["name"].startswith("forget-bias")]
    main = next((s for s in studies if s["name"] == ""), None)
    for s in thr:
        budget = s["settings"]["budget"]
        have = set()
        for (m, T), rs in cells(s["runs"]).items():
            if m.startswith("lstm-bf"):
                have.add((m, T))
                rows.append(_threshold_row(s, m, T, rs, budget, s["name"]))
        same = main is not None and main["n"] == s["n"] and all(
            main["settings"][k] == s["settings"][k] for k in ("lr", "clip", "batch", "check_every"))
        if s["name"] == "forget-bias" and same and main["settings"]["budget"] >= budget:
            for (m, T), rs in cells(main["runs"]).items():
                if m.startswith("lstm-bf") and (m, T) not in have:
                    rows.append(_threshold_row(s, m, T, rs, budget, f"main sweep, read at the {budget:,} budget"))
    return rows


def _threshold_row(study, m, T, rs, budget, source):
    b = forget_bias_of(m)
    k = sum(1 for r in rs if r["solved"] and r["sequences"] <= budget)
    ci = _stats.solved_interval(k, len(rs))
    f0 = _sigmoid(b)
    return {"study": study["name"], "n": study["n"], "lr": study["settings"]["lr"], "T": T, "forget_bias": b,
            "f0": f0, "f0_power_half_T": f0 ** (T / 2), "solved": k, "runs": len(rs), "low": ci.low, "high": ci.high,
            "source": source}


def design_findings(studies: list[dict]) -> list[str]:
    """Contrasts across studies of the same (n, lr, clip, batch), at each T both have: the most open forget bias
    alone (the threshold study) vs chrono (forget gate open *and* input gate shut, the chrono study), and the
    1997 cell (f ≡ 1) without its input-gate bias (main sweep) vs with it (``lstm-1997-ib``, chrono study).
    Each states both budgets; Fisher's exact test on the solved counts."""
    by = {s["name"]: s for s in studies}
    chrono = by.get("chrono")
    if chrono is None:
        return []
    keys = ("lr", "clip", "batch", "check_every")

    def rows_of(s):
        return {(r["model"], r["T"]): r for r in table_rows(label_runs(s["runs"]))}

    def comparable(s):
        return s is not None and s["n"] == chrono["n"] and all(s["settings"][k] == chrono["settings"][k] for k in keys)

    def fisher(a, b):
        return _p(_stats.fisher_solved(a["solved"], a["runs"], b["solved"], b["runs"]))

    def budget(s):
        return f"budget {s['settings']['budget']:,}"

    fb, main = by.get("forget-bias"), by.get("")
    c_rows = rows_of(chrono)
    fb_rows = rows_of(fb) if comparable(fb) else {}
    main_rows = rows_of(main) if comparable(main) else {}
    out = []
    for T in sorted({T for m, T in c_rows if m == "lstm-chrono"}):
        c = c_rows[("lstm-chrono", T)]
        bfs = sorted((forget_bias_of(m), r) for (m, t), r in fb_rows.items() if t == T and m.startswith("lstm-bf"))
        if bfs:
            b, r = bfs[-1]
            out.append(f"T = {T}, the most open forget bias alone vs chrono (forget gate open and input gate shut, "
                       f"b_i = −b_f): lstm-bf{b:g} {_solved_text(r)} ({budget(fb)}) vs lstm-chrono {_solved_text(c)} "
                       f"({budget(chrono)}), Fisher exact {fisher(r, c)}.")
        if ("lstm-1997", T) in main_rows and ("lstm-1997-ib", T) in c_rows:
            a, ib = main_rows[("lstm-1997", T)], c_rows[("lstm-1997-ib", T)]
            out.append(f"T = {T}, the 1997 cell (f ≡ 1) without vs with chrono's input-gate bias: lstm-1997 "
                       f"{_solved_text(a)} ({budget(main)}) vs lstm-1997-ib {_solved_text(ib)} ({budget(chrono)}), "
                       f"Fisher exact {fisher(a, ib)}.")
    return out


#: the LSTM the modern cells are measured against: the main sweep's most reliable, fastest variant at T = 100 … 1000
MODERN_REFERENCE = "lstm-chrono"


def modern_findings(studies: list[dict]) -> list[str]:
    """The modern cells (study ``modern``) against :data:`MODERN_REFERENCE` of the main sweep at each ``T``, with the
    retention (the memory block's Jacobian diagonal, :mod:`._flow_during`) of their runs that did not collapse."""
    by_name = {s["name"]: s for s in studies}
    if "modern" not in by_name:
        return []
    mod = by_name["modern"]
    rows = {(r["model"], r["T"]): r for r in table_rows(label_runs(mod["runs"]))}
    main = by_name.get("")
    ref = {(r["model"], r["T"]): r for r in table_rows(label_runs(main["runs"]))} if main else {}
    out = []
    if main and main["settings"]["budget"] != mod["settings"]["budget"]:
        out.append(f"Budgets differ (modern {mod['settings']['budget']:,}, main sweep {main['settings']['budget']:,} "
                   "training sequences): a solved count is within each study's own budget; sequences to success are "
                   "comparable wherever both solve.")
    for (m, T), row in sorted(rows.items(), key=lambda kv: (kv[0][1], ORDER.index(kv[0][0]) if kv[0][0] in ORDER else 99)):
        if m not in MODERN_MODELS:
            continue
        if (MODERN_REFERENCE, T) in ref:
            out.append(_pair(row, ref[(MODERN_REFERENCE, T)], f"{m} vs the LSTM"))
        live = [r for r in label_runs(mod["runs"]) if r["model"] == m and r["T"] == T and r.get("collapsed") is False]
        fl = [r["curves"]["points"][-1].get("f_lag") for r in live]
        fo = [r["curves"]["points"][-1].get("f_other") for r in live]
        if live and all(v is not None for v in fl + fo):
            out.append(f"{m} at T = {T}, runs that did not collapse ({len(live)}): retention ∂m_t/∂m_(t−1) at the end, "
                       f"median over runs, {np.median(fl):.4f} on the lag-carrying units vs {np.median(fo):.4f} on the "
                       "others.")
    return out


def threshold_table(rows: list[dict]) -> str:
    lines = ["| T | n | lr | b_f | f₀ = σ(b_f) | f₀^(T/2) | solved [95 % CI] | runs from |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["T"], r["n"], -r["lr"], r["forget_bias"])):
        lines.append(f"| {r['T']} | {r['n']} | {r['lr']:g} | {r['forget_bias']:g} | {r['f0']:.3f} | {r['f0_power_half_T']:.2e} | "
                     f"{r['solved']}/{r['runs']} [{r['low']:.2f}, {r['high']:.2f}] | {r['source'] or 'this study'} |")
    return "\n".join(lines)


def threshold_figure(rows: list[dict]):
    """Solve probability (Clopper–Pearson bars) against σ(b_f) and against σ(b_f)^(T/2), one curve per (T, n, lr)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    groups = sorted({(r["T"], r["n"], r["lr"]) for r in rows})
    for i, (T, n, lr) in enumerate(groups):
        g = sorted((r for r in rows if (r["T"], r["n"], r["lr"]) == (T, n, lr)), key=lambda r: r["forget_bias"])
        y = np.array([r["solved"] / r["runs"] for r in g])
        err = np.array([[yy - r["low"] for yy, r in zip(y, g)], [r["high"] - yy for yy, r in zip(y, g)]])
        label = f"T = {T}" + ("" if (n, lr) == (16, 0.01) else f", n = {n}, lr = {lr:g}")
        for ax, key in zip(axes, ("f0", "f0_power_half_T")):
            ax.errorbar([r[key] for r in g], y, yerr=err, marker="os^vD"[i % 5], capsize=3, lw=1, label=label)
    axes[0].set_xlabel("initial forget activation f₀ = σ(b_f)")
    axes[1].set_xlabel("f₀^(T/2): the product over the lag (eq. 6's B terms alone)")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_ylabel("solved fraction (95 % CI)")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("1997 adding problem: solve probability against the initial forget bias", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- figures and documents

FLOW_MODELS = RNN_MODELS + LSTM_MODELS + FORGET_BIAS_MODELS
_METRICS = (("train_mse", "training MSE (last 2000)", True),
            ("f_lag", "forget f: lag units (—), others (--),\nall 5–95 % (band)", False),
            ("long_lag_share", "share of ∂E/∂W from lags > T/2", False),
            ("log_dsds", "log ‖∂s_T/∂s_t₁‖", False), ("lyapunov", "leading Lyapunov exponent", False),
            ("terms", "eq. 6 terms ‖A‖,‖B‖,‖C‖,‖D‖ (mean)", True))


def figure(runs: list[dict], T: int):
    """``matplotlib.figure.Figure``: rows = measurements, one column per model, lines = seeds, vs training
    sequences (log axis); a dotted vertical line marks the moment the stopping rule fired."""
    from matplotlib.figure import Figure

    models = [m for m in FLOW_MODELS if any(r["model"] == m and r["T"] == T for r in runs)]
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




def meta_document(command: str) -> dict:
    import optax

    from .. import __version__

    dev = jax.devices()[0]
    return {"task": TASK, "test_set": f"{TEST_SIZE} sequences from PRNGKey({TEST_KEY}); an error is |error| > {ERROR_THRESHOLD}",
            "hs1997": HS1997, "versions": {"lstm_jax": __version__, "jax": jax.__version__, "optax": optax.__version__,
                                           "numpy": np.__version__, "python": platform.python_version()},
            "device": f"{dev.platform}: {dev.device_kind}", "command": command}


def results_document(studies: list[dict], meta: dict) -> dict:
    """Schema 2: the meta and, per study, its settings and runs (sorted); the report is a function of this."""
    return {"schema": 2, "meta": meta, "studies": [
        {"name": s["name"], "title": s["title"], "purpose": s["purpose"], "settings": s["settings"], "n": s["n"],
         "runs": sorted(s["runs"], key=lambda r: (r["T"], r["model"], r["seed"]))} for s in studies]}


def _parameters_text(n: int) -> str:
    counts = []
    for m in (CONSTANT,) + FLOW_MODELS + MODERN_MODELS:
        p = init_model(jax.random.PRNGKey(0), ModelSpec(m, TASK, 100, n))
        counts.append(f"{m} {'/'.join(str(c) for c in parameter_count(p, m))}")
    return "Parameters at n = " + str(n) + " (trainable/total): " + ", ".join(counts) + "."


def _study_text(s: dict) -> list[str]:
    st, runs = s["settings"], label_runs(s["runs"])
    folder = f"{s['name']}/runs/" if s["name"] else "runs/"
    untested = sum(1 for r in runs if "tested" not in r)
    cpu = sum(r.get("seconds", 0.0) for r in runs) / 3600
    opts = f"--out docs/long-lag{'/' + s['name'] if s['name'] else ''} --budget {st['budget']}" + (
        f" --n {s['n']}" if s["n"] != 16 else "") + (f" --lr {st['lr']:g}" if st["lr"] != 0.01 else "")
    parts = [f"## {s['title']}", "", _sentence(s["purpose"]),
             f"`{folder}`: {len(runs)} runs ({sum(r['model'] == CONSTANT for r in runs)} of them controls), "
             f"{cpu:.1f} CPU-hours of training as recorded (each run's wall time, `nice -n 19`, one process on a shared "
             f"2-core machine). Hidden size n = {s['n']}; Adam lr {st['lr']:g}, global-norm clip {st['clip']}, "
             f"{st['batch']} sequences per update, budget {st['budget']:,} training sequences per run, stopping rule "
             f"checked every {st['check_every'] * st['batch']} sequences. Resume or extend with "
             f"`nice -n 19 lstm-jax sweep {opts} --models … --Ts … --seeds …` (finished runs are skipped).", ""]
    if untested:
        parts += [f"{untested} of these runs predate the test-time rule: they were scored with the parameters after "
                  f"the rest of the stopping check's chunk (up to {st['check_every'] - 1} further Adam steps), not the "
                  "parameters that scored the window; the other studies' runs use the rule.", ""]
    parts += [markdown_table(runs, hs1997=not s["name"]), "", "### Findings (computed from the runs above)", "",
              *([f"- {line}" for line in findings(runs)] or ["- (no run has finished yet)"]), ""]
    return parts


def _sentence(text: str) -> str:
    return "" if not text else text[0].upper() + text[1:] + ("" if text.endswith("?") else ".")


def _vmap_text(vmap_timing: Optional[dict]) -> list[str]:
    parts = []
    if vmap_timing:
        parts += ["Timings of the sweep itself (`python -m benchmarks.long_lag`). "
                  "Seeds as one vmapped program vs one after another (same chunk of steps, interleaved, "
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
    return parts


def thousand_text(runs: list[dict]) -> str:
    """Which LSTM variants of the main sweep have T = 1000 runs, and the T = 500 record the plan chose them from."""
    ran = sorted({r["model"] for r in runs if r["T"] == 1000 and r["model"] in LSTM_MODELS})
    at500 = {m: [r for r in runs if r["T"] == 500 and r["model"] == m] for m in LSTM_MODELS}
    record = "; ".join(f"{m} {sum(r['solved'] for r in rs)}/{len(rs)}" for m, rs in at500.items() if rs)
    return ("In the main sweep, T = 1000 runs only the two most promising LSTM variants, chosen by the plan from the "
            "finished T = 500 runs (largest fraction of seeds solved, then fewest mean sequences; before any T = 500 "
            f"run: {', '.join(FALLBACK_PROMISING)}). Variants with T = 1000 runs: {', '.join(ran) or 'none yet'}; "
            f"T = 500 solved/run: {record or 'no runs yet'}.")


def figure_names(studies: list[dict]) -> list[str]:
    main = next((s for s in studies if s["name"] == ""), None)
    names = [f"flow_T{T}.png" for T in sorted({r["T"] for r in main["runs"] if r["model"] in FLOW_MODELS})] if main else []
    return names + (["threshold.png"] if threshold_rows(studies) else [])


def readme_text(studies: list[dict], meta: dict, vmap_timing: Optional[dict]) -> str:
    total = sum(len(s["runs"]) for s in studies)
    cpu = sum(r.get("seconds", 0.0) for s in studies for r in s["runs"]) / 3600
    parts = [
        "# Long-lag training: the 1997 adding problem (generated)",
        "",
        f"Generated by `{meta['command']}` from the finished runs of {len(studies)} studies ({total} runs, "
        f"{cpu:.1f} CPU-hours); do not edit by hand. All numbers below come from `results.json`. Device: "
        f"{meta['device']}.",
        "",
        "Task: H&S 1997 Experiment 4 exactly as specified (lengths T…T+T/10, markers −1/0/1, target 0.5 + (X₁+X₂)/4). "
        f"Test: {meta['test_set']}, scored with the parameters that scored the last training batch of the window that "
        "passed (no update after the stopping rule fired; the spread over the last three checks is in each run's "
        "`test_errors_last_checks`). Stopping rule as it binds: H&S 1997 stop when \"the mean squared error of the "
        f"most recent {STOP_WINDOW} training sequences is below 0.01\" and all of them have |error| ≤ {ERROR_THRESHOLD}; "
        "the first clause is implied by the second (all |e| ≤ 0.04 gives a mean squared error ≤ 0.0016), so the rule "
        f"that decides is \"{STOP_WINDOW} consecutive training sequences right\".",
        "",
        "**Controls and collapse.** Every (T, seed) has the *constant predictor*: one trained output bias, no cell, "
        "no input, on the same data stream with the same optimiser (model `constant`). A run is *collapsed to a "
        f"constant* when it did not solve, its last training window's MSE is at least {COLLAPSE_MSE_FRACTION:g}× the "
        f"control's, its test error count is within {COLLAPSE_ERRORS} of the control's and (where recorded) its test "
        f"predictions' standard deviation is below {COLLAPSE_SPREAD:g}× the targets' (1/√24). Gate and lag-unit "
        "statistics of collapsed runs are undefined and never used.",
        "",
        "**Statistics** (`scipy.stats`): solved k/N with the Clopper–Pearson 95 % interval; two arms' solved counts by "
        "Fisher's exact test; sequences to success as a mean with its bootstrap 95 % percentile interval and, between "
        "arms, the ratio of means with its bootstrap interval and an exact Mann–Whitney test; equivalence is stated "
        f"only where a TOST on log sequences rejects at 5 % for a factor {EQUIVALENCE_MARGIN}; test errors of solved "
        "runs by exact Mann–Whitney. λ₁ is the leading Lyapunov exponent per step on held-out sequences of length T "
        "at the end of the run; the half-life ln 2/(−λ₁) says how many steps halve a gradient (flagged when it is "
        "longer than the T steps it was measured over).",
        "",
        _parameters_text(16),
        "",
    ]
    for s in studies:
        parts += _study_text(s)
        if s["name"] == "":
            parts += [thousand_text(s["runs"]), ""]
    rows = threshold_rows(studies)
    if rows:
        parts += ["## Solve probability against the initial forget activation", "",
                  "Every `lstm-bf*` row of the threshold studies; solved means solved within that study's budget.", "",
                  threshold_table(rows), "", "![threshold.png](threshold.png)", ""]
    design = design_findings(studies)
    if design:
        parts += ["## Which part of chrono's initialisation matters (across studies)", "",
                  *[f"- {line}" for line in design], ""]
    modern = modern_findings(studies)
    if modern:
        parts += ["## The modern cells against the LSTM (across studies)", "",
                  f"Each modern cell of the `modern` study against {MODERN_REFERENCE} of the main sweep at the same T "
                  "(statistics as above).", "", *[f"- {line}" for line in modern], ""]
    parts += _vmap_text(vmap_timing)
    parts += [f"![{f}]({f})" for f in figure_names(studies) if f.startswith("flow_")]
    return "\n".join(parts) + "\n"


def report_folder(out: pathlib.Path) -> pathlib.Path:
    """The folder whose report covers ``out``: its parent when ``out`` is a study of a report there (the parent has
    a ``results.json`` and ``out`` none), else ``out`` itself."""
    out = pathlib.Path(out)
    return out.parent if (out.parent / "results.json").is_file() and not (out / "results.json").is_file() else out


def write_report(out: pathlib.Path, command: str = COMMAND) -> list[pathlib.Path]:
    """Regenerate ``results.json``, ``README.md``, ``flow_T<T>.png`` and ``threshold.png`` from the studies'
    runs under ``out`` (together, or none of them)."""
    out = pathlib.Path(out)
    studies = load_studies(out)
    if not studies:
        raise ValueError(f"no finished runs under {out} (expected {out / 'runs'} or {out / '<study>' / 'runs'})")
    meta = meta_document(command)
    vmap_path = out / "vmap_timing.json"
    vmap_timing = json.loads(vmap_path.read_text()) if vmap_path.is_file() else None
    main = next((s for s in studies if s["name"] == ""), None)
    written = []
    with AtomicOutputs() as files:
        written.append(files.write(out / "results.json", strict_json(results_document(studies, meta))))
        written.append(files.write(out / "README.md", readme_text(studies, meta, vmap_timing)))
        for name in figure_names(studies):
            fig = (threshold_figure(threshold_rows(studies)) if name == "threshold.png"
                   else figure(main["runs"], int(name[len("flow_T"):-len(".png")])))
            written.append(files.write_with(out / name, lambda p, fig=fig: fig.savefig(p, dpi=90, format="png")))
    return written
