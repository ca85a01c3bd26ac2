r"""The recurrent layers of an ONNX model: its ``LSTM``, ``GRU`` and ``RNN`` operators and their weights.

Read with the ``onnx`` package (a protobuf; nothing runs).  Each operator holds ``W (D, G·n, m)``,
``R (D, G·n, n)`` and ``B (D, 2·G·n)`` (``D = 2`` when ``direction="bidirectional"``, direction 1 the reverse
one), taken from the graph's initializers or ``Constant`` nodes, and is converted exactly to the PyTorch layout
that :func:`lstm_jax.io.from_torch_arrays` reads (ONNX operator spec, opset 7–22):

* LSTM: ONNX gate order ``i, o, f, c`` → PyTorch ``i, f, g, o``; ``B = [W_b, R_b]`` → ``bias_ih, bias_hh``;
* GRU: ONNX order ``z, r, h`` → PyTorch ``r, z, n``; only ``linear_before_reset = 1`` is PyTorch's (and
  lstm_jax's) cell — the other GRU applies the reset gate before the recurrent product and is refused;
* RNN: one block; its activation (``Tanh`` or ``Sigmoid``) gives the kind.

Refused with the reason: ``clip``, ``input_forget``, peepholes (LSTM input ``P``), activations other than the
defaults, weights that are neither initializers nor constants, and external-data tensors (their files are
not followed).  Operators whose input is computed from the previous operator's output through shape-only
nodes (``Transpose``, ``Reshape``, ``Squeeze``, ``Unsqueeze``, ``Identity``) and that have the same kind,
hidden size and directions form one stack (``layer0``, ``layer1``, …), as ``torch.onnx.export`` writes a
multi-layer ``nn.LSTM``; otherwise each operator is a module of its own, named after the node.
"""

from __future__ import annotations

import numpy as np

_SHAPE_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity")
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
#: ONNX block order -> PyTorch block order (indices into the ONNX blocks)
_TO_TORCH = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _reorder(w: np.ndarray, op: str) -> np.ndarray:
    blocks = np.split(w, len(_TO_TORCH[op]), axis=0)
    return np.concatenate([blocks[i] for i in _TO_TORCH[op]], axis=0)


