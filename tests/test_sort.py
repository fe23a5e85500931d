"""Relaxed sorting networks: sort, argsort, rank, top_k, quantile, median.

Checked against NumPy / jnp in hard mode (bit for bit), against diffsort (the PyTorch reference
implementation of differentiable sorting networks) in soft mode, and by the identities of a soft
permutation (doubly stochastic, sorted = P x, ranks summing to n (n - 1) / 2).
"""

import functools
import itertools
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal, assert_grad_matches_finite_differences

import softflow as sf
from softflow._network import network

METHODS = pytest.mark.parametrize("method", sf.SORTING_METHODS)
NETWORKS = pytest.mark.parametrize("method", ["odd_even", "bitonic"])
RNG = np.random.default_rng(0)
N = 7
# Random rows, then rows with ties (stable order in hard mode) and signed zeros.
X = np.concatenate(
    [
        RNG.normal(size=(5, N)),
        [[1, 3, 3, 0, -2, -2, 1], [0.0, -0.0, 0.0, 1, -0.0, 1, 0], [2, 2, 2, 2, 2, 2, 2]],
    ]
).astype(np.float32)
K = 3
LEVELS = np.array([0.0, 0.1, 0.5, 0.75, 1.0], np.float32)

# diffsort's steepness for our softness tau, kind by kind (diffsort's steps are ours with the
# argument scaled; smoothstep and smootherstep have no diffsort counterpart).
DIFFSORT_STEEPNESS = {
    "logistic": lambda tau: 1 / tau,
    "reciprocal": lambda tau: 1 / tau,
    "cauchy": lambda tau: math.pi / (4 * tau),
    "gaussian": lambda tau: math.sqrt(2 * math.pi) / (4 * tau),
    "optimal": lambda tau: 1 / (4 * tau),
}


def comparator_layers(n, method):
    """Each layer of the network as its (receives min, receives max) pairs of wires."""
    net = network(n, method)
    layers = list(net.layers)
    if method == "odd_even":
        layers = [*net.layers] * net.rounds + ([net.layers[0]] if n % 2 else [])
    result = []
    for layer in layers:
        pairs = []
        for g in range(layer.groups):
            for j in range(layer.distance):
                if layer.skipped is not None and layer.skipped[g, j]:
                    continue
                low = layer.start + 2 * g * layer.distance + j - net.padding
                high = low + layer.distance
                if layer.descending is not None and layer.descending[g, j]:
                    low, high = high, low
                pairs.append((low, high))
        result.append(pairs)
    return result


def simulate(n, method, x):
    """Run the network's layers with exact min/max in NumPy (rows of ``x`` are inputs)."""
    x = x.copy()
    for pairs in comparator_layers(n, method):
        for low, high in pairs:
            assert 0 <= low < n and 0 <= high < n
            smaller = np.minimum(x[..., low], x[..., high])
            larger = np.maximum(x[..., low], x[..., high])
            x[..., low], x[..., high] = smaller, larger
    return x


