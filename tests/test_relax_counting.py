"""sf.relax of counts of truth values: a sum of 0/1 integers made from comparisons is the exact
law of the count (independent elements), comparisons of the count are exact probabilities under
that law, and events made from one count stay joined. References: enumeration of every outcome,
and the Game of Life step written from sf.count_distribution by hand."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import softflow as sf

TAU = 0.7
NEIGHBOURS = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]


def life_step(board):
    """The Game of Life as plain JAX writes it: a sum of eight rolled boards."""
    alive = board > 0
    cells = alive.astype(jnp.int32)
    n = sum(jnp.roll(cells, shift, (0, 1)) for shift in NEIGHBOURS)
    return (n == 3) | (alive & (n == 2))


def life_step_stacked(board):
    alive = board > 0
    cells = alive.astype(jnp.int32)
    n = jnp.sum(jnp.stack([jnp.roll(cells, s, (0, 1)) for s in NEIGHBOURS]), axis=0)
    return (n == 3) | (alive & (n == 2))


def life_step_block(board):
    """The count as the 3 x 3 block minus the cell: terms that share the cell stay joined."""
    cells = (board > 0).astype(jnp.int32)
    column = cells + jnp.roll(cells, 1, 0) + jnp.roll(cells, -1, 0)
    block = column + jnp.roll(column, 1, 1) + jnp.roll(column, -1, 1)
    n = block - cells
    return jnp.where(cells == 1, (n == 2) | (n == 3), n == 3)


def probabilistic_life(p):
    """P(alive next) for independent cells of probabilities p, from the count law by hand."""
    law = sf.count_distribution(jnp.stack([jnp.roll(p, s, (0, 1)) for s in NEIGHBOURS]), axis=0)
    return law[..., 3] + p * law[..., 2]


def enumerated(fn, p):
    """E[fn(outcome)] over every 0/1 outcome of independent events of probabilities p."""
    p = np.asarray(p, np.float64)
    total = 0.0
    for bits in itertools.product((0, 1), repeat=p.size):
        bits = np.array(bits)
        weight = np.prod(np.where(bits == 1, p, 1 - p))
        total = total + weight * np.asarray(fn(bits), np.float64)
    return total


@pytest.mark.parametrize("step", [life_step, life_step_stacked, life_step_block])
def test_the_relaxed_life_step_is_the_probabilistic_life_step(step):
    board = jax.random.normal(jax.random.key(0), (7, 9))
    relaxed = sf.relax(step, softness=TAU)
    expected = probabilistic_life(jax.nn.sigmoid(board / TAU))
    np.testing.assert_allclose(relaxed(board), expected, atol=2e-7)
    rules = {op.rule for op in relaxed.explain(board)}
    assert any("exact probability under the distribution" in r for r in rules)
    assert any("count" in r or "joint outcomes" in r for r in rules)
    hard = sf.relax(step, mode="hard")(board)
    np.testing.assert_array_equal(hard, step(board).astype(hard.dtype))


def test_the_relaxed_life_step_has_the_gradient_of_the_count_law(x64):
    board = jax.random.normal(jax.random.key(1), (5, 5), jnp.float64)
    weights = jax.random.normal(jax.random.key(2), (5, 5), jnp.float64)
    relaxed = sf.relax(life_step, softness=TAU)
    got = jax.jit(jax.grad(lambda b: jnp.sum(weights * relaxed(b))))(board)
    want = jax.grad(lambda b: jnp.sum(weights * probabilistic_life(jax.nn.sigmoid(b / TAU))))(board)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "program",
    [
        lambda n: n >= 3,
        lambda n: n == 2,
        lambda n: (n == 1) | (n == 4),  # two events of one count: joined, not independent
        lambda n: jnp.where(n > 2, n - 2, n) == 1,
        lambda n: (n % 2 == 0) & (n != 0),
        lambda n: n**2,  # (these three were refused when a count was only its expectation)
        lambda n: jnp.array([5, 1, 4, 1, 5, 9, 2])[n] * 3,
        lambda n: jnp.where(n > 3, 1, 2 * n),  # (integers: a float made from n is E[n]'s)
    ],
)
def test_a_count_of_comparisons_against_enumeration(program, x64):
    x = jnp.array([0.3, -0.8, 1.1, 0.05, -0.4, 0.6], jnp.float64)
    p = jax.nn.sigmoid(x / TAU)

    def from_floats(x):
        return program(jnp.sum((x > 0).astype(jnp.int32)))

    got = sf.relax(from_floats, softness=TAU)(x)
    want = enumerated(lambda bits: program(np.sum(bits)), p)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_a_count_along_an_axis_is_batched_over_the_others(x64):
    x = jax.random.normal(jax.random.key(3), (3, 5, 4), jnp.float64)
    counts = sf.relax(lambda x: jnp.sum(x > 0.2, axis=(0, 2)) == 5, softness=TAU)(x)
    p = jax.nn.sigmoid((x - 0.2) / TAU)
    law = sf.count_distribution(jnp.moveaxis(p, 1, 0).reshape(5, -1), axis=-1)
    np.testing.assert_allclose(counts, law[:, 5], rtol=1e-12)


COUNTS = {
    "sum": jnp.sum,
    "cumsum": jnp.cumsum,
    "n - sum": lambda b: b.size - jnp.sum(b),
    "cumsum / n": lambda b: jnp.cumsum(b) / b.size,
    "cumsum[::-2]": lambda b: jnp.cumsum(b)[::-2],
    "2.0 * float(sum)": lambda b: 2.0 * jnp.sum(b).astype(float),
}


@pytest.mark.parametrize("count", COUNTS.values(), ids=COUNTS.keys())
def test_a_count_returned_or_computed_with_does_not_build_its_law(count, x64):
    # Its expected value is the sum of its elements' probabilities, carried through maps affine
    # in it; the law, quadratic in the number of elements, is for comparisons of the count.
    x = jax.random.normal(jax.random.key(4), (1000,), jnp.float64)
    relaxed = jax.jit(sf.relax(lambda x: count(x > 0.3), softness=TAU))
    assert "while" not in relaxed.lower(x).compile().as_text()
    p = jax.nn.sigmoid((x - 0.3) / TAU)
    np.testing.assert_allclose(relaxed(x), count(p), rtol=1e-12)
    # Compared, the count keeps its law.
    compared = jax.jit(sf.relax(lambda x: count(x > 0.3) > 0.45 * x.size, softness=TAU))
    assert "while" in compared.lower(x).compile().as_text()


def test_one_outcome_repeated_is_not_counted_as_independent_ones():
    # A truth value broadcast to five places is one event: the sum is 0 or 5, never 1 to 4.
    def program(x):
        one = (x > 0).astype(jnp.int32)
        return jnp.sum(jnp.broadcast_to(one, (5,))) == 5

    np.testing.assert_allclose(
        sf.relax(program, softness=TAU)(0.3), jax.nn.sigmoid(0.3 / TAU), rtol=1e-6
    )


def test_a_count_inside_a_loop_body():
    def program(board):
        def body(b, _):
            return life_step(b).astype(b.dtype) - 0.5, None

        return lax.scan(body, board, None, length=2)[0]

    board = jax.random.normal(jax.random.key(4), (6, 6))
    relaxed = sf.relax(program, softness=0.05)
    hard = sf.relax(program, mode="hard")(board)
    np.testing.assert_array_equal(hard, program(board))
    assert relaxed(board).shape == board.shape
    assert np.all(np.isfinite(jax.grad(lambda b: relaxed(b).sum())(board)))


def test_a_table_read_at_two_relaxed_indices_of_different_ranges(x64):
    # The index vector (i, j) joins a distribution over 2 values with one over 3: each candidate
    # pair keeps its joint probability (they were once paired candidate by candidate, wrongly).
    table = jnp.arange(2 * 9, dtype=jnp.float64).reshape(2, 9) ** 1.5
    x, y, z = (
        jnp.array(v, jnp.float64) for v in ([0.5, -0.5, 0.3], [1.5, 0.5, -0.3], [0.2, 0.9, -1.0])
    )

    def program(x, y, z):
        i = (x > 0).astype(jnp.int32)
        j = (y > 0).astype(jnp.int32) + (z > 0).astype(jnp.int32)
        return table[i, j]

    got = sf.relax(program, softness=TAU)(x, y, z)
    for e in range(3):
        p = jax.nn.sigmoid(jnp.array([x[e], y[e], z[e]]) / TAU)
        want = enumerated(lambda b: table[b[0], b[1] + b[2]], p)
        np.testing.assert_allclose(got[e], want, rtol=1e-12)
    np.testing.assert_array_equal(sf.relax(program, mode="hard")(x, y, z), program(x, y, z))


@pytest.mark.parametrize("reverse", [False, True])
def test_a_running_count_used_as_an_index_against_enumeration(reverse, x64):
    # cumsum of truth values: at every position the law of the count so far (a prefix of the
    # elements, or a suffix with reverse), read from a table after the program's own clip.
    table = jnp.array([0.0, 1.0, 4.0, 9.0, 16.0], jnp.float64)

    def program(x, t):
        hits = x > t
        running = lax.cumsum(hits.astype(jnp.int32), reverse=reverse)
        return table[jnp.clip(running, 0, 4)]

    x = jnp.array([0.3, -0.2, 0.8, 0.1, 0.5, -1.0, 0.7], jnp.float64)
    t = jnp.float64(0.25)
    relaxed = sf.relax(program, softness=TAU)
    p = jax.nn.sigmoid((x - t) / TAU)

    def reference(bits):
        running = np.cumsum(bits[::-1])[::-1] if reverse else np.cumsum(bits)
        return np.asarray(table)[np.clip(running, 0, 4)]

    np.testing.assert_allclose(relaxed(x, t), enumerated(reference, p), rtol=1e-12)
    assert "prefix count" in str(relaxed.explain(x, t))
    np.testing.assert_array_equal(sf.relax(program, mode="hard")(x, t), program(x, t))
    straight = sf.relax(program, softness=TAU, mode="straight_through")
    np.testing.assert_array_equal(straight(x, t), program(x, t))
    # The gradient in the threshold, against central differences of the soft program.
    grad = jax.grad(lambda t: relaxed(x, t).sum())(t)
    step = 1e-6
    numeric = (relaxed(x, t + step).sum() - relaxed(x, t - step).sum()) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7)


@pytest.mark.parametrize(
    ("of_count", "exact"),
    [
        (lambda c: c >= 2, True),  # the first index where the count reaches 2
        (lambda c: c > 0, True),  # the first one counted
        (lambda c: 3 * c, True),  # the last one counted
        (lambda c: c % 2, False),  # neither: by expectations (exact in the hard limit only)
    ],
    ids=["reached", "first", "scaled", "parity"],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_argmax_of_a_function_of_a_running_count(of_count, exact, reverse, x64):
    # argmax(cumsum(m) >= 2), the first time a count reaches a level (first-passage code), was
    # taken for the argmax of the count itself (the last one counted: index 22 for 1).
    def program(x, t):
        running = lax.cumsum((x > t).astype(jnp.int32), reverse=reverse)
        return jnp.argmax(of_count(running))

    x = jnp.array([0.3, -0.2, 0.8, 0.1, 0.5, -1.0, 0.7], jnp.float64)
    t = jnp.float64(0.25)
    p = jax.nn.sigmoid((x - t) / TAU)

    def reference(bits):
        running = np.cumsum(bits[::-1])[::-1] if reverse else np.cumsum(bits)
        return np.argmax(of_count(running))

    relaxed = sf.relax(program, softness=TAU)
    if exact:
        np.testing.assert_allclose(relaxed(x, t), enumerated(reference, p), rtol=1e-12)
    # The hard limit, at inputs whose outcomes are all near-certain, and hard mode.
    for y in (x, jnp.where(x > t, 2.0, -2.0), jnp.zeros_like(x)):
        assert float(sf.relax(program, softness=1e-3)(y, t)) == pytest.approx(
            float(program(y, t)), abs=1e-6
        )
        np.testing.assert_array_equal(sf.relax(program, mode="hard")(y, t), program(y, t))


def test_a_running_count_along_an_axis_is_batched_over_the_others(x64):
    x = jax.random.normal(jax.random.key(5), (4, 3), jnp.float64)
    got = sf.relax(lambda x: jnp.cumsum(x > 0, axis=0) == 2, softness=TAU)(x)
    p = jax.nn.sigmoid(x / TAU)
    for i in range(4):
        law = sf.count_distribution(p[: i + 1], axis=0)
        want = law[:, 2] if i >= 1 else jnp.zeros(3)
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-15)


# -- counts held as floats ---------------------------------------------------------------------

KERNEL = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])

FLOAT_COUNTS = {
    # (program of the 0/1 floats m, the count it compares, the comparison)
    "rolled floats >= 2": (
        lambda m: sum(jnp.roll(m, s) for s in (-1, 0, 1)) >= 2,
        lambda m: sum(jnp.roll(m, s) for s in (-1, 0, 1)),
        lambda n, s: sf.greater_equal(n, 1.5, softness=s),
    ),
    "convolve(m, ones) < 2": (
        lambda m: jnp.convolve(m, jnp.ones(3), mode="same") < 2,
        lambda m: jnp.convolve(m, jnp.ones(3), mode="same"),
        lambda n, s: sf.less(n, 1.5, softness=s),
    ),
    "m @ ones > 3": (
        lambda m: m @ jnp.ones(m.shape[0]) > 3,
        lambda m: m @ jnp.ones(m.shape[0]),
        lambda n, s: sf.greater(n, 3.5, softness=s),
    ),
    "2 * (m0 + m1 + m4) - 1 <= 3": (
        lambda m: 2.0 * (m[0] + m[1] + m[4]) - 1.0 <= 3,
        lambda m: 2.0 * (m[0] + m[1] + m[4]) - 1.0,
        lambda n, s: sf.less_equal(n, 3.5, softness=s),
    ),
}


@pytest.mark.parametrize("test, count, reference", FLOAT_COUNTS.values(), ids=FLOAT_COUNTS.keys())
def test_a_count_held_as_floats_is_compared_between_its_outcomes(test, count, reference, x64):
    # An integer in every outcome: its expectation, an integer itself in the hard limit, was
    # compared with the bound at 1/2 (a Life neighbour count of exactly 4: crowded with 1/2).
    x = jnp.array([0.1, 0.5, 0.3, 0.2, 0.8, 0.9, 0.4])

    def program(x):
        return jnp.where(test((x > 0.35).astype(x.dtype)), 1.0, 0.0)

    for softness in (0.3, 1e-6):
        p = sf.greater(x, 0.35, softness=softness)
        want = reference(count(p), softness)
        np.testing.assert_allclose(sf.relax(program, softness=softness)(x), want, rtol=1e-12)
    np.testing.assert_array_equal(sf.relax(program, softness=1e-6)(x), program(x))
    np.testing.assert_array_equal(sf.relax(program, mode="hard")(x), program(x))
    grad = jax.grad(lambda x: jnp.sum(sf.relax(program, softness=0.3)(x)))(x)
    want = jax.grad(lambda x: jnp.sum(reference(count(sf.greater(x, 0.35, softness=0.3)), 0.3)))
    np.testing.assert_allclose(grad, want(x), rtol=1e-10)


@pytest.mark.parametrize(
    "counted",
    [
        lambda a: jax.ops.segment_sum(jnp.ones(a.shape[0]), a, num_segments=3),
        lambda a: jnp.zeros(3).at[a].add(1.0),
    ],
    ids=["segment_sum", "at_add"],
)
def test_integers_added_at_relaxed_indices_are_a_count_compared_between_its_outcomes(counted):
    # k-means keeps an empty cluster's centre where its count is 0; the count of relaxed
    # assignments was compared with 0 at 0 itself, 1/2 at every softness (the centre halved).
    def occupied(x, c):
        a = jnp.argmin(jnp.abs(x[:, None] - c[None]), axis=1)
        return (counted(a) > 0).astype(x.dtype), (counted(a) >= 2).astype(x.dtype)

    x, c = jnp.array([1.0, 1.2, -1.0, -0.8, 0.9]), jnp.array([1.0, -1.0, 10.0])
    for relaxed in (sf.relax(occupied, softness=1e-6), jax.jit(sf.relax(occupied, softness=1e-6))):
        for got, want in zip(relaxed(x, c), occupied(x, c), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-9)


def test_a_life_step_by_convolution_decides_exactly_in_the_hard_limit():
    board = jax.random.uniform(jax.random.key(3), (8, 8))

    def crowded_or_lonely(board):
        alive = (board > 0.5).astype(board.dtype)
        n = jax.scipy.signal.convolve2d(alive, KERNEL, mode="same")
        return (n >= 4) | (n < 2)

    np.testing.assert_array_equal(
        sf.relax(crowded_or_lonely, softness=1e-4)(board) > 0.5, crowded_or_lonely(board)
    )
    soft = sf.relax(crowded_or_lonely, softness=1e-4)(board)
    np.testing.assert_allclose(soft, crowded_or_lonely(board), atol=1e-6)


def test_a_count_that_wraps_in_its_dtype_is_its_wrapped_value():
    # 285 truths summed as uint8 are 29 (mod 256); the expected count ignored the wrap.
    def program(x, t):
        return jnp.sum((x > t).astype(jnp.uint8), dtype=jnp.uint8)

    x = jnp.linspace(0.0, 1.0, 300)
    exact = program(x, 0.05)
    assert exact == 29
    assert sf.relax(program, softness=1e-6)(x, 0.05) == exact
    straight = jax.jit(sf.relax(program, softness=0.1, mode="straight_through"))
    assert straight(x, 0.05) == exact


RUNNING = {
    "cumprod(x > t)": (lambda x: jnp.cumprod(x > 0.2), lambda p: jnp.cumprod(p)),
    "cummin as int": (
        lambda x: lax.cummin((x > 0.2).astype(jnp.int32)),
        lambda p: jnp.cumprod(p),
    ),
    "cummax reversed": (
        lambda x: lax.cummax((x > 0.2).astype(jnp.int32), reverse=True),
        lambda p: 1 - jnp.cumprod((1 - p)[::-1])[::-1],
    ),
}


@pytest.mark.parametrize("program, reference", RUNNING.values(), ids=RUNNING.keys())
def test_a_running_and_or_or_of_truth_values_is_their_probability(program, reference, x64):
    # Whether every element so far holds (any, for the maximum): independent truth values.
    x = jnp.array([0.3, 0.9, 0.6, 0.1, 0.5])
    relaxed = sf.relax(program, softness=TAU)
    np.testing.assert_allclose(relaxed(x), reference(sf.greater(x, 0.2, softness=TAU)), rtol=1e-12)
    grad = jax.grad(lambda x: jnp.sum(relaxed(x)))(x)
    want = jax.grad(lambda x: jnp.sum(reference(sf.greater(x, 0.2, softness=TAU))))(x)
    np.testing.assert_allclose(grad, want, rtol=1e-10)
    np.testing.assert_array_equal(sf.relax(program, mode="hard")(x), program(x))
