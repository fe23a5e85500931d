"""Crossing terrains: the motivating example of differentiable programming, and its soft sequel.

Walk from A to B as fast as possible across strips of terrain in which you move at different
speeds. Strip ``i`` has thickness ``d_i`` and speed ``v_i``; the route crosses it with a lateral
displacement ``x_i``, and the displacements add up to the total lateral offset ``h``. The crossing
time is

.. math:: T(x) = \\sum_i \\frac{\\sqrt{x_i^2 + d_i^2}}{v_i}, \\qquad \\sum_i x_i = h,

and the fastest route obeys Snell's law: :math:`\\sin\\theta_i / v_i` is the same in every strip.

This module holds three layers of the story, used by the ``plot_terrain_*`` gallery scripts and by
``tests/test_terrain.py``:

* the classic three-strip instance and the twenty steps of plain gradient descent that solve it
  (:func:`seed_descent`, :func:`descent_path`);
* the fastest crossing of any number of strips, found with optax's L-BFGS
  (:func:`fastest_crossing`);
* the terrain written as a *program*: the gallery pages write the slowness at a point with
  softflow (soft comparisons of its position with boundary positions), a route is a polyline
  whose time is integrated by sampling that program (:func:`polyline_time`), and in a layered
  program the fastest routes follow from Snell's law (:func:`fastest_layered_routes`). Because
  the comparisons are relaxed, the boundaries get gradients too, and :func:`fit_boundaries`
  recovers the layer boundaries of a terrain from measured crossing times.

Importing the module computes nothing; every function works in float64 internally.
"""

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import softflow as sf

#: The classic instance: three strips of thickness 10 crossed at speeds 0.7, 0.3 and 0.45, with a
#: lateral offset of 20 between A and B.
CLASSIC_THICKNESSES = (10.0, 10.0, 10.0)
CLASSIC_SPEEDS = (0.7, 0.3, 0.45)
CLASSIC_OFFSET = 20.0


# ---------------------------------------------------------------------------------------------
# Strips: closed-form crossing time, the classic descent, the fastest crossing of N strips
# ---------------------------------------------------------------------------------------------


def crossing_time(displacements, thicknesses, speeds):
    """Time to cross strips with the given lateral displacements: sum of sqrt(x² + d²) / v.

    Arguments:
        displacements: lateral displacement in each strip, shape ``(..., N)``.
        thicknesses: thickness of each strip, shape ``(N,)``.
        speeds: speed in each strip, shape ``(N,)``.

    Returns:
        The crossing time, shape ``(...)``.
    """
    x = jnp.asarray(displacements)
    return jnp.sum(jnp.sqrt(x**2 + jnp.asarray(thicknesses) ** 2) / jnp.asarray(speeds), axis=-1)


def ray_parameters(displacements, thicknesses, speeds) -> np.ndarray:
    """Snell's ray parameter sin(θ_i) / v_i of each strip, equal in all on the fastest route.

    Arguments:
        displacements: lateral displacement in each strip, shape ``(..., N)``.
        thicknesses: thickness of each strip, shape ``(N,)``.
        speeds: speed in each strip, shape ``(N,)``.

    Returns:
        The ray parameters as a float64 NumPy array, shape ``(..., N)``.
    """
    x = np.asarray(displacements, dtype=np.float64)
    d = np.asarray(thicknesses, dtype=np.float64)
    return x / (np.asarray(speeds, dtype=np.float64) * np.sqrt(x**2 + d**2))


def classic_time(crossings):
    """Crossing time of the classic instance as a function of (x1, x2); x3 = 20 - x1 - x2.

    Arguments:
        crossings: array of shape ``(..., 2)`` holding the displacements in the first two strips.

    Returns:
        The crossing time, shape ``(...)``.
    """
    crossings = jnp.asarray(crossings)
    last = CLASSIC_OFFSET - crossings[..., 0] - crossings[..., 1]
    displacements = jnp.concatenate([crossings, last[..., None]], axis=-1)
    return crossing_time(displacements, CLASSIC_THICKNESSES, CLASSIC_SPEEDS)


