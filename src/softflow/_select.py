"""Soft selection along an axis: argmax / argmin as soft indices, max / min as their expectations.

Also the plumbing that every operation along an axis shares (validation of the array and the axis,
the softness per slice, dispatch by mode), used by the sorting module as well.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._checks import (
    Softness,
    as_real_array,
    check_choice,
    check_traced_softness,
    float_dtype,
    softness_array,
)
from ._compare import difference, scaled
from ._kinds import KINDS, Kind, step
from ._modes import MODES, Mode, straight_through
from ._scope import primitive


class AlongAxis:
    """An array prepared for an operation along one axis.

    ``values`` has the axis moved last (as given: integers stay integers for the exact hard
    result); ``softness`` has shape ``(..., 1)`` so that it broadcasts against ``values``, whose
    shape it never changes; ``dtype`` is the floating dtype the relaxation runs in.
    """

    def __init__(self, values: jax.Array, softness: Softness, dtype, axis_from_end: int):
        self.values = values
        self.softness = softness
        self.dtype = dtype
        self.axis_from_end = axis_from_end

    @property
    def size(self) -> int:
        return self.values.shape[-1]

    def floats(self) -> jax.Array:
        return self.values.astype(self.dtype)

    def restore(self, out: jax.Array) -> jax.Array:
        """Move the last axis of ``out`` back to where the axis was in the input."""
        return jnp.moveaxis(out, -1, self.axis_from_end)


def check_axis(axis: Any, ndim: int, name: str = "x") -> int:
    """``axis`` as a non-negative int, or a clear error for a non-int or out-of-range axis.

    NumPy integers are accepted (an axis computed with NumPy), bools are not.
    """
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise TypeError(f"axis must be an int; got {axis!r} of type {type(axis).__name__}.")
    axis = int(axis)
    if ndim == 0:
        raise ValueError(f"{name} must have at least one dimension to work along an axis.")
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"axis {axis} is out of bounds for {name} with {ndim} dimension(s): "
            f"expected an int in [{-ndim}, {ndim - 1}]."
        )
    return axis % ndim


def along_axis(
    x: ArrayLike,
    axis: Any,
    softness: ArrayLike,
    kind: str,
    mode: str,
    *,
    integers: bool,
    nonempty: bool = False,
) -> AlongAxis:
    """Validate the common arguments of an operation along ``axis`` of ``x``.

    ``integers`` says whether integer (and boolean) ``x`` is accepted: operations that return
    weights or ranks accept it (compared exactly in hard mode), those that return values of ``x``
    do not, since their soft values are blends that an integer dtype cannot hold. The softness
    broadcasts to the shape of ``x`` without the axis (one softness per slice), never adding axes.
    """
    check_choice("kind", kind, KINDS)
    check_choice("mode", mode, MODES)
    x = as_real_array("x", x, allow_bool=integers)
    if not integers and not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"x must be a floating array; got dtype {x.dtype}. The soft result blends values of "
            "x, which an integer dtype cannot hold: cast x first (for example "
            "x.astype(jnp.float32))."
        )
    axis = check_axis(axis, x.ndim)
    if nonempty and x.shape[axis] == 0:
        raise ValueError(f"x has size 0 along axis {axis}; the operation needs one element.")
    dtype = float_dtype(x.dtype)
    values = jnp.moveaxis(x, axis, -1)
    # A concrete softness stays a NumPy array, so that no run-time check is attached under jit.
    tau = softness_array(
        softness, dtype, values.shape[:-1], slices=f"x without axis {axis}", numpy=True
    )
    return AlongAxis(values, tau[..., None], dtype, axis - x.ndim)


def by_mode(
    mode: str, hard_fn: Callable[[], Any], soft_fn: Callable[[], Any], softness: Softness
) -> Any:
    """The result of ``mode`` from the exact and the relaxed computation (pytrees of arrays).

    Straight-through is applied leaf by leaf; only the mode's computations are traced.
    """
    if mode == "hard":
        result = hard_fn()
    elif mode == "soft":
        result = soft_fn()
    else:
        result = jax.tree_util.tree_map(straight_through, hard_fn(), soft_fn())
    return check_traced_softness(result, softness)


def _weighted_sum(weights: jax.Array, values: jax.Array) -> jax.Array:
    weights, values = jnp.broadcast_arrays(weights, values)
    # Terms of weight 0 are -0.0, the identity of addition, as is the start of the sum: a value of
    # weight 0 does not reach the result even when it is inf or NaN, and a one-hot row gives its
    # value bit for bit (a sum from +0.0 would turn -0.0 into +0.0). One reduction, no search for
    # the one-hot position.
    negative_zero = jnp.array(-0.0, values.dtype)
    terms = jnp.where(weights == 0, negative_zero, weights * values)
    return jax.lax.reduce(terms, negative_zero, _add, (terms.ndim - 1,))


def _add(a: jax.Array, b: jax.Array) -> jax.Array:
    # Not jax.lax.add itself: eager JAX reads lax.reduce(add) from a zero start as jnp.sum, which
    # starts from +0.0 (under jit both are the same reduction from -0.0).
    return a + b


@jax.custom_jvp
def weighted_sum(weights: jax.Array, values: jax.Array) -> jax.Array:
    r""":math:`\sum_i w_i v_i` over the last axis, exact at one-hot weights.

    Values of weight exactly 0 do not reach the result even when they are inf or NaN, and at
    one-hot weights (one weight exactly 1, all others exactly 0) the result is that value bit for
    bit (-0.0 included), as in :func:`softflow._blend.blend`; the derivative with respect to
    :math:`w_i` is :math:`v_i`.
    """
    return _weighted_sum(weights, values)


@weighted_sum.defjvp
def _weighted_sum_jvp(primals, tangents):
    weights, values = primals
    weight_tangent, value_tangent = tangents
    out = weighted_sum(weights, values)
    return out, jnp.sum(weight_tangent * values + weights * value_tangent, axis=-1)


@jax.custom_jvp
def expectation(weights: jax.Array, values: jax.Array) -> jax.Array:
    """:func:`weighted_sum` for weights computed from the values themselves (a soft max).

    Such weights are flat where a value is infinite (the soft index is saturated there), so the
    product of that zero slope with the infinite value is taken as its limit, 0, not as NaN: a
    ``-inf`` used as padding leaves the gradient of the other entries finite.
    """
    return _weighted_sum(weights, values)


@expectation.defjvp
def _expectation_jvp(primals, tangents):
    weights, values = primals
    weight_tangent, value_tangent = tangents
    out = expectation(weights, values)
    finite = jnp.where(jnp.isfinite(values), values, jnp.zeros((), values.dtype))
    hidden = weights == 0  # a value of weight 0 (perhaps inf) moves nothing
    value_part = jnp.where(hidden, jnp.zeros((), values.dtype), weights * value_tangent)
    return out, jnp.sum(weight_tangent * finite + value_part, axis=-1)


def _soft_extreme(weights: jax.Array, values: jax.Array) -> jax.Array:
    """The soft max (min) of ``values`` by their soft argmax (argmin) ``weights``.

    A weight of a softmax that is exactly 0 is at its least, so its tangent is 0 too: such a
    value is left out of the weights' tangent term, where a value far from the others would
    otherwise meet the softmax's backward pass as 0 * (-3e38 - 3e38) = NaN."""
    return expectation(weights, jnp.where(weights == 0, jnp.zeros((), values.dtype), values))


