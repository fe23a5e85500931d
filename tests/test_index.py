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
    np.testing.assert_allclose(sf.take(X, WEIGHTS[0], axis=0), WEIGHTS[0] @ X, rtol=1e-6)
    # One soft index per slice (here per column), with the weights along the axis as in x.
    per_column = WEIGHTS[:3].T
    expected = np.array([per_column[:, c] @ X[:, c] for c in range(3)])
    np.testing.assert_allclose(sf.take(X, per_column, axis=0), expected, rtol=1e-6)
    np.testing.assert_allclose(sf.take(X.T, per_column.T), expected, rtol=1e-6)
    np.testing.assert_allclose(sf.take(X[:, :1], per_column, axis=0), per_column.T @ X[:, 0], 1e-6)
    # k soft indices per slice: (other axes, k, n), the k values where the axis was.
    several = np.stack([WEIGHTS[:2], WEIGHTS[2:]])  # 2 per column for columns 0, 1
    expected = np.einsum("ckn,nc->kc", several, X[:, :2])
    np.testing.assert_allclose(sf.take(X[:, :2], several, axis=0), expected, rtol=1e-6)
    np.testing.assert_allclose(sf.take(X.T, WEIGHTS[0], axis=1), WEIGHTS[0] @ X, rtol=1e-6)
    np.testing.assert_allclose(sf.take(X.T, WEIGHTS[0]), WEIGHTS[0] @ X, rtol=1e-6)


def test_put_is_the_blend_at_every_position():
    value = np.float32(7.0)
    expected = (1 - WEIGHTS[0])[:, None] * X + WEIGHTS[0][:, None] * value
    np.testing.assert_allclose(sf.put(X, WEIGHTS[0], value, axis=0), expected, rtol=1e-6)
    row = np.array([1.0, -2.0, 3.0], np.float32)
    expected = (1 - WEIGHTS[1])[:, None] * X + WEIGHTS[1][:, None] * row
    np.testing.assert_allclose(sf.put(X, WEIGHTS[1], row, axis=0), expected, rtol=1e-6)
    np.testing.assert_allclose(sf.put(X.T, WEIGHTS[1], row), expected.T, 1e-6)
    # One soft index per column, in the layout of x.
    per_column = WEIGHTS[:3].T
    expected = (1 - per_column) * X + per_column * row
    np.testing.assert_allclose(sf.put(X, per_column, row, axis=0), expected, rtol=1e-6)


def test_one_hot_index_reads_and_writes_exactly():
    x = jnp.array([[-0.0, 1.0], [jnp.inf, 2.0], [jnp.nan, -0.0]], jnp.float32)
    for i in range(3):
        index = jax.nn.one_hot(i, 3)
        # Positions of weight 0 do not reach the result even when they hold inf or NaN.
        assert_exactly_equal(sf.take(x, index, axis=0), x[i])
        written = sf.put(x, index, jnp.array([-0.0, 5.0]), axis=0)
        assert_exactly_equal(written, x.at[i].set([-0.0, 5.0]))
    # The hard soft index of argmax reads the maximum.
    values = jnp.asarray(X[:, 0])
    assert_exactly_equal(sf.take(values, sf.argmax(values, mode="hard")), jnp.max(values))


def test_jit_vmap_and_dtypes():
    taken = jax.jit(jax.vmap(lambda w: sf.take(X, w, axis=0)))(WEIGHTS)
    np.testing.assert_allclose(taken, WEIGHTS @ X, rtol=1e-6)
    put = jax.vmap(lambda w: sf.put(X, w, 1.0, axis=0))(WEIGHTS)
    assert put.shape == (4, 5, 3)
    for dtype in (jnp.bfloat16, jnp.float32):
        x = jnp.asarray(X.T, dtype)
        assert sf.take(x, WEIGHTS[0]).dtype == dtype
        assert sf.put(x, WEIGHTS[0], 1.0).dtype == dtype
    with jax.enable_x64(True):
        assert sf.take(np.asarray(X.T, np.float64), WEIGHTS[0]).dtype == jnp.float64


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
    with pytest.raises(ValueError, match=r"index of shape \(4,\) does not fit x of shape \(5, 3\)"):
        sf.take(X, np.ones(4) / 4, axis=0)
    with pytest.raises(ValueError, match=r"expected \(3,\) \(one soft index for every slice\)"):
        sf.take(X, WEIGHTS[0])  # 5 weights, but 3 positions along the default axis -1
    with pytest.raises(ValueError, match=r"index of shape \(\) does not fit"):
        sf.put(X, 0.5, 1.0)
    with pytest.raises(TypeError, match="index must be soft index weights"):
        sf.take(X, jnp.arange(5), axis=0)
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        sf.take(X, WEIGHTS[0], axis=2)
    with pytest.raises(TypeError, match="x must be a floating array"):
        sf.take(jnp.arange(5), WEIGHTS[0])
    with pytest.raises(TypeError, match="value must be a floating array"):
        sf.put(X, WEIGHTS[0], jnp.arange(3), axis=0)
    with pytest.raises(ValueError, match=r"value of shape \(4,\) does not broadcast to .* \(3,\)"):
        sf.put(X, WEIGHTS[0], jnp.ones(4), axis=0)
    # As in x.at[i].set(value), the value may not add axes to the result.
    with pytest.raises(ValueError, match=r"value of shape \(2,\) does not broadcast to .* \(\)"):
        sf.put(jnp.zeros(3), jnp.array([0.0, 1.0, 0.0]), jnp.ones(2))
    with pytest.raises(ValueError, match="x has size 0 along axis 1: there is no position"):
        sf.take(jnp.zeros((2, 0)), jnp.zeros((2, 0)))
    with pytest.raises(ValueError, match=r"index of shape \(4, 2, 5\) does not fit"):
        sf.take(X, WEIGHTS[:, None, :].repeat(2, 1), axis=0)


