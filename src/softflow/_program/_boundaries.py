"""Soft values crossing the boundary of a ``lax`` control-flow primitive as arrays.

A loop carry, a branch output or a checkpointed function's argument must be an array. Each value
crossing such a boundary gets a :class:`Kind`: ``"dead"`` and ``"live"`` are exact arrays
(independent of / dependent on the floating-point inputs); ``"bool"`` is a soft truth value
carried as its probability; ``"cat"`` a relaxed integer with a small static range ``lo..hi`` (a
mode, a state of a state machine), carried as its probabilities over that range; ``"int"`` any
other relaxed integer, carried as its expected value. The soft ones are in the default float
dtype.

The kinds of a loop's carry are found at their fixed point by tracing the body abstractly: a
value that becomes soft in the body is soft from the first iteration on, and the range of a
``"cat"`` grows until it holds every value the loop can reach (or becomes an ``"int"`` beyond
:data:`MAX_STATES` values).
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import is_concrete
from ._errors import RelaxError, TooManyOutcomes
from ._folds import fold_onto, shared_row
from ._intervals import interval
from ._values import (
    Categorical,
    Expected,
    Live,
    SoftBool,
    bernoulli,
    default_float,
    is_soft,
    mean,
    merge,
    unwrap,
)

#: The most values a relaxed integer may take to be carried as a distribution over them.
MAX_STATES = 64
#: In the plain analysis (see :func:`_escalated`), a range that grows at this many passes in a
#: row is taken to grow without bound: its integer is carried as its expected value.
_GROWING_PASSES = 8


class Kind(NamedTuple):
    """How a value crosses a boundary; ``lo`` / ``hi``: the range of a ``"cat"``, or the known
    range of a ``"dead"`` integer (a constant), so that joining it with a ``"cat"`` keeps it.
    ``saturated``: a ``"cat"`` whose values above ``hi`` are carried as ``hi`` (they behave
    alike in the loop: see :mod:`._saturation`)."""

    name: str
    lo: int | None = None
    hi: int | None = None
    saturated: bool = False

    @property
    def soft(self) -> bool:
        return self.name in ("bool", "int", "cat")


DEAD, LIVE, BOOL, INT = Kind("dead"), Kind("live"), Kind("bool"), Kind("int")
_ORDER = {"dead": 0, "live": 1, "cat": 2, "bool": 3, "int": 3}


def _integer(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.integer)


def _categorical(lo: int, hi: int) -> Kind:
    return Kind("cat", lo, hi) if hi - lo + 1 <= MAX_STATES else INT


def kind_of(value, aval) -> Kind:
    if isinstance(value, Categorical) and _integer(aval):
        found = interval(value)
        return INT if found is None else _categorical(*found)
    if is_soft(value):
        return BOOL if aval.dtype == jnp.bool_ else INT
    if isinstance(value, Live):
        return LIVE
    found = interval(value) if _integer(aval) else None
    return DEAD if found is None else Kind("dead", *found)


def _union(a: Kind, b: Kind) -> tuple[int, int] | None:
    """The range holding both kinds' ranges, if both are known."""
    if a.lo is None or a.hi is None or b.lo is None or b.hi is None:
        return None
    return min(a.lo, b.lo), max(a.hi, b.hi)


def join(a: Kind, b: Kind) -> Kind:
    """The kind that can carry values of both kinds."""
    names = {a.name, b.name}
    if names == {"dead"}:
        both = _union(a, b)
        return DEAD if both is None else Kind("dead", *both)
    if "cat" in names and names <= {"cat", "dead", "live"}:
        # An exact integer joining a distribution must be one of its values: its range must be
        # known (a constant); else only the expectation can carry both.
        both = _union(a, b) if "live" not in names else None
        return INT if both is None else _categorical(*both)
    return a if _ORDER[a.name] >= _ORDER[b.name] else b


