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
* the terrain written as a *program*: the slowness at a point is chosen by soft comparisons of its
  position with boundary positions (:func:`layered_slowness`, :func:`lake_slowness`), and a route
  is a polyline whose time is integrated by sampling that program (:func:`polyline_time`). Because
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
# The terrain as a program: soft comparisons choose the slowness, routes are sampled polylines
# ---------------------------------------------------------------------------------------------


def layered_slowness(points, boundaries, speeds, relaxation: sf.Relaxation):
    """Slowness (1 / speed) at points of a layered terrain, chosen by soft comparisons of depth.

    Layer k lies between boundaries k - 1 and k (depth increasing downwards). The program reads
    "if depth < b_1: layer 0, elif depth < b_2: layer 1, ..." with every comparison relaxed:
    ``deeper[k] = relaxation.greater(depth, b_k)`` and layer k gets the weight
    ``deeper[k - 1] - deeper[k]``, a soft one-hot vector that :func:`softflow.soft_switch` uses to
    blend the layers' slownesses. In hard mode it is the exact layered terrain.

    Arguments:
        points: positions, shape ``(..., 2)`` as (lateral, depth).
        boundaries: increasing depths of the N - 1 boundaries, shape ``(N - 1,)``.
        speeds: speed in each of the N layers, shape ``(N,)``, top layer first.
        relaxation: softness, kind and mode of the comparisons.

    Returns:
        The slowness at each point, shape ``(...)``.
    """
    depth = jnp.asarray(points)[..., 1]
    speeds = jnp.asarray(speeds)
    deeper = relaxation.greater(depth[..., None], jnp.asarray(boundaries))
    # Layer 0 is everything above the first boundary, the last layer everything below the last.
    above = jnp.concatenate([jnp.ones_like(deeper[..., :1]), deeper], axis=-1)
    below = jnp.concatenate([deeper, jnp.zeros_like(deeper[..., :1])], axis=-1)
    weights = above - below
    layers = [lambda y, k=k: jnp.zeros_like(y) + 1 / speeds[k] for k in range(speeds.shape[0])]
    return sf.soft_switch(weights, layers, depth)


def lake_slowness(points, center, radius, land_speed, lake_speed, relaxation: sf.Relaxation):
    """Slowness at points of a plain with one circular lake, chosen by a soft ``if``.

    The program is "if the distance to the center is less than the radius: lake speed, else land
    speed", with the comparison relaxed by ``relaxation`` and the branches blended by
    :func:`softflow.soft_if`.

    Arguments:
        points: positions, shape ``(..., 2)``.
        center: the lake's center, shape ``(2,)``.
        radius: the lake's radius (a scalar, differentiable).
        land_speed: speed outside the lake.
        lake_speed: speed inside the lake (on its ice, for instance).
        relaxation: softness, kind and mode of the comparison.

    Returns:
        The slowness at each point, shape ``(...)``.
    """
    offsets = jnp.asarray(points) - jnp.asarray(center)
    distance = jnp.sqrt(jnp.sum(offsets**2, axis=-1))
    inside = relaxation.less(distance, radius)
    return sf.soft_if(
        inside,
        lambda d: jnp.zeros_like(d) + 1 / jnp.asarray(lake_speed, d.dtype),
        lambda d: jnp.zeros_like(d) + 1 / jnp.asarray(land_speed, d.dtype),
        distance,
    )


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


def boundaries_from_logits(logits, depth):
    """Increasing boundaries inside (0, depth): cumulative softmax fractions of the depth.

    Arguments:
        logits: one unconstrained number per layer, shape ``(N,)``.
        depth: the total depth.

    Returns:
        The N - 1 boundary depths, shape ``(N - 1,)``.
    """
    return depth * jnp.cumsum(jax.nn.softmax(logits))[:-1]


# ---------------------------------------------------------------------------------------------
# Refraction survey: recover the boundaries from crossing times
# ---------------------------------------------------------------------------------------------


