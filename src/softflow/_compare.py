"""Relaxed comparisons: soft truth values in [0, 1] for x > y, x == y and their relatives."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._checks import (
    Softness,
    as_real_array,
    check_choice,
    check_traced_softness,
    float_dtype,
    softness_array,
)
from ._kinds import KINDS, Kind, step
from ._modes import MODES, Mode, straight_through
from ._scope import primitive


@primitive
def relaxed(
    soft_fn: Callable[..., jax.Array],
    hard_fn: Callable[..., jax.Array],
    named_args: dict[str, ArrayLike],
    softness: ArrayLike,
    kind: str,
    mode: str,
) -> jax.Array:
    """Evaluate a relaxed operation in the requested mode.

    ``soft_fn(*args, softness)`` is the relaxation, evaluated on the arguments cast to their common
    floating dtype; ``hard_fn(*args)`` the exact result, evaluated on the arguments as given, so
    that integers compare as integers (``2**24 + 1 > 2**24`` is true although both round to the
    same float32). Every mode validates the softness and returns the same shape, the broadcast of
    the arguments and the softness.
    """
    check_choice("kind", kind, KINDS)
    check_choice("mode", mode, MODES)
    names = tuple(named_args)
    args = tuple(as_real_array(name, value) for name, value in named_args.items())
    try:
        shape = jnp.broadcast_shapes(*(a.shape for a in args))
    except ValueError:
        shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(names, args, strict=True))
        raise ValueError(f"the arguments do not broadcast against each other: {shapes}.") from None
    dtype = float_dtype(jnp.result_type(*args))
    tau = softness_array(softness, dtype, shape)
    out_shape = jnp.broadcast_shapes(shape, tau.shape)
    hard = jnp.broadcast_to(hard_fn(*args).astype(dtype), out_shape)
    if mode == "hard":
        return check_traced_softness(hard, tau)  # the softness is unused, yet still checked
    soft = soft_fn(*(a.astype(dtype) for a in args), tau)
    if mode == "soft":
        return soft
    # The forward value does not compute ``soft``, so the softness is checked on the result.
    return check_traced_softness(straight_through(hard, soft), tau)


def scaled(difference: jax.Array, softness: Softness) -> jax.Array:
    """``difference / softness``, with a zero derivative where the difference is infinite: the
    step is flat there, and ``inf / softness**2`` would give 0 * inf = NaN, as would an infinite
    cotangent (a blend with an infinite branch) times the step's zero slope."""
    infinite = jnp.isinf(difference)
    finite_part = jnp.where(infinite, jnp.zeros((), difference.dtype), difference) / softness
    return jnp.where(infinite, jax.lax.stop_gradient(difference), finite_part)


