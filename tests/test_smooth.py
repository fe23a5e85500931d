"""sf.smooth: unbiased gradients of Gaussian-smoothed programs, checked against closed forms.

Four programs with a closed-form smoothed gradient, :math:`F(x) = E f(x + \\sigma\\varepsilon)`:

* step, f = [x0 > 0]: dF/dx0 = phi(x0 / sigma) / sigma;
* relu, f = max(x0, 0): dF/dx0 = Phi(x0 / sigma);
* floor, f = floor(x0): dF/dx0 = sum_k phi((x0 - k) / sigma) / sigma;
* the max of two linear functions of x = (x0, x1): grad F = a1 p + a2 (1 - p) with
  p = Phi((<a1 - a2, x> + b1 - b2) / (sigma |a1 - a2|)).

The first three ignore x1, whose derivative is then 0. Every estimator runs all four programs at
once (a ``lax.switch`` on an integer argument that is not smoothed), so that each configuration
compiles once.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from scipy import stats

import softflow as sf

A1, B1 = np.array([1.0, -0.5]), 0.3
A2, B2 = np.array([-0.8, 1.2]), -0.1
PROGRAMS = ("step", "relu", "floor", "max")
OFFSET = 20.0  # added to every program for the variance-reduction test (see there)


def program(x, which, offset=0.0):
    branches = [
        lambda x: jnp.where(x[0] > 0, 1.0, 0.0),
        lambda x: jax.nn.relu(x[0]),
        lambda x: jnp.floor(x[0]),
        lambda x: jnp.maximum(x @ A1 + B1, x @ A2 + B2),
    ]
    return lax.switch(which, branches, x) + offset


def closed_form(x, which, sigma):
    """The gradient of the smoothed program, shape (2,)."""
    x0 = x[0]
    if PROGRAMS[which] == "step":
        return np.array([stats.norm.pdf(x0 / sigma) / sigma, 0.0])
    if PROGRAMS[which] == "relu":
        return np.array([stats.norm.cdf(x0 / sigma), 0.0])
    if PROGRAMS[which] == "floor":
        k = np.arange(np.floor(x0) - 40, np.floor(x0) + 41)
        return np.array([np.sum(stats.norm.pdf((x0 - k) / sigma)) / sigma, 0.0])
    direction = A1 - A2
    p = stats.norm.cdf((x @ direction + B1 - B2) / (sigma * np.linalg.norm(direction)))
    return A1 * p + A2 * (1 - p)


# Every program at points left of, at and right of its kinks or jumps, at three scales.
CASES = [
    (x0, which, sigma)
    for which in range(len(PROGRAMS))
    for x0 in (-0.7, 0.0, 1.3)
    for sigma in (0.3, 1.0, 2.5)
]
XS = np.array([[x0, 0.2] for x0, _, _ in CASES], np.float32)
WHICH = np.array([which for _, which, _ in CASES])
SIGMAS = np.array([sigma for _, _, sigma in CASES], np.float32)
TRUTH = np.stack([closed_form(x, w, s) for x, w, s in zip(XS, WHICH, SIGMAS, strict=True)])
REPEATS = 2000
# Independent draws for every case, so that the z-scores of different cases are independent.
KEYS = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(jax.random.key(0), i), REPEATS))(
    jnp.arange(len(CASES))
)


@functools.cache
def estimator_runs(estimator, baseline, samples):
    """Jitted: (offset) -> gradient estimates of every case, shape (cases, REPEATS, 2)."""

    def one(x, which, sigma, key, offset):
        smoothed = sf.smooth(
            program, scale=sigma, samples=samples, estimator=estimator, baseline=baseline
        )
        return jax.grad(smoothed)(x, which, offset, key=key)

    return jax.jit(jax.vmap(jax.vmap(one, (None, None, None, 0, None)), (0, 0, 0, 0, None)))


@functools.cache
def estimates(estimator, baseline=None, samples=16, offset=0.0):
    """Gradient estimates of every case, shape (cases, REPEATS, 2), in float64."""
    run = estimator_runs(estimator, baseline, samples)  # the offset is traced: one compilation
    return np.asarray(run(XS, WHICH, SIGMAS, KEYS, offset), np.float64)


CONFIGS = [("antithetic", None), ("score", "mean"), ("score", "none"), ("score", "center")]


def z_scores(draws, truth):
    """(mean - truth) / standard error, per case and component."""
    error = draws.std(axis=1, ddof=1) / np.sqrt(draws.shape[1])
    return (draws.mean(axis=1) - truth) / np.where(error > 0, error, np.inf)


def three_standard_errors(comparisons: int) -> float:
    """The bound that all ``comparisons`` z-scores stay under as often as one stays under 3."""
    single = 2 * stats.norm.sf(3.0)  # 0.27 %
    return float(stats.norm.isf((1 - (1 - single) ** (1 / comparisons)) / 2))


# ---------------------------------------------------------------------------------------------
# Unbiasedness and variance


@pytest.mark.parametrize(("estimator", "baseline"), CONFIGS)
def test_mean_gradient_matches_the_closed_forms(estimator, baseline):
    z = z_scores(estimates(estimator, baseline), TRUTH)
    bound = three_standard_errors(z.size)
    assert np.max(np.abs(z)) < bound, (np.max(np.abs(z)), bound, CASES[np.argmax(np.abs(z)) // 2])
    # The standard errors are not inflated: the z-scores spread like a standard normal.
    assert 0.5 < np.mean(z[np.isfinite(z)] ** 2) < 1.6


def test_pathwise_is_unbiased_where_the_program_is_continuous_and_misses_the_jumps():
    draws = estimates("pathwise")
    continuous = np.isin(WHICH, [PROGRAMS.index("relu"), PROGRAMS.index("max")])
    z = z_scores(draws[continuous], TRUTH[continuous])
    assert np.max(np.abs(z)) < three_standard_errors(z.size)
    # Step and floor are flat between their jumps: the pathwise estimate is exactly zero,
    # while the true gradient is not, and the same check flags it.
    np.testing.assert_array_equal(draws[~continuous], 0.0)
    z_jumps = z_scores(draws[~continuous] + 1e-9 * np.ones(2), TRUTH[~continuous])
    assert np.max(np.abs(z_jumps)) > 100


@pytest.mark.parametrize(("estimator", "baseline"), [("antithetic", None), ("score", "none")])
def test_variance_falls_as_one_over_the_samples(estimator, baseline):
    few, many = estimates(estimator, baseline, 16), estimates(estimator, baseline, 64)
    total_few = few.var(axis=1).sum(axis=-1)
    total_many = many.var(axis=1).sum(axis=-1)
    ratio = total_few / np.where(total_many > 0, total_many, np.nan)
    measured = ratio[np.isfinite(ratio) & (total_few > 1e-8)]
    # Each ratio is one of two variances from 2000 draws: 4 within about 5 % (one standard
    # deviation, more for the heavy tails of a step's estimates); their median within 3 %.
    assert np.all((measured > 3.0) & (measured < 5.3)), np.sort(measured)
    assert abs(np.median(measured) - 4.0) < 0.12


@pytest.mark.parametrize(("estimator", "baseline"), [("antithetic", None), ("score", "mean")])
def test_variance_reduction_pays_on_programs_away_from_zero(estimator, baseline):
    # A program's value far from zero relative to how much it changes over one perturbation (as
    # a loss usually is) is what the plain score function pays for: its variance grows with the
    # square of the value, while the baseline and the antithetic pairs cancel any constant. On
    # the programs as they are, near points where f is nearly 0 and nearly linear, the plain
    # estimator is already good, and antithetic pairs (half as many directions) can cost up to
    # twice its variance (measured: 0.0 to 2.0 times, the mean baseline 0.0 to 1.06 times).
    plain = estimates("score", "none", offset=OFFSET).var(axis=1).sum(axis=-1)
    reduced = estimates(estimator, baseline, offset=OFFSET).var(axis=1).sum(axis=-1)
    assert np.all(reduced <= 0.5 * plain), np.max(reduced / plain)


def test_baseline_and_antithetic_pairs_ignore_a_constant():
    for estimator, baseline in [("antithetic", None), ("score", "mean"), ("score", "center")]:
        shifted = estimates(estimator, baseline, offset=OFFSET)
        np.testing.assert_allclose(shifted, estimates(estimator, baseline), atol=2e-4)


def test_value_is_an_unbiased_estimate_of_the_smoothed_program():
    step = sf.smooth(lambda x: jnp.where(x > 0, 1.0, 0.0), scale=0.5, samples=64)
    x = jnp.array([-0.4, 0.0, 0.3])
    values = np.asarray(jax.jit(jax.vmap(lambda k: jax.vmap(lambda x: step(x, key=k))(x)))(KEYS[0]))
    z = z_scores(values.T[..., None], stats.norm.cdf(np.asarray(x) / 0.5)[:, None])
    assert np.max(np.abs(z)) < three_standard_errors(z.size)


# ---------------------------------------------------------------------------------------------
# JAX transformations, pytrees, dtypes


def bumpy(params, weights):
    """A program of a pytree with jumps and a continuous dependence on ``weights``."""
    return jnp.sum(jnp.floor(3 * params["a"]) * weights) + jnp.sum(params["b"] > 0.5) * weights[0]


PARAMS = {"a": jnp.array([0.2, -0.4]), "b": jnp.array(0.3)}
WEIGHTS = jnp.array([1.5, -2.0])


def test_jit_grad_and_a_traced_scale_compile_once():
    traces = []

    @jax.jit
    def gradient(params, key, scale):
        traces.append(None)
        return jax.grad(sf.smooth(bumpy, scale=scale, samples=32))(params, WEIGHTS, key=key)

    key = jax.random.key(1)
    concrete = jax.jit(jax.grad(sf.smooth(bumpy, scale=0.2, samples=32)))(PARAMS, WEIGHTS, key=key)
    traced = gradient(PARAMS, key, 0.2)
    for leaf, expected in zip(jax.tree.leaves(traced), jax.tree.leaves(concrete), strict=True):
        np.testing.assert_allclose(leaf, expected, rtol=1e-5, atol=1e-6)
    other = gradient(PARAMS, jax.random.key(2), 0.7)
    assert len(traces) == 1 and gradient._cache_size() == 1
    assert not np.allclose(other["a"], traced["a"])  # a new key draws new perturbations


def test_same_key_same_samples_and_vmap_matches_a_loop():
    smoothed = sf.smooth(bumpy, scale=0.3, samples=16, argnums=(0, 1))
    key = jax.random.key(3)
    batch = jax.tree.map(lambda v: jnp.stack([v, v + 0.25, v - 0.5]), PARAMS)
    keys = jax.random.split(key, 3)

    @jax.jit
    def run(batch, keys):
        grads = jax.grad(smoothed, argnums=(0, 1))
        batched = jax.vmap(lambda p: grads(p, WEIGHTS, key=key))(batch)
        looped = jax.lax.map(lambda p: grads(p, WEIGHTS, key=key), batch)  # one at a time
        values = jax.vmap(lambda k: smoothed(PARAMS, WEIGHTS, key=k))(keys)
        return batched, looped, values, smoothed(PARAMS, WEIGHTS, key=keys[1])

    batched, looped, values, second = run(batch, keys)
    for leaf, expected in zip(jax.tree.leaves(batched), jax.tree.leaves(looped), strict=True):
        np.testing.assert_allclose(leaf, expected, rtol=1e-5, atol=1e-6)
    # vmap over keys: independent draws, the same as calling with each key
    np.testing.assert_allclose(values[1], second, rtol=1e-6)
    assert len(set(np.asarray(values).tolist())) == 3


def test_arguments_not_smoothed_get_the_programs_own_derivative():
    # d/dweights of E f(params + noise, weights) is the mean of the program's own derivative:
    # floor(3 a + 3 sigma e) summed with the step of b, at the same perturbations.
    smoothed = sf.smooth(bumpy, scale=0.3, samples=4096)

    @jax.jit
    def both(key):
        by_estimator = jax.grad(smoothed, argnums=1)(PARAMS, WEIGHTS, key=key)
        # Independent draws of the same perturbations: the two agree in distribution.
        a = PARAMS["a"] + 0.3 * jax.random.normal(jax.random.key(5), (8192, 2))
        b = PARAMS["b"] + 0.3 * jax.random.normal(jax.random.key(6), (8192,))
        by_hand = jnp.mean(jnp.floor(3 * a), axis=0) + jnp.array([1.0, 0.0]) * jnp.mean(b > 0.5)
        return by_estimator, by_hand

    by_estimator, by_hand = both(jax.random.key(4))
    np.testing.assert_allclose(by_estimator, by_hand, atol=0.05)


def test_jvp_jacfwd_and_jacrev_agree_with_the_gradient():
    smoothed = sf.smooth(lambda x: jnp.sum(jnp.floor(x) ** 2), scale=0.4, samples=64)
    vector = sf.smooth(lambda x: jnp.floor(x) * jnp.array([1.0, 2.0, 3.0]), scale=0.4, samples=64)
    direction = jnp.array([0.5, -1.0, 2.0])

    @jax.jit
    def everything(x, key):
        scalar = functools.partial(smoothed, key=key)
        rows = [jax.grad(lambda x, i=i: vector(x, key=key)[i])(x) for i in range(3)]
        return (
            jax.grad(scalar)(x),
            jax.jvp(scalar, (x,), (direction,))[1],
            jax.jacfwd(scalar)(x),
            jax.jacrev(functools.partial(vector, key=key))(x),
            jnp.stack(rows),
        )

    gradient, along, forward, jacobian, rows = everything(
        jnp.array([0.3, 1.6, -0.9]), jax.random.key(7)
    )
    np.testing.assert_allclose(along, gradient @ direction, rtol=1e-5)
    np.testing.assert_allclose(forward, gradient, rtol=1e-5)
    # A vector output: each row of the Jacobian is the gradient of that output, same samples.
    assert jacobian.shape == (3, 3)
    np.testing.assert_allclose(jacobian, rows, rtol=1e-5, atol=1e-6)


def test_batch_size_changes_memory_not_the_result():
    key = jax.random.key(8)
    whole = sf.smooth(bumpy, scale=0.3, samples=24)
    batched = sf.smooth(bumpy, scale=0.3, samples=24, batch_size=5)
    both = jax.jit(
        lambda p: (jax.grad(whole)(p, WEIGHTS, key=key), jax.grad(batched)(p, WEIGHTS, key=key))
    )
    for a, b in zip(*(jax.tree.leaves(g) for g in both(PARAMS)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_output_dtype_follows_the_inputs(dtype):
    smoothed = sf.smooth(lambda x: jnp.sum(jnp.floor(x) ** 2), scale=0.5, samples=8)
    counted = sf.smooth(lambda x: jnp.sum(x > 0), scale=0.5, samples=8)

    @jax.jit
    def run(x, key):
        return *jax.value_and_grad(smoothed)(x, key=key), counted(x, key=key)

    value, gradient, count = run(jnp.array([0.3, -1.2], dtype), jax.random.key(9))
    assert value.dtype == dtype and gradient.dtype == dtype
    # A truth value or count is averaged in the float dtype of the smoothed argument.
    assert count.dtype == dtype and 0 <= float(count) <= 2


def test_float64_under_x64(x64):
    smoothed = sf.smooth(lambda x: jnp.where(x > 0, 1.0, 0.0), scale=0.5, samples=4096)
    value, gradient = jax.jit(jax.value_and_grad(smoothed))(0.2, key=jax.random.key(10))
    assert value.dtype == jnp.float64 and gradient.dtype == jnp.float64
    assert abs(gradient - stats.norm.pdf(0.4) / 0.5) < 0.05


def test_a_while_loop_that_jax_cannot_reverse_differentiate():
    def walk(x):  # steps of size x until 5 is passed: how many, and where the walk ends
        return lax.while_loop(lambda c: c[0] < 5.0, lambda c: (c[0] + x, c[1] + 1.0), (0.0, 0.0))

    key = jax.random.key(11)
    steps = sf.smooth(lambda x: walk(x)[1], scale=0.1, samples=2000)
    gradient = jax.jit(jax.grad(steps))(1.2, key=key)
    # ceil(5 / x) smoothed: about -5 / x^2 = -3.5 per unit of x near 1.2 (one step lost per 0.3).
    assert -6.0 < gradient < -2.0
    # The pathwise estimator differentiates the program: the count is flat between its jumps
    # (zero), and the end point needs reverse mode through the loop, which JAX refuses.
    pathwise = sf.smooth(lambda x: walk(x)[1], scale=0.1, samples=8, estimator="pathwise")
    assert jax.grad(pathwise)(1.2, key=key) == 0.0
    end = sf.smooth(lambda x: walk(x)[0], scale=0.1, samples=8, estimator="pathwise")
    with pytest.raises(ValueError, match="Reverse-mode differentiation does not work"):
        jax.grad(end)(1.2, key=key)


def test_relax_refuses_a_hash_of_the_bits_and_smooth_runs_it():
    def hashed(x):
        bits = lax.bitcast_convert_type(x, jnp.uint32)
        return jnp.sum(((bits * jnp.uint32(2654435761)) >> 16).astype(jnp.float32) / 65536 + x**2)

    x = jnp.array([0.3, -0.8])
    with pytest.raises(TypeError, match=r"cannot relax `bitcast_convert_type`.*sf.smooth"):
        sf.relax(hashed)(x)
    # The hash averages to 1/2 whatever x: the smoothed gradient is that of x^2, 2 x.
    smoothed = sf.smooth(hashed, scale=0.3, samples=20000)
    gradient = jax.jit(jax.grad(smoothed))(x, key=jax.random.key(12))
    np.testing.assert_allclose(gradient, 2 * x, atol=0.15)


# ---------------------------------------------------------------------------------------------
# Errors


def square(x):
    return jnp.sum(x**2)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"scale": 0.0}, ValueError, "scale must be positive and finite"),
        ({"scale": -1.0}, ValueError, "scale must be positive"),
        ({"scale": float("nan")}, ValueError, "scale must be positive"),
        ({"scale": float("inf")}, ValueError, "scale must be positive"),
        ({"scale": True}, TypeError, "scale must be a positive real number"),
        ({"scale": "big"}, TypeError, "scale must be a real number"),
        ({"scale": 1j}, TypeError, "scale must be a real number"),
        ({"samples": 0}, ValueError, r"samples must be an int in \[2,"),
        ({"samples": 7}, ValueError, "samples must be even with estimator='antithetic'"),
        ({"samples": 1, "estimator": "score"}, ValueError, r"samples must be an int in \[2,"),
        ({"samples": 8.0}, TypeError, "samples must be a Python int"),
        ({"samples": True}, TypeError, "samples must be a Python int"),
        ({"argnums": -1}, TypeError, "argnums must be a non-negative int"),
        ({"argnums": ()}, TypeError, "argnums must be a non-negative int"),
        ({"argnums": (0, 0)}, ValueError, "argnums must not repeat"),
        ({"argnums": 0.0}, TypeError, "argnums must be"),
        ({"estimator": "reinforce"}, ValueError, "estimator must be one of"),
        ({"baseline": "mean"}, ValueError, "baseline applies to estimator='score' only"),
        ({"estimator": "score", "baseline": "median"}, ValueError, "baseline must be one of"),
        ({"batch_size": 0}, ValueError, "batch_size must be an int"),
    ],
)
def test_bad_options_are_named(options, error, match):
    with pytest.raises(error, match=match):
        sf.smooth(square, **{"scale": 0.1, "samples": 8, **options})


def test_a_scale_that_adds_axes_to_the_argument_is_refused():
    # fn was called on (2, 3) arrays for a (3,) argument.
    smoothed = sf.smooth(square, scale=jnp.ones((2, 1)), samples=4)
    with pytest.raises(
        ValueError, match=r"scale of shape \(2, 1\) does not broadcast to .* \(3,\)"
    ):
        smoothed(jnp.zeros(3), key=jax.random.key(0))
    per_coordinate = sf.smooth(square, scale=jnp.ones(3), samples=4)
    assert per_coordinate(jnp.zeros(3), key=jax.random.key(0)).shape == ()


def test_bad_calls_are_named():
    smoothed = sf.smooth(square, scale=0.1, samples=8)
    x = jnp.array([1.0, 2.0])
    with pytest.raises(TypeError, match="needs a random key"):
        smoothed(x)
    with pytest.raises(TypeError, match="key must be a JAX random key"):
        smoothed(x, key=3)
    with pytest.raises(ValueError, match=r"key must be a single key \(shape \(\)\)"):
        smoothed(x, key=jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="refers to positional argument 1"):
        sf.smooth(square, scale=0.1, samples=8, argnums=1)(x, key=jax.random.key(0))
    with pytest.raises(TypeError, match=r"argument 0\['n'\] has dtype int32"):
        sf.smooth(lambda p: p["x"] * p["n"], scale=0.1, samples=8)(
            {"x": 1.0, "n": jnp.int32(2)}, key=jax.random.key(0)
        )
    with pytest.raises(TypeError, match="returned a complex array"):
        sf.smooth(lambda x: x * 1j, scale=0.1, samples=8)(1.0, key=jax.random.key(0))
    with pytest.raises(TypeError, match="fn must be a callable"):
        sf.smooth(3, scale=0.1, samples=8)
    # A raw key from jax.random.PRNGKey is accepted.
    assert np.isfinite(smoothed(x, key=jax.random.PRNGKey(0)))


def test_a_traced_scale_is_checked_when_it_runs():
    @jax.jit
    def value(scale):
        return sf.smooth(square, scale=scale, samples=8)(jnp.ones(2), key=jax.random.key(0))

    assert np.isfinite(value(0.1))
    with pytest.raises(Exception, match="scale must be positive and finite"):
        jax.block_until_ready(value(-0.1))