def descent_path(steps: int = 20, step_size: float = 1.5, x0=(2.0, 17.0)) -> np.ndarray:
    """Every iterate of plain gradient descent on the classic instance, starting point included.

    The update is ``optax.sgd(step_size)``: x <- x - step_size * grad T(x), nothing more.

    Arguments:
        steps: number of gradient steps (a non-negative integer).
        step_size: the learning rate (positive).
        x0: the starting (x1, x2).

    Returns:
        A float64 array of shape ``(steps + 1, 2)``.

    Raises:
        ValueError: if ``steps`` is negative or ``step_size`` is not positive.
    """
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer; got {steps!r}.")
    if not step_size > 0:
        raise ValueError(f"step_size must be positive; got {step_size!r}.")
    with jax.enable_x64(True):
        optimiser = optax.sgd(step_size)
        value_and_grad = jax.jit(jax.value_and_grad(classic_time))
        x = jnp.asarray(x0, jnp.float64)
        state = optimiser.init(x)
        path = [np.asarray(x)]
        for _ in range(int(steps)):
            _, grad = value_and_grad(x)
            updates, state = optimiser.update(grad, state, x)
            x = optax.apply_updates(x, updates)
            path.append(np.asarray(x))
    return np.stack(path)


def seed_descent(steps: int = 20, step_size: float = 1.5, x0=(2.0, 17.0)) -> np.ndarray:
    """The (x1, x2) that plain gradient descent reaches on the classic instance.

    With the defaults this is about (10.92, 3.49), at time 81.9164 (the optimum is 81.91169).

    Arguments:
        steps: number of gradient steps.
        step_size: the learning rate.
        x0: the starting (x1, x2).

    Returns:
        A float64 array of shape ``(2,)``.
    """
    return descent_path(steps, step_size, x0)[-1]


