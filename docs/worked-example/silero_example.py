"""The worked example: silero-vad's LSTM diagnosed on speech, on Gaussian noise and at a fresh initialisation.

Regenerates ``docs/worked-example/silero-vad.md`` and its figures and JSON under ``docs/worked-example/silero-vad/``::

    pip install '.[compare]'           # torch and silero-vad (its trained weights ship in the pip package)
    apt-get install espeak-ng          # Debian/Ubuntu: the speech synthesiser
    python docs/worked-example/silero_example.py       # about a minute on 2 CPU cores

What it does, step by step (every number on the page comes from this run):

1. **Speech.** ``espeak-ng`` speaks eight sentences in four voices (22.05 kHz, resampled to 16 kHz with
   ``scipy.signal.resample_poly``); each is placed at a random offset in 6.4 s of white noise, the noise scaled
   to a signal-to-noise ratio of 10 dB over the utterance (``numpy.random.default_rng(0)``).
2. **The LSTM's real inputs.** silero-vad runs on 512-sample chunks (32 ms at 16 kHz) with 64 samples of context
   and carries its LSTM state between calls, so each call is one step of its ``nn.LSTMCell(128, 128)``
   (``_model.decoder.rnn``).  The archive is TorchScript, whose submodules cannot be hooked
   (:func:`lstm_jax.io.capture_inputs` refuses it), so the cell's input of each step is computed by the archive's own
   submodules, ``_model.encoder(_model.run_extractors(context + chunk))``, exactly as its ``forward`` does; as a
   check, the decoder driven by those inputs reproduces the full model's speech probabilities (the page gives the
   largest difference).  Loading the archive with ``torch.jit.load`` runs its code: it is silero's own file from
   the pip package (``--model`` for another archive you trust); the weights themselves are read by
   :func:`lstm_jax.io.load_model` without running anything.
3. **Diagnosis** (:func:`lstm_jax.diagnose.diagnose`, float64, k = 8) of the cell on those inputs, with its
   baseline (the same inputs through a freshly initialised LSTM, ``lstm_jax.init_lstm``, forget bias 1); and of the
   same cell on Gaussian N(0, 1) inputs of the same shape (what ``lstm-jax diagnose`` uses without ``--data``).

``--model PATH --audio synthetic`` runs the same steps on another archive with the same structure and on synthetic
tone bursts instead of speech (the test suite's stand-in, so the script does not rot).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
RATE = 16_000  # Hz: silero-vad's 16 kHz model
CHUNK, CONTEXT = 512, 64  # samples per call and of context (silero-vad 6, 16 kHz)
T = 200  # calls per sequence: 6.4 s
SNR_DB = 10.0
LAYER = "_model.decoder.rnn"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Voice activity detection decides which parts of a recording hold speech.",
    "Recurrent networks carry a memory from one step to the next.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
    "Gradients that vanish make long memories hard to learn.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
    "We measure instead of guessing, and we say how sure we are.",
]
VOICES = ["en", "en-us", "en-gb-x-rp", "en+f3"]


def espeak_utterances() -> list[np.ndarray]:
    """Each sentence spoken by ``espeak-ng`` (voices in turn), as float64 audio at 16 kHz in [-1, 1]."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    if shutil.which("espeak-ng") is None:
        raise SystemExit("error: espeak-ng is not installed (apt-get install espeak-ng), or pass --audio synthetic")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            wav = pathlib.Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", VOICES[i % len(VOICES)], "-s", "160", "-w", str(wav), text], check=True,
                           capture_output=True)
            rate, x = wavfile.read(wav)
            x = x.astype(np.float64) / 32768.0
            g = math.gcd(RATE, rate)
            out.append(resample_poly(x, RATE // g, rate // g))
    return out


def synthetic_utterances(rng: np.random.Generator, count: int = 8) -> list[np.ndarray]:
    """Stand-in "speech": 1–3 s of amplitude-modulated tone bursts (100–300 Hz with two harmonics)."""
    out = []
    for _ in range(count):
        t = np.arange(int(rng.uniform(1, 3) * RATE)) / RATE
        f0 = rng.uniform(100, 300)
        env = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None)
        out.append(0.3 * env * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3)))
    return out


