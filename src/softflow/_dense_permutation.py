"""SoftSort and NeuralSort: soft sorting permutations as one dense softmax, for ranking losses.

Both build row :math:`j` of the permutation (the :math:`j`-th smallest element) as a softmax over
the inputs of a score, in :math:`O(n^2)` per slice and with no sequence of layers, which is what
makes them fast on short axes. Their rows sum to 1; their columns need not.

* SoftSort (Prillo & Eisenschlos, 2020):
  :math:`P_{j i} = \\mathrm{softmax}_i(-|x_{(j)} - x_i| / \\tau)`, with :math:`x_{(j)}` the
  :math:`j`-th smallest element (the exact sort).
* NeuralSort (Grover et al., 2019), written for ascending rows (the paper's rows are descending):
  :math:`P_{j i} = \\mathrm{softmax}_i(((2 j + 1 - n) x_i - \\sum_k |x_i - x_k|) / \\tau)`.

For two elements :math:`a < b` both give the first row :math:`(\\sigma(\\Delta/\\tau),
1 - \\sigma(\\Delta/\\tau))` with :math:`\\Delta = b - a` and :math:`\\sigma` the logistic: the
comparator of softflow's sorting networks with ``kind="logistic"``. That is how :math:`\\tau` is
put in softflow's units: the temperature of both softmaxes is the softness itself.
"""

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import Softness
from ._compare import scaled

Method = Literal["softsort", "neuralsort"]


def scores(x: jax.Array, softness: Softness, method: str, descending: bool, anchors: jax.Array):
    """The scores :math:`z` (``(..., rows, n)``) of the first ``rows`` rows of :math:`P`.

    :math:`P = \\mathrm{softmax}(z)` along the last axis; ``softness`` broadcasts against ``x``
    (a trailing axis of 1); ``anchors`` are the first ``rows`` of the sorted ``x``.
    """
    n, rows = x.shape[-1], anchors.shape[-1]
    tau = softness[..., None]
    if method == "softsort":
        # Equal entries are at distance 0, equal infinities included (inf - inf would be NaN),
        # so an infinite entry keeps its row. (One select on the difference: the test for
        # infinities of softflow._compare.difference makes XLA's CPU loops much slower.)
        a, b = anchors[..., :, None], x[..., None, :]
        distance = jnp.where(a == b, jnp.zeros((), x.dtype), jnp.abs(a - b))
        return scaled(-distance, tau)
    # NeuralSort: every entry's total distance to the others; infinite entries make it inf - inf.
    # The scores are homogeneous in (x, softness): divided by a power of two near the largest
    # |x| (exactly) their sums of n distances stay below 4n instead of overflowing past the
    # float's largest value. Shifted by their row's maximum, which softmax ignores, they stay
    # finite as softness goes to 0: each row is then 0 at its largest score, -inf elsewhere.
    scale = jax.lax.stop_gradient(_power_of_two_above(jnp.max(jnp.abs(x), axis=-1)))[..., None]
    # (A softness below the smallest normal float times the scale sorts hard already; XLA flushes
    # subnormal numbers to zero.)
    x, tau = x / scale, jnp.maximum(tau / scale[..., None], jnp.finfo(x.dtype).tiny)
    total = _total_distance(x)
    position = np.arange(rows)
    coefficient = (n - 1 - 2 * position) if descending else (2 * position + 1 - n)
    coefficient = jnp.asarray(coefficient, x.dtype)[:, None]
    numerator = coefficient * x[..., None, :] - total[..., None, :]
    shifted = numerator - jax.lax.stop_gradient(jnp.max(numerator, axis=-1, keepdims=True))
    return shifted / tau


def _power_of_two_above(m: jax.Array) -> jax.Array:
    """The power of two in (m / 2, m] for a finite m > 0 (2 m may overflow); 1 for 0, inf or
    NaN."""
    mantissa, exponent = jnp.frexp(m)
    power = jnp.ldexp(jnp.ones_like(m), exponent - 1)
    return jnp.where(jnp.isfinite(mantissa) & (m > 0), power, 1)