def _log_step(z: jax.Array, kind: str) -> jax.Array:
    """``log s(z)``: -inf where the step is exactly 0, with a zero (not NaN) derivative there."""
    s = step(z, kind)
    positive = s > 0
    log_s = jnp.log(jnp.where(positive, s, jnp.ones((), s.dtype)))
    return jnp.where(positive, log_s, jnp.full((), -jnp.inf, s.dtype))


def soft_argmax(x: jax.Array, softness: Softness, kind: str) -> jax.Array:
    """The soft index of the largest entry along the last axis (see :func:`argmax`)."""
    if kind == "logistic":
        # softmax(x / tau), shifted by the largest entry before the division: x / tau itself
        # overflows for large x and a small softness (3e36 and 1e36 would tie at inf). The shift
        # is 0 between equal infinities, so a slice whose largest entries are +inf, or one that is
        # -inf throughout, is uniform over them (the limit of the ties) instead of NaN.
        top = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
        return jax.nn.softmax(scaled(difference(x, top), softness), axis=-1)
    # Pairwise wins: log w_i = sum_j log s((x_i - x_j) / tau), normalised. The diagonal term is
    # log s(0), the same for every i, so it cancels in the normalisation.
    differences = difference(x[..., :, None], x[..., None, :])
    scores = jnp.sum(_log_step(scaled(differences, softness[..., None]), kind), axis=-1)
    return jax.nn.softmax(scores, axis=-1)


def safe_log(q: jax.Array) -> jax.Array:
    """``log q``, -inf at 0 with a zero (not NaN) derivative there."""
    positive = q > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, q, 1)), -jnp.inf)


#: The most entries along the axis for which :func:`argmax_of_present` weighs every pair
#: (``n * n`` comparisons per slice); above it, each entry is weighed by its probability alone.
PAIRWISE_PRESENCE_LIMIT = 2048


