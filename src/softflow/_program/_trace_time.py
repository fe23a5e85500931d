"""Exact NumPy evaluation of the small programs that relax runs on values known at trace time.

Relax evaluates one primitive, vmapped over the candidates of a relaxed integer, on values known at
trace time (an index's candidates, a table's entries at them), so that later rules and loops can
see the values. Evaluated by jax, every new shape of every primitive costs one XLA compilation
(some 15 ms on a CPU): the analysis of a loop over a program counter's values made about a
thousand of them, 20 s at the first call in a process. The primitives below are evaluated with
NumPy instead, where NumPy's result is XLA's bit for bit: moves, selections and clamped gathers
of elements, comparisons, integer and boolean arithmetic (both wrap around in two's complement),
division by positive integers and conversions of in-range floats to integers. Any other
primitive (float arithmetic, whose rounding of subnormal numbers XLA:CPU may treat otherwise,
gathers that fill out-of-bounds reads, integer division by zero or negative numbers, conversions
of NaN or out-of-range floats to integers) sends the whole program back to jax.
"""

from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.extend.core import JaxprEqn, Literal

from . import _jaxpr
from ._values import aval

_ARITHMETIC: dict[str, Callable] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "neg": np.negative,
    "max": np.maximum,
    "min": np.minimum,
    "abs": np.abs,
    "sign": np.sign,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
    "not": np.invert,
}
_COMPARISONS: dict[str, Callable] = {
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
}
_REDUCTIONS: dict[str, Callable] = {
    "reduce_sum": np.sum,
    "reduce_max": np.max,
    "reduce_min": np.min,
    "reduce_or": np.any,
    "reduce_and": np.all,
}
#: Integers that float32 holds exactly: a conversion of larger ones rounds, left to XLA.
_EXACT_IN_FLOAT = 2**24


class _NotExact(Exception):
    """The program holds an operation that NumPy may not evaluate as XLA does."""


def _integral(*values: np.ndarray) -> bool:
    return all(v.dtype.kind in "biu" for v in values)


def _without_subnormals(*values: np.ndarray) -> bool:
    for v in values:
        if v.dtype.kind == "f" and v.size:
            magnitude = np.abs(v[np.isfinite(v)])
            if np.any((magnitude > 0) & (magnitude < np.finfo(v.dtype).tiny)):
                return False
    return True


def _convert(eqn: JaxprEqn, x: np.ndarray) -> np.ndarray:
    dtype = np.dtype(aval(eqn.outvars[0]).dtype)
    if x.dtype == dtype:
        return x
    if x.dtype.kind == "f" and dtype.kind in "iu":
        # Truncation toward zero, as XLA; NaN and values out of range (where XLA saturates and
        # NumPy's cast is undefined) are left to jax.
        bounds = np.iinfo(dtype)
        if not np.all((x > bounds.min - 1.0) & (x < bounds.max + 1.0)):
            raise _NotExact
        return x.astype(dtype)
    if not _integral(x):
        raise _NotExact
    if dtype.kind == "f" and np.any(np.abs(x.astype(np.int64)) > _EXACT_IN_FLOAT):
        raise _NotExact
    return x.astype(dtype)


def _broadcast_in_dim(eqn: JaxprEqn, x: np.ndarray) -> np.ndarray:
    shape = aval(eqn.outvars[0]).shape
    kept = [1] * len(shape)
    for axis, size in zip(_jaxpr.param(eqn, "broadcast_dimensions"), x.shape, strict=True):
        kept[axis] = size
    return np.broadcast_to(x.reshape(kept), shape)


def _reshape(eqn: JaxprEqn, x: np.ndarray) -> np.ndarray:
    if eqn.primitive.name == "reshape" and _jaxpr.param(eqn, "dimensions") is not None:
        raise _NotExact
    return x.reshape(aval(eqn.outvars[0]).shape)


def _slice(eqn: JaxprEqn, x: np.ndarray) -> np.ndarray:
    starts = _jaxpr.param(eqn, "start_indices")
    limits = _jaxpr.param(eqn, "limit_indices")
    strides = _jaxpr.param(eqn, "strides") or (1,) * len(starts)
    return x[tuple(slice(*bounds) for bounds in zip(starts, limits, strides, strict=True))]