def onnx_recurrences(path, argument: str) -> list:
    """``[(name, rnn_kind | None, {key: array})]``: each recurrent module of the ONNX model at ``path`` as a flat
    PyTorch ``state_dict`` (``weight_ih_l{k}[_reverse]`` …); ``rnn_kind`` is the plain RNN's activation kind."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ValueError(f"{argument}: {path} is an ONNX model; reading it needs the onnx package (pip install onnx)") from None
    what = f"{argument}: {str(path)!r}"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ValueError(f"{what} is not a readable ONNX model ({type(e).__name__}: {e})") from None
    graph = model.graph
    consts = {}
    for t in graph.initializer:
        consts[t.name] = t
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = _attrs(node).get("value")
            if value is not None:
                consts[node.output[0]] = value
    producer = {out: node for node in graph.node for out in node.output}

    def array(name: str, node) -> np.ndarray:
        t = consts.get(name)
        if t is None:
            raise ValueError(f"{what}: {node.op_type} node {node.name!r}: its weight {name!r} is computed in the graph, "
                             "not stored (only initializers and Constant nodes are read)")
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(f"{what}: weight {name!r} is stored in an external file, which is not followed")
        a = numpy_helper.to_array(t)
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{what}: weight {name!r} has dtype {a.dtype}; recurrent weights are floating point")
        return a.astype(np.float64 if a.dtype == np.float64 else np.float32)

    layers = []  # (node, op, n, D, rnn_kind, {key-without-layer: array})
    for node in graph.node:
        op = node.op_type
        if op not in _TO_TORCH:
            continue
        at = _attrs(node)
        label = f"{what}: {op} node {node.name!r}"
        for bad in ("clip", "input_forget"):
            if at.get(bad):
                raise ValueError(f"{label} sets {bad}={at[bad]!r}, which is not the LSTM/GRU/RNN of lstm_jax")
        if op == "LSTM" and len(node.input) > 7 and node.input[7]:
            raise ValueError(f"{label} has peepholes (input P), which lstm_jax's LSTM does not have")
        acts = [a.decode() if isinstance(a, bytes) else a for a in at.get("activations", [])]
        direction = at.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
        if direction not in ("forward", "reverse", "bidirectional"):
            raise ValueError(f"{label}: direction {direction[:30]!r} is not one of the operator's")
        D = 2 if direction == "bidirectional" else 1
        if direction == "reverse":
            raise ValueError(f"{label} runs in reverse only; lstm_jax reads forward and bidirectional operators")
        rnn_kind = None
        if op == "RNN":
            act = (acts or ["Tanh"])[0]
            if any(a != act for a in acts) or act not in ("Tanh", "Sigmoid"):
                raise ValueError(f"{label} uses activations {acts}; lstm_jax reads Tanh or Sigmoid RNNs")
            rnn_kind = "rnn-tanh" if act == "Tanh" else "rnn-sigmoid"
        elif acts and acts != _DEFAULT_ACTS[op] * (len(acts) // len(_DEFAULT_ACTS[op])):
            raise ValueError(f"{label} uses activations {acts}; lstm_jax reads the defaults {_DEFAULT_ACTS[op]}")
        if op == "GRU" and at.get("linear_before_reset", 0) != 1:
            raise ValueError(f"{label} has linear_before_reset=0 (the reset gate applied before the recurrent "
                             "product); lstm_jax's GRU is PyTorch's, linear_before_reset=1")
        W, R = array(node.input[1], node), array(node.input[2], node)
        G = len(_TO_TORCH[op])
        n = R.shape[-1]
        B = array(node.input[3], node) if len(node.input) > 3 and node.input[3] else np.zeros((W.shape[0], 2 * G * n), W.dtype)
        if W.ndim != 3 or W.shape[0] != D or R.shape != (W.shape[0], G * n, n) or W.shape[1] != G * n or B.shape != (W.shape[0], 2 * G * n):
            raise ValueError(f"{label}: weights W {W.shape}, R {R.shape}, B {B.shape} are not the operator's "
                             f"(D, {G}·n, m), (D, {G}·n, n), (D, {2 * G}·n)")
        flat = {}
        for d in range(W.shape[0]):
            suffix = "_reverse" if d == 1 else ""
            flat[f"weight_ih{{k}}{suffix}"] = _reorder(W[d], op)
            flat[f"weight_hh{{k}}{suffix}"] = _reorder(R[d], op)
            flat[f"bias_ih{{k}}{suffix}"] = _reorder(B[d, : G * n], op)
            flat[f"bias_hh{{k}}{suffix}"] = _reorder(B[d, G * n:], op)
        layers.append((node, op, n, D, rnn_kind, flat))

    def feeds_from(node, prev) -> bool:
        name, seen = node.input[0], 0
        while name in producer and seen < 32:
            p = producer[name]
            if p is prev:
                return True
            if p.op_type not in _SHAPE_OPS:
                return False
            name, seen = p.input[0], seen + 1
        return False

    modules = []  # [(name, rnn_kind, [layer flats])]
    for i, (node, op, n, D, rnn_kind, flat) in enumerate(layers):
        prev = layers[i - 1] if i else None
        if prev is not None and (prev[1], prev[2], prev[3], prev[4]) == (op, n, D, rnn_kind) and feeds_from(node, prev[0]):
            modules[-1][2].append(flat)
        else:
            modules.append((node.name or f"{op.lower()}{i}", rnn_kind, [flat]))
    out = []
    for name, rnn_kind, flats in modules:
        sd = {f"{name}.{key.format(k=f'_l{k}')}": a for k, flat in enumerate(flats) for key, a in flat.items()}
        out.append((name, rnn_kind, sd))
    return out
