"""The modern cells against their reference implementations.

sLSTM and mLSTM: the ``xlstm`` package's pure-PyTorch recurrences (the ``compare`` extra), each test stating how the
layouts convert.

RG-LRU: RecurrentGemma's JAX layer (google-deepmind/recurrentgemma, ``recurrentgemma.jax.layers.RGLRU``, a Flax
module) with its block-diagonal gate weights placed on the diagonal blocks of lstm_jax's dense ``(n, n)`` gates
(``w (heads, n/h, n/h)`` is the transpose of each block), ``a_param`` as ``Lambda``; float32 outputs within 1e-5.
RecurrentGemma resets the state where ``segment_pos == 0`` and then leaves the input unscaled; lstm_jax models one
document, so the reference is called with positions 1..T (no reset) from a zero cache.  The package pins
``numpy < 2.4`` (this project needs 2.4.6), so it is in no extra: install it with
``pip install --no-deps recurrentgemma einops jaxtyping 'typeguard<3' sentencepiece``; without it the test is skipped.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax



def _block_diagonal(w: np.ndarray, b: np.ndarray):
    """RecurrentGemma's ``BlockDiagonalLinear`` (``y_h = x_h @ w[h] + b[h]`` per head) as a dense ``(n, n)`` matrix
    acting as ``W @ x`` and a bias ``(n,)``."""
    heads, k, _ = w.shape
    W = np.zeros((heads * k, heads * k), w.dtype)
    for h in range(heads):
        W[h * k:(h + 1) * k, h * k:(h + 1) * k] = w[h].T
    return W, b.reshape(-1)


@pytest.mark.parametrize("heads", [1, 4])
def test_rglru_equals_recurrentgemma_s_jax_layer_on_its_own_initialisation(heads):
    layers = pytest.importorskip("recurrentgemma.jax.layers")
    n, B, T = 16, 3, 50
    ref = layers.RGLRU(width=n, num_heads=heads, param_dtype=jnp.float32)
    x = jax.random.normal(jax.random.PRNGKey(1), (B, T, n), jnp.float32)
    pos = jnp.broadcast_to(jnp.arange(1, T + 1), (B, T))
    variables = ref.init(jax.random.PRNGKey(0), x, pos)
    # trained-like gates: RecurrentGemma initialises the biases to zero; move them so they are exercised too
    params = jax.tree_util.tree_map(np.asarray, variables["params"])
    rng = np.random.default_rng(2)
    params["a_gate"]["b"] = rng.normal(size=params["a_gate"]["b"].shape).astype(np.float32)
    params["input_gate"]["b"] = rng.normal(size=params["input_gate"]["b"].shape).astype(np.float32)
    y_ref, last = ref.apply({"params": params}, x, pos, jnp.zeros((B, n), jnp.float32))

    W_a, b_a = _block_diagonal(params["a_gate"]["w"], params["a_gate"]["b"])
    W_x, b_x = _block_diagonal(params["input_gate"]["w"], params["input_gate"]["b"])
    p = lstm_jax.RGLRUParams(jnp.asarray(W_a), jnp.asarray(W_x), jnp.asarray(b_a), jnp.asarray(b_x),
                             jnp.asarray(params["a_param"]))
    h0 = jnp.zeros((n,), jnp.float32)
    ours = jax.vmap(lambda xs: lstm_jax.run_cell("rglru", p, h0, xs)[1])(x)
    scale = float(jnp.max(jnp.abs(y_ref)))
    assert scale > 0.1  # the comparison is not between two near-zero outputs
    np.testing.assert_allclose(np.asarray(ours), np.asarray(y_ref), atol=1e-5 * max(1.0, scale), rtol=0)
    np.testing.assert_allclose(np.asarray(ours[:, -1]), np.asarray(last), atol=1e-5 * max(1.0, scale), rtol=0)
    # the parallel form gives the same outputs
    par = jax.vmap(lambda xs: lstm_jax.parallel_run_linear("rglru", p, h0, xs))(x)
    np.testing.assert_allclose(np.asarray(par), np.asarray(y_ref), atol=1e-5 * max(1.0, scale), rtol=0)


@pytest.mark.parametrize("heads", [1, 4])
def test_slstm_equals_xlstm_s_vanilla_slstm_forward(heads):
    """sLSTM against the ``xlstm`` package's pure-PyTorch recurrence (``xlstm.blocks.slstm.src.vanilla.slstm_forward``
    with its ``slstm`` pointwise function): lstm_jax's ``W_g x`` as its ``Wx`` (gate-major, order i, f, z, o), the
    biases likewise, and each head's blocks stacked as its ``R[k] = [R_i[k]; R_f[k]; R_z[k]; R_o[k]]``
    (``(4 n/H, n/H)``, acting as ``R[k] @ h_k``).  Random recurrent blocks (xLSTM initialises them to zero, which
    would leave the layout untested); float64, every state (h, c, n, m) at every step within 1e-12."""
    torch = pytest.importorskip("torch")
    vanilla = pytest.importorskip("xlstm.blocks.slstm.src.vanilla")
    n, m, B, T = 8, 5, 3, 40
    F64 = jnp.float64
    p = lstm_jax.init_slstm(jax.random.PRNGKey(0), n, m, heads=heads, dtype=F64)
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    p = p._replace(**{f"R_{g}": 0.5 * jax.random.normal(k, getattr(p, f"R_{g}").shape, F64)
                      for g, k in zip("ifzo", keys)})
    xs = jax.random.normal(jax.random.PRNGKey(2), (B, T, m), F64)
    s0 = lstm_jax.cell_of("slstm").zero(n, F64)
    ours = jax.vmap(lambda x: lstm_jax.run_cell("slstm", p, s0, x)[1])(xs)  # SLSTMState of (B, T, n)

    Wx = np.concatenate([np.einsum("btm,nm->tbn", np.asarray(xs), np.asarray(getattr(p, f"W_{g}"))) for g in "ifzo"],
                        axis=-1)  # (T, B, 4n)
    R = np.concatenate([np.asarray(getattr(p, f"R_{g}")) for g in "ifzo"], axis=1)  # (H, 4 n/H, n/H)
    b = np.concatenate([np.asarray(getattr(p, f"b_{g}")) for g in "ifzo"])
    states_all, _, _ = vanilla.slstm_forward(torch.from_numpy(Wx), torch.zeros(4, B, n, dtype=torch.float64),
                                             torch.from_numpy(R), torch.from_numpy(b),
                                             vanilla.slstm_pointwise_function_registry["slstm"])
    ref = states_all[:, 1:].numpy()  # (4, T, B, n): y, c, n, m
    for j, name in enumerate(("h", "c", "n", "m")):
        got = np.swapaxes(np.asarray(getattr(ours, name)), 0, 1)
        np.testing.assert_allclose(got, ref[j], rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("heads", [1, 2])
def test_mlstm_equals_xlstm_s_parallel_and_recurrent_backends(heads):
    """mLSTM against the ``xlstm`` package's backends (``xlstm.blocks.mlstm.backends``): its parallel stabilised form
    and its recurrent stabilised step, given lstm_jax's q, k, v and gate pre-activations per head (the reference
    divides k by sqrt(d) itself: it gets ``W_k x + sqrt(d) b_k``), with ``eps = 0`` (the reference adds 1e-6 to its
    stabilised denominator; lstm_jax has no such term); lstm_jax's readout ``o * C q / max(|n^T q|, 1)`` against
    ``o * h~`` of the reference, ``o`` from the same parameters.  Random gate weights and biases (xLSTM initialises
    ``w_i = w_f = 0``); float64, within 1e-12 relative."""
    torch = pytest.importorskip("torch")
    backends = pytest.importorskip("xlstm.blocks.mlstm.backends")
    n, m, B, T = 8, 5, 2, 30
    F64 = jnp.float64
    d = n // heads
    p = lstm_jax.init_mlstm(jax.random.PRNGKey(0), n, m, heads=heads, dtype=F64)
    k = jax.random.split(jax.random.PRNGKey(1), 8)
    p = p._replace(w_i=0.5 * jax.random.normal(k[0], p.w_i.shape, F64), w_f=jax.random.normal(k[1], p.w_f.shape, F64),
                   b_q=0.3 * jax.random.normal(k[2], (n,), F64), b_k=0.3 * jax.random.normal(k[3], (n,), F64),
                   b_v=0.3 * jax.random.normal(k[4], (n,), F64), b_o=jax.random.normal(k[5], (n,), F64))
    xs = jax.random.normal(jax.random.PRNGKey(2), (B, T, m), F64)
    cell = lstm_jax.cell_of("mlstm")
    w = cell.weights(p)
    s0 = cell.zero(cell.check(p)[1], F64)
    ours = np.asarray(jax.vmap(lambda x: cell.outputs(w, lstm_jax.run_cell("mlstm", p, s0, x)[1], x))(xs))

    P = {f: np.asarray(getattr(p, f)) for f in p._fields}
    X = np.asarray(xs)

    def heads_of(W, b):  # (B, T, n) -> (B, H, T, d)
        return torch.from_numpy((X @ W.T + b).reshape(B, T, heads, d).transpose(0, 2, 1, 3).copy())

    q = heads_of(P["W_q"], P["b_q"])
    kk = heads_of(P["W_k"], np.sqrt(d) * P["b_k"])
    v = heads_of(P["W_v"], P["b_v"])
    ig = torch.from_numpy((X @ P["w_i"].T + P["b_i"]).transpose(0, 2, 1)[..., None].copy())  # (B, H, T, 1)
    fg = torch.from_numpy((X @ P["w_f"].T + P["b_f"]).transpose(0, 2, 1)[..., None].copy())
    o = 1 / (1 + np.exp(-(X @ P["W_o"].T + P["b_o"])))

    def readout(h):  # (B, H, T, d) -> o * h as (B, T, n)
        return o * h.numpy().transpose(0, 2, 1, 3).reshape(B, T, n)

    par = readout(backends.parallel_stabilized_simple(q, kk, v, ig, fg, eps=0.0))
    c, nn, mm = (torch.zeros(B, heads, d, d, dtype=torch.float64), torch.zeros(B, heads, d, 1, dtype=torch.float64),
                 torch.zeros(B, heads, 1, 1, dtype=torch.float64))
    steps = []
    for t in range(T):
        h, (c, nn, mm) = backends.recurrent_step_stabilized_simple(
            c, nn, mm, q[:, :, t:t + 1].clone(), kk[:, :, t:t + 1].clone(), v[:, :, t:t + 1].clone(),
            ig[:, :, t:t + 1], fg[:, :, t:t + 1], eps=0.0)
        steps.append(h)
    rec = readout(torch.cat(steps, dim=2))
    assert np.max(np.abs(ours)) > 0.1
    np.testing.assert_allclose(ours, par, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours, rec, rtol=1e-12, atol=1e-12)
