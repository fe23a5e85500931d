"""Rules for calls of inner jaxprs: ``jit``, ``jax.checkpoint``, functions with custom
derivatives, JAX's "hi" primitives."""

import dataclasses
import functools

import jax
import numpy as np
from jax.extend.core import JaxprEqn

from .._checks import is_concrete
from . import _jaxpr
from ._boundaries import decode_all, encode_all, kind_of, kinds_after
from ._errors import ConversionError
from ._generic import hard_of
from ._interpreter import CALL_RULES, Interpreter, rule
from ._markers import EXACT_NAME, MIXED_FLAG_PREFIX, MIXED_FLAG_REFUSALS
from ._values import Categorical, Live, aval, is_live, is_soft, unwrap


@rule("jit", "pjit", "closed_call", "core_call")
def _call_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    name = _jaxpr.call_name(eqn)
    if name in CALL_RULES:
        return CALL_RULES[name](self, eqn, invals)
    if name is not None and name.startswith(MIXED_FLAG_PREFIX):
        if is_soft(invals[0]):
            raise ConversionError(MIXED_FLAG_REFUSALS[name])
        return invals
    if name == EXACT_NAME:
        self.record(eqn, "kept exact (sf.exact)")
        return [Live(hard_of(v, lambda: self.where(eqn))) if is_live(v) else v for v in invals]
    if not any(is_soft(v) for v in invals) and _linear_interpolation(eqn, invals):
        # Relaxing its index would blur the knots (the value at a knot off by half a step at
        # every softness) and cost a read per candidate; its exact gradient is the slope.
        self.record(eqn, "a linear interpolation, continuous in its inputs: kept exact")
        return self.exactly(eqn, invals)
    return self.run_closed(_jaxpr.call_body(eqn), invals)


def _linear_interpolation(eqn: JaxprEqn, invals: list) -> bool:
    """Whether ``eqn`` is a linear interpolation that is continuous in every operand:
    ``jnp.interp(x, xp, fp)`` (no ``left`` / ``right`` / ``period``, which add operands) at
    knots that depend on no input and, known at trace time, increase strictly (jnp.interp asks
    for increasing ones; computed under jit, as ``jnp.linspace`` is, they are taken to), or
    ``jax.scipy.ndimage.map_coordinates`` of order 1 (order 0 rounds), in every mode. Its index
    is a discontinuity that the weights cancel."""
    name = _jaxpr.call_name(eqn)
    if name == "_interp" and len(invals) == 3:
        knots = invals[1]
        if is_live(knots):
            return False
        if not is_concrete(knots):
            return True
        knots = np.asarray(knots)
        return knots.ndim == 1 and knots.size > 0 and bool(np.all(np.diff(knots) > 0))
    if name == "_map_coordinates":
        return "round" not in _jaxpr.primitive_names(_jaxpr.call_body(eqn).jaxpr)
    return False


@rule("remat2", "checkpoint")
def _remat_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``jax.checkpoint``: the relaxed inside, checkpointed with the same policy."""
    layout = _jaxpr.remat(eqn)
    jaxpr = layout.body
    if any(isinstance(v, Categorical) for v in invals):
        # A distribution cannot cross the checkpoint's boundary without losing its candidates.
        return self.run(jaxpr, [], invals)
    in_avals = [aval(v) for v in jaxpr.invars]
    out_avals = [aval(v) for v in jaxpr.outvars]
    in_kinds = [kind_of(v, a) for v, a in zip(invals, in_avals, strict=True)]

    def inside(*args):
        return self.run(jaxpr, [], decode_all(args, in_kinds, in_avals))

    args = encode_all(invals, in_kinds, in_avals)
    out_kinds = kinds_after(functools.partial(inside, *args), out_avals)

    def encoded(*args):
        return encode_all(inside(*args), out_kinds, out_avals)

    checkpointed = jax.checkpoint(encoded, prevent_cse=layout.prevent_cse, policy=layout.policy)
    outs = decode_all(checkpointed(*args), out_kinds, out_avals)
    if not any(isinstance(o, Live) for o in outs):
        return outs
    # What relax knows of a result inside (a clip that a comparison after it takes apart) is
    # kept: made by the same body outside the checkpoint, run where the comparison needs it.
    return [
        with_values([k], [o.value])[0] if isinstance(k, Live) and isinstance(o, Live) else o
        for k, o in zip(inside(*args), outs, strict=True)
    ]


@rule("call_hi_primitive")
def _hi_primitive_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """A JAX >= 0.12 "hi" primitive (``jnp.nonzero``): relaxed as what it expands to."""
    return self.run_closed(_jaxpr.hi_primitive_body(eqn), invals)


# What a library function's conditions are made of (relu's max is not one).
_DECISIONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "select_n", "cond", "while"})


@rule("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr")
def _custom_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    body = _jaxpr.custom_body(eqn)
    library = not any(is_soft(v) for v in invals) and _jaxpr.library_custom_function(eqn)
    if library and _jaxpr.primitive_names(body.jaxpr) & _DECISIONS:
        # A library function with its own derivative (xlogy, det): its conditions are
        # numerical guards of a continuous function, not the program's decisions.
        self.record(eqn, "a library function with its own derivative rule: kept exact")
        return [Live(out) for out in _jaxpr.bind(eqn, [unwrap(v) for v in invals])]
    before = len(self.records)
    outs = self.run_closed(body, invals)
    if len(self.records) > before and library:
        for key in list(self.records)[before:]:  # (insertion order: those made inside)
            del self.records[key]
        return [Live(out) for out in _jaxpr.bind(eqn, [unwrap(v) for v in invals])]
    if len(self.records) == before and not any(is_soft(v) for v in invals):
        # Nothing discontinuous inside: keep the function with its own derivative rule, and
        # what relax knows of its results (relu's clip at 0, which relu(x) > 0 compares with).
        return with_values(outs, _jaxpr.bind(eqn, [unwrap(v) for v in invals]))
    self.record(eqn, "relaxed inside (its own derivative rule is not used)")
    return outs


def with_values(known: list, values: list) -> list:
    """``values`` (the same numbers as ``known``, computed another way: with a function's own
    derivative rule, or checkpointed) with what relax knew of each of ``known``."""
    return [
        dataclasses.replace(k, value=v) if isinstance(k, Live) else Live(v)
        for k, v in zip(known, values, strict=True)
    ]
