"""One suite over every cell of the registry, through the cell protocol (``lstm_jax._cell``).

Each member is checked the same way, in float64: its runner against an independent NumPy loop, its dense
step Jacobian against ``jax.jacfwd`` and ``jax.jacrev`` of the runner, the three other consumers (diagonal,
``J Q``, ``J^T W``) against that dense matrix, multi-step products against autodiff of the whole scan, the
custom-VJP batch runner against ``jax.grad`` of the scan, parallel-in-time evaluation (Newton and
quasi-Newton) against the scan, and matrix-free Lyapunov exponents and flow norms against the dense ones.
A new cell is covered by one line in ``MEMBERS``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
from _reference import (RTOL64, gru_loop, lstm_loop, lstmp_loop, mingru_loop, minlstm_loop, mlstm_loop, rel_err, rglru_loop, rnn_loop,
                        slstm_loop)
from lstm_jax import _cell, _fast, _matfree, _parallel

F64 = jnp.float64
N, M, T = 6, 3, 9


def _lstm_ref(p, s0, xs):
    hs, cs = lstm_loop(p, s0.h, s0.c, xs)
    return np.concatenate([hs, cs], axis=-1)


def _rnn_ref(act):
    return lambda p, c0, xs: rnn_loop(np.asarray(p.W_rec), np.asarray(p.W_in), np.asarray(p.b), c0, xs, act)


#: kind -> (parameters with every bias present, NumPy loop (params, state0, xs) -> (T, d) flat states)
MEMBERS = {
    "lstm": (lambda k: lj.init_lstm(k, N, M, scale=1.5, dtype=F64), _lstm_ref),
    "gru": (lambda k: lj.init_gru(k, N, M, scale=1.5, dtype=F64), lambda p, h0, xs: gru_loop(p, h0, xs)),
    "rnn-tanh": (lambda k: lj.init_rnn(k, N, M, scale=1.5, bias=True, dtype=F64), _rnn_ref("tanh")),
    "rnn-sigmoid": (lambda k: lj.init_rnn(k, N, M, scale=1.5, bias=True, dtype=F64), _rnn_ref("sigmoid")),
    "slstm": (lambda k: lj.init_slstm(k, N, M, heads=2, scale=1.5, dtype=F64), slstm_loop),
    "mingru": (lambda k: lj.init_mingru(k, N, M, scale=1.5, dtype=F64), mingru_loop),
    "minlstm": (lambda k: lj.init_minlstm(k, N, M, scale=1.5, dtype=F64), minlstm_loop),
    "rglru": (lambda k: lj.init_rglru(k, N, scale=1.5, dtype=F64), rglru_loop),
    "mlstm": (lambda k: lj.init_mlstm(k, N, M, heads=2, scale=1.5, dtype=F64), mlstm_loop),
    "lstm-proj": (lambda k: lj.init_lstmp(k, N, M, 2, scale=1.5, dtype=F64), lstmp_loop),
}


def test_every_registered_cell_is_a_member_of_this_suite():
    assert set(MEMBERS) == set(lj.CELLS) == set(lj.KINDS)


def _units(cell, p):
    """The size of each state block (``n`` for most cells; the mLSTM's memory ``H d (d + 1)``)."""
    return cell.check(p)[1]


def _setup(kind, seed=0):
    """The cell, parameters with random (non-zero) biases, a random initial state and inputs."""
    cell = lj.cell_of(kind)
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    p = MEMBERS[kind][0](k[0])
    leaves, tree = jax.tree_util.tree_flatten(p)
    keys = jax.random.split(k[1], len(leaves))
    p = jax.tree_util.tree_unflatten(  # biases and recurrent heads made non-zero, so every path is exercised
        tree, [v if v.ndim == 2 else 0.5 * jax.random.normal(kk, v.shape, F64) for v, kk in zip(leaves, keys)])
    s0 = _cell.unflat(cell, 0.5 * jax.random.normal(k[2], (cell.width * _units(cell, p),), F64))
    if kind == "slstm":  # a normaliser is positive along any run (n_t >= i'_t > 0)
        s0 = s0._replace(n=jnp.abs(s0.n) + 0.5)
    xs = jax.random.normal(k[3], (T, cell.check(p)[2]), F64)
    return cell, p, s0, xs


def _flat_step(cell, p):
    """``s_{t-1} -> s_t`` through the runner itself (one step of the same scan), on flat states."""
    return lambda s, x: _cell.flat(cell, _cell.run(cell, cell.weights(p), _cell.unflat(cell, s), x[None])[0])


@pytest.mark.parametrize("kind", MEMBERS)
def test_runner_equals_an_independent_numpy_loop(kind):
    cell, p, s0, xs = _setup(kind)
    final, traj = _cell.run(cell, cell.weights(p), s0, xs)
    ref = MEMBERS[kind][1](p, s0, xs)
    assert rel_err(_cell.flat(cell, traj), ref) < RTOL64


@pytest.mark.parametrize("kind", MEMBERS)
def test_dense_step_jacobian_equals_jacfwd_and_jacrev_of_the_runner(kind):
    cell, p, s0, xs = _setup(kind, 1)
    w = cell.weights(p)
    _, traj = _cell.run(cell, w, s0, xs)
    J = _cell.jacobians_along(cell, w, s0, traj, xs)
    prev = jnp.concatenate([_cell.flat(cell, s0)[None], _cell.flat(cell, traj)[:-1]])
    f = _flat_step(cell, p)
    fwd = jax.vmap(lambda s, x: jax.jacfwd(f)(s, x))(prev, xs)
    rev = jax.vmap(lambda s, x: jax.jacrev(f)(s, x))(prev, xs)
    d = cell.width * _units(cell, p)
    assert J.shape == (T, d, d)
    assert rel_err(J, fwd) < RTOL64 and rel_err(J, rev) < RTOL64


@pytest.mark.parametrize("kind", MEMBERS)
def test_diagonal_jq_and_jtw_consumers_on_rows_columns_and_wide_blocks_equal_the_dense_jacobian(kind):
    cell, p, s0, xs = _setup(kind, 2)
    w = cell.weights(p)
    blocks, F = _cell.step(cell, w, cell.to_blocks(s0), xs[0])
    n = _units(cell, p)
    J = _cell.dense_jacobian(cell, w, F, n)
    d = cell.width * n
    Q = jax.random.normal(jax.random.PRNGKey(3), (d, 4), F64)
    assert rel_err(_cell.jacobian_diagonal(cell, w, F, n), jnp.diagonal(J)) < RTOL64
    assert rel_err(_cell.jvp_rows(cell, w, F, Q.T).T, J @ Q) < RTOL64
    assert rel_err(_cell.vjp_rows(cell, w, F, Q.T).T, J.T @ Q) < RTOL64
    assert rel_err(_cell.jvp_cols(cell, w, F, Q), J @ Q) < RTOL64
    assert rel_err(_cell.vjp_cols(cell, w, F, Q), J.T @ Q) < RTOL64
    wide = jax.random.normal(jax.random.PRNGKey(4), (d, 2 * d), F64)  # the flow product's (d, d) and wider
    assert rel_err(_cell.vjp_wide(cell, w, F, wide), J.T @ wide) < RTOL64


@pytest.mark.parametrize("kind", MEMBERS)
def test_products_of_step_jacobians_equal_autodiff_of_the_whole_scan(kind):
    cell, p, s0, xs = _setup(kind, 4)
    w = cell.weights(p)
    J = _cell.jacobians_along(cell, w, s0, _cell.run(cell, w, s0, xs)[1], xs)
    P = lj.jacobian_products(J)[-1]  # d s_T / d s_0
    whole = jax.jacrev(lambda s: _cell.flat(cell, _cell.run(cell, w, _cell.unflat(cell, s), xs)[0]))(_cell.flat(cell, s0))
    assert rel_err(P, whole) < RTOL64


@pytest.mark.parametrize("kind", MEMBERS)
def test_batch_runner_custom_vjp_equals_jax_grad_of_the_scan(kind):
    cell, p, s0, xs = _setup(kind, 5)
    B = 3
    X = jax.random.normal(jax.random.PRNGKey(6), (T, B, xs.shape[-1]), F64)
    S0 = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.5 * a, 2 * a]), s0)
    proj = jax.random.normal(jax.random.PRNGKey(7), (_units(cell, p),), F64)

    def fast(p, S0, X):
        final, outs = _fast._run_batch(cell, p, S0, "state0", X, True, False, 1)
        return jnp.sum(jnp.sin(outs @ proj)) + jnp.sum(_cell.flat(cell, final) ** 2)

    def scan(p, S0, X):
        final, traj = jax.vmap(lambda s, x: _cell.run(cell, cell.weights(p), s, x), in_axes=(0, 1))(S0, X)
        outs = jnp.swapaxes(cell.to_blocks(traj)[cell.out_block], 0, 1)
        return jnp.sum(jnp.sin(outs @ proj)) + jnp.sum(_cell.flat(cell, final) ** 2)

    assert abs(fast(p, S0, X) - scan(p, S0, X)) < 1e-12 * abs(scan(p, S0, X))
    got, want = jax.grad(fast, argnums=(0, 1, 2))(p, S0, X), jax.grad(scan, argnums=(0, 1, 2))(p, S0, X)
    for g, r in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert rel_err(g, r) < RTOL64


