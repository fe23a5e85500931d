"""Rules for array operations: elementwise steps and remainders, ``argmax`` / ``argmin``,
``searchsorted``, slices of one operand and ``lu`` (sorting is in ``_rules_sort``)."""

import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.extend.core import JaxprEqn, Literal as JaxprLiteral

from .. import _compare, _select, _steps
from .._checks import is_concrete, softness_array
from .._modes import straight_through
from . import _jaxpr, _views
from ._candidates import candidatewise
from ._generic import hard_thunk
from ._interpreter import Interpreter, call_rule, rule
from ._rules_present import argmax_of_present
from ._values import (
    Categorical,
    Clamp,
    Expected,
    Live,
    Mixture,
    SoftBool,
    Staircase,
    aval,
    exact_candidates,
    floating,
    is_live,
    is_soft,
    mean,
    unwrap,
    varies,
)


def live_float_operand(eqn: JaxprEqn, invals: list) -> bool:
    """Whether the operand is a live float that varies (one that is piecewise constant is
    rounded exactly)."""
    return isinstance(invals[0], Live) and floating(aval(eqn.invars[0])) and varies(invals[0])


# The offset of the jump into each value of the staircases (see _values.Staircase).
_JUMP_OFFSETS = {"floor": 0.0, "ceil": -1.0, "round": -0.5}


