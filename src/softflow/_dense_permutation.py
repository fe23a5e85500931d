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

from ._compare import scaled
from ._select import difference

Method = Literal["softsort", "neuralsort"]


def scores(x: jax.Array, softness: jax.Array, method: str, descending: bool, rows: int):
    """The scores :math:`z` (``(..., rows, n)``) of the first ``rows`` rows of :math:`P`.

    :math:`P = \\mathrm{softmax}(z)` along the last axis; ``softness`` broadcasts against ``x``
    (a trailing axis of 1).
    """
    n = x.shape[-1]
    tau = softness[..., None]
    if method == "softsort":
        anchors = jnp.sort(x, axis=-1, descending=descending)[..., :rows]
        # difference() ties equal infinities (distance 0), so an infinite entry keeps its row.
        distance = jnp.abs(difference(anchors[..., :, None], x[..., None, :]))
        return scaled(-distance, tau)
    # NeuralSort: every entry's total distance to the others; infinite entries make it inf - inf.
    total = jnp.sum(jnp.abs(x[..., :, None] - x[..., None, :]), axis=-1)
    position = np.arange(rows)
    coefficient = (n - 1 - 2 * position) if descending else (2 * position + 1 - n)
    coefficient = jnp.asarray(coefficient, x.dtype)[:, None]
    return (coefficient * x[..., None, :] - total[..., None, :]) / tau


def permutation(
    x: jax.Array, softness: jax.Array, method: str, descending: bool, rows: int | None = None
) -> jax.Array:
    """The first ``rows`` rows (default all) of :math:`P`, ascending or descending."""
    rows = x.shape[-1] if rows is None else rows
    return jax.nn.softmax(scores(x, softness, method, descending, rows), axis=-1)


@jax.custom_jvp
def expected_values(weights: jax.Array, x: jax.Array) -> jax.Array:
    """:math:`\\sum_i w_{ji} x_i` for every row of ``weights`` (``(..., rows, n)``).

    A term of weight exactly 0 is -0.0, the additive identity, so an infinite entry of weight 0
    does not reach the result and a one-hot row returns its entry bit for bit (see
    :func:`softflow._blend.blend`).
    """
    terms = weights * x[..., None, :]
    return jnp.sum(jnp.where(weights == 0, jnp.array(-0.0, terms.dtype), terms), axis=-1)


@expected_values.defjvp
def _expected_values_jvp(primals, tangents):
    weights, x = primals
    d_weights, d_x = tangents
    # The weights are flat where an entry is infinite (its softmax score saturates), and the
    # product of that zero slope with the infinite entry is taken as its limit, 0.
    finite = jnp.where(jnp.isfinite(x), x, jnp.zeros((), x.dtype))
    kept = jnp.where(weights == 0, jnp.zeros((), x.dtype), weights * d_x[..., None, :])
    tangent = jnp.sum(d_weights * finite[..., None, :] + kept, axis=-1)
    return expected_values(weights, x), tangent
