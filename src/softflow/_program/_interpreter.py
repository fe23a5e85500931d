"""The interpreter of relaxed programs: it walks a jaxpr and applies a rule to each equation.

Rules live in the ``_rules_*`` modules, one per family, and register themselves in :data:`RULES`
with :func:`rule`. An equation without a rule is evaluated as it is when its inputs are exact or
:class:`~._values.Live` and it is continuous; on soft integers and truth values it acts on the
probabilities, on each candidate value, or on the expectation (see :meth:`Interpreter.generic`).
"""

import dataclasses
import math
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
from ._affine import with_integral
from ._errors import RelaxError, TooManyOutcomes
from ._explain import RelaxedOp
from ._generic import SoftIntegerOps, hard_of
from ._markers import EXACT_NAME
from ._mixtures import with_mixture
from ._own_bounds import with_bound
from ._values import (
    Clamp,
    Live,
    aval,
    floating,
    is_live,
    is_soft,
    mean,
    unwrap,
    varies,
)

OnUnrelaxable = Literal["error", "stop_gradient"]
# Operations that move each element of their one operand to one place of the result.
_REARRANGEMENTS = frozenset({"reshape", "transpose", "squeeze", "expand_dims"})
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


# Discontinuous operations on floats with no soft rule (yet): an error rather than a zero gradient.
ADVICE = {
    "nextafter": "keep it outside the relaxed function",
    "reduce_precision": "keep it outside the relaxed function",
    "bitcast_convert_type": "keep the bits outside the relaxed function (jnp.signbit: x < 0), or "
    "smooth the exact program with sf.smooth (it only evaluates it)",
}

_FOLD_SIZE = 1 << 12  # the most elements of an integer result computed at trace time


# Operations that only read or move elements (or convert them exactly, as a float table entry
# to the integer it holds): their float results can be computed at trace time bit for bit.
_EXACT_MOVES = frozenset(
    {
        "dynamic_slice",
        "gather",
        "slice",
        "squeeze",
        "reshape",
        "broadcast_in_dim",
        "expand_dims",
        "concatenate",
        "convert_element_type",
    }
)


# Elementwise operations that IEEE arithmetic rounds exactly, as XLA's constant folding computes
# them: their small float results from values known at trace time are the program's, bit for bit
# (a quantile's position, q * (n - 1) and its floor, from which the element read is known).
_EXACT_ARITHMETIC = frozenset(
    {"add", "sub", "mul", "div", "neg", "abs", "floor", "ceil", "max", "min", "clamp", "sign"}
)


def _foldable(eqn: JaxprEqn, invals: list) -> bool:
    """Whether ``eqn`` computes small integers or booleans, or reads or computes exactly small
    float entries, from values known at trace time."""
    exact = eqn.primitive.name in _EXACT_MOVES or eqn.primitive.name in _EXACT_ARITHMETIC

    def small_result(v) -> bool:
        return (exact or not floating(aval(v))) and np.prod(aval(v).shape, dtype=int) <= _FOLD_SIZE

    return (
        not eqn.effects
        and not _jaxpr.is_call(eqn)
        and all(small_result(v) for v in eqn.outvars)
        and not any(jnp.issubdtype(aval(v).dtype, jax.dtypes.extended) for v in eqn.outvars)
        and is_concrete(invals)
    )


