r"""The recurrent layers of an ONNX model: its ``LSTM``, ``GRU`` and ``RNN`` operators and their weights.

Read with the ``onnx`` package (a protobuf; nothing runs).  Each operator holds ``W (D, G·n, m)``,
``R (D, G·n, n)`` and ``B (D, 2·G·n)`` (``D = 2`` when ``direction="bidirectional"``, direction 1 the reverse
one), taken from the graph's initializers or ``Constant`` nodes, and is converted exactly to the PyTorch layout
that :func:`lstm_jax.io.from_torch_arrays` reads (ONNX operator spec, opset 7–22):

* LSTM: ONNX gate order ``i, o, f, c`` → PyTorch ``i, f, g, o``; ``B = [W_b, R_b]`` → ``bias_ih, bias_hh``;
* GRU: ONNX order ``z, r, h`` → PyTorch ``r, z, n``; only ``linear_before_reset = 1`` is PyTorch's (and
  lstm_jax's) cell — the other GRU applies the reset gate before the recurrent product and is refused;
* RNN: one block; its activation (``Tanh`` or ``Sigmoid``) gives the kind.

Weights are found wherever the exporter put them: graph initializers, ``Constant`` nodes, the subgraphs of
``If``/``Loop``/``Scan`` nodes (silero-vad's decoder sits in the branches of an ``If`` on the sampling rate and
on whether a state was passed), and chains of pure data-movement nodes over those constants (``Slice``,
``Concat``, ``Unsqueeze``, ``Squeeze``, ``Reshape``, ``Transpose``, ``Gather``, ``Cast``, ``Identity``: what
``torch.onnx.export`` writes for an ``nn.LSTMCell``, whose ``i, f, g, o`` blocks it slices and re-concatenates
into ONNX's order).  Such a chain is evaluated by ``onnx.reference.ReferenceEvaluator`` on the constants alone;
any other node, or a graph input, on the way to a weight is refused (the weight is computed, not stored).
Operators whose weights are folded from the same named tensors (the several branches of one cell) are one
module, named after those tensors (``model.decoder.rnn`` for ``model.decoder.rnn.weight_ih``).

Refused with the reason: ``clip``, ``input_forget``, peepholes (LSTM input ``P``), activations other than the
defaults, weights that are neither stored nor folded from stored tensors, and external-data tensors (their
files are not followed).  A model whose recurrence is written as primitive operators (``MatMul``/``Gemm``,
``Sigmoid``, ``Tanh``; silero-vad's ``op18_ifless`` file) holds no recurrent operator and is refused as such.

Operators whose input is computed from the previous operator's output through shape-only
nodes (``Transpose``, ``Reshape``, ``Squeeze``, ``Unsqueeze``, ``Identity``) and that have the same kind,
hidden size and directions form one stack (``layer0``, ``layer1``, …), as ``torch.onnx.export`` writes a
multi-layer ``nn.LSTM``; otherwise each operator is a module of its own, named after the node.
"""

from __future__ import annotations

import re

import numpy as np

