"""The interpreter of relaxed programs: it walks a jaxpr and applies a rule to each equation.

Rules live in the ``_rules_*`` modules, one per family, and register themselves in :data:`RULES`
with :func:`rule`. An equation without a rule is evaluated as it is when its inputs are exact or
:class:`~._values.Live` and it is continuous; on soft integers and truth values it acts on the
probabilities, on each candidate value, or on the expectation (see :meth:`Interpreter.generic`).
"""

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import DropVar, Jaxpr, JaxprEqn, Literal as JaxprLiteral

from .._checks import is_concrete
from .._kinds import Kind
from .._logic import TNorm
from .._modes import Mode, straight_through
from .._scope import SCOPE
from . import _jaxpr, _source, _views
from ._boundaries import MAX_STATES
from ._errors import RelaxError
from ._explain import RelaxedOp
from ._markers import EXACT_NAME
from ._values import (
    Categorical,
    Expected,
    Live,
    SoftBool,
    Thunk,
    aval,
    bernoulli,
    expectation,
    floatify,
    floating,
    is_live,
    is_soft,
    mean,
    merge,
    unwrap,
)

OnUnrelaxable = Literal["error", "stop_gradient"]
ON_UNRELAXABLE = ("error", "stop_gradient")


@dataclasses.dataclass(frozen=True)
class Options:
    softness: Any
    kind: Kind
    mode: Mode
    tnorm: TNorm
    max_steps: int | None
    on_unrelaxable: OnUnrelaxable = "error"
    debug: bool = False


Rule = Callable[["Interpreter", JaxprEqn, list], list]

#: The rule of each primitive, by name, filled by the ``_rules_*`` modules.
RULES: dict[str, Rule] = {}


#: Rules for jax.numpy functions recognised by the name of their ``jit`` (``searchsorted``), used
#: in place of the relaxation of what is inside them.
CALL_RULES: dict[str, Rule] = {}


def call_rule(name: str) -> Callable[[Rule], Rule]:
    """Register the decorated function as the rule of calls of the jitted function ``name``."""

    def register(fn: Rule) -> Rule:
        CALL_RULES[name] = fn
        return fn

    return register


def rule(*names: str) -> Callable[[Rule], Rule]:
    """Register the decorated function as the rule of the primitives ``names``."""

    def register(fn: Rule) -> Rule:
        for name in names:
            assert name not in RULES, f"two rules for {name}"
            RULES[name] = fn
        return fn

    return register


# Primitives acting element by element (with NumPy broadcasting of scalars in a jaxpr).
ELEMENTWISE = frozenset(
    {
        "add",
        "sub",
        "mul",
        "div",
        "rem",
        "neg",
        "abs",
        "sign",
        "max",
        "min",
        "pow",
        "integer_pow",
        "clamp",
        "select_n",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and",
        "or",
        "not",
        "xor",
        "shift_left",
        "shift_right_logical",
        "shift_right_arithmetic",
        "convert_element_type",
        "floor",
        "ceil",
        "round",
        "copy",
        "copy_p",
        "square",
    }
)
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
    }
)
# Discontinuous operations on floats with no soft rule (yet): an error rather than a zero gradient.
ADVICE = {
    "nextafter": "keep it outside the relaxed function",
    "reduce_precision": "keep it outside the relaxed function",
}
# Equations whose trailing operands are indices: the number of leading operands that are data.
_DATA_COUNT = {"dynamic_slice": 1, "gather": 1, "dynamic_update_slice": 2}


#: Why an integer is known only by its expected value, and how to keep it a distribution.
EXPECTED_WHY = (
    "an integer known only by its expected value (a count of relaxed truth values, or an "
    "integer carried through a relaxed loop whose range is not known at trace time or has more "
    "than {} values)"
)
EXPECTED_ADVICE = (
    "bound the integer where it is computed, jnp.clip(i, 0, K - 1) with K <= {}, so that relax "
    "carries it as a distribution over K values; or keep it exact with sf.exact on the "
    "condition it comes from"
)


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


