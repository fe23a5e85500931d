"""A truth value used as a 0/1 mask in a product: ``(x > 0) * y``, ``mask.astype(float) * y``.

XLA multiplies by a truth value converted to a float as it selects (``select(c, y, 0)``), so
``False * inf`` and ``False * nan`` are 0 in the compiled program (and in jnp's product with a
bool), not NaN. Relaxed, the mask is its probability, and the product one of floats: where the
mask is exactly 0 it is 0 whatever the other factor, as in the program; its derivative stays the
product's (in straight-through mode the mask's derivative is the relaxed one where it is 0).
"""

import dataclasses
import functools

import jax.numpy as jnp
from jax.extend.core import JaxprEqn, Literal as JaxprLiteral

from .._modes import straight_through
from ._interpreter import Interpreter, rule
from ._values import Live, aval, floating, is_soft, unwrap


def _is_mask(self: Interpreter, atom) -> bool:
    if isinstance(atom, JaxprLiteral):
        return False
    producer = self.producers.get(atom)
    return (
        producer is not None
        and producer.primitive.name == "convert_element_type"
        and aval(producer.invars[0]).dtype == jnp.bool_
    )


@rule("mul")
def _mul_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    outs = self.default(eqn, invals)
    masks = [i for i, atom in enumerate(eqn.invars) if _is_mask(self, atom)]
    if not masks or not floating(aval(eqn.outvars[0])) or any(is_soft(v) for v in invals):
        return outs
    (out,) = outs
    zero = functools.reduce(jnp.logical_or, [unwrap(invals[i]) == 0 for i in masks])

    def factor(i, v):
        # An infinite or NaN factor where the mask is 0 reaches neither the product nor its
        # derivative (a finite one does reach the derivative: in straight-through mode the
        # mask's derivative is the relaxed one's even where its value is 0).
        v = unwrap(v)
        return v if i in masks else jnp.where(zero & ~jnp.isfinite(v), 0, v)

    a, b = (factor(i, v) for i, v in enumerate(invals))
    product = (a * b).astype(aval(eqn.outvars[0]).dtype)
    value = straight_through(jnp.where(zero, jnp.zeros((), product.dtype), product), product)
    return [dataclasses.replace(out, value=value) if isinstance(out, Live) else value]
