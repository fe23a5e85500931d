"""Elements that are the same element: the exact ties of a relaxed program.

``x[:, None] < x[None, :]`` compares each element of ``x`` with every other one *and with
itself*. The soft comparison of an element with itself is 1/2 at every softness, never the exact
False, and ``jnp.argmax(jnp.stack([x, x, 0.0]))`` ties ``x`` with itself forever where jnp picks
the first. So a live value remembers, through the operations that only move elements
(broadcasts, reshapes, slices, transposes, reversals, concatenations, stacks), which element of
which source each of its elements is (:class:`~._values.Origin`). A comparison of an element with
itself is then evaluated exactly, and a soft argmax gives the mass of a repeated element to its
first occurrence, as jnp breaks ties.

Relaxed integers with a distribution per element are followed the same way: two views of the
same element (``i[0]`` taken twice, or ``grid[i, i]``, whose indices are broadcast separately)
are one outcome, while views of different elements, or relaxed integers of their own, are
independent; an index vector of independent components can be read by summing over a table.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn

from .._checks import is_concrete
from . import _jaxpr
from ._values import Live, Origin, aval, categorical_origin, independent

# Primitives that keep every element of their one operand and only change the shape around it.
RESHAPES = frozenset({"broadcast_in_dim", "reshape", "squeeze", "expand_dims"})
# Primitives that only move the elements of their one operand.
MOVES = RESHAPES | {"transpose", "slice", "rev"}
# Primitives that return their operand's elements as they are, or in another precision.
COPIES = frozenset({"copy", "copy_p", "convert_element_type"})
_MAX_SIZE = 1 << 22  # larger values are not tracked (their index would cost as much memory)
_MAX_ROW = 4096  # argmax ties are looked for along axes of at most this many elements
_FRESH = [1]  # the next negative index for elements that come from nowhere else


def origin(value: Live) -> Origin | None:
    """Where the elements of ``value`` come from: itself, unless it is a view of another."""
    if value.origin is not None:
        return value.origin
    shape = np.shape(value.value)
    if math.prod(shape) > _MAX_SIZE:
        return None
    return Origin(value, np.arange(math.prod(shape), dtype=np.int32).reshape(shape))


def _fresh(shape) -> np.ndarray:
    start = _FRESH[0]
    _FRESH[0] += math.prod(shape)
    return -np.arange(start, _FRESH[0], dtype=np.int32).reshape(shape)


def moved_index(eqn: JaxprEqn, index: np.ndarray) -> np.ndarray:
    if eqn.primitive.name == "convert_element_type":
        return index
    with jax.ensure_compile_time_eval():
        (out,) = _jaxpr.bind(eqn, [jnp.asarray(index)])
    return np.asarray(out)


def moved(eqn: JaxprEqn, invals: list, outs: list) -> list[Live]:
    """The outputs of ``eqn`` on exact values, some of them live, as live values; with their
    origins when ``eqn`` only moves elements of live values."""
    name = eqn.primitive.name
    found = None
    if name in MOVES | COPIES and len(invals) == 1 and len(outs) == 1:
        source = origin(invals[0])
        if source is not None:
            found = Origin(source.token, moved_index(eqn, source.index))
    elif name in ("concatenate", "stack") and len(outs) == 1:
        found = _concatenated(eqn, invals)
    elif name == "select_n" and _nan_filled(invals):
        found = origin(next(v for v in invals[1:] if isinstance(v, Live)))
    if found is not None and found.index.shape != np.shape(outs[0]):
        found = None
    return [Live(out, found) for out in outs]


def _nan_filled(invals: list) -> bool:
    """Whether a select at an exact predicate takes each element from one live value or from
    NaNs (``jnp.where(jnp.isnan(x).any(), jnp.nan, x)``, as ``jnp.quantile`` propagates a NaN):
    its elements are then that value's, or NaNs, which are equal to nothing."""
    cases = invals[1:]
    live = [v for v in cases if isinstance(v, Live)]
    return len(live) == 1 and all(
        is_concrete(v) and bool(np.isnan(np.asarray(v)).all())
        for v in cases
        if not isinstance(v, Live)
    )