def test_a_weight_of_one_beside_others_is_an_ordinary_term():
    x = jnp.array([1.0, 2.0, 4.0])
    for weights in ([1.0, 0.5, 0.0], [1.0, np.nan, 0.0], [1.0, -1.0, 1.0], [1.0, 1.0, 0.0]):
        weights = np.array(weights, np.float32)
        with np.errstate(invalid="ignore"):
            expected = np.float32(weights @ np.asarray(x))
        value, grad = jax.value_and_grad(sf.take, argnums=1)(x, jnp.asarray(weights))
        assert_exactly_equal(value, jnp.asarray(expected))
        np.testing.assert_array_equal(grad, x)  # the derivative of the same sum


def test_take_and_put_pair_with_argmax_argsort_and_top_k():
    # Each soft index is read along the axis it was computed on, one slice at a time, in every
    # mode: sf.take(x, sf.argmax(x)) is the soft max, row by row.
    x = jnp.asarray(RNG.normal(size=(2, 3, 4)), jnp.float32)
    y = jnp.arange(9.0).reshape(3, 3)  # square: a mix-up of axes would go unnoticed by shape
    assert_exactly_equal(sf.take(y, sf.argmax(y, mode="hard")), jnp.array([2.0, 5.0, 8.0]))
    assert_exactly_equal(
        sf.put(y, sf.argmax(y, mode="hard"), -1.0), y.at[jnp.arange(3), 2].set(-1.0)
    )
    assert_exactly_equal(
        sf.put(y, sf.argmin(y, axis=0, mode="hard"), -1.0, axis=0), y.at[0].set(-1.0)
    )

    @jax.jit
    def pairs(x, tau):
        options = {"softness": tau}
        results = []
        for axis in (-1, 1):  # the last axis, and one with other axes on both sides
            values, index = sf.top_k(x, 2, axis, **options)
            results += [
                (sf.take(x, sf.argmax(x, axis, **options), axis), sf.max(x, axis, **options)),
                (sf.take(x, index, axis), values),
                (sf.take(x, sf.argsort(x, axis, **options), axis), sf.sort(x, axis, **options)),
            ]
        return results

    for taken, expected in pairs(x, 0.3):
        np.testing.assert_allclose(taken, expected, rtol=1e-5, atol=1e-6)
    for axis in (-1, 0, 1, np.int64(-2)):
        # A write at the hard argmax of each slice is the exact write.
        hard = sf.argmax(x, axis, mode="hard")
        positions = jnp.expand_dims(jnp.argmax(x, axis), axis)
        expected = jnp.put_along_axis(x, positions, 7.0, axis, inplace=False)
        assert_exactly_equal(sf.put(x, hard, 7.0, axis), expected)
        assert_exactly_equal(sf.take(x, hard, axis), jnp.max(x, axis))


def test_ambiguous_index_shapes_are_refused():
    x = jnp.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"index of shape \(3, 4\) .* x of shape \(2, 3, 4\)"):
        sf.take(x, jnp.ones((3, 4)) / 4)
    with pytest.raises(ValueError, match=r"index of shape \(3, 4\)"):
        sf.put(x, jnp.ones((3, 4)) / 4, 1.0)
    with pytest.raises(ValueError, match="put writes one soft index per slice"):
        sf.put(x, jnp.ones((2, 3, 5, 4)) / 4, 1.0)
    with pytest.raises(ValueError, match=r"index of shape \(3, 3, 4\) .* x of shape \(2, 3, 4\)"):
        sf.take(x, jnp.ones((3, 3, 4)) / 4)
