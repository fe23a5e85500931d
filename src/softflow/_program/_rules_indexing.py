"""Rules for reads and writes at a relaxed index: ``dynamic_slice``, ``scatter`` and
``scatter-add`` (``x[i]``, ``x.at[i].set(v)``, ``x.at[i].add(v)``, histograms)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn

from .._blend import blend
from .._checks import is_concrete
from .._select import weighted_sum
from . import _jaxpr
from ._affine import always_integral
from ._candidates import DENSE_READ, expected_point
from ._folds import fold_onto
from ._generic import at_trace_time, hard_thunk
from ._interpreter import Interpreter, rule
from ._rules_relaxed_reads import relaxed_read
from ._rules_select import blend_with_infinities, masked, sentinel
from ._values import (
    Categorical,
    Expected,
    Live,
    Mixture,
    SoftBool,
    aval,
    expectation,
    floating,
    independent,
    is_soft,
    mean,
    merge,
    unwrap,
)


def _weights_over_positions(index: Categorical, n: int) -> jax.Array:
    """The probability of each position 0..n-1 (candidates clamped into range), shape (n,)."""
    if is_concrete(index.cands):
        position = np.clip(np.asarray(index.cands), 0, n - 1)
        if np.array_equal(position, np.arange(n)):
            return index.probs  # the usual case: the candidates of an argmax over this axis
        return fold_onto(index.probs, position, n)
    position = jnp.clip(index.cands, 0, n - 1)
    return jnp.zeros((n,), index.probs.dtype).at[position].add(index.probs)


@rule("dynamic_slice")
def _dynamic_slice_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``x[i]`` with a relaxed index along one axis: the expectation as one weighted sum.

    Per candidate this is the slice at that index (clamped into range, as ``dynamic_slice``
    does); summed densely over the positions of the axis, so that the gradient is dense too.
    """
    operand, *indices = invals
    soft_axes = [d for d, i in enumerate(indices) if is_soft(i)]
    sizes = _jaxpr.slice_sizes(eqn)
    if is_soft(operand) and soft_axes:
        return relaxed_read(self, eqn, invals)
    if len(soft_axes) > 1 and not is_soft(operand) and floating(aval(eqn.outvars[0])):
        summed = _summed_point_read(self, eqn, invals)
        if summed is not None:
            return summed
    if (
        is_soft(operand)
        or len(soft_axes) != 1
        or not isinstance(indices[soft_axes[0]], Categorical)
        or indices[soft_axes[0]].probs.ndim != 1
        or sizes[soft_axes[0]] != 1
    ):
        return self.default(eqn, invals)
    axis = soft_axes[0]
    index = indices[axis]
    x = unwrap(operand)
    exact = [
        np.zeros((), index.cands.dtype) if d == axis else unwrap(i) for d, i in enumerate(indices)
    ]

    def read(x, cands, *at):
        # The slice at each candidate index (clamped into range, as dynamic_slice does), the
        # candidates on the last axis: candidate k is the index's outcome k, so the values read
        # stay joined with everything else computed from that outcome (a program counter and the
        # jump target it fetches).
        def one(i):
            return jax.lax.dynamic_slice(
                x, [i if d == axis else a for d, a in enumerate(at)], sizes
            )

        return [jax.vmap(one, out_axes=-1)(cands)]

    (values,) = at_trace_time(read, x, index.cands, *exact)
    if not floating(aval(eqn.outvars[0])):
        # A table known at trace time gives candidates known then (a state carried by a loop
        # keeps its static range).
        self.record(eqn, "read at a distribution over indices (a distribution over the values)")
        return [Categorical(values, index.probs, hard_thunk(eqn, invals)(0), index.factors)]
    # The expectation: summed densely over the positions of the axis, so that the gradient with
    # respect to the table is dense too.
    n = x.shape[axis]
    full_sizes = tuple(n if d == axis else size for d, size in enumerate(sizes))
    window = jax.lax.dynamic_slice(x, exact, full_sizes)
    value = expectation(_weights_over_positions(index, n), jnp.moveaxis(window, axis, -1))
    mixture = Mixture(values, index.probs, index.factors, isinstance(operand, Live))
    self.record(eqn, "sf.take (read at a distribution over indices)")
    return [Live(jnp.expand_dims(value, axis), mixture=mixture)]


