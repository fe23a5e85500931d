"""Soft branching: blend the results of every branch by soft truth values."""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from ._checks import check_float_leaves, check_same_structure


def _weight(p, dtype):
    p = jnp.asarray(p)
    if not (jnp.issubdtype(p.dtype, jnp.floating) or p.dtype == jnp.bool_):
        raise TypeError(f"the condition must be a float (or bool) array; got dtype {p.dtype}.")
    return p.astype(dtype)


def _masked(weight, value):
    """``value`` with its non-finite entries replaced by 0 wherever ``weight`` is exactly 0.

    Finite entries are left untouched, so the blend and its gradient with respect to the weight
    (which straight-through conditions rely on) stay exactly those of the plain formula.
    """
    return jnp.where((weight == 0) & ~jnp.isfinite(value), jnp.zeros((), value.dtype), value)


def _blend_leaf(p, x, y):
    dtype = jnp.result_type(x, y)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    p = _weight(p, dtype)
    q = 1 - p
    # p*x + (1-p)*y rather than y + p*(x - y): at p in {0, 1} it returns x or y bit for bit.
    return p * _masked(p, x) + q * _masked(q, y)


def _blend(p, name_x, x, name_y, y):
    check_same_structure(name_x, x, name_y, y)
    check_float_leaves(name_x, x)
    check_float_leaves(name_y, y)
    return jax.tree_util.tree_map(lambda a, b: _blend_leaf(p, a, b), x, y)


def soft_where(p, x, y):
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
    return _blend(p, "soft_where x", x, "soft_where y", y)


def soft_if(p, true_fn: Callable, false_fn: Callable, *operands):
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
    return _blend(p, "true_fn output", true_value, "false_fn output", false_value)


def soft_switch(weights, branches: Sequence[Callable], *operands):
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
    weights = jnp.asarray(weights)
    if not branches:
        raise ValueError("branches must be a non-empty sequence of callables.")
    if weights.ndim == 0 or weights.shape[-1] != len(branches):
        raise ValueError(
            f"weights must have one entry per branch on its last axis: got weights of shape "
            f"{weights.shape} for {len(branches)} branches."
        )
    values = [branch(*operands) for branch in branches]
    for k, value in enumerate(values):
        check_same_structure("branches[0] output", values[0], f"branches[{k}] output", value)
        check_float_leaves(f"soft_switch branches[{k}] output", value)

    def blend(*leaves):
        dtype = jnp.result_type(*leaves)
        total = None
        for k, leaf in enumerate(leaves):
            w = _weight(weights[..., k], dtype)
            term = w * _masked(w, jnp.asarray(leaf, dtype))
            total = term if total is None else total + term
        return total

    return jax.tree_util.tree_map(blend, *values)