@pytest.mark.parametrize("mode", [lj.DENSE, lj.DIAGONAL], ids=lambda m: m.name)
@pytest.mark.parametrize("kind", MEMBERS)
def test_parallel_in_time_evaluation_equals_the_scan_and_so_does_its_gradient(kind, mode):
    cell, p, s0, xs = _setup(kind, 8)
    states, info = _parallel._parallel_run(cell, p, s0, "state0", xs, mode, None, None)
    ref = _cell.run(cell, cell.weights(p), s0, xs)[1]
    assert bool(info.converged) and not bool(info.fell_back)
    assert rel_err(_cell.flat(cell, states), _cell.flat(cell, ref)) < RTOL64
    loss = lambda traj: jnp.sum(jnp.tanh(_cell.flat(cell, traj)))  # noqa: E731
    g_par = jax.grad(lambda p: loss(_parallel._parallel_run(cell, p, s0, "state0", xs, mode, None, None)[0]))(p)
    g_seq = jax.grad(lambda p: loss(_cell.run(cell, cell.weights(p), s0, xs)[1]))(p)
    for a, b in zip(jax.tree_util.tree_leaves(g_par), jax.tree_util.tree_leaves(g_seq)):
        assert rel_err(a, b) < 1e-10  # the adjoint solve reassociates T products: measured <= 3e-15