def _summed_point_read(self: Interpreter, eqn: JaxprEqn, invals: list) -> list | None:
    """``x[i, j]`` of a small table at scalar indices relaxed independently (each one
    distribution of its own): the reads at each joint outcome, for what compares them, and their
    expectation summed over the table (see ``expected_point``); None for anything else."""
    operand, *indices = invals
    soft = [i for i in indices if is_soft(i)]
    if (
        any(size != 1 for size in _jaxpr.slice_sizes(eqn))
        or not independent(soft)
        or any(np.ndim(i.probs) != 1 for i in soft)
    ):
        return None
    dtype = soft[0].probs.dtype
    components = [
        (i.cands, i.probs) if is_soft(i) else (jnp.reshape(unwrap(i), (1,)), jnp.ones(1, dtype))
        for i in indices
    ]
    value = expected_point(unwrap(operand), components)
    if value is None:
        return None
    (read,) = self.default(eqn, invals)
    if not isinstance(read, Live):
        return None
    self.record(eqn, DENSE_READ)
    out = aval(eqn.outvars[0])
    return [dataclasses.replace(read, value=jnp.reshape(value, out.shape).astype(out.dtype))]


def _one_joint_position(indices, d: int):
    """The index vector of one position in ``d`` dimensions whose components have their own
    distributions (``r, c = jnp.floor(y).astype(int)``: independent elements) as one
    distribution over their joint outcomes; anything else as it is."""
    if not (
        isinstance(indices, Categorical)
        and d > 1
        and indices.cands.shape[:-1] == (d,)
        and jnp.ndim(indices.probs) == 2
    ):
        return indices
    probs = jnp.broadcast_to(indices.probs, indices.cands.shape)
    components = [Categorical(indices.cands[i], probs[i], None) for i in range(d)]
    joint, cands, factors = merge(components)
    xp = np if is_concrete(cands) else jnp
    return Categorical(xp.stack([xp.asarray(c) for c in cands]), joint, indices.hard, factors)


