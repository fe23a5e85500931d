"""Evaluating an equation on every candidate of relaxed operands, the candidates on a trailing
axis: element by element where the primitive allows (no moves of the candidate axis), by
``vmap`` otherwise; and reading an array at every candidate of a relaxed index vector, or, for
a small table, summing it over its positions.

``jax.vmap`` of an elementwise primitive with the candidates last and an operand without them
moves the candidate axis to the front and back again; XLA fuses these transposes into every
consumer and, on a lookup of thousands of candidates per element, recomputes them for each
element read (a trilinear lookup spent three quarters of its time there).
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn

from .._select import weighted_sum
from . import _jaxpr
from ._values import aval

# Primitives acting element by element (with NumPy broadcasting of scalars in a jaxpr).
ELEMENTWISE = frozenset(
    {
        "add",
        "sub",
        "mul",
        "div",
        "rem",
        "neg",
        "abs",
        "sign",
        "max",
        "min",
        "pow",
        "integer_pow",
        "clamp",
        "select_n",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and",
        "or",
        "not",
        "xor",
        "shift_left",
        "shift_right_logical",
        "shift_right_arithmetic",
        "convert_element_type",
        "floor",
        "ceil",
        "round",
        "copy",
        "copy_p",
        "square",
    }
)


# Elementwise float maps a mixture over candidates is pushed through, besides those above.
_BROADCASTING = ELEMENTWISE | {"sqrt", "exp", "log"}


def candidatewise(eqn: JaxprEqn, args: Sequence, batched: Sequence[bool]) -> list:
    """``eqn`` on each candidate of the ``batched`` arguments (their last axis), the others the
    same for every candidate; the results' candidates last."""
    name = eqn.primitive.name
    sizes = {np.shape(a)[-1] for a, b in zip(args, batched, strict=True) if b}
    k = next(iter(sizes)) if len(sizes) == 1 else 0
    moves = None if name in _BROADCASTING else _jaxpr.with_trailing_axis(eqn, k)
    if k and (name in _BROADCASTING or moves is not None):
        if name in _BROADCASTING:
            # Every operand at the result's shape: scalars are broadcast in a jaxpr too.
            full = [(*aval(eqn.outvars[0]).shape, k)] * len(args)
        else:
            full = [(*aval(atom).shape, k) for atom in eqn.invars]
        spread = [
            jnp.broadcast_to(a if b else jnp.asarray(a, aval(atom).dtype)[..., None], shape)
            for a, b, shape, atom in zip(args, batched, full, eqn.invars, strict=True)
        ]
        return _jaxpr.bind(eqn, spread, moves)
    in_axes = [-1 if b else None for b in batched]
    return jax.vmap(lambda *a: _jaxpr.bind(eqn, a), in_axes=in_axes, out_axes=-1)(*args)


def read_points(eqn: JaxprEqn, source, cands) -> jax.Array:
    """The elements of ``source`` at each candidate of a relaxed index vector (its components on
    the axis before the candidates), as the ``gather`` of ``eqn`` reads them; a gather of single
    elements as one read of the flattened array at positions computed once."""
    layout = _jaxpr.point_gather(eqn, np.ndim(source))
    if layout is None or np.size(source) >= 2**31:
        (values,) = candidatewise(eqn, [source, cands], [False, True])
        return values
    shape = np.shape(source)
    strides = [math.prod(shape[axis + 1 :]) for axis in range(len(shape))]
    fills = layout.mode == jax.lax.GatherScatterMode.FILL_OR_DROP
    position = jnp.zeros((), jnp.int32)
    inside = jnp.ones((), bool)
    for component, axis in enumerate(layout.axes):
        index = jnp.asarray(cands)[..., component, :]
        if fills:
            inside = inside & (index >= 0) & (index < shape[axis])
        # Out of range, CLIP and PROMISE_IN_BOUNDS read the nearest element, as XLA does.
        position = position + jnp.clip(index, 0, shape[axis] - 1).astype(jnp.int32) * strides[axis]
    numbers = jax.lax.GatherDimensionNumbers(
        offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,)
    )
    values = jax.lax.gather(
        jnp.reshape(source, (-1,)),
        position[..., None],
        numbers,
        (1,),
        mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )
    if fills:
        values = jnp.where(inside, values, _fill_value(eqn, layout.fill_value, values.dtype))
    return values


