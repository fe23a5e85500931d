"""Soft staircases: sign, round, floor and ceil as sums of soft steps at their jumps.

A staircase f jumps by 1 at points a_k. Its relaxation replaces each jump by the soft step of the
chosen kind, s((x - a_k) / tau). Written around the exact value c = f(x),

    f_soft(x) = c + sum_k w(|x - a_k|) (s((x - a_k) / tau) - H_k),

where H_k is 1 for the jumps already passed at x and 0 for the others: every term is a small
correction (the tail of a step), the nearest jumps dominate, and far jumps, whose correction is
below rounding for the thin-tailed kinds, are left out. Only the jumps within ``_REACH`` of x take
part; the window w is 1 up to half that distance and falls smoothly to 0 at it, so that the
relaxation stays continuous as jumps enter and leave the window. Because the sum is anchored at
the exact value, the result is exact in magnitude for any x (1e30 or 1e-30 alike), and the cost is
at most 2 * _REACH steps per element whatever the softness. A softness known at trace time keeps
only the jumps whose tail can rise above rounding somewhere in the cell (4 at softness 0.1 in
float32, for the logistic kind).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._checks import (
    as_real_array,
    check_choice,
    check_traced_softness,
    softness_array,
)
from ._compare import scaled
from ._kinds import KINDS, Kind, step
from ._modes import MODES, Mode, straight_through
from ._scope import primitive

# Jumps farther than this from x are left out (the window falls to 0 between _REACH / 2 and it).
_REACH = 16


def _window(distance: jax.Array) -> jax.Array:
    # 1 up to _REACH / 2, then a C1 cubic down to 0 at _REACH.
    t = jnp.clip(2 * distance / _REACH - 1, 0, 1)
    return 1 - t * t * (3 - 2 * t)


def _staircase(x: jax.Array, exact: jax.Array, offset: float, tau: jax.Array, kind: str):
    """The relaxed staircase with unit jumps at ``exact + j + offset``, j integer.

    ``exact`` is the hard value at ``x``; the jumps at ``j <= 0`` are the ones passed at ``x``.
    Each correction is written as a lower tail of the step, s(-distance / tau), so nothing is
    computed as 1 minus a number close to 1. The jumps form a trailing axis, summed at the end.
    """
    fraction, shift = _anchored(x, exact)
    # A softness known at trace time leaves out the jumps whose tails are below rounding at every
    # x: those left out are at least ``reach`` from x (most of them for a small softness).
    reach = min(candidate_reach(tau, kind, x.dtype), _REACH)
    j = np.arange(-reach + 1, reach + 1)
    passed = j <= 0
    jumps = (j + offset).astype(x.dtype) + shift  # the jumps' positions relative to the anchor
    distance = jnp.where(passed, fraction - jumps, jumps - fraction)
    # Passed jumps contribute s((x - a) / tau) - 1 = -s((a - x) / tau); the others s((x - a) / tau).
    tails = step(-distance / tau[..., None], kind)  # (every distance is finite)
    if reach + 1 > _REACH // 2:  # (nearer jumps are all inside the window's flat part)
        tails = _window(distance) * tails
    sign = np.where(passed, -1, 1).astype(x.dtype)
    return exact + jnp.sum(sign * tails, axis=-1)


def _anchored(x: jax.Array, exact: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``x`` and ``exact`` relative to the integer nearest ``x``, both exact in floating point,
    on a trailing axis: a jump at ``exact + a`` is at ``a + shift`` from it. (``x - exact`` is
    not exact: at ``x = -1e-9``, ``x - floor(x)`` rounds to 1, which puts ``x`` on the jump at
    0.) At ``x = ±inf`` both are 0, so that the result stays infinite."""
    finite = jnp.isfinite(x)
    anchor = jnp.where(finite, jnp.round(x), exact)
    fraction = jnp.where(finite, x - anchor, jnp.zeros((), x.dtype))
    shift = jnp.where(finite, exact - anchor, jnp.zeros((), x.dtype))
    return fraction[..., None], shift[..., None]


