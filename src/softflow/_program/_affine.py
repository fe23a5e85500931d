"""The expected value of a relaxed integer carried through an affine map of it, and floats
that stay integers in every outcome through integer-linear maps.

A count of truth values knows its expected value, the sum of its elements' probabilities,
without its law, which is quadratic in the number of elements. ``n - count``, ``count / n`` and
``2.0 * count`` are affine in the count, so their expected values follow from its own, and a
program that only computes with the count leaves the law unused (``jit`` drops it).

A truth value used as a float is 0 or 1; sums of such, their differences and products with
integers (a convolution with a kernel of ones, a product with a vector of ones, rolled copies
added up) are integers in every outcome too, while their relaxed value is an expectation. Such
a float compared with an integer, ``neighbours >= 4``, is compared at the half-integer between
the outcomes on either side (``n >= 4`` is ``n > 3.5``): an expectation that is exactly an
integer, as in the hard limit, then decides exactly rather than at 1/2.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn

from .._checks import is_concrete
from . import _jaxpr
from ._values import Categorical, Live, aval, floating, is_soft, unwrap


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


def unwrapped(expected: jax.Array, dtype, most: int) -> jax.Array | None:
    """The expected value of a count of up to ``most`` in ``dtype``, or None where it may not
    fit (a count of 300 as uint8 wraps to 44: its expectation is that of the wrapped values)."""
    if jnp.issubdtype(dtype, jnp.integer) and most > jnp.iinfo(dtype).max:
        return None
    return expected


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


# Operations that keep a float an integer in every outcome when every operand is one.
_INTEGRAL_MAPS = frozenset(
    {
        *("add", "sub", "neg", "mul", "abs", "max", "min", "sign", "round", "floor", "ceil"),
        *("reduce_sum", "cumsum", "reduce_max", "reduce_min", "cummax", "cummin"),
        *("dot_general", "conv_general_dilated", "select_n", "convert_element_type"),
        *("reshape", "broadcast_in_dim", "squeeze", "expand_dims", "transpose", "rev"),
        *("slice", "dynamic_slice", "gather", "concatenate", "pad", "copy", "copy_p"),
    }
)
# Where an integer comparison decides: a > b means a > b + 1/2, a >= b means a > b - 1/2, ...
HALF_INTEGER = {"gt": 0.5, "ge": -0.5, "lt": -0.5, "le": 0.5}


def always_integral(value) -> bool:
    """Whether ``value`` is an integer in every outcome: a Live marked so, an integer or a
    truth value, or a float known at trace time whose values are integers."""
    if isinstance(value, Live):
        return value.integral
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return True
    if not is_concrete(value):
        return False
    values = np.asarray(value)
    return bool(np.all(np.isfinite(values) & (values == np.round(values))))


def with_integral(eqn: JaxprEqn, invals: list, outs: list) -> list:
    """``outs`` marked as integers in every outcome where ``eqn`` maps such floats to floats."""
    if eqn.primitive.name not in _INTEGRAL_MAPS or not any(
        isinstance(v, Live) and v.integral for v in invals
    ):
        return outs
    if not all(always_integral(v) for v in invals):
        return outs
    return [dataclasses.replace(o, integral=True) if isinstance(o, Live) else o for o in outs]


def integral_shift(name: str, invals: list) -> float:
    """The shift of the right side of an order comparison of two floats that are integers in
    every outcome, one of them relaxed (see the module); 0 for any other comparison."""
    relaxed = any(isinstance(v, Live) and v.integral for v in invals)
    if not relaxed or not all(always_integral(v) for v in invals):
        return 0.0
    return HALF_INTEGER.get(name, 0.0)