@NETWORKS
def test_networks_sort_every_zero_one_input(method):
    # The 0-1 principle: a comparator network sorts every input iff it sorts every 0-1 input.
    for n in range(1, 13):
        inputs = np.array(list(itertools.product([0, 1], repeat=n)), np.int8)
        np.testing.assert_array_equal(simulate(n, method, inputs), np.sort(inputs, -1))
        layers = comparator_layers(n, method)
        depth = math.ceil(math.log2(n)) if n > 1 else 0
        assert len(layers) == (n if method == "odd_even" else depth * (depth + 1) // 2)
        # Every wire takes part in at most one comparator of a layer.
        for pairs in layers:
            wires = [w for pair in pairs for w in pair]
            assert len(wires) == len(set(wires))
        if method == "odd_even":  # layer l compares (i, i + 1) for i = l mod 2, l mod 2 + 2, ...
            expected = [[(i, i + 1) for i in range(l % 2, n - 1, 2)] for l in range(n)]
            assert layers == expected


@functools.cache
def evaluate(method, kind="logistic"):
    """Jitted ``(x, q, tau) -> {(name, mode): value}`` of every function in every mode."""

    def run(x, q, tau):
        options = {"method": method, "softness": tau, "kind": kind}
        results = {}
        for mode in sf.MODES:
            for descending in (False, True):
                results["sort", descending, mode] = sf.sort(
                    x, descending=descending, return_permutation=True, mode=mode, **options
                )
                results["rank", descending, mode] = sf.rank(
                    x, descending=descending, mode=mode, **options
                )
            results["values", mode] = sf.sort(x, mode=mode, **options)
            results["argsort", mode] = sf.argsort(x, mode=mode, **options)
            results["top_k", mode] = sf.top_k(x, K, mode=mode, **options)
            results["quantile", mode] = sf.quantile(x, q, mode=mode, **options)
            results["median", mode] = sf.median(x, mode=mode, **options)
        return results

    return jax.jit(run)


@METHODS
def test_hard_and_straight_through_forward_are_exactly_numpy_and_jnp(method):
    results = evaluate(method)(X, LEVELS, 0.5)

    def one_hot(order):
        return jnp.asarray(np.eye(N, dtype=np.float32)[order])

    ascending = np.argsort(X, axis=-1, kind="stable")
    descending = np.argsort(-X, axis=-1, kind="stable")
    expected = {
        ("sort", False): (jnp.sort(X, axis=-1), one_hot(ascending)),
        ("sort", True): (jnp.sort(X, axis=-1, descending=True), one_hot(descending)),
        ("rank", False): jnp.asarray(np.argsort(ascending, -1).astype(np.float32)),
        ("rank", True): jnp.asarray(np.argsort(descending, -1).astype(np.float32)),
        ("values",): jnp.sort(X, axis=-1),
        ("argsort",): one_hot(ascending),
        ("top_k",): (jax.lax.top_k(X, K)[0], one_hot(descending[:, :K])),
        ("quantile",): jnp.quantile(X, LEVELS, axis=-1),
        ("median",): jnp.median(X, axis=-1),
    }
    for key, value in expected.items():
        for mode in ("hard", "straight_through"):
            assert_exactly_equal(results[(*key, mode)], value)
    # The values agree with NumPy too (jnp.sort itself is the reference above).
    np.testing.assert_array_equal(results["values", "hard"], np.sort(X, -1))
    np.testing.assert_allclose(results["quantile", "hard"], np.quantile(X, LEVELS, -1), rtol=1e-6)


@METHODS
def test_soft_results_are_consistent_and_tend_to_the_hard_ones(method):
    results = evaluate(method)(X, LEVELS, 0.5)
    values, permutation = results["sort", False, "soft"]
    np.testing.assert_array_equal(results["values", "soft"], values)
    np.testing.assert_array_equal(results["argsort", "soft"], permutation)
    # The descending sort is compiled apart from the ascending one: XLA may round the last bit
    # differently (seen with odd-even's loop under JAX 0.12), hence one float32 ulp.
    one_ulp = np.finfo(np.float32).eps
    np.testing.assert_allclose(results["sort", True, "soft"][0], values[:, ::-1], rtol=one_ulp)
    # top_k and rank compute no more of P than they need (networks: rows run back through the
    # layers; softsort, neuralsort: k rows only), in another order of operations.
    top_values, top_index = results["top_k", "soft"]
    np.testing.assert_allclose(top_values, values[:, ::-1][:, :K], rtol=1e-6)
    np.testing.assert_allclose(top_index, permutation[:, ::-1][:, :K], rtol=1e-6, atol=1e-7)
    # Ranks read off the permutation (normalised by its column sums, which are 1 for a network);
    # descending ranks mirror the ascending ones.
    ranks = np.einsum("j,bji->bi", np.arange(N), permutation) / permutation.sum(-2)
    np.testing.assert_allclose(results["rank", False, "soft"], ranks, 1e-6)
    np.testing.assert_allclose(
        results["rank", True, "soft"], N - 1 - results["rank", False, "soft"], 1e-5, 1e-5
    )
    # Quantiles interpolate linearly between the softly sorted values (which, at a large
    # softness, need not be in order themselves: np.quantile would sort them again).
    interpolated = [np.interp(LEVELS * (N - 1), np.arange(N), row) for row in np.asarray(values)]
    np.testing.assert_allclose(results["quantile", "soft"], np.transpose(interpolated), 1e-5, 1e-6)
    # At a small softness the soft results reach the hard ones (distinct rows only).
    sharp = evaluate(method)(X, LEVELS, 1e-4)
    distinct = slice(0, 5)
    for key in [("sort", False), ("rank", False), ("top_k",), ("median",)]:
        for soft, hard in zip(
            jax.tree_util.tree_leaves(sharp[(*key, "soft")]),
            jax.tree_util.tree_leaves(sharp[(*key, "hard")]),
            strict=True,
        ):
            np.testing.assert_allclose(soft[distinct], hard[distinct], atol=1e-4)
    quantiles = sharp["quantile", "soft"], sharp["quantile", "hard"]
    np.testing.assert_allclose(quantiles[0][:, distinct], quantiles[1][:, distinct], atol=1e-4)


def test_straight_through_gradient_is_the_soft_one():
    weights = jnp.asarray(RNG.normal(size=X.shape), jnp.float32)

    @jax.jit
    def gradients(x):
        def loss(x, mode):
            return jnp.sum(weights * sf.sort(x, method="bitonic", softness=0.5, mode=mode))

        def exact_loss(x):
            return jnp.sum(weights * jnp.sort(x))

        return [jax.grad(loss)(x, mode) for mode in ("soft", "straight_through")] + [
            jax.grad(exact_loss)(x)
        ]

    soft, straight_through, exact = gradients(X)
    np.testing.assert_allclose(straight_through, soft, rtol=1e-6)
    # jnp.sort's own gradient (a permutation of the weights) must not leak in.
    assert not np.allclose(soft, exact)


@functools.cache
def soft_permutation(method, kind):
    return jax.jit(
        lambda x, tau: sf.sort(x, method=method, softness=tau, kind=kind, return_permutation=True)
    )


def float64_rows():
    return np.random.default_rng(2).normal(size=(4, 13))


@NETWORKS
@pytest.mark.parametrize("kind", sf.KINDS)
def test_soft_permutation_is_doubly_stochastic(method, kind, x64):
    x = float64_rows()
    values, permutation = soft_permutation(method, kind)(x, 0.4)
    assert np.all(np.asarray(permutation) >= 0)
    np.testing.assert_allclose(permutation.sum(-1), 1, rtol=1e-12)
    np.testing.assert_allclose(permutation.sum(-2), 1, rtol=1e-12)
    np.testing.assert_allclose(values, np.einsum("bji,bi->bj", permutation, x), rtol=1e-12)
    ranks = np.einsum("j,bji->bi", np.arange(13), permutation)
    np.testing.assert_allclose(ranks.sum(-1), 13 * 12 / 2, rtol=1e-12)


@NETWORKS
@pytest.mark.parametrize("kind", sorted(DIFFSORT_STEEPNESS))
def test_agrees_with_diffsort(method, kind, x64):
    diffsort = pytest.importorskip("diffsort")
    torch = pytest.importorskip("torch")
    x, tau = float64_rows(), 0.4
    values, permutation = soft_permutation(method, kind)(x, tau)
    network = diffsort.DiffSortNet(
        method, x.shape[-1], steepness=DIFFSORT_STEEPNESS[kind](tau), distribution=kind
    )
    reference_values, reference_matrix = network(torch.tensor(x))
    # diffsort's matrix holds the weight of input i in output j at [i, j]: ours transposed.
    reference_permutation = reference_matrix.numpy().transpose(0, 2, 1)
    # diffsort's optimal step divides by |v| + 1e-10, a relative change of up to 4e-10.
    atol = 1e-9 if kind == "optimal" else 1e-14
    np.testing.assert_allclose(values, reference_values.numpy(), rtol=1e-13, atol=atol)
    np.testing.assert_allclose(permutation, reference_permutation, rtol=1e-13, atol=atol)


def test_bitonic_sorts_1024_elements_with_finite_gradients():
    x = jax.random.normal(jax.random.key(0), (1024,))

    def loss(x, tau):
        return jnp.sum(jnp.arange(1024.0) * sf.sort(x, method="bitonic", softness=tau))

    value, (grad_x, grad_tau) = jax.jit(jax.value_and_grad(loss, (0, 1)))(x, 1e-3)
    assert np.all(np.isfinite(grad_x)) and np.isfinite(grad_tau) and np.isfinite(value)
    np.testing.assert_allclose(value, jnp.sum(jnp.arange(1024.0) * jnp.sort(x)), rtol=1e-4)


def _largest_array(jaxpr) -> int:
    """The most elements of any value computed in ``jaxpr``, nested jaxprs included."""
    largest = 0
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            largest = max(largest, int(np.prod(v.aval.shape)))
        for param in eqn.params.values():
            for inner in param if isinstance(param, tuple | list) else [param]:
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns"):
                    largest = max(largest, _largest_array(inner))
    return largest


@NETWORKS
def test_only_the_permutation_itself_builds_an_n_by_n_matrix(method):
    # A network's values cost O(n) per layer; its ranks and top-k rows run vectors back through
    # the layers (O(n) per layer and row): none of them, nor their gradients, builds P.
    n = 64

    def largest(fn):
        jaxpr = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(fn(x) ** 2)))(jnp.ones((2, n)))
        return _largest_array(jaxpr.jaxpr)

    options = {"method": method, "softness": 0.5}
    permutations = 2 * n * n  # P of the two rows
    assert largest(lambda x: sf.sort(x, **options)) < permutations
    assert largest(lambda x: sf.median(x, **options)) < permutations
    assert largest(lambda x: sf.rank(x, **options)) < permutations
    # (odd-even's n layers store 3 rows each for the gradient: 3 n^2 / 2 in all)
    assert largest(lambda x: sf.top_k(x, 3, **options)[1]) < permutations
    assert largest(lambda x: sf.argsort(x, **options)) >= permutations  # the check sees P