def candidate_reach(tau: ArrayLike, kind: str, dtype) -> int:
    """How many integers on each side of the exact value of a staircase carry probability: the
    least ``r`` whose tail :math:`s(-r/\tau)` is below the rounding of ``dtype``, at most 16 (32
    in float64); the most when the softness is traced."""
    most = 2 * _REACH if np.finfo(dtype).bits == 64 else _REACH
    try:
        largest = float(np.max(np.asarray(tau)))
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return most
    eps = float(np.finfo(dtype).eps) / 2
    with jax.ensure_compile_time_eval():
        for r in range(1, most):
            if float(step(jnp.asarray(-r / largest), kind)) < eps:
                return r
    return most


def staircase_distribution(x, exact, offset, tau, kind: str, reach: int):
    """The relaxed staircase as a distribution over the integers near its exact value.

    The staircase steps up by 1 into the value ``exact + j`` at ``exact + j + offset(j)``. Its
    relaxation replaces each jump by a soft step of ``kind``, so that
    :math:`P(f(x) \\ge c) = s((x - a_c)/\tau)`; the candidates are ``exact + j`` for
    ``|j| <= reach``, and the mass beyond them (below the rounding when ``reach`` comes from
    :func:`candidate_reach`) goes to the first and last. Every probability is a difference of
    tails, so none is computed as 1 minus a number close to 1.

    Arguments:
        x: floating array.
        exact: the exact staircase value at ``x`` (same shape and dtype).
        offset: a float, or a function of the candidate values (an array) giving their offsets.
        tau: softness broadcasting against ``x``.
        kind: the soft step family.
        reach: the number of candidates on each side.

    Returns:
        ``(candidates, probabilities)``, both of shape ``x.shape + (2 * reach + 1,)``, the
        candidates as floats of ``x``'s dtype, the probabilities summing to 1 on the last axis.
    """
    fraction, shift = _anchored(x, exact)
    m = np.arange(-reach, reach + 1)
    candidates = exact[..., None] + m.astype(x.dtype)

    def jumps_into(j):  # the positions of the jumps into exact + j, relative to the anchor
        j = j.astype(x.dtype)
        return j + (offset(exact[..., None] + j) if callable(offset) else offset) + shift

    tau = jnp.asarray(tau, x.dtype)[..., None]
    jumps = (jumps_into(m), jumps_into(m + 1), jumps_into(np.arange(-reach + 1, reach + 1)))
    return candidates, _candidate_masses(fraction, jumps, tau, kind, reach)


# The masses are computed candidate by candidate, two tails each, where the value alone is asked
# for, and from one tail per jump where the derivative is too: XLA:CPU fuses the first into one
# fast loop but runs the concatenation of the second about 3x slower (relaxed casts' forward
# 1.35x to 2.9x faster), while in a gradient the tails are stored once and the second computes
# half as many (a histogram's forward and gradient, 1.4x faster than with the first).
@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _candidate_masses(fraction, jumps, tau, kind: str, reach: int):
    """The mass of the candidates ``exact + m``, ``|m| <= reach``, x being at ``fraction``, the
    jumps (relative to ``exact``) into each candidate, into its successor, and into
    ``exact - reach + 1`` to ``exact + reach`` in turn. Below the exact value a candidate's
    mass is P(value < successor) - P(value < it), above it P(value >= it) - P(value >=
    successor), each the lower tail of a soft step; the exact value has what the two tails next
    to it leave. The mass beyond the outermost candidates goes to them; no mass is computed as
    1 minus a number close to 1."""
    into, out_of, _ = jumps
    m = np.arange(-reach, reach + 1)
    below, above = m < 0, m > 0
    first = jnp.where(below, fraction - out_of, jnp.where(above, into - fraction, fraction - into))
    second = jnp.where(below, fraction - into, out_of - fraction)
    first_tail = step(-first / tau, kind)
    second_tail = jnp.where((m == -reach) | (m == reach), 0, step(-second / tau, kind))
    return jnp.where(m == 0, 1 - first_tail - second_tail, first_tail - second_tail)


