"""Relaxing whole programs: evaluate a function's jaxpr with a soft rule for each discontinuity.

:func:`relax` traces the user's function to a jaxpr and interprets it equation by equation. Values
are tracked in five forms:

* an array: an exact value that does not depend on a floating-point input (constants, shapes,
  loop counters, integer arguments); equations on these only are evaluated as they are;
* :class:`Live`: an exact value that depends on a floating-point input: continuous operations
  apply to it as they are, discontinuous ones (comparisons, ``where``, ``cond``, ...) are relaxed;
* :class:`SoftBool`: a relaxed truth value, held as its probability;
* :class:`Categorical`: a relaxed integer (or boolean) held as a distribution over candidate
  values, for example a soft ``argmax`` or a ``cond`` index. Integer operations act on each
  candidate (so the normalisation ``i < 0 ? i + n : i`` never blends ``i`` with ``i + n``) and a
  floating-point result is the expectation over the candidates;
* :class:`Expected`: an integer known only by its expected value, such as a count of soft truth
  values or the counter of a soft ``while`` loop. Linear operations apply to the expectation.

Every soft value keeps a thunk that recomputes the exact value from the exact inputs of the
operation that made it, which is what :func:`exact` uses to keep chosen conditions exact.
"""

import contextlib
import dataclasses
import functools
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from equinox.internal import unvmap_any
from jax.core import Tracer
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, JaxprEqn, Literal, jaxpr_as_fun
from jax.typing import ArrayLike

from . import _compare, _logic, _select, _sort, _steps
from ._blend import blend
from ._branch import soft_select, soft_where
from ._checks import (
    check_choice,
    check_int,
    check_traced_softness,
    is_concrete,
    softness_array,
)
from ._kinds import KINDS, Kind
from ._logic import TNORMS, TNorm
from ._loop import _soft_while, soft_while
from ._modes import MODES, Mode, straight_through
from ._scope import SCOPE as _SCOPE
from ._select import weighted_sum

try:  # private helpers: the user's source line in messages, and kept in the relaxed program
    from jax._src import source_info_util as _source_info
except ImportError:  # pragma: no cover - a JAX without them still relaxes, with vaguer messages
    _source_info = None

_EXACT_NAME = "softflow_exact"  # the name of the jitted identity that sf.exact applies
_EXITS_NAME = "softflow_loop_exits"  # the name of the jitted function that ends a body with exits
_PACKAGE_DIR = str(pathlib.Path(__file__).resolve().parent)


# ----------------------------------------------------------------------------------------------
# Soft values


@dataclasses.dataclass(frozen=True)
class Live:
    """An exact value that depends on a floating-point input of the relaxed function."""

    value: jax.Array


Thunk = Callable[[], jax.Array] | None


@dataclasses.dataclass(frozen=True)
class SoftBool:
    """A relaxed boolean: ``p`` is the probability of True (a float array of the bool's shape)."""

    p: jax.Array
    hard: Thunk


@dataclasses.dataclass(frozen=True)
class Categorical:
    """A relaxed integer or boolean: candidate values and their probabilities.

    ``cands`` has the value's shape plus a last axis of K candidates; ``probs`` has a shape that
    broadcasts against it, its last axis summing to 1. Candidate k of every value derived from
    one distribution is the same outcome, so values that share ``probs`` (the same object)
    combine candidate by candidate; values from different distributions combine as independent.
    """

    cands: jax.Array | np.ndarray
    probs: jax.Array
    hard: Thunk


@dataclasses.dataclass(frozen=True)
class Expected:
    """A relaxed integer known by its expected value ``mean`` (a float array)."""

    mean: jax.Array
    hard: Thunk


Soft = SoftBool | Categorical | Expected


def _is_soft(value) -> bool:
    return isinstance(value, Soft)


def _is_live(value) -> bool:
    return isinstance(value, Live) or _is_soft(value)


def _unwrap(value):
    return value.value if isinstance(value, Live) else value


def _default_float() -> np.dtype:
    return np.dtype(jnp.result_type(float))


# ----------------------------------------------------------------------------------------------
# Errors and the record of what was relaxed


class RelaxError(TypeError):
    """A part of the program that ``sf.relax`` cannot relax, with where it is and what to do."""


def _where(eqn: JaxprEqn, enclosing: Sequence[JaxprEqn] = ()) -> str:
    """The user's source line of ``eqn``.

    Inside a nested ``jit`` (most of jax.numpy) the line of the outermost ``jit`` call is used:
    JAX caches the jaxprs of jitted functions, so the lines recorded inside one belong to the
    call that traced it first, not necessarily to this one.
    """
    if _source_info is None:
        return "an unknown line"
    calls = [e for e in enclosing if e.primitive.name in ("jit", "pjit")]
    for candidate in (*calls[:1], eqn, *reversed(enclosing)):
        where = _user_line(candidate.source_info)
        if where:
            return where
    return "an unknown line"


def _user_line(source_info) -> str:
    """The innermost frame that belongs neither to JAX nor to softflow (``sf.exact``,
    ``sf.greater`` called inside ``fn`` point at the user's call), as ``file:line:col (fn)``."""
    assert _source_info is not None
    for frame in _source_info.user_frames(source_info.traceback):
        converted = _syntax_location(frame.file_name, frame.start_line)
        if converted:
            return converted
        if not str(pathlib.Path(frame.file_name).resolve()).startswith(_PACKAGE_DIR):
            return (
                f"{frame.file_name}:{frame.start_line}:{frame.start_column} ({frame.function_name})"
            )
    return ""


def _syntax_location(file_name: str, line: int) -> str | None:
    """The user's line of a line of code converted from Python syntax, if it is one."""
    from ._syntax import user_location  # imported late: _syntax builds on this module

    return user_location(file_name, line)


class RelaxedOp(NamedTuple):
    """One relaxed operation: the primitive, the user's source line and the rule applied."""

    primitive: str
    source: str
    rule: str


class Explanation(tuple):
    """The relaxed operations of a program, in order (a tuple of :class:`RelaxedOp`)."""

    def __str__(self) -> str:
        if not self:
            return "nothing relaxed: the program has no discontinuity on a floating-point input"
        width = max(len(op.primitive) for op in self)
        return "\n".join(f"{op.source}: {op.primitive:<{width}}  -> {op.rule}" for op in self)

    __repr__ = __str__


@dataclasses.dataclass(frozen=True)
class _Options:
    softness: Any
    kind: Kind
    mode: Mode
    tnorm: TNorm
    max_steps: int | None


# ----------------------------------------------------------------------------------------------
# Evaluating equations


def _bind(eqn: JaxprEqn, invals: Sequence) -> list:
    """Evaluate ``eqn`` exactly on arrays, as :func:`jax.core.eval_jaxpr` does."""
    return _bind_with(eqn, eqn.params, invals)


def _bind_with(eqn: JaxprEqn, params: dict, invals: Sequence) -> list:
    bind_params = eqn.primitive.get_bind_params(params)
    user_context = (
        contextlib.nullcontext()
        if _source_info is None
        else _source_info.user_context(eqn.source_info.traceback)
    )
    with user_context, eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _hard_of(value, eqn: JaxprEqn | None = None) -> jax.Array:
    """The exact value behind ``value`` (a RelaxError if it was lost in a loop or branch)."""
    if not _is_soft(value):
        return _unwrap(value)
    if value.hard is None:
        where = f" at {_where(eqn)}" if eqn is not None else ""
        raise RelaxError(
            f"sf.exact{where} cannot recover the exact value of its argument: it comes out of a "
            "relaxed loop or branch. Apply sf.exact to the condition where it is computed, "
            "inside the loop or branch."
        )
    return value.hard()


def _hard_thunk(eqn: JaxprEqn, invals: Sequence) -> Callable[[int], Thunk]:
    """Thunks recomputing each output of ``eqn`` exactly from the exact inputs (evaluated once)."""

    @functools.cache
    def outputs():
        return _bind(eqn, [_hard_of(v) for v in invals])

    return lambda i: lambda: outputs()[i]


def _expectation(probs: jax.Array, values: jax.Array) -> jax.Array:
    """The expectation over the candidates (last axis), exact at one-hot probabilities."""
    return weighted_sum(probs.astype(values.dtype), values)