class Interpreter:
    """Evaluates jaxprs with soft values; one per call of a relaxed function."""

    def __init__(self, options: Options):
        self.options = options
        self.records: dict[tuple[int, str, str], RelaxedOp] = {}
        self.enclosing: list[JaxprEqn] = []  # the equations whose inner jaxprs are being run
        self.analyses: dict[tuple, Any] = {}  # see analysed
        self.producers: dict[Any, JaxprEqn] = {}  # the equation that made each variable

    # -- bookkeeping -----------------------------------------------------------------------

    def record(self, eqn: JaxprEqn, rule: str) -> None:
        where = self.where(eqn)
        name = (_jaxpr.call_name(eqn) if _jaxpr.is_call(eqn) else None) or eqn.primitive.name
        self.records.setdefault((id(eqn), rule, where), RelaxedOp(name, where, rule))

    def analysed(self, eqn: JaxprEqn, invals: list, analyse: Callable[[], Any]) -> Any:
        """``analyse()`` (the abstract passes that find which parts of a loop become soft),
        computed once per loop and form of its inputs: a loop nested in another loop's body is
        traced again for every pass over the outer body, and would be analysed again each time.
        """
        key = (id(eqn), tuple(type(v).__name__ for v in invals))
        if key not in self.analyses:
            self.analyses[key] = analyse()
        return self.analyses[key]

    def where(self, eqn: JaxprEqn) -> str:
        return _source.where(eqn, self.enclosing)

    def unsupported(self, eqn: JaxprEqn, why: str, advice: str) -> RelaxError:
        return RelaxError(
            f"sf.relax cannot relax `{eqn.primitive.name}` at {self.where(eqn)}: {why}. "
            f"Instead: {advice}."
        )

    def with_mode(self, hard: jax.Array, soft: jax.Array) -> jax.Array:
        """The soft value, or in straight-through mode the exact one with the soft gradient."""
        if self.options.mode == "straight_through":
            return straight_through(hard, soft)
        return soft

    def checked_blend(self, eqn: JaxprEqn, blended, values: Sequence, taken) -> jax.Array:
        """``blended``; in debug mode, an error at run time where it is not finite although the
        branch the exact program takes (``taken``: a branch index per element) is: a NaN or inf
        of a branch that is not taken leaked into the relaxed value and its gradient."""
        if not self.options.debug:
            return blended
        chosen = jnp.choose(
            jnp.asarray(taken, jnp.int32),
            [jnp.broadcast_to(v, blended.shape) for v in values],
            mode="clip",
        )
        leak = jnp.any(~jnp.isfinite(blended) & jnp.isfinite(chosen))
        return eqx.error_if(
            blended,
            leak,
            f"sf.relax(debug=True): the relaxed `{eqn.primitive.name}` at {self.where(eqn)} blends "
            "a NaN or inf from a branch that the exact program does not take, so the relaxed "
            "value and its gradient are NaN or inf there. Keep the condition exact with "
            "sf.exact(...), or make the branch finite where it is not taken (compute "
            "jnp.sqrt(jnp.where(h > 0, h, 1.0)), not jnp.sqrt(h), under `if h > 0`).",
        )

    def compare_options(self) -> dict[str, Any]:
        o = self.options
        return {"softness": o.softness, "kind": o.kind, "mode": o.mode}

    # -- evaluation ------------------------------------------------------------------------

    def run(self, jaxpr: Jaxpr, consts: Sequence, args: Sequence) -> list:
        env: dict = {}

        def read(atom):
            return atom.val if isinstance(atom, JaxprLiteral) else env[atom]

        for var, value in zip(jaxpr.constvars, consts, strict=True):
            env[var] = value
        for var, value in zip(jaxpr.invars, args, strict=True):
            env[var] = value
        exact_only = self.exact_only(jaxpr)
        for eqn in jaxpr.eqns:
            invals = [read(atom) for atom in eqn.invars]
            if id(eqn) in exact_only:
                outs = self.exactly(eqn, invals)
            else:
                outs = self.equation(eqn, invals)
            for var, value in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, DropVar):
                    env[var] = value
                    self.producers[var] = eqn
        return [read(atom) for atom in jaxpr.outvars]

    def exact_only(self, jaxpr: Jaxpr) -> frozenset[int]:
        """The equations of ``jaxpr`` whose results are used only through :func:`softflow.exact`
        (directly or through other such equations): relax evaluates them exactly, as the
        program does, and never relaxes what is inside them."""
        key = ("exact_only", id(jaxpr))
        if key not in self.analyses:
            soft_needed = {v for v in jaxpr.outvars if not isinstance(v, JaxprLiteral)}
            exact = set()
            for eqn in reversed(jaxpr.eqns):
                if _jaxpr.is_call(eqn) and _jaxpr.call_name(eqn) == EXACT_NAME:
                    continue
                if any(v in soft_needed for v in eqn.outvars if not isinstance(v, DropVar)):
                    soft_needed.update(v for v in eqn.invars if not isinstance(v, JaxprLiteral))
                elif not eqn.effects:
                    exact.add(id(eqn))
            self.analyses[key] = (jaxpr, frozenset(exact))  # the jaxpr kept alive: ids stay valid
        return self.analyses[key][1]

    def exactly(self, eqn: JaxprEqn, invals: list) -> list:
        """``eqn`` evaluated as the program does, on the exact values behind its operands."""
        outs = _jaxpr.bind(eqn, [hard_of(v, lambda: self.where(eqn)) for v in invals])
        live = any(is_live(v) for v in invals)
        return [Live(out) if live else out for out in outs]

    def run_closed(self, closed: _jaxpr.Closed, args: Sequence) -> list:
        return self.run(closed.jaxpr, closed.consts, args)

    def equation(self, eqn: JaxprEqn, invals: list) -> list:
        if not any(is_live(v) for v in invals):
            return _jaxpr.bind(eqn, invals)
        if _jaxpr.in_name_scope(eqn, SCOPE):
            # softflow's own operation (sf.greater, sf.soft_where, ...) called inside fn: already
            # relaxed, evaluated as it is on the probabilities and expectations of soft inputs.
            outs = _jaxpr.bind(eqn, [mean(v) if is_soft(v) else unwrap(v) for v in invals])
            return [Live(out) for out in outs]
        found = RULES.get(eqn.primitive.name)
        if found is None:
            return self.default(eqn, invals)
        self.enclosing.append(eqn)
        try:
            return found(self, eqn, invals)
        finally:
            self.enclosing.pop()

    def default(self, eqn: JaxprEqn, invals: list) -> list:
        """Equations without a rule of their own: continuous ones as they are, else generic."""
        if any(is_soft(v) for v in invals):
            return self.generic(eqn, invals)
        name = eqn.primitive.name
        live_float = any(
            isinstance(v, Live) and floating(aval(atom))
            for v, atom in zip(invals, eqn.invars, strict=True)
        )
        if live_float and name in ADVICE:
            self.unrelaxable(
                eqn, "it is discontinuous in a floating-point input (no soft rule)", ADVICE[name]
            )
        elif live_float and not all(floating(aval(atom)) for atom in eqn.outvars):
            self.unrelaxable(
                eqn,
                "it turns a floating-point value that depends on the inputs into integers or "
                "truth values, and has no soft rule, so the gradient would silently stop here",
                "compute it outside the relaxed function, or write it with comparisons / "
                "softflow's array operations",
            )
        return _views.moved(eqn, invals, _jaxpr.bind(eqn, [unwrap(v) for v in invals]))

    def unrelaxable(self, eqn: JaxprEqn, why: str, advice: str) -> None:
        """A discontinuity without a soft rule: an error, or where the user accepted it
        (``on_unrelaxable="stop_gradient"``) a record that the gradient stops here."""
        if self.options.on_unrelaxable == "stop_gradient":
            self.record(eqn, "not relaxed: exact value, the gradient stops here")
            return
        raise self.unsupported(
            eqn,
            why,
            f"{advice}; or pass on_unrelaxable='stop_gradient' to sf.relax to keep it exact with "
            "no gradient through it (explain lists each such place)",
        )

    def generic(self, eqn: JaxprEqn, invals: list) -> list:
        """An equation on soft integers or booleans without a rule of its own."""
        name = eqn.primitive.name
        if any(isinstance(v, Expected) for v in invals):
            return self.on_expectations(eqn, invals)
        categoricals = [v for v in invals if isinstance(v, Categorical)]
        if not categoricals and name in STRUCTURAL:
            return self.on_probabilities(eqn, invals)
        scalar_source = all(c.probs.ndim == 1 for c in categoricals)
        if name in ELEMENTWISE or scalar_source:
            return self.per_candidate(eqn, invals)
        if name == "gather" and not any(is_soft(v) for v in invals[:1]):
            return self.gather_per_element(eqn, invals)
        if name in STRUCTURAL:
            return self.structural_categorical(eqn, invals)
        if name in LINEAR:
            return self.on_expectations(eqn, invals)
        raise self.unsupported(
            eqn,
            "its operand is a relaxed integer or truth value (a distribution over values) with "
            "no rule for this operation",
            "convert the truth value to a float first (x.astype(float)) or keep this value exact "
            "with sf.exact",
        )

    def on_probabilities(self, eqn: JaxprEqn, invals: list) -> list:
        """A structural equation on soft booleans: move their probabilities the same way."""
        probs = [v.p for v in invals if isinstance(v, SoftBool)]
        dtype = jnp.result_type(*probs)
        data = data_operands(eqn)
        args = [
            v.p
            if isinstance(v, SoftBool)
            else floatify(unwrap(v), dtype)
            if i < data
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
        if eqn.primitive.name not in LINEAR:
            raise self.unsupported(
                eqn,
                "its operand is an integer known only by its expected value (a count of soft "
                "truth values, or the counter of a relaxed loop), and the operation is not linear",
                "compute it on floats, or keep the integer exact with sf.exact on the condition "
                "it comes from",
            )
        dtype = jnp.result_type(*(mean(v) for v in invals if is_soft(v)))
        data = data_operands(eqn)
        args = []
        for i, v in enumerate(invals):
            if is_soft(v):
                if i >= data:
                    raise self.unsupported(
                        eqn,
                        "its index is " + EXPECTED_WHY.format(MAX_STATES),
                        EXPECTED_ADVICE.format(MAX_STATES),
                    )
                args.append(mean(v).astype(dtype))
            else:
                args.append(floatify(unwrap(v), dtype) if i < data else unwrap(v))
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
        probs, cands = merge(soft)
        cands_iter = iter(cands)
        args, in_axes = [], []
        for v in invals:
            if isinstance(v, SoftBool | Categorical):
                args.append(next(cands_iter))
                in_axes.append(-1)
            else:
                args.append(unwrap(v))
                in_axes.append(None)
        # Candidates known at trace time (the indices of an argmax, normalised by JAX's `i < 0`
        # select) are computed at trace time, so that later rules can see them.
        known = (
            contextlib.nullcontext() if not is_concrete(args) else jax.ensure_compile_time_eval()
        )
        with known:
            outs = jax.vmap(lambda *a: _jaxpr.bind(eqn, a), in_axes=in_axes, out_axes=-1)(*args)
            outs = [np.asarray(o) if is_concrete(o) else o for o in outs]
        hard = hard_thunk(eqn, invals)
        result = []
        for i, (value, atom) in enumerate(zip(outs, eqn.outvars, strict=True)):
            if floating(aval(atom)):
                result.append(Live(expectation(probs, value)))
            else:
                result.append(Categorical(value, probs, hard(i)))
        return result

    def gather_per_element(self, eqn: JaxprEqn, invals: list) -> list:
        """``x[indices]`` where each index has its own distribution (as after ``argsort``)."""
        operand, indices = invals
        probs = jnp.broadcast_to(indices.probs, indices.cands.shape)[..., 0, :]
        for d in sorted(_jaxpr.gather_offset_dims(eqn)):
            probs = jnp.expand_dims(probs, d)
        values = jax.vmap(lambda i: _jaxpr.bind(eqn, [unwrap(operand), i])[0], -1, -1)(
            indices.cands
        )
        self.record(eqn, "read at each candidate index (expectation)")
        if floating(aval(eqn.outvars[0])):
            return [Live(expectation(probs, values))]
        return [Categorical(values, probs, hard_thunk(eqn, invals)(0))]

    def structural_categorical(self, eqn: JaxprEqn, invals: list) -> list:
        """Move elements of per-element distributions: candidates and probabilities alike.

        An exact operand among the moved ones (a concatenated constant, a padding value) is a
        distribution with all its candidates equal, so any probabilities do for it.
        """
        soft = [
            bernoulli(v) if isinstance(v, SoftBool) else v
            for v in invals
            if isinstance(v, SoftBool | Categorical)
        ]
        probs, cands = merge(soft)
        k = probs.shape[-1]
        data = data_operands(eqn)
        cands_iter = iter(cands)
        cand_args, prob_args, in_axes = [], [], []
        for i, v in enumerate(invals):
            if isinstance(v, SoftBool | Categorical):
                c = next(cands_iter)
                cand_args.append(c)
                prob_args.append(jnp.broadcast_to(probs, c.shape))
                in_axes.append(-1)
            elif i < data:
                x = jnp.asarray(unwrap(v))
                shape = (*x.shape, k)
                cand_args.append(jnp.broadcast_to(x[..., None], shape))
                # The joint probabilities where a relaxed operand has the same shape (the pieces
                # of an index vector), so that each moved element keeps the outcome's
                # probability; any other probabilities would do for an exact element.
                same = [c for c in cands if c.shape == shape]
                prob_args.append(
                    jnp.broadcast_to(probs, shape) if same else jnp.full(shape, 1 / k, probs.dtype)
                )
                in_axes.append(-1)
            else:  # an index: the same for every candidate
                cand_args.append(unwrap(v))
                prob_args.append(unwrap(v))
                in_axes.append(None)

        def move(*args):
            return jax.vmap(lambda *a: _jaxpr.bind(eqn, a), in_axes=in_axes, out_axes=-1)(*args)

        hard = hard_thunk(eqn, invals)
        return [
            Categorical(value, p, hard(i))
            for i, (value, p) in enumerate(zip(move(*cand_args), move(*prob_args), strict=True))
        ]


def output(value) -> jax.Array:
    """A value returned by the relaxed function: soft integers and booleans as floats."""
    if not is_soft(value):
        return unwrap(value)
    return mean(value).astype(np.dtype(jnp.result_type(float)))