def test_gradients_match_finite_differences(x64):
    points = np.random.default_rng(3).normal(size=(3, 16))
    levels = np.random.default_rng(4).uniform(0.05, 0.95, size=16)

    def sorted_and_ranked(a, b, c):
        # Values of one network and ranks (through the permutation) of another, in one scalar.
        x = jnp.stack([a, b, c])
        values = sf.sort(x, method="bitonic", softness=0.6, kind="gaussian")
        ranks = sf.rank(x, softness=0.6, kind="logistic")
        return jnp.dot(values, jnp.arange(1.0, 4.0)) + jnp.dot(ranks, jnp.array([2.0, -1.0, 3.0]))

    def soft_quantile(a, b, q):
        return sf.quantile(jnp.stack([a, b, -a * b]), q, softness=0.6, kind="cauchy")

    assert_grad_matches_finite_differences(sorted_and_ranked, points, rtol=1e-6, atol=1e-9)
    assert_grad_matches_finite_differences(soft_quantile, (*points[:2], levels), rtol=1e-6)


def test_axis_vmap_and_softness_per_slice():
    x = jnp.asarray(X[:4])
    tau = jnp.array([0.1, 0.5, 1.0, 2.0])
    along_rows = sf.sort(x, softness=tau)
    np.testing.assert_allclose(sf.sort(x.T, axis=0, softness=tau), along_rows.T, rtol=1e-6)
    mapped = jax.vmap(lambda row, t: sf.sort(row, softness=t))(x, tau)
    np.testing.assert_allclose(mapped, along_rows, rtol=1e-6)
    permutation = sf.argsort(x.T, axis=0, softness=tau)
    assert permutation.shape == (4, N, N)
    np.testing.assert_allclose(permutation, sf.argsort(x, softness=tau), rtol=1e-6)