def _bernoulli(value: SoftBool) -> Categorical:
    p = value.p
    shape = (*p.shape, 2)
    cands = np.broadcast_to(np.array([False, True]), shape)
    return Categorical(cands, jnp.stack([1 - p, p], axis=-1), value.hard)


def _mean(value) -> jax.Array:
    """The expected value of an integer or boolean as a float array."""
    if isinstance(value, Expected):
        return value.mean
    if isinstance(value, SoftBool):
        return value.p
    if isinstance(value, Categorical):
        dtype = jnp.result_type(value.probs.dtype, _default_float())
        return _expectation(value.probs, jnp.asarray(value.cands, dtype))
    return jnp.asarray(_unwrap(value)).astype(_default_float())


def _merge(categoricals: Sequence[Categorical]) -> tuple[jax.Array, list[jax.Array]]:
    """Common probabilities and aligned candidates of several categoricals.

    Categoricals sharing their ``probs`` are one distribution (aligned candidate by candidate);
    the others are independent of each other (their outer product).
    """
    probs = categoricals[0].probs
    seen = {id(probs): 0}
    index = [0]
    groups = [[categoricals[0].cands]]
    for c in categoricals[1:]:
        if id(c.probs) in seen:
            groups[seen[id(c.probs)]].append(c.cands)
            index.append(seen[id(c.probs)])
            continue
        seen[id(c.probs)] = len(groups)
        index.append(len(groups))
        groups.append([c.cands])
        k1, k2 = probs.shape[-1], c.probs.shape[-1]
        outer = probs[..., :, None] * c.probs[..., None, :]
        probs = outer.reshape((*outer.shape[:-2], k1 * k2))
        for g in groups[:-1]:
            g[:] = [jnp.repeat(x, k2, axis=-1) for x in g]
        groups[-1] = [jnp.tile(x, k1) for x in groups[-1]]
    position = [0] * len(groups)
    aligned = []
    for g in index:
        aligned.append(groups[g][position[g]])
        position[g] += 1
    return probs, aligned