@rule("scatter")
def _scatter_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``x.at[i].set(v)`` (``x.at[i, j].set(v)``) with one relaxed position: :func:`softflow.put`'s
    blend.

    Per outcome of the position this writes ``v`` there (an outcome out of range writes nothing,
    as ``scatter`` drops it); in expectation every position j becomes ``(1 - w_j) x_j + w_j v``
    with ``w_j`` the probability of position j. Written into booleans this is the probability of
    True; into integers, each element is ``x_j`` or ``v`` (a distribution of two candidates), or
    its expected value when ``x`` or ``v`` is already one.
    """
    operand, indices, updates = invals
    layout = _jaxpr.scatter(eqn)
    at_points = layout.inserted_dims == tuple(sorted(layout.operand_dims))
    indices = _one_joint_position(indices, len(layout.operand_dims))
    one_position = (
        isinstance(indices, Categorical)
        and indices.probs.ndim == 1
        and indices.cands.shape == (len(layout.operand_dims), indices.probs.shape[0])
    )
    if isinstance(indices, Categorical) and not layout.combines and not one_position:
        value = _one_written_value(eqn, updates, layout)
        if value is not None and at_points and not layout.batching_dims:
            return _one_value_at_many(self, eqn, invals, indices, value, layout)
        if _writes_elements(indices, layout, aval(eqn.outvars[0]).shape):
            return _values_at_many(self, eqn, invals, indices, layout)
        raise self.unsupported(
            eqn,
            "it writes windows (rows, slices) at several relaxed indices, each with its own "
            "distribution: relax weighs the writes of single elements (the last one that lands "
            "wins) and of one value at many indices",
            "write single elements (x.at[i, j].set(v) with one index per axis), accumulate with "
            "x.at[i].add(v) (the expected sums, as a soft histogram), or write one relaxed index "
            "at a time",
        )
    if (
        isinstance(operand, Categorical)
        or isinstance(updates, Categorical)
        or not one_position
        or not at_points
        or layout.batching_dims
        or layout.combines
    ):
        return self.default(eqn, invals)
    assert isinstance(indices, Categorical)
    dims = layout.operand_dims
    out_aval = aval(eqn.outvars[0])
    sizes = [out_aval.shape[d] for d in dims]
    known = is_concrete(indices.cands)  # candidates known at trace time stay known
    xp = np if known else jnp
    cands = np.asarray(indices.cands) if known else indices.cands
    if layout.mode == jax.lax.GatherScatterMode.CLIP:
        cands = xp.stack([xp.clip(cands[i], 0, n - 1) for i, n in enumerate(sizes)])
    # Out-of-range outcomes have no position: they leave x as it is.
    in_range = xp.all(
        xp.stack([(cands[i] >= 0) & (cands[i] < n) for i, n in enumerate(sizes)]), axis=0
    )
    flat = xp.zeros_like(cands[0])
    for i, n in enumerate(sizes):
        flat = flat * n + xp.where(in_range, cands[i], 0)
    probs = jnp.where(in_range, indices.probs, 0)
    grid = _weights_over_positions(Categorical(flat, probs, None), math.prod(sizes))
    # The weights on the written axes (in the order of the index's components), 1 elsewhere.
    order = [int(i) for i in np.argsort(dims)]
    weights = jnp.transpose(grid.reshape(sizes), order)
    shape = [1] * len(out_aval.shape)
    for d, n in zip(dims, sizes, strict=True):
        shape[d] = n
    weights = weights.reshape(shape)
    mask = sentinel(self, eqn.invars[2]) if floating(out_aval) else None
    if mask is not None and not np.isnan(mask):
        # x.at[jnp.argmax(x)].set(-jnp.inf): each element present where the write misses.
        self.record(eqn, "a sentinel written at a relaxed index: present where it misses")
        q = 1 - weights.astype(jnp.asarray(unwrap(operand)).dtype)
        return [Live(masked(self, operand, q, mask, out_aval.shape))]
    self.record(eqn, "sf.put (write at a distribution over indices)")

    def written(value, dtype):
        value = jnp.expand_dims(jnp.asarray(value), tuple(sorted(dims)))
        return jnp.broadcast_to(value, out_aval.shape).astype(dtype)

    if floating(out_aval):
        x = jnp.asarray(unwrap(operand))
        w = weights.astype(x.dtype)
        new = written(unwrap(updates), x.dtype)
        return [Live(blend_with_infinities(w, new, x, self.options.softness))]
    w = weights
    hard = hard_thunk(eqn, invals)(0)
    if out_aval.dtype != jnp.bool_ and not is_soft(operand) and not is_soft(updates):
        x = jnp.broadcast_to(unwrap(operand), out_aval.shape)
        both = jnp.stack([x, written(unwrap(updates), x.dtype)], axis=-1)
        w = jnp.broadcast_to(w, out_aval.shape)
        return [Categorical(both, jnp.stack([1 - w, w], axis=-1), hard)]
    old = jnp.broadcast_to(mean(operand).astype(w.dtype), out_aval.shape)
    new = written(mean(updates), w.dtype)
    blended = blend((1 - w, w), (old, new))
    return [SoftBool(blended, hard) if out_aval.dtype == jnp.bool_ else Expected(blended, hard)]


def _one_written_value(eqn: JaxprEqn, updates, layout: _jaxpr.Scatter):
    """The one value every write of ``eqn`` writes, when it is known at trace time and each
    write covers whole axes besides the point it addresses; else None."""
    if is_soft(updates) or isinstance(updates, Live) or not is_concrete(updates):
        return None
    written = np.asarray(updates)
    shape = aval(eqn.outvars[0]).shape
    window = [n for axis, n in enumerate(shape) if axis not in layout.operand_dims]
    if written.size == 0 or [written.shape[d] for d in layout.window_dims] != window:
        return None
    first = written.reshape(-1)[0]
    return first if np.all(written == first) else None


def _landing(indices: Categorical, layout, sizes: list[int]) -> jax.Array:
    """Where each of the writes of a vector of relaxed indices lands: ``[write, position]`` over
    the positions of the written axes (flattened, in the order of the index's components), the
    outer product of its components' laws; a candidate out of range lands nowhere (the write
    writes nothing) unless the scatter clips."""
    d, k = len(sizes), indices.cands.shape[-1]
    cands = jnp.asarray(indices.cands).reshape(-1, d, k)
    probs = jnp.broadcast_to(indices.probs, indices.cands.shape).reshape(-1, d, k)
    n = cands.shape[0]
    if layout.mode == jax.lax.GatherScatterMode.CLIP:
        cands = jnp.stack([jnp.clip(cands[:, i], 0, m - 1) for i, m in enumerate(sizes)], 1)
    landing = jnp.ones((n, 1), probs.dtype)
    for i, m in enumerate(sizes):
        on_axis = jnp.sum(
            jnp.where(cands[:, i, :, None] == jnp.arange(m), probs[:, i, :, None], 0), axis=1
        )
        landing = (landing[:, :, None] * on_axis[:, None, :]).reshape(n, -1)
    return landing


def _on_operand(per_position: jax.Array, layout, out_shape) -> jax.Array:
    """``[..., position]`` over the written axes (flattened in the index's order) as an array of
    the operand's shape (plus the leading axes)."""
    dims = layout.operand_dims
    sizes = [out_shape[d] for d in dims]
    lead = per_position.shape[:-1]
    grid = per_position.reshape((*lead, *sizes))
    order = [int(i) for i in np.argsort(dims)]
    grid = jnp.transpose(grid, [*range(len(lead)), *(len(lead) + i for i in order)])
    shape = [1] * len(out_shape)
    for axis, m in zip(dims, sizes, strict=True):
        shape[axis] = m
    return jnp.broadcast_to(grid.reshape((*lead, *shape)), (*lead, *out_shape))


def _one_value_at_many(
    self: Interpreter, eqn: JaxprEqn, invals: list, indices: Categorical, value, layout
) -> list:
    r"""``x.at[idx].set(c)`` of one value ``c`` at a vector of relaxed indices (marking pixels,
    visited cells): the order of the writes does not matter, so each element keeps ``x`` with
    the probability that no write lands on it, :math:`\prod_k (1 - p_k)` (the writes taken as
    independent), and is ``c`` otherwise."""
    operand = invals[0]
    out_aval = aval(eqn.outvars[0])
    sizes = [out_aval.shape[d] for d in layout.operand_dims]
    landing = _landing(indices, layout, sizes)
    missed = _on_operand(jnp.prod(1 - landing, axis=0), layout, out_aval.shape)
    hard = hard_thunk(eqn, invals)(0)
    if floating(out_aval):
        x = jnp.asarray(unwrap(operand))
        missed = missed.astype(x.dtype)
        mask = sentinel(self, eqn.invars[2])
        if mask is not None and not np.isnan(mask):  # (as in _scatter_rule)
            self.record(eqn, "a sentinel written at relaxed indices: present where none lands")
            return [Live(masked(self, x, missed, mask, out_aval.shape))]
        self.record(eqn, "one value written at several relaxed indices: kept where none lands")
        new = jnp.full_like(x, value)
        return [Live(blend_with_infinities(1 - missed, new, x, self.options.softness))]
    self.record(eqn, "one value written at several relaxed indices: kept where none lands")
    if out_aval.dtype != jnp.bool_ and not is_soft(operand):
        x = jnp.broadcast_to(unwrap(operand), out_aval.shape)
        both = jnp.stack([x, jnp.full_like(x, value)], axis=-1)
        return [Categorical(both, jnp.stack([missed, 1 - missed], axis=-1), hard)]
    old = jnp.broadcast_to(mean(operand).astype(missed.dtype), out_aval.shape)
    blended = missed * old + (1 - missed) * jnp.asarray(value, missed.dtype)
    return [SoftBool(blended, hard) if out_aval.dtype == jnp.bool_ else Expected(blended, hard)]


# The most write-position pairs a scatter of many values at relaxed indices weighs.
_MAX_WRITES = 1 << 22


def _writes_elements(indices: Categorical, layout, out_shape) -> bool:
    """Whether a scatter at relaxed indices writes single elements, one index per axis of the
    operand, with few enough write-position pairs to weigh them all."""
    writes = math.prod(indices.cands.shape[:-2])
    return (
        layout.inserted_dims == tuple(sorted(layout.operand_dims))
        and not layout.batching_dims
        and not layout.window_dims
        and len(layout.operand_dims) == len(out_shape)
        and writes * math.prod(out_shape) <= _MAX_WRITES
    )


def _values_at_many(
    self: Interpreter,
    eqn: JaxprEqn,
    invals: list,
    indices: Categorical,
    layout,
    maximum: bool | None = None,
) -> list:
    r"""``x.at[idx].set(v)`` of one value per write at a vector of relaxed indices (points
    rasterised with their own values, values put at their ranks): where several writes land on
    an element, the last in the program's order wins, as XLA's scatter does. Each element is
    ``x`` with the probability that no write lands on it, and ``v_n`` with the probability
    :math:`p_n \prod_{m > n} (1 - p_m)` that write n lands there and no later one does (the
    writes taken as independent): exact at one-hot laws.

    ``x.at[idx].max(v)`` (``maximum``: True; ``.min``: False) is the same with the writes in
    increasing (decreasing) order of their values, each combined with ``x``: the largest
    (smallest) value that lands wins.
    """
    operand, _, updates = invals
    out_aval = aval(eqn.outvars[0])
    sizes = [out_aval.shape[d] for d in layout.operand_dims]
    landing = _landing(indices, layout, sizes)  # [write, position]
    n = landing.shape[0]
    if maximum is not None:
        written = jnp.reshape(unwrap(updates), n)
        order = jnp.argsort(written if maximum else -written)
        landing, updates = landing[order], written[order]
    # The probability that no write from n on lands: an exclusive running product from the end.
    kept = jnp.cumprod((1 - landing)[::-1], axis=0)[::-1]
    later = jnp.concatenate([kept[1:], jnp.ones_like(kept[:1])], axis=0)
    weights = jnp.concatenate([kept[:1], landing * later], axis=0)  # [1 + write, position]
    weights = jnp.moveaxis(_on_operand(weights, layout, out_aval.shape), 0, -1)
    wins = "the last" if maximum is None else "the extreme"
    self.record(eqn, f"values written at several relaxed indices: {wins} write that lands")
    hard = hard_thunk(eqn, invals)(0)
    if floating(out_aval) or is_soft(operand) or is_soft(updates):
        dtype = out_aval.dtype if floating(out_aval) else weights.dtype
        old = jnp.asarray(mean(operand) if is_soft(operand) else unwrap(operand), dtype)
        new = jnp.asarray(mean(updates) if is_soft(updates) else unwrap(updates), dtype)
        old = jnp.broadcast_to(old, out_aval.shape)[..., None]
        new = jnp.broadcast_to(new.reshape(n), (*out_aval.shape, n))
        weights = weights.astype(dtype)
        if maximum is None:
            value = weighted_sum(weights, jnp.concatenate([old, new], axis=-1))
        else:
            tau = jnp.asarray(self.options.softness, dtype)
            value = _combined(maximum, tau, old[..., 0], new, weights)
        if floating(out_aval):
            return [Live(value)]
        return [SoftBool(value, hard) if out_aval.dtype == jnp.bool_ else Expected(value, hard)]
    x = jnp.broadcast_to(jnp.asarray(unwrap(operand)), out_aval.shape)
    new = jnp.broadcast_to(jnp.asarray(unwrap(updates), x.dtype).reshape(n), (*x.shape, n))
    return [Categorical(jnp.concatenate([x[..., None], new], axis=-1), weights, hard)]


def _combined(maximum: bool, tau, old, new, weights) -> jax.Array:
    """The largest (smallest) value that lands on each element, or ``old``, weighed by
    ``weights`` (``[..., 1 + write]``, the first for none landing). Where ``old`` is -inf (inf),
    as in the empty segments of ``segment_max``, the value of the writes that land less
    (plus) ``tau * log q``, q the probability that one lands, as ``jnp.where(c, x, -inf)`` is
    relaxed: -inf (inf) only where no write can land, not wherever one might miss."""
    identity = -jnp.inf if maximum else jnp.inf
    empty = old == identity
    safe_old = jnp.where(empty, jnp.zeros((), old.dtype), old)[..., None]
    combine = jnp.maximum if maximum else jnp.minimum
    value = weighted_sum(weights, jnp.concatenate([safe_old, combine(safe_old, new)], axis=-1))
    landed = weights[..., 1:]
    q = jnp.sum(landed, axis=-1)
    some = q > 0
    safe_q = jnp.where(some, q, 1)
    present = weighted_sum(landed / safe_q[..., None], new)
    present = present + (1 if maximum else -1) * tau * jnp.log(safe_q)
    return jnp.where(empty, jnp.where(some, present, identity), value)


@rule("scatter-max", "scatter_max", "scatter-min", "scatter_min")
def _scatter_extreme_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    """``x.at[idx].max(v)`` / ``.min(v)`` (``segment_max``, max-pooling into cells) of floats at
    relaxed indices: the largest (smallest) value that lands on an element, or ``x``."""
    operand, indices, updates = invals
    layout = _jaxpr.scatter(eqn)
    out_aval = aval(eqn.outvars[0])
    indices = _one_joint_position(indices, len(layout.operand_dims))
    if (
        not isinstance(indices, Categorical)
        or not floating(out_aval)
        or is_soft(operand)
        or is_soft(updates)
        or not _writes_elements(indices, layout, out_aval.shape)
    ):
        return self.default(eqn, invals)
    maximum = eqn.primitive.name.endswith("max")
    return _values_at_many(self, eqn, [operand, indices, updates], indices, layout, maximum)


@rule("scatter-add", "scatter_add")
def _scatter_add_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    r"""``x.at[i].add(v)`` at relaxed indices (a histogram of binned floats, ``jnp.bincount``,
    ``segment_sum``): the expected sums, :math:`x + \sum_k` (``v`` times the probability of
    candidate index ``k``) added at ``k``, each candidate index handled as the program's
    scatter handles it (dropped or clipped when out of range)."""
    operand, indices, updates = invals
    if not isinstance(indices, Categorical) or any(
        isinstance(v, Categorical) for v in (operand, updates)
    ):
        return self.default(eqn, invals)
    layout = _jaxpr.scatter(eqn)
    out_aval = aval(eqn.outvars[0])
    dtype = out_aval.dtype if floating(out_aval) else indices.probs.dtype
    cands = indices.cands
    # The probability of each candidate index vector, placed on the axes of the updates.
    probs = jnp.broadcast_to(indices.probs, cands.shape)[..., 0, :]
    for d in sorted(layout.window_dims):
        probs = jnp.expand_dims(probs, d)
    base = jnp.asarray(mean(operand) if is_soft(operand) else unwrap(operand)).astype(dtype)
    values = jnp.asarray(mean(updates) if is_soft(updates) else unwrap(updates)).astype(dtype)

    probs = probs.astype(dtype)
    scattered = np.ndim(values) - len(layout.window_dims)  # the axes of updates that indices index
    if not layout.batching_dims and layout.window_dims == tuple(range(scattered, np.ndim(values))):
        # One scatter of every candidate's update: the candidates are one more axis of indices.
        numbers = jax.lax.ScatterDimensionNumbers(
            update_window_dims=tuple(d + 1 for d in layout.window_dims),
            inserted_window_dims=layout.inserted_dims,
            scatter_dims_to_operand_dims=layout.operand_dims,
        )
        total = jax.lax.scatter_add(
            jnp.broadcast_to(base, out_aval.shape),
            jnp.moveaxis(jnp.asarray(cands), -1, -2),
            jnp.expand_dims(values, scattered) * jnp.moveaxis(probs, -1, scattered),
            numbers,
            mode=layout.mode,
        )
    else:

        def candidate(index, p):
            return jax.lax.scatter_add(
                jnp.zeros_like(base),
                index,
                values * p,
                layout.numbers,
                indices_are_sorted=layout.indices_are_sorted,
                mode=layout.mode,
            )

        total = base + jnp.sum(jax.vmap(candidate, in_axes=(-1, -1))(cands, probs), axis=0)
    self.record(eqn, "expected sums over the candidate indices (soft counts)")
    if floating(out_aval):
        # integers added at relaxed positions: an integer count in every outcome, compared with
        # an integer at the half-integer (an empty cluster's count > 0 is 0, not 1/2)
        return [Live(total, integral=always_integral(operand) and always_integral(updates))]
    return [Expected(total, hard_thunk(eqn, invals)(0))]