def _concatenated(eqn: JaxprEqn, invals: list) -> Origin | None:
    sources = [origin(v) if isinstance(v, Live) else None for v in invals]
    tokens = {id(s.token) for s in sources if s is not None}
    if len(tokens) != 1 or any(
        s is None for s, v in zip(sources, invals, strict=True) if isinstance(v, Live)
    ):
        return None
    token = next(s.token for s in sources if s is not None)
    parts = [
        s.index if s is not None else _fresh(np.shape(v))
        for s, v in zip(sources, invals, strict=True)
    ]
    with jax.ensure_compile_time_eval():
        (out,) = _jaxpr.bind(eqn, [jnp.asarray(p) for p in parts])
    return Origin(token, np.asarray(out))


def same_elements(a, b) -> np.ndarray | None:
    """Where two operands of an elementwise operation are the same element (broadcast shape), or
    None when they never are."""
    if not (isinstance(a, Live) and isinstance(b, Live)):
        return None
    oa, ob = origin(a), origin(b)
    if oa is None or ob is None or oa.token is not ob.token:
        return None
    same = np.equal(*np.broadcast_arrays(oa.index, ob.index))
    return same if same.any() else None


def first_occurrences(value: Live, axis: int) -> np.ndarray | None:
    """For each position along ``axis`` (moved last), the position of the first element that is
    the same element; None when no element repeats along it."""
    source = origin(value)
    if source is None:
        return None
    index = np.moveaxis(source.index, axis, -1)
    n = index.shape[-1]
    if n > _MAX_ROW or index.size * n > _MAX_SIZE:
        return None
    equal = index[..., :, None] == index[..., None, :]
    first = np.argmax(equal, axis=-2)
    return None if np.array_equal(first, np.broadcast_to(np.arange(n), first.shape)) else first


def categorical_view(eqn: JaxprEqn, soft: list, value) -> Origin | None:
    """Where the elements of the result of ``eqn`` come from when it only moves the elements of
    one relaxed integer (a slice, a reshape, a broadcast): see :class:`Categorical`."""
    source = categorical_origin(soft[0]) if eqn.primitive.name in MOVES else None
    if source is None:
        return None
    index = moved_index(eqn, source.index)
    return Origin(source.token, index) if index.shape == np.shape(value)[:-1] else None


def mapped_origin(soft: list, probs) -> Origin | None:
    """A map of one relaxed integer (``i + 1``, ``i < 0 ? i + n : i``) is the same outcome as
    it, element by element: the view's origin when every relaxed operand is that view."""
    origins = [c.origin for c in soft]
    first = origins[0]
    if first is None or probs is not soft[0].probs:
        return None
    for other in origins[1:]:
        if other is None or other.token is not first.token:
            return None
        if not np.array_equal(other.index, first.index):
            return None
    return first


def index_components(eqn: JaxprEqn, invals: list, *, joint: bool) -> tuple | None:
    """Each component's own candidates and probabilities when ``eqn`` joins independently
    relaxed integers into an index vector (``x[floor(u), floor(v)]`` concatenates them on the
    last axis): one relaxed integer per component, each one distribution of its own, so that
    their joint outcomes are the outer product (see :class:`Categorical`)."""
    if eqn.primitive.name != "concatenate" or not joint or not independent(invals):
        return None
    axis = _jaxpr.concatenate_dimension(eqn)
    shape = aval(eqn.outvars[0]).shape
    if axis != len(shape) - 1 or any(np.shape(v.cands)[axis] != 1 for v in invals):
        return None
    return tuple(
        (
            np.squeeze(v.cands, axis) if is_concrete(v.cands) else jnp.squeeze(v.cands, axis),
            jnp.squeeze(jnp.broadcast_to(v.probs, np.shape(v.cands)), axis),
        )
        for v in invals
    )
