"""Gradient-flow diagnostics: suffix products, norms vs lag, log-space (QR) Lyapunov exponents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
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

    from lstm_jax import _cli

    assert _cli.main(["flow", "--T", "30", "--n", "4", "--m", "2", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "flow.json").read_text())
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