def test_dtypes_are_preserved():
    @jax.jit
    def results(x):
        values, permutation = sf.sort(x, method="bitonic", return_permutation=True)
        return values, permutation, sf.median(x), sf.quantile(x, 0.3)

    for dtype in (jnp.bfloat16, jnp.float32):
        for value in results(jnp.asarray(X, dtype)):
            assert value.dtype == dtype
    with jax.enable_x64(True):
        assert sf.sort(np.asarray(X, np.float64)).dtype == jnp.float64
    # Integers rank exactly in hard mode (2**24 + 1 and 2**24 are equal in float32).
    big = jnp.array([2**24 + 1, 2**24], jnp.int32)
    assert_exactly_equal(sf.rank(big, mode="hard"), jnp.array([1.0, 0.0]))


def test_relaxation_methods_use_its_settings():
    relax = sf.Relaxation(0.3, kind="cauchy")
    np.testing.assert_array_equal(
        relax.sort(X, method="bitonic"),
        sf.sort(X, method="bitonic", softness=relax.softness, kind="cauchy"),
    )
    assert_exactly_equal(relax.hard().median(X), jnp.median(X, axis=-1))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="method must be one of"):
        sf.sort(X, method="bubble")
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        sf.argsort(X, axis=2)
    with pytest.raises(ValueError, match=r"k must be an int in \[0, 7\]; got 8"):
        sf.top_k(X, 8)
    with pytest.raises(TypeError, match="k must be a Python int"):
        sf.top_k(X, 2.0)
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        sf.quantile(X, 1.5)
    with pytest.raises(ValueError, match="q must be a scalar or a 1-D array"):
        sf.quantile(X, np.zeros((2, 2)))
    with pytest.raises(TypeError, match="x must be a floating array"):
        sf.sort(jnp.arange(4))
    with pytest.raises(TypeError, match="descending must be a bool"):
        sf.rank(X, descending="yes")
    with pytest.raises(ValueError, match="kind must be one of"):
        sf.median(X, kind="tanh")