class BoundaryFit(NamedTuple):
    """Result of :func:`fit_boundaries`.

    Attributes:
        boundaries: the fitted boundary depths, increasing, shape ``(N - 1,)``.
        predicted_times: fastest-crossing times of the fitted soft terrain, one per offset.
        residual_rms: root mean square of predicted minus measured times (time units).
        relative_rms: root mean square of (predicted - measured) / measured.
        routes: the fastest routes in the fitted terrain, shape ``(offsets, M + 1, 2)``.
        history: per outer iteration, ``"boundaries"`` before it ``(steps, N - 1)``,
            ``"relative_rms"`` and ``"softness"`` ``(steps,)``, and the routes after it
            ``"routes"`` ``(steps, offsets, M + 1, 2)``.
    """

    boundaries: np.ndarray
    predicted_times: np.ndarray
    residual_rms: float
    relative_rms: float
    routes: np.ndarray
    history: dict


@functools.cache
def _survey_solver(samples: int):
    """The jitted outer iteration of the survey fit, for a number of samples per segment.

    Lengths are in units of the depth and slownesses in units of the fastest layer's.
    """

    def terrain(logits, slowness, softness):
        boundaries = boundaries_from_logits(logits, 1.0)
        relaxation = sf.Relaxation(softness)
        return lambda points: layered_slowness(points, boundaries, 1 / slowness, relaxation)

    def route_time(displacements, logits, slowness, softness):
        route = layered_route(displacements, 1.0)
        return polyline_time(terrain(logits, slowness, softness), route, samples)

    def fastest_route(displacements, logits, slowness, softness):
        # The route's vertices sit at fixed depths, so the soft program gives every segment a
        # mean slowness that does not depend on the lateral positions: the fastest route is the
        # fastest crossing of strips of those slownesses, warm-started from the last one.
        points, _ = polyline_samples(layered_route(displacements, 1.0), samples)
        segment_slowness = jnp.mean(terrain(logits, slowness, softness)(points), axis=-1)
        thickness = jnp.full_like(segment_slowness, 1 / segment_slowness.shape[0])
        offset = jnp.sum(displacements)
        return _strip_solution(thickness, 1 / segment_slowness, offset, displacements)

    routes_for = jax.vmap(fastest_route, in_axes=(0, None, None, None))
    times_for = jax.vmap(route_time, in_axes=(0, None, None, None))

    def misfit(logits, routes, times, slowness, softness):
        predicted = times_for(routes, logits, slowness, softness)
        return jnp.mean(((predicted - times) / times) ** 2), predicted

    optimiser = optax.lbfgs()

    @jax.jit
    def iterate(logits, opt_state, routes, times, slowness, softness):
        routes = routes_for(routes, logits, slowness, softness)

        # With the routes re-solved and then held fixed, the gradient with respect to the
        # boundaries is that of the fastest-crossing times themselves: at the fastest route the
        # time is stationary in the route (the envelope theorem). The line search sees the same
        # fixed-route misfit, an upper bound of the true one that touches it at the current point.
        def value_fn(candidate):
            return misfit(candidate, routes, times, slowness, softness)[0]

        (value, predicted), grad = jax.value_and_grad(misfit, has_aux=True)(
            logits, routes, times, slowness, softness
        )
        updates, opt_state = optimiser.update(
            grad, opt_state, logits, value=value, grad=grad, value_fn=value_fn
        )
        logits = optax.apply_updates(logits, updates)
        return logits, opt_state, routes, jnp.sqrt(value), predicted

    return optimiser, iterate