def _masses_by_jump(tails, total, reach: int):
    """The masses from the tails of the steps at the jumps (see :func:`_candidate_masses`)."""
    below, above = tails[..., :reach], tails[..., reach:]
    zero = jnp.zeros_like(tails[..., :1])
    below = jnp.concatenate([zero, below], axis=-1)
    above = jnp.concatenate([above, zero], axis=-1)
    return jnp.concatenate(
        [
            below[..., 1:] - below[..., :-1],
            total - below[..., -1:] - above[..., :1],
            above[..., :-1] - above[..., 1:],
        ],
        axis=-1,
    )


@_candidate_masses.defjvp
def _candidate_masses_jvp(kind, reach, primals, tangents):
    fraction, (_, _, jumps), tau = primals
    fraction_tangent, _, tau_tangent = tangents  # (the jumps are piecewise constant)
    passed = np.arange(-reach + 1, reach + 1) <= 0
    distance = jnp.where(passed, fraction - jumps, jumps - fraction)
    z = -distance / tau
    tails, density = jax.jvp(lambda z: step(z, kind), (z,), (jnp.ones_like(z),))
    # tail = s(-distance / tau), so d tail = -density / tau (d distance - distance d tau / tau).
    distance_tangent = jnp.where(passed, fraction_tangent, -fraction_tangent)
    changes = -density / tau * (distance_tangent - distance * tau_tangent / tau)
    return _masses_by_jump(tails, 1, reach), _masses_by_jump(changes, 0, reach)


def _relaxed_step(name, x, softness, kind, mode, hard_fn, soft_fn):
    check_choice("kind", kind, KINDS)
    check_choice("mode", mode, MODES)
    x = as_real_array("x", x, allow_bool=False)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"x must be a floating array; got dtype {x.dtype}. {name} of an integer is the "
            "integer itself, with nothing to relax: cast x to a float dtype to relax it."
        )
    # (Concrete: a NumPy array, so that no run-time check is attached and the reach is known.)
    tau = softness_array(softness, x.dtype, x.shape, numpy=True)
    shape = jnp.broadcast_shapes(x.shape, tau.shape)
    x = jnp.broadcast_to(x, shape)
    if mode == "hard":
        result = hard_fn(x)
    else:
        soft = soft_fn(x, jax.lax.stop_gradient(hard_fn(x)), tau)
        result = soft if mode == "soft" else straight_through(hard_fn(x), soft)
    return check_traced_softness(result, tau)