#: kinds whose every step Jacobian has a kernel of known dimension (the projected LSTM: n - p = N - 2)
KERNEL = {"lstm-proj": N - 2}


@pytest.mark.parametrize("kind", MEMBERS)
def test_matrix_free_lyapunov_and_flow_norms_equal_the_dense_ones(kind):
    cell, p, s0, xs = _setup(kind, 9)
    w = cell.weights(p)
    J = _cell.jacobians_along(cell, w, s0, _cell.run(cell, w, s0, xs)[1], xs)
    # the projected LSTM's step annihilates the n - p directions of u that W_hr does not see (exponents -inf);
    # over T = 9 steps their rounding noise is not separable from the true exponents, so k stops at the rank and the
    # start directions are random (the identity's first columns would contain that kernel)
    d = cell.width * _units(cell, p)
    for k in (1, d - KERNEL.get(kind, 0)):
        q0 = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(17), (d, k), F64))[0]
        mf = _matfree._lyapunov(cell, p, s0, "state0", xs, k, q0)
        dense = lj.lyapunov(J, k, q0)
        # Exponents of directions that J_t annihilates are -inf and come out as rounding noise (-13 to -31 here)
        # in both computations: the sLSTM maps the gauge direction (-c, -n, +1) of a unit whose stabiliser resets
        # (m_t = i~_t) to exactly 0.  Only resolved exponents (a factor above 1e-4 per step) are compared.
        resolved = dense.exponents > jnp.log(1e-4)
        assert bool(resolved[0])
        # measured: <= 4e-13, except 6.6e-11 for the sLSTM (two exponents 4e-4 apart mix in the QR)
        assert rel_err(mf.exponents[resolved], dense.exponents[resolved]) < 1e-9
    flow = _matfree._flow(cell, p, s0, "state0", xs, None, None)
    assert rel_err(flow.log_spectral, lj.gradient_flow_norms(J).log_spectral) < 1e-12


