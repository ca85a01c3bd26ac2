"""``lstm_jax.diagnose`` and ``lstm-jax diagnose``: known systems, rate vs exponent, padding, CLI, HTML.

float64 throughout (tests/conftest.py enables it).  Every model is a real lstm_jax parameter set; the
command-line tests read real files: PyTorch state_dicts, lstm_jax's own ``.npz`` (:func:`lstm_jax.io.save`).
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from html.parser import HTMLParser

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax
import lstm_jax.io
from lstm_jax import cli
from lstm_jax.diagnose import SCHEMA_VERSION, diagnose, write_report
from lstm_jax.io import load_model
from lstm_jax.diagnose._core import _log_suffix_norms as _suffix


def _log_suffix_norms(J, length, stride, G):
    """diagnose's flow norms on dense step Jacobians ``J (T, d, d)``: ``J_t^T Y`` as the step map."""
    return _suffix(_dense_vjp, J, length, stride, G, J.shape[-1])[:2]


def _dense_vjp(J_t, Y):
    return J_t.T @ Y
from lstm_jax.io import RecurrentLayer, RecurrentModel

F64 = jnp.float64


def _single(kind, params, n, m):
    return RecurrentModel((RecurrentLayer("layer0.forward", kind, params, 0, False),), kind, n, m, 1, 1, "test")


def _rotation(theta):
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


# --------------------------------------------------------------------------- known linear systems


def _known_systems():
    diag = np.array([0.95, -0.8, 0.6, 0.3])  # exponents log|a_i|, leading norm growth log 0.95
    block = np.zeros((4, 4))
    block[:2, :2] = 0.9 * _rotation(0.7)  # rotation x scale: both exponents of a block are log(scale)
    block[2:, 2:] = 0.5 * _rotation(-1.3)
    return [("diagonal", np.diag(diag), np.sort(np.log(np.abs(diag)))[::-1]),
            ("rotation x scale", block, np.log([0.9, 0.9, 0.5, 0.5]))]


@pytest.mark.parametrize("name, W, exact", _known_systems(), ids=["diagonal", "rotation-scale"])
def test_lyapunov_from_random_directions_after_transient_is_exact_on_known_linear_systems(name, W, exact):
    """Claim: QR exponents from random orthonormal start directions, transient discarded, equal log|eigen-scales|.

    Constant J = W: the directions converge to the leading subspaces at rate (a_2/a_1)^t <= 0.84^t, so after
    a transient of 150 steps the remaining bias is below 1e-10 per step (tolerance 1e-9).
    """
    T, k = 600, 4
    J = jnp.broadcast_to(jnp.asarray(W, F64), (T, 4, 4))
    q0, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(11), (4, k), F64))
    got = lstm_jax.lyapunov(J, k, q0, transient=150).exponents
    np.testing.assert_allclose(np.asarray(got), exact, atol=1e-9)
    # without the transient the random start directions bias the estimate measurably (the test can fail)
    biased = lstm_jax.lyapunov(J[:40], k, q0).exponents
    assert np.max(np.abs(np.asarray(biased) - exact)) > 1e-4


@pytest.mark.parametrize("name, W, exact", _known_systems(), ids=["diagonal", "rotation-scale"])
def test_log_space_flow_norms_are_exact_and_do_not_underflow_in_float32(name, W, exact):
    """Claim: log ||J^l||_2 = l * log(a_1) for normal W, even where a_1^l underflows float32 (l = 4000).

    float64: relative 1e-10.  float32: every step adds one rounding of the running log sum (<= ulp(170)/2 =
    7.6e-6 at the largest |log norm| here) and of the log of a renormalised norm (a few eps32), so the error
    after l steps is bounded by l * 1e-5 (measured: 8e-3 at l = 4000, bound 4e-2).
    """
    stride, G = 8, 500  # lags 8, 16, ..., 4000
    lags = stride * np.arange(1, G + 1)
    J64 = jnp.broadcast_to(jnp.asarray(W, F64), (G * stride, 4, 4))
    np.testing.assert_allclose(np.asarray(_log_suffix_norms(J64, G * stride, stride, G)[0]), lags * exact[0], rtol=1e-10)
    logn = np.asarray(_log_suffix_norms(J64.astype(jnp.float32), G * stride, stride, G)[0], float)
    assert np.all(np.isfinite(logn))  # 0.95^4000 = 1e-89 is below float32's smallest normal 1e-38
    assert np.all(np.abs(logn - lags * exact[0]) <= lags * 1e-5)
    # a sequence of length 37 inside 50 steps, lags every 4: lags are counted back from step 37; steps before
    # the first are identities (lags 40..52 stay at 37 steps' worth), steps after 37 are never read
    J = jnp.concatenate([J64[:37], 100 * J64[37:50]])
    short = np.asarray(_log_suffix_norms(J, 37, 4, 13)[0])
    np.testing.assert_allclose(short, np.minimum(4 * np.arange(1, 14), 37) * exact[0], rtol=1e-10)


