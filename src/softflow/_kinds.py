"""Soft step families ("kinds"): monotone maps of the real line onto [0, 1].

Every kind satisfies s(0) = 1/2, s(-z) = 1 - s(z) and s'(0) = 1/4, the slope of the logistic
function, so that switching kinds keeps the effective softness. Each is written so that its value
and its derivative stay finite for any finite z, including |z| ~ 1e12 in float32.
"""

import functools
import math
from typing import Literal, get_args

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._checks import as_real_array, check_choice, float_dtype, is_concrete
from ._scope import primitive

Kind = Literal[
    "logistic", "gaussian", "cauchy", "reciprocal", "optimal", "smoothstep", "smootherstep"
]
KINDS: tuple[str, ...] = get_args(Kind)

# Scale factors that give every kind the logistic slope 1/4 at z = 0.
_GAUSSIAN_SCALE = math.sqrt(2 * math.pi) / 4  # Phi'(0) = 1/sqrt(2 pi)
_CAUCHY_SCALE = math.pi / 4  # d/dz arctan(z)/pi = 1/pi at 0
_RECIPROCAL_SCALE = 0.5  # d/dz z/(2(1+|z|)) = 1/2 at 0
_OPTIMAL_SCALE = 0.25  # the optimal sigmoid has slope 1 at 0
_SMOOTHSTEP_HALF_WIDTH = 3.0  # 3t^2 - 2t^3 has slope 3/2 in t, t = (z + w) / 2w
_SMOOTHERSTEP_HALF_WIDTH = 3.75  # 6t^5 - 15t^4 + 10t^3 has slope 15/8 in t


def _logistic(z):
    return jax.nn.sigmoid(z)


def _gaussian(z):
    return jax.scipy.special.ndtr(_GAUSSIAN_SCALE * z)


def _mirrored(lower_half):
    """The step built from its lower half (z <= 0) by the symmetry s(z) = 1 - s(-z).

    On the lower half the value lies in [0, 1/2] and is computed without cancellation, so the
    result stays inside [0, 1] and keeps its relative precision in the lower tail; the mirror
    is taken with ``where`` (not ``abs``) so that the derivative at z = 0 is not lost.
    """

    def step(z):
        upper = z > 0
        low = lower_half(jnp.where(upper, -z, z))
        return jnp.where(upper, 1 - low, low)

    return step


@_mirrored
def _cauchy(z):
    # 1/2 + arctan(u)/pi written for u <= 0 as atan2(1, -u)/pi: no cancellation in the lower tail,
    # and monotone in float32 on every XLA:CPU build tried (arctan's own approximation was not).
    return jnp.arctan2(1.0, -_CAUCHY_SCALE * z) / math.pi


@_mirrored
def _reciprocal(z):
    # 1/2 + u / (2 (1 + |u|)) written for u <= 0, where it equals 1 / (2 (1 - u)).
    return 0.5 / (1 - _RECIPROCAL_SCALE * z)


def _optimal(z):
    # Petersen et al. (ICLR 2022), "Monotonic Differentiable Sorting Networks": linear in the
    # middle, tails 1/(16u) that decay as slowly as monotonicity of a sorting network allows.
    u = _OPTIMAL_SCALE * z
    tail = jnp.abs(u) > 0.25
    u_tail = jnp.where(tail, u, 1.0)  # keeps 1/u and its derivative finite where unused
    tail_value = jnp.where(u_tail > 0, 1 - 1 / (16 * u_tail), -1 / (16 * u_tail))
    return jnp.where(tail, tail_value, u + 0.5)


# The polynomials are evaluated on t <= 1/2 only: near t = 1 they cancel (6 - 15 + 10 = 1) and
# in float32 overshoot 1 and lose monotonicity by several ulps.
@_mirrored
def _smoothstep(z):
    t = jnp.clip((z + _SMOOTHSTEP_HALF_WIDTH) / (2 * _SMOOTHSTEP_HALF_WIDTH), 0, 1)
    return t * t * (3 - 2 * t)


