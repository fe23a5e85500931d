"""Reading and writing at a soft index: take and put.

A soft index is a vector of weights over the positions of an axis that sum to 1, such as the
result of :func:`softflow.argmax` or a row of :func:`softflow.argsort`. Reading at it is the
expected value; writing at it moves each position towards the new value by its weight. A batch of
soft indices is read slice by slice along the axis it was computed on, in the layouts that
argmax, top_k and argsort return.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._blend import blend
from ._checks import as_real_array
from ._scope import primitive
from ._select import check_axis, expectation


def _floating(name: str, value: ArrayLike) -> jax.Array:
    value = as_real_array(name, value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a floating array; got dtype {value.dtype}. Its soft version blends "
            "values, which an integer dtype cannot hold: cast it first."
        )
    return value


def _index_array(index: ArrayLike) -> jax.Array:
    index = as_real_array("index", index)
    if not (jnp.issubdtype(index.dtype, jnp.floating) or index.dtype == jnp.bool_):
        raise TypeError(
            f"index must be soft index weights, a float array whose last axis has one weight per "
            f"position; got dtype {index.dtype}. For an integer position i, use "
            "jax.nn.one_hot(i, n) or ordinary indexing."
        )
    return index


def _aligned(index: jax.Array, shape: tuple[int, ...], axis: int, *, several: bool) -> jax.Array:
    """``index`` laid out as ``(..., n)`` against ``x`` with ``axis`` moved last.

    Three layouts are accepted, told apart by the number of axes: ``(n,)``, one soft index for
    every slice; the shape of ``x`` with the weights along ``axis`` (what :func:`softflow.argmax`
    returns); and, when ``several``, the other axes of ``x`` followed by ``(k, n)``, k soft indices
    per slice (what :func:`softflow.top_k` and :func:`softflow.argsort` return). The other axes
    match those of ``x`` position by position (size 1 broadcasts), never shifted: an index that
    lines up only from the right would read one slice's weights in another slice.
    """
    n, ndim = shape[axis], len(shape)
    others = shape[:axis] + shape[axis + 1 :]
    if index.shape == (n,):
        return index
    if index.ndim == ndim and index.shape[axis] == n:
        moved, index_others = (
            jnp.moveaxis(index, axis, -1),
            index.shape[:axis] + index.shape[axis + 1 :],
        )
    elif several and index.ndim == ndim + 1 and index.shape[-1] == n:
        moved, index_others = index, index.shape[:-2]
    else:
        moved = index_others = None
    if moved is not None and index_others is not None:
        try:
            jnp.broadcast_shapes(index_others, others)
            return moved
        except ValueError:
            pass
    expected = [f"({n},) (one soft index for every slice)"]
    expected.append(
        f"the shape of x with {n} weights along axis {axis} (one per slice, as from "
        f"sf.argmax(x, axis={axis}))"
    )
    if several:
        expected.append(
            f"{(*others, 'k', n)} (k per slice, as from sf.top_k or sf.argsort with axis={axis})"
        )
    elif index.ndim == ndim + 1:
        raise ValueError(
            f"put writes one soft index per slice; got index of shape {index.shape} for x of "
            f"shape {shape}, which looks like k soft indices per slice. Write them one at a time "
            "(a loop over the k rows), or use jax.vmap for a batch of separate writes."
        )
    raise ValueError(
        f"index of shape {index.shape} does not fit x of shape {shape} along axis {axis}; "
        f"expected {', or '.join(expected)}. Axes of size 1 broadcast."
    )


@primitive
def take(x: ArrayLike, index: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Read ``x`` at a soft index along an axis: the expectation of ``x[..., i, ...]``.

    .. math:: \mathrm{take}(x, w)_{s} = \sum_i w_{s, i}\, x_{s, i}

    where :math:`s` runs over the slices of ``x`` along ``axis`` and :math:`x_{s, i}` is
    position :math:`i` of slice :math:`s`. The index is read along the axis it was computed on,
    slice by slice, so ``sf.take(x, sf.argmax(x, axis), axis)`` is the soft maximum of every
    slice, ``sf.take(x, sf.top_k(x, k, axis)[1], axis)`` the top-k values and
    ``sf.take(x, sf.argsort(x, axis), axis)`` the sorted slices. At a one-hot index it is
    the entry itself exactly (-0.0 included), and positions of weight exactly 0 do not reach the
    result even when they hold inf or NaN. Their derivative with respect to that weight is still
    the entry, as for :func:`softflow.soft_where`: an infinite entry gives an infinite (or, where
    the weight is flat, NaN) gradient; for the soft maximum of values padded with -inf, whose
    gradient stays finite, use :func:`softflow.max`.

    Arguments:
        x: floating array.
        index: weights over the :math:`n` positions of ``axis`` (not renormalised), in one of
            three layouts, told apart by the number of axes: ``(n,)``, one soft index for every
            slice (a soft ``x[i]`` along ``axis``); the shape of ``x`` with the weights along
            ``axis``, one per slice, as :func:`softflow.argmax` returns them; or the other axes
            of ``x`` followed by ``(k, n)``, k per slice, as :func:`softflow.top_k` and
            :func:`softflow.argsort` return them. The other axes match those of ``x`` position by
            position; axes of size 1 broadcast. Any other shape is refused.
        axis: the axis of ``x`` to read along; -1 by default, as for :func:`softflow.argmax`.

    Returns:
        ``x`` without ``axis`` (with ``k`` in its place for k indices per slice), broadcast
        against the index, in the dtype of ``x``.

    Raises:
        ValueError: if ``index`` fits none of the layouts, or the axis is out of range or empty.
        TypeError: if ``x`` is not floating or ``index`` is not a float array.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> x = jnp.array([10.0, 20.0, 30.0])
        >>> float(sf.take(x, jnp.array([0.0, 0.75, 0.25])))
        22.5
        >>> table = jnp.array([[1.0, 5.0], [4.0, 2.0]])
        >>> sf.take(table, sf.argmax(table, mode="hard"))  # the largest entry of each row
        Array([5., 4.], dtype=float32)
    """
    x = _floating("x", x)
    axis = check_axis(axis, x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"x has size 0 along axis {axis}: there is no position to read.")
    weights = _aligned(_index_array(index), x.shape, axis, several=True).astype(x.dtype)
    values = jnp.moveaxis(x, axis, -1)
    # (An element of weight 0 may be infinite, log 0: it leaves the derivative finite.)
    if weights.ndim == x.ndim + 1:  # k soft indices per slice: x once for each
        return jnp.moveaxis(expectation(weights, values[..., None, :]), -1, axis)
    return expectation(weights, values)


