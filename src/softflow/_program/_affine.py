"""The expected value of a relaxed integer carried through an affine map of it.

A count of truth values knows its expected value, the sum of its elements' probabilities,
without its law, which is quadratic in the number of elements. ``n - count``, ``count / n`` and
``2.0 * count`` are affine in the count, so their expected values follow from its own, and a
program that only computes with the count leaves the law unused (``jit`` drops it).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn

from . import _jaxpr
from ._values import Categorical, aval, floating, is_soft, unwrap


def affine_expected(eqn: JaxprEqn, invals: list) -> jax.Array | None:
    """The expected value of ``eqn``'s result when it is affine in its one relaxed operand and
    that operand knows its expected value, else None."""
    relaxed = [i for i, v in enumerate(invals) if is_soft(v)]
    if len(relaxed) != 1 or not isinstance(invals[relaxed[0]], Categorical):
        return None
    position = relaxed[0]
    m = invals[position].expected
    if m is None:
        return None
    name = eqn.primitive.name
    out = aval(eqn.outvars[0])
    other = [jnp.asarray(unwrap(v)).astype(m.dtype) for v in invals if not is_soft(v)]
    if name == "convert_element_type":
        source = aval(eqn.invars[0]).dtype
        widens = jnp.issubdtype(out.dtype, jnp.integer) and np.can_cast(source, out.dtype)
        if not (floating(out) or widens):
            return None  # to bool, or to an integer that may not hold every value
        result = m
    elif name == "neg":
        result = -m
    elif name == "add":
        result = m + other[0]
    elif name == "sub":
        result = m - other[0] if position == 0 else other[0] - m
    elif name == "mul":
        result = m * other[0]
    elif name == "div" and position == 0 and floating(out):
        result = m / other[0]
    else:
        return None
    dtype = out.dtype if floating(out) else m.dtype
    return jnp.broadcast_to(result, out.shape).astype(dtype)


def moved_expected(eqn: JaxprEqn, invals: list, data: int) -> list | None:
    """The expected values of a structural equation's results (a slice, reshape or concatenate
    of relaxed integers), moved as their values are, when every relaxed one among its ``data``
    operands knows its own; else None."""
    known = [v.expected if isinstance(v, Categorical) else None for v in invals[:data]]
    if not all(k is not None or not is_soft(v) for k, v in zip(known, invals, strict=False)):
        return None
    dtype = jnp.result_type(*(k for k in known if k is not None))
    args = [
        k if k is not None else jnp.asarray(unwrap(v)).astype(dtype)
        for k, v in zip(known, invals, strict=False)
    ]
    return _jaxpr.bind(eqn, [*args, *(unwrap(v) for v in invals[data:])])
