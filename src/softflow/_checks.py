"""Argument validation shared by the public functions.

Every check names the argument and what was expected, so that a mistake surfaces where it was made
instead of as a NaN far downstream. Checks of values run at trace time when the value is known
then, and at run time (through :func:`equinox.error_if`) when it is traced.
"""

from collections.abc import Iterable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.typing import DTypeLike

#: A softness as the operations take it: an array, NumPy where it is known at trace time.
Softness = jax.Array | np.ndarray


def is_concrete(x) -> bool:
    """Whether ``x`` has a value now (Python number or array), as opposed to a tracer under jit."""
    return not any(isinstance(leaf, Tracer) for leaf in jax.tree_util.tree_leaves(x))


def check_choice(name: str, value: Any, choices: Iterable[str]) -> Any:
    """Return ``value`` if it is one of ``choices``; otherwise raise a ValueError listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}.")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as a bool if it is a Python or NumPy bool; otherwise raise naming it.

    Flags that change the structure or meaning of a result are not read by truthiness: a string
    such as ``"no"`` is true, and an integer usually means a mistaken argument order.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool; got {value!r} of type {type(value).__name__}.")
    return bool(value)


def check_int(name: str, value: Any, *, minimum: int, maximum: int = 2**31 - 1) -> int:
    """Return ``value`` if it is a Python int in [minimum, maximum]; otherwise raise naming it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{name} must be a Python int; got {value!r} of type {type(value).__name__}."
        )
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an int in [{minimum}, {maximum}]; got {value}.")
    return int(value)


def as_real_array(name: str, x: Any, *, allow_bool: bool = True) -> jax.Array:
    """``x`` as a JAX array, or a TypeError naming ``name`` if it is not a real number or array.

    Accepts Python numbers, NumPy and JAX arrays (and tracers) of integer, floating or (when
    ``allow_bool``) boolean dtype. Rejects complex values, strings, None, lists and other objects,
    rather than dropping an imaginary part or guessing what a list means.
    """
    if isinstance(x, jax.Array | np.ndarray | np.generic | int | float | bool):
        dtype = jnp.result_type(x)
        if dtype == jnp.bool_ and allow_bool:
            return jnp.asarray(x)
        if jnp.issubdtype(dtype, jnp.floating) or (
            jnp.issubdtype(dtype, jnp.integer) and dtype != jnp.bool_
        ):
            return jnp.asarray(x)
        what = f"an array of dtype {dtype}"
    else:
        what = f"{x!r} of type {type(x).__name__}"
    accepted = "integer, floating or boolean" if allow_bool else "integer or floating"
    raise TypeError(f"{name} must be a real number or an array of {accepted} dtype; got {what}.")


def check_truth_values(name: str, p: jax.Array, *, sums_to_one: bool = False) -> jax.Array:
    """``p``; a ValueError naming ``name`` when it is known now and outside [0, 1] (or, with
    ``sums_to_one``, when its last axis does not sum to 1), beyond a few roundings. A traced
    ``p`` is not checked: that would cost a test in every call, and soft comparisons never
    leave [0, 1]."""
    floating = jnp.issubdtype(p.dtype, jnp.floating)
    if not is_concrete(p) or not (floating or jnp.issubdtype(p.dtype, jnp.integer)):
        return p  # (booleans are truth values)
    values = np.asarray(p, np.float64)
    if not values.size:
        return p
    eps = float(jnp.finfo(p.dtype).eps) if floating else 0.0
    low, high = np.nanmin(values), np.nanmax(values)
    if low < -8 * eps or high > 1 + 8 * eps:
        raise ValueError(
            f"{name} must hold truth values or weights in [0, 1]; got values from {low} to {high}."
        )
    if sums_to_one:
        total = values.sum(axis=-1)
        if np.any(np.abs(total - 1) > 4 * np.sqrt(eps)):
            raise ValueError(
                f"{name} must sum to 1 along its last axis (one weight per branch or value); "
                f"got sums from {np.nanmin(total)} to {np.nanmax(total)}."
            )
    return p


def float_dtype(*dtypes: DTypeLike) -> np.dtype:
    """The floating dtype that values of ``dtypes`` are relaxed in.

    Floating dtypes keep their (promoted) dtype; integer or boolean ones, such as a count of
    neighbours, give the default float dtype (float32, or float64 under x64).
    """
    dtype = jnp.result_type(*dtypes)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return np.dtype(dtype)


