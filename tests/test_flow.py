"""Gradient-flow diagnostics: suffix products, norms vs lag, log-space (QR) Lyapunov exponents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
import lstm_jax.io as lio
from lstm_jax import outputs
from _reference import check_close

F64 = jnp.float64


def _lstm_jacs(T, n=6, dtype=F64, seed=0):
    p = lj.init_lstm(jax.random.PRNGKey(seed), n, 3, dtype=dtype)
    xs = jax.random.normal(jax.random.PRNGKey(seed + 1), (T, 3), dtype)
    return lj.lstm_step_jacobians(p, lj.zero_state(n, dtype), xs)


def test_suffix_products_equal_direct_products_of_the_tail():
    Js = _lstm_jacs(25)
    S = lj.suffix_products(Js)
    for t in (0, 7, 24):
        check_close(S[t], lj.jacobian_products(Js[t:])[-1], 1e-12, "suffix products vs direct tail products")


def test_gradient_flow_norms_match_numpy_norms_and_lags():
    Js = _lstm_jacs(12)
    fn = lj.gradient_flow_norms(Js)
    S = np.asarray(lj.suffix_products(Js))
    np.testing.assert_array_equal(fn.lag, np.arange(12, 0, -1))
    np.testing.assert_allclose(fn.spectral, np.linalg.norm(S, 2, axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(fn.frobenius, np.linalg.norm(S, "fro", axis=(1, 2)), rtol=1e-12)


def test_lyapunov_exponents_of_constant_diagonal_jacobians_are_the_log_rates():
    rates = jnp.array([0.3, -0.05, -0.7, -2.0], F64)
    Js = jnp.broadcast_to(jnp.diag(jnp.exp(rates)), (40, 4, 4))
    out = lj.lyapunov(Js)
    np.testing.assert_allclose(out.exponents, rates, rtol=1e-12)
    np.testing.assert_allclose(out.log_growth, 0.3 * np.arange(1, 41), rtol=1e-12)
    np.testing.assert_allclose(out.log_volume[-1], 40 * float(rates.sum()), rtol=1e-12)


def test_lyapunov_of_a_rotation_times_a_scale_is_the_log_scale_for_every_direction():
    th = 0.4
    R = 0.5 * jnp.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]], F64)
    out = lj.lyapunov(jnp.broadcast_to(R, (30, 2, 2)))
    np.testing.assert_allclose(out.exponents, [np.log(0.5)] * 2, rtol=1e-12)


def test_log_growth_equals_the_direct_float64_product_on_the_first_direction():
    Js = _lstm_jacs(80, n=8)
    out = lj.lyapunov(Js)
    P = lj.jacobian_products(Js)
    direct = jnp.log(jnp.linalg.norm(P[:, :, 0], axis=1))
    check_close(out.log_growth[:, None], direct[:, None], 1e-12, "QR log-space growth vs direct float64 product")


def test_long_float32_run_stays_finite_where_the_direct_product_underflows():
    """T = 1e5, float32: the direct product underflows to exactly 0; log space does not."""
    p = lj.init_lstm(jax.random.PRNGKey(0), 4, 2, forget_bias=0.0)
    xs = jax.random.normal(jax.random.PRNGKey(1), (100_000, 2), jnp.float32)
    Js = jax.jit(lj.lstm_step_jacobians)(p, lj.zero_state(4), xs)
    assert Js.dtype == jnp.float32
    out = jax.jit(lj.lyapunov)(Js)
    assert np.all(np.isfinite(np.asarray(out.log_growth))) and np.all(np.isfinite(np.asarray(out.exponents)))
    assert float(out.log_growth[-1]) < -1000  # far below float32's smallest normal, exp(-87)
    direct = jax.jit(lj.jacobian_products)(Js[:2000])[-1]
    assert float(jnp.max(jnp.abs(direct))) == 0.0
    # the rate agrees with a float64 run over a shorter prefix to within finite-T statistics
    with jax.enable_x64(True):
        ref = lj.lyapunov(Js[:20_000].astype(F64)).exponents[0]
    assert abs(float(out.exponents[0]) - float(ref)) < 0.05 * abs(float(ref))


def test_lyapunov_rejects_bad_k():
    with pytest.raises(ValueError, match=r"k must be an int in 1\.\.4 \(the state size d\); got 5"):
        lj.lyapunov(jnp.ones((3, 4, 4)), k=5)
    with pytest.raises(ValueError, match=r"jacs has shape \(3, 4, 5\)"):
        lj.lyapunov(jnp.ones((3, 4, 5)))


def test_lag_map_entries_equal_direct_product_norms_and_nan_above_the_diagonal():
    Js = _lstm_jacs(9, n=4)
    M = np.asarray(lj.lag_map(Js))
    for t in range(1, 10):
        for u in range(10 - 1):
            if u < t:
                ref = np.linalg.norm(np.asarray(lj.jacobian_products(Js[u:t])[-1]), 2)
                assert abs(M[t - 1, u] - ref) <= 1e-12 * ref
            else:
                assert np.isnan(M[t - 1, u])
    cc = np.asarray(lj.lag_map(Js, lambda P: P[..., 4:, 4:]))
    np.testing.assert_allclose(cc[8, 3], np.linalg.norm(np.asarray(lj.jacobian_products(Js[3:9])[-1])[4:, 4:], 2),
                               rtol=1e-12)


def test_flow_cli_writes_json_and_three_figures(tmp_path):
    import json

    from lstm_jax import cli

    assert cli.main(["flow", "--T", "30", "--n", "4", "--m", "2", "--out", str(tmp_path)]) == 0
    def no_nan(token):
        raise AssertionError(f"flow.json is not strict JSON: {token}")

    report = json.loads((tmp_path / "flow.json").read_text(), parse_constant=no_nan)
    assert report["non_finite_replaced_by_null"] > 0  # the lag map's upper triangle (u >= t) is NaN by definition
    assert report["models"]["lstm-forget-bias1"]["lag_map_steps"] == 30  # the whole sequence, not a silent cut
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.json", "flow_vs_lag.png", "lag_map.png", "manifest.json",
                                                          "terms.png"]
    assert sorted(outputs.check_output_set(tmp_path)["files"]) == ["flow.json", "flow_vs_lag.png", "lag_map.png", "terms.png"]
    assert set(report["models"]) == {"rnn-sigmoid", "rnn-tanh", "lstm-forget-bias0", "lstm-forget-bias1",
                                     "lstm-forget-bias3"}
    lstm = report["models"]["lstm-forget-bias1"]
    assert len(lstm["spectral"]) == 30 and lstm["lag"][0] == 30
    for name in ("flow_vs_lag.png", "lag_map.png", "terms.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # the forget gate orders the LSTMs' long-lag flow: bias 3 > 1 > 0 at the longest lag
    far = [report["models"][f"lstm-forget-bias{b}"]["spectral"][0] for b in (0, 1, 3)]
    assert far[0] < far[1] < far[2]


# ----------------------------------------------------------------------------- float32 robustness (issue 12)


def test_derivatives_do_not_round_to_zero_and_match_float64():
    """σ'(z) = σ(z)σ(−z) and tanh'(z) = 4σ(2z)σ(−2z) at 20 001 float32 points of [−90, 90] against float64.

    Bound: relative error ≤ 1e-6 (≈ 8 ulp: two sigmoids, a product and a scaling, each a few ulp) wherever
    the true value is a normal float32 number; below that (σ': |z| ≳ 87.3, tanh': |z| ≳ 43.6) the result
    is 0 or subnormal, absolute error ≤ float32's smallest normal (tanh': 4× that).  The textbook forms are exactly 0 from
    |z| ≈ 17 (s(1 − s)) and ≈ 8 (1 − t²), which is why they are not used.
    """
    z32 = np.linspace(-90, 90, 20_001).astype(np.float32)
    z = z32.astype(np.float64)
    tiny = float(np.finfo(np.float32).tiny)
    refs = {"sigmoid": np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))) ** 2,
            "tanh": 4 * np.exp(-2 * np.abs(z)) / (1 + np.exp(-2 * np.abs(z))) ** 2}
    # tanh' = 4 σ(2z)σ(−2z): its factor σ(−2|z|) leaves the normal range where the result is still < 4 tiny
    for act, last_normal, floor in ((lj.SIGMOID, 87.3, tiny), (lj.TANH, 43.6, 4 * tiny)):
        got = np.asarray(act.deriv(jnp.asarray(z32)), np.float64)
        ref = refs[act.name]
        assert np.all(np.isfinite(got))
        normal = ref >= floor
        rel = np.abs(got[normal] - ref[normal]) / ref[normal]
        assert rel.max() <= 1e-6, (act.name, rel.max())
        assert np.all(np.abs(got[~normal] - ref[~normal]) <= floor)
        assert np.all(got[np.abs(z) <= last_normal] > 0), act.name
    zj = jnp.asarray(z32)
    s, t = jax.nn.sigmoid(zj), jnp.tanh(zj)
    assert float(jnp.min(jnp.abs(zj)[(s * (1 - s)) == 0])) < 17.5
    assert float(jnp.min(jnp.abs(zj)[(1 - t * t) == 0])) < 9.0


def test_saturated_float32_jacobians_have_no_zero_rows_and_lyapunov_matches_float64():
    """tanh RNN driven into saturation (inputs × 8, |z| up to ~30): 1 − tanh² would zero thousands of entries
    and give −inf exponents; the shared derivative keeps every row.  The leading 4 exponents agree with float64
    to 1e-4 relative (a contracting system: the float32 trajectory tracks the float64 one)."""
    p64 = lj.init_rnn(jax.random.PRNGKey(0), 16, 4, scale=1.0, dtype=F64)
    xs64 = 8.0 * jax.random.normal(jax.random.PRNGKey(1), (2000, 4), F64)
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), p64)
    J32 = lj.rnn_step_jacobians(p32, jnp.zeros(16, jnp.float32), xs64.astype(jnp.float32), "tanh")
    J64 = lj.rnn_step_jacobians(p64, jnp.zeros(16, F64), xs64, "tanh")
    _, cs = lj.run_rnn(p32, jnp.zeros(16, jnp.float32), xs64.astype(jnp.float32), "tanh")
    z = jnp.arctanh(jnp.clip(cs.astype(F64), -1 + 1e-16, 1 - 1e-16))
    assert int(jnp.sum(1 - jnp.tanh(z.astype(jnp.float32)) ** 2 == 0)) > 1000  # the old form would zero these
    assert int(jnp.sum(jnp.all(J32 == 0, axis=2))) == 0
    l32, l64 = lj.lyapunov(J32), lj.lyapunov(J64)
    assert np.all(np.isfinite(np.asarray(l32.exponents)))
    np.testing.assert_allclose(l32.exponents[:4], l64.exponents[:4], rtol=1e-4)


def test_gradient_flow_log_norms_float32_at_T_1e5_are_finite_and_match_float64():
    """Issue 12: float32 suffix-product norms at T = 1e5 were 99.6 % exact zeros.  The log-space
    accumulation keeps every log-norm finite; on the last 1e4 steps it equals a float64 run to 1e-3
    relative (|Δ| ≤ 1e-3 · max(|ref|, 1); measured ~3e-6).  ``spectral = exp(log_spectral)`` still
    underflows to 0 in float32 (documented)."""
    p = lj.init_lstm(jax.random.PRNGKey(0), 4, 2, forget_bias=1.0, dtype=F64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (100_000, 2), F64)
    J64 = jax.jit(lj.lstm_step_jacobians)(p, lj.zero_state(4, F64), xs)
    f32 = jax.jit(lj.gradient_flow_norms)(J64.astype(jnp.float32))
    assert f32.log_spectral.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(f32.log_spectral))) and np.all(np.isfinite(np.asarray(f32.log_frobenius)))
    assert float(f32.log_spectral[0]) < -10_000  # far below float32's range: exp(-87)
    assert int(jnp.sum(f32.spectral == 0)) > 90_000
    ref = jax.jit(lj.gradient_flow_norms)(J64[-10_000:])
    for got, want in ((f32.log_spectral, ref.log_spectral), (f32.log_frobenius, ref.log_frobenius)):
        got, want = np.asarray(got[-10_000:], np.float64), np.asarray(want)
        assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1)) <= 1e-3


def test_gradient_flow_log_norms_stay_finite_when_the_product_explodes():
    """Chaotic tanh RNN (gain 2.5): the norms overflow (spectral = inf) but the log-norms agree with float64."""
    p = lj.init_rnn(jax.random.PRNGKey(3), 16, 4, scale=2.5, dtype=F64)
    xs = jax.random.normal(jax.random.PRNGKey(4), (3000, 4), F64)
    J64 = lj.rnn_step_jacobians(p, jnp.zeros(16, F64), xs, lj.TANH)
    f32, f64 = lj.gradient_flow_norms(J64.astype(jnp.float32)), lj.gradient_flow_norms(J64)
    assert float(f64.log_spectral[0]) > 100 and np.isinf(float(f32.spectral[0]))
    got, want = np.asarray(f32.log_spectral, np.float64), np.asarray(f64.log_spectral)
    assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1)) <= 1e-3


def test_half_precision_jacobians_are_promoted_to_float32():
    Js = _lstm_jacs(30, n=4)
    for half in (jnp.bfloat16, jnp.float16):
        Jh = Js.astype(half)
        fn, ly = lj.gradient_flow_norms(Jh), lj.lyapunov(Jh)
        assert fn.log_spectral.dtype == jnp.float32 and ly.exponents.dtype == jnp.float32
        J32 = Jh.astype(jnp.float32)
        np.testing.assert_array_equal(fn.log_spectral, lj.gradient_flow_norms(J32).log_spectral)
        np.testing.assert_array_equal(ly.exponents, lj.lyapunov(J32).exponents)
        assert lj.lag_map(Jh[:5]).dtype == jnp.float32
        # end to end from half-precision parameters (issue 12: bfloat16 Jacobians crashed in LAPACK)
        p = lj.init_lstm(jax.random.PRNGKey(0), 4, 3, dtype=half)
        Jp = lj.lstm_step_jacobians(p, lj.zero_state(4, half), jax.random.normal(jax.random.PRNGKey(1), (30, 3), half))
        assert Jp.dtype == half and np.all(np.isfinite(np.asarray(lj.lyapunov(Jp).exponents)))


def test_lyapunov_q0_is_orthonormalised_and_exact_zeros_are_floored_not_minus_inf():
    Js = _lstm_jacs(60, n=4)
    q = jax.random.normal(jax.random.PRNGKey(7), (8, 3), F64) * 5.0  # not orthonormal
    a, b = lj.lyapunov(Js, k=3, q0=q), lj.lyapunov(Js, k=3, q0=jnp.linalg.qr(q)[0])
    np.testing.assert_allclose(a.exponents, b.exponents, rtol=1e-12)
    direct = jnp.log(jnp.linalg.norm(lj.jacobian_products(Js)[-1] @ (q[:, 0] / jnp.linalg.norm(q[:, 0]))))
    np.testing.assert_allclose(a.log_growth[-1], direct, rtol=1e-12)
    singular = Js.at[10].set(0.0).astype(jnp.float32)  # an exactly zero step Jacobian
    out = lj.lyapunov(singular)
    assert np.all(np.isfinite(np.asarray(out.exponents))) and int(out.floored) == 8
    assert int(lj.lyapunov(Js).floored) == 0


def test_shared_derivatives_are_more_accurate_than_autodiff_in_float64():
    """Against a long-double evaluation of the closed forms on [−12, 12]: the shared σ', tanh' are within
    1e-15 relative (measured 4e-16); jax.grad of tanh (1 − tanh², cancellation) is off by up to ~5e-6 and of
    the sigmoid by ~2e-11.  This is why the analytic Jacobians now differ from jax.jacfwd by ~1e-13 (not
    1e-16) in `lstm-jax verify`: the difference is autodiff's rounding, far inside the 1e-10 tolerance."""
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("no extended precision long double on this platform")
    z = np.linspace(-12, 12, 4001)
    a = np.abs(z.astype(np.longdouble))
    refs = {"sigmoid": np.exp(-a) / (1 + np.exp(-a)) ** 2, "tanh": 4 * np.exp(-2 * a) / (1 + np.exp(-2 * a)) ** 2}
    for act in (lj.SIGMOID, lj.TANH):
        ref = refs[act.name]
        ours = np.asarray(act.deriv(jnp.asarray(z, F64))).astype(np.longdouble)
        auto = np.asarray(jax.vmap(jax.grad(act.fn))(jnp.asarray(z, F64))).astype(np.longdouble)
        err_ours, err_auto = float(np.max(np.abs(ours - ref) / ref)), float(np.max(np.abs(auto - ref) / ref))
        assert err_ours <= 1e-15, (act.name, err_ours)
        assert err_auto > 100 * err_ours, (act.name, err_auto)


