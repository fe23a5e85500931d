"""Rules for comparisons, logic, conversions and sums of truth values."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn, Literal as JaxprLiteral

from .. import _compare, _logic
from .._checks import is_concrete
from . import _jaxpr, _views
from ._affine import HALF_INTEGER, integral_shift
from ._generic import countable, hard_thunk
from ._interpreter import Interpreter, rule
from ._own_bounds import SOFT_COMPARISONS, own_bound_comparison
from ._rules_arrays import integer_distribution
from ._rules_present import extreme_of_present
from ._rules_select import linked
from ._values import (
    Categorical,
    Expected,
    Live,
    Mixture,
    SoftBool,
    aval,
    exact_candidates,
    expectation,
    floating,
    is_soft,
    mean,
    merge,
    unwrap,
    varies,
)


def _compare_rule(soft_fn):
    def compare(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
        a, b = invals
        if floating(aval(eqn.invars[0])) and not any(varies(v) for v in invals):
            return self.default(eqn, invals)  # (piecewise constant: exact)
        if floating(aval(eqn.invars[0])):
            same = _views.same_elements(a, b)
            if same is not None and same.all():
                # Every element meets itself (x != x, x < x): the comparison does not change
                # when the element does, so it is exact; for each outcome of a mixture whose
                # outcomes are not the elements themselves (jnp.isnan of x masked with NaN).
                if a is b and a.mixture is not None and a.mixture.origin is None:
                    return [_itself_per_candidate(eqn, invals)]
                return [Live(_jaxpr.bind(eqn, [unwrap(a), unwrap(b)])[0])]
            if all(
                isinstance(v, Live) and v.mixture is not None and not v.mixture.live for v in invals
            ):
                # Both exact for each candidate (floor(x) >= floor(y)): over the joint outcomes.
                return self.per_candidate(eqn, [v.mixture.categorical() for v in invals])
            if (joined := _compare_joined(self, eqn, invals, soft_fn)) is not None:
                return joined
            mixed = _one_mixture(a, b)
            if mixed is not None:
                return _compare_per_candidate(self, eqn, invals, soft_fn, mixed)
            x, y = unwrap(a), unwrap(b)
            clipped = _clipped_side(eqn, invals)
            if clipped is not None:
                return [_compare_clipped(self, eqn, invals, soft_fn, clipped)]
            if (own := own_bound_comparison(self, eqn, invals)) is not None:
                return [own]
            shift = integral_shift(eqn.primitive.name, invals)  # (counts held as floats)
            p = soft_fn(x, y + shift if shift else y, **self.compare_options())
            if same is None and _order_statistic_pair(self, eqn):
                # x >= max(x): where the two are equal, the maximum is that element itself.
                same = x == y
            if same is not None:  # a buffer compared with itself: exact on its diagonal
                hard = _jaxpr.bind(eqn, [x, y])[0]
                p = jnp.where(same, hard.astype(p.dtype), p)
                self.record(eqn, f"sf.{soft_fn.__name__}, exact where an element meets itself")
            else:
                self.record(eqn, f"sf.{soft_fn.__name__}")
            truth = SoftBool(p, hard_thunk(eqn, invals)(0))
            # What it compares, for a select of one of the two by it (a clip: see _select_clamp).
            object.__setattr__(truth, "_compared", (eqn.primitive.name, a, b, eqn.invars))
            return [truth]
        if _truth_values(eqn, invals) and eqn.primitive.name in ("eq", "ne"):
            return _truth_value_equality(self, eqn, invals)
        if any(isinstance(v, Expected) for v in invals):
            self.approximated(eqn, "an operand")
            # Between integers, a > b is a > b + 1/2: the soft comparison decides at the
            # half-integer, so an expected count that is exactly an integer compares exactly
            # (E[q] = 0 is not "q > 0" with probability 1/2).
            shift = HALF_INTEGER.get(eqn.primitive.name, 0.0)
            if aval(eqn.invars[0]).dtype == jnp.bool_:
                shift = 0.0
            p = soft_fn(mean(a), mean(b) + shift, **self.compare_options())
            self.record(eqn, f"sf.{soft_fn.__name__} of expected values")
            return [SoftBool(p, hard_thunk(eqn, invals)(0))]
        return self.default(eqn, invals)

    return compare


# Operations that keep elements as they are; and those whose result is one of their operand's
# elements, chosen by the order of the values (equal to it exactly where it is that element).
_VIEWS = _views.RESHAPES | _views.COPIES
_ORDER_STATISTICS = frozenset(
    {"reduce_max", "reduce_min", "cummax", "cummin", "reduce_window_max", "reduce_window_min"}
)


def _order_statistic_pair(self: Interpreter, eqn: JaxprEqn) -> bool:
    """Whether one side of the comparison is an order statistic of the other (``x >= max(x)``,
    ``x >= lax.cummax(x)``, a peak test ``x >= reduce_window(x, -inf, max, ...)``), up to
    broadcasts and reshapes, or of a stack of arrays among which is the other
    (``jnp.max(jnp.stack([left, x, right]), axis=0)``)."""

    if any(isinstance(v, JaxprLiteral) for v in eqn.invars):
        return False

    def root(atom):
        while not isinstance(atom, JaxprLiteral) and (
            (producer := self.producers.get(atom)) is not None and producer.primitive.name in _VIEWS
        ):
            atom = producer.invars[0]
        return atom

    first, second = (root(v) for v in eqn.invars)
    for statistic, source in ((first, second), (second, first)):
        if isinstance(statistic, JaxprLiteral):
            continue
        producer = self.producers.get(statistic)
        if producer is None or producer.primitive.name not in _ORDER_STATISTICS:
            continue
        operand = root(producer.invars[0])
        stacked = self.producers.get(operand) if not isinstance(operand, JaxprLiteral) else None
        pieces = stacked.invars if stacked and stacked.primitive.name == "concatenate" else []
        if operand is source or any(root(piece) is source for piece in pieces):
            return True
    return False


_ORDERINGS = frozenset({"gt", "ge", "lt", "le"})


def _clipped_side(eqn: JaxprEqn, invals: list) -> int | None:
    """The position of the operand that is a value clipped by exact bounds (``jnp.clip``,
    ``jnp.minimum``), compared by order with an exact value."""
    if eqn.primitive.name not in _ORDERINGS:
        return None
    for at in (0, 1):
        value, other = invals[at], invals[1 - at]
        if isinstance(value, Live) and value.clamp is not None and not varies(other):
            return at
    return None


def _compare_clipped(self: Interpreter, eqn: JaxprEqn, invals: list, soft_fn, at: int) -> SoftBool:
    """An order comparison of ``clip(s, low, high)`` with an exact value: where it has the same
    answer at both bounds, that answer (exact, whatever ``s``); elsewhere the comparison of
    ``s`` itself, which it equals, since the comparison is a monotone step in the clipped value.
    The comparison of the clipped value would be 1/2 wherever the clip saturates on the
    threshold (``jnp.clip(z, 0, 1) >= 1`` for every ``z >= 1``), at every softness."""
    clamp = invals[at].clamp
    other = unwrap(invals[1 - at])
    dtype = aval(eqn.invars[at]).dtype

    def exact_at(bound, missing: float):
        value = jnp.asarray(missing if bound is None else bound, dtype)
        operands = [value, other] if at == 0 else [other, value]
        return _jaxpr.bind(eqn, operands)[0]

    at_low, at_high = exact_at(clamp.low, -np.inf), exact_at(clamp.high, np.inf)
    operands = [clamp.source, other] if at == 0 else [other, clamp.source]
    p = soft_fn(*operands, **self.compare_options())
    p = jnp.where(at_low == at_high, at_low.astype(p.dtype), p)
    self.record(eqn, f"sf.{soft_fn.__name__} of the unclipped value, exact where the clip decides")
    return SoftBool(p, hard_thunk(eqn, invals)(0))


def _one_mixture(a, b) -> int | None:
    """The position of the one operand that is a mixture over a relaxed integer's candidates."""
    mixed = [isinstance(v, Live) and v.mixture is not None for v in (a, b)]
    return mixed.index(True) if sum(mixed) == 1 else None


