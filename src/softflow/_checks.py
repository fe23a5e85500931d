"""Argument validation shared by the public functions.

Every check raises at trace time with a message that names the argument and what was expected, so
that a mistake surfaces where it was made instead of as a NaN far downstream.
"""

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """Whether ``x`` has a value now (Python number or array), as opposed to a tracer under jit."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise a ValueError listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}.")
    return value


def check_softness(softness):
    """Check that a concrete softness is a positive, finite real; traced values pass unchecked."""
    if isinstance(softness, bool) or not _is_real(softness):
        raise TypeError(
            f"softness must be a positive real number or a float array; got {softness!r} "
            f"of type {type(softness).__name__}."
        )
    if is_concrete(softness):
        values = np.asarray(softness)
        if values.size == 0 or not np.all(np.isfinite(values)) or not np.all(values > 0):
            raise ValueError(f"softness must be positive and finite; got {softness!r}.")
    return softness


def _is_real(x) -> bool:
    if isinstance(x, int | float):
        return True
    dtype = getattr(x, "dtype", None)
    return dtype is not None and (
        jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
    )


def float_dtype(*args):
    """The floating dtype that a comparison of ``args`` computes and returns in.

    Floating inputs keep their (promoted) dtype; integer or boolean inputs, such as a count of
    neighbours, give the default float dtype (float32, or float64 under x64). Complex inputs are
    rejected because "greater than" has no meaning for them.
    """
    dtype = jnp.result_type(*args)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"comparisons need real inputs; got dtype {dtype}.")
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def check_float_leaves(name: str, tree) -> None:
    """Raise a TypeError naming the first leaf of ``tree`` that is not a floating array."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            where = jax.tree_util.keystr(path) or "(the value itself)"
            raise TypeError(
                f"{name}: leaf {where} has dtype {dtype}; soft control flow blends values, so "
                "every leaf must be a floating array. Cast it first (for example "
                "x.astype(jnp.float32)), or keep integer state outside the blended value."
            )


def check_same_structure(name_a: str, a, name_b: str, b) -> None:
    """Raise a TypeError showing both tree structures when ``a`` and ``b`` differ in structure."""
    tree_a = jax.tree_util.tree_structure(a)
    tree_b = jax.tree_util.tree_structure(b)
    if tree_a != tree_b:
        raise TypeError(
            f"{name_a} and {name_b} must have the same pytree structure.\n"
            f"  {name_a}: {tree_a}\n  {name_b}: {tree_b}"
        )
