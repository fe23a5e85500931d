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
operation that made it: :func:`softflow.exact` uses it to keep chosen conditions exact."""

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import is_concrete
from .._select import expectation as finite_expectation
from ._errors import TooManyOutcomes
from ._folds import fold_onto, shared_row


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
    # Exact maps applied since (``jnp.clip(jnp.round(x), 0, 255)``), one integer candidate at a
    # time: the integer conversion then sees the staircase's candidates pushed through them.
    then: Callable[[jax.Array], jax.Array] | None = None
    # Static bounds of the values after those maps (a clip's), so that an integer made from
    # them has a static range under jit as it has on concrete values.
    bounds: tuple[float, float] = (-math.inf, math.inf)


@dataclasses.dataclass(frozen=True, eq=False)
class Clamp:
    """How a live value was clipped by exact bounds: it is ``min(max(source, low), high)`` (a
    bound of None: none). A staircase of it (``jnp.clip(x, 0, 4).astype(int)``) is the staircase
    of ``source`` with its integers clipped to the staircase of the bounds, which is the same for
    every monotone staircase and exact where the clip saturates; the staircase of the clipped
    value itself would sit on a jump there (4.0 cast to an integer: half 3, half 4)."""

    source: jax.Array
    low: Any = None
    high: Any = None


@dataclasses.dataclass(frozen=True, eq=False)
class Live:
    """An exact value that depends on a floating-point input of the relaxed function.

    ``origin`` is known when the value is a view (broadcast, reshape, slice, ...) of another live
    value, so that comparing an element with itself can stay exact (see ``_views``);
    ``staircase`` when it is a relaxed ``floor`` / ``ceil`` / ``round``, ``clamp`` when it is a
    live value clipped by exact bounds. ``mixture`` when it is
    the expectation of a value computed for each candidate of a relaxed integer (a table read at
    a distribution over indices): the candidates' values and probabilities, so that a comparison
    or an integer conversion can act on each candidate (``v > up[mode]`` is the probability over
    the modes, and stays finite where the table holds ``inf``) instead of on the expectation.
    """

    value: jax.Array
    origin: Origin | None = None
    staircase: Staircase | None = None
    mixture: "Mixture | None" = None
    clamp: Clamp | None = None
    bound: Any = None  # the operands of a min / max of two live values (_own_bounds.Bound)
    choices: "Mixture | None" = None  # its case per outcome of what chose it (a where / cond)
    # Piecewise constant in the inputs: made by exact operations from integers or truth values
    # only (jnp.sum(~jnp.isnan(x)) - 1.0), so comparing or rounding it is exact, and staircases,
    # clips and mixtures pass through operations with it as with a constant (see ``varies``).
    discrete: bool = False
    integral: bool = False  # an integer in every outcome: a float count of truth values


@dataclasses.dataclass(frozen=True, eq=False)
class Mixture:
    """The values a float takes for each candidate of a relaxed integer: ``values`` has the float's
    shape plus a last axis of candidates, ``probs`` broadcasts against it (with ``factors`` as in
    :class:`Categorical`); ``live``: whether the values depend on a floating-point input."""

    values: jax.Array | np.ndarray
    probs: jax.Array
    factors: "tuple[Factor, ...] | None"
    live: bool
    # Which element of which source each candidate value is (``index`` of the shape of
    # ``values``), when the candidates are elements of a live value (the k-th largest of
    # ``lax.top_k`` is one of ``x``'s elements): comparing ``x`` with it is then exact where a
    # candidate is the element itself.
    origin: "Origin | None" = None
    # Some outcome is NaN: the element is absent there (jnp.where(c, x, jnp.nan) for a NaN-aware
    # reduction), and the value is the exact program's, not a blend.
    absent: bool = False

    def categorical(self) -> "Categorical":
        return Categorical(self.values, self.probs, None, self.factors)


Thunk = Callable[[], jax.Array] | None


@dataclasses.dataclass(frozen=True)
class SoftBool:
    """A relaxed boolean: ``p`` is the probability of True (a float array of the bool's shape)."""

    p: jax.Array
    hard: Thunk
    given: "Mixture | None" = None  # p per outcome of a relaxed integer that both sides read at


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
    # The independent distributions whose joint outcome the candidates enumerate (their outer
    # product, the first one's outcome varying slowest); None: ``probs`` is one distribution.
    factors: "tuple[Factor, ...] | None" = None
    # Static bounds of candidates that are not known at trace time (``jnp.clip(q + d, 0, 5)``
    # of a traced ``d``), so that a loop can still carry the integer as a distribution; one of
    # them may be infinite (``jnp.maximum(q - d, 0)``, before the clip's upper bound).
    bounds: tuple[float, float] | None = None
    # When the value is an index vector (its components on the axis before the candidates)
    # joined from independently relaxed integers, ``x[floor(u), floor(v)]``: each component's
    # own candidates and probabilities (shape: the value's, that axis left out, plus its own
    # candidates), the joint outcomes being their outer product. A read of a small table can
    # then sum over the table's positions, one factor per axis, instead of reading it at every
    # joint outcome.
    components: tuple[tuple[Any, jax.Array], ...] | None = None
    # Which element of which relaxed integer each element's distribution is, when the value is a
    # view of another one's elements (``i[0]``, a broadcast of ``i``): the token is that one's
    # ``probs``. Two views of the same elements are the same outcomes, not independent ones
    # (``grid[i[0], i[0]]`` reads the diagonal).
    origin: Origin | None = None
    # The expected value when it costs less than the sum over ``probs`` (a count: the sum of
    # its elements' probabilities), so that a program returning it leaves the law unused.
    expected: jax.Array | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Factor:
    """One distribution of independent outcomes, identified by its ``probs`` array.

    ``coarsens`` is set when the distribution was made by merging the outcomes of equal value of
    finer ones (see :func:`distinct`): the finer factors and, for each of their joint outcomes,
    the index of the outcome of this one that it falls into. A value made from the coarse outcome
    can then be joined exactly with values made from the finer ones (in the Game of Life step,
    ``n == 3`` with ``alive & (n == 2)``), instead of as if they were independent.
    """

    probs: jax.Array
    coarsens: "tuple[tuple[Factor, ...], np.ndarray] | None" = None

    @functools.cached_property
    def ancestry(self) -> frozenset[int]:
        """The identities of this factor and of every finer factor it was made from."""
        found = {id(self.probs)}
        if self.coarsens is not None:
            for finer in self.coarsens[0]:
                found |= finer.ancestry
        return frozenset(found)


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


def varies(value) -> bool:
    """Whether ``value`` changes with a floating-point input other than by jumps of integers: a
    relaxed value, or a live float that is not :attr:`Live.discrete`."""
    if isinstance(value, Live):
        return not value.discrete and jnp.issubdtype(jnp.result_type(value.value), jnp.inexact)
    return is_soft(value)


def unwrap(value):
    return value.value if isinstance(value, Live) else value


def default_float() -> np.dtype:
    return np.dtype(jnp.result_type(float))


def floating(aval: Any) -> bool:
    """Whether an abstract value (or a jaxpr variable's) has a floating-point dtype, real or
    complex (blended, not a distribution over values)."""
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def floatify(x, dtype) -> jax.Array:
    """An exact operand next to relaxed ones: booleans and integers as floats of ``dtype``."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return x.astype(dtype)


def expectation(probs: jax.Array, values: jax.Array | np.ndarray) -> jax.Array:
    """The expectation over the candidates (last axis), exact at one-hot probabilities. A
    candidate of probability 0 that is infinite (``x[jnp.argmax(x)]`` with ``x`` holding
    ``log 0``) leaves the derivative finite, as in :func:`softflow._select.expectation`."""
    return finite_expectation(probs.astype(values.dtype), jnp.asarray(values))


def mixed(probs: jax.Array, values, factors=None, *, live: bool) -> Live:
    """The expectation of a float computed for each candidate, remembering the candidates."""
    return Live(expectation(probs, values), mixture=Mixture(values, probs, factors, live))


def bernoulli(value: SoftBool) -> Categorical:
    """A soft truth value as a distribution over False and True (the same one at every use of
    the truth value, so that the values made from it stay joined)."""
    made = value.__dict__.get("_bernoulli")
    if made is None:
        p = value.p
        cands = np.broadcast_to(np.array([False, True]), (*p.shape, 2))
        made = Categorical(cands, jnp.stack([1 - p, p], axis=-1), value.hard)
        object.__setattr__(value, "_bernoulli", made)
    return made


def mean(value) -> jax.Array:
    """The expected value of an integer or boolean as a float array."""
    if isinstance(value, Expected):
        return value.mean
    if isinstance(value, SoftBool):
        return value.p
    if isinstance(value, Categorical):
        if value.expected is not None:
            return value.expected
        dtype = jnp.result_type(value.probs.dtype, default_float())
        if is_concrete(value.cands) and np.shape(value.cands)[-1] <= _FEW_CANDIDATES:
            return _expectation_by_candidate(value.probs, np.asarray(value.cands, dtype))
        return expectation(value.probs, jnp.asarray(value.cands, dtype))
    return jnp.asarray(unwrap(value)).astype(default_float())


# Known candidates up to this many are summed one by one (see _expectation_by_candidate).
_FEW_CANDIDATES = 4


def _expectation_by_candidate(probs: jax.Array, cands: np.ndarray) -> jax.Array:
    """The expectation over a few candidates known at trace time, one slice of ``probs`` per
    nonzero candidate: XLA then reads a truth value's probability of True where it was stacked
    with its complement (a concatenation fused into every consumer costs XLA:CPU about 20 ns an
    element: ``jnp.sum(a != b)`` of relaxed booleans ran 4x slower than its gradient)."""
    total = None
    for k in range(cands.shape[-1]):
        candidate = cands[..., k]
        if not np.any(candidate):
            continue
        term = probs[..., k].astype(cands.dtype)
        term = term if np.all(candidate == 1) else term * candidate
        total = term if total is None else total + term
    if total is None:
        return jnp.zeros(jnp.broadcast_shapes(probs.shape[:-1], cands.shape[:-1]), cands.dtype)
    return jnp.broadcast_to(total, jnp.broadcast_shapes(probs.shape[:-1], cands.shape[:-1]))


def probability(condition) -> jax.Array:
    """A condition (soft or exact truth value) as a probability in the default float dtype."""
    if is_soft(condition):
        return mean(condition)
    return jnp.asarray(unwrap(condition)).astype(default_float())


def _known(x):
    """``x`` as a NumPy array when its values are known at trace time, else as it is."""
    return np.asarray(x) if is_concrete(x) else x


def factors_of(c: Categorical) -> tuple[Factor, ...]:
    return c.factors if c.factors is not None else (Factor(c.probs),)


def categorical_origin(c) -> Origin | None:
    """Which element of which relaxed integer's distribution each element of ``c`` has: its own,
    unless it is a view of another (see :class:`Categorical`); None where ``c`` is not one
    distribution of its own per element (a joint of several, a shared row of probabilities) or
    is too large to follow."""
    if not isinstance(c, Categorical) or own_distribution(c) is not c.probs:
        return None
    if c.origin is not None:
        return c.origin
    shape = np.shape(c.cands)[:-1]
    if np.ndim(c.probs) != len(shape) + 1 or math.prod(shape) > 1 << 22:
        return None
    return Origin(c.probs, np.arange(math.prod(shape), dtype=np.int32).reshape(shape))


def _origin_token(c) -> object | None:
    """The source of :func:`categorical_origin` without its index (cheap to compare)."""
    if not isinstance(c, Categorical) or own_distribution(c) is not c.probs:
        return None
    return c.origin.token if c.origin is not None else c.probs


def _unaliased(categoricals: Sequence) -> list:
    """The categoricals with views of the same elements of one relaxed integer (``i[0]`` taken
    twice) holding the same probabilities, the first view's: merged, they are then one outcome."""
    # Only views that share their source with another one need their elements compared.
    tokens = [_origin_token(c) for c in categoricals]
    shared = {
        id(t)
        for n, t in enumerate(tokens)
        if t is not None and any(u is t for u in tokens[n + 1 :])
    }
    first: dict[tuple, jax.Array] = {}
    result = []
    for c, token in zip(categoricals, tokens, strict=True):
        origin = categorical_origin(c) if id(token) in shared else None
        if origin is not None:
            key = (id(origin.token), origin.index.shape, origin.index.tobytes())
            probs = first.setdefault(key, c.probs)
            if probs is not c.probs and np.shape(probs) == np.shape(c.probs):
                c = dataclasses.replace(c, probs=probs, factors=None)
        result.append(c)
    return result


def _partly_same(a, b) -> np.ndarray | None:
    """Where two views of one relaxed integer are the same element, when they are at some
    positions and not at others (``b[:, None] == b[None, :]``); else None."""
    token = _origin_token(a)
    if token is None or _origin_token(b) is not token:
        return None
    oa, ob = categorical_origin(a), categorical_origin(b)
    if oa is None or ob is None:
        return None
    try:
        same = np.equal(*np.broadcast_arrays(oa.index, ob.index))
    except ValueError:
        return None
    return same if same.any() and not same.all() else None


def _pair_merged(categoricals: Sequence) -> tuple | None:
    """:func:`merge` of two views of one relaxed integer that are the same element at some
    positions only: their outer product where they are different elements, the one outcome
    ``(k, k)`` with its probability where they are the same; as one new distribution."""
    if len(categoricals) != 2:
        return None
    a, b = categoricals
    same = _partly_same(a, b)
    k = np.shape(a.cands)[-1]
    if same is None or np.shape(b.cands)[-1] != k:
        return None
    lead = same.shape
    pa = jnp.broadcast_to(a.probs, (*lead, k))
    pb = jnp.broadcast_to(b.probs, (*lead, k))
    outer = pa[..., :, None] * pb[..., None, :]
    diagonal = pa[..., :, None] * np.eye(k, dtype=bool)
    probs = jnp.where(same[..., None, None], diagonal, outer).reshape((*lead, k * k))
    xp = np if is_concrete(a.cands) and is_concrete(b.cands) else jnp
    ca = xp.broadcast_to(xp.asarray(a.cands)[..., :, None], (*lead, k, k)).reshape((*lead, k * k))
    cb = xp.broadcast_to(xp.asarray(b.cands)[..., None, :], (*lead, k, k)).reshape((*lead, k * k))
    return probs, [ca, cb], (Factor(probs),)


def own_distribution(c: Categorical) -> jax.Array | None:
    """The probabilities of ``c`` when they are one distribution of its own (not a joint of
    several, nor outcomes merged from finer ones), else None."""
    factors = factors_of(c)
    if len(factors) != 1 or factors[0].coarsens is not None:
        return None
    return factors[0].probs


def independent(categoricals: Sequence) -> bool:
    """Whether these are relaxed integers of one distribution each, no two the same: merged,
    their joint outcomes are the outer product of their candidates."""
    entries = _unaliased(categoricals)
    owns = [own_distribution(c) if isinstance(c, Categorical) else None for c in entries]
    return (
        all(p is not None for p in owns)
        and len({id(p) for p in owns}) == len(owns)
        and not any(
            _partly_same(a, b) is not None for n, a in enumerate(entries) for b in entries[n + 1 :]
        )
    )


def joint(factors: Sequence[Factor]) -> jax.Array:
    """The probabilities of the joint outcomes of independent factors (the first one's outcome
    varying slowest)."""
    probs = factors[0].probs
    for f in factors[1:]:
        outer = probs[..., :, None] * f.probs[..., None, :]
        probs = outer.reshape((*outer.shape[:-2], outer.shape[-2] * outer.shape[-1]))
    return probs


def _refine(cands, factors: tuple[Factor, ...], position: int):
    """Candidates over ``factors`` as candidates over the finer factors of factor ``position``
    (None where the shapes do not allow it)."""
    coarse = factors[position]
    assert coarse.coarsens is not None
    finer, outcome_of = coarse.coarsens
    sizes = [f.probs.shape[-1] for f in factors]
    xp = np if isinstance(cands, np.ndarray) else jnp
    lead = cands.shape[:-1]
    try:
        index = np.broadcast_to(outcome_of, (*lead, outcome_of.shape[-1]))
    except ValueError:
        return None
    grid = cands.reshape((*lead, *sizes))
    # The coarse outcome of each fine outcome, on the coarse factor's axis of the grid.
    axis = len(lead) + position
    index = index.reshape((*lead, *(1,) * position, -1, *(1,) * (len(sizes) - position - 1)))
    target = (*lead, *sizes[:position], index.shape[axis], *sizes[position + 1 :])
    grid = xp.take_along_axis(grid, np.broadcast_to(index, target), axis=axis)
    return grid.reshape((*lead, -1)), (*factors[:position], *finer, *factors[position + 1 :])


def _refined(categoricals: Sequence[Categorical]) -> list[Categorical]:
    """The categoricals with their coarse factors refined wherever another one holds a factor
    of the same origin, so that their join is exact."""
    entries = [dataclasses.replace(c, cands=_known(c.cands)) for c in categoricals]
    changed = True
    while changed:
        changed = False
        for n, c in enumerate(entries):
            theirs = [
                (id(g.probs), g.ancestry)
                for m, other in enumerate(entries)
                if m != n
                for g in factors_of(other)
            ]
            factors = factors_of(c)
            for position, f in enumerate(factors):
                if f.coarsens is None:
                    continue
                mine = f.ancestry
                if not any(key != id(f.probs) and mine & seen for key, seen in theirs):
                    continue
                refined = _refine(c.cands, factors, position)
                if refined is not None:
                    cands, finer = refined
                    entries[n] = Categorical(cands, joint(finer), c.hard, finer)
                    changed = True
                    break
    return entries


#: The most joint outcomes of independent relaxed integers that one operation weighs.
MOST_OUTCOMES = 1 << 20


def merge(categoricals: Sequence[Categorical]) -> tuple[jax.Array, list, tuple[Factor, ...]]:
    """The joint probabilities, aligned candidates and factors of several categoricals.

    Categoricals that share a factor (the same distribution, or outcomes merged from the same
    finer ones) are aligned outcome by outcome; distributions without such a link are
    independent (their outer product, the first one's outcome varying slowest).
    """
    pair = _pair_merged(categoricals)
    if pair is not None:
        return pair
    entries = _refined(_unaliased(categoricals))
    # Categoricals linked through a shared factor form one component.
    owner: dict[int, int] = {}
    component = list(range(len(entries)))

    def root(n: int) -> int:
        while component[n] != n:
            n = component[n]
        return n

    for n, c in enumerate(entries):
        for f in factors_of(c):
            if id(f.probs) in owner:
                component[root(n)] = root(owner[id(f.probs)])
            else:
                owner[id(f.probs)] = n
    roots = [root(n) for n in range(len(entries))]
    if len(set(roots)) > 1:
        # Independent distributions multiply their numbers of outcomes: first merge the
        # outcomes of equal value of each categorical that is alone in its component (a rule
        # table's many entries of the same few values, a count's many ways to the same number),
        # so that a chain of lookups or sums does not grow geometrically. The merged outcomes
        # remember their finer ones, so a later join with a relative is still exact.
        entries = [distinct(c) if roots.count(roots[n]) == 1 else c for n, c in enumerate(entries)]
    union: list[Factor] = []
    slot: dict[int, int] = {}
    for c in entries:
        for f in factors_of(c):
            if id(f.probs) not in slot:
                slot[id(f.probs)] = len(union)
                union.append(f)
    sizes = [f.probs.shape[-1] for f in union]
    if math.prod(sizes) > MOST_OUTCOMES:
        raise TooManyOutcomes(math.prod(sizes), MOST_OUTCOMES)
    aligned = [
        _spread(_known(c.cands), [slot[id(f.probs)] for f in factors_of(c)], sizes) for c in entries
    ]
    return joint(union), aligned, tuple(union)


def _spread(cands, slots: list[int], sizes: list[int]):
    """Candidates over some of the factors (in the order of ``slots``) as candidates over all
    of them: repeated along the factors they do not depend on."""
    xp = np if isinstance(cands, np.ndarray) else jnp
    lead = cands.shape[:-1]
    own = cands.reshape((*lead, *(sizes[s] for s in slots)))
    order = sorted(range(len(slots)), key=lambda k: slots[k])
    own = xp.transpose(own, (*range(len(lead)), *(len(lead) + k for k in order)))
    shape = [1] * len(sizes)
    for s in slots:
        shape[s] = sizes[s]
    own = own.reshape((*lead, *shape))
    return xp.broadcast_to(own, (*lead, *sizes)).reshape((*lead, math.prod(sizes)))


def exact_candidates(value) -> Categorical | None:
    """The candidates of a float known exactly for each candidate of a relaxed integer (a relaxed
    ``floor``, an exact table read at a relaxed index), as a distribution; else None."""
    if isinstance(value, Live) and value.mixture is not None and not value.mixture.live:
        return value.mixture.categorical()
    return None


def distinct(c: Categorical) -> Categorical:
    """``c`` with its candidates of equal value merged, when they are known at trace time and
    repeat (the same distribution over fewer candidates, which remembers how its outcomes were
    merged; else ``c`` itself)."""
    if not is_concrete(c.cands):
        return c
    cands = np.asarray(c.cands)
    values = np.unique(cands)
    if values.size >= cands.shape[-1]:
        return c
    probs = jnp.broadcast_to(c.probs, cands.shape)
    outcome_of = np.searchsorted(values, cands)
    row = shared_row(outcome_of)
    if row is not None:
        merged = fold_onto(probs, row, values.size)
    else:
        on = cands[..., :, None] == values  # [..., candidate, value]
        merged = jnp.sum(jnp.where(on, probs[..., None], 0), axis=-2)
    factor = Factor(merged, (factors_of(c), outcome_of))
    return Categorical(np.broadcast_to(values, merged.shape), merged, c.hard, (factor,))


def aval(var) -> Any:
    """The abstract value (shape and dtype) of a jaxpr variable."""
    return var.aval
