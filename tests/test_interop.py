"""Weight import from Flax (linen, nnx), Equinox and PyTorch: identical outputs on identical inputs.

float32 throughout (the other libraries' default); tolerance 1e-5 absolute on values of order 1 — the
libraries order the same float32 sums differently (eps32 = 1.2e-7 per operation, T = 20 steps).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
import lstm_jax.io as lio

flax_linen = pytest.importorskip("flax.linen")
nnx = pytest.importorskip("flax.nnx")
eqx = pytest.importorskip("equinox")
torch = pytest.importorskip("torch")

N, M, T = 5, 3, 20
ATOL = 1e-5
XS = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (T, M), jnp.float32))
H0 = np.asarray(0.3 * jax.random.normal(jax.random.PRNGKey(1), (N,), jnp.float32))
C0 = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (N,), jnp.float32))


def _ours(params, h0=H0, c0=C0, xs=XS):
    _, traj = lj.run_lstm(params, lj.LSTMState(jnp.asarray(h0), jnp.asarray(c0)), jnp.asarray(xs))
    return np.asarray(traj.h), np.asarray(traj.c)


def _randomise(tree, key):
    """Non-trivial values in every leaf (flax initialises biases to zero)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [0.5 * jax.random.normal(k, l.shape, l.dtype) for k, l in zip(keys, leaves)])


@pytest.mark.parametrize("cls", ["LSTMCell", "OptimizedLSTMCell"])
def test_flax_linen_cells_give_identical_trajectories(cls):
    cell = getattr(flax_linen, cls)(features=N)
    variables = _randomise(cell.init(jax.random.PRNGKey(3), (jnp.zeros(N), jnp.zeros(N)), jnp.zeros(M)),
                           jax.random.PRNGKey(4))
    carry, hs, cs = lio.state_to_flax(lj.LSTMState(jnp.asarray(H0), jnp.asarray(C0))), [], []
    for x in XS:
        carry, h = cell.apply(variables, carry, jnp.asarray(x))
        hs.append(h)
        cs.append(lio.state_from_flax(carry).c)
    h_ours, c_ours = _ours(lio.from_flax_linen(variables))
    np.testing.assert_allclose(h_ours, np.stack(hs), atol=ATOL)
    np.testing.assert_allclose(c_ours, np.stack(cs), atol=ATOL)


def test_flax_linen_round_trip_is_exact():
    p = lj.init_lstm(jax.random.PRNGKey(5), N, M, forget_bias=1.0)
    back = lio.from_flax_linen(lio.to_flax_linen(p))
    for a, b in zip(p, back):
        np.testing.assert_array_equal(a, b)


def test_flax_nnx_cell_gives_identical_trajectories():
    cell = nnx.LSTMCell(M, N, rngs=nnx.Rngs(0))
    for name in ("hi", "hf", "hg", "ho"):
        lin = getattr(cell, name)
        lin.bias.set_value(0.5 * jax.random.normal(jax.random.PRNGKey(len(name) + ord(name[1])), (N,), jnp.float32))
    carry, hs, cs = (jnp.asarray(C0), jnp.asarray(H0)), [], []
    for x in XS:
        carry, h = cell(carry, jnp.asarray(x))
        hs.append(h)
        cs.append(lio.state_from_flax(carry).c)
    h_ours, c_ours = _ours(lio.from_flax_nnx(cell))
    np.testing.assert_allclose(h_ours, np.stack(hs), atol=ATOL)
    np.testing.assert_allclose(c_ours, np.stack(cs), atol=ATOL)


def test_equinox_cell_gives_identical_trajectories_and_round_trips():
    cell = eqx.nn.LSTMCell(M, N, key=jax.random.PRNGKey(6))
    state, hs, cs = (jnp.asarray(H0), jnp.asarray(C0)), [], []
    for x in XS:
        state = cell(jnp.asarray(x), state)
        hs.append(state[0])
        cs.append(state[1])
    p = lio.from_equinox(cell)
    h_ours, c_ours = _ours(p)
    np.testing.assert_allclose(h_ours, np.stack(hs), atol=ATOL)
    np.testing.assert_allclose(c_ours, np.stack(cs), atol=ATOL)
    back = lio.to_equinox(p, lio.to_equinox(lj.init_lstm(jax.random.PRNGKey(9), N, M), cell))  # via other weights
    np.testing.assert_array_equal(back.weight_ih, cell.weight_ih)
    np.testing.assert_array_equal(back.weight_hh, cell.weight_hh)
    np.testing.assert_array_equal(back.bias, cell.bias)