@pytest.mark.parametrize("forget_bias, bound", [(1.0, 1e-12), (5.0, 1e-7)], ids=["init", "long-memory"])
def test_flow_norms_by_lanczos_power_iteration_and_the_truncated_tail_are_lower_bounds_within_their_stated_errors(
        forget_bias, bound):
    """A random LSTM, n = 48 (d = 96 > 2 x the block), against an SVD of every full product by NumPy.  The first
    LANCZOS_LAGS lags are Lanczos, measured within 1.6e-15 of the SVDs for both forget biases (bound 1e-12); the rest
    block power iteration warm-started from it, measured within 1.8e-15 (forget bias 1) and 3.7e-8 (forget bias 5:
    long memory, many singular values near the top one, so one iteration a lag trails the turning top vector): the
    bounds 1e-12 and 1e-7.  After WINDOW_STEPS the product is carried at the rank the function reports; there the
    error is at most the discarded share squared (measured 7.9e-11 against a share of 2.3e-5 at rank 16, forget
    bias 1; rank d, no truncation, at forget bias 5).  Every value is a lower bound (up to rounding, 1e-12), and the
    check lags it reports are SVDs of the product it carries."""
    from lstm_jax.diagnose._core import LANCZOS, LANCZOS_CHECKED, LANCZOS_LAGS, RITZ, RITZ_CHECKED, WINDOW_STEPS, _norm_plan

    n, m, T = 48, 8, 160
    p = lstm_jax.init_lstm(jax.random.PRNGKey(7), n, m, forget_bias=forget_bias, dtype=F64)
    xs = jax.random.normal(jax.random.PRNGKey(8), (T, m), F64)
    J = lstm_jax.lstm_step_jacobians(p, lstm_jax.zero_state(n, F64), xs)
    logn, check, info = _suffix(_dense_vjp, J, T, 1, T, 2 * n)
    P, exact = np.eye(2 * n), []
    for t in range(T - 1, -1, -1):  # products J_T ... J_(T-g+1), g = 1..T, by NumPy
        P = P @ np.asarray(J[t])
        exact.append(np.log(np.linalg.norm(P, 2)))
    rel = np.expm1(logn - np.asarray(exact))
    plan = _norm_plan(T, 2 * n)
    assert set(plan[:LANCZOS_LAGS]) == {LANCZOS, LANCZOS_CHECKED} and set(plan[LANCZOS_LAGS:]) == {RITZ, RITZ_CHECKED}
    checked = np.isin(plan, (RITZ_CHECKED, LANCZOS_CHECKED))
    assert np.flatnonzero(checked).tolist() == [0, LANCZOS_LAGS, T - 1]  # the first lag of each method, the last
    assert np.abs(rel[:LANCZOS_LAGS]).max() <= 1e-12
    assert np.abs(rel[:WINDOW_STEPS]).max() <= bound
    assert np.abs(rel[WINDOW_STEPS:]).max() <= max(bound, info["share"] ** 2)
    assert rel.max() <= 1e-12  # lower bounds
    assert (info["rank"] < 2 * n) == (forget_bias == 1.0)  # the fast-decaying product is truncated, the other not
    window = checked.copy()
    window[WINDOW_STEPS:] = False
    np.testing.assert_allclose(check[window], np.asarray(exact)[window], rtol=1e-12)
    assert np.all(check[checked] <= np.asarray(exact)[checked] + 1e-12)
    assert np.isnan(check[~checked]).all()


