"""Parallel-in-time Newton / quasi-Newton evaluation: equal to the sequential scan, exact gradients, fall-back.

Tolerances: float64 trajectories 1e-10 relative (the iteration stops at a residual of 16 eps (1 + max|s|)
~ 4e-15 and these test recurrences are contracting or only mildly expanding); float32 1e-5 relative
(16 eps32 = 2e-6 residual, amplified at most ~10x along the sequence in these cases).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lstm_jax as lj
from _reference import check_close

F64 = jnp.float64
MODES = [lj.DENSE, lj.DIAGONAL]
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)


def test_associative_scan_solver_equals_a_python_loop():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    T, d = 37, 5
    A = 0.6 * jax.random.normal(k[0], (T, d, d), F64)
    b = jax.random.normal(k[1], (T, d), F64)
    s0 = jax.random.normal(k[2], (d,), F64)
    for mode, A_m in ((lj.DENSE, A), (lj.DIAGONAL, jnp.diagonal(A, axis1=1, axis2=2))):
        s, ref = np.asarray(s0), []
        for t in range(T):
            s = (np.asarray(A_m[t]) @ s if mode is lj.DENSE else np.asarray(A_m[t]) * s) + np.asarray(b[t])
            ref.append(s)
        check_close(lj.solve_linear_recurrence(A_m, b, s0, mode), np.stack(ref), 1e-12,
                    f"associative-scan linear recurrence ({mode.name}) vs loop")


def _lstm_case(seed, n, m, T, scale, dtype=F64):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    p = lj.init_lstm(k[0], n, m, scale=scale, dtype=dtype)
    p = p._replace(b_i=0.3 * jax.random.normal(k[1], (n,), dtype))
    s0 = lj.LSTMState(0.5 * jnp.tanh(jax.random.normal(k[2], (n,), dtype)), jax.random.normal(k[3], (n,), dtype))
    xs = jax.random.normal(k[3], (T, m), dtype)
    return p, s0, xs


# Few distinct shapes so that the jitted solvers compile once per shape; values vary freely.
sizes = st.sampled_from([1, 3, 16])
lengths = st.sampled_from([1, 2, 17, 150])


def _cap(mode, T):
    """Newton converges in a handful of iterations; quasi-Newton needs more, and T always suffices (module doc)."""
    return None if mode is lj.DENSE else T


_par_lstm = jax.jit(lj.parallel_run_lstm, static_argnames=("mode", "max_iter"))
_par_rnn = jax.jit(lj.parallel_run_rnn, static_argnums=3, static_argnames=("mode", "max_iter"))


@SETTINGS
@given(n=sizes, T=lengths, seed=st.integers(0, 2**30), scale=st.floats(0.1, 1.5), mode=st.sampled_from(MODES))
def test_parallel_lstm_trajectory_equals_sequential_scan_float64(n, T, seed, scale, mode):
    p, s0, xs = _lstm_case(seed, n, 3, T, scale)
    traj, info = _par_lstm(p, s0, xs, mode=mode, max_iter=_cap(mode, T))
    ref = lj.run_lstm(p, s0, xs)[1]
    check_close(jnp.concatenate([traj.h, traj.c], 1), jnp.concatenate([ref.h, ref.c], 1), 1e-10,
                f"parallel LSTM ({mode.name}) vs sequential scan, float64")
    assert bool(info.converged) and not bool(info.fell_back)


@SETTINGS
@given(n=sizes, T=lengths, seed=st.integers(0, 2**30), scale=st.floats(0.1, 1.5),
       act=st.sampled_from([lj.SIGMOID, lj.TANH]), mode=st.sampled_from(MODES))
def test_parallel_rnn_trajectory_equals_sequential_scan_float64(n, T, seed, scale, act, mode):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    p = lj.init_rnn(k[0], n, 3, scale=scale, dtype=F64)
    c0 = jax.random.normal(k[1], (n,), F64)
    xs = jax.random.normal(k[2], (T, 3), F64)
    cs, info = _par_rnn(p, c0, xs, act, mode=mode, max_iter=_cap(mode, T))
    check_close(cs, lj.run_rnn(p, c0, xs, act)[1], 1e-10, f"parallel RNN ({mode.name}) vs sequential scan, float64")
    assert bool(info.converged)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_parallel_lstm_float32_within_1e5(mode):
    p, s0, xs = _lstm_case(3, 16, 8, 1000, 1.0, jnp.float32)
    traj, info = lj.parallel_run_lstm(p, s0, xs, mode=mode)
    ref = lj.run_lstm(p, s0, xs)[1]
    assert traj.h.dtype == jnp.float32
    check_close(jnp.concatenate([traj.h, traj.c], 1), jnp.concatenate([ref.h, ref.c], 1), 1e-5,
                f"parallel LSTM ({mode.name}) vs sequential scan, float32")
    assert bool(info.converged)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_gradients_through_custom_vjp_equal_sequential_gradients(mode):
    p, s0, xs = _lstm_case(4, 6, 3, 60, 1.2)

    def loss(run, params, state, inputs):
        traj = run(params, state, inputs)
        return jnp.sum(jnp.sin(traj.h)) + jnp.sum(traj.c[-1] ** 2)

    seq = lambda q, s, x: lj.run_lstm(q, s, x)[1]  # noqa: E731
    par = lambda q, s, x: lj.parallel_run_lstm(q, s, x, mode=mode)[0]  # noqa: E731
    g_ref = jax.grad(loss, argnums=(1, 2, 3))(seq, p, s0, xs)
    g = jax.jit(jax.grad(loss, argnums=(1, 2, 3)), static_argnums=0)(par, p, s0, xs)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
        check_close(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1), 1e-10,
                    f"parallel LSTM ({mode.name}) gradient vs jax.grad of the scan")
    pr = lj.init_rnn(jax.random.PRNGKey(5), 7, 3, scale=1.5, bias=True, dtype=F64)
    c0 = jnp.full((7,), 0.2, F64)
    rl = lambda q, c, x, run: jnp.sum(run(q, c, x) ** 3)  # noqa: E731
    g_ref = jax.grad(rl, argnums=(0, 1, 2))(pr, c0, xs, lambda q, c, x: lj.run_rnn(q, c, x, lj.TANH)[1])
    g = jax.grad(rl, argnums=(0, 1, 2))(pr, c0, xs, lambda q, c, x: lj.parallel_run_rnn(q, c, x, lj.TANH, mode=mode)[0])
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
        check_close(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1), 1e-10,
                    f"parallel RNN ({mode.name}) gradient vs jax.grad of the scan")


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_non_convergence_warns_flags_and_falls_back_to_the_exact_sequential_result(mode):
    """A chaotic tanh RNN (gain 3) with a 5-iteration cap: never a silent wrong answer."""
    p = lj.init_rnn(jax.random.PRNGKey(0), 16, 4, scale=3.0, dtype=F64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (400, 4), F64)
    c0 = jnp.zeros(16, F64)
    with pytest.warns(RuntimeWarning, match="fell back to the sequential scan"):
        cs, info = lj.parallel_run_rnn(p, c0, xs, lj.TANH, mode=mode, max_iter=5)
        jax.block_until_ready(cs)
    assert bool(info.fell_back) and not bool(info.converged) and int(info.iterations) == 5
    np.testing.assert_array_equal(cs, jax.jit(lj.run_rnn, static_argnums=3)(p, c0, xs, lj.TANH)[1])


def test_chaotic_dynamics_end_converged_or_fallen_back_never_wrong():
    """Chaotic tanh RNN (gain 3), T = 40, cap T: either converged or sequential; equal to the scan either way."""
    p = lj.init_rnn(jax.random.PRNGKey(2), 16, 4, scale=3.0, dtype=F64)
    xs = jax.random.normal(jax.random.PRNGKey(3), (40, 4), F64)
    for mode in MODES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cs, info = lj.parallel_run_rnn(p, jnp.zeros(16, F64), xs, lj.TANH, mode=mode, max_iter=40)
        assert bool(info.converged) != bool(info.fell_back)
        check_close(cs, lj.run_rnn(p, jnp.zeros(16, F64), xs, lj.TANH)[1], 1e-10, "parallel RNN, chaotic, cap T")


def test_damping_keeps_the_residual_bounded_where_newton_overshoots():
    """LSTM with weights x8 over T = 2000: Newton steps get rejected (Picard instead); nothing overflows."""
    p = lj.init_lstm(jax.random.PRNGKey(2), 16, 4, scale=8.0, dtype=F64)
    xs = jax.random.normal(jax.random.PRNGKey(3), (2000, 4), F64)
    s0 = lj.zero_state(16, F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        traj, info = lj.parallel_run_lstm(p, s0, xs, max_iter=30)
    assert int(info.damped_steps) > 0
    assert np.isfinite(float(info.residual)) and float(info.residual) < 100
    assert bool(info.fell_back)
    check_close(traj.c, lj.run_lstm(p, s0, xs)[1].c, 1e-10, "parallel LSTM, overshooting, fell back")


def test_vmap_over_a_batch_equals_per_example_runs():
    p, _, _ = _lstm_case(6, 5, 3, 10, 1.0)
    xs = jax.random.normal(jax.random.PRNGKey(7), (4, 30, 3), F64)
    s0 = lj.LSTMState(jnp.zeros((4, 5), F64), jax.random.normal(jax.random.PRNGKey(8), (4, 5), F64))
    traj, info = jax.vmap(lambda s, x: lj.parallel_run_lstm(p, s, x), in_axes=(0, 0))(s0, xs)
    ref = jax.vmap(lambda s, x: lj.run_lstm(p, s, x)[1])(s0, xs)
    assert info.iterations.shape == (4,)
    check_close(traj.h, ref.h, 1e-10, "parallel LSTM under vmap vs sequential")


def test_bad_arguments_are_rejected():
    p, s0, xs = _lstm_case(0, 4, 3, 10, 1.0)
    with pytest.raises(ValueError, match=r"max_iter must be an int in 1\.\.2147483647; got 0"):
        lj.parallel_run_lstm(p, s0, xs, max_iter=0)
    with pytest.raises(ValueError, match=r"xs has shape \(10, 2\)"):
        lj.parallel_run_lstm(p, s0, xs[:, :2])
    with pytest.raises(ValueError, match=r"A has shape \(10, 3\) \(rank 2\) but a rank-3 array of shape \(10, 3, 3\)"):
        lj.solve_linear_recurrence(jnp.ones((10, 3)), jnp.ones((10, 3)), jnp.zeros(3), lj.DENSE)


def test_converged_runs_issue_no_warning():
    p, s0, xs = _lstm_case(1, 4, 3, 50, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        traj, _ = lj.parallel_run_lstm(p, s0, xs)
        jax.block_until_ready(traj)
