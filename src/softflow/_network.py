"""Relaxed sorting networks as static butterflies: the sorted values and the soft permutation.

A layer of a sorting network compares disjoint pairs of wires. Every layer used here pairs wire
``j`` with wire ``j + d`` inside consecutive groups of ``2 d`` wires of a span, so one reshape of
the span to ``(groups, 2, d)`` lines each wire up with its partner: a layer is a few elementwise
operations on two halves, with no gather, which XLA compiles into a few fused kernels. Bitonic
sort has :math:`O(\\log^2 n)` distinct layers and is unrolled; odd-even transposition repeats the
same two layers :math:`n / 2` times and runs them in a ``lax.scan``.

Relaxing the comparators makes each layer a matrix :math:`M_l` that mixes each pair by
:math:`\\begin{pmatrix}\\alpha & 1 - \\alpha \\\\ 1 - \\alpha & \\alpha\\end{pmatrix}`, a symmetric
matrix. The values pass returns every layer's :math:`\\alpha`; from them the permutation
:math:`P = M_L \\cdots M_1` follows without comparing anything again, and so does
:math:`v^\\top P = (\\cdots (v^\\top M_L) \\cdots) M_1` for a few vectors :math:`v` (ranks, top-k
rows) in :math:`O(L n)` per vector instead of the :math:`O(L n^2)` of :math:`P`.
"""

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from ._blend import blend
from ._checks import Softness
from ._compare import scaled
from ._kinds import step
from ._select import difference

Method = Literal["odd_even", "bitonic"]


@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """Comparators between wire ``j`` and wire ``j + distance`` of each group of a span.

    The span is wires ``start`` to ``stop - 1``, split into consecutive groups of
    ``2 * distance`` wires. The first wire of a pair receives the minimum, except in the pairs
    marked ``descending``; a pair marked ``skipped`` is not compared (both wires pass unchanged).
    Both masks (bitonic sort only) have shape ``(groups, distance)``, or are None when no entry
    is set.
    """

    start: int
    stop: int
    distance: int
    descending: np.ndarray | None = None
    skipped: np.ndarray | None = None

    @property
    def groups(self) -> int:
        return (self.stop - self.start) // (2 * self.distance)


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """The layers of a network on ``wires`` wires, the first ``padding`` of them imagined.

    ``blocks`` lists, for bitonic sort, the layers of each merge (block ``b`` merges sorted runs
    of :math:`2^b` wires into runs of :math:`2^{b+1}`): until block ``b`` ends, no wire has met a
    wire outside its run of :math:`2^{b+1}`, which is what keeps its permutation block-diagonal.
    Odd-even transposition runs its ``rounds`` of two layers (``layers``: even, odd) in a loop.
    """

    method: str
    size: int
    wires: int
    padding: int
    layers: tuple[Layer, ...]
    blocks: tuple[tuple[Layer, ...], ...] = ()
    rounds: int = 0