@NETWORKS
def test_infinities_sort_with_the_gradient_of_the_limit(method):
    x = jnp.array([jnp.inf, 1.0, -jnp.inf, 2.0, jnp.inf, 0.5])
    weights = jnp.arange(6.0)

    def loss(x):
        return jnp.sum(weights * sf.sort(x, method=method, softness=0.3))

    values, permutation = sf.sort(x, method=method, softness=0.3, return_permutation=True)
    np.testing.assert_array_equal(values[jnp.array([0, 4, 5])], [-np.inf, np.inf, np.inf])
    np.testing.assert_allclose(permutation.sum(-1), 1, rtol=1e-6)
    # Infinities behave like huge finite values, whose comparisons are saturated: same gradient.
    huge = jnp.where(jnp.isinf(x), jnp.sign(x) * 1e30, x)
    gradient = jax.jit(jax.grad(loss))
    np.testing.assert_allclose(gradient(x), gradient(huge), rtol=1e-6)


@NETWORKS
@pytest.mark.parametrize("kind", sf.KINDS)
def test_values_near_the_float32_maximum_sort_with_the_gradient_of_the_limit(method, kind):
    """Gaps between them overflow (3e38 - (-3e38)), and so would the cotangents that meet the
    saturated comparisons; the gradient stays finite, and where the step's tails are light it
    is that of huge values whose gaps do not overflow. (A heavy tail mixes 1e-39 of 3e38 into
    its neighbours, which float32 cannot hold.)"""
    x = jnp.array([3e38, 1.0, -3e38, 2.0, 2e38, 0.5], jnp.float32)
    weights = jnp.arange(6.0) / 6

    def loss(x):
        return jnp.sum(weights * sf.sort(x, method=method, softness=0.3, kind=kind))

    gradient = jax.jit(jax.grad(loss))
    assert np.all(np.isfinite(gradient(x)))
    if kind in ("logistic", "gaussian", "smoothstep", "smootherstep"):  # (light tails)
        huge = jnp.where(jnp.abs(x) > 1e37, x * 1e-8, x)
        np.testing.assert_allclose(gradient(x), gradient(huge), rtol=1e-6)


