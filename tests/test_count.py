"""Counting soft truth values: the Poisson-binomial law and the comparisons of the count.

References are independent of the recursion: enumeration of all 2^n outcomes (n <= 12), the
binomial law of scipy for equal probabilities, products for the extreme counts, and central
finite differences in float64.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from helpers import assert_exactly_equal

import softflow as sf
import softflow._count

COMPARISONS = {
    sf.count_equal: np.equal,
    sf.count_not_equal: np.not_equal,
    sf.count_less: np.less,
    sf.count_less_equal: np.less_equal,
    sf.count_greater: np.greater,
    sf.count_greater_equal: np.greater_equal,
}


def enumerated_law(p: np.ndarray) -> np.ndarray:
    """P(count = 0..n) of independent events, summed over all 2^n outcomes (last axis of p)."""
    n = p.shape[-1]
    law = np.zeros((*p.shape[:-1], n + 1))
    for outcome in itertools.product((0, 1), repeat=n):
        bits = np.array(outcome)
        law[..., bits.sum()] += np.prod(np.where(bits == 1, p, 1 - p), axis=-1)
    return law


def enumerated_law_jax(p: jax.Array) -> jax.Array:
    """:func:`enumerated_law` in JAX, for gradients by autodiff of the enumeration itself."""
    n = p.shape[-1]
    outcomes = np.array(list(itertools.product((0, 1), repeat=n)))  # (2^n, n)
    weights = jnp.prod(jnp.where(outcomes == 1, p[..., None, :], 1 - p[..., None, :]), axis=-1)
    one_hot = outcomes.sum(axis=1)[:, None] == np.arange(n + 1)  # (2^n, n + 1)
    return weights @ one_hot.astype(p.dtype)


def enumerated_probability(p: np.ndarray, k, relation) -> np.ndarray:
    law = enumerated_law(p)
    counts = np.arange(p.shape[-1] + 1)
    k = np.asarray(k)[..., None]
    return np.sum(np.where(relation(counts, k), law, 0.0), axis=-1)


@pytest.fixture(scope="module")
def probabilities():
    rng = np.random.default_rng(0)
    p = rng.random((3, 9))
    p[0, :3] = (0.0, 1.0, 0.5)  # sure events and a fair coin among the others
    return p


# ------------------------------------------------------------------------------------- the law


@pytest.mark.usefixtures("x64")
def test_law_equals_enumeration(probabilities):
    law = sf.count_distribution(probabilities)
    assert law.shape == (3, 10) and law.dtype == jnp.float64
    np.testing.assert_allclose(law, enumerated_law(probabilities), rtol=1e-12, atol=1e-15)


@pytest.mark.usefixtures("x64")
def test_law_along_another_axis_and_truncated(probabilities):
    p = np.stack([probabilities, probabilities[::-1]], axis=1)  # (3, 2, 9)
    law = sf.count_distribution(p, axis=-1, max_count=4)
    moved = sf.count_distribution(np.moveaxis(p, -1, 0), axis=0, max_count=4)
    assert law.shape == moved.shape == (3, 2, 5)
    np.testing.assert_allclose(law, enumerated_law(p)[..., :5], rtol=1e-12, atol=1e-15)
    assert_exactly_equal(law, moved)


@pytest.mark.usefixtures("x64")
def test_law_beyond_n_is_zero_and_empty_axis_counts_zero():
    p = np.array([0.3, 0.9])
    law = sf.count_distribution(p, max_count=5)
    np.testing.assert_allclose(law, [0.07, 0.66, 0.27, 0, 0, 0], rtol=1e-12)
    assert np.all(np.asarray(law)[3:] == 0)
    empty = sf.count_distribution(np.zeros((4, 0)), max_count=2)
    np.testing.assert_array_equal(empty, np.tile([1.0, 0.0, 0.0], (4, 1)))
    assert_exactly_equal(sf.count_equal(np.zeros((4, 0)), 0), jnp.ones(4))


def test_long_axis_is_accurate_in_float32():
    # Equal probabilities: the binomial law of scipy, an independent closed form.
    n, prob = 3000, 0.37
    law = sf.count_distribution(jnp.full(n, prob, jnp.float32))
    expected = scipy.stats.binom.pmf(np.arange(n + 1), n, prob)
    assert law.dtype == jnp.float32
    np.testing.assert_allclose(law, expected, atol=2e-6)
    assert abs(float(law.sum()) - 1) < 1e-4
    tail = sf.count_greater_equal(jnp.full(n, prob, jnp.float32), 1200)
    np.testing.assert_allclose(tail, scipy.stats.binom.sf(1199, n, prob), atol=2e-6)
    # Mixed probabilities: float32 against the same law in float64.
    p = np.random.default_rng(1).random(2000)
    with jax.enable_x64(True):
        reference = np.asarray(sf.count_distribution(jnp.asarray(p, jnp.float64)))
    np.testing.assert_allclose(sf.count_distribution(p.astype(np.float32)), reference, atol=2e-6)


def test_small_tails_keep_relative_precision_in_float32():
    # Rare events and almost sure ones: the tail was 1 - (1 - tail) in float32 (off by a factor
    # of 4,000 at 6.5e-9, or negative); against scipy's binomial tails in float64.
    n = 2000
    rare = jnp.full(n, 1e-5, jnp.float32)
    p = float(rare[0])  # the float32 value, to compare like with like
    for k in (2, 3, 4):
        np.testing.assert_allclose(
            sf.count_greater_equal(rare, k), scipy.stats.binom.sf(k - 1, n, p), rtol=1e-4
        )
        likely = 1 - rare  # whose false values are rare, with the rounding of 1 - 1e-5
        q = 1 - float(likely[0])
        np.testing.assert_allclose(
            sf.count_less_equal(likely, n - k), scipy.stats.binom.sf(k - 1, n, q), rtol=1e-4
        )
    sure = jnp.asarray(np.random.default_rng(3).uniform(0.999, 1.0, n), jnp.float32)
    for function in COMPARISONS:
        for k in (0, 1, 5, 1991, n - 1, n):
            value = float(function(sure, k))
            assert 0.0 <= value <= 1.0, (function.__name__, k, value)


@pytest.mark.usefixtures("x64")
def test_extreme_counts_keep_relative_precision():
    # P(all true) and P(all false) are products; read from the shorter side they stay exact.
    p = np.full(40, 0.01)
    np.testing.assert_allclose(sf.count_equal(p, 40), 0.01**40, rtol=1e-12)
    np.testing.assert_allclose(sf.count_greater_equal(p, 40), 0.01**40, rtol=1e-12)
    at_least_39 = 40 * 0.01**39 * 0.99 + 0.01**40
    np.testing.assert_allclose(sf.count_greater(p, 38), at_least_39, rtol=1e-12)
    np.testing.assert_allclose(sf.count_less(1 - p, 1), 0.01**40, rtol=1e-12)


@pytest.mark.usefixtures("x64")
def test_all_and_any_are_the_extreme_counts(probabilities):
    # The product t-norm assumes independence too: all = P(C = n), any = P(C >= 1).
    n = probabilities.shape[-1]
    np.testing.assert_allclose(sf.count_equal(probabilities, n), sf.all(probabilities, -1))
    np.testing.assert_allclose(sf.count_greater_equal(probabilities, 1), sf.any(probabilities, -1))


def test_compile_size_does_not_grow_with_n():
    def equations(n):
        jaxpr = jax.make_jaxpr(lambda p: sf.count_distribution(p, max_count=20))(jnp.zeros(n))
        return len(str(jaxpr).splitlines())

    assert equations(64) == equations(4096)
    assert equations(64) == equations(640)


# ------------------------------------------------------------------------------ the comparisons


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("function", list(COMPARISONS))
def test_comparisons_equal_enumeration_for_every_k(function, probabilities):
    relation = COMPARISONS[function]
    n = probabilities.shape[-1]
    jitted = jax.jit(lambda p, k: function(p, k))
    for k in range(-2, n + 3):  # traced k: one compilation
        expected = enumerated_probability(probabilities, k, relation)
        np.testing.assert_allclose(jitted(probabilities, k), expected, atol=1e-12)
    for k in (-1, 0, 2, n - 1, n, n + 1):  # concrete k: the law is truncated to it
        expected = enumerated_probability(probabilities, k, relation)
        np.testing.assert_allclose(function(probabilities, k), expected, atol=1e-12)
    # An array of counts, one per slice, and a grid of counts broadcast against the batch.
    ks = np.array([2, -1, n])
    np.testing.assert_allclose(
        function(probabilities, ks), enumerated_probability(probabilities, ks, relation), atol=1e-12
    )
    grid = np.arange(n + 1)[:, None]  # (n + 1, 1) against the batch (3,)
    result = jitted(probabilities, grid)
    assert result.shape == (n + 1, 3)
    np.testing.assert_allclose(
        result, enumerated_probability(probabilities, grid, relation), atol=1e-12
    )


def test_traced_k_compiles_once():
    traces = []

    @jax.jit
    def f(p, k):
        traces.append(None)
        return sf.count_greater_equal(p, k)

    p = jnp.linspace(0, 1, 7)
    values = [float(f(p, jnp.int32(k))) for k in range(8)]
    assert len(traces) == 1
    assert values == sorted(values, reverse=True) and values[0] == 1.0


def test_hard_and_straight_through_modes():
    rng = np.random.default_rng(2)
    p = rng.random((5, 8)).astype(np.float32)
    p[0, 0] = 0.5  # reads as false
    count = (p > 0.5).sum(axis=-1)
    functions = list(COMPARISONS)

    def values_and_grads(mode):
        def all_functions(q, k):
            values = [f(q, k, mode=mode) for f in functions]
            grads = [jax.grad(lambda r, f=f: f(r, k, mode=mode).sum())(q) for f in functions]
            return values, grads

        return jax.jit(all_functions)

    runs = {mode: values_and_grads(mode) for mode in sf.MODES}
    for k in (0, 3, 4, 8):
        (_, soft_grads), (hard, hard_grads), (straight, straight_grads) = (
            runs[mode](p, k) for mode in ("soft", "hard", "straight_through")
        )
        for i, relation in enumerate(COMPARISONS.values()):
            assert_exactly_equal(hard[i], relation(count, k).astype(np.float32))
            assert_exactly_equal(straight[i], hard[i])
            assert_exactly_equal(straight_grads[i], soft_grads[i])
            assert not np.any(hard_grads[i])
            # Only k = 0 and k = n can give a probability that does not depend on p.
            assert np.any(soft_grads[i]) or k in (0, 8)
    law = sf.count_distribution(p, mode="hard", max_count=4)
    assert_exactly_equal(law, (count[:, None] == np.arange(5)).astype(np.float32))
    # A long axis (counted by a scan) reads 1/2 as false too.
    long = np.full((2, 12), 0.5, np.float32)
    long[1, :3] = 1.0
    assert_exactly_equal(sf.count_equal(long, 0, mode="hard"), np.array([1.0, 0.0], np.float32))
    assert_exactly_equal(sf.count_equal(long, 3, mode="hard"), np.array([0.0, 1.0], np.float32))


def test_every_mode_is_exact_on_zero_one_truth_values():
    rng = np.random.default_rng(3)
    bits = rng.random((6, 8)) < 0.5
    count = bits.sum(axis=-1)
    expected_law = (count[:, None] == np.arange(9)).astype(np.float32)
    cases = [(bits, "soft"), (bits.astype(np.int32), "soft")]
    cases += [(bits.astype(np.float32), mode) for mode in sf.MODES]
    for source, mode in cases:

        @jax.jit
        def all_functions(q, mode=mode):
            law = sf.count_distribution(q, mode=mode)
            return law, [f(q, 5, mode=mode) for f in COMPARISONS]

        law, values = all_functions(source)
        assert_exactly_equal(law, expected_law)
        for value, relation in zip(values, COMPARISONS.values(), strict=True):
            assert_exactly_equal(value, relation(count, 5).astype(np.float32))


# ------------------------------------------------------------------------- expectations, lists


@pytest.mark.usefixtures("x64")
def test_expectation_of_a_function_of_the_count(probabilities):
    law = enumerated_law(probabilities)  # (3, 10)
    rng = np.random.default_rng(9)
    table = rng.normal(size=(3, 10))  # one value per slice and count
    np.testing.assert_allclose(
        sf.count_expectation(probabilities, table), np.sum(law * table, -1), rtol=1e-12
    )
    values = [rng.normal(size=3) for _ in range(4)]  # f(0..3) per slice, f = 0 above 3
    expected = sum(law[:, k] * values[k] for k in range(4))
    np.testing.assert_allclose(sf.count_expectation(probabilities, values), expected, rtol=1e-12)
    mean = sf.count_expectation(probabilities, np.arange(10.0))
    np.testing.assert_allclose(mean, probabilities.sum(-1), rtol=1e-12)
    # Gradients with respect to the truth values and to the values, against the enumeration.
    grads = jax.jit(jax.grad(lambda p, v: jnp.sum(sf.count_expectation(p, v)), argnums=(0, 1)))(
        probabilities, table
    )
    expected = jax.jit(jax.grad(lambda p, v: jnp.sum(enumerated_law_jax(p) * v), argnums=(0, 1)))(
        jnp.asarray(probabilities), jnp.asarray(table)
    )
    np.testing.assert_allclose(grads[0], expected[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads[1], expected[1], rtol=1e-10, atol=1e-12)


def test_expectation_modes_and_life():
    rng = np.random.default_rng(10)
    board = (rng.random((4, 7, 9)) < 0.4).astype(np.float32)
    neighbours = [
        np.roll(board, (dr, dc), axis=(-2, -1))
        for dr in (-1, 0, 1)
        for dc in (-1, 0, 1)
        if dr or dc
    ]
    count = sum(neighbours)
    life = ((count == 3) | ((board == 1) & (count == 2))).astype(np.float32)
    for mode in sf.MODES:  # exact on 0/1 boards in every mode
        assert_exactly_equal(
            sf.count_expectation(neighbours, [0.0, 0.0, board, 1.0], mode=mode), life
        )
    p = rng.random((5, 8)).astype(np.float32)
    hard_count = (p > 0.5).sum(-1)
    values = np.array([0.5, -1.0, 2.0, 7.0], np.float32)
    hard = sf.count_expectation(p, values, mode="hard")
    assert_exactly_equal(hard, np.where(hard_count <= 3, values[np.minimum(hard_count, 3)], 0))
    assert_exactly_equal(sf.count_expectation(p, values, mode="straight_through"), hard)
    soft_grad = jax.grad(lambda q: sf.count_expectation(q, values).sum())(p)
    straight_grad = jax.grad(
        lambda q: sf.count_expectation(q, values, mode="straight_through").sum()
    )(p)
    assert_exactly_equal(straight_grad, soft_grad)


def test_a_list_of_arrays_counts_like_their_stack():
    rng = np.random.default_rng(11)
    items = [rng.random((3, 4)).astype(np.float32) for _ in range(5)] + [np.float32(0.25)]
    stacked = np.stack(np.broadcast_arrays(*items), axis=-1)
    long = [rng.random(3).astype(np.float32) for _ in range(30)]  # beyond the unrolled length
    for p, reference in ((items, stacked), (long, np.stack(long, -1))):
        assert_exactly_equal(
            sf.count_distribution(p, max_count=4), sf.count_distribution(reference, max_count=4)
        )
        for function in COMPARISONS:
            np.testing.assert_allclose(function(p, 2), function(reference, 2), rtol=1e-6)
    with pytest.raises(ValueError, match="must broadcast against each other"):
        sf.count_equal([np.zeros(3), np.zeros(4)], 1)
    with pytest.raises(ValueError, match=r"p\[1\] must hold truth values"):
        sf.count_equal([np.zeros(3), np.full(3, 2.0)], 1)


# -------------------------------------------------------------------------------- gradients


@pytest.mark.usefixtures("x64")
def test_gradient_equals_gradient_of_enumeration(probabilities):
    cotangent = np.random.default_rng(4).normal(size=(3, 10))

    def gradients(law_fn, p):
        law = jax.jit(jax.grad(lambda q: jnp.sum(law_fn(q) * cotangent)))(p)
        truncated = jax.jit(jax.grad(lambda q: jnp.sum(law_fn(q)[..., :4] ** 2)))(p)
        return law, truncated

    grads = gradients(sf.count_distribution, probabilities)
    expected = gradients(enumerated_law_jax, jnp.asarray(probabilities))
    np.testing.assert_allclose(grads[0], expected[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads[1], expected[1], rtol=1e-10, atol=1e-12)
    # A truncated law, and a long axis (counted by a scan, not unrolled).
    truncated = jax.grad(lambda p: jnp.sum(sf.count_distribution(p, max_count=3) ** 2))
    np.testing.assert_allclose(truncated(probabilities), expected[1], rtol=1e-10, atol=1e-12)
    p12 = np.random.default_rng(5).random(12)
    grad = jax.jit(jax.grad(lambda p: sf.count_distribution(p)[5]))(p12)
    expected = jax.jit(jax.grad(lambda p: enumerated_law_jax(p)[5]))(jnp.asarray(p12))
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("function", list(COMPARISONS))
def test_gradient_matches_finite_differences(function):
    p = np.random.default_rng(6).uniform(0.05, 0.95, (2, 10))
    k = np.array([3, 9])

    @jax.jit
    def probability(q):
        return jnp.sum(function(q, k) * jnp.arange(1.0, 3.0))

    grad = jax.grad(probability)(p)
    steps = np.eye(p.size).reshape(p.size, *p.shape) * 1e-6
    differences = [(probability(p + d) - probability(p - d)) / 2e-6 for d in steps]
    np.testing.assert_allclose(grad.reshape(-1), differences, rtol=1e-6, atol=1e-9)


def test_transformations_agree():
    p = jnp.asarray(np.random.default_rng(7).random((4, 6, 5)), jnp.float32)
    per_slice = jax.jit(jax.vmap(lambda q: sf.count_less_equal(q, 2, axis=0)))(p)
    np.testing.assert_allclose(per_slice, sf.count_less_equal(p, 2, axis=1), rtol=1e-6)
    jacobian = jax.jit(jax.jacfwd(lambda q: sf.count_equal(q, 2)))(p[0, 0])
    gradient = jax.jit(jax.grad(lambda q: sf.count_equal(q, 2)))(p[0, 0])
    np.testing.assert_allclose(jacobian, gradient, rtol=1e-6)
    hessian = jax.jit(jax.hessian(lambda q: sf.count_equal(q, 2)))(p[0, 0])
    # P(C = k) is affine in each p_i: no second derivative along the diagonal.
    np.testing.assert_allclose(np.diag(hessian), 0, atol=1e-6)


# ------------------------------------------------------------------------------ dtypes and NaN


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_dtype_follows_the_truth_values(dtype):
    p = jnp.asarray(np.random.default_rng(8).random((3, 8)), dtype)
    reference = enumerated_law(np.asarray(p, np.float64))
    law = sf.count_distribution(p)
    assert law.dtype == dtype
    # Counted in float32 and rounded once: within one rounding of the dtype.
    np.testing.assert_allclose(
        np.asarray(law, np.float64), reference, rtol=float(jnp.finfo(dtype).eps), atol=1e-7
    )
    for function in COMPARISONS:
        assert function(p, 3).dtype == dtype
        assert function(p, 3, mode="hard").dtype == dtype
    assert sf.count_equal(np.array([True, False]), 1).dtype == jnp.float32
    # Python numbers among the values are weakly typed, as in jnp.
    assert sf.count_expectation(p, [0.0, 1.0, 2.0]).dtype == dtype


def test_nan_makes_its_slice_nan_in_every_mode():
    p = np.array([[0.2, np.nan, 0.9], [0.2, 0.7, 0.9]], np.float32)
    for mode in sf.MODES:
        law = np.asarray(sf.count_distribution(p, mode=mode))
        assert np.all(np.isnan(law[0])) and not np.any(np.isnan(law[1]))
        for function in COMPARISONS:
            # (Also a k that decides the answer alone: below 0, at or above the count.)
            for k in (1, -1, 3, 5):
                value = np.asarray(function(p, k, mode=mode))
                assert np.isnan(value[0]) and not np.isnan(value[1])


# ---------------------------------------------------------------------------------- bad input


def test_bad_arguments_raise_clear_errors():
    p = jnp.full((2, 5), 0.5)
    for bad in (2.0, True, "3", None, [1, 2], jnp.array([1.5])):
        with pytest.raises(TypeError, match="k must be an integer"):
            sf.count_equal(p, bad)
    for bad_axis, error in ((2, ValueError), (-3, ValueError), (0.0, TypeError)):
        with pytest.raises(error, match="axis"):
            sf.count_distribution(p, axis=bad_axis)
    with pytest.raises(ValueError, match="at least one dimension"):
        sf.count_equal(0.5, 1)
    for bad, error in ((-1, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match="max_count"):
            sf.count_distribution(p, max_count=bad)
    with pytest.raises(ValueError, match="mode"):
        sf.count_less(p, 1, mode="exact")
    for bad in (np.array([0.5, 1.5]), np.array([-0.1, 0.5]), np.array([np.inf, 0.0])):
        with pytest.raises(ValueError, match=r"p must hold truth values in \[0, 1\]"):
            sf.count_distribution(bad)
    with pytest.raises(TypeError, match="p must be a real number"):
        sf.count_equal(np.array([1 + 1j]), 1)


def test_k_that_does_not_broadcast_names_k_and_p():
    with pytest.raises(ValueError, match=r"count_equal: k of shape \(3,\) does not broadcast"):
        sf.count_equal(jnp.full((2, 3), 0.5), jnp.asarray([1, 2, 3]))


def test_k_beyond_max_count():
    p = jnp.full((2, 10), 0.5)
    # A concrete k is answered from the cheaper side, so only a k in the middle is too far.
    assert float(sf.count_greater_equal(p[0], 9, max_count=2)) == pytest.approx(11 / 1024)
    with pytest.raises(ValueError, match=r"count_equal: k = 5 .* beyond max_count=2"):
        sf.count_equal(p, 5, max_count=2)
    f = jax.jit(lambda q, k: sf.count_less_equal(q, k, max_count=3))
    assert float(f(p[0], 3)) == pytest.approx(176 / 1024)
    assert float(f(p[0], 12)) == 1.0  # above n: no entry of the law is needed
    with pytest.raises(Exception, match="traced k asked about a count above max_count=3"):
        jax.block_until_ready(f(p[0], 5))


def test_work_follows_the_asked_count(monkeypatch):
    # The law is built only up to the count asked about, or from the false values near n. XLA's
    # cost analysis counts a loop's body once: unrolled by 8, the work per event dominates it.
    monkeypatch.setattr(softflow._count, "_scan_unroll", lambda: 8)

    def flops(fn):
        cost = jax.jit(fn).lower(jnp.full(200, 0.5)).compile().cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"]

    full = flops(sf.count_distribution)
    assert flops(lambda q: sf.count_equal(q, 3)) < full / 20
    assert flops(lambda q: sf.count_greater_equal(q, 197)) < full / 20
    assert flops(lambda q: sf.count_distribution(q, max_count=3)) < full / 20
