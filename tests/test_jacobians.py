"""Every analytic Jacobian formula against jax.jacfwd and jax.jacrev (float64).

The autodiff references differentiate the library's own scan runners
(``rnn_flow_map`` / ``lstm_flow_map`` / ``article_cell_map``), never a
hand-unrolled copy.  Tolerances: see ``_reference.py`` (RTOL64 = 1e-10
relative, RTOL32 = 1e-4 relative).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lstm_jax as lj
from _reference import RTOL32, RTOL64, check_close, rel_err

F64 = jnp.float64
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)

sizes_n = st.integers(1, 32)
sizes_m = st.integers(1, 16)
seeds = st.integers(0, 2**31 - 1)
scales = st.floats(0.1, 3.0)
activations = st.sampled_from([lj.SIGMOID, lj.TANH])


def _normal(key, shape, dtype=F64):
    return jax.random.normal(key, shape, dtype)


def _lstm_setup(seed, n, m, scale, bias, T=1, dtype=F64):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    p = lj.init_lstm(k[0], n, m, scale=scale, bias=bias, forget_bias=1.0 if bias else 0.0, dtype=dtype)
    if bias:  # non-trivial biases on every gate
        p = p._replace(**{b: getattr(p, b) + 0.5 * _normal(kk, (n,), dtype)
                          for b, kk in zip(("b_f", "b_i", "b_c", "b_o"), jax.random.split(k[1], 4))})
    s = lj.LSTMState(jnp.tanh(_normal(k[2], (n,), dtype)), 2.0 * _normal(k[3], (n,), dtype))
    xs = _normal(k[4], (T, m), dtype)
    return p, s, xs


# ----------------------------------------------------------------------------- RNN


@partial(jax.jit, static_argnums=3)
def _rnn_all(p, c0, xs, act):
    """(analytic step-1 Jacobian, analytic prefix products, jacfwd and jacrev of c0 -> (c_1..c_T))."""
    states = lambda c: lj.run_rnn(p, c, xs, act)[1]  # noqa: E731  (the library's scan)
    J1 = lj.rnn_step_jacobian(p, c0, xs[0], act)
    P = lj.jacobian_products(lj.rnn_step_jacobians(p, c0, xs, act))
    return J1, P, jax.jacfwd(states)(c0), jax.jacrev(states)(c0)


@SETTINGS
@given(n=sizes_n, m=sizes_m, seed=seeds, scale=scales, act=activations, bias=st.booleans(), T=st.integers(1, 10))
def test_rnn_eq2_step_jacobian_and_its_products_equal_jacfwd_and_jacrev_of_scan(n, m, seed, scale, act, bias, T):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    p = lj.init_rnn(k[0], n, m, scale=scale, bias=bias, dtype=F64)
    if bias:
        p = p._replace(b=_normal(k[0], (n,)))
    c0 = _normal(k[1], (n,))
    xs = _normal(k[2], (T, m))
    J1, P, fwd, rev = _rnn_all(p, c0, xs, act)
    check_close(J1, fwd[0], RTOL64, f"eq. 2 step Jacobian ({act.name}) vs jacfwd")
    check_close(J1, rev[0], RTOL64, f"eq. 2 step Jacobian ({act.name}) vs jacrev")
    for t in range(T):  # P[t] = dc_{t+1}/dc_0, every prefix of the chain
        check_close(P[t], fwd[t], RTOL64, "RNN k-step product vs jacfwd of scan")
        check_close(P[t], rev[t], RTOL64, "RNN k-step product vs jacrev of scan")


def test_rnn_step_jacobians_vectorised_equal_per_step_calls():
    p = lj.init_rnn(jax.random.PRNGKey(0), 6, 3, scale=1.5, dtype=F64)
    c0 = _normal(jax.random.PRNGKey(1), (6,))
    xs = _normal(jax.random.PRNGKey(2), (7, 3))
    Js = lj.rnn_step_jacobians(p, c0, xs, lj.TANH)
    _, cs = lj.run_rnn(p, c0, xs, lj.TANH)
    prev = np.concatenate([np.asarray(c0)[None], np.asarray(cs)[:-1]])
    for t in range(7):
        assert rel_err(Js[t], lj.rnn_step_jacobian(p, prev[t], xs[t], lj.TANH)) < RTOL64


# ----------------------------------------------------------------------------- LSTM joint


@jax.jit
def _lstm_all(p, s, xs):
    """(analytic joint step-1 Jacobian, prefix products, jacfwd and jacrev of s0 -> (s_1..s_T))."""
    n = s.h.shape[0]

    def states(s0):  # the library's scan, flattened to [h_t; c_t] for t = 1..T
        traj = lj.run_lstm(p, lj.LSTMState(s0[:n], s0[n:]), xs)[1]
        return jnp.concatenate([traj.h, traj.c], axis=1)

    s0 = jnp.concatenate([s.h, s.c])
    J1 = lj.lstm_step_jacobian(p, s, xs[0])
    P = lj.jacobian_products(lj.lstm_step_jacobians(p, s, xs))
    return J1, P, jax.jacfwd(states)(s0), jax.jacrev(states)(s0)


def _assert_blocks_close(got, want, what):
    for name, got_block, want_block in zip(lj.JointBlocks._fields, lj.split_joint(got), lj.split_joint(want)):
        label = f"LSTM joint {what}, block {name}"
        check_close(got_block, want_block, RTOL64, label)


@SETTINGS
@given(n=sizes_n, m=sizes_m, seed=seeds, scale=scales, bias=st.booleans(), T=st.integers(1, 10))
def test_lstm_joint_jacobian_and_its_products_equal_jacfwd_and_jacrev_of_scan_blockwise(n, m, seed, scale, bias, T):
    p, s, xs = _lstm_setup(seed, n, m, scale, bias, T=T)
    J1, P, fwd, rev = _lstm_all(p, s, xs)
    _assert_blocks_close(J1, fwd[0], "step Jacobian vs jacfwd")
    _assert_blocks_close(J1, rev[0], "step Jacobian vs jacrev")
    for t in range(T):
        _assert_blocks_close(P[t], fwd[t], "k-step product vs jacfwd of scan")
        _assert_blocks_close(P[t], rev[t], "k-step product vs jacrev of scan")


# ----------------------------------------------------------------------------- eq. 6 terms


def _gate_autodiff_terms(p, o_prev, c_prev, x, jac):
    """A..D from autodiff of each gate as a function of c_{t-1} (h_{t-1} = o_{t-1} tanh(c_{t-1}))."""
    def gate(name):
        return lambda c: getattr(lj.lstm_gates(p, o_prev * jnp.tanh(c), x), name)

    g = lj.lstm_gates(p, o_prev * jnp.tanh(c_prev), x)
    A = c_prev[:, None] * jac(gate("f"))(c_prev)
    B = jnp.diag(g.f)
    C = g.c_tilde[:, None] * jac(gate("i"))(c_prev)
    D = g.i[:, None] * jac(gate("c_tilde"))(c_prev)
    return lj.LSTMTerms(A, B, C, D)


@jax.jit
def _terms_all(p, o_prev, c_prev, x):
    cell = lj.article_cell_map(p, o_prev, x)
    return (
        lj.article_terms(p, o_prev, c_prev, x),
        _gate_autodiff_terms(p, o_prev, c_prev, x, jax.jacfwd),
        _gate_autodiff_terms(p, o_prev, c_prev, x, jax.jacrev),
        jax.jacfwd(cell)(c_prev),
        jax.jacrev(cell)(c_prev),
    )


@SETTINGS
@given(n=sizes_n, m=sizes_m, seed=seeds, scale=scales, bias=st.booleans())
def test_corrected_eq6_terms_each_equal_autodiff_and_sum_to_dct_dct1(n, m, seed, scale, bias):
    p, s, xs = _lstm_setup(seed, n, m, scale, bias)
    o_prev = jax.nn.sigmoid(s.h * 3.0)
    terms, ref_fwd, ref_rev, cell_fwd, cell_rev = _terms_all(p, o_prev, s.c, xs[0])
    for ref in (ref_fwd, ref_rev):
        for name, got, want in zip("ABCD", terms, ref):
            check_close(got, want, RTOL64, f"eq. 6 corrected {name}_t vs autodiff")
    check_close(terms.total(), cell_fwd, RTOL64, "eq. 6 corrected A+B+C+D vs jacfwd")
    check_close(terms.total(), cell_rev, RTOL64, "eq. 6 corrected A+B+C+D vs jacrev")


PUBLISHED_SEEDS = [0, 1, 2, 3]


@pytest.mark.parametrize("seed", PUBLISHED_SEEDS)
def test_published_eq6_terms_A_C_D_disagree_with_autodiff_B_agrees(seed):
    """As published, A, C, D are not the derivative (n = 8): measured relative errors >= 5 %."""
    p, s, xs = _lstm_setup(seed, 8, 4, 1.0, True)
    o_prev = jax.nn.sigmoid(s.h * 3.0)
    pub = lj.article_terms_published(p, o_prev, s.c, xs[0])
    ref = _gate_autodiff_terms(p, o_prev, s.c, xs[0], jax.jacfwd)
    assert rel_err(pub.B, ref.B) < RTOL64
    for name in "ACD":
        assert rel_err(getattr(pub, name), getattr(ref, name)) > 0.05, name
    exact = jax.jacfwd(lj.article_cell_map(p, o_prev, xs[0]))(s.c)
    assert rel_err(pub.total(), exact) > 1e-3


@pytest.mark.parametrize("seed", PUBLISHED_SEEDS)
def test_published_terms_are_exactly_similarity_transforms_of_the_corrected_ones(seed):
    """The only errors are the side of the diagonal factor and D's sigma' (identity checked to RTOL64).

    A = diag(c) A_pub diag(c)^-1, C = diag(c~) C_pub diag(c~)^-1,
    D = diag(i tanh'(z_c) / sigma'(z_c)) D_pub diag(i)^-1.
    """
    p, s, xs = _lstm_setup(seed, 8, 4, 1.0, True)
    o_prev = jax.nn.sigmoid(s.h * 3.0)
    x = xs[0]
    pub = lj.article_terms_published(p, o_prev, s.c, x)
    cor = lj.article_terms(p, o_prev, s.c, x)
    g = lj.lstm_gates(p, o_prev * jnp.tanh(s.c), x)
    sim = lambda M, left, right: left[:, None] * M / right[None, :]  # noqa: E731
    assert rel_err(sim(pub.A, s.c, s.c), cor.A) < RTOL64
    assert rel_err(sim(pub.C, g.c_tilde, g.c_tilde), cor.C) < RTOL64
    ratio = lj.TANH.deriv(g.z_c) / lj.SIGMOID.deriv(g.z_c)
    assert rel_err(sim(pub.D, g.i * ratio, g.i), cor.D) < RTOL64


@pytest.mark.parametrize("seed", PUBLISHED_SEEDS)
def test_published_A_and_C_are_exact_for_a_single_unit_but_D_is_not(seed):
    """n = 1: diagonal factors commute, so only D's sigma'-for-tanh' error remains."""
    p, s, xs = _lstm_setup(seed, 1, 3, 1.0, True)
    o_prev = jax.nn.sigmoid(s.h * 3.0)
    pub = lj.article_terms_published(p, o_prev, s.c, xs[0])
    cor = lj.article_terms(p, o_prev, s.c, xs[0])
    assert rel_err(pub.A, cor.A) < RTOL64
    assert rel_err(pub.C, cor.C) < RTOL64
    assert rel_err(pub.D, cor.D) > 0.05


