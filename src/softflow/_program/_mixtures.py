"""A float's values per candidate of a relaxed integer (its :class:`Mixture`) pushed through the
exact maps and moves after it, so that a later comparison or integer conversion still acts
candidate by candidate: ``up[mode] * 2``, ``table[i].astype(int)`` after a squeeze, and the order
statistic that ``jnp.quantile`` reads twice and blends with constant weights."""

import dataclasses

import numpy as np
from jax.extend.core import JaxprEqn

from .._checks import is_concrete
from . import _jaxpr, _views
from ._candidates import candidatewise
from ._generic import at_trace_time
from ._values import Live, Mixture, aval, floating, unwrap, varies

# Exact elementwise maps a mixture is pushed through.
MIXTURE_MAPS = frozenset(
    {
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "abs",
        "max",
        "min",
        "pow",
        "integer_pow",
        "square",
        "sqrt",
        "exp",
        "log",
        "clamp",
        "convert_element_type",
        "copy",
        "copy_p",
        "select_n",
    }
)


def with_mixture(scope: dict, eqn: JaxprEqn, invals: list, outs: list) -> list:
    """``outs`` with the mixture of the operands that have one pushed through ``eqn``, when every
    other operand is exact (a constant, not a value that depends on the inputs). ``scope``: the
    interpreter's per-jaxpr memo, in which the same move of the same probabilities is made once
    (so that two reads of one order statistic share their distribution)."""
    name = eqn.primitive.name
    if len(outs) != 1 or not floating(aval(eqn.outvars[0])):
        return outs
    mixed = [i for i, v in enumerate(invals) if isinstance(v, Live) and v.mixture is not None]
    if name == "concatenate" and len(mixed) == len(invals) > 1:
        return _concatenated_mixtures(eqn, invals, outs)
    if not mixed or any(varies(v) for i, v in enumerate(invals) if i not in mixed):
        return outs
    if len(mixed) > 1:
        return _joint_mixtures(eqn, invals, outs, mixed)
    mixture = invals[mixed[0]].mixture
    assert mixture is not None
    same_shape = aval(eqn.outvars[0]).shape == np.shape(invals[mixed[0]].value)
    scalar_index = np.ndim(mixture.probs) == 1
    # Distributions of their own for each element move with the elements.
    per_element = np.shape(mixture.probs) == np.shape(mixture.values)
    # (A gather at exact indices, jnp.take or x[[1, 0]], only moves elements too.)
    view = (name in _views.MOVES or name == "gather") and (scalar_index or per_element)
    if not (name in MIXTURE_MAPS and (same_shape or scalar_index)) and not view:
        return outs
    batched = [i == mixed[0] for i in range(len(invals))]

    def each_candidate(operand):
        args = [operand if i == mixed[0] else unwrap(v) for i, v in enumerate(invals)]
        return at_trace_time(lambda *a: candidatewise(eqn, a, batched), *args)[0]

    changes = {"values": each_candidate(mixture.values)}
    if view and per_element and not scalar_index:
        changes["probs"] = _moved_probs(scope, eqn, invals, mixture.probs, each_candidate)
    if mixture.origin is not None:
        # A comparison with the element itself is exact where the candidate's value still equals
        # the element (the comparison checks it), so that maps of the same shape keep it.
        origin = mixture.origin
        if view:  # (moved at trace time, or lost where the move is known only at run time)
            index = each_candidate(origin.index)
            origin = dataclasses.replace(origin, index=index) if is_concrete(index) else None
        changes["origin"] = origin if view or same_shape else None
    return [dataclasses.replace(outs[0], mixture=dataclasses.replace(mixture, **changes))]


def _moved_probs(scope: dict, eqn: JaxprEqn, invals: list, probs, each_candidate):
    """``probs`` moved by ``eqn`` as its floats are (a gather at exact indices): once per move,
    the same array for the same move of the same probabilities."""
    others = [unwrap(v) for v in invals if not (isinstance(v, Live) and v.mixture is not None)]
    if not is_concrete(others):
        return each_candidate(probs)
    key = ("moved probs", id(probs), _jaxpr.signature(eqn))
    key += tuple((np.shape(o), np.asarray(o).tobytes()) for o in others)
    if key not in scope:
        scope[key] = (each_candidate(probs), probs)  # (probs kept: its id stays its own)
    return scope[key][0]


def _joint_mixtures(eqn: JaxprEqn, invals: list, outs: list, mixed: list) -> list:
    """Operands with values per candidate of the same distribution (the same ``probs`` object:
    the same outcome at each candidate), combined candidate by candidate; the origin is kept
    where they all have the same."""
    mixtures = [invals[i].mixture for i in mixed]
    first = mixtures[0]
    shape = aval(eqn.outvars[0]).shape
    if (
        eqn.primitive.name not in MIXTURE_MAPS
        or any(m.probs is not first.probs or m.factors is not first.factors for m in mixtures)
        or any(np.shape(invals[i].value) != shape for i in mixed)
    ):
        return outs
    batched = [i in mixed for i in range(len(invals))]
    args = [v.mixture.values if b else unwrap(v) for v, b in zip(invals, batched, strict=True)]
    values = at_trace_time(lambda *a: candidatewise(eqn, a, batched), *args)[0]
    origins = [m.origin for m in mixtures]
    same_origin = all(
        o is not None and o.token is origins[0].token and np.array_equal(o.index, origins[0].index)
        for o in origins
    )
    live = any(m.live for m in mixtures)
    mixture = Mixture(values, first.probs, first.factors, live, origins[0] if same_origin else None)
    return [dataclasses.replace(outs[0], mixture=mixture)]


def _concatenated_mixtures(eqn: JaxprEqn, invals: list, outs: list) -> list:
    """Pieces of floats that each keep their values per candidate of their own elements'
    distributions (the two slices ``jnp.roll`` joins after a relaxed ``floor``), concatenated
    alike."""
    mixtures = [v.mixture for v in invals]
    if (
        any(m.factors is not None or np.shape(m.probs) != np.shape(m.values) for m in mixtures)
        or len({np.shape(m.values)[-1] for m in mixtures}) != 1
    ):
        return outs

    def joined(parts):
        return at_trace_time(lambda *a: candidatewise(eqn, a, [True] * len(a)), *parts)[0]

    values, probs = joined([m.values for m in mixtures]), joined([m.probs for m in mixtures])
    mixture = Mixture(values, probs, None, any(m.live for m in mixtures))
    return [dataclasses.replace(outs[0], mixture=mixture)]