class Interpreter(SoftIntegerOps):
    """Evaluates jaxprs with soft values; one per call of a relaxed function."""

    def __init__(self, options: Options, *, precise_loops: bool = False):
        self.options = options
        # Whether the loops' integers are bounded by their trip counts and the integers they
        # change at every step promoted to distributions (see _boundaries._escalated): costlier,
        # so only in a second pass, when the first used an expected integer as an index.
        self.precise_loops = precise_loops
        self.records: dict[tuple[int, str, str], RelaxedOp] = {}
        self.enclosing: list[JaxprEqn] = []  # the equations whose inner jaxprs are being run
        self.analyses: dict[tuple, Any] = {}  # see analysed
        self.producers: dict[Any, JaxprEqn] = {}  # the equation that made each variable
        self.read_vars: set = set()  # the variables some equation or output reads
        # Comparisons already relaxed in the jaxpr being run, by operands: the same comparison
        # of the same values, written twice (jnp.where(x > 0, a, b) and jnp.where(x > 0, c, d)),
        # is one event, as in the exact program (their operands are kept, so that their ids
        # stay theirs). One scope per run of a jaxpr, which is in one trace.
        self.events: dict[tuple, tuple[list, list]] = {}
        # Inputs of a jaxpr known at trace time (a literal passed into a nested jit, as jnp.where
        # passes jnp.inf): what an equation's operand was made from, across calls.
        self.known_inputs: dict[Any, Any] = {}
        # Running counts made by cumsum, by id of their probs: (probs, axis, reverse, P(one)).
        self.running_counts: dict[int, tuple[Any, int, bool, Any]] = {}
        # Values masked by a sentinel with a relaxed probability, by id: (value, x, q, sentinel).
        self.presences: dict[int, tuple[Any, Any, Any, float]] = {}

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
        # (A library function called under jit, jnp.searchsorted, by its own name.)
        name = (_jaxpr.call_name(eqn) if _jaxpr.is_call(eqn) else None) or eqn.primitive.name
        return RelaxError(
            f"sf.relax cannot relax `{name}` at {self.located(eqn)}: {why}. Instead: {advice}."
        )

    def located(self, eqn: JaxprEqn) -> str:
        """The user's line, and the jax.numpy function called there when ``eqn`` is inside it
        (``jnp.nonzero``'s division), for messages."""
        calls = [
            e
            for e in self.enclosing
            if _jaxpr.is_call(e) or e.primitive.name == "call_hi_primitive"  # (jnp.nonzero)
        ]
        called = _jaxpr.called_function((calls or [eqn])[0])
        name = (_jaxpr.call_name(eqn) if _jaxpr.is_call(eqn) else None) or eqn.primitive.name
        inside = called and not called.endswith(f".{name}")
        return f"{self.where(eqn)}, inside {called}" if inside else self.where(eqn)

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
        for var, value in zip(jaxpr.constvars, consts, strict=True):
            env[var] = value
        for var, value in zip(jaxpr.invars, args, strict=True):
            env[var] = value
            if not isinstance(value, Live) and not is_soft(value) and is_concrete(value):
                self.known_inputs[var] = value
            else:  # (a loop body runs again with other inputs)
                self.known_inputs.pop(var, None)
        exact_only, unused = self.exact_only(jaxpr)
        outer_events, self.events = self.events, {}
        try:
            return self._run_equations(jaxpr, env, exact_only, unused)
        finally:
            self.events = outer_events

    def _run_equations(self, jaxpr: Jaxpr, env: dict, exact_only, unused) -> list:
        def read(atom):
            return atom.val if isinstance(atom, JaxprLiteral) else env[atom]

        if ("read", id(jaxpr)) not in self.analyses:  # once per jaxpr, not per pass of a loop
            self.analyses[("read", id(jaxpr))] = jaxpr
            atoms = [*(v for e in jaxpr.eqns for v in e.invars), *jaxpr.outvars]
            self.read_vars.update(v for v in atoms if not isinstance(v, JaxprLiteral))
        for eqn in jaxpr.eqns:
            if id(eqn) in unused:
                continue  # dead code (a converted loop's value that nothing reads)
            invals = [read(atom) for atom in eqn.invars]
            if id(eqn) in exact_only:
                outs = self.exactly(eqn, invals)
            else:
                try:
                    outs = self.equation(eqn, invals)
                except TooManyOutcomes as error:
                    raise self.unsupported(
                        eqn,
                        f"its relaxed integers together have {error.outcomes} joint outcomes, "
                        f"more than the {error.most} relax weighs (each a distribution over "
                        "values that depend on one another through the program)",
                        "keep some of them exact with sf.exact (the condition or index they come "
                        "from), or compute the values as floats",
                    ) from None
            if eqn.primitive.name in _REARRANGEMENTS and outs and isinstance(outs[0], Live):
                self._rearranged_presence(eqn, invals[0], outs[0])
            for var, value in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, DropVar):
                    env[var] = value
                    self.producers[var] = eqn
        return [read(atom) for atom in jaxpr.outvars]

    def _rearranged_presence(self, eqn: JaxprEqn, before, after: Live) -> None:
        """A masked value (see ``presences``) reshaped or transposed is still masked, element
        by element (``jnp.argmax`` of a matrix reads it flattened)."""
        present = self.presences.get(id(raw := unwrap(before)))
        if present is not None and present[0] is raw:
            x, q = (_jaxpr.bind(eqn, [v])[0] for v in present[1:3])
            self.presences[id(after.value)] = (after.value, x, q, present[3])

    def unread(self, var) -> bool:
        """Whether nothing reads ``var``, a result of an equation being evaluated (jax >= 0.12
        no longer makes such results a ``DropVar``)."""
        return isinstance(var, DropVar) or var not in self.read_vars

    def exact_only(self, jaxpr: Jaxpr) -> tuple[frozenset[int], frozenset[int]]:
        """The equations of ``jaxpr`` whose results are used only through :func:`softflow.exact`
        or ``stop_gradient`` (directly or through other such equations): relax evaluates them
        exactly, as the program does, and never relaxes what is inside them. (No gradient
        flows through ``stop_gradient``, so relaxing below it would only change the value: a
        hand-written straight-through ``x + stop_gradient(round(x) - x)`` keeps its exact
        forward.) And the equations whose results nothing reads, which are not evaluated."""
        key = ("exact_only", id(jaxpr))
        if key not in self.analyses:
            soft_needed = {v for v in jaxpr.outvars if not isinstance(v, JaxprLiteral)}
            exact_needed: set = set()
            exact, unused = set(), set()
            for eqn in reversed(jaxpr.eqns):
                outs = [v for v in eqn.outvars if not isinstance(v, DropVar)]
                ins = [v for v in eqn.invars if not isinstance(v, JaxprLiteral)]
                if eqn.effects or any(v in soft_needed for v in outs):
                    marker = eqn.primitive.name == "stop_gradient" or (
                        _jaxpr.is_call(eqn) and _jaxpr.call_name(eqn) == EXACT_NAME
                    )
                    (exact_needed if marker else soft_needed).update(ins)
                elif any(v in exact_needed for v in outs):
                    exact.add(id(eqn))
                    exact_needed.update(ins)
                else:
                    unused.add(id(eqn))
            # The jaxpr is kept alive, so that the ids stay valid.
            self.analyses[key] = (jaxpr, frozenset(exact), frozenset(unused))
        return self.analyses[key][1], self.analyses[key][2]

    def exactly(self, eqn: JaxprEqn, invals: list) -> list:
        """``eqn`` evaluated as the program does, on the exact values behind its operands."""
        outs = _jaxpr.bind(eqn, [hard_of(v, lambda: self.where(eqn)) for v in invals])
        live = any(is_live(v) for v in invals)
        return [Live(out) if live else out for out in outs]

    def run_closed(self, closed: _jaxpr.Closed, args: Sequence) -> list:
        return self.run(closed.jaxpr, closed.consts, args)

    def equation(self, eqn: JaxprEqn, invals: list) -> list:
        if not any(is_live(v) for v in invals):
            if _foldable(eqn, invals):
                # Small integers known at trace time stay known (a loop's mode, n + 1 of a
                # counter), so that relaxed integers made from them keep a static range.
                with jax.ensure_compile_time_eval():
                    outs = _jaxpr.bind(eqn, invals)
                # (A weakly typed float stays a JAX array: as a NumPy one it would lose its
                # weak type.)
                return [
                    out if aval(v).weak_type and floating(aval(v)) else np.asarray(out)
                    for out, v in zip(outs, eqn.outvars, strict=True)
                ]
            if _jaxpr.is_call(eqn) and is_concrete(invals):
                # A nested jit of values known at trace time (jnp.where, jnp.clip): run its body,
                # so that its small integer results stay known too (bound, it would be traced).
                return self.run_closed(_jaxpr.call_body(eqn), invals)
            return _jaxpr.bind(eqn, invals)
        if _jaxpr.in_name_scope(eqn, SCOPE):
            # softflow's own operation (sf.greater, sf.soft_where, ...) called inside fn: already
            # relaxed, evaluated as it is on the probabilities and expectations of soft inputs.
            outs = _jaxpr.bind(eqn, [mean(v) if is_soft(v) else unwrap(v) for v in invals])
            return [Live(out) for out in outs]
        found = RULES.get(eqn.primitive.name)
        if found is None:
            return self.default(eqn, invals)
        event = None
        if eqn.primitive.name in _COMPARISONS:
            operands = zip(eqn.invars, invals, strict=True)
            event = (eqn.primitive.name, *(_operand_key(a, v) for a, v in operands))
            if event in self.events:
                self.record(eqn, "the same event as the same comparison before it")
                return self.events[event][0]
        self.enclosing.append(eqn)
        try:
            outs = found(self, eqn, invals)
        finally:
            self.enclosing.pop()
        if event is not None:
            self.events[event] = (outs, invals)
        return outs

    def default(self, eqn: JaxprEqn, invals: list) -> list:
        """Equations without a rule of their own: continuous ones as they are, else generic."""
        if any(is_soft(v) for v in invals):
            return self.generic(eqn, invals)
        name = eqn.primitive.name
        live_float = any(
            isinstance(v, Live) and floating(aval(atom)) and varies(v)
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
                "compute it outside the relaxed function, write it with comparisons / "
                "softflow's array operations, or smooth the exact program with sf.smooth",
            )
        outs = _views.moved(eqn, invals, _jaxpr.bind(eqn, [unwrap(v) for v in invals]))
        if any(is_live(v) for v in invals) and not any(varies(v) for v in invals):
            # (Made from integers or truth values only: piecewise constant too.)
            outs = [
                dataclasses.replace(o, discrete=True) if isinstance(o, Live) else o for o in outs
            ]
        outs = with_mixture(self.events, eqn, invals, _with_staircase(eqn, invals, outs))
        return with_integral(eqn, invals, with_bound(eqn, invals, _with_clamp(eqn, invals, outs)))

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


