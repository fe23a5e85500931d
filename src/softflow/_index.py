"""Reading and writing at a soft index: take and put.

A soft index is a vector of weights over the positions of an axis that sum to 1, such as the
result of :func:`softflow.argmax` or a row of :func:`softflow.argsort`. Reading at it is the
expected value; writing at it moves each position towards the new value by its weight.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._blend import blend
from ._checks import as_real_array
from ._scope import primitive
from ._select import check_axis, weighted_sum


def _floating(name: str, value: ArrayLike) -> jax.Array:
    value = as_real_array(name, value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a floating array; got dtype {value.dtype}. Its soft version blends "
            "values, which an integer dtype cannot hold: cast it first."
        )
    return value


def _soft_index(index: ArrayLike, size: int, axis: int) -> jax.Array:
    index = as_real_array("index", index)
    if not (jnp.issubdtype(index.dtype, jnp.floating) or index.dtype == jnp.bool_):
        raise TypeError(
            f"index must be soft index weights, a float array whose last axis has one weight per "
            f"position; got dtype {index.dtype}. For an integer position i, use "
            "jax.nn.one_hot(i, n) or ordinary indexing."
        )
    if index.ndim == 0 or index.shape[-1] != size:
        raise ValueError(
            f"index must have one weight per position of x along axis {axis} on its last axis: "
            f"expected index of shape (..., {size}); got {index.shape}."
        )
    return index


def _broadcast_error(what: str, error: ValueError) -> ValueError:
    return ValueError(f"{what} do not broadcast: {error}")


@primitive
def take(x: ArrayLike, index: ArrayLike, axis: int = 0) -> jax.Array:
    r"""Read ``x`` at a soft index along an axis: the expectation of ``x[i]``.

    .. math:: \mathrm{take}(x, w) = \sum_i w_{\ldots, i}\, x_i

    where :math:`x_i` is the slice of ``x`` at position :math:`i` of ``axis``. At a one-hot
    ``index`` it is that slice exactly (-0.0 included), and positions of weight exactly 0 do not
    reach the result even when they hold inf or NaN.

    Arguments:
        x: floating array.
        index: weights over the positions of ``axis``, on the last axis of ``index``
            (shape ``(..., n)``), for example from :func:`softflow.argmax`; they are not
            renormalised. The leading axes of ``index`` broadcast against the other axes of ``x``.
        axis: the axis of ``x`` to read along.

    Returns:
        ``x`` without ``axis``, broadcast against the leading axes of ``index``, in the dtype of
        ``x``.

    Raises:
        ValueError: if ``index.shape[-1]`` is not ``x.shape[axis]``, the axis is out of range, or
            shapes do not broadcast.
        TypeError: if ``x`` is not floating or ``index`` is not a float array.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> x = jnp.array([10.0, 20.0, 30.0])
        >>> float(sf.take(x, jnp.array([0.0, 0.75, 0.25])))
        22.5
        >>> float(sf.take(x, sf.argmax(x, mode="hard")))
        30.0
    """
    x = _floating("x", x)
    axis = check_axis(axis, x.ndim)
    weights = _soft_index(index, x.shape[axis], axis).astype(x.dtype)
    values = jnp.moveaxis(x, axis, -1)
    try:
        jnp.broadcast_shapes(weights.shape, values.shape)
    except ValueError as error:
        raise _broadcast_error(
            f"index of shape {weights.shape} and x without axis {axis}, of shape "
            f"{values.shape[:-1]},",
            error,
        ) from None
    return weighted_sum(weights, values)


@primitive
def put(x: ArrayLike, index: ArrayLike, value: ArrayLike, axis: int = 0) -> jax.Array:
    r"""Write ``value`` into ``x`` at a soft index along an axis: a soft ``x.at[i].set(value)``.

    .. math:: \mathrm{put}(x, w, v)_i = (1 - w_{\ldots, i})\, x_i + w_{\ldots, i}\, v

    Each position moves towards ``value`` by its weight. At a one-hot ``index`` the result is
    exactly ``x.at[i].set(value)``, bit for bit (-0.0 included), which the algebraically equal
    :math:`x_i + w_i (v - x_i)` is not.

    Arguments:
        x: floating array.
        index: weights over the positions of ``axis``, shape ``(..., n)``; the leading axes
            broadcast against the other axes of ``x``.
        value: the value written, broadcasting against ``x`` without ``axis``.
        axis: the axis of ``x`` to write along.

    Returns:
        ``x`` with the value written, broadcast against ``index`` and ``value``, in the floating
        dtype of ``x`` and ``value``.

    Raises:
        ValueError: if ``index.shape[-1]`` is not ``x.shape[axis]``, the axis is out of range, or
            shapes do not broadcast.
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
    weights = _soft_index(index, x.shape[axis], axis).astype(dtype)
    values = jnp.moveaxis(x, axis, -1).astype(dtype)
    written = value.astype(dtype)[..., None]
    try:
        shape = jnp.broadcast_shapes(values.shape, weights.shape, written.shape)
    except ValueError as error:
        raise _broadcast_error(
            f"x (axis {axis} last) of shape {values.shape}, index of shape {weights.shape} and "
            f"value of shape {value.shape}",
            error,
        ) from None
    values, written = jnp.broadcast_to(values, shape), jnp.broadcast_to(written, shape)
    result = blend((1 - weights, weights), (values, written))
    return jnp.moveaxis(result, -1, axis - x.ndim)
