"""The one reader of jaxpr equations: every parameter whose name or layout differs between JAX
versions is read here, so that the rules never index ``eqn.params`` themselves.

What changed, and is handled here:

* JAX 0.11 described ``scan``'s operands by flat trees ``ft_in`` / ``ft_out`` (consts, carry,
  xs) instead of the counts ``num_consts`` / ``num_carry``;
* from JAX 0.11 the inner jaxprs of ``jit``, ``scan``, ``while``, ``cond`` and the custom
  derivative calls are ``Jaxpr`` objects carrying their constants, where they were
  ``ClosedJaxpr`` before;
* nested ``jit`` is the primitive ``jit`` since JAX 0.7 (``pjit`` before);
* ``lax.top_k`` gained an ``axis`` (it worked on the last axis);
* the source information of an equation (its user frames and name stack) is private to JAX.

A layout this module does not know raises a :class:`~softflow.RelaxError` naming the primitive,
the JAX version and the range softflow is tested on, never a ``KeyError`` from inside a rule.
"""

import contextlib
import functools
import itertools
import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

import jax
import numpy as np
from jax.core import eval_jaxpr
from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn

from ._errors import RelaxError

try:  # private to JAX: the user's source line in messages, and kept in the relaxed program
    from jax._src import source_info_util as _source_info
except ImportError:  # pragma: no cover - a JAX without it still relaxes, with vaguer messages
    _source_info = None

#: The JAX versions the test suite runs on (CI: the oldest allowed and the newest released).
TESTED_JAX = ("0.10.0", "0.12.0.1")

_CALLS = ("jit", "pjit", "closed_call", "core_call")


def layout_error(eqn: JaxprEqn, detail: str) -> RelaxError:
    """The error for an equation whose parameters are not laid out as this module expects."""
    return RelaxError(
        f"sf.relax does not know the layout of `{eqn.primitive.name}` equations in jax "
        f"{jax.__version__} ({detail}); softflow is tested on jax {TESTED_JAX[0]} to "
        f"{TESTED_JAX[1]}. Please report this, with your JAX version."
    )


def param(eqn: JaxprEqn, name: str) -> Any:
    """``eqn.params[name]``, or a :func:`layout_error` naming what the equation has instead."""
    try:
        return eqn.params[name]
    except KeyError:
        raise layout_error(eqn, f"no parameter {name!r}; it has {sorted(eqn.params)}") from None


# -- inner jaxprs ------------------------------------------------------------------------------


class Closed(NamedTuple):
    """A jaxpr and the values of its constant variables."""

    jaxpr: Jaxpr
    consts: list


def closed(value: Any, eqn: JaxprEqn) -> Closed:
    """An inner jaxpr as :class:`Closed`: a ``ClosedJaxpr`` (JAX <= 0.10), or a ``Jaxpr`` with
    its constants (JAX >= 0.11) or without (the body of ``checkpoint``)."""
    if isinstance(value, ClosedJaxpr):
        return Closed(value.jaxpr, list(value.consts))
    if isinstance(value, Jaxpr):
        consts = list(getattr(value, "consts", None) or ())
        if len(consts) != len(value.constvars):
            raise layout_error(eqn, "an inner jaxpr whose constants are not attached to it")
        return Closed(value, consts)
    raise layout_error(eqn, f"an inner jaxpr of type {type(value).__name__}")


def is_call(eqn: JaxprEqn) -> bool:
    """Whether ``eqn`` calls an inner jaxpr as a function (nested ``jit``, ``closed_call``)."""
    return eqn.primitive.name in _CALLS


def call_name(eqn: JaxprEqn) -> str | None:
    """The name of the function a call equation calls (the Python function's name for ``jit``)."""
    return eqn.params.get("name")


def call_body(eqn: JaxprEqn) -> Closed:
    name = "call_jaxpr" if "call_jaxpr" in eqn.params else "jaxpr"
    return closed(param(eqn, name), eqn)


