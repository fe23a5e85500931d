"""Soft logic: t-norms agree with Boolean logic, obey De Morgan, and keep dtypes."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_grad_matches_finite_differences
from hypothesis import given, strategies as st

import softflow as sf

ALL_TNORMS = pytest.mark.parametrize("tnorm", sf.TNORMS)
TRUTH = st.floats(0.0, 1.0, allow_subnormal=False)  # XLA on CPU flushes subnormals to 0
TRUTH_VECTORS = st.lists(TRUTH, min_size=4, max_size=4)


@ALL_TNORMS
def test_agrees_with_boolean_logic(tnorm):
    for p, q in itertools.product([False, True], repeat=2):
        pf, qf = jnp.float32(p), jnp.float32(q)
        assert float(sf.logical_and(pf, qf, tnorm=tnorm)) == float(p and q)
        assert float(sf.logical_or(pf, qf, tnorm=tnorm)) == float(p or q)
        assert float(sf.logical_xor(pf, qf, tnorm=tnorm)) == float(p != q)
        assert float(sf.logical_and(p, q, tnorm=tnorm)) == float(p and q)  # bools are accepted
    assert float(sf.logical_not(True)) == 0.0 and float(sf.logical_not(0.0)) == 1.0
    for bits in itertools.product([0.0, 1.0], repeat=3):
        assert float(sf.all(jnp.array(bits), tnorm=tnorm)) == float(all(bits))
        assert float(sf.any(jnp.array(bits), tnorm=tnorm)) == float(any(bits))


def reference_and(p, q, tnorm):
    """The t-norms written out independently, in float64 NumPy."""
    return {"product": p * q, "godel": min(p, q), "lukasiewicz": max(0.0, p + q - 1)}[tnorm]


def reference_or(p, q, tnorm):
    return {"product": p + q - p * q, "godel": max(p, q), "lukasiewicz": min(1.0, p + q)}[tnorm]


@ALL_TNORMS
@given(p=TRUTH, q=TRUTH)
def test_de_morgan_and_definitions(tnorm, p, q):
    with jax.enable_x64(True):
        both = float(sf.logical_and(p, q, tnorm=tnorm))
        either = float(sf.logical_or(p, q, tnorm=tnorm))
        assert both == pytest.approx(reference_and(p, q, tnorm), abs=1e-15)
        assert either == pytest.approx(reference_or(p, q, tnorm), abs=1e-15)
        # Bounded by the Godel t-norm and t-conorm (up to the rounding of p + q - 1).
        assert 0 <= both <= min(p, q) + 1e-15 and max(p, q) - 1e-15 <= either <= 1
        assert both == float(sf.logical_and(q, p, tnorm=tnorm))  # commutative
        # De Morgan with logical_not(p) = 1 - p.
        dual_or = sf.logical_not(sf.logical_and(1 - p, 1 - q, tnorm=tnorm))
        dual_and = sf.logical_not(sf.logical_or(1 - p, 1 - q, tnorm=tnorm))
        assert float(dual_or) == pytest.approx(either, abs=1e-15)
        assert float(dual_and) == pytest.approx(both, abs=1e-15)
        # xor is "p and not q, or not p and q"; for the product t-norm the two events are disjoint.
        xor = float(sf.logical_xor(p, q, tnorm=tnorm))
        if tnorm == "product":
            expected = p * (1 - q) + (1 - p) * q
        else:
            expected = reference_or(
                reference_and(p, 1 - q, tnorm), reference_and(1 - p, q, tnorm), tnorm
            )
        assert xor == pytest.approx(expected, abs=1e-15)


@ALL_TNORMS
@given(values=TRUTH_VECTORS)
def test_all_any_fold_the_binary_connectives(tnorm, values):
    with jax.enable_x64(True):
        p = jnp.array(values)
        folded_and, folded_or = 1.0, 0.0
        for v in values:
            folded_and = reference_and(folded_and, v, tnorm)
            folded_or = reference_or(folded_or, v, tnorm)
        conjunction = float(sf.all(p, tnorm=tnorm))
        disjunction = float(sf.any(p, tnorm=tnorm))
        assert conjunction == pytest.approx(folded_and, abs=1e-15)
        assert disjunction == pytest.approx(folded_or, abs=1e-15)
        # De Morgan over an axis.
        assert float(sf.logical_not(sf.any(1 - p, tnorm=tnorm))) == pytest.approx(
            conjunction, abs=1e-15
        )
        assert float(sf.logical_not(sf.all(1 - p, tnorm=tnorm))) == pytest.approx(
            disjunction, abs=1e-15
        )


@ALL_TNORMS
def test_reductions_axis_keepdims_and_empty(tnorm):
    p = jnp.array([[1.0, 0.5, 0.0], [1.0, 1.0, 0.25]])
    assert sf.all(p, axis=1, tnorm=tnorm).shape == (2,)
    assert sf.any(p, axis=0, keepdims=True, tnorm=tnorm).shape == (1, 3)
    np.testing.assert_allclose(
        sf.all(p, axis=0, tnorm=tnorm),
        [reference_and(a, b, tnorm) for a, b in zip(*np.asarray(p), strict=True)],
        rtol=1e-7,
    )
    assert float(sf.all(jnp.zeros(0), tnorm=tnorm)) == 1.0
    assert float(sf.any(jnp.zeros(0), tnorm=tnorm)) == 0.0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtype_follows_inputs(dtype):
    p = jnp.array([0.25, 0.5], dtype)
    for tnorm in sf.TNORMS:
        for fn in (sf.logical_and, sf.logical_or, sf.logical_xor):
            assert fn(p, 0.5, tnorm=tnorm).dtype == dtype
        assert sf.all(p, tnorm=tnorm).dtype == dtype and sf.any(p, tnorm=tnorm).dtype == dtype
    assert sf.logical_not(p).dtype == dtype
    assert sf.logical_and(jnp.array([True]), jnp.array([1])).dtype == jnp.float32
    with jax.enable_x64(True):
        assert sf.logical_or(jnp.array([0.5]), 0.5).dtype == jnp.float64
        assert sf.any(jnp.array([True, False])).dtype == jnp.float64


def test_unknown_tnorm_lists_the_valid_ones():
    for fn in (sf.logical_and, sf.logical_or, sf.logical_xor):
        with pytest.raises(ValueError, match="tnorm") as info:
            fn(0.5, 0.5, tnorm="hamacher")
        assert all(repr(t) in str(info.value) for t in sf.TNORMS)
    for fn in (sf.all, sf.any):
        with pytest.raises(ValueError, match="'product', 'godel', 'lukasiewicz'"):
            fn(jnp.ones(2), tnorm="max")


@ALL_TNORMS
def test_gradients_match_finite_differences(tnorm, x64):
    # Points away from the kinks of min/max (p = q) and of the Lukasiewicz clipping (p + q = 1).
    p = np.array([0.1, 0.3, 0.7, 0.85, 0.55])
    q = np.array([0.6, 0.9, 0.2, 0.4, 0.15])
    for fn in (sf.logical_and, sf.logical_or, sf.logical_xor):
        assert_grad_matches_finite_differences(lambda a, b, fn=fn: fn(a, b, tnorm=tnorm), (p, q))
    for fn in (sf.all, sf.any):
        assert_grad_matches_finite_differences(
            lambda a, b, fn=fn: fn(jnp.stack([a, b]), tnorm=tnorm), (p, q)
        )


def test_product_any_keeps_small_truth_values_and_the_product_derivative(x64):
    # 1 - prod(1 - p) lost every truth value below epsilon: any([1e-10]) was 0 in float32.
    tiny = jnp.array([1e-10, 3e-9, 0.0], jnp.float32)
    np.testing.assert_allclose(sf.any(tiny), 3.1e-9, rtol=1e-6)
    p = np.random.default_rng(0).uniform(size=(4, 6))
    np.testing.assert_allclose(sf.any(p, axis=1), 1 - np.prod(1 - p, axis=1), rtol=1e-13)
    assert float(sf.any(jnp.array([0.3, 1.0]))) == 1.0
    assert float(sf.any(jnp.zeros(3))) == 0.0 and not np.signbit(sf.any(jnp.zeros(3)))
    # Where one value is 1, the derivative in it is the product of the others' complements.
    certain = jnp.array([0.2, 1.0, 0.5])
    np.testing.assert_allclose(jax.grad(sf.any)(certain), [0.0, 0.4, 0.0], atol=1e-15)


def test_truth_values_outside_the_unit_interval_are_refused():
    # They were used as they are: logical_and(2.0, 0.5) was 1.0, all([3, 2]) 6.0.
    with pytest.raises(ValueError, match=r"p must hold truth values .* in \[0, 1\]"):
        sf.logical_and(2.0, 0.5)
    with pytest.raises(ValueError, match="q must hold truth values"):
        sf.logical_or(0.5, -1.0, tnorm="lukasiewicz")
    with pytest.raises(ValueError, match="p must hold truth values"):
        sf.all(jnp.asarray([3.0, 2.0]))
    assert float(sf.logical_and(1.0, 0.0)) == 0.0  # the ends of the interval are truth values
    # Integers too (logical_not(5) was -4.0, all([2, 3]) 6.0); 0 and 1 are truth values.
    with pytest.raises(ValueError, match=r"p must hold truth values .* from 5.0 to 5.0"):
        sf.logical_not(5)
    with pytest.raises(ValueError, match=r"p must hold truth values .* from 0.0 to 7.0"):
        sf.any(jnp.array([0, 7]))  # (the message names p's values, not 1 - p's)
    assert float(sf.logical_and(jnp.int32(1), jnp.int32(1))) == 1.0


def test_godel_and_lukasiewicz_any_are_their_formulas_exactly():
    # Computed as 1 - all(1 - p), they lost what 1 - p rounds away: any([1e-10]) was 0.
    p = jnp.array([1e-10, 0.1, 3e-8], jnp.float32)
    assert sf.any(p, tnorm="godel") == jnp.max(p)
    assert sf.any(p[:1], tnorm="godel") == p[0]
    assert sf.any(p, tnorm="lukasiewicz") == jnp.minimum(1, jnp.sum(p))
    assert sf.any(jnp.array([0.7, 0.6]), tnorm="lukasiewicz") == 1.0
