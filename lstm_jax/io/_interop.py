r"""Weight import from (and export to) Flax, Equinox and PyTorch: LSTM, GRU and plain RNN cells.

**LSTM.**  All four libraries compute the same cell as lstm_jax (gates on ``h_{t-1}`` and
``x_t``, :math:`c_t = f\odot c_{t-1} + i\odot g`, :math:`h_t = o\odot\tanh(c_t)`); they differ in layout:

=====================  ==================================  ============  ===========
library                parameters                          gate order    carry
=====================  ==================================  ============  ===========
lstm_jax               ``W_g (n, n+m)`` on ``[h, x]``      f, i, c̃, o    ``(h, c)``
flax.linen LSTMCell,   ``{h,i}{i,f,g,o}/kernel (in, n)``,  per name      ``(c, h)``
OptimizedLSTMCell      bias on the ``h*`` Dense only
flax.nnx LSTMCell      same names, ``if_`` for ``if``      per name      ``(c, h)``
equinox LSTMCell       ``weight_ih (4n, m)``,              i, f, g, o    ``(h, c)``
                       ``weight_hh (4n, n)``, ``bias (4n)``
torch.nn.LSTM          ``weight_ih_l{k} (4n, m)``,         i, f, g, o    ``(h, c)``
                       ``weight_hh_l{k}``, two biases
=====================  ==================================  ============  ===========

**GRU.**  lstm_jax uses PyTorch's convention (:mod:`lstm_jax._gru`):
:math:`n_t = \tanh(V_n x + b_{in} + r\odot(U_n h + b_{hn}))`, :math:`h_t = (1-z)\odot n + z\odot h_{t-1}`.
Read from the installed sources (flax 0.12, equinox 0.13), every library puts the reset gate in
the same place -- *after* the hidden matmul -- and uses the same update rule (Equinox writes it
``n + z (h - n)``), so every import is exact; they differ only in which biases exist:

=====================  ==============================================  ===============================
library                parameters                                      biases → lstm_jax
=====================  ==============================================  ===============================
torch.nn.GRU           ``weight_ih (3n, m)``, ``weight_hh (3n, n)``,   ``b_r = b_ir + b_hr``,
                       ``bias_ih``, ``bias_hh`` (3n), rows r, z, n     ``b_in = b_in``, ``b_hn = b_hn``
flax.linen GRUCell     ``ir, iz, in`` (kernel + bias),                 ``b_hn`` = ``hn`` bias
                       ``hr, hz`` (kernel), ``hn`` (kernel + bias)
flax.nnx GRUCell       ``dense_i`` (kernel ``(m, 3n)`` + bias),        no hidden bias: ``b_hn = 0``
                       ``dense_h`` (kernel ``(n, 3n)``, no bias)
equinox GRUCell        ``weight_ih (3n, m)``, ``weight_hh (3n, n)``,   ``bias`` on the input side,
                       ``bias (3n)``, ``bias_n (n)``                   ``b_hn = bias_n``
=====================  ==============================================  ===============================

A Flax cell built with a ``gate_fn``/``activation_fn`` other than sigmoid/tanh is refused (not
representable).  **Plain RNN**: ``torch.nn.RNN(nonlinearity="tanh")`` maps to
:class:`~lstm_jax.RNNParams` with ``b = b_ih + b_hh`` and kind ``"rnn-tanh"``; ``"relu"`` is refused.

The importers read arrays by duck typing (no framework is imported to *read*); torch's paired biases
are summed where they act only as a sum.  Every diagnostic of this package then applies to the
imported model, e.g. ``lstm_step_jacobians(from_torch(lstm), ...)``.  Whole models (stacked,
bidirectional, inside containers, in files): :func:`lstm_jax.io.load_model`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

import lstm_jax as lj
from lstm_jax import GRUParams, LSTMParams, LSTMState, RNNParams

#: lstm_jax gate -> the letter the other libraries use
_LETTER = {"f": "f", "i": "i", "c": "g", "o": "o"}
_TORCH_ORDER = ("i", "f", "g", "o")  # also equinox's order of the 4n rows
_GATES_PER_KIND = {4: "lstm", 3: "gru", 1: "rnn"}


def _arr(x: Any, dtype=None) -> jnp.ndarray:
    if hasattr(x, "get_value"):  # flax.nnx.Variable (newer API)
        x = x.get_value()
    elif hasattr(x, "value") and not hasattr(x, "shape"):  # flax.nnx.Variable (older API)
        x = x.value
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.float16", "torch.bfloat16"):
            x = x.float()
        x = x.numpy()
    return jnp.asarray(np.asarray(x), dtype=dtype)


def _checked(kind: str, params, name: str):
    return lj.check_recurrent_params(kind, params, name)[0]


# --------------------------------------------------------------------------- torch / equinox layouts


def _from_split(w_ih, w_hh, bias, n: int) -> LSTMParams:
    """LSTM from (4n, m), (4n, n), (4n,) or None in torch/equinox gate order i, f, g, o."""
    if w_ih.ndim != 2 or w_ih.shape[0] != 4 * n or w_hh.shape != (4 * n, n):
        raise ValueError(
            f"input-hidden weights have shape {w_ih.shape} and hidden-hidden {w_hh.shape}; "
            f"expected (4n, m) and (4n, n) with n = {n} for an LSTM"
        )
    block = {letter: k for k, letter in enumerate(_TORCH_ORDER)}
    rows = lambda a, letter: a[block[letter] * n:(block[letter] + 1) * n]  # noqa: E731
    Ws, bs = {}, {}
    for g, letter in _LETTER.items():
        Ws[f"W_{g}"] = jnp.concatenate([rows(w_hh, letter), rows(w_ih, letter)], axis=1)
        bs[f"b_{g}"] = None if bias is None else rows(bias, letter)
    return _checked("lstm", LSTMParams(**Ws, **bs), "LSTM weights")


def _lstmp_from_split(w_ih, w_hh, w_hr, b_ih, b_hh, kind) -> "lj.LSTMPParams":
    """Projected LSTM from torch's ``weight_ih (4n, m)``, ``weight_hh (4n, p)``, ``weight_hr (p, n)``, biases ``(4n,)``."""
    if kind not in (None, "lstm-proj"):
        raise ValueError(f"kind={kind!r} but the weights hold weight_hr {w_hr.shape}: an LSTM with proj_size, kind "
                         "'lstm-proj'")
    if w_hr.ndim != 2 or not 1 <= w_hr.shape[0] < w_hr.shape[1]:
        raise ValueError(f"weight_hr has shape {w_hr.shape}; expected (p, n) with 1 <= p < n (torch's proj_size < "
                         "hidden_size)")
    p, n = w_hr.shape
    if w_hh.shape != (4 * n, p) or w_ih.ndim != 2 or w_ih.shape[0] != 4 * n or w_ih.shape[1] < 1:
        raise ValueError(f"weight_ih has shape {w_ih.shape} and weight_hh {w_hh.shape}; expected (4n, m) and (4n, p) = "
                         f"({4 * n}, m) and ({4 * n}, {p}) for weight_hr {w_hr.shape}")
    for label, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b is not None and _arr(b).shape != (4 * n,):
            raise ValueError(f"{label} has shape {_arr(b).shape}; expected ({4 * n},) for weight_hr {w_hr.shape}")
    bias = None if b_ih is None and b_hh is None else sum(_arr(b) for b in (b_ih, b_hh) if b is not None)
    block = {letter: k for k, letter in enumerate(_TORCH_ORDER)}
    rows = lambda a, letter: a[block[letter] * n:(block[letter] + 1) * n]  # noqa: E731
    Ws = {f"W_{g}": jnp.concatenate([rows(w_hh, letter), rows(w_ih, letter)], axis=1) for g, letter in _LETTER.items()}
    bs = {f"b_{g}": None if bias is None else rows(bias, letter) for g, letter in _LETTER.items()}
    return _checked("lstm-proj", lj.LSTMPParams(**Ws, W_hr=jnp.asarray(w_hr), **bs), "projected LSTM weights")


