r"""Counting soft truth values: the exact law of the number of true ones.

Read soft truth values :math:`p_1, \dots, p_n` as the probabilities of *independent* events. Their
number of true ones, :math:`C = \sum_i b_i` with :math:`b_i \sim \mathrm{Bernoulli}(p_i)`, has the
Poisson-binomial law, built event by event: with :math:`q_k` the probability that the events seen
so far hold :math:`k` true ones,

.. math:: q_k \leftarrow q_k (1 - p_i) + q_{k-1} p_i .

Every update is a convex combination of non-negative numbers, so rounding errors do not grow
beyond a few ulps per event (float32 is fine for thousands of events), and 0/1 truth values give
the exact indicator of the count. A question about counts up to :math:`K` needs only
:math:`q_0, \dots, q_K` (O(nK) work); a question about counts near :math:`n` is asked of the
number of *false* ones, :math:`n - C`, whose law is built from :math:`1 - p_i`. Up to eight events
are unrolled (XLA fuses the whole recursion into one pass); more run in a :func:`jax.lax.scan`, so
the compile time does not grow with :math:`n`.

Where the events are not independent (truth values computed from shared inputs), the result is
the law of independent events with the same probabilities, not the law of the count: a
mean-field approximation that keeps each event's probability and forgets their correlations.
"""

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._checks import as_real_array, check_choice, check_int, float_dtype, is_concrete
from ._modes import MODES, Mode, straight_through
from ._scope import primitive
from ._select import check_axis

# Small counts (Life's eight neighbours) are unrolled completely and fuse; longer axes run in a
# scan whose body has a bounded size, so the compile time stays flat in n.
_UNROLL = 8


def _scan_unroll() -> int:
    """Events per step of the scan. On a CPU one: unrolling 8 compiled a gradient over 15 events
    5x slower and ran over 100 events 2x slower (2 cores). On an accelerator each step of a
    loop costs a launch, which unrolling saves."""
    return 1 if jax.default_backend() == "cpu" else _UNROLL


# Laws of fewer counts than this are carried as one array per count, larger ones stacked.
_SEPARATE = 16


def _checked_truth_values(name: str, p: Any) -> jax.Array:
    p = as_real_array(name, p)
    if is_concrete(p):
        # A traced p cannot be checked without a run-time test in every call; soft comparisons
        # never leave [0, 1], so the check is kept to what is known now.
        values = np.asarray(p)
        if values.size and np.any((values < 0) | (values > 1)):
            raise ValueError(
                f"{name} must hold truth values in [0, 1] (probabilities of independent events); "
                f"got values from {np.nanmin(values)} to {np.nanmax(values)}."
            )
    return p


