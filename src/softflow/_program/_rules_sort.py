"""Rules for sorting: ``sort`` (``jnp.sort``, ``jnp.argsort``, values sorted along keys) and
``top_k``."""

from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn

from .. import _sort
from .._checks import is_concrete
from . import _jaxpr, _views
from ._generic import hard_thunk
from ._interpreter import Interpreter, rule
from ._rules_arrays import live_float_operand
from ._values import (
    Categorical,
    Live,
    Mixture,
    Origin,
    aval,
    expectation,
    floating,
    is_soft,
    unwrap,
)

# How relax sorts: the values (jnp.sort, lax.top_k) by the bitonic network, which compiles to
# fused straight-line layers; a permutation (jnp.argsort, values sorted along the keys) by
# SoftSort, one dense softmax per row, much cheaper than a network's permutation.
SORT_METHOD = "bitonic"
PERMUTATION_METHOD = "softsort"


def _counts_along(self: Interpreter, atom, axis: int) -> bool:
    """Whether the jaxpr variable ``atom`` is an ``iota`` counting along ``axis`` (the positions
    that ``jnp.argsort`` sorts along with its keys)."""
    producer = self.producers.get(atom)
    return (
        producer is not None
        and producer.primitive.name == "iota"
        and _jaxpr.iota_dimension(producer) == axis
    )


def _follow(self: Interpreter, eqn: JaxprEqn, permutation, axis: int, invals, atoms) -> list:
    """The operands sorted along with the keys, by the permutation ``P[..., j, i]`` (output
    ``j`` is input ``i``): floats as expectations, integers as a distribution per element."""
    outs: list[Any] = []
    for value, atom in zip(invals, atoms, strict=True):
        if _counts_along(self, atom, axis):
            # The positions themselves (argsort): known at trace time, so that an argsort of
            # this argsort can see it is a permutation.
            n = permutation.shape[-1]
            moved = np.broadcast_to(np.arange(n, dtype=aval(atom).dtype), permutation.shape)
        else:
            moved = jnp.moveaxis(jnp.asarray(unwrap(value)), axis, -1)[..., None, :]
            moved = jnp.broadcast_to(moved, permutation.shape)
        if floating(aval(atom)):
            outs.append(Live(jnp.moveaxis(expectation(permutation, moved), -1, axis)))
        else:
            cands = (
                np.moveaxis(moved, -2, axis)
                if isinstance(moved, np.ndarray)
                else jnp.moveaxis(moved, -2, axis)
            )
            outs.append(Categorical(cands, jnp.moveaxis(permutation, -2, axis), None))
    return outs


def _permutation_of(keys: Categorical, axis: int) -> jax.Array | None:
    """``P[..., j, i]`` (key ``j`` along ``axis`` is ``i``) when the keys are a relaxed
    permutation of 0..n-1 along ``axis`` (an argsort), else None."""
    if not is_concrete(keys.cands):
        return None
    cands = np.moveaxis(np.asarray(keys.cands), axis, -2)
    n = cands.shape[-2]
    if cands.shape[-1] != n or not np.array_equal(
        cands, np.broadcast_to(np.arange(n), cands.shape)
    ):
        return None
    return jnp.moveaxis(jnp.broadcast_to(keys.probs, keys.cands.shape), axis, -2)


@rule("sort")
def _sort_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    layout = _jaxpr.sort(eqn)
    axis = layout.dimension
    keys = invals[0]
    if isinstance(keys, Categorical) and layout.num_keys == 1:
        permutation = _permutation_of(keys, axis)
        if permutation is not None:
            # Sorting a permutation of 0..n-1 (argsort of an argsort: ranks): the sorted keys are
            # 0..n-1, and the inverse permutation is the transpose.
            self.record(eqn, "the inverse of a relaxed permutation (ranks)")
            n = permutation.shape[-1]
            out = aval(eqn.outvars[0])
            positions = np.arange(n, dtype=out.dtype).reshape(
                [n if d == axis else 1 for d in range(len(out.shape))]
            )
            sorted_keys = np.broadcast_to(positions, out.shape)
            # Rows of the inverse are the columns of P, normalised (SoftSort's columns need
            # not sum to 1).
            inverse = jnp.swapaxes(permutation, -1, -2)
            inverse = inverse / jnp.sum(inverse, axis=-1, keepdims=True)
            return [sorted_keys, *_follow(self, eqn, inverse, axis, invals[1:], eqn.invars[1:])]
    if not live_float_operand(eqn, invals):
        return self.default(eqn, invals)
    if layout.num_keys != 1 or any(is_soft(v) for v in invals):
        raise self.unsupported(
            eqn,
            "it sorts by several keys, or sorts relaxed integers",
            "sort by one float key with sf.sort (return_permutation=True gives the permutation)",
        )
    if any(isinstance(v, Live) and v.mixture is not None and v.mixture.absent for v in invals):
        raise self.unsupported(
            eqn,
            "it sorts values masked with NaN by a relaxed condition (jnp.nanmedian or "
            "jnp.nanquantile of jnp.where(c, x, jnp.nan)): which values are present, and so "
            "the place each sorts to, would be relaxed",
            "keep the mask exact, jnp.where(sf.exact(c), x, jnp.nan), or weigh the values "
            "instead of masking them (jnp.nanmean, jnp.nanmax and jnp.nansum of them are relaxed)",
        )
    x = unwrap(invals[0])
    # A NaN sorts last, as in jnp.sort: it is sorted as inf and the places it ends at are NaN,
    # so that it never mixes with the other values.
    nan = jnp.isnan(x)
    ordered = jnp.where(nan, jnp.array(jnp.inf, x.dtype), x)
    count = jnp.sum(nan, axis=axis, keepdims=True)
    n = x.shape[axis]
    place = np.arange(n).reshape([n if d == axis else 1 for d in range(x.ndim)])
    at_nan = place >= n - count
    options = self.compare_options()
    if len(invals) == 1:
        self.record(eqn, f"sf.sort (method={SORT_METHOD!r})")
        values = cast(jax.Array, _sort.sort(ordered, axis, method=SORT_METHOD, **options))
        values = jnp.where(at_nan, jnp.array(jnp.nan, x.dtype), values)
        return [Live(values, mixture=_places(self, invals[0], ordered, axis))]
    self.record(
        eqn, f"sf.sort with its permutation (method={PERMUTATION_METHOD!r}; others follow it)"
    )
    values, permutation = _sort.sort(
        ordered, axis, return_permutation=True, method=PERMUTATION_METHOD, **options
    )
    values = jnp.where(at_nan, jnp.array(jnp.nan, x.dtype), values)
    return [Live(values), *_follow(self, eqn, permutation, axis, invals[1:], eqn.invars[1:])]


