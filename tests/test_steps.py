"""Soft staircases sign / round / floor / ceil: exact hard modes, limits, shape, gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal, assert_grad_matches_finite_differences

import softflow as sf

ALL_KINDS = pytest.mark.parametrize("kind", sf.KINDS)
STEPS = (sf.sign, sf.round, sf.floor, sf.ceil)
EXACT = {sf.sign: jnp.sign, sf.round: jnp.round, sf.floor: jnp.floor, sf.ceil: jnp.ceil}
# Random values, ties of round (half-integers: half to even), integers, signed zeros, magnitudes
# beyond float32's integer range, tiny values and non-finite ones.
SPECIAL = [0.5, 1.5, 2.5, -0.5, -2.5, 3.0, -4.0, 0.0, -0.0, 1e30, -3e38, 2**23 + 0.5, 1e-30]
SPECIAL += [-1e-30, 8388609.0, np.inf, -np.inf, np.nan]
# 64 values in every float32 call of evaluate(), so that each kind compiles once.
BATCH = 64
X = np.concatenate([np.random.default_rng(0).normal(scale=3, size=BATCH - len(SPECIAL)), SPECIAL])
X = X.astype(np.float32)


@functools.cache
def evaluate(kind):
    def run(x, tau):
        return {
            (fn.__name__, mode): fn(x, softness=tau, kind=kind, mode=mode)
            for fn in STEPS
            for mode in sf.MODES
        }

    return jax.jit(run)


@ALL_KINDS
def test_hard_and_straight_through_forward_are_exactly_jnp(kind):
    results = evaluate(kind)(X, 0.3)
    for fn, exact in EXACT.items():
        assert_exactly_equal(results[fn.__name__, "hard"], exact(X))
        assert_exactly_equal(results[fn.__name__, "straight_through"], exact(X))
    np.testing.assert_array_equal(results["round", "hard"], np.round(X))  # NumPy: half to even


@ALL_KINDS
def test_soft_staircases_tend_to_the_exact_ones_and_keep_their_shape(kind):
    rng = np.random.default_rng(1)
    x = rng.uniform(-20, 20, size=BATCH).astype(np.float32)
    sharp = evaluate(kind)(x, 1e-5)
    # Away from the jumps (the integers for floor and ceil, half-integers for round, 0 for sign).
    for name, jumps in [("floor", x), ("ceil", x), ("round", x - 0.5), ("sign", x)]:
        far = np.abs(jumps - np.round(jumps)) > 0.05 if name != "sign" else np.abs(x) > 0.05
        np.testing.assert_allclose(
            sharp[name, "soft"][far], sharp[name, "hard"][far], atol=2e-3, err_msg=name
        )
    soft = evaluate(kind)(x, 0.4)
    # Ceil is floor counted from the next integer; sign is odd.
    np.testing.assert_allclose(soft["ceil", "soft"], soft["floor", "soft"] + 1, atol=1e-5)
    negated = evaluate(kind)(-x, 0.4)
    np.testing.assert_allclose(negated["sign", "soft"], -soft["sign", "soft"], atol=1e-7)
    # Halfway up each jump: floor(k) = k - 1/2, round(k + 1/2) = k + 1/2, sign(0) = 0.
    k = np.arange(-BATCH // 4, BATCH // 4, dtype=np.float32)
    at_jumps = evaluate(kind)(np.concatenate([k, k + 0.5]), 0.4)
    np.testing.assert_allclose(at_jumps["floor", "soft"][: len(k)], k - 0.5, atol=1e-5)
    np.testing.assert_allclose(at_jumps["round", "soft"][len(k) :], k + 0.5, atol=1e-5)
    assert float(sf.sign(0.0, kind=kind)) == 0.0


@ALL_KINDS
def test_soft_staircases_are_continuous_and_non_decreasing(kind, x64):
    # Continuous across the points where the exact value (the anchor of the sum) changes: the
    # integers for floor and ceil, the half-integers for round; at three softnesses.
    anchors = np.concatenate([np.arange(-3.0, 4.0), np.arange(-3.0, 4.0) + 0.5])
    anchors, tau = (a.ravel() for a in np.meshgrid(anchors, [0.1, 1.0, 2.0]))
    grid = np.linspace(-3.3, 3.3, 4001)
    # One call: just below the anchors, just above them, and a fine grid at softness 0.7.
    points = np.concatenate([anchors - 1e-9, anchors + 1e-9, grid])
    softness = np.concatenate([tau, tau, np.full_like(grid, 0.7)])
    results = evaluate(kind)(points, softness)
    for fn in STEPS:
        name = fn.__name__
        values = np.asarray(results[name, "soft"])
        below, above = values[: len(anchors)], values[len(anchors) : 2 * len(anchors)]
        np.testing.assert_allclose(above, below, atol=1e-7, err_msg=name)
        assert np.all(np.diff(values[2 * len(anchors) :]) >= 0), name


def test_gradients_match_finite_differences(x64):
    rng = np.random.default_rng(2)
    x = rng.uniform(-4, 4, size=24)
    tau = rng.uniform(0.2, 1.5, size=24)
    # One scalar combining the four staircases with unrelated coefficients: a wrong derivative
    # of any of them shows.
    coefficients = (1.0, -0.7, 0.3, 1.9)

    def combined(x, t, kind="logistic", mode="soft"):
        values = [fn(x, softness=t, kind=kind, mode=mode) for fn in STEPS]
        return sum(c * v for c, v in zip(coefficients, values, strict=True))

    def compact(x, t):  # a compact-support kind: flat tails, exact zeros in the window
        return combined(x, t, "smootherstep")

    def straight_through(x, t):
        return combined(x, t, "smootherstep", "straight_through")

    assert_grad_matches_finite_differences(combined, (x, tau), rtol=1e-6, atol=1e-9)
    assert_grad_matches_finite_differences(
        compact, (x, tau), grad_fn=straight_through, rtol=1e-6, atol=1e-9
    )


def test_jit_vmap_traced_softness_and_dtypes():
    tau = jnp.linspace(0.1, 1.0, 5)
    x = jnp.linspace(-2.0, 2.0, 5)
    mapped = jax.jit(jax.vmap(lambda a, t: sf.floor(a, softness=t)))(x, tau)
    np.testing.assert_allclose(mapped, sf.floor(x, softness=tau), rtol=1e-6)
    with pytest.raises(Exception, match="softness"):
        jax.jit(lambda t: sf.round(x, softness=t))(0.0).block_until_ready()
    straight_through = jax.jit(lambda x: [fn(x, mode="straight_through") for fn in STEPS])
    for value in straight_through(jnp.asarray(X, jnp.bfloat16)):
        assert value.dtype == jnp.bfloat16
    assert sf.round(jnp.asarray(X)).dtype == jnp.float32
    with jax.enable_x64(True):
        assert sf.ceil(np.asarray(X, np.float64)).dtype == jnp.float64
    relax = sf.Relaxation(0.3, kind="gaussian")
    np.testing.assert_array_equal(
        relax.round(x), sf.round(x, softness=relax.softness, kind="gaussian")
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_jumps_left_out_at_a_known_softness_are_below_rounding(dtype):
    # A softness known at trace time sums only the jumps whose tails can rise above rounding; a
    # traced one sums all jumps within 16 of x. On a fine grid across several cells (the ends of
    # a cell are where jumps enter and leave) the two agree to the last bits.
    with jax.enable_x64(dtype == np.float64):
        x = jnp.linspace(-3.0, 3.0, 6001, dtype=dtype)
        traced = jax.jit(lambda x, t: [fn(x, softness=t) for fn in STEPS[1:]])
        for tau in (0.05, 0.1, 0.3):
            known = [fn(x, softness=tau) for fn in STEPS[1:]]
            for a, b in zip(known, traced(x, jnp.asarray(tau, dtype)), strict=True):
                np.testing.assert_allclose(a, b, rtol=0, atol=4 * np.finfo(dtype).eps)
                assert bool(jnp.all(jnp.diff(a) >= 0))


@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16, np.float64])
def test_values_near_zero_are_their_distance_from_the_jump_at_zero(dtype):
    # x - floor(x) rounded to 1 for -1 < x < 0 small against 1 (and x - ceil(x) to -1 for
    # 0 < x < 1): x sat on the jump at 0, floor(-1e-9) at softness 1e-10 was -1/2 and its slope
    # that of the jump's middle. The reference: the one jump that matters, in float64.
    with jax.enable_x64(dtype == np.float64):
        eps = float(jnp.finfo(dtype).eps)
        for x, tau in ((-1e-9, 1e-10), (-1e-30, 3e-31), (-2e-3, 1e-3), (3e-8, 1e-8)):
            xs = jnp.asarray(x, dtype)
            step = 1 / (1 + np.exp(-float(xs) / tau))  # s(x / tau), logistic, x in the dtype
            slope = step * (1 - step) / tau
            for fn, below in ((sf.floor, -1.0), (sf.ceil, 0.0)):
                got = float(fn(xs, softness=tau))
                np.testing.assert_allclose(got, below + step, rtol=0, atol=2 * eps)
                slope_got = float(jax.grad(lambda v, fn=fn, tau=tau: fn(v, softness=tau))(xs))
                np.testing.assert_allclose(slope_got, slope, rtol=8 * eps)
            # ceil is floor + 1 away from the integers
            ceil, floor = (float(fn(xs, softness=tau)) for fn in (sf.ceil, sf.floor))
            np.testing.assert_allclose(ceil, floor + 1, rtol=0, atol=2 * eps)


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="x must be a floating array"):
        sf.floor(jnp.arange(3))
    with pytest.raises(TypeError, match="x must be a real number"):
        sf.sign("1")
    with pytest.raises(ValueError, match="kind must be one of"):
        sf.round(1.0, kind="tanh")
    with pytest.raises(ValueError, match="mode must be one of"):
        sf.ceil(1.0, mode="exact")
    with pytest.raises(ValueError, match="softness must be positive"):
        sf.floor(1.0, softness=-1.0)
