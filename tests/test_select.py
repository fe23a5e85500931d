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
    weights = evaluate(kind)(X, 1e-6)["argmax", "soft"]  # the shape of every call: one compile
    distinct = X[:6]  # random rows: no ties
    expected = jax.nn.one_hot(np.argmax(distinct, -1), 7)
    np.testing.assert_allclose(weights[:6], expected, atol=1e-3)
    # Ties for the largest element share its weight equally.
    np.testing.assert_allclose(weights[6], [0, 0.5, 0.5, 0, 0, 0, 0], atol=1e-3)


@ALL_KINDS
def test_two_elements_are_the_comparisons(kind):
    a = np.array([0.3, -1.0, 2.0, 0.0], np.float32)
    b = np.array([-0.2, 1.5, 2.0, 4.0], np.float32)

    @jax.jit
    def both(a, b):
        options = {"softness": 0.7, "kind": kind}
        pair = jnp.stack([a, b], -1)
        greater, less = sf.greater(a, b, **options), sf.less(a, b, **options)
        return (
            (sf.argmax(pair, **options), jnp.stack([greater, less], -1)),
            (sf.argmin(pair, **options), jnp.stack([less, greater], -1)),
        )

    for weights, comparisons in both(a, b):
        np.testing.assert_allclose(weights, comparisons, rtol=1e-6, atol=1e-7)


def test_logistic_argmax_is_the_softmax():
    tau = 0.3
    expected = np.exp(X / tau - (X / tau).max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(sf.argmax(X, softness=tau), expected, rtol=1e-5, atol=1e-7)
    expected = np.exp(-X / tau - (-X / tau).max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(sf.argmin(X, softness=tau), expected, rtol=1e-5, atol=1e-7)


# The softmax path and the pairwise path (with a compact-support kind: log s = -inf in places).
@pytest.mark.parametrize("kind", ["logistic", "smootherstep"])
def test_gradients_match_finite_differences(kind, x64):
    rng = np.random.default_rng(1)
    points = rng.normal(size=(3, 16))

    def combined(a, b, c, mode="soft"):
        # The soft maximum and a weighted soft argmin in one scalar.
        x = jnp.stack([a, b, c])
        options = {"softness": 0.7, "kind": kind, "mode": mode}
        return sf.max(x, **options) + jnp.dot(sf.argmin(x, **options), jnp.arange(3.0))

    def straight_through(a, b, c):
        return combined(a, b, c, "straight_through")

    assert_grad_matches_finite_differences(combined, points, rtol=1e-5, atol=1e-8)
    # Straight-through: the gradient of the soft functions, not that of jnp.max.
    assert_grad_matches_finite_differences(
        combined, points, grad_fn=straight_through, rtol=1e-5, atol=1e-8
    )


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
    # evaluate() runs all four functions in every mode: the bfloat16 ones stay bfloat16.
    for name, value in evaluate("gaussian")(jnp.asarray(X, jnp.bfloat16), 0.5).items():
        assert value.dtype == jnp.bfloat16, name
    assert sf.max(X).dtype == jnp.float32
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
    options = {"softness": 0.5, "kind": kind}
    soft_max = jax.jit(jax.value_and_grad(lambda v: sf.max(v, **options)))
    x = jnp.array([0.3, -1.0, 2.0, 0.0, 1.0])
    padded = x.at[3:].set(-jnp.inf)
    value, grad = soft_max(padded)
    value_alone, grad_alone = soft_max(x.at[3:].set(-1e30))  # saturated, like -inf
    np.testing.assert_allclose(value, value_alone, rtol=1e-6)
    np.testing.assert_allclose(grad, grad_alone, rtol=1e-5)
    np.testing.assert_array_equal(grad[3:], 0)
    # +inf entries share the whole weight.
    weights = sf.argmax(jnp.array([1.0, jnp.inf, 0.0, jnp.inf]), **options)
    np.testing.assert_array_equal(weights, [0, 0.5, 0, 0.5])


@ALL_KINDS
def test_slices_of_equal_infinities_and_huge_values(kind):
    inf = np.inf
    x = X.copy()  # the shape evaluate() is compiled for
    x[:3] = [[-inf] * 7, [inf, 1, inf, 0, 0, 0, 0], [-inf, 2, -inf, -inf, -inf, -inf, -inf]]
    results = evaluate(kind)(x, 1e-3)
    # Equal infinities tie: the soft index is uniform over them (the limit of a tie), and the
    # soft max / min is that infinity, as jnp.max / jnp.min.
    uniform = np.array([[1] * 7, [1, 0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]]) / [[7], [2], [1]]
    np.testing.assert_allclose(results["argmax", "soft"][:3], uniform, rtol=1e-6)
    np.testing.assert_array_equal(results["max", "soft"][:3], [-inf, inf, 2])
    np.testing.assert_array_equal(np.asarray(results["min", "soft"])[[0, 2]], [-inf, -inf])
    assert float(sf.min(jnp.array([inf]), kind=kind)) == inf
    # x / softness overflows here; the soft index must still pick the larger one.
    huge = jnp.array([3e36, 1e36, -3e38])
    np.testing.assert_array_equal(sf.argmax(huge, softness=1e-3, kind=kind), [1, 0, 0])
    np.testing.assert_array_equal(sf.argmin(-huge, softness=1e-3, kind=kind), [1, 0, 0])
    # x_i - x_j overflows here, and the softmax's backward pass would meet 0 * inf.
    extremes = jnp.array([3e38, -3e38, 1.0])
    np.testing.assert_array_equal(jax.grad(lambda x: sf.max(x, kind=kind))(extremes), [1, 0, 0])
    np.testing.assert_array_equal(jax.grad(lambda x: sf.min(x, kind=kind))(extremes), [0, 1, 0])

    # A row of padding masked out of the loss leaves every gradient finite.
    @jax.jit
    def gradient(x):
        def loss(x):
            return jnp.sum(jnp.where(jnp.isfinite(x[:, 1]), sf.max(x, softness=0.5, kind=kind), 0))

        return jax.grad(loss)(x)

    grad = gradient(jnp.asarray(x[:3]).at[1].set(1.0))
    assert np.all(np.isfinite(grad)), grad
    np.testing.assert_array_equal(grad[0], 0)
