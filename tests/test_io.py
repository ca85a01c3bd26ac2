"""lstm_jax.io.load_model: every accepted source, saved the way its users save it, gives the source library's outputs.

Real objects and real files: torch modules / state_dicts / .pt files (weights-only and pickled modules),
Flax linen variables and msgpack bytes/files, nnx modules and states, Equinox modules (and their
serialised leaves), lstm_jax .npz files and the params.npz of ``lstm-jax train``.  Tolerances: float32
1e-5 on outputs of order 1 (the libraries order the same float32 sums differently, eps32 = 1.2e-7 over
T = 8 steps); loading itself is exact (array_equal) where no arithmetic is involved.
"""

import json
import pathlib
import pickle
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
import lstm_jax.io as lio
from lstm_jax import cli
from lstm_jax.io import RecurrentModel

torch = pytest.importorskip("torch")
flax = pytest.importorskip("flax")
eqx = pytest.importorskip("equinox")
import flax.linen as nn  # noqa: E402
from flax import nnx  # noqa: E402
from flax import serialization  # noqa: E402

N, M, T = 4, 3, 8
ATOL = 1e-5
XS = np.array(jax.random.normal(jax.random.PRNGKey(0), (T, M)), np.float32)


class Wrapper(torch.nn.Module):
    """A user's model that holds two recurrent modules and a readout."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.LSTM(M, N, num_layers=2, bidirectional=True)
        self.decoder = torch.nn.GRU(2 * N, N)
        self.readout = torch.nn.Linear(N, 1)


def _same_params(a: RecurrentModel, b: RecurrentModel):
    assert (a.kind, a.n, a.m, a.num_layers, a.directions) == (b.kind, b.n, b.m, b.num_layers, b.directions)
    for ra, rb in zip(a.layers, b.layers):
        assert (ra.name, ra.kind, ra.layer, ra.reverse) == (rb.name, rb.kind, rb.layer, rb.reverse)
        for x, y in zip(ra.params, rb.params):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x, y)


def _torch_outputs(net, xs=XS):
    with torch.no_grad():
        return net(torch.from_numpy(xs))[0].numpy()


@pytest.fixture(scope="module")
def wrapper():
    torch.manual_seed(0)
    return Wrapper()


def test_torch_module_state_dict_and_files_load_the_same_model(wrapper, tmp_path):
    ref = lio.load_model(wrapper, layer="encoder")
    assert ref.source == "torch nn.LSTM 'encoder'" and [r.name for r in ref.layers] == [
        "layer0.forward", "layer0.reverse", "layer1.forward", "layer1.reverse"]
    np.testing.assert_allclose(lj.run_stack(ref.layers, jnp.asarray(XS)).outputs, _torch_outputs(wrapper.encoder), atol=ATOL)

    torch.save(wrapper.state_dict(), tmp_path / "sd.pt")
    torch.save({"model": wrapper.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    torch.save(wrapper, tmp_path / "full.pt")
    _same_params(ref, lio.load_model(wrapper.state_dict(), layer="encoder"))
    _same_params(ref, lio.load_model(tmp_path / "sd.pt", layer="encoder"))
    _same_params(ref, lio.load_model(str(tmp_path / "ckpt.pth"), layer="model.encoder"))
    _same_params(ref, lio.load_model(tmp_path / "full.pt", layer="encoder", allow_pickle=True))
    with pytest.raises(ValueError, match="allow_pickle=True"):
        lio.load_model(tmp_path / "full.pt", layer="encoder")
    with pytest.raises(ValueError, match=r"holds 2 recurrent modules \('encoder', 'decoder'\).*layer=NAME"):
        lio.load_model(wrapper)
    with pytest.raises(ValueError, match=r"layer='rnn' is not a recurrent module of source; it holds 'model.encoder', 'model.decoder'"):
        lio.load_model(tmp_path / "ckpt.pth", layer="rnn")
    gru = lio.load_model(tmp_path / "sd.pt", layer="decoder")
    assert gru.kind == "gru" and gru.m == 2 * N
    xs2 = np.array(jax.random.normal(jax.random.PRNGKey(1), (T, 2 * N)), np.float32)
    np.testing.assert_allclose(lj.run_gru(gru.layers[0].params, jnp.zeros(N), jnp.asarray(xs2))[1],
                               _torch_outputs(wrapper.decoder, xs2), atol=ATOL)


def test_safetensors_files_load_as_their_torch_state_dict_without_running_code(wrapper, tmp_path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in wrapper.state_dict().items()}, str(tmp_path / "model.safetensors"))
    st = lio.load_model(tmp_path / "model.safetensors", layer="encoder")
    _same_params(lio.load_model(wrapper, layer="encoder"), st)  # bit for bit the module's weights
    assert st.source == "torch state_dict 'encoder' from model.safetensors"
    np.testing.assert_allclose(lj.run_stack(st.layers, jnp.asarray(XS)).outputs, _torch_outputs(wrapper.encoder), atol=ATOL)
    # half precision (what silero and most hubs ship): promoted to float32, the same values
    torch.manual_seed(1)
    cell = torch.nn.LSTMCell(M, N)
    for dtype in (torch.float16, torch.bfloat16):
        half = {f"_model.decoder.rnn.{k}": v.to(dtype).contiguous() for k, v in cell.state_dict().items()}
        save_file(half, str(tmp_path / "half.safetensors"))
        got = lio.load_model(tmp_path / "half.safetensors")
        assert got.layers[0].params.W_f.dtype == jnp.float32 and got.source == (
            f"torch state_dict '_model.decoder.rnn' from half.safetensors ({str(dtype)[6:]} weights promoted to float32)")
        want = lio.load_model({k: v.float() for k, v in half.items()})
        _same_params(want, got)


class _Speech(torch.nn.Module):
    """A deployed model's shape: an encoder LSTM, a decoder cell (as silero-vad's), a readout."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.LSTM(M, N, num_layers=2, bidirectional=True)
        self.dec = torch.nn.LSTMCell(2 * N, N)
        self.out = torch.nn.Linear(N, 1)

    def forward(self, x):
        y, _ = self.enc(x)
        h, _ = self.dec(y[-1])
        return self.out(h)


