"""Soft values crossing the boundary of a ``lax`` control-flow primitive as arrays.

A loop carry, a branch output or a checkpointed function's argument must be an array. Each value
crossing such a boundary gets a *kind*: ``"dead"`` and ``"live"`` are exact arrays (independent
of / dependent on the floating-point inputs); ``"bool"`` is a soft truth value carried as its
probability and ``"int"`` a soft integer carried as its expected value, both in the default float
dtype. A categorical crossing a boundary keeps only its expectation.

The kinds of a loop's carry are found at their fixed point by tracing the body abstractly: a
value that becomes soft in the body is soft from the first iteration on.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._values import Expected, Live, SoftBool, default_float, is_soft, mean, unwrap

_ORDER = {"dead": 0, "live": 1, "bool": 2, "int": 2}


def kind_of(value, aval) -> str:
    if not is_soft(value):
        return "live" if isinstance(value, Live) else "dead"
    return "bool" if aval.dtype == jnp.bool_ else "int"


def join(a: str, b: str) -> str:
    return a if _ORDER[a] >= _ORDER[b] else b


def encode(value, kind: str, aval) -> jax.Array:
    if kind in ("dead", "live"):
        return jnp.asarray(unwrap(value))
    return mean(value).astype(default_float())


def decode(x, kind: str, aval):
    if kind == "dead":
        return x
    if kind == "live":
        return Live(x)
    if kind == "bool":
        return SoftBool(x, None)
    return Expected(x, None)


def encode_all(values, kinds, avals) -> list:
    return [encode(v, k, a) for v, k, a in zip(values, kinds, avals, strict=True)]


def decode_all(arrays, kinds, avals) -> list:
    return [decode(x, k, a) for x, k, a in zip(arrays, kinds, avals, strict=True)]


def kinds_after(fn: Callable[[], list], avals) -> list[str]:
    """The kinds of the values ``fn`` returns, found by tracing it abstractly."""
    found = []

    def trace():
        values = fn()
        found[:] = [kind_of(v, a) for v, a in zip(values, avals, strict=True)]
        return [jnp.asarray(unwrap(v)) if not is_soft(v) else mean(v) for v in values]

    jax.eval_shape(trace)
    return found


def carry_kinds(body: Callable, init: list, avals, extra_avals=()) -> tuple[list, list]:
    """Kinds of a loop carry at its fixed point: a value that becomes soft in the body is soft.

    ``body`` returns the next carry followed by other outputs (a scan's ``ys``) of
    ``extra_avals``, whose kinds at the fixed point are returned too.
    """
    kinds = [kind_of(v, a) for v, a in zip(init, avals, strict=True)]
    while True:
        decoded = decode_all(encode_all(init, kinds, avals), kinds, avals)
        after = kinds_after(functools.partial(body, decoded), [*avals, *extra_avals])
        new = [join(k, n) for k, n in zip(kinds, after, strict=False)]
        if new == kinds:
            return kinds, after[len(avals) :]
        kinds = new


def exit_loop_kinds(body_parts: Callable, init: list, avals) -> tuple[list, bool]:
    """:func:`carry_kinds` of a loop with exits in its body (a converted ``break``): a carry is
    soft when it is soft at the end of the body or at an exit; and whether an exit's condition
    is soft. ``body_parts(state)`` returns the exits' conditions, their states and the final
    state."""

    def after(kinds: list) -> tuple[list, bool]:
        decoded = decode_all(encode_all(init, kinds, avals), kinds, avals)
        found: list = []

        def trace():
            conds, exits, final = body_parts(decoded)
            new = list(kinds)
            for state in (final, *exits):
                new = [join(k, kind_of(v, a)) for k, v, a in zip(new, state, avals, strict=True)]
            found[:] = [new, any(is_soft(c) for c in conds)]
            return [mean(v) if is_soft(v) else jnp.asarray(unwrap(v)) for v in final]

        jax.eval_shape(trace)
        return found[0], found[1]

    kinds = [kind_of(v, a) for v, a in zip(init, avals, strict=True)]
    while True:
        new, soft_exit = after(kinds)
        if new == kinds:
            return kinds, soft_exit
        kinds = new
