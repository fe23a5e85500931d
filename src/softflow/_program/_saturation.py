"""Integers a loop carries that saturate: the values from some ``H`` on are one state.

A hybrid system's mode that only shifts up (``mode = jnp.where(v > up[mode], mode + 1, mode)``)
reaches ``0..T`` in ``T`` steps, so relax carries it as a distribution over ``T + 1`` values. But
if every use of the mode in the body clamps it (a read ``up[mode]`` of a table of 3 entries,
``lax.switch`` over 3 branches), the values ``2, 3, ...`` behave alike, and the body maps them to
values that are at least 2 again: carrying ``min(mode, 2)`` computes the same thing with 3 states.

:func:`saturation` finds the least such ``H`` by evaluating the body's integer arithmetic on the
mode at trace time, for every value in its range at once. A value computed from the mode alone is
a table over those values; a ``select_n`` of such tables by a condition computed otherwise is a
choice among them. Where the mode's tables meet the rest of the body (the index of a read or of a
branch, an operand of arithmetic on other values, an output of the body), what the body sees is an
observation: the index clamped as the primitive clamps it, else the values themselves. ``H`` must
give every observation the same value from ``H`` on, and every value the body carries on from one
of ``H, H + 1, ...`` must be at least ``H``. Anything the analysis does not follow (the mode used
inside a nested loop or a branch) is an observation of its values, which keeps ``H`` at the top of
the range: no saturation.
"""

from typing import Any, NamedTuple

import jax
import numpy as np
from jax.extend.core import Jaxpr, JaxprEqn, Literal

from .._checks import is_concrete
from . import _jaxpr
from ._boundaries import Kind
from ._generic import at_trace_time
from ._values import Live, aval, is_soft, unwrap


class _Decline(Exception):
    """The analysis cannot follow the mode here: no saturation."""


class _Other:
    """A value computed otherwise than from the mode alone (one object per value)."""


class _Known(NamedTuple):
    """A value known at trace time that does not depend on the mode."""

    value: Any


class _Table(NamedTuple):
    """A value of the mode alone: its value for each value of the mode, on the leading axis."""

    values: np.ndarray


class _Choice(NamedTuple):
    """``select_n(predicate, *cases)``: one of the tables, chosen by a value computed otherwise."""

    predicate: _Other
    cases: tuple[np.ndarray, ...]


class _Analysis:
    def __init__(self, n: int):
        self.n = n
        self.observed: list[np.ndarray] = []

    def observe(self, value) -> None:
        if isinstance(value, _Table):
            self.observed.append(value.values)
        elif isinstance(value, _Choice):
            self.observed.extend(value.cases)

    def run(self, jaxpr: Jaxpr, consts, args) -> list:
        env: dict = {}

        def read(atom):
            return _Known(atom.val) if isinstance(atom, Literal) else env[atom]

        for var, value in zip(jaxpr.constvars, consts, strict=True):
            env[var] = _Known(value) if is_concrete(value) else _Other()
        for var, value in zip(jaxpr.invars, args, strict=True):
            env[var] = value
        for eqn in jaxpr.eqns:
            invals = [read(v) for v in eqn.invars]
            if _jaxpr.is_call(eqn):
                body = _jaxpr.call_body(eqn)
                outs = self.run(body.jaxpr, body.consts, invals)
            else:
                outs = self.equation(eqn, invals)
            for var, value in zip(eqn.outvars, outs, strict=True):
                env[var] = value
        return [read(v) for v in jaxpr.outvars]

    def equation(self, eqn: JaxprEqn, invals: list) -> list:
        mode = [v for v in invals if isinstance(v, _Table | _Choice)]
        fresh = [_Other() for _ in eqn.outvars]
        name = eqn.primitive.name
        control = _jaxpr.has_inner_jaxpr(eqn)
        if not mode:
            if all(isinstance(v, _Known) for v in invals) and not control:
                return [_Known(o) for o in self.evaluate(eqn, invals, None)]
            return fresh
        if name == "select_n" and isinstance(invals[0], _Other):
            # (One choice for every element: a choice per element would not survive a
            # reduction or a move of the elements, which the analysis applies case by case.)
            scalar = aval(eqn.invars[0]).shape == ()
            if not scalar or not all(isinstance(v, _Table | _Known) for v in invals[1:]):
                raise _Decline
            return [_Choice(invals[0], tuple(self.as_table(v) for v in invals[1:]))]
        if name == "dynamic_slice" and isinstance(invals[0], _Other):
            # The read sees its start indices clamped into range.
            sizes = _jaxpr.slice_sizes(eqn)
            shape = aval(eqn.invars[0]).shape
            for value, dim, size in zip(invals[1:], shape, sizes, strict=True):
                self.observe(_clipped(value, 0, dim - size))
            return fresh
        if name == "cond":
            self.observe(_clipped(invals[0], 0, len(_jaxpr.cond_branches(eqn)) - 1))
            for value in invals[1:]:
                self.observe(value)
            return fresh
        if control or any(isinstance(v, _Other) for v in invals):
            for value in invals:
                self.observe(value)
            return fresh
        choices = {id(v.predicate) for v in mode if isinstance(v, _Choice)}
        if not choices:
            return [_Table(o) for o in self.evaluate(eqn, invals, self.n)]
        if len(choices) > 1:
            raise _Decline
        choice = next(v for v in mode if isinstance(v, _Choice))
        per_case = []
        for k in range(len(choice.cases)):
            case = [_Table(v.cases[k]) if isinstance(v, _Choice) else v for v in invals]
            per_case.append(self.evaluate(eqn, case, self.n))
        return [_Choice(choice.predicate, tuple(c[i] for c in per_case)) for i in range(len(fresh))]

    def as_table(self, value) -> np.ndarray:
        if isinstance(value, _Table):
            return value.values
        return np.broadcast_to(np.asarray(value.value), (self.n, *np.shape(value.value)))

    def evaluate(self, eqn: JaxprEqn, invals: list, n: int | None) -> list:
        """The equation on known values; with ``n``, for each value of the mode."""
        axes = [0 if isinstance(v, _Table) else None for v in invals]
        args = [v.values if isinstance(v, _Table) else np.asarray(v.value) for v in invals]

        def one(*a):
            return _jaxpr.bind(eqn, a)

        fn = one if n is None else jax.vmap(one, in_axes=axes)
        try:
            outs = at_trace_time(fn, *args)
        except Exception as error:  # what the analysis cannot evaluate, it does not follow
            raise _Decline from error
        return [np.asarray(o) for o in outs]