class _Events:
    """Truth values prepared for counting, in the dtype of the work.

    Up to :data:`_UNROLL` events are kept as a list of arrays and counted by an unrolled
    recursion; more are stacked into one array with the counted axis first and counted by a scan
    (``values`` is the list or the array).
    """

    def __init__(self, p: Any, axis: Any):
        if isinstance(p, list | tuple):
            given = [_checked_truth_values(f"p[{i}]", x) for i, x in enumerate(p)]
            try:
                shape = np.broadcast_shapes(*(x.shape for x in given))
            except ValueError:
                shapes = ", ".join(str(x.shape) for x in given)
                raise ValueError(
                    f"the arrays of p must broadcast against each other; got shapes {shapes}."
                ) from None
            check_axis(axis, len(shape) + 1, "jnp.stack(p)")  # the axis they would be stacked on
            self.dtype = float_dtype(*(x.dtype for x in given))
            values = [jnp.broadcast_to(x, shape) for x in given]
        else:
            given = _checked_truth_values("p", p)
            axis = check_axis(axis, given.ndim, "p")
            shape = given.shape[:axis] + given.shape[axis + 1 :]
            self.dtype = float_dtype(given.dtype)
            values = jnp.moveaxis(given, axis, 0)
        # bfloat16 and float16 are counted in float32 and rounded once at the end.
        self.work = jnp.promote_types(self.dtype, jnp.float32)
        self.batch = tuple(shape)
        self.size = len(values)
        self.values: list[jax.Array] | jax.Array
        if self.size <= _UNROLL:
            self.values = [x.astype(self.work) for x in values]
        else:
            stacked = jnp.stack(values) if isinstance(values, list) else values
            self.values = stacked.astype(self.work)

    def read_law(
        self, largest: int, read, *, false_ones: bool = False, beyond: bool = False
    ) -> jax.Array:
        """``read(law)``, law = P(count = 0..largest) of the true (or false) ones, and with
        ``beyond`` one more entry, P(count > largest).

        That entry gathers the mass that leaves the counts kept, so a small upper tail is a sum
        of small numbers, not one minus a number close to 1. The law is a list of arrays (one per
        count) when it is short, else an array with the counts on a last axis; ``largest`` <=
        size. Short lists of events are unrolled, and XLA fuses the recursion and what is read
        from it into one pass over the batch; recomputing that pass in the backward pass
        (checkpoint) is cheaper than storing every partial law.
        """

        def add_event(q, p_i):
            kept = q[: largest + 1]
            moved = [q_k * (1 - p_i) for q_k in kept]
            law = [moved[0], *(moved[k] + kept[k - 1] * p_i for k in range(1, len(kept)))]
            return [*law, q[-1] + kept[-1] * p_i] if beyond else law

        def start():
            ones = jnp.ones(self.batch, self.work)
            return [ones, *(jnp.zeros_like(ones) for _ in range(largest + beyond))]

        if isinstance(self.values, list):

            def law_and_read(items):
                law = start()
                for p_i in items:
                    law = add_event(law, 1 - p_i if false_ones else p_i)
                return read(law)

            return jax.checkpoint(law_and_read)(self.values)

        p = 1 - self.values if false_ones else self.values
        if largest < _SEPARATE:
            # One array per count: every update is an elementwise pass, no shifted copies.
            law = jax.lax.scan(
                lambda q, p_i: (add_event(q, p_i), None), start(), p, unroll=_scan_unroll()
            )[0]
            return read(law)

        def add_event_stacked(q, p_i):
            if not beyond:
                return with_event(q, p_i), None
            return jnp.concatenate([with_event(q[:-1], p_i), q[-1:] + q[-2:-1] * p_i]), None

        law = jnp.zeros((largest + 1 + beyond, *self.batch), self.work).at[0].set(1)
        law = jax.lax.scan(add_event_stacked, law, p, unroll=_scan_unroll())[0]
        return read(jnp.moveaxis(law, 0, -1))

    def hard_count(self) -> jax.Array:
        """The number of truth values above 1/2 (int32, batch shape)."""
        if not isinstance(self.values, list):
            return jnp.sum(self.values > 0.5, axis=0, dtype=jnp.int32)
        return sum(
            ((x > 0.5).astype(jnp.int32) for x in self.values), jnp.zeros(self.batch, jnp.int32)
        )

    def any_nan(self) -> jax.Array:
        """Where (in the batch) the counted values hold a NaN."""
        if not isinstance(self.values, list):
            return jnp.isnan(self.values).any(axis=0)
        has_nan = jnp.zeros(self.batch, bool)
        for x in self.values:
            has_nan = has_nan | jnp.isnan(x)
        return has_nan

    def nan_to_result(self, result: jax.Array) -> jax.Array:
        """``result`` with NaN wherever the counted values hold a NaN (as the soft law has)."""
        has_nan = self.any_nan()
        if result.ndim > has_nan.ndim:  # a law: the counts are a last axis
            has_nan = has_nan[..., None]
        return jnp.where(has_nan, jnp.array(jnp.nan, result.dtype), result)


def with_event(law: jax.Array, p: jax.Array) -> jax.Array:
    """The law of a count (counts on the first axis) after one more independent event that
    happens with probability ``p`` (the batch shape): the count stays, or moves up by one."""
    one_less = jnp.concatenate([jnp.zeros_like(law[:1]), law[:-1]])
    return law * (1 - p) + one_less * p


def _as_array(law: list[jax.Array] | jax.Array) -> jax.Array:
    """A law with the counts on a last axis."""
    return jnp.stack(law, axis=-1) if isinstance(law, list) else law


def _check_mode(mode: Any) -> None:
    check_choice("mode", mode, MODES)