def _gru_from_split(w_ih, w_hh, b_i, b_h, n: int) -> GRUParams:
    """GRU from (3n, m), (3n, n) and input/hidden biases (3n,) or None, rows r, z, n (torch, equinox).

    ``b_h`` may also be an ``(n,)`` bias of the hidden candidate part only (equinox's ``bias_n``).
    """
    if w_ih.ndim != 2 or w_ih.shape[0] != 3 * n or w_hh.shape != (3 * n, n):
        raise ValueError(
            f"input-hidden weights have shape {w_ih.shape} and hidden-hidden {w_hh.shape}; "
            f"expected (3n, m) and (3n, n) with n = {n} for a GRU"
        )
    part = lambda a, k: None if a is None else a[k * n:(k + 1) * n]  # noqa: E731
    W = [jnp.concatenate([part(w_hh, k), part(w_ih, k)], axis=1) for k in range(3)]
    if b_h is not None and b_h.shape == (n,):
        b_h = jnp.concatenate([jnp.zeros((2 * n,), b_h.dtype), b_h])
    zero = lambda a, b: a if b is None else (b if a is None else a + b)  # noqa: E731
    b_r = zero(part(b_i, 0), part(b_h, 0))
    b_z = zero(part(b_i, 1), part(b_h, 1))
    return _checked("gru", GRUParams(*W, b_r, b_z, part(b_i, 2), part(b_h, 2)), "GRU weights")