def test_readme_flow_table_is_what_the_committed_flow_json_says():
    """The flow guide's ``lstm-jax flow`` table (2 significant digits) against docs/figures/flow.json, which
    ``lstm-jax flow --out docs/figures`` writes: regenerate both together."""
    import json
    import math
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    doc = json.loads((root / "docs" / "figures" / "flow.json").read_text())
    labels = {"RNN-σ": "rnn-sigmoid", "RNN-tanh": "rnn-tanh", "LSTM, forget bias 0": "lstm-forget-bias0",
              "LSTM, forget bias 1": "lstm-forget-bias1", "LSTM, forget bias 3": "lstm-forget-bias3"}
    readme = (root / "docs" / "guide" / "flow.md").read_text()
    seen = 0
    for label, key in labels.items():
        row = re.search(rf"^\| {re.escape(label)} \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", readme, re.M)
        assert row, label
        at50, at200, lyap = (float(c.strip().replace("−", "-")) for c in row.groups())
        v = doc["models"][key]
        norm = {L: math.exp(v["log_spectral"][v["lag"].index(L)]) for L in (50, 200)}
        assert math.isclose(at50, norm[50], rel_tol=0.05) and math.isclose(at200, norm[200], rel_tol=0.05), label
        assert abs(lyap - v["lyapunov_top"]) < 5e-4, label
        seen += 1
    assert seen == 5