def _check_max_count(max_count: Any) -> int | None:
    return None if max_count is None else check_int("max_count", max_count, minimum=0)


def _by_mode(mode: str, hard_fn, soft_fn) -> jax.Array:
    if mode == "hard":
        return hard_fn()
    if mode == "soft":
        return soft_fn()
    return straight_through(hard_fn(), soft_fn())


@primitive
def count_distribution(
    p: ArrayLike, *, axis: int = -1, max_count: int | None = None, mode: Mode = "soft"
) -> jax.Array:
    r"""The law of the number of true values along an axis: P(count = 0), ..., P(count = K).

    For independent events of probabilities :math:`p_1, \dots, p_n` (the Poisson-binomial law),

    .. math:: P(C = k) = \sum_{|S| = k} \prod_{i \in S} p_i \prod_{i \notin S} (1 - p_i),

    computed by the recursion :math:`q_k \leftarrow q_k (1 - p_i) + q_{k-1} p_i` in
    :math:`O(nK)` (see the module notes). Exact for independent events; for truth values computed
    from shared inputs it is the law of independent events with the same probabilities (a
    mean-field approximation; see :doc:`/concepts`). On 0/1 truth values it is the one-hot of the
    exact count in every mode.

    Arguments:
        p: truth values in [0, 1] (floats, or booleans / integers 0 and 1). Concrete values are
            checked; traced ones are trusted.
        axis: the axis counted over.
        max_count: the largest count :math:`K` whose probability is returned (an int >= 0);
            None for :math:`K = n`. Counts above :math:`n` have probability 0.
        mode: ``"soft"`` (the law above), ``"hard"`` (the one-hot of the number of values above
            1/2: each event read as its more likely outcome) or ``"straight_through"`` (the hard
            value with the soft law's gradient).

    Returns:
        Probabilities of shape ``p.shape`` without ``axis`` plus a last axis of length
        :math:`K + 1`, in the floating dtype of ``p`` (the default float dtype for booleans and
        integers). With :math:`K < n` they sum to :math:`P(C \le K)`. A NaN in ``p`` makes its
        slice NaN.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> sf.count_distribution(jnp.array([0.5, 0.5]))
        Array([0.25, 0.5 , 0.25], dtype=float32)
        >>> sf.count_distribution(jnp.array([1.0, 0.0, 1.0]), max_count=2)
        Array([0., 0., 1.], dtype=float32)
    """
    _check_mode(mode)
    events = _Events(p, axis)
    largest = events.size if max_count is None else check_int("max_count", max_count, minimum=0)
    computed = min(largest, events.size)

    def soft():
        # Counts above n have probability 0.
        return events.read_law(computed, lambda law: _pad_last(_as_array(law), largest - computed))

    def hard():
        one_hot = events.hard_count()[..., None] == jnp.arange(largest + 1)
        return events.nan_to_result(one_hot.astype(events.work))

    return _by_mode(mode, hard, soft).astype(events.dtype)