def encode(value, kind: Kind, aval) -> jax.Array | np.ndarray:
    exact = kind.name == "dead" and not is_soft(value) and not isinstance(value, Live)
    if exact and is_concrete(value):
        return np.asarray(value)  # known at trace time: a loop's states keep a static range
    if kind.name in ("dead", "live"):
        return jnp.asarray(unwrap(value))
    if kind.name != "cat":
        return mean(value).astype(default_float())
    assert kind.lo is not None and kind.hi is not None
    states = np.arange(kind.lo, kind.hi + 1)
    if kind.saturated:  # values above hi are carried as hi
        value = _capped(value, kind.hi)
    if isinstance(value, Categorical):
        probs = jnp.broadcast_to(value.probs, value.cands.shape).astype(default_float())
        row = shared_row(np.asarray(value.cands)) if is_concrete(value.cands) else None
        if row is not None:
            return fold_onto(probs, row - kind.lo, states.size)
        on = jnp.asarray(value.cands)[..., :, None] == states  # [..., candidate, state]
        return jnp.sum(jnp.where(on, probs[..., None], 0), axis=-2)
    return (jnp.asarray(unwrap(value))[..., None] == states).astype(default_float())


def _capped(value, top: int):
    """An integer (exact or a distribution) with its values above ``top`` replaced by ``top``."""
    if isinstance(value, Categorical):
        xp = np if is_concrete(value.cands) else jnp
        return dataclasses.replace(
            value, cands=xp.minimum(value.cands, top), components=None, expected=None
        )
    if isinstance(value, Live):
        return Live(jnp.minimum(unwrap(value), top))
    return np.minimum(value, top) if is_concrete(value) else jnp.minimum(value, top)


def decode(x, kind: Kind, aval):
    if kind.name == "dead":
        return x
    if kind.name == "live":
        return Live(x)
    if kind.name == "bool":
        return SoftBool(x, None)
    if kind.name == "int":
        return Expected(x, None)
    assert kind.lo is not None and kind.hi is not None
    states = np.arange(kind.lo, kind.hi + 1, dtype=aval.dtype)
    return Categorical(np.broadcast_to(states, x.shape), x, None)


def encode_all(values, kinds, avals, *, joint: bool = False) -> list:
    """Each value as an array; with ``joint``, a loop's small relaxed integers as one joint
    distribution (see :func:`joint_group`)."""
    group = joint_group(kinds, avals) if joint else ()
    arrays = [
        None if i in group else encode(v, k, a)
        for i, (v, k, a) in enumerate(zip(values, kinds, avals, strict=True))
    ]
    if group:
        members = [(values[i], kinds[i]) for i in group]
        arrays[group[0]] = _encode_joint(members)
        for i in group[1:]:
            arrays[i] = np.zeros(0, default_float())  # (carried in the first one's array)
    return arrays


def decode_all(arrays, kinds, avals, *, joint: bool = False) -> list:
    """The values of :func:`encode_all`'s arrays."""
    group = joint_group(kinds, avals) if joint else ()
    values = [
        None if i in group else decode(x, k, a)
        for i, (x, k, a) in enumerate(zip(arrays, kinds, avals, strict=True))
    ]
    if group:
        probs = arrays[group[0]]
        sizes = [_states(kinds[i]) for i in group]
        grid = np.indices(sizes).reshape(len(group), -1)
        for axis, i in enumerate(group):
            cands = (grid[axis] + _lowest(kinds[i])).astype(avals[i].dtype)
            # Sharing one ``probs``, the members are the same outcomes: joined candidate by
            # candidate wherever they meet.
            values[i] = Categorical(np.broadcast_to(cands, np.shape(probs)), probs, None)
    return values


#: The most joint values of a loop's small relaxed integers carried as one distribution. The
#: body then runs on every joint value, also those the loop cannot reach: a stack machine's
#: program counter and stack pointer (10 x 23 values, a few pairs reachable) ran 15x slower
#: carried together, for the same result.
MAX_JOINT_STATES = 128


def _states(kind: Kind) -> int:
    if kind.name == "bool":
        return 2
    assert kind.lo is not None and kind.hi is not None
    return kind.hi - kind.lo + 1


def _lowest(kind: Kind) -> int:
    return 0 if kind.name == "bool" else kind.lo  # type: ignore[return-value]