def _step_rule(soft_fn):
    """sign / floor / ceil / round: the soft staircase, with the primitive itself as the exact
    value (so that ``lax.round``'s rounding method and every tie are those of the program)."""

    def step(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
        if not live_float_operand(eqn, invals):
            return self.default(eqn, invals)
        known = exact_candidates(invals[0])
        if known is not None:
            # Already integers for each candidate (floor(floor(x)), round(table[i])): exact.
            return self.per_candidate(eqn, [known])
        x = unwrap(invals[0])
        name = soft_fn.__name__
        exact = _jaxpr.bind(eqn, [x])[0]
        clamp = invals[0].clamp
        if clamp is not None and name in _JUMP_OFFSETS:
            return [_clipped_staircase(self, eqn, clamp, exact, _JUMP_OFFSETS[name])]
        self.record(eqn, f"sf.{name}")
        soft = soft_fn(x, softness=self.options.softness, kind=self.options.kind, mode="soft")
        if name not in _JUMP_OFFSETS:
            # The sign is -1 or 1, with probabilities (1 -+ soft) / 2: what an integer
            # conversion or a comparison of it acts on, one value at a time. In straight-through
            # mode forward it is the exact sign, 0 included, with the soft gradient.
            signs = jnp.broadcast_to(jnp.array([-1, 0, 1], exact.dtype), (*exact.shape, 3))
            zero = jnp.zeros_like(soft)
            probs = jnp.stack([(1 - soft) / 2, zero, (1 + soft) / 2], axis=-1)
            probs = self.with_mode((signs == exact[..., None]).astype(probs.dtype), probs)
            mixture = Mixture(signs, probs, None, False)
            return [Live(self.with_mode(exact, soft), mixture=mixture)]
        staircase = Staircase(x, exact, _JUMP_OFFSETS[name])
        # The integers it may be, with their probabilities: what a later comparison, remainder or
        # step of the value acts on, candidate by candidate (floor(x) >= 11 is P(floor(x) >= 11),
        # not a soft comparison at 11 of a value that is 11).
        cands, probs, _ = staircase_law(self, x, exact, _JUMP_OFFSETS[name])
        mixture = Mixture(cands, probs, None, False)
        return [Live(self.with_mode(exact, soft), staircase=staircase, mixture=mixture)]

    return step


for _fn in (_steps.sign, _steps.floor, _steps.ceil, _steps.round):
    rule(_fn.__name__)(_step_rule(_fn))


def _clipped_staircase(self: Interpreter, eqn: JaxprEqn, clamp: Clamp, exact, offset) -> Live:
    """``floor`` / ``ceil`` / ``round`` of a value clipped by exact bounds (``_clipped_law``);
    its soft value is the expectation of the clipped integers."""
    cands, probs, _, then, bounds = _clipped_law(
        self, clamp, lambda v: _jaxpr.bind(eqn, [v])[0], offset
    )
    soft = _select.weighted_sum(probs.astype(cands.dtype), cands).astype(exact.dtype)
    self.record(eqn, f"sf.{eqn.primitive.name} of the value before its clip, clipped")
    unclipped = _jaxpr.bind(eqn, [clamp.source])[0]
    staircase = Staircase(clamp.source, unclipped, offset, then, bounds)
    mixture = Mixture(cands, probs, None, False)
    return Live(self.with_mode(exact, soft), staircase=staircase, mixture=mixture)


def _clipped_law(self: Interpreter, clamp: Clamp, step, offset):
    """The law of the staircase ``step`` (jumps at ``offset``) of a value clipped by exact bounds:
    that of the value before its clip, its integers clipped to ``step`` of the bounds (see
    :class:`Clamp`). Also the clip of one candidate, and its static bounds (infinite where not
    known at trace time)."""
    low, high = (
        None if b is None else step(jnp.asarray(b, clamp.source.dtype))
        for b in (clamp.low, clamp.high)
    )

    def then(candidate):  # one candidate, of the value's shape
        return jnp.clip(candidate, low, high)

    cands, probs, reach = staircase_law(self, clamp.source, step(clamp.source), offset)
    cands = jax.vmap(then, -1, -1)(cands)
    bounds = (-math.inf, math.inf)
    if all(is_concrete(b) for b in (low, high) if b is not None):
        bounds = (
            -math.inf if low is None else float(np.min(low)),
            math.inf if high is None else float(np.max(high)),
        )
    return cands, probs, reach, then, bounds


def _truncation_offset(candidates):
    """``x.astype(int)`` rounds towards zero: it steps into c >= 1 at c, into c <= 0 at c - 1."""
    return jnp.where(candidates >= 1, 0.0, -1.0).astype(candidates.dtype)


def _relaxed_quotient(self: Interpreter, x, y, offset, exact_quotient) -> jax.Array:
    """The expected integer quotient of ``x / y`` rounded by the staircase of ``offset``."""
    q = x / y
    tau = softness_array(self.options.softness, q.dtype, q.shape)
    reach = _steps.candidate_reach(
        _static_softness(self.options.softness, tau), self.options.kind, q.dtype
    )
    cands, probs = _steps.staircase_distribution(
        q, exact_quotient(q), offset, jnp.broadcast_to(tau, q.shape), self.options.kind, reach
    )
    return jnp.sum(cands * probs, axis=-1)


def _static_softness(softness, tau):
    """The softness as a NumPy array when it is known at trace time, else the traced ``tau``."""
    return tau if isinstance(softness, Tracer) else np.asarray(softness)


def _remainder(self: Interpreter, eqn: JaxprEqn, invals: list, *, floored: bool) -> list:
    x, y = (jnp.asarray(unwrap(v)) for v in invals)
    # By inf (fmod(x, inf) = x) or of a non-finite x: exact, the formula on 1s (inf * 0 is NaN).
    exact = _jaxpr.bind(eqn, [x, y])[0]
    unbounded = jnp.isinf(y) | ~jnp.isfinite(x)
    x_, y_ = (jnp.where(unbounded, jnp.ones((), v.dtype), v) for v in (x, y))
    if floored:
        quotient = _relaxed_quotient(self, x_, y_, 0.0, jnp.floor)
        how = "x - y * sf.floor(x / y)"
    else:
        quotient = _relaxed_quotient(self, x_, y_, _truncation_offset, jnp.trunc)
        how = "x - y * (x / y rounded towards zero, relaxed)"
    soft = jnp.where(unbounded, exact, (x_ - y_ * quotient).astype(exact.dtype))
    self.record(eqn, how)
    return [Live(self.with_mode(exact, soft))]


def _remainder_per_candidate(self: Interpreter, eqn: JaxprEqn, invals: list) -> list | None:
    """A remainder of a float known exactly for each candidate (``jnp.floor(x) % 2``) by an exact
    divisor: exact for each candidate."""
    x, y = invals
    candidates = exact_candidates(x)
    if candidates is None or is_live(y):
        return None
    return self.per_candidate(eqn, [candidates, y])


@call_rule("remainder")
def _floor_mod_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``x % y`` on floats (Python's modulo, the sign of ``y``): ``x - y * floor(x / y)`` with the
    relaxed floor of the quotient."""
    if any(is_soft(v) for v in invals) or not floating(aval(eqn.outvars[0])):
        return self.run_closed(_jaxpr.call_body(eqn), invals)
    per_candidate = _remainder_per_candidate(self, eqn, invals)
    if per_candidate is not None:
        return per_candidate
    return _remainder(self, eqn, invals, floored=True)


@call_rule("floor_divide")
def _floor_divide_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``x // y`` on floats: the relaxed floor of ``x / y``, the quotient that ``x % y`` relaxes
    (relaxing the steps of jnp's own formula one by one, ``rem``, ``sign``, ``round``, does not
    give a floor), anchored at the program's own quotient."""
    if any(is_soft(v) for v in invals) or not floating(aval(eqn.outvars[0])):
        return self.run_closed(_jaxpr.call_body(eqn), invals)
    per_candidate = _remainder_per_candidate(self, eqn, invals)
    if per_candidate is not None:
        return per_candidate
    x, y = (jnp.asarray(unwrap(v)) for v in invals)
    exact = _jaxpr.bind(eqn, [x, y])[0]
    quotient = x / y
    # The law's expectation is the soft value (in straight-through mode, exact forward).
    cands, probs, _ = staircase_law(self, quotient, exact, 0.0)
    soft = jnp.sum(cands * probs, axis=-1)
    self.record(eqn, "sf.floor(x / y)")
    return [
        Live(
            self.with_mode(exact, soft.astype(exact.dtype)),
            staircase=Staircase(quotient, exact, 0.0),
            mixture=Mixture(cands, probs, None, False),
        )
    ]


@rule("rem")
def _rem_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``lax.rem`` / ``jnp.fmod`` on floats: ``x - y * trunc(x / y)`` with the relaxed truncation
    of the quotient."""
    if any(is_soft(v) for v in invals) or not floating(aval(eqn.outvars[0])):
        return self.default(eqn, invals)
    per_candidate = _remainder_per_candidate(self, eqn, invals)
    if per_candidate is not None:
        return per_candidate
    return _remainder(self, eqn, invals, floored=False)


def staircase_law(self: Interpreter, source, exact, offset) -> tuple[jax.Array, jax.Array, int]:
    """The relaxed staircase of ``source`` (exact value ``exact``, jumps at ``offset``) as a
    distribution: candidates (floats), probabilities, and the reach on each side; exact in hard
    mode, and in straight-through mode exact forward with the soft gradient."""
    tau = softness_array(self.options.softness, source.dtype, source.shape)
    # The number of candidates is static: from a concrete softness, or the most when it is traced.
    reach = _steps.candidate_reach(
        _static_softness(self.options.softness, tau), self.options.kind, source.dtype
    )
    cands, probs = _steps.staircase_distribution(
        source, exact, offset, jnp.broadcast_to(tau, source.shape), self.options.kind, reach
    )
    if self.options.mode == "straight_through":
        probs = straight_through(jnp.zeros_like(probs).at[..., reach].set(1), probs)
    return cands, probs, reach


def integer_distribution(self: Interpreter, eqn: JaxprEqn, value: Live) -> Categorical:
    """A float converted to an integer (``convert_element_type``): a distribution over the
    integers near the exact value, from the staircase that made the float (``floor``, ``ceil``,
    ``round``) or else from truncation towards zero; exact in hard mode, and in
    straight-through mode exact forward with the soft gradient."""
    bounds = None
    if value.staircase is not None:
        staircase = value.staircase
        cands, probs, reach = staircase_law(
            self, staircase.source, staircase.exact, staircase.offset
        )
        if staircase.then is not None:
            cands = jax.vmap(staircase.then, -1, -1)(cands)
        made = "the relaxed staircase"
        lo, hi = staircase.bounds
        if math.isfinite(lo) and math.isfinite(hi):
            bounds = (math.ceil(lo), math.floor(hi))
    elif value.clamp is not None:
        cands, probs, reach, _, (lo, hi) = _clipped_law(
            self, value.clamp, jnp.trunc, _truncation_offset
        )
        made = "truncation of the value before its clip"
        if math.isfinite(lo) and math.isfinite(hi):
            bounds = (math.ceil(lo), math.floor(hi))
    else:
        source = unwrap(value)
        cands, probs, reach = staircase_law(self, source, jnp.trunc(source), _truncation_offset)
        made = "truncation"
    (integers,) = candidatewise(eqn, [cands], [True])
    self.record(eqn, f"distribution over {2 * reach + 1} integers ({made})")
    return Categorical(integers, probs, hard_thunk(eqn, [value])(0), bounds=bounds)


@rule("argmax", "argmin")
def _argmax_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    if isinstance(invals[0], SoftBool):
        return _first_true(self, eqn, invals)
    if _of_one_outcome(invals[0]):
        return self.per_candidate(eqn, invals)
    if (per_outcome := _argmax_per_outcome(self, eqn, invals[0])) is not None:
        return per_outcome
    if (present := argmax_of_present(self, eqn, invals[0])) is not None:
        return present
    running = _running_count(self, eqn, invals[0])
    if running is not None:
        order, running = running
        if order == "increasing":
            return _last_one(self, eqn, invals, running)
        return _first_reached(self, eqn, invals, running)
    # Counts (a vote by bincount, a running count): their expectation.
    expected = isinstance(invals[0], Expected | Categorical)
    if not (live_float_operand(eqn, invals) or expected):
        return self.default(eqn, invals)
    x = mean(invals[0]) if expected else unwrap(invals[0])
    (axis,) = _jaxpr.axes(eqn)
    fn = _select.argmax if eqn.primitive.name == "argmax" else _select.argmin
    if expected:
        # Integers that tie are equal, and jnp picks the first: a bias of less than 1/2 toward
        # earlier indices breaks the tie as jnp does and keeps every strict order of integers
        # (jnp.piecewise picks its piece by the argmax of a cumulative count).
        n = x.shape[axis]
        shape = [1] * x.ndim
        shape[axis] = n
        bias = (np.arange(n) / (2 * n)).reshape(shape).astype(x.dtype)
        x = x - bias if eqn.primitive.name == "argmax" else x + bias
    of = " of expected values" if expected else ""
    self.record(eqn, f"sf.{fn.__name__}{of} (a distribution over the indices)")
    probs = jnp.moveaxis(fn(x, axis, **self.compare_options()), axis, -1)
    first = None if expected else _views.first_occurrences(invals[0], axis)
    if first is not None:
        # A repeated element ties with itself at every softness: its mass goes to its first
        # occurrence, the index jnp returns.
        n = probs.shape[-1]
        to_first = np.arange(n) == first[..., None]  # [..., j, i]: j's first occurrence is i
        probs = jnp.einsum("...j,...ji->...i", probs, to_first.astype(probs.dtype))
    n = x.shape[axis]
    # NumPy candidates: known at trace time, so later rules see that they are 0..n-1.
    cands = np.broadcast_to(np.arange(n, dtype=_jaxpr.index_dtype(eqn)), probs.shape)
    return [Categorical(cands, probs, hard_thunk(eqn, invals)(0))]


def _argmax_per_outcome(self: Interpreter, eqn: JaxprEqn, value) -> list | None:
    """The argmax of values chosen by one relaxed scalar integer (``d2 = jnp.where(i == j, inf,
    d)`` with ``j = argmin(d)``: the greedy's second pick): the soft argmax of each outcome's
    values, weighed by the outcome's probability. The soft argmax of their expectation would
    let the event that chose them compete with itself (the masked element, present with the
    small probability that ``j`` is elsewhere, ties with the element that then wins)."""
    if not (isinstance(value, Live) and value.choices and np.ndim(value.choices.probs) == 1):
        return None
    (axis,) = _jaxpr.axes(eqn)
    fn = _select.argmax if eqn.primitive.name == "argmax" else _select.argmin
    each = jnp.moveaxis(value.choices.values, -1, 0)  # [outcome, ...]
    per = jax.vmap(lambda v: jnp.moveaxis(fn(v, axis, **self.compare_options()), axis, -1))(each)
    probs = jnp.einsum("k,k...->...", value.choices.probs.astype(per.dtype), per)
    self.record(eqn, f"sf.{fn.__name__} of each outcome of the relaxed integer that chose")
    cands = np.broadcast_to(np.arange(probs.shape[-1], dtype=_jaxpr.index_dtype(eqn)), probs.shape)
    return [Categorical(cands, probs, hard_thunk(eqn, [value])(0))]


def _of_one_outcome(value) -> bool:
    """Whether every element is a function of one outcome (jnp.select's conditions on one
    relaxed integer, stacked): then an argmax of them is per outcome."""
    return isinstance(value, Categorical) and np.ndim(value.probs) == 1


def _first_true(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    r"""``argmax`` of relaxed truth values (``argmin``: of their negations), the index of the
    first one that holds (0 when none does, as jnp): with independent truth values of
    probabilities :math:`p_i`, :math:`P(\text{first} = i) = p_i \prod_{j<i} (1 - p_j)`, and index
    0 also takes :math:`\prod_j (1 - p_j)`."""
    (axis,) = _jaxpr.axes(eqn)
    p = jnp.moveaxis(invals[0].p, axis, -1)
    if eqn.primitive.name == "argmin":
        p = 1 - p
    none_yet = jnp.cumprod(1 - p, axis=-1)
    before = jnp.concatenate([jnp.ones_like(p[..., :1]), none_yet[..., :-1]], axis=-1)
    probs = (p * before).at[..., 0].add(none_yet[..., -1])
    n = p.shape[-1]
    cands = np.broadcast_to(np.arange(n, dtype=_jaxpr.index_dtype(eqn)), probs.shape)
    self.record(eqn, "the first index where the condition holds (independent conditions)")
    return [Categorical(cands, probs, hard_thunk(eqn, invals)(0))]


def _running_count(self: Interpreter, eqn: JaxprEqn, value: Any) -> tuple | None:
    """How ``value`` follows a running count along the axis that ``argmax`` reduces, and what
    made that count: ``"increasing"`` where it is the count or a strictly increasing function of
    it (``argmax`` then finds the last one counted), ``"reached"`` where it is whether the count
    has reached a level (``cumsum(m) >= 2``); None otherwise (then by expectations)."""
    if not isinstance(value, Categorical) or eqn.primitive.name != "argmax":
        return None
    running = self.running_counts.get(id(value.probs))
    if running is None or running[0] is not value.probs or running[1] != _jaxpr.axes(eqn)[0]:
        return None
    if not is_concrete(value.cands):
        return None
    # Candidate k is the count k for every element; the value is one function of it.
    cands = np.asarray(value.cands)
    row = cands.reshape(-1, cands.shape[-1])[0]
    if not np.array_equal(np.broadcast_to(row, cands.shape), cands):
        return None
    steps = np.diff(row.astype(np.float64))
    if np.all(steps > 0):
        return "increasing", running
    if set(np.unique(row).tolist()) <= {0, 1} and np.all(steps >= 0):
        return "reached", running
    return None


def _first_reached(self: Interpreter, eqn: JaxprEqn, invals: list, running: tuple) -> list:
    r"""``argmax`` of whether a running count of relaxed 0/1 integers has reached a level
    (``jnp.argmax(jnp.cumsum(m) >= 2)``), the first index where it has: the events are nested
    (a count never decreases), so with :math:`q_i` the probability that it has at index
    :math:`i`, :math:`P(\text{argmax} = i) = q_i - q_{i-1}`, and index 0 also takes
    :math:`1 - q_{n-1}` (never: false everywhere). Exact, where the probabilities of the events
    one by one would treat them as independent. A count running in reverse never increases:
    the first index is 0 then."""
    _, axis, reverse, _ = running
    q = jnp.moveaxis(mean(invals[0]), axis, -1)
    if reverse:
        probs = jnp.zeros_like(q).at[..., 0].set(1)
    else:
        before = jnp.concatenate([jnp.zeros_like(q[..., :1]), q[..., :-1]], axis=-1)
        probs = (q - before).at[..., 0].add(1 - q[..., -1])
    n = q.shape[-1]
    cands = np.broadcast_to(np.arange(n, dtype=_jaxpr.index_dtype(eqn)), probs.shape)
    self.record(eqn, "the first index where the running count has reached the level")
    return [Categorical(cands, probs, hard_thunk(eqn, invals)(0))]


def _last_one(self: Interpreter, eqn: JaxprEqn, invals: list, running: tuple) -> list:
    r"""``argmax`` of a running count of independent relaxed 0/1 integers of probabilities
    :math:`p_i` (``jnp.piecewise`` picks its piece so): the count reaches its maximum first at
    the last one, :math:`P(\text{argmax} = i) = p_i \prod_{j>i} (1 - p_j)`, and index 0 also
    takes :math:`\prod_j (1 - p_j)` (no one: the count is 0 everywhere); a count running in
    reverse reaches it at index 0."""
    _, axis, reverse, ones = running
    p = jnp.moveaxis(ones, axis, -1)
    n = p.shape[-1]
    if reverse:
        probs = jnp.zeros_like(p).at[..., 0].set(1)
    else:
        none_after = jnp.cumprod((1 - p)[..., ::-1], axis=-1)[..., ::-1]
        after = jnp.concatenate([none_after[..., 1:], jnp.ones_like(p[..., :1])], axis=-1)
        probs = (p * after).at[..., 0].add(none_after[..., 0])
    cands = np.broadcast_to(np.arange(n, dtype=_jaxpr.index_dtype(eqn)), probs.shape)
    self.record(eqn, "the index of the last one counted (independent conditions)")
    return [Categorical(cands, probs, hard_thunk(eqn, invals)(0))]


@call_rule("searchsorted")
def _searchsorted_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    r"""``jnp.searchsorted(a, v)``: a distribution over the insertion indices 0..n.

    The index is the number of boundaries below ``v`` (``side="left"``: :math:`a_i < v`;
    ``"right"``: :math:`a_i \le v`). With sorted boundaries the soft comparisons decrease along
    ``a``, so :math:`P(\text{index} \ge k) = s((v - a_{k-1})/\tau)` is a staircase in ``k`` and
    :math:`P(\text{index} = k)` its steps, exact in the hard limit. ``a`` must be sorted, as
    jnp requires; with ``sorter=``, the boundaries ``a[sorter]``.
    """
    boundaries, queries, *sorter = invals
    if sorter:  # a[sorter], through the gather's rule (a soft argsort gives soft-sorted values)
        closed = jax.make_jaxpr(lambda a, order: a[order])(aval(eqn.invars[0]), aval(eqn.invars[2]))
        boundaries = self.run(closed.jaxpr, list(closed.consts), [boundaries, sorter[0]])[0]
    if is_soft(boundaries) or is_soft(queries):
        raise self.unsupported(
            eqn,
            "it searches relaxed integers or truth values",
            "search floats, or keep the values exact with sf.exact",
        )
    a, v = jnp.asarray(unwrap(boundaries)), jnp.asarray(unwrap(queries))
    n = a.shape[0]
    body = _jaxpr.call_body(eqn)
    with jax.ensure_compile_time_eval():  # which side: where a query equal to a boundary goes
        order = [jnp.arange(n, dtype=aval(eqn.invars[2]).dtype)] if sorter else []
        zeros = jnp.zeros(a.shape, a.dtype), jnp.zeros(v.shape, v.dtype)
        probe = _jaxpr.evaluate(body, *zeros, *order)[0]
    right = n > 0 and bool(np.all(np.asarray(probe) == n))
    compare = _compare.less_equal if right else _compare.less
    below = compare(a, v[..., None], **self.compare_options())  # P(a_i below v), (..., n)
    if _computed_from(self, eqn.invars[0], eqn.invars[1]):
        # Boundaries computed from the queries (jnp.histogram's range, linspace(min(v), max(v))):
        # one equal to the smallest or largest query is that query, by construction, and
        # compares as in the program (at 1/2, whatever the softness, the minimum was half out).
        extreme = (a == jnp.min(v)) | (a == jnp.max(v))
        exact = (a <= v[..., None]) if right else (a < v[..., None])
        below = jnp.where(extreme & (a == v[..., None]), exact.astype(below.dtype), below)
    at_least = jnp.concatenate([jnp.ones_like(below[..., :1]), below], axis=-1)
    more = jnp.concatenate([below, jnp.zeros_like(below[..., :1])], axis=-1)
    out_dtype = aval(eqn.outvars[0]).dtype
    cands = np.broadcast_to(np.arange(n + 1, dtype=out_dtype), at_least.shape)
    self.record(eqn, f"sf.{compare.__name__} with each boundary: a distribution over the bins")
    return [Categorical(cands, at_least - more, hard_thunk(eqn, invals)(0))]


@call_rule("digitize")
def _digitize_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``jnp.digitize(x, bins)``: the search in ``bins`` or in their reverse, as jnp chooses by
    ``bins[-1] >= bins[0]``. That test is kept exact: it tells which way monotone bins run, a
    property of the bins rather than a decision, and relaxed it mixed both readings of learned
    bins close together (points 20 softness units from every edge counted half in the wrong
    bin)."""
    x, bins = invals
    n = aval(eqn.invars[1]).shape[0]
    body = _jaxpr.call_body(eqn)
    with jax.ensure_compile_time_eval():  # which side: where a value equal to a bin goes
        zeros = (jnp.zeros(aval(v).shape, aval(v).dtype) for v in eqn.invars)
        right = n > 0 and bool(np.all(np.asarray(_jaxpr.evaluate(body, *zeros)[0]) == n))
    side = "right" if right else "left"

    def searched(x, bins, increasing):
        up = jnp.searchsorted(bins, x, side=side)
        down = n - jnp.searchsorted(bins[::-1], x, side=side)
        return jnp.where(increasing, up, down).astype(aval(eqn.outvars[0]).dtype)

    exact_bins = jnp.asarray(unwrap(bins)) if not is_soft(bins) else None
    if exact_bins is None or n == 0:
        return self.default(eqn, invals)
    increasing = exact_bins[-1] >= exact_bins[0]
    self.record(eqn, "jnp.digitize: the direction of the bins kept exact")
    closed = jax.make_jaxpr(searched)(aval(eqn.invars[0]), aval(eqn.invars[1]), increasing)
    return self.run(closed.jaxpr, list(closed.consts), [x, bins, increasing])


def _computed_from(self: Interpreter, value, source, most: int = 256) -> bool:
    """Whether the program computed ``value`` from ``source`` (jaxpr variables), looking back
    through at most ``most`` of their producers."""
    stack, seen = [value], set()
    while stack and len(seen) < most:
        atom = stack.pop()
        if atom is source:
            return True
        if isinstance(atom, JaxprLiteral) or id(atom) in seen:
            continue
        seen.add(id(atom))
        if (producer := self.producers.get(atom)) is not None:
            stack.extend(producer.invars)
    return False


def _as_slices(self: Interpreter, eqn: JaxprEqn, invals: list, pieces) -> list:
    """``eqn`` evaluated as the slices (and squeezes) ``pieces(x)`` of its one operand, each
    through its rule, so that every element keeps what relax knows of it (its candidates after
    a relaxed ``floor``, its origin, its law)."""
    operand = aval(eqn.invars[0])
    closed = jax.make_jaxpr(pieces)(jax.ShapeDtypeStruct(operand.shape, operand.dtype))
    return self.run(closed.jaxpr, list(closed.consts), invals)


@rule("unstack")
def _unstack_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``a, b = x`` (jax >= 0.12 traces tuple unpacking as one ``unstack``)."""
    axis = _jaxpr.unstacked_axis(eqn)

    def pieces(x):
        return [
            jax.lax.squeeze(jax.lax.slice_in_dim(x, k, k + 1, axis=axis), (axis,))
            for k in range(x.shape[axis])
        ]

    return _as_slices(self, eqn, invals, pieces)


@rule("split")
def _split_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``jnp.split(x, ...)``."""
    sizes, axis = _jaxpr.split_sizes(eqn)
    starts = np.cumsum((0, *sizes))

    def pieces(x):
        return [
            jax.lax.slice_in_dim(x, int(a), int(b), axis=axis)
            for a, b in itertools.pairwise(starts)
        ]

    return _as_slices(self, eqn, invals, pieces)


@rule("lu")
def _lu_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """LU with partial pivoting (inside ``jnp.linalg.solve``, ``inv``, ``det``): its pivots are
    integers chosen by comparing magnitudes, but the functions it serves are continuous, and JAX
    differentiates them: run as it is, with exact pivots."""
    if any(is_soft(v) for v in invals):
        return self.default(eqn, invals)
    self.record(eqn, "LU with partial pivoting: kept exact (pivots chosen as the program does)")
    outs = _jaxpr.bind(eqn, [unwrap(v) for v in invals])
    return [
        Live(out) if floating(aval(var)) else out
        for out, var in zip(outs, eqn.outvars, strict=True)
    ]