# Primitives acting element by element (with NumPy broadcasting of scalars in a jaxpr).
_ELEMENTWISE = frozenset(
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
_STRUCTURAL = frozenset(
    {
        "broadcast_in_dim",
        "reshape",
        "squeeze",
        "expand_dims",
        "transpose",
        "slice",
        "rev",
        "concatenate",
        "copy",
        "copy_p",
        "dynamic_slice",
        "gather",
        "pad",
    }
)
# Operations on integers that commute with taking expectations (or are continuous in them).
_LINEAR = _STRUCTURAL | frozenset(
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
_ADVICE = {
    "rem": "write x - n * sf.floor(x / n) with softflow's soft floor, or keep % on integers",
    "is_finite": "test finiteness outside the relaxed function",
    "top_k": "use sf.top_k",
    "nextafter": "keep it outside the relaxed function",
    "reduce_precision": "keep it outside the relaxed function",
    "population_count": "keep it outside the relaxed function",
    "clz": "keep it outside the relaxed function",
    "bitcast_convert_type": "keep the bits outside the relaxed function, or smooth the exact "
    "program with sf.smooth (it only evaluates it)",
}


def _aval(var) -> Any:
    """The abstract value (shape and dtype) of a jaxpr variable."""
    return var.aval


def _floating(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.floating)


class _Interpreter:
    """Evaluates jaxprs with soft values; one per call of a relaxed function."""

    def __init__(self, options: _Options):
        self.options = options
        self.records: dict[tuple[int, str, str], RelaxedOp] = {}
        self.enclosing: list[JaxprEqn] = []  # the equations whose inner jaxprs are being run
        self.analyses: dict[tuple, Any] = {}  # see analysed

    # -- bookkeeping -----------------------------------------------------------------------

    def record(self, eqn: JaxprEqn, rule: str) -> None:
        where = self.where(eqn)
        self.records.setdefault((id(eqn), rule, where), RelaxedOp(eqn.primitive.name, where, rule))

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
        return _where(eqn, self.enclosing)

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

    def compare_options(self) -> dict[str, Any]:
        o = self.options
        return {"softness": o.softness, "kind": o.kind, "mode": o.mode}

    # -- evaluation ------------------------------------------------------------------------

    def run(self, jaxpr: Jaxpr, consts: Sequence, args: Sequence) -> list:
        env: dict = {}

        def read(atom):
            return atom.val if isinstance(atom, Literal) else env[atom]

        for var, value in zip(jaxpr.constvars, consts, strict=True):
            env[var] = value
        for var, value in zip(jaxpr.invars, args, strict=True):
            env[var] = value
        for eqn in jaxpr.eqns:
            outs = self.equation(eqn, [read(atom) for atom in eqn.invars])
            for var, value in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, DropVar):
                    env[var] = value
        return [read(atom) for atom in jaxpr.outvars]

    def equation(self, eqn: JaxprEqn, invals: list) -> list:
        if not any(_is_live(v) for v in invals):
            return _bind(eqn, invals)
        if _SCOPE in str(eqn.source_info.name_stack):
            # softflow's own operation (sf.greater, sf.soft_where, ...) called inside fn: already
            # relaxed, evaluated as it is on the probabilities and expectations of soft inputs.
            outs = _bind(eqn, [_mean(v) if _is_soft(v) else _unwrap(v) for v in invals])
            return [Live(out) for out in outs]
        rule = _RULES.get(eqn.primitive.name)
        if rule is None:
            return self.default(eqn, invals)
        self.enclosing.append(eqn)
        try:
            return rule(self, eqn, invals)
        finally:
            self.enclosing.pop()

    def default(self, eqn: JaxprEqn, invals: list) -> list:
        """Equations without a rule of their own: continuous ones as they are, else generic."""
        name = eqn.primitive.name
        if not any(_is_soft(v) for v in invals):
            live_float = any(
                isinstance(v, Live) and _floating(_aval(atom))
                for v, atom in zip(invals, eqn.invars, strict=True)
            )
            if live_float and name in _ADVICE:
                raise self.unsupported(
                    eqn, "it is discontinuous in a floating-point input", _ADVICE[name]
                )
            return [Live(out) for out in _bind(eqn, [_unwrap(v) for v in invals])]
        return self.generic(eqn, invals)

    def generic(self, eqn: JaxprEqn, invals: list) -> list:
        """An equation on soft integers or booleans without a rule of its own."""
        name = eqn.primitive.name
        if any(isinstance(v, Expected) for v in invals):
            return self.on_expectations(eqn, invals)
        categoricals = [v for v in invals if isinstance(v, Categorical)]
        if not categoricals and name in _STRUCTURAL:
            return self.on_probabilities(eqn, invals)
        scalar_source = all(c.probs.ndim == 1 for c in categoricals)
        if name in _ELEMENTWISE or scalar_source:
            return self.per_candidate(eqn, invals)
        if name == "gather" and not any(_is_soft(v) for v in invals[:1]):
            return self.gather_per_element(eqn, invals)
        if name in _STRUCTURAL:
            return self.structural_categorical(eqn, invals)
        if name in _LINEAR:
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
        data = _data_operands(eqn)
        args = [
            v.p
            if isinstance(v, SoftBool)
            else _floatify(_unwrap(v), dtype)
            if i < data
            else _unwrap(v)
            for i, v in enumerate(invals)
        ]
        hard = _hard_thunk(eqn, invals)
        outs = _bind(eqn, args)
        return [
            SoftBool(out, hard(i)) if _aval(atom).dtype == jnp.bool_ else Live(out)
            for i, (out, atom) in enumerate(zip(outs, eqn.outvars, strict=True))
        ]

    def on_expectations(self, eqn: JaxprEqn, invals: list) -> list:
        """A linear equation on expected integers: apply it to the expectations."""
        if eqn.primitive.name not in _LINEAR:
            raise self.unsupported(
                eqn,
                "its operand is an integer known only by its expected value (a count of soft "
                "truth values, or the counter of a relaxed loop), and the operation is not linear",
                "compute it on floats, or keep the integer exact with sf.exact on the condition "
                "it comes from",
            )
        dtype = jnp.result_type(*(_mean(v) for v in invals if _is_soft(v)))
        data = _data_operands(eqn)
        args = []
        for i, v in enumerate(invals):
            if _is_soft(v):
                if i >= data:
                    raise self.unsupported(
                        eqn,
                        "its index is an integer known only by its expected value",
                        "index with sf.argmax / a comparison, or keep the index exact with "
                        "sf.exact",
                    )
                args.append(_mean(v).astype(dtype))
            else:
                args.append(_floatify(_unwrap(v), dtype) if i < data else _unwrap(v))
        params = dict(eqn.params)
        if eqn.primitive.name == "convert_element_type":
            target = np.dtype(params["new_dtype"])
            if target == jnp.bool_:
                raise self.unsupported(
                    eqn,
                    "a relaxed integer converted to bool",
                    "compare it explicitly (n != 0)",
                )
            if not jnp.issubdtype(target, jnp.floating):
                return [Expected(args[0], _hard_thunk(eqn, invals)(0))]
            return [Live(args[0].astype(target))]
        if "preferred_element_type" in params and params["preferred_element_type"] is not None:
            params["preferred_element_type"] = dtype
        outs = _bind_with(eqn, params, args)
        hard = _hard_thunk(eqn, invals)
        result = []
        for i, (value, atom) in enumerate(zip(outs, eqn.outvars, strict=True)):
            if _floating(_aval(atom)):
                result.append(Live(value.astype(_aval(atom).dtype)))
            else:
                result.append(Expected(value, hard(i)))
        return result

    def per_candidate(self, eqn: JaxprEqn, invals: list) -> list:
        """Evaluate ``eqn`` on each candidate value of its relaxed operands."""
        soft = [
            _bernoulli(v) if isinstance(v, SoftBool) else v
            for v in invals
            if isinstance(v, SoftBool | Categorical)
        ]
        probs, cands = _merge(soft)
        cands_iter = iter(cands)
        args, axes = [], []
        for v in invals:
            if isinstance(v, SoftBool | Categorical):
                args.append(next(cands_iter))
                axes.append(-1)
            else:
                args.append(_unwrap(v))
                axes.append(None)
        # Candidates known at trace time (the indices of an argmax, normalised by JAX's `i < 0`
        # select) are computed at trace time, so that later rules can see them.
        known = (
            contextlib.nullcontext() if not is_concrete(args) else jax.ensure_compile_time_eval()
        )
        with known:
            outs = jax.vmap(lambda *a: _bind(eqn, a), in_axes=axes, out_axes=-1)(*args)
        hard = _hard_thunk(eqn, invals)
        result = []
        for i, (value, atom) in enumerate(zip(outs, eqn.outvars, strict=True)):
            if _floating(_aval(atom)):
                result.append(Live(_expectation(probs, value)))
            else:
                result.append(Categorical(value, probs, hard(i)))
        return result

    def gather_per_element(self, eqn: JaxprEqn, invals: list) -> list:
        """``x[indices]`` where each index has its own distribution (as after ``argsort``)."""
        operand, indices = invals
        probs = jnp.broadcast_to(indices.probs, indices.cands.shape)[..., 0, :]
        for d in sorted(eqn.params["dimension_numbers"].offset_dims):
            probs = jnp.expand_dims(probs, d)
        values = jax.vmap(lambda i: _bind(eqn, [_unwrap(operand), i])[0], -1, -1)(indices.cands)
        self.record(eqn, "read at each candidate index (expectation)")
        if _floating(_aval(eqn.outvars[0])):
            return [Live(_expectation(probs, values))]
        return [Categorical(values, probs, _hard_thunk(eqn, invals)(0))]

    def structural_categorical(self, eqn: JaxprEqn, invals: list) -> list:
        """Move elements of per-element distributions: candidates and probabilities alike.

        An exact operand among the moved ones (a concatenated constant, a padding value) is a
        distribution with all its candidates equal, so any probabilities do for it.
        """
        soft = [
            _bernoulli(v) if isinstance(v, SoftBool) else v
            for v in invals
            if isinstance(v, SoftBool | Categorical)
        ]
        probs, cands = _merge(soft)
        k = probs.shape[-1]
        data = _data_operands(eqn)
        cands_iter = iter(cands)
        cand_args, prob_args, axes = [], [], []
        for i, v in enumerate(invals):
            if isinstance(v, SoftBool | Categorical):
                c = next(cands_iter)
                cand_args.append(c)
                prob_args.append(jnp.broadcast_to(probs, c.shape))
                axes.append(-1)
            elif i < data:
                x = jnp.asarray(_unwrap(v))
                cand_args.append(jnp.broadcast_to(x[..., None], (*x.shape, k)))
                prob_args.append(jnp.full((*x.shape, k), 1 / k, probs.dtype))
                axes.append(-1)
            else:  # an index: the same for every candidate
                cand_args.append(_unwrap(v))
                prob_args.append(_unwrap(v))
                axes.append(None)

        def move(*args):
            return jax.vmap(lambda *a: _bind(eqn, a), in_axes=axes, out_axes=-1)(*args)

        hard = _hard_thunk(eqn, invals)
        return [
            Categorical(value, p, hard(i))
            for i, (value, p) in enumerate(zip(move(*cand_args), move(*prob_args), strict=True))
        ]

    def output(self, value, aval) -> jax.Array:
        """A value returned by the relaxed function: soft integers and booleans as floats."""
        if not _is_soft(value):
            return _unwrap(value)
        return _mean(value).astype(_default_float())


# Equations whose trailing operands are indices: the number of leading operands that are data.
_DATA_COUNT = {"dynamic_slice": 1, "gather": 1, "dynamic_update_slice": 2}


def _data_operands(eqn: JaxprEqn) -> int:
    return _DATA_COUNT.get(eqn.primitive.name, len(eqn.invars))


def _floatify(x, dtype) -> jax.Array:
    """An exact operand next to relaxed ones: booleans and integers as floats of ``dtype``."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return x.astype(dtype)


# ----------------------------------------------------------------------------------------------
# Rules


def _compare_rule(soft_fn):
    def rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
        a, b = invals
        if _floating(_aval(eqn.invars[0])):
            x, y = _unwrap(a), _unwrap(b)
            p = soft_fn(x, y, **self.compare_options())
            self.record(eqn, f"sf.{soft_fn.__name__}")
            return [SoftBool(p, _hard_thunk(eqn, invals)(0))]
        if any(isinstance(v, Expected) for v in invals):
            p = soft_fn(_mean(a), _mean(b), **self.compare_options())
            self.record(eqn, f"sf.{soft_fn.__name__} of expected values")
            return [SoftBool(p, _hard_thunk(eqn, invals)(0))]
        return self.default(eqn, invals)

    return rule


_LOGIC = {
    "and": _logic.logical_and,
    "or": _logic.logical_or,
    "xor": _logic.logical_xor,
}


def _logic_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    name = eqn.primitive.name
    boolean = _aval(eqn.outvars[0]).dtype == jnp.bool_
    if (
        not boolean
        or any(isinstance(v, Categorical | Expected) for v in invals)
        or not any(isinstance(v, SoftBool) for v in invals)
    ):
        return self.default(eqn, invals)
    dtype = jnp.result_type(*(v.p for v in invals if isinstance(v, SoftBool)))
    probs = [
        v.p if isinstance(v, SoftBool) else jnp.asarray(_unwrap(v)).astype(dtype) for v in invals
    ]
    hard = _hard_thunk(eqn, invals)(0)
    if name == "not":
        self.record(eqn, "sf.logical_not")
        return [SoftBool(_logic.logical_not(probs[0]), hard)]
    self.record(eqn, f"sf.logical_{name} (tnorm={self.options.tnorm!r})")
    return [SoftBool(_LOGIC[name](*probs, tnorm=self.options.tnorm), hard)]


def _reduce_logic_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    (value,) = invals
    if not isinstance(value, SoftBool):
        return self.default(eqn, invals)
    name = eqn.primitive.name
    fn = _logic.any if name == "reduce_or" else _logic.all
    self.record(eqn, f"sf.{fn.__name__} (tnorm={self.options.tnorm!r})")
    p = fn(value.p, axis=tuple(eqn.params["axes"]), tnorm=self.options.tnorm)
    return [SoftBool(p, _hard_thunk(eqn, invals)(0))]


def _convert_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    (value,) = invals
    target = np.dtype(eqn.params["new_dtype"])
    if isinstance(value, SoftBool):
        if jnp.issubdtype(target, jnp.floating):
            self.record(eqn, "truth value as its probability")
            return [Live(value.p.astype(target))]
        if target == jnp.bool_:
            return [value]
        return self.per_candidate(eqn, invals)
    if isinstance(value, Categorical | Expected):
        return self.generic(eqn, invals)
    source = _aval(eqn.invars[0]).dtype
    if not jnp.issubdtype(source, jnp.floating) or jnp.issubdtype(target, jnp.floating):
        return [Live(out) for out in _bind(eqn, [_unwrap(value)])]
    if target != jnp.bool_:
        return _truncate_rule(self, eqn, _unwrap(value))
    if target == jnp.bool_:
        x = _unwrap(value)
        self.record(eqn, "sf.not_equal(x, 0)")
        p = _compare.not_equal(x, jnp.zeros((), x.dtype), **self.compare_options())
        return [SoftBool(p, _hard_thunk(eqn, invals)(0))]
    return self.default(eqn, invals)


def _select_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    pred, *cases = invals
    out_aval = _aval(eqn.outvars[0])
    if isinstance(pred, Expected):
        raise self.unsupported(
            eqn,
            "its selector is an integer known only by its expected value",
            "select with a comparison of floats, or keep the selector exact with sf.exact",
        )
    hard = _hard_thunk(eqn, invals)(0)
    if isinstance(pred, SoftBool) and not any(isinstance(c, Categorical) for c in cases):
        p = pred.p
        if _floating(out_aval):
            self.record(eqn, "sf.soft_where")
            return [Live(soft_where(p, _unwrap(cases[1]), _unwrap(cases[0])))]
        if out_aval.dtype == jnp.bool_:
            q0, q1 = (_mean(c).astype(p.dtype) for c in cases)
            self.record(eqn, "sf.soft_where on probabilities")
            return [SoftBool(soft_where(p, q1, q0), hard)]
        if any(isinstance(c, Expected) for c in cases):
            m0, m1 = (_mean(c).astype(p.dtype) for c in cases)
            self.record(eqn, "sf.soft_where on expected values")
            return [Expected(soft_where(p, m1, m0), hard)]
        self.record(eqn, "distribution over the two integers")
        shape = jnp.broadcast_shapes(p.shape, *(jnp.shape(_unwrap(c)) for c in cases))
        c0, c1 = (jnp.broadcast_to(_unwrap(c), shape) for c in cases)
        probs = jnp.stack([1 - p, p], axis=-1)
        return [Categorical(jnp.stack([c0, c1], axis=-1), probs, hard)]
    if isinstance(pred, SoftBool | Categorical):
        if _floating(out_aval):
            self.record(eqn, "select per candidate of a distribution (expectation)")
        return self.per_candidate(eqn, invals)
    # An exact selector choosing among relaxed values.
    if any(isinstance(c, Categorical) for c in cases):
        return self.per_candidate(eqn, invals)
    if any(isinstance(c, Expected | SoftBool) for c in cases):
        means = [_mean(c) for c in cases if _is_soft(c)]
        dtype = jnp.result_type(*means)
        args = [_mean(c).astype(dtype) for c in cases]
        (value,) = _bind(eqn, [_unwrap(pred), *args])
        if out_aval.dtype == jnp.bool_:
            return [SoftBool(value, hard)]
        return [Expected(value, hard)]
    return [Live(out) for out in _bind(eqn, [_unwrap(v) for v in invals])]


# -- control flow: encoding soft values as arrays where they cross a lax boundary -------------

# The kind of a value crossing a loop carry or branch output: "dead" and "live" are exact
# arrays (independent of / dependent on float inputs); "bool" is a soft truth value carried as its
# probability and "int" a soft integer carried as its expected value, both in the default float
# dtype. A categorical crossing a boundary keeps only its expectation.
_ORDER = {"dead": 0, "live": 1, "bool": 2, "int": 2}


def _kind_of(value, aval) -> str:
    if not _is_soft(value):
        return "live" if isinstance(value, Live) else "dead"
    return "bool" if aval.dtype == jnp.bool_ else "int"


def _join(a: str, b: str) -> str:
    return a if _ORDER[a] >= _ORDER[b] else b


def _encode(value, kind: str, aval) -> jax.Array:
    if kind in ("dead", "live"):
        return jnp.asarray(_unwrap(value))
    return _mean(value).astype(_default_float())


def _decode(x, kind: str, aval):
    if kind == "dead":
        return x
    if kind == "live":
        return Live(x)
    if kind == "bool":
        return SoftBool(x, None)
    return Expected(x, None)


def _kinds_after(fn: Callable[[], list], avals) -> list[str]:
    """The kinds of the values ``fn`` returns, found by tracing it abstractly."""
    found = []

    def trace():
        values = fn()
        found[:] = [_kind_of(v, a) for v, a in zip(values, avals, strict=True)]
        return [jnp.asarray(_unwrap(v)) if not _is_soft(v) else _mean(v) for v in values]

    jax.eval_shape(trace)
    return found


def _jaxpr_fn(self: _Interpreter, closed: ClosedJaxpr):
    return lambda *args: self.run(closed.jaxpr, closed.consts, args)


def _carry_kinds(body: Callable, init: list, avals, extra_avals=()) -> tuple[list, list]:
    """Kinds of a loop carry at its fixed point: a value that becomes soft in the body is soft.

    ``body`` returns the next carry followed by other outputs (a scan's ``ys``) of
    ``extra_avals``, whose kinds at the fixed point are returned too.
    """
    kinds = [_kind_of(v, a) for v, a in zip(init, avals, strict=True)]
    while True:
        decoded = [
            _decode(_encode(v, k, a), k, a) for v, k, a in zip(init, kinds, avals, strict=True)
        ]
        after = _kinds_after(functools.partial(body, decoded), [*avals, *extra_avals])
        new = [_join(k, n) for k, n in zip(kinds, after, strict=False)]
        if new == kinds:
            return kinds, after[len(avals) :]
        kinds = new


def _exit_loop_kinds(body_parts: Callable, init: list, avals) -> tuple[list, bool]:
    """:func:`_carry_kinds` of a loop with exits (see :func:`_while_rule`): a carry is soft when
    it is soft at the end of the body or at an exit; and whether an exit's condition is soft."""

    def after(kinds: list) -> tuple[list, bool]:
        decoded = [
            _decode(_encode(v, k, a), k, a) for v, k, a in zip(init, kinds, avals, strict=True)
        ]
        found: list = []

        def trace():
            conds, exits, final = body_parts(decoded)
            new = list(kinds)
            for state in (final, *exits):
                new = [_join(k, _kind_of(v, a)) for k, v, a in zip(new, state, avals, strict=True)]
            found[:] = [new, any(_is_soft(c) for c in conds)]
            return [_mean(v) if _is_soft(v) else jnp.asarray(_unwrap(v)) for v in final]

        jax.eval_shape(trace)
        return found[0], found[1]

    kinds = [_kind_of(v, a) for v, a in zip(init, avals, strict=True)]
    while True:
        new, soft_exit = after(kinds)
        if new == kinds:
            return kinds, soft_exit
        kinds = new


def _probability(condition) -> jax.Array:
    """A loop condition (soft or exact truth value) as a probability in the default float."""
    if _is_soft(condition):
        return _mean(condition)
    return jnp.asarray(_unwrap(condition)).astype(_default_float())


def _exact_switch(self: _Interpreter, index, branches, operands, kinds, avals) -> list:
    """``lax.switch(index, branches)`` with an exact index, written as one ``cond`` per branch on
    "some loop of the batch takes it" (unbatched under vmap) and a select by the index.

    Under vmap, JAX turns a ``cond`` with a batched index into a select whose operands it wraps
    in ``stop_gradient``; inside the custom JVP of a soft loop those operands include tangents,
    and reverse mode then fails (no transpose rule for ``stop_gradient``, JAX issues 22011 and
    39219). Here the conds stay conds, and the operands of a branch are wrapped before
    differentiation: a loop of the batch that does not take the branch sends no cotangent
    through it (a NaN derivative there cannot leak), as in JAX's own rule.
    """
    n = len(branches)
    index = jnp.clip(index, 0, n - 1)

    def encoded(branch, take):
        def run():
            guarded = [
                Live(jnp.where(take, v.value, jax.lax.stop_gradient(v.value)))
                if isinstance(v, Live)
                else v
                for v in operands
            ]
            values = self.run(branch.jaxpr, branch.consts, guarded)
            return [_encode(v, k, a) for v, k, a in zip(values, kinds, avals, strict=True)]

        return run

    outs: list = []
    for k, branch in enumerate(branches):
        take = index == k
        run = encoded(branch, take)
        if n == 1:
            return run()
        shapes = jax.eval_shape(run)
        skipped = [jnp.zeros(s.shape, s.dtype) for s in shapes]
        branch_outs = jax.lax.cond(unvmap_any(take), run, lambda z=skipped: z)
        outs = (
            branch_outs
            if k == 0
            else [jnp.where(take, b, o) for b, o in zip(branch_outs, outs, strict=True)]
        )
    return outs


def _cond_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    index, *operands = invals
    branches = eqn.params["branches"]
    avals = [_aval(v) for v in eqn.outvars]
    run = [functools.partial(_jaxpr_fn(self, b), *operands) for b in branches]
    if isinstance(index, Expected):
        raise self.unsupported(
            eqn,
            "its branch index is an integer known only by its expected value",
            "choose the branch with a comparison of floats, or keep the index exact with sf.exact",
        )
    if not _is_soft(index):
        kinds = [_kind_of(None, a) for a in avals]
        for branch in run:
            kinds = [_join(k, n) for k, n in zip(kinds, _kinds_after(branch, avals), strict=True)]

        outs = _exact_switch(self, _unwrap(index), branches, operands, kinds, avals)
        return [_decode(x, k, a) for x, k, a in zip(outs, kinds, avals, strict=True)]
    categorical = _bernoulli(index) if isinstance(index, SoftBool) else index
    if categorical.probs.ndim != 1:
        raise self.unsupported(
            eqn, "its index holds a batch of distributions", "vmap the relaxed function"
        )
    n = len(branches)
    cands = jnp.clip(categorical.cands, 0, n - 1) if n > 1 else categorical.cands * 0
    weights = jnp.stack(
        [jnp.sum(jnp.where(cands == j, categorical.probs, 0), axis=-1) for j in range(n)], axis=-1
    )
    self.record(eqn, "sf.soft_if" if n == 2 else "sf.soft_switch")
    results = [branch() for branch in run]
    outs = []
    for position, aval in enumerate(avals):
        values = [r[position] for r in results]
        if _floating(aval):
            outs.append(Live(soft_select(weights, [_unwrap(v) for v in values])))
        elif aval.dtype == jnp.bool_:
            probs = [_mean(v).astype(weights.dtype) for v in values]
            outs.append(SoftBool(soft_select(weights, probs), None))
        elif any(_is_soft(v) for v in values):
            means = [_mean(v).astype(weights.dtype) for v in values]
            outs.append(Expected(soft_select(weights, means), None))
        else:
            stacked = jnp.stack([jnp.broadcast_to(_unwrap(v), aval.shape) for v in values], -1)
            outs.append(Categorical(stacked, weights, None))
    return outs


def _exits_marker(body: Jaxpr) -> JaxprEqn | None:
    """The :func:`softflow_loop_exits` equation that makes a loop body's outputs, if any."""
    for eqn in body.eqns:
        named = eqn.primitive.name in ("jit", "pjit") and eqn.params.get("name") == _EXITS_NAME
        if named and list(eqn.outvars) == list(body.outvars):
            return eqn
    return None


def _while_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    params = eqn.params
    cn, bn = params["cond_nconsts"], params["body_nconsts"]
    cond_consts, body_consts, init = invals[:cn], invals[cn : cn + bn], invals[cn + bn :]
    cond_jaxpr, body_jaxpr = params["cond_jaxpr"], params["body_jaxpr"]
    avals = [_aval(v) for v in eqn.outvars]

    def cond(state):
        return self.run(cond_jaxpr.jaxpr, cond_jaxpr.consts, [*cond_consts, *state])[0]

    def body(state):
        return self.run(body_jaxpr.jaxpr, body_jaxpr.consts, [*body_consts, *state])

    # A body that ends in softflow_loop_exits (a Python loop with a break, converted) exits in its
    # middle: run up to the marker, which gives each exit's condition and state in the world
    # where the loop still runs, and the state at the end of the body. The last carry is the
    # "has broken" flag, False in that world.
    marker = _exits_marker(body_jaxpr.jaxpr)
    n_state = len(avals) - 1
    n_exits = 0 if marker is None else (len(marker.invars) - n_state) // (n_state + 1)
    parts = (
        None
        if marker is None
        else body_jaxpr.jaxpr.replace(
            eqns=[e for e in body_jaxpr.jaxpr.eqns if e is not marker],
            outvars=list(marker.invars),
            debug_info=body_jaxpr.jaxpr.debug_info._replace(result_paths=None),
        )
    )

    def body_parts(state) -> tuple[list, list[list], list]:
        """The exits' conditions, the exits' states and the state at the end of the body."""
        values = self.run(cast(Jaxpr, parts), body_jaxpr.consts, [*body_consts, *state])
        conds, flat = values[:n_exits], values[n_exits:]
        running = jnp.bool_(False)
        exits = [[*flat[i * n_state : (i + 1) * n_state], running] for i in range(n_exits)]
        return conds, exits, [*flat[n_exits * n_state :], running]

    def analyse():
        if marker is None:
            kinds, _ = _carry_kinds(body, init, avals)
            soft_exit = False
        else:
            kinds, soft_exit = _exit_loop_kinds(body_parts, init, avals)
        decoded = [
            _decode(_encode(v, k, a), k, a) for v, k, a in zip(init, kinds, avals, strict=True)
        ]
        (condition,) = _kinds_after(lambda: [cond(decoded)], [jax.ShapeDtypeStruct((), bool)])
        return kinds, condition in ("bool", "int") or soft_exit

    kinds, soft = self.analysed(eqn, invals, analyse)
    if not soft:
        # An exact condition (a loop counter): an exact loop whose body is relaxed.
        def exact_cond(x):
            return _unwrap(
                cond([_decode(v, k, a) for v, k, a in zip(x, kinds, avals, strict=True)])
            )

        def exact_body(x):
            state = [_decode(v, k, a) for v, k, a in zip(x, kinds, avals, strict=True)]
            return [_encode(v, k, a) for v, k, a in zip(body(state), kinds, avals, strict=True)]

        init_x = [_encode(v, k, a) for v, k, a in zip(init, kinds, avals, strict=True)]
        outs = jax.lax.while_loop(exact_cond, exact_body, init_x)
        return [_decode(x, k, a) for x, k, a in zip(outs, kinds, avals, strict=True)]
    if self.options.max_steps is None:
        raise RelaxError(
            f"sf.relax: the while loop at {self.where(eqn)} has a relaxed condition, so it becomes "
            "a soft_while (a mixture over the step at which it stops), which needs a bound: pass "
            "max_steps=N to sf.relax (the most iterations the loop may run), or keep the loop's "
            "condition exact with sf.exact."
        )
    # In each run of the loop the exact integers are exact; they are carried as floats so that the
    # result can be the expectation over the exit step.
    state_kinds = [
        k if _floating(a) or k in ("bool", "int") else "path"
        for k, a in zip(kinds, avals, strict=True)
    ]

    def to_state(values):
        return [
            _encode(v, "dead", a).astype(_default_float()) if k == "path" else _encode(v, k, a)
            for v, k, a in zip(values, state_kinds, avals, strict=True)
        ]

    def from_state(x):
        return [
            Live(v.astype(a.dtype)) if k == "path" else _decode(v, k, a)
            for v, k, a in zip(x, state_kinds, avals, strict=True)
        ]

    def soft_cond(x):
        return _probability(cond(from_state(x)))

    if marker is None:
        self.record(eqn, f"sf.soft_while (max_steps={self.options.max_steps})")
        outs: Any = soft_while(
            soft_cond,
            lambda x: to_state(body(from_state(x))),
            to_state(init),
            max_steps=self.options.max_steps,
        )
    else:

        def body_with_exits(x):
            conds, exits, final = body_parts(from_state(x))
            probs = [_probability(c) for c in conds]
            return to_state(final), [(p, to_state(s)) for p, s in zip(probs, exits, strict=True)]

        self.record(eqn, f"sf.soft_while with breaks (max_steps={self.options.max_steps})")
        outs = _soft_while(
            lambda t, x: soft_cond(x),
            lambda t, x: body_with_exits(x),
            to_state(init),
            max_steps=self.options.max_steps,
            tol=1e-6,
            semantics="halting",
            chunk_size=None,
            return_info=False,
            exits=True,
        )
    result = []
    for x, k, a in zip(outs, state_kinds, avals, strict=True):
        if k != "path":
            result.append(_decode(x, "live" if k == "dead" else k, a))
        elif a.dtype == jnp.bool_:
            result.append(SoftBool(x, None))
        else:
            result.append(Expected(x, None))
    return result


def _scan_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    params = eqn.params
    nc, ncarry = params["num_consts"], params["num_carry"]
    consts, init, xs = invals[:nc], invals[nc : nc + ncarry], invals[nc + ncarry :]
    closed = params["jaxpr"]
    carry_avals = [_aval(v) for v in eqn.outvars[:ncarry]]
    y_avals = [_aval(v) for v in eqn.outvars[ncarry:]]
    x_avals = [_aval(v) for v in closed.jaxpr.invars[nc + ncarry :]]
    x_kinds = [_kind_of(v, a) for v, a in zip(xs, x_avals, strict=True)]
    xs_x = [_encode(v, k, a) for v, k, a in zip(xs, x_kinds, x_avals, strict=True)]
    # Abstract slices of xs, to trace the body for the kinds of carry and outputs.
    x_slices = [_decode(x[0], k, a) for x, k, a in zip(xs_x, x_kinds, x_avals, strict=True)]

    def step(carry, x_values):
        return self.run(closed.jaxpr, closed.consts, [*consts, *carry, *x_values])

    kinds, y_kinds = self.analysed(
        eqn,
        invals,
        lambda: _carry_kinds(lambda c: step(c, x_slices), init, carry_avals, y_avals),
    )

    def body(c, x):
        carry = [_decode(v, k, a) for v, k, a in zip(c, kinds, carry_avals, strict=True)]
        x_values = [_decode(v, k, a) for v, k, a in zip(x, x_kinds, x_avals, strict=True)]
        outs = step(carry, x_values)
        new_c = [
            _encode(v, k, a) for v, k, a in zip(outs[:ncarry], kinds, carry_avals, strict=True)
        ]
        ys = [_encode(v, k, a) for v, k, a in zip(outs[ncarry:], y_kinds, y_avals, strict=True)]
        return new_c, ys

    init_x = [_encode(v, k, a) for v, k, a in zip(init, kinds, carry_avals, strict=True)]
    carry, ys = jax.lax.scan(
        body,
        init_x,
        xs_x,
        length=params["length"],
        reverse=params["reverse"],
        unroll=params["unroll"],
    )
    return [
        *(_decode(x, k, a) for x, k, a in zip(carry, kinds, carry_avals, strict=True)),
        *(_decode(y, k, a) for y, k, a in zip(ys, y_kinds, y_avals, strict=True)),
    ]


def _jit_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    if eqn.params["name"] == _EXACT_NAME:
        if any(_is_soft(v) for v in invals):
            self.record(eqn, "kept exact (sf.exact)")
        return [Live(_hard_of(v, eqn)) if _is_live(v) else v for v in invals]
    closed = eqn.params["jaxpr"]
    return self.run(closed.jaxpr, closed.consts, invals)


def _remat_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``jax.checkpoint``: the relaxed inside, checkpointed with the same policy."""
    jaxpr = eqn.params["jaxpr"]
    if any(isinstance(v, Categorical) for v in invals):
        # A distribution cannot cross the checkpoint's boundary without losing its candidates.
        return self.run(jaxpr, [], invals)
    in_avals = [_aval(v) for v in jaxpr.invars]
    out_avals = [_aval(v) for v in jaxpr.outvars]
    in_kinds = [_kind_of(v, a) for v, a in zip(invals, in_avals, strict=True)]

    def inside(*args):
        values = [_decode(x, k, a) for x, k, a in zip(args, in_kinds, in_avals, strict=True)]
        return self.run(jaxpr, [], values)

    args = [_encode(v, k, a) for v, k, a in zip(invals, in_kinds, in_avals, strict=True)]
    out_kinds = _kinds_after(functools.partial(inside, *args), out_avals)

    def encoded(*args):
        outs = inside(*args)
        return [_encode(v, k, a) for v, k, a in zip(outs, out_kinds, out_avals, strict=True)]

    checkpointed = jax.checkpoint(
        encoded, prevent_cse=eqn.params["prevent_cse"], policy=eqn.params["policy"]
    )
    outs = checkpointed(*args)
    return [_decode(x, k, a) for x, k, a in zip(outs, out_kinds, out_avals, strict=True)]


def _custom_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    closed = eqn.params["call_jaxpr"]
    before = len(self.records)
    outs = self.run(closed.jaxpr, closed.consts, invals)
    if len(self.records) == before and not any(_is_soft(v) for v in invals):
        # Nothing discontinuous inside: keep the function with its own derivative rule.
        return [Live(out) for out in _bind(eqn, [_unwrap(v) for v in invals])]
    self.record(eqn, "relaxed inside (its own derivative rule is not used)")
    return outs


def _live_float_operand(eqn: JaxprEqn, invals: list) -> bool:
    return isinstance(invals[0], Live) and _floating(_aval(eqn.invars[0]))


def _step_rule(soft_fn):
    """sign / floor / ceil / round: the soft staircase, with the primitive itself as the exact
    value (so that ``lax.round``'s rounding method and every tie are those of the program)."""

    def rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
        if not _live_float_operand(eqn, invals):
            return self.default(eqn, invals)
        x = _unwrap(invals[0])
        self.record(eqn, f"sf.{soft_fn.__name__}")
        soft = soft_fn(x, softness=self.options.softness, kind=self.options.kind, mode="soft")
        return [Live(self.with_mode(_bind(eqn, [x])[0], soft))]

    return rule


def _truncate_rule(self: _Interpreter, eqn: JaxprEqn, x: jax.Array) -> list:
    """A float converted to an integer (rounded towards zero): its soft staircase.

    trunc(x) = floor(x) + [x < 0] away from the integers, so its relaxation is
    ``sf.floor(x) + sf.less(x, 0)``, an integer known by its expected value.
    """
    o = self.options
    options = {"softness": o.softness, "kind": o.kind, "mode": "soft"}
    soft = _steps.floor(x, **options) + _compare.less(x, jnp.zeros((), x.dtype), **options)
    hard = _bind(eqn, [x])[0]
    self.record(eqn, "sf.floor(x) + sf.less(x, 0) (conversion to integer)")
    mean = self.with_mode(hard.astype(soft.dtype), soft)
    return [Expected(mean, lambda: hard)]


def _argmax_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    if not _live_float_operand(eqn, invals):
        return self.default(eqn, invals)
    x = _unwrap(invals[0])
    axis = int(eqn.params["axes"][0])  # a NumPy integer when the argmax was batched by vmap
    fn = _select.argmax if eqn.primitive.name == "argmax" else _select.argmin
    self.record(eqn, f"sf.{fn.__name__} (a distribution over the indices)")
    probs = jnp.moveaxis(fn(x, axis, **self.compare_options()), axis, -1)
    n = x.shape[axis]
    # NumPy candidates: known at trace time, so later rules see that they are 0..n-1.
    cands = np.broadcast_to(np.arange(n, dtype=eqn.params["index_dtype"]), probs.shape)
    return [Categorical(cands, probs, _hard_thunk(eqn, invals)(0))]


def _sort_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    if not _live_float_operand(eqn, invals):
        return self.default(eqn, invals)
    if eqn.params["num_keys"] != 1 or any(_is_soft(v) for v in invals):
        raise self.unsupported(
            eqn,
            "it sorts by several keys, or sorts relaxed integers",
            "sort by one float key with sf.sort (return_permutation=True gives the permutation)",
        )
    x = _unwrap(invals[0])
    axis = eqn.params["dimension"]
    if len(invals) == 1:
        self.record(eqn, "sf.sort")
        return [Live(cast(jax.Array, _sort.sort(x, axis, **self.compare_options())))]
    self.record(eqn, "sf.sort with its permutation (other operands follow it)")
    values, permutation = _sort.sort(x, axis, return_permutation=True, **self.compare_options())
    outs: list[Any] = [Live(values)]
    for value, atom in zip(invals[1:], eqn.invars[1:], strict=True):
        moved = jnp.moveaxis(jnp.asarray(_unwrap(value)), axis, -1)[..., None, :]
        moved = jnp.broadcast_to(moved, permutation.shape)
        if _floating(_aval(atom)):
            outs.append(Live(jnp.moveaxis(_expectation(permutation, moved), -1, axis)))
        else:
            # Output j is input i with probability P[..., j, i]: a distribution per element.
            outs.append(
                Categorical(
                    jnp.moveaxis(moved, -2, axis),
                    jnp.moveaxis(permutation, -2, axis),
                    None,
                )
            )
    return outs


def _weights_over_positions(index: Categorical, n: int) -> jax.Array:
    """The probability of each position 0..n-1 (candidates clamped into range), shape (n,)."""
    if is_concrete(index.cands):
        position = np.clip(np.asarray(index.cands), 0, n - 1)
        if np.array_equal(position, np.arange(n)):
            return index.probs  # the usual case: the candidates of an argmax over this axis
        return jnp.zeros((n,), index.probs.dtype).at[position].add(index.probs)
    position = jnp.clip(index.cands, 0, n - 1)
    return jnp.zeros((n,), index.probs.dtype).at[position].add(index.probs)


def _dynamic_slice_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``x[i]`` with a relaxed index along one axis: the expectation as one weighted sum.

    Per candidate this is the slice at that index (clamped into range, as ``dynamic_slice``
    does); summed densely over the positions of the axis, so that the gradient is dense too.
    """
    operand, *indices = invals
    soft_axes = [d for d, i in enumerate(indices) if _is_soft(i)]
    sizes = eqn.params["slice_sizes"]
    if (
        _is_soft(operand)
        or len(soft_axes) != 1
        or not isinstance(indices[soft_axes[0]], Categorical)
        or indices[soft_axes[0]].probs.ndim != 1
        or sizes[soft_axes[0]] != 1
    ):
        return self.default(eqn, invals)
    axis = soft_axes[0]
    index = indices[axis]
    x = _unwrap(operand)
    n = x.shape[axis]
    weights = _weights_over_positions(index, n)
    exact = [
        jnp.zeros((), index.cands.dtype) if d == axis else _unwrap(i) for d, i in enumerate(indices)
    ]
    full_sizes = tuple(n if d == axis else size for d, size in enumerate(sizes))
    window = jax.lax.dynamic_slice(x, exact, full_sizes)
    value = _expectation(weights, jnp.moveaxis(window, axis, -1))
    self.record(eqn, "sf.take (read at a distribution over indices)")
    return [Live(jnp.expand_dims(value, axis))]


def _scatter_rule(self: _Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``x.at[i].set(v)`` with a relaxed index along one axis: :func:`softflow.put`'s blend.

    Per candidate this writes ``v`` at that index (a candidate out of range writes nothing, as
    ``scatter`` drops it); in expectation every position j along the axis becomes
    ``(1 - w_j) x_j + w_j v`` with ``w_j`` the probability of index j.
    """
    operand, indices, updates = invals
    numbers = eqn.params["dimension_numbers"]
    one_axis = (
        len(numbers.scatter_dims_to_operand_dims) == 1
        and tuple(numbers.inserted_window_dims) == tuple(numbers.scatter_dims_to_operand_dims)
        and not numbers.operand_batching_dims
    )
    if (
        _is_soft(operand)
        or _is_soft(updates)
        or not isinstance(indices, Categorical)
        or indices.probs.ndim != 1
        or indices.cands.shape != (1, indices.probs.shape[0])
        or not one_axis
        or eqn.params["update_jaxpr"] is not None
    ):
        return self.default(eqn, invals)
    (axis,) = numbers.scatter_dims_to_operand_dims
    x, value = jnp.asarray(_unwrap(operand)), jnp.asarray(_unwrap(updates))
    n = x.shape[axis]
    known = is_concrete(indices.cands)  # candidates known at trace time stay known
    xp = np if known else jnp
    cands = (np.asarray(indices.cands) if known else indices.cands)[0]
    if eqn.params["mode"] == jax.lax.GatherScatterMode.CLIP:
        cands = xp.clip(cands, 0, n - 1)
    # Out-of-range candidates have no position: they leave x as it is.
    in_range = (cands >= 0) & (cands < n)
    probs = jnp.where(in_range, indices.probs, 0)
    weights = _weights_over_positions(Categorical(xp.where(in_range, cands, 0), probs, None), n)
    shape = [1] * x.ndim
    shape[axis] = n
    w = weights.reshape(shape).astype(x.dtype)
    written = jnp.broadcast_to(jnp.expand_dims(value, axis), x.shape).astype(x.dtype)
    self.record(eqn, "sf.put (write at a distribution over indices)")
    return [Live(blend((1 - w, w), (x, written)))]


_RULES: dict[str, Callable] = {
    "gt": _compare_rule(_compare.greater),
    "ge": _compare_rule(_compare.greater_equal),
    "lt": _compare_rule(_compare.less),
    "le": _compare_rule(_compare.less_equal),
    "eq": _compare_rule(_compare.equal),
    "ne": _compare_rule(_compare.not_equal),
    "and": _logic_rule,
    "or": _logic_rule,
    "xor": _logic_rule,
    "not": _logic_rule,
    "reduce_or": _reduce_logic_rule,
    "reduce_and": _reduce_logic_rule,
    "convert_element_type": _convert_rule,
    "select_n": _select_rule,
    "cond": _cond_rule,
    "while": _while_rule,
    "scan": _scan_rule,
    "jit": _jit_rule,
    "pjit": _jit_rule,
    "remat2": _remat_rule,
    "checkpoint": _remat_rule,
    "custom_jvp_call": _custom_rule,
    "custom_vjp_call": _custom_rule,
    "argmax": _argmax_rule,
    "argmin": _argmax_rule,
    "sort": _sort_rule,
    "dynamic_slice": _dynamic_slice_rule,
    "scatter": _scatter_rule,
    "sign": _step_rule(_steps.sign),
    "floor": _step_rule(_steps.floor),
    "ceil": _step_rule(_steps.ceil),
    "round": _step_rule(_steps.round),
}


# ----------------------------------------------------------------------------------------------
# Public functions


def softflow_loop_exits(
    conds: list, exit_states: list[list], final: list
) -> tuple[list, jax.Array]:
    """The state a loop body ends in and whether it broke: the state at the first exit whose
    condition holds, else ``final``. Its name marks, in a jaxpr, a body with exits in its middle
    (a converted ``break``), which relax turns into a mixture over the exits."""
    state = list(final)
    for c, exit_state in zip(reversed(conds), reversed(exit_states), strict=True):
        state = [jnp.where(c, a, b) for a, b in zip(exit_state, state, strict=True)]
    broke = functools.reduce(jnp.logical_or, conds, jnp.bool_(False))
    return state, broke


#: ``softflow_loop_exits`` as one equation of the jaxpr (see :func:`_while_rule`).
loop_exits = jax.jit(softflow_loop_exits)


def softflow_exact(tree):
    """The identity; its name marks, in a jaxpr, the values that relax keeps exact."""
    return tree


_exact_marker = jax.jit(softflow_exact)


def exact(value: Any) -> Any:
    r"""Mark a value as exact: :func:`relax` keeps it as the program computes it.

    .. math:: \mathrm{relax}(f)\ \text{evaluates}\ \mathrm{exact}(c(x))\ \text{as}\ c(x)

    Outside a relaxed function it returns ``value`` unchanged. Inside, the operations that computed
    ``value`` are evaluated exactly for it, so a guard such as ``sf.exact(x > 0)`` before
    ``jnp.sqrt(x)`` selects without blending (and without a gradient through the guard), while
    everything else stays relaxed.

    Arguments:
        value: a pytree of arrays, typically a condition (``x > 0``, ``(x > 0) & (y < 1)``).

    Returns:
        ``value``, unchanged.

    Raises:
        softflow._program.RelaxError: (inside :func:`relax`) when the exact value was lost, for
            a value that comes out of a relaxed loop or branch.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> def safe_sqrt(x):
        ...     positive = sf.exact(x > 0)
        ...     return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)
        >>> float(sf.relax(safe_sqrt, softness=10.0)(4.0))
        2.0
    """
    return jax.tree_util.tree_map(_exact_marker, value)


def _input_leaf(path, leaf) -> jax.Array:
    if isinstance(leaf, jax.Array | np.ndarray | np.generic | int | float | bool):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.complexfloating):
            return leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf)
    where = jax.tree_util.keystr(path) or "(the argument itself)"
    raise TypeError(
        f"sf.relax: argument leaf {where} is {leaf!r} of type {type(leaf).__name__}; the relaxed "
        "function takes pytrees of real arrays or numbers. Close over other arguments "
        "(functools.partial) instead."
    )


class Relaxed:
    """A function relaxed by :func:`relax`: call it like the original; ``explain`` shows how."""

    def __init__(self, fn: Callable, options: _Options, convert: bool):
        functools.update_wrapper(self, fn)
        if convert:
            from ._syntax import call_converted  # imported late: _syntax builds on this module

            fn = functools.partial(call_converted, fn)
        self._fn = fn
        self._options = options
        self._cache: dict = {}

    def _trace(self, args, kwargs):
        leaves_with_path, in_tree = jax.tree_util.tree_flatten_with_path((args, kwargs))
        leaves = [_input_leaf(path, leaf) for path, leaf in leaves_with_path]
        avals = [jax.typeof(leaf) for leaf in leaves]
        key = (in_tree, tuple((a.shape, a.dtype, a.weak_type) for a in avals))
        if key in self._cache:
            return (*self._cache[key], leaves)
        out_tree = []

        def flat_fn(*flat):
            a, k = jax.tree_util.tree_unflatten(in_tree, flat)
            out_flat, tree = jax.tree_util.tree_flatten(self._fn(*a, **k))
            out_tree.append(tree)
            return out_flat

        shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in avals]
        closed = jax.make_jaxpr(flat_fn)(*shapes)
        if all(not isinstance(c, Tracer) for c in closed.consts):
            # A jaxpr that closes over traced values belongs to the trace that made it.
            self._cache[key] = (closed, out_tree[0])
        return closed, out_tree[0], leaves

    def _interpret(self, interpreter, closed, leaves):
        def live_if_float(x):
            return Live(x) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x

        consts = [live_if_float(c) if isinstance(c, Tracer) else c for c in closed.consts]
        args = [live_if_float(x) for x in leaves]
        outs = interpreter.run(closed.jaxpr, consts, args)
        return [
            interpreter.output(o, _aval(v)) for o, v in zip(outs, closed.jaxpr.outvars, strict=True)
        ]

    def __call__(self, *args, **kwargs):
        closed, out_tree, leaves = self._trace(args, kwargs)
        options = self._options
        if options.mode == "hard":
            outs = jaxpr_as_fun(closed)(*leaves)
            tau = softness_array(options.softness, _default_float(), np.shape(options.softness))
            outs = [check_traced_softness(o, tau) for o in outs]
        else:
            outs = self._interpret(_Interpreter(options), closed, leaves)
        return jax.tree_util.tree_unflatten(out_tree, outs)

    def explain(self, *args, **kwargs) -> Explanation:
        """The operations relaxed for these arguments, each with its source line and rule.

        Traces the function abstractly (nothing is computed) and returns an
        :class:`Explanation`, a tuple of ``RelaxedOp(primitive, source, rule)`` that prints as
        one line per operation. In ``"hard"`` mode it lists what the soft mode relaxes.
        """
        closed, _, leaves = self._trace(args, kwargs)
        options = dataclasses.replace(
            self._options, mode="soft" if self._options.mode == "hard" else self._options.mode
        )
        interpreter = _Interpreter(options)
        jax.eval_shape(lambda *x: self._interpret(interpreter, closed, x), *leaves)
        return Explanation(interpreter.records.values())