@functools.cache
def network(n: int, method: str) -> Network:
    """The network of ``method`` for ``n`` wires."""
    if method == "odd_even":
        # Layer l compares (i, i + 1) for i = l mod 2, l mod 2 + 2, ...: n layers, which are n / 2
        # rounds of (even, odd), and one more even layer when n is odd.
        even = Layer(0, 2 * (n // 2), 1)
        odd = Layer(1, 1 + 2 * ((n - 1) // 2), 1) if n > 1 else Layer(0, 0, 1)
        return Network(method, n, n, 0, (even, odd), rounds=n // 2)
    # Bitonic sort on the next power of two, N = 2**k, with alternating directions. The missing
    # N - n wires are imagined at the top (wires below N - n); a comparator that touches one of
    # them is left out, which sorts every n (checked on all 0-1 inputs, the 0-1 principle). This
    # is the layout of Petersen et al.'s differentiable sorting networks (diffsort).
    k = math.ceil(math.log2(n)) if n > 1 else 0
    wires = 2**k
    padding = wires - n
    blocks = []
    for block in range(k):
        layers = []
        for stage in range(block + 1):
            distance = 2 ** (block - stage)
            groups = wires // (2 * distance)
            top = np.arange(groups)[:, None] * 2 * distance + np.arange(distance)
            # A group of 2d wires lies in a run of 2**(block + 1) that sorts downwards when the
            # run's index is odd (the last block sorts everything upwards).
            descending = ((top >> (block + 1)) & 1).astype(bool)
            skipped = top < padding
            layers.append(
                Layer(
                    0,
                    wires,
                    distance,
                    descending if descending.any() else None,
                    skipped if skipped.any() else None,
                )
            )
        blocks.append(tuple(layers))
    return Network(method, n, wires, padding, tuple(x for b in blocks for x in b), tuple(blocks))


# ----------------------------------------------------------------------------------- one layer
#
# Inside this module an array has its wires on axis -2 and the slices of the batch, flattened, on
# axis -1 (values: (wires, batch)). The two halves of a layer are then contiguous runs of whole
# batch rows, and XLA vectorises every layer along the batch.


def _halves(x: jax.Array, layer: Layer) -> tuple[jax.Array, jax.Array]:
    """The first and second wire of every pair: two arrays ``(..., groups, distance, batch)``."""
    span = x[..., layer.start : layer.stop, :]
    pairs = span.reshape(*x.shape[:-2], layer.groups, 2, layer.distance, x.shape[-1])
    return pairs[..., 0, :, :], pairs[..., 1, :, :]


def _join(x: jax.Array, layer: Layer, first: jax.Array, second: jax.Array) -> jax.Array:
    """``x`` with the pairs of ``layer`` replaced by ``(first, second)``."""
    span = jnp.stack([first, second], axis=-3).reshape(
        *x.shape[:-2], layer.stop - layer.start, x.shape[-1]
    )
    if layer.start == 0 and layer.stop == x.shape[-2]:
        return span
    return jnp.concatenate([x[..., : layer.start, :], span, x[..., layer.stop :, :]], axis=-2)


def _weights(first, second, layer: Layer, softness, kind: str) -> jax.Array:
    """:math:`\\alpha` of every comparator: the weight of each wire's own value in its result.

    :math:`\\alpha = s((\\text{high} - \\text{low}) / \\tau)`, the soft ``less(low, high)``
    of the wire that receives the minimum (low) and the one that receives the maximum (high):
    the first wire of an ascending pair keeps :math:`\\alpha` of its value, the second
    :math:`\\alpha` of its own. A skipped pair has :math:`\\alpha = 1`, which leaves both
    wires as they are.
    """
    gap = difference(second, first)
    if layer.descending is not None:
        gap = jnp.where(layer.descending[..., None], -gap, gap)
    alpha = step(scaled(gap, softness), kind)
    if layer.skipped is not None:
        alpha = jnp.where(layer.skipped[..., None], jnp.ones((), alpha.dtype), alpha)
    return alpha


@jax.custom_jvp
def _compare(alpha, first, second):
    """The soft (low, high) of a pair: ``(alpha a + (1 - alpha) b, (1 - alpha) a + alpha b)``.

    Exact at one-hot weights and blind to an infinite value of weight 0 (see
    :func:`softflow._blend.blend`). :math:`\\alpha` is flat where a value is infinite, and the
    product of that zero slope with the infinite gap is taken as its limit, 0: sorting an array
    that holds infinities keeps finite gradients, as :func:`jax.numpy.sort` does.
    """
    other = 1 - alpha
    return blend((alpha, other), (first, second)), blend((other, alpha), (first, second))


@_compare.defjvp
def _compare_jvp(primals, tangents):
    alpha, first, second = primals
    d_alpha, d_first, d_second = tangents
    out = _compare(alpha, first, second)
    other = 1 - alpha
    gap = difference(first, second)
    gap = jnp.where(jnp.isfinite(gap), gap, jnp.zeros((), gap.dtype))
    zero = jnp.zeros((), first.dtype)
    kept_first = jnp.where(alpha == 0, zero, alpha * d_first)
    kept_second = jnp.where(alpha == 0, zero, alpha * d_second)
    moved_first = jnp.where(other == 0, zero, other * d_first)
    moved_second = jnp.where(other == 0, zero, other * d_second)
    change = d_alpha * gap
    return out, (change + kept_first + moved_second, moved_first + kept_second - change)


def _sort_layer(x, layer: Layer, softness, kind: str) -> tuple[jax.Array, jax.Array]:
    """One layer on the values ``(wires, batch)``: ``(values, alpha)``."""
    first, second = _halves(x, layer)
    alpha = _weights(first, second, layer, softness, kind)
    low, high = _compare(alpha, first, second)
    return _join(x, layer, low, high), alpha


def _mix(rows, layer: Layer, alpha) -> jax.Array:
    """Right-multiply rows (``(..., rows, wires, batch)``) by the layer's matrix of ``alpha``."""
    first, second = _halves(rows, layer)
    # (second + alpha (first - second), first - alpha (first - second)): one product, so the
    # gradient with respect to alpha is one reduction over the rows.
    moved = alpha * (first - second)
    return _join(rows, layer, second + moved, first - moved)


def _to_wires(x: jax.Array, softness: Softness):
    """``x`` (``(..., n)``) as ``(n, batch)`` and the softness as ``(1, batch)`` or scalar."""
    n = x.shape[-1]
    batch = int(np.prod(x.shape[:-1]))
    wires = x.reshape(batch, n).T
    if softness.size > 1:
        softness = jnp.broadcast_to(softness, (*x.shape[:-1], 1)).reshape(batch, 1).T
    else:
        softness = softness.reshape(())
    return wires, softness


def _from_wires(values: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Values ``(n, batch)`` back to ``shape``."""
    return values.T.reshape(shape)


# ----------------------------------------------------------------------------------- the passes


# Jitted, so that an eager call with a new softness runs the compiled loops again: a loop's body
# is traced anew at every eager call, and its compilation is not reused.
@functools.partial(jax.jit, static_argnames=("kind", "method", "with_permutation"))
def sort(x: jax.Array, softness: Softness, kind: str, method: str, with_permutation: bool):
    """Run the relaxed network along the last axis of ``x``: ``(values, P or None)``.

    ``softness`` broadcasts against ``x`` (a trailing axis of 1). :math:`P` (``(..., n, n)``,
    :math:`P_{ji}` = weight of input ``i`` in output ``j``) is computed only when asked for.
    """
    n = x.shape[-1]
    wires, tau = _to_wires(x, softness)
    if method == "odd_even":
        values, _, _ = _odd_even(wires, tau, kind, None)
        if not with_permutation:
            return _from_wires(values, x.shape), None
        # P is carried through a loop of its own, which runs the values again (O(n) per layer
        # against P's O(n^2)): the values stay those of the values alone, bit for bit.
        identity = jnp.broadcast_to(jnp.eye(n, dtype=x.dtype)[..., None], (n, n, wires.shape[-1]))
        _, rows, _ = _odd_even(wires, tau, kind, identity)
        assert rows is not None  # rows in, rows out
        return _from_wires(values, x.shape), _from_transposed(rows, x.shape)
    values, weights = _bitonic(wires, tau, kind)
    values = _from_wires(values, x.shape)
    if not with_permutation:
        return values, None
    return values, _bitonic_permutation(weights, network(n, method), x.shape, x.dtype)


@functools.partial(jax.jit, static_argnames=("kind", "method"))
def sort_and_weights(x: jax.Array, softness: Softness, kind: str, method: str):
    """Run the relaxed network: ``(values, weights)``, with every layer's :math:`\\alpha` in
    ``weights`` for :func:`pull_back`."""
    wires, tau = _to_wires(x, softness)
    if method == "odd_even":
        values, _, weights = _odd_even(wires, tau, kind, None)
    else:
        values, weights = _bitonic(wires, tau, kind)
    return _from_wires(values, x.shape), weights


def _bitonic(wires, tau, kind: str):
    net = network(wires.shape[0], "bitonic")
    values = jnp.pad(wires, [(net.padding, 0), (0, 0)]) if net.padding else wires
    alphas = []
    for layer in net.layers:
        values, alpha = _sort_layer(values, layer, tau, kind)
        alphas.append(alpha)
    return values[net.padding :], tuple(alphas)


def _odd_even(wires, tau, kind: str, rows):
    """Odd-even transposition in a loop of rounds (even layer, odd layer).

    ``rows`` (``(r, n, batch)`` or None) are right-multiplied by every layer as it runs (from the
    identity, they become :math:`P^\\top`). Returns ``(values, rows, weights)``.
    """
    net = network(wires.shape[0], "odd_even")
    layers = net.layers if net.layers[1].groups else net.layers[:1]  # n = 2: no odd layer

    def round_(carry, _):
        values, rows = carry
        alphas = []
        for layer in layers:
            values, alpha = _sort_layer(values, layer, tau, kind)
            rows = None if rows is None else _mix(rows, layer, alpha)
            alphas.append(alpha)
        return (values, rows), tuple(alphas)

    (values, rows), alphas = jax.lax.scan(round_, (wires, rows), length=net.rounds)
    last = None
    if wires.shape[0] % 2:
        values, last = _sort_layer(values, net.layers[0], tau, kind)
        rows = None if rows is None else _mix(rows, net.layers[0], last)
    return values, rows, (alphas, last)


def _from_transposed(transposed: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """:math:`P` (``(*batch_shape, n, n)``) from :math:`P^\\top` as ``(n, n, batch)``."""
    n = shape[-1]
    return jnp.transpose(transposed, (2, 1, 0)).reshape(*shape[:-1], n, n)


@functools.partial(jax.jit, static_argnames=("shape", "method"))
def pull_back(weights, vectors: jax.Array, shape: tuple[int, ...], method: str) -> jax.Array:
    """:math:`v^\\top P` for every row ``v`` of ``vectors`` (``(rows, n)``), from ``weights``,
    for the values of ``shape``: ``(*batch_shape, rows, n)``.

    Each layer's matrix is symmetric, so :math:`v^\\top M_L \\cdots M_1` runs the layers
    backwards on the rows, at :math:`O(n)` per layer and row.
    """
    n = shape[-1]
    net = network(n, method)
    batch = int(np.prod(shape[:-1]))
    rows = jnp.broadcast_to(vectors[..., None], (*vectors.shape, batch))
    if method == "odd_even":
        alphas, last = weights
        if last is not None:
            rows = _mix(rows, net.layers[0], last)

        def round_(rows, alpha):
            for layer, a in reversed(list(zip(net.layers, alpha, strict=False))):
                rows = _mix(rows, layer, a)
            return rows, None

        rows, _ = jax.lax.scan(round_, rows, alphas, reverse=True)
    else:
        if net.padding:
            rows = jnp.pad(rows, [(0, 0), (net.padding, 0), (0, 0)])
        for layer, alpha in zip(reversed(net.layers), reversed(weights), strict=True):
            rows = _mix(rows, layer, alpha)
        rows = rows[:, net.padding :]
    return jnp.moveaxis(rows, -1, 0).reshape(*shape[:-1], *vectors.shape)


#: Blocks of more elements than this (16 MiB of float32) are rematerialised in the backward pass;
#: smaller ones are kept, which is faster where memory is no concern.
_REMAT_SIZE = 2**22


def _bitonic_permutation(weights, net: Network, shape, dtype) -> jax.Array:
    """The permutation of the bitonic network, block-diagonal until the last merge.

    :math:`P^\\top` is built from the identity by right-multiplying the layers, kept as
    ``(runs, size, size, batch)`` blocks (run of the input, then of the output wire): block ``b``
    works on runs of :math:`2^{b+1}` wires, so the whole build costs :math:`O(n^2 \\log n)`
    instead of :math:`O(n^2 \\log^2 n)`. A large block is rematerialised in the backward pass,
    which then stores the blocks' inputs and one block's layers at a time, not every layer's
    matrix.
    """
    wires, batch = net.wires, int(np.prod(shape[:-1]))
    alphas = iter(weights)
    blocks = jnp.ones((wires, 1, 1, batch), dtype)
    for layers in net.blocks:
        runs, size = blocks.shape[0] // 2, blocks.shape[1]
        pairs = blocks.reshape(runs, 2, size, size, batch)
        zero = jnp.zeros_like(pairs[:, 0])
        blocks = jnp.concatenate(
            [
                jnp.concatenate([pairs[:, 0], zero], axis=-2),
                jnp.concatenate([zero, pairs[:, 1]], axis=-2),
            ],
            axis=1,
        )
        block_alphas = [next(alphas) for _ in layers]
        merge = functools.partial(_merge_block, layers=layers, runs=runs)
        if blocks.size > _REMAT_SIZE:
            merge = jax.checkpoint(merge)
        blocks = merge(blocks, block_alphas)
    transposed = blocks.reshape(wires, wires, batch)[net.padding :, net.padding :]
    return _from_transposed(transposed, shape)


def _merge_block(blocks, alphas, *, layers, runs):
    """Apply one merge's layers to the blocks of :math:`P^\\top` (``(runs, size, size, batch)``)."""
    size, batch = blocks.shape[-2], blocks.shape[-1]
    for layer, alpha in zip(layers, alphas, strict=True):
        local = Layer(0, size, layer.distance)
        # alpha is (wires / 2d, d, batch); a run holds size / 2d of its groups.
        alpha = alpha.reshape(runs, 1, size // (2 * layer.distance), layer.distance, batch)
        blocks = _mix(blocks, local, alpha)
    return blocks
