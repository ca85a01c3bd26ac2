"""Task generators against their specifications (H&S 1997 Experiment 4 as published; the common adding
variant; temporal order) and the 1997 stopping rule on hand-made error sequences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.experiments import adding_problem, adding_problem_1997, stopping_rule, temporal_order

B97, T97 = 4096, 100


@pytest.fixture(scope="module")
def batch97():
    b = adding_problem_1997(jax.random.PRNGKey(0), B97, T97)
    return tuple(np.asarray(a) for a in b)


def test_1997_adding_lengths_are_between_T_and_T_plus_T_over_10_and_padding_is_zero(batch97):
    xs, y, L = batch97
    assert xs.shape == (B97, T97 + T97 // 10, 2) and xs.dtype == np.float32 and y.shape == L.shape == (B97,)
    assert L.min() == T97 and L.max() == T97 + T97 // 10  # both ends drawn (11 values, 4096 draws)
    counts = np.bincount(L - T97, minlength=11)
    assert np.all(np.abs(counts - B97 / 11) < 5 * np.sqrt(B97 / 11))  # uniform within 5 sigma
    pad = np.arange(xs.shape[1])[None, :] >= L[:, None]
    assert np.all(xs[pad] == 0)


def test_1997_adding_has_exactly_two_marks_first_in_first_ten_second_in_first_half_minus_one(batch97):
    xs, y, L = batch97
    marks = xs[..., 1]
    assert np.all((marks == 1).sum(1) == 2)
    pos = np.argwhere(marks == 1)[:, 1].reshape(B97, 2)
    # which of the two is "the first mark" is ambiguous only when the second lies before it; the generator
    # draws i1 in 0..9 and i2 among the first T/2 - 1 unmarked positions, so i2 <= T/2 - 1 always
    assert np.all(pos[:, 1] <= T97 // 2 - 1) and np.all(pos[:, 0] < 10)
    assert set(np.unique(pos[:, 0])) <= set(range(10))
    # the second mark covers the first T/2 - 1 unmarked pairs: positions up to 49 all occur
    assert set(np.unique(pos)) == set(range(T97 // 2))


def test_1997_adding_end_markers_values_and_target(batch97):
    xs, y, L = batch97
    vals, marks = xs[..., 0], xs[..., 1]
    rows = np.arange(B97)
    first_marked = marks[:, 0] == 1
    assert np.all(marks[~first_marked, 0] == -1) and np.all(vals[first_marked, 0] == 0)
    assert np.all(marks[rows, L - 1] == -1)  # the last pair is never marked (marks are in the first half)
    assert np.all((marks == -1).sum(1) == 2 - first_marked)  # no other -1
    real = np.arange(xs.shape[1])[None, :] < L[:, None]
    assert vals[real].min() >= -1 and vals[real].max() <= 1 and vals[real].min() < -0.99 and vals[real].max() > 0.99
    assert set(np.unique(marks)) == {-1.0, 0.0, 1.0}
    np.testing.assert_allclose(y, 0.5 + (vals * (marks == 1)).sum(1) / 4, rtol=0, atol=1e-6)
    assert y.min() >= 0 and y.max() <= 1
    # X1 + X2 of two independent U[-1,1] (X = 0 for a marked first pair, ~1/10 of the rows): mean 0.5
    assert abs(y.mean() - 0.5) < 4 * np.sqrt(2 / 3 / 16 / B97)


def test_1997_adding_fixed_lengths_for_diagnostics_and_the_smallest_T():
    b = adding_problem_1997(jax.random.PRNGKey(1), 64, 20, spread=False)
    assert np.all(np.asarray(b.lengths) == 20)
    b = adding_problem_1997(jax.random.PRNGKey(1), 256, 4)  # T/2 - 1 = 1: the second mark is 0 or 1
    assert np.all((np.asarray(b.xs[..., 1]) == 1).sum(1) == 2)
    with pytest.raises(ValueError, match="T must be an integer >= 4"):
        adding_problem_1997(jax.random.PRNGKey(0), 4, 3)


def test_adding_variant_marks_one_value_in_each_half_and_the_target_is_their_sum():
    xs, y, L = adding_problem(jax.random.PRNGKey(0), 4096, 50)
    xs, y = np.asarray(xs), np.asarray(y)
    assert xs.shape == (4096, 50, 2) and np.all(np.asarray(L) == 50)
    marks = xs[..., 1]
    assert np.all(marks[:, :25].sum(1) == 1) and np.all(marks[:, 25:].sum(1) == 1)
    np.testing.assert_allclose(y, (xs[..., 0] * marks).sum(1), rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.03 and abs(y.var() - 1 / 6) < 0.02


def test_temporal_order_places_X_or_Y_only_in_the_two_windows_and_classes_are_balanced():
    xs, y, _ = temporal_order(jax.random.PRNGKey(1), 4000, 100)
    xs, y = np.asarray(xs), np.asarray(y)
    assert xs.shape == (4000, 100, 6) and np.all(xs.sum(-1) == 1)
    sym = xs.argmax(-1)
    relevant = sym < 2
    assert np.all(relevant.sum(1) == 2)
    pos = np.argwhere(relevant)[:, 1].reshape(4000, 2)
    assert np.all((10 <= pos[:, 0]) & (pos[:, 0] < 20)) and np.all((50 <= pos[:, 1]) & (pos[:, 1] < 60))
    np.testing.assert_array_equal(y, 2 * sym[np.arange(4000), pos[:, 0]] + sym[np.arange(4000), pos[:, 1]])
    counts = np.bincount(y, minlength=4)
    assert np.all(np.abs(counts - 1000) < 4 * np.sqrt(1000 * 0.75))


def test_generators_are_deterministic_in_the_key_and_reject_bad_sizes():
    a = adding_problem_1997(jax.random.PRNGKey(3), 8, 10)
    b = adding_problem_1997(jax.random.PRNGKey(3), 8, 10)
    np.testing.assert_array_equal(a.xs, b.xs)
    with pytest.raises(ValueError, match="T must be an integer >= 10"):
        temporal_order(jax.random.PRNGKey(0), 4, 5)
    with pytest.raises(ValueError, match="batch must be an integer >= 1"):
        adding_problem_1997(jax.random.PRNGKey(0), 0, 10)
    assert adding_problem_1997(jax.random.PRNGKey(0), 2, 10, jnp.float64).xs.dtype == jnp.float64


def test_stopping_rule_on_hand_made_errors():
    """H&S 1997: stop when the most recent 2000 sequences all have |error| <= 0.04 and their MSE < 0.01."""
    assert not stopping_rule(np.zeros(1999))  # fewer than 2000 sequences seen
    assert stopping_rule(np.full(2000, 0.04))  # boundary: 0.04 counts as right
    assert not stopping_rule(np.full(2000, 0.0401))
    e = np.full(5000, 0.01)
    e[2999] = 0.5  # the 2001st most recent: outside the window
    assert stopping_rule(e)
    e[3000] = 0.05  # the 2000th most recent: inside
    assert not stopping_rule(e)
