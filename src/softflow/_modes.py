"""Modes of a relaxed operation: the relaxation, the exact program, or both at once."""

from typing import Literal, get_args

import jax
import jax.numpy as jnp

Mode = Literal["soft", "hard", "straight_through"]
MODES: tuple[str, ...] = get_args(Mode)


def straight_through(hard: jax.Array, soft: jax.Array) -> jax.Array:
    """The value of ``hard`` with the derivatives (of every order) of ``soft``.

    ``hard`` contributes no gradient of its own (for ``sort`` or ``max``, whose exact versions are
    differentiable, only the relaxation's gradient is wanted). The soft part enters as
    ``stop_gradient(soft) - soft``, exactly +0 where ``soft`` is finite, and is dropped where it
    is not (inf against inf, NaN inputs): the forward value is always ``hard`` bit for bit, -0.0
    included, since ``x - (+0)`` keeps the sign of a zero ``x`` where ``x + 0`` would not.
    """
    gap = jax.lax.stop_gradient(soft) - soft
    gap = jnp.where(jnp.isfinite(soft), gap, jnp.zeros((), gap.dtype))
    return jax.lax.stop_gradient(hard) - gap