# --------------------------------------------------------------------------- the toolkit's primitives


def test_log_renormalise_keeps_the_product_and_gives_minus_inf_for_an_exact_zero():
    M = jax.random.normal(jax.random.PRNGKey(3), (4, 4), F64) * 1e150
    Mn, L = lj.log_renormalise(M, jnp.asarray(2.0, F64))
    check_close(np.exp(float(L) - 2.0) * np.asarray(Mn), np.asarray(M), 1e-13, "e^L M is the product")
    assert abs(float(jnp.linalg.norm(Mn)) - 1.0) < 1e-15
    check_close(float(lj.log_spectral(Mn, L)), np.log(np.linalg.norm(np.asarray(M), 2)) + 2.0, 1e-13, "log ||.||_2")
    Z, L0 = lj.log_renormalise(jnp.zeros((3, 3), F64), jnp.asarray(0.0, F64))
    assert float(L0) == -np.inf and not np.any(np.asarray(Z))
    Z, L0 = lj.log_renormalise(Z @ M[:3, :3], L0)  # a vanished product stays vanished
    assert float(L0) == -np.inf and not np.any(np.asarray(Z)) and float(lj.log_spectral(Z, L0)) == -np.inf


def test_qr_step_has_a_nonnegative_diagonal_and_floors_exactly_singular_directions():
    X = jax.random.normal(jax.random.PRNGKey(4), (6, 3), F64)
    Q, logs, low = lj.qr_step(X)
    R = np.asarray(Q).T @ np.asarray(X)
    check_close(np.asarray(Q) @ R, np.asarray(X), 1e-13, "Q R = X")
    check_close(np.asarray(logs), np.log(np.abs(np.diag(np.linalg.qr(np.asarray(X))[1]))), 1e-13, "log |R_ii|")
    assert np.all(np.diag(R) > 0) and int(low) == 0
    _, logs, low = lj.qr_step(X.at[:, 2].set(0.0))
    assert int(low) == 1 and float(logs[2]) == np.log(np.finfo(np.float64).tiny)