# Exact elementwise maps that keep a relaxed staircase a distribution over integers when its
# other operands are exact (clipping, shifting, scaling a rounded value).
_STAIRCASE_MAPS = frozenset({"clamp", "max", "min", "add", "sub", "mul", "neg", "abs"})


def _with_staircase(eqn: JaxprEqn, invals: list, outs: list) -> list:
    """``outs`` with the staircase of the one live operand carried on, pushed through ``eqn``."""
    if eqn.primitive.name not in _STAIRCASE_MAPS or len(outs) != 1:
        return outs
    live = [i for i, v in enumerate(invals) if varies(v)]
    if len(live) != 1 or not isinstance(invals[live[0]], Live):
        return outs
    position = live[0]
    staircase = invals[position].staircase
    if staircase is None or aval(eqn.outvars[0]).shape != np.shape(staircase.exact):
        return outs
    constants = [unwrap(v) for v in invals]

    def then(candidate):
        if staircase.then is not None:
            candidate = staircase.then(candidate)
        args = [candidate if i == position else c for i, c in enumerate(constants)]
        return _jaxpr.bind(eqn, args)[0]

    bounds = _mapped_bounds(eqn.primitive.name, constants, position, staircase.bounds)
    moved = dataclasses.replace(staircase, then=then, bounds=bounds)
    return [dataclasses.replace(outs[0], staircase=moved)]