def difference(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x - y``, but 0 (not NaN) where both are the same infinity: they are tied."""
    return jnp.where(jnp.isinf(x) & (x == y), jnp.zeros((), x.dtype), x - y)


def _step(kind):
    return lambda x, y, softness: step(scaled(difference(x, y), softness), kind)


def _step_below(kind):
    return lambda x, y, softness: step(scaled(difference(y, x), softness), kind)


def greater(
    x: ArrayLike,
    y: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft truth value of :math:`x > y`.

    .. math:: \mathrm{greater}(x, y) = s\!\left(\frac{x - y}{\tau}\right)

    with :math:`s` the soft step of ``kind`` (see :func:`softflow.sigmoid`) and :math:`\tau` the
    softness. As :math:`\tau \to 0` it tends to the indicator of :math:`x > y` (1/2 at ties).

    Arguments:
        x, y: real arrays, broadcast against each other.
        softness: :math:`\tau > 0`, a float or a (traced) array broadcasting against ``x - y``;
            the width of the transition in the units of ``x``.
        kind: the soft step family, one of :data:`softflow.KINDS`.
        mode: ``"soft"`` (the relaxation), ``"hard"`` (the exact indicator :math:`x > y` as a
            float, with zero gradient) or ``"straight_through"`` (forward value exactly the hard
            one, gradient the soft one).

    Returns:
        An array in [0, 1] with the broadcast shape of ``x`` and ``y`` and their floating dtype
        (the default float dtype for integer inputs).

    Example:
        >>> import softflow as sf
        >>> round(float(sf.greater(1.0, 0.0, softness=0.5)), 4)
        0.8808
        >>> float(sf.greater(1.0, 0.0, mode="hard"))
        1.0
    """
    return relaxed(_step(kind), jnp.greater, {"x": x, "y": y}, softness, kind, mode)


def greater_equal(
    x: ArrayLike,
    y: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft truth value of :math:`x \ge y`.

    Identical to :func:`greater` in soft mode, :math:`s((x - y)/\tau)`; in hard and
    straight-through modes the forward value is the indicator of :math:`x \ge y`, so the two differ
    exactly at ties.

    Arguments:
        x, y: real arrays, broadcast against each other.
        softness: :math:`\tau > 0`, float or array.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` or ``"straight_through"``.

    Returns:
        An array in [0, 1] with the broadcast shape and floating dtype of ``x`` and ``y``.

    Example:
        >>> import softflow as sf
        >>> float(sf.greater_equal(2.0, 2.0, mode="hard")), float(sf.greater(2.0, 2.0, mode="hard"))
        (1.0, 0.0)
    """
    return relaxed(_step(kind), jnp.greater_equal, {"x": x, "y": y}, softness, kind, mode)


def less(
    x: ArrayLike,
    y: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft truth value of :math:`x < y`.

    .. math:: \mathrm{less}(x, y) = s\!\left(\frac{y - x}{\tau}\right)

    In soft mode :math:`\mathrm{less}(x, y) + \mathrm{greater\_equal}(x, y) = 1`.

    Arguments:
        x, y: real arrays, broadcast against each other.
        softness: :math:`\tau > 0`, float or array.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` or ``"straight_through"``.

    Returns:
        An array in [0, 1] with the broadcast shape and floating dtype of ``x`` and ``y``.

    Example:
        >>> import softflow as sf
        >>> round(float(sf.less(0.0, 1.0, softness=0.5)), 4)
        0.8808
    """
    return relaxed(_step_below(kind), jnp.less, {"x": x, "y": y}, softness, kind, mode)


def less_equal(
    x: ArrayLike,
    y: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft truth value of :math:`x \le y`.

    Identical to :func:`less` in soft mode, :math:`s((y - x)/\tau)`; the hard value is the
    indicator of :math:`x \le y`.

    Arguments:
        x, y: real arrays, broadcast against each other.
        softness: :math:`\tau > 0`, float or array.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` or ``"straight_through"``.

    Returns:
        An array in [0, 1] with the broadcast shape and floating dtype of ``x`` and ``y``.

    Example:
        >>> import softflow as sf
        >>> float(sf.less_equal(1.0, 1.0, mode="hard"))
        1.0
    """
    return relaxed(_step_below(kind), jnp.less_equal, {"x": x, "y": y}, softness, kind, mode)


def _bump(kind):
    # 4 s(z) s(-z), written as 4 s(-|z|) (1 - s(-|z|)): it equals 1 at z = 0, is even, decreases
    # in |z| and -> 0 as tau -> 0 for z != 0. The small factor s(-|z|) is evaluated directly so
    # that the tails keep their precision, and |z| is taken with where (not abs, whose derivative
    # at 0 is 0) so that derivatives of every order at the tie are those of the bump.
    def bump(a, b, t):
        z = scaled(difference(a, b), t)
        low = step(jnp.where(z > 0, -z, z), kind)
        value = 4 * low * (1 - low)
        # Rounding of 1 - low can push the product an ulp above 1 next to z = 0; clip with
        # where, not minimum, which would halve the derivatives at the tie.
        return jnp.where(value > 1, jnp.ones((), value.dtype), value)

    return bump


def equal(
    x: ArrayLike,
    y: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft truth value of :math:`x = y`: a bump that is 1 at :math:`x = y`.

    .. math:: \mathrm{equal}(x, y) = 4\, s(z)\, s(-z), \qquad z = \frac{x - y}{\tau}

    It is symmetric in :math:`x - y`, decreases with :math:`|x - y|` and tends to 0 for
    :math:`x \ne y` as :math:`\tau \to 0`. For the logistic kind it is
    :math:`\operatorname{sech}^2(z/2)`; the compact-support kinds give exactly 0 beyond their
    support. The hard value is the indicator of :math:`x = y`.

    Arguments:
        x, y: real arrays, broadcast against each other.
        softness: :math:`\tau > 0`, float or array.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` or ``"straight_through"``.

    Returns:
        An array in [0, 1] with the broadcast shape and floating dtype of ``x`` and ``y``.

    Example:
        >>> import softflow as sf
        >>> float(sf.equal(3.0, 3.0)), round(float(sf.equal(3.0, 4.0, softness=0.5)), 4)
        (1.0, 0.42)
    """
    return relaxed(_bump(kind), jnp.equal, {"x": x, "y": y}, softness, kind, mode)


def not_equal(
    x: ArrayLike,
    y: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft truth value of :math:`x \ne y`: :math:`1 - \mathrm{equal}(x, y)`.

    Arguments:
        x, y: real arrays, broadcast against each other.
        softness: :math:`\tau > 0`, float or array.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` or ``"straight_through"``.

    Returns:
        An array in [0, 1] with the broadcast shape and floating dtype of ``x`` and ``y``.

    Example:
        >>> import softflow as sf
        >>> float(sf.not_equal(3.0, 3.0))
        0.0
    """
    bump = _bump(kind)
    return relaxed(
        lambda a, b, t: 1 - bump(a, b, t), jnp.not_equal, {"x": x, "y": y}, softness, kind, mode
    )


def between(
    x: ArrayLike,
    lo: ArrayLike,
    hi: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft truth value of :math:`lo \le x \le hi`.

    .. math::
        \mathrm{between}(x, lo, hi) = s\!\left(\frac{x - lo}{\tau}\right)
        \, s\!\left(\frac{hi - x}{\tau}\right)

    the product (probabilistic AND) of the two one-sided tests, so it stays in [0, 1] even when
    ``lo > hi``. The hard value is the indicator of :math:`lo \le x \le hi`.

    Arguments:
        x, lo, hi: real arrays, broadcast against each other.
        softness: :math:`\tau > 0`, float or array.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` or ``"straight_through"``.

    Returns:
        An array in [0, 1] with the broadcast shape and floating dtype of the inputs.

    Example:
        >>> import softflow as sf
        >>> float(sf.between(0.5, 0.0, 1.0, mode="hard"))
        1.0
        >>> float(sf.between(2.0, 0.0, 1.0, mode="hard"))
        0.0
    """

    def soft(a, low, high, t):
        return step(scaled(difference(a, low), t), kind) * step(
            scaled(difference(high, a), t), kind
        )

    def hard(a, low, high):
        return (low <= a) & (a <= high)

    return relaxed(soft, hard, {"x": x, "lo": lo, "hi": hi}, softness, kind, mode)