def joint_group(kinds, avals) -> tuple[int, ...]:
    """The carries of a loop whose joint distribution it carries: its scalar relaxed integers of
    small range (``"cat"``) and truth values, when there are two or more, one an integer, and
    their joint values are at most :data:`MAX_JOINT_STATES`. Carried one by one, they would
    come back independent at each step: the length of the current run and of the longest run
    so far are not, nor a trigger's state and its count of switches."""
    group = _small_integers(kinds, avals)
    return group if _joint_states(kinds, group) <= MAX_JOINT_STATES else ()


def carried_apart(kinds, avals) -> int | None:
    """The number of joint values of a loop's small relaxed integers and truth values, where
    there are too many (more than :data:`MAX_JOINT_STATES`) to carry them as one distribution:
    each is then carried on its own, independent of the others at every step; else None."""
    states = _joint_states(kinds, _small_integers(kinds, avals))
    return states if states > MAX_JOINT_STATES else None


def _small_integers(kinds, avals) -> tuple[int, ...]:
    """The scalar relaxed integers of small range and truth values, where there are two or more
    and one is an integer."""
    group = tuple(
        i
        for i, (k, a) in enumerate(zip(kinds, avals, strict=True))
        if k.name in ("cat", "bool") and a.shape == ()
    )
    if len(group) < 2 or not any(kinds[i].name == "cat" for i in group):
        return ()
    return group


def _joint_states(kinds, group: tuple[int, ...]) -> int:
    return math.prod(_states(kinds[i]) for i in group) if group else 0


def _encode_joint(members: list) -> jax.Array:
    """The joint distribution of scalar integers (exact or relaxed) over the grid of their kinds'
    ranges, the first one's value varying slowest."""
    sizes = [_states(k) for _, k in members]
    total = math.prod(sizes)
    values = [
        _capped(v, k.hi) if k.saturated else bernoulli(v) if isinstance(v, SoftBool) else v
        for v, k in members
    ]
    relaxed = [v for v in values if isinstance(v, Categorical)]
    try:
        probs, aligned, _ = merge(relaxed) if relaxed else (jnp.ones(1), [], ())
    except TooManyOutcomes:  # (then as if they were independent)
        marginals = [
            encode(v, Kind("cat", _lowest(k), _lowest(k) + _states(k) - 1), None)
            for v, (_, k) in zip(values, members, strict=True)
        ]
        joint = marginals[0]
        for marginal in marginals[1:]:
            joint = (joint[:, None] * marginal[None, :]).reshape(-1)
        return jnp.asarray(joint)
    probs = jnp.reshape(probs, (-1,)).astype(default_float())
    outcome = iter(aligned)
    target = np.zeros((), np.int64)
    for v, (_, k), stride in zip(values, members, _strides(sizes), strict=True):
        c = next(outcome) if isinstance(v, Categorical) else unwrap(v)
        c = np.asarray(c) if is_concrete(c) else jnp.asarray(c)
        c = c.astype(np.int64 if is_concrete(c) else jnp.int32)
        target = target + (c - _lowest(k)) * stride
    target = np.broadcast_to(target, probs.shape) if is_concrete(target) else target
    if is_concrete(target) and probs.size * total <= 1 << 16:
        return fold_onto(probs, np.asarray(target), total)
    # (A value out of range, which the kinds' fixed point rules out, would be dropped.)
    target = jnp.where(target < 0, total, jnp.broadcast_to(target, probs.shape))
    return jnp.zeros(total, probs.dtype).at[target].add(probs, mode="drop")


def _strides(sizes: list[int]) -> list[int]:
    return [math.prod(sizes[n + 1 :]) for n in range(len(sizes))]


def kinds_after(fn: Callable[[], list], avals) -> list[Kind]:
    """The kinds of the values ``fn`` returns, found by tracing it abstractly."""
    found: list[Any] = []

    def trace():
        values = fn()
        found[:] = [kind_of(v, a) for v, a in zip(values, avals, strict=True)]
        return [jnp.asarray(unwrap(v)) if not is_soft(v) else mean(v) for v in values]

    jax.eval_shape(trace)
    return found


def joined(kinds_a: list[Kind], kinds_b: list[Kind]) -> list[Kind]:
    return [join(a, b) for a, b in zip(kinds_a, kinds_b, strict=True)]