def _positive_vector(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence; got shape {array.shape}.")
    if not np.all(np.isfinite(array)) or not np.all(array > 0):
        raise ValueError(f"{name} must be positive and finite; got {array.tolist()}.")
    return array


def _finite_scalar(name: str, value) -> float:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 0 or not np.isfinite(array):
        raise ValueError(f"{name} must be a finite real number; got {value!r}.")
    return float(array)


def _lbfgs_step(objective: Callable):
    """One optax L-BFGS iteration (zoom line search) on ``objective``, as a carry update."""
    optimiser = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = optimiser.update(
            grad, state, params, value=value, grad=grad, value_fn=objective
        )
        return optax.apply_updates(params, updates), state

    return optimiser, step


def lbfgs_minimise(objective: Callable, params, max_iterations: int, tolerance: float):
    """Minimise ``objective`` by L-BFGS until the gradient norm is below ``tolerance``."""
    optimiser, step = _lbfgs_step(objective)

    def keep_going(carry):
        _, state = carry
        count = optax.tree.get(state, "count")
        grad_norm = optax.tree.norm(optax.tree.get(state, "grad"))
        return (count == 0) | ((count < max_iterations) & (grad_norm > tolerance))

    return jax.lax.while_loop(keep_going, step, (params, optimiser.init(params)))[0]


def _with_total(free, absorbing, total):
    """``free`` with entry ``absorbing`` replaced by whatever makes the entries sum to ``total``.

    Letting the fastest strip absorb the remainder keeps the other entries bounded and well
    scaled even for large totals, where the fastest strip carries most of the displacement.
    """
    others = jnp.where(jnp.arange(free.shape[0]) != absorbing, free, 0.0)
    return others.at[absorbing].set(total - jnp.sum(others))


def _strip_solution(thicknesses, speeds, offset, initial):
    """Fastest crossing of strips by L-BFGS from the displacements ``initial`` (any sum)."""
    # Units: lengths in total thickness, slowness in units of the fastest strip's, so the
    # time and its gradient are O(1) whatever the instance.
    scale = jnp.sum(thicknesses)
    d = thicknesses / scale
    s = jnp.max(speeds) / speeds
    h = offset / scale
    absorbing = jnp.argmax(speeds)

    def objective(free):
        x = _with_total(free, absorbing, h)
        return jnp.sum(jnp.sqrt(x**2 + d**2) * s)

    free = lbfgs_minimise(objective, initial / scale, max_iterations=1000, tolerance=1e-13)
    return _with_total(free, absorbing, h) * scale


@jax.jit
def _solve_strips(thicknesses, speeds, offset):
    straight = offset * thicknesses / jnp.sum(thicknesses)
    return _strip_solution(thicknesses, speeds, offset, straight)


def fastest_crossing(thicknesses, speeds, offset) -> np.ndarray:
    """The lateral displacements of the fastest crossing of N strips, found by L-BFGS (optax).

    Minimises :math:`\\sum_i \\sqrt{x_i^2 + d_i^2} / v_i` subject to :math:`\\sum_i x_i = h` in
    float64, starting from the straight line. The time is convex, so the result is the global
    optimum, and it satisfies Snell's law (:func:`ray_parameters` equal in every strip).

    Arguments:
        thicknesses: positive thickness of each of the N >= 1 strips.
        speeds: positive speed in each strip (same length).
        offset: the total lateral offset h between A and B (any sign).

    Returns:
        A float64 array of shape ``(N,)`` summing to ``offset``.

    Raises:
        ValueError: if a thickness or speed is not positive and finite, the lengths differ, or
            the offset is not a finite number.

    Example:
        >>> x = fastest_crossing([10.0, 10.0, 10.0], [0.7, 0.3, 0.45], 20.0)
        >>> round(float(crossing_time(x, [10.0] * 3, [0.7, 0.3, 0.45])), 5)
        81.91169
    """
    d = _positive_vector("thicknesses", thicknesses)
    v = _positive_vector("speeds", speeds)
    if v.size != d.size:
        raise ValueError(
            f"speeds must have one entry per strip: got {v.size} speeds for {d.size} thicknesses."
        )
    h = _finite_scalar("offset", offset)
    if d.size == 1:
        return np.array([h])
    with jax.enable_x64(True):
        return np.asarray(_solve_strips(jnp.asarray(d), jnp.asarray(v), jnp.asarray(h)))


# ---------------------------------------------------------------------------------------------
# The terrain as a program: routes are polylines whose time samples a slowness program
# ---------------------------------------------------------------------------------------------
#
# A terrain program maps points of shape ``(..., 2)`` (lateral, depth) to the slowness
# (1 / speed) there. The gallery pages write theirs with softflow (a soft ``if`` for a lake, soft
# comparisons and ``soft_select`` for layers); the functions below only ever call them.


def polyline_samples(vertices, samples_per_segment: int):
    """Midpoints of ``samples_per_segment`` equal pieces of every segment, and segment lengths.

    Arguments:
        vertices: the route, shape ``(M + 1, 2)``.
        samples_per_segment: number of pieces per segment.

    Returns:
        ``(points, lengths)`` of shapes ``(M, samples_per_segment, 2)`` and ``(M,)``.
    """
    vertices = jnp.asarray(vertices)
    starts, steps = vertices[:-1], vertices[1:] - vertices[:-1]
    fractions = (jnp.arange(samples_per_segment, dtype=vertices.dtype) + 0.5) / samples_per_segment
    points = starts[:, None, :] + fractions[None, :, None] * steps[:, None, :]
    return points, jnp.sqrt(jnp.sum(steps**2, axis=-1))


def polyline_time(slowness_fn: Callable, vertices, samples_per_segment: int):
    """Travel time along a polyline through a terrain program, by the midpoint rule on each segment.

    Each segment is split into ``samples_per_segment`` equal pieces; the slowness is evaluated at
    their midpoints and the time is the segment length times the mean slowness. With a soft
    terrain, a sample spacing below the softness makes the sum a smooth function of both the
    vertices and the terrain's parameters.

    Arguments:
        slowness_fn: the terrain program, ``slowness_fn(points)`` for points of shape ``(..., 2)``.
        vertices: the route, shape ``(M + 1, 2)``, consecutive vertices distinct.
        samples_per_segment: number of slowness samples on each segment.

    Returns:
        The travel time (a scalar).
    """
    points, lengths = polyline_samples(vertices, samples_per_segment)
    return jnp.sum(lengths * jnp.mean(slowness_fn(points), axis=-1))


def layered_route(displacements, depth):
    """Polyline vertices of a route from (0, 0) down to depth ``depth``, one segment per step.

    The vertices sit at equally spaced depths; segment j moves ``displacements[j]`` sideways, so
    the route ends at (sum of displacements, depth).

    Arguments:
        displacements: lateral displacement of each of the M segments, shape ``(M,)``.
        depth: depth of the end point (the terrain's total depth).

    Returns:
        The vertices, shape ``(M + 1, 2)``.
    """
    displacements = jnp.asarray(displacements)
    x = jnp.concatenate([jnp.zeros((1,), displacements.dtype), jnp.cumsum(displacements)])
    y = jnp.linspace(0.0, depth, x.shape[0], dtype=displacements.dtype)
    return jnp.stack([x, y], axis=-1)


def _snell_displacements(slowness, offset, thickness):
    """Lateral displacements of the fastest crossing of equally thick strips of given slowness.

    On the fastest route Snell's ray parameter p = sin(θ_m) s_m is the same in every strip, so
    strip m is crossed with displacement ``thickness * p / sqrt(s_m² - p²)``. Writing
    p = min(s) w / sqrt(1 + w²) (w is tan θ in the fastest strip) keeps every term finite up to
    grazing incidence: the displacement is ``thickness * min(s) w / sqrt((1 + w²)(s_m² -
    min(s)²) + min(s)²)``, linear in w for the fastest strips and concave for the others. Their
    sum grows concavely from 0, so Newton's method from w = 0 climbs to the offset without
    overshooting; 14 steps reach float64 precision on every survey of the tests (10 at most).
    """
    fastest = jnp.min(slowness)
    excess = slowness**2 - fastest**2

    def reach(w):
        return jnp.sum(thickness * fastest * w / jnp.sqrt((1 + w**2) * excess + fastest**2))

    def newton(_, w):
        value, slope = jax.jvp(reach, (w,), (jnp.ones_like(w),))
        return jnp.maximum(w - (value - jnp.abs(offset)) / slope, 0.0)

    w = jax.lax.fori_loop(0, 14, newton, jnp.zeros_like(fastest))
    return jnp.sign(offset) * thickness * fastest * w / jnp.sqrt((1 + w**2) * excess + fastest**2)


def _column(segments: int, depth, dtype):
    """Sample points of a vertical route of ``segments`` segments: one at each mid-depth."""
    return polyline_samples(layered_route(jnp.zeros(segments, dtype), depth), 1)[0]


def fastest_layered_routes(slowness_fn: Callable, offsets, depth, segments: int):
    """Fastest routes from (0, 0) to (offset, depth) through a layered terrain program.

    The route is a polyline of ``segments`` segments between equally spaced depths. In a layered
    terrain the slowness depends on the depth only, so one column of samples of the program (at
    the segments' mid-depths) gives every segment its slowness, and the fastest route follows
    from Snell's law, :math:`\\sin\\theta_m / v_m` equal in every segment: no iterative route
    optimisation in the plane is needed. The time of the route, :func:`polyline_time` with one
    sample per segment, is the fastest time through the sampled program.

    Arguments:
        slowness_fn: the terrain program, ``slowness_fn(points)`` for points of shape
            ``(..., 2)``; it must depend on the depth (second coordinate) only.
        offsets: lateral offsets of the end points, shape ``(J,)``.
        depth: the depth of the end points.
        segments: number of segments of each route.

    Returns:
        The vertices of the routes, shape ``(J, segments + 1, 2)``.
    """
    offsets = jnp.asarray(offsets)
    slowness = slowness_fn(_column(segments, depth, offsets.dtype))[:, 0]
    displacements = jax.vmap(_snell_displacements, in_axes=(None, 0, None))(
        slowness, offsets, depth / segments
    )
    return jax.vmap(layered_route, in_axes=(0, None))(displacements, depth)


# ---------------------------------------------------------------------------------------------
# Refraction survey: recover the boundaries from crossing times
# ---------------------------------------------------------------------------------------------

#: The thinnest layer (fraction of the depth) a step of :func:`fit_boundaries` may create
#: (before the layers are rescaled to the depth).
MIN_THICKNESS = 1e-3


class BoundaryFit(NamedTuple):
    """Result of :func:`fit_boundaries`.

    Attributes:
        boundaries: the fitted boundary depths, increasing, shape ``(N - 1,)``.
        predicted_times: fastest-crossing times of the fitted soft terrain, one per offset.
        residual_rms: root mean square of predicted minus measured times (time units).
        relative_rms: root mean square of (predicted - measured) / measured.
        routes: the fastest routes in the fitted terrain, shape ``(offsets, segments + 1, 2)``.
        history: one entry per Levenberg-Marquardt step of the best start: ``"boundaries"``
            before the step ``(steps, N - 1)``, its ``"relative_rms"`` and ``"softness"``
            ``(steps,)``.
    """

    boundaries: np.ndarray
    predicted_times: np.ndarray
    residual_rms: float
    relative_rms: float
    routes: np.ndarray
    history: dict


def _survey_residuals(program, boundaries, offsets, times, weights, speeds, softness, segments):
    """Relative misfit of the fastest times of the soft program, routes held at their optimum.

    The routes are solved for the current boundaries and then held fixed (``stop_gradient``):
    at the fastest route the time is stationary in the route, so the derivative of the fastest
    time with respect to a boundary is the partial derivative at fixed route (the envelope
    theorem), and the route solve need not be differentiated. The samples of every route lie at
    the column's mid-depths, so the time is :func:`polyline_time` computed from one column of
    samples of the program shared by all routes.
    """
    relaxation = sf.Relaxation(softness)
    column = _column(segments, 1.0, offsets.dtype)
    frozen = program(column, jax.lax.stop_gradient(boundaries), speeds, relaxation)[:, 0]
    displacements = jax.vmap(_snell_displacements, in_axes=(None, 0, None))(
        frozen, offsets, 1 / segments
    )
    lengths = jnp.sqrt(displacements**2 + (1 / segments) ** 2)
    slowness = program(column, boundaries, speeds, relaxation)[:, 0]
    return weights * (lengths @ slowness / times - 1)


def _levenberg_marquardt(residual_fn, boundaries, steps: int):
    """``steps`` Levenberg-Marquardt steps on ``residual_fn``, keeping the layers ordered.

    Returns the final parameters and sum of squares, and both before every step.

    A step solves (JᵀJ + λ diag(JᵀJ)) δ = -Jᵀr (Marquardt's scaling) and is projected onto
    ordered boundaries (every layer at least :data:`MIN_THICKNESS` thick, then all rescaled to
    the depth); it is taken, and λ divided by 10, if it lowers the sum of squares, otherwise λ
    is multiplied by 10. The boundaries are the parameters themselves: the times are nearly
    linear in them, which keeps Gauss-Newton steps accurate along the weakly determined
    directions of the survey (a softmax parametrisation bends those directions and stalls).
    """

    def linearised(boundaries):
        residuals, linear = jax.linearize(residual_fn, boundaries)
        identity = jnp.eye(boundaries.shape[0], dtype=boundaries.dtype)
        return residuals, jax.vmap(linear, out_axes=-1)(identity)

    def step(carry, _):
        boundaries, residuals, jacobian, damping = carry
        gram, gradient = jacobian.T @ jacobian, jacobian.T @ residuals
        scaling = jnp.diag(gram) + 1e-12 * (1 + jnp.max(jnp.diag(gram)))
        delta = jnp.linalg.solve(gram + damping * jnp.diag(scaling), gradient)
        # Project the step onto ordered boundaries: every layer at least MIN_THICKNESS thick.
        one = jnp.ones(1, boundaries.dtype)
        thicknesses = jnp.diff(jnp.concatenate([0 * one, boundaries - delta, one]))
        thicknesses = jnp.maximum(thicknesses, MIN_THICKNESS)
        trial = jnp.cumsum(thicknesses / jnp.sum(thicknesses))[:-1]
        # The trial is linearised at once (one evaluation of the model per step): if it is
        # taken, that is the next step's Jacobian.
        trial_residuals, trial_jacobian = linearised(trial)
        better = jnp.sum(trial_residuals**2) < jnp.sum(residuals**2)
        carry = (
            jnp.where(better, trial, boundaries),
            jnp.where(better, trial_residuals, residuals),
            jnp.where(better, trial_jacobian, jacobian),
            jnp.where(better, damping / 10, damping * 10),
        )
        return carry, (boundaries, jnp.sum(residuals**2))

    start = (boundaries, *linearised(boundaries), jnp.asarray(1e-6, boundaries.dtype))
    (boundaries, residuals, _, _), (path, squares) = jax.lax.scan(step, start, length=steps)
    return boundaries, jnp.sum(residuals**2), path, squares


@functools.partial(jax.jit, static_argnames=("program", "segments", "steps"))
def _survey_stage(starts, offsets, times, weights, speeds, softness, *, program, segments, steps):
    """One softness of the continuation: Levenberg-Marquardt from every start (vmapped)."""

    def residual_fn(boundaries):
        return _survey_residuals(
            program, boundaries, offsets, times, weights, speeds, softness, segments
        )

    return jax.vmap(lambda start: _levenberg_marquardt(residual_fn, start, steps))(starts)


@functools.partial(jax.jit, static_argnames=("program", "segments"))
def _survey_prediction(boundaries, offsets, speeds, softness, *, program, segments):
    relaxation = sf.Relaxation(softness)

    def terrain(points):
        return program(points, boundaries, speeds, relaxation)

    routes = fastest_layered_routes(terrain, offsets, 1.0, segments)
    return jax.vmap(lambda route: polyline_time(terrain, route, 1))(routes), routes


#: The default softness schedule of :func:`fit_boundaries`, in fractions of the depth.
SURVEY_SOFTNESS = (0.1, 0.03, 0.01, 0.003, 0.001, 2.5e-4)


def fit_boundaries(
    program: Callable,
    offsets,
    times,
    speeds,
    depth,
    *,
    softness: Sequence[float] = SURVEY_SOFTNESS,
    steps_per_softness: int = 8,
    segments: int = 4096,
    starts: int = 32,
    seed: int = 0,
    progress: bool = False,
) -> BoundaryFit:
    """Recover the boundaries of a layered terrain from fastest-crossing times (refraction survey).

    The terrain of total depth ``depth`` has N layers of known ``speeds``; its N - 1 boundary
    depths are unknown. For each lateral ``offsets[j]`` the fastest crossing from (0, 0) to
    (offset, depth) was measured to take ``times[j]``. The model is the soft terrain program
    ``program(points, boundaries, speeds, relaxation)`` (slowness at the points), crossed along
    its fastest routes (:func:`fastest_layered_routes`, ``segments`` segments). The fit minimises
    the relative time residuals by Levenberg-Marquardt on the boundaries, with the Jacobian of
    the soft program at fixed fastest routes (the envelope theorem). The softness is annealed
    through ``softness`` (fractions of the depth), ``steps_per_softness`` steps each: a broad
    boundary is felt from afar, a sharp one is where the truth is. ``starts`` starting points
    (equal layers, then random ones from ``seed``) are fitted side by side and the best kept:
    with 5 or 6 layers a single start often ends in a local minimum (typically a layer squeezed
    to nothing, its neighbours taking its time), which many starts avoid.

    At the last softness τ the soft program's fastest times exceed the exact ones by about
    0.4 τ in relative terms, much like a small shift of the boundaries; where the survey
    identifies the boundaries well (see ``tests/test_terrain.py``) they come out within 1 % of
    the depth from exact times.

    Arguments:
        program: the layered terrain program, ``program(points, boundaries, speeds,
            relaxation)``; points have shape ``(..., 2)`` as (lateral, depth). It is a static
            argument of a jitted function: pass the same function object to reuse compilations.
        offsets: lateral offsets of the survey, shape ``(J,)``, with J >= N - 1.
        times: measured fastest-crossing times, positive, shape ``(J,)``.
        speeds: the speed of each layer, top first, shape ``(N,)`` with N >= 2; adjacent layers
            need different speeds for their boundary to show in the times.
        depth: the total depth (positive).
        softness: the annealing schedule, fractions of the depth; the last one must not be
            below the sample spacing ``1 / segments``.
        steps_per_softness: Levenberg-Marquardt steps at each softness.
        segments: number of segments of each route (one slowness sample each).
        starts: number of starting points (the cost grows in proportion).
        seed: seed of the random starting points.
        progress: show a tqdm progress bar over the softness schedule.

    Returns:
        A :class:`BoundaryFit` with the boundaries, the fit quality and the history.

    Raises:
        ValueError: if an argument has the wrong shape or sign, or the last softness is below
            the sample spacing.
    """
    speeds = _positive_vector("speeds", speeds)
    if speeds.size < 2:
        raise ValueError(f"speeds must describe at least two layers; got {speeds.tolist()}.")
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.ndim != 1 or offsets.size < speeds.size - 1 or not np.all(np.isfinite(offsets)):
        raise ValueError(
            f"offsets must be a 1-D sequence of at least {speeds.size - 1} finite numbers (one "
            f"per unknown boundary); got shape {offsets.shape}."
        )
    times = _positive_vector("times", times)
    if times.size != offsets.size:
        raise ValueError(
            f"times must have one entry per offset: got {times.size} times for "
            f"{offsets.size} offsets."
        )
    depth = _finite_scalar("depth", depth)
    if depth <= 0:
        raise ValueError(f"depth must be positive; got {depth!r}.")
    schedule = _positive_vector("softness", softness)
    for name, value in (
        ("steps_per_softness", steps_per_softness),
        ("segments", segments),
        ("starts", starts),
    ):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if schedule[-1] * segments < 1:
        raise ValueError(
            f"softness must end at or above the sample spacing 1 / segments = {1 / segments:.2e} "
            f"(a sharper boundary falls between samples); got {schedule[-1]:.2e}."
        )

    # Units: lengths in the depth, slowness in units of the fastest layer's, so the times and
    # the softness mean the same whatever the survey.
    fastest = speeds.max()
    layers = speeds.size
    rng = np.random.default_rng(seed)
    random_starts = np.cumsum(rng.dirichlet(np.ones(layers), int(starts) - 1), axis=1)[:, :-1]
    initial = np.concatenate([np.linspace(0, 1, layers + 1)[None, 1:-1], random_starts])
    options = {"program": program, "segments": int(segments)}
    history = {"boundaries": [], "relative_rms": [], "softness": []}
    # Surveys whose numbers of offsets round up to the same multiple of 4 share compilations:
    # the extra offsets have weight 0.
    padding = np.zeros(-offsets.size % 4)
    with jax.enable_x64(True):
        scaled = {
            "offsets": jnp.asarray(np.concatenate([offsets / depth, padding])),
            "times": jnp.asarray(np.concatenate([times * fastest / depth, padding + 1])),
            "weights": jnp.asarray(np.concatenate([np.ones(offsets.size), padding])),
            "speeds": jnp.asarray(speeds / fastest),
        }
        current = jnp.asarray(initial)
        stages = []
        for tau in tqdm(schedule, desc="fitting boundaries", disable=not progress):
            current, squares, path, path_squares = _survey_stage(
                current,
                softness=jnp.asarray(tau),
                steps=int(steps_per_softness),
                **scaled,
                **options,
            )
            path_rms = np.sqrt(np.asarray(path_squares) / offsets.size)
            stages.append((np.asarray(path), path_rms, float(tau)))
        squares = np.asarray(squares)
        best = int(np.argmin(squares))
        boundaries = np.asarray(current[best])
        predicted, routes = _survey_prediction(
            current[best], scaled["offsets"], scaled["speeds"], jnp.asarray(schedule[-1]), **options
        )
    predicted, routes = np.asarray(predicted)[: offsets.size], np.asarray(routes)[: offsets.size]
    for path, path_rms, tau in stages:
        history["boundaries"].append(path[best] * depth)
        history["relative_rms"].append(path_rms[best])
        history["softness"].append(np.full(path_rms.shape[1], tau))
    predicted = predicted * depth / fastest
    return BoundaryFit(
        boundaries=boundaries * depth,
        predicted_times=predicted,
        residual_rms=float(np.sqrt(np.mean((predicted - times) ** 2))),
        relative_rms=float(np.sqrt(squares[best] / offsets.size)),
        routes=routes * depth,
        history={key: np.concatenate(value) for key, value in history.items()},
    )


def _layer_thicknesses(boundaries, depth) -> np.ndarray:
    return np.diff(np.concatenate([[0.0], np.asarray(boundaries, np.float64), [depth]]))


def survey_times(offsets, boundaries, speeds, depth) -> np.ndarray:
    """Exact fastest-crossing times of a layered terrain, for synthetic surveys.

    Arguments:
        offsets: lateral offsets, shape ``(J,)``.
        boundaries: increasing boundary depths inside (0, depth), shape ``(N - 1,)``.
        speeds: speed of each layer, top first, shape ``(N,)``.
        depth: the total depth.

    Returns:
        The times, shape ``(J,)``, from :func:`fastest_crossing` on the layers' thicknesses.
    """
    thicknesses = _layer_thicknesses(boundaries, depth)
    speeds = np.asarray(speeds, np.float64)
    return np.array(
        [
            float(np.sum(np.sqrt(x**2 + thicknesses**2) / speeds))
            for x in (fastest_crossing(thicknesses, speeds, h) for h in np.asarray(offsets))
        ]
    )


def survey_jacobian(offsets, boundaries, speeds, depth) -> np.ndarray:
    """Derivatives of the exact fastest-crossing times with respect to the boundaries.

    Moving boundary k (between layers k - 1 and k) down thickens layer k - 1 and thins layer k.
    By the envelope theorem only the route's time per unit thickness in each layer counts,
    :math:`\\cos\\theta_i / v_i`, so :math:`\\partial T / \\partial b_k = \\cos\\theta_{k-1} /
    v_{k-1} - \\cos\\theta_k / v_k` on the fastest route. Its singular values tell whether a
    survey can identify the boundaries.

    Arguments:
        offsets: lateral offsets, shape ``(J,)``.
        boundaries: increasing boundary depths inside (0, depth), shape ``(N - 1,)``.
        speeds: speed of each layer, top first, shape ``(N,)``.
        depth: the total depth.

    Returns:
        The Jacobian, shape ``(J, N - 1)``, in time units per unit of depth.
    """
    thicknesses = _layer_thicknesses(boundaries, depth)
    speeds = np.asarray(speeds, np.float64)
    rows = []
    for h in np.asarray(offsets):
        x = fastest_crossing(thicknesses, speeds, h)
        per_thickness = thicknesses / (speeds * np.sqrt(x**2 + thicknesses**2))
        rows.append(per_thickness[:-1] - per_thickness[1:])
    return np.array(rows)


__all__: Sequence[str] = (
    "CLASSIC_OFFSET",
    "CLASSIC_SPEEDS",
    "CLASSIC_THICKNESSES",
    "MIN_THICKNESS",
    "SURVEY_SOFTNESS",
    "BoundaryFit",
    "classic_time",
    "crossing_time",
    "descent_path",
    "fastest_crossing",
    "fastest_layered_routes",
    "fit_boundaries",
    "layered_route",
    "lbfgs_minimise",
    "polyline_samples",
    "polyline_time",
    "ray_parameters",
    "seed_descent",
    "survey_jacobian",
    "survey_times",
)
