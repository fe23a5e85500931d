"""Operations on relaxed integers and truth values that have no rule of their own.

A soft truth value is held as its probability, a relaxed integer as a distribution over candidate
values or as its expected value (see ``_values``). An equation on them without a rule is
evaluated on the probabilities (equations that only move elements), on each candidate (integer
operations, element by element), or on the expectations (linear operations); anything else is a
clear error. :class:`SoftIntegerOps` holds these evaluations; the interpreter inherits them.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn

from .._checks import is_concrete
from .._count import count_distribution, with_event
from . import _jaxpr, _trace_time, _views
from ._affine import affine_expected, moved_expected, unwrapped
from ._boundaries import MAX_STATES
from ._candidates import DENSE_READ, ELEMENTWISE, candidatewise, gathered_point, read_points
from ._errors import EXPECTED_ADVICE, EXPECTED_WHY, ExpectedIntegerError, RelaxError
from ._intervals import half_interval
from ._values import (
    Categorical,
    Expected,
    Live,
    Mixture,
    SoftBool,
    Thunk,
    aval,
    bernoulli,
    categorical_origin,
    distinct,
    expectation,
    floatify,
    floating,
    is_soft,
    mean,
    merge,
    mixed,
    unwrap,
)

_COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})

# Primitives that only move, copy or gather elements: they apply to a probability array as well.
STRUCTURAL = frozenset(
    {
        "broadcast_in_dim",
        "reshape",
        "squeeze",
        "expand_dims",
        "transpose",
        "slice",
        "rev",
        "concatenate",
        "stack",
        "copy",
        "copy_p",
        "dynamic_slice",
        "gather",
        "pad",
    }
)
# Operations on integers that commute with taking expectations (or are continuous in them).
LINEAR = STRUCTURAL | frozenset(
    {
        "add",
        "sub",
        "neg",
        "mul",
        "reduce_sum",
        "cumsum",
        "max",
        "min",
        "abs",
        "clamp",
        "reduce_max",
        "reduce_min",
        "dot_general",
        "convert_element_type",
        # Writes at exact indices select elements of the operand and the updates.
        "scatter",
        "scatter-add",
        "scatter_add",
        "dynamic_update_slice",
    }
)
# Operations of LINEAR that are linear in each operand alone: of two relaxed integers, the
# product of the expectations is not the expected product; nor is max, min, abs or clamp of an
# expectation that of the integer (the longest run so far, jnp.maximum(best, run): 0.97 for 2.15).
_PRODUCTS = frozenset({"mul", "dot_general"})
_KINKED = frozenset({"max", "min", "abs", "clamp"})
# Equations whose trailing operands are indices: the number of leading operands that are data.
_DATA_COUNT = {"dynamic_slice": 1, "gather": 1, "dynamic_update_slice": 2}


def at_trace_time(fn: Callable, *args) -> list:
    """``fn(*args)``, evaluated at trace time (as NumPy arrays) when every argument is known then:
    candidates known at trace time (the indices of an argmax, a rule table's entries) stay known,
    so that later rules, and loops, can see the values they range over."""
    if not is_concrete(args):
        return fn(*args)
    exact = _trace_time.evaluate(fn, args)
    if exact is not None:
        return exact
    with jax.ensure_compile_time_eval():
        return [np.asarray(o) for o in fn(*args)]


def data_operands(eqn: JaxprEqn) -> int:
    return _DATA_COUNT.get(eqn.primitive.name, len(eqn.invars))


def hard_of(value, where: Callable[[], str] | None = None) -> jax.Array:
    """The exact value behind ``value`` (a RelaxError if it was lost in a loop or branch)."""
    if not is_soft(value):
        return unwrap(value)
    if value.hard is None:
        at = f" at {where()}" if where is not None else ""
        raise RelaxError(
            f"sf.exact{at} cannot recover the exact value of its argument: it comes out of a "
            "relaxed loop or branch. Apply sf.exact to the condition where it is computed, "
            "inside the loop or branch."
        )
    return value.hard()


def hard_thunk(eqn: JaxprEqn, invals: Sequence) -> Callable[[int], Thunk]:
    """Thunks recomputing each output of ``eqn`` exactly from the exact inputs (evaluated once)."""

    @functools.cache
    def outputs():
        return _jaxpr.bind(eqn, [hard_of(v) for v in invals])

    return lambda i: lambda: outputs()[i]


# Jitted: eagerly, its loop over the events was traced and compiled anew at every call.
_law_of_count = jax.jit(functools.partial(count_distribution, axis=-1))


class SoftIntegerOps:
    """The evaluation of equations on relaxed integers and truth values without a rule."""

    precise_loops: bool
    running_counts: dict[int, tuple[Any, int, bool, Any]]

    def approximated(self, eqn: JaxprEqn, what: str) -> None:
        """Before an integer known only by its expected value is used where its expectation is
        an approximation (a comparison, a product of two relaxed values): in the first pass,
        ask for the precise analysis of the loops, which keeps a loop's counter a distribution
        (``n * n`` was ``E[n]**2``, ``n == 1`` a comparison of ``E[n]``)."""
        if not self.precise_loops:
            raise self.expected_integer(eqn, what)

    def record(self, eqn: JaxprEqn, rule: str) -> None:
        raise NotImplementedError

    def unsupported(self, eqn: JaxprEqn, why: str, advice: str) -> RelaxError:
        raise NotImplementedError

    def located(self, eqn: JaxprEqn) -> str:
        raise NotImplementedError

    def expected_integer(self, eqn: JaxprEqn, what: str) -> ExpectedIntegerError:
        """The error for an integer known only by its expected value used as ``what``."""
        return ExpectedIntegerError(
            f"sf.relax cannot relax `{eqn.primitive.name}` at {self.located(eqn)}: {what} is "
            f"{EXPECTED_WHY.format(MAX_STATES)}. Instead: {EXPECTED_ADVICE.format(MAX_STATES)}."
        )

    def generic(self, eqn: JaxprEqn, invals: list) -> list:
        """An equation on soft integers or booleans without a rule of its own."""
        name = eqn.primitive.name
        if any(isinstance(v, Expected) for v in invals):
            return self.on_expectations(eqn, invals)
        categoricals = [v for v in invals if isinstance(v, Categorical)]
        exact_scatter = name == "scatter" and not is_soft(invals[1])
        if not categoricals and (name in STRUCTURAL or exact_scatter):
            # (A scatter at exact indices moves truth values like any structural operation.)
            return self.on_probabilities(eqn, invals)
        sources = [bernoulli(v) if isinstance(v, SoftBool) else v for v in invals if is_soft(v)]
        scalar_source = all(c.probs.ndim == 1 for c in sources)
        if name in ELEMENTWISE or scalar_source:
            return self.per_candidate(eqn, invals)
        if name == "gather" and not isinstance(invals[0], Categorical | Expected):
            return self.gather_per_element(eqn, invals)
        if name in STRUCTURAL:
            return self.structural_categorical(eqn, invals)
        summed = invals[0]
        if (
            name == "reduce_sum"
            and isinstance(summed, Categorical)
            and countable(summed, _jaxpr.axes(eqn))
        ):
            return self.count(eqn, summed)
        if name == "cumsum" and isinstance(summed, Categorical) and _prefix_countable(eqn, summed):
            return self.prefix_counts(eqn, summed)
        if name in LINEAR:
            return self.on_expectations(eqn, invals)
        if name.startswith("scatter") and isinstance(invals[1], Categorical):
            raise self.unsupported(
                eqn,
                "its indices are relaxed integers (a distribution over positions): relax writes "
                "at relaxed indices with x.at[i].set (a blend) and x.at[i].add (expected sums, "
                "segment_sum) only",
                "accumulate with .at[i].add / jax.ops.segment_sum, or keep the indices exact: "
                "sf.exact(jnp.floor(x).astype(int)) (no gradient through the choice of index)",
            )
        raise self.unsupported(
            eqn,
            "its operand is a relaxed integer or truth value (a distribution over values) with "
            "no rule for this operation",
            "convert the truth value to a float first (x.astype(float)) or keep this value exact "
            "with sf.exact",
        )

    def count(self, eqn: JaxprEqn, value: Categorical) -> list:
        """The sum of relaxed 0/1 integers: the exact law of the number of ones (the elements
        are independent; see :func:`softflow.count_distribution`)."""
        axes = _jaxpr.axes(eqn)
        p = mean(value)  # the probability of a one, element by element
        kept = [d for d in range(p.ndim) if d not in axes]
        p = jnp.transpose(p, (*kept, *axes)).reshape((*(p.shape[d] for d in kept), -1))
        probs = _law_of_count(p)
        self.record(eqn, "sf.count_distribution (the exact law of a count of truth values)")
        dtype = aval(eqn.outvars[0]).dtype
        cands = np.broadcast_to(np.arange(probs.shape[-1], dtype=dtype), probs.shape)
        expected = unwrapped(p.sum(-1), dtype, probs.shape[-1] - 1)
        return [Categorical(cands, probs, hard_thunk(eqn, [value])(0), expected=expected)]

    def prefix_counts(self, eqn: JaxprEqn, value: Categorical) -> list:
        """The running sum of relaxed 0/1 integers (``cumsum``): at each position the exact law of
        the number of ones up to it, by the recursion of :func:`softflow.count_distribution`
        carried along the axis (the elements are independent)."""
        axis, reverse = _jaxpr.cumulative(eqn)
        p = jnp.moveaxis(mean(value), axis, 0)  # the probability of a one, element by element
        if reverse:
            p = p[::-1]
        n = p.shape[0]
        none = jnp.zeros((n + 1, *p.shape[1:]), p.dtype).at[0].set(1)

        def one_more(law, p_i):
            law = with_event(law, p_i)
            return law, law

        _, laws = jax.lax.scan(one_more, none, p)  # [position, count, ...]
        laws = jnp.moveaxis(laws, 1, -1)
        if reverse:
            laws = laws[::-1]
        probs = jnp.moveaxis(laws, 0, axis)
        self.running_counts[id(probs)] = (probs, axis, reverse, mean(value))
        self.record(eqn, "running sf.count_distribution (the exact law of each prefix count)")
        dtype = aval(eqn.outvars[0]).dtype
        cands = np.broadcast_to(np.arange(n + 1, dtype=dtype), probs.shape)
        expected = unwrapped(jax.lax.cumsum(mean(value), axis, reverse=reverse), dtype, n)
        return [Categorical(cands, probs, hard_thunk(eqn, [value])(0), expected=expected)]

    def on_probabilities(self, eqn: JaxprEqn, invals: list) -> list:
        """A structural equation on soft booleans: move their probabilities the same way."""
        probs = [v.p for v in invals if isinstance(v, SoftBool)]
        dtype = jnp.result_type(*probs)
        data = data_operands(eqn)
        # (A scatter's indices are its second operand, between the data.)
        index = 1 if eqn.primitive.name == "scatter" else None
        args = [
            v.p
            if isinstance(v, SoftBool)
            else floatify(unwrap(v), dtype)
            if i < data and i != index
            else unwrap(v)
            for i, v in enumerate(invals)
        ]
        hard = hard_thunk(eqn, invals)
        outs = _jaxpr.bind(eqn, args)
        return [
            SoftBool(out, hard(i)) if aval(atom).dtype == jnp.bool_ else Live(out)
            for i, (out, atom) in enumerate(zip(outs, eqn.outvars, strict=True))
        ]

    def on_expectations(self, eqn: JaxprEqn, invals: list) -> list:
        """A linear equation on expected integers: apply it to the expectations."""
        data = data_operands(eqn)
        # (A scatter's indices are its second operand, between the data.)
        indices = range(data, len(invals)) if not eqn.primitive.name.startswith("scatter") else [1]
        expected = [i for i, v in enumerate(invals) if isinstance(v, Expected)]
        if expected and all(i in indices for i in expected):
            raise self.expected_integer(eqn, "its index")
        if eqn.primitive.name not in LINEAR:
            self.approximated(eqn, "its operand")  # (a loop's counter may be a distribution)
            raise self.unsupported(
                eqn,
                "its operand is an integer known only by its expected value (a count of soft "
                "truth values, or the counter of a relaxed loop), and the operation is not linear",
                "compute it on floats, or keep the integer exact with sf.exact on the condition "
                "it comes from; positions found from a relaxed mask (jnp.nonzero, jnp.argwhere, "
                "jnp.unique with size=) cannot be relaxed: weigh the elements by the mask "
                "instead (jnp.where(mask, x, 0), sf.top_k)",
            )
        name = eqn.primitive.name
        if (name in _PRODUCTS and sum(is_soft(v) for v in invals) > 1) or name in _KINKED:
            self.approximated(eqn, "an operand")
        dtype = jnp.result_type(*(mean(v) for v in invals if is_soft(v)))
        args = []
        for i, v in enumerate(invals):
            is_data = i < data and i not in indices
            if is_soft(v):
                if not is_data:
                    raise self.expected_integer(eqn, "its index")
                args.append(mean(v).astype(dtype))
            else:
                args.append(floatify(unwrap(v), dtype) if is_data else unwrap(v))
        if eqn.primitive.name == "convert_element_type":
            target = _jaxpr.new_dtype(eqn)
            if target == jnp.bool_:
                raise self.unsupported(
                    eqn,
                    "a relaxed integer converted to bool",
                    "compare it explicitly (n != 0)",
                )
            if not jnp.issubdtype(target, jnp.floating):
                return [Expected(args[0], hard_thunk(eqn, invals)(0))]
            return [Live(args[0].astype(target))]
        if name in ("scatter-add", "scatter_add"):
            outs = [_jaxpr.scatter_add_on(eqn, *args)]
        else:
            outs = _jaxpr.bind(eqn, args, _jaxpr.with_result_dtype(eqn, dtype))
        hard = hard_thunk(eqn, invals)
        result = []
        for i, (value, atom) in enumerate(zip(outs, eqn.outvars, strict=True)):
            if floating(aval(atom)):
                result.append(Live(value.astype(aval(atom).dtype)))
            else:
                result.append(Expected(value, hard(i)))
        return result

    def per_candidate(self, eqn: JaxprEqn, invals: list) -> list:
        """Evaluate ``eqn`` on each candidate value of its relaxed operands."""
        soft = [
            bernoulli(v) if isinstance(v, SoftBool) else v
            for v in invals
            if isinstance(v, SoftBool | Categorical)
        ]
        probs, cands, factors = merge(soft)
        cands_iter = iter(cands)
        batched = [isinstance(v, SoftBool | Categorical) for v in invals]
        args = [next(cands_iter) if b else unwrap(v) for v, b in zip(invals, batched, strict=True)]
        outs = at_trace_time(lambda *a: candidatewise(eqn, a, batched), *args)
        name = eqn.primitive.name
        if name in _COMPARISONS and not _same_for_every_candidate(outs[0]):
            # (An index compared with 0 to wrap it is the same for every candidate: not listed.)
            self.record(eqn, "exact probability under the distribution of the relaxed integer")
        elif name in ("add", "sub") and len(soft) > 1:
            self.record(
                eqn, "exact distribution of the result, over the joint outcomes of its terms"
            )
        hard = hard_thunk(eqn, invals)
        live = any(isinstance(v, Live) for v in invals)
        bounds = None if is_concrete(outs) else _result_interval(name, invals)
        components = _views.index_components(eqn, invals, joint=True)
        known = affine_expected(eqn, invals)  # (then the law may go unused)
        if name == "gather" and not is_soft(invals[0]) and floating(aval(eqn.outvars[0])):
            known = self.dense_read(eqn, unwrap(invals[0]), invals[1])
        result = []
        for i, (value, atom) in enumerate(zip(outs, eqn.outvars, strict=True)):
            if known is not None and floating(aval(atom)):
                result.append(Live(known, mixture=Mixture(value, probs, factors, live)))
            elif floating(aval(atom)):
                result.append(mixed(probs, value, factors, live=live))
            else:
                rest = (factors, bounds, components, _views.mapped_origin(soft, probs), known)
                result.append(Categorical(value, probs, hard(i), *rest))
        return result

    def dense_read(self, eqn: JaxprEqn, source, indices) -> jax.Array | None:
        """A point gather's expectation summed over the table (see ``expected_point``), where
        the index vector's components are independent and the table is small; else None."""
        if not isinstance(indices, Categorical) or indices.components is None:
            return None
        if (value := gathered_point(eqn, source, indices.components)) is not None:
            self.record(eqn, DENSE_READ)
        return value

    def gather_per_element(self, eqn: JaxprEqn, invals: list) -> list:
        """``x[indices]`` where each index has its own distribution (as after ``argsort``)."""
        operand, indices = invals
        probs = jnp.broadcast_to(indices.probs, indices.cands.shape)[..., 0, :]
        for d in sorted(_jaxpr.gather_offset_dims(eqn)):
            probs = jnp.expand_dims(probs, d)
        # A soft truth value is read as its probability: the probability of the element read.
        source = operand.p if isinstance(operand, SoftBool) else unwrap(operand)
        (values,) = at_trace_time(lambda x, i: [read_points(eqn, x, i)], source, indices.cands)
        if not (isinstance(operand, SoftBool) or floating(aval(eqn.outvars[0]))):
            self.record(eqn, "read at each candidate index (expectation)")
            # A rule table's many entries of the same few values: merged at once (what a sum or
            # another read of them would do anyway), before they are moved or summed.
            return [distinct(Categorical(values, probs, hard_thunk(eqn, invals)(0)))]
        dense = self.dense_read(eqn, source, indices)
        if dense is None:
            self.record(eqn, "read at each candidate index (expectation)")
        # (Under jit, each candidate's values are made only where a comparison reads them.)
        value = expectation(probs, values) if dense is None else dense
        if isinstance(operand, SoftBool):
            return [SoftBool(value, hard_thunk(eqn, invals)(0))]
        return [Live(value, mixture=Mixture(values, probs, None, isinstance(operand, Live)))]

    def structural_categorical(self, eqn: JaxprEqn, invals: list) -> list:
        """Move elements of per-element distributions: candidates and probabilities alike.

        Relaxed operands of the same shape (the pieces of an index vector) move with their joint
        distribution, so that every element of an index keeps the probability of the outcome.
        Operands of different shapes (the pieces that ``jnp.roll`` concatenates) hold different
        elements: each keeps its own distribution, widened to a common number of candidates by
        candidates of probability 0. An exact operand among the moved ones (a concatenated
        constant, a padding value) is a distribution with all its candidates equal, all its
        probability on the first.
        """
        soft = [
            bernoulli(v) if isinstance(v, SoftBool) else v
            for v in invals
            if isinstance(v, SoftBool | Categorical)
        ]
        joint = len({c.cands.shape[:-1] for c in soft}) == 1
        probs = None
        if joint:
            probs, cands, _ = merge(soft)
            k = probs.shape[-1]
            pieces = [(c, jnp.broadcast_to(probs, c.shape)) for c in cands]
        else:
            k = max(c.cands.shape[-1] for c in soft)
            pieces = [_widened(c, k) for c in soft]
        # One dtype for the moved probabilities (a loop carries its integers' in the default
        # float, which x64 makes wider than an argmax's of float32 values).
        dtype = jnp.result_type(*(p for _, p in pieces))
        pieces = [(c, p.astype(dtype)) for c, p in pieces]
        data = data_operands(eqn)
        pieces_iter = iter(pieces)
        cand_args, prob_args, in_axes = [], [], []
        for i, v in enumerate(invals):
            if isinstance(v, SoftBool | Categorical):
                c, p = next(pieces_iter)
                cand_args.append(c)
                prob_args.append(p)
                in_axes.append(-1)
            elif i < data:
                x = unwrap(v)
                shape = (*np.shape(x), k)
                cand_args.append(_broadcast_candidates(x, shape))
                # The joint probabilities where a relaxed operand has the same shape (the pieces
                # of an index vector), so that each moved element keeps the outcome's
                # probability; else all on one candidate, so that its expectation is the exact
                # element (probabilities 1/k sum to 1 only up to rounding).
                same = joint and any(c.shape == shape for c, _ in pieces)
                prob_args.append(
                    jnp.broadcast_to(probs, shape)
                    if same and probs is not None
                    else jnp.broadcast_to((np.arange(k) == 0).astype(dtype), shape)
                )
                in_axes.append(-1)
            else:  # an index: the same for every candidate
                cand_args.append(unwrap(v))
                prob_args.append(unwrap(v))
                in_axes.append(None)

        batched = [axis is not None for axis in in_axes]

        def move(*args):
            return candidatewise(eqn, args, batched)

        hard = hard_thunk(eqn, invals)
        moved = list(zip(at_trace_time(move, *cand_args), move(*prob_args), strict=True))
        if (scalar := _one_scalar_outcome(soft, invals[:data]) if joint else None) is not None:
            moved = [(value, scalar) for value, _ in moved]  # (jnp.select's conditions on one)
        # The values are moved, not changed: those of every moved operand bound them.
        lows, highs = zip(*(half_interval(v) for v in invals[:data]), strict=True)
        bounds = (min(lows), max(highs))
        if is_concrete(moved[0][0]) or bounds == (-math.inf, math.inf):
            bounds = None
        components = _views.index_components(eqn, invals, joint=joint)
        origin = _views.categorical_view(eqn, soft, moved[0][0]) if len(invals) == 1 else None
        known = moved_expected(eqn, invals, data) or [None] * len(moved)
        return [
            Categorical(value, p, hard(i), None, bounds, components, origin, known[i])
            for i, (value, p) in enumerate(moved)
        ]


# The largest count whose law a relaxed sum gets (beyond: its expected value), and the most
# probabilities such laws may hold in all.
_MAX_COUNT = 4096
_MAX_COUNT_SIZE = 1 << 22


def _result_interval(name: str, invals: list) -> tuple[float, float] | None:
    """Static bounds of an integer operation's result from its operands' (interval
    arithmetic), for the operations that bound or shift a loop's integer state; a bound not
    known is infinite (``jnp.clip(r - w[i], 0, 5)`` of a traced ``w[i]`` is 0..5)."""
    if name == "clamp":
        found = (half_interval(invals[0])[0], half_interval(invals[2])[1])
    else:
        found = _operation_interval(
            name, [half_interval(v) for v in (invals[1:] if name == "select_n" else invals)]
        )
    return None if found is None or found == (-math.inf, math.inf) else found


def _operation_interval(name: str, found: list) -> tuple[float, float] | None:
    if name in ("convert_element_type", "copy", "copy_p"):
        return found[0]
    if name == "neg":
        return -found[0][1], -found[0][0]
    if name == "select_n":
        return min(f[0] for f in found), max(f[1] for f in found)
    if len(found) != 2:
        return None
    (a0, a1), (b0, b1) = found
    if name == "add":
        return a0 + b0, a1 + b1
    if name == "sub":
        return a0 - b1, a1 - b0
    if name == "mul":
        if not all(math.isfinite(b) for b in (a0, a1, b0, b1)):
            return None
        products = (a0 * b0, a0 * b1, a1 * b0, a1 * b1)
        return min(products), max(products)
    if name == "max":
        return max(a0, b0), max(a1, b1)
    if name == "min":
        return min(a0, b0), min(a1, b1)
    return None


def _same_for_every_candidate(value) -> bool:
    if not is_concrete(value):
        return False
    value = np.asarray(value)
    return bool(np.all(value == value[..., :1]))


def _prefix_countable(eqn: JaxprEqn, value: Categorical) -> bool:
    """Whether a running sum of ``value`` counts independent 0/1 integers, with laws small
    enough to keep at every position."""
    axis, _ = _jaxpr.cumulative(eqn)
    if not countable(value, (axis,)):
        return False
    n = value.cands.shape[axis]
    return math.prod(value.cands.shape[:-1]) * (n + 1) <= _MAX_COUNT_SIZE


def countable(value: Categorical, axes: tuple[int, ...]) -> bool:
    """Whether a sum of ``value`` along ``axes`` counts independent 0/1 integers."""
    if not is_concrete(value.cands):
        return False
    cands = np.asarray(value.cands)
    if not np.all((cands == 0) | (cands == 1)):
        return False
    shape = cands.shape[:-1]
    probs_shape = (1,) * (len(shape) + 1 - value.probs.ndim) + value.probs.shape
    # A distribution broadcast along a summed axis is one outcome repeated, not independent ones.
    if any(probs_shape[d] != shape[d] for d in axes):
        return False
    n = math.prod(shape[d] for d in axes)
    return n <= _MAX_COUNT and math.prod(shape) // max(n, 1) * (n + 1) <= _MAX_COUNT_SIZE


def _one_scalar_outcome(soft: list, data: list) -> jax.Array | None:
    """The distribution of the one scalar relaxed integer every relaxed operand views, if any."""
    origins = [categorical_origin(c) for c in soft]
    tokens = {id(o.token): o.token for o in origins if o is not None}
    shapes = {np.shape(unwrap(v)) if not is_soft(v) else np.shape(v.cands)[:-1] for v in data}
    if len(tokens) != 1 or len(shapes) != 1 or None in origins:
        return None
    (token,) = tokens.values()
    return token if isinstance(token, jax.Array) and token.ndim == 1 else None


def _broadcast_candidates(x, shape: tuple) -> jax.Array | np.ndarray:
    """An exact value as ``shape[-1]`` equal candidates (NumPy when known at trace time)."""
    if is_concrete(x):
        return np.broadcast_to(np.asarray(x)[..., None], shape)
    return jnp.broadcast_to(jnp.asarray(x)[..., None], shape)


def _widened(c: Categorical, k: int) -> tuple:
    """The candidates and probabilities of ``c``, widened to ``k`` candidates by repeating its
    first candidate with probability 0."""
    probs = jnp.broadcast_to(c.probs, c.cands.shape)
    extra = k - c.cands.shape[-1]
    if extra == 0:
        return c.cands, probs
    xp = np if is_concrete(c.cands) else jnp
    first = xp.repeat(xp.asarray(c.cands)[..., :1], extra, axis=-1)
    zeros = jnp.zeros((*probs.shape[:-1], extra), probs.dtype)
    return xp.concatenate([c.cands, first], axis=-1), jnp.concatenate([probs, zeros], axis=-1)