def _iota(eqn: JaxprEqn) -> np.ndarray:
    out = aval(eqn.outvars[0])
    dimension = _jaxpr.iota_dimension(eqn)
    shape = [1] * len(out.shape)
    shape[dimension] = out.shape[dimension]
    return np.broadcast_to(np.arange(out.shape[dimension]).reshape(shape), out.shape)


def _select_n(which: np.ndarray, *cases: np.ndarray) -> np.ndarray:
    return np.choose(which.astype(np.int32), np.broadcast_arrays(*cases))


def _reduce(eqn: JaxprEqn, x: np.ndarray) -> np.ndarray:
    if not _integral(x):
        raise _NotExact
    return _REDUCTIONS[eqn.primitive.name](x, axis=tuple(_jaxpr.axes(eqn)))


def _gather(eqn: JaxprEqn, operand: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """XLA's gather with clamped starts (jax's ``clip`` and ``promise_in_bounds`` modes).

    Each batch element (the leading axes of ``indices``; the last holds the start) reads the
    window of ``slice_sizes`` at its start, clamped into the operand; the output puts the
    window's axes at ``offset_dims`` and the batch axes elsewhere, in order.
    """
    mode = _jaxpr.param(eqn, "mode")
    if getattr(mode, "name", str(mode)) not in ("CLIP", "PROMISE_IN_BOUNDS"):
        raise _NotExact  # filling out-of-bounds reads is part of jax's lowering
    numbers = _jaxpr.param(eqn, "dimension_numbers")
    sizes = tuple(_jaxpr.slice_sizes(eqn))
    batching = tuple(getattr(numbers, "operand_batching_dims", ()))
    index_batching = tuple(getattr(numbers, "start_indices_batching_dims", ()))
    batch_shape = indices.shape[:-1]
    starts = indices.reshape(-1, indices.shape[-1]).astype(np.int64)
    count = starts.shape[0]
    batch_position = np.unravel_index(np.arange(count), batch_shape) if batch_shape else ()
    window = [d for d in range(operand.ndim) if d not in numbers.collapsed_slice_dims]
    window = [d for d in window if d not in batching]
    window_shape = tuple(sizes[d] for d in window)
    reads = []
    for d in range(operand.ndim):
        if d in numbers.start_index_map:
            start = starts[:, list(numbers.start_index_map).index(d)]
        elif d in batching:
            start = np.asarray(batch_position[index_batching[batching.index(d)]], np.int64)
        else:
            start = np.zeros(count, np.int64)
        start = np.clip(start, 0, operand.shape[d] - sizes[d])
        shape = [count] + [1] * len(window)
        read = start.reshape(shape)
        if d in window:
            offset_shape = [1] * (1 + len(window))
            offset_shape[1 + window.index(d)] = sizes[d]
            read = read + np.arange(sizes[d]).reshape(offset_shape)
        reads.append(np.broadcast_to(read, (count, *window_shape)))
    values = operand[tuple(reads)].reshape(batch_shape + window_shape)
    offset_dims = list(numbers.offset_dims)
    rank = len(batch_shape) + len(window_shape)
    batch_axes = iter(range(len(batch_shape)))
    order = [
        len(batch_shape) + offset_dims.index(p) if p in offset_dims else next(batch_axes)
        for p in range(rank)
    ]
    return np.transpose(values, order)


def _divide(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Integer ``div`` (rounded toward zero) and ``rem`` (the sign of ``x``) by positive ``y``.

    (Division by zero or by a negative number, where XLA's conventions differ from NumPy's or
    overflow, is left to jax.)
    """
    if not _integral(x, y) or x.dtype.kind == "b" or not np.all(y > 0):
        raise _NotExact
    remainder = np.fmod(x, y)
    return remainder if name == "rem" else (x - remainder) // y


def _dynamic_slice(eqn: JaxprEqn, x: np.ndarray, *starts: np.ndarray) -> np.ndarray:
    """XLA's dynamic slice: each start clamped so that the slice lies inside ``x``."""
    sizes = _jaxpr.slice_sizes(eqn)
    clamped = [
        int(np.clip(start, 0, dim - size))
        for start, dim, size in zip(starts, x.shape, sizes, strict=True)
    ]
    return x[tuple(slice(c, c + size) for c, size in zip(clamped, sizes, strict=True))]


def _apply(eqn: JaxprEqn, invals: Sequence[np.ndarray]) -> np.ndarray:
    name = eqn.primitive.name
    if name in _ARITHMETIC:
        if not _integral(*invals):
            raise _NotExact
        return _ARITHMETIC[name](*invals)
    if name in _COMPARISONS:
        if not _without_subnormals(*invals):
            raise _NotExact
        return _COMPARISONS[name](*invals)
    if name in _REDUCTIONS:
        return _reduce(eqn, *invals)
    if name == "clamp" and _integral(*invals):
        low, x, high = invals
        return np.minimum(np.maximum(x, low), high)
    if name == "select_n":
        return _select_n(*invals)
    if name == "convert_element_type":
        return _convert(eqn, *invals)
    if name == "broadcast_in_dim":
        return _broadcast_in_dim(eqn, *invals)
    if name in ("reshape", "squeeze"):
        return _reshape(eqn, *invals)
    if name == "transpose":
        return np.transpose(invals[0], _jaxpr.param(eqn, "permutation"))
    if name == "slice":
        return _slice(eqn, *invals)
    if name == "concatenate":
        return np.concatenate(invals, axis=_jaxpr.param(eqn, "dimension"))
    if name == "rev":
        return np.flip(invals[0], tuple(_jaxpr.param(eqn, "dimensions")))
    if name == "iota":
        return _iota(eqn)
    if name == "gather":
        return _gather(eqn, *invals)
    if name == "dynamic_slice":
        return _dynamic_slice(eqn, *invals)
    if name in ("div", "rem"):
        return _divide(name, *invals)
    if name in ("copy", "copy_p"):
        return invals[0]
    raise _NotExact


def _run(jaxpr, consts: Sequence, args: Sequence) -> list[np.ndarray]:
    """The jaxpr evaluated with NumPy (a call of an inner jaxpr, such as ``jit``, recursively)."""
    env: dict = {}

    def read(atom):
        if isinstance(atom, Literal):
            return np.asarray(atom.val, aval(atom).dtype)
        return env[atom]

    for var, value in zip(jaxpr.constvars, consts, strict=True):
        env[var] = np.asarray(value)
    for var, value in zip(jaxpr.invars, args, strict=True):
        env[var] = np.asarray(value)
    for eqn in jaxpr.eqns:
        invals = [read(a) for a in eqn.invars]
        if _jaxpr.is_call(eqn):
            body = _jaxpr.call_body(eqn)
            outs = _run(body.jaxpr, body.consts, invals)
        elif len(eqn.outvars) == 1:
            outs = [_apply(eqn, invals)]
        else:
            raise _NotExact
        for var, value in zip(eqn.outvars, outs, strict=True):
            value = np.asarray(value)
            if value.shape != aval(var).shape:
                raise _NotExact
            env[var] = value.astype(aval(var).dtype, copy=False)
    return [np.array(read(atom)) for atom in jaxpr.outvars]


def evaluate(fn: Callable, args: Sequence) -> list[np.ndarray] | None:
    """``fn(*args)`` as NumPy arrays, bit for bit what jax computes; None where it may not be.

    Arguments:
        fn: a function of arrays (traced once to a jaxpr).
        args: its arguments, all known at trace time.
    """
    closed = jax.make_jaxpr(fn)(*args)
    try:
        with np.errstate(all="ignore"):
            return _run(closed.jaxpr, closed.consts, jax.tree.leaves(args))
    except (_NotExact, ValueError, TypeError, IndexError):
        # (Also an operation NumPy refuses, such as the maximum of nothing: jax decides.)
        return None
