"""``write_report``: ``report.html`` (one self-contained file), ``diagnosis.json`` and the PNG figures.

Figures are drawn with matplotlib's object API (:class:`matplotlib.figure.Figure`, no pyplot state),
encoded once as PNG bytes, embedded in the HTML as ``data:image/png;base64,`` URIs and written beside
it; all files are published together through :class:`lstm_jax.outputs.AtomicOutputs` (none on failure).
Every number the HTML shows sits in ``<span class="num" data-path="layers.0.flow.rate">`` whose
``data-path`` names the same number in ``diagnosis.json``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import pathlib
from typing import Optional

import numpy as np

from lstm_jax.outputs import AtomicOutputs, check_writable_dir, strict_json

TRAINED, FRESH = "#1f5fa8", "#d9822b"
# eq. (6) terms (LSTM A, B, C, D) and the GRU analogue (B = diag(z), Z, R, N): gate path, additive path, ...
TERM_COLORS = {"A": "#7b3294", "B": "#1a9641", "C": "#d7191c", "D": "#2c7bb6",
               "Z": "#7b3294", "R": "#d7191c", "N": "#2c7bb6"}


def _terms_title(kind: str) -> str:
    if kind == "gru":
        return "GRU analogue of eq. (6): ∂h_t/∂h_(t−1) = B_t + Z_t + R_t + N_t, B_t = diag(z_t)"
    return "eq. (6) terms of ∂c_t/∂c_(t−1) = A_t + B_t + C_t + D_t"


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.4g}"


def _num(doc: dict, path: str) -> str:
    v = doc
    for part in path.split("."):
        v = v[int(part)] if isinstance(v, list) else v[part]
    return f'<span class="num" data-path="{path}">{_fmt(v)}</span>'


# --------------------------------------------------------------------------- figures


def _figure(w, h):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _pow10(ax):
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"$10^{{{int(round(v))}}}$"))


def _log_ticks(ax):
    """Readable tick labels on a log y axis: decades only when it spans two or more, else also 2x and 5x."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 100:
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _flow_figure(ld: dict) -> bytes:
    fig = _figure(7.2, 4.2)
    ax = fig.add_subplot()
    f = ld["flow"]
    lags = np.asarray(f["lags"])
    med = np.asarray(f["median"], float)
    ax.fill_between(lags, np.asarray(f["q10"], float), np.asarray(f["q90"], float), color=TRAINED, alpha=0.2,
                    lw=0, label="model: 10–90 % of sequences")
    ax.plot(lags, med, color=TRAINED, lw=2, label="model: median")
    band = np.concatenate([np.asarray(f["q10"], float), np.asarray(f["q90"], float), med])
    band = band[np.isfinite(band)]  # an exactly vanished product (-inf, null in the JSON) is not drawn
    lo, hi = (float(band.min()), float(band.max())) if band.size else (-1.0, 1.0)
    if f["rate"] is not None and math.isfinite(f["rate"]):
        a, b = f["fit_lags"]
        sel = (lags >= a) & (lags <= b) & np.isfinite(med)
        if sel.any():
            slope = f["rate"] / math.log(10)
            icpt = float(np.median(med[sel] - slope * lags[sel]))
            ax.plot(lags[sel], icpt + slope * lags[sel], ":", color="black", lw=1.5,
                    label=f"fitted rate {f['rate']:+.3g}/step")
    base = ld.get("baseline")
    clipped = False
    if base is not None:
        fb = base["flow"]
        bl, bm = np.asarray(fb["lags"]), np.asarray(fb["median"], float)
        ax.fill_between(bl, np.asarray(fb["q10"], float), np.asarray(fb["q90"], float), color=FRESH, alpha=0.15, lw=0)
        ax.plot(bl, bm, "--", color=FRESH, lw=1.8, label="fresh initialisation: median, 10–90 %")
        span = max(hi - lo, 4.0)
        bfin = bm[np.isfinite(bm)]
        if bfin.size:
            blo, bhi = float(bfin.min()), float(bfin.max())
            clipped = blo < lo - span
            lo, hi = min(lo, max(blo, lo - span)), max(hi, min(bhi, hi + span))
    pad = 0.08 * max(hi - lo, 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    _pow10(ax)
    ax.set_xlabel("lag T − t (steps back from the last step)")
    ax.set_ylabel("‖∂s_T/∂s_t‖₂ (spectral norm, log scale)")
    ax.set_title(f"{ld['name']}: gradient flow back from the last step"
                 + (" (fresh curve leaves the plot below)" if clipped else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    return _png(fig)


def _lyapunov_figure(ld: dict) -> bytes:
    fig = _figure(7.2, 3.6)
    ax = fig.add_subplot()
    ly = ld["lyapunov"]
    idx = np.arange(1, len(ly["exponents"]) + 1)
    err = [0 if s is None else s for s in ly["stderr"]]
    ax.errorbar(idx - 0.08, ly["exponents"], yerr=err, fmt="o", color=TRAINED, capsize=3, label="model")
    base = ld.get("baseline")
    if base is not None:
        bl = base["lyapunov"]
        berr = [0 if s is None else s for s in bl["stderr"]]
        ax.errorbar(idx + 0.08, bl["exponents"], yerr=berr, fmt="s", color=FRESH, capsize=3, mfc="none",
                    label="fresh initialisation")
    r, se = ld["flow"]["rate"], ld["flow"]["rate_stderr"]
    if r is not None and math.isfinite(r):
        ax.axhline(r, color="black", ls=":", lw=1.2, label="finite-time rate of the norms (model)")
        if se is not None and math.isfinite(se):
            ax.axhspan(r - 2 * se, r + 2 * se, color="black", alpha=0.08, lw=0)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xticks(idx)
    ax.set_xlabel("exponent index i")
    ax.set_ylabel("λ_i (per step, natural log)")
    ax.set_title(f"{ld['name']}: Lyapunov exponents (± 1 standard error; band: rate ± 2 s.e.)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    return _png(fig)


def _gates_figure(ld: dict) -> Optional[bytes]:
    g = ld["gates"]
    if g is None:
        return None
    mg = g["memory_gate"]
    name = mg if mg is not None else next(iter(g["gates"]))
    label = {"f": "forget gate f_t", "z": "update gate z_t",
             "state": "state c_t = σ(z_t)" if ld["kind"] == "rnn-sigmoid" else "state (c_t + 1) / 2, c_t = tanh(z_t)"
             }.get(name, name)
    two = mg is not None
    fig = _figure(7.8 if two else 5.2, 3.6)
    axes = fig.subplots(1, 2) if two else [fig.add_subplot()]
    edges = np.asarray(g["bins"])
    ax = axes[0]
    for doc, color, lab, ls in ((g, TRAINED, "model", "-"),
                                 ((ld.get("baseline") or {}).get("gates"), FRESH, "fresh initialisation", "--")):
        if doc is None:
            continue
        h = np.asarray(doc["gates"][name]["hist"], float)
        h = h / max(h.sum(), 1.0)
        ax.stairs(h, edges, color=color, lw=1.8, ls=ls, label=lab)
    ax.set_xlabel(label)
    ax.set_ylabel("share of unit-steps")
    ax.set_title("activation histogram", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if two:
        from matplotlib.ticker import MaxNLocator

        ax = axes[1]
        spans = []
        for doc, color, lab, mk in ((g, TRAINED, "model", "o"),
                                    ((ld.get("baseline") or {}).get("gates"), FRESH, "fresh initialisation", "s")):
            if doc is None:
                continue
            tau = np.asarray([np.inf if t is None else t for t in doc["tau"]], float)
            tau = np.sort(np.where(np.isfinite(tau), tau, np.nan))[::-1]
            ax.plot(np.arange(1, tau.size + 1), tau, mk, color=color, ms=3, label=lab)
            spans.append(tau[np.isfinite(tau)])
        spans = np.concatenate(spans) if spans else np.array([])
        if spans.size and spans.min() > 0 and spans.max() / spans.min() > 10:
            ax.set_yscale("log")  # log only when tau spans more than a decade (else the ticks read badly)
            _log_ticks(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("unit (sorted by τ)")
        ax.set_ylabel("τ = −1 / log f̄ (steps)" if mg == "f" else "τ = −1 / log z̄ (steps)")
        ax.set_title("memory time constant per unit", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{ld['name']}: gates", fontsize=10)
    return _png(fig)


def _terms_figure(ld: dict) -> Optional[bytes]:
    t = ld["terms"]
    if t is None:
        return None
    fig = _figure(7.2, 4.0)
    ax = fig.add_subplot()
    times = np.asarray(t["times"])
    base = (ld.get("baseline") or {}).get("terms")
    for name, v in t["median"].items():
        color = TERM_COLORS.get(name)
        ax.semilogy(times, np.asarray(v, float), color=color, lw=1.6, label=f"‖{name}_t‖₂ model")
        if base is not None and name in base["median"]:
            ax.semilogy(np.asarray(base["times"]), np.asarray(base["median"][name], float), "--", color=color,
                        lw=1, alpha=0.8, label=f"‖{name}_t‖₂ fresh")
    ax.set_xlabel("step t")
    ax.set_ylabel("spectral norm (median over sequences)")
    _log_ticks(ax)
    ax.set_title(f"{ld['name']}: {_terms_title(ld['kind'])}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    return _png(fig)


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;
color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f3f5f8}td.r{text-align:right;font-variant-numeric:tabular-nums}
.headline{font-size:1.15em;font-weight:600}.ok{border-left:4px solid #1a9641;padding-left:.6em}
.warn{border-left:4px solid #d7191c;padding-left:.6em;background:#fff6f5}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
.note{color:#555;font-size:.92em}
"""


def _img(png: bytes, alt: str, caption: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="{uri}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _layer_html(doc: dict, i: int, figs: dict) -> str:
    ld = doc["layers"][i]
    p = f"layers.{i}"
    base = ld["baseline"]
    f = ld["flow"]
    out = [f'<section id="{html.escape(ld["name"])}"><h2>{html.escape(ld["name"])} '
           f'<small>({html.escape(ld["kind"])}, {"reverse time" if ld["reverse"] else "forward time"}, '
           f'input size {ld["m"]})</small></h2>']
    out.append(f'<p class="headline">{html.escape(f["sentence"])}</p>')
    rows = [("finite-time growth rate per step (± standard error over sequences)", "flow.rate", "flow.rate_stderr")]
    if f["half_life"] is not None or (base and base["flow"]["half_life"] is not None):
        rows.append(("gradient half-life (steps)", "flow.half_life", None))
    if f["doubling_time"] is not None or (base and base["flow"]["doubling_time"] is not None):
        rows.append(("gradient doubling time (steps)", "flow.doubling_time", None))
    for j in range(len(ld["lyapunov"]["exponents"])):
        rows.append((f"Lyapunov exponent λ{j + 1} (± standard error)", f"lyapunov.exponents.{j}",
                     f"lyapunov.stderr.{j}"))
    if ld["gates"] is not None:
        rows.append(("share of saturated units", "gates.saturated_units", None))
        if ld["gates"]["memory_gate"] is not None:
            rows.append(("median memory time constant τ (steps)", "gates.tau_median", None))
            rows.append(("share of units with τ longer than T", "gates.tau_longer_than_T", None))
    if ld["terms"] is not None:
        for name in ld["terms"]["overall_median"]:
            eq = "GRU analogue of eq. 6" if ld["kind"] == "gru" else "eq. 6"
            rows.append((f"median ‖{name}_t‖₂ ({eq})", f"terms.overall_median.{name}", None))

    def cell(prefix, key, se):
        return _num(doc, f"{prefix}.{key}") + (f" ± {_num(doc, f'{prefix}.{se}')}" if se else "")

    out.append("<table><tr><th>statistic</th><th>this model</th><th>fresh initialisation</th></tr>")
    for label, key, se in rows:
        mine = cell(p, key, se)
        theirs = cell(f"{p}.baseline", key, se) if base is not None else "–"
        out.append(f'<tr><td>{html.escape(label)}</td><td class="r">{mine}</td><td class="r">{theirs}</td></tr>')
    out.append("</table>")
    ag = ld["agreement"]
    cls = "ok" if ag["agree"] else ("warn" if ag["agree"] is False else "note")
    out.append(f'<p class="{cls}">{html.escape(ag["sentence"])}</p>')
    if ld["gates"] is not None:
        gates = ld["gates"]["gates"]
        cells = ", ".join(f"{html.escape(g)}: {_num(doc, f'{p}.gates.gates.{g}.saturated')}" for g in gates)
        out.append(f'<p class="note">Saturated units per gate (share of units): {cells}. '
                   f'{html.escape(ld["gates"]["saturation_rule"])}.</p>')
    for fname, caption in figs[ld["name"]]:
        out.append(_img(figs["_png"][fname], f"{ld['name']} {caption}", caption))
    out.append("</section>")
    return "\n".join(out)


#: the inputs source of generated inputs, and the line said wherever they are used
GENERATED_PREFIX = "Gaussian N(0, 1) inputs"
GENERATED_NOTE = ("These inputs are generated Gaussian noise and may not resemble what the model sees in use, which "
                  "can change the diagnosis; pass your own with --data FILE.npy (lstm_jax.io.capture_inputs records "
                  "what a layer of your PyTorch model receives).")


def _html(doc: dict, figs: dict) -> str:
    m, inp = doc["model"], doc["inputs"]
    title = f"Gradient-flow diagnosis of {m['source']}"
    arch = (f"{m['layers']}-layer{' bidirectional' if m['directions'] == 2 else ''} {m['kind']} with "
            f"hidden size {m['n']} and input size {m['m']}")
    lengths = inp["lengths"]
    ins = (f"{inp['batch']} input sequence(s) of {inp['T']} steps ({html.escape(inp['source'])})"
           + (f", padded to variable lengths {lengths['min']}–{lengths['max']}" if inp["padded"] else "")
           + f"; computed in {inp['dtype']} on {html.escape(inp['device'])} with jax {html.escape(inp['jax_version'])}.")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Gradient-flow diagnosis</h1><p><b>Model:</b> {html.escape(arch)}; read from "
             f"{html.escape(m['source'])}.<br><b>Inputs:</b> {ins}</p>"
             + (f"<p><b>Note:</b> {html.escape(GENERATED_NOTE)}</p>" if inp["source"].startswith(GENERATED_PREFIX) else ""),
             "<table><tr><th>kind</th><th>n</th><th>m</th><th>layers</th><th>directions</th>"
             "<th>sequences</th><th>T</th><th>k</th><th>transient</th></tr><tr>"
             + f"<td>{html.escape(m['kind'])}</td>"
             + "".join(f'<td class="r">{_num(doc, key)}</td>' for key in
                       ("model.n", "model.m", "model.layers", "model.directions", "inputs.batch", "inputs.T",
                        "inputs.k", "inputs.transient"))
             + "</tr></table>",
             "<p class=\"note\"><b>How to read this.</b> A gradient that reaches the last step T is multiplied, "
             "on its way back to step t, by the Jacobian ∂s_T/∂s_t of the recurrent state (LSTM: the joint "
             "state s = [h; c]; RNN, GRU: the hidden state). Its size is measured by the spectral norm "
             "‖∂s_T/∂s_t‖₂ (the largest factor any gradient direction can get), median and 10–90 % band over "
             "the sequences. A straight line on the log scale means exponential decay or growth; its slope is "
             "the growth rate per step, from which the half-life follows (ln 2 / |rate|). The Lyapunov "
             "exponents are the asymptotic rates (T → ∞), estimated by QR re-orthonormalisation from random "
             "start directions after a discarded transient. Every statistic is repeated for a freshly "
             "initialised model of the same shape, for comparison.</p>",
             "<p>Recurrences: " + ", ".join(f'<a href="#{html.escape(ld["name"])}">{html.escape(ld["name"])}</a>'
                                             for ld in doc["layers"]) + "</p>"]
    parts += [_layer_html(doc, i, figs) for i in range(len(doc["layers"]))]
    parts.append("<hr><p class=\"note\">Produced by lstm_jax.diagnose (diagnosis.json, schema "
                 f"{doc['schema']}, holds every number shown here). Background: N. Arbel, “How LSTM networks "
                 "solve the problem of vanishing gradients”, DataDrivenInvestor (Medium); the eq. (6) terms "
                 "are its decomposition ∂c_t/∂c_(t−1) = A_t + B_t + C_t + D_t, in corrected form.</p></body></html>")
    return "\n".join(parts) + "\n"


def write_report(diagnosis, out_dir) -> list[pathlib.Path]:
    """Write ``out_dir/report.html``, ``out_dir/diagnosis.json`` and the PNG figures, all or nothing.

    Returns the paths written.  Raises ``OSError`` when ``out_dir`` cannot be written (checked first).
    """
    out = check_writable_dir(out_dir, "out_dir")
    doc = diagnosis.to_json()
    figs: dict = {"_png": {}}
    for ld in doc["layers"]:
        figs[ld["name"]] = []
        for suffix, maker, caption in (
                ("flow", _flow_figure, "‖∂s_T/∂s_t‖₂ against the lag: median and 10–90 % band over sequences; "
                                       "dotted: the fitted growth rate."),
                ("lyapunov", _lyapunov_figure, "Leading Lyapunov exponents with standard errors; dotted line: "
                                               "the finite-time growth rate of the norms."),
                ("gates", _gates_figure, "Gate activations over all units and steps, and the memory time constant "
                                         "τ of each unit."),
                ("terms", _terms_figure, "Spectral norms of the eq. (6) terms (GRU: its analogue) along the "
                                         "sequence (median over sequences).")):
            png = maker(ld)
            if png is None:
                continue
            fname = f"{ld['name']}.{suffix}.png"
            figs["_png"][fname] = png
            figs[ld["name"]].append((fname, caption))
    doc["figures"] = {ld["name"]: [f for f, _ in figs[ld["name"]]] for ld in doc["layers"]}
    # one strict-JSON round trip so that the HTML shows exactly the numbers of the file (NaN -> null)
    import json

    text = strict_json(doc)
    doc_json = json.loads(text)
    page = _html(doc_json, figs)
    paths = []
    with AtomicOutputs() as files:
        for fname, png in figs["_png"].items():
            paths.append(files.write(out / fname, png))
        paths.append(files.write(out / "diagnosis.json", text))
        paths.append(files.write(out / "report.html", page))
    return paths