def softness_array(
    softness: Any,
    dtype: DTypeLike,
    shape: tuple[int, ...],
    *,
    slices: str | None = None,
    name: str = "softness",
    numpy: bool = False,
) -> Softness:
    """Validate ``softness`` and return it as an array of ``dtype``.

    ``softness`` must be a real scalar or array that broadcasts against ``shape`` (the shape of the
    relaxed values) and, once cast to ``dtype``, is positive and finite: 1e-50 is 0 in float32 and
    is rejected like 0. A concrete softness is checked here; a traced one (under jit, vmap or grad,
    or learned) is checked at run time by :func:`check_traced_softness`, attached to the returned
    array so that the check runs wherever the softness is used.

    ``slices`` describes ``shape`` when it is the shape of the slices of an operation along an
    axis (``"x without axis 1"``): there the softness gives one value per slice and must broadcast
    *to* ``shape``, never add axes to the result.

    ``numpy=True`` returns a concrete softness as a NumPy array (a traced one stays traced), for
    callers that pass it on to :func:`check_traced_softness`: it stays concrete under jit.
    """
    if isinstance(softness, bool):
        raise TypeError(
            f"{name} must be a positive real number or a float array; got {softness!r}."
        )
    # The value as given (a Python float is float64 here), before JAX rounds it to float32.
    given = None if isinstance(softness, Tracer) else np.asarray(softness)
    softness = as_real_array(name, softness, allow_bool=False)
    try:
        broadcast = jnp.broadcast_shapes(softness.shape, shape)
    except ValueError:
        broadcast = None
    if slices is not None and broadcast != tuple(shape):
        raise ValueError(
            f"{name} of shape {softness.shape} does not broadcast to the shape {tuple(shape)} of "
            f"{slices}: give a scalar or one {name} per slice, an array that broadcasts to "
            "that shape without adding axes."
        )
    if broadcast is None:
        raise ValueError(
            f"{name} of shape {softness.shape} does not broadcast against the shape {shape} of "
            "the values it applies to; give a scalar or an array that broadcasts against them."
        ) from None
    if given is None:
        # Checked where it is used: a check on the result alone would be dead code under grad.
        cast = softness.astype(dtype)
        return check_traced_softness(cast, cast, name=name)
    with np.errstate(over="ignore", under="ignore"):
        cast = given.astype(dtype)
    # A subnormal softness is 0 to XLA on CPU (flushed), and 1 / softness inf: NaN follows.
    smallest = np.finfo(dtype).tiny
    if cast.size == 0 or not np.all(np.isfinite(cast)) or not np.all(cast >= smallest):
        valid = given.size > 0 and np.all(given > 0) and np.all(np.isfinite(given))
        dtype_name = np.dtype(dtype).name
        shown = given.item() if given.ndim == 0 else given
        raise ValueError(
            f"{name} must be positive and finite in {dtype_name}; got {shown!r}"
            + (
                f" (it rounds to 0, a subnormal number or inf in {dtype_name}: the least is "
                f"{smallest:.3g})."
                if valid
                else "."
            )
        )
    # A NumPy array stays known under jit: check_traced_softness then adds no run-time check
    # (jnp.asarray would be staged as a tracer, and eqx.error_if, even folded away by XLA, leaves
    # the compiled function slower to call: 30 us a call on the CPU).
    return cast if numpy else jnp.asarray(cast)


def check_traced_softness(result: Any, softness: Softness, *, name: str = "softness") -> Any:
    """``result``, raising at run time if the traced ``softness`` is <= 0, NaN or inf.

    Attach it to what is computed: a result that does not use the softness (hard mode) carries the
    check too. A concrete softness passes unchanged (it was checked at trace time).
    """
    if is_concrete(softness):
        return result
    smallest = jnp.finfo(softness.dtype).tiny
    return eqx.error_if(
        result,
        ~(jnp.isfinite(softness) & (softness >= smallest)),
        f"{name} must be positive and finite in {softness.dtype}; a traced {name} was <= 0, "
        f"NaN or inf, or below {float(smallest):.3g} (0 or subnormal) in that dtype.",
    )


def check_unit_interval(name: str, value: jax.Array) -> jax.Array:
    """``value``, if every entry lies in [0, 1]; otherwise a ValueError naming it (NaN included).

    A concrete value is checked now. A traced one is checked at run time (like a traced softness)
    by a check attached to the returned array, so that it runs wherever the value is used.
    """
    message = f"{name} must lie in [0, 1]"
    if is_concrete(value):
        given = np.asarray(value)
        if not np.all((given >= 0) & (given <= 1)):
            raise ValueError(f"{message}; got {given.tolist()!r}.")
        return value
    return eqx.error_if(
        value, ~((value >= 0) & (value <= 1)), f"{message}; a traced {name} was outside or NaN."
    )


def check_float_leaves(name: str, tree: Any) -> None:
    """Raise a TypeError naming the first leaf of ``tree`` that is not a floating array (real
    or complex: a blend by real weights is defined for both)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            where = jax.tree_util.keystr(path) or "(the value itself)"
            raise TypeError(
                f"{name}: leaf {where} has dtype {dtype}; soft control flow blends values, so "
                "every leaf must be a floating array. Cast it first (for example "
                "x.astype(jnp.float32)), or keep integer state outside the blended value."
            )


def check_same_structure(name_a: str, a: Any, name_b: str, b: Any) -> None:
    """Raise a TypeError showing both tree structures when ``a`` and ``b`` differ in structure."""
    tree_a = jax.tree_util.tree_structure(a)
    tree_b = jax.tree_util.tree_structure(b)
    if tree_a != tree_b:
        raise TypeError(
            f"{name_a} and {name_b} must have the same pytree structure.\n"
            f"  {name_a}: {tree_a}\n  {name_b}: {tree_b}"
        )
