"""argmax / argmin (soft indices) and max / min: identities, limits, modes, gradients, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal, assert_grad_matches_finite_differences

import softflow as sf

ALL_KINDS = pytest.mark.parametrize("kind", sf.KINDS)
RNG = np.random.default_rng(0)
# Random rows, and rows with ties for the largest and the smallest (first index wins in hard mode).
X = np.concatenate(
    [
        RNG.normal(size=(6, 7)),
        [[1, 3, 3, 0, -2, -2, 1], [0, 0, 0, 0, 0, 0, 0], [-1, 5, 2, 5, -1, 0, 2]],
    ]
).astype(np.float32)


@functools.cache
def evaluate(kind):
    """Jitted ``(x, tau) -> {(name, mode): value}`` for the four functions in every mode."""

    def run(x, tau):
        return {
            (fn.__name__, mode): fn(x, softness=tau, kind=kind, mode=mode)
            for fn in (sf.argmax, sf.argmin, sf.max, sf.min)
            for mode in sf.MODES
        }

    return jax.jit(run)


@ALL_KINDS
def test_hard_and_straight_through_forward_are_exactly_jnp(kind):
    results = evaluate(kind)(X, 0.5)
    one_hot = functools.partial(jax.nn.one_hot, num_classes=X.shape[-1], dtype=jnp.float32)
    expected = {
        "argmax": one_hot(np.argmax(X, axis=-1)),
        "argmin": one_hot(np.argmin(X, axis=-1)),
        "max": jnp.asarray(np.max(X, axis=-1)),
        "min": jnp.asarray(np.min(X, axis=-1)),
    }
    for name, value in expected.items():
        assert_exactly_equal(results[name, "hard"], value)
        assert_exactly_equal(results[name, "straight_through"], value)


@ALL_KINDS
def test_soft_index_is_a_distribution_and_max_its_expectation(kind):
    results = evaluate(kind)(X, 0.5)
    for name in ("argmax", "argmin"):
        weights = np.asarray(results[name, "soft"], np.float64)
        assert np.all(weights >= 0)
        np.testing.assert_allclose(weights.sum(-1), 1, rtol=1e-6)
    expected_max = np.sum(np.asarray(results["argmax", "soft"]) * X, -1)
    np.testing.assert_allclose(results["max", "soft"], expected_max, rtol=1e-5, atol=1e-6)
    expected_min = np.sum(np.asarray(results["argmin", "soft"]) * X, -1)
    np.testing.assert_allclose(results["min", "soft"], expected_min, rtol=1e-5, atol=1e-6)
    # The expectation lies between the mean and the extreme.
    assert np.all(results["max", "soft"] <= X.max(-1) + 1e-6)
    assert np.all(results["max", "soft"] >= X.mean(-1) - 1e-6)
    assert np.all(results["min", "soft"] >= X.min(-1) - 1e-6)


@ALL_KINDS
def test_soft_index_tends_to_the_one_hot(kind):
    distinct = X[:6]  # random rows: no ties
    weights = evaluate(kind)(distinct, 1e-6)["argmax", "soft"]
    np.testing.assert_allclose(weights, jax.nn.one_hot(np.argmax(distinct, -1), 7), atol=1e-3)
    # Ties for the largest element share its weight equally.
    tied = evaluate(kind)(X[6:7], 1e-6)["argmax", "soft"]
    np.testing.assert_allclose(tied[0], [0, 0.5, 0.5, 0, 0, 0, 0], atol=1e-3)


@ALL_KINDS
def test_two_elements_are_the_comparisons(kind):
    a = np.array([0.3, -1.0, 2.0, 0.0], np.float32)
    b = np.array([-0.2, 1.5, 2.0, 4.0], np.float32)
    pair = np.stack([a, b], -1)
    options = {"softness": 0.7, "kind": kind}
    np.testing.assert_allclose(
        sf.argmax(pair, **options),
        np.stack([sf.greater(a, b, **options), sf.less(a, b, **options)], -1),
        rtol=1e-6,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        sf.argmin(pair, **options),
        np.stack([sf.less(a, b, **options), sf.greater(a, b, **options)], -1),
        rtol=1e-6,
        atol=1e-7,
    )


def test_logistic_argmax_is_the_softmax():
    tau = 0.3
    expected = np.exp(X / tau - (X / tau).max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(sf.argmax(X, softness=tau), expected, rtol=1e-5, atol=1e-7)
    expected = np.exp(-X / tau - (-X / tau).max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(sf.argmin(X, softness=tau), expected, rtol=1e-5, atol=1e-7)


# The softmax path, a heavy-tailed and a compact-support kind of the pairwise path.
@pytest.mark.parametrize("kind", ["logistic", "cauchy", "smootherstep"])
def test_gradients_match_finite_differences(kind, x64):
    rng = np.random.default_rng(1)
    points = rng.normal(size=(3, 16))

    def soft_max(a, b, c):
        return sf.max(jnp.stack([a, b, c]), softness=0.7, kind=kind)

    def weighted_argmin(a, b, c):
        return jnp.dot(sf.argmin(jnp.stack([a, b, c]), softness=0.7, kind=kind), jnp.arange(3.0))

    for f in (soft_max, weighted_argmin):
        assert_grad_matches_finite_differences(f, points, rtol=1e-5, atol=1e-8)

    def straight_through(a, b, c):
        return sf.max(jnp.stack([a, b, c]), softness=0.7, kind=kind, mode="straight_through")

    # Straight-through: the gradient of the soft maximum, not that of jnp.max.
    assert_grad_matches_finite_differences(soft_max, points, grad_fn=straight_through, rtol=1e-5)


def test_axis_softness_per_slice_jit_vmap_and_traced_softness():
    x = jnp.asarray(X[:4].T)  # the elements along axis 0
    tau = jnp.array([0.1, 0.5, 1.0, 2.0])
    by_axis = sf.argmax(x, axis=0, softness=tau)
    by_row = jnp.stack([sf.argmax(x[:, i], softness=tau[i]) for i in range(4)], axis=1)
    np.testing.assert_allclose(by_axis, by_row, rtol=1e-6)
    mapped = jax.jit(jax.vmap(lambda row, t: sf.min(row, softness=t)))(x.T, tau)
    np.testing.assert_allclose(mapped, sf.min(x, axis=0, softness=tau), rtol=1e-6)
    with pytest.raises(Exception, match="softness"):
        jax.jit(lambda t: sf.max(x, softness=t))(-1.0).block_until_ready()


def test_dtypes_are_preserved():
    for dtype in (jnp.bfloat16, jnp.float32):
        x = jnp.asarray(X, dtype)
        for fn in (sf.argmax, sf.min):
            assert fn(x, kind="gaussian").dtype == dtype
    with jax.enable_x64(True):
        assert sf.max(np.asarray(X, np.float64)).dtype == jnp.float64
    # Integer x: compared exactly in hard mode, weights in the default float dtype.
    big = jnp.array([2**24, 2**24 + 1], jnp.int32)
    assert_exactly_equal(sf.argmax(big, mode="hard"), jnp.array([0.0, 1.0], jnp.float32))


def test_relaxation_methods_use_its_settings():
    relax = sf.Relaxation(0.3, kind="cauchy")
    np.testing.assert_array_equal(relax.max(X), sf.max(X, softness=relax.softness, kind="cauchy"))
    assert_exactly_equal(relax.hard().argmin(X), sf.argmin(X, mode="hard"))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        sf.argmax(X, axis=2)
    with pytest.raises(TypeError, match="axis must be an int"):
        sf.max(X, axis=None)
    with pytest.raises(ValueError, match="at least one dimension"):
        sf.argmax(1.0)
    with pytest.raises(ValueError, match="size 0"):
        sf.max(jnp.zeros((3, 0)))
    with pytest.raises(TypeError, match="x must be a floating array"):
        sf.max(jnp.arange(3))
    with pytest.raises(ValueError, match="kind must be one of"):
        sf.argmax(X, kind="tanh")
    with pytest.raises(ValueError, match="mode must be one of"):
        sf.min(X, mode="exact")
    with pytest.raises(ValueError, match="softness"):
        sf.argmin(X, softness=0.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        sf.argmax(X, softness=jnp.ones(3))


@pytest.mark.parametrize("kind", ["logistic", "cauchy"])
def test_infinite_padding_keeps_values_and_gradients_finite(kind):
    x = jnp.array([0.3, -1.0, 2.0])
    padded = jnp.concatenate([x, jnp.array([-jnp.inf, -jnp.inf])])
    options = {"softness": 0.5, "kind": kind}
    np.testing.assert_allclose(sf.max(padded, **options), sf.max(x, **options), rtol=1e-6)
    grad = jax.grad(lambda v: sf.max(v, **options))(padded)
    np.testing.assert_allclose(grad[:3], jax.grad(lambda v: sf.max(v, **options))(x), rtol=1e-5)
    np.testing.assert_array_equal(grad[3:], 0)
    # +inf entries share the whole weight.
    weights = sf.argmax(jnp.array([1.0, jnp.inf, 0.0, jnp.inf]), **options)
    np.testing.assert_array_equal(weights, [0, 0.5, 0, 0.5])
