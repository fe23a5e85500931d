"""The most iterations of a ``while_loop``, where a counter bounds it: a counter below a bound
in its condition (``(i < n) & ...``), or a counter that reaches a bound at an exit
(``if done or n >= max_iter: break``)."""

import math
from typing import Any

import numpy as np
from jax.extend.core import Jaxpr, Literal

from .._checks import is_concrete
from . import _jaxpr
from ._markers import EXITS_NAME
from ._values import aval


def only_compared(cond: Jaxpr) -> bool:
    """Whether a ``while_loop``'s condition is one comparison (``i < n``, no other conjunct):
    with a counter there, the loop runs exactly :func:`counted_steps` times."""
    e = next((e for e in cond.eqns if cond.outvars[0] in e.outvars), None)
    return e is not None and e.primitive.name in ("lt", "le", "gt", "ge")


def _implied_by_select(eqn) -> Any:
    """The case that a boolean select's result implies, where its other case is ``False``
    (``jnp.where(broke, False, i < n)``, the test of a converted loop with a ``break``: the loop
    goes on only where ``i < n``), as an atom of the jaxpr that holds ``eqn``; else None."""
    select, outer = eqn, None
    if _jaxpr.is_call(eqn):  # (jnp.where is a call of one select)
        inner = _jaxpr.call_body(eqn).jaxpr
        if len(inner.eqns) != 1 or len(inner.outvars) != 1:
            return None
        select, outer = inner.eqns[0], dict(zip(inner.invars, eqn.invars, strict=True))
    if select.primitive.name != "select_n" or len(select.invars) != 3:
        return None
    if aval(select.outvars[0]).dtype != np.bool_:
        return None
    cases = [
        c if outer is None or isinstance(c, Literal) else outer.get(c) for c in select.invars[1:]
    ]
    false = [isinstance(c, Literal) and np.ndim(c.val) == 0 and not c.val for c in cases]
    if sum(false) != 1 or None in cases:
        return None
    return cases[false.index(False)]


def counted_steps(cond: Jaxpr, body: Jaxpr, cond_consts: list, body_nconsts: int, init: list):
    """The most iterations of a ``while_loop`` whose condition requires a counter below a bound
    known at trace time (``(i < max_iter) & (error > tol)``) and whose body adds 1 to it:
    ``bound - start``, the least over such counters and the exits that such a counter takes
    (see :func:`exit_steps`); None when there is none."""
    producers = {v: e for e in cond.eqns for v in e.outvars}
    carried = cond.invars[len(cond_consts) :]

    def known(atom):
        if isinstance(atom, Literal):
            return atom.val
        if atom in cond.invars[: len(cond_consts)]:
            value = cond_consts[cond.invars.index(atom)]
            return value if value is not None and is_concrete(value) else None
        return None

    def below(atom):  # (carry position, bound) of each conjunct counter < bound
        e = None if isinstance(atom, Literal) else producers.get(atom)
        if e is None:
            return
        name = e.primitive.name
        if name == "and" or (
            name == "convert_element_type"
            and aval(e.invars[0]).dtype == aval(e.outvars[0]).dtype == np.bool_
        ):
            for v in e.invars:
                yield from below(v)
        elif (implied := _implied_by_select(e)) is not None:
            yield from below(implied)
        elif name in ("lt", "le", "gt", "ge"):
            a, b = e.invars if name in ("lt", "le") else e.invars[::-1]
            if isinstance(a, Literal):
                return
            # (A counter converted to the bound's type, as dtype promotion does, counts alike.)
            while (
                a in producers
                and producers[a].primitive.name == "convert_element_type"
                and all(
                    np.issubdtype(aval(v).dtype, np.integer) for v in (a, producers[a].invars[0])
                )
            ):
                a = producers[a].invars[0]
            bound = known(b)
            if a in carried and bound is not None and np.ndim(bound) == 0:
                yield carried.index(a), float(bound), name in ("le", "ge")

    def steps(k: int, bound: float, inclusive: bool) -> int | None:
        start = _counter_start(body, body_nconsts, init, k)
        if start is None:
            return None
        span = bound - start
        if not math.isfinite(span):
            return None
        # The counter takes the values start, start + 1, ... while below (or at) the bound.
        return max(math.floor(span) + 1 if inclusive else math.ceil(span), 0)

    found = [s for k, n, le in below(cond.outvars[0]) if (s := steps(k, n, le)) is not None]
    found += exit_steps(body, body_nconsts, init)
    return min(found) if found else None


def _counter_start(body: Jaxpr, body_nconsts: int, init: list, k: int) -> float | None:
    """The start of carry ``k`` where it is a counter that the body adds 1 to in every pass
    (also at every exit of a loop with exits); else None."""
    start = init[k]
    if not (is_concrete(start) and np.ndim(start) == 0):
        return None
    e = next((e for e in body.eqns if body.outvars[k] in e.outvars), None)
    if e is not None and _jaxpr.is_call(e) and _jaxpr.call_name(e) == EXITS_NAME:
        # A counter of a loop with exits is the same at every exit: its value at the end.
        final = e.invars[len(e.invars) - len(e.outvars) + 1 + k]
        e = next((e for e in body.eqns if final in e.outvars), None)
    counter = body.invars[body_nconsts + k]
    if e is None or e.primitive.name != "add" or counter not in e.invars:
        return None
    (step,) = [v for v in e.invars if v is not counter] or [None]
    if not (isinstance(step, Literal) and np.ndim(step.val) == 0 and step.val == 1):
        return None
    return float(start)


def exit_steps(body: Jaxpr, body_nconsts: int, init: list) -> list[int]:
    """The passes after which a loop with exits (a converted ``break``) has surely stopped,
    for each exit whose condition holds once a counter reaches a bound known at trace time
    (``if converged or n >= max_iter: break`` after ``n += 1``, in ``while True:``)."""
    marker = next(
        (e for e in body.eqns if _jaxpr.is_call(e) and _jaxpr.call_name(e) == EXITS_NAME), None
    )
    if marker is None:
        return []
    producers = {v: e for e in body.eqns for v in e.outvars}
    carried = body.invars[body_nconsts:]
    n_state = len(marker.outvars) - 1
    n_exits = (len(marker.invars) - n_state) // (n_state + 1)

    def reaches(atom):  # (carry, offset, bound, inclusive) of each disjunct counter >= bound
        e = None if isinstance(atom, Literal) else producers.get(atom)
        if e is None:
            return
        name = e.primitive.name
        if name == "or":
            for v in e.invars:
                yield from reaches(v)
        elif name in ("lt", "le", "gt", "ge"):
            bound, x = e.invars if name in ("lt", "le") else e.invars[::-1]
            if not (isinstance(bound, Literal) and np.ndim(bound.val) == 0):
                return
            offset = 0.0
            made = producers.get(x) if not isinstance(x, Literal) else None
            if made is not None and made.primitive.name == "add":
                (c,) = [v for v in made.invars if isinstance(v, Literal)] or [None]
                if c is None or np.ndim(c.val) != 0:
                    return
                x, offset = next(v for v in made.invars if v is not c), float(c.val)
            if x in carried:
                yield carried.index(x), offset, float(bound.val), name in ("le", "ge")

    found = []
    for cond in marker.invars[:n_exits]:
        for k, offset, bound, inclusive in reaches(cond):
            start = _counter_start(body, body_nconsts, init, k)
            if start is None:
                continue
            # In pass p (from 1) the counter compared is start + p - 1 + offset.
            span = bound - start - offset
            if not math.isfinite(span):
                continue
            found.append(max(math.ceil(span) + 1 if inclusive else math.floor(span) + 2, 1))
    return found