def _with_clamp(eqn: JaxprEqn, invals: list, outs: list) -> list:
    """``outs`` with how ``max`` / ``min`` / ``clamp`` by exact bounds clipped the one live
    operand (see :class:`Clamp`), composed with how it was clipped before."""
    name = eqn.primitive.name
    if len(outs) != 1 or not floating(aval(eqn.outvars[0])):
        return outs
    live = [i for i, v in enumerate(invals) if varies(v)]
    if len(live) != 1 or (name == "clamp" and live != [1]):
        return outs
    (position,) = live
    value = invals[position]
    if not isinstance(value, Live):
        return outs
    shape = aval(eqn.outvars[0]).shape
    if np.shape(value.value) != shape:
        return outs
    if name in _MONOTONE_MAPS and value.clamp is not None:
        return [_mapped_clamp(eqn, invals, position, outs[0])]
    if name not in ("max", "min", "clamp"):
        return outs
    clamp = value.clamp or Clamp(value.value)
    low, high = clamp.low, clamp.high
    bounds = [unwrap(v) for i, v in enumerate(invals) if i != position]
    # max(., c) raises both bounds to c, min(., c) lowers both: the result is again a clip.
    raises = bounds[:1] if name in ("max", "clamp") else []
    lowers = bounds[-1:] if name in ("min", "clamp") else []
    for c in raises:
        low = c if low is None else jnp.maximum(low, c)
        high = None if high is None else jnp.maximum(high, c)
    for c in lowers:
        low = None if low is None else jnp.minimum(low, c)
        high = c if high is None else jnp.minimum(high, c)
    return [dataclasses.replace(outs[0], clamp=Clamp(clamp.source, low, high))]


