"""Every analytic Jacobian formula against jax.jacfwd and jax.jacrev (float64).

The autodiff references differentiate the library's own scan runners
(``rnn_flow_map`` / ``lstm_flow_map`` / ``article_cell_map``, all through ``run_rnn`` /
``run_lstm``), never the formula code under test.  Tolerance: ``RTOL64`` (1e-12, see ``_reference.py``).

Property tests: hypothesis draws a seed, a shape from a few fixed shapes (so compiled code is
reused) and the other discrete options; each example evaluates ``DRAWS`` random draws at once (vmap),
each with its own weight scale (log-uniform in [0.1, 3]).  Generated cases per run:
3 tests x ``EXAMPLES`` examples x ``DRAWS`` draws = 3 x 25 x 8 = 600.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lstm_jax as lj
from _reference import MAX_ERR, RTOL32, RTOL64, check_close, lstm_loop, rel_err, rnn_loop

F64 = jnp.float64
EXAMPLES, DRAWS, T_PROP = 25, 8, 6
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
SHAPES = [(1, 1), (5, 3), (16, 8)]

shapes = st.sampled_from(SHAPES)
seeds = st.integers(0, 2**31 - 1)
activations = st.sampled_from([lj.SIGMOID, lj.TANH])


def _normal(key, shape, dtype=F64):
    return jax.random.normal(key, shape, dtype)


def _scale(key):
    return jnp.exp(jax.random.uniform(key, (), F64, math.log(0.1), math.log(3.0)))


def _lstm_setup(seed, n, m, scale, bias, T=1, dtype=F64):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    p = lj.init_lstm(k[0], n, m, scale=scale, bias=bias, forget_bias=1.0 if bias else 0.0, dtype=dtype)
    if bias:  # non-trivial biases on every gate
        p = p._replace(**{b: getattr(p, b) + 0.5 * _normal(kk, (n,), dtype)
                          for b, kk in zip(("b_f", "b_i", "b_c", "b_o"), jax.random.split(k[1], 4))})
    s = lj.LSTMState(jnp.tanh(_normal(k[2], (n,), dtype)), 2.0 * _normal(k[3], (n,), dtype))
    xs = _normal(k[4], (T, m), dtype)
    return p, s, xs


def _lstm_draw(key, n, m):
    """One random (params with biases, state, inputs (T_PROP, m)) with a log-uniform weight scale."""
    k = jax.random.split(key, 6)
    Ws = _scale(k[0]) * _normal(k[1], (4, n, n + m)) / math.sqrt(n + m)
    bs = 0.5 * _normal(k[2], (4, n))
    s = lj.LSTMState(jnp.tanh(_normal(k[3], (n,))), 2.0 * _normal(k[4], (n,)))
    return lj.LSTMParams(*Ws, *bs), s, _normal(k[5], (T_PROP, m))


def _errors(got, want):
    """Largest relative error over a leading batch axis (and any further leading axes)."""
    return float(jnp.max(jax.vmap(lambda a, b: jnp.linalg.norm(a - b) / jnp.linalg.norm(b))(
        got.reshape(-1, *got.shape[-2:]), want.reshape(-1, *want.shape[-2:]))))


# ----------------------------------------------------------------------------- RNN


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _rnn_batch(key, n, m, act, bias):
    """For DRAWS draws: analytic step-1 Jacobian and prefix products vs jacfwd/jacrev of c0 -> (c_1..c_T)."""
    def one(k):
        kk = jax.random.split(k, 5)
        p = lj.RNNParams(_scale(kk[0]) * _normal(kk[1], (n, n)) / math.sqrt(n), _normal(kk[2], (n, m)) / math.sqrt(m),
                         0.5 * _normal(kk[3], (n,)) if bias else None)
        c0, xs = _normal(kk[4], (n,)), _normal(jax.random.fold_in(k, 1), (T_PROP, m))
        states = lambda c: lj.run_rnn(p, c, xs, act)[1]  # noqa: E731  (the library's scan)
        J1 = lj.rnn_step_jacobian(p, c0, xs[0], act)
        Js = lj.rnn_step_jacobians(p, c0, xs, act)
        P = lj.jacobian_products(Js)
        return J1, P, jax.jacfwd(states)(c0), jax.jacrev(states)(c0), _reference_rounding(Js, p.W_rec, P)

    return jax.vmap(one)(jax.random.split(key, DRAWS))


def _reference_rounding(Js, W_rec, P):
    """Relative rounding bound of the *autodiff reference* for each product P_k, shape ``(T,)``.

    JAX differentiates tanh as ``1 - tanh(z)**2`` and the sigmoid as ``s * (1 - s)``: absolute error
    ~eps64 in phi', i.e. a relative error ~eps/phi' that grows without bound as a unit saturates (the
    library's sigma(z)sigma(-z) / 4sigma(2z)sigma(-2z) forms do not cancel).  Each reference step Jacobian
    is off by at most ``2 eps ||W_rec||`` (spectral), so ``||dP_k|| <= 2 eps ||W_rec|| sum_t prod_{s != t} ||J_s||``;
    the bound below is twice that, relative to ``||P_k||_F``.  Away from saturation it is ~1e-15, far
    below RTOL64; only for nearly saturated draws does it exceed it.
    """
    eps = jnp.finfo(F64).eps
    nJ = jnp.linalg.norm(Js, ord=2, axis=(-2, -1))
    # sum over t <= k of the product of ||J_s|| over s <= k, s != t (leave-one-out; every ||J_s|| > 0 here:
    # phi' > 0 and W_rec has full rank almost surely)
    loo = jnp.cumprod(nJ) * jnp.cumsum(1.0 / nJ)
    return 4 * eps * jnp.linalg.norm(W_rec, ord=2) * loo / jnp.linalg.norm(P, axis=(-2, -1))


def _check_within(got, want, bound, label):
    """Every draw and k: relative error < RTOL64 + the autodiff reference's own rounding bound ``bound``."""
    e = np.asarray(jax.vmap(jax.vmap(lambda a, b: jnp.linalg.norm(a - b) / jnp.linalg.norm(b)))(got, want))
    b = np.asarray(bound)
    MAX_ERR[label] = max(MAX_ERR.get(label, 0.0), float(e.max()))
    worst = np.argmax(e - b)
    assert np.all(e < RTOL64 + b), (f"{label}: relative error {e.flat[worst]:.3g} >= {RTOL64:g} + reference "
                                    f"rounding bound {b.flat[worst]:.3g}")


@SETTINGS
@given(shape=shapes, seed=seeds, act=activations, bias=st.booleans())
def test_rnn_eq2_step_jacobian_and_its_products_equal_jacfwd_and_jacrev_of_scan(shape, seed, act, bias):
    J1, P, fwd, rev, bound = _rnn_batch(jax.random.PRNGKey(seed), *shape, act, bias)
    _check_within(J1[:, None], fwd[:, :1], bound[:, :1], f"eq. 2 step Jacobian ({act.name}) vs jacfwd")
    _check_within(J1[:, None], rev[:, :1], bound[:, :1], f"eq. 2 step Jacobian ({act.name}) vs jacrev")
    _check_within(P, fwd, bound, "RNN k-step products (k = 1..6) vs jacfwd of scan")
    _check_within(P, rev, bound, "RNN k-step products (k = 1..6) vs jacrev of scan")


def test_rnn_step_jacobians_along_a_numpy_trajectory_equal_one_step_autodiff_of_the_runner():
    """Each J_t against jacfwd of one run_rnn step, at the state an independent NumPy loop reaches."""
    p = lj.init_rnn(jax.random.PRNGKey(0), 6, 3, scale=1.5, dtype=F64)
    c0 = _normal(jax.random.PRNGKey(1), (6,))
    xs = _normal(jax.random.PRNGKey(2), (7, 3))
    Js = lj.rnn_step_jacobians(p, c0, xs, lj.TANH)
    cs = rnn_loop(np.asarray(p.W_rec), np.asarray(p.W_in), None, c0, xs, "tanh")
    prev = np.concatenate([np.asarray(c0)[None], cs[:-1]])
    for t in range(7):
        ref = jax.jacfwd(lj.rnn_flow_map(p, xs[t:t + 1], lj.TANH))(jnp.asarray(prev[t]))
        check_close(Js[t], ref, RTOL64, "eq. 2 along a NumPy trajectory vs one-step jacfwd")


# ----------------------------------------------------------------------------- LSTM joint


@partial(jax.jit, static_argnums=(1, 2))
def _lstm_batch(key, n, m):
    """For DRAWS draws: analytic joint step-1 Jacobian, prefix products, jacfwd and jacrev of s0 -> (s_1..s_T)."""
    def one(k):
        p, s, xs = _lstm_draw(k, n, m)

        def states(s0):  # the library's scan, flattened to [h_t; c_t] for t = 1..T
            traj = lj.run_lstm(p, lj.LSTMState(s0[:n], s0[n:]), xs)[1]
            return jnp.concatenate([traj.h, traj.c], axis=1)

        s0 = jnp.concatenate([s.h, s.c])
        J1 = lj.lstm_step_jacobian(p, s, xs[0])
        P = lj.jacobian_products(lj.lstm_step_jacobians(p, s, xs))
        return J1, P, jax.jacfwd(states)(s0), jax.jacrev(states)(s0)

    return jax.vmap(one)(jax.random.split(key, DRAWS))


def _assert_blocks_close(got, want, what):
    for name, got_block, want_block in zip(lj.JointBlocks._fields, lj.split_joint(got), lj.split_joint(want)):
        check_close(got_block, want_block, RTOL64, f"LSTM joint {what}, block {name}", _errors)


@SETTINGS
@given(shape=shapes, seed=seeds)
def test_lstm_joint_jacobian_and_its_products_equal_jacfwd_and_jacrev_of_scan_blockwise(shape, seed):
    J1, P, fwd, rev = _lstm_batch(jax.random.PRNGKey(seed), *shape)
    _assert_blocks_close(J1, fwd[:, 0], "step Jacobian vs jacfwd")
    _assert_blocks_close(J1, rev[:, 0], "step Jacobian vs jacrev")
    _assert_blocks_close(P, fwd, "k-step products vs jacfwd of scan")
    _assert_blocks_close(P, rev, "k-step products vs jacrev of scan")


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


@partial(jax.jit, static_argnums=(1, 2))
def _terms_batch(key, n, m):
    def one(k):
        p, s, xs = _lstm_draw(k, n, m)
        o_prev = jax.nn.sigmoid(3.0 * s.h)
        cell = lj.article_cell_map(p, o_prev, xs[0])
        return (
            lj.article_terms(p, o_prev, s.c, xs[0]),
            lj.article_terms_published(p, o_prev, s.c, xs[0], reading="row"),
            _gate_autodiff_terms(p, o_prev, s.c, xs[0], jax.jacfwd),
            _gate_autodiff_terms(p, o_prev, s.c, xs[0], jax.jacrev),
            jax.jacfwd(cell)(s.c),
            jax.jacrev(cell)(s.c),
        )

    return jax.vmap(one)(jax.random.split(key, DRAWS))


@SETTINGS
@given(shape=shapes, seed=seeds)
def test_corrected_eq6_terms_each_equal_autodiff_and_sum_to_dct_dct1(shape, seed):
    """Also: the printed A_t, B_t, C_t read as the product-rule line needs ("row") are exact; D_t is not."""
    terms, row, ref_fwd, ref_rev, cell_fwd, cell_rev = _terms_batch(jax.random.PRNGKey(seed), *shape)
    for ref in (ref_fwd, ref_rev):
        for name, got, want in zip("ABCD", terms, ref):
            check_close(got, want, RTOL64, f"eq. 6 corrected {name}_t vs autodiff", _errors)
        for name in "ABC":
            check_close(getattr(row, name), getattr(ref, name), RTOL64, f"eq. 6 printed {name}_t (row) vs autodiff",
                        _errors)
    check_close(terms.total(), cell_fwd, RTOL64, "eq. 6 corrected A+B+C+D vs jacfwd", _errors)
    check_close(terms.total(), cell_rev, RTOL64, "eq. 6 corrected A+B+C+D vs jacrev", _errors)


PUBLISHED_SEEDS = [0, 1, 2, 3]


@pytest.mark.parametrize("seed", PUBLISHED_SEEDS)
def test_printed_eq6_terms_under_each_reading_against_autodiff(seed):
    """n = 8.  Literal "column" reading: A, C, D off by > 5 %; "row" reading (the product-rule line's): A, C
    exact, D still off (sigma' for tanh'); B exact under both.  The sum is off under both readings."""
    p, s, xs = _lstm_setup(seed, 8, 4, 1.0, True)
    o_prev = jax.nn.sigmoid(s.h * 3.0)
    ref = _gate_autodiff_terms(p, o_prev, s.c, xs[0], jax.jacfwd)
    exact = jax.jacfwd(lj.article_cell_map(p, o_prev, xs[0]))(s.c)
    col = lj.article_terms_published(p, o_prev, s.c, xs[0], reading="column")
    row = lj.article_terms_published(p, o_prev, s.c, xs[0], reading="row")
    for pub in (col, row):
        check_close(pub.B, ref.B, RTOL64, "eq. 6 printed B_t vs autodiff")
        assert rel_err(pub.D, ref.D) > 0.05
        assert rel_err(pub.total(), exact) > 1e-3  # these draws; the smallest sum error in verify is in its JSON
    for name in "AC":
        assert rel_err(getattr(col, name), getattr(ref, name)) > 0.05, name
        check_close(getattr(row, name), getattr(ref, name), RTOL64, f"eq. 6 printed {name}_t (row) vs autodiff")


@pytest.mark.parametrize("seed", PUBLISHED_SEEDS)
def test_column_reading_is_a_similarity_transform_when_no_entry_is_zero(seed):
    """A = diag(c) A_col diag(c)^-1, C = diag(c~) C_col diag(c~)^-1 need every c, c~ entry non-zero (asserted
    here); D = diag(i tanh'(z_c)/sigma'(z_c)) D_col diag(i)^-1 needs i > 0 (a sigmoid: always)."""
    p, s, xs = _lstm_setup(seed, 8, 4, 1.0, True)
    o_prev = jax.nn.sigmoid(s.h * 3.0)
    x = xs[0]
    col = lj.article_terms_published(p, o_prev, s.c, x)
    cor = lj.article_terms(p, o_prev, s.c, x)
    g = lj.lstm_gates(p, o_prev * jnp.tanh(s.c), x)
    assert np.min(np.abs(s.c)) > 1e-3 and np.min(np.abs(g.c_tilde)) > 1e-3  # the identity's condition
    sim = lambda M, left, right: left[:, None] * M / right[None, :]  # noqa: E731
    check_close(sim(col.A, s.c, s.c), cor.A, RTOL64, "similarity diag(c) A_col diag(c)^-1 = A")
    check_close(sim(col.C, g.c_tilde, g.c_tilde), cor.C, RTOL64, "similarity diag(c~) C_col diag(c~)^-1 = C")
    ratio = lj.TANH.deriv(g.z_c) / lj.SIGMOID.deriv(g.z_c)
    check_close(sim(col.D, g.i * ratio, g.i), cor.D, RTOL64, "D = diag(i tanh'/sigma') D_col diag(i)^-1")


def test_terms_along_trajectory_equal_autodiff_at_each_step_of_a_numpy_trajectory():
    """lstm_terms_along (its own scan, a shared trajectory, or in factors with scaled=True) vs per-gate autodiff at
    each step, with o_(t-1) and c_(t-1) from the independent NumPy loop of _reference.py."""
    p, s, xs = _lstm_setup(7, 5, 3, 1.2, True, T=6)
    _, traj = lj.run_lstm(p, s, xs)
    along = lj.lstm_terms_along(p, s, xs)
    shared = lj.lstm_terms_along(p, s, xs, trajectory=traj)
    scaled = lj.lstm_terms_along(p, s, xs, trajectory=traj, scaled=True)
    assert scaled.B.U is None and all(M.U.shape == (5, 5) and M.row.shape == (5, 5) for M in (scaled.A, scaled.C, scaled.D))
    hs, cs = lstm_loop(p, s.h, s.c, xs)
    h_prev = np.concatenate([np.asarray(s.h)[None], hs])
    c_prev = np.concatenate([np.asarray(s.c)[None], cs])
    for t in range(1, 6):  # python index t is the article's step t + 1
        hx = np.concatenate([h_prev[t - 1], np.asarray(xs[t - 1])])
        b_o = np.asarray(p.b_o)
        o_prev = 1 / (1 + np.exp(-(np.asarray(p.W_o) @ hx + b_o)))  # NumPy: o_(t-1)
        ref = _gate_autodiff_terms(p, jnp.asarray(o_prev), jnp.asarray(c_prev[t]), xs[t], jax.jacfwd)
        for name, got, got_shared, want in zip("ABCD", along, shared, ref):
            check_close(got[t - 1], want, RTOL64, f"terms along a trajectory, {name}_t vs autodiff")
            check_close(got_shared[t - 1], want, RTOL64, f"terms along a shared trajectory, {name}_t vs autodiff")
            M = getattr(scaled, name)
            check_close(lj.ScaledMatrix(M.row[t - 1], M.U, M.col[t - 1]).dense(), want, RTOL64,
                        f"terms in factors (scaled=True), {name}_t vs autodiff")
    short = lj.lstm_terms_along(p, s, xs[:4], scaled=True)  # T - 1 = 3 != n = 5: the time axis is row's first
    assert short.A.row.shape == (3, 5) and short.A.dense().shape == (3, 5, 5)
    check_close(short.total(), lj.lstm_terms_along(p, s, xs[:4]).total(), RTOL64, "total() of the factored terms")
    with pytest.raises(ValueError, match="scaled=True gives the exact terms"):
        lj.lstm_terms_along(p, s, xs, lj.article_terms_published, scaled=True)


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