@primitive
def count_expectation(
    p: ArrayLike | Sequence[ArrayLike],
    values: ArrayLike | Sequence[ArrayLike],
    *,
    axis: int = -1,
    mode: Mode = "soft",
) -> jax.Array:
    r"""The expected value of a function of the number of true values: :math:`E[f(C)]`.

    .. math:: E[f(C)] = \sum_{k=0}^{K} P(C = k)\, f(k), \qquad f(k) = \text{values}[k],

    with :math:`f(k) = 0` for counts above :math:`K` (the last entry of ``values``), and the law
    of :math:`C` from :func:`count_distribution`, built up to :math:`K` only. The values may be
    arrays (one value per count and per slice), so a rule that depends on the count and on
    other quantities is one call: Life's next state, born on 3 live neighbours and surviving on
    2 or 3, is ``count_expectation(neighbours, [0, 0, alive, 1])``. Unlike stacking the law and
    weighting it, the probabilities of the counts are never gathered into one array, which
    keeps XLA's fused code fast. Exact for independent events (see :func:`count_distribution`).

    Arguments:
        p: truth values in [0, 1], as in :func:`count_distribution` (an array counted along
            ``axis``, or a sequence of arrays counted across).
        values: :math:`f(0), \dots, f(K)`: a sequence of numbers or arrays (one per count,
            broadcasting against the slices), or an array with the counts on its last axis.
        axis: the axis counted over.
        mode: ``"soft"`` (the expectation under independence), ``"hard"`` (:math:`f` of the
            number of values above 1/2, exactly) or ``"straight_through"`` (the hard value
            with the soft gradient, also with respect to ``values``).

    Returns:
        The expectation, of the slices' shape broadcast against the values' shapes, in the
        floating dtype of ``p`` and ``values``. A NaN in ``p`` makes its slice NaN.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> p = jnp.array([1.0, 1.0, 0.5, 0.5])
        >>> float(sf.count_expectation(p, [0.0, 0.0, 1.0, 2.0]))  # 1 * P(C=2) + 2 * P(C=3)
        1.25
        >>> float(sf.count_expectation(p, jnp.arange(5.0)))  # the mean count
        3.0
    """
    _check_mode(mode)
    events = _Events(p, axis)
    if isinstance(values, list | tuple):
        given = [as_real_array(f"values[{k}]", v) for k, v in enumerate(values)]
        value_shapes = [v.shape for v in given]
    else:
        array = as_real_array("values", values)
        if array.ndim == 0:
            raise ValueError(
                "values must give f(0), ..., f(K): a sequence, or an array with the counts on its "
                "last axis; got a scalar."
            )
        given = array
        value_shapes = [array.shape[:-1]]
    largest = len(given) - 1 if isinstance(given, list) else given.shape[-1] - 1
    if largest < 0:
        raise ValueError("values must give at least f(0); got none.")
    # The arrays, not their dtypes: Python numbers among the values are weakly typed, and leave
    # the dtype of p as it is (as in jnp).
    dtype = float_dtype(events.dtype, *(given if isinstance(given, list) else [given]))
    work = jnp.promote_types(dtype, jnp.float32)
    try:
        shape = np.broadcast_shapes(events.batch, *value_shapes)
    except ValueError:
        raise ValueError(
            f"values of shapes {value_shapes} (per count) do not broadcast against the shape "
            f"{events.batch} of p without the counted axis."
        ) from None
    computed = min(largest, events.size)  # counts above n have probability 0

    def value(k):
        return (given[k] if isinstance(given, list) else given[..., k]).astype(work)

    def soft():
        def read(law):
            if isinstance(law, list):
                return sum(law[k] * value(k) for k in range(computed + 1))
            if isinstance(given, list):
                weights = [jnp.broadcast_to(value(k), shape) for k in range(computed + 1)]
                return jnp.sum(law * jnp.stack(weights, axis=-1), axis=-1)
            return jnp.sum(law * given[..., : computed + 1].astype(work), axis=-1)

        return jnp.broadcast_to(events.read_law(computed, read), shape)

    def hard():
        count = events.hard_count()
        if isinstance(given, list):
            result = sum(jnp.where(count == k, value(k), 0) for k in range(largest + 1))
        else:
            at = jnp.minimum(count, largest)[..., None]
            picked = jnp.take_along_axis(jnp.broadcast_to(given, (*shape, largest + 1)), at, -1)
            result = jnp.where(count <= largest, picked[..., 0].astype(work), 0)
        return events.nan_to_result(jnp.broadcast_to(result, shape).astype(work))

    return _by_mode(mode, hard, soft).astype(dtype)


def _pad_last(x: jax.Array, extra: int) -> jax.Array:
    return x if extra == 0 else jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])


def _as_count(k: Any) -> np.ndarray | jax.Array:
    """``k`` as a NumPy integer array when its value is known now, else as the traced array."""
    if isinstance(k, bool) or not isinstance(k, jax.Array | np.ndarray | np.generic | int):
        raise TypeError(
            f"k must be an integer or an integer array (a count); got {k!r} of type "
            f"{type(k).__name__}."
        )
    dtype = jnp.result_type(k)
    if not jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_:
        raise TypeError(f"k must be an integer or an integer array (a count); got dtype {dtype}.")
    return np.asarray(k, np.int64) if is_concrete(k) else jnp.asarray(k)


