"""Stacked, bidirectional and padded models: run_stack equals torch's multi-layer modules; the stack Jacobian is exact.

Tolerances: float64 1e-12 for trajectories (the same sums in another order), float32 1e-5 (eps32 = 1.2e-7
over T = 10 steps and two layers); Jacobians 1e-10 vs torch.autograd and 1e-12 vs jax.jacfwd (float64).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
import lstm_jax.io as lio

torch = pytest.importorskip("torch")

N, M, T = 4, 3, 10


def _xs(B, dtype=np.float64, seed=0):
    return np.array(jax.random.normal(jax.random.PRNGKey(seed), (B, T, M)), dtype)


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_bidirectional_two_layer_padded_batch_equals_torch_packed_sequences(cls):
    """Each padded sequence: our outputs and every layer/direction's final state equal torch's packed run (float64)."""
    torch.manual_seed(0)
    net = getattr(torch.nn, cls)(M, N, num_layers=2, bidirectional=True, batch_first=True).double()
    xs = _xs(3)
    lengths = np.array([T, 6, 2])
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(xs), torch.from_numpy(lengths),
                                                     batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        out, final = net(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    h_n = (final[0] if cls == "LSTM" else final).numpy()  # (layers * directions, B, n), our record order

    model = lio.load_model(net)
    assert (model.kind, model.num_layers, model.directions) == (cls.lower(), 2, 2)
    run = jax.jit(jax.vmap(lambda x, L: lj.run_stack(model.layers, x, seq_lengths=L)))(jnp.asarray(xs), jnp.asarray(lengths))
    np.testing.assert_allclose(run.outputs, out.numpy(), rtol=0, atol=1e-12)
    for i, fin in enumerate(run.finals):
        h = fin.h if cls == "LSTM" else fin
        np.testing.assert_allclose(h, h_n[i], rtol=0, atol=1e-12, err_msg=model.layers[i].name)
    # each reverse recurrence, alone on its own inputs, is an ordinary padded run
    rec = model.layers[1]
    assert rec.reverse
    b = 1
    alone = lj.run_gru if cls == "GRU" else lj.run_lstm
    s0 = jnp.zeros(N) if cls == "GRU" else lj.zero_state(N, jnp.float64)
    final_alone, _ = alone(rec.params, s0, run.inputs[1][b][: lengths[b]])
    np.testing.assert_allclose(final_alone if cls == "GRU" else final_alone.h, h_n[1][b], rtol=0, atol=1e-12)


def test_two_layer_gru_float32_equals_torch():
    torch.manual_seed(1)
    net = torch.nn.GRU(M, N, num_layers=2)
    xs = _xs(1, np.float32)[0]
    with torch.no_grad():
        out, _ = net(torch.from_numpy(xs))
    run = lj.run_stack(lio.load_model(net).layers, jnp.asarray(xs))
    assert run.outputs.dtype == np.float32
    np.testing.assert_allclose(run.outputs, out.numpy(), rtol=0, atol=1e-5)


def _stack_step_reference(layers, xs):
    """Autodiff reference: jacfwd of S_{t-1} -> S_t, each step one run_stack call of length 1."""
    recs = list(layers)
    run = lj.run_stack(recs, xs)
    sizes = [2 * N if r.kind == "lstm" else N for r in recs]

    def unpack(S):
        out, i = [], 0
        for r, d in zip(recs, sizes):
            v = S[i:i + d]
            out.append(lj.LSTMState(v[:N], v[N:]) if r.kind == "lstm" else v)
            i += d
        return out

    def pack(states):
        return jnp.concatenate([jnp.concatenate([s.h, s.c]) if r.kind == "lstm" else s for r, s in zip(recs, states)])

    def step(S, x):
        return pack(lj.run_stack(recs, x[None], states0=unpack(S)).finals)

    traj = jnp.concatenate([jnp.concatenate([tr.h, tr.c], -1) if r.kind == "lstm" else tr
                            for r, tr in zip(recs, run.trajectories)], -1)
    S_prev = jnp.concatenate([jnp.zeros((1, sum(sizes))), traj[:-1]])
    return jax.vmap(jax.jacfwd(step))(S_prev, xs)


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_stack_step_jacobian_is_exact_and_block_lower_triangular(cls):
    torch.manual_seed(2)
    layers = lio.load_model(getattr(torch.nn, cls)(M, N, num_layers=3).double()).layers
    xs = jnp.asarray(_xs(1)[0])
    @jax.jit
    def compute(xs):
        inputs = lj.run_stack(layers, xs).inputs
        own = [lj.step_jacobians(r.kind, r.params, x) for r, x in zip(layers, inputs)]
        return lj.stack_step_jacobians(layers, xs), _stack_step_reference(layers, xs), own

    stack, ref, own = compute(xs)
    np.testing.assert_allclose(stack.jacs, ref, rtol=0, atol=1e-12)
    for k, (lo, hi) in enumerate(stack.slices):
        assert not np.any(stack.jacs[:, lo:hi, hi:]), f"layer {k} depends on a layer above it"
        np.testing.assert_allclose(stack.jacs[:, lo:hi, lo:hi], own[k], rtol=0, atol=1e-15)


def test_stack_flow_equals_torch_autograd_of_the_top_output():
    """d h^top_T / d (h0, c0) of every layer: stack_flow entry 0 vs torch.autograd.functional.jacobian (float64)."""
    torch.manual_seed(3)
    net = torch.nn.LSTM(M, N, num_layers=2).double()
    xs = _xs(1)[0]
    x_t = torch.from_numpy(xs)

    def top(h0, c0):
        return net(x_t, (h0, c0))[0][-1]

    z = torch.zeros(2, N, dtype=torch.float64)
    dh0, dc0 = torch.autograd.functional.jacobian(top, (z, z))  # (N, layers, N) each
    layers = lio.load_model(net).layers
    flow = jax.jit(lambda x: lj.stack_flow(lj.stack_step_jacobians(layers, x)))(jnp.asarray(xs))
    for k in range(2):
        np.testing.assert_allclose(flow[k][0][:, :N], dh0[:, k].numpy(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(flow[k][0][:, N:], dc0[:, k].numpy(), rtol=0, atol=1e-10)


def test_padded_stack_jacobians_are_the_identity_past_the_length():
    torch.manual_seed(4)
    layers = lio.load_model(torch.nn.GRU(M, N, num_layers=2).double()).layers
    xs = jnp.asarray(_xs(1)[0])
    padded = jax.jit(lambda x: lj.stack_step_jacobians(layers, x, seq_lengths=6))(xs)
    short = jax.jit(lambda x: lj.stack_step_jacobians(layers, x))(xs[:6])
    np.testing.assert_allclose(padded.jacs[:6], short.jacs, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(padded.jacs[6:], np.broadcast_to(np.eye(2 * N), (T - 6, 2 * N, 2 * N)))
    np.testing.assert_allclose(lj.stack_flow(padded)[0][0], lj.stack_flow(short)[0][0], rtol=0, atol=1e-14)


def test_bad_stacks_are_rejected_with_the_reason():
    layers = lio.load_model(torch.nn.LSTM(M, N, bidirectional=True)).layers
    with pytest.raises(ValueError, match="unidirectional"):
        lj.stack_step_jacobians(layers, jnp.zeros((T, M)))
    with pytest.raises(TypeError, match="not a layer record"):
        lj.run_stack([lj.init_lstm(jax.random.PRNGKey(0), N, M)], jnp.zeros((T, M)))
    with pytest.raises(ValueError, match=r"xs"):
        lj.run_stack(layers, jnp.zeros((T, M + 1)))
    with pytest.raises(ValueError, match="depth 0 must hold one forward record"):
        lj.run_stack(layers[::-1], jnp.zeros((T, M)))


_INIT = {
    "lstm": lambda k: lj.init_lstm(k, N, M, dtype=jnp.float64),
    "gru": lambda k: lj.init_gru(k, N, M, dtype=jnp.float64),
    "rnn-tanh": lambda k: lj.init_rnn(k, N, M, bias=True, dtype=jnp.float64),
    "rnn-sigmoid": lambda k: lj.init_rnn(k, N, M, bias=True, dtype=jnp.float64),
    "slstm": lambda k: lj.init_slstm(k, N, M, dtype=jnp.float64),
    "mingru": lambda k: lj.init_mingru(k, N, M, dtype=jnp.float64),
    "minlstm": lambda k: lj.init_minlstm(k, N, M, dtype=jnp.float64),
    "rglru": lambda k: lj.init_rglru(k, N, dtype=jnp.float64),
    "mlstm": lambda k: lj.init_mlstm(k, N, M, heads=N // 2, dtype=jnp.float64),
    "lstm-proj": lambda k: lj.init_lstmp(k, N, M, 2, dtype=jnp.float64),
}


@pytest.mark.parametrize("kind", lj.KINDS)
def test_step_jacobians_of_any_kind_multiply_to_the_padded_flow(kind):
    """step_jacobians(kind, ...) with seq_lengths: the product equals jacfwd of the truncated run (float64)."""
    cell = lj.cell_of(kind)
    p = _INIT[kind](jax.random.PRNGKey(5))
    m = cell.check(p)[2]
    xs = jax.random.normal(jax.random.PRNGKey(6), (T, m), jnp.float64)
    J = jax.jit(lambda x: lj.step_jacobians(kind, p, x, seq_lengths=6))(xs)
    rec = lio.RecurrentLayer("layer0.forward", kind, p, 0, False)
    d = cell.width * cell.check(p)[1]  # the state size (the mLSTM: its memory)

    def final(s0):
        f = lj.run_stack([rec], xs[:6], states0=[cell.from_blocks(tuple(jnp.split(s0, cell.width)))]).finals[0]
        return cell.flat(f)

    np.testing.assert_allclose(lj.jacobian_products(J)[-1], jax.jacfwd(final)(jnp.zeros(d)), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(J[6:], np.broadcast_to(np.eye(d), (T - 6, d, d)))


def test_run_stack_validates_and_promotes_states_and_inputs_like_the_single_runners():
    p = lj.init_lstm(jax.random.PRNGKey(0), N, M, dtype=jnp.float64)
    rec = lio.RecurrentLayer("layer0.forward", "lstm", p, 0, False)
    xs32 = jnp.ones((T, M), jnp.float32)
    out = lj.run_stack([rec], xs32, states0=[{"h": jnp.zeros(N), "c": jnp.zeros(N)}])  # a dict state, float32 inputs
    assert out.outputs.dtype == jnp.float64
    with pytest.raises(ValueError, match=r"states0\[0\].h has shape"):
        lj.run_stack([rec], xs32, states0=[lj.LSTMState(jnp.zeros(N + 1), jnp.zeros(N + 1))])