def _compare_joined(self: Interpreter, eqn: JaxprEqn, invals: list, soft_fn) -> list | None:
    """Both sides known for each outcome of the same relaxed integer (a tree's step
    ``x[feature[node]] <= threshold[node]``): the comparison of each outcome's values, weighed
    by its probability (the comparison of the two expectations would mix the nodes' features
    and thresholds, and be NaN where they hold inf and -inf); None for other comparisons."""
    if not all(isinstance(v, Live) and v.mixture is not None for v in invals):
        return None
    sides = [v.mixture.categorical() for v in invals]
    if not linked(*sides):
        return None
    probs, (x, y), factors = merge(sides)
    p = soft_fn(x, y, **self.compare_options())
    self.record(eqn, f"sf.{soft_fn.__name__} per outcome of the relaxed integer both sides use")
    given = Mixture(p, probs, factors, True)
    return [SoftBool(expectation(probs, p), hard_thunk(eqn, invals)(0), given)]


def _itself_per_candidate(eqn: JaxprEqn, invals: list) -> SoftBool:
    """A value with a mixture compared with itself: exact for each outcome."""
    mixture = invals[0].mixture
    p = _jaxpr.bind(eqn, [mixture.values, mixture.values])[0].astype(mixture.probs.dtype)
    given = Mixture(p, mixture.probs, mixture.factors, True)
    return SoftBool(expectation(mixture.probs, p), hard_thunk(eqn, invals)(0), given)


