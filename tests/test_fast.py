"""Fast batch runners (custom VJP) and matrix-free Lyapunov exponents agree with the exact reference paths.

Claims checked:
* run_lstm_batch / run_rnn_batch values and reverse-mode gradients (all parameters, initial state and inputs)
  equal jax.grad of the reference scan (vmap of run_lstm / run_rnn) to <= 1e-12 in float64 — the custom VJP
  is the exact adjoint, only the summation order of the GEMMs differs;
* in float32 they stay within a stated bound (relative 1e-4 of the gradient's scale, a few hundred ulp of
  accumulated GEMM rounding over T = 30 steps);
* jax.jacfwd through the public run_lstm / run_rnn still works (the custom VJP lives only on the batch runners);
* the matrix-free exponents equal lyapunov() on the dense analytic Jacobians (same q0) to <= 1e-10 in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj

T, B, N, M = 30, 3, 6, 4


def _inputs(dtype):
    k = jax.random.split(jax.random.PRNGKey(7), 4)
    xs = jax.random.normal(k[0], (T, B, M), dtype)
    h0 = 0.5 * jax.random.normal(k[1], (B, N), dtype)
    c0 = jax.random.normal(k[2], (B, N), dtype)
    return xs, h0, c0


def _lstm_ref(p, s0, xs):
    final, traj = jax.vmap(lambda h, c, x: lj.run_lstm(p, lj.LSTMState(h, c), x), in_axes=(0, 0, 1))(s0.h, s0.c, xs)
    return final, jnp.swapaxes(traj.h, 0, 1)


def _lstm_loss(run):
    def loss(p, s0, xs):
        final, hs = run(p, s0, xs)
        # cotangents on every output: the trajectory, h_T and c_T
        return jnp.sum(jnp.sin(hs) * jnp.arange(1, T + 1, dtype=hs.dtype)[:, None, None]) + jnp.sum(final.h ** 2) + 1.3 * jnp.sum(final.c)
    return loss


def _max_diff(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _scale(a):
    return max(float(jnp.max(jnp.abs(u))) for u in jax.tree.leaves(a))


@pytest.mark.parametrize("hoist", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_run_lstm_batch_values_and_gradients_equal_the_reference_scan_float64(hoist, bias):
    xs, h0, c0 = _inputs(jnp.float64)
    p = lj.init_lstm(jax.random.PRNGKey(1), N, M, bias=bias, forget_bias=1.0 if bias else 0.0, dtype=jnp.float64)
    s0 = lj.LSTMState(h0, c0)
    run = lambda p, s, x: lj.run_lstm_batch(p, s, x, hoist=hoist)  # noqa: E731
    assert _max_diff(run(p, s0, xs), _lstm_ref(p, s0, xs)) <= 1e-12
    g_fast = jax.grad(_lstm_loss(run), argnums=(0, 1, 2))(p, s0, xs)
    g_ref = jax.grad(_lstm_loss(_lstm_ref), argnums=(0, 1, 2))(p, s0, xs)
    assert _max_diff(g_fast, g_ref) <= 1e-12 * max(1.0, _scale(g_ref))


def _float32_gradient_error(loss, run, ref, p64, state64, xs64):
    """``(max |g32 - g64|, scale of g64)``: ``jax.grad`` of ``loss(run)`` on float32 copies of the arguments
    against ``loss(ref)`` in float64.  float32 arithmetic also on GPUs, whose default float32 matmul is TF32
    (10-bit mantissa; on an H200 the LSTM test below gave 1.6e-4 of the gradient scale under that default, over
    its bound; docs/guide/benchmarks.md, "Precision on GPU")."""
    f32 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float32), tree)  # noqa: E731
    with jax.default_matmul_precision("float32"):
        g32 = jax.grad(loss(run), argnums=(0, 1, 2))(f32(p64), f32(state64), f32(xs64))
    g64 = jax.grad(loss(ref), argnums=(0, 1, 2))(p64, state64, xs64)
    return _max_diff(jax.tree.map(lambda a: a.astype(jnp.float64), g32), g64), _scale(g64)


def test_run_lstm_batch_float32_gradient_error_is_stated_bound():
    xs, h0, c0 = _inputs(jnp.float64)
    p64 = lj.init_lstm(jax.random.PRNGKey(1), N, M, dtype=jnp.float64)
    err, scale = _float32_gradient_error(_lstm_loss, lj.run_lstm_batch, _lstm_ref, p64, lj.LSTMState(h0, c0), xs)
    # float32 rounding accumulated over T = 30 steps of GEMMs of width <= 4n: bound 1e-4 of the gradient scale
    assert err <= 1e-4 * scale


def test_run_lstm_batch_batch_major_layout_is_the_transposed_time_major_result():
    xs, h0, c0 = _inputs(jnp.float64)
    p = lj.init_lstm(jax.random.PRNGKey(1), N, M, dtype=jnp.float64)
    s0 = lj.LSTMState(h0, c0)
    f1, hs1 = lj.run_lstm_batch(p, s0, xs)
    f2, hs2 = lj.run_lstm_batch(p, s0, jnp.swapaxes(xs, 0, 1), time_major=False)
    assert _max_diff((f1, hs1), (f2, jnp.swapaxes(hs2, 0, 1))) == 0.0


def _gru_ref(p, h0, xs):
    h, hs = jax.vmap(lambda h, x: lj.run_gru(p, h, x), in_axes=(0, 1))(h0, xs)
    return h, jnp.swapaxes(hs, 0, 1)


def _gru_loss(run):  # every output and the final state enter the loss, with non-uniform cotangents
    return lambda p, h0, xs: (lambda o: jnp.sum(jnp.sin(o[1])) + jnp.sum(o[0] ** 2))(run(p, h0, xs))


@pytest.mark.parametrize("bias", [True, False])
def test_run_gru_batch_values_and_gradients_equal_the_reference_scan_float64(bias):
    xs, h0, _ = _inputs(jnp.float64)
    p = lj.init_gru(jax.random.PRNGKey(8), N, M, scale=2.0, bias=bias, dtype=jnp.float64)
    if bias:  # non-zero biases, each its own draw, so a mixed-up bias slot changes the result
        ks = jax.random.split(jax.random.PRNGKey(9), 4)
        p = p._replace(**{b: jax.random.normal(k, (N,), jnp.float64) for b, k in zip(("b_r", "b_z", "b_in", "b_hn"), ks)})
    assert _max_diff(lj.run_gru_batch(p, h0, xs), _gru_ref(p, h0, xs)) <= 1e-12
    g_fast = jax.grad(_gru_loss(lj.run_gru_batch), argnums=(0, 1, 2))(p, h0, xs)
    g_ref = jax.grad(_gru_loss(_gru_ref), argnums=(0, 1, 2))(p, h0, xs)
    assert _max_diff(g_fast, g_ref) <= 1e-12 * max(1.0, _scale(g_ref))


def test_run_gru_batch_float32_gradient_error_is_within_the_stated_bound():
    xs, h0, _ = _inputs(jnp.float64)
    p64 = lj.init_gru(jax.random.PRNGKey(8), N, M, dtype=jnp.float64)
    err, scale = _float32_gradient_error(_gru_loss, lj.run_gru_batch, _gru_ref, p64, h0, xs)
    # the LSTM runner's bound: float32 rounding over T = 30 steps of GEMMs of width <= 3n, 1e-4 of the gradient scale
    assert err <= 1e-4 * scale


@pytest.mark.parametrize("kwargs, exc, fragment", [
    ({"unroll": True}, TypeError, "unroll must be an int in 1..T"),
    ({"unroll": 0}, ValueError, "unroll must be an int in 1..T"),
    ({"unroll": 31}, ValueError, "got 31"),  # T = 30
    ({"hoist": "yes"}, TypeError, "hoist must be a bool"),
])
def test_run_lstm_batch_names_a_bad_unroll_or_hoist_before_any_work(kwargs, exc, fragment):
    xs, h0, c0 = _inputs(jnp.float64)
    p = lj.init_lstm(jax.random.PRNGKey(1), N, M, dtype=jnp.float64)
    with pytest.raises(exc, match=fragment):
        lj.run_lstm_batch(p, lj.LSTMState(h0, c0), xs, **kwargs)


def test_run_gru_batch_rejects_a_batch_that_does_not_match_h0():
    xs, h0, _ = _inputs(jnp.float64)
    p = lj.init_gru(jax.random.PRNGKey(8), N, M, dtype=jnp.float64)
    with pytest.raises(ValueError, match="xs"):
        lj.run_gru_batch(p, h0[:2], xs)


@pytest.mark.parametrize("activation", [lj.SIGMOID, lj.TANH])
def test_run_rnn_batch_values_and_gradients_equal_the_reference_scan_float64(activation):
    xs, _, c0 = _inputs(jnp.float64)
    p = lj.init_rnn(jax.random.PRNGKey(2), N, M, bias=True, dtype=jnp.float64)

    def ref(p, c0, xs):
        c, cs = jax.vmap(lambda c, x: lj.run_rnn(p, c, x, activation), in_axes=(0, 1))(c0, xs)
        return c, jnp.swapaxes(cs, 0, 1)

    def loss(run):
        return lambda p, c0, xs: (lambda o: jnp.sum(jnp.sin(o[1])) + jnp.sum(o[0] ** 2))(run(p, c0, xs))

    fast = lambda p, c0, xs: lj.run_rnn_batch(p, c0, xs, activation)  # noqa: E731
    assert _max_diff(fast(p, c0, xs), ref(p, c0, xs)) <= 1e-12
    g_fast = jax.grad(loss(fast), argnums=(0, 1, 2))(p, c0, xs)
    g_ref = jax.grad(loss(ref), argnums=(0, 1, 2))(p, c0, xs)
    assert _max_diff(g_fast, g_ref) <= 1e-12 * max(1.0, _scale(g_ref))


def test_jacfwd_through_the_public_runners_still_works_and_matches_jacrev():
    xs, h0, c0 = _inputs(jnp.float64)
    p = lj.init_lstm(jax.random.PRNGKey(1), N, M, dtype=jnp.float64)
    flow = lambda h: lj.run_lstm(p, lj.LSTMState(h, c0[0]), xs[:, 0])[0].h  # noqa: E731
    np.testing.assert_allclose(jax.jacfwd(flow)(h0[0]), jax.jacrev(flow)(h0[0]), rtol=0, atol=1e-12)
    pr = lj.init_rnn(jax.random.PRNGKey(2), N, M, dtype=jnp.float64)
    rflow = lambda c: lj.run_rnn(pr, c, xs[:, 0])[0]  # noqa: E731
    np.testing.assert_allclose(jax.jacfwd(rflow)(c0[0]), jax.jacrev(rflow)(c0[0]), rtol=0, atol=1e-12)


def test_bad_batch_shapes_are_named_before_any_work():
    xs, h0, c0 = _inputs(jnp.float64)
    p = lj.init_lstm(jax.random.PRNGKey(1), N, M, dtype=jnp.float64)
    with pytest.raises(ValueError, match="xs"):
        lj.run_lstm_batch(p, lj.LSTMState(h0, c0), xs[:, :2])
    with pytest.raises(ValueError, match="state0.c"):
        lj.run_lstm_batch(p, lj.LSTMState(h0, c0[:2]), xs)
    with pytest.raises(TypeError, match="activation"):  # the names "sigmoid"/"tanh" are accepted, other objects not
        lj.run_rnn_batch(lj.init_rnn(jax.random.PRNGKey(2), N, M), c0, xs, jnp.tanh)
    with pytest.raises(ValueError, match="activation"):
        lj.run_rnn_batch(lj.init_rnn(jax.random.PRNGKey(2), N, M), c0, xs, "relu")


@pytest.mark.parametrize("k", [3, 2 * N])
def test_lstm_matfree_lyapunov_equals_dense_lyapunov_float64(k):
    xs, h0, c0 = _inputs(jnp.float64)
    p = lj.init_lstm(jax.random.PRNGKey(3), N, M, scale=3.0, dtype=jnp.float64)
    s0 = lj.LSTMState(h0[0], c0[0])
    q0 = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(4), (2 * N, k), jnp.float64))[0]
    dense = lj.lyapunov(lj.lstm_step_jacobians(p, s0, xs[:, 0]), k, q0)
    free = lj.lstm_lyapunov_matfree(p, s0, xs[:, 0], k, q0)
    for a, b in zip(free, dense):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("missing", [("b_f",), ("b_i", "b_o"), ("b_f", "b_i", "b_c", "b_o")])
def test_lstm_matfree_lyapunov_treats_each_missing_gate_bias_as_zero(missing):
    xs, h0, c0 = _inputs(jnp.float64)
    p = lj.init_lstm(jax.random.PRNGKey(3), N, M, scale=3.0, dtype=jnp.float64)
    p = p._replace(**{b: None for b in missing})
    s0 = lj.LSTMState(h0[0], c0[0])
    dense = lj.lyapunov(lj.lstm_step_jacobians(p, s0, xs[:, 0]), 3)
    free = lj.lstm_lyapunov_matfree(p, s0, xs[:, 0], 3)
    for a, b in zip(free, dense):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("activation, bias", [(lj.SIGMOID, False), (lj.TANH, False), (lj.TANH, True)])
def test_rnn_matfree_lyapunov_equals_dense_lyapunov_float64(activation, bias):
    xs, _, c0 = _inputs(jnp.float64)
    p = lj.init_rnn(jax.random.PRNGKey(5), N, M, scale=2.0, bias=bias, dtype=jnp.float64)
    if bias:  # a bias large enough to move the operating point
        p = p._replace(b=jax.random.normal(jax.random.PRNGKey(6), (N,), jnp.float64))
    dense = lj.lyapunov(lj.rnn_step_jacobians(p, c0[0], xs[:, 0], activation), 4)
    free = lj.rnn_lyapunov_matfree(p, c0[0], xs[:, 0], activation, 4)
    for a, b in zip(free, dense):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


def test_matfree_checks_k_and_q0_exactly_as_lyapunov_does():
    xs, h0, c0 = _inputs(jnp.float64)
    p = lj.init_lstm(jax.random.PRNGKey(3), N, M, dtype=jnp.float64)
    s0 = lj.LSTMState(h0[0], c0[0])
    jacs = lj.lstm_step_jacobians(p, s0, xs[:, 0])
    for k, q0 in ((13, None), (2, jnp.zeros((2 * N, 2))), (2, jnp.ones((2 * N, 2)))):  # too many, zero, rank 1
        with pytest.raises(ValueError) as dense:
            lj.lyapunov(jacs, k, q0)
        with pytest.raises(ValueError) as free:
            lj.lstm_lyapunov_matfree(p, s0, xs[:, 0], k, q0)
        assert str(free.value) == str(dense.value)
    # a non-orthonormal q0 is orthonormalised by both, so the exponents agree
    q0 = jax.random.normal(jax.random.PRNGKey(5), (2 * N, 3), jnp.float64)
    np.testing.assert_allclose(lj.lstm_lyapunov_matfree(p, s0, xs[:, 0], 3, q0).exponents,
                               lj.lyapunov(jacs, 3, q0).exponents, rtol=1e-10)


def test_lstm_matfree_flow_norms_equal_dense_gradient_flow_norms_float64():
    xs, h0, c0 = _inputs(jnp.float64)
    p = lj.init_lstm(jax.random.PRNGKey(3), N, M, scale=3.0, dtype=jnp.float64)
    s0 = lj.LSTMState(h0[0], c0[0])
    dense = lj.gradient_flow_norms(lj.lstm_step_jacobians(p, s0, xs[:, 0]))
    free = lj.lstm_flow_norms_matfree(p, s0, xs[:, 0])  # k = 2n: exact norms
    np.testing.assert_array_equal(free.lag, dense.lag)
    np.testing.assert_allclose(free.spectral, dense.spectral, rtol=1e-10)
    np.testing.assert_allclose(free.frobenius, dense.frobenius, rtol=1e-10)
    # k < 2n: the norms of q0^T P, a lower bound, equal to the dense product restricted to the same directions
    q0 = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(4), (2 * N, 3), jnp.float64))[0]
    part = lj.lstm_flow_norms_matfree(p, s0, xs[:, 0], 3, q0)
    S = lj.suffix_products(lj.lstm_step_jacobians(p, s0, xs[:, 0]))
    np.testing.assert_allclose(part.log_spectral, jnp.log(jnp.linalg.norm(jnp.swapaxes(S, 1, 2) @ q0, ord=2, axis=(1, 2))), atol=1e-10)


@pytest.mark.parametrize("activation", [lj.SIGMOID, lj.TANH])
def test_rnn_matfree_flow_norms_equal_dense_gradient_flow_norms_float64(activation):
    xs, _, c0 = _inputs(jnp.float64)
    p = lj.init_rnn(jax.random.PRNGKey(5), N, M, scale=2.0, dtype=jnp.float64)
    dense = lj.gradient_flow_norms(lj.rnn_step_jacobians(p, c0[0], xs[:, 0], activation))
    free = lj.rnn_flow_norms_matfree(p, c0[0], xs[:, 0], activation)
    np.testing.assert_allclose(free.spectral, dense.spectral, rtol=1e-10)
    np.testing.assert_allclose(free.frobenius, dense.frobenius, rtol=1e-10)