@primitive
def sign(
    x: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft sign: a step up at 0 from -1 to 1.

    .. math:: \mathrm{sign}(x) = \mathrm{greater}(x, 0) - \mathrm{less}(x, 0)
        = s(x/\tau) - s(-x/\tau)

    Odd in :math:`x`, 0 at :math:`x = 0`, tending to :func:`jax.numpy.sign` as
    :math:`\tau \to 0` (for the logistic kind it is :math:`\tanh(x / 2\tau)`).

    Arguments:
        x: floating array.
        softness: :math:`\tau > 0`, float or array broadcasting against ``x``.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.sign`) or ``"straight_through"``.

    Returns:
        An array in [-1, 1] with the (broadcast) shape and the dtype of ``x``.

    Raises:
        TypeError: if ``x`` is not floating.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> sf.sign(jnp.array([-2.0, 0.0, 0.5]), softness=0.01)
        Array([-1.,  0.,  1.], dtype=float32)
    """

    def soft(x, exact, tau):
        return step(scaled(x, tau), kind) - step(scaled(-x, tau), kind)

    return _relaxed_step("sign", x, softness, kind, mode, jnp.sign, soft)


@primitive
def floor(
    x: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft floor: a staircase of soft steps at the integers.

    .. math:: \lfloor x \rfloor \approx \lfloor x \rfloor + \sum_{|x - k| < 16} w(|x - k|)
        \left(s\!\left(\frac{x - k}{\tau}\right) - [x \ge k]\right)

    the formal sum :math:`\sum_k \mathrm{greater\_equal}(x, k)` anchored at the exact value, over
    the jumps :math:`k` within 16 of :math:`x` (the window :math:`w` is 1 up to 8 and falls
    smoothly to 0 at 16, keeping the relaxation continuous). Soft and exact agree at the
    midpoints :math:`k + 1/2` up to the tails of the step, and the jump at each integer is a soft
    step of width :math:`\tau`. Meant for softness up to about 2: beyond, the left-out jumps
    matter. The cost is 32 soft steps per element.

    Arguments:
        x: floating array.
        softness: :math:`\tau > 0`, float or array broadcasting against ``x``.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.floor`) or ``"straight_through"``.

    Returns:
        An array with the (broadcast) shape and the dtype of ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> sf.floor(jnp.array([-1.5, 0.5, 2.5]), softness=0.01)
        Array([-2.,  0.,  2.], dtype=float32)
        >>> print(f"{float(sf.floor(3.0, softness=0.1)):.4f}")  # halfway up the jump at 3
        2.5000
    """

    def soft(x, exact, tau):
        return _staircase(x, exact, 0.0, tau, kind)

    return _relaxed_step("floor", x, softness, kind, mode, jnp.floor, soft)


@primitive
def ceil(
    x: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft ceiling: a staircase of soft steps at the integers.

    .. math:: \lceil x \rceil \approx \lceil x \rceil + \sum_{|x - k| < 16} w(|x - k|)
        \left(s\!\left(\frac{x - k}{\tau}\right) - [x > k]\right)

    In soft mode it equals :func:`floor` + 1 (the same staircase, counted from the next integer);
    hard values differ at the integers, where :math:`\lceil k \rceil = \lfloor k \rfloor = k`.
    See :func:`floor` for the window.

    Arguments:
        x: floating array.
        softness: :math:`\tau > 0`, float or array broadcasting against ``x``.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.ceil`) or ``"straight_through"``.

    Returns:
        An array with the (broadcast) shape and the dtype of ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> sf.ceil(jnp.array([-1.5, 0.5, 2.0]), mode="hard")
        Array([-1.,  1.,  2.], dtype=float32)
    """

    def soft(x, exact, tau):
        return _staircase(x, exact, -1.0, tau, kind)

    return _relaxed_step("ceil", x, softness, kind, mode, jnp.ceil, soft)


@primitive
def round(
    x: ArrayLike,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
) -> jax.Array:
    r"""Soft rounding: a staircase of soft steps at the half-integers.

    .. math:: \mathrm{round}(x) \approx \mathrm{round}(x) + \sum_{|x - k - 1/2| < 16}
        w(|x - k - \tfrac12|) \left(s\!\left(\frac{x - k - 1/2}{\tau}\right)
        - [k + \tfrac12 \text{ passed}]\right)

    The soft value is exact (up to the step tails) at the integers and halfway up each jump at
    :math:`k + 1/2`. Hard mode is :func:`jax.numpy.round`, which rounds half to even. See
    :func:`floor` for the window.

    Arguments:
        x: floating array.
        softness: :math:`\tau > 0`, float or array broadcasting against ``x``.
        kind: one of :data:`softflow.KINDS`.
        mode: ``"soft"``, ``"hard"`` (:func:`jax.numpy.round`) or ``"straight_through"``.

    Returns:
        An array with the (broadcast) shape and the dtype of ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> sf.round(jnp.array([0.5, 1.5, 2.5]), mode="hard")
        Array([0., 2., 2.], dtype=float32)
        >>> sf.round(jnp.array([0.2, 1.9]), softness=0.01).round(6)
        Array([0., 2.], dtype=float32)
    """

    def soft(x, exact, tau):
        return _staircase(x, exact, -0.5, tau, kind)

    return _relaxed_step("round", x, softness, kind, mode, jnp.round, soft)