@primitive
def put(x: ArrayLike, index: ArrayLike, value: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Write ``value`` into ``x`` at a soft index along an axis: a soft ``x.at[i].set(value)``.

    .. math:: \mathrm{put}(x, w, v)_{s, i} = (1 - w_{s, i})\, x_{s, i} + w_{s, i}\, v_s

    Each position :math:`i` of each slice :math:`s` along ``axis`` moves towards the value by its
    weight. At a one-hot index the result is exactly the written array, bit for bit (-0.0
    included), which the algebraically equal :math:`x_{s, i} + w_{s, i} (v_s - x_{s, i})` is
    not. ``sf.put(x, sf.argmax(x, axis), v, axis)`` writes at the soft maximum of every slice.

    Arguments:
        x: floating array.
        index: weights over the :math:`n` positions of ``axis``: ``(n,)``, one soft index for
            every slice, or the shape of ``x`` with the weights along ``axis``, one per slice (as
            :func:`softflow.argmax` returns them); axes of size 1 broadcast. One soft index per
            slice: k of them (a :func:`softflow.top_k` index) are refused.
        value: the value written, broadcasting to the shape of ``x`` without ``axis`` (as the
            value of ``x.at[..., i].set(value)`` does); it may not add axes to the result.
        axis: the axis of ``x`` to write along; -1 by default, as for :func:`softflow.argmax`.

    Returns:
        ``x`` with the value written, broadcast against ``index``, in the floating dtype of ``x``
        and ``value``.

    Raises:
        ValueError: if ``index`` fits neither layout, the axis is out of range, or ``value`` does
            not broadcast to the slots written.
        TypeError: if ``x`` or ``value`` is not floating, or ``index`` is not a float array.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> x = jnp.zeros(3)
        >>> sf.put(x, jnp.array([0.0, 0.25, 0.75]), 4.0)
        Array([0., 1., 3.], dtype=float32)
    """
    x = _floating("x", x)
    value = _floating("value", value)
    axis = check_axis(axis, x.ndim)
    dtype = jnp.result_type(x, value)
    weights = _aligned(_index_array(index), x.shape, axis, several=False).astype(dtype)
    values = jnp.moveaxis(x, axis, -1).astype(dtype)
    shape = jnp.broadcast_shapes(values.shape, weights.shape)
    try:
        # As in x.at[i].set(value), the value fills the slots it is written to: it may not
        # add axes to the result or widen it.
        if jnp.broadcast_shapes(value.shape, shape[:-1]) != shape[:-1]:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"value of shape {value.shape} does not broadcast to the shape {shape[:-1]} of the "
            f"slots written (x of shape {x.shape} without axis {axis}, broadcast against the "
            "index)."
        ) from None
    values = jnp.broadcast_to(values, shape)
    written = jnp.broadcast_to(value.astype(dtype)[..., None], shape)
    result = blend((1 - weights, weights), (values, written))
    return jnp.moveaxis(result, -1, axis - x.ndim)
