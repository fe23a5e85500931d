"""Soft sorting: sort, argsort, rank, top_k, quantile and median.

Two families of relaxations share these functions. Sorting networks (``"odd_even"``,
``"bitonic"``, see :mod:`softflow._network`) blend the two elements of each comparator: their soft
permutation is doubly stochastic, and the values alone cost :math:`O(n)` per layer. SoftSort and
NeuralSort (``"softsort"``, ``"neuralsort"``, see :mod:`softflow._dense_permutation`) build the
permutation as one dense softmax whose rows sum to 1, the fastest way to get it on short axes.
"""

from typing import Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from . import _dense_permutation, _network
from ._checks import (
    as_real_array,
    check_bool,
    check_choice,
    check_int,
    check_unit_interval,
    float_dtype,
)
from ._kinds import Kind
from ._modes import Mode
from ._scope import primitive
from ._select import AlongAxis, along_axis, by_mode

Method = Literal["odd_even", "bitonic", "softsort", "neuralsort"]
METHODS: tuple[str, ...] = get_args(Method)
NETWORKS: tuple[str, ...] = get_args(_network.Method)


def _sorted(
    a: AlongAxis, kind: str, method: str, descending: bool, with_permutation: bool
) -> tuple[jax.Array, jax.Array | None]:
    """The soft sorted values along the last axis and, when asked for, the permutation."""
    x = a.floats()
    if method in NETWORKS:
        values, permutation = _network.sort(x, a.softness, kind, method, with_permutation)
        return _reverse(values, permutation, descending)
    values, permutation = _dense_permutation.sorted_rows(x, a.softness, method, descending)
    return values, permutation if with_permutation else None


def _soft_ranks(a: AlongAxis, kind: str, method: str, descending: bool) -> jax.Array:
    """:math:`\\sum_j j P_{ji}`, normalised by the column sums where they are not 1."""
    x, n = a.floats(), a.size
    positions = np.arange(n)[::-1] if descending else np.arange(n)
    if method in NETWORKS:
        # The row vector of positions times P, run back through the layers: O(n) per layer.
        _, weights = _network.sort_and_weights(x, a.softness, kind, method)
        vector = jnp.asarray(positions, x.dtype)[None]
        return _network.pull_back(weights, vector, x.shape, method)[..., 0, :]
    permutation = _dense_permutation.permutation(x, a.softness, method, descending)
    weighted = jnp.einsum("j,...ji->...i", jnp.arange(n, dtype=x.dtype), permutation)
    total = jnp.sum(permutation, axis=-2)
    # Rounding can leave an element in no row at all (NeuralSort's sums of distances lose the
    # gap between two small values beside a large one): such an element has its exact rank,
    # where the ratio would be 0 / 0.
    exact = jnp.argsort(jnp.argsort(x, axis=-1, stable=True, descending=descending), axis=-1)
    placed = total > 0
    return jnp.where(placed, weighted / jnp.where(placed, total, 1), exact.astype(x.dtype))


def _soft_top_k(a: AlongAxis, kind: str, method: str, k: int) -> tuple[jax.Array, jax.Array]:
    """The first ``k`` values and rows of the descending sort, computing no other row."""
    x, n = a.floats(), a.size
    if method in NETWORKS:
        values, weights = _network.sort_and_weights(x, a.softness, kind, method)
        # Row j of the descending P is row n - 1 - j of the ascending one: e_{n-1-j}^T P.
        unit = jnp.asarray(np.eye(n)[::-1][:k], x.dtype)
        return values[..., ::-1][..., :k], _network.pull_back(weights, unit, x.shape, method)
    return _dense_permutation.sorted_rows(x, a.softness, method, True, rows=k)


def _reverse(values: jax.Array, permutation: jax.Array | None, descending: bool):
    if not descending:
        return values, permutation
    return values[..., ::-1], None if permutation is None else permutation[..., ::-1, :]


def _hard_permutation(a: AlongAxis, descending: bool) -> jax.Array:
    order = jnp.argsort(a.values, axis=-1, stable=True, descending=descending)
    return jax.nn.one_hot(order, a.size, dtype=a.dtype)


