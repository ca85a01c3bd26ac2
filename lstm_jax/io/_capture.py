r"""What a recurrent layer of a user's PyTorch model actually receives, on the user's own inputs.

:func:`capture_inputs` runs the whole model once and records the inputs of one recurrent submodule with a
forward pre-hook (removed afterwards), so that ``lstm-jax diagnose --data`` and :func:`lstm_jax.diagnose.diagnose`
measure the layer on the inputs it sees in use rather than on Gaussian noise — which can change the diagnosis
qualitatively (a layer fed sparse ReLU features behaves unlike one fed N(0, 1)).

* ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``: each call's input, ``(T, B, m)`` (``(B, T, m)`` with
  ``batch_first``), ``(T, m)`` unbatched, or a ``PackedSequence`` (unpacked, with its lengths).  Several calls
  with the same batch size are a stream of chunks and are joined along time (lengths add up); calls with
  different batch sizes are refused (say which call to keep by running the model on one batch).
* ``nn.LSTMCell`` / ``GRUCell`` / ``RNNCell``, called once per step (a streaming model such as silero-vad's
  decoder): the per-step inputs ``(B, m)`` are stacked along time into ``(B, T, m)``, one step per call.

The model runs in the mode it is in: in training mode its dropout draws and its batch-norm running statistics
change (the description says so); call ``module.eval()`` first for what the deployed model sees.
TorchScript modules cannot be hooked: pass the eager module (for an archive you trust, ``torch.jit.load``
gives a module whose submodules are not hookable; rebuild the eager model from its class and load the weights), or
call the archive's own submodules that feed the layer, as the worked example does for silero-vad, whose archive
is all it ships (``docs/worked-example/silero_example.py``: the per-call inputs of its ``nn.LSTMCell`` from
``_model.encoder(_model.run_extractors(...))``, checked by reproducing the model's outputs exactly).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

_RECURRENT = ("LSTM", "GRU", "RNN")
_CELLS = ("LSTMCell", "GRUCell", "RNNCell")


class Captured(NamedTuple):
    """``xs (B, T, m)`` (float32/float64 NumPy, zero-padded after each sequence's length), ``lengths (B,)`` int,
    ``calls`` (how many times the layer ran) and ``description`` (one line for a report)."""

    xs: np.ndarray
    lengths: np.ndarray
    calls: int
    description: str


def capture_inputs(module: Any, layer: str, *example_inputs: Any, **example_kwargs: Any) -> Captured:
    """Run ``module(*example_inputs, **example_kwargs)`` once (``torch.no_grad``) and return what its recurrent
    submodule ``layer`` (a name of ``module.named_modules()``) received (module docstring)."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, torch.jit.ScriptModule):
        raise ValueError("module is a TorchScript module, whose submodules cannot be hooked; pass the eager module, or "
                         "compute the layer's inputs by calling the archive's own submodules that feed it (the worked "
                         "example docs/worked-example/silero-vad.md does so for silero-vad)")
    subs = dict(module.named_modules())
    recurrent = [n for n, m in subs.items() if type(m).__name__ in _RECURRENT + _CELLS and
                 isinstance(m, (torch.nn.RNNBase, torch.nn.RNNCellBase))]
    if layer not in subs or layer not in recurrent:
        raise ValueError(f"layer={layer!r} is not a recurrent submodule of the model; it has {recurrent or 'none'}")
    target = subs[layer]
    cell = isinstance(target, torch.nn.RNNCellBase)
    seen: list = []

    def hook(_mod, args, kwargs):
        x = args[0] if args else kwargs.get("input")
        if x is None:
            raise ValueError(f"layer {layer!r} was called without an input")
        # a copy now: a streaming model may reuse one buffer for every frame
        seen.append(x if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x.detach().clone())

    handle = target.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            module(*example_inputs, **example_kwargs)
    finally:
        handle.remove()
    if not seen:
        raise ValueError(f"layer {layer!r} was not called when the model ran on these inputs")
    name = f"{type(target).__name__} {layer!r}"
    mode = " (the model was in training mode: dropout and batch-norm statistics applied)" if module.training else ""
    if cell:
        steps = [np.asarray(x.detach().cpu().double() if x.dtype == torch.float64 else x.detach().cpu().float())
                 for x in seen]
        steps = [s[None] if s.ndim == 1 else s for s in steps]
        if len({s.shape for s in steps}) != 1:
            raise ValueError(f"{name} was called with inputs of shapes {sorted({s.shape for s in steps})}; a "
                             "stream of steps has one shape")
        xs = np.stack(steps, axis=1)
        return Captured(xs, np.full(xs.shape[0], xs.shape[1]), len(steps),
                        f"inputs of {name} captured over {len(steps)} calls (one step each), stitched into sequences{mode}")
    chunks, lens = [], []
    for x in seen:
        if isinstance(x, torch.nn.utils.rnn.PackedSequence):
            padded, L = torch.nn.utils.rnn.pad_packed_sequence(x, batch_first=True)
            a, L = padded, np.asarray(L)
        else:
            a = x if x.dim() == 3 else x[:, None] if not target.batch_first else x[None]
            a = a if target.batch_first else a.transpose(0, 1)
            L = np.full(a.shape[0], a.shape[1])
        chunks.append(np.asarray(a.detach().cpu().double() if a.dtype == torch.float64 else a.detach().cpu().float()))
        lens.append(L)
    if len({c.shape[0] for c in chunks}) != 1:
        raise ValueError(f"{name} ran {len(chunks)} times with batch sizes {[c.shape[0] for c in chunks]}; run the "
                         "model on one batch (chunks of one stream have one batch size)")
    if len(chunks) > 1 and any(not np.all(L == c.shape[1]) for L, c in zip(lens, chunks)):
        raise ValueError(f"{name} ran {len(chunks)} times on padded chunks; a stream of chunks is joined only when "
                         "every chunk is full")
    xs = np.concatenate(chunks, axis=1)
    lengths = np.sum(lens, axis=0)
    what = "one call" if len(chunks) == 1 else f"{len(chunks)} calls joined along time"
    return Captured(xs, lengths.astype(np.int64), len(chunks), f"inputs of {name} captured from the model ({what}){mode}")