def argmax_of_present(
    x: jax.Array, present: jax.Array, axis: int, *, softness, kind: str, mode: str
) -> jax.Array:
    r"""The soft index of the largest entry of ``x`` along ``axis`` among those present, entry
    :math:`j` present with probability :math:`q_j` (``present``, independently), and index 0
    where none is (as ``jnp.argmax`` of a slice masked throughout by a sentinel; an entry that
    is ``-inf`` is as absent, since it ties with the sentinel). Entry
    :math:`i` wins where it is present and every other entry is absent or loses to it:

    .. math:: w_i \propto q_i \prod_{j \ne i} \bigl(1 - q_j + q_j\, s((x_i - x_j)/τ)\bigr).

    As τ → 0 it is :math:`q_i \prod_{j: x_j > x_i} (1 - q_j)` at any probabilities. Weighing
    entry :math:`i` by :math:`q_i e^{x_i/τ}` instead (a softmax of :math:`x + τ \log q`) lets
    an entry that is almost surely absent, :math:`q = e^{-g/τ}` after a soft argmax took it by
    a margin :math:`g`, tie with the entry :math:`g` below it at every softness. Costs
    :math:`O(n^2)` per slice up to :data:`PAIRWISE_PRESENCE_LIMIT` entries, that softmax above.
    """
    a = along_axis(x, axis, softness, kind, mode, integers=False, nonempty=True)
    q = jnp.moveaxis(jnp.broadcast_to(present, x.shape), axis, -1).astype(a.dtype)

    def hard():
        masked = jnp.where(q == 1, a.values, -jnp.inf)
        return jax.nn.one_hot(jnp.argmax(masked, axis=-1), a.size, dtype=a.dtype)

    def soft():
        tau = jnp.asarray(a.softness, a.dtype)
        winners, nothing = present_winners(a.floats(), q, tau, kind)
        return winners.at[..., 0].add(nothing)

    return a.restore(by_mode(mode, hard, soft, a.softness))


def present_winners(x: jax.Array, q: jax.Array, tau: jax.Array, kind: str) -> tuple:
    """For each entry along the last axis, the probability that it is present and the largest
    present one (see :func:`argmax_of_present`), and the probability that none is present."""
    if x.shape[-1] > 64:  # (its n * n comparisons recomputed for the gradient, not kept)
        return _checkpointed_winners(x, q, tau, kind)
    return _present_winners(x, q, tau, kind)


def _present_winners(x: jax.Array, q: jax.Array, tau: jax.Array, kind: str) -> tuple:
    q = jnp.where(x == -jnp.inf, jnp.zeros((), q.dtype), q)  # ties with the sentinel: absent
    x, n = jnp.where(q == 0, jnp.zeros((), x.dtype), x), x.shape[-1]
    if n > PAIRWISE_PRESENCE_LIMIT:
        nothing = jnp.exp(jnp.sum(safe_log(1 - q), axis=-1))
        return soft_argmax(x + tau * safe_log(q), tau, kind) * (1 - nothing[..., None]), nothing
    beats = step(scaled(difference(x[..., :, None], x[..., None, :]), tau[..., None]), kind)
    q_other = q[..., None, :]
    survives = jnp.where(np.eye(n, dtype=bool), 1, 1 - q_other + q_other * beats)
    scores = safe_log(q) + jnp.sum(safe_log(survives), axis=-1)
    nothing = jnp.sum(safe_log(1 - q), axis=-1, keepdims=True)
    weights = jax.nn.softmax(jnp.concatenate([scores, nothing], axis=-1), axis=-1)
    return weights[..., :n], weights[..., n]


_checkpointed_winners = jax.checkpoint(_present_winners, static_argnums=(3,))


def _hard_argmax(prepared: AlongAxis, pick: Callable) -> jax.Array:
    index = pick(prepared.values, axis=-1)
    return jax.nn.one_hot(index, prepared.size, dtype=prepared.dtype)