# Maps by exact constants that are monotone in the live operand (at the position's sign).
_MONOTONE_MAPS = {"add": (1, 1), "sub": (1, -1), "mul": (0, 0), "div": (0, None), "neg": (-1,)}


def _mapped_clamp(eqn: JaxprEqn, invals: list, position: int, out: Live) -> Live:
    """A clipped value mapped by constants monotonically (``relu6(x + 3) / 6``, hard_sigmoid):
    the clip of the mapped source by the mapped bounds, swapped where the map decreases. The
    two are equal bit for bit, since rounding is monotone too; sign 0: a factor of one sign."""
    sign = _MONOTONE_MAPS[eqn.primitive.name][position]
    constants = [unwrap(v) for i, v in enumerate(invals) if i != position]
    if not is_concrete(constants) or not np.all(np.isfinite(constants)):
        return dataclasses.replace(out, clamp=None)
    if sign == 0:
        factor = np.asarray(constants[0])
        sign = 1 if np.all(factor > 0) else -1 if np.all(factor < 0) else None
    if sign is None:
        return dataclasses.replace(out, clamp=None)
    clamp = invals[position].clamp

    def mapped(v) -> jax.Array:
        operands = [v if i == position else unwrap(u) for i, u in enumerate(invals)]
        return _jaxpr.bind(eqn, operands)[0]

    low, high = (None if b is None else mapped(b) for b in (clamp.low, clamp.high))
    low, high = (low, high) if sign > 0 else (high, low)
    return dataclasses.replace(out, clamp=Clamp(mapped(clamp.source), low, high))


def _mapped_bounds(name: str, operands: list, position: int, bounds) -> tuple[float, float]:
    """Bounds of an exact map of a value within ``bounds`` (operand ``position``) by constants
    (interval arithmetic; unbounded where a constant is not known at trace time)."""
    unbounded = (-math.inf, math.inf)
    if not all(is_concrete(c) and np.size(c) for i, c in enumerate(operands) if i != position):
        return unbounded
    # The range of each constant operand (the value's own entry is not used).
    known = [
        (float(np.min(c)), float(np.max(c))) if i != position else unbounded
        for i, c in enumerate(operands)
    ]
    lo, hi = bounds
    others = [k for i, k in enumerate(known) if i != position]
    if name == "clamp":
        if position != 1:
            return unbounded
        (low, _), (_, high) = known[0], known[2]
        return (min(max(lo, low), high), max(min(hi, high), low))
    if name == "neg":
        return (-hi, -lo)
    if name == "abs":
        return (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi)), max(abs(lo), abs(hi)))
    ((c_lo, c_hi),) = others
    if name == "max":
        return (max(lo, c_lo), max(hi, c_hi))
    if name == "min":
        return (min(lo, c_lo), min(hi, c_hi))
    if name == "add":
        return (lo + c_lo, hi + c_hi)
    if name == "sub":
        return (lo - c_hi, hi - c_lo) if position == 0 else (c_lo - hi, c_hi - lo)
    if name == "mul":
        with np.errstate(invalid="ignore"):
            products = [a * b for a in (lo, hi) for b in (c_lo, c_hi)]
        if any(math.isnan(v) for v in products):
            return unbounded
        return (min(products), max(products))
    return unbounded


def output(value) -> jax.Array:
    """A value returned by the relaxed function: soft integers and booleans as floats."""
    if not is_soft(value):
        return unwrap(value)
    return mean(value).astype(np.dtype(jnp.result_type(float)))


_COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})


def _operand_key(atom, value) -> tuple:
    """What identifies an operand of a comparison: a literal's value and type, else the value
    the interpreter holds (the same object for the same variable)."""
    if isinstance(atom, JaxprLiteral):
        return ("literal", str(aval(atom)), np.asarray(atom.val).tobytes())
    return ("value", id(value))
