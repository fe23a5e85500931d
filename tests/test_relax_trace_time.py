"""The NumPy evaluation of values known at trace time is jax's evaluation, bit for bit.

Relax evaluates primitives on the candidates of relaxed integers at trace time; ``_trace_time``
does it with NumPy where NumPy's result is XLA's exactly, and hands everything else back to jax.
Each case here is evaluated both ways, on random and extreme values (integer overflow, NaN,
infinities, -0.0, subnormals), vmapped over a candidate axis as relax does.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from softflow._program import _trace_time

_RNG = np.random.default_rng(0)
_I32 = np.iinfo(np.int32)
_INTS = np.concatenate(
    [_RNG.integers(-50, 50, 20), [0, 1, -1, _I32.max, _I32.min, _I32.max - 1]]
).astype(np.int32)
_FLOATS = np.array(
    [0.0, -0.0, 1.5, -2.25, np.nan, np.inf, -np.inf, 1e-30, 3.0, 3.0, -7.0, 1e30], np.float32
)
_SUBNORMAL = np.array([1e-45, -1e-45, 0.0, 1.0], np.float32)

CASES = {
    "integer arithmetic": (
        lambda a, b: (a + b, a - b, a * b, -a, jnp.maximum(a, b)),
        (_INTS, _INTS[::-1]),
    ),
    "bitwise and abs": (
        lambda a, b: (a & b, a | b, a ^ b, ~a, jnp.abs(a), jnp.sign(a)),
        (_INTS, _INTS[::-1]),
    ),
    "comparisons of ints": (
        lambda a, b: (a < b, a <= b, a == b, a != b, a > b, a >= b),
        (_INTS, _INTS[::-1]),
    ),
    "comparisons of floats": (
        lambda a, b: (a < b, a == b, a != b, a >= b),
        (_FLOATS, _FLOATS[::-1]),
    ),
    "select and clip": (
        lambda a, b: (jnp.where(a > b, a, b), jnp.clip(a, -3, 7), lax.clamp(-2, a, 9)),
        (_INTS, _INTS[::-1]),
    ),
    "conversions": (
        lambda a, b: (
            a.astype(jnp.int8),
            a.astype(bool),
            (a > b).astype(jnp.int32),
            jnp.clip(a, -1000, 1000).astype(jnp.float32),
        ),
        (_INTS, _INTS[::-1]),
    ),
    "moves": (
        lambda a, b: (
            jnp.concatenate([a[:3], b[::-1]]),
            jnp.reshape(a, (2, -1)).T,
            jnp.broadcast_to(a, (3, a.size)),
            a[2:9:3],
            jnp.flip(b),
        ),
        (_INTS, _INTS[::-1]),
    ),
    "reductions": (
        lambda a, b: (jnp.sum(a), jnp.max(b), jnp.any(a > b), jnp.all(a > b), jnp.argmax(a)),
        (_INTS, _INTS[::-1]),
    ),
    "iota": (
        lambda a, b: (
            a + jnp.arange(a.size, dtype=a.dtype),
            lax.broadcasted_iota(jnp.int32, (2, 3), 1),
        ),
        (_INTS, _INTS[::-1]),
    ),
    "floats to integers": (
        lambda a, b: (a.astype(jnp.int32), b.astype(jnp.int8), b.astype(jnp.int16)),
        (
            np.array([2.7, -2.7, 0.5, -0.5, -0.0, 1e6, -1e6, 127.9, 255.5], np.float32),
            np.array([1.0, -128.9, 127.99, 0.0, 3.5, -3.5, 100.0, -100.0, 0.2], np.float32),
        ),
    ),
    "NaN to an integer goes to jax": (
        lambda a, b: (lax.convert_element_type(a, jnp.int32),),
        (_FLOATS, _FLOATS),
    ),
    "float arithmetic goes to jax": (lambda a, b: (a * b + 1.0, a / 3.0), (_FLOATS, _FLOATS[::-1])),
    "subnormal comparisons go to jax": (
        lambda a, b: (a > 0, a < b),
        (_SUBNORMAL, _SUBNORMAL[::-1]),
    ),
    "integer division": (
        lambda a, b: (a // 7, a % 7, lax.div(a, 3), lax.rem(a, 5), a % (jnp.abs(b) % 5 + 1)),
        (_INTS, _INTS[::-1]),
    ),
    "division by zero goes to jax": (lambda a, b: (lax.rem(a, b * 0),), (_INTS, _INTS)),
    "gathers": (
        lambda a, b: (
            a[jnp.clip(b, 0, a.size - 1)],
            a[b % a.size],
            jnp.take(a, b, mode="clip"),
            jnp.reshape(a, (2, -1))[b[:4] % 2, b[4:8] % 13],
            jnp.reshape(a, (2, -1))[:, b[0] % 13],
            lax.dynamic_slice(a, (b[0] % 30,), (4,)),
            jnp.take_along_axis(
                jnp.reshape(a, (2, -1)), jnp.reshape(b % 13, (2, -1)), axis=1, mode="clip"
            ),
        ),
        (_INTS, _INTS[::-1]),
    ),
    "a gather of floats": (
        lambda a, b: (
            a[jnp.asarray([3, 0, 11, 5])],
            jnp.take(a, jnp.asarray([2, 40]), mode="clip"),
        ),
        (_FLOATS, _FLOATS),
    ),
    "a gather that fills goes to jax": (
        lambda a, b: (jnp.take(a, b, mode="fill", fill_value=-1),),
        (_INTS, _INTS[::-1]),
    ),
}


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.uint8)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("batched", [False, True])
def test_numpy_evaluation_is_jax_bit_for_bit(name, batched):
    fn, args = CASES[name]
    if batched:  # a candidate axis last, as relax vmaps a primitive over candidates
        args = tuple(np.stack([a, np.roll(a, 1)], axis=-1) for a in args)
        fn = jax.vmap(fn, in_axes=-1, out_axes=-1)
    with jax.ensure_compile_time_eval():
        # (jax arrays: NumPy arguments would make ``a + b`` NumPy's own sum.)
        expected = [np.asarray(o) for o in jax.tree.leaves(fn(*map(jnp.asarray, args)))]
    got = _trace_time.evaluate(fn, args)
    if got is None:
        return  # handed back to jax, which then computes ``expected`` itself
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_array_equal(_bits(g), _bits(e))


@pytest.mark.parametrize(
    "name",
    [
        "float arithmetic goes to jax",
        "subnormal comparisons go to jax",
        "a gather that fills goes to jax",
        "division by zero goes to jax",
        "NaN to an integer goes to jax",
    ],
)
def test_what_numpy_may_compute_otherwise_goes_to_jax(name):
    fn, args = CASES[name]
    assert _trace_time.evaluate(fn, args) is None


@pytest.mark.parametrize(
    "name",
    [
        "integer arithmetic",
        "integer division",
        "comparisons of floats",
        "moves",
        "conversions",
        "gathers",
        "a gather of floats",
        "floats to integers",
    ],
)
def test_exact_operations_are_evaluated_by_numpy(name):
    fn, args = CASES[name]
    assert _trace_time.evaluate(fn, args) is not None


@pytest.mark.parametrize(
    "targets",
    [
        np.arange(-2, 9),  # one run, clamped at both ends
        np.repeat(np.arange(5), 2),  # two runs of stride 2 (a count plus a truth value)
        _RNG.integers(-1, 7, 20_000),  # the joint outcomes of several integers: many runs
    ],
    ids=["shifted", "strided", "scattered"],
)
def test_folding_candidates_onto_outcomes_sums_their_probabilities(targets):
    from softflow._program import _folds

    probs = _RNG.uniform(size=(3, targets.size)).astype(np.float32)
    expected = np.zeros((3, 6), np.float64)
    kept = (targets >= 0) & (targets < 6)
    np.add.at(expected.T, targets[kept], probs[:, kept].T)
    folded = _folds.fold_onto(jnp.asarray(probs), targets, 6)
    np.testing.assert_allclose(folded, expected, rtol=1e-5, atol=1e-6)
    # The search for runs gives up past a few (it was a Python loop over every candidate:
    # minutes of tracing for a Python quickselect whose indices are relaxed).
    runs = _folds._runs(targets, 6)
    assert runs is None if targets.size > 100 else len(runs) <= 2
