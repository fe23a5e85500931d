"""Tests of the crossing-terrains example (examples/terrain.py)."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import softflow as sf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))

import terrain


def ray_shooting(thicknesses, speeds, offset):
    """Exact fastest crossing by shooting rays: bisection on the angle in the fastest strip.

    On a ray of parameter p = sin(θ) / v the displacement in strip i is
    d_i p v_i / sqrt(1 - p² v_i²). Writing p = sin(φ) / v_max, with φ the angle in the fastest
    strip, keeps every term finite and well conditioned up to grazing incidence; the total
    displacement grows monotonically in φ, so bisection finds the ray that reaches the offset.
    """
    d = np.asarray(thicknesses, float)
    ratio = np.asarray(speeds, float) / np.max(speeds)

    def displacements(phi):
        sin_ratio = np.sin(phi) * ratio
        return d * sin_ratio / np.sqrt(1 - sin_ratio**2)

    lo, hi = 0.0, np.pi / 2
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if np.sum(displacements(mid)) < abs(offset):
            lo = mid
        else:
            hi = mid
    return np.sign(offset) * displacements(0.5 * (lo + hi))


def time_of(displacements, thicknesses, speeds):
    x = np.asarray(displacements, float)
    return float(np.sum(np.sqrt(x**2 + np.asarray(thicknesses) ** 2) / np.asarray(speeds)))


def test_seed_descent_reproduces_the_classic_numbers():
    with jax.enable_x64(True):
        path = terrain.descent_path()
        times = np.asarray(terrain.classic_time(jnp.asarray(path)))
    np.testing.assert_allclose(terrain.seed_descent(), path[-1])
    assert path.shape == (21, 2)
    np.testing.assert_allclose(path[0], [2.0, 17.0])
    np.testing.assert_allclose(path[-1], [10.92, 3.49], atol=5e-3)
    assert times[-1] == pytest.approx(81.9164, abs=5e-5)
    # Step size 1.5 is small enough that every step goes downhill.
    assert np.all(np.diff(times) < 0)
    optimum = terrain.fastest_crossing(
        terrain.CLASSIC_THICKNESSES, terrain.CLASSIC_SPEEDS, terrain.CLASSIC_OFFSET
    )
    best = time_of(optimum, terrain.CLASSIC_THICKNESSES, terrain.CLASSIC_SPEEDS)
    assert best == pytest.approx(81.91169, abs=5e-6)
    assert times[-1] > best


def _random_instances():
    rng = np.random.default_rng(20240611)
    cases = []
    for n in (2, 3, 5):
        for _ in range(3):
            d = rng.uniform(0.2, 10.0, n)
            v = rng.uniform(0.2, 5.0, n)
            h = rng.uniform(-3.0, 3.0) * d.sum()
            cases.append((d, v, h))
    cases.append((np.array([1.0, 2.0, 0.5]), np.array([1.0, 3.0, 2.0]), 0.0))
    cases.append((np.array([1.0, 2.0, 0.5]), np.array([1.0, 3.0, 2.0]), 40.0))
    return cases


@pytest.mark.parametrize("case", _random_instances())
def test_fastest_crossing_matches_ray_shooting(case):
    d, v, h = case
    x = terrain.fastest_crossing(d, v, h)
    exact = ray_shooting(d, v, h)
    assert x.shape == d.shape and x.dtype == np.float64
    assert np.sum(x) == pytest.approx(h, abs=1e-12 * d.sum())
    assert time_of(x, d, v) == pytest.approx(time_of(exact, d, v), rel=1e-9)
    # Snell's law: the same ray parameter in every strip, to 1e-6 of the largest slowness.
    p = terrain.ray_parameters(x, d, v)
    assert np.max(np.abs(p - p.mean())) <= 1e-6 / np.min(v)


def test_fastest_crossing_single_strip_goes_straight():
    np.testing.assert_array_equal(terrain.fastest_crossing([3.0], [2.0], -1.5), [-1.5])


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (([1.0, 0.0], [1.0, 2.0], 1.0), "thicknesses"),
        (([1.0, 2.0], [1.0, -2.0], 1.0), "speeds"),
        (([1.0, 2.0], [1.0, 2.0, 3.0], 1.0), "speeds"),
        (([], [], 1.0), "thicknesses"),
        (([1.0], [1.0], float("nan")), "offset"),
    ],
)
def test_fastest_crossing_rejects_bad_input(args, name):
    with pytest.raises(ValueError, match=name):
        terrain.fastest_crossing(*args)


def test_fit_boundaries_rejects_bad_input():
    with pytest.raises(ValueError, match="times"):
        terrain.fit_boundaries([0.0, 1.0], [1.0], [1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="speeds"):
        terrain.fit_boundaries([0.0, 1.0], [1.0, 2.0], [1.0], 1.0)
    with pytest.raises(ValueError, match="depth"):
        terrain.fit_boundaries([0.0, 1.0], [1.0, 2.0], [1.0, 2.0], -1.0)


LAYER_SPEEDS = np.array([1.0, 2.5, 1.6])
LAYER_BOUNDARIES = np.array([0.35, 0.8])


def _route_through_crossings(offset):
    """The exact fastest route of the layered terrain, as a polyline with a vertex per boundary."""
    thicknesses = np.diff(np.concatenate([[0.0], LAYER_BOUNDARIES, [1.0]]))
    x = terrain.fastest_crossing(thicknesses, LAYER_SPEEDS, offset)
    vertices = np.stack(
        [np.concatenate([[0.0], np.cumsum(x)]), np.concatenate([[0.0], LAYER_BOUNDARIES, [1.0]])],
        axis=-1,
    )
    return vertices, time_of(x, thicknesses, LAYER_SPEEDS)


def test_layered_program_hard_mode_is_the_exact_terrain():
    with jax.enable_x64(True):
        vertices, exact = _route_through_crossings(1.3)
        hard = sf.Relaxation(1e-3, mode="hard")
        time = terrain.polyline_time(
            lambda p: terrain.layered_slowness(p, LAYER_BOUNDARIES, LAYER_SPEEDS, hard),
            jnp.asarray(vertices),
            7,
        )
    # Every sample of a segment lies strictly inside one layer, so the sum is exact.
    assert float(time) == pytest.approx(exact, rel=1e-13)


def test_layered_program_soft_tends_to_hard():
    with jax.enable_x64(True):
        # A straight route and a bent one; sample spacing far below the softness.
        routes = [
            jnp.stack([jnp.linspace(0.0, 1.3, 41), jnp.linspace(0.0, 1.0, 41)], axis=-1),
            jnp.asarray(_route_through_crossings(1.3)[0]),
        ]

        @jax.jit
        def times(route, softness):
            def time_in(relaxation):
                return terrain.polyline_time(
                    lambda p: terrain.layered_slowness(
                        p, LAYER_BOUNDARIES, LAYER_SPEEDS, relaxation
                    ),
                    route,
                    4000 // (route.shape[0] - 1),
                )

            return time_in(sf.Relaxation(softness)), time_in(sf.Relaxation(softness, mode="hard"))

        for route in routes:
            gaps = []
            for softness in (1e-2, 1e-3):
                soft, hard = times(route, softness)
                gaps.append(abs(float(soft) - float(hard)) / float(hard))
            assert gaps[1] < 2e-3
            assert gaps[1] < gaps[0]


def test_lake_program_matches_the_chord_formula():
    center, radius, land, lake = jnp.array([0.5, 0.1]), 0.3, 1.0, 2.5
    with jax.enable_x64(True):
        # A straight route through the center: 2 r on the ice, the rest on land.
        route = jnp.stack([jnp.linspace(0.0, 1.0, 11), jnp.full(11, 0.1)], axis=-1)
        exact = (1 - 2 * radius) / land + 2 * radius / lake

        def time_in(relaxation):
            return terrain.polyline_time(
                lambda p: terrain.lake_slowness(p, center, radius, land, lake, relaxation),
                route,
                1000,
            )

        hard = float(time_in(sf.Relaxation(1.0, mode="hard")))
        soft = float(time_in(sf.Relaxation(1e-4)))
    spacing = 1.0 / (10 * 1000)
    assert hard == pytest.approx(exact, abs=2 * spacing * (1 / land - 1 / lake))
    assert soft == pytest.approx(hard, rel=1e-4)


def test_fit_boundaries_recovers_a_synthetic_survey():
    speeds, depth, truth = np.array([1.0, 2.0, 3.5]), 2.0, np.array([0.6, 1.4])
    offsets = np.linspace(0.0, 6.0, 8)
    times = terrain.survey_times(offsets, truth, speeds, depth)
    fit = terrain.fit_boundaries(offsets, times, speeds, depth)
    assert np.all(np.abs(fit.boundaries - truth) <= 0.01 * depth)
    assert np.all(np.diff(fit.boundaries) > 0) and 0 < fit.boundaries[0] < depth
    assert fit.relative_rms < 1e-3
    assert fit.history["relative_rms"][-1] < 0.1 * fit.history["relative_rms"][0]

    # With 1 % noise the fit still explains the data about as well as the truth does.
    noisy = times * (1 + 0.01 * np.random.default_rng(1).standard_normal(times.size))
    noisy_fit = terrain.fit_boundaries(offsets, noisy, speeds, depth)
    truth_rms = np.sqrt(np.mean((times / noisy - 1) ** 2))
    assert noisy_fit.relative_rms <= truth_rms + 1e-3
    assert np.all(np.abs(noisy_fit.boundaries - truth) <= 0.1 * depth)
