"""sf.relax of decision-tree inference as scikit-learn / XGBoost-style code writes it: the node
an integer, each step ``node = where(x[feature[node]] <= threshold[node], left[node],
right[node])``. Relaxed, the tree is a mixture over its paths, each with the product of its
soft decisions: the reference enumerates the paths. Both sides of a node's test are read at
the same relaxed node, so the test is per node, not of the averaged feature and threshold."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import softflow as sf

TAU = 0.3
DEPTH = 3
# Internal nodes 0..6, leaves 7..14 (breadth first).
FEATURE = jnp.array([0, 1, 2, 0, 1, 2, 0])
LEFT = jnp.array([1, 3, 5, 7, 9, 11, 13])
RIGHT = jnp.array([2, 4, 6, 8, 10, 12, 14])


def tree_python_loop(x, threshold, leaf):
    node = 0
    for _ in range(DEPTH):
        go_left = x[FEATURE[node]] <= threshold[node]
        node = jnp.where(go_left, LEFT[node], RIGHT[node])
    return leaf[node - 7]


def _step(x, threshold):
    def step(node):
        return jnp.where(x[FEATURE[node]] <= threshold[node], LEFT[node], RIGHT[node])

    return step


def tree_fori_loop(x, threshold, leaf):
    step = _step(x, threshold)
    return leaf[lax.fori_loop(0, DEPTH, lambda _, node: step(node), 0) - 7]


def tree_while_loop(x, threshold, leaf):
    return leaf[lax.while_loop(lambda node: node < 7, _step(x, threshold), 0) - 7]


TREES = {
    "python loop": tree_python_loop,
    "fori_loop": tree_fori_loop,
    "while_loop": tree_while_loop,
}


def by_paths(x, threshold, leaf, tau):
    """The expected leaf value over the 2**DEPTH paths."""
    total = 0.0
    for path in itertools.product([True, False], repeat=DEPTH):
        node, p = 0, 1.0
        for left in path:
            q = sf.less_equal(x[FEATURE[node]], threshold[node], softness=tau)
            p = p * (q if left else 1 - q)
            node = int(LEFT[node] if left else RIGHT[node])
        total = total + p * leaf[node - 7]
    return total


def _arguments():
    rng = np.random.default_rng(0)
    return tuple(
        jnp.asarray(rng.normal(size=n), jnp.float64) * s for n, s in ((3, 1.0), (7, 0.5), (8, 1.0))
    )


@pytest.mark.parametrize("tree", TREES.values(), ids=TREES.keys())
def test_a_relaxed_tree_is_the_mixture_over_its_paths(tree, x64):
    arguments = _arguments()
    relaxed = jax.jit(sf.relax(tree, softness=TAU, max_steps=DEPTH))
    np.testing.assert_allclose(relaxed(*arguments), by_paths(*arguments, TAU), rtol=1e-12)
    grads = jax.grad(relaxed, (0, 1, 2))(*arguments)
    want = jax.grad(by_paths, (0, 1, 2))(*arguments, TAU)
    for g, w in zip(grads, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-14)
    hard = sf.relax(tree, mode="hard", max_steps=DEPTH)
    np.testing.assert_array_equal(hard(*arguments), tree(*arguments))


def test_a_tree_on_infinite_features_is_finite(x64):
    # A feature of inf or -inf is decided at every node that reads it (it was inf - inf = NaN
    # where the test averaged the features of two nodes).
    x = jnp.array([jnp.inf, -jnp.inf, 0.2])
    threshold, leaf = jnp.linspace(-1.0, 1.0, 7), jnp.arange(8.0)
    got = sf.relax(tree_python_loop, softness=TAU)(x, threshold, leaf)
    np.testing.assert_allclose(got, by_paths(x, threshold, leaf, TAU), rtol=1e-12)
    assert np.isfinite(got)
