"""Weighted blends of values: the arithmetic shared by soft branches and soft loops.

A blend is :math:`\\sum_k w_k v_k`. Two details make it safe to use as the soft version of a
choice: a value whose weight is exactly 0 never reaches the result, even when it is inf or NaN
(a branch that is not taken may overflow), and at one-hot weights the result *is* the chosen value,
bit for bit, -0.0 included (``1 * -0.0 + 0 * y`` would be +0.0). The derivative with respect to
each weight is the value itself, non-finite or not: the forward value hides a branch that is not
taken, the slope does not pretend it is 0.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def _masked(weight: jax.Array, value: jax.Array) -> jax.Array:
    """``value`` with its non-finite entries set to 0 wherever ``weight`` is exactly 0."""
    return jnp.where((weight == 0) & ~jnp.isfinite(value), jnp.zeros((), value.dtype), value)


@jax.custom_jvp
def blend(weights: Sequence[jax.Array], values: Sequence[jax.Array]) -> jax.Array:
    """:math:`\\sum_k w_k v_k` for arrays of one dtype (weights broadcast against the values).

    Exact at one-hot weights (the chosen value is returned as it is) and blind to non-finite
    values of weight exactly 0; the derivative with respect to :math:`w_k` is :math:`v_k`.
    """
    terms = [w * _masked(w, v) for w, v in zip(weights, values, strict=True)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    for w, v in zip(weights, values, strict=True):
        total = jnp.where(w == 1, v, total)
    return total


@blend.defjvp
def _blend_jvp(primals, tangents):
    weights, values = primals
    weight_tangents, value_tangents = tangents
    out = blend(weights, values)
    out_tangent = jnp.zeros_like(out)
    for w, v, dw, dv in zip(weights, values, weight_tangents, value_tangents, strict=True):
        out_tangent = out_tangent + dw * v + w * dv
    return out, out_tangent


def weighted(weight: jax.Array, value: jax.Array) -> jax.Array:
    """``weight * value`` in the dtype of ``value``, 0 where ``weight`` is exactly 0 (see blend)."""
    return blend((weight.astype(value.dtype),), (value,))
