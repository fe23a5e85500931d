"""SoftSort and NeuralSort through sf.sort / argsort / rank / top_k / quantile.

Checked against direct NumPy implementations of the published formulas (float64), by the row
sums, by the limits in the softness, against the logistic comparator of the networks at n = 2
(the softness mapping), by float64 finite differences, and in hard and straight-through mode
against jnp.argsort (ties and NaN included).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal, assert_grad_matches_finite_differences

import softflow as sf

DENSE = pytest.mark.parametrize("method", ["softsort", "neuralsort"])


def softmax_rows(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def reference(x, tau, method, descending=False):
    """P[j, i] by the formulas of Prillo & Eisenschlos (2020) and Grover et al. (2019)."""
    n = x.shape[-1]
    if method == "softsort":
        # SoftSort: row j is softmax(-|sort(x)_j - x_i| / tau) over i, sorted as asked.
        anchors = np.sort(x, -1)
        anchors = anchors[..., ::-1] if descending else anchors
        return softmax_rows(-np.abs(anchors[..., :, None] - x[..., None, :]) / tau)
    # NeuralSort: row i (1-based, largest first) is softmax(((n + 1 - 2 i) x - A 1) / tau),
    # A_jk = |x_j - x_k|; ascending rows are the same rows in reverse order.
    a_sum = np.abs(x[..., :, None] - x[..., None, :]).sum(-1)
    i = np.arange(1, n + 1)
    rows = softmax_rows(((n + 1 - 2 * i)[:, None] * x[..., None, :] - a_sum[..., None, :]) / tau)
    return rows if descending else rows[..., ::-1, :]


@functools.cache
def soft(method):
    def run(x, tau):
        options = {"method": method, "softness": tau}
        return {
            "sort": sf.sort(x, return_permutation=True, **options),
            "descending": sf.sort(x, descending=True, return_permutation=True, **options),
            "rank": sf.rank(x, **options),
            "rank descending": sf.rank(x, descending=True, **options),
            "top_k": sf.top_k(x, 3, **options),
            "median": sf.median(x, **options),
        }

    return jax.jit(run)


@DENSE
def test_agrees_with_the_published_formulas(method, x64):
    x = np.random.default_rng(0).normal(size=(4, 9))
    tau = 0.3
    out = soft(method)(x, tau)
    expected = reference(x, tau, method)
    values, permutation = out["sort"]
    np.testing.assert_allclose(permutation, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(values, np.einsum("bji,bi->bj", expected, x), rtol=1e-12)
    flipped = reference(x, tau, method, descending=True)
    np.testing.assert_allclose(out["descending"][1], flipped, rtol=1e-12, atol=1e-15)
    top_values, top_index = out["top_k"]
    np.testing.assert_allclose(top_index, flipped[:, :3], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(top_values, np.einsum("bji,bi->bj", flipped[:, :3], x), rtol=1e-12)
    # Ranks: each column of P read as a distribution over the positions.
    ranks = np.einsum("j,bji->bi", np.arange(9), expected) / expected.sum(-2)
    np.testing.assert_allclose(out["rank"], ranks, rtol=1e-12)
    np.testing.assert_allclose(out["rank descending"], 8 - ranks, rtol=1e-12)
    interpolated = 0.5 * (values[:, 4] + values[:, 4])
    np.testing.assert_allclose(out["median"], interpolated, rtol=1e-12)
    # Rows are distributions over the inputs; the ranks stay in [0, n - 1].
    assert np.all(np.asarray(permutation) >= 0)
    np.testing.assert_allclose(permutation.sum(-1), 1, rtol=1e-12)
    assert np.all((out["rank"] >= 0) & (out["rank"] <= 8))


@DENSE
def test_two_elements_give_the_logistic_comparator(method, x64):
    # The softness mapping: at n = 2 every method is the comparator alpha = s((b - a) / tau).
    x = np.random.default_rng(1).normal(size=(6, 2)) * np.array([[1.0], [0.1]]).repeat(3, 0)
    for tau in (0.05, 0.7, 3.0):
        ours = sf.sort(x, method=method, softness=tau, return_permutation=True)
        network = sf.sort(x, method="bitonic", softness=tau, return_permutation=True)
        np.testing.assert_allclose(ours[1], network[1], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(ours[0], network[0], rtol=1e-12)


@DENSE
def test_limits_of_the_softness(method, x64):
    x = np.random.default_rng(2).permutation(np.arange(7.0))[None] * 0.5
    sharp = sf.argsort(x, method=method, softness=1e-4)  # exp(-gap / tau) underflows to 0
    assert_exactly_equal(sharp, sf.argsort(x, method=method, mode="hard"))
    flat = sf.argsort(x, method=method, softness=1e7)
    np.testing.assert_allclose(flat, np.full((1, 7, 7), 1 / 7), rtol=1e-5)


@DENSE
def test_gradients_match_finite_differences(method, x64):
    points = np.random.default_rng(3).normal(size=(3, 12))

    def loss(a, b, c):
        x = jnp.stack([a, b, c])
        options = {"method": method, "softness": 0.7}
        values = sf.sort(x, **options)
        ranks = sf.rank(x, **options)
        top = sf.top_k(x, 2, **options)[0]
        return (
            jnp.dot(values, jnp.array([1.0, -2.0, 0.5]))
            + jnp.dot(ranks, jnp.array([2.0, -1.0, 3.0]))
            + jnp.sum(top * jnp.array([0.3, 1.1]))
        )

    assert_grad_matches_finite_differences(loss, points, rtol=1e-6, atol=1e-9)


@DENSE
def test_hard_and_straight_through_are_exactly_argsort(method):
    x = jnp.array(
        [[1.0, 3.0, 3.0, 0.0, -2.0, -2.0], [0.0, -0.0, jnp.nan, 1.0, jnp.nan, -1.0]], jnp.float32
    )
    order = jnp.argsort(x, axis=-1, stable=True)
    down = jnp.argsort(x, axis=-1, stable=True, descending=True)
    expected = jax.nn.one_hot(order, 6, dtype=jnp.float32)
    for mode in ("hard", "straight_through"):
        values, permutation = sf.sort(x, method=method, mode=mode, return_permutation=True)
        assert_exactly_equal(values, jnp.sort(x, axis=-1))
        assert_exactly_equal(permutation, expected)
        assert_exactly_equal(sf.argsort(x, method=method, mode=mode), expected)
        assert_exactly_equal(
            sf.rank(x, method=method, mode=mode), jnp.argsort(order, axis=-1).astype(jnp.float32)
        )
        assert_exactly_equal(
            sf.argsort(x, method=method, mode=mode, descending=True),
            jax.nn.one_hot(down, 6, dtype=jnp.float32),
        )
    # Straight-through: the gradient is the soft one, not jnp.sort's.
    weights = jnp.arange(6.0)

    def loss(x, mode):
        return jnp.sum(weights * sf.sort(x, method=method, softness=0.5, mode=mode))

    finite = x.at[1].set(jnp.arange(6.0))
    np.testing.assert_allclose(
        jax.grad(loss)(finite, "straight_through"), jax.grad(loss)(finite, "soft"), rtol=1e-6
    )


def test_softsort_sorts_infinities_with_the_gradient_of_the_limit():
    x = jnp.array([jnp.inf, 1.0, -jnp.inf, 2.0, jnp.inf, 0.5])
    weights = jnp.arange(6.0)

    def loss(x):
        return jnp.sum(weights * sf.sort(x, method="softsort", softness=0.3))

    values, permutation = sf.sort(x, method="softsort", softness=0.3, return_permutation=True)
    np.testing.assert_array_equal(values[jnp.array([0, 4, 5])], [-np.inf, np.inf, np.inf])
    np.testing.assert_allclose(permutation.sum(-1), 1, rtol=1e-6)
    huge = jnp.where(jnp.isinf(x), jnp.sign(x) * 1e30, x)
    gradient = jax.jit(jax.grad(loss))
    assert np.all(np.isfinite(gradient(x)))
    np.testing.assert_allclose(gradient(x), gradient(huge), rtol=1e-6)


def test_neuralsort_of_an_infinite_entry_is_nan_as_documented():
    x = jnp.array([jnp.inf, 1.0, 2.0])
    assert np.all(np.isnan(sf.sort(x, method="neuralsort", softness=0.3)))


@DENSE
def test_extreme_finite_entries_and_softness_sort_as_the_limit(method):
    # NeuralSort's scores overflowed: NaN for a small softness or entries near the float's
    # largest value, where every other method sorts. Its scores are homogeneous in (x, softness),
    # so scaling both by a power of two must change nothing but the scale of the values.
    x = jnp.array([3.0, 1.0, 2.0, 2.0, -0.5], jnp.float32)
    hard = sf.sort(x, mode="hard")
    for softness in (1.2e-38, 1e-30):
        assert_exactly_equal(sf.sort(x, method=method, softness=softness), hard)
        gradient = jax.grad(lambda x, s=softness: sf.sort(x, method=method, softness=s) @ x)(x)
        assert np.all(np.isfinite(gradient))
    big = jnp.array([3e38, -3e38, 1.0, -2e38], jnp.float32)
    assert_exactly_equal(sf.sort(big, method=method, softness=1.0), sf.sort(big, mode="hard"))
    y = jnp.asarray(np.random.default_rng(7).normal(size=(4, 9)), jnp.float32)
    for power in (2.0**-60, 2.0**100):
        np.testing.assert_allclose(
            sf.argsort(y * power, method=method, softness=0.4 * power),
            sf.argsort(y, method=method, softness=0.4),
            rtol=1e-6,
            atol=1e-7,
        )


@DENSE
def test_an_empty_axis_sorts_to_empty_results(method):
    x = jnp.zeros((3, 0))
    assert sf.sort(x, method=method, softness=0.1).shape == (3, 0)
    assert sf.argsort(x, method=method, softness=0.1).shape == (3, 0, 0)
    assert sf.rank(x, method=method, softness=0.1).shape == (3, 0)
    values, weights = sf.top_k(x, 0, method=method, softness=0.1)
    assert values.shape == (3, 0) and weights.shape == (3, 0, 0)


@DENSE
def test_dtypes_batches_and_vmap(method):
    x = np.random.default_rng(4).normal(size=(3, 5, 8)).astype(np.float32)
    tau = jnp.array([0.2, 0.5, 1.0])[:, None]
    along = sf.argsort(x, method=method, softness=tau)
    assert along.shape == (3, 5, 8, 8)
    moved = sf.argsort(np.moveaxis(x, -1, 0), axis=0, method=method, softness=tau)
    np.testing.assert_allclose(moved, along, rtol=1e-6)
    mapped = jax.vmap(lambda row, t: sf.argsort(row, method=method, softness=t))(x, tau)
    np.testing.assert_allclose(mapped, along, rtol=1e-6)
    for dtype in (jnp.bfloat16, jnp.float16, jnp.float32):
        values, permutation = sf.sort(jnp.asarray(x, dtype), method=method, return_permutation=True)
        assert values.dtype == dtype and permutation.dtype == dtype
    with jax.enable_x64(True):
        assert sf.sort(np.asarray(x, np.float64), method=method).dtype == jnp.float64


def test_traced_softness_compiles_once():
    # Counted by traces, which a softness passed as a static value would double: jit's
    # fast-path cache size, checked before, once read 0 in a parallel run of the suite.
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 6)), jnp.float32)
    traces = []

    def rank(x, tau):
        traces.append(tau)
        return sf.rank(x, method="softsort", softness=tau)

    ranks = jax.jit(rank)
    ranks(x, 0.3)
    ranks(x, 0.7)
    assert len(traces) == 1


@DENSE
def test_other_kinds_are_refused(method):
    with pytest.raises(ValueError, match=f"method '{method}' is a softmax.*got kind='cauchy'"):
        sf.sort(jnp.ones(3), method=method, kind="cauchy")
    with pytest.raises(ValueError, match="kind must be 'logistic'"):
        sf.Relaxation(0.3, kind="gaussian").rank(jnp.ones(3), method=method)


@pytest.mark.parametrize("descending", [False, True])
def test_counted_order_statistics_are_jnp_sort_bit_for_bit(descending):
    # Up to n = COUNTED_UP_TO the anchors are counted, not sorted: the same floats (ties, -0.0
    # and 0.0, infinities) and the same gradient as jnp.sort's.
    from softflow import _dense_permutation

    special = np.array([0.0, -0.0, 1.0, -1.0, 2.5, np.inf, -np.inf, 3.0], np.float32)
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.choice(special, size=(5, 13)))
    weights = jnp.asarray(rng.normal(size=(5, 13)), jnp.float32)

    def counted(x):
        return _dense_permutation._anchors(x, descending, 13)

    def sorted_(x):
        return jnp.sort(x, axis=-1, descending=descending)

    assert _dense_permutation.COUNTED_UP_TO >= 13
    assert_exactly_equal(counted(x), sorted_(x))
    finite = jnp.where(jnp.isinf(x), 7.0, x)
    assert_exactly_equal(
        jax.grad(lambda x: jnp.sum(weights * counted(x)))(finite),
        jax.grad(lambda x: jnp.sum(weights * sorted_(x)))(finite),
    )


@DENSE
def test_one_hot_rows_return_their_entry_bit_for_bit(method):
    # The values are one matrix product, but a one-hot row still returns its entry (-0.0 too).
    x = jnp.array([[-0.0, 3.0, -2.0, 1.0], [2.0, -0.0, 5.0, 4.0]], jnp.float32)
    values, permutation = sf.sort(x, method=method, softness=1e-3, return_permutation=True)
    assert_exactly_equal(permutation, jax.nn.one_hot(jnp.argsort(x, axis=-1), 4))
    assert_exactly_equal(values, jnp.sort(x, axis=-1))