def _compare_per_candidate(self: Interpreter, eqn: JaxprEqn, invals: list, soft_fn, at: int):
    """A comparison with a float known for each candidate of a relaxed integer (``x > t[i]``):
    exact per candidate where both sides are exact, else the soft comparison per candidate; the
    probability is over the candidates."""
    mixture = invals[at].mixture
    other = invals[1 - at]
    if not mixture.live and not isinstance(other, Live):
        operands = list(invals)
        operands[at] = mixture.categorical()
        return self.per_candidate(eqn, operands)
    sides = [mixture.values, jnp.expand_dims(jnp.asarray(unwrap(other)), -1)]
    x, y = sides if at == 0 else sides[::-1]
    p = soft_fn(x, y, **self.compare_options())
    self.record(eqn, f"sf.{soft_fn.__name__} for each candidate of a relaxed integer")
    source = _views.origin(other) if isinstance(other, Live) else None
    if mixture.origin is not None and source is not None and source.token is mixture.origin.token:
        # A candidate that is the compared element itself, its value unchanged (the order
        # statistic that jnp.quantile blends with weights 1 and 0): exact (x < x is False).
        same = np.expand_dims(source.index, -1) == mixture.origin.index
        if same.any():
            hard = _jaxpr.bind(eqn, list(jnp.broadcast_arrays(x, y)))[0]
            p = jnp.where(same & (x == y), hard.astype(p.dtype), p)
    given = Mixture(p, mixture.probs, mixture.factors, True)
    return [SoftBool(expectation(mixture.probs, p), hard_thunk(eqn, invals)(0), given)]


for _name, _fn in SOFT_COMPARISONS.items():
    rule(_name)(_compare_rule(_fn))


def _truth_values(eqn: JaxprEqn, invals: list) -> bool:
    """Whether ``eqn`` acts on truth values of which one at least is relaxed."""
    return (
        aval(eqn.invars[0]).dtype == jnp.bool_
        and any(isinstance(v, SoftBool) for v in invals)
        and not any(isinstance(v, Categorical | Expected) for v in invals)
    )


