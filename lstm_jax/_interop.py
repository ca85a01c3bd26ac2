r"""Weight import from (and export to) Flax, Equinox and PyTorch LSTMs.

All four libraries compute the same cell as lstm_jax (gates on ``h_{t-1}`` and
``x_t``, :math:`c_t = f\odot c_{t-1} + i\odot g`, :math:`h_t = o\odot\tanh(c_t)`);
they differ in layout:

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

The importers read arrays by duck typing (no framework is imported to *read*);
torch's two biases are summed.  Every diagnostic of this package then applies
to the imported model, e.g. ``lstm_step_jacobians(from_torch(lstm), ...)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from ._lstm import LSTMParams, LSTMState, check_lstm_params

#: lstm_jax gate -> the letter the other libraries use
_LETTER = {"f": "f", "i": "i", "c": "g", "o": "o"}
_TORCH_ORDER = ("i", "f", "g", "o")  # also equinox's order of the 4n rows


def _arr(x: Any, dtype=None) -> jnp.ndarray:
    if hasattr(x, "get_value"):  # flax.nnx.Variable (newer API)
        x = x.get_value()
    elif hasattr(x, "value") and not hasattr(x, "shape"):  # flax.nnx.Variable (older API)
        x = x.value
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu().numpy()
    return jnp.asarray(np.asarray(x), dtype=dtype)


def _from_split(w_ih, w_hh, bias, n: int) -> LSTMParams:
    """From (4n, m), (4n, n), (4n,) or None in torch/equinox gate order i, f, g, o."""
    if w_ih.ndim != 2 or w_ih.shape[0] != 4 * n or w_hh.shape != (4 * n, n):
        raise ValueError(
            f"input-hidden weights have shape {w_ih.shape} and hidden-hidden {w_hh.shape}; "
            f"expected (4n, m) and (4n, n) with n = {n}"
        )
    block = {letter: k for k, letter in enumerate(_TORCH_ORDER)}
    rows = lambda a, letter: a[block[letter] * n:(block[letter] + 1) * n]  # noqa: E731
    Ws, bs = {}, {}
    for g, letter in _LETTER.items():
        Ws[f"W_{g}"] = jnp.concatenate([rows(w_hh, letter), rows(w_ih, letter)], axis=1)
        bs[f"b_{g}"] = None if bias is None else rows(bias, letter)
    return check_lstm_params(LSTMParams(**Ws, **bs))[0]


def from_flax_linen(variables: Any) -> LSTMParams:
    """Parameters of ``flax.linen.LSTMCell`` / ``OptimizedLSTMCell`` (``{'params': ...}`` or the params dict)."""
    p = variables.get("params", variables)
    Ws, bs = {}, {}
    for g, letter in _LETTER.items():
        hk, ik = p.get("h" + letter), p.get("i" + letter)
        if hk is None or ik is None:
            raise ValueError(f"flax variables lack '{'h' + letter}' or '{'i' + letter}'; found {sorted(p)}")
        Ws[f"W_{g}"] = jnp.concatenate([_arr(hk["kernel"]).T, _arr(ik["kernel"]).T], axis=1)
        b = [_arr(d["bias"]) for d in (hk, ik) if "bias" in d]
        bs[f"b_{g}"] = sum(b) if b else None
    return check_lstm_params(LSTMParams(**Ws, **bs), "flax params")[0]


def to_flax_linen(params: LSTMParams) -> dict:
    """lstm_jax parameters as ``{'params': ...}`` for ``flax.linen.LSTMCell`` (bias on the ``h*`` Dense)."""
    p, n, _ = check_lstm_params(params)
    out = {}
    for g, letter in _LETTER.items():
        W = getattr(p, f"W_{g}")
        b = getattr(p, f"b_{g}")
        out["h" + letter] = {"kernel": W[:, :n].T, "bias": jnp.zeros((n,), W.dtype) if b is None else b}
        out["i" + letter] = {"kernel": W[:, n:].T}
    return {"params": out}


def from_flax_nnx(cell: Any) -> LSTMParams:
    """Parameters of a ``flax.nnx.LSTMCell`` (attributes ``ii, if_, ig, io, hi, hf, hg, ho``)."""
    def layer(name):
        return getattr(cell, name + "_", None) or getattr(cell, name)

    variables = {}
    for letter in _LETTER.values():
        for side in "hi":
            lin = layer(side + letter)
            d = {"kernel": lin.kernel}
            if getattr(lin, "bias", None) is not None:
                d["bias"] = lin.bias
            variables[side + letter] = d
    return from_flax_linen(variables)


def from_equinox(cell: Any) -> LSTMParams:
    """Parameters of an ``equinox.nn.LSTMCell``."""
    w_hh = _arr(cell.weight_hh)
    bias = None if getattr(cell, "bias", None) is None else _arr(cell.bias)
    return _from_split(_arr(cell.weight_ih), w_hh, bias, w_hh.shape[1])


def to_equinox(params: LSTMParams, cell: Any) -> Any:
    """A copy of the ``equinox.nn.LSTMCell`` ``cell`` carrying ``params`` (same sizes, bias if ``cell`` has one)."""
    import equinox as eqx

    p, n, _ = check_lstm_params(params)
    ih, hh, b = _split(p, n)
    new = eqx.tree_at(lambda c: (c.weight_ih, c.weight_hh), cell, (ih, hh))
    if cell.bias is not None:
        new = eqx.tree_at(lambda c: c.bias, new, b)
    return new


def _split(p: LSTMParams, n: int):
    by_letter = {letter: g for g, letter in _LETTER.items()}
    W = [getattr(p, f"W_{by_letter[letter]}") for letter in _TORCH_ORDER]
    B = [getattr(p, f"b_{by_letter[letter]}") for letter in _TORCH_ORDER]
    bias = jnp.concatenate([jnp.zeros((n,), W[0].dtype) if b is None else b for b in B])
    return jnp.concatenate([w[:, n:] for w in W]), jnp.concatenate([w[:, :n] for w in W]), bias


def from_torch(module: Any, layer: int = 0) -> LSTMParams:
    """Parameters of layer ``layer`` of a ``torch.nn.LSTM`` (or a ``torch.nn.LSTMCell``); the two biases are summed.

    Bidirectional LSTMs and ``proj_size > 0`` are not the article's cell and are rejected.
    """
    if getattr(module, "bidirectional", False):
        raise ValueError("bidirectional torch.nn.LSTM is not supported: import each direction's cell separately")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"torch.nn.LSTM with proj_size={module.proj_size} is not the article's cell")
    num_layers = getattr(module, "num_layers", 1)
    if not 0 <= layer < num_layers:
        raise ValueError(f"layer must be in 0..{num_layers - 1}, got {layer}")
    sfx = f"_l{layer}" if hasattr(module, "num_layers") else ""
    w_ih, w_hh = _arr(getattr(module, "weight_ih" + sfx)), _arr(getattr(module, "weight_hh" + sfx))
    b_ih, b_hh = getattr(module, "bias_ih" + sfx, None), getattr(module, "bias_hh" + sfx, None)
    bias = None if b_ih is None else _arr(b_ih) + _arr(b_hh)
    return _from_split(w_ih, w_hh, bias, w_hh.shape[1])


def from_torch_layers(module: Any) -> list[LSTMParams]:
    """Every layer of a multi-layer ``torch.nn.LSTM`` (layer ``k`` feeds ``h`` of layer ``k-1`` as its input)."""
    return [from_torch(module, k) for k in range(module.num_layers)]


def to_torch_state_dict(layers: Sequence[LSTMParams]) -> dict:
    """A ``state_dict`` for ``torch.nn.LSTM(num_layers=len(layers))`` (NumPy arrays; wrap with ``torch.as_tensor``).

    The combined bias goes to ``bias_ih``; ``bias_hh`` is zero.
    """
    out = {}
    for k, params in enumerate(layers):
        p, n, _ = check_lstm_params(params, f"layers[{k}]")
        ih, hh, b = _split(p, n)
        out[f"weight_ih_l{k}"], out[f"weight_hh_l{k}"] = np.array(ih), np.array(hh)
        out[f"bias_ih_l{k}"], out[f"bias_hh_l{k}"] = np.array(b), np.zeros(b.shape, np.asarray(b).dtype)
    return out


def state_from_flax(carry: Any) -> LSTMState:
    """Flax's carry ``(c, h)`` → :class:`LSTMState` ``(h, c)``."""
    c, h = carry
    return LSTMState(_arr(h), _arr(c))


def state_to_flax(state: LSTMState) -> tuple:
    """:class:`LSTMState` ``(h, c)`` → Flax's carry ``(c, h)``."""
    return (state.c, state.h)