def noisy_batch(utterances: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``(B, T * CHUNK)``: each utterance at a random offset in white noise at ``SNR_DB`` over the utterance."""
    L = T * CHUNK
    batch = np.zeros((len(utterances), L))
    for b, u in enumerate(utterances):
        u = u[:L]
        start = int(rng.integers(0, L - u.size + 1))
        noise_rms = np.sqrt(np.mean(u**2)) / 10 ** (SNR_DB / 20)
        batch[b] = rng.normal(0.0, noise_rms, L)
        batch[b, start:start + u.size] += u
    return batch


def decoder_inputs(vad, audio: np.ndarray):
    """The LSTM cell's input at every call, ``(B, T, m)``, and the largest difference between the speech
    probabilities of the full model and of its decoder driven by those inputs (module docstring, step 2)."""
    import torch

    x = torch.as_tensor(audio, dtype=torch.float32)
    B = x.shape[0]
    vad.reset_states()
    context = torch.zeros(B, CONTEXT)
    state = torch.zeros(0)  # no state yet: the decoder starts the cell from zeros, as the model does
    feats, diff = [], 0.0
    with torch.no_grad():
        for t in range(T):
            chunk = x[:, t * CHUNK:(t + 1) * CHUNK]
            full = vad(chunk, RATE)  # the model as deployed (stateful)
            x1 = torch.cat([context, chunk], dim=1)
            enc = vad._model.encoder(vad._model.run_extractors(x1))
            out, state = vad._model.decoder(enc, state)
            mine = torch.mean(out.squeeze(1), dim=1, keepdim=True)
            diff = max(diff, float(torch.max(torch.abs(mine - full))))
            feats.append(enc.squeeze(-1).numpy().astype(np.float64))
            context = x1[:, -CONTEXT:]
    return np.stack(feats, axis=1), diff


def _row(label: str, ld: dict) -> dict:
    f, ly, g, te = ld["flow"], ld["lyapunov"], ld["gates"], ld["terms"]
    fg = g["gates"]["f"]
    tau = np.asarray(g["tau"], float)
    return {"label": label, "rate": f["rate"], "rate_stderr": f["rate_stderr"], "measurable": f["measurable"],
            "half_life": f["half_life"], "half_life_interval": f["half_life_interval"], "fit_lags": f["fit_lags"],
            "lyapunov": ly["exponents"][:3], "lyapunov_stderr": ly["stderr"][:3],
            "f_high": fg["saturated_high"], "f_mean": float(np.mean(fg["unit_mean"])),
            "tau_median": g["tau_median"], "tau_max": float(np.max(tau)), "tau_longer_than_T": g["tau_longer_than_T"],
            "terms": te["overall_median"], "sentence": f["sentence"]}


def _fmt_rate(r: dict) -> str:
    return f"{r['rate']:+.5f} ± {r['rate_stderr']:.5f}"


def _fmt_half(r: dict) -> str:
    if not r["measurable"]:
        return "no measurable decay or growth"
    if r["half_life"] is None:
        return "grows (doubling)"
    lo, hi = r["half_life_interval"]
    return f"{r['half_life']:.3g} steps ({lo:.3g}–{hi:.3g})"


def _inputs_sentence(speech: dict, gauss: dict) -> str:
    """Real inputs against Gaussian ones: what the two rates establish, and no more."""
    lo, hi = speech["fit_lags"]
    if not speech["measurable"]:
        what = f"show no measurable decay or growth over lags {lo}–{hi} (rate {_fmt_rate(speech)})"
    elif speech["half_life"] is not None:
        a, b = speech["half_life_interval"]
        what = f"halve every {speech['half_life']:.3g} steps (interval {a:.3g}–{b:.3g})"
    else:
        what = f"grow (rate {_fmt_rate(speech)})"
    s = f"On its real inputs the cell's gradients {what}; on Gaussian inputs of the same shape "
    if gauss["measurable"] and gauss["half_life"] is not None:
        c, d = gauss["half_life_interval"]
        s += f"they halve every {gauss['half_life']:.3g} steps (interval {c:.3g}–{d:.3g})."
        if speech["half_life"] is not None:
            s += (f" The half-life on speech is {speech['half_life'] / gauss['half_life']:.3g} times the Gaussian one "
                  f"(between {a / d:.3g} and {b / c:.3g} from the two intervals)")
            s += (", so the default inputs would understate this model's memory by more than an order of magnitude"
                  if a / d > 10 else "") + "."
        elif not speech["measurable"]:
            s += " The default inputs would give a qualitatively different diagnosis of this model."
    else:
        s += f"the rate is {_fmt_rate(gauss)}."
    if speech["half_life"] is not None and speech["half_life"] > hi - lo:
        s += (f" The half-life on speech is longer than the {hi - lo} fitted lags: an extrapolation of the fitted "
              "rate, not an observed halving.")
    return s + " Pass a model's real inputs (`lstm-jax diagnose --data`)."


def _terms_sentence(speech: dict, fresh: dict) -> str:
    """The eq. (6) terms against the article's picture (an open forget gate, B_t = f_t, carrying the gradient
    while A_t, C_t and D_t stay small), said as the sizes show it."""
    t, f = speech["terms"], fresh["terms"]
    gated = max(t["A"], t["C"], t["D"])
    sizes = f"median ‖B_t‖ {t['B']:.3g}; ‖A_t‖, ‖C_t‖, ‖D_t‖ {t['A']:.3g}, {t['C']:.3g}, {t['D']:.3g}"
    fresh_sizes = (f"at the fresh initialisation ‖B_t‖ {f['B']:.3g} and ‖A_t‖, ‖C_t‖, ‖D_t‖ {f['A']:.3g}, "
                   f"{f['C']:.3g}, {f['D']:.3g}")
    if gated < t["B"]:
        return (f"The eq. (6) terms are the article's picture: the forget-gate term dominates ({sizes}; "
                f"{fresh_sizes}).")
    return (f"The eq. (6) terms are not the article's picture of an open forget gate with small gated terms: on speech "
            f"the terms through h_(t-1) are as large as the forget-gate term or larger ({sizes}; {fresh_sizes}). "
            "These are norms of the terms of ∂c_t/∂c_(t-1) one step at a time; the gradient's survival over 200 steps "
            "is the flow row above, not their sum.")


def page(rows: list[dict], meta: dict) -> str:
    speech, gauss, fresh = rows
    lines = [
        "# Worked example: silero-vad's LSTM on speech",
        "",
        "Generated by `python docs/worked-example/silero_example.py` (module docstring: what it needs and does); "
        "every number below is from that run.",
        "",
        f"**Model**: silero-vad {meta['silero_version']} (pip), its 16 kHz decoder cell `{LAYER}`, an "
        f"`nn.LSTMCell({meta['m']}, {meta['n']})`, read from `silero_vad.jit` by `lstm_jax.io.load_model`. "
        f"**Inputs**: {meta['batch']} sequences of T = {T} calls (32 ms each, {T * CHUNK / RATE:.1f} s): "
        f"{meta['audio']} in white noise at {SNR_DB:g} dB SNR, through silero's own STFT and encoder "
        f"({meta['zero_share']:.0%} of the cell's input values are exactly 0: ReLU features). The decoder driven "
        f"by those inputs reproduces the full model's speech probabilities "
        + ("exactly" if meta["prob_diff"] == 0 else f"to {meta['prob_diff']:.1e}") + " (float32). "
        f"Diagnosis in float64, k = 8, lstm_jax {meta['lstm_jax_version']}, {meta['seconds']:.0f} s for the three.",
        "",
        "| | silero on speech + noise | silero on Gaussian N(0, 1) | fresh initialisation on speech + noise |",
        "|---|---|---|---|",
        f"| growth rate per step (± s.e.) | {' | '.join(_fmt_rate(r) for r in rows)} |",
        f"| gradient half-life (interval) | {' | '.join(_fmt_half(r) for r in rows)} |",
        "| Lyapunov λ₁, λ₂, λ₃ | " + " | ".join(", ".join(f"{v:+.4f}" for v in r["lyapunov"]) for r in rows) + " |",
        "| λ₁ standard error | " + " | ".join(f"{r['lyapunov_stderr'][0]:.4f}" for r in rows) + " |",
        "| units with f > 0.9 on ≥ 90 % of steps | " + " | ".join(f"{r['f_high']:.0%}" for r in rows) + " |",
        "| mean forget gate | " + " | ".join(f"{r['f_mean']:.3f}" for r in rows) + " |",
        "| memory time constant τ: median / largest (steps) | "
        + " | ".join(f"{r['tau_median']:.3g} / {r['tau_max']:.3g}" for r in rows) + " |",
        f"| units with τ > T = {T} | " + " | ".join(f"{r['tau_longer_than_T']:.0%}" for r in rows) + " |",
        "| median ‖A_t‖, ‖B_t‖, ‖C_t‖, ‖D_t‖ (eq. 6, corrected) | "
        + " | ".join(", ".join(f"{r['terms'][k]:.3g}" for k in "ABCD") for r in rows) + " |",
        "",
        "What diagnose says, sentence by sentence (generated from the same numbers):",
        "",
    ]
    lines += [f"- *{r['label']}*: {r['sentence']}" for r in rows]
    lines += ["", "## What it says about a production VAD", ""]
    lines += [_inputs_sentence(speech, gauss), ""]
    lines.append(f"Against the fresh initialisation on the same speech (rate {_fmt_rate(fresh)}), training gave "
                 f"{speech['f_high']:.0%} of the units a forget gate above 0.9 on at least 90 % of the steps "
                 f"(fresh: {fresh['f_high']:.0%}) and memory time constants up to {speech['tau_max']:.3g} steps "
                 f"(fresh: {fresh['tau_max']:.3g}).")
    lines += ["", _terms_sentence(speech, fresh)]
    lines += ["", "Figures (the speech diagnosis; `silero-vad/` also holds `diagnosis.json` of each run):", ""]
    lines += [f"![{name}](silero-vad/{name})" for name in meta["figures"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a TorchScript archive with silero-vad's structure (default: the "
                                                  "silero_vad.jit of the installed silero-vad package)")
    ap.add_argument("--audio", choices=("espeak", "synthetic"), default="espeak")
    ap.add_argument("--out", default=str(HERE), help="folder of the page (default: %(default)s)")
    args = ap.parse_args(argv)

    import time

    import jax
    import torch

    jax.config.update("jax_enable_x64", True)  # an entry point
    import lstm_jax  # noqa: E402
    import lstm_jax.io
    from lstm_jax.diagnose import diagnose, write_report
    from lstm_jax.outputs import AtomicOutputs

    if args.model is None:
        from importlib.metadata import version as dist_version

        import silero_vad

        path, version = pathlib.Path(silero_vad.__file__).parent / "data" / "silero_vad.jit", dist_version("silero-vad")
    else:
        path, version = pathlib.Path(args.model), "stand-in"
    rng = np.random.default_rng(0)
    utterances = espeak_utterances() if args.audio == "espeak" else synthetic_utterances(rng)
    audio = noisy_batch(utterances, rng)
    vad = torch.jit.load(str(path))  # runs the archive's code: silero's own file, or one you pass and trust
    xs, prob_diff = decoder_inputs(vad, audio)
    model = lstm_jax.io.load_model(path, layer=LAYER)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    speech = diagnose(model, xs, key=key, inputs_source=f"silero's STFT + encoder on {args.audio} audio + noise",
                      progress=False)
    gauss_x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), xs.shape, jax.numpy.float64))
    gauss = diagnose(model, gauss_x, key=key, baseline=False, inputs_source="Gaussian N(0, 1)", progress=False)
    seconds = time.perf_counter() - t0

    out = pathlib.Path(args.out)
    figdir = out / "silero-vad"
    with tempfile.TemporaryDirectory() as tmp:
        write_report(speech, pathlib.Path(tmp) / "speech")
        write_report(gauss, pathlib.Path(tmp) / "gauss")
        doc_s = json.loads((pathlib.Path(tmp) / "speech" / "diagnosis.json").read_text())
        doc_g = json.loads((pathlib.Path(tmp) / "gauss" / "diagnosis.json").read_text())
        ld_s, ld_g = doc_s["layers"][0], doc_g["layers"][0]
        fresh = dict(ld_s["baseline"], name=ld_s["name"])
        rows = [_row("silero on speech + noise", ld_s), _row("silero on Gaussian N(0, 1)", ld_g),
                _row("fresh initialisation on speech + noise", fresh)]
        figures = sorted(p.name for p in (pathlib.Path(tmp) / "speech").glob("*.png"))
        meta = {"silero_version": version, "n": model.n, "m": model.m, "batch": xs.shape[0],
                "audio": ("speech by espeak-ng (8 sentences, 4 voices)" if args.audio == "espeak"
                          else "synthetic tone bursts (the stand-in)"),
                "zero_share": float(np.mean(xs == 0)), "prob_diff": prob_diff, "seconds": seconds,
                "lstm_jax_version": lstm_jax.__version__,
                "figures": figures}
        text = page(rows, meta)
        # the page, its figures and JSON appear together or not at all (manifest.json in each folder)
        with AtomicOutputs() as files:
            for name in figures:
                files.write(figdir / name, (pathlib.Path(tmp) / "speech" / name).read_bytes())
            files.write(figdir / "diagnosis-speech.json", (pathlib.Path(tmp) / "speech" / "diagnosis.json").read_text())
            files.write(figdir / "diagnosis-gaussian.json", (pathlib.Path(tmp) / "gauss" / "diagnosis.json").read_text())
            files.write(figdir / "run.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
            files.write(out / "silero-vad.md", text)
    print(f"wrote {out / 'silero-vad.md'} and {figdir}/ ({len(figures)} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
