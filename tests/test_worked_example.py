"""The worked example's script (docs/worked-example/silero_example.py) runs end to end on a stand-in: a TorchScript
archive with silero-vad's structure (a stateful 512-sample-chunk model whose decoder holds an nn.LSTMCell) and
synthetic tone bursts instead of espeak-ng speech, so the committed page can always be regenerated."""

import importlib.util
import json
import pathlib

import pytest

torch = pytest.importorskip("torch")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "worked-example" / "silero_example.py"


def _script():
    spec = importlib.util.spec_from_file_location("silero_example", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Decoder(torch.nn.Module):
    def __init__(self, m: int, n: int):
        super().__init__()
        self.rnn = torch.nn.LSTMCell(m, n)
        self.decoder = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv1d(n, 1, 1), torch.nn.Sigmoid())

    def forward(self, x, state: torch.Tensor):
        x0 = x.squeeze(-1)
        if state.numel() > 0:
            h, c = self.rnn(x0, (state[0], state[1]))
        else:
            h, c = self.rnn(x0)
        return self.decoder(h.unsqueeze(-1)), torch.stack([h, c])


class _Inner(torch.nn.Module):
    def __init__(self, m: int, n: int):
        super().__init__()
        self.stft = torch.nn.Conv1d(1, 16, 64, stride=32)
        self.encoder = torch.nn.Sequential(torch.nn.Conv1d(16, m, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool1d(1))
        self.decoder = _Decoder(m, n)

    @torch.jit.export
    def run_extractors(self, x):
        return torch.abs(self.stft(x.unsqueeze(1)))

    def forward(self, x, state: torch.Tensor):
        return self.decoder(self.encoder(self.run_extractors(x)), state)


class _StandIn(torch.nn.Module):
    """silero-vad's calling convention: ``model(chunk (B, 512), 16000)`` with 64 samples of context and the LSTM
    state carried between calls, ``reset_states()``, the cell at ``_model.decoder.rnn``."""

    def __init__(self, m: int = 6, n: int = 8):
        super().__init__()
        self._model = _Inner(m, n)
        self._state = torch.zeros(0)
        self._context = torch.zeros(0)

    @torch.jit.export
    def reset_states(self):
        self._state = torch.zeros(0)
        self._context = torch.zeros(0)

    def forward(self, x, sr: int):
        if self._context.numel() == 0:
            self._context = torch.zeros(x.shape[0], 64)
        x1 = torch.cat([self._context, x], 1)
        out, self._state = self._model(x1, self._state)
        self._context = x1[:, -64:]
        return out.squeeze(1).mean(1, keepdim=True)


def test_worked_example_script_writes_its_page_figures_and_numbers_from_one_run_on_a_stand_in(tmp_path):
    torch.manual_seed(0)
    archive = tmp_path / "stand_in.jit"
    torch.jit.script(_StandIn()).save(str(archive))
    out = tmp_path / "page"
    assert _script().main(["--model", str(archive), "--audio", "synthetic", "--out", str(out)]) == 0
    text = (out / "silero-vad.md").read_text(encoding="utf-8")
    run = json.loads((out / "silero-vad" / "run.json").read_text())
    meta, rows = run["meta"], run["rows"]
    # the cell's inputs computed through the archive's submodules drive its decoder to the model's own outputs
    assert meta["prob_diff"] == 0.0 and "reproduces the full model's speech probabilities exactly" in text
    assert (meta["n"], meta["m"], meta["batch"]) == (8, 6, 8) and 0 <= meta["zero_share"] < 1
    # the table's figures are the run's: each row's rate, and the speech diagnosis's own numbers
    speech = json.loads((out / "silero-vad" / "diagnosis-speech.json").read_text())["layers"][0]
    assert rows[0]["rate"] == speech["flow"]["rate"] and rows[2]["rate"] == speech["baseline"]["flow"]["rate"]
    for r in rows:
        assert f"{r['rate']:+.5f} ± {r['rate_stderr']:.5f}" in text and r["sentence"] in text
    # every figure the page shows was written with it, in one output set (manifest.json lists them)
    listed = json.loads((out / "silero-vad" / "manifest.json").read_text())["files"]
    for name in meta["figures"]:
        assert f"](silero-vad/{name})" in text and listed[name]["bytes"] == (out / "silero-vad" / name).stat().st_size
    assert {"diagnosis-speech.json", "diagnosis-gaussian.json", "run.json"} <= set(listed)


def test_worked_example_sentences_say_what_the_rates_establish():
    s = _script()
    base = {"fit_lags": [50, 200], "rate_stderr": 1e-3, "terms": {"A": 0.1, "B": 0.9, "C": 0.1, "D": 0.3}}
    flat = dict(base, rate=-1e-4, measurable=False, half_life=None, half_life_interval=None)
    fast = dict(base, rate=-0.14, measurable=True, half_life=4.9, half_life_interval=[4.7, 5.1])
    slow = dict(base, rate=-0.0025, measurable=True, half_life=280.0, half_life_interval=[228.0, 362.0])
    assert "no measurable decay or growth over lags 50–200" in s._inputs_sentence(flat, fast)
    assert "qualitatively different" in s._inputs_sentence(flat, fast)
    said = s._inputs_sentence(slow, fast)
    assert "more than an order of magnitude" in said and "an extrapolation of the fitted rate" in said
    assert "order of magnitude" not in s._inputs_sentence(dict(slow, half_life=20.0, half_life_interval=[15.0, 30.0]), fast)
    assert "article's picture: the forget-gate term dominates" in s._terms_sentence(fast, fast)
    big = dict(slow, terms={"A": 2.0, "B": 1.0, "C": 1.1, "D": 3.0})
    assert "not the article's picture" in s._terms_sentence(big, fast)


def test_committed_worked_example_page_is_the_generator_s_text_for_its_committed_run():
    """docs/worked-example/silero-vad.md is exactly what the script writes for the numbers in its run.json (so a
    changed sentence or table row is regenerated, never edited by hand)."""
    run = json.loads((SCRIPT.parent / "silero-vad" / "run.json").read_text())
    assert _script().page(run["rows"], run["meta"]) == (SCRIPT.parent / "silero-vad.md").read_text(encoding="utf-8")
