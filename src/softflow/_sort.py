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
from ._checks import as_real_array, check_choice, check_int, is_concrete
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


def _prepare(x, axis, softness, kind, mode, method, descending, *, integers: bool) -> AlongAxis:
    check_choice("method", method, METHODS)
    if not isinstance(descending, bool):
        raise TypeError(f"descending must be a bool; got {descending!r}.")
    return along_axis(x, axis, softness, kind, mode, integers=integers)


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
        softness: :math:`\tau > 0`, float or array broadcasting against ``x`` without ``axis``.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.sort`, and :math:`P` the one-hot of the
            stable :func:`jax.numpy.argsort`) or ``"straight_through"`` (the hard values and
            :math:`P` forward, the gradients of the relaxation only).

    Returns:
        The sorted array (shape and dtype of ``x``); with ``return_permutation=True`` the pair
        ``(sorted, P)``, where ``P`` has the other axes of ``x`` first and then :math:`(n, n)`.

    Raises:
        ValueError: for an unknown method, an axis out of range, or a bad softness.
        TypeError: if ``x`` is not floating.

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


def _quantile_levels(q: ArrayLike, dtype) -> jax.Array:
    q = as_real_array("q", q, allow_bool=False)
    if q.ndim > 1:
        raise ValueError(f"q must be a scalar or a 1-D array; got shape {q.shape}.")
    if is_concrete(q) and not np.all((np.asarray(q) >= 0) & (np.asarray(q) <= 1)):
        raise ValueError(f"q must lie in [0, 1]; got {np.asarray(q).tolist()!r}.")
    return q.astype(dtype)


def _interpolate(sorted_values: jax.Array, q: jax.Array) -> jax.Array:
    """Linear interpolation between order statistics (NumPy's default ``"linear"`` method)."""
    n = sorted_values.shape[-1]
    position = q * (n - 1)
    below = jnp.clip(jnp.floor(position), 0, n - 1)
    fraction = position - below
    below = below.astype(jnp.int32)
    above = jnp.minimum(below + 1, n - 1)
    result = (1 - fraction) * jnp.take(sorted_values, below, axis=-1) + fraction * jnp.take(
        sorted_values, above, axis=-1
    )
    return jnp.moveaxis(result, -1, 0) if q.ndim == 1 else result


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
    :math:`i = \lfloor p \rfloor`:

    .. math:: \mathrm{quantile}(x, q) = (1 - (p - i))\, y_i + (p - i)\, y_{i + 1}

    as :func:`jax.numpy.quantile` with its default ``method="linear"`` (``method`` here chooses the
    sorting network).

    Arguments:
        x: floating array.
        q: level(s) in [0, 1], a scalar or a 1-D array.
        axis: the axis to reduce.
        method: the sorting network, ``"odd_even"`` or ``"bitonic"``.
        softness: :math:`\tau > 0`, float or array (one per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.quantile`) or ``"straight_through"``.

    Returns:
        ``x`` reduced over ``axis``; for a 1-D ``q`` the levels are the first axis.

    Raises:
        ValueError: if ``q`` is outside [0, 1] or has more than one dimension.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> x = jnp.array([4.0, 1.0, 3.0, 2.0])
        >>> sf.quantile(x, jnp.array([0.0, 0.5]), mode="hard")
        Array([1. , 2.5], dtype=float32)
    """
    a = _prepare(x, axis, softness, kind, mode, method, False, integers=False)
    q = _quantile_levels(q, a.dtype)
    return by_mode(
        mode,
        lambda: jnp.quantile(a.values, q, axis=-1),
        lambda: _interpolate(_sorted(a, kind, method, False, False)[0], q),
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
    r"""Soft median along an axis: :func:`quantile` at :math:`q = 1/2`.

    .. math:: \mathrm{median}(x) = \tfrac12 \left(y_{\lfloor (n-1)/2 \rfloor}
        + y_{\lceil (n-1)/2 \rceil}\right), \qquad y = \mathrm{sort}(x)

    Arguments:
        x: floating array.
        axis: the axis to reduce.
        method: ``"odd_even"`` or ``"bitonic"``.
        softness: :math:`\tau > 0`, float or array (one per slice).
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.median`) or ``"straight_through"``.

    Returns:
        ``x`` reduced over ``axis``, in its dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> float(sf.median(jnp.array([5.0, -1.0, 2.0]), softness=0.01))
        2.0
    """
    a = _prepare(x, axis, softness, kind, mode, method, False, integers=False)
    half = jnp.asarray(0.5, a.dtype)
    return by_mode(
        mode,
        lambda: jnp.median(a.values, axis=-1),
        lambda: _interpolate(_sorted(a, kind, method, False, False)[0], half),
        a.softness,
    )