def fit_boundaries(
    offsets,
    times,
    speeds,
    depth,
    *,
    softness: Sequence[float] = (0.1, 0.03, 0.01, 0.003, 0.001),
    iterations_per_softness: int = 10,
    segments: int = 64,
    samples_per_segment: int = 16,
    progress: bool = False,
) -> BoundaryFit:
    """Recover the boundaries of a layered terrain from fastest-crossing times (refraction survey).

    The terrain of total depth ``depth`` has N layers of known ``speeds``; its N - 1 boundary
    depths are unknown. For each lateral ``offsets[j]`` the fastest crossing from (0, 0) to
    (offset, depth) was measured to take ``times[j]``. The model is the soft terrain program
    :func:`layered_slowness`, crossed along polylines of ``segments`` segments
    (:func:`polyline_time`). The boundaries are ``depth * cumsum(softmax(logits))``, so they stay
    ordered inside (0, depth). The fit is nested: each outer iteration first re-solves every
    route by L-BFGS (warm-started from the previous iteration's), then takes one L-BFGS (optax)
    step of the logits on the misfit, the mean squared relative difference of the times. The
    softness is annealed through the values of ``softness`` (fractions of the depth),
    ``iterations_per_softness`` outer iterations each: a broad boundary first, so that the
    gradient reaches it from afar, a sharp one last.

    Arguments:
        offsets: lateral offsets of the survey, shape ``(J,)``, with J >= N - 1.
        times: measured fastest-crossing times, positive, shape ``(J,)``.
        speeds: the speed of each layer, top first, shape ``(N,)`` with N >= 2; adjacent layers
            need different speeds for their boundary to show in the times.
        depth: the total depth (positive).
        softness: the annealing schedule, decreasing fractions of the depth.
        iterations_per_softness: outer L-BFGS iterations at each softness.
        segments: number of segments of each route.
        samples_per_segment: slowness samples per segment; keep the sample spacing
            ``1 / (segments * samples_per_segment)`` below the last softness.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`BoundaryFit` with the boundaries, the fit quality and the history.

    Raises:
        ValueError: if an argument has the wrong shape or sign.
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
        ("iterations_per_softness", iterations_per_softness),
        ("segments", segments),
        ("samples_per_segment", samples_per_segment),
    ):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")

    time_unit = depth / speeds.max()
    history = {"boundaries": [], "relative_rms": [], "softness": [], "routes": []}
    optimiser, iterate = _survey_solver(int(samples_per_segment))
    bar = tqdm(
        total=schedule.size * iterations_per_softness,
        desc="fitting boundaries",
        disable=not progress,
    )
    with jax.enable_x64(True), bar:
        scaled_times = jnp.asarray(times / time_unit)
        slowness = jnp.asarray(speeds.max() / speeds)
        logits = jnp.zeros(speeds.size)
        routes = jnp.repeat(jnp.asarray(offsets / depth)[:, None] / segments, segments, axis=1)
        to_vertices = jax.vmap(layered_route, in_axes=(0, None))
        for tau in schedule:
            # The objective changes with the softness, so the curvature memory starts afresh.
            # (Some scalars of a fresh state are weakly typed; making them strong, as the updated
            # state's are, saves a second compilation of the iteration.)
            opt_state = jax.tree.map(
                lambda leaf: jnp.asarray(leaf, leaf.dtype), optimiser.init(logits)
            )
            for _ in range(int(iterations_per_softness)):
                history["boundaries"].append(np.asarray(boundaries_from_logits(logits, depth)))
                logits, opt_state, routes, rms, predicted = iterate(
                    logits, opt_state, routes, scaled_times, slowness, tau
                )
                history["relative_rms"].append(float(rms))
                history["softness"].append(float(tau))
                history["routes"].append(np.asarray(to_vertices(routes, 1.0)))
                bar.update()
        # One more evaluation re-solves the routes for the final boundaries, so that the reported
        # times and residuals belong to them.
        _, _, routes, rms, predicted = iterate(
            logits, opt_state, routes, scaled_times, slowness, schedule[-1]
        )
        boundaries = np.asarray(boundaries_from_logits(logits, depth))
        routes = np.asarray(to_vertices(routes, 1.0)) * depth
    predicted = np.asarray(predicted) * time_unit
    history = {key: np.asarray(value) for key, value in history.items()}
    history["routes"] = history["routes"] * depth
    return BoundaryFit(
        boundaries=boundaries,
        predicted_times=predicted,
        residual_rms=float(np.sqrt(np.mean((predicted - times) ** 2))),
        relative_rms=float(rms),
        routes=routes,
        history=history,
    )


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
    thicknesses = np.diff(np.concatenate([[0.0], np.asarray(boundaries, float), [depth]]))
    return np.array(
        [
            float(np.sum(np.sqrt(x**2 + thicknesses**2) / np.asarray(speeds)))
            for x in (fastest_crossing(thicknesses, speeds, h) for h in np.asarray(offsets))
        ]
    )


__all__: Sequence[str] = (
    "CLASSIC_OFFSET",
    "CLASSIC_SPEEDS",
    "CLASSIC_THICKNESSES",
    "BoundaryFit",
    "boundaries_from_logits",
    "classic_time",
    "crossing_time",
    "descent_path",
    "fastest_crossing",
    "fit_boundaries",
    "lake_slowness",
    "layered_route",
    "layered_slowness",
    "polyline_time",
    "ray_parameters",
    "seed_descent",
    "survey_times",
)
