"""Comprehensions filtered by an ``if``: Python's filter on static values; on a traced condition,
the elements weighed by it where the comprehension is reduced by ``sum``, ``len``, ``any`` or
``all``, and a clear refusal elsewhere.

A filter on a traced condition selects elements, so the comprehension's length would depend on a
relaxed condition. Its reductions do not: ``sum(v for v in x if c)`` is the sum of
``where(c, v, 0)``, ``len([v for v in x if c])`` the count of the true conditions,
``any(... if c)`` the or of ``c and v`` and ``all(... if c)`` the and of ``not c or v``. Each is the
filtered program exactly where the conditions are hard (the zeros added to a sum are exact), and
relax relaxes the ``where`` and the logic like any other.

Before conversion, such a reduction's comprehension is rewritten to yield :class:`Kept` items
(the condition and the element, evaluated as Python evaluates them: the element only where a
static condition holds) wrapped in :class:`Filtered`; the converter's call (``converted_call``)
hands it to :func:`reduce_filtered`, which weighs them for the builtin reductions and filters them
as Python does for any other function (``sum`` rebound to ``jnp.sum``, say).
"""

import ast
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, cast

import jax.numpy as jnp
from malt.pyct import parser as _parser, templates as _templates

from ._errors import ConversionError
from ._syntax_state import caller_line, condition_of, traced

_REDUCTIONS = {"sum": sum, "len": len, "any": any, "all": all}


def _refusal(condition_repr: str, where: str) -> ConversionError:
    return ConversionError(
        f"sf.relax: the comprehension's `if {condition_repr}` at {where} is on a traced value: "
        "it selects elements, and the result's length would depend on a relaxed condition. "
        "sum(), len(), any() and all() of such a comprehension are relaxed as they are; "
        "elsewhere weigh the elements instead: sum(jnp.where(v > t, v, 0.0) for v in x), or on "
        "arrays jnp.sum(jnp.where(x > t, x, 0.0)), jnp.where(x > t, x, -jnp.inf).max()."
    )


def comprehension_condition(condition, condition_repr: str):
    """The ``if`` of a comprehension that is not reduced: Python's on a static value; refused
    on a traced one."""
    if not traced(condition):
        return condition
    raise _refusal(condition_repr, caller_line())


@dataclasses.dataclass(frozen=True)
class Kept:
    """An element of a filtered comprehension and its condition: ``True`` where it was static
    (an element whose static condition is false is left out), else a traced truth value."""

    condition: Any
    value: Any
    condition_repr: str
    where: str


def kept(value, condition, condition_repr: str) -> Kept | None:
    """The element ``value()`` with its ``condition()``; None (left out) where the condition is
    static and false, in which case the element is not evaluated, as in Python."""
    truth = condition()
    if not traced(truth):
        return Kept(True, value(), condition_repr, "") if truth else None
    return Kept(truth, value(), condition_repr, caller_line())


@dataclasses.dataclass(frozen=True)
class Filtered:
    """A filtered comprehension's items (a generator of :func:`kept`), and whether it was
    written as a list."""

    items: Iterable
    as_list: bool


def reduce_filtered(f, filtered: Filtered, args: tuple, kwargs: dict, call: Callable):
    """``f(comprehension, *args, **kwargs)``: the builtin reductions weigh the elements by their
    traced conditions; any other ``f`` gets Python's filtered comprehension, which needs static
    conditions, through the converter's ``call``."""
    items = [item for item in filtered.items if item is not None]
    soft = [item for item in items if item.condition is not True]
    if not soft:
        values = [item.value for item in items]
        return call(f, (values if filtered.as_list else iter(values), *args), kwargs)
    if f not in _REDUCTIONS.values() or (f is len and (args or kwargs)):
        raise _refusal(soft[0].condition_repr, soft[0].where)
    if f is len:
        return sum(1 if item.condition is True else _weighed(item, 1, 0) for item in items)
    if f is sum:
        return sum((_weighed(item, item.value, 0) for item in items), *args, **kwargs)
    truths = [condition_of(item.value, f"{f.__name__}()") for item in items]
    if f is any:
        truths = [
            t if item.condition is True else jnp.logical_and(_truth(item), t)
            for item, t in zip(items, truths, strict=True)
        ]
    else:
        truths = [
            t if item.condition is True else jnp.logical_or(jnp.logical_not(_truth(item)), t)
            for item, t in zip(items, truths, strict=True)
        ]
    return (jnp.any if f is any else jnp.all)(jnp.stack(truths))


def _truth(item: Kept):
    return condition_of(item.condition, "comprehension's if")


def _weighed(item: Kept, value, empty):
    """``value`` where the item's condition holds, else ``empty`` (zeros of its shape)."""
    if item.condition is True:
        return value
    try:
        value = jnp.asarray(value)
    except TypeError:
        raise ConversionError(
            f"sf.relax: the comprehension's `if {item.condition_repr}` at {item.where} is on a "
            f"traced value and selects {type(value).__name__} elements, which cannot be weighed "
            "by it; only numbers and arrays can."
        ) from None
    return jnp.where(_truth(item), value, jnp.zeros_like(value) + empty)


class ComprehensionConditions(ast.NodeTransformer):
    """``sum`` / ``len`` / ``any`` / ``all`` of a comprehension whose last ``for`` is filtered
    yield :func:`kept` items (the other ``if`` s stay filters); every other ``if`` of a
    comprehension is checked by :func:`comprehension_condition`, since Python's own error on a
    traced one names neither the line nor a way out."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if (
            isinstance(node.func, ast.Name)
            and node.func.id in _REDUCTIONS
            and node.args
            and isinstance(node.args[0], ast.ListComp | ast.GeneratorExp)
            and node.args[0].generators[-1].ifs
            and (node.func.id != "len" or isinstance(node.args[0], ast.ListComp))
        ):
            node.args[0] = self._kept_items(node.args[0])
        return self.generic_visit(node)

    def _kept_items(self, comprehension: ast.ListComp | ast.GeneratorExp) -> ast.expr:
        last = comprehension.generators[-1]
        tests, last.ifs = last.ifs, []
        test = tests[0] if len(tests) == 1 else ast.BoolOp(op=ast.And(), values=tests)
        items = ast.GeneratorExp(
            elt=_templates.replace_as_expression(
                "ag__.kept(lambda: elt, lambda: test, test_repr)",
                elt=comprehension.elt,
                test=test,
                test_repr=_source(test),
            ),
            generators=comprehension.generators,
        )
        filtered = _templates.replace_as_expression(
            "ag__.Filtered(items, as_list)",
            items=items,
            as_list=ast.Constant(isinstance(comprehension, ast.ListComp)),
        )
        return cast(ast.expr, filtered)

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        node = cast(ast.comprehension, self.generic_visit(node))
        node.ifs = [
            _templates.replace_as_expression(
                "ag__.comprehension_condition(test, test_repr)", test=test, test_repr=_source(test)
            )
            for test in node.ifs
        ]
        return node


def _source(node: ast.AST) -> ast.Constant:
    return ast.Constant(_parser.unparse(node, include_encoding_marker=False).strip())