@primitive
def argmax(
    x: ArrayLike,
    axis: int = -1,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft index of the largest element along an axis: weights that sum to 1.

    For the logistic kind it is the softmax,

    .. math:: \mathrm{argmax}(x)_i = \frac{e^{x_i/\tau}}{\sum_j e^{x_j/\tau}},

    so that for two elements it equals ``[greater(a, b), less(a, b)]``. For the other kinds it is
    the normalised product of the pairwise soft comparisons won by each element,

    .. math:: \mathrm{argmax}(x)_i = \frac{\prod_j s((x_i - x_j)/\tau)}
        {\sum_k \prod_j s((x_k - x_j)/\tau)},

    which also equals ``[greater(a, b), less(a, b)]`` for two elements, and tends to the one-hot of
    the largest element as :math:`\tau \to 0` (ties share the weight). It costs
    :math:`O(n^2)` per slice, against :math:`O(n)` for the logistic kind. Weights are
    non-negative, sum to 1, and can be read with :func:`softflow.take`. Equal infinities tie like
    equal numbers (a slice that is -inf throughout is uniform). On purpose, a slice holding a NaN
    gives NaN weights in soft mode, where :func:`jax.numpy.argmax` (and hard mode) picks the
    first NaN.

    Arguments:
        x: real array (integers are compared exactly in hard mode).
        axis: the axis to select along.
        softness: :math:`\tau > 0`, a float or an array that broadcasts to the shape of ``x``
            without ``axis`` (one softness per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (the one-hot of :func:`jax.numpy.argmax`: the first index
            among ties) or ``"straight_through"``.

    Returns:
        Weights with the shape of ``x``, in the floating dtype of ``x`` (the default float dtype
        for integer ``x``).

    Raises:
        ValueError: for an axis out of range, an empty axis, or a softness that does not
            broadcast to the shape of ``x`` without ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> sf.argmax(jnp.array([1.0, 3.0, 2.0]), mode="hard")
        Array([0., 1., 0.], dtype=float32)
        >>> [round(float(w), 4) for w in sf.argmax(jnp.array([0.0, 1.0]), softness=0.5)]
        [0.1192, 0.8808]
    """
    a = along_axis(x, axis, softness, kind, mode, integers=True, nonempty=True)
    return a.restore(
        by_mode(
            mode,
            lambda: _hard_argmax(a, jnp.argmax),
            lambda: soft_argmax(a.floats(), a.softness, kind),
            a.softness,
        )
    )


@primitive
def argmin(
    x: ArrayLike,
    axis: int = -1,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft index of the smallest element along an axis: :math:`\mathrm{argmax}(-x)`.

    .. math:: \mathrm{argmin}(x)_i = \frac{e^{-x_i/\tau}}{\sum_j e^{-x_j/\tau}}

    for the logistic kind (``[less(a, b), greater(a, b)]`` for two elements); the other kinds use
    the pairwise form of :func:`argmax` with the comparisons reversed.

    Arguments:
        x: real array.
        axis: the axis to select along.
        softness: :math:`\tau > 0`, float or array (one per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (the one-hot of :func:`jax.numpy.argmin`, first index among
            ties) or ``"straight_through"``.

    Returns:
        Weights with the shape of ``x`` that sum to 1 along ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> sf.argmin(jnp.array([2.0, -1.0, -1.0]), mode="hard")
        Array([0., 1., 0.], dtype=float32)
    """
    a = along_axis(x, axis, softness, kind, mode, integers=True, nonempty=True)
    return a.restore(
        by_mode(
            mode,
            lambda: _hard_argmax(a, jnp.argmin),
            lambda: soft_argmax(-a.floats(), a.softness, kind),
            a.softness,
        )
    )


@primitive
def max(
    x: ArrayLike,
    axis: int = -1,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft maximum along an axis: the expected value of the element picked by :func:`argmax`.

    .. math:: \max(x) = \sum_i \mathrm{argmax}(x)_i \, x_i

    It lies between the mean and the maximum of ``x`` and tends to the maximum as
    :math:`\tau \to 0`. In straight-through mode the forward value is exactly
    :func:`jax.numpy.max` and the gradient is that of the soft maximum only.

    Arguments:
        x: floating array.
        axis: the axis to reduce.
        softness: :math:`\tau > 0`, float or array (one per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.max`) or ``"straight_through"``.

    Returns:
        ``x`` reduced over ``axis``, in its dtype.

    Raises:
        TypeError: if ``x`` is not floating.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> x = jnp.array([0.0, 1.0])
        >>> round(float(sf.max(x, softness=0.5)), 4), float(sf.max(x, mode="hard"))
        (0.8808, 1.0)
    """
    a = along_axis(x, axis, softness, kind, mode, integers=False, nonempty=True)
    return by_mode(
        mode,
        lambda: jnp.max(a.values, axis=-1),
        lambda: _soft_extreme(soft_argmax(a.values, a.softness, kind), a.values),
        a.softness,
    )


@primitive
def min(
    x: ArrayLike,
    axis: int = -1,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft minimum along an axis: the expected value of the element picked by :func:`argmin`.

    .. math:: \min(x) = \sum_i \mathrm{argmin}(x)_i \, x_i

    Arguments:
        x: floating array.
        axis: the axis to reduce.
        softness: :math:`\tau > 0`, float or array (one per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.min`) or ``"straight_through"``.

    Returns:
        ``x`` reduced over ``axis``, in its dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> float(sf.min(jnp.array([3.0, -2.0, 5.0]), softness=0.01))
        -2.0
    """
    a = along_axis(x, axis, softness, kind, mode, integers=False, nonempty=True)
    return by_mode(
        mode,
        lambda: jnp.min(a.values, axis=-1),
        lambda: _soft_extreme(soft_argmax(-a.values, a.softness, kind), a.values),
        a.softness,
    )