def _widened(kinds: list[Kind], init: list, avals) -> list[Kind]:
    """Kinds at the start of a loop: a "dead" initial value must be carried as any kind the body
    makes of it, its own value included."""
    return [join(k, kind_of(v, a)) for k, v, a in zip(kinds, init, avals, strict=True)]


def _ranges_only(old: list[Kind], new: list[Kind]) -> bool:
    """Whether ``new`` differs from ``old`` only in the ranges of categorical kinds."""
    pairs = zip(old, new, strict=True)
    return all(a.name == b.name and (a == b or a.name == "cat") for a, b in pairs)


def _exact_known(value) -> bool:
    """Whether ``value`` is exact and known at trace time."""
    return not is_soft(value) and not isinstance(value, Live) and is_concrete(value)


def _same_exact(before, after) -> bool:
    """Whether ``after`` is ``before``, an exact value known at trace time, unchanged."""
    if not _exact_known(after):
        return False
    # (Compared as NumPy arrays: a JAX array compared inside a trace would be traced.)
    same = np.asarray(before) == np.asarray(after)
    return np.shape(before) == np.shape(after) and bool(np.all(same))


class _Round:
    """One abstract pass over a loop body, at the carry's current kinds.

    An exact carry is given its initial value, known at trace time, so that what the body makes
    of it stays known (a mode, a state read from a table) -- unless a previous pass saw the body
    change it (a counter ``n + 1``): in the loop it is a different value at each step, so it is
    given as an abstract value, and what the body makes of it is known only by its type.
    """

    def __init__(self, init: list, kinds: list[Kind], avals, varying: list[bool]):
        self.decoded = decode_all(encode_all(init, kinds, avals), kinds, avals)
        self.positions = [
            i for i, (k, v) in enumerate(zip(kinds, varying, strict=True)) if v and k.name == "dead"
        ]
        self.abstract = [
            jax.ShapeDtypeStruct(avals[i].shape, avals[i].dtype) for i in self.positions
        ]

    def state(self, abstract) -> list:
        values = list(self.decoded)
        for i, value in zip(self.positions, abstract, strict=True):
            values[i] = value
        return values

    def changed(self, state: list, after: list) -> list[bool]:
        """Which exact carries known at trace time the body changed."""
        return [
            _exact_known(b) and not _same_exact(b, a) for b, a in zip(state, after, strict=True)
        ]


def _fixed_point(
    one_round: Callable, init: list, avals, steps, promoted=(), *, plain: bool = False
) -> tuple:
    """The kinds of a loop carry at the fixed point of ``one_round(step, kinds)``, which returns
    the kinds joined after one pass of the body, anything else the caller wants back, and which
    exact carries the pass changed. The carries in ``promoted`` start as distributions over
    their initial values. With ``plain``, a range still growing after ``_GROWING_PASSES``
    passes becomes an expected value at once, rather than after ``MAX_STATES`` passes (a
    counter of soft events: its expectation is what the plain analysis carries). Returns the
    kinds, the caller's extra and the varying carries."""
    kinds = [
        _categorical(*interval(v)) if i in promoted else kind_of(v, a)  # type: ignore[misc]
        for i, (v, a) in enumerate(zip(init, avals, strict=True))
    ]
    varying = [False] * len(avals)
    growing = [0] * len(avals)
    rounds = 0
    while True:
        try:
            after, extra, changed = one_round(_Round(init, kinds, avals, varying), kinds)
        except RelaxError as error:
            return kinds, error, varying
        new = _widened(after, init, avals)
        if plain:
            growing = [
                g + 1 if k.name == n.name == "cat" and k != n else 0
                for g, k, n in zip(growing, kinds, new, strict=True)
            ]
            new = [INT if g >= _GROWING_PASSES else n for g, n in zip(growing, new, strict=True)]
        new_varying = [v or c for v, c in zip(varying, changed, strict=True)]
        rounds += 1
        settled = new_varying == varying
        if settled and (
            new == kinds or (steps is not None and rounds > steps and _ranges_only(kinds, new))
        ):
            return kinds, extra, varying
        kinds, varying = new, new_varying