_SHAPE_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity")
#: nodes that only move or retype stored values: a weight reached through them is folded (module docstring)
_FOLDABLE = _SHAPE_OPS + ("Slice", "Concat", "Gather", "Cast", "Constant")
#: the longest chain of such nodes folded for one weight (silero-vad's W and R need 5, its B 10)
_MAX_CHAIN = 256
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
    """``[(name, rnn_kind | None, {key: array}, promoted)]``: each recurrent module of the ONNX model at ``path``
    as a flat PyTorch ``state_dict`` (``weight_ih_l{k}[_reverse]`` …); ``rnn_kind`` is the plain RNN's activation
    kind, ``promoted`` the set of half-precision dtypes (``"float16"``) promoted to float32."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ValueError(f"{argument}: {path} is an ONNX model; reading it needs the onnx package (pip install onnx)") from None
    what = f"{argument}: {str(path)!r}"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ValueError(f"{what} is not a readable ONNX model ({type(e).__name__}: {e})") from None
    graphs = list(_graphs(model.graph))
    consts, producer = {}, {}
    for g in graphs:
        for t in g.initializer:
            consts[t.name] = t
        for node in g.node:
            for out in node.output:
                producer[out] = node
            if node.op_type == "Constant" and node.output:
                value = _attrs(node).get("value")
                if value is not None:
                    consts[node.output[0]] = value
    opsets = list(model.opset_import)

    def stored(name: str, node) -> np.ndarray:
        t = consts[name]
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(f"{what}: weight {name!r} is stored in an external file, which is not followed")
        return numpy_helper.to_array(t)

    def array(name: str, node) -> tuple:
        """The weight ``name`` of ``node`` as a float array, and the stored tensors it was read from."""
        if name in consts:
            a, sources = stored(name, node), (name,)
        else:  # a chain of data-movement nodes over constants, evaluated by onnx's reference evaluator
            chain, sources, todo = {}, set(), [name]
            while todo:
                v = todo.pop()
                if v in consts:
                    sources.add(v)
                    continue
                p = producer.get(v)
                if p is None or p.op_type not in _FOLDABLE or len(chain) > _MAX_CHAIN:
                    why = ("a graph input" if p is None else f"a {p.op_type} node" if p.op_type not in _FOLDABLE
                           else f"more than {_MAX_CHAIN} data-movement nodes")
                    raise ValueError(f"{what}: {node.op_type} node {node.name!r}: its weight {name!r} is computed "
                                     f"in the graph (from {why}), not stored; lstm_jax reads weights stored as "
                                     f"initializers or constants, or moved by {', '.join(_FOLDABLE)} nodes")
                if id(p) not in chain:
                    chain[id(p)] = p
                    todo.extend(i for i in p.input if i)
            order = [p for g in graphs for p in g.node if id(p) in chain]  # each graph's nodes are sorted
            inits = [numpy_helper.from_array(stored(c, node), c) for c in sorted(sources)]
            # the weights' own tensors, not the slicing indices: they name and identify the module
            sources = {c for c in sources if np.issubdtype(helper.tensor_dtype_to_np_dtype(consts[c].data_type),
                                                            np.floating)}
            graph = helper.make_graph(order, "weight", [], [helper.make_empty_tensor_value_info(name)],
                                      initializer=inits)
            from onnx.reference import ReferenceEvaluator

            a = np.asarray(ReferenceEvaluator(helper.make_model(graph, opset_imports=opsets)).run(None, {})[0])
            sources = tuple(sorted(sources))
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{what}: weight {name!r} has dtype {a.dtype}; recurrent weights are floating point")
        if a.dtype.itemsize < 4:
            halves.add(str(a.dtype))
        return a.astype(np.float64 if a.dtype == np.float64 else np.float32), sources

    layers = []  # (node, op, n, D, rnn_kind, {key-without-layer: array}, stored tensors, promoted dtypes)
    for node in (nd for g in graphs for nd in g.node):
        halves = set()
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
        (W, w_from), (R, r_from) = array(node.input[1], node), array(node.input[2], node)
        G = len(_TO_TORCH[op])
        n = R.shape[-1]
        B, b_from = (array(node.input[3], node) if len(node.input) > 3 and node.input[3]
                     else (np.zeros((W.shape[0], 2 * G * n), W.dtype), ()))
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
        layers.append((node, op, n, D, rnn_kind, flat, w_from + r_from + b_from, halves))

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
    seen = set()  # the stored tensors of every operator taken: the branches of one cell are one module
    for i, (node, op, n, D, rnn_kind, flat, sources, halves) in enumerate(layers):
        prev = layers[i - 1] if i else None
        if sources and sources in seen:
            continue
        seen.add(sources)
        if prev is not None and (prev[1], prev[2], prev[3], prev[4]) == (op, n, D, rnn_kind) and feeds_from(node, prev[0]):
            modules[-1][2].append(flat)
            modules[-1][3].update(halves)
        else:
            modules.append((_module_name(node, sources) or f"{op.lower()}{i}", rnn_kind, [flat], set(halves)))
    if not modules:
        ops = sorted({nd.op_type for g in graphs for nd in g.node} & {"MatMul", "Gemm", "Sigmoid", "Tanh"})
        raise ValueError(f"{what} has no LSTM, GRU or RNN operator" + (
            f" (its {', '.join(ops)} nodes may write a recurrence as primitive operators, which is not read)"
            if ops else "") + "; lstm_jax reads the recurrent operators, as torch.onnx.export writes nn.LSTM/GRU/"
                              "RNN and their cells")
    out = []
    for name, rnn_kind, flats, promoted in modules:
        sd = {f"{name}.{key.format(k=f'_l{k}')}": a for k, flat in enumerate(flats) for key, a in flat.items()}
        out.append((name, rnn_kind, sd, promoted))
    return out


def _graphs(graph):
    """``graph`` and, depth first, the subgraphs of its ``If``/``Loop``/``Scan`` nodes."""
    import onnx

    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(a.g)
            for g in a.graphs:
                yield from _graphs(g)


def _module_name(node, sources: tuple) -> str:
    """A folded cell's name from its stored tensors (``model.decoder.rnn`` for ``model.decoder.rnn.weight_ih``,
    PyTorch's names, which the exporter keeps), else the operator node's name."""
    stems = {re.sub(r"\.(weight|bias)_(ih|hh)(_l\d+)?(_reverse)?$", "", s) for s in sources}
    if len(stems) == 1 and len(sources) > 1 and all(re.search(r"\.(weight|bias)_(ih|hh)", s) for s in sources):
        return stems.pop()
    return node.name