DIAGONAL_LINEAR = [k for k in MEMBERS if lj.cell_of(k).diagonal_linear]


def test_the_diagonal_linear_cells_are_mingru_minlstm_rglru_and_mlstm():
    assert sorted(DIAGONAL_LINEAR) == ["mingru", "minlstm", "mlstm", "rglru"]


@pytest.mark.parametrize("kind", DIAGONAL_LINEAR)
def test_diagonal_cells_step_jacobian_is_the_gate_and_k_step_products_never_mix_units(kind):
    cell, p, s0, xs = _setup(kind, 10)
    w = cell.weights(p)
    hs = _cell.run(cell, w, s0, xs)[1]
    f = _flat_step(cell, p)
    J = jax.vmap(jax.jacfwd(f))(jnp.concatenate([s0[None], hs[:-1]]), xs)  # autodiff of the runner, not the protocol
    a, _ = _cell.linear_coefficients(cell, w, xs, _units(cell, p))
    off = J - jax.vmap(jnp.diag)(jnp.diagonal(J, axis1=1, axis2=2))
    assert float(jnp.max(jnp.abs(off))) == 0.0  # A = C = D = 0: exactly, not to rounding
    assert rel_err(jnp.diagonal(J, axis1=1, axis2=2), a) < RTOL64
    assert bool(jnp.all((a > 0) & (a < 1)))
    whole = jax.jacrev(lambda s: _cell.run(cell, w, s, xs)[0])(s0)  # d h_T / d h_0 by autodiff of the scan
    assert rel_err(whole, jnp.diag(jnp.prod(a, axis=0))) < RTOL64


@pytest.mark.parametrize("kind", DIAGONAL_LINEAR)
def test_parallel_linear_scan_equals_the_sequential_runner_and_its_gradient(kind):
    cell, p, s0, xs = _setup(kind, 11)
    seq = lambda p: lj.run_cell(kind, p, s0, xs)[1]  # noqa: E731
    par = lambda p: lj.parallel_run_linear(kind, p, s0, xs)  # noqa: E731
    assert rel_err(par(p), seq(p)) < RTOL64
    g_par = jax.grad(lambda p: jnp.sum(jnp.sin(par(p))))(p)
    g_seq = jax.grad(lambda p: jnp.sum(jnp.sin(seq(p))))(p)
    for a, b in zip(jax.tree_util.tree_leaves(g_par), jax.tree_util.tree_leaves(g_seq)):
        assert rel_err(a, b) < RTOL64


def test_parallel_linear_refuses_a_cell_with_state_dependent_gates():
    _, p, s0, xs = _setup("lstm")
    with pytest.raises(ValueError, match="not a diagonal linear recurrence.*mingru"):
        lj.parallel_run_linear("lstm", p, s0, xs)


