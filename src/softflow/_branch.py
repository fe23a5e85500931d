"""Soft branching: blend the results of every branch by soft truth values."""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._blend import blend
from ._checks import (
    as_real_array,
    check_float_leaves,
    check_same_structure,
    check_truth_values,
)
from ._scope import primitive

PyTree = Any


def _weights(name: str, weights: ArrayLike) -> jax.Array:
    """Soft truth values or branch weights as an array; a TypeError unless float or bool."""
    weights = as_real_array(name, weights)
    if not (jnp.issubdtype(weights.dtype, jnp.floating) or weights.dtype == jnp.bool_):
        raise TypeError(
            f"{name} must be soft truth values: a float (or bool) array; got dtype "
            f"{weights.dtype}. Integer weights are not probabilities: compute them with a "
            "comparison or cast them explicitly."
        )
    return weights


def _check_broadcast(
    name: str, weight: jax.Array, count: int, leaf_name: str, leaf: jax.Array
) -> None:
    try:
        jnp.broadcast_shapes(weight.shape, leaf.shape)
    except ValueError:
        # p is shown as given; K-way weights with their last axis (one entry per branch).
        shown = weight.shape if name == "p" else f"{(*weight.shape, count)} (less its last axis)"
        raise ValueError(
            f"{name} of shape {shown} does not broadcast against {leaf_name} of shape {leaf.shape}."
        ) from None


@primitive
def _blend_trees(
    name: str,
    weights: Sequence[jax.Array],
    names: Sequence[str],
    trees: Sequence[PyTree],
    *,
    complement: bool = False,
):
    """Blend pytrees leaf by leaf, ``trees[k]`` by ``weights[k]``; with ``complement``, two
    trees by ``p = weights[0]`` and ``1 - p``, computed at each leaf's dtype.

    The weights come as separate arrays, not as slices of one stacked array: under reverse mode
    XLA does not simplify the slices of a stack (their transposes are pads added together), and
    in a long unrolled chain of blends its fusion then recomputes them super-linearly in the
    chain's length (a 12-step controller compiled 15x slower than with separate weights).
    """
    for tree_name, tree in zip(names, trees, strict=True):
        check_same_structure(names[0], trees[0], tree_name, tree)
        check_float_leaves(tree_name, tree)
    leaves_by_tree = [jax.tree_util.tree_leaves(tree) for tree in trees]
    treedef = jax.tree_util.tree_structure(trees[0])
    blended = []
    for leaves in zip(*leaves_by_tree, strict=True):
        leaves = [jnp.asarray(leaf) for leaf in leaves]
        for tree_name, weight, leaf in zip(names, weights, leaves, strict=True):
            _check_broadcast(name, weight, len(weights), tree_name, leaf)
        dtype = jnp.result_type(*leaves)
        cast = [weight.astype(dtype) for weight in weights]
        if complement:  # (1 - p in the leaves' precision, so that the two weights sum to 1)
            cast = [cast[0], 1 - cast[0]]
        blended.append(blend(cast, [leaf.astype(dtype) for leaf in leaves]))
    return jax.tree_util.tree_unflatten(treedef, blended)


def _blend_two(p: ArrayLike, name_x: str, x: PyTree, name_y: str, y: PyTree) -> PyTree:
    p = check_truth_values("p", _weights("p", p))
    p = p.astype(jnp.result_type(float)) if p.dtype == jnp.bool_ else p
    return _blend_trees("p", (p, p), (name_x, name_y), (x, y), complement=True)


def soft_where(p: ArrayLike, x: PyTree, y: PyTree) -> PyTree:
    r"""Blend two pytrees by a soft condition: :math:`p \cdot x + (1 - p) \cdot y`.

    The soft counterpart of :func:`jax.numpy.where`, applied to every leaf. ``p`` broadcasts
    against every leaf (with NumPy rules), so it may be a scalar or hold one condition per element,
    for example one per cell of a board. At :math:`p \in \{0, 1\}` the result is exactly ``x`` or
    ``y``. A branch value that is inf or NaN where its weight is exactly 0 does not reach the
    result. (Its gradient can only be kept finite by the branch itself: compute the branch on a
    safe input, e.g. ``jnp.sqrt(jnp.where(x > 0, x, 1.0))``, just as with ``jnp.where``.)

    Arguments:
        p: soft truth values in [0, 1] (a float or bool array). It is cast to the dtype of each
            leaf, so a float32 condition keeps a bfloat16 state in bfloat16.
        x: the value where ``p`` is 1; a pytree of floating arrays.
        y: the value where ``p`` is 0; a pytree of the same structure as ``x``.

    Returns:
        A pytree of the structure of ``x``; each leaf has the broadcast shape of ``p`` and the two
        leaves, and their floating dtype.

    Raises:
        TypeError: if ``x`` and ``y`` differ in structure, or a leaf is not floating.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> sf.soft_where(jnp.array([0.0, 0.25, 1.0]), jnp.ones(3), jnp.zeros(3))
        Array([0.  , 0.25, 1.  ], dtype=float32)
    """
    return _blend_two(p, "soft_where x", x, "soft_where y", y)


