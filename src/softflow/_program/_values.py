"""The values of a relaxed program.

The interpreter tracks every value of the jaxpr in one of five forms:

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
operation that made it, which is what :func:`softflow.exact` uses to keep chosen conditions exact.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import is_concrete
from .._select import weighted_sum


@dataclasses.dataclass(frozen=True, eq=False)
class Origin:
    """Where the elements of a live value come from: ``index`` (of the value's shape) holds, for
    each element, its position in the flattened source ``token`` (a negative index: an element
    that comes from nowhere else, such as a constant concatenated to it). Two elements with the
    same token and index are the same element, whatever the program does to them."""

    token: object
    index: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class Staircase:
    """How a relaxed ``floor`` / ``ceil`` / ``round`` value was made: from ``source``, whose exact
    staircase value is ``exact``, with the jump into ``exact + j`` at ``exact + j + offset``. An
    integer conversion of the value then becomes a distribution over the integers near
    ``exact`` (see ``_steps.staircase_distribution``) rather than a staircase of a staircase."""

    source: jax.Array
    exact: jax.Array
    offset: float


@dataclasses.dataclass(frozen=True, eq=False)
class Live:
    """An exact value that depends on a floating-point input of the relaxed function.

    ``origin`` is known when the value is a view (broadcast, reshape, slice, ...) of another live
    value, so that comparing an element with itself can stay exact (see ``_views``);
    ``staircase`` when it is a relaxed ``floor`` / ``ceil`` / ``round``.
    """

    value: jax.Array
    origin: Origin | None = None
    staircase: Staircase | None = None


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


def is_soft(value) -> bool:
    return isinstance(value, Soft)


def is_live(value) -> bool:
    """Whether ``value`` depends on a floating-point input (exactly or relaxed)."""
    return isinstance(value, Live) or is_soft(value)


def unwrap(value):
    return value.value if isinstance(value, Live) else value


def default_float() -> np.dtype:
    return np.dtype(jnp.result_type(float))


def floating(aval: Any) -> bool:
    """Whether an abstract value (or a jaxpr variable's) has a floating-point dtype."""
    return jnp.issubdtype(aval.dtype, jnp.floating)


def floatify(x, dtype) -> jax.Array:
    """An exact operand next to relaxed ones: booleans and integers as floats of ``dtype``."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return x.astype(dtype)


def expectation(probs: jax.Array, values: jax.Array | np.ndarray) -> jax.Array:
    """The expectation over the candidates (last axis), exact at one-hot probabilities."""
    return weighted_sum(probs.astype(values.dtype), jnp.asarray(values))


def bernoulli(value: SoftBool) -> Categorical:
    """A soft truth value as a distribution over False and True."""
    p = value.p
    shape = (*p.shape, 2)
    cands = np.broadcast_to(np.array([False, True]), shape)
    return Categorical(cands, jnp.stack([1 - p, p], axis=-1), value.hard)


def mean(value) -> jax.Array:
    """The expected value of an integer or boolean as a float array."""
    if isinstance(value, Expected):
        return value.mean
    if isinstance(value, SoftBool):
        return value.p
    if isinstance(value, Categorical):
        dtype = jnp.result_type(value.probs.dtype, default_float())
        return expectation(value.probs, jnp.asarray(value.cands, dtype))
    return jnp.asarray(unwrap(value)).astype(default_float())


def probability(condition) -> jax.Array:
    """A condition (soft or exact truth value) as a probability in the default float dtype."""
    if is_soft(condition):
        return mean(condition)
    return jnp.asarray(unwrap(condition)).astype(default_float())


def _known(x):
    """``x`` as a NumPy array when its values are known at trace time, else as it is."""
    return np.asarray(x) if is_concrete(x) else x


def _tile(x, k: int):
    return np.tile(x, k) if isinstance(x, np.ndarray) else jnp.tile(x, k)


def merge(categoricals: Sequence[Categorical]) -> tuple[jax.Array, list[jax.Array]]:
    """Common probabilities and aligned candidates of several categoricals.

    Categoricals sharing their ``probs`` are one distribution (aligned candidate by candidate);
    the others are independent of each other (their outer product, the first one's candidate
    varying slowest).
    """
    groups: list[tuple[jax.Array, list[int]]] = []
    position: dict[int, int] = {}
    for n, c in enumerate(categoricals):
        if id(c.probs) not in position:
            position[id(c.probs)] = len(groups)
            groups.append((c.probs, []))
        groups[position[id(c.probs)]][1].append(n)
    if len(groups) > 1:
        # Independent distributions multiply their numbers of candidates: first merge the
        # candidates of equal value of each (a rule table's many entries of the same few
        # values), so that a chain of lookups does not grow geometrically. A lone distribution
        # is kept as it is: its probabilities align it with other values of the same outcome.
        categoricals = list(categoricals)
        for g, (_, members) in enumerate(groups):
            if len(members) == 1:
                categoricals[members[0]] = distinct(categoricals[members[0]])
                groups[g] = (categoricals[members[0]].probs, members)
    probs = groups[0][0]
    for group_probs, _ in groups[1:]:
        outer = probs[..., :, None] * group_probs[..., None, :]
        probs = outer.reshape((*outer.shape[:-2], outer.shape[-2] * outer.shape[-1]))
    sizes = [g[0].shape[-1] for g in groups]
    aligned: list[Any] = [None] * len(categoricals)
    for g, (_, members) in enumerate(groups):
        slower, faster = math.prod(sizes[:g]), math.prod(sizes[g + 1 :])
        for n in members:
            # Candidates known at trace time stay NumPy arrays (a loop's states keep a static
            # range).
            cands = _known(categoricals[n].cands).repeat(faster, axis=-1)
            aligned[n] = _tile(cands, slower)
    return probs, aligned


def distinct(c: Categorical) -> Categorical:
    """``c`` with its candidates of equal value merged, when they are known at trace time and
    repeat (the same distribution over fewer candidates; else ``c`` itself)."""
    if not is_concrete(c.cands):
        return c
    cands = np.asarray(c.cands)
    values = np.unique(cands)
    if values.size >= cands.shape[-1]:
        return c
    on = cands[..., :, None] == values  # [..., candidate, value]
    probs = jnp.broadcast_to(c.probs, cands.shape)
    merged = jnp.sum(jnp.where(on, probs[..., None], 0), axis=-2)
    return Categorical(np.broadcast_to(values, merged.shape), merged, c.hard)


def aval(var) -> Any:
    """The abstract value (shape and dtype) of a jaxpr variable."""
    return var.aval
