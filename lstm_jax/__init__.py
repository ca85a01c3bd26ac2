"""lstm_jax: why plain RNN gradients vanish or explode, and how the LSTM cell keeps them alive.

Pure cells on pytrees of parameters, ``lax.scan`` runners, analytic one-step
and multi-step Jacobians (the article's eq. 2 and eq. 6, as published and
corrected, and the exact joint ``(h, c)`` Jacobian), gradient-flow diagnostics
(log-space Lyapunov exponents), weight import from Flax / Equinox / PyTorch,
parallel-in-time evaluation (DEER), and executable checks of every claim of the
article (``lstm-jax verify``).  Command line: ``lstm-jax verify | flow | train | bench``.

Importing the package never changes JAX's configuration: enable float64 with
``jax.config.update("jax_enable_x64", True)`` in your own entry point.
"""

from ._activations import SIGMOID, TANH, Activation
from ._flow import FlowNorms, Lyapunov, gradient_flow_norms, lag_map, lyapunov, suffix_products
from ._interop import (
    from_equinox,
    from_flax_linen,
    from_flax_nnx,
    from_torch,
    from_torch_layers,
    state_from_flax,
    state_to_flax,
    to_equinox,
    to_flax_linen,
    to_torch_state_dict,
)
from ._jacobians import (
    JointBlocks,
    LSTMTerms,
    article_cell_map,
    article_terms,
    article_terms_published,
    jacobian_products,
    lstm_flow_map,
    lstm_step_jacobian,
    lstm_step_jacobians,
    lstm_terms_along,
    rnn_flow_map,
    rnn_step_jacobian,
    rnn_step_jacobians,
    split_joint,
)
from ._lstm import (
    FusedLSTMParams,
    LSTMGates,
    LSTMParams,
    LSTMState,
    fuse_lstm_params,
    init_lstm,
    lstm_gates,
    lstm_step,
    run_lstm,
    unfuse_lstm_params,
    zero_state,
)
from ._parallel import DENSE, DIAGONAL, NewtonInfo, NewtonMode, parallel_run_lstm, parallel_run_rnn, solve_linear_recurrence
from ._rnn import RNNParams, init_rnn, rnn_step, run_rnn
from ._validation import check_finite

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "SIGMOID",
    "TANH",
    # RNN
    "RNNParams",
    "init_rnn",
    "rnn_step",
    "run_rnn",
    # LSTM
    "LSTMParams",
    "FusedLSTMParams",
    "LSTMState",
    "LSTMGates",
    "init_lstm",
    "zero_state",
    "lstm_gates",
    "lstm_step",
    "run_lstm",
    "fuse_lstm_params",
    "unfuse_lstm_params",
    # Jacobians
    "rnn_step_jacobian",
    "rnn_step_jacobians",
    "rnn_flow_map",
    "LSTMTerms",
    "article_terms",
    "article_terms_published",
    "article_cell_map",
    "lstm_terms_along",
    "lstm_step_jacobian",
    "lstm_step_jacobians",
    "lstm_flow_map",
    "JointBlocks",
    "split_joint",
    "jacobian_products",
    # gradient-flow diagnostics
    "suffix_products",
    "FlowNorms",
    "gradient_flow_norms",
    "lag_map",
    "Lyapunov",
    "lyapunov",
    # parallel in time (DEER / quasi-DEER)
    "NewtonMode",
    "DENSE",
    "DIAGONAL",
    "NewtonInfo",
    "parallel_run_rnn",
    "parallel_run_lstm",
    "solve_linear_recurrence",
    # weight import / export
    "from_flax_linen",
    "to_flax_linen",
    "from_flax_nnx",
    "from_equinox",
    "to_equinox",
    "from_torch",
    "from_torch_layers",
    "to_torch_state_dict",
    "state_from_flax",
    "state_to_flax",
    # checks
    "check_finite",
]
