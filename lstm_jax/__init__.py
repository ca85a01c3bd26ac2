"""lstm_jax: why plain RNN gradients vanish or explode, and how the LSTM cell keeps them alive.

Pure cells on pytrees of parameters, ``lax.scan`` runners, analytic one-step
and multi-step Jacobians (the article's eq. 2 and eq. 6, as published and
corrected, and the exact joint ``(h, c)`` Jacobian), the GRU (PyTorch convention) with its
exact Jacobian and eq. 6 analogue, stacked / bidirectional / right-padded models, gradient-flow
diagnostics (log-space Lyapunov exponents), parallel-in-time evaluation (DEER), and executable checks of every claim of the
article (``lstm-jax verify``).  Command line: ``lstm-jax verify | diagnose | flow | train | sweep | bench``
(:mod:`lstm_jax.cli`).

Importing the package never changes JAX's configuration: enable float64 with
``jax.config.update("jax_enable_x64", True)`` in your own entry point.
Loading models from PyTorch / Flax / Equinox / checkpoint files: :mod:`lstm_jax.io`.
"""

from ._activations import SIGMOID, TANH, Activation
from ._cell import Cell
from ._mingru import MinGRUParams, MinLSTMParams, init_mingru, init_minlstm
from ._lstmp import LSTMPParams, init_lstmp
from ._mlstm import MLSTMParams, init_mlstm
from ._model import RecurrentLayer, RecurrentModel
from ._rglru import RGLRUParams, init_rglru
from ._slstm import SLSTMParams, SLSTMState, init_slstm
from ._registry import CELLS, KINDS, cell_of
from ._flow import (
    FlowNorms,
    Lyapunov,
    ScaledMatrix,
    gradient_flow_norms,
    half_life,
    lag_map,
    log_renormalise,
    log_spectral,
    lstm_flow_map,
    lyapunov,
    qr_step,
    rnn_flow_map,
    spectral_lanczos,
    spectral_lanczos_norm,
    spectral_ritz,
    suffix_products,
    time_constant,
)
from ._fast import run_gru_batch, run_lstm_batch, run_rnn_batch
from ._matfree import (
    gru_flow_norms_matfree,
    gru_lyapunov_matfree,
    lstm_flow_norms_matfree,
    lstm_lyapunov_matfree,
    rnn_flow_norms_matfree,
    rnn_lyapunov_matfree,
)
from ._gru import (
    GRUGates,
    GRUParams,
    GRUTerms,
    gru_flow_map,
    gru_gates,
    gru_step,
    gru_step_jacobian,
    gru_step_jacobians,
    gru_terms,
    gru_terms_along,
    init_gru,
    run_gru,
)
from ._article import LSTMTerms, article_cell_map, article_terms, article_terms_published, lstm_terms_along
from ._jacobians import (
    JointBlocks,
    jacobian_products,
    lstm_step_jacobian,
    lstm_step_jacobians,
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
from ._parallel import (
    DENSE,
    DIAGONAL,
    NewtonInfo,
    NewtonMode,
    parallel_run_gru,
    parallel_run_linear,
    parallel_run_lstm,
    parallel_run_rnn,
    solve_linear_recurrence,
)
from ._rnn import RNNParams, init_rnn, rnn_preactivation, rnn_step, run_rnn
from ._scan import previous_states
from ._stack import (
    StackJacobians,
    StackRun,
    check_recurrent_params,
    mask_padded_jacobians,
    run_cell,
    run_stack,
    stack_flow,
    stack_step_jacobians,
    step_jacobians,
)
from ._validation import check_finite

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "SIGMOID",
    "TANH",
    # the cell protocol and the registry of kinds
    "Cell",
    "CELLS",
    "KINDS",
    "cell_of",
    # RNN
    "RNNParams",
    "init_rnn",
    "rnn_step",
    "rnn_preactivation",
    "run_rnn",
    "previous_states",
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
    # the LSTM with a projected output (torch proj_size)
    "LSTMPParams",
    "init_lstmp",
    # batch runners with a custom VJP (training / benchmarks; reverse mode only)
    "run_gru_batch",
    "run_lstm_batch",
    "run_rnn_batch",
    # GRU (PyTorch / cuDNN convention)
    "GRUParams",
    "GRUGates",
    "GRUTerms",
    "init_gru",
    "gru_gates",
    "gru_step",
    "run_gru",
    "gru_step_jacobian",
    "gru_step_jacobians",
    "gru_terms",
    "gru_terms_along",
    "gru_flow_map",
    # modern cells (gates from the input: minGRU, minLSTM, RG-LRU, mLSTM; memory mixing: sLSTM) and any kind's runner
    "MinGRUParams",
    "init_mingru",
    "MinLSTMParams",
    "init_minlstm",
    "RGLRUParams",
    "init_rglru",
    "SLSTMParams",
    "SLSTMState",
    "init_slstm",
    "MLSTMParams",
    "init_mlstm",
    "run_cell",
    # stacked / bidirectional / padded models
    "RecurrentLayer",
    "RecurrentModel",
    "check_recurrent_params",
    "StackRun",
    "StackJacobians",
    "run_stack",
    "stack_step_jacobians",
    "stack_flow",
    "mask_padded_jacobians",
    "step_jacobians",
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
    # the flow toolkit's primitives (every flow computation of the package is built from them)
    "log_renormalise",
    "log_spectral",
    "qr_step",
    "spectral_lanczos",
    "spectral_lanczos_norm",
    "ScaledMatrix",
    "spectral_ritz",
    "half_life",
    "time_constant",
    "lstm_lyapunov_matfree",
    "rnn_lyapunov_matfree",
    "gru_lyapunov_matfree",
    "lstm_flow_norms_matfree",
    "rnn_flow_norms_matfree",
    "gru_flow_norms_matfree",
    # parallel in time (DEER / quasi-DEER)
    "NewtonMode",
    "DENSE",
    "DIAGONAL",
    "NewtonInfo",
    "parallel_run_rnn",
    "parallel_run_lstm",
    "parallel_run_gru",
    "parallel_run_linear",
    "solve_linear_recurrence",
    # checks
    "check_finite",
]
