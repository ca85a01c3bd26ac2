"""The cell kinds by name: one :class:`~lstm_jax._cell.Cell` per kind, the one table every wing dispatches through.

``run_stack``, the stack Jacobians, ``lstm_jax.diagnose``, ``lstm_jax.io`` and ``lstm_jax.experiments`` look a
layer's kind up here; adding a cell is one module and one entry below.
"""

from __future__ import annotations

from ._activations import SIGMOID, TANH
from ._cell import Cell
from ._gru import CELL as GRU
from ._lstm import CELL as LSTM
from ._lstmp import CELL as LSTMP
from ._mingru import MINGRU, MINLSTM
from ._mlstm import MLSTM
from ._rglru import RGLRU
from ._rnn import rnn_cell
from ._slstm import SLSTM

CELLS: dict[str, Cell] = {c.kind: c for c in (LSTM, GRU, rnn_cell(TANH), rnn_cell(SIGMOID), SLSTM, MINGRU, MINLSTM,
                                              RGLRU, MLSTM, LSTMP)}
#: the kind names, in the order reports list them
KINDS = tuple(CELLS)


def cell_of(kind: str) -> Cell:
    """The :class:`~lstm_jax._cell.Cell` of ``kind``, or a ``ValueError`` naming the kinds there are."""
    if not isinstance(kind, str) or kind not in CELLS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return CELLS[kind]