@pytest.mark.parametrize("forget_bias, scale, bound", [(1.0, 1.0, 1e-10), (0.0, 3.0, 1e-12)], ids=["init", "large-W"])
def test_eq6_term_norms_by_lanczos_are_lower_bounds_within_the_stated_error_of_svds(forget_bias, scale, bound):
    """A random LSTM, n = 128: ||A_t||, ||C_t||, ||D_t|| by Lanczos (diagnose's terms: the three-term recurrence on
    the factored terms, 32 Krylov vectors) against NumPy SVDs of lstm_terms_along's dense matrices at every third step.
    A Ritz value never exceeds the norm beyond rounding; measured largest relative errors 4.8e-12 (the fresh
    initialisation, whose top singular values crowd; block power iteration with 12 iterations was 6.7e-4 there) and
    1.3e-15 (W x 3), so the bounds 1e-10 and 1e-12; the SVD values the run reports as checks equal NumPy's to 1e-12."""
    from lstm_jax.diagnose._kinds import KINDS

    n, m, T = 128, 8, 120
    p = lstm_jax.init_lstm(jax.random.PRNGKey(7), n, m, forget_bias=forget_bias, dtype=F64)
    p = jax.tree_util.tree_map(lambda a: a * scale if a.ndim == 2 else a, p)
    xs = jax.random.normal(jax.random.PRNGKey(8), (T, m), F64)
    s0 = lstm_jax.zero_state(n, F64)
    _, traj = lstm_jax.run_lstm(p, s0, xs)
    states = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), s0, traj)
    times = jnp.arange(2, T + 1, 3)
    ritz, svd = KINDS["lstm"].terms(p, xs, states, times, times)
    ref_terms = lstm_jax.lstm_terms_along(p, s0, xs, trajectory=traj)  # entry t - 2 is step t
    for name in "ACD":
        ref = np.array([np.linalg.norm(np.asarray(getattr(ref_terms, name))[t - 2], 2) for t in np.asarray(times)])
        got = np.asarray(ritz[name])
        assert np.all(got <= ref * (1 + 1e-12)), name
        assert np.max(1 - got / ref) <= bound, (name, np.max(1 - got / ref))
        np.testing.assert_allclose(np.asarray(svd[name]), ref, rtol=1e-12)
    B = np.asarray(ref_terms.B)[np.asarray(times) - 2]
    np.testing.assert_allclose(np.asarray(ritz["B"]), [np.linalg.norm(b, 2) for b in B], rtol=1e-12)


def test_an_exactly_vanished_gradient_is_said_and_still_reported(tmp_path):
    """tanh RNN, an input of 400 at step 50 of 60 saturates tanh (tanh' = 0 exactly in float64): every product
    reaching back past step 50 is exactly 0 (log 0 = -inf). The sentence says so; the report and figures are
    written; the JSON holds the count."""
    p = lstm_jax.init_rnn(jax.random.PRNGKey(0), 2, 1, dtype=F64)
    xs = np.array(jax.random.normal(jax.random.PRNGKey(1), (3, 60, 1), F64))
    xs[:2, 49, 0] = 400.0  # two of three sequences
    d = diagnose(_single("rnn-tanh", p, 2, 1), xs, key=jax.random.PRNGKey(2), transient=2, progress=False,
                 baseline=False)
    f = d.layers[0].flow
    assert f["exact_zero"] == {"sequences": 2, "from_lag": 11}
    assert "In 2 of 3 sequences the gradient through layer0.forward is exactly zero from lag 11 on" in f["sentence"]
    assert math.isfinite(f["rate"]) and f["fit_lags"][1] == 60  # the third sequence's products stay non-zero
    paths = write_report(d, tmp_path / "o")
    assert {p.name for p in paths} >= {"report.html", "diagnosis.json"}
    assert json.loads((tmp_path / "o" / "diagnosis.json").read_text())["layers"][0]["flow"]["exact_zero"]["sequences"] == 2


def test_agreement_rule_flags_a_disagreement_beyond_two_combined_standard_errors_and_explains_it():
    from lstm_jax.diagnose._core import _agreement

    lyap = {"exponents": [-0.080], "stderr": [0.002]}
    far = _agreement({"rate": -0.050, "rate_stderr": 0.002}, lyap, 200, 50, EPS64)
    near = _agreement({"rate": -0.0745, "rate_stderr": 0.002}, lyap, 200, 50, EPS64)  # 0.0055 < 2 * 0.00283
    assert far["agree"] is False and near["agree"] is True
    assert all(w in far["sentence"] for w in ("finite time", "non-normal transient growth", "start directions"))
    assert far["difference"] == pytest.approx(0.030) and far["combined_stderr"] == pytest.approx(0.002 * 2 ** 0.5)
    with pytest.raises(ValueError, match="transient must be an int in 0..9"):
        lstm_jax.lyapunov(jnp.ones((10, 2, 2)), 1, transient=10)


