"""Bad input raises a clear ValueError/TypeError naming the argument, what it got and what was expected."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj

P = lj.init_lstm(jax.random.PRNGKey(0), 4, 3)
R = lj.init_rnn(jax.random.PRNGKey(0), 4, 3)
S = lj.zero_state(4)
XS = jnp.ones((5, 3))


def _raises(exc, *fragments):
    pattern = ".*".join(re.escape(f) for f in fragments)
    return pytest.raises(exc, match=pattern)


def test_wrong_feature_size_names_xs_and_both_shapes():
    with _raises(ValueError, "xs has shape (5, 2)", "(T, 3)"):
        lj.run_lstm(P, S, jnp.ones((5, 2)))
    with _raises(ValueError, "xs has shape (5, 2)", "(T, 3)"):
        lj.run_rnn(R, jnp.zeros(4), jnp.ones((5, 2)))
    with _raises(ValueError, "x has shape (2,)", "(3,)"):
        lj.lstm_step(P, S, jnp.ones(2))


def test_mismatched_state_size_names_the_state_leaf():
    with _raises(ValueError, "state0.c has shape (5,)", "(4,)"):
        lj.run_lstm(P, lj.LSTMState(jnp.zeros(4), jnp.zeros(5)), XS)
    with _raises(ValueError, "c0 has shape (3,)", "(4,)"):
        lj.run_rnn(R, jnp.zeros(3), XS)


def test_wrong_rank_is_reported_with_expected_rank():
    with _raises(ValueError, "xs has shape (2, 5, 3) (rank 3)", "rank-2", "(T, 3)"):
        lj.run_lstm(P, S, jnp.ones((2, 5, 3)))
    with _raises(ValueError, "state0.h has shape (1, 4) (rank 2)", "(4,)"):
        lj.run_lstm(P, lj.LSTMState(jnp.zeros((1, 4)), jnp.zeros(4)), XS)


def test_integer_dtypes_are_rejected_with_type_error():
    with _raises(TypeError, "xs has dtype int32", "floating"):
        lj.run_lstm(P, S, jnp.ones((5, 3), jnp.int32))
    with _raises(TypeError, "params.W_rec has dtype int32"):
        lj.run_rnn(R._replace(W_rec=jnp.ones((4, 4), jnp.int32)), jnp.zeros(4), XS)


def test_empty_sequence_is_rejected():
    with _raises(ValueError, "xs has shape (0, 3)", "axis T is empty"):
        lj.run_lstm(P, S, jnp.ones((0, 3)))
    with _raises(ValueError, "xs has shape (0, 3)", "axis T is empty"):
        lj.rnn_step_jacobians(R, jnp.zeros(4), jnp.ones((0, 3)))


def test_remat_must_be_a_bool_or_a_positive_segment_length():
    with _raises(ValueError, "remat must be a bool or a positive int", "got 0"):
        lj.run_lstm(P, S, XS, remat=0)
    with _raises(ValueError, "remat must be a bool or a positive int", "got -3"):
        lj.run_rnn(R, jnp.zeros(4), XS, remat=-3)
    with _raises(TypeError, "remat must be a bool or a positive int", "got float"):
        lj.run_lstm(P, S, XS, remat=2.5)


def test_terms_along_needs_two_steps():
    with _raises(ValueError, "xs has shape (1, 3)", "T >= 2"):
        lj.lstm_terms_along(P, S, jnp.ones((1, 3)))


def test_missing_extra_and_misshaped_parameter_leaves():
    d = P._asdict()
    missing = {k: v for k, v in d.items() if k != "W_o"}
    with _raises(ValueError, "params is missing leaves ['W_o']"):
        lj.run_lstm(missing, S, XS)
    with _raises(ValueError, "params has unexpected leaves ['W_x']"):
        lj.run_lstm({**d, "W_x": d["W_f"]}, S, XS)
    with _raises(ValueError, "params.W_i has shape (4, 6)", "(4, 7)"):
        lj.run_lstm(P._replace(W_i=jnp.ones((4, 6))), S, XS)
    with _raises(ValueError, "params.b_o has shape (3,)", "(4,)"):
        lj.run_lstm(P._replace(b_o=jnp.ones(3)), S, XS)
    with _raises(ValueError, "params.W_rec has shape (4, 3)", "(4, 4)"):
        lj.run_rnn(R._replace(W_rec=jnp.ones((4, 3))), jnp.zeros(4), XS)
    with _raises(ValueError, "params.W_f has shape (4, 4)", "m >= 1"):
        lj.run_lstm(P._replace(W_f=jnp.ones((4, 4))), S, XS)
    with _raises(TypeError, "params is a list", "LSTMParams"):
        lj.run_lstm(list(P), S, XS)


def test_mixed_parameter_dtypes_are_rejected():
    with jax.enable_x64(True):
        bad = P._replace(W_o=P.W_o.astype(jnp.float64))
        with _raises(TypeError, "params mixes dtypes", "W_o: float64"):
            lj.run_lstm(bad, S, XS)


def test_init_rejects_forget_bias_without_biases():
    with _raises(ValueError, "forget_bias=1.0 needs bias=True"):
        lj.init_lstm(jax.random.PRNGKey(0), 3, 2, bias=False)


def test_fused_layout_with_wrong_width_is_rejected():
    with _raises(ValueError, "fused.W has shape (7, 12)", "(n+m, 16)"):
        lj.unfuse_lstm_params(lj.FusedLSTMParams(jnp.ones((7, 12))), 4)


def test_split_joint_rejects_non_square_or_odd_matrices():
    with _raises(ValueError, "J has shape (5, 5)"):
        lj.split_joint(jnp.ones((5, 5)))


def test_check_finite_reports_leaf_and_count_and_refuses_tracers():
    xs = np.ones((5, 3), np.float32)
    xs[2, 1] = np.nan
    xs[4, 0] = np.inf
    with _raises(ValueError, "xs has 2 non-finite entries", "out of 15"):
        lj.check_finite(xs, "xs")
    bad = P._replace(b_i=jnp.array([0.0, jnp.nan, 0.0, 0.0]))
    with _raises(ValueError, "params.b_i has 1 non-finite"):
        lj.check_finite(bad, "params")
    lj.check_finite(P, "params")  # finite: no error
    with _raises(TypeError, "traced value"):
        jax.jit(lambda x: lj.check_finite(x, "x") or x)(jnp.ones(3))


def test_nan_input_propagates_unless_checked():
    """Documented behaviour: the runners do not inspect values; NaN in gives NaN out."""
    xs = XS.at[2, 0].set(jnp.nan)
    final, _ = lj.run_lstm(P, S, xs)
    assert np.isnan(np.asarray(final.h)).all()