# The most elements of the distributions over the elements at each place of a sorted array
# (n per element): made where a comparison might use them, dropped by XLA where none does.
_MOST_PLACES = 1 << 22


def _places(self: Interpreter, value: Live, ordered, axis: int) -> Mixture | None:
    """What element each place of ``jnp.sort(value)`` holds, as a mixture over the elements with
    SoftSort's probabilities, remembering which element each candidate is: ``x >= jnp.sort(x)[-k]``
    or ``x > jnp.median(x)`` is then exact for the element that is the order statistic."""
    n = ordered.shape[axis]
    if ordered.size * n > _MOST_PLACES:
        return None
    # SoftSort is not defined where infinities meet (inf - inf): such rows take the exact
    # permutation, and SoftSort runs on finite stand-ins there (no NaN in its gradient).
    infinite = jnp.any(jnp.isinf(ordered), axis=axis, keepdims=True)
    finite = jnp.where(infinite, jnp.zeros((), ordered.dtype), ordered)
    _, permutation = _sort.sort(
        finite, axis, return_permutation=True, method=PERMUTATION_METHOD, **self.compare_options()
    )
    order = jnp.moveaxis(jnp.argsort(ordered, axis=axis, stable=True), axis, -1)
    exact = jax.nn.one_hot(order, n, dtype=permutation.dtype)
    infinite = jnp.expand_dims(jnp.moveaxis(infinite, axis, -1), -1)
    probs = jnp.moveaxis(jnp.where(infinite, exact, permutation), -2, axis)
    elements = jnp.expand_dims(jnp.moveaxis(unwrap(value), axis, -1), axis)
    source = _views.origin(value)
    origin = None
    if source is not None:
        index_of = np.expand_dims(np.moveaxis(source.index, axis, -1), axis)
        origin = Origin(source.token, np.broadcast_to(index_of, probs.shape))
    return Mixture(jnp.broadcast_to(elements, probs.shape), probs, None, True, origin)


@rule("top_k")
def _top_k_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``lax.top_k``: :func:`softflow.top_k`, the indices a distribution over the positions."""
    if not live_float_operand(eqn, invals):
        return self.default(eqn, invals)
    layout = _jaxpr.top_k(eqn)
    x = unwrap(invals[0])
    values, index = _sort.top_k(
        x, layout.k, layout.axis, method=SORT_METHOD, **self.compare_options()
    )
    n = x.shape[layout.axis]
    probs = jnp.moveaxis(index, -2, layout.axis)
    cands = np.broadcast_to(np.arange(n, dtype=aval(eqn.outvars[1]).dtype), probs.shape)
    self.record(eqn, f"sf.top_k (method={SORT_METHOD!r}; indices: a distribution)")
    # The k-th value is one of x's elements, with the probabilities of the index: a mixture
    # whose candidates remember which element they are (logits < top_k(logits)[-1] is then
    # exactly False for the element that is the k-th).
    elements = jnp.expand_dims(jnp.moveaxis(x, layout.axis, -1), layout.axis)
    source = _views.origin(invals[0])
    origin = None
    if source is not None:
        index_of = np.expand_dims(np.moveaxis(source.index, layout.axis, -1), layout.axis)
        origin = Origin(source.token, np.broadcast_to(index_of, probs.shape))
    mixture = Mixture(jnp.broadcast_to(elements, probs.shape), probs, None, True, origin)
    return [Live(values, mixture=mixture), Categorical(cands, probs, hard_thunk(eqn, invals)(1))]
