"""Marks that a program leaves in its jaxpr for :func:`softflow.relax` to find.

Each mark is a jitted function whose *name* identifies it in the jaxpr: ``softflow_exact`` (the
values :func:`exact` keeps exact), ``softflow_loop_exits`` (a loop body with exits in its
middle, made by the Python-syntax converter from ``break``) and ``softflow_mixed_flag_<k>`` (a
flag set at a compiled loop's breaks, tested by an ``if``: refused where it is relaxed).
Outside a relaxed program they are ordinary JAX: the identity, and the selection of the state at
the first exit taken.
"""

import functools
import itertools
from typing import Any

import jax
import jax.numpy as jnp

EXACT_NAME = "softflow_exact"
EXITS_NAME = "softflow_loop_exits"


def softflow_loop_exits(
    conds: list, exit_states: list[list], final: list
) -> tuple[list, jax.Array]:
    """The state a loop body ends in and whether it broke: the state at the first exit whose
    condition holds, else ``final``."""
    state = list(final)
    for c, exit_state in zip(reversed(conds), reversed(exit_states), strict=True):
        state = [jnp.where(c, a, b) for a, b in zip(exit_state, state, strict=True)]
    broke = functools.reduce(jnp.logical_or, conds, jnp.bool_(False))
    return state, broke


#: :func:`softflow_loop_exits` as one equation of the jaxpr.
loop_exits = jax.jit(softflow_loop_exits)
assert softflow_loop_exits.__name__ == EXITS_NAME


#: The prefix of :func:`mixed_flag`'s marks, and the refusal each stands for, by name.
MIXED_FLAG_PREFIX = "softflow_mixed_flag_"
MIXED_FLAG_REFUSALS: dict[str, str] = {}
_MIXED_FLAGS = itertools.count()


def mixed_flag(flag, refusal: str):
    """``flag``, marked as a truth value that a compiled loop's worlds tell apart and mix (set at
    its breaks): an ``if`` on it runs in each world only where it is exact (not relaxed), so
    relax refuses it with ``refusal`` where it is relaxed; as written (and in hard mode) the
    identity."""
    name = f"{MIXED_FLAG_PREFIX}{next(_MIXED_FLAGS)}"
    MIXED_FLAG_REFUSALS[name] = refusal

    def identity(value):
        return value

    identity.__name__ = identity.__qualname__ = name
    return jax.jit(identity)(flag)


def softflow_exact(tree):
    """The identity; its name marks, in a jaxpr, the values that relax keeps exact."""
    return tree


_exact_marker = jax.jit(softflow_exact)
assert softflow_exact.__name__ == EXACT_NAME


def exact(value: Any) -> Any:
    r"""Mark a value as exact: :func:`relax` keeps it as the program computes it.

    .. math:: \mathrm{relax}(f)\ \text{evaluates}\ \mathrm{exact}(c(x))\ \text{as}\ c(x)

    Outside a relaxed function it returns ``value`` unchanged. Inside, the operations that computed
    ``value`` are evaluated exactly for it, so a guard such as ``sf.exact(x > 0)`` before
    ``jnp.sqrt(x)`` selects without blending (and without a gradient through the guard), while
    everything else stays relaxed.

    Arguments:
        value: a pytree of arrays, typically a condition (``x > 0``, ``(x > 0) & (y < 1)``).

    Returns:
        ``value``, unchanged.

    Raises:
        softflow.RelaxError: (inside :func:`relax`) when the exact value was lost, for a value
            that comes out of a relaxed loop or branch.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> def safe_sqrt(x):
        ...     positive = sf.exact(x > 0)
        ...     return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)
        >>> float(sf.relax(safe_sqrt, softness=10.0)(4.0))
        2.0
    """
    return jax.tree_util.tree_map(_exact_marker, value)
