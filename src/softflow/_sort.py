"""Relaxed sorting networks: sort, argsort, rank, top_k, quantile and median.

A sorting network is a fixed sequence of layers of comparators; relaxing each comparator into a
soft (min, max) pair makes the whole network differentiable. Each layer is stored as the partner of
every wire (itself when the wire is idle) and whether the wire receives the minimum, so that one
layer is one gather and a few elementwise operations, and the layers run in a ``lax.scan``.
"""

import functools
import math
from typing import Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._blend import blend
from ._checks import (
    as_real_array,
    check_bool,
    check_choice,
    check_int,
    check_unit_interval,
    float_dtype,
)
from ._compare import scaled
from ._kinds import Kind, step
from ._modes import Mode
from ._scope import primitive
from ._select import AlongAxis, along_axis, by_mode, difference

Method = Literal["odd_even", "bitonic"]
METHODS: tuple[str, ...] = get_args(Method)


def _odd_even_comparators(n: int) -> list[list[tuple[int, int]]]:
    # Odd-even transposition: layer l compares (i, i + 1) for i = l mod 2, l mod 2 + 2, ...
    return [[(i, i + 1) for i in range(layer % 2, n - 1, 2)] for layer in range(n)]


def _bitonic_comparators(n: int) -> list[list[tuple[int, int]]]:
    # Bitonic sort on the next power of two, N = 2**k, with alternating directions. The missing
    # N - n wires are imagined at the top (indices below N - n); a comparator that touches one of
    # them is left out, which sorts every n (checked on all 0-1 inputs, the 0-1 principle).
    # This is the layout of Petersen et al.'s differentiable sorting networks (diffsort).
    k = math.ceil(math.log2(n)) if n > 1 else 0
    pad = 2**k - n
    layers = []
    for block in range(k):
        for stage in range(block + 1):
            distance = 2 ** (block - stage)
            layer = []
            for top in range(2**k):
                if (top // distance) % 2 or top < pad:
                    continue
                low, high = top, top + distance
                if (top // 2 ** (block + 1)) % 2:  # a descending block: the minimum goes down
                    low, high = high, low
                layer.append((low - pad, high - pad))
            layers.append(layer)
    return layers


@functools.cache
def _network(n: int, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(partner, receives_min, order)``: the distinct layers and the sequence they run in.

    ``partner[u, i]`` is the wire that wire ``i`` is compared with in layer ``u`` (``i`` itself
    when idle); ``receives_min[u, i]`` whether it receives the minimum; ``order`` lists the
    distinct layers in the order they run (odd-even transposition has only two).
    """
    comparators = _odd_even_comparators(n) if method == "odd_even" else _bitonic_comparators(n)
    distinct: dict[tuple, int] = {}
    order = [distinct.setdefault(tuple(layer), len(distinct)) for layer in comparators]
    partner = np.tile(np.arange(n, dtype=np.int32), (len(distinct), 1))
    receives_min = np.zeros((len(distinct), n), dtype=bool)
    for layer, u in distinct.items():
        for low, high in layer:
            partner[u, low], partner[u, high] = high, low
            receives_min[u, low] = True
    return partner, receives_min, np.asarray(order, dtype=np.int32)


@jax.custom_jvp
def _exchange(weight_a, weight_b, a, b):
    """``weight_a * a + weight_b * b`` for complementary weights (``weight_b = 1 - weight_a``).

    Exact at one-hot weights and blind to an infinite value of weight 0 (see
    :func:`softflow._blend.blend`). The weights are flat where a value is infinite, and the
    product of that zero slope with the infinite value is taken as its limit, 0: sorting an array
    that holds infinities keeps finite gradients, as :func:`jax.numpy.sort` does.
    """
    return blend((weight_a, weight_b), (a, b))


@_exchange.defjvp
def _exchange_jvp(primals, tangents):
    weight_a, weight_b, a, b = primals
    d_weight_a, _, d_a, d_b = tangents
    out = _exchange(weight_a, weight_b, a, b)
    gap = difference(a, b)
    gap = jnp.where(jnp.isfinite(gap), gap, jnp.zeros((), gap.dtype))
    zero = jnp.zeros((), a.dtype)
    d_out = (
        d_weight_a * gap
        + jnp.where(weight_a == 0, zero, weight_a * d_a)
        + jnp.where(weight_b == 0, zero, weight_b * d_b)
    )
    return out, d_out


def soft_sort(
    x: jax.Array, softness: jax.Array, kind: str, method: str, with_permutation: bool
) -> tuple[jax.Array, jax.Array | None]:
    """Run the relaxed network along the last axis of ``x``; optionally track the permutation.

    Each comparator maps (a, b) to (alpha a + (1 - alpha) b, (1 - alpha) a + alpha b) with
    alpha = s((b - a) / tau), the soft ``less(a, b)``. The permutation matrix is carried only when
    asked for: the values alone cost O(n) per layer, the matrix O(n^2).
    """
    n = x.shape[-1]
    partner, receives_min, order = _network(n, method)
    permutation = None
    if with_permutation:
        permutation = jnp.broadcast_to(jnp.eye(n, dtype=x.dtype), (*x.shape, n))
    if order.size == 0:
        return x, permutation
    partner, receives_min = jnp.asarray(partner), jnp.asarray(receives_min)
    wires = jnp.arange(n, dtype=jnp.int32)

    def layer(carry, u):
        values, perm = carry
        other, is_low = partner[u], receives_min[u]
        paired = other != wires
        opposite = jnp.take(values, other, axis=-1)
        low = jnp.where(is_low, values, opposite)
        high = jnp.where(is_low, opposite, values)
        # Both wires of a comparator compute alpha from the same operands, so it is the same number.
        alpha = step(scaled(difference(high, low), softness), kind)
        weight_low = jnp.where(is_low, alpha, 1 - alpha)
        weight_high = jnp.where(is_low, 1 - alpha, alpha)
        mixed = _exchange(weight_low, weight_high, low, high)
        values = jnp.where(paired, mixed, values)
        if perm is not None:
            rows = jnp.take(perm, other, axis=-2)
            low_rows = jnp.where(is_low[:, None], perm, rows)
            high_rows = jnp.where(is_low[:, None], rows, perm)
            mixed_rows = weight_low[..., None] * low_rows + weight_high[..., None] * high_rows
            perm = jnp.where(paired[:, None], mixed_rows, perm)
        return (values, perm), None

    (x, permutation), _ = jax.lax.scan(layer, (x, permutation), jnp.asarray(order))
    return x, permutation


def _reverse(values: jax.Array, permutation: jax.Array | None, descending: bool):
    if not descending:
        return values, permutation
    return values[..., ::-1], None if permutation is None else permutation[..., ::-1, :]


def _hard_permutation(a: AlongAxis, descending: bool) -> jax.Array:
    order = jnp.argsort(a.values, axis=-1, stable=True, descending=descending)
    return jax.nn.one_hot(order, a.size, dtype=a.dtype)


def _sorted(a: AlongAxis, kind: str, method: str, descending: bool, with_permutation: bool):
    values, permutation = soft_sort(a.floats(), a.softness, kind, method, with_permutation)
    return _reverse(values, permutation, descending)


def _prepare(
    x, axis, softness, kind, mode, method, descending, *, integers: bool, nonempty: bool = False
) -> AlongAxis:
    check_choice("method", method, METHODS)
    check_bool("descending", descending)
    return along_axis(x, axis, softness, kind, mode, integers=integers, nonempty=nonempty)


@primitive
def sort(
    x: ArrayLike,
    axis: int = -1,
    *,
    method: Method = "odd_even",
    descending: bool = False,
    return_permutation: bool = False,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array | tuple[jax.Array, jax.Array]:
    r"""Sort along an axis with a relaxed sorting network.

    Every comparator of the network takes a pair :math:`(a, b)` to

    .. math::
        (\alpha a + (1 - \alpha) b,\; (1 - \alpha) a + \alpha b), \qquad
        \alpha = \mathrm{less}(a, b) = s\!\left(\frac{b - a}{\tau}\right),

    a soft (min, max). ``method="odd_even"`` is odd-even transposition sort: :math:`n` layers,
    layer :math:`l` compares positions :math:`(i, i + 1)` for :math:`i = l \bmod 2,
    l \bmod 2 + 2, \ldots` (:math:`O(n^2)` comparators). ``method="bitonic"`` is bitonic sort
    for any :math:`n` (the network of the next power of two with the comparators that touch the
    missing wires left out): :math:`O(\log^2 n)` layers, :math:`O(n \log^2 n)` comparators, the
    one to use for long axes. The sorted values alone never build the :math:`n \times n`
    permutation; it is computed only with ``return_permutation=True``:
    :math:`P_{\ldots j i}` is the weight of input :math:`i` in output :math:`j`, its rows and
    columns sum to 1, and sorted :math:`= P x`.

    Arguments:
        x: floating array.
        axis: the axis to sort along.
        method: ``"odd_even"`` or ``"bitonic"`` (see :data:`softflow.SORTING_METHODS`).
        descending: sort from largest to smallest (the ascending network, reversed).
        return_permutation: also return :math:`P`.
        softness: :math:`\tau > 0`, float or array broadcasting to ``x`` without ``axis``.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.sort`, and :math:`P` the one-hot of the
            stable :func:`jax.numpy.argsort`) or ``"straight_through"`` (the hard values and
            :math:`P` forward, the gradients of the relaxation only).

    Returns:
        The sorted array (shape and dtype of ``x``); with ``return_permutation=True`` the pair
        ``(sorted, P)``, where ``P`` has the other axes of ``x`` first and then :math:`(n, n)`.

    Raises:
        ValueError: for an unknown method, an axis out of range, or a bad softness.
        TypeError: if ``x`` is not floating, or ``descending`` or ``return_permutation`` is not
            a bool.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> x = jnp.array([3.0, 1.0, 2.0])
        >>> sf.sort(x, softness=0.01)
        Array([1., 2., 3.], dtype=float32)
        >>> values, P = sf.sort(x, method="bitonic", return_permutation=True, mode="hard")
        >>> P
        Array([[0., 1., 0.],
               [0., 0., 1.],
               [1., 0., 0.]], dtype=float32)
    """
    return_permutation = check_bool("return_permutation", return_permutation)
    a = _prepare(x, axis, softness, kind, mode, method, descending, integers=False)

    def hard():
        values = jnp.sort(a.values, axis=-1, descending=descending)
        return (values, _hard_permutation(a, descending)) if return_permutation else (values,)

    def soft():
        values, permutation = _sorted(a, kind, method, descending, return_permutation)
        return (values, permutation) if return_permutation else (values,)

    result = by_mode(mode, hard, soft, a.softness)
    if return_permutation:
        return a.restore(result[0]), result[1]
    return a.restore(result[0])


@primitive
def argsort(
    x: ArrayLike,
    axis: int = -1,
    *,
    method: Method = "odd_even",
    descending: bool = False,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft sorting permutation: the matrix :math:`P` of :func:`sort`.

    .. math:: P_{j i} = \text{weight of input } i \text{ in output } j, \qquad
        \mathrm{sort}(x) = P x

    A doubly stochastic matrix (rows and columns sum to 1); row :math:`j` is the soft index of the
    :math:`j`-th smallest element, to be read with :func:`softflow.take`.

    Arguments:
        x: real array (integers are compared exactly in hard mode).
        axis: the axis to sort along.
        method: ``"odd_even"`` or ``"bitonic"``.
        descending: row 0 is the largest element.
        softness: :math:`\tau > 0`, float or array (one per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (the one-hot of the stable :func:`jax.numpy.argsort`: ties
            keep their order) or ``"straight_through"``.

    Returns:
        :math:`P`, with the other axes of ``x`` first and then :math:`(n, n)`, in the floating
        dtype of ``x`` (the default float dtype for integers).

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> sf.argsort(jnp.array([2.0, 0.0, 1.0]), mode="hard")
        Array([[0., 1., 0.],
               [0., 0., 1.],
               [1., 0., 0.]], dtype=float32)
    """
    a = _prepare(x, axis, softness, kind, mode, method, descending, integers=True)
    return by_mode(
        mode,
        lambda: _hard_permutation(a, descending),
        lambda: _sorted(a, kind, method, descending, True)[1],
        a.softness,
    )


@primitive
def rank(
    x: ArrayLike,
    axis: int = -1,
    *,
    method: Method = "odd_even",
    descending: bool = False,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft rank of each element along an axis (0 = smallest): its expected sorted position.

    .. math:: \mathrm{rank}(x)_i = \sum_j j \, P_{j i}

    with :math:`P` the permutation of :func:`argsort`. The ranks of a slice sum to
    :math:`n (n - 1) / 2` and each lies in :math:`[0, n - 1]`.

    Arguments:
        x: real array.
        axis: the axis to rank along.
        method: ``"odd_even"`` or ``"bitonic"``.
        descending: rank 0 is the largest element.
        softness: :math:`\tau > 0`, float or array (one per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (exact ranks as floats, ties ranked in order of position,
            as by the stable :func:`jax.numpy.argsort`) or ``"straight_through"``.

    Returns:
        Ranks with the shape of ``x``, in its floating dtype (default float for integers).

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> sf.rank(jnp.array([0.5, -1.0, 2.0]), mode="hard")
        Array([1., 0., 2.], dtype=float32)
    """
    a = _prepare(x, axis, softness, kind, mode, method, descending, integers=True)

    def hard():
        order = jnp.argsort(a.values, axis=-1, stable=True, descending=descending)
        return jnp.argsort(order, axis=-1).astype(a.dtype)

    def soft():
        permutation = _sorted(a, kind, method, descending, True)[1]
        positions = jnp.arange(a.size, dtype=a.dtype)
        return jnp.einsum("j,...ji->...i", positions, permutation)

    return a.restore(by_mode(mode, hard, soft, a.softness))


@primitive
def top_k(
    x: ArrayLike,
    k: int,
    axis: int = -1,
    *,
    method: Method = "odd_even",
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> tuple[jax.Array, jax.Array]:
    r"""The :math:`k` largest elements along an axis and their soft indices.

    The first :math:`k` outputs of the descending :func:`sort` and the first :math:`k` rows of its
    permutation:

    .. math:: \mathrm{values}_j = \sum_i P_{j i}\, x_i, \qquad \mathrm{index}_{j i} = P_{j i},
        \qquad j < k.

    Arguments:
        x: floating array.
        k: how many elements, an int in :math:`[0, n]`.
        axis: the axis to select along.
        method: ``"odd_even"`` or ``"bitonic"``.
        softness: :math:`\tau > 0`, float or array (one per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.lax.top_k`, and the one-hot of its indices: ties
            in order of position) or ``"straight_through"``.

    Returns:
        ``(values, index)``: ``values`` has the shape of ``x`` with ``k`` along ``axis``;
        ``index`` has the other axes of ``x`` first and then :math:`(k, n)`, each row a soft
        index summing to 1.

    Raises:
        ValueError: if ``k`` is not in :math:`[0, n]`.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> values, index = sf.top_k(jnp.array([0.0, 5.0, 3.0]), 2, mode="hard")
        >>> values
        Array([5., 3.], dtype=float32)
        >>> index
        Array([[0., 1., 0.],
               [0., 0., 1.]], dtype=float32)
    """
    a = _prepare(x, axis, softness, kind, mode, method, False, integers=False)
    k = check_int("k", k, minimum=0, maximum=a.size)

    def hard():
        values, indices = jax.lax.top_k(a.values, k)
        return values, jax.nn.one_hot(indices, a.size, dtype=a.dtype)

    def soft():
        values, permutation = _sorted(a, kind, method, True, True)
        assert permutation is not None  # asked for with_permutation=True
        return values[..., :k], permutation[..., :k, :]

    values, index = by_mode(mode, hard, soft, a.softness)
    return a.restore(values), index


def _quantile_levels(q: ArrayLike) -> jax.Array:
    """``q`` checked (real, at most 1-D, in [0, 1]), in its own floating dtype.

    jnp.quantile computes in the dtype of ``q`` (a Python float is float32, or float64 under x64)
    and casts the result to the dtype of ``x``; casting ``q`` to the dtype of ``x`` first would
    change the last bits. Integer levels (0 or 1), which jnp refuses, are exact in the default
    float dtype.
    """
    q = as_real_array("q", q, allow_bool=False)
    if q.ndim > 1:
        raise ValueError(f"q must be a scalar or a 1-D array; got shape {q.shape}.")
    if not jnp.issubdtype(q.dtype, jnp.floating):
        q = q.astype(float_dtype(q.dtype))
    return check_unit_interval("q", q)


def _without_nan(a: AlongAxis) -> tuple[jax.Array, jax.Array]:
    """The values of ``a`` with slices holding a NaN set to 0, and where those slices are.

    jnp.quantile and jnp.median give NaN for such a slice; zeroing it before the soft sort keeps
    NaN out of the gradient of the other entries, as jnp's own gradient does.
    """
    has_nan = jnp.any(jnp.isnan(a.values), axis=-1)
    return jnp.where(has_nan[..., None], jnp.zeros((), a.dtype), a.values), has_nan


def _interpolate(sorted_values: jax.Array, q: jax.Array) -> jax.Array:
    r"""jnp.quantile's ``"linear"`` rule on (softly) sorted values, in the dtype of ``q``.

    With :math:`p = q (n - 1)`: :math:`y_{\lfloor p \rfloor} (1 - f) + y_{\lceil p \rceil} f`,
    :math:`f = p - \lfloor p \rfloor`, in the same operations as jnp (so bit for bit the same on
    the same sorted values), except that at :math:`f = 0` the result is
    :math:`y_{\lfloor p \rfloor}` itself: jnp's :math:`\infty \cdot 0` gives NaN there.
    """
    n = sorted_values.shape[-1]
    position = q * (jnp.asarray(n, q.dtype) - 1)
    low, high = jnp.floor(position), jnp.ceil(position)
    high_weight = position - low
    low_weight = 1 - high_weight

    def order_statistic(index):
        index = jnp.clip(index, 0, n - 1).astype(jnp.int32)
        return jnp.take(sorted_values, index, axis=-1).astype(q.dtype)

    y_low, y_high = order_statistic(low), order_statistic(high)
    exact = high_weight == 0
    zero = jnp.zeros((), q.dtype)
    # The mixed branch sees zeros where it is not taken, so that its gradient stays finite there.
    mixed = (
        jnp.where(exact, zero, y_low) * low_weight + jnp.where(exact, zero, y_high) * high_weight
    )
    result = jnp.where(exact, y_low, mixed).astype(sorted_values.dtype)
    return jnp.moveaxis(result, -1, 0) if q.ndim == 1 else result


def _midpoint(sorted_values: jax.Array) -> jax.Array:
    """jnp.median's rule on (softly) sorted values: the mean of the two middle ones.

    jnp computes :math:`(y_i + y_j) / 2` in the dtype of ``x``, which overflows to inf when both
    exceed half the largest float (even for one middle value, :math:`i = j`); here the middle
    value itself, and :math:`y_i / 2 + y_j / 2` where the sum overflows.
    """
    n = sorted_values.shape[-1]
    y_low, y_high = sorted_values[..., (n - 1) // 2], sorted_values[..., n // 2]
    if n % 2:
        return y_low
    half = jnp.asarray(0.5, sorted_values.dtype)
    total = y_low + y_high
    overflow = jnp.isinf(total) & jnp.isfinite(y_low) & jnp.isfinite(y_high)
    return jnp.where(overflow, y_low * half + y_high * half, total * half)


def _soft_order_statistics(a: AlongAxis, kind: str, method: str, rule, *levels) -> jax.Array:
    """``rule`` applied to the softly sorted slices of ``a``; NaN for a slice holding a NaN."""
    values, has_nan = _without_nan(a)
    prepared = AlongAxis(values, a.softness, a.dtype, a.axis_from_end)
    result = rule(_sorted(prepared, kind, method, False, False)[0], *levels)
    return jnp.where(has_nan, jnp.full((), jnp.nan, result.dtype), result)


@primitive
def quantile(
    x: ArrayLike,
    q: ArrayLike,
    axis: int = -1,
    *,
    method: Method = "odd_even",
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft quantile along an axis: linear interpolation between softly sorted values.

    With :math:`y = \mathrm{sort}(x)` (see :func:`sort`), :math:`p = q (n - 1)` and
    :math:`f = p - \lfloor p \rfloor`:

    .. math:: \mathrm{quantile}(x, q) = (1 - f)\, y_{\lfloor p \rfloor}
        + f\, y_{\lceil p \rceil}

    as :func:`jax.numpy.quantile` with its default ``method="linear"`` (``method`` here chooses the
    sorting network), computed as jnp computes it: in the dtype of ``q`` (a Python float is
    float32, or float64 under x64), the result cast to the dtype of ``x``. A slice holding a NaN
    gives NaN. On purpose, an order statistic of weight exactly 0 (:math:`f = 0`) does not reach
    the result: ``quantile([1, inf], 1)`` is inf, where jnp (and so ``mode="hard"``) multiplies
    inf by 0 and gives NaN.

    Arguments:
        x: floating array.
        q: level(s) in [0, 1], a scalar or a 1-D array; a traced ``q`` outside [0, 1] or NaN
            raises at run time (:func:`equinox.error_if`), as a traced softness does.
        axis: the axis to reduce.
        method: the sorting network, ``"odd_even"`` or ``"bitonic"``.
        softness: :math:`\tau > 0`, float or array (one per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.quantile`, bit for bit) or
            ``"straight_through"``.

    Returns:
        ``x`` reduced over ``axis``, in its dtype; for a 1-D ``q`` the levels are the first axis.

    Raises:
        ValueError: if ``q`` is outside [0, 1] or has more than one dimension, or ``axis`` is
            empty.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> x = jnp.array([4.0, 1.0, 3.0, 2.0])
        >>> sf.quantile(x, jnp.array([0.0, 0.5]), mode="hard")
        Array([1. , 2.5], dtype=float32)
    """
    a = _prepare(x, axis, softness, kind, mode, method, False, integers=False, nonempty=True)
    q = _quantile_levels(q)
    return by_mode(
        mode,
        lambda: jnp.quantile(a.values, q, axis=-1),
        lambda: _soft_order_statistics(a, kind, method, _interpolate, q),
        a.softness,
    )


@primitive
def median(
    x: ArrayLike,
    axis: int = -1,
    *,
    method: Method = "odd_even",
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft median along an axis: the midpoint of the two middle softly sorted values.

    .. math:: \mathrm{median}(x) = \tfrac12 \left(y_{\lfloor (n-1)/2 \rfloor}
        + y_{\lceil (n-1)/2 \rceil}\right), \qquad y = \mathrm{sort}(x)

    as :func:`jax.numpy.median` (its ``"midpoint"`` rule, in the dtype of ``x``); a slice holding
    a NaN gives NaN. On purpose, the soft median of an odd number of values is the middle one
    itself, and where the sum of the two middle values overflows their halves are added:
    jnp (and so ``mode="hard"``) overflows to inf beyond half the largest float.

    Arguments:
        x: floating array.
        axis: the axis to reduce.
        method: ``"odd_even"`` or ``"bitonic"``.
        softness: :math:`\tau > 0`, float or array (one per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.median`) or ``"straight_through"``.

    Returns:
        ``x`` reduced over ``axis``, in its dtype.

    Raises:
        ValueError: if ``axis`` is empty.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> float(sf.median(jnp.array([5.0, -1.0, 2.0]), softness=0.01))
        2.0
    """
    a = _prepare(x, axis, softness, kind, mode, method, False, integers=False, nonempty=True)
    return by_mode(
        mode,
        lambda: jnp.median(a.values, axis=-1),
        lambda: _soft_order_statistics(a, kind, method, _midpoint),
        a.softness,
    )