def custom_body(eqn: JaxprEqn) -> Closed:
    """The primal function of a ``custom_jvp_call`` / ``custom_vjp_call`` equation."""
    for name in ("call_jaxpr", "fun_jaxpr"):
        if name in eqn.params:
            return closed(eqn.params[name], eqn)
    raise layout_error(eqn, f"no primal jaxpr among {sorted(eqn.params)}")


def hi_primitive_body(eqn: JaxprEqn) -> Closed:
    """What a ``call_hi_primitive`` equation computes, in lower-level primitives (JAX >= 0.12
    writes ``jnp.nonzero`` and its users so): its primitive's ``expand``, traced to a jaxpr."""
    prim = param(eqn, "_prim")
    try:
        in_tree, out_tree, expand = prim.in_tree, prim.out_tree, prim.expand
    except AttributeError as error:
        raise layout_error(eqn, f"a hi primitive without {error.name!r}") from None

    def lowered(*flat):
        outs = expand(*jax.tree_util.tree_unflatten(in_tree, flat))
        leaves, tree = jax.tree_util.tree_flatten(outs)
        if tree != out_tree:
            raise layout_error(eqn, f"expand returned {tree}, not {out_tree}")
        return leaves

    made = jax.make_jaxpr(lowered)(*(v.aval for v in eqn.invars))
    return Closed(made.jaxpr, list(made.consts))


def has_inner_jaxpr(eqn: JaxprEqn) -> bool:
    """Whether ``eqn`` runs inner jaxprs (a loop, a branch, a call, a custom derivative)."""
    inner = (Jaxpr, ClosedJaxpr)
    return any(
        isinstance(v, inner) or (isinstance(v, tuple) and any(isinstance(b, inner) for b in v))
        for v in eqn.params.values()
    )


class Remat(NamedTuple):
    body: Jaxpr
    prevent_cse: bool
    policy: Any


def remat(eqn: JaxprEqn) -> Remat:
    """``jax.checkpoint``: its (open) body and its options."""
    body = closed(param(eqn, "jaxpr"), eqn)
    if body.consts:
        raise layout_error(eqn, "a checkpointed body with constants")
    return Remat(body.jaxpr, param(eqn, "prevent_cse"), param(eqn, "policy"))


def cond_branches(eqn: JaxprEqn) -> list[Closed]:
    """The branches of ``lax.cond`` / ``lax.switch``, in index order (``cond``: false, true)."""
    return [closed(b, eqn) for b in param(eqn, "branches")]


class While(NamedTuple):
    cond: Closed
    body: Closed
    cond_nconsts: int
    body_nconsts: int


def while_loop(eqn: JaxprEqn) -> While:
    """``lax.while_loop``: operands are the condition's consts, the body's consts, the carry."""
    return While(
        closed(param(eqn, "cond_jaxpr"), eqn),
        closed(param(eqn, "body_jaxpr"), eqn),
        int(param(eqn, "cond_nconsts")),
        int(param(eqn, "body_nconsts")),
    )


class Scan(NamedTuple):
    body: Closed
    num_consts: int
    num_carry: int
    length: int
    reverse: bool
    unroll: Any


def scan(eqn: JaxprEqn) -> Scan:
    """``lax.scan``: operands are consts, carry, xs; outputs the carry, then the stacked ys."""
    params = eqn.params
    if "num_consts" in params and "num_carry" in params:
        num_consts, num_carry = int(params["num_consts"]), int(params["num_carry"])
    elif "ft_in" in params:
        try:
            consts, carry, xs = params["ft_in"].unpack()
            num_consts, num_carry = len(consts), len(carry)
            num_xs = len(xs)
        except (AttributeError, TypeError, ValueError) as error:
            raise layout_error(eqn, f"ft_in is not (consts, carry, xs): {error}") from None
        if num_consts + num_carry + num_xs != len(eqn.invars):
            raise layout_error(eqn, "ft_in does not describe every operand")
    else:
        raise layout_error(eqn, f"neither num_consts nor ft_in among {sorted(params)}")
    return Scan(
        closed(param(eqn, "jaxpr"), eqn),
        num_consts,
        num_carry,
        int(param(eqn, "length")),
        bool(param(eqn, "reverse")),
        param(eqn, "unroll"),
    )