@jax.custom_jvp
def _total_distance(x: jax.Array) -> jax.Array:
    """:math:`\\sum_k |x_i - x_k|` for every :math:`i` (NeuralSort's :math:`A 1`)."""
    return jnp.sum(jnp.abs(x[..., :, None] - x[..., None, :]), axis=-1)


@_total_distance.defjvp
def _total_distance_jvp(primals, tangents):
    (x,), (d_x,) = primals, tangents
    # d|x_i - x_k| = sign(x_i - x_k) (dx_i - dx_k), 0 at ties as jnp.abs has it: one sign
    # matrix and one product, where autodiff of the sum keeps two masked n x n reductions.
    sign = jnp.sign(x[..., :, None] - x[..., None, :])
    return _total_distance(x), d_x * jnp.sum(sign, axis=-1) - _matvec(sign, d_x)


def permutation(
    x: jax.Array, softness: Softness, method: str, descending: bool, rows: int | None = None
) -> jax.Array:
    """The first ``rows`` rows (default all) of :math:`P`, ascending or descending."""
    rows = x.shape[-1] if rows is None else rows
    if x.shape[-1] == 0:  # (an empty row has no largest score)
        return jnp.zeros((*x.shape, 0), x.dtype)
    return _permutation(x, softness, method, descending, _anchors(x, descending, rows))


#: Up to this length the order statistics are counted (O(n^2) in two fused reductions) rather
#: than sorted: XLA's sort on the CPU calls its comparator element by element, and at n = 16 it
#: takes as long as the rest of SoftSort's forward and backward pass together.
COUNTED_UP_TO = 64


def _anchors(x: jax.Array, descending: bool, rows: int) -> jax.Array:
    """The first ``rows`` of ``jnp.sort(x, axis=-1, descending=descending)``, bit for bit, with
    its gradient (each order statistic's to its entry)."""
    n = x.shape[-1]
    if n > COUNTED_UP_TO:
        return jnp.sort(x, axis=-1, descending=descending)[..., :rows]
    # The stable ascending position of x_i: the entries below it, and its equals before it (-0.0
    # and 0.0 are equal, as jnp.sort has them); the descending sort is the ascending one
    # reversed, as in jnp.sort. With a NaN the positions collide, but then every row of P is NaN.
    a, b = x[..., :, None], x[..., None, :]
    earlier = jnp.asarray(np.tri(n, k=-1, dtype=bool))  # [i, k]: k < i
    position = jnp.sum((b < a) | ((b == a) & earlier), axis=-1)
    if descending:
        position = n - 1 - position
    return _chosen_entries(x, position[..., None, :] == np.arange(rows)[:, None])


@jax.custom_jvp
def _chosen_entries(x: jax.Array, chosen: jax.Array) -> jax.Array:
    """``x_i`` for the one ``i`` of each row ``j`` of ``chosen`` (``(..., rows, n)``), bit for bit.

    The largest of that entry and -inf elsewhere is the entry itself, -0.0 included (a sum
    would start from +0.0); the derivative is that of the entry.
    """
    return jnp.max(jnp.where(chosen, x[..., None, :], jnp.array(-jnp.inf, x.dtype)), axis=-1)


@_chosen_entries.defjvp
def _chosen_entries_jvp(primals, tangents):
    x, chosen = primals
    d_x = tangents[0]
    tangent = jnp.sum(jnp.where(chosen, d_x[..., None, :], jnp.zeros((), d_x.dtype)), axis=-1)
    return _chosen_entries(x, chosen), tangent