@pytest.fixture(scope="module")
def linear_rnn_diagnosis():
    W = _known_systems()[1][1]
    p = lstm_jax.RNNParams(jnp.asarray(W, F64), jnp.ones((4, 2), F64), None)
    return diagnose(_single("rnn-tanh", p, 4, 2), np.zeros((3, 300, 2)), key=jax.random.PRNGKey(0), k=4,
                    transient=100, progress=False, baseline=False)


def test_diagnose_recovers_the_exact_rates_of_a_linearised_tanh_rnn(linear_rnn_diagnosis):
    """Claim: with zero inputs and zero bias the tanh RNN stays at c = 0 where J_t = W_rec exactly.

    W_rec = blockdiag(0.9 R(0.7), 0.5 R(-1.3)): rate = exponents[0:2] = log 0.9 and half-life ln 2 / -log 0.9.
    """
    d = linear_rnn_diagnosis
    ld = d.layers[0]
    assert ld.flow["rate"] == pytest.approx(math.log(0.9), abs=1e-9)
    assert ld.flow["half_life"] == pytest.approx(math.log(2) / -math.log(0.9), rel=1e-8)
    np.testing.assert_allclose(ld.lyapunov["exponents"], np.log([0.9, 0.9, 0.5, 0.5]), atol=1e-9)
    assert "halve every 6.58 steps" in ld.flow["sentence"]


# --------------------------------------------------------------------------- sentences that say what the numbers establish

EPS64 = float(np.finfo(np.float64).eps)


def _orthogonal_rnn_diagnosis(B=3, T=120):
    """tanh RNN, W_rec = blockdiag(R(0.7), R(-1.3)) (orthogonal), zero inputs and bias: the state stays at 0,
    J_t = W_rec, so every product has spectral norm exactly 1 — and all B sequences are identical."""
    W = np.zeros((4, 4))
    W[:2, :2], W[2:, 2:] = _rotation(0.7), _rotation(-1.3)
    p = lstm_jax.RNNParams(jnp.asarray(W, F64), jnp.ones((4, 2), F64), None)
    return diagnose(_single("rnn-tanh", p, 4, 2), np.zeros((B, T, 2)), key=jax.random.PRNGKey(0), k=2,
                    transient=20, progress=False, baseline=False).layers[0]


def test_a_norm_preserving_rnn_reads_no_measurable_decay_or_growth():
    ld = _orthogonal_rnn_diagnosis()
    assert abs(ld.flow["rate"]) < 1e-14 and ld.flow["measurable"] is False
    assert ld.flow["half_life"] is None and ld.flow["doubling_time"] is None
    assert "no measurable decay or growth over lags 20–120" in ld.flow["sentence"]
    assert "explode" not in ld.flow["sentence"] and "double" not in ld.flow["sentence"]


def test_identical_sequences_agree_when_the_difference_is_rounding():
    ld = _orthogonal_rnn_diagnosis()
    assert ld.flow["rate_stderr"] == 0.0  # identical sequences: no spread at all
    assert ld.agreement["agree"] is True
    assert "which is rounding" in ld.agreement["sentence"] and "Why this can happen" not in ld.agreement["sentence"]


def test_growth_is_quantified_and_never_called_explosion():
    """The 1997 cell (f = 1 exactly: W_f = 0, b_f = 1e4), n = 8, T = 100, Gaussian inputs: its norms grow."""
    p = lstm_jax.init_lstm(jax.random.PRNGKey(3), 8, 4, dtype=F64)
    p = p._replace(W_f=jnp.zeros_like(p.W_f), b_f=jnp.full(8, 1e4, F64))
    xs = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (8, 100, 4), F64))
    ld = diagnose(_single("lstm", p, 8, 4), xs, key=jax.random.PRNGKey(0), progress=False, baseline=False).layers[0]
    f = ld.flow
    assert f["measurable"] and f["rate"] > 0 and f["doubling_time"] == pytest.approx(math.log(2) / f["rate"])
    lo, hi = f["doubling_time_interval"]
    assert lo < f["doubling_time"] < hi
    assert f["factor_over_fit"] == pytest.approx(math.exp(f["rate"] * (f["fit_lags"][1] - f["fit_lags"][0])))
    s = f["sentence"]
    assert "double every" in s and f"×{f['factor_over_fit']:.3g} over those" in s and "explode" not in s