def test_torchscript_archives_give_their_weights_without_running_their_code(tmp_path):
    torch.manual_seed(2)
    net = _Speech()
    torch.jit.save(torch.jit.script(net), tmp_path / "model.jit")
    torch.jit.save(torch.jit.trace(torch.nn.GRU(M, N), torch.zeros(T, 1, M)), tmp_path / "traced.pt")
    with pytest.raises(ValueError, match=r"holds 2 recurrent modules \('enc', 'dec'\)"):
        lio.load_model(tmp_path / "model.jit")
    enc = lio.load_model(tmp_path / "model.jit", layer="enc")
    _same_params(lio.load_model(net, layer="enc"), enc)  # bit for bit the scripted module's weights
    assert enc.source == "torch state_dict 'enc' from model.jit"
    np.testing.assert_allclose(lj.run_stack(enc.layers, jnp.asarray(XS)).outputs, _torch_outputs(net.enc), atol=ATOL)
    _same_params(lio.load_model(net, layer="dec"), lio.load_model(tmp_path / "model.jit", layer="dec"))
    gru = lio.load_model(tmp_path / "traced.pt")
    assert gru.kind == "gru" and gru.n == N
    torch.jit.save(torch.jit.script(torch.nn.LSTM(M, N).half()), tmp_path / "half.jit")
    half = lio.load_model(tmp_path / "half.jit")
    assert half.source.endswith("(float16 weights promoted to float32)") and half.layers[0].params.W_f.dtype == jnp.float32