def test_spectral_ritz_is_a_lower_bound_that_reaches_the_norm():
    M = jax.random.normal(jax.random.PRNGKey(5), (40, 40), F64)
    exact = np.linalg.norm(np.asarray(M), 2)
    cold, _ = lj.spectral_ritz(M, jnp.eye(40, 4, dtype=F64), iters=1)
    warm, _ = lj.spectral_ritz(M, jnp.eye(40, 4, dtype=F64), iters=200)
    assert float(cold) <= exact * (1 + 1e-15) and abs(float(warm) / exact - 1) < 1e-12


def test_half_life_and_time_constant_known_values():
    assert lj.half_life(-np.log(2) / 10) == pytest.approx(10.0, rel=1e-15)
    assert lj.half_life(0.0) == np.inf and lj.half_life(0.3) == np.inf
    assert lj.time_constant(np.exp(-1 / 7)) == pytest.approx(7.0, rel=1e-14)
    np.testing.assert_array_equal(lj.time_constant(np.array([0.0, 1.0, 1.5])), [0.0, np.inf, np.inf])
    assert np.isnan(lj.half_life(np.nan)) and np.isnan(lj.time_constant(np.nan)) and np.isnan(lj.time_constant(-0.5))


def _crowded(d: int):
    """Singular values 0.99^i (a crowded top, norm 1) on random orthogonal bases, and a random start vector."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(9), 3)
    Qa = jnp.linalg.qr(jax.random.normal(k1, (d, d), F64))[0]
    Qb = jnp.linalg.qr(jax.random.normal(k2, (d, d), F64))[0]
    return (Qa * (0.99 ** jnp.arange(d))[None, :]) @ Qb.T, jax.random.normal(k3, (d,), F64)


def test_spectral_lanczos_is_a_lower_bound_that_reaches_crowded_norms_where_power_iteration_does_not():
    """Singular values 0.99^i (a crowded top) on random orthogonal bases, d = 60, from a random start: 32 Krylov
    vectors reach the norm to 1e-12 (measured 1.7e-15), while 32 power iterations from the same vector (as many
    matrix passes) stay 9.4e-4 below it; the Ritz vectors are orthonormal, the value never exceeds the norm, and a zero start
    vector gives 0 (an exhausted space adds nothing)."""
    d = 60
    M, v0 = _crowded(d)
    sigma, U = lj.spectral_lanczos(M, v0, 32, 4)
    assert abs(float(sigma) - 1.0) <= 1e-12 and float(sigma) <= 1.0 + 1e-15
    np.testing.assert_allclose(np.asarray(U.T @ U), np.eye(4), atol=1e-13)
    power, _ = lj.spectral_ritz(M, (v0 / jnp.linalg.norm(v0))[:, None], iters=32)
    assert 1.0 - float(power) > 1e-4
    assert float(lj.spectral_lanczos(M, jnp.zeros(d, F64), 32, 4)[0]) == 0.0


def test_scaled_matrix_products_equal_the_dense_matrix_diag_r_U_diag_c():
    """ScaledMatrix(r, U, c) = diag(r) U diag(c) (NumPy), its products with vectors and blocks, U = None the diagonal."""
    k = jax.random.split(jax.random.PRNGKey(21), 5)
    r, c = jax.random.normal(k[0], (7,), F64), jax.random.normal(k[1], (7,), F64)
    U, x, X = jax.random.normal(k[2], (7, 7), F64), jax.random.normal(k[3], (7,), F64), jax.random.normal(k[4], (7, 3), F64)
    ref = np.diag(np.asarray(r)) @ np.asarray(U) @ np.diag(np.asarray(c))
    M = lj.ScaledMatrix(r, U, c)
    assert M.shape == (7, 7) and M.dtype == F64
    np.testing.assert_allclose(M.dense(), ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(M.matvec(x), ref @ np.asarray(x), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(M.matvec(X), ref @ np.asarray(X), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(M.rmatvec(X), ref.T @ np.asarray(X), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(M.rmatvec(x), ref.T @ np.asarray(x), rtol=1e-13, atol=1e-14)
    D = lj.ScaledMatrix(r, None, c)
    np.testing.assert_array_equal(D.dense(), np.diag(np.asarray(r * c)))
    np.testing.assert_allclose(D.rmatvec(x), np.asarray(r * c * x), rtol=1e-15)
    batch = lj.ScaledMatrix(jnp.stack([r, 2 * r]), U, jnp.stack([c, c]))  # a leading (time) axis sharing U
    assert batch.shape == (2, 7, 7)
    np.testing.assert_allclose(batch.dense(), np.stack([ref, 2 * ref]), rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(lj.ScaledMatrix(jnp.stack([r, r]), None, jnp.stack([c, c])).dense()[1],
                               np.diag(np.asarray(r * c)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="take one matrix"):
        batch.matvec(x)


def test_spectral_lanczos_norm_without_reorthogonalisation_reaches_crowded_norms_and_stays_below_them():
    """The plain three-term recurrence (no reorthogonalisation) on the crowded spectrum of
    test_spectral_lanczos_..._power_iteration_does_not (singular values 0.99^i, d = 60) and on a ScaledMatrix
    diag(r) U diag(c) of a Gaussian U (d = 128), 32 Krylov vectors each: within 1e-12 of NumPy's SVD (measured 2.3e-15 and
    2.2e-16) and never above it beyond rounding (1e-14); equal to spectral_lanczos (full reorthogonalisation) to 1e-12
    (measured 6.7e-16).  A diagonal ScaledMatrix (U = None, d = 10) exhausts its Krylov space after 10 steps: beta
    is then rounding noise, not 0, and the recurrence restarts from it, yet the value is max |r c| to 1e-14
    (measured 0); a zero start gives 0."""
    d = 60
    M, v0 = _crowded(d)
    sigma = float(lj.spectral_lanczos_norm(M, v0, 32))
    assert abs(sigma - 1.0) <= 1e-12 and sigma <= 1.0 + 1e-14
    assert abs(sigma - float(lj.spectral_lanczos(M, v0, 32, 1)[0])) <= 1e-12
    k = jax.random.split(jax.random.PRNGKey(22), 4)
    S = lj.ScaledMatrix(jax.random.uniform(k[0], (128,), F64), jax.random.normal(k[1], (128, 128), F64) / 11,
                        jax.random.uniform(k[2], (128,), F64))
    exact = np.linalg.norm(np.asarray(S.dense()), 2)
    got = float(lj.spectral_lanczos_norm(S, jax.random.normal(k[3], (128,), F64), 32))
    assert abs(got / exact - 1) <= 1e-12 and got <= exact * (1 + 1e-14)
    r = jnp.linspace(0.1, 1.0, 10, dtype=F64)
    diag = lj.ScaledMatrix(r, None, 1 - r / 2)
    assert abs(float(lj.spectral_lanczos_norm(diag, jnp.ones(10, F64), 32)) - float(jnp.max(r * (1 - r / 2)))) <= 1e-14
    assert float(lj.spectral_lanczos_norm(M, jnp.zeros(d, F64), 32)) == 0.0


def test_spectral_lanczos_norm_in_float32_for_tiny_and_huge_terms_and_without_a_derivative():
    """float32, a ScaledMatrix whose column scale is 1e-15 or 1e15 (squared in M M^T: below float32's smallest normal
    number, or above its largest): the factors are normalised first, so the norm is the float64 SVD's to 1e-5
    (measured 4.3e-8 and 1.5e-8; float32 rounding); unnormalised, the recurrence returned 0.33 x the norm at 1e-15
    and NaN at 1e15.  The value carries no
    derivative (stop_gradient: zero, not a wrong one); steps < 1 is refused."""
    k = jax.random.split(jax.random.PRNGKey(23), 4)
    r = jax.random.uniform(k[0], (48,), jnp.float32, 0.5, 1.0)
    U = jax.random.normal(k[1], (48, 48), jnp.float32) / 7
    c = jax.random.uniform(k[2], (48,), jnp.float32, 0.5, 1.0)
    v0 = jax.random.normal(k[3], (48,), jnp.float32)
    for scale in (1e-15, 1e15):
        S = lj.ScaledMatrix(r, U, c * scale)
        exact = np.linalg.norm(np.diag(np.asarray(r, float)) @ np.asarray(U, float) @ np.diag(np.asarray(c, float)), 2)
        got = float(lj.spectral_lanczos_norm(S, v0, 32)) / scale
        assert abs(got / exact - 1) <= 1e-5, (scale, got / exact - 1)
    g = jax.grad(lambda t: lj.spectral_lanczos_norm(lj.ScaledMatrix(r, U * t, c), v0, 8))(jnp.float32(1.0))
    assert float(g) == 0.0
    with pytest.raises(ValueError, match="steps"):
        lj.spectral_lanczos_norm(U, v0, 0)


def test_tridiagonal_top_eigenvalue_by_sturm_counts_equals_lapacks():
    """The multisection behind spectral_lanczos_norm against NumPy's eigvalsh (LAPACK) on random symmetric
    tridiagonals: indefinite, with a zero off-diagonal (two decoupled blocks), scaled by 1e-6, and 1 x 1; agreement to
    1e-13 of the matrix's largest |entry| (measured at most 1.3e-15; 55 halvings of the Gershgorin bracket)."""
    from lstm_jax._flow import _tridiagonal_max_eigenvalue

    rng = np.random.default_rng(31)
    cases = [(rng.normal(size=32), rng.normal(size=31)), (rng.normal(size=12), np.r_[rng.normal(size=5), 0.0,
                                                                                      rng.normal(size=5)]),
             (1e-6 * rng.normal(size=20), 1e-6 * rng.normal(size=19)), (np.array([0.7]), np.zeros(0))]
    for a, e in cases:
        ref = np.linalg.eigvalsh(np.diag(a) + np.diag(e, 1) + np.diag(e, -1))[-1]
        got = float(_tridiagonal_max_eigenvalue(jnp.asarray(a, F64), jnp.asarray(e, F64)))
        assert abs(got - ref) <= 1e-13 * max(np.max(np.abs(a)), np.max(np.abs(e), initial=0)), (got, ref)
