"""take / put at a soft index: the formulas, exactness at one-hot indices, gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal, assert_grad_matches_finite_differences

import softflow as sf

RNG = np.random.default_rng(0)
X = RNG.normal(size=(5, 3)).astype(np.float32)  # 5 positions along axis 0, 3 columns
WEIGHTS = RNG.dirichlet(np.ones(5), size=4).astype(np.float32)  # 4 soft indices


def test_take_is_the_weighted_sum_along_the_axis():
    np.testing.assert_allclose(sf.take(X, WEIGHTS[0]), WEIGHTS[0] @ X, rtol=1e-6)
    # Leading axes of the index broadcast against the other axes of x (here: one per column).
    per_column = WEIGHTS[:3]
    expected = np.array([per_column[c] @ X[:, c] for c in range(3)])
    np.testing.assert_allclose(sf.take(X, per_column), expected, rtol=1e-6)
    np.testing.assert_allclose(sf.take(X.T, WEIGHTS[0], axis=1), WEIGHTS[0] @ X, rtol=1e-6)
    np.testing.assert_allclose(sf.take(X.T, WEIGHTS[0], axis=-1), WEIGHTS[0] @ X, rtol=1e-6)


def test_put_is_the_blend_at_every_position():
    value = np.float32(7.0)
    expected = (1 - WEIGHTS[0])[:, None] * X + WEIGHTS[0][:, None] * value
    np.testing.assert_allclose(sf.put(X, WEIGHTS[0], value), expected, rtol=1e-6)
    row = np.array([1.0, -2.0, 3.0], np.float32)
    expected = (1 - WEIGHTS[1])[:, None] * X + WEIGHTS[1][:, None] * row
    np.testing.assert_allclose(sf.put(X, WEIGHTS[1], row), expected, rtol=1e-6)
    np.testing.assert_allclose(sf.put(X.T, WEIGHTS[1], row, axis=1), expected.T, 1e-6)


def test_one_hot_index_reads_and_writes_exactly():
    x = jnp.array([[-0.0, 1.0], [jnp.inf, 2.0], [jnp.nan, -0.0]], jnp.float32)
    for i in range(3):
        index = jax.nn.one_hot(i, 3)
        # Positions of weight 0 do not reach the result even when they hold inf or NaN.
        assert_exactly_equal(sf.take(x, index), x[i])
        assert_exactly_equal(sf.put(x, index, jnp.array([-0.0, 5.0])), x.at[i].set([-0.0, 5.0]))
    # The hard soft index of argmax reads the maximum.
    values = jnp.asarray(X[:, 0])
    assert_exactly_equal(sf.take(values, sf.argmax(values, mode="hard")), jnp.max(values))


def test_jit_vmap_and_dtypes():
    taken = jax.jit(jax.vmap(lambda w: sf.take(X, w)))(WEIGHTS)
    np.testing.assert_allclose(taken, WEIGHTS @ X, rtol=1e-6)
    put = jax.vmap(lambda w: sf.put(X, w, 1.0))(WEIGHTS)
    assert put.shape == (4, 5, 3)
    for dtype in (jnp.bfloat16, jnp.float32):
        x = jnp.asarray(X, dtype)
        assert sf.take(x, WEIGHTS[0]).dtype == dtype
        assert sf.put(x, WEIGHTS[0], 1.0).dtype == dtype
    with jax.enable_x64(True):
        assert sf.take(np.asarray(X, np.float64), WEIGHTS[0]).dtype == jnp.float64


def test_gradients_match_finite_differences(x64):
    points = RNG.normal(size=(5, 12))
    table = jnp.array([1.0, -2.0, 0.5])

    def read(p, q, a, b, c):
        # A soft index from two free parameters, reading a table that also moves.
        index = jax.nn.softmax(jnp.stack([p, q, 0.0]))
        return sf.take(table * jnp.stack([a, b, c]), index)

    def write(p, q, a, b, v):
        index = jax.nn.softmax(jnp.stack([p, q, 0.0]))
        written = sf.put(jnp.stack([a, b, 1.0]), index, v)
        return jnp.dot(written, table)

    assert_grad_matches_finite_differences(read, points, rtol=1e-6)
    assert_grad_matches_finite_differences(write, points, rtol=1e-6)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"expected index of shape \(\.\.\., 5\); got \(4,\)"):
        sf.take(X, np.ones(4) / 4)
    with pytest.raises(ValueError, match="index must have one weight per position"):
        sf.put(X, 0.5, 1.0)
    with pytest.raises(TypeError, match="index must be soft index weights"):
        sf.take(X, jnp.arange(5))
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        sf.take(X, WEIGHTS[0], axis=2)
    with pytest.raises(TypeError, match="x must be a floating array"):
        sf.take(jnp.arange(5), WEIGHTS[0])
    with pytest.raises(TypeError, match="value must be a floating array"):
        sf.put(X, WEIGHTS[0], jnp.arange(3))
    with pytest.raises(ValueError, match="do not broadcast"):
        sf.put(X, WEIGHTS[0], jnp.ones(4))
    with pytest.raises(ValueError, match="do not broadcast"):
        sf.take(X, WEIGHTS[:, None, :].repeat(2, 1))