def _prepare(
    x, axis, softness, kind, mode, method, descending, *, integers: bool, nonempty: bool = False
) -> AlongAxis:
    check_choice("method", method, METHODS)
    if method not in NETWORKS and kind != "logistic":
        raise ValueError(
            f"method {method!r} is a softmax, the logistic relaxation only: kind must be "
            f"'logistic' with it; got kind={kind!r}. The sorting networks ('odd_even', 'bitonic') "
            "accept every kind."
        )
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
    r"""Sort along an axis with a relaxed sorting network, SoftSort or NeuralSort.

    Every comparator of a sorting network takes a pair :math:`(a, b)` to

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

    ``method="softsort"`` (Prillo & Eisenschlos, 2020) and ``method="neuralsort"`` (Grover et
    al., 2019) build :math:`P` in one dense step instead, each row a softmax over the inputs,

    .. math::
        P^{\mathrm{SoftSort}}_{j i} = \mathrm{softmax}_i\!\left(
            -\frac{|x_{(j)} - x_i|}{\tau}\right), \qquad
        P^{\mathrm{NeuralSort}}_{j i} = \mathrm{softmax}_i\!\left(
            \frac{(2 j + 1 - n)\, x_i - \sum_k |x_i - x_k|}{\tau}\right),

    (:math:`x_{(j)}` the :math:`j`-th smallest element, rows counted from 0), and sorted
    :math:`= P x`. Their rows sum to 1, their columns need not. For two elements both reduce to
    the logistic comparator above with the same :math:`\tau`: that is how their temperature is
    put in softflow's units. They are softmaxes, so they take ``kind="logistic"`` only. They
    are the fastest way to the permutation on short axes (:math:`O(n^2)` per slice, no
    sequence of layers); NeuralSort's sums make an infinite entry give NaN (SoftSort and the
    networks sort infinities).

    Arguments:
        x: floating array.
        axis: the axis to sort along.
        method: ``"odd_even"``, ``"bitonic"``, ``"softsort"`` or ``"neuralsort"`` (see
            :data:`softflow.SORTING_METHODS`).
        descending: sort from largest to smallest (the ascending sort, reversed).
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
        ValueError: for an unknown method, an axis out of range, a bad softness, or a kind
            other than ``"logistic"`` with ``"softsort"`` or ``"neuralsort"``.
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

    For a sorting network a doubly stochastic matrix (rows and columns sum to 1); for
    ``"softsort"`` and ``"neuralsort"`` the rows sum to 1. Row :math:`j` is the soft index of
    the :math:`j`-th smallest element, to be read with :func:`softflow.take`.

    Arguments:
        x: real array (integers are compared exactly in hard mode).
        axis: the axis to sort along.
        method: one of :data:`softflow.SORTING_METHODS`.
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
    :math:`n (n - 1) / 2` and each lies in :math:`[0, n - 1]`. A network's ranks are computed
    without :math:`P`: the row of positions is run back through the layers, each layer's matrix
    being symmetric, in :math:`O(n)` per layer. For ``"softsort"`` and ``"neuralsort"``, whose
    columns need not sum to 1, each column is read as a distribution over the positions:
    :math:`\mathrm{rank}(x)_i = \sum_j j P_{j i} / \sum_j P_{j i}` (in :math:`[0, n - 1]`; the
    sum over a slice is then :math:`n (n - 1) / 2` only in the limits); an element whose column
    rounding leaves empty has its exact rank.

    Arguments:
        x: real array.
        axis: the axis to rank along.
        method: one of :data:`softflow.SORTING_METHODS`.
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
        return _soft_ranks(a, kind, method, descending)

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
    permutation, computed without the other rows (a network runs :math:`k` unit rows back through
    its layers):

    .. math:: \mathrm{values}_j = \sum_i P_{j i}\, x_i, \qquad \mathrm{index}_{j i} = P_{j i},
        \qquad j < k.

    Arguments:
        x: floating array.
        k: how many elements, an int in :math:`[0, n]`.
        axis: the axis to select along.
        method: one of :data:`softflow.SORTING_METHODS`.
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
        return _soft_top_k(a, kind, method, k)

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
    sort), computed as jnp computes it: in the dtype of ``q`` (a Python float is
    float32, or float64 under x64), the result cast to the dtype of ``x``. A slice holding a NaN
    gives NaN. On purpose, an order statistic of weight exactly 0 (:math:`f = 0`) does not reach
    the result: ``quantile([1, inf], 1)`` is inf, where jnp (and so ``mode="hard"``) multiplies
    inf by 0 and gives NaN.

    Arguments:
        x: floating array.
        q: level(s) in [0, 1], a scalar or a 1-D array; a traced ``q`` outside [0, 1] or NaN
            raises at run time (:func:`equinox.error_if`), as a traced softness does.
        axis: the axis to reduce.
        method: one of :data:`softflow.SORTING_METHODS`.
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
        method: one of :data:`softflow.SORTING_METHODS`.
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