def test_a_half_life_longer_than_the_fitted_lags_is_flagged_as_an_extrapolation():
    p = lstm_jax.RNNParams(jnp.asarray(0.995 * np.eye(2), F64), jnp.ones((2, 1), F64), None)
    ld = diagnose(_single("rnn-tanh", p, 2, 1), np.zeros((2, 60, 1)), key=jax.random.PRNGKey(0), k=1,
                  transient=10, progress=False, baseline=False).layers[0]
    assert ld.flow["half_life"] == pytest.approx(math.log(2) / -math.log(0.995), rel=1e-8)  # 138 steps > 50 lags
    assert ld.flow["extrapolated"] is True
    assert "longer than the 50 fitted lags, so an extrapolation" in ld.flow["sentence"]


# --------------------------------------------------------------------------- a random LSTM at long T


def test_random_lstm_leading_exponent_and_norm_growth_rate_agree_within_standard_errors():
    """Claim: at long T the finite-time rate of ||ds_T/ds_t||_2 and the leading Lyapunov exponent agree.

    T = 800, 8 sequences (measured: rate -0.0986 +- 0.0012, exponent -0.0986 +- 0.0011).  The standard errors
    are required to be small (< 5 % of the exponent), so agreement is not bought with wide error bars.
    """
    n, m = 8, 3
    p = lstm_jax.init_lstm(jax.random.PRNGKey(3), n, m, dtype=F64)
    xs = jax.random.normal(jax.random.PRNGKey(7), (8, 800, m), F64)
    ld = diagnose(_single("lstm", p, n, m), xs, key=jax.random.PRNGKey(1), k=2, transient=50, baseline=False,
                  progress=False).layers[0]
    rate, se_r = ld.flow["rate"], ld.flow["rate_stderr"]
    lam, se_l = ld.lyapunov["exponents"][0], ld.lyapunov["stderr"][0]
    assert max(se_r, se_l) < 0.05 * abs(lam)
    assert abs(rate - lam) <= se_r + se_l
    assert ld.agreement["agree"] is True


# --------------------------------------------------------------------------- padding


def _stacked_bidirectional(n=3, m=6):  # m = 2n: every layer has the same shapes (one compilation per batch shape)
    keys = jax.random.split(jax.random.PRNGKey(21), 4)
    layers = tuple(RecurrentLayer(f"layer{d}.{'reverse' if r else 'forward'}", "lstm",
                                  lstm_jax.init_lstm(keys[2 * d + r], n, m if d == 0 else 2 * n, dtype=F64), d, bool(r))
                   for d in range(2) for r in range(2))
    return RecurrentModel(layers, "lstm", n, m, 2, 2, "2-layer bidirectional test LSTM")


def test_padded_sequences_give_the_statistics_of_the_sequences_alone():
    """Claim: right padding (seq_lengths) changes nothing: identity Jacobians, masked outputs, reversed valid part.

    On a 2-layer bidirectional LSTM, sequence A (length 20) padded with large garbage to 30 beside sequence C
    (length 30): A's growth rate and leading exponent equal those of A alone, in every layer and direction,
    every statistic of the pair is unchanged when the garbage is replaced, and only valid steps are counted.
    """
    model = _stacked_bidirectional()
    k = jax.random.split(jax.random.PRNGKey(5), 3)
    A = np.asarray(jax.random.normal(k[0], (20, 6), F64))
    C = np.asarray(jax.random.normal(k[1], (30, 6), F64))
    garbage = 50 * np.asarray(jax.random.normal(k[2], (10, 6), F64))
    kw = dict(key=jax.random.PRNGKey(9), k=2, transient=5, baseline=False, progress=False)
    lengths = np.array([20, 30])
    pair = diagnose(model, np.stack([np.concatenate([A, garbage]), C]), seq_lengths=lengths, **kw)
    other = diagnose(model, np.stack([np.concatenate([A, -garbage[::-1]]), C]), seq_lengths=lengths, **kw)
    alone_A = diagnose(model, A, **kw)
    for lp, lo, la in zip(pair.layers, other.layers, alone_A.layers):
        np.testing.assert_allclose(lp.flow["per_sequence_rate"][0], la.flow["per_sequence_rate"][0], rtol=1e-9)
        np.testing.assert_allclose(lp.lyapunov["per_sequence_leading"][0], la.lyapunov["per_sequence_leading"][0],
                                   rtol=1e-9)
        # every statistic of the batch (medians, quantiles, exponents, terms, gate histograms) ignores the padding
        assert json.dumps(lp._replace(baseline=None)._asdict(), default=str) == \
            json.dumps(lo._replace(baseline=None)._asdict(), default=str)
        # A's gate activations (step counts per bin) are those of A alone: the padded steps count nowhere
        hist_pair = np.asarray(lp.gates["gates"]["f"]["hist"])
        assert hist_pair.sum() == pytest.approx(50 * 3) and np.asarray(la.gates["gates"]["f"]["hist"]).sum() == 60
    # the garbage would have changed A's numbers had it been read (the check can fail):
    unmasked = diagnose(model, np.stack([np.concatenate([A, garbage]), C]), **kw)
    assert abs(unmasked.layers[1].flow["per_sequence_rate"][0] - alone_A.layers[1].flow["per_sequence_rate"][0]) > 1e-3