def evaluate(closed: Closed, *args) -> list:
    """Evaluate a jaxpr exactly, as the program does."""
    return eval_jaxpr(closed.jaxpr, closed.consts, *args)


def truncated(jaxpr: Jaxpr, eqns: Sequence[JaxprEqn], outvars: Sequence) -> Jaxpr:
    """``jaxpr`` with only ``eqns``, returning ``outvars``."""
    debug_info = jaxpr.debug_info
    if debug_info is not None and hasattr(debug_info, "_replace"):
        debug_info = debug_info._replace(result_paths=None)
    return jaxpr.replace(eqns=list(eqns), outvars=list(outvars), debug_info=debug_info)


# -- parameters of array primitives ----------------------------------------------------------


def axes(eqn: JaxprEqn) -> tuple[int, ...]:
    """The reduced axes of ``reduce_*`` / ``argmax`` / ``argmin``."""
    return tuple(int(a) for a in param(eqn, "axes"))


def cumulative(eqn: JaxprEqn) -> tuple[int, bool]:
    """The axis of ``cumsum`` / ``cummax`` / ... and whether it runs in reverse."""
    return int(param(eqn, "axis")), bool(param(eqn, "reverse"))


def unstacked_axis(eqn: JaxprEqn) -> int:
    """The axis that ``unstack`` (tuple unpacking of an array, jax >= 0.12) splits."""
    return int(param(eqn, "axis"))


def split_sizes(eqn: JaxprEqn) -> tuple[tuple[int, ...], int]:
    """The sizes of the pieces that ``split`` (``jnp.split``) cuts, and the axis it cuts."""
    return tuple(int(n) for n in param(eqn, "sizes")), int(param(eqn, "axis"))


def index_dtype(eqn: JaxprEqn) -> np.dtype:
    return np.dtype(param(eqn, "index_dtype"))


def new_dtype(eqn: JaxprEqn) -> np.dtype:
    """The target dtype of ``convert_element_type``."""
    return np.dtype(param(eqn, "new_dtype"))


class Sort(NamedTuple):
    dimension: int
    num_keys: int


def sort(eqn: JaxprEqn) -> Sort:
    return Sort(int(param(eqn, "dimension")), int(param(eqn, "num_keys")))


class TopK(NamedTuple):
    k: int
    axis: int


def top_k(eqn: JaxprEqn) -> TopK:
    """``lax.top_k``: the number of values and the axis (the last one before ``axis`` existed)."""
    axis = eqn.params.get("axis", -1)
    ndim = len(cast(Any, eqn.invars[0].aval).shape)
    return TopK(int(param(eqn, "k")), int(axis) % ndim if ndim else 0)


def with_result_dtype(eqn: JaxprEqn, dtype: Any) -> dict:
    """``eqn``'s parameters with its accumulation dtype (``dot_general``, ``reduce_sum`` of
    integers computed on their expectations), if it has one, set to ``dtype``."""
    params = dict(eqn.params)
    if params.get("preferred_element_type") is not None:
        params["preferred_element_type"] = dtype
    return params


def scatter_add_on(eqn: JaxprEqn, operand, indices, updates) -> jax.Array:
    """The ``scatter-add`` ``eqn`` on operands of another dtype (integers summed as their
    expected values): its reduction, typed for the original dtype, is built again."""
    return jax.lax.scatter_add(
        operand,
        indices,
        updates,
        param(eqn, "dimension_numbers"),
        indices_are_sorted=bool(param(eqn, "indices_are_sorted")),
        unique_indices=bool(param(eqn, "unique_indices")),
        mode=param(eqn, "mode"),
    )


def iota_dimension(eqn: JaxprEqn) -> int:
    """The axis along which an ``iota`` counts."""
    return int(param(eqn, "dimension"))