def test_equinox_gru_cell_gives_identical_trajectories_and_round_trips():
    cell = eqx.nn.GRUCell(M, N, key=jax.random.PRNGKey(10))
    h, hs = jnp.asarray(H0), []
    for x in XS:
        h = cell(jnp.asarray(x), h)
        hs.append(h)
    p = lio.from_equinox(cell)
    np.testing.assert_allclose(lj.run_gru(p, jnp.asarray(H0), jnp.asarray(XS))[1], np.stack(hs), atol=ATOL)
    back = lio.to_equinox(p, lio.to_equinox(lj.init_gru(jax.random.PRNGKey(11), N, M), cell))
    for name in ("weight_ih", "weight_hh", "bias", "bias_n"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cell, name), err_msg=name)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_torch_lstm_gives_identical_outputs_per_layer_with_summed_biases(num_layers):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(M, N, num_layers=num_layers)
    h0 = torch.tensor(np.stack([H0] * num_layers))
    c0 = torch.tensor(np.stack([C0] * num_layers))
    with torch.no_grad():
        out, (hT, cT) = lstm(torch.tensor(XS), (h0, c0))
    layers = lio.from_torch_layers(lstm)
    inputs = XS
    for k, p in enumerate(layers):
        hs, cs = _ours(p, xs=inputs)
        np.testing.assert_allclose(cs[-1], cT[k].numpy(), atol=ATOL)
        np.testing.assert_allclose(hs[-1], hT[k].numpy(), atol=ATOL)
        inputs = hs
    np.testing.assert_allclose(inputs, out.numpy(), atol=ATOL)
    # round trip through a state_dict
    sd = {k: torch.as_tensor(v) for k, v in lio.to_torch_state_dict(layers).items()}
    other = torch.nn.LSTM(M, N, num_layers=num_layers)
    other.load_state_dict(sd)
    with torch.no_grad():
        out2, _ = other(torch.tensor(XS), (h0, c0))
    np.testing.assert_allclose(out2.numpy(), out.numpy(), atol=ATOL)


def test_torch_unsupported_variants_are_rejected():
    with pytest.raises(ValueError, match="nonlinearity='relu'"):
        lio.from_torch(torch.nn.RNN(M, N, nonlinearity="relu"))
    with pytest.raises(ValueError, match="bidirectional"):
        lio.from_torch_layers(torch.nn.LSTM(M, N, bidirectional=True))
    with pytest.raises(ValueError, match="layer must be in 0..0"):
        lio.from_torch(torch.nn.LSTM(M, N), layer=1)


def test_jacobians_of_an_imported_torch_lstm_equal_torch_autograd():
    """float64: d(h_T, c_T)/d(h_0, c_0) of torch's own LSTM (torch.autograd) equals the product of our analytic
    step Jacobians of the imported model (1e-10, the issue's bound), and the step Jacobian equals jax.jacfwd."""
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(M, N).double()
    xs = torch.from_numpy(np.asarray(XS, np.float64))

    def final(h0, c0):
        _, (hT, cT) = lstm(xs, (h0[None], c0[None]))
        return torch.cat([hT[0], cT[0]])

    s0 = (torch.from_numpy(np.asarray(H0, np.float64)), torch.from_numpy(np.asarray(C0, np.float64)))
    dh, dc = torch.autograd.functional.jacobian(final, s0)
    p = lio.from_torch(lstm)
    state0 = lj.LSTMState(jnp.asarray(s0[0].numpy()), jnp.asarray(s0[1].numpy()))
    J = lj.lstm_step_jacobians(p, state0, jnp.asarray(xs.numpy()))
    product = lj.jacobian_products(J)[-1]
    np.testing.assert_allclose(product[:, :N], dh.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(product[:, N:], dc.numpy(), rtol=0, atol=1e-10)
    step = jax.jacfwd(lj.lstm_flow_map(p, jnp.asarray(xs.numpy())[:1]))(jnp.concatenate(state0))
    np.testing.assert_allclose(J[0], step, rtol=0, atol=1e-12)