# --------------------------------------------------------------------------- command line, files, HTML


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real PyTorch checkpoint: the state_dict of a torch.nn.LSTM(2, 6), saved as users save it."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(torch.nn.LSTM(2, 6).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def report_dir(checkpoint, tmp_path_factory):
    """``lstm-jax diagnose`` run for real (a subprocess: the installed entry point's code path, exit code 0)."""
    out = tmp_path_factory.mktemp("report") / "d"
    r = subprocess.run([sys.executable, "-m", "lstm_jax", "diagnose", str(checkpoint), "--T", "60", "--batch", "4",
                        "--k", "3", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "layer0.forward: Gradients flowing back through layer0.forward" in r.stdout
    return out


def test_cli_writes_report_json_and_figures(report_dir, checkpoint):
    doc = json.loads((report_dir / "diagnosis.json").read_text())
    assert doc["schema"] == SCHEMA_VERSION == 1
    source = doc["model"].pop("source")
    assert "model.pt" in source and "torch" in source
    assert doc["model"] == {"kind": "lstm", "n": 6, "m": 2, "layers": 1, "directions": 1,
                            "recurrences": ["layer0.forward"]}
    assert doc["inputs"]["batch"] == 4 and doc["inputs"]["T"] == 60 and doc["inputs"]["k"] == 3
    (ld,) = doc["layers"]
    assert set(ld) >= {"name", "kind", "flow", "lyapunov", "terms", "gates", "baseline"}
    assert set(ld["flow"]) >= {"lags", "median", "q10", "q90", "rate", "rate_stderr", "half_life"}
    assert set(ld["lyapunov"]) >= {"exponents", "stderr", "k", "transient"}
    assert ld["flow"]["lags"] == list(range(1, 61))
    assert all(lo <= md <= hi for lo, md, hi in zip(ld["flow"]["q10"], ld["flow"]["median"], ld["flow"]["q90"]))
    assert ld["baseline"]["lyapunov"]["k"] == 3
    files = {p.name for p in report_dir.iterdir()}
    assert files == {"report.html", "diagnosis.json", "manifest.json", *doc["figures"]["layer0.forward"]}
    assert len(doc["figures"]["layer0.forward"]) == 4
    # the model read is the checkpoint's: its forget-gate bias is torch's two biases' f rows (i, f, g, o order)
    import torch

    sd = torch.load(checkpoint, weights_only=True)
    b_f = (sd["bias_ih_l0"] + sd["bias_hh_l0"])[6:12].numpy()
    np.testing.assert_allclose(np.asarray(load_model(checkpoint).layers[0].params.b_f), b_f, rtol=1e-6)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.nums, self._path, self.links = [], [], None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag in ("link", "script") or (tag == "a" and not a.get("href", "#").startswith("#")):
            self.links.append((tag, a))
        if tag == "span" and a.get("class") == "num":
            self._path = a["data-path"]

    def handle_data(self, data):
        if self._path is not None:
            self.nums.append((self._path, data))
            self._path = None


def _lookup(doc, path):
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def test_html_is_self_contained_and_shows_the_numbers_of_the_json(report_dir):
    """Claim: every <img> is an embedded PNG (the same bytes as the PNG file), nothing is fetched, and every
    number shown equals the JSON's (4 significant digits)."""
    page = _Page()
    page.feed((report_dir / "report.html").read_text())
    doc = json.loads((report_dir / "diagnosis.json").read_text())
    assert len(page.imgs) == 4 and not page.links
    pngs = {(report_dir / f).read_bytes() for f in doc["figures"]["layer0.forward"]}
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1])
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw in pngs
    assert len(page.nums) > 20
    paths = {p for p, _ in page.nums}
    assert {"layers.0.flow.rate", "layers.0.lyapunov.exponents.0", "layers.0.baseline.flow.rate"} <= paths
    for path, text in page.nums:
        value = _lookup(doc, path)
        if value is None:
            assert text == "–", path
        else:
            assert float(text) == pytest.approx(value, rel=5e-4, abs=1e-12), path