def concatenate_dimension(eqn: JaxprEqn) -> int:
    """The axis along which a ``concatenate`` joins its operands."""
    return int(param(eqn, "dimension"))


def slice_sizes(eqn: JaxprEqn) -> tuple[int, ...]:
    return tuple(int(s) for s in param(eqn, "slice_sizes"))


def gather_offset_dims(eqn: JaxprEqn) -> tuple[int, ...]:
    return tuple(param(eqn, "dimension_numbers").offset_dims)


def with_trailing_axis(eqn: JaxprEqn, size: int) -> dict | None:
    """The parameters of ``eqn``, an operation that moves elements, applied to operands with one
    more trailing axis of ``size`` that it carries along; None for other operations."""
    name = eqn.primitive.name
    params = dict(eqn.params)
    if name in ("squeeze", "rev", "concatenate", "copy", "copy_p"):
        return params
    if params.get("sharding") is not None:
        return None
    if name == "slice":
        params["start_indices"] = (*params["start_indices"], 0)
        params["limit_indices"] = (*params["limit_indices"], size)
        if params.get("strides") is not None:
            params["strides"] = (*params["strides"], 1)
        return params
    if name == "transpose":
        permutation = tuple(params["permutation"])
        params["permutation"] = (*permutation, len(permutation))
        return params
    if name == "broadcast_in_dim":
        shape = tuple(params["shape"])
        params["shape"] = (*shape, size)
        params["broadcast_dimensions"] = (*params["broadcast_dimensions"], len(shape))
        return params
    if name == "reshape" and params.get("dimensions") is None:
        params["new_sizes"] = (*params["new_sizes"], size)
        return params
    return None


class PointGather(NamedTuple):
    """A gather that reads single elements (``x[i, j]`` with index arrays): every operand axis
    addressed by the index vector, in the order ``axes``, with slices of size 1."""

    axes: tuple[int, ...]  # the operand axis of each component of the index vector
    mode: Any  # jax.lax.GatherScatterMode
    fill_value: Any  # what FILL_OR_DROP reads out of bounds (None: the dtype's default)


def point_gather(eqn: JaxprEqn, ndim: int) -> PointGather | None:
    """The layout of a gather from an operand of ``ndim`` axes that reads single elements, or
    None for any other gather (windows, batching axes)."""
    numbers = param(eqn, "dimension_numbers")
    axes = tuple(int(d) for d in numbers.start_index_map)
    if (
        tuple(numbers.offset_dims)
        or tuple(getattr(numbers, "operand_batching_dims", ()))
        or sorted(axes) != list(range(ndim))
        or sorted(int(d) for d in numbers.collapsed_slice_dims) != list(range(ndim))
        or any(int(s) != 1 for s in param(eqn, "slice_sizes"))
    ):
        return None
    return PointGather(axes, param(eqn, "mode"), eqn.params.get("fill_value"))


class Scatter(NamedTuple):
    operand_dims: tuple[int, ...]  # the operand axes that the index vector addresses
    inserted_dims: tuple[int, ...]  # the operand axes that the update window does not cover
    batching_dims: tuple[int, ...]
    mode: Any  # jax.lax.GatherScatterMode
    combines: bool  # an update function (scatter-add, -mul, ...) rather than a plain write
    window_dims: tuple[int, ...]  # the axes of the updates inside one update window
    numbers: Any  # the ScatterDimensionNumbers, to emit the same scatter again
    indices_are_sorted: bool


def scatter(eqn: JaxprEqn) -> Scatter:
    numbers = param(eqn, "dimension_numbers")
    try:
        operand_dims = tuple(numbers.scatter_dims_to_operand_dims)
        inserted = tuple(numbers.inserted_window_dims)
    except AttributeError as error:
        raise layout_error(eqn, f"scatter dimension numbers: {error}") from None
    return Scatter(
        operand_dims,
        inserted,
        tuple(getattr(numbers, "operand_batching_dims", ())),
        param(eqn, "mode"),
        eqn.params.get("update_jaxpr") is not None,
        tuple(numbers.update_window_dims),
        numbers,
        bool(eqn.params.get("indices_are_sorted", False)),
    )