def quantile_reference(x, q):
    """jnp.quantile's "linear" rule in NumPy, in the dtype of ``q`` as jnp computes it, except that
    an order statistic of weight exactly 0 does not count (jnp multiplies it by 0: inf gives NaN).
    """
    y = np.sort(np.asarray(x, np.float64), axis=-1).astype(np.asarray(x).dtype)
    q = np.asarray(q)
    n = y.shape[-1]
    position = q * q.dtype.type(n - 1)
    low, high = np.floor(position), np.ceil(position)
    fraction = position - low
    y_low = y[..., low.astype(int)].astype(q.dtype)
    y_high = y[..., high.astype(int)].astype(q.dtype)
    with np.errstate(invalid="ignore"):
        mixed = y_low * (1 - fraction) + y_high * fraction
    return np.moveaxis(np.where(fraction == 0, y_low, mixed), -1, 0).astype(y.dtype)


def test_quantile_and_median_keep_infinities_and_signed_zeros():
    inf = np.inf
    rows = np.array(
        [
            [1, 2, inf, 5],
            [1, inf, inf, inf],
            [-0.0, 1, 2, 3],
            [-inf, -inf, 0, 0.5],
            [-0.0, -0.0, 4, 1],
            [3e38, 3e38, 1, -1],  # (a + b) / 2 overflows in float32
            [-inf, inf, 1, 2],
        ],
        np.float32,
    )
    levels = np.array([0.0, 1 / 3, 0.5, 2 / 3, 1.0], np.float32)
    expected = quantile_reference(rows, levels)

    @jax.jit
    def quantiles(x, q, tau):
        return [sf.quantile(x, q, softness=tau, mode=mode) for mode in sf.MODES] + [
            sf.median(x, softness=tau, mode=mode) for mode in sf.MODES
        ]

    soft, hard, straight_through, *medians = quantiles(rows, levels, 1e-30)
    assert_exactly_equal(soft, jnp.asarray(expected))
    for value in hard, straight_through:  # jnp.quantile, NaN where it multiplies inf by 0
        assert_exactly_equal(value, jnp.quantile(rows, levels, axis=-1))
    # jnp.median is the midpoint of the two middle order statistics; it overflows to inf on the
    # huge row, the soft median does not.
    middle = np.sort(rows, -1)[:, 1:3].astype(np.float64)
    with np.errstate(invalid="ignore"):
        assert_exactly_equal(medians[0], jnp.asarray(middle.mean(-1), jnp.float32))
    for value in medians[1:]:
        assert_exactly_equal(value, jnp.median(rows, axis=-1))
    # The cases of the report, odd and one-element axes included.
    assert float(sf.median(jnp.array([1.0, 2.0, inf]), softness=0.01)) == 2.0
    assert float(sf.quantile(jnp.array([1.0, inf]), 0.0, softness=0.01)) == 1.0
    assert float(sf.quantile(jnp.array([1.0, inf]), 1.0, softness=0.01)) == inf
    assert_exactly_equal(sf.median(jnp.array([-0.0]), softness=0.01), jnp.array(-0.0))