def _bad_cases(tmp, ckpt):
    np.save(tmp / "wrong_m.npy", np.zeros((2, 10, 5)))
    np.save(tmp / "ok.npy", np.zeros((2, 10, 2)))
    np.save(tmp / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp / "lens.npy", np.array([10, 40]))
    (tmp / "model.txt").write_text("not a model")
    (tmp / "file").write_text("x")
    return [
        (["diagnose", str(tmp / "missing.npz")], 3, "no such file"),
        (["diagnose", str(tmp / "model.txt")], 2, "is a text file; model files are binary"),
        (["diagnose", ckpt, "--data", str(tmp / "wrong_m.npy")], 2, "input size m = 2"),
        (["diagnose", ckpt, "--data", str(tmp / "obj.npy")], 2, "holds Python objects (a pickled object array)"),
        (["diagnose", ckpt, "--data", str(tmp / "ok.npy"), "--lengths", str(tmp / "lens.npy")], 2, "seq_lengths"),
        (["diagnose", ckpt, "--lengths", str(tmp / "lens.npy")], 2, "--lengths needs --data"),
        (["diagnose", ckpt, "--T", "1"], 2, "--T must be in 2..1,000,000, got 1"),
        (["diagnose", ckpt, "--T", "20", "--k", "50"], 2, "k must be an integer in 1..12"),
        (["diagnose", ckpt, "--T", "20", "--transient", "19"], 2, "transient must be"),
        (["diagnose", ckpt, "--layer", "lstm"], 2, "layer='lstm'"),
    ]


def test_bad_inputs_exit_2_or_3_with_one_line_and_leave_no_files(checkpoint, tmp_path, capsys):
    for argv, code, text in _bad_cases(tmp_path, str(checkpoint)):
        out = tmp_path / f"out{len(argv)}{code}"
        assert cli.main([*argv, "--out", str(out)]) == code, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and (text is None or text in err), (argv, err)
        assert not out.exists() or not any(out.iterdir()), argv
    # the output folder is checked before anything else (a file in the way: exit 3)
    assert cli.main(["diagnose", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "file")]) == 3
    assert "--out" in capsys.readouterr().err


def test_write_report_publishes_nothing_when_a_figure_fails(tmp_path, monkeypatch, linear_rnn_diagnosis):
    """Claim: the files appear together or not at all (a failure while staging leaves the folder empty)."""
    from lstm_jax.diagnose import _report

    d = linear_rnn_diagnosis
    out = tmp_path / "d"

    def broken(doc, figs):
        raise RuntimeError("disk full while rendering")

    monkeypatch.setattr(_report, "_html", broken)
    with pytest.raises(RuntimeError):
        write_report(d, out)
    assert not out.exists()  # not even an empty folder is left
    monkeypatch.undo()
    write_report(d, out)
    assert {"report.html", "diagnosis.json"} <= {q.name for q in out.iterdir()}


def test_loader_reads_lstm_jax_rnn_files_and_refuses_unknown_files(tmp_path):
    import lstm_jax.io as lio

    path = lio.save(tmp_path / "rnn.npz", lstm_jax.init_rnn(jax.random.PRNGKey(0), 5, 6, bias=True), kind="rnn-sigmoid")
    model = load_model(path)
    assert (model.kind, model.n, model.m) == ("rnn-sigmoid", 5, 6)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.npz"):
        load_model(tmp_path / "junk.npz")


