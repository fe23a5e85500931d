"""Soft logic: negation, conjunction, disjunction and exclusive or of soft truth values.

Each binary connective is a t-norm (AND) with its dual t-conorm (OR). All three t-norms agree with
Boolean logic on {0, 1} and satisfy De Morgan's laws with ``logical_not(p) = 1 - p``.
"""

import functools
from typing import Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._checks import as_real_array, check_choice, check_truth_values, float_dtype

TNorm = Literal["product", "godel", "lukasiewicz"]
TNORMS: tuple[str, ...] = get_args(TNorm)
Axis = int | tuple[int, ...] | None


def _as_float(name: str, p: ArrayLike) -> jax.Array:
    p = check_truth_values(name, as_real_array(name, p))
    # Floats keep their (possibly weak) type, so a Python 0.5 does not promote a bfloat16 value.
    return p if jnp.issubdtype(p.dtype, jnp.floating) else p.astype(float_dtype(p.dtype))


def _operands(p: ArrayLike, q: ArrayLike) -> tuple[jax.Array, jax.Array]:
    p, q = _as_float("p", p), _as_float("q", q)
    dtype = jnp.result_type(p, q)
    return p.astype(dtype), q.astype(dtype)


def logical_not(p: ArrayLike) -> jax.Array:
    r"""Soft NOT: :math:`1 - p`.

    Arguments:
        p: soft truth values in [0, 1] (booleans are converted to 0.0 / 1.0).

    Returns:
        :math:`1 - p`, with the floating dtype of ``p``.

    Example:
        >>> import softflow as sf
        >>> float(sf.logical_not(0.25))
        0.75
    """
    return 1 - _as_float("p", p)


def logical_and(p: ArrayLike, q: ArrayLike, *, tnorm: TNorm = "product") -> jax.Array:
    r"""Soft AND of two truth values, by a t-norm.

    ============ ==========================
    tnorm        :math:`p \wedge q`
    ============ ==========================
    product      :math:`p q`
    godel        :math:`\min(p, q)`
    lukasiewicz  :math:`\max(0, p + q - 1)`
    ============ ==========================

    Arguments:
        p, q: soft truth values in [0, 1], broadcast against each other.
        tnorm: one of :data:`softflow.TNORMS`.

    Returns:
        The soft conjunction, in [0, 1].

    Example:
        >>> import softflow as sf
        >>> float(sf.logical_and(0.5, 0.5)), float(sf.logical_and(0.5, 0.5, tnorm="godel"))
        (0.25, 0.5)
    """
    check_choice("tnorm", tnorm, TNORMS)
    p, q = _operands(p, q)
    if tnorm == "product":
        return p * q
    if tnorm == "godel":
        return jnp.minimum(p, q)
    return jnp.maximum(0, p + q - 1)


def logical_or(p: ArrayLike, q: ArrayLike, *, tnorm: TNorm = "product") -> jax.Array:
    r"""Soft OR of two truth values, by the t-conorm dual to ``tnorm``.

    ============ ==========================
    tnorm        :math:`p \vee q`
    ============ ==========================
    product      :math:`p + q - p q`
    godel        :math:`\max(p, q)`
    lukasiewicz  :math:`\min(1, p + q)`
    ============ ==========================

    Arguments:
        p, q: soft truth values in [0, 1], broadcast against each other.
        tnorm: one of :data:`softflow.TNORMS`.

    Returns:
        The soft disjunction, in [0, 1].

    Example:
        >>> import softflow as sf
        >>> float(sf.logical_or(0.5, 0.5))
        0.75
    """
    check_choice("tnorm", tnorm, TNORMS)
    p, q = _operands(p, q)
    if tnorm == "product":
        return p + q - p * q
    if tnorm == "godel":
        return jnp.maximum(p, q)
    return jnp.minimum(1, p + q)


def logical_xor(p: ArrayLike, q: ArrayLike, *, tnorm: TNorm = "product") -> jax.Array:
    r"""Soft exclusive OR: "exactly one of p, q".

    ============ =====================================================
    tnorm        :math:`p \oplus q`
    ============ =====================================================
    product      :math:`p + q - 2 p q` (probability that exactly one of two
                 independent events holds)
    godel        :math:`\max(\min(p, 1 - q), \min(1 - p, q))`
    lukasiewicz  :math:`|p - q|`
    ============ =====================================================

    Each is :math:`(p \wedge \neg q) \vee (\neg p \wedge q)`, where for the product t-norm the two
    disjoint events add.

    Arguments:
        p, q: soft truth values in [0, 1], broadcast against each other.
        tnorm: one of :data:`softflow.TNORMS`.

    Returns:
        The soft exclusive or, in [0, 1].

    Example:
        >>> import softflow as sf
        >>> float(sf.logical_xor(1.0, 0.0)), float(sf.logical_xor(0.5, 0.5))
        (1.0, 0.5)
    """
    check_choice("tnorm", tnorm, TNORMS)
    p, q = _operands(p, q)
    if tnorm == "product":
        return p + q - 2 * p * q
    if tnorm == "godel":
        return jnp.maximum(jnp.minimum(p, 1 - q), jnp.minimum(1 - p, q))
    return jnp.abs(p - q)