def _truth_value_equality(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``a != b`` on truth values is ``a ^ b``, and ``a == b`` its negation (as truth values
    they are not integers: ``jnp.any(new != old)``, a fixed-point loop's test, is an ``any``)."""
    name = eqn.primitive.name
    if invals[0] is invals[1]:
        self.record(eqn, f"{name} of a truth value with itself")
        return [Live(jnp.full(aval(eqn.outvars[0]).shape, name == "eq"))]
    probs = _probabilities(invals)
    p = _logic.logical_xor(*probs, tnorm=self.options.tnorm)
    if name == "eq":
        p = _logic.logical_not(p)
    self.record(eqn, f"sf.logical_xor{' negated' if name == 'eq' else ''} of truth values")
    return [SoftBool(p, hard_thunk(eqn, invals)(0))]


def _probabilities(invals: list) -> list:
    """The probabilities of truth values, relaxed or exact, in one dtype."""
    dtype = jnp.result_type(*(v.p for v in invals if isinstance(v, SoftBool)))
    return [
        v.p if isinstance(v, SoftBool) else jnp.asarray(unwrap(v)).astype(dtype) for v in invals
    ]


_CONNECTIVES = {
    "and": _logic.logical_and,
    "or": _logic.logical_or,
    "xor": _logic.logical_xor,
}


@rule("and", "or", "xor", "not")
def _logic_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    name = eqn.primitive.name
    boolean = aval(eqn.outvars[0]).dtype == jnp.bool_
    if (
        not boolean
        or any(isinstance(v, Categorical | Expected) for v in invals)
        or not any(isinstance(v, SoftBool) for v in invals)
    ):
        return self.default(eqn, invals)
    probs = _probabilities(invals)
    hard = hard_thunk(eqn, invals)(0)
    if name == "not":
        self.record(eqn, "sf.logical_not")
        return [SoftBool(_logic.logical_not(probs[0]), hard)]
    if invals[0] is invals[1]:
        # One event with itself (the same comparison, written twice): c & c and c | c are c,
        # c ^ c is false, whatever the t-norm (which takes its operands as independent).
        self.record(eqn, f"logical_{name} of a truth value with itself")
        if name == "xor":
            return [Live(jnp.zeros(jnp.shape(probs[0]), bool))]
        return [invals[0]]
    self.record(eqn, f"sf.logical_{name} (tnorm={self.options.tnorm!r})")
    return [SoftBool(_CONNECTIVES[name](*probs, tnorm=self.options.tnorm), hard)]


@rule("reduce_or", "reduce_and", "reduce_max", "reduce_min")
def _reduce_logic_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``any`` / ``all`` of truth values; ``max`` / ``min`` of truth values are the same (the
    largest probability is not the probability that one is true)."""
    (value,) = invals
    if (present := extreme_of_present(self, eqn, value)) is not None:
        return present
    boolean = aval(eqn.invars[0]).dtype == jnp.bool_
    if boolean and isinstance(value, Categorical) and jnp.ndim(value.probs) > 1:
        # Truth values with a law per element (comparisons of relaxed integers, g >= 4 on a
        # board of them): each its probability, the elements independent, as in a count.
        value = SoftBool(mean(value), value.hard)
    if not isinstance(value, SoftBool) or not boolean:
        return self.default(eqn, invals)
    fn = _logic.any if eqn.primitive.name in ("reduce_or", "reduce_max") else _logic.all
    self.record(eqn, f"sf.{fn.__name__} (tnorm={self.options.tnorm!r})")
    p = fn(value.p, axis=_jaxpr.axes(eqn), tnorm=self.options.tnorm)
    return [SoftBool(p, hard_thunk(eqn, invals)(0))]


@rule("is_finite")
def _exactly_decidable_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``isfinite``: a property of the value with a zero derivative wherever it is defined, so it
    stays exact (a soft version would have no gradient to give)."""
    if any(is_soft(v) for v in invals):
        return self.default(eqn, invals)
    return [Live(out) for out in _jaxpr.bind(eqn, [unwrap(v) for v in invals])]


@rule("convert_element_type")
def _convert_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    (value,) = invals
    target = _jaxpr.new_dtype(eqn)
    if isinstance(value, SoftBool):
        if jnp.issubdtype(target, jnp.inexact):  # (floating or complex)
            self.record(eqn, "truth value as its probability")
            p = value.p.astype(target)
            if not jnp.issubdtype(target, jnp.floating):
                return [Live(p)]
            # 0 or 1 with these probabilities: a comparison or a count of it acts on each.
            outcomes = np.broadcast_to(np.array([0, 1], target), (*p.shape, 2))
            mixture = Mixture(outcomes, jnp.stack([1 - p, p], -1), None, False)
            return [Live(p, mixture=mixture, integral=True)]
        if target == jnp.bool_:
            return [value]
        outs = self.per_candidate(eqn, invals)
        if "_compared" in value.__dict__:  # (the index of a lax.cond: see select_clamp)
            object.__setattr__(outs[0], "_compared", value.__dict__["_compared"])
        return outs
    source = aval(eqn.invars[0]).dtype
    if isinstance(value, Categorical) and source == jnp.bool_ and not is_concrete(value.cands):
        # A truth value whose joint outcomes are not known at trace time (a comparison of two
        # rounded inputs under jit): as an integer, 0 or 1 with its probability, so that a count
        # of them keeps its exact law (as on concrete values, where the outcomes are 0 and 1).
        truth = SoftBool(mean(value), value.hard)
        outs = self.per_candidate(eqn, [truth])
        object.__setattr__(outs[0], "_joint", value)  # (for a branch index: see _cond_rule)
        return outs
    if isinstance(value, Categorical | Expected):
        return self.generic(eqn, invals)
    # (Only a float to an integer or a truth value is a staircase; to a complex, it is exact.)
    if not jnp.issubdtype(source, jnp.floating):
        (out,) = _jaxpr.bind(eqn, [unwrap(value)])
        return [Live(out, discrete=not varies(value))]
    if jnp.issubdtype(target, jnp.inexact):  # the same elements (origins, mixtures kept)
        return self.default(eqn, invals)
    if not varies(value):  # (piecewise constant: exact)
        return self.default(eqn, invals)
    # (A staircase's own integer conversion is below.)
    exact_table = isinstance(value, Live) and value.staircase is None
    if exact_table and value.mixture is not None and not value.mixture.live:
        # An exact table read at a relaxed index (a jump target): convert each candidate.
        return self.per_candidate(eqn, [value.mixture.categorical()])
    x = unwrap(value)
    if target == jnp.bool_:
        self.record(eqn, "sf.not_equal(x, 0)")
        p = _compare.not_equal(x, jnp.zeros((), x.dtype), **self.compare_options())
        return [SoftBool(p, hard_thunk(eqn, invals)(0))]
    return [integer_distribution(self, eqn, value)]


@rule("reduce_sum")
def _reduce_sum_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """A sum of truth values used as floats (``jax.nn.one_hot(i, k).sum(0)``): the expected
    count, as the program computes it, remembering the count's exact law for a comparison
    (``counts > 0``), as a sum of them as integers has it."""
    outs = self.default(eqn, invals)
    truths = exact_candidates(invals[0])
    if truths is None or not countable(truths, _jaxpr.axes(eqn)):
        return outs
    law = self.count(eqn, truths)[0]
    return [dataclasses.replace(outs[0], mixture=Mixture(law.cands, law.probs, None, False))]


@rule("cumprod", "cummin", "cummax")
def _running_truth_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """A running product or minimum of independent 0/1 integers (``jnp.cumprod(x > t)``: whether
    every one so far is 1), or their running maximum (whether any is): at each position the
    product of the probabilities (of the zeros, for the maximum), exact in the hard limit."""
    (value,) = invals
    axis, reverse = _jaxpr.cumulative(eqn)
    if not (isinstance(value, Categorical) and countable(value, (axis,))):
        return self.default(eqn, invals)
    any_one = eqn.primitive.name == "cummax"
    p = mean(value)  # the probability of a one, element by element
    running = jax.lax.cumprod(1 - p if any_one else p, axis, reverse=reverse)
    one = 1 - running if any_one else running
    self.record(eqn, f"running {'or' if any_one else 'and'} of independent truth values")
    cands = np.broadcast_to(np.array([0, 1], aval(eqn.outvars[0]).dtype), (*one.shape, 2))
    return [Categorical(cands, jnp.stack([1 - one, one], -1), hard_thunk(eqn, invals)(0))]
