"""Soft steps (kinds) and the relaxed comparisons: properties, limits, modes, dtypes, gradients.

Compilation dominates the cost, so every comparison of a kind, in every mode, with its gradients,
is compiled once into :func:`evaluate` (per kind and dtype) and reused by all tests of that kind.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import BINARY_COMPARISONS, assert_exactly_equal
from hypothesis import given, strategies as st

import softflow as sf

ALL_KINDS = pytest.mark.parametrize("kind", sf.KINDS)
ALL_COMPARISONS = (*BINARY_COMPARISONS, sf.between)
# Hard truth of each comparison, written independently with NumPy.
HARD = {
    sf.greater: np.greater,
    sf.greater_equal: np.greater_equal,
    sf.less: np.less,
    sf.less_equal: np.less_equal,
    sf.equal: np.equal,
    sf.not_equal: np.not_equal,
}
BATCH = 16  # every call of ``evaluate`` uses this many points, so it compiles once per dtype
# Ties on purpose (hard greater and greater_equal differ exactly there), then a spread.
TIE_X = np.array([-2, -1, 0, 0, 1, 1.5, 3, 0.25, -4, -3, -0.5, 0.5, 2, 2.5, 4, 6], np.float32)
TIE_Y = np.array([-2, 1, 0, -0.5, 1, 1, 3, 0.25, 0, 0, 0, 0, 0, 0, 0, 1], np.float32)
FINITE = st.floats(-1e3, 1e3, width=32)


def compare(fn, x, y, **options):
    """Call a comparison; ``between`` gets the band [y - 1, y + 1.5] around ``y``."""
    if fn is sf.between:
        return fn(x, y - 1.0, y + 1.5, **options)
    return fn(x, y, **options)


def hard_reference(fn, x, y):
    if fn is sf.between:
        return ((y - 1.0 <= x) & (x <= y + 1.5)).astype(np.float32)
    return HARD[fn](x, y).astype(np.float32)


# Per kind, the comparisons that exercise distinct code of the kind (step, bump, product of
# steps); the logistic kind, which stands for the kind-independent code, runs all of them.
KIND_PROBES = (sf.greater, sf.less, sf.equal, sf.between)


def comparisons_for(kind):
    return ALL_COMPARISONS if kind == "logistic" else KIND_PROBES


@functools.cache
def evaluate(kind):
    """Jitted ``(x, y, tau) -> {(name, mode): (value, (d/dx, d/dy, d/dtau))}``.

    Modes soft and straight_through; the comparisons are elementwise, so the gradient of the sum
    holds the partial derivatives at every point (and the sum of them for the scalar softness).
    """

    def run(x, y, tau):
        results = {}
        for fn in comparisons_for(kind):
            for mode in ("soft", "straight_through"):

                def total(a, b, t, fn=fn, mode=mode):
                    value = compare(fn, a, b, softness=t, kind=kind, mode=mode)
                    return jnp.sum(value), value

                grads, value = jax.grad(total, (0, 1, 2), has_aux=True)(x, y, tau)
                results[fn.__name__, mode] = value, grads
        return results

    return jax.jit(run)


def points(values, dtype=np.float32):
    """``values`` padded with zeros to the batch size (a NumPy array: no dispatch to build it)."""
    values = np.asarray(values, dtype).ravel()
    return np.concatenate([values, np.zeros(BATCH - values.size, dtype)])


# ---------------------------------------------------------------------------------------------
# The soft step of every kind.


@ALL_KINDS
def test_step_centre_slope_symmetry_monotone_onto(kind):
    step = jax.jit(lambda z: sf.sigmoid(z, kind=kind))
    z = jnp.concatenate([jnp.linspace(-50.0, 50.0, 200_001), jnp.logspace(-30, 30, 1001)])
    z = jnp.sort(jnp.concatenate([z, -z]))
    s = np.asarray(step(z))
    assert np.all(np.diff(s) >= 0), "not monotone"
    assert s.min() >= 0 and s.max() <= 1
    with jax.enable_x64(True):
        assert float(step(0.0)) == 0.5
        assert float(jax.grad(step)(0.0)) == pytest.approx(0.25, rel=1e-12)
        z = jnp.linspace(-12.0, 12.0, 2401)
        np.testing.assert_allclose(step(-z), 1 - step(z), rtol=0, atol=4e-16)
        # Onto [0, 1]: the tails approach 0 and 1 (at least like 1/z for the slowest kinds).
        far = jnp.array([1e6, 1e12])
        assert np.all(np.asarray(1 - step(far)) <= 1 / far)
        assert np.all(np.asarray(step(-far)) <= 1 / far)


@ALL_KINDS
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_steps_are_the_float32_step_rounded(kind, dtype):
    # Evaluated in bfloat16, smootherstep decreased between neighbouring inputs.
    z = jnp.concatenate([jnp.linspace(-40.0, 40.0, 40_001), jnp.logspace(-6, 4, 501)])
    z = jnp.sort(jnp.concatenate([z, -z]).astype(dtype))
    s = jax.jit(lambda z: sf.sigmoid(z, kind=kind))(z)
    assert s.dtype == dtype
    assert np.all(np.diff(np.asarray(s, np.float32)) >= 0), "not monotone"
    # the float32 step rounded, up to the last bit (XLA may round the float32 value differently)
    reference = np.asarray(sf.sigmoid(z.astype(jnp.float32), kind=kind), np.float32)
    ulp = np.spacing(np.abs(reference).astype(dtype)).astype(np.float32)
    assert np.all(np.abs(np.asarray(s, np.float32) - reference) <= ulp)


def test_sigmoid_integer_input_and_unknown_kind():
    assert sf.sigmoid(jnp.arange(3), kind="cauchy").dtype == jnp.float32
    with pytest.raises(ValueError, match="kind must be one of 'logistic', 'gaussian'"):
        sf.sigmoid(0.0, kind="tanh")


# ---------------------------------------------------------------------------------------------
# Soft mode: definitions, identities, hypothesis properties, limits, extreme inputs.


@ALL_KINDS
def test_soft_comparisons_follow_their_formulas(kind, x64):
    x, y, tau = points(TIE_X, np.float64), points(TIE_Y, np.float64), 0.7
    results = evaluate(kind)(x, y, tau)

    def soft(name):
        return results[name, "soft"][0]

    def s(z):
        return sf.sigmoid(z, kind=kind)

    np.testing.assert_allclose(soft("greater"), s((x - y) / tau), rtol=1e-15)
    np.testing.assert_allclose(soft("less"), s((y - x) / tau), rtol=1e-15)
    bump = 4 * s((x - y) / tau) * s((y - x) / tau)
    np.testing.assert_allclose(soft("equal"), bump, rtol=1e-14, atol=1e-16)
    band = s((x - (y - 1)) / tau) * s((y + 1.5 - x) / tau)
    np.testing.assert_allclose(soft("between"), band, rtol=1e-14)
    if kind == "logistic":
        # The soft values of the *_equal variants and of not_equal do not depend on the kind.
        assert_exactly_equal(soft("greater_equal"), soft("greater"))
        assert_exactly_equal(soft("less_equal"), soft("less"))
        assert_exactly_equal(soft("not_equal"), 1 - soft("equal"))


@ALL_KINDS
def test_equal_is_a_symmetric_bump(kind):
    d = jnp.linspace(0.0, 30.0, 3001)
    equal = jax.jit(lambda a, b: sf.equal(a, b, softness=0.9, kind=kind))
    e = np.asarray(equal(d, 0.0))
    assert e[0] == 1.0
    assert np.all(np.diff(e) <= 0), "equal must decrease with |x - y|"
    assert_exactly_equal(equal(-d, 0.0), e)
    assert_exactly_equal(equal(0.0, d), e)


@ALL_KINDS
@given(x1=FINITE, x2=FINITE, y=FINITE, tau=st.floats(2**-10, 2**10, width=32))
def test_comparisons_monotone_in_x(kind, x1, x2, y, tau):
    x = points(np.sort([x1, x2]))
    distance = points(np.sort(np.abs(x[:2] - np.float32(y))))
    ys = np.full(BATCH, y, np.float32)
    results = evaluate(kind)(x, ys, tau)
    assert results["greater", "soft"][0][0] <= results["greater", "soft"][0][1]
    assert results["less", "soft"][0][0] >= results["less", "soft"][0][1]
    closeness = evaluate(kind)(ys + distance, ys, tau)["equal", "soft"][0]
    assert closeness[0] >= closeness[1]


@functools.cache
def complement_sums(kind):
    def sums(x, y, tau):
        def soft(fn):
            return fn(x, y, softness=tau, kind=kind)

        return soft(sf.greater) + soft(sf.less_equal), soft(sf.less) + soft(sf.greater_equal)

    return jax.jit(sums)


@ALL_KINDS
@given(x=st.floats(-1e3, 1e3), y=st.floats(-1e3, 1e3), tau=st.floats(1e-3, 1e3))
def test_soft_complements(kind, x, y, tau):
    with jax.enable_x64(True):
        for total in complement_sums(kind)(x, y, tau):
            assert float(total) == pytest.approx(1.0, abs=4e-16)


@ALL_KINDS
def test_extreme_softness_and_differences_stay_finite(kind):
    """float32, softness 1e-6..1e4, differences up to 1e6: values in [0, 1], finite gradients."""
    diffs = points([-1e6, -1e3, -1.0, -1e-3, -1e-6, 0.0, 1e-6, 1e-3, 1.0, 1e3, 1e6, 3e5])
    for tau in (1e-6, 1e-3, 1.0, 1e4):
        for (name, mode), (value, grads) in evaluate(kind)(diffs, jnp.zeros(BATCH), tau).items():
            assert value.dtype == jnp.float32
            assert bool(jnp.all((value >= 0) & (value <= 1))), (name, mode, tau)
            assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads), (name, mode, tau)


@ALL_KINDS
def test_small_softness_tends_to_the_hard_comparison(kind):
    x = points([-2.0, -0.3, -0.01, 0.02, 0.5, 4.0, 7.0, -9.0])[:8]  # no ties with y = 0
    x = jnp.concatenate([x, x + 0.5])  # a second block whose band [-1, 1.5] edges are 0.5 away
    for fn in comparisons_for(kind):
        hard = hard_reference(fn, np.asarray(x), np.float32(0.0))
        errors = [
            float(
                jnp.max(
                    jnp.abs(evaluate(kind)(x, jnp.zeros(BATCH), tau)[fn.__name__, "soft"][0] - hard)
                )
            )
            for tau in (1e-1, 1e-3, 1e-5, 1e-7)
        ]
        assert errors == sorted(errors, reverse=True), (fn.__name__, errors)
        assert errors[-1] < 1e-4, (fn.__name__, errors)


# ---------------------------------------------------------------------------------------------
# Modes.


@pytest.mark.parametrize("fn", ALL_COMPARISONS)
def test_hard_mode_is_the_exact_indicator_with_zero_gradient(fn):
    def total(x, y, tau):
        value = compare(fn, x, y, softness=tau, kind="gaussian", mode="hard")
        return jnp.sum(value), value

    grads, value = jax.grad(total, (0, 1, 2), has_aux=True)(TIE_X, TIE_Y, 0.5)
    assert_exactly_equal(value, jnp.asarray(hard_reference(fn, TIE_X, TIE_Y)))
    assert all(not np.any(np.asarray(g)) for g in grads)


def test_hard_greater_and_greater_equal_differ_exactly_at_ties():
    ties = TIE_X == TIE_Y
    for strict, loose in ((sf.greater, sf.greater_equal), (sf.less, sf.less_equal)):
        differ = strict(TIE_X, TIE_Y, mode="hard") != loose(TIE_X, TIE_Y, mode="hard")
        np.testing.assert_array_equal(differ, ties)
    np.testing.assert_array_equal(sf.equal(TIE_X, TIE_Y, mode="hard"), ties)


@ALL_KINDS
def test_straight_through_forward_is_hard_and_gradient_is_soft(kind):
    for x, y in (
        (TIE_X, TIE_Y),
        (np.linspace(-4, 4, BATCH, dtype=np.float32), np.full(BATCH, 0.25, np.float32)),
    ):
        results = evaluate(kind)(x, y, 0.8)
        for fn in comparisons_for(kind):
            value, grads = results[fn.__name__, "straight_through"]
            assert_exactly_equal(value, jnp.asarray(hard_reference(fn, x, y)))
            assert_exactly_equal(grads, results[fn.__name__, "soft"][1])
    eager = sf.equal(TIE_X, TIE_Y, softness=0.8, kind=kind, mode="straight_through")
    assert_exactly_equal(eager, sf.equal(TIE_X, TIE_Y, mode="hard"))


# Differences over softness 0.7 avoid the kinks of the piecewise kinds (|z| = 1, 3, 3.75) and
# ties, where central differences of a C1 function are only O(step) accurate.
FD_X = [-2.9, -1.3, -0.45, 0.2, 0.9, 1.6, 3.3, -0.05, 0.6, 2.3, -2.2, 5.1, -4.1, 1.1, 0.35, -0.8]


@ALL_KINDS
def test_gradients_match_finite_differences(kind, x64):
    """Soft and straight-through gradients equal central differences of the soft value."""
    x, y, tau, step = points(FD_X, np.float64), jnp.zeros(BATCH, np.float64), 0.7, 1e-6
    run = evaluate(kind)
    results = run(x, y, tau)
    moved = [
        (run(x + step, y, tau), run(x - step, y, tau)),
        (run(x, y + step, tau), run(x, y - step, tau)),
        (run(x, y, tau + step), run(x, y, tau - step)),
    ]
    for fn in comparisons_for(kind):
        key = fn.__name__, "soft"
        for i, (up, down) in enumerate(moved):
            expected = (up[key][0] - down[key][0]) / (2 * step)
            if i == 2:  # the softness is one scalar: its gradient is the sum over the points
                expected = jnp.sum(expected)
            for mode in ("soft", "straight_through"):
                grad = results[fn.__name__, mode][1][i]
                np.testing.assert_allclose(
                    grad, expected, rtol=1e-6, atol=1e-8, err_msg=f"{key} {mode} {i}"
                )


# ---------------------------------------------------------------------------------------------
# Traced softness and JAX transformations.


def test_traced_softness_compiles_once():
    traces = []

    @jax.jit
    def f(x, tau):
        traces.append(None)  # runs once per trace, never when the compiled code is reused
        return sf.greater(x, 0.0, softness=tau)

    x = jnp.linspace(-1, 1, 5)
    values = [f(x, tau) for tau in (0.1, 0.5, 2.0)]
    assert len(traces) == 1 and f._cache_size() == 1
    for tau, value in zip((0.1, 0.5, 2.0), values, strict=True):
        np.testing.assert_allclose(value, jax.nn.sigmoid(x / tau), rtol=1e-6, atol=1e-7)


def test_transformations_agree(x64):
    def f(x, tau):
        return sf.between(x, -0.5, 1.0, softness=tau) * sf.greater(
            x, 0.2, softness=tau, kind="cauchy"
        )

    xs = jnp.linspace(-2.0, 2.5, 7)
    taus = jnp.array([0.3, 0.9, 2.0])
    dfdx = jax.jit(jax.grad(f))
    looped = np.array([[float(dfdx(x, t)) for x in xs] for t in taus])
    nested = jax.jit(jax.vmap(jax.vmap(jax.grad(f), (0, None)), (None, 0)))(xs, taus)
    np.testing.assert_allclose(nested, looped, rtol=1e-13)
    # vmap over a traced softness equals the loop over softness values.
    f_jit = jax.jit(f)
    per_softness = jax.jit(jax.vmap(f, (None, 0)))(xs, taus)
    np.testing.assert_allclose(per_softness, [f_jit(xs, t) for t in taus], rtol=1e-13)

    def g(v):  # v = (x, tau)
        return f(v[0], v[1])

    point = jnp.array([0.4, 0.7])
    gradient = jax.jit(jax.grad(g))
    np.testing.assert_allclose(jax.jit(jax.jacfwd(g))(point), gradient(point), rtol=1e-13)
    hessian = jax.jit(jax.hessian(g))(point)
    np.testing.assert_allclose(hessian, jax.jit(jax.jacrev(jax.jacfwd(g)))(point), rtol=1e-12)
    np.testing.assert_allclose(hessian, hessian.T, rtol=1e-12)
    step = 1e-6
    fd_hessian = np.stack(
        [(gradient(point + step * e) - gradient(point - step * e)) / (2 * step) for e in np.eye(2)]
    )
    np.testing.assert_allclose(hessian, fd_hessian, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# Dtypes.


def output_dtype(fn, *args, **options):
    """The dtype a call returns, found by tracing only (dtypes are fixed at trace time)."""
    return jax.eval_shape(lambda *a: compare(fn, *a, **options), *args).dtype


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_output_dtype_follows_inputs(dtype):
    x, y = jnp.linspace(-1, 1, 4, dtype=dtype), dtype(0.25)
    assert sf.equal(x, y, kind="gaussian", softness=jnp.float32(0.5)).dtype == dtype  # run once
    # Every comparison in every mode, and every kind (the only kind-dependent code) in soft mode.
    cases = [(fn, "logistic", mode) for fn in ALL_COMPARISONS for mode in sf.MODES]
    cases += [(fn, kind, "soft") for fn in KIND_PROBES for kind in sf.KINDS]
    for fn, kind, mode in cases:
        # A float32 softness must not promote a low-precision program.
        options = {"softness": jnp.float32(0.5), "kind": kind, "mode": mode}
        assert output_dtype(fn, x, y, **options) == dtype, (kind, mode, fn)


def test_output_dtype_float64_under_x64_and_integers_give_default_float():
    counts = jnp.arange(6)  # e.g. numbers of live neighbours
    for fn in ALL_COMPARISONS:
        for mode in sf.MODES:
            assert output_dtype(fn, counts, 2, mode=mode) == jnp.float32
            with jax.enable_x64(True):
                assert output_dtype(fn, jnp.arange(6), 2, mode=mode) == jnp.float64
                x = jnp.linspace(0, 1, 3)
                assert output_dtype(fn, x, 0.5, mode=mode, kind="gaussian") == jnp.float64
    with jax.enable_x64(True):
        assert sf.greater(jnp.arange(6), 2).dtype == jnp.float64  # run once
    # Integer inputs are compared exactly in hard mode (3 > 2 but not 2 > 2).
    np.testing.assert_array_equal(sf.greater(counts, 2, mode="hard"), counts > 2)


# ---------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("softness", [0.0, -0.5, np.array([0.3, -1.0]), float("nan"), float("inf")])
def test_nonpositive_softness_is_rejected(softness):
    for fn in ALL_COMPARISONS:
        with pytest.raises(ValueError, match="softness") as info:
            compare(fn, 1.0, 0.0, softness=softness)
        assert repr(softness) in str(info.value)


def test_bool_softness_is_rejected():
    with pytest.raises(TypeError, match="softness"):
        sf.greater(1.0, 0.0, softness=True)


@pytest.mark.parametrize(("argument", "choices"), [("kind", sf.KINDS), ("mode", sf.MODES)])
def test_unknown_choice_lists_the_valid_ones(argument, choices):
    for fn in ALL_COMPARISONS:
        with pytest.raises(ValueError, match=argument) as info:
            compare(fn, 1.0, 0.0, **{argument: "fuzzy"})
        assert "'fuzzy'" in str(info.value)
        assert all(repr(choice) in str(info.value) for choice in choices)


def test_complex_inputs_are_rejected():
    with pytest.raises(TypeError, match="real"):
        sf.greater(1j, 0.0)


# --- Hostile inputs: each of these once gave a silent wrong answer or an unhelpful error. ---


@pytest.mark.parametrize("mode", ["hard", "straight_through"])
def test_integers_compare_exactly(mode):
    """2**24 + 1 and 2**24 are the same float32: the exact modes must compare the integers."""
    big, bigger = jnp.int32(2**24), jnp.int32(2**24 + 1)
    for fn in BINARY_COMPARISONS:
        value = fn(bigger, big, mode=mode)
        assert value.dtype == jnp.float32
        assert value == float(HARD[fn](np.int64(2**24 + 1), np.int64(2**24))), fn.__name__
    assert sf.between(bigger, big, big, mode=mode) == 0.0
    # Mixed integer and float arguments promote as jnp.greater does.
    assert sf.greater(bigger, 16777216.0, mode=mode) == float(jnp.greater(bigger, 16777216.0))


def test_int64_compare_exactly_under_x64(x64):
    big = jnp.int64(2**53)
    assert sf.greater(big + 1, big, mode="hard") == 1.0
    assert sf.equal(big + 1, big, mode="straight_through") == 0.0


BAD_SOFTNESS = (-1.0, 0.0, float("nan"), float("inf"))


@pytest.mark.parametrize("mode", sf.MODES)
def test_traced_bad_softness_raises_at_run_time(mode):
    jitted = jax.jit(lambda s: sf.greater(1.0, 0.0, softness=s, mode=mode))
    np.testing.assert_allclose(jitted(0.5), sf.greater(1.0, 0.0, softness=0.5, mode=mode))
    for softness in BAD_SOFTNESS:
        with pytest.raises(Exception, match="softness must be positive and finite"):
            jax.block_until_ready(jitted(softness))


def test_traced_bad_softness_raises_under_vmap_and_grad():
    def f(s):
        return sf.equal(0.0, 0.0, softness=s)  # a tie: softness 0 gave NaN here

    with pytest.raises(Exception, match="softness must be positive"):
        jax.block_until_ready(jax.vmap(f)(jnp.array([0.5, 0.0])))
    with pytest.raises(Exception, match="softness must be positive"):
        jax.block_until_ready(jax.jit(jax.grad(f))(-1.0))
    with pytest.raises(Exception, match="softness must be positive"):
        jax.block_until_ready(eqx.filter_jit(eqx.filter_grad(f))(jnp.float32(0.0)))


@pytest.mark.parametrize(
    ("softness", "dtype"),
    [(1e-50, jnp.float32), (1e-40, jnp.float32), (1e-5, jnp.float16), (1e300, jnp.float32)],
)
def test_softness_that_rounds_to_zero_or_inf_in_the_input_dtype_is_rejected(softness, dtype):
    zero = jnp.zeros((), dtype)
    with pytest.raises(ValueError, match=r"softness.*rounds to 0, a subnormal number or inf"):
        sf.greater(zero, zero, softness=softness)
    if dtype == jnp.float16:  # a traced float32 softness that underflows in float16
        traced = jax.jit(lambda s: sf.greater(zero, zero, softness=s))
        with pytest.raises(Exception, match="softness must be positive"):
            jax.block_until_ready(traced(jnp.float32(softness)))


@ALL_KINDS
def test_softness_gradient_is_finite_at_infinite_differences(kind):
    def total(tau):
        return (
            sf.between(0.5, -jnp.inf, 1.0, softness=tau, kind=kind)
            + sf.greater(jnp.inf, 1.0, softness=tau, kind=kind)
            + sf.less(-jnp.inf, 1.0, softness=tau, kind=kind)
            + sf.equal(jnp.inf, 1.0, softness=tau, kind=kind)
        )

    value, grad = jax.value_and_grad(total)(0.1)
    expected_value = sf.between(0.5, -1e30, 1.0, softness=0.1, kind=kind) + 2.0
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    assert np.isfinite(grad)
    np.testing.assert_allclose(
        grad, jax.grad(lambda t: sf.between(0.5, -1e30, 1.0, softness=t, kind=kind))(0.1), 1e-6
    )


@pytest.mark.parametrize("fn", ALL_COMPARISONS)
def test_straight_through_forward_is_hard_even_where_soft_is_nan(fn):
    inf, nan = jnp.inf, jnp.nan
    x = jnp.array([inf, -inf, inf, nan, 1.0, nan])
    y = jnp.array([inf, -inf, -inf, 1.0, nan, nan])
    for kind in ("logistic", "smoothstep"):
        forward = compare(fn, x, y, mode="straight_through", kind=kind)
        assert_exactly_equal(forward, compare(fn, x, y, mode="hard"))


def test_complex_and_non_array_inputs_are_rejected_by_name():
    cases = [
        (lambda: sf.sigmoid(1 + 5j), "z"),
        (lambda: sf.logical_not(0.25 + 1j), "p"),
        (lambda: sf.logical_and(0.5, jnp.array([1j])), "q"),
        (lambda: sf.any(jnp.array([0.5 + 0j])), "p"),
        (lambda: sf.greater(jnp.array([1 + 1j]), 0.0), "x"),
        (lambda: sf.between(0.0, "a", 1.0), "lo"),
        (lambda: sf.equal(0.0, None), "y"),
        (lambda: sf.less([1.0, 2.0], 0.0), "x"),
        (lambda: sf.greater(1.0, 0.0, softness="0.5"), "softness"),
        (lambda: sf.greater(1.0, 0.0, softness=1j), "softness"),
    ]
    for call, name in cases:
        with pytest.raises(TypeError, match=f"^{name} must be a real"):
            call()


@pytest.mark.parametrize("mode", sf.MODES)
def test_softness_is_validated_the_same_way_in_every_mode(mode):
    with pytest.raises(ValueError, match=r"softness of shape \(3,\).*shape \(2,\)"):
        sf.greater(jnp.ones(2), 0.0, softness=jnp.ones(3), mode=mode)
    with pytest.raises(ValueError, match="softness must be positive"):
        sf.greater(1.0, 0.0, softness=-1.0, mode=mode)
    # A softness with more dimensions broadcasts the result the same way in every mode.
    assert sf.greater(jnp.ones(2), 0.0, softness=jnp.ones((3, 1)), mode=mode).shape == (3, 2)


def test_arguments_that_do_not_broadcast_are_named():
    with pytest.raises(ValueError, match=r"x \(2,\), y \(3,\)"):
        sf.greater(jnp.ones(2), jnp.ones(3))


@ALL_KINDS
def test_equal_infinities_are_ties(kind):
    # inf - inf is NaN; two equal infinities compare as a tie does (as in sf.sort and sf.argmax).
    inf = jnp.inf
    x = jnp.array([inf, -inf, inf, 1.0])
    y = jnp.array([inf, -inf, -inf, 1.0])  # the last pair: a finite tie, for reference

    @jax.jit
    def comparisons(x, y, tau):
        def values(x):
            options = {"softness": tau, "kind": kind}
            return [fn(x, y, **options) for fn in BINARY_COMPARISONS] + [
                sf.between(x, y, y, **options)
            ]

        return values(x), jax.grad(lambda x: sum(jnp.sum(v) for v in values(x)))(x)

    values, gradient = comparisons(x, y, 0.5)
    hard = [fn(x, y, mode="hard") for fn in BINARY_COMPARISONS] + [sf.between(x, y, y, mode="hard")]
    for value, exact in zip(values, hard, strict=True):
        np.testing.assert_allclose(value[:2], [value[3], value[3]], rtol=1e-6)
        assert value[2] == exact[2]  # inf against -inf: saturated, the hard value
    assert np.all(np.isfinite(gradient))