def test_a_torchscript_archive_that_asks_for_other_code_is_refused_by_name(tmp_path):
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(torch.nn.LSTM(M, N)), tmp_path / "ok.jit")
    with zipfile.ZipFile(tmp_path / "ok.jit") as z:
        members = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in members if n.endswith("/data.pkl"))
    # a crafted data.pkl whose first global is os.system: refused before anything is called
    members[pkl] = pickle.dumps(__import__("os").system, protocol=2)
    with zipfile.ZipFile(tmp_path / "evil.jit", "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(ValueError, match=r"asks for (posix|os|nt)\.system, which lstm_jax does not resolve"):
        lio.load_model(tmp_path / "evil.jit")
    # a memo "bomb": one dict reached 2^60 ways and a self-referencing storage id are read in linear time
    x = {}
    for _ in range(60):
        x = {"a": x, "b": x}
    members[pkl] = pickle.dumps(x, protocol=2)
    with zipfile.ZipFile(tmp_path / "bomb.jit", "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="no recurrent module"):
        lio.load_model(tmp_path / "bomb.jit")
    assert time.perf_counter() - t0 < 10
    # a view that would read outside its storage (negative strides or offset, or past the end) is refused
    from lstm_jax.io import _torchscript as ts

    with zipfile.ZipFile(tmp_path / "ok.jit") as z:
        prefix = pkl[: -len("data.pkl")]
        for bad in (ts._TensorView("0", "float32", -4, (4, 3), (3, 1)), ts._TensorView("0", "float32", 0, (4, 3), (-3, 1)),
                    ts._TensorView("0", "float32", 0, (4000, 3), (3, 1))):
            with pytest.raises(ValueError, match="not a valid view|the tensor reads up to"):
                ts._materialise(z, prefix, bad, True)


def test_onnx_exports_of_torch_models_load_as_stacks_with_torchs_outputs(tmp_path):
    torch.manual_seed(3)
    lstm, gru = torch.nn.LSTM(M, N, num_layers=2, bidirectional=True), torch.nn.GRU(M, N)
    for net, name in ((lstm, "lstm.onnx"), (gru, "gru.onnx")):
        torch.onnx.export(net, (torch.zeros(T, 1, M),), tmp_path / name, dynamo=False)
    got = lio.load_model(tmp_path / "lstm.onnx")
    assert (got.kind, got.num_layers, got.directions) == ("lstm", 2, 2)  # two chained operators: one stack
    np.testing.assert_allclose(lj.run_stack(got.layers, jnp.asarray(XS)).outputs, _torch_outputs(lstm), atol=ATOL)
    _same_params(lio.load_model(lstm), got)  # the exporter's reordered gates, converted back bit for bit
    g = lio.load_model(tmp_path / "gru.onnx")
    np.testing.assert_allclose(lj.run_stack(g.layers, jnp.asarray(XS)).outputs, _torch_outputs(gru), atol=ATOL)


def _onnx_lstm(path, rng, dtype=np.float32, stored=None, **attrs):
    """An ONNX LSTM operator with random weights rounded to ``dtype``, stored as ``stored`` (default ``dtype``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(rng.normal(size=shape).astype(dtype).astype(stored or dtype), name) for name, shape in
             (("W", (1, 4 * N, M)), ("R", (1, 4 * N, N)), ("B", (1, 8 * N)))]
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=N, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, 1, M])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)
    return path


def test_onnx_gate_order_agrees_with_the_onnx_reference_evaluator(tmp_path):
    # independent of PyTorch's exporter: random W, R, B in ONNX's own i, o, f, c order, run by onnx itself
    from onnx.reference import ReferenceEvaluator

    path = _onnx_lstm(tmp_path / "lstm.onnx", np.random.default_rng(0))
    (Y,) = ReferenceEvaluator(str(path)).run(None, {"X": XS[:, None, :]})  # (T, D, B, n)
    got = lio.load_model(path)
    np.testing.assert_allclose(lj.run_stack(got.layers, jnp.asarray(XS)).outputs, Y[:, 0, 0], atol=ATOL)


class _Step(torch.nn.Module):
    """One step of a streaming model: an nn.LSTMCell."""

    def __init__(self):
        super().__init__()
        self.cell = torch.nn.LSTMCell(M, N)

    def forward(self, x, h, c):
        return self.cell(x, (h, c))


def test_an_lstm_cell_exported_as_primitive_operators_is_refused_as_holding_no_recurrent_operator(tmp_path):
    # this torch's exporter writes nn.LSTMCell as Gemm/Sigmoid/Tanh; the folded LSTM operator that older exporters
    # wrote (weights sliced and re-concatenated inside If branches) is tested on silero-vad's shipped files
    zeros = torch.zeros(1, N)
    torch.onnx.export(_Step(), (torch.zeros(1, M), zeros, zeros), tmp_path / "step.onnx", dynamo=False)
    with pytest.raises(ValueError, match="has no LSTM, GRU or RNN operator .*Gemm, Sigmoid, Tanh nodes"):
        lio.load_model(tmp_path / "step.onnx")


def test_onnx_weights_computed_from_graph_inputs_are_refused_and_half_weights_promoted(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=N)
    inputs = [helper.make_tensor_value_info(v, TensorProto.FLOAT, None) for v in ("X", "W", "R")]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), tmp_path / "dyn.onnx")
    with pytest.raises(ValueError, match=r"LSTM node .*its weight 'W' is computed in the graph \(from a graph input\)"):
        lio.load_model(tmp_path / "dyn.onnx")
    half = lio.load_model(_onnx_lstm(tmp_path / "half.onnx", np.random.default_rng(0), dtype=np.float16))
    assert half.source.endswith("(float16 weights promoted to float32)") and half.layers[0].params.W_f.dtype == jnp.float32
    _same_params(lio.load_model(_onnx_lstm(tmp_path / "full.onnx", np.random.default_rng(0), np.float16, np.float32)), half)


def _params_equal(a: RecurrentModel, b: RecurrentModel):
    assert (a.kind, a.n, a.m, a.num_layers, a.directions) == (b.kind, b.n, b.m, b.num_layers, b.directions)
    for ra, rb in zip(a.layers, b.layers):
        for x, y in zip(ra.params, rb.params):
            np.testing.assert_array_equal(x, y)


def test_silero_vads_shipped_jit_onnx_and_safetensors_files_are_read_directly_and_agree(tmp_path):
    # a production model nobody here wrote: silero-vad 6's TorchScript, ONNX and safetensors files as shipped
    silero = pytest.importorskip("silero_vad")
    import importlib.resources

    data = importlib.resources.files(silero) / "data"
    jit = lio.load_model(data / "silero_vad.jit", layer="_model.decoder.rnn")  # its 16 kHz decoder cell
    assert (jit.kind, jit.n, jit.m) == ("lstm", 128, 128) and jit.source == (
        "torch state_dict '_model.decoder.rnn' from silero_vad.jit")
    with pytest.raises(ValueError, match=r"holds 2 recurrent modules \('If_0_else_branch__Inline_0__decoder.rnn', "
                                         r"'If_0_then_branch__Inline_0__decoder.rnn'\)"):
        lio.load_model(data / "silero_vad.onnx")  # the 8 and 16 kHz models, each in a branch of an If
    _params_equal(jit, lio.load_model(data / "silero_vad.onnx", layer="If_0_then_branch__Inline_0__decoder.rnn"))
    _params_equal(jit, lio.load_model(data / "silero_vad_16k_op15.onnx"))
    from safetensors.torch import load_file  # its safetensors file holds other weights than the archive: read by torch

    st = lio.load_model(data / "silero_vad_16k.safetensors")
    assert (st.kind, st.n, st.m) == ("lstm", 128, 128)
    _params_equal(lio.load_model(load_file(str(data / "silero_vad_16k.safetensors"))), st)
    with pytest.raises(ValueError, match="has no LSTM, GRU or RNN operator .*Gemm, Sigmoid, Tanh nodes"):
        lio.load_model(data / "silero_vad_op18_ifless.onnx")
    # the weights run as silero's own cell does (loading the archive with torch runs its code: this file is trusted)
    cell = torch.jit.load(str(data / "silero_vad.jit"))._model.decoder.rnn
    xs = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (T, 128)), np.float32)
    h = c = torch.zeros(1, 128)
    want = []
    with torch.no_grad():
        for x in torch.from_numpy(xs):
            h, c = cell(x[None], (h, c))
            want.append(h[0].numpy())
    np.testing.assert_allclose(lj.run_stack(jit.layers, jnp.asarray(xs)).outputs, np.stack(want), atol=ATOL)


@pytest.mark.parametrize("attrs, message", [({"clip": 3.0}, "sets clip=3.0"), ({"input_forget": 1}, "sets input_forget=1"),
                                            ({"direction": "reverse"}, "runs in reverse only"),
                                            ({"activations": ["Sigmoid", "Relu", "Relu"]}, "uses activations")])
def test_onnx_options_lstm_jax_does_not_have_are_refused_by_name(tmp_path, attrs, message):
    path = _onnx_lstm(tmp_path / "x.onnx", np.random.default_rng(0), **attrs)
    with pytest.raises(ValueError, match=f"LSTM node .*{message}"):
        lio.load_model(path)


def test_onnx_gru_and_rnn_agree_with_the_onnx_reference_evaluator_and_the_other_gru_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(7)
    for op, G, attrs, kind in (("GRU", 3, {"linear_before_reset": 1}, "gru"), ("RNN", 1, {}, "rnn-tanh"),
                               ("RNN", 1, {"activations": ["Sigmoid"]}, "rnn-sigmoid")):
        inits = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name) for name, shape in
                 (("W", (1, G * N, M)), ("R", (1, G * N, N)), ("B", (1, 2 * G * N)))]
        node = helper.make_node(op, ["X", "W", "R", "B"], ["Y"], hidden_size=N, **attrs)
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, 1, M])],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=inits)
        path = tmp_path / f"{kind}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)
        got = lio.load_model(path)
        assert got.kind == kind
        if kind == "rnn-sigmoid":
            continue  # onnx's reference evaluator implements only Tanh for RNN: the kind is what is checked
        (Y,) = ReferenceEvaluator(str(path)).run(None, {"X": XS[:, None, :]})
        np.testing.assert_allclose(lj.run_stack(got.layers, jnp.asarray(XS)).outputs, Y[:, 0, 0], atol=ATOL)
        if op == "GRU":
            next(a for a in graph.node[0].attribute if a.name == "linear_before_reset").i = 0  # reset before R·h
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), tmp_path / "gru0.onnx")
            with pytest.raises(ValueError, match="linear_before_reset=0"):
                lio.load_model(tmp_path / "gru0.onnx")


@pytest.fixture(scope="module")
def keras():
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def test_keras_files_load_without_keras_and_reproduce_its_outputs(keras, tmp_path):
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((None, M)), L.LSTM(N, return_sequences=True, name="enc"),
                              L.Bidirectional(L.GRU(N, return_sequences=True), name="bi"),
                              L.SimpleRNN(N, return_sequences=True, name="srnn")])
    for layer in model.layers:  # nonzero biases, so that the bias layout is tested too
        layer.set_weights([w + 0.1 * np.random.default_rng(1).normal(size=w.shape) for w in layer.get_weights()])
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    x = XS[None]
    outs, h = {}, x
    for layer in model.layers:
        h = layer(h)
        outs[layer.name] = np.asarray(h)[0]
    ins = {"enc": XS, "bi": outs["enc"], "srnn": outs["bi"]}
    for name, kind in (("enc", "lstm"), ("bi", "gru"), ("srnn", "rnn-tanh")):
        got = lio.load_model(tmp_path / "m.keras", layer=name)
        assert got.kind == kind and got.source == f"Keras {name!r} from m.keras"
        np.testing.assert_allclose(lj.run_stack(got.layers, jnp.asarray(ins[name])).outputs, outs[name], atol=ATOL)
    # the bare weights file: the same weights (keys from the class names), defaults assumed and said
    bare = lio.load_model(tmp_path / "m.weights.h5", layer="lstm")
    _same_params(lio.load_model(tmp_path / "m.keras", layer="enc"), bare)
    assert "default activations assumed" in bare.source
    with pytest.raises(ValueError, match="plain RNN|kind"):
        lio.load_model(tmp_path / "m.weights.h5", layer="simple_rnn")
    # data outside the file (an external link to another HDF5 file) is refused, never followed
    import h5py

    with h5py.File(tmp_path / "m.weights.h5", "r+") as f:
        f["layers"]["lstm"].move("cell", "cell_moved")
        f["layers"]["lstm"]["cell"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/cell")
    with pytest.raises(ValueError, match="'cell' is an HDF5 ExternalLink; only data stored in the file itself"):
        lio.load_model(tmp_path / "m.weights.h5", layer="lstm")


def test_keras_layers_lstm_jax_does_not_have_are_refused_by_name(keras, tmp_path):
    L = keras.layers
    for layer, message in ((L.LSTM(N, activation="relu"), "activation 'relu'"),
                           (L.Bidirectional(L.LSTM(N), backward_layer=L.LSTM(N, activation="relu", go_backwards=True)),
                            r"\(backward layer\): activation 'relu'"),
                           (L.GRU(N, reset_after=False), "reset_after=False"),
                           (L.LSTM(N, go_backwards=True), "go_backwards=True")):
        model = keras.Sequential([keras.Input((None, M)), layer])
        model.save(tmp_path / "x.keras")
        with pytest.raises(ValueError, match=message):
            lio.load_model(tmp_path / "x.keras")


def test_safetensors_refusals_name_the_tensor_or_the_size(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    save_file({"rnn.weight_ih_l0": torch.zeros(4 * N, M, dtype=torch.int32),
               "rnn.weight_hh_l0": torch.zeros(4 * N, N)}, str(tmp_path / "int.safetensors"))
    with pytest.raises(ValueError, match=r"tensor 'rnn.weight_ih_l0' has dtype I32; recurrent weights are floating"):
        lio.load_model(tmp_path / "int.safetensors")
    save_file({k: v.contiguous() for k, v in torch.nn.LSTM(M, N).state_dict().items()}, str(tmp_path / "ok.safetensors"))
    from lstm_jax.io import _load

    monkeypatch.setattr(_load, "array_budget", lambda: 100)  # bytes: the limit, before any tensor is read
    with pytest.raises(ValueError, match=r"its recurrent tensors declares? 0.00 GiB of arrays; at most 0.00 GiB"):
        lio.load_model(tmp_path / "ok.safetensors")


def test_torch_rnn_and_cells(tmp_path):
    torch.manual_seed(1)
    rnn = torch.nn.RNN(M, N, num_layers=2)
    model = lio.load_model(rnn)
    assert model.kind == "rnn-tanh" and model.num_layers == 2
    np.testing.assert_allclose(lj.run_stack(model.layers, jnp.asarray(XS)).outputs, _torch_outputs(rnn), atol=ATOL)
    # a state_dict cannot say tanh or sigmoid: tanh (torch's only smooth choice) unless kind says otherwise
    assert lio.load_model(rnn.state_dict(), kind="rnn-sigmoid").kind == "rnn-sigmoid"
    cell = torch.nn.LSTMCell(M, N)
    p = lio.load_model(cell).layers[0].params
    h, c = torch.zeros(1, N), torch.zeros(1, N)
    hs = []
    with torch.no_grad():
        for x in torch.from_numpy(XS):
            h, c = cell(x[None], (h, c))
            hs.append(h[0].numpy())
    np.testing.assert_allclose(lj.run_lstm(p, lj.zero_state(N), jnp.asarray(XS))[1].h, np.stack(hs), atol=ATOL)


class _LinenModel(nn.Module):
    @nn.compact
    def __call__(self, xs):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        return nn.RNN(nn.GRUCell(N, **f64))(xs), nn.RNN(nn.LSTMCell(N, **f64))(xs)


def test_flax_linen_variables_and_msgpack_files(tmp_path):
    """float64 (the issue's 1e-12 bound): the same sums in another order, eps64 over T = 8 steps."""
    model = _LinenModel()
    xs = jnp.asarray(XS, jnp.float64)
    variables = model.init(jax.random.PRNGKey(2), xs[None])
    variables = jax.tree_util.tree_map(lambda a: a + 0.3 * jax.random.normal(jax.random.PRNGKey(a.size), a.shape, a.dtype), variables)
    gru_out, lstm_out = model.apply(variables, xs[None])
    (tmp_path / "vars.msgpack").write_bytes(serialization.to_bytes(variables))
    for source in (variables, serialization.to_bytes(variables), tmp_path / "vars.msgpack"):
        with pytest.raises(ValueError, match=r"'params.GRUCell_0', 'params.LSTMCell_0'"):
            lio.load_model(source)
        g = lio.load_model(source, layer="params.GRUCell_0")
        lstm = lio.load_model(source, layer="params.LSTMCell_0")
        np.testing.assert_allclose(lj.run_gru(g.layers[0].params, jnp.zeros(N, jnp.float64), xs)[1], gru_out[0],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(lj.run_lstm(lstm.layers[0].params, lj.zero_state(N, jnp.float64), xs)[1].h,
                                   lstm_out[0], rtol=0, atol=1e-12)


class _NnxModel(nnx.Module):
    def __init__(self, rngs):
        self.cell = nnx.LSTMCell(M, N, rngs=rngs)
        self.head = nnx.Linear(N, 1, rngs=rngs)


def test_flax_nnx_module_state_and_msgpack_of_the_pure_dict(tmp_path):
    module = _NnxModel(nnx.Rngs(3))
    for name in ("hi", "hf", "hg", "ho"):
        getattr(module.cell, name).bias.set_value(0.5 * jax.random.normal(jax.random.PRNGKey(ord(name[1])), (N,), jnp.float32))
    carry, hs, cs = (jnp.zeros(N), jnp.zeros(N)), [], []
    for x in XS:
        carry, h = module.cell(carry, jnp.asarray(x))
        hs.append(h)
        cs.append(carry[0])
    (tmp_path / "nnx.msgpack").write_bytes(serialization.to_bytes(nnx.to_pure_dict(nnx.state(module))))
    for source in (module, nnx.state(module), tmp_path / "nnx.msgpack"):
        p = lio.load_model(source).layers[0].params
        _, traj = lj.run_lstm(p, lj.zero_state(N), jnp.asarray(XS))
        np.testing.assert_allclose(traj.h, np.stack(hs), atol=ATOL)
        np.testing.assert_allclose(traj.c, np.stack(cs), atol=ATOL)


def test_flax_nnx_gru_has_no_hidden_candidate_bias_and_converts_exactly():
    cell = nnx.GRUCell(M, N, rngs=nnx.Rngs(4))
    cell.dense_i.bias.set_value(0.5 * jax.random.normal(jax.random.PRNGKey(5), (3 * N,), jnp.float32))
    h, hs = jnp.zeros(N), []
    for x in XS:
        h, _ = cell(h, jnp.asarray(x))
        hs.append(h)
    p = lio.from_flax_nnx(cell)
    assert not np.any(p.b_hn)
    np.testing.assert_allclose(lj.run_gru(p, jnp.zeros(N), jnp.asarray(XS))[1], np.stack(hs), atol=ATOL)
    with pytest.raises(ValueError, match="gate_fn"):
        lio.from_flax_nnx(nnx.GRUCell(M, N, gate_fn=jax.nn.hard_sigmoid, rngs=nnx.Rngs(0)))


class _EqxModel(eqx.Module):
    lstm: eqx.nn.LSTMCell
    gru: eqx.nn.GRUCell

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.lstm = eqx.nn.LSTMCell(M, N, key=k1)
        self.gru = eqx.nn.GRUCell(M, N, key=k2)


def test_equinox_module_with_cells_and_its_serialised_leaves(tmp_path):
    model = _EqxModel(jax.random.PRNGKey(6))
    eqx.tree_serialise_leaves(tmp_path / "m.eqx", model)
    restored = eqx.tree_deserialise_leaves(tmp_path / "m.eqx", _EqxModel(jax.random.PRNGKey(99)))
    h, hs = jnp.zeros(N), []
    for x in XS:
        h = model.gru(jnp.asarray(x), h)
        hs.append(h)
    for source in (model, restored):
        with pytest.raises(ValueError, match=r"\('lstm', 'gru'\)"):
            lio.load_model(source)
        g = lio.load_model(source, layer="gru")
        assert g.source.startswith("equinox GRUCell 'gru'")
        np.testing.assert_allclose(lj.run_gru(g.layers[0].params, jnp.zeros(N), jnp.asarray(XS))[1], np.stack(hs), atol=ATOL)


def test_lstm_jax_npz_round_trip_and_declared_shapes(tmp_path):
    torch.manual_seed(7)
    model = lio.load_model(torch.nn.GRU(M, N, num_layers=2, bidirectional=True).double())
    path = lio.save(tmp_path / "m.npz", model)
    back = lio.load(path)
    _same_params(model, back)
    assert back.source == model.source and back.layers[0].params.W_r.dtype == np.float64
    _same_params(model, lio.load_model(path))
    # a file whose arrays disagree with its header
    with zipfile.ZipFile(path) as z:
        arrays = {name[:-4]: np.load(z.open(name)) for name in z.namelist()}
    header = json.loads(bytes(arrays["__lstm_jax__"]).decode())
    header["arrays"]["layer0.forward.W_r"]["shape"] = [N, N + M + 1]
    arrays["__lstm_jax__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "lying.npz", **arrays)
    with pytest.raises(ValueError, match=r"'layer0.forward.W_r' has shape \(4, 7\) dtype float64, but the file declares shape \(4, 8\)"):
        lio.load(tmp_path / "lying.npz")
    arrays["layer0.forward.W_r"] = arrays["layer0.forward.W_r"].astype(np.float32)
    header["arrays"]["layer0.forward.W_r"]["shape"] = [N, N + M]
    arrays["__lstm_jax__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "lying.npz", **arrays)
    with pytest.raises(ValueError, match="dtype float32, but the file declares .* dtype float64"):
        lio.load(tmp_path / "lying.npz")
    # truncated / corrupt / pickled / foreign
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable .npz archive"):
        lio.load(tmp_path / "cut.npz")
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"pickled object array\), which lstm_jax never loads"):
        lio.load_model(tmp_path / "obj.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="no __lstm_jax__ header"):
        lio.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="without lstm_jax model arrays"):
        lio.load_model(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        lio.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("model_kind", ["lstm", "rnn-tanh"])
def test_the_params_npz_of_lstm_jax_train_loads(model_kind, tmp_path):
    """The file ``lstm-jax train`` writes (one real training step through the command line): pytree paths as
    keys (``['cell'].W_f``), the readout beside the cell, the run's ``log.json`` (its config) beside the file."""
    from lstm_jax.cli import main

    out = tmp_path / "run"
    assert main(["train", "--model", model_kind, "--n", str(N), "--T", "5", "--steps", "1", "--eval-every", "1",
                 "--batch", "4", "--out", str(out)]) == 0
    model = lio.load_model(out / "params.npz")
    assert (model.kind, model.n, model.m, model.num_layers) == (model_kind, N, 2, 1)
    assert model.source == "lstm-jax train checkpoint 'cell' from params.npz"
    raw = np.load(out / "params.npz")
    for field, value in model.layers[0].params._asdict().items():
        if value is not None:
            np.testing.assert_array_equal(value, raw[f"['cell'].{field}"])
    if model_kind != "lstm":
        (out / "log.json").unlink()  # without the config the activation of a plain RNN is unknown
        (out / "manifest.json").unlink()  # (a params.npz copied out of its output set alone)
        with pytest.raises(ValueError, match="pass kind='rnn-sigmoid' or kind='rnn-tanh'"):
            lio.load_model(out / "params.npz")
        assert lio.load_model(out / "params.npz", kind="rnn-sigmoid").kind == "rnn-sigmoid"


def test_importing_the_io_wing_imports_no_framework():
    """torch, flax and equinox are optional: imported only when one of their objects or files is read."""
    import subprocess
    import sys

    code = "import sys, lstm_jax.io; print(sorted(m for m in ('torch', 'flax', 'equinox') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_state_dict_and_checkpoint_pt_files_are_read_without_torch_and_equal_torch_loads_reading(wrapper, tmp_path):
    """A ``torch.save`` zip of tensors in dicts is read by the restricted unpickler, in a process where ``import
    torch`` fails: the same weights, bit for bit, and names as ``torch.load``'s dicts give (here, with torch
    imported); a half-precision state_dict is promoted and says so; a pickled module still needs torch and the
    opt-in."""
    import subprocess
    import sys

    torch.save(wrapper.state_dict(), tmp_path / "sd.pt")
    torch.save({"model": wrapper.state_dict(), "epoch": 3, "optimizer": {"lr": 0.1, "steps": [1, 2]}},
               tmp_path / "ckpt.pth")
    torch.save(torch.nn.LSTM(M, N).half().state_dict(), tmp_path / "half.pt")
    torch.save(wrapper, tmp_path / "full.pt")
    code = ("import sys; sys.modules['torch'] = None\n"  # import torch raises ImportError
            "import numpy as np, lstm_jax.io as lio\n"
            "d = sys.argv[1]\n"
            "a, b = lio.load_model(d + '/sd.pt', layer='encoder'), lio.load_model(d + '/ckpt.pth', layer='model.decoder')\n"
            "h = lio.load_model(d + '/half.pt')\n"
            "np.savez(d + '/got.npz', *[np.asarray(x) for m in (a, b) for l in m.layers for x in l.params if x is not None])\n"
            "print(a.source); print(b.source); print(h.source, h.layers[0].params.W_f.dtype)\n"
            "try:\n    lio.load_model(d + '/full.pt')\nexcept ModuleNotFoundError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).resolve().parents[1])
    lines = out.stdout.strip().splitlines()
    assert lines[:3] == ["torch state_dict 'encoder' from sd.pt", "torch state_dict 'model.decoder' from ckpt.pth",
                         "torch state_dict from half.pt (float16 weights promoted to float32) float32"]
    assert lines[3].startswith("reading ") and "needs PyTorch" in lines[3]
    want = [np.asarray(x) for m in (lio.load_model(wrapper, layer="encoder"), lio.load_model(wrapper, layer="decoder"))
            for l in m.layers for x in l.params if x is not None]
    got = np.load(tmp_path / "got.npz")
    assert len(got.files) == len(want)
    for i, w in enumerate(want):
        np.testing.assert_array_equal(got[f"arr_{i}"], w)


@pytest.mark.parametrize(
    "source,error,message",
    [
        (None, TypeError, "source is None; expected a torch nn.LSTM"),
        (3, TypeError, "source is builtins.int; expected"),
        ([1, 2], TypeError, "source is builtins.list; expected"),
        (torch.nn.Linear(2, 2), ValueError, r"source \(torch.nn.modules.linear.Linear\) holds no LSTM/GRU/RNN"),
        (torch.zeros(2, 3), TypeError, r"source is a torch tensor of shape \(2, 3\), not a model"),
        (b"\x00\x01garbage", ValueError, "is not a flax.serialization msgpack file"),
        ({"weight": np.zeros(3)}, ValueError, "holds no LSTM/GRU/RNN"),
    ],
)
def test_wrong_objects_say_what_was_found_and_what_is_accepted(source, error, message):
    with pytest.raises(error, match=message):
        lio.load_model(source)


def test_wrong_arguments_and_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="source: no such file"):
        lio.load_model(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="is a folder; expected a regular file"):
        lio.load_model(tmp_path)
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(ValueError, match=r"zip archive that cannot be opened \(truncated or corrupt\)"):
        lio.load_model(tmp_path / "cut.pt")
    with pytest.raises(ValueError, match="kind must be one of"):
        lio.load_model(torch.nn.GRU(M, N), kind="lstm-peephole")
    with pytest.raises(ValueError, match="kind='lstm' but the weights have the shapes of a GRU"):
        lio.load_model(torch.nn.GRU(M, N).state_dict(), kind="lstm")
    with pytest.raises(ValueError, match="layer must be in 0..0"):
        lio.from_torch(torch.nn.LSTMCell(M, N), layer=1)
    with pytest.raises(ValueError, match=r"weight_hh \(16, 3\); expected \(4n, m\) and \(4n, p\) = \(16, m\) and \(16, 2\)"):
        sd = torch.nn.LSTM(M, N, proj_size=2).state_dict()
        lio.load_model({**sd, "weight_hh_l0": torch.zeros(4 * N, 3)})
    with pytest.raises(ValueError, match="RNNParams do not say their activation"):
        lio.load_model(lj.init_rnn(jax.random.PRNGKey(0), N, M))


class _Streaming(torch.nn.Module):
    """A streaming model: features by a ReLU layer, then an LSTMCell called once per frame (as silero-vad's)."""

    def __init__(self):
        super().__init__()
        self.feat = torch.nn.Linear(M, N)
        self.rnn = torch.nn.LSTMCell(N, N)

    def forward(self, frames):  # (B, T, M)
        h = c = torch.zeros(frames.shape[0], N)
        for t in range(frames.shape[1]):
            h, c = self.rnn(torch.relu(self.feat(frames[:, t])), (h, c))
        return h


def test_capture_inputs_records_what_the_layer_receives_in_the_users_model(tmp_path, capsys):
    torch.manual_seed(4)
    frames = torch.randn(2, T, M)
    stream = _Streaming()
    cap = lio.capture_inputs(stream, "rnn", frames)
    with torch.no_grad():  # frame by frame, as the model computes them (a (B, T, M) GEMM rounds differently)
        want = torch.stack([torch.relu(stream.feat(frames[:, t])) for t in range(T)], dim=1).numpy()
    np.testing.assert_array_equal(cap.xs, want)  # the ReLU features, not the raw frames
    assert "training mode" in cap.description and "training mode" not in lio.capture_inputs(stream.eval(), "rnn", frames).description
    assert cap.lengths.tolist() == [T, T] and cap.calls == T and "stitched into sequences" in cap.description
    # a model that reuses one input buffer for every frame, and one that calls its layer by keyword
    class Reuse(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.buf = torch.nn.LSTMCell(M, N), torch.zeros(2, M)

        def forward(self, frames):
            for t in range(frames.shape[1]):
                self.buf.copy_(frames[:, t])
                self.rnn(input=self.buf)

    np.testing.assert_array_equal(lio.capture_inputs(Reuse(), "rnn", frames).xs, frames.numpy())
    # a sequence module: (T, B, m) input, and a packed batch of two lengths
    seq = torch.nn.Sequential()
    seq.add_module("lstm", torch.nn.LSTM(M, N))
    x = torch.randn(T, 3, M)
    cap = lio.capture_inputs(seq, "lstm", x)
    np.testing.assert_array_equal(cap.xs, x.transpose(0, 1).numpy())
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, [T, 5, 2], enforce_sorted=False)
    cap = lio.capture_inputs(seq, "lstm", packed)
    assert cap.lengths.tolist() == [T, 5, 2] and not cap.xs[2, 2:].any()
    with pytest.raises(ValueError, match=r"layer='feat' is not a recurrent submodule of the model; it has \['rnn'\]"):
        lio.capture_inputs(stream, "feat", frames)
    # what diagnose reads: the captured inputs through --data/--lengths
    cap = lio.capture_inputs(stream, "rnn", frames)
    np.save(tmp_path / "x.npy", cap.xs)
    torch.save(stream.state_dict(), tmp_path / "sd.pt")
    code = cli.main(["diagnose", str(tmp_path / "sd.pt"), "--layer", "rnn", "--data", str(tmp_path / "x.npy"),
                      "--no-baseline", "--k", "2", "--out", str(tmp_path / "d")])
    assert code == 0
    d = json.loads((tmp_path / "d" / "diagnosis.json").read_text())
    assert d["inputs"]["source"] == "x.npy" and (d["inputs"]["batch"], d["inputs"]["T"]) == (2, T)
    assert "Note:" not in (tmp_path / "d" / "report.html").read_text() and "Gaussian noise" not in capsys.readouterr().out
    # generated inputs: the CLI and the report say in one line that they may not be the model's
    assert cli.main(["diagnose", str(tmp_path / "sd.pt"), "--layer", "rnn", "--T", "10", "--batch", "1",
                      "--no-baseline", "--k", "2", "--out", str(tmp_path / "g")]) == 0
    assert "may not resemble what the model sees in use" in capsys.readouterr().out
    assert "capture_inputs" in (tmp_path / "g" / "report.html").read_text()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_projected_2_layer_bidirectional_torch_lstm_is_read_exactly_from_module_state_dict_and_file(dtype, tmp_path):
    """nn.LSTM(proj_size=p): every layer's outputs equal torch's (float32 1e-5, float64 1e-12 relative), from the
    module, its state_dict and a saved .pt file; the next layer reads 2 p inputs."""
    torch.manual_seed(3)
    net = torch.nn.LSTM(M, N, num_layers=2, bidirectional=True, proj_size=2)
    net = net.double() if dtype == "float64" else net
    xs = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (9, M)), dtype)
    ref = net(torch.from_numpy(xs))[0].detach().numpy()
    torch.save(net.state_dict(), tmp_path / "proj.pt")
    for src in (net, net.state_dict(), tmp_path / "proj.pt"):
        model = lio.load_model(src)
        assert model.kind == "lstm-proj" and model.num_layers == 2 and model.directions == 2 and model.n == N
        assert model.layers[2].params.W_f.shape == (N, 2 * 2 + 2)  # [h (p = 2); x (2 directions x p)]
        got = np.asarray(lj.run_stack(model.layers, jnp.asarray(xs)).outputs)
        tol = 1e-5 if dtype == "float32" else 1e-12
        assert np.linalg.norm(got - ref) <= tol * np.linalg.norm(ref)


def test_a_projected_lstm_saved_by_torch_is_diagnosed_by_the_cli(tmp_path):
    from lstm_jax import cli

    torch.manual_seed(5)
    torch.save(torch.nn.LSTM(M, N, proj_size=3).state_dict(), tmp_path / "proj.pt")
    out = tmp_path / "diag"
    assert cli.main(["diagnose", str(tmp_path / "proj.pt"), "--T", "30", "--batch", "2", "--out", str(out)]) == 0
    doc = json.loads((out / "diagnosis.json").read_text())
    assert doc["layers"][0]["kind"] == "lstm-proj" and (out / "report.html").exists()