def all(
    p: ArrayLike, axis: Axis = None, *, keepdims: bool = False, tnorm: TNorm = "product"
) -> jax.Array:
    r"""Soft AND over an axis: the t-norm folded over the values.

    ============ ===================================================
    tnorm        :math:`\bigwedge_i p_i`
    ============ ===================================================
    product      :math:`\prod_i p_i`
    godel        :math:`\min_i p_i`
    lukasiewicz  :math:`\max(0, \sum_i p_i - (n - 1))`
    ============ ===================================================

    Arguments:
        p: soft truth values in [0, 1].
        axis: axis or axes to reduce (all by default), as in :func:`jax.numpy.all`.
        keepdims: keep the reduced axes with length 1.
        tnorm: one of :data:`softflow.TNORMS`.

    Returns:
        The soft conjunction over ``axis``; 1 for an empty reduction.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> float(sf.all(jnp.array([1.0, 0.5, 0.5])))
        0.25
    """
    check_choice("tnorm", tnorm, TNORMS)
    p = _as_float("p", p)
    if tnorm == "product":
        return jnp.prod(p, axis=axis, keepdims=keepdims)
    if tnorm == "godel":
        return jnp.min(p, axis=axis, keepdims=keepdims, initial=1)
    return jnp.maximum(0, 1 + jnp.sum(p - 1, axis=axis, keepdims=keepdims))


def any(
    p: ArrayLike, axis: Axis = None, *, keepdims: bool = False, tnorm: TNorm = "product"
) -> jax.Array:
    r"""Soft OR over an axis: the t-conorm folded over the values.

    ============ ===================================================
    tnorm        :math:`\bigvee_i p_i`
    ============ ===================================================
    product      :math:`1 - \prod_i (1 - p_i)`
    godel        :math:`\max_i p_i`
    lukasiewicz  :math:`\min(1, \sum_i p_i)`
    ============ ===================================================

    Arguments:
        p: soft truth values in [0, 1].
        axis: axis or axes to reduce (all by default), as in :func:`jax.numpy.any`.
        keepdims: keep the reduced axes with length 1.
        tnorm: one of :data:`softflow.TNORMS`.

    Returns:
        The soft disjunction over ``axis``; 0 for an empty reduction.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> float(sf.any(jnp.array([0.0, 0.5, 0.5])))
        0.75
    """
    check_choice("tnorm", tnorm, TNORMS)
    p = _as_float("p", p)
    if tnorm == "godel":
        return jnp.max(p, axis=axis, keepdims=keepdims, initial=0)
    if tnorm == "lukasiewicz":
        return jnp.minimum(1, jnp.sum(p, axis=axis, keepdims=keepdims))
    return _product_any(p, tuple(axis) if isinstance(axis, list) else axis, keepdims)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _product_any(p: jax.Array, axis: Axis, keepdims: bool) -> jax.Array:
    """:math:`1 - \\prod_i (1 - p_i)` as the fold of :math:`a \\vee b = a + b (1 - a)`: in
    ``1 - p`` a truth value below the float's epsilon was lost (``any([1e-10])`` was 0 in
    float32), and a logarithm (``log1p``, ``expm1``) rounds more than the product elsewhere."""
    axes = _axes(axis, p.ndim)
    work = jnp.promote_types(p.dtype, jnp.float32)  # (half precision: one rounding at the end)
    start = jnp.zeros((), work)
    folded = jax.lax.reduce(p.astype(work), start, _or, axes).astype(p.dtype)
    return jnp.expand_dims(folded, axes) if keepdims else folded


def _or(a: jax.Array, b: jax.Array) -> jax.Array:
    return a + b * (1 - a)


def _axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    """``axis`` as a tuple of non-negative axes of an array of ``ndim`` dimensions."""
    axes = tuple(range(ndim)) if axis is None else axis if isinstance(axis, tuple) else (axis,)
    for a in axes:
        if not isinstance(a, int | np.integer) or not -ndim <= a < ndim:
            raise ValueError(f"axis {a!r} is out of bounds for p with {ndim} dimension(s).")
    normalised = tuple(sorted({int(a) % ndim for a in axes}))
    if len(normalised) != len(axes):
        raise ValueError(f"axis {axis!r} repeats an axis.")
    return normalised


@_product_any.defjvp
def _product_any_jvp(axis, keepdims, primals, tangents):
    # The product's own derivative, prod_{j != i} (1 - p_j), which the logarithm's is not where
    # some p_j is 1.
    (p,), (d_p,) = primals, tangents
    product = functools.partial(jnp.prod, axis=axis, keepdims=keepdims)
    _, d_product = jax.jvp(product, (1 - p,), (-d_p,))
    return _product_any(p, axis, keepdims), -d_product