def _pick(law: list[jax.Array] | jax.Array, index, shape: tuple[int, ...], read: str) -> jax.Array:
    """From a law, the index broadcasting to ``shape``: P(count == index) (``read="equal"``),
    P(count <= index) (``"at_most"``) or P(count > index) (``"above"``: the law's entries above
    the index; its last entry holds every count beyond those it keeps)."""
    if isinstance(index, np.ndarray) and index.ndim == 0:
        # A count known now: read it (or add its side) without a one-hot.
        at = int(index)
        part = {"equal": at, "at_most": slice(None, at + 1), "above": slice(at + 1, None)}[read]
        if isinstance(law, list):
            value = law[part] if read == "equal" else sum(law[part])
        else:
            value = law[..., part] if read == "equal" else jnp.sum(law[..., part], -1)
        return jnp.broadcast_to(value, shape)
    law = _as_array(law)
    law = law.reshape((1,) * (len(shape) + 1 - law.ndim) + law.shape)
    index = jnp.broadcast_to(index, shape)[..., None]
    counts = jnp.arange(law.shape[-1])
    chosen = {"equal": index == counts, "at_most": counts <= index, "above": counts > index}[read]
    return jnp.sum(jnp.where(chosen, law, 0), axis=-1)


def _compare(
    name: str,
    p: ArrayLike,
    k: Any,
    axis: Any,
    max_count: Any,
    mode: Any,
    *,
    exactly: bool,
    shift: int,
    complement: bool,
    hard_relation,
) -> jax.Array:
    """P(C == k) (``exactly``) or P(C <= k + shift), or one minus it (``complement``).

    The probability is read from the law of the true ones, or, when that needs fewer entries,
    from the law of the false ones: P(C == k) = P(F == n - k) and P(C <= j) = 1 - P(F <= n - j - 1)
    with F = n - C, which also keeps small upper tails accurate.
    """
    _check_mode(mode)
    max_count = _check_max_count(max_count)
    events = _Events(p, axis)
    k = _as_count(k)
    n = events.size
    try:
        shape = np.broadcast_shapes(events.batch, k.shape)
    except ValueError:
        raise ValueError(
            f"{name}: k of shape {k.shape} does not broadcast against the shape {events.batch} "
            "of p without the counted axis."
        ) from None
    index = k + shift  # the count of P(C == index) or P(C <= index)
    # Counts whose answer needs the law (the others are 0 or 1 whatever p is).
    top = n if exactly else n - 1
    known = isinstance(k, np.ndarray)
    if known:
        needed = index[(index >= 0) & (index <= top)]
        lower = int(needed.max()) if needed.size else -1  # entries of the law of true ones
        upper = int(top - needed.min()) if needed.size else -1  # of false ones
        use_false = upper < lower
        largest = min(lower, upper)
        if max_count is not None and largest > max_count:
            raise ValueError(
                f"{name}: k = {k.tolist()} needs the probabilities of counts up to {largest} "
                f"(of the true or of the false values, of {n}), beyond max_count={max_count}; "
                "raise max_count or leave it None."
            )
    else:
        use_false = False
        largest = top if max_count is None else min(max_count, top)
    at = (n - index - (0 if exactly else 1)) if use_false else index
    # Counts that the law does not hold: 0 or 1 (or, for a traced k, an error below).
    clipped = np.clip(at, 0, max(largest, 0)) if known else jnp.clip(at, 0, max(largest, 0))

    # A side of the law is read as the sum of its own entries while that is below 1/2, else as 1
    # minus the other side: a small tail stays accurate (no 1 - (1 - tail)), and a sum of many
    # entries close to 1 cannot round above it.
    above_wanted = not exactly and (complement != use_false)

    def read(law):
        if exactly:
            return _pick(law, clipped, shape, "equal")
        above = _pick(law, clipped, shape, "above")
        at_most = _pick(law, clipped, shape, "at_most")
        wanted, other = (above, at_most) if above_wanted else (at_most, above)
        return jnp.where(wanted < 0.5, wanted, 1 - other)

    def soft():
        decided = largest < 0  # (whether k alone decides some answers, whatever p is)
        if largest < 0:  # no k needs the law: the answer does not depend on p
            value = jnp.zeros(shape, events.work)
        else:
            value = events.read_law(largest, read, false_ones=use_false, beyond=not exactly)
        if exactly:
            outside = (at < 0) | (at > n)
            decided = decided or not (known and not outside.any())
            value = jnp.where(outside, 0, value) if decided else value
            value = 1 - value if complement else value
        else:
            below, above = at < 0, at >= n
            if not (known and not (below.any() or above.any())):
                # Below every count, C > at surely; at or above n, surely not.
                decided = True
                value = jnp.where(below, above_wanted, jnp.where(above, not above_wanted, value))
        if decided:  # (a NaN in p makes its slice NaN there too, as in the hard count)
            value = jnp.where(events.any_nan(), jnp.array(jnp.nan, value.dtype), value)
        if not known and largest < top:
            # Entries above max_count were not computed: a traced k must not ask for them.
            value = eqx.error_if(
                value,
                ((index > largest) & (index <= top)).any(),
                f"{name}: a traced k asked about a count above max_count={max_count} (with {n} "
                "values along the axis); raise max_count or leave it None.",
            )
        return value

    def hard():
        result = hard_relation(events.hard_count(), jnp.asarray(k)).astype(events.work)
        return events.nan_to_result(jnp.broadcast_to(result, shape))

    return _by_mode(mode, hard, soft).astype(events.dtype)


