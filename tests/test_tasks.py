"""Task generators: shapes, the structure each task promises, and target statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax._tasks import adding_problem, temporal_order


def test_adding_problem_marks_one_value_in_each_half_and_the_target_is_their_sum():
    xs, y = adding_problem(jax.random.PRNGKey(0), 4096, 50)
    xs, y = np.asarray(xs), np.asarray(y)
    assert xs.shape == (4096, 50, 2) and y.shape == (4096,) and xs.dtype == np.float32
    marks = xs[..., 1]
    assert np.all(marks.sum(1) == 2)
    assert np.all(marks[:, :25].sum(1) == 1) and np.all(marks[:, 25:].sum(1) == 1)
    np.testing.assert_allclose(y, (xs[..., 0] * marks).sum(1), rtol=1e-6)
    assert 0 <= xs[..., 0].min() and xs[..., 0].max() <= 1
    # y = U1 + U2: mean 1, variance 1/6; 4096 samples -> standard error of the mean 0.0064
    assert abs(y.mean() - 1.0) < 0.03 and abs(y.var() - 1 / 6) < 0.02


def test_temporal_order_places_X_or_Y_only_in_the_two_windows_and_classes_are_balanced():
    xs, y = temporal_order(jax.random.PRNGKey(1), 4000, 100)
    xs, y = np.asarray(xs), np.asarray(y)
    assert xs.shape == (4000, 100, 6) and np.all(xs.sum(-1) == 1)
    sym = xs.argmax(-1)
    relevant = sym < 2
    assert np.all(relevant.sum(1) == 2)
    pos = np.argwhere(relevant)[:, 1].reshape(4000, 2)
    assert np.all((10 <= pos[:, 0]) & (pos[:, 0] < 20)) and np.all((50 <= pos[:, 1]) & (pos[:, 1] < 60))
    first, second = sym[np.arange(4000), pos[:, 0]], sym[np.arange(4000), pos[:, 1]]
    np.testing.assert_array_equal(y, 2 * first + second)
    counts = np.bincount(y, minlength=4)
    assert np.all(np.abs(counts - 1000) < 4 * np.sqrt(1000 * 0.75))  # 4 sigma of a binomial(4000, 1/4)


def test_generators_are_deterministic_in_the_key_and_reject_bad_sizes():
    a = adding_problem(jax.random.PRNGKey(3), 8, 10)
    b = adding_problem(jax.random.PRNGKey(3), 8, 10)
    np.testing.assert_array_equal(a.xs, b.xs)
    with pytest.raises(ValueError, match="T must be >= 10"):
        temporal_order(jax.random.PRNGKey(0), 4, 5)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        adding_problem(jax.random.PRNGKey(0), 0, 10)
    assert adding_problem(jax.random.PRNGKey(0), 2, 4, jnp.float64).xs.dtype == jnp.float64