def test_traced_q_outside_the_unit_interval_is_an_error():
    x = jnp.array([0.0, 10.0])
    quantile = jax.jit(lambda x, q: sf.quantile(x, q, softness=0.1))
    np.testing.assert_allclose(quantile(x, 0.25), 2.5, rtol=1e-5)
    for q in (-0.5, 1.5, np.nan, np.array([0.5, 1.01], np.float32)):
        with pytest.raises(Exception, match=r"q must lie in \[0, 1\]"):
            quantile(x, q).block_until_ready()
    # Also when only the gradient with respect to x is asked for, in every mode.
    for mode in sf.MODES:
        gradient = jax.jit(jax.grad(lambda x, q, mode=mode: sf.quantile(x, q, mode=mode)))
        with pytest.raises(Exception, match=r"q must lie in \[0, 1\]"):
            gradient(x, -0.5).block_until_ready()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "x64 float32", "float64"])
def test_hard_quantile_is_jnp_quantile_bit_for_bit(dtype):
    # The levels are used in their own dtype (a Python float is float32, or float64 under x64),
    # as jnp.quantile uses them: casting them to the dtype of x first changes the last bits.
    with jax.enable_x64(dtype.startswith("x64") or dtype == "float64"):
        dtype = jnp.dtype(dtype.split()[-1])
        rng = np.random.default_rng(5)
        rows = jnp.asarray(rng.normal(size=(200, 4)), dtype)
        rows = rows.at[0].set(jnp.array([3, 1, 2, 2.5], dtype))
        levels = [
            0.3,
            np.float32(0.3),
            np.array([0.1, 0.3, 0.7], np.float32),
            jnp.array(0.3, dtype),
        ]
        for q in levels:
            assert_exactly_equal(
                sf.quantile(rows, q, mode="hard"), jnp.quantile(rows, jnp.asarray(q), axis=-1)
            )
        # Straight-through is the hard value forward. The soft quantile reaches it exactly once
        # the network is saturated (values a quarter apart at least; ties blend to themselves).
        # Both jitted: XLA may fuse the final multiply and add, as in jnp.quantile, always jitted.
        quarters = jnp.asarray(rng.integers(-40, 40, size=(200, 4)) / 4, dtype)
        tiny = jnp.finfo(dtype).tiny

        @jax.jit
        def modes(rows, quarters, q, several):
            return (
                sf.quantile(rows, q, mode="straight_through"),
                sf.quantile(quarters, q, softness=tiny),
                sf.quantile(quarters, several, softness=tiny),
                sf.median(quarters, softness=tiny),
            )

        q, several = levels[0], levels[2]
        expected = (
            jnp.quantile(rows, q, axis=-1),
            jnp.quantile(quarters, q, axis=-1),
            jnp.quantile(quarters, several, axis=-1),
            jnp.median(quarters, axis=-1),
        )
        assert_exactly_equal(modes(rows, quarters, q, several), expected)


@pytest.mark.parametrize(
    "fn",
    [
        sf.sort,
        sf.argsort,
        sf.rank,
        sf.median,
        functools.partial(sf.top_k, k=2),
        functools.partial(sf.quantile, q=0.5),
        sf.argmax,
        sf.max,
        sf.argmin,
        sf.min,
    ],
    ids=lambda fn: getattr(fn, "__name__", None) or fn.func.__name__,
)
def test_softness_arrays_never_add_axes(fn):
    x = jnp.asarray(X[:3, :5])
    # One softness per slice: it broadcasts to the shape of x without the axis.
    per_row = jax.eval_shape(lambda: fn(x, softness=jnp.array([0.1, 0.5, 1.0])))
    assert per_row == jax.eval_shape(lambda: fn(x, softness=0.5))
    for softness in (jnp.ones((3, 1)), jnp.ones((2, 3)), jnp.ones(5), jnp.ones((1, 3))):
        with pytest.raises(ValueError, match=r"softness of shape .* shape \(3,\) of x without"):
            fn(x, softness=softness)
    with pytest.raises(ValueError, match=r"softness of shape \(4,\)"):
        fn(jnp.arange(4.0), softness=jnp.full(4, 0.1))


