"""The model type of the core: a (stacked, bidirectional) recurrent model as layer records in lstm_jax's own
parameter layouts.  ``run_stack`` and the stack Jacobians take its ``layers``; ``lstm_jax.io`` builds it from
checkpoints; ``lstm_jax.diagnose`` reads it."""

from __future__ import annotations

from typing import Any, NamedTuple


class RecurrentLayer(NamedTuple):
    """One recurrence of a model.

    Attributes:
      name: ``"layer{k}.forward"`` or ``"layer{k}.reverse"``.
      kind: a kind of the registry (:data:`lstm_jax.KINDS`: ``"lstm"``, ``"gru"``, ``"rnn-tanh"``, ...).
      params: the lstm_jax parameters (``LSTMParams``, ``GRUParams`` or ``RNNParams``).
      layer: depth index, 0 = the layer that reads the model's inputs.
      reverse: True for the backward direction of a bidirectional model (it runs on reversed time).
    """

    name: str
    kind: str
    params: Any
    layer: int
    reverse: bool


class RecurrentModel(NamedTuple):
    """A (possibly stacked, possibly bidirectional) recurrent model.

    Layer ``k > 0`` reads the concatenated outputs of every direction of layer ``k - 1``
    (forward first), as ``torch.nn.LSTM``/``GRU`` with ``num_layers``/``bidirectional`` do.

    Attributes:
      layers: bottom to top, forward before reverse at each depth.
      kind: the cell kind shared by every layer.
      n: hidden size.  m: input size of layer 0.
      num_layers: depth.  directions: 1 or 2.
      source: what it was read from, for reports (e.g. ``"torch nn.LSTM from model.pt"``).
    """

    layers: tuple
    kind: str
    n: int
    m: int
    num_layers: int
    directions: int
    source: str