def _permutation(
    x: jax.Array, softness: Softness, method: str, descending: bool, anchors: jax.Array
) -> jax.Array:
    if method == "softsort":
        return _softmax_of_nonpositive(scores(x, softness, method, descending, anchors))
    # NeuralSort's scores add and subtract n multiples of the entries: in float16 they overflow
    # on entries of a few thousand, in bfloat16 they lose the differences that decide the order.
    # They are computed in float32 at least, and P rounded once.
    work = jnp.promote_types(x.dtype, jnp.float32)
    z = scores(
        x.astype(work), jnp.asarray(softness).astype(work), method, descending, anchors.astype(work)
    )
    return _softmax_of_nonpositive(z).astype(x.dtype)


def sorted_rows(
    x: jax.Array, softness: Softness, method: str, descending: bool, rows: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """The first ``rows`` soft sorted values and rows of :math:`P`: :math:`(P x, P)`."""
    if x.shape[-1] == 0:  # (an empty row has no largest score)
        return x, jnp.zeros((*x.shape, 0), x.dtype)
    anchors = _anchors(x, descending, x.shape[-1] if rows is None else rows)
    weights = _permutation(x, softness, method, descending, anchors)
    return expected_values(weights, x, anchors), weights


@jax.custom_jvp
def _softmax_of_nonpositive(z: jax.Array) -> jax.Array:
    """``jax.nn.softmax(z, axis=-1)`` for scores whose largest entry in each row is exactly 0.

    SoftSort's row :math:`j` scores :math:`x_{(j)}` itself at :math:`-|x_{(j)} - x_{(j)}| = 0`
    and every other entry at most 0, so the shift by the row's maximum that
    :func:`jax.nn.softmax` computes (one more pass over the :math:`n \\times n` scores) is a
    shift by 0: the same floats without it, and the sum of the row is at least 1. A NaN entry
    makes the row NaN either way.
    """
    e = jnp.exp(z)
    return e / jnp.sum(e, axis=-1, keepdims=True)


@_softmax_of_nonpositive.defjvp
def _softmax_of_nonpositive_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    p = _softmax_of_nonpositive(z)
    # jax.nn.softmax's own rule.
    return p, p * (dz - jnp.sum(p * dz, axis=-1, keepdims=True))


def _matvec(weights: jax.Array, x: jax.Array) -> jax.Array:
    # HIGHEST: a float32 product on a GPU may otherwise round its inputs to TF32.
    return jnp.einsum("...ji,...i->...j", weights, x, precision=jax.lax.Precision.HIGHEST)


def _finite(x: jax.Array) -> jax.Array:
    return jnp.where(jnp.isfinite(x), x, jnp.zeros((), x.dtype))


@jax.custom_jvp
def expected_values(weights: jax.Array, x: jax.Array, anchors: jax.Array) -> jax.Array:
    """:math:`\\sum_i w_{ji} x_i` for every row of ``weights`` (``(..., rows, n)``): one matrix
    product, exact where it matters.

    ``anchors`` (``(..., rows)``) are the exact order statistics the rows stand for: the sorted
    ``x``. The product runs over the finite entries only, so that an infinite entry of weight 0
    does not reach the result (``0 * inf`` would be NaN); a row of finite weights whose anchor
    is infinite is that infinity (SoftSort weighs only the entries equal to it; NeuralSort's
    weights are NaN throughout with an infinite entry, and stay so). A result equal to its
    anchor is the anchor itself: a one-hot row returns its entry bit for bit, -0.0 included
    (the product's sum of zeros would give +0.0), as :func:`softflow._blend.blend` does.
    """
    values = _matvec(weights, _finite(x))
    infinite = jnp.isinf(anchors) & ~jnp.isnan(values)
    return jnp.where(infinite | (values == anchors), anchors, values)


@expected_values.defjvp
def _expected_values_jvp(primals, tangents):
    weights, x, anchors = primals
    d_weights, d_x, _ = tangents
    # The weights are flat where an entry is infinite (its softmax score saturates), and the
    # product of that zero slope with the infinite entry is taken as its limit, 0. The anchors
    # choose between equal numbers: they carry no derivative.
    tangent = _matvec(d_weights, _finite(x)) + _matvec(weights, d_x)
    return expected_values(weights, x, anchors), tangent