def test_flags_and_axes_are_validated():
    with pytest.raises(TypeError, match="return_permutation must be a bool"):
        sf.sort(X, return_permutation="no")
    with pytest.raises(TypeError, match="descending must be a bool"):
        sf.sort(X, descending=1)
    # NumPy bools and integers are what they say.
    assert_exactly_equal(
        sf.sort(X, descending=np.True_, mode="hard"), sf.sort(X, descending=True, mode="hard")
    )
    for fn in (sf.sort, sf.rank, sf.median, sf.argmax, sf.max):
        assert_exactly_equal(fn(X, axis=np.int64(0), mode="hard"), fn(X, axis=0, mode="hard"))
    with pytest.raises(TypeError, match="axis must be an int"):
        sf.sort(X, axis=np.True_)
    for fn in (sf.median, functools.partial(sf.quantile, q=0.5)):
        with pytest.raises(ValueError, match="x has size 0 along axis 1"):
            fn(jnp.zeros((3, 0)))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_neuralsort_in_half_precision_is_the_float32_sort_rounded(dtype):
    # Its scores add n multiples of the entries: in float16 they overflowed on entries of a few
    # thousand ([5, 5, 5] for [3e4, -3e4, 5], or NaN); in bfloat16 they lost the order.
    rng = np.random.default_rng(2)
    for x, tau in (
        ([30000.0, -30000.0, 5.0], 100.0),
        (list(np.linspace(-2500, 2500, 32)), 10.0),
        (list(rng.permutation(np.arange(32.0))), 0.05),
    ):
        half = jnp.asarray(x, dtype)
        got = sf.sort(half, method="neuralsort", softness=tau)
        wide = sf.sort(half.astype(jnp.float32), method="neuralsort", softness=tau)
        assert got.dtype == dtype
        # (P is rounded to the dtype before it weighs the entries: within a rounding or two.)
        np.testing.assert_allclose(
            np.asarray(got, np.float32),
            np.asarray(wide),
            rtol=2 * float(jnp.finfo(dtype).eps),
            atol=1e-6,
        )


@pytest.mark.parametrize("descending", [False, True])
def test_an_element_that_rounding_leaves_in_no_row_has_its_exact_rank(descending):
    # NeuralSort beside a large value loses the gap between two small ones in float32: both rows
    # pick -0.03, the column of -0.04 is all 0, and its rank was 0 / 0 = NaN.
    x = jnp.array([1e6, -0.04, -0.03, 2.0])
    permutation = sf.argsort(x, method="neuralsort", softness=1e-6, descending=descending)
    empty = np.asarray(jnp.sum(permutation, axis=0)) == 0
    assert empty.any()  # (the case this test is about)
    ranks = sf.rank(x, method="neuralsort", softness=1e-6, descending=descending)
    exact = sf.rank(x, mode="hard", descending=descending)
    assert bool(jnp.all((ranks >= 0) & (ranks <= x.size - 1)))
    np.testing.assert_array_equal(np.asarray(ranks)[empty], np.asarray(exact)[empty])
    grad = jax.grad(lambda v: jnp.sum(sf.rank(v, method="neuralsort", softness=1e-6) ** 2))(x)
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_eager_calls_with_a_new_softness_do_not_compile_again(caplog):
    # The networks' loops were traced anew at every eager call and compiled again (about 0.1 s
    # each); a new softness is a new argument of the same compiled loops.
    x = jnp.asarray(np.random.default_rng(8).normal(size=(2, 6)), jnp.float32)
    calls = {
        "sort": lambda s: sf.sort(x, softness=s, return_permutation=True),
        "rank": lambda s: sf.rank(x, softness=s, method="bitonic"),
        "top_k": lambda s: sf.top_k(x, 2, softness=s),
        "quantile": lambda s: sf.quantile(x, 0.3, softness=s),
    }
    for name, call in calls.items():
        call(0.5)
        with jax.log_compiles(), caplog.at_level(logging.WARNING, logger="jax"):
            caplog.clear()
            for softness in (0.4, 0.3):
                call(softness)
        compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
        assert not compiled, (name, compiled)