def test_terms_along_trajectory_equal_per_step_terms_with_trajectory_output_gate():
    p, s, xs = _lstm_setup(7, 5, 3, 1.2, True, T=6)
    along = lj.lstm_terms_along(p, s, xs)
    along_pub = lj.lstm_terms_along(p, s, xs, lj.article_terms_published)
    _, traj = lj.run_lstm(p, s, xs)
    h_prev = np.concatenate([np.asarray(s.h)[None], np.asarray(traj.h)])
    for t in range(1, 6):  # python index t is the article's step t + 1
        o_prev = lj.lstm_gates(p, h_prev[t - 1], xs[t - 1]).o
        np.testing.assert_allclose(o_prev * np.tanh(traj.c[t - 1]), traj.h[t - 1], rtol=1e-12)
        for got, want in zip(along, lj.article_terms(p, o_prev, traj.c[t - 1], xs[t])):
            assert rel_err(got[t - 1], want) < RTOL64
        for got, want in zip(along_pub, lj.article_terms_published(p, o_prev, traj.c[t - 1], xs[t])):
            assert rel_err(got[t - 1], want) < RTOL64


def test_article_product_equals_exact_dck_dc1_at_k2_only():
    """prod_{t=2}^k (A+B+C+D) equals the exact dc_k/dc_1 (h_1 = o_1 tanh c_1, o_1 fixed) at k = 2, not at k >= 3."""
    n = 6
    p, s, xs = _lstm_setup(11, n, 3, 1.5, True, T=5)
    terms = lj.lstm_terms_along(p, s, xs)  # t = 2..5
    article = lj.jacobian_products(terms.total())
    joint = lj.lstm_step_jacobians(p, s, xs)  # t = 1..5
    _, traj = lj.run_lstm(p, s, xs)
    o1 = lj.lstm_gates(p, s.h, xs[0]).o
    lift = jnp.concatenate([jnp.diag(o1 * lj.TANH.deriv(traj.c[0])), jnp.eye(n)])  # d s_1 / d c_1
    exact = lj.jacobian_products(joint[1:]) @ lift  # d s_k / d c_1, k = 2..5
    errs = [rel_err(article[k], exact[k][n:]) for k in range(4)]
    assert errs[0] < RTOL64
    assert min(errs[1:]) > 1e-6