# -- evaluating an equation and reading its source -------------------------------------------


def bind(eqn: JaxprEqn, invals: Sequence, params: dict | None = None) -> list:
    """Evaluate ``eqn`` (with other ``params`` if given) as :func:`jax.core.eval_jaxpr` does,
    keeping the user's traceback and the equation's context on what it emits."""
    bind_params = eqn.primitive.get_bind_params(eqn.params if params is None else params)
    user_context = (
        contextlib.nullcontext()
        if _source_info is None
        else _source_info.user_context(eqn.source_info.traceback)
    )
    with user_context, eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


def user_frames(eqn: JaxprEqn) -> Iterable:
    """The frames of the user's code (outside JAX) where ``eqn`` was traced, innermost first."""
    if _source_info is None:
        return ()
    return _source_info.user_frames(eqn.source_info.traceback)


def signature(eqn: JaxprEqn) -> tuple[str, str]:
    """What an equation does, apart from its operands: its primitive and parameters."""
    return eqn.primitive.name, repr(sorted((k, repr(v)) for k, v in eqn.params.items()))


def called_function(eqn: JaxprEqn) -> str | None:
    """The public jax.numpy / jax.nn function the user's code called to make ``eqn`` (the frame
    just inside the user's, ``jnp.extract`` for the ``sort`` of its ``argsort``), if any."""
    traceback = eqn.source_info.traceback
    if traceback is None:
        return None
    frames = list(traceback.frames)
    # (Converted Python syntax calls it through softflow's frames.)
    for inner, outer in itertools.pairwise(frames):
        if _in_library(inner.file_name, _JAX) and not _in_library(outer.file_name, _JAX):
            name = inner.function_name
            for prefix, module in (("jnp", jax.numpy), ("jax.nn", jax.nn)):
                if getattr(module, name, None) is not None:
                    return f"{prefix}.{name}"
            return None
    return None


def in_name_scope(eqn: JaxprEqn, scope: str) -> bool:
    """Whether ``eqn`` was traced inside ``jax.named_scope(scope)``."""
    return scope in str(eqn.source_info.name_stack)


# Where library code lives: JAX, NumPy and softflow.
_LIBRARIES = tuple(
    str(path.resolve()) + os.sep
    for path in (
        pathlib.Path(jax.__file__).parent,
        pathlib.Path(np.__file__).parent,
        pathlib.Path(__file__).parents[1],
    )
)


_JAX = (str(pathlib.Path(jax.__file__).parent.resolve()) + os.sep,)


@functools.cache
def _in_library(file_name: str, libraries: tuple[str, ...] = _LIBRARIES) -> bool:
    return str(pathlib.Path(file_name).resolve()).startswith(libraries)


def library_custom_function(eqn: JaxprEqn) -> bool:
    """Whether the body of a ``custom_jvp_call`` / ``custom_vjp_call`` is library code (JAX's,
    NumPy's or softflow's own: ``xlogy``, ``det``, ``relu``): every equation of it was traced
    with no frame outside the libraries between it and the custom function's entry."""
    if _source_info is None:
        return False
    for inner in custom_body(eqn).jaxpr.eqns:
        traceback = inner.source_info.traceback
        if traceback is None:
            return False
        for frame in traceback.frames:
            if "custom_derivatives" in frame.file_name:
                break
            if not _in_library(frame.file_name):
                return False
        else:
            return False
    return True


def primitive_names(jaxpr: Jaxpr) -> set[str]:
    """The names of the primitives of ``jaxpr`` and of the jaxprs inside it."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for inner in value if isinstance(value, tuple | list) else (value,):
                if isinstance(inner, ClosedJaxpr):
                    names |= primitive_names(inner.jaxpr)
                elif isinstance(inner, Jaxpr):
                    names |= primitive_names(inner)
    return names