def _fill_value(eqn: JaxprEqn, fill_value, dtype) -> jax.Array:
    """What a FILL_OR_DROP gather reads out of bounds: its ``fill_value``, else JAX's default for
    the operand's dtype (NaN, the least signed integer, the largest unsigned one, True)."""
    if fill_value is None:
        original = np.dtype(aval(eqn.invars[0]).dtype)
        if original == np.bool_:
            fill_value = True
        elif jnp.issubdtype(original, jnp.inexact):
            fill_value = np.nan
        elif jnp.issubdtype(original, jnp.signedinteger):
            fill_value = np.iinfo(original).min
        else:
            fill_value = np.iinfo(original).max
    return jnp.asarray(fill_value).astype(dtype)


# A table read at independent relaxed indices is summed over all its positions when it has at
# most this many elements per joint outcome of the indices: the sum is then cheaper than reading
# each outcome (XLA:CPU, bilinear sampling at softness 0.1: equal at twice, 1.8x slower at four
# times; a trilinear lookup in a 4x4x4 grid, 64 elements for 125 outcomes per corner, 8x faster),
# and the gradient into the table is a dense sum rather than a scatter of every outcome.
_DENSE_PER_OUTCOME = 2

#: What explain says of such a read.
DENSE_READ = "expectation summed over the table (independent indices, one factor per axis)"


def expected_point(source, components: Sequence) -> jax.Array | None:
    r"""The expectation of the element of ``source`` at an index whose components (one per axis,
    in order) are independent relaxed integers, each given by its candidates and probabilities
    and clamped into range, as a sum over the positions of the table:

    .. math:: \sum_X \mathrm{source}[X] \prod_d P(\text{component } d \text{ reads } X_d)

    None when the table is large next to the number of joint outcomes (reading the table at each
    of them is then cheaper)."""
    shape = np.shape(source)
    outcomes = math.prod(np.shape(probs)[-1] for _, probs in components)
    if math.prod(shape) > _DENSE_PER_OUTCOME * outcomes:
        return None
    per_axis = [
        jnp.sum(
            jnp.where(
                jnp.clip(jnp.asarray(c), 0, n - 1)[..., None] == np.arange(n), p[..., None], 0
            ),
            axis=-2,
        )
        for (c, p), n in zip(components, shape, strict=True)
    ]
    weights = per_axis[0]
    for axis_weights in per_axis[1:]:
        outer = weights[..., :, None] * axis_weights[..., None, :]
        weights = outer.reshape((*outer.shape[:-2], -1))
    source = jnp.reshape(source, (-1,))
    return _table_sum(weights.astype(source.dtype), source)


def gathered_point(eqn: JaxprEqn, source, components: Sequence) -> jax.Array | None:
    """:func:`expected_point` for the ``gather`` ``eqn`` whose index vector has these
    components; None unless it reads single elements clamped into range (CLIP, and
    PROMISE_IN_BOUNDS, which XLA clamps)."""
    layout = _jaxpr.point_gather(eqn, np.ndim(source))
    if (
        layout is None
        or layout.mode == jax.lax.GatherScatterMode.FILL_OR_DROP
        or len(layout.axes) != len(components)
    ):
        return None
    by_axis = [None] * len(components)
    for component, axis in zip(components, layout.axes, strict=True):
        by_axis[axis] = component
    return expected_point(source, by_axis)


@jax.custom_jvp
def _table_sum(weights: jax.Array, table: jax.Array) -> jax.Array:
    """:func:`weighted_sum` of a table (its elements on the last axis) for many sets of
    weights, most of them exactly 0. Its derivative in the weights counts the finite elements
    only: an element that nothing reads (weight 0, so no change of weight either) may hold inf
    or NaN, and 0 times it must not make the derivative NaN; where an infinite element has
    weight, the value is infinite already."""
    return weighted_sum(weights, table)


@_table_sum.defjvp
def _table_sum_jvp(primals, tangents):
    weights, table = primals
    weight_tangent, table_tangent = tangents
    clean = jnp.where(jnp.isfinite(table), table, 0)
    change = jnp.sum(weight_tangent * clean + weights * table_tangent, axis=-1)
    return _table_sum(weights, table), change