# ----------------------------------------------------------------------------- float32


@pytest.mark.parametrize("seed", [0, 1])
def test_float32_analytic_jacobians_equal_autodiff_within_float32_tolerance(seed):
    p, s, xs = _lstm_setup(seed, 16, 8, 1.0, True, dtype=jnp.float32, T=4)
    Js = lj.lstm_step_jacobians(p, s, xs)
    assert Js.dtype == jnp.float32
    s0 = jnp.concatenate([s.h, s.c])
    ref = jax.jacfwd(lj.lstm_flow_map(p, xs[:1]))(s0)
    check_close(Js[0], ref, RTOL32, "float32 joint step Jacobian vs jacfwd")
    P = lj.jacobian_products(Js)
    check_close(P[-1], jax.jacrev(lj.lstm_flow_map(p, xs))(s0), RTOL32, "float32 joint 4-step product vs jacrev")
    pr = lj.init_rnn(jax.random.PRNGKey(seed), 16, 8)
    c = jnp.ones(16, jnp.float32) * 0.3
    Jr = lj.rnn_step_jacobian(pr, c, xs[0, :8])
    assert Jr.dtype == jnp.float32
    check_close(Jr, jax.jacfwd(lj.rnn_flow_map(pr, xs[:1, :8]))(c), RTOL32, "float32 eq. 2 step Jacobian vs jacfwd")


def test_jacobian_products_equal_sequential_matmul_loop():
    Js = _normal(jax.random.PRNGKey(3), (9, 4, 4))
    P = lj.jacobian_products(Js)
    acc = np.eye(4)
    for t in range(9):
        acc = np.asarray(Js[t]) @ acc
        assert rel_err(P[t], acc) < RTOL64