def _equal(count, k):
    return count == k


@primitive
def count_equal(
    p: ArrayLike,
    k: ArrayLike,
    *,
    axis: int = -1,
    max_count: int | None = None,
    mode: Mode = "soft",
) -> jax.Array:
    r"""Probability that exactly ``k`` of the truth values along an axis are true.

    .. math:: P(C = k), \qquad C = \sum_i b_i, \quad b_i \sim \mathrm{Bernoulli}(p_i)
        \text{ independent,}

    read from :func:`count_distribution` (built up to count :math:`k`, or from the false values
    when :math:`n - k` is smaller). Unlike a soft comparison of the expected count,
    ``equal(sum(p), k)``, it tells a count that is surely :math:`k` from one that is
    :math:`k - 1` or :math:`k + 1` with equal odds, and it is exact on 0/1 truth values in every
    mode. Exact for independent events; for truth values computed from shared inputs it is a
    mean-field approximation (see :func:`count_distribution`).

    Arguments:
        p: truth values in [0, 1] (floats, or booleans / integers 0 and 1). Concrete values are
            checked; traced ones are trusted.
        k: the count, an int or an integer array broadcasting against ``p`` without ``axis``
            (one count per slice); it may be traced. Any integer is accepted: a count below 0 or
            above :math:`n` gives the exact answer.
        axis: the axis counted over.
        max_count: for a traced ``k``, the largest count it may ask about, which bounds the work
            to :math:`O(n K)` with :math:`K` = ``max_count`` (None: :math:`K = n`); a traced
            ``k`` above it raises at run time. A concrete ``k`` sets the work itself; one that
            needs more than ``max_count`` raises when traced.
        mode: ``"soft"`` (the probability under independence), ``"hard"`` (the exact comparison
            of the number of values above 1/2, as a float) or ``"straight_through"`` (the hard
            value with the soft gradient).

    Returns:
        Probabilities of the shape of ``p`` without ``axis``, broadcast against ``k``, in the
        floating dtype of ``p`` (the default float dtype for booleans and integers). A NaN in
        ``p`` makes its slice NaN.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> neighbours = jnp.array([1.0, 1.0, 0.5, 0.5, 0.0])
        >>> float(sf.count_equal(neighbours, 3))  # two sure, and one of two coins
        0.5
        >>> float(sf.count_equal(neighbours, 3, mode="hard"))  # 0.5 reads as false
        0.0
    """
    return _compare(
        "count_equal",
        p,
        k,
        axis,
        max_count,
        mode,
        exactly=True,
        shift=0,
        complement=False,
        hard_relation=_equal,
    )


def _not_equal(count, k):
    return count != k


