"""The GRU (PyTorch convention): exact step Jacobian and its four terms vs autodiff, runner vs torch.nn.GRU.

Tolerances: float64 analytic vs autodiff 1e-12 absolute on entries of order 1 (the same sums in another
order; eps64 = 2.2e-16 times a few dozen operations); trajectories vs torch float32 1e-5 (eps32 = 1.2e-7
over T = 12 steps), float64 1e-12; Jacobians vs torch.autograd float64 1e-10 (the issue's bound).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lstm_jax as lj

SHAPES = [(1, 1), (4, 3), (7, 2)]


def _params(key, n, m, scale=1.5):
    ks = jax.random.split(key, 5)
    p = lj.init_gru(ks[0], n, m, scale=scale, dtype=jnp.float64)
    b = [0.7 * jax.random.normal(k, (n,), jnp.float64) for k in ks[1:]]
    return p._replace(b_r=b[0], b_z=b[1], b_in=b[2], b_hn=b[3])


def _point(seed, n, m):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    return _params(k1, n, m), jax.random.normal(k2, (n,), jnp.float64), jax.random.normal(k3, (m,), jnp.float64)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(SHAPES))
def test_gru_step_jacobian_equals_jacfwd_and_jacrev(seed, shape):
    J, fwd, rev = _jacobians(*_point(seed, *shape))
    np.testing.assert_allclose(J, fwd, rtol=0, atol=1e-12)
    np.testing.assert_allclose(J, rev, rtol=0, atol=1e-12)


@jax.jit  # one compilation per shape: the hypothesis draws then cost microseconds
def _jacobians(p, h, x):
    step = lambda h_: lj.gru_step(p, h_, x)  # noqa: E731
    return lj.gru_step_jacobian(p, h, x), jax.jacfwd(step)(h), jax.jacrev(step)(h)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(SHAPES))
def test_each_gru_term_is_the_derivative_along_its_own_path(seed, shape):
    """B, Z, R, N: derivatives of h_t through h_{t-1} directly, through z, through r, through U_n h (others frozen)."""
    terms, paths, J = _term_checks(*_point(seed, *shape))
    for name in "BZRN":
        np.testing.assert_allclose(getattr(terms, name), paths[name], rtol=0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(terms.total(), J, rtol=0, atol=1e-14)


@jax.jit
def _term_checks(p, h0, x):
    g0 = lj.gru_gates(p, h0, x)
    a_n_rest = g0.a_n - g0.r * g0.q  # V_n x + b_in

    def out(z, n, h):
        return (1 - z) * n + z * h

    paths = {
        "B": lambda h: out(g0.z, g0.n, h),
        "Z": lambda h: out(lj.gru_gates(p, h, x).z, g0.n, h0),
        "R": lambda h: out(g0.z, jnp.tanh(a_n_rest + lj.gru_gates(p, h, x).r * g0.q), h0),
        "N": lambda h: out(g0.z, jnp.tanh(a_n_rest + g0.r * lj.gru_gates(p, h, x).q), h0),
    }
    return lj.gru_terms(p, h0, x), {k: jax.jacfwd(f)(h0) for k, f in paths.items()}, lj.gru_step_jacobian(p, h0, x)


def test_gru_jacobians_along_a_sequence_multiply_to_the_flow_jacobian():
    p, h0, _ = _point(3, 4, 3)
    xs = jax.random.normal(jax.random.PRNGKey(4), (12, 3), jnp.float64)
    J = lj.gru_step_jacobians(p, h0, xs)
    flow = jax.jacfwd(lj.gru_flow_map(p, xs))(h0)
    np.testing.assert_allclose(lj.jacobian_products(J)[-1], flow, rtol=0, atol=1e-12)
    terms = lj.gru_terms_along(p, h0, xs)
    np.testing.assert_allclose(terms.total(), J, rtol=0, atol=1e-14)
    np.testing.assert_allclose(jnp.diagonal(terms.B, axis1=1, axis2=2), jax.vmap(
        lambda h, x: lj.gru_gates(p, h, x).z)(jnp.concatenate([h0[None], lj.run_gru(p, h0, xs)[1][:-1]]), xs),
        rtol=0, atol=0)
    scaled = lj.gru_terms_along(p, h0, xs, scaled=True)  # in factors: row / col (12, 4), U shared, B's U None
    assert scaled.B.U is None and scaled.Z.U.shape == (4, 4) and scaled.Z.row.shape == (12, 4)
    for name in "BZRN":  # each dense term (checked per term against autodiff in test_gru_terms_...) in factors
        np.testing.assert_allclose(getattr(scaled, name).dense(), getattr(terms, name), rtol=0, atol=1e-15)
    np.testing.assert_allclose(scaled.total(), J, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype,atol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_run_gru_equals_torch_gru(dtype, atol):
    torch = pytest.importorskip("torch")
    import lstm_jax.io as lio

    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4).to(getattr(torch, np.dtype(dtype).name))
    xs = np.array(jax.random.normal(jax.random.PRNGKey(1), (12, 3)), dtype)
    h0 = np.array(0.5 * jax.random.normal(jax.random.PRNGKey(2), (4,)), dtype)
    with torch.no_grad():
        out, hT = gru(torch.from_numpy(xs), torch.from_numpy(h0)[None])
    p = lio.from_torch(gru)
    assert isinstance(p, lj.GRUParams)
    h_T, hs = lj.run_gru(p, jnp.asarray(h0), jnp.asarray(xs))
    assert hs.dtype == dtype
    np.testing.assert_allclose(hs, out.numpy(), rtol=0, atol=atol)
    np.testing.assert_allclose(h_T, hT[0].numpy(), rtol=0, atol=atol)


def test_gru_step_jacobian_equals_torch_autograd():
    torch = pytest.importorskip("torch")
    import lstm_jax.io as lio

    torch.manual_seed(1)
    cell = torch.nn.GRUCell(3, 5).double()
    h = torch.randn(5, dtype=torch.float64)
    x = torch.randn(3, dtype=torch.float64)
    J_torch = torch.autograd.functional.jacobian(lambda h_: cell(x[None], h_[None])[0], h).numpy()
    J = lj.gru_step_jacobian(lio.from_torch(cell), jnp.asarray(h.numpy()), jnp.asarray(x.numpy()))
    np.testing.assert_allclose(J, J_torch, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_padded_steps_keep_the_state_and_output_zeros_like_per_sequence_runs(kind):
    """seq_lengths: each sequence of a padded batch equals its own unpadded run; padding outputs 0, identity Jacobian."""
    n, m, T = 4, 3, 9
    key = jax.random.PRNGKey(7)
    xs = jax.random.normal(key, (4, T, m), jnp.float64)
    lengths = jnp.array([T, 5, 1, 0])
    if kind == "lstm":
        p = lj.init_lstm(key, n, m, dtype=jnp.float64)
        s0 = lj.LSTMState(jnp.full((n,), 0.2), jnp.full((n,), -0.3))
        run = lambda x, L=None: lj.run_lstm(p, s0, x, seq_lengths=L)  # noqa: E731
        vec = lambda s: jnp.concatenate([s.h, s.c], -1)  # noqa: E731
    elif kind == "gru":
        p = _params(key, n, m)
        s0 = jnp.full((n,), 0.2)
        run = lambda x, L=None: lj.run_gru(p, s0, x, seq_lengths=L)  # noqa: E731
        vec = lambda s: s  # noqa: E731
    else:
        p = lj.init_rnn(key, n, m, bias=True, dtype=jnp.float64)
        s0 = jnp.full((n,), 0.2)
        run = lambda x, L=None: lj.run_rnn(p, s0, x, lj.TANH, seq_lengths=L)  # noqa: E731
        vec = lambda s: s  # noqa: E731
    finals, trajs = jax.jit(jax.vmap(run))(xs, lengths)
    for b, L in enumerate(np.asarray(lengths)):
        final_b, traj_b = jax.tree_util.tree_map(lambda a: a[b], (finals, trajs))
        if L:
            ref_final, ref_traj = jax.jit(run)(xs[b, :L])
            np.testing.assert_allclose(vec(final_b), vec(ref_final), rtol=0, atol=1e-15)
            np.testing.assert_allclose(vec(traj_b)[:L], vec(ref_traj), rtol=0, atol=1e-15)
        else:
            np.testing.assert_array_equal(vec(final_b), vec(s0))
        np.testing.assert_array_equal(vec(traj_b)[L:], 0.0)
    # the Jacobian of a padded step is the identity: d final / d s0 equals the unpadded run's
    if kind == "gru":
        J_pad = jax.jacfwd(lambda h: lj.run_gru(p, h, xs[1], seq_lengths=5)[0])(s0)
        J_ref = jax.jacfwd(lambda h: lj.run_gru(p, h, xs[1, :5])[0])(s0)
        np.testing.assert_allclose(J_pad, J_ref, rtol=0, atol=1e-15)
        masked = lj.mask_padded_jacobians(lj.gru_step_jacobians(p, s0, xs[1]), 5)
        np.testing.assert_allclose(lj.jacobian_products(masked)[-1], J_ref, rtol=0, atol=1e-12)


def test_bad_gru_and_length_arguments_are_named():
    p = lj.init_gru(jax.random.PRNGKey(0), 4, 3)
    with pytest.raises(ValueError, match="seq_lengths must be in 0..T = 0..5, got 6"):
        lj.run_gru(p, jnp.zeros(4), jnp.zeros((5, 3)), seq_lengths=6)
    with pytest.raises(TypeError, match="seq_lengths must be an integer scalar"):
        lj.run_gru(p, jnp.zeros(4), jnp.zeros((5, 3)), seq_lengths=2.5)
    with pytest.raises(ValueError, match=r"params.W_z"):
        lj.gru_step(p._replace(W_z=jnp.zeros((4, 6))), jnp.zeros(4), jnp.zeros(3))
    with pytest.raises(ValueError, match="h0"):
        lj.run_gru(p, jnp.zeros(5), jnp.zeros((5, 3)))


def test_seq_lengths_with_segment_checkpointing_and_no_gradient_into_padding():
    """remat=k (nested scans) carries the step counter too; inputs past L get exactly zero gradient."""
    p = lj.init_lstm(jax.random.PRNGKey(0), 4, 3, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (11, 3), jnp.float64)
    s0 = lj.zero_state(4, jnp.float64)
    a = jax.jit(lambda x: lj.run_lstm(p, s0, x, seq_lengths=7, remat=3))(xs)
    b = jax.jit(lambda x: lj.run_lstm(p, s0, x))(xs[:7])
    np.testing.assert_allclose(a[0].h, b[0].h, rtol=0, atol=1e-15)
    np.testing.assert_allclose(a[1].c[:7], b[1].c, rtol=0, atol=1e-15)
    g = jax.jit(jax.grad(lambda x: lj.run_lstm(p, s0, x, seq_lengths=7, remat=3)[0].h.sum()))(xs)
    np.testing.assert_array_equal(g[7:], 0.0)
    assert np.all(np.abs(g[:7]).sum(-1) > 0)
