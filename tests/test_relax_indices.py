"""sf.relax of integers made from floats and carried through loops: float-to-integer casts used as
indices (lookups, grids, histograms), discrete modes through loops, top_k, ranks and float
modulo. Each against an independent reference written from soft steps by hand."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal
from jax import lax

import softflow as sf

TAU = 0.3


def floor_probabilities(q, lo, hi):
    """P(floor(q) = k) for k = lo..hi from soft steps at the integers, the mass below lo and
    above hi at the ends (a sum of many steps, written independently of relax)."""
    k = jnp.arange(lo, hi + 2)
    at_least = sf.greater_equal(q[..., None], k, softness=TAU)  # P(floor(q) >= k)
    at_least = at_least.at[..., 0].set(1.0).at[..., -1].set(0.0)
    return at_least[..., :-1] - at_least[..., 1:]


# -- lookups and histograms -------------------------------------------------------------------

GRID = np.array([0.0, 1.0, 4.0, 9.0, 16.0, 25.0])


def lookup(x):
    return jnp.asarray(GRID)[jnp.floor(x).astype(jnp.int32)]


def test_a_lookup_at_a_floored_index_is_the_expectation_over_the_indices(x64):
    x = jnp.array([0.5, 1.2, 2.7, 3.95, 4.5])
    k = np.arange(-40, 46)
    probs = floor_probabilities(x, -40, 45)
    at = jax.vmap(lambda i: jnp.asarray(GRID)[i])(jnp.asarray(k))  # the program per candidate
    expected = probs @ at
    np.testing.assert_allclose(sf.relax(lookup, softness=TAU)(x), expected, rtol=1e-12)
    for mode in ("hard", "straight_through"):
        assert_exactly_equal(sf.relax(lookup, mode=mode)(x), lookup(x))
    relaxed = sf.relax(lookup, softness=TAU)
    step = 1e-6
    grad = jax.jit(jax.grad(lambda v: relaxed(v).sum()))(x)
    numeric = jax.jit(
        jax.vmap(lambda b: (relaxed(x + b).sum() - relaxed(x - b).sum()) / (2 * step))
    )(step * jnp.eye(5))
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    rules = [op.rule for op in relaxed.explain(x)]
    assert any(r.startswith("distribution over") for r in rules)


TABLE = np.array([3.0, -1.0, 4.0, 1.5, -5.0])
TABLE_2D = np.random.default_rng(1).normal(size=(3, 4))
READS = {  # a read at an integer index, as programs write it, in each of gather's modes
    "take_fill": lambda i: jnp.take(jnp.asarray(TABLE), i, mode="fill", fill_value=0.5),
    "take_clip": lambda i: jnp.take(jnp.asarray(TABLE), i, mode="clip"),
    "get_fill": lambda i: jnp.asarray(TABLE).at[i].get(mode="fill", fill_value=-1.0),
    "integers": lambda i: jnp.take(jnp.arange(5) * 3 - 4, i, mode="fill", fill_value=-7),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_a_read_at_a_floored_index_follows_the_gather_mode_at_every_candidate(read, x64):
    # Near both ends of the table, so that candidates fall out of range (at softness 0.3 they
    # reach 5 integers away); the program's own read at each integer is the reference.
    x = jnp.array([-0.6, 0.2, 2.5, 4.9, 5.4, 7.2])
    k = jnp.arange(-40, 46)
    expected = floor_probabilities(x, -40, 45) @ jax.vmap(read)(k).astype(x.dtype)

    def program(x):
        return read(jnp.floor(x).astype(jnp.int32))

    np.testing.assert_allclose(sf.relax(program, softness=TAU)(x), expected, rtol=1e-12)
    assert_exactly_equal(sf.relax(program, mode="hard")(x), program(x))


@pytest.mark.parametrize("mode", ["fill", "clip", "promise_in_bounds"])
def test_a_read_of_a_grid_at_two_floored_indices_is_over_their_joint_outcomes(mode, x64):
    x, y = jnp.array([-0.4, 1.3, 2.8]), jnp.array([3.6, 0.1, -0.7])

    def read(i, j):
        return jnp.asarray(TABLE_2D).at[i, j].get(mode=mode, fill_value=2.0)

    def program(x, y):
        return read(jnp.floor(x).astype(jnp.int32), jnp.floor(y).astype(jnp.int32))

    k = jnp.arange(-40, 46)
    # (Promised in bounds, a read out of range is XLA's: the nearest element, as clip reads.)
    values = jax.vmap(lambda i: jax.vmap(lambda j: read(i, j))(k))(k)  # [i, j]
    px, py = floor_probabilities(x, -40, 45), floor_probabilities(y, -40, 45)
    expected = jnp.einsum("na,nb,ab->n", px, py, values)
    relaxed = sf.relax(program, softness=TAU)
    np.testing.assert_allclose(relaxed(x, y), expected, rtol=1e-12)
    assert_exactly_equal(sf.relax(program, mode="hard")(x, y), program(x, y))
    grads = jax.jit(jax.grad(lambda x, y: relaxed(x, y).sum(), argnums=(0, 1)))(x, y)
    step = 1e-6
    for g, numeric in zip(
        grads,
        (
            (relaxed(x + step, y) - relaxed(x - step, y)) / (2 * step),
            (relaxed(x, y + step) - relaxed(x, y - step)) / (2 * step),
        ),
        strict=True,
    ):
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-8)


SAME_TWICE = {  # one relaxed integer in both places of an index, as programs write it
    "diagonal": lambda i: jnp.asarray(TABLE_6)[i, i],
    "band": lambda i: jnp.asarray(TABLE_6)[i, jnp.clip(i + 1, 0, 5)],
    "element_twice": lambda i: jnp.asarray(TABLE_6)[i[0], i[0]] * jnp.ones(2),
}
TABLE_6 = np.random.default_rng(3).normal(size=(6, 6))


@pytest.mark.parametrize("read", SAME_TWICE.values(), ids=SAME_TWICE.keys())
def test_one_relaxed_integer_read_twice_in_one_index_is_one_outcome(read, x64):
    """``grid[i, i]`` reads the diagonal at each outcome of ``i``: the two indices are views of
    the same relaxed integer (broadcast or sliced apart), not independent ones."""
    x = jnp.array([2.4, 3.7])
    k = jnp.arange(-40, 46)
    probs = floor_probabilities(x, -40, 45)
    per_outcome = jax.vmap(read)(jnp.stack([k, k], axis=-1))  # [outcome, element]
    if read is SAME_TWICE["element_twice"]:
        probs = jnp.broadcast_to(probs[0], probs.shape)  # both outputs follow element 0
    expected = jnp.einsum("nk,kn->n", probs, per_outcome)

    def program(x):
        return read(jnp.floor(x).astype(jnp.int32))

    np.testing.assert_allclose(sf.relax(program, softness=TAU)(x), expected, rtol=1e-12)


def test_pairwise_comparisons_of_relaxed_integers_are_exact_on_the_diagonal(x64):
    """``b[:, None] == b[None, :]`` compares each relaxed integer with the others and with
    itself: with itself it is one outcome (always equal, never less), with another element two
    independent ones."""
    x = jnp.array([0.5, 0.6, 2.5, 1.2])
    k = jnp.arange(-40, 46)
    p = floor_probabilities(x, -40, 45)
    equal = p @ p.T
    less = p @ (k[:, None] < k[None, :]).astype(p.dtype) @ p.T
    off = 1 - jnp.eye(4)

    def collisions(x):
        b = jnp.floor(x).astype(jnp.int32)
        return (b[:, None] == b[None, :]).sum(1), (b[:, None] < b[None, :]).sum(1)

    same, below = sf.relax(collisions, softness=TAU)(x)
    np.testing.assert_allclose(same, 1 + (equal * off).sum(1), rtol=1e-12)
    np.testing.assert_allclose(below, (less * off).sum(1), rtol=1e-12)


LADDER = np.array([0.0, 10.0, 20.0, 30.0, 40.0])


def test_integers_made_from_clipped_or_chosen_floats_saturate_exactly(x64):
    """A float that is exactly an integer where the program is flat (``jnp.clip`` saturated, a
    sign, ``jnp.where`` of integer constants) converts to that integer: the clip is applied to
    the integers of the value before it (``trunc(clip(x, a, b)) = clip(trunc(x), a, b)``), a
    sign or a choice of constants is a distribution over its values; never half the integer
    below, at any softness."""
    table = jnp.asarray(LADDER)
    programs = {
        "clip_cast": lambda x: table[jnp.clip(x, 0.0, 4.0).astype(jnp.int32)],
        "minimum_floor": lambda x: table[jnp.floor(jnp.minimum(x, 4.0)).astype(jnp.int32)],
        "sign_cast": lambda x: table[(jnp.sign(x) + 1).astype(jnp.int32)],
        "where_cast": lambda x: table[jnp.where(x > 0, 3.0, 1.0).astype(jnp.int32)],
    }
    x = jnp.array([7.3, 4.6, -2.2, 0.4])
    k = jnp.arange(-40, 46)
    p = floor_probabilities(x, -40, 45)
    up = sf.greater(x, 0.0, softness=TAU)
    # trunc(x) steps into c at c for c >= 1 and at c - 1 for c <= 0 (towards zero).
    at_least = sf.greater_equal(x[:, None], jnp.where(k >= 1, k, k - 1), softness=TAU)
    at_least = at_least.at[:, 0].set(1.0)
    truncated = at_least - jnp.concatenate([at_least[:, 1:], jnp.zeros((4, 1))], axis=1)
    expected = {
        "clip_cast": truncated @ table[jnp.clip(k, 0, 4)],
        "minimum_floor": p @ table[jnp.clip(k, -40, 4)],  # negative indices wrap
        "sign_cast": up * table[2] + (1 - up) * table[0],
        "where_cast": up * table[3] + (1 - up) * table[1],
    }
    for name, program in programs.items():
        np.testing.assert_allclose(
            sf.relax(program, softness=TAU)(x), expected[name], rtol=1e-12, err_msg=name
        )
        assert_exactly_equal(sf.relax(program, softness=1e-9)(x), program(x).astype(x.dtype))
        straight = sf.relax(program, softness=TAU, mode="straight_through")
        assert_exactly_equal(straight(x), program(x).astype(x.dtype))
    # A comparison of a sign's values is exact forward in straight-through mode too.
    crossings = lambda x: jnp.sum(jnp.sign(x[1:]) != jnp.sign(x[:-1]))  # noqa: E731
    straight = sf.relax(crossings, softness=TAU, mode="straight_through")
    assert straight(x) == crossings(x)
    wrong = lambda x: jnp.where(jnp.sign(x) != 1.0, 1.0, 0.0)  # noqa: E731
    at_zero = jnp.array([0.0, 0.4, -0.3])  # (the sign of 0 is 0: a perceptron from w = 0)
    assert_exactly_equal(sf.relax(wrong, mode="straight_through")(at_zero), wrong(at_zero))


def test_floats_made_from_exact_integers_stay_exact(x64):
    """A float made only from integers (a count of the values that are not NaN, as
    ``jnp.nanquantile`` makes it) is piecewise constant: comparing, rounding or casting it is
    exact at every softness, and a relaxed floor clipped by it keeps its law (the clip applied
    to its integers), instead of a cast sitting on a jump (half the integer below)."""
    y = jnp.array([0.3, jnp.nan, -1.2, 2.4, 0.9, jnp.nan, -0.6, 1.7, 0.05])

    def position(x, y):
        last = jnp.sum(~jnp.isnan(y)).astype(x.dtype) - 1  # 6.0
        q = jnp.floor(0.7 * last)  # 4.0, exact
        flat = jnp.minimum(q, last).astype(jnp.int32) + (last >= 6.0)
        clipped = jnp.minimum(jnp.floor(3 * x), last).astype(jnp.int32)
        return flat, clipped

    x = jnp.array([0.31, 1.45, 2.55, 4.1])
    flat, clipped = sf.relax(position, softness=TAU)(x, y)
    assert flat == 5
    k = jnp.arange(-30, 41)
    expected = floor_probabilities(3 * x, -30, 40) @ jnp.minimum(k, 6).astype(x.dtype)
    np.testing.assert_allclose(clipped, expected, rtol=1e-12)
    quantile = lambda x: jnp.nanquantile(jnp.where(jnp.isnan(y), jnp.nan, x), 0.7)  # noqa: E731
    x = jnp.array([0.3, 5.0, -1.2, 2.4, 0.9, 7.0, -0.6, 1.7, 0.05])
    np.testing.assert_allclose(sf.relax(quantile, softness=1e-6)(x), quantile(x), rtol=1e-12)


WRITES = {  # values written at a vector of floored positions, as programs write them
    "floats": lambda i, v: jnp.full(6, -1.0).at[i].set(v),
    "integers": lambda i, v: jnp.arange(6).at[i].set(jnp.array([7, -3, 9])),
    "clipped": lambda i, v: jnp.zeros(6).at[i].set(v, mode="clip"),
    "maximum": lambda i, v: jnp.full(6, 0.2).at[i].max(v),
    "minimum": lambda i, v: jnp.full(6, 0.2).at[i].min(v, mode="clip"),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_values_written_at_relaxed_positions_are_the_last_write_that_lands(write, x64):
    # Three writes, two of them likely on the same element: by enumeration of the joint outcomes
    # of the three floors (independent), the program's own scatter at each outcome weighed by
    # its probability (the last write wins where two land together, as XLA's scatter does; the
    # largest or smallest value for .max and .min).
    x = jnp.array([1.4, 1.7, 4.9])
    v = jnp.array([0.5, -2.0, 3.0])

    def program(x, v):
        return write(jnp.floor(x).astype(jnp.int32), v)

    k = jnp.arange(-6, 13)  # at softness 0.3 the floors stay within 5 of x
    law = floor_probabilities(x, -6, 12)  # [write, outcome]
    outcomes = jnp.stack(jnp.meshgrid(k, k, k, indexing="ij"), -1).reshape(-1, 3)
    weights = jnp.einsum("a,b,c->abc", *law).reshape(-1)
    expected = weights @ jax.vmap(lambda i: write(i, v))(outcomes).astype(x.dtype)
    relaxed = sf.relax(program, softness=TAU)
    np.testing.assert_allclose(relaxed(x, v), expected, rtol=1e-10, atol=1e-12)
    assert_exactly_equal(sf.relax(program, mode="hard")(x, v), program(x, v))
    grads = jax.jit(jax.grad(lambda x, v: relaxed(x, v) @ jnp.arange(1.0, 7.0), (0, 1)))(x, v)
    step = 1e-6
    for g, shift in zip(grads, ((step, 0.0), (0.0, step)), strict=True):
        for n in range(3):
            e = jnp.zeros(3).at[n].set(1.0)
            up = relaxed(x + shift[0] * e, v + shift[1] * e) @ jnp.arange(1.0, 7.0)
            down = relaxed(x - shift[0] * e, v - shift[1] * e) @ jnp.arange(1.0, 7.0)
            np.testing.assert_allclose(g[n], (up - down) / (2 * step), rtol=1e-5, atol=1e-8)


def test_segment_max_of_relaxed_segments_keeps_empty_segments_apart(x64):
    # A segment that may stay empty (-inf) is, as jnp.where(c, x, -inf) is relaxed, the maximum
    # of the writes that land there given that one does, plus softness * log of the probability
    # that one does (by enumeration of the floors' joint outcomes): finite wherever a write may
    # land, -inf in the hard limit where none does.
    x = jnp.array([0.2, 1.5, 1.9])

    def program(x):
        return jax.ops.segment_max(x, jnp.floor(x).astype(jnp.int32), num_segments=3)

    k = jnp.arange(-6, 8)
    law = floor_probabilities(x, -6, 7)
    outcomes = jnp.stack(jnp.meshgrid(k, k, k, indexing="ij"), -1).reshape(-1, 3)
    weights = jnp.einsum("a,b,c->abc", *law).reshape(-1)
    maxima = jax.vmap(lambda i: jax.ops.segment_max(x, i, num_segments=3))(outcomes)
    landed = jnp.isfinite(maxima)
    q = weights @ landed
    given = (weights @ jnp.where(landed, maxima, 0.0)) / q
    np.testing.assert_allclose(
        sf.relax(program, softness=TAU)(x), given + TAU * jnp.log(q), rtol=1e-10
    )
    assert_exactly_equal(sf.relax(program, softness=1e-9)(x), program(x))
    assert np.isneginf(program(x)[2]) and np.isneginf(sf.relax(program, mode="hard")(x)[2])


def test_values_put_at_their_ranks_are_sorted_in_the_hard_limit(x64):
    def by_ranks(x):
        return jnp.zeros_like(x).at[jnp.sum(x[None, :] < x[:, None], axis=1)].set(x)

    x = jnp.array([0.3, -1.2, 2.5, 0.9, -0.4])
    np.testing.assert_allclose(sf.relax(by_ranks, softness=1e-6)(x), jnp.sort(x), atol=1e-12)
    relaxed = sf.relax(by_ranks, softness=0.3)
    soft = relaxed(x)
    assert np.all(np.diff(soft) > 0)  # still in order, pulled together
    grad = jax.grad(lambda x: relaxed(x) @ jnp.arange(1.0, 6.0))(x)
    assert np.all(np.isfinite(grad)) and np.all(grad > 0)


def test_values_written_on_a_grid_at_two_relaxed_coordinates(x64):
    x, y = jnp.array([0.3, 2.6]), jnp.array([1.2, 1.4])
    v = jnp.array([4.0, -1.0])

    def program(x, y):
        i, j = jnp.floor(x).astype(jnp.int32), jnp.floor(y).astype(jnp.int32)
        return jnp.zeros((3, 2)).at[i, j].set(v)

    k = jnp.arange(-6, 10)
    lx, ly = floor_probabilities(x, -6, 9), floor_probabilities(y, -6, 9)
    a, b, c, d = jnp.meshgrid(k, k, k, k, indexing="ij")
    weights = jnp.einsum("a,b,c,d->abcd", lx[0], lx[1], ly[0], ly[1]).reshape(-1)
    i = jnp.stack([a.reshape(-1), b.reshape(-1)], -1)
    j = jnp.stack([c.reshape(-1), d.reshape(-1)], -1)
    written = jax.vmap(lambda i, j: jnp.zeros((3, 2)).at[i, j].set(v))(i, j)
    expected = jnp.einsum("o,oab->ab", weights, written)
    np.testing.assert_allclose(sf.relax(program, softness=TAU)(x, y), expected, rtol=1e-10)


def bilinear(p, grid):
    i = jnp.clip(jnp.floor(p[0]).astype(jnp.int32), 0, grid.shape[0] - 2)
    j = jnp.clip(jnp.floor(p[1]).astype(jnp.int32), 0, grid.shape[1] - 2)
    u, v = p[0] - i, p[1] - j
    return (
        (1 - u) * (1 - v) * grid[i, j]
        + u * (1 - v) * grid[i + 1, j]
        + (1 - u) * v * grid[i, j + 1]
        + u * v * grid[i + 1, j + 1]
    )


def test_bilinear_interpolation_relaxes_over_both_indices_jointly(x64):
    """Each read of the grid is the expectation over both floors (independent), and a float
    computed from a relaxed integer (the fractions u, v) is its expectation, as documented."""
    grid = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)))
    p = jnp.array([1.3, 2.6])
    k = jnp.arange(-40, 46)
    pi, pj = floor_probabilities(p[0], -40, 45), floor_probabilities(p[1], -40, 45)
    i, j = jnp.clip(k, 0, 2), jnp.clip(k, 0, 3)
    u, v = p[0] - pi @ i, p[1] - pj @ j

    def read(a, b):  # E[grid[i + a, j + b]] over the joint distribution of the two floors
        return jnp.einsum("a,b,ab->", pi, pj, grid[i[:, None] + a, j[None, :] + b])

    expected = (
        (1 - u) * (1 - v) * read(0, 0)
        + u * (1 - v) * read(1, 0)
        + (1 - u) * v * read(0, 1)
        + u * v * read(1, 1)
    )
    relaxed = sf.relax(bilinear, softness=TAU)
    np.testing.assert_allclose(relaxed(p, grid), expected, rtol=1e-12)
    assert_exactly_equal(sf.relax(bilinear, mode="hard")(p, grid), bilinear(p, grid))
    assert_exactly_equal(sf.relax(bilinear, mode="straight_through")(p, grid), bilinear(p, grid))
    grad = jax.jit(jax.grad(relaxed))(p, grid)
    assert np.all(np.isfinite(grad)) and np.all(grad != 0)


def trilinear(p, grid):
    corner = jnp.clip(jnp.floor(p).astype(jnp.int32), 0, grid.shape[0] - 2)
    frac = p - corner
    total = 0.0
    for offset in np.ndindex(2, 2, 2):
        weight = jnp.prod(jnp.where(jnp.array(offset) == 1, frac, 1 - frac))
        i, j, k = corner + jnp.array(offset)
        total = total + weight * grid[i, j, k]
    return total


def test_a_small_table_read_at_independent_floors_is_summed_over_its_positions(x64):
    """A grid no larger than a few times the joint outcomes of its indices is read as a sum over
    its positions, one factor per axis: the same expectation as over the joint outcomes, a
    gradient into every element it can reach, nothing from elements it cannot (inf, NaN), and
    the exact program at a tiny softness."""
    grid = np.random.default_rng(2).normal(size=(16, 16, 16))
    # Beyond every candidate of p's floors (they reach 12 integers away at this softness).
    grid[15, 15, 15], grid[15, 14, 15] = np.inf, np.nan
    grid = jnp.asarray(grid)
    p = jnp.array([1.3, 0.6, 2.8])
    k = jnp.arange(-40, 46)
    f = [floor_probabilities(p[d], -40, 45) for d in range(3)]
    corner = jnp.clip(k, 0, 14)
    frac = p - jnp.stack([f[d] @ corner for d in range(3)])
    expected = 0.0
    for offset in np.ndindex(2, 2, 2):
        weight = jnp.prod(jnp.where(jnp.array(offset) == 1, frac, 1 - frac))
        at = [corner + o for o in offset]
        reads = grid[at[0][:, None, None], at[1][None, :, None], at[2][None, None, :]]
        finite = jnp.where(jnp.isfinite(reads), reads, 0.0)  # read with probability 0 only
        expected = expected + weight * jnp.einsum("a,b,c,abc->", *f, finite)
    relaxed = sf.relax(trilinear, softness=TAU)
    assert any(
        op.rule.startswith("expectation summed over the table") for op in relaxed.explain(p, grid)
    )
    np.testing.assert_allclose(relaxed(p, grid), expected, rtol=1e-12)
    grads = jax.jit(jax.grad(relaxed, argnums=(0, 1)))(p, grid)
    step = 1e-6
    numeric = jax.vmap(lambda b: (relaxed(p + b, grid) - relaxed(p - b, grid)) / (2 * step))(
        step * jnp.eye(3)
    )
    np.testing.assert_allclose(grads[0], numeric, rtol=1e-6)
    # The value is linear in the grid: its gradient is the weight of each element.
    element = (2, 1, 3)
    bump = jnp.zeros_like(grid).at[element].set(1.0)
    weight = (relaxed(p, grid + bump) - relaxed(p, grid - bump)) / 2
    np.testing.assert_allclose(grads[1][element], weight, rtol=1e-9)
    assert grads[1][15, 15, 15] == 0 and grads[1][15, 14, 15] == 0
    tiny = sf.relax(trilinear, softness=1e-9)
    assert_exactly_equal(tiny(p, grid), trilinear(p, grid))


def histogram(x):
    return jnp.zeros(4).at[jnp.floor(4 * x).astype(jnp.int32)].add(1.0)


def _binned(x):
    return jnp.floor(4 * x).astype(jnp.int32)


@pytest.mark.parametrize(
    ("fn", "of_bins"),
    [
        (histogram, lambda b: jnp.zeros(4).at[b].add(1.0)),
        (
            lambda x: jnp.bincount(_binned(x), length=4),
            lambda b: jnp.bincount(b, length=4),
        ),
        (
            lambda x: jax.ops.segment_sum(jnp.ones_like(x), _binned(x), 4),
            lambda b: jax.ops.segment_sum(jnp.ones(b.shape), b, 4),
        ),
    ],
    ids=["scatter-add", "bincount", "segment_sum"],
)
def test_a_histogram_of_binned_floats_is_the_expected_count_per_bin(fn, of_bins, x64):
    x = jnp.array([0.1, 0.3, 0.35, 0.8, 0.99, -0.05])
    probs = floor_probabilities(4 * x, -40, 45)  # P(bin of x_i = k), k = -40..45
    # the program's own counts for one element in bin k (out of range: as the program does)
    counts = jax.vmap(lambda k: of_bins(k[None]))(jnp.arange(-40, 46))
    expected = jnp.einsum("ik,kb->b", probs, counts)
    np.testing.assert_allclose(sf.relax(fn, softness=TAU)(x), expected, rtol=1e-12, atol=1e-15)
    forward = sf.relax(fn, mode="straight_through")(x)
    np.testing.assert_array_equal(forward, np.asarray(fn(x), forward.dtype))
    assert_exactly_equal(sf.relax(fn, mode="hard")(x), fn(x))
    np.testing.assert_allclose(
        jax.jit(jax.jacobian(sf.relax(fn, softness=TAU)))(x),
        jax.jacobian(lambda v: jnp.einsum("ik,kb->b", floor_probabilities(4 * v, -40, 45), counts))(
            x
        ),
        rtol=1e-10,
        atol=1e-14,
    )


def test_a_truncation_is_a_distribution_over_the_integers_towards_zero(x64):
    fn = lambda x: (10 * x.astype(jnp.int32)).astype(jnp.float64)  # noqa: E731
    x = jnp.array([-2.5, -0.7, 0.2, 1.5, 3.0])
    k = jnp.arange(1.0, 41.0)
    expected = 10 * (
        sf.greater_equal(x[:, None], k, softness=TAU).sum(1)
        - sf.less_equal(x[:, None], -k, softness=TAU).sum(1)
    )
    np.testing.assert_allclose(sf.relax(fn, softness=TAU)(x), expected, rtol=1e-12)
    np.testing.assert_array_equal(sf.relax(fn, mode="straight_through")(x), fn(x))


# -- discrete modes through loops -----------------------------------------------------------


def thermostat(temperature, setpoint):
    """A hybrid system: heating on or off, switched with hysteresis; the mode is carried."""

    def step(carry, _):
        t, mode = carry
        mode = jnp.where(t < setpoint - 1, 1, jnp.where(t > setpoint + 1, 0, mode))
        t = lax.switch(mode, [lambda t: t - 0.5, lambda t: t + 1.0], t)
        return (t, mode), t

    return lax.scan(step, (temperature, 0), None, length=12)[1]


def thermostat_by_hand(temperature, setpoint):
    """The relaxation written by hand: the probability that the heating is on is carried."""

    def step(carry, _):
        t, on = carry
        cold = sf.less(t, setpoint - 1, softness=TAU)
        hot = sf.greater(t, setpoint + 1, softness=TAU)
        on = cold + (1 - cold) * (1 - hot) * on
        t = sf.soft_switch(jnp.stack([1 - on, on]), [lambda t: t - 0.5, lambda t: t + 1.0], t)
        return (t, on), t

    return lax.scan(step, (temperature, jnp.zeros(())), None, length=12)[1]


def test_a_mode_carried_through_a_loop_is_a_distribution_over_its_values(x64):
    t0, setpoint = jnp.float64(18.3), jnp.float64(20.0)
    relaxed = sf.relax(thermostat, softness=TAU)
    np.testing.assert_allclose(relaxed(t0, setpoint), thermostat_by_hand(t0, setpoint), rtol=1e-12)
    np.testing.assert_allclose(
        jax.jit(jax.grad(lambda s: relaxed(t0, s).sum()))(setpoint),
        jax.grad(lambda s: thermostat_by_hand(t0, s).sum())(setpoint),
        rtol=1e-10,
    )
    for mode in ("hard", "straight_through"):
        assert_exactly_equal(
            sf.relax(thermostat, mode=mode)(t0, setpoint), thermostat(t0, setpoint)
        )
    np.testing.assert_allclose(
        jax.jit(sf.relax(thermostat, softness=TAU))(t0, setpoint), relaxed(t0, setpoint), rtol=1e-14
    )


def longest_run_scan(x, threshold):
    """The longest run of values above a threshold: two integers carried through a scan, the
    current run and the longest so far, which depend on each other (compared, so carried as
    distributions)."""

    def step(carry, value):
        run, longest = carry
        run = jnp.where(value > threshold, run + 1, 0)
        return (run, jnp.where(run > longest, run, longest)), None

    return lax.scan(step, (0, 0), x)[0][1]


def longest_run_while(x, threshold):
    """The same, as a while loop over an exact counter."""

    def body(carry):
        i, run, longest = carry
        run = jnp.where(x[i] > threshold, run + 1, 0)
        return i + 1, run, jnp.where(run > longest, run, longest)

    return lax.while_loop(lambda c: c[0] < x.shape[0], body, (0, 0, 0))[2]


def longest_run_maximum(x, threshold):
    """The same with ``jnp.maximum``: of the two integers' joint law, not of their expected
    values (the mean-field approximation, 0.97 for 2.15 on six values near the threshold)."""

    def step(carry, value):
        run, longest = carry
        run = jnp.where(value > threshold, run + 1, 0)
        return (run, jnp.maximum(longest, run)), None

    return lax.scan(step, (0, 0), x)[0][1]


def longest_run_by_enumeration(x, threshold):
    """The expected longest run over every outcome of the relaxed comparisons (independent
    events of probability sf.greater(x_i, threshold)), written without relax."""
    n = x.shape[0]
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    longest = np.zeros(2**n)
    for row, b in enumerate(bits):
        run = 0
        for above in b:
            run = run + 1 if above else 0
            longest[row] = max(longest[row], run)
    p = sf.greater(x, threshold, softness=TAU)
    weights = jnp.prod(jnp.where(bits == 1, p, 1 - p), axis=1)
    return weights @ longest


@pytest.mark.parametrize(
    "program",
    [longest_run_scan, longest_run_while, longest_run_maximum],
    ids=["scan", "while", "maximum"],
)
def test_integers_carried_together_through_a_loop_keep_their_joint_law(program, x64):
    x = jnp.asarray(np.random.default_rng(3).normal(size=8))
    threshold = jnp.float64(-0.2)
    relaxed = sf.relax(program, softness=TAU)
    np.testing.assert_allclose(
        relaxed(x, threshold), longest_run_by_enumeration(x, threshold), rtol=1e-12
    )
    gradients = jax.jit(jax.grad(relaxed, argnums=(0, 1)))(x, threshold)
    expected = jax.grad(longest_run_by_enumeration, argnums=(0, 1))(x, threshold)
    for gradient, reference in zip(gradients, expected, strict=True):
        np.testing.assert_allclose(gradient, reference, rtol=1e-10, atol=1e-14)
    assert_exactly_equal(sf.relax(program, mode="hard")(x, threshold), program(x, threshold))


def counted_until(x, limit):
    """A counter that the loop increments on a relaxed condition, used as an index."""

    def step(carry, _):
        n, value = carry
        n = jnp.where(value > limit, n + 1, n)
        return (n, value * 1.1), None

    n, _ = lax.scan(step, (0, x), None, length=70)[0]
    return jnp.arange(100.0)[n]


def test_an_unbounded_counter_used_as_an_index_says_how_to_bound_it():
    with pytest.raises(sf.RelaxError, match=r"jnp\.clip\(i, 0, K - 1\) with K <= 64"):
        sf.relax(counted_until)(1.0, 2.0)

    def bounded(x, limit):
        def step(carry, _):
            n, value = carry
            n = jnp.clip(jnp.where(value > limit, n + 1, n), 0, 9)
            return (n, value * 1.1), None

        n, _ = lax.scan(step, (0, x), None, length=70)[0]
        return jnp.arange(100.0)[n]

    assert sf.relax(bounded, softness=1e-3)(1.0, 2.0) == pytest.approx(float(bounded(1.0, 2.0)))


# -- selections and ranks -----------------------------------------------------------------------


def test_top_k_and_ranks_are_softflow_s(x64):
    x = jnp.array([0.3, 1.0, -2.0, 0.9, 0.1])
    values, index = sf.relax(lambda x: lax.top_k(x, 2), softness=TAU)(x)
    # relax selects with the bitonic network and ranks by SoftSort (see docs/relaxing.md)
    expected_values, expected_index = sf.top_k(x, 2, softness=TAU, method="bitonic")
    np.testing.assert_allclose(values, expected_values, rtol=1e-12)
    np.testing.assert_allclose(index, expected_index @ jnp.arange(5.0), rtol=1e-12)
    ranks = lambda x: jnp.argsort(jnp.argsort(x)).astype(jnp.float64)  # noqa: E731
    np.testing.assert_allclose(
        sf.relax(ranks, softness=TAU)(x),
        sf.rank(x, softness=TAU, method="softsort"),
        rtol=1e-10,
        atol=1e-14,
    )
    np.testing.assert_array_equal(sf.relax(ranks, mode="straight_through")(x), ranks(x))
    rows = jnp.stack([x, -x])
    along = lambda x: jnp.argsort(jnp.argsort(x, axis=0), axis=0).astype(jnp.float64)  # noqa: E731
    np.testing.assert_allclose(
        sf.relax(along, softness=TAU)(rows),
        sf.rank(rows, axis=0, softness=TAU, method="softsort"),
        rtol=1e-10,
        atol=1e-14,
    )


def knn_vote(query, points, labels):
    nearest = jnp.argsort(jnp.abs(points - query))[:3]
    return jnp.bincount(labels[nearest], length=2).argmax()


def test_a_k_nearest_neighbour_vote():
    points, labels = jnp.array([0.1, 0.4, 0.5, 0.9, 1.2]), jnp.array([0, 0, 1, 1, 1])
    for query in (0.2, 0.45, 0.8, 1.3):
        assert float(sf.relax(knn_vote, softness=1e-3)(query, points, labels)) == float(
            knn_vote(query, points, labels)
        )
        assert_exactly_equal(
            sf.relax(knn_vote, mode="hard")(query, points, labels), knn_vote(query, points, labels)
        )
    grad = jax.jit(jax.grad(sf.relax(knn_vote, softness=0.1)))(0.45, points, labels)
    assert np.isfinite(grad) and grad != 0


@pytest.mark.parametrize(
    ("fn", "floored"),
    [(lambda x: x % 2.0, True), (lambda x: jnp.fmod(x, 2.0), False)],
    ids=["remainder", "fmod"],
)
def test_float_modulo_relaxes_the_quotient(fn, floored, x64):
    x = jnp.array([0.3, 2.7, -1.2, 5.5, -3.9])
    q = x / 2.0
    k = jnp.arange(1.0, 41.0)
    if floored:  # floor(q) = sum over k >= 1 of [q >= k] - sum over k >= 0 of [q < -k]
        quotient = sf.greater_equal(q[:, None], k, softness=TAU).sum(1) - sf.less(
            q[:, None], 1 - k, softness=TAU
        ).sum(1)
    else:
        quotient = sf.greater_equal(q[:, None], k, softness=TAU).sum(1) - sf.less_equal(
            q[:, None], -k, softness=TAU
        ).sum(1)
    np.testing.assert_allclose(sf.relax(fn, softness=TAU)(x), x - 2.0 * quotient, rtol=1e-12)
    assert_exactly_equal(sf.relax(fn, mode="straight_through")(x), fn(x))


CASTS = {
    "floor": lambda x: jnp.floor(x).astype(jnp.int32),
    "round": lambda x: jnp.round(x).astype(jnp.int32),
    "truncation": lambda x: x.astype(jnp.int32),
}


@pytest.mark.parametrize("kind", sf.KINDS)
@pytest.mark.parametrize("cast", CASTS.values(), ids=CASTS.keys())
def test_a_cast_index_has_the_derivatives_of_its_distribution(cast, kind, x64):
    """The derivative of a relaxed float-to-integer index, in x and in a traced softness, for
    every kind of step, against finite differences; the floor's value against the soft steps."""
    x = jnp.array([0.31, 1.45, 2.5, 3.17, -0.62, 4.97])  # (no kink of a step at x ± h)
    softness = jnp.asarray(0.37)

    def read(x, softness):
        fn = lambda x: jnp.take(jnp.asarray(TABLE), cast(x), mode="clip")  # noqa: E731
        return sf.relax(fn, softness=softness, kind=kind)(x)

    if cast is CASTS["floor"]:
        k = jnp.arange(-20, 26)
        at_least = sf.greater_equal(x[:, None], k, softness=softness, kind=kind)
        at_least = at_least.at[:, 0].set(1.0).at[:, -1].set(0.0)
        probs = at_least[:, :-1] - at_least[:, 1:]
        expected = probs @ jnp.take(jnp.asarray(TABLE), k[:-1], mode="clip")
        np.testing.assert_allclose(read(x, softness), expected, rtol=1e-10, atol=1e-12)
    weights = jnp.linspace(0.5, 1.5, x.size)
    loss = jax.jit(lambda x, s: jnp.sum(weights * read(x, s)))
    grad_x, grad_s = jax.grad(loss, argnums=(0, 1))(x, softness)
    h = 1e-6
    numeric_x = jax.vmap(
        lambda e: (loss(x + h * e, softness) - loss(x - h * e, softness)) / (2 * h)
    )(jnp.eye(x.size))
    numeric_s = (loss(x, softness + h) - loss(x, softness - h)) / (2 * h)
    np.testing.assert_allclose(grad_x, numeric_x, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(grad_s, numeric_s, rtol=1e-5, atol=1e-8)


def saturation_flags(z, a, b):
    c = jnp.clip(z, 0.0, 1.0)
    return (
        jnp.where(c >= 1.0, a, b)  # saturated above
        + jnp.where(0.0 >= c, 2.0 * a, 0.0)  # noqa: SIM300  (the clip on the right)
        + jnp.where(jnp.minimum(z, 0.5) < 0.7, 1.0, 0.0)  # true at both ends: always
    )


def test_a_clipped_value_compared_with_an_exact_one_is_exact_where_the_clip_decides(x64):
    # Compared as it was, the clipped value sits on the threshold wherever the clip saturates
    # there: 1/2 at every softness for every z beyond the bound.
    z = jnp.array([-0.5, -3.0, 0.3, 0.99, 1.7, 40.0])
    a, b = jnp.float64(3.0), jnp.float64(-1.0)
    exact = saturation_flags(z, a, b)
    tiny = sf.relax(saturation_flags, softness=1e-6)(z, a, b)
    np.testing.assert_allclose(tiny, exact, atol=1e-12)
    st = sf.relax(saturation_flags, softness=TAU, mode="straight_through")(z, a, b)
    np.testing.assert_array_equal(st, exact)

    # Soft: the comparison of the unclipped value (the same step), against sf.greater_equal.
    def by_hand(z, a, b):
        above = sf.greater_equal(z, 1.0, softness=TAU)
        below = sf.less_equal(z, 0.0, softness=TAU)
        return above * a + (1 - above) * b + below * 2.0 * a + 1.0

    relaxed = sf.relax(saturation_flags, softness=TAU)
    np.testing.assert_allclose(relaxed(z, a, b), by_hand(z, a, b), rtol=1e-13)
    gradient = jax.grad(lambda z: jnp.sum(relaxed(z, a, b)))(z)
    np.testing.assert_allclose(
        gradient, jax.grad(lambda z: jnp.sum(by_hand(z, a, b)))(z), rtol=1e-12
    )


def _beam_search(log_start, transitions):
    """Beam search of width 2, as decoders write it: top_k over the flattened candidates, the
    beam each came from by ``//`` and its token by ``%``, back-pointers gathered."""
    k = transitions.shape[-1]
    scores, tokens = lax.top_k(log_start, 2)
    paths = tokens[:, None]
    for t in range(transitions.shape[0]):
        candidates = (scores[:, None] + transitions[t][paths[:, -1]]).reshape(-1)
        scores, flat = lax.top_k(candidates, 2)
        paths = jnp.concatenate([paths[flat // k], (flat % k)[:, None]], axis=1)
    return scores[0], paths[0]


def test_relaxed_integers_read_at_relaxed_indices_mix_the_laws_they_read(x64):
    # `p[p]` of an argsort, or back-pointers `paths[beam]` of a beam search: the crash
    # "indices must have an integer type" (the index's probabilities were used as indices).
    rng = np.random.default_rng(4)
    x, y = (jnp.asarray(rng.normal(size=5)) for _ in range(2))

    def composed(x, y):
        return jnp.argsort(y)[jnp.argsort(x)]

    # By the law of the index (independent of the array read): E[p[q]] = P(q = k) E[p_k].
    soft = jax.jit(sf.relax(composed, softness=TAU))
    laws = sf.relax(lambda x: jax.nn.one_hot(jnp.argsort(x), 5), softness=TAU)(x)
    expected = sf.relax(lambda y: 1.0 * jnp.argsort(y), softness=TAU)(y)
    np.testing.assert_allclose(soft(x, y), laws @ expected, rtol=1e-12)
    weights = jnp.asarray(rng.normal(size=5))
    step = 1e-6

    @jax.jit
    def gradients(x):
        def loss(x):
            return jnp.sum(weights * soft(x, y))

        numeric = jax.vmap(lambda e: (loss(x + step * e) - loss(x - step * e)) / (2 * step))
        return jax.grad(loss)(x), numeric(jnp.eye(5))

    np.testing.assert_allclose(*gradients(x), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(jax.jit(sf.relax(composed, mode="hard"))(x, y), composed(x, y))
    np.testing.assert_allclose(sf.relax(composed, softness=1e-6)(x, y), composed(x, y), atol=1e-9)
    log_start, transitions = (
        jnp.asarray(rng.normal(size=4)),
        jnp.asarray(rng.normal(size=(3, 4, 4))),
    )
    best, path = _beam_search(log_start, transitions)
    hard = jax.jit(sf.relax(_beam_search, mode="hard"))(log_start, transitions)
    assert float(hard[0]) == float(best) and np.array_equal(hard[1], path)
    tiny = jax.jit(sf.relax(_beam_search, softness=1e-6))(log_start, transitions)
    np.testing.assert_allclose(tiny[1], path, atol=1e-9)
    relaxed = jax.jit(jax.grad(lambda t: sf.relax(_beam_search, softness=TAU)(log_start, t)[0]))
    assert np.all(np.isfinite(relaxed(transitions)))


def _run_of_equal_levels(z, *, by_cond):
    """The run of equal rounded levels up to the end: each step compares a level with the one
    before, so consecutive conditions share a level and are not independent."""
    levels = jnp.round(z)
    run = jnp.int32(1)
    for t in range(1, z.shape[0]):
        same = levels[t] == levels[t - 1]
        if by_cond:
            run = lax.cond(same, lambda r: r + 1, lambda r: jnp.int32(1), run)
        else:
            run = jnp.where(same, run + 1, 1)
    return jnp.stack([run == k for k in range(1, z.shape[0] + 1)]).astype(z.dtype)


def test_a_branch_index_on_joined_truth_values_stays_joined_under_jit(x64):
    # Under jit the outcomes of `levels[t] == levels[t - 1]` are not known at trace time; made a
    # branch index, the truth value became False or True on its own, independent of the run it
    # extends: P(run = 3) was P(e1) P(e2) (0.16 for 0.12).
    z = jnp.asarray([1.08, 1.321, 1.908, 3.252])
    by_cond = functools.partial(_run_of_equal_levels, by_cond=True)
    by_where = functools.partial(_run_of_equal_levels, by_cond=False)
    want = sf.relax(by_where, softness=TAU)(z)
    np.testing.assert_allclose(jax.jit(sf.relax(by_where, softness=TAU))(z), want, rtol=1e-12)
    np.testing.assert_allclose(sf.relax(by_cond, softness=TAU)(z), want, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(sf.relax(by_cond, softness=TAU))(z), want, rtol=1e-12)
    assert_exactly_equal(sf.relax(by_cond, mode="hard")(z), by_cond(z))
