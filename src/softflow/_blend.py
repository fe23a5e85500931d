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


@jax.custom_jvp
def blend(weights: Sequence[jax.Array], values: Sequence[jax.Array]) -> jax.Array:
    """:math:`\\sum_k w_k v_k` for arrays of one dtype (weights broadcast against the values).

    A term of weight exactly 0 is -0.0, the additive identity of IEEE arithmetic (``x + -0.0`` is
    ``x`` for every ``x``, -0.0 included, where ``x + 0.0`` turns -0.0 into +0.0): so a value of
    weight 0 never reaches the result, inf or NaN, and one-hot weights return the chosen value
    bit for bit. No other weight is special: weights (1e-30, 1 - 1e-30) still blend. The
    derivative with respect to :math:`w_k` is :math:`v_k`.
    """
    total = None
    for w, v in zip(weights, values, strict=True):
        term = jnp.where(w == 0, jnp.array(-0.0, v.dtype), w * v)
        total = term if total is None else total + term
    assert total is not None, "blend needs at least one term"
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