@primitive
def count_not_equal(
    p: ArrayLike,
    k: ArrayLike,
    *,
    axis: int = -1,
    max_count: int | None = None,
    mode: Mode = "soft",
) -> jax.Array:
    r"""Probability that the number of true values along an axis is not ``k``.

    .. math:: P(C \ne k) = 1 - P(C = k)

    Arguments:
        p, k, axis, max_count, mode: as in :func:`count_equal`.

    Returns:
        Probabilities of the shape of ``p`` without ``axis``, broadcast against ``k``.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> float(sf.count_not_equal(jnp.array([0.5, 0.5]), 1))
        0.5
    """
    return _compare(
        "count_not_equal",
        p,
        k,
        axis,
        max_count,
        mode,
        exactly=True,
        shift=0,
        complement=True,
        hard_relation=_not_equal,
    )


def _less_equal(count, k):
    return count <= k


@primitive
def count_less_equal(
    p: ArrayLike,
    k: ArrayLike,
    *,
    axis: int = -1,
    max_count: int | None = None,
    mode: Mode = "soft",
) -> jax.Array:
    r"""Probability that at most ``k`` of the truth values along an axis are true.

    .. math:: P(C \le k) = \sum_{j \le k} P(C = j)

    Arguments:
        p, k, axis, max_count, mode: as in :func:`count_equal`.

    Returns:
        Probabilities of the shape of ``p`` without ``axis``, broadcast against ``k``.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> float(sf.count_less_equal(jnp.array([0.5, 0.5]), 1))
        0.75
    """
    return _compare(
        "count_less_equal",
        p,
        k,
        axis,
        max_count,
        mode,
        exactly=False,
        shift=0,
        complement=False,
        hard_relation=_less_equal,
    )


def _less(count, k):
    return count < k


@primitive
def count_less(
    p: ArrayLike,
    k: ArrayLike,
    *,
    axis: int = -1,
    max_count: int | None = None,
    mode: Mode = "soft",
) -> jax.Array:
    r"""Probability that fewer than ``k`` of the truth values along an axis are true.

    .. math:: P(C < k) = P(C \le k - 1)

    Arguments:
        p, k, axis, max_count, mode: as in :func:`count_equal`.

    Returns:
        Probabilities of the shape of ``p`` without ``axis``, broadcast against ``k``.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> float(sf.count_less(jnp.array([0.5, 0.5]), 1))
        0.25
    """
    return _compare(
        "count_less",
        p,
        k,
        axis,
        max_count,
        mode,
        exactly=False,
        shift=-1,
        complement=False,
        hard_relation=_less,
    )


def _greater_equal(count, k):
    return count >= k


@primitive
def count_greater_equal(
    p: ArrayLike,
    k: ArrayLike,
    *,
    axis: int = -1,
    max_count: int | None = None,
    mode: Mode = "soft",
) -> jax.Array:
    r"""Probability that at least ``k`` of the truth values along an axis are true.

    .. math:: P(C \ge k) = 1 - P(C \le k - 1)

    A ``k`` close to :math:`n` is answered from the false values,
    :math:`P(C \ge k) = P(n - C \le n - k)`, in :math:`O(n (n - k))` and without cancellation.

    Arguments:
        p, k, axis, max_count, mode: as in :func:`count_equal`.

    Returns:
        Probabilities of the shape of ``p`` without ``axis``, broadcast against ``k``.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> float(sf.count_greater_equal(jnp.array([0.5, 0.5, 1.0]), 2))  # a majority of 3
        0.75
    """
    return _compare(
        "count_greater_equal",
        p,
        k,
        axis,
        max_count,
        mode,
        exactly=False,
        shift=-1,
        complement=True,
        hard_relation=_greater_equal,
    )


def _greater(count, k):
    return count > k


@primitive
def count_greater(
    p: ArrayLike,
    k: ArrayLike,
    *,
    axis: int = -1,
    max_count: int | None = None,
    mode: Mode = "soft",
) -> jax.Array:
    r"""Probability that more than ``k`` of the truth values along an axis are true.

    .. math:: P(C > k) = 1 - P(C \le k)

    Arguments:
        p, k, axis, max_count, mode: as in :func:`count_equal`.

    Returns:
        Probabilities of the shape of ``p`` without ``axis``, broadcast against ``k``.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> float(sf.count_greater(jnp.array([0.5, 0.5]), 0))
        0.75
    """
    return _compare(
        "count_greater",
        p,
        k,
        axis,
        max_count,
        mode,
        exactly=False,
        shift=0,
        complement=True,
        hard_relation=_greater,
    )