def _clipped(value, lo: int, hi: int):
    """An index as the primitive reading at it sees it: clamped into ``lo..hi``."""
    if isinstance(value, _Table):
        return _Table(np.clip(value.values, lo, hi))
    if isinstance(value, _Choice):
        return _Choice(value.predicate, tuple(np.clip(c, lo, hi) for c in value.cases))
    return value


def saturation(
    body: _jaxpr.Closed, into: int, out: int, lo: int, hi: int, known: dict
) -> int | None:
    """The least ``H < hi`` such that carrying ``min(h, H)`` for an integer ``h`` of range
    ``lo..hi`` that a loop carries (``body``'s input ``into`` and output ``out``) changes
    nothing the loop computes, or None.

    ``known``: inputs of the body known at trace time (their positions and values); the others
    are computed otherwise. The caller checks that the loop's final value of the integer is
    unused."""
    jaxpr = body.jaxpr
    var = jaxpr.invars[into]
    if aval(var).shape != () or hi <= lo:
        return None
    values = np.arange(lo, hi + 1).astype(aval(var).dtype)
    analysis = _Analysis(values.size)
    args = [
        _Table(values) if i == into else _Known(known[i]) if i in known else _Other()
        for i in range(len(jaxpr.invars))
    ]
    try:
        outs = analysis.run(jaxpr, body.consts, args)
    except _Decline:
        return None
    carried = outs[out]
    if isinstance(carried, _Table):
        successors = [carried.values]
    elif isinstance(carried, _Choice):
        successors = list(carried.cases)
    else:
        return None
    for i, value in enumerate(outs):
        if i != out:
            analysis.observe(value)
    observed = [np.asarray(o).reshape(values.size, -1) for o in analysis.observed]
    for top in range(values.size - 1):
        same = all(
            np.array_equal(o[top:], np.broadcast_to(o[top], o[top:].shape)) for o in observed
        )
        stays = all(np.all(s[top:] >= values[top]) for s in successors)
        if same and stays:
            return int(values[top])
    return None


def saturated_kinds(
    kinds: list[Kind], body: _jaxpr.Closed, consts: list, unread: list[bool]
) -> list[Kind]:
    """The kinds of a loop's carry (``body``'s inputs: ``consts``, then the carry), where each
    integer carried as a distribution that saturates, and whose final value nothing reads
    (``unread``), is carried up to its saturation only."""
    known = {
        i: unwrap(c)
        for i, c in enumerate(consts)
        if not is_soft(c) and not isinstance(c, Live) and is_concrete(c)
    }
    found = list(kinds)
    for i, (kind, dropped) in enumerate(zip(kinds, unread, strict=True)):
        if kind.name != "cat" or not dropped:
            continue
        assert kind.lo is not None and kind.hi is not None
        top = saturation(body, len(consts) + i, i, kind.lo, kind.hi, known)
        if top is not None:
            found[i] = Kind("cat", kind.lo, top, saturated=True)
    return found