def _escalated(one_round: Callable, init: list, avals, steps, precise: bool) -> tuple[list, Any]:
    """:func:`_fixed_point`; with ``precise``, more precise where the plain analysis leaves an
    integer known only by its expected value (cheap, and enough unless it is used as an index
    or a branch, which relax then analyses again with ``precise``: see ``Interpreter``).

    First the loop's trip count ``steps`` bounds the values its integers reach (a gear that
    shifts up at most once a step). Then an exact integer that the loop changes at every step
    and that ends up known only by its expected value because a relaxed condition chooses it (a
    program counter, a position) is carried as a distribution over its values from the start,
    which keeps it one if its range stays small.
    """

    def promotable(kinds: list[Kind], varying: list[bool]) -> set[int]:
        return {
            i
            for i, (k, v, a) in enumerate(zip(kinds, init, avals, strict=True))
            if varying[i]
            and k == INT
            and _integer(a)
            and _exact_known(v)
            and interval(v) is not None
        }

    kinds, extra, varying = _fixed_point(
        one_round, init, avals, steps if precise else None, plain=not precise
    )
    if not precise:
        if isinstance(extra, RelaxError):
            raise extra
        return kinds, extra
    first = kinds, extra
    promoted: set[int] = set()
    found = promotable(kinds, varying)
    # Promoting one integer can make others that it chooses among distributions too (a stack
    # pointer moved by the instruction at a program counter): promote until none is left.
    while found - promoted:
        promoted |= found
        again, extra_again, varying = _fixed_point(one_round, init, avals, steps, promoted)
        if not isinstance(extra_again, RelaxError):
            return again, extra_again
        found = promotable(again, varying)
    if isinstance(first[1], RelaxError):
        raise first[1]
    return first


def carry_kinds(
    body: Callable,
    init: list,
    avals,
    extra_avals=(),
    *,
    steps: int | None = None,
    precise: bool = False,
) -> tuple[list, list]:
    """Kinds of a loop carry at its fixed point: a value that becomes soft in the body is soft.

    ``body`` returns the next carry followed by other outputs (a scan's ``ys``) of
    ``extra_avals``, whose kinds at the fixed point are returned too. ``steps``: the most times
    the loop runs its body, if known. The ranges after ``r`` rounds hold every value the loop
    reaches in ``r`` steps, so after ``steps`` rounds they hold all the values it reaches (a
    counter of soft events over a scan of 40 steps has the range 0..40, even though its fixed
    point is unbounded); the mass the body would move beyond them is exactly zero. They are used
    with ``precise`` only (see :func:`_escalated`).
    """
    n = len(avals)

    def one_round(step: _Round, kinds: list) -> tuple:
        found: list = []

        def trace(*abstract):
            state = step.state(abstract)
            values = body(state)
            found[:] = [
                [kind_of(v, a) for v, a in zip(values, [*avals, *extra_avals], strict=True)],
                step.changed(state, values[:n]),
            ]
            return [jnp.asarray(unwrap(v)) if not is_soft(v) else mean(v) for v in values]

        jax.eval_shape(trace, *step.abstract)
        after, changed = found
        return joined(kinds, after[:n]), after[n:], changed

    return _escalated(one_round, init, avals, steps, precise)


def exit_loop_kinds(
    body_parts: Callable, init: list, avals, *, steps: int | None = None, precise: bool = False
) -> tuple[list, bool]:
    """:func:`carry_kinds` of a loop with exits in its body (a converted ``break``): a carry is
    soft when it is soft at the end of the body or at an exit; and whether an exit's condition
    is soft. ``body_parts(state)`` returns the exits' conditions, their states and the final
    state."""

    def one_round(step: _Round, kinds: list) -> tuple:
        found: list = []

        def trace(*abstract):
            state = step.state(abstract)
            conds, exits, final = body_parts(state)
            new = list(kinds)
            changed = [False] * len(avals)
            for end in (final, *exits):
                new = joined(new, [kind_of(v, a) for v, a in zip(end, avals, strict=True)])
                changed = [c or d for c, d in zip(changed, step.changed(state, end), strict=True)]
            found[:] = [new, any(is_soft(c) for c in conds), changed]
            return [mean(v) if is_soft(v) else jnp.asarray(unwrap(v)) for v in final]

        jax.eval_shape(trace, *step.abstract)
        return found[0], found[1], found[2]

    return _escalated(one_round, init, avals, steps, precise)