def test_slstm_maps_the_gauge_direction_of_a_unit_whose_stabiliser_resets_to_zero():
    # (c, n, m) -> (c e^-d, n e^-d, m + d) leaves h unchanged; where m_t = i~_t the step forgets m_(t-1), so the
    # direction (-c, -n, +1) of that unit is annihilated: an exactly singular Jacobian (exponent -inf).
    cell, p, s0, xs = _setup("slstm", 12)
    w = cell.weights(p)
    blocks, F = _cell.step(cell, w, cell.to_blocks(s0), xs[0])
    reset = np.flatnonzero(np.asarray(F.s) == 0)
    assert reset.size  # this draw has units whose stabiliser resets
    J = _cell.dense_jacobian(cell, w, F, N)
    for j in reset:
        v = np.zeros(4 * N)
        v[N + j], v[2 * N + j], v[3 * N + j] = -s0.c[j], -s0.n[j], 1.0
        assert float(jnp.max(jnp.abs(J @ v))) < 1e-15 * float(jnp.max(jnp.abs(J)))


def test_slstm_first_step_from_the_zero_state_takes_the_input_gate_as_stabiliser_and_stays_finite():
    cell, p, _, xs = _setup("slstm", 13)
    p = p._replace(b_i=jnp.full((N,), -110.0, F64))  # i~ far below log sigma(f~): i' would underflow under the max rule
    _, traj = _cell.run(cell, cell.weights(p.__class__(*[jnp.asarray(v, jnp.float32) for v in p])),
                        cell.zero(N, jnp.float32), xs[:3].astype(jnp.float32))
    assert bool(jnp.all(jnp.isfinite(traj.h)))
    _, traj64 = _cell.run(cell, cell.weights(p), cell.zero(N, F64), xs[:1])
    i_tilde = (xs[0] @ p.W_i.T + p.b_i)  # R h_0 = 0
    np.testing.assert_allclose(traj64.m[0], i_tilde, rtol=1e-12)


def test_a_head_shape_that_does_not_tile_is_refused_by_name():
    _, p, _, _ = _setup("slstm")
    with pytest.raises(ValueError, match=r"params.R_i has shape \(2, 3, 4\)"):
        lj.cell_of("slstm").check(p._replace(R_i=jnp.zeros((2, 3, 4), F64)))


def test_mlstm_outputs_equal_the_numpy_readout_and_run_stack_returns_them():
    cell, p, s0, xs = _setup("mlstm", 14)
    w = cell.weights(p)
    traj = _cell.run(cell, w, s0, xs)[1]
    assert rel_err(cell.outputs(w, traj, xs), mlstm_loop(p, s0, xs, outputs=True)) < RTOL64
    zero = cell.zero(_units(cell, p), F64)
    stack = lj.run_stack([lj.RecurrentLayer("layer0.forward", "mlstm", p, 0, False)], xs)
    assert stack.outputs.shape == (T, N)
    assert rel_err(stack.outputs, mlstm_loop(p, zero, xs, outputs=True)) < RTOL64


def test_mlstm_step_jacobian_is_the_head_forget_gate_times_the_identity():
    cell, p, s0, xs = _setup("mlstm", 15)
    J = jax.jacfwd(_flat_step(cell, p))(s0, xs[0])  # autodiff of the runner
    H, d = 2, N // 2
    f = jax.nn.sigmoid(p.w_f @ xs[0] + p.b_f)  # (H,)
    assert rel_err(J, jnp.diag(jnp.repeat(f, d * (d + 1)))) < RTOL64


def test_projected_lstm_outputs_are_the_projection_of_u_and_equal_torch():
    torch = pytest.importorskip("torch")
    import lstm_jax.io as lio

    cell, p, s0, xs = _setup("lstm-proj", 16)
    w = cell.weights(p)
    traj = _cell.run(cell, w, s0, xs)[1]
    assert rel_err(cell.outputs(w, traj, xs), lstmp_loop(p, s0, xs, outputs=True)) < RTOL64
    torch.manual_seed(0)
    net = torch.nn.LSTM(M, N, proj_size=2).double()
    model = lio.load_model(net)
    assert model.kind == "lstm-proj" and type(model.layers[0].params) is lj.LSTMPParams
    x = np.asarray(xs)
    ref = net(torch.from_numpy(x))[0].detach().numpy()
    assert rel_err(lj.run_stack(model.layers, xs).outputs, ref) < RTOL64  # torch's outputs, float64
