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
from ._checks import as_real_array, check_choice, check_int, is_concrete
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
    permutation = _dense_permutation.permutation(x, a.softness, method, descending)
    values = _dense_permutation.expected_values(permutation, x)
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
    return weighted / jnp.sum(permutation, axis=-2)


def _soft_top_k(a: AlongAxis, kind: str, method: str, k: int) -> tuple[jax.Array, jax.Array]:
    """The first ``k`` values and rows of the descending sort, computing no other row."""
    x, n = a.floats(), a.size
    if method in NETWORKS:
        values, weights = _network.sort_and_weights(x, a.softness, kind, method)
        # Row j of the descending P is row n - 1 - j of the ascending one: e_{n-1-j}^T P.
        unit = jnp.asarray(np.eye(n)[::-1][:k], x.dtype)
        return values[..., ::-1][..., :k], _network.pull_back(weights, unit, x.shape, method)
    index = _dense_permutation.permutation(x, a.softness, method, True, rows=k)
    return _dense_permutation.expected_values(index, x), index


def _reverse(values: jax.Array, permutation: jax.Array | None, descending: bool):
    if not descending:
        return values, permutation
    return values[..., ::-1], None if permutation is None else permutation[..., ::-1, :]


def _hard_permutation(a: AlongAxis, descending: bool) -> jax.Array:
    order = jnp.argsort(a.values, axis=-1, stable=True, descending=descending)
    return jax.nn.one_hot(order, a.size, dtype=a.dtype)


def _prepare(x, axis, softness, kind, mode, method, descending, *, integers: bool) -> AlongAxis:
    check_choice("method", method, METHODS)
    if method not in NETWORKS and kind != "logistic":
        raise ValueError(
            f"method {method!r} is a softmax, the logistic relaxation only: kind must be "
            f"'logistic' with it; got kind={kind!r}. The sorting networks ('odd_even', 'bitonic') "
            "accept every kind."
        )
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
        softness: :math:`\tau > 0`, float or array broadcasting against ``x`` without ``axis``.
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
    sum over a slice is then :math:`n (n - 1) / 2` only in the limits).

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
    soft sort).

    Arguments:
        x: floating array.
        q: level(s) in [0, 1], a scalar or a 1-D array.
        axis: the axis to reduce.
        method: one of :data:`softflow.SORTING_METHODS`.
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
        method: one of :data:`softflow.SORTING_METHODS`.
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
