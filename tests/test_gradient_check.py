"""sf.gradient_check: the estimators of one program measured against the smoothed gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from scipy import stats

import softflow as sf

X = jnp.array([0.3, -0.6])
SCALE = 0.5


def steps(x):
    """A staircase in each coordinate: jax.grad is zero, the smoothed gradient is not."""
    return jnp.sum(jnp.where(x > 0, 1.0, 0.0) * jnp.array([1.0, 3.0]))


def smoothed_truth(x):
    return np.array([1.0, 3.0]) * stats.norm.pdf(np.asarray(x) / SCALE) / SCALE


@pytest.fixture(scope="module")
def check():
    relaxed = jax.jit(jax.grad(sf.relax(steps, softness=0.2)))
    return sf.gradient_check(
        steps,
        X,
        key=jax.random.key(0),
        scale=SCALE,
        samples=(8, 32, 128),
        estimators=("antithetic", "score", "pathwise"),
        reference_samples=4096,
        repeats=16,
        relax_options={"softness": 0.2},
        gradients={"relaxed, by hand": relaxed},
        timing_calls=1,
    )


def test_rows_and_their_numbers(check):
    names = [row.name for row in check.rows]
    assert names == [
        "exact program (jax.grad)",
        "relaxed (sf.relax)",
        "straight-through (sf.relax)",
        "relaxed, by hand",
        *(f"{e}, N={n}" for e in ("antithetic", "score", "pathwise") for n in (8, 32, 128)),
    ]
    for row in check.rows:
        assert row.failure is None, row
        assert -1 <= row.cosine <= 1 and row.variance >= 0 and row.rms_error >= 0
        assert row.seconds > 0 and row.cost == pytest.approx(row.seconds / check.exact_seconds)
    # jax.grad of a staircase is zero: no direction, cosine 0, error the whole reference.
    exact = check.row("exact")
    assert exact.cosine == 0.0 and exact.rms_error == pytest.approx(1.0)
    # The relaxed rows from relax_options and from the gradient given by hand agree.
    assert check.row("relaxed (sf.relax)").cosine == pytest.approx(
        check.row("relaxed, by hand").cosine, abs=1e-6
    )
    # Deterministic rows have no spread; a smoothed estimate's spread falls as 1 / N.
    assert check.row("relaxed (sf.relax)").variance == 0
    variances = [check.row(f"antithetic, N={n}").variance for n in (8, 32, 128)]
    assert variances[0] > 2 * variances[1] > 4 * variances[2]
    # The pathwise estimator differentiates the staircase: zero, as jax.grad.
    assert check.row("pathwise, N=128").cosine == 0.0
    # To second order, 1 - cosine is half the noise across the reference, relative to its size:
    # at most half the relative variance on average.
    for n in (8, 32, 128):
        row = check.row(f"antithetic, N={n}")
        assert row.cosine > 1 - row.variance
    assert check.row("antithetic, N=128").evaluations == 128


def test_the_reference_is_the_smoothed_gradient(check):
    truth = smoothed_truth(X)
    error = np.linalg.norm(np.asarray(check.reference) - truth) / np.linalg.norm(truth)
    assert check.reference_samples == 4096
    assert 0 < check.reference_error < 0.1
    assert error < 4 * check.reference_error  # the reported standard error is honest


def test_the_smoothed_gradient_is_returned_for_reuse(check):
    gradient = check.smoothed["antithetic"]
    draws = np.stack([gradient(X, key=jax.random.key(i)) for i in range(200)])
    assert draws.shape == (200, 2)
    z = (draws.mean(axis=0) - smoothed_truth(X)) / (draws.std(axis=0) / np.sqrt(200))
    assert np.all(np.abs(z) < 3.5)
    assert set(check.smoothed) == {"antithetic", "score", "pathwise"}


def test_the_table_prints_every_row(check):
    table = str(check)
    assert table.startswith("gradient check at scale 0.5")
    for row in check.rows:
        assert row.name in table
    assert "cosine" in table and "variance" in table


def test_a_program_relax_refuses_gets_a_row_with_the_reason():
    def hashed(x):
        bits = lax.bitcast_convert_type(x, jnp.uint32)
        return jnp.sum((bits >> 20).astype(jnp.float32) + x**2)

    check = sf.gradient_check(
        hashed,
        X,
        key=jax.random.key(1),
        scale=0.1,
        samples=(8,),
        reference_samples=64,
        repeats=2,
        relax_options={"softness": 0.1},
        argnums=(0,),
        timing_calls=1,
    )
    for name in ("relaxed (sf.relax)", "straight-through (sf.relax)"):
        row = check.row(name)
        assert "bitcast_convert_type" in row.failure and np.isnan(row.cosine)
        assert name in str(check) and "fails" in str(check)
    assert check.row("antithetic, N=8").failure is None
    assert isinstance(check.reference, tuple) and check.reference[0].shape == (2,)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"samples": (8, 12)}, ValueError, "multiples of the smallest"),
        ({"samples": (3, 6)}, ValueError, "smallest of samples must be even"),
        ({"samples": 8}, TypeError, "samples must be a non-empty sequence"),
        ({"estimators": "antithetic"}, TypeError, "estimators must be a non-empty sequence"),
        ({"estimators": ("central",)}, ValueError, "estimators must be one of"),
        ({"repeats": 1}, ValueError, "repeats must be an int"),
        ({"argnums": 1}, ValueError, "refers to positional argument 1"),
        ({"gradients": {"g": 3}}, TypeError, "gradients must map names"),
    ],
)
def test_bad_arguments_are_named(options, error, match):
    with pytest.raises(error, match=match):
        sf.gradient_check(steps, X, key=jax.random.key(0), scale=0.1, **options)


def test_a_program_must_return_a_scalar():
    with pytest.raises(ValueError, match="must return a scalar"):
        sf.gradient_check(lambda x: x, X, key=jax.random.key(0), scale=0.1)
