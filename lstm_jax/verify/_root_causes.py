"""The root causes the claims name: one erratum each (``proofs/README.md`` lists them once).

Each entry: kind (``error`` — wrong under every reading; ``typo`` — a one-symbol slip whose intended
formula holds; ``condition`` — true only under a condition the article does not state), where it is,
what is printed, and the corrected statement (verified by the claims that name it).
"""

from __future__ import annotations

from typing import NamedTuple


class RootCause(NamedTuple):
    kind: str
    where: str
    published: str
    corrected: str


ROOT_CAUSES = {
    "one-term-chain": RootCause(
        "error", "eq. 1 and eq. 4",
        "∂E_k/∂W as one chain ending in ∂c_1/∂W",
        "a sum over t = 1..k of chains ending in the immediate ∂⁺c_t/∂W"),
    "sigma-for-tanh": RootCause(
        "error", "eq. 6 D_t; appendix ∂c̃_t/∂c_{t-1}",
        "∂/∂c_{t-1}[σ(W_c·)], hence σ'(W_c·) in D_t",
        "c̃_t = tanh(W_c·), so tanh'(z_c); the ratio tanh'/σ' ranges over (0, 4], so the printed D_t's "
        "relative error is unbounded"),
    "missing-output-gate-path": RootCause(
        "error", "eq. 6 → eq. 4",
        "∂c_k/∂c_1 = ∏_{t=2}^k (A_t + B_t + C_t + D_t)",
        "exact only for k = 2 (or U_o = 0); in general [0 I] J_k ⋯ J_2 [diag(o_1 ⊙ tanh'(c_1)); I] with the "
        "joint (h, c) Jacobians"),
    "h_t-for-h_t-1": RootCause(
        "typo", "appendix, middle lines",
        "∂h_t/∂c_{t-1} (∂H_t/∂c_{t-1})",
        "∂h_{t-1}/∂c_{t-1} = diag(o_{t-1} ⊙ tanh'(c_{t-1})), as the next line has it"),
    "W_c-for-W_i": RootCause(
        "typo", "appendix, ∂i_t/∂c_{t-1}",
        "σ'(W_c·)·W_c",
        "σ'(W_i·)·W_i, as the line's first expression and C_t have it"),
    "norm-condition-not-quantified": RootCause(
        "condition", "text after eq. 2",
        "vanishing \"due to the derivative of the tanh … smaller than 1\" (the model uses σ); the converse is named "
        "only qualitatively (weights \"large enough to overpower\" φ' explode)",
        "vanishing is guaranteed when ‖W_rec‖_2 < 1/γ (γ = 1/4 for σ, 1 for tanh): the article's qualitative condition, "
        "quantified; φ' < 1 alone is not enough"),
    "aligned-terms-assumed": RootCause(
        "condition", "the \"balancing\" example",
        "term sizes 0.1 + 0.7 + 0.1 + 0.1 ⇒ product ≈ 1",
        "sizes only bound the product by 1; ≈ 1 needs aligned (diagonal, positive) terms"),
    "open-forget-gate-assumed": RootCause(
        "condition", "eq. 3 discussion",
        "the LSTM's sum does not vanish, the RNN's does",
        "the long-lag share vanishes for RNNs with γ‖W_rec‖ < 1 and survives in LSTMs with an open forget gate; "
        "b_f = 0 LSTMs lose it too"),
    "gradient-must-reach-gate": RootCause(
        "condition", "forget-gate discussion (learning)",
        "a suitable update of the forget gate can always be found, so ∂E/∂W does not vanish",
        "training opens the forget gate only on units a gradient from the lag already reaches (short lags, or a "
        "gate opened by initialisation); on the 1997 adding problem at long lags an LSTM whose forget gate starts "
        "too closed collapses to the constant predictor, and one whose carousel starts open with a shut input gate "
        "solves with or without a trainable forget gate (docs/long-lag/: controls, intervals and tests)"),
}