@_mirrored
def _smootherstep(z):
    t = jnp.clip((z + _SMOOTHERSTEP_HALF_WIDTH) / (2 * _SMOOTHERSTEP_HALF_WIDTH), 0, 1)
    return t * t * t * (t * (6 * t - 15) + 10)


_STEPS = {
    "logistic": _logistic,
    "gaussian": _gaussian,
    "cauchy": _cauchy,
    "reciprocal": _reciprocal,
    "optimal": _optimal,
    "smoothstep": _smoothstep,
    "smootherstep": _smootherstep,
}


@primitive
def sigmoid(z: ArrayLike, *, kind: Kind = "logistic") -> jax.Array:
    r"""The soft step :math:`s(z)` of a kind: a monotone map of the real line onto [0, 1].

    All kinds share :math:`s(0) = 1/2`, :math:`s(-z) = 1 - s(z)` and :math:`s'(0) = 1/4`:

    ============== ================================================================
    kind           :math:`s(z)`
    ============== ================================================================
    logistic       :math:`1 / (1 + e^{-z})`
    gaussian       :math:`\Phi(\sqrt{2\pi}\, z / 4)`, the normal CDF
    cauchy         :math:`1/2 + \arctan(\pi z / 4) / \pi`
    reciprocal     :math:`1/2 + u / (2 (1 + |u|))`, :math:`u = z/2`
    optimal        :math:`u + 1/2` for :math:`|u| \le 1/4`, else :math:`1 - 1/(16u)`
                   or :math:`-1/(16u)`, :math:`u = z/4` (Petersen et al., 2022)
    smoothstep     :math:`3t^2 - 2t^3`, :math:`t = \mathrm{clip}((z + 3)/6, 0, 1)`
    smootherstep   :math:`6t^5 - 15t^4 + 10t^3`, :math:`t = \mathrm{clip}((z + 3.75)/7.5, 0, 1)`
    ============== ================================================================

    The comparisons evaluate :math:`s` at the difference of their arguments divided by the softness.

    Arguments:
        z: real array (integers and booleans are converted to the default float dtype;
            complex values are rejected).
        kind: one of :data:`softflow.KINDS`.

    Returns:
        :math:`s(z)`, with the dtype of ``z`` (or the default float dtype for integer ``z``).

    Example:
        >>> import softflow as sf
        >>> float(sf.sigmoid(0.0, kind="cauchy"))
        0.5
    """
    check_choice("kind", kind, KINDS)
    z = as_real_array("z", z)
    return step(z.astype(float_dtype(z.dtype)), kind)


def step(z: jax.Array, kind: str) -> jax.Array:
    """The soft step of ``kind`` at a floating array ``z``, unchecked (for internal callers).

    Half precision is evaluated in float32 and rounded once: the polynomials and quotients of
    the kinds evaluated in bfloat16 were not monotone, and in float16 their last bit differed
    between JAX versions (and ``ndtr`` has no half-precision version)."""
    # (a value known now is not differentiated, and a custom_jvp would bind it to the trace
    # around it, where ensure_compile_time_eval asks for the number)
    fn = _STEPS[kind] if is_concrete(z) else functools.partial(_flat_where_flat, kind=kind)
    if jnp.finfo(z.dtype).bits < 32:
        return fn(z.astype(jnp.float32)).astype(z.dtype)
    return fn(z)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _flat_where_flat(z: jax.Array, kind: str) -> jax.Array:
    """The step, whose tangent is exactly 0 where its slope is 0, whatever multiplies it.

    Reverse mode through the kinds' own formulas multiplies the cotangent by their parts one at
    a time: a cotangent of 3e38 (a sorting network's gap between 1 and 3e38) became
    3e38 * (3 - 2t) = inf before meeting smoothstep's t = 0, and inf * 0 = NaN. Here the slope is
    computed first (a tangent of 1) and the cotangent meets it once."""
    return _STEPS[kind](z)


@_flat_where_flat.defjvp
def _flat_where_flat_jvp(kind, primals, tangents):
    (z,), (dz,) = primals, tangents
    value, slope = jax.jvp(_STEPS[kind], (z,), (jnp.ones_like(z),))
    return value, jnp.where(slope == 0, jnp.zeros((), slope.dtype), slope * dz)
