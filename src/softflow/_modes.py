"""Modes of a relaxed operation: the relaxation, the exact program, or both at once."""

from typing import Literal, get_args

import jax

Mode = Literal["soft", "hard", "straight_through"]
MODES: tuple[str, ...] = get_args(Mode)


@jax.custom_jvp
def straight_through(hard: jax.Array, soft: jax.Array) -> jax.Array:
    """The value of ``hard`` with the derivatives (of every order) of ``soft``.

    The forward value is ``hard`` as it is, bit for bit (-0.0 included), whatever ``soft`` is,
    even NaN (inf against inf); ``hard`` contributes no derivative of its own (for ``sort`` or
    ``max``, whose exact versions are differentiable, only the relaxation's is wanted). Under jit
    without differentiation ``soft`` is not computed at all.
    """
    del soft
    return hard


@straight_through.defjvp
def _straight_through_jvp(primals, tangents):
    hard, _ = primals
    _, soft_tangent = tangents
    return hard, soft_tangent