def _rnn_from_split(w_ih, w_hh, b_i, b_h) -> RNNParams:
    b = None if b_i is None and b_h is None else sum(v for v in (b_i, b_h) if v is not None)
    return _checked("rnn-tanh", RNNParams(w_hh, w_ih, b), "RNN weights")


def from_torch_arrays(w_ih, w_hh, b_ih=None, b_hh=None, *, kind: str | None = None, weight_hr=None) -> tuple[str, Any]:
    """One torch layer/direction (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``) → ``(kind, params)``.

    The kind follows from the rows of ``weight_hh``: ``4n`` LSTM, ``3n`` GRU, ``n`` plain RNN; a plain RNN's
    weights do not record its nonlinearity (torch's ``nn.RNN`` may be tanh or relu), so ``kind``
    (``"rnn-tanh"`` or ``"rnn-sigmoid"``) is required for one; a ``kind`` that contradicts the shapes is an
    error.  Every shape is checked (``weight_ih (G n, m)``, ``weight_hh (G n, n)``, biases ``(G n,)``, ``n, m >= 1``)
    with a message naming the tensor, its shape and the expected one.  ``weight_hr`` ``(p, n)`` (``nn.LSTM(proj_size=p)``)
    makes it a projected LSTM (kind ``"lstm-proj"``, :class:`~lstm_jax.LSTMPParams`; ``weight_hh`` then ``(4n, p)``).
    """
    w_ih, w_hh = _arr(w_ih), _arr(w_hh)
    if weight_hr is not None:
        return "lstm-proj", _lstmp_from_split(w_ih, w_hh, _arr(weight_hr), b_ih, b_hh, kind)
    if w_hh.ndim != 2 or w_ih.ndim != 2:
        raise ValueError(f"weight_ih / weight_hh must be matrices, got shapes {w_ih.shape} / {w_hh.shape}")
    n = w_hh.shape[1]
    if n < 1 or w_ih.shape[1] < 1:
        raise ValueError(f"weight_hh has shape {w_hh.shape} and weight_ih {w_ih.shape}: hidden size n and input "
                         f"size m must be >= 1")
    found = _GATES_PER_KIND.get(w_hh.shape[0] // n if w_hh.shape[0] % n == 0 else 0)
    if found is None:
        raise ValueError(f"weight_hh has shape {w_hh.shape}: expected (4n, n) LSTM, (3n, n) GRU or (n, n) RNN")
    rows = w_hh.shape[0]
    if w_ih.shape[0] != rows:
        raise ValueError(f"weight_ih has shape {w_ih.shape}; expected ({rows}, m) to match weight_hh {w_hh.shape}")
    if kind is not None and not (kind == found or (found == "rnn" and kind.startswith("rnn-"))):
        raise ValueError(f"kind={kind!r} but the weights have the shapes of a {found.upper()} "
                         f"(weight_hh {w_hh.shape} with n = {n})")
    if found == "rnn" and kind is None:
        raise ValueError(f"weight_hh has shape {w_hh.shape}: a plain RNN, whose weights do not record its "
                         f"nonlinearity (torch.nn.RNN may be tanh or relu): pass kind='rnn-tanh' (CLI: --kind "
                         f"rnn-tanh) for a tanh RNN; ReLU RNNs are not supported")
    b_ih = None if b_ih is None else _arr(b_ih)
    b_hh = None if b_hh is None else _arr(b_hh)
    for label, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b is not None and b.shape != (rows,):
            raise ValueError(f"{label} has shape {b.shape}; expected ({rows},) for weight_hh {w_hh.shape}")
    if found == "lstm":
        bias = None if b_ih is None and b_hh is None else sum(b for b in (b_ih, b_hh) if b is not None)
        return "lstm", _from_split(w_ih, w_hh, bias, n)
    if found == "gru":
        return "gru", _gru_from_split(w_ih, w_hh, b_ih, b_hh, n)
    return kind, _rnn_from_split(w_ih, w_hh, b_ih, b_hh)


def _torch_recurrent_kind(module: Any) -> str:
    """The kind of a torch recurrent module (LSTM/GRU/RNN or their cells); errors for unsupported variants."""
    cls = type(module).__name__
    if getattr(module, "proj_size", 0):
        return "lstm-proj"
    nl = getattr(module, "nonlinearity", "tanh")
    if nl != "tanh":
        raise ValueError(f"torch.nn.{cls} with nonlinearity={nl!r} is not supported: lstm_jax's plain RNN "
                         f"uses tanh or sigmoid")
    return {"LSTM": "lstm", "LSTMCell": "lstm", "GRU": "gru", "GRUCell": "gru", "RNN": "rnn-tanh",
            "RNNCell": "rnn-tanh"}[cls]


def _split(p: LSTMParams, n: int):
    by_letter = {letter: g for g, letter in _LETTER.items()}
    W = [getattr(p, f"W_{by_letter[letter]}") for letter in _TORCH_ORDER]
    B = [getattr(p, f"b_{by_letter[letter]}") for letter in _TORCH_ORDER]
    bias = jnp.concatenate([jnp.zeros((n,), W[0].dtype) if b is None else b for b in B])
    return jnp.concatenate([w[:, n:] for w in W]), jnp.concatenate([w[:, :n] for w in W]), bias


def to_torch_state_dict(layers: Sequence[Any]) -> dict:
    """A ``state_dict`` for ``torch.nn.LSTM`` / ``GRU`` ``(num_layers=len(layers))`` (NumPy arrays; wrap with ``torch.as_tensor``).

    LSTM: the combined bias goes to ``bias_ih``, ``bias_hh`` is zero.  GRU: ``b_r, b_z, b_in`` go to
    ``bias_ih``, ``b_hn`` to the candidate rows of ``bias_hh`` (exact).
    """
    out = {}
    for k, params in enumerate(layers):
        if isinstance(params, GRUParams):
            p, n, _ = lj.check_recurrent_params("gru", params, f"layers[{k}]")
            z = jnp.zeros((n,), p.W_r.dtype)
            val = lambda b: z if b is None else b  # noqa: E731
            W = (p.W_r, p.W_z, p.W_n)
            ih = jnp.concatenate([w[:, n:] for w in W])
            hh = jnp.concatenate([w[:, :n] for w in W])
            b_ih = jnp.concatenate([val(p.b_r), val(p.b_z), val(p.b_in)])
            b_hh = jnp.concatenate([z, z, val(p.b_hn)])
        else:
            p, n, _ = lj.check_recurrent_params("lstm", params, f"layers[{k}]")
            ih, hh, b_ih = _split(p, n)
            b_hh = jnp.zeros_like(b_ih)
        out[f"weight_ih_l{k}"], out[f"weight_hh_l{k}"] = np.array(ih), np.array(hh)
        out[f"bias_ih_l{k}"], out[f"bias_hh_l{k}"] = np.array(b_ih), np.array(b_hh)
    return out


# --------------------------------------------------------------------------- Flax


def _flax_gate_fns(cell: Any, what: str) -> None:
    import jax

    gate, act = getattr(cell, "gate_fn", jax.nn.sigmoid), getattr(cell, "activation_fn", jnp.tanh)
    if gate is not jax.nn.sigmoid or act is not jnp.tanh:
        raise ValueError(f"{what} uses gate_fn={getattr(gate, '__name__', gate)}, activation_fn="
                         f"{getattr(act, '__name__', act)}: only sigmoid gates and tanh are representable")


def _flax_lstm(p: Mapping) -> LSTMParams:
    Ws, bs = {}, {}
    for g, letter in _LETTER.items():
        hk = p.get("h" + letter)
        ik = p.get("i" + letter, p.get("i" + letter + "_"))
        if hk is None or ik is None:
            raise ValueError(f"flax LSTM variables lack '{'h' + letter}' or '{'i' + letter}'; found {sorted(p)}")
        Ws[f"W_{g}"] = jnp.concatenate([_arr(hk["kernel"]).T, _arr(ik["kernel"]).T], axis=1)
        b = [_arr(d["bias"]) for d in (hk, ik) if "bias" in d]
        bs[f"b_{g}"] = sum(b) if b else None
    return _checked("lstm", LSTMParams(**Ws, **bs), "flax LSTM params")


def _flax_gru(p: Mapping) -> GRUParams:
    if "dense_i" in p:  # flax.nnx GRUCell: fused (m, 3n) / (n, 3n) kernels, no hidden bias
        ki, kh = _arr(p["dense_i"]["kernel"]), _arr(p["dense_h"]["kernel"])
        b_i = _arr(p["dense_i"]["bias"]) if "bias" in p["dense_i"] else None
        b_h = _arr(p["dense_h"]["bias"]) if "bias" in p["dense_h"] else None
        return _gru_from_split(ki.T, kh.T, b_i, b_h, kh.shape[0])
    missing = [k for k in ("ir", "iz", "in", "hr", "hz", "hn") if k not in p]
    if missing:
        raise ValueError(f"flax GRU variables lack {missing}; found {sorted(p)}")
    k = lambda name: _arr(p[name]["kernel"]).T  # noqa: E731
    b = lambda name: _arr(p[name]["bias"]) if "bias" in p[name] else None  # noqa: E731
    add = lambda a, c: a if c is None else (c if a is None else a + c)  # noqa: E731
    W = [jnp.concatenate([k("h" + g), k("i" + g)], axis=1) for g in "rzn"]
    return _checked("gru", GRUParams(*W, add(b("ir"), b("hr")), add(b("iz"), b("hz")), b("in"), b("hn")),
                    "flax GRU params")


def flax_cell_kind(tree: Any) -> str | None:
    """``"lstm"`` / ``"gru"`` when the mapping ``tree`` holds one Flax (linen or nnx) cell's variables, else ``None``."""
    if not isinstance(tree, Mapping):
        return None
    keys = set(tree)
    if {"hi", "hf", "hg", "ho", "ii", "ig", "io"} <= keys and ({"if", "if_"} & keys):
        return "lstm"
    if {"ir", "iz", "in", "hr", "hz", "hn"} <= keys:
        return "gru"
    if {"dense_i", "dense_h"} <= keys and isinstance(tree["dense_h"], Mapping) and "kernel" in tree["dense_h"]:
        kh = tree["dense_h"]["kernel"]
        kh = getattr(kh, "shape", None) or np.shape(_arr(kh))
        if len(kh) == 2 and kh[1] == 3 * kh[0]:
            return "gru"
    return None


def from_flax_linen(variables: Any) -> Any:
    """Parameters of a ``flax.linen`` ``LSTMCell`` / ``OptimizedLSTMCell`` (→ LSTMParams) or ``GRUCell`` (→ GRUParams).

    ``variables`` is ``{'params': ...}`` or the params dict of the cell.
    """
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables must be a Flax variables dict, got {type(variables).__name__}")
    p = variables.get("params", variables)
    kind = flax_cell_kind(p)
    if kind is None:
        raise ValueError(f"variables hold no Flax LSTMCell / GRUCell parameters (expected keys ii, if, ig, io, "
                         f"hi, hf, hg, ho or ir, iz, in, hr, hz, hn); found {sorted(p)}; for a model that "
                         f"contains cells use lstm_jax.io.load_model(variables, layer=NAME)")
    return _flax_lstm(p) if kind == "lstm" else _flax_gru(p)


def to_flax_linen(params: LSTMParams) -> dict:
    """lstm_jax parameters as ``{'params': ...}`` for ``flax.linen.LSTMCell`` (bias on the ``h*`` Dense)."""
    p, n, _ = lj.check_recurrent_params("lstm", params)
    out = {}
    for g, letter in _LETTER.items():
        W = getattr(p, f"W_{g}")
        b = getattr(p, f"b_{g}")
        out["h" + letter] = {"kernel": W[:, :n].T, "bias": jnp.zeros((n,), W.dtype) if b is None else b}
        out["i" + letter] = {"kernel": W[:, n:].T}
    return {"params": out}


def _nnx_pure(cell: Any) -> dict:
    def lin(layer):
        d = {"kernel": layer.kernel}
        if getattr(layer, "bias", None) is not None:
            d["bias"] = layer.bias
        return d

    if hasattr(cell, "dense_i"):
        return {"dense_i": lin(cell.dense_i), "dense_h": lin(cell.dense_h)}
    if hasattr(cell, "ir"):
        return {k: lin(getattr(cell, k)) for k in ("ir", "iz", "in", "hr", "hz", "hn")}
    out = {}
    for letter in _LETTER.values():
        for side in "hi":
            name = side + letter
            out[name] = lin(getattr(cell, name + "_", None) or getattr(cell, name))
    return out


def from_flax_nnx(cell: Any) -> Any:
    """Parameters of a ``flax.nnx.LSTMCell`` / ``OptimizedLSTMCell`` (→ LSTMParams) or ``GRUCell`` (→ GRUParams)."""
    _flax_gate_fns(cell, type(cell).__name__)
    return from_flax_linen(_nnx_pure(cell))


# --------------------------------------------------------------------------- Equinox


def from_equinox(cell: Any) -> Any:
    """Parameters of an ``equinox.nn.LSTMCell`` (→ LSTMParams) or ``equinox.nn.GRUCell`` (→ GRUParams)."""
    if not (hasattr(cell, "weight_ih") and hasattr(cell, "weight_hh")):
        raise TypeError(f"cell must be an equinox.nn.LSTMCell or GRUCell, got {type(cell).__name__}")
    w_ih, w_hh = _arr(cell.weight_ih), _arr(cell.weight_hh)
    bias = None if getattr(cell, "bias", None) is None else _arr(cell.bias)
    n = w_hh.shape[1]
    if hasattr(cell, "bias_n"):  # GRUCell
        bias_n = None if cell.bias_n is None else _arr(cell.bias_n)
        return _gru_from_split(w_ih, w_hh, bias, bias_n, n)
    return _from_split(w_ih, w_hh, bias, n)


def to_equinox(params: Any, cell: Any) -> Any:
    """A copy of the ``equinox.nn.LSTMCell`` / ``GRUCell`` ``cell`` carrying ``params`` (same sizes, bias if ``cell`` has one)."""
    import equinox as eqx

    fields = params._asdict() if hasattr(params, "_asdict") else {}
    if cell.bias is None and any(k.startswith("b") and v is not None and np.any(np.asarray(v)) for k, v in fields.items()):
        raise ValueError("cell has no bias (use_bias=False) but params have non-zero biases: not representable")
    if isinstance(params, GRUParams):
        sd = to_torch_state_dict([params])
        ih, hh = jnp.asarray(sd["weight_ih_l0"]), jnp.asarray(sd["weight_hh_l0"])
        n = hh.shape[1]
        new = eqx.tree_at(lambda c: (c.weight_ih, c.weight_hh), cell, (ih, hh))
        if cell.bias is not None:
            new = eqx.tree_at(lambda c: (c.bias, c.bias_n), new,
                              (jnp.asarray(sd["bias_ih_l0"]), jnp.asarray(sd["bias_hh_l0"])[2 * n:]))
        return new
    p, n, _ = lj.check_recurrent_params("lstm", params)
    ih, hh, b = _split(p, n)
    new = eqx.tree_at(lambda c: (c.weight_ih, c.weight_hh), cell, (ih, hh))
    if cell.bias is not None:
        new = eqx.tree_at(lambda c: c.bias, new, b)
    return new


def state_from_flax(carry: Any) -> LSTMState:
    """Flax's LSTM carry ``(c, h)`` → :class:`LSTMState` ``(h, c)``."""
    c, h = carry
    return LSTMState(_arr(h), _arr(c))


def state_to_flax(state: LSTMState) -> tuple:
    """:class:`LSTMState` ``(h, c)`` → Flax's LSTM carry ``(c, h)``."""
    return (state.c, state.h)