def soft_if(p: ArrayLike, true_fn: Callable, false_fn: Callable, *operands: Any) -> PyTree:
    r"""Soft ``if``: run both branches and blend their results by the soft condition ``p``.

    .. math:: \mathrm{soft\_if}(p, f, g, x) = p \cdot f(x) + (1 - p) \cdot g(x)

    The soft counterpart of :func:`jax.lax.cond`: both branches always run (so both must be safe
    to evaluate on every input), and the gradient reaches ``p`` and through it whatever decided the
    condition. See :func:`soft_where` for broadcasting, dtypes and non-finite values.

    Arguments:
        p: soft truth value(s) in [0, 1], broadcasting against every leaf of the branch results.
        true_fn: callable ``true_fn(*operands)``, the branch taken where ``p`` is 1.
        false_fn: callable ``false_fn(*operands)`` returning the same pytree structure.
        *operands: passed to both branches.

    Returns:
        The blended pytree.

    Raises:
        TypeError: if the branches return different pytree structures (both are shown) or a
            non-floating leaf.

    Example:
        >>> import softflow as sf
        >>> x = 2.0
        >>> p = sf.greater(x, 1.0, softness=0.1)
        >>> y = sf.soft_if(p, lambda v: v * 10, lambda v: -v, x)
        >>> round(float(y), 3)
        19.999
    """
    true_value = true_fn(*operands)
    false_value = false_fn(*operands)
    return _blend_two(p, "true_fn output", true_value, "false_fn output", false_value)


def soft_switch(weights: ArrayLike, branches: Sequence[Callable], *operands: Any) -> PyTree:
    r"""Soft ``switch``: blend the results of all branches by a weight for each.

    .. math:: \mathrm{soft\_switch}(w, (f_0, \ldots, f_{K-1}), x) = \sum_k w_{\ldots, k}\, f_k(x)

    The soft counterpart of :func:`jax.lax.switch`. The weights are usually a soft one-hot vector,
    for example differences of soft comparisons against sorted boundaries. With exactly one-hot
    weights the result is exactly the chosen branch's value, and non-finite values of branches
    whose weight is exactly 0 do not reach it.

    Arguments:
        weights: array whose last axis has one entry per branch; the entries should be
            non-negative and sum to 1. ``weights[..., k]`` broadcasts against every leaf of
            ``branches[k]``'s result.
        branches: a non-empty sequence of callables, each ``branch(*operands)`` returning the same
            pytree structure of floating arrays.
        *operands: passed to every branch.

    Returns:
        The blended pytree.

    Raises:
        ValueError: if the number of branches does not match ``weights.shape[-1]``.
        TypeError: if branches return different structures or non-floating leaves.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> w = jnp.array([0.0, 0.25, 0.75])
        >>> float(sf.soft_switch(w, [lambda x: x, lambda x: 2 * x, lambda x: 4 * x], 1.0))
        3.5
    """
    branches = tuple(branches)
    if not branches:
        raise ValueError("branches must be a non-empty sequence of callables.")
    weights = _check_weights(weights, len(branches), "branch", "branches")
    values = [branch(*operands) for branch in branches]
    names = [f"soft_switch branches[{k}] output" for k in range(len(branches))]
    return _blend_trees("weights", _unstack(weights), names, values)


def _unstack(weights: jax.Array) -> list[jax.Array]:
    return [weights[..., k] for k in range(weights.shape[-1])]


def _check_weights(weights: ArrayLike, count: int, one: str, many: str) -> jax.Array:
    weights = _weights("weights", weights)
    if weights.ndim == 0 or weights.shape[-1] != count:
        raise ValueError(
            f"weights must have one entry per {one} on its last axis: got weights of shape "
            f"{weights.shape} for {count} {many}."
        )
    return check_truth_values("weights", weights, sums_to_one=True)


def soft_select(weights: ArrayLike, values: Sequence[PyTree] | jax.Array) -> PyTree:
    r"""Soft K-way choice among values: :math:`\sum_k w_{\ldots, k}\, v_k`.

    The K-way :func:`soft_where`, and :func:`soft_switch` for values that need no function around
    them. With exactly one-hot weights the result is exactly the chosen value, and non-finite
    values whose weight is exactly 0 do not reach it.

    Arguments:
        weights: array whose last axis has one entry per value, non-negative and summing to 1
            (for example a soft index from :func:`softflow.argmax` or differences of soft
            comparisons); ``weights[..., k]`` broadcasts against every leaf of ``values[k]``.
        values: a non-empty sequence of pytrees of one structure, with floating leaves; an array
            is read as the sequence of its slices along axis 0.

    Returns:
        The blended pytree, with the structure of ``values[0]``.

    Raises:
        ValueError: if ``weights.shape[-1]`` is not the number of values, or shapes do not
            broadcast.
        TypeError: if the weights are not floating, or the values differ in structure or have
            non-floating leaves.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> speeds = [1.0, 0.5, 2.0]
        >>> float(sf.soft_select(jnp.array([0.0, 0.25, 0.75]), speeds))
        1.625
    """
    if isinstance(values, jax.Array | np.ndarray):
        values = list(jnp.asarray(values))
    elif not isinstance(values, Sequence) or isinstance(values, str):
        raise TypeError(
            f"values must be a sequence of pytrees (or an array of them along axis 0); got "
            f"{type(values).__name__}."
        )
    if not values:
        raise ValueError("values must be a non-empty sequence.")
    weights = _check_weights(weights, len(values), "value", "values")
    return select_by_weights(_unstack(weights), values)


def select_by_weights(weights: Sequence[jax.Array], values: Sequence[PyTree]) -> PyTree:
    """:func:`soft_select` with one floating weight array per value, for softflow's own rules:
    weights built separately stay separate (see ``_blend_trees``)."""
    names = [f"soft_select values[{k}]" for k in range(len(values))]
    return _blend_trees("weights", weights, names, values)
