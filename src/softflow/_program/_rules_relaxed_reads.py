"""Reads of a relaxed array (truth values, relaxed integers) at relaxed indices: a board an ant
writes at its relaxed position and then reads there, back-pointers followed from a relaxed
state, a permutation composed with itself (``p[p]`` of an ``argsort``). The array is taken as
independent of the indices: its law at each position is its marginal."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn

from . import _jaxpr
from ._generic import at_trace_time, hard_thunk
from ._interpreter import Interpreter, rule
from ._intervals import interval
from ._values import (
    Categorical,
    Expected,
    SoftBool,
    distinct,
    expectation,
    is_soft,
    mean,
    merge,
    unwrap,
)


def _as_int32(index) -> jax.Array:
    """A slice's start as int32, as ``vmap`` of ``dynamic_slice`` needs (it joins the starts
    with its own int32 positions; x64 makes int64 ones): clipped first, so that a start beyond
    the int32 range is clamped to the array's end as before."""
    index = jnp.asarray(index)
    if index.dtype == jnp.int32:
        return index
    bounds = np.iinfo(np.int32)
    return jnp.clip(index, bounds.min, bounds.max).astype(jnp.int32)


def relaxed_read(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``x[i, j]`` where ``x`` is relaxed too (a board of truth values written at relaxed
    positions, as an ant or a head on a tape writes): for each joint outcome of the indices the
    slice of ``x``'s law there, weighted by the outcome's probability. ``x`` is taken as
    independent of the indices (its law at each position is its marginal)."""
    operand, *indices = invals
    soft = [i for i in indices if is_soft(i)]
    if not all(isinstance(i, Categorical) and i.probs.ndim == 1 for i in soft):
        raise self.unsupported(
            eqn,
            "it reads a relaxed array at an index known only by its expected value, or at an "
            "index with a distribution per element",
            "keep the index exact with sf.exact, or read an exact array",
        )
    probs, cands, _ = merge(soft)
    chosen = iter(cands)
    starts = [
        _as_int32(next(chosen) if is_soft(i) else jnp.broadcast_to(unwrap(i), probs.shape))
        for i in indices
    ]
    sizes = _jaxpr.slice_sizes(eqn)

    def read(x, *extra):
        """The slices of ``x`` (with trailing axes of sizes ``extra``), outcomes last."""

        def one(*at):
            return jax.lax.dynamic_slice(x, [*at, *(np.int32(0) for _ in extra)], [*sizes, *extra])

        return jax.vmap(one, out_axes=-1)(*starts)

    hard = hard_thunk(eqn, invals)(0)
    self.record(eqn, "read a relaxed array at a distribution over indices (expectation)")
    if isinstance(operand, SoftBool):
        return [SoftBool(expectation(probs, read(operand.p)), hard)]
    if isinstance(operand, Expected):
        return [Expected(expectation(probs, read(mean(operand))), hard)]
    assert isinstance(operand, Categorical)
    m = operand.cands.shape[-1]
    law = jnp.broadcast_to(operand.probs, operand.cands.shape)
    values = read(jnp.asarray(operand.cands), m)  # [..., m, outcome]
    weights = read(law, m) * probs
    shape = (*values.shape[:-2], m * probs.shape[-1])
    # What is read is among the array's candidates: a loop can carry it over their range
    # (following back-pointers).
    bounds = interval(operand)
    return [Categorical(values.reshape(shape), weights.reshape(shape), hard, bounds=bounds)]


@rule("gather")
def _gather_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``x[i]`` of relaxed integers ``x`` at indices with a distribution per element (an
    ``argsort``'s, a ``top_k``'s): for each candidate of an index, the law of the element it
    reads, weighted by the candidate's probability (``p[p]`` of soft permutations is their
    product). Anything else is the interpreter's default."""
    operand, indices = invals
    if not (isinstance(operand, Categorical) and isinstance(indices, Categorical)):
        return self.default(eqn, invals)
    if np.ndim(operand.probs) == 1 and np.ndim(indices.probs) == 1:
        return self.default(eqn, invals)  # (one distribution each: read per joint outcome)
    m = operand.cands.shape[-1]
    law = jnp.broadcast_to(operand.probs, operand.cands.shape)
    positions = indices.cands

    def read(x) -> jax.Array:
        """The elements of ``x`` (with a trailing axis of m) at each candidate of the indices:
        the gather's result with axes m and the candidates last."""

        def at(index):
            return jax.vmap(lambda a: _jaxpr.bind(eqn, [a, index])[0], -1, -1)(x)

        return jax.vmap(at, -1, -1)(positions)

    (values,) = at_trace_time(lambda x: [read(x)], jnp.asarray(operand.cands))
    probs = jnp.broadcast_to(indices.probs, positions.shape)[..., 0, :]
    for d in sorted(_jaxpr.gather_offset_dims(eqn)):
        probs = jnp.expand_dims(probs, d)
    weights = read(law) * probs[..., None, :]
    shape = (*values.shape[:-2], m * positions.shape[-1])
    hard = hard_thunk(eqn, invals)(0)
    self.record(eqn, "read relaxed integers at each candidate index (mixture of their laws)")
    bounds = interval(operand)
    return [
        distinct(Categorical(values.reshape(shape), weights.reshape(shape), hard, bounds=bounds))
    ]
