"""Comparisons of a minimum or maximum with one of its own operands: ``jnp.minimum(s, b) >= b``,
``jnp.clip(x, lo, hi) == hi`` with a bound that is itself an input (a learnable bound).

The two sides are the same number wherever the bound is taken, so their soft comparison would
be 1/2 there at every softness. Such a comparison equals one of the other operand with the
bound, for every value of it: ``min(s, b) >= b`` is ``s >= b``, ``min(s, b) == b`` is
``s >= b`` too, and ``min(s, b) <= b`` always holds. Relax compares ``s`` with ``b`` softly
instead. (A bound known at trace time is a clip, see :class:`~._values.Clamp`.)
"""

import dataclasses
import functools

import jax.numpy as jnp
from jax.extend.core import JaxprEqn

from .. import _compare
from . import _jaxpr, _views
from ._generic import hard_thunk
from ._values import Live, SoftBool, aval, floating, unwrap, varies


@dataclasses.dataclass(frozen=True, eq=False)
class Bound:
    """The live operands of ``min`` (``minimum``) or ``max`` of two values that both depend on
    the inputs."""

    operands: tuple[Live, Live]
    minimum: bool


# min(s, b) OP c is both or either of s OP c and b OP c; max(s, b) OP c the other one.
_BOTH_FOR_MINIMUM = {"ge": True, "gt": True, "le": False, "lt": False}
# min(s, b) == b is s >= b, and != is s < b; for max, s <= b and s > b.
_EQUALITY = {(True, "eq"): "ge", (True, "ne"): "lt", (False, "eq"): "le", (False, "ne"): "gt"}
_MIRRORED = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge", "eq": "eq", "ne": "ne"}


def _unordered_exact(soft_comparison, unordered: bool):
    """``soft_comparison`` where neither operand is NaN; where one is (``inf - inf`` compared
    with a tolerance, as ``jnp.isclose`` does on infinities), the exact comparison's value,
    ``unordered`` (False, and True for ``!=``), which no softness changes: the soft step of NaN
    is NaN, and NaN in a truth value spreads through ``and`` / ``or`` even where the other
    operand decides. The operands are made finite there first, so that the gradient is 0, not
    NaN."""

    @functools.wraps(soft_comparison)
    def compare(x, y, **options):
        nan = jnp.isnan(x) | jnp.isnan(y)
        p = soft_comparison(jnp.where(nan, 0, x), jnp.where(nan, 0, y), **options)
        return jnp.where(nan, jnp.asarray(unordered, p.dtype), p)

    return compare


#: The soft comparison of each comparison primitive (the rules of ``_rules_logic`` too).
SOFT_COMPARISONS = {
    "gt": _unordered_exact(_compare.greater, False),
    "ge": _unordered_exact(_compare.greater_equal, False),
    "lt": _unordered_exact(_compare.less, False),
    "le": _unordered_exact(_compare.less_equal, False),
    "eq": _unordered_exact(_compare.equal, False),
    "ne": _unordered_exact(_compare.not_equal, True),
}


def with_bound(eqn: JaxprEqn, invals: list, outs: list) -> list:
    """``outs`` remembering the operands of a ``min`` / ``max`` of two live values."""
    if eqn.primitive.name not in ("min", "max") or not floating(aval(eqn.outvars[0])):
        return outs
    if not all(isinstance(v, Live) and varies(v) for v in invals) or not isinstance(outs[0], Live):
        return outs
    bound = Bound((invals[0], invals[1]), eqn.primitive.name == "min")
    return [dataclasses.replace(outs[0], bound=bound)]


def _is(a, b) -> bool:
    same = _views.same_elements(a, b)
    return same is not None and bool(same.all())


def _holds(value, c) -> bool:
    """Whether ``c`` is ``value`` or, through minima and maxima, one of its operands."""
    if _is(value, c):
        return True
    bound = value.bound if isinstance(value, Live) else None
    return bound is not None and any(_holds(v, c) for v in bound.operands)


def _probability(self, value, c, name: str):
    """The probability of ``value OP c`` (an order), taking minima and maxima apart where ``c``
    is among their operands; an element meets itself exactly."""
    if _is(value, c):
        return name in ("ge", "le")
    bound = value.bound if isinstance(value, Live) else None
    if bound is None or not _holds(value, c):
        return SOFT_COMPARISONS[name](unwrap(value), unwrap(c), **self.compare_options())
    first, second = (_probability(self, v, c, name) for v in bound.operands)
    both = _BOTH_FOR_MINIMUM[name] == bound.minimum
    if isinstance(first, bool) or isinstance(second, bool):
        known, other = (first, second) if isinstance(first, bool) else (second, first)
        return other if known == both else known
    return first * second if both else first + second - first * second


def own_bound_comparison(self, eqn: JaxprEqn, invals: list) -> SoftBool | Live | None:
    """The comparison of a minimum or maximum with one of its operands, taken apart into
    comparisons of the operands; None for any other comparison."""
    for at in (0, 1):
        value, other = invals[at], invals[1 - at]
        if not (isinstance(value, Live) and value.bound is not None and _holds(value, other)):
            continue
        name = eqn.primitive.name if at == 0 else _MIRRORED[eqn.primitive.name]
        if name in ("eq", "ne"):
            others = [v for v in value.bound.operands if not _is(v, other)]
            if len(others) != 1:  # (min(b, b) == b, or b among the operands of an operand)
                return None
            name, value = _EQUALITY[value.bound.minimum, name], others[0]
        p = _probability(self, value, other, name)
        if isinstance(p, bool):
            self.record(eqn, "exact: a minimum or maximum against its own operand")
            return Live(_jaxpr.bind(eqn, [unwrap(v) for v in invals])[0])
        self.record(eqn, "soft comparisons of the operands of the min / max it is compared with")
        return SoftBool(jnp.broadcast_to(p, aval(eqn.outvars[0]).shape), hard_thunk(eqn, invals)(0))
    return None