def relax(
    fn: Callable,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
    tnorm: TNorm = "product",
    max_steps: int | None = None,
    convert: bool = True,
) -> Relaxed:
    r"""Relax a whole JAX program: every discontinuity on a floating-point input becomes soft.

    ``relax(fn)`` returns a function with ``fn``'s signature. It traces ``fn`` to a jaxpr (once
    per input shapes and dtypes) and evaluates it with a soft rule for each discontinuous
    operation that depends on a floating-point input: a comparison :math:`x > y` becomes
    :math:`s((x - y)/\tau)` (:func:`greater` and its relatives), ``&``, ``|``, ``~`` become
    t-norm logic, ``jnp.where`` becomes :func:`soft_where`, ``lax.cond`` / ``lax.switch``
    :func:`soft_if` / :func:`soft_switch`, a ``while_loop`` with such a condition
    :func:`soft_while`; loops, nested ``jit``, ``custom_jvp`` / ``custom_vjp`` functions and
    ``checkpoint`` are relaxed inside. Integer inputs, loop counters and constants stay exact.
    A truth value used as a number is its probability, so ``jnp.sum(x > 0)`` is the expected
    count; boolean and integer results that became soft are returned as floats of the default
    float dtype. See the page "Relaxing a whole program" for the rules and their limits.

    The relaxed function is pure JAX: it works under ``jit``, ``vmap`` and ``grad``, and
    ``softness`` may be a traced array (call ``relax`` inside the jitted loss to anneal it).

    Arguments:
        fn: a function of pytrees of arrays, written in plain JAX.
        softness: :math:`\tau > 0`, passed to every relaxed comparison.
        kind: the soft step family, one of :data:`softflow.KINDS`.
        mode: ``"soft"``; ``"hard"``, exactly ``fn``'s result; or ``"straight_through"``, the
            forward value of ``fn`` with the gradient of the soft operations along its path.
        tnorm: the t-norm of ``&``, ``|`` and ``^``, one of :data:`softflow.TNORMS`.
        max_steps: the bound of every ``while`` loop whose condition is relaxed (required when
            there is one).
        convert: convert Python control flow (``if``, ``while``, ``for``, ``and`` / ``or`` /
            ``not``, ``a if c else b``) on traced values in ``fn`` and the functions it calls
            first (see "Python syntax" on the page "Relaxing a whole program"); ``False`` traces
            ``fn`` as it is.

    Returns:
        The relaxed function. Its ``explain(*args)`` lists every relaxed operation with its
        source line and the rule applied.

    Raises:
        softflow._program.RelaxError: (when called) for an operation that cannot be relaxed,
            naming it, its source line and what to write instead; for a relaxed ``while`` loop
            without ``max_steps``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import softflow as sf
        >>> def count_positive(x):
        ...     return jnp.sum(x > 0)
        >>> x = jnp.array([-1.0, 0.5, 2.0])
        >>> int(count_positive(x)), round(float(sf.relax(count_positive)(x)), 3)
        (2, 1.772)
        >>> [round(float(g), 3) for g in jax.grad(sf.relax(count_positive))(x)]
        [0.197, 0.235, 0.105]
    """
    check_choice("kind", kind, KINDS)
    check_choice("mode", mode, MODES)
    check_choice("tnorm", tnorm, TNORMS)
    if max_steps is not None:
        check_int("max_steps", max_steps, minimum=1)
    if not callable(fn):
        raise TypeError(f"fn must be a callable; got {fn!r} of type {type(fn).__name__}.")
    if not isinstance(convert, bool):
        raise TypeError(f"convert must be True or False; got {convert!r}.")
    return Relaxed(fn, _Options(softness, kind, mode, tnorm, max_steps), convert)