def test_wrong_arguments_are_named_before_any_work():
    p = lstm_jax.init_rnn(jax.random.PRNGKey(0), 3, 2, dtype=F64)
    model = _single("rnn-tanh", p, 3, 2)
    key = jax.random.PRNGKey(0)
    with pytest.raises(TypeError, match="expected lstm_jax.io.RecurrentModel"):
        diagnose(p, np.zeros((10, 2)), key=key)
    with pytest.raises(ValueError, match=r"input size 4, but the model reads m = 2"):
        diagnose(model, np.zeros((2, 10, 4)), key=key)
    with pytest.raises(ValueError, match=r"seq_lengths must lie in 2..10"):
        diagnose(model, np.zeros((2, 10, 2)), seq_lengths=np.array([10, 11]), key=key)
    with pytest.raises(ValueError, match=r"k must be an integer in 1..3"):
        diagnose(model, np.zeros((2, 10, 2)), k=4, key=key)
    with pytest.raises(ValueError, match="not diagnosable"):
        diagnose(model._replace(layers=(model.layers[0]._replace(kind="lstm2"),)), np.zeros((10, 2)), key=key)


_MODERN = {
    "mingru": lambda k: lstm_jax.init_mingru(k, 6, 3, dtype=F64),
    "minlstm": lambda k: lstm_jax.init_minlstm(k, 6, 3, dtype=F64),
    "rglru": lambda k: lstm_jax.init_rglru(k, 6, dtype=F64),
    "slstm": lambda k: lstm_jax.init_slstm(k, 6, 3, heads=2, dtype=F64),
    "mlstm": lambda k: lstm_jax.init_mlstm(k, 6, 3, heads=2, dtype=F64),  # memory 2 heads x (3 + 1) x 3 = 24
}


@pytest.mark.parametrize("kind", _MODERN)
def test_every_modern_kind_is_diagnosed_into_a_complete_report(kind, tmp_path):
    p = _MODERN[kind](jax.random.PRNGKey(1))
    _, n, m = lstm_jax.cell_of(kind).check(p)
    xs = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (3, 40, m), F64))
    d = diagnose(_single(kind, p, n, m), xs, key=jax.random.PRNGKey(0), k=4, transient=5, progress=False)
    written = {q.name for q in write_report(d, tmp_path)}
    assert {"report.html", "diagnosis.json"} <= written
    doc = json.loads((tmp_path / "diagnosis.json").read_text())
    ld = doc["layers"][0]
    assert ld["kind"] == kind and ld["terms"] is None and np.all(np.isfinite(ld["lyapunov"]["exponents"]))
    gates = ld["gates"]
    assert gates["memory_gate"] in gates["gates"] and 0 < gates["tau_median"]


@pytest.mark.parametrize("kind", ["mingru", "minlstm", "rglru", "mlstm"])
def test_diagonal_cells_exponents_are_the_time_averaged_log_gates_without_a_qr(kind):
    """For J_t = diag(a_t) the QR of diagnose must return, per sequence, the sorted means of log a_t (after the
    transient); diagnose averages them over the sequences."""
    p = _MODERN[kind](jax.random.PRNGKey(3))
    cell = lstm_jax.cell_of(kind)
    _, n, m = cell.check(p)
    xs = jax.random.normal(jax.random.PRNGKey(4), (3, 40, m), F64)
    d = diagnose(_single(kind, p, n, m), np.asarray(xs), key=jax.random.PRNGKey(0), k=6, transient=5,
                 progress=False, baseline=False)
    from lstm_jax import _cell

    per_seq = [np.sort(np.mean(np.log(np.asarray(_cell.linear_coefficients(cell, cell.weights(p), x, n)[0][5:])), 0))[::-1][:6]
               for x in xs]
    np.testing.assert_allclose(d.layers[0].lyapunov["exponents"], np.mean(per_seq, axis=0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", _MODERN)
def test_a_modern_cell_saved_by_lstm_jax_is_diagnosed_from_its_file_by_the_cli(kind, tmp_path):
    import lstm_jax.io as lio
    from lstm_jax import cli

    p = _MODERN[kind](jax.random.PRNGKey(5))
    path = lio.save(tmp_path / f"{kind}.npz", p)
    model = lio.load_model(path)
    assert model.kind == kind and type(model.layers[0].params) is type(p)
    for a, b in zip(model.layers[0].params, p):  # the file round-trips every array exactly
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    out = tmp_path / "diag"
    assert cli.main(["diagnose", str(path), "--T", "30", "--batch", "2", "--out", str(out)]) == 0
    doc = json.loads((out / "diagnosis.json").read_text())
    assert doc["layers"][0]["kind"] == kind and (out / "report.html").exists()
