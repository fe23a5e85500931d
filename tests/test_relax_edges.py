"""sf.relax at the edges a hostile probe found: writes into boolean and integer arrays, the first
index where a condition holds, searchsorted, elements compared with themselves, and the checks
for NaN guards and loops cut at max_steps. Each against an independent reference."""

import functools
import itertools
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal
from jax import lax

import softflow as sf

TAU = 0.4


def _line(marker: str) -> int:
    return next(i for i, text in enumerate(open(__file__).read().splitlines(), 1) if marker in text)


# -- writes at a relaxed index into booleans and integers ------------------------------------


def mark_nearest(d):
    return jnp.zeros(3, bool).at[jnp.argmin(d)].set(True)


def count_nearest(d):
    return jnp.zeros(3, jnp.int32).at[jnp.argmin(d)].set(5)


def test_a_relaxed_write_into_booleans_is_the_probability_of_each_index():
    d = jnp.array([3.0, 1.0, 2.0])
    weights = sf.argmin(d, softness=TAU)  # independent reference: P(index = j)
    np.testing.assert_allclose(sf.relax(mark_nearest, softness=TAU)(d), weights, rtol=1e-6)
    np.testing.assert_allclose(
        jax.jacobian(sf.relax(mark_nearest, softness=TAU))(d),
        jax.jacobian(lambda v: sf.argmin(v, softness=TAU))(d),
        rtol=1e-5,
        atol=1e-7,
    )
    np.testing.assert_allclose(sf.relax(count_nearest, softness=TAU)(d), 5 * weights, rtol=1e-6)
    for fn in (mark_nearest, count_nearest):
        assert_exactly_equal(sf.relax(fn, mode="hard")(d), fn(d))
        forward = sf.relax(fn, mode="straight_through")(d)
        np.testing.assert_array_equal(forward, fn(d).astype(forward.dtype))


def shortest_distances(w):
    """Dijkstra from node 0 over a dense weight matrix (visited mask carried by the loop)."""
    n = w.shape[0]
    big = 1e6  # a finite sentinel: a blended inf would make the soft gradient NaN (see below)

    def body(i, state):
        dist, visited = state
        u = jnp.argmin(jnp.where(visited, big, dist))
        visited = visited.at[u].set(True)
        return jnp.minimum(dist, dist[u] + w[u]), visited

    init = (jnp.full(n, big).at[0].set(0.0), jnp.zeros(n, bool))
    return lax.fori_loop(0, n, body, init)[0]


def test_dijkstra_with_a_visited_mask_in_a_loop_carry(x64):
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 3.0, (4, 4))
    w = jnp.asarray((w + w.T) / 2)
    exact = shortest_distances(w)
    assert_exactly_equal(sf.relax(shortest_distances, mode="hard")(w), exact)
    assert_exactly_equal(sf.relax(shortest_distances, mode="straight_through")(w), exact)
    np.testing.assert_allclose(sf.relax(shortest_distances, softness=1e-4)(w), exact, rtol=1e-6)
    relaxed = sf.relax(shortest_distances, softness=0.3)
    grad = jax.jit(jax.grad(lambda v: relaxed(v)[3]))(w)
    step = 1e-6
    bumps = step * jnp.eye(16).reshape(16, 4, 4)
    ends = jax.jit(jax.vmap(lambda b: relaxed(w + b)[3] - relaxed(w - b)[3]))(bumps)
    numeric = np.asarray(ends).reshape(4, 4) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


# -- the first index where a condition holds ------------------------------------------------


def first_above(x, t):
    return jnp.argmax(x > t, axis=-1)


def test_argmax_of_truth_values_is_the_first_true_index_by_enumeration(x64):
    rng = np.random.default_rng(1)
    x, t = jnp.asarray(rng.normal(size=(2, 5))), jnp.asarray(rng.normal(size=(2, 1)))
    p = np.asarray(sf.greater(x, t, softness=TAU))  # independent truth values
    expected = np.zeros(2)
    for outcome in itertools.product([0, 1], repeat=5):
        o = np.array(outcome, bool)
        chance = np.prod(np.where(o, p, 1 - p), axis=-1)
        expected += chance * (np.argmax(o) if o.any() else 0)
    relaxed = sf.relax(first_above, softness=TAU)
    np.testing.assert_allclose(relaxed(x, t), expected, rtol=1e-12)
    assert_exactly_equal(sf.relax(first_above, mode="hard")(x, t), first_above(x, t))
    np.testing.assert_array_equal(
        sf.relax(first_above, mode="straight_through")(x, t), first_above(x, t)
    )
    np.testing.assert_allclose(sf.relax(first_above, softness=1e-6)(x, t), first_above(x, t))
    # argmin: the first index where it does not hold
    last = lambda x, t: jnp.argmin(x > t, axis=-1)  # noqa: E731
    np.testing.assert_allclose(sf.relax(last, softness=1e-6)(x, t), last(x, t))


def test_first_index_of_a_cumulative_sum_crossing_a_level():
    p = jnp.array([0.2, 0.3, 0.4, 0.1])
    fn = lambda p: jnp.argmax(jnp.cumsum(p) > 0.6)  # noqa: E731
    assert float(sf.relax(fn, softness=1e-3)(p)) == pytest.approx(2.0, abs=1e-6)
    grad = jax.grad(sf.relax(fn, softness=0.05))(p)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


# -- searchsorted / digitize ----------------------------------------------------------------

EDGES = np.array([0.5, 1.5, 2.5])
SLOWNESS = np.array([1.0, 0.6, 0.9, 0.3])


@pytest.mark.parametrize("side", ["left", "right"])
def test_searchsorted_is_a_distribution_over_the_bins(side, x64):
    def fn(depth, edges):
        return jnp.asarray(SLOWNESS)[jnp.searchsorted(edges, depth, side=side)] * depth

    depth = jnp.array([0.0, -0.0, 0.5, 0.7, 1.5, 2.9, 2.5])
    edges = jnp.asarray(EDGES, jnp.float64)
    compare = sf.less if side == "left" else sf.less_equal
    below = compare(edges, depth[:, None], softness=TAU)  # P(edge k below the depth)
    at_least = np.concatenate([np.ones((7, 1)), below], axis=1)
    probs = at_least - np.concatenate([below, np.zeros((7, 1))], axis=1)
    expected = probs @ np.asarray(SLOWNESS, np.float64) * depth
    relaxed = sf.relax(fn, softness=TAU)
    np.testing.assert_allclose(relaxed(depth, edges), expected, rtol=1e-12)
    for mode in ("hard", "straight_through"):
        assert_exactly_equal(sf.relax(fn, mode=mode)(depth, edges), fn(depth, edges))
    # gradients with respect to the depths and the learned edges, against central differences
    loss = lambda d, e: jnp.sum(relaxed(d, e) ** 2)  # noqa: E731
    gd, ge = jax.grad(loss, (0, 1))(depth, edges)
    step = 1e-6
    for k in range(3):
        bump = jnp.zeros(3).at[k].set(step)
        numeric = (loss(depth, edges + bump) - loss(depth, edges - bump)) / (2 * step)
        assert float(ge[k]) == pytest.approx(float(numeric), rel=1e-6)
    numeric = jax.vmap(lambda b: (loss(depth + b, edges) - loss(depth - b, edges)) / (2 * step))(
        step * jnp.eye(7)
    )
    np.testing.assert_allclose(gd, numeric, rtol=1e-6, atol=1e-9)
    rules = [op.rule for op in relaxed.explain(depth, edges)]
    assert any("distribution over the bins" in r for r in rules)


@pytest.mark.parametrize("side", ["left", "right"])
def test_searchsorted_with_a_sorter_searches_the_boundaries_it_orders(side, x64):
    """``sorter=`` passes a third operand: the search is that of ``a[sorter]``."""
    table = jnp.array([2.5, 0.5, 1.5])
    depth = jnp.array([0.0, 0.7, 1.4, 2.9, 2.4])

    def by_sorter(depth, table, order):
        return jnp.searchsorted(table, depth, side=side, sorter=order)

    def by_argsort(depth, table):
        return jnp.searchsorted(table, depth, side=side, sorter=jnp.argsort(table))

    def in_order(depth, boundaries):
        return jnp.searchsorted(boundaries, depth, side=side)

    order = jnp.argsort(table)
    constant = sf.relax(by_sorter, softness=TAU)(depth, table, order)
    np.testing.assert_array_equal(constant, sf.relax(in_order, softness=TAU)(depth, table[order]))
    soft = sf.relax(by_argsort, softness=1e-6)
    np.testing.assert_allclose(soft(depth, table), by_argsort(depth, table), atol=1e-9)
    assert_exactly_equal(sf.relax(by_argsort, mode="hard")(depth, table), by_argsort(depth, table))
    straight_through = sf.relax(by_argsort, mode="straight_through")(depth, table)
    np.testing.assert_array_equal(straight_through, by_argsort(depth, table))
    grad = jax.grad(lambda t: sf.relax(by_argsort, softness=TAU)(depth, t).sum())(table)
    assert np.all(np.isfinite(grad)) and np.all(grad < 0)  # a higher boundary: fewer below


def test_a_histogram_over_the_range_of_its_data_counts_its_extremes_in_full(x64):
    # jnp.histogram(x, bins=k) puts its first edge at min(x): the smallest element, compared
    # with itself, was half out of the first bin at every softness.
    def counts(x):
        return jnp.histogram(x, bins=3)[0]

    def density(x):
        return jnp.histogram(x, bins=3, density=True)[0]

    x = jnp.array([0.0, 1.0, 1.5, 4.0, 2.2])
    for program in (counts, density):
        for softness in (1e-3, 1e-6):
            relaxed = sf.relax(program, softness=softness)
            np.testing.assert_allclose(relaxed(x), program(x), rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(jax.jit(relaxed)(x), program(x), rtol=1e-9, atol=1e-9)
        grad = jax.grad(lambda x, p=program: sf.relax(p, softness=TAU)(x) @ jnp.arange(3.0))(x)
        assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    # a fixed range is the ordinary search: the element on the first edge is half in
    fixed = lambda x: jnp.histogram(x, bins=2, range=(0.0, 4.0))[0]  # noqa: E731
    np.testing.assert_allclose(sf.relax(fixed, softness=1e-6)(x)[0], 2.5)


def test_digitize_relaxes_through_searchsorted():
    fn = lambda x: jnp.digitize(x, EDGES).astype(jnp.float32)  # noqa: E731
    x = jnp.array([0.2, 1.0, 3.0, 1.7])
    np.testing.assert_allclose(sf.relax(fn, softness=1e-4)(x), fn(x))
    assert np.all(jax.grad(lambda v: sf.relax(fn, softness=0.3)(v).sum())(x) > 0)


@pytest.mark.parametrize("right", [False, True])
def test_digitize_keeps_the_direction_of_learned_bins_exact(right, x64):
    # jnp.digitize reads its bins forwards or backwards by bins[-1] >= bins[0]; relaxed, that
    # test mixed both readings of bins 0.1 apart (points far from every edge half misplaced).
    def fn(x, bins):
        return jnp.digitize(x, bins, right=right)

    side = "right" if right else "left"

    def up(x, bins):
        return jnp.searchsorted(bins, x, side=side)

    def down(x, bins):
        return 3 - jnp.searchsorted(bins[::-1], x, side=side)

    x = jnp.array([-1.0, 0.07, 1.0, 0.3])
    for bins in (jnp.array([0.0, 0.1, 0.5]), jnp.array([0.5, 0.1, 0.0])):
        want = sf.relax(up if bins[0] < bins[-1] else down, softness=0.05)(x, bins)
        np.testing.assert_allclose(sf.relax(fn, softness=0.05)(x, bins), want, rtol=1e-12)
        assert_exactly_equal(sf.relax(fn, mode="hard")(x, bins), fn(x, bins))
        grad = jax.grad(lambda b: sf.relax(fn, softness=0.05)(x, b).astype(b.dtype).sum())(bins)
        assert np.all(np.isfinite(grad)) and np.any(grad != 0)


# -- elements compared with themselves -------------------------------------------------------


def test_an_element_compared_with_itself_is_exact():
    x = jnp.array([0.3, jnp.nan, -2.0, jnp.inf])
    for op in (jnp.less, jnp.less_equal, jnp.equal, jnp.not_equal, jnp.greater):
        fn = lambda x, op=op: op(x, x).astype(jnp.float32)  # noqa: E731
        np.testing.assert_array_equal(sf.relax(fn, softness=10.0)(x), fn(x))
    assert sf.relax(lambda x: jnp.isnan(x).sum()).explain(x) == ()


def test_a_buffer_compared_with_itself_converges_to_the_exact_ranks():
    rank = lambda x: jnp.sum(x[None, :] < x[:, None], axis=1).astype(jnp.float32)  # noqa: E731
    x = jnp.array([0.3, 1.0, -2.0, 0.9])
    np.testing.assert_allclose(sf.relax(rank, softness=1e-4)(x), rank(x), atol=1e-6)
    # the diagonal (each element against itself) contributes exactly 0 at every softness
    off_diagonal = sf.less(x[:, None], x[None, :], softness=1.0) * (1 - jnp.eye(4))
    np.testing.assert_allclose(sf.relax(rank, softness=1.0)(x), off_diagonal.sum(0), rtol=1e-6)


def test_argmax_of_a_repeated_element_converges_to_the_first():
    fn = lambda x: jnp.argmax(jnp.stack([x[1], x[0], x[1], 0.0]))  # noqa: E731
    x = jnp.array([0.1, 0.7])
    assert fn(x) == 0
    assert float(sf.relax(fn, softness=1e-3)(x)) == pytest.approx(0.0, abs=1e-6)
    # at any softness, index 2 (the repeat of index 0) has no mass of its own
    weights = sf.argmax(jnp.array([0.7, 0.1, 0.7, 0.0]), softness=0.5)
    expected = (weights[0] + weights[2]) * 0 + weights[1] * 1 + weights[3] * 3
    assert float(sf.relax(fn, softness=0.5)(x)) == pytest.approx(float(expected), rel=1e-6)


def test_median_has_finite_gradients():
    x = jnp.array([0.3, 1.0, -2.0, 0.5, 4.0])
    for mode in ("soft", "straight_through"):
        grad = jax.grad(sf.relax(jnp.median, softness=0.2, mode=mode))(x)
        assert np.all(np.isfinite(grad)) and float(grad.sum()) == pytest.approx(1.0, rel=1e-5)


# -- the documented pitfalls, detected ------------------------------------------------------


def fall_speed(h):
    return jnp.where(h > 0, jnp.sqrt(2 * 9.81 * h), 0.0)  # the blended guard


def safe_fall_speed(h):
    positive = h > 0
    return jnp.where(positive, jnp.sqrt(2 * 9.81 * jnp.where(positive, h, 1.0)), 0.0)


def test_debug_names_a_blended_guard_that_leaks_nan():
    h = jnp.array([-1.0, 2.0])
    assert np.isnan(sf.relax(fall_speed)(h)[0])  # the pitfall, silent without debug
    checked = jax.jit(sf.relax(fall_speed, debug=True))
    with pytest.raises(Exception, match=r"does not take") as error:
        checked(h)
    assert re.search(rf"test_relax_edges\.py:{_line('# the blended guard')}\b", str(error.value))
    # the safe-branch pattern passes the check, and positive heights alone too
    np.testing.assert_array_equal(
        jax.jit(sf.relax(safe_fall_speed, debug=True))(h), sf.relax(safe_fall_speed)(h)
    )
    positive = jnp.array([1.0, 2.0])
    np.testing.assert_array_equal(checked(positive), sf.relax(fall_speed)(positive))


def steps_to_reach(x):
    return lax.while_loop(lambda s: s[0] < 29.0, lambda s: (s[0] + 1.0, s[1] + 1.0), (x, 0.0))[1]


def halvings(x):
    return lax.while_loop(lambda s: s[0] > 1.0, lambda s: (s[0] * 0.5, s[1] + 1), (x, 0))[1]


def test_a_straight_through_counter_loop_cut_at_max_steps_is_an_error_under_jit():
    # The value of an integer counter comes from the loop's last states; the check was on the
    # other results only, and jit left it out with them.
    cut = jax.jit(sf.relax(halvings, max_steps=5, mode="straight_through"))
    with pytest.raises(Exception, match="had not stopped after max_steps=5"):
        jax.block_until_ready(cut(1e6))
    enough = jax.jit(sf.relax(halvings, max_steps=40, mode="straight_through"))
    assert enough(1e6) == halvings(1e6)


def test_a_straight_through_loop_cut_at_max_steps_is_an_error():
    assert sf.relax(steps_to_reach, max_steps=40, mode="straight_through")(0.0) == 29.0
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"max_steps=10"):
        sf.relax(steps_to_reach, max_steps=10, mode="straight_through")(0.0)
    # soft mode: the truncated mixture is the documented soft_while; debug reports it
    assert np.isfinite(sf.relax(steps_to_reach, max_steps=10)(0.0))
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"had not stopped"):
        sf.relax(steps_to_reach, max_steps=10, debug=True)(0.0)
    assert sf.relax(steps_to_reach, max_steps=60, debug=True)(0.0) == pytest.approx(29.0, abs=0.5)
    # A loop that stops after exactly max_steps bodies is not cut short: it was reported so,
    # its condition at max_steps was not looked at.
    exact = jax.jit(sf.relax(steps_to_reach, max_steps=29, mode="straight_through"))
    assert exact(0.0) == 29.0
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"max_steps=28"):
        sf.relax(steps_to_reach, max_steps=28, mode="straight_through")(0.0)
    # (from 0.5, no step lands on the condition's boundary, where the soft loop is undecided)
    debug = jax.jit(sf.relax(steps_to_reach, max_steps=29, debug=True, softness=1e-3))
    assert debug(0.5) == pytest.approx(29.0, abs=1e-6)


# -- float floor division; truth values compared with truth values -----------------------------


def test_float_floor_division_is_the_relaxed_floor_of_the_quotient(x64):
    # Its steps were relaxed one by one (rem, sign, round): at 0.1 // 1.0 the soft value was -0.77
    # and its slope negative.
    x = jnp.concatenate([jnp.linspace(-2.3, 2.3, 47), jnp.asarray([1e6 + 0.5, -7.0])])
    y = jnp.float64(0.5)
    quotient = sf.relax(lambda x, y: x // y, softness=TAU)
    # (sf.floor sums the steps' tails, relax the differences of the law: a few ulp apart.)
    np.testing.assert_allclose(
        quotient(x, y), sf.floor(x / y, softness=TAU), rtol=1e-10, atol=1e-11
    )
    # With the remainder: y * (x // y) + x % y is x.
    np.testing.assert_allclose(
        sf.relax(lambda x, y: y * (x // y) + x % y, softness=TAU)(x, y), x, atol=1e-9
    )
    slopes = jax.vmap(jax.grad(quotient), (0, None))(x, y)
    assert np.all(slopes > 0)
    assert_exactly_equal(sf.relax(lambda x, y: x // y, mode="hard")(x, y), x // y)
    # As an index: the expectation over the quotients, P(floor(q) >= k) = sigmoid((q - k) / tau).
    table = jnp.arange(12.0) ** 2
    read = sf.relax(lambda x: table[jnp.clip((x // y).astype(jnp.int32), 0, 11)], softness=TAU)
    at = jnp.asarray([1.3, 2.49])
    k = jnp.arange(12.0)
    q = (at / y)[:, None]
    at_least = jax.nn.sigmoid((q - k) / TAU) - jax.nn.sigmoid((q - k - 1) / TAU)
    np.testing.assert_allclose(read(at), at_least @ table, rtol=1e-6)


def _truth_values(x):
    return x > 0.5, x > 0.2


def test_truth_values_compared_with_truth_values_are_their_exclusive_or(x64):
    # A fixed-point loop's test, jnp.any(new != old), was refused; jnp.max of truth values was
    # the largest probability, not the probability that one is true.
    x = jnp.asarray([0.1, 0.4, 0.7, 0.45])
    programs = {
        "any !=": lambda x: jnp.any(jnp.not_equal(*_truth_values(x))),
        "all ==": lambda x: jnp.all(jnp.equal(*_truth_values(x))),
        "array_equal": lambda x: jnp.array_equal(*_truth_values(x)),
        "max": lambda x: jnp.max(_truth_values(x)[0]),
        "min": lambda x: jnp.min(_truth_values(x)[1]),
        "!= itself": lambda x: jnp.any(_truth_values(x)[0] != _truth_values(x)[0]),
    }
    a, b = (sf.greater(x, t, softness=TAU) for t in (0.5, 0.2))
    xor = a + b - 2 * a * b
    references = {
        "any !=": 1 - jnp.prod(1 - xor),
        "all ==": jnp.prod(1 - xor),
        "array_equal": jnp.prod(1 - xor),
        "max": 1 - jnp.prod(1 - a),
        "min": jnp.prod(b),
        "!= itself": 0.0,
    }
    for name, program in programs.items():
        soft = sf.relax(program, softness=TAU)
        np.testing.assert_allclose(soft(x), references[name], rtol=1e-12, err_msg=name)
        assert_exactly_equal(sf.relax(program, mode="hard")(x), program(x))
    # A lambda's line is named without a function name (it read "(None)").
    listed = str(sf.relax(programs["any !="], softness=TAU).explain(x))
    assert "test_relax_edges.py" in listed and "None" not in listed


# -- library functions with their own derivatives; LU ------------------------------------------


def test_library_functions_with_their_own_derivatives_stay_exact(x64):
    # xlogy's guard (x == 0) was relaxed: a KL divergence was 0.269 for 0.193; det on 2 x 2
    # (jax >= 0.12) was 1.41 for 5; LU (solve, inv) was refused.
    from jax.scipy.special import xlogy

    p, q = jnp.asarray([0.2, 0.8, 0.0]), jnp.asarray([0.5, 0.3, 0.2])
    a = jnp.asarray([[2.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.1, 0.4, 1.5]])
    programs = {
        "kl": (lambda p, q: jnp.sum(xlogy(p, p) - xlogy(p, q)), (p, q)),
        "det": (jnp.linalg.det, (a[:2, :2],)),
        "solve": (lambda a, b: jnp.linalg.solve(a, b), (a, q)),
        "inv": (jnp.linalg.inv, (a,)),
        "logcdf": (jax.scipy.stats.norm.logcdf, (jnp.asarray([-1.3, 0.0, 6.0, -40.0]),)),
    }
    for name, (program, args) in programs.items():
        relaxed = sf.relax(program, softness=TAU)
        np.testing.assert_array_equal(relaxed(*args), program(*args), err_msg=name)
        loss = lambda *a, f: jnp.sum(jnp.sin(f(*a)))  # noqa: E731
        got = jax.grad(functools.partial(loss, f=relaxed), argnums=0)(*args)
        want = jax.grad(functools.partial(loss, f=program), argnums=0)(*args)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)
    # A comparison of what they compute is relaxed as any other.
    chosen = sf.relax(lambda a, t: jnp.where(jnp.linalg.inv(a)[0, 0] > t, 1.0, 0.0), softness=TAU)
    np.testing.assert_allclose(
        chosen(a, 0.5), sf.greater(jnp.linalg.inv(a)[0, 0], 0.5, softness=TAU), rtol=1e-12
    )


# -- one value written at several relaxed indices ----------------------------------------------


def _marked(p, x):
    return x.at[jnp.round(p).astype(jnp.int32)].set(2.0)


def _marked_cells(p, x):
    return x.at[jnp.floor(p[:, 0]).astype(jnp.int32), jnp.floor(p[:, 1]).astype(jnp.int32)].set(
        True
    )


def test_one_value_written_at_several_relaxed_indices_stays_where_none_lands(x64):
    # It was refused (the last write decides): with one value, an element keeps x with the
    # probability that no write lands on it, the product over the writes of single writes'.
    p = jnp.asarray([2.6, 3.4, 5.5, 3.1])
    x = jnp.linspace(-1.0, 1.0, 8)
    many = sf.relax(_marked, softness=TAU)
    one = sf.relax(lambda q: _marked(q, jnp.zeros(8)) / 2, softness=TAU)

    def reference(p, x):
        missed = jnp.prod(1 - jax.vmap(one)(p), axis=0)
        return missed * x + (1 - missed) * 2.0

    both = jax.jit(
        lambda p, x: [
            (f(p, x), jax.grad(lambda q, f=f: jnp.sum(jnp.sin(f(q, x))))(p))
            for f in (many, reference)
        ]
    )
    (got, got_grad), (want, want_grad) = both(p, x)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-10)
    assert_exactly_equal(sf.relax(_marked, mode="hard")(p, x), _marked(p, x))
    # Cells of a board of truth values, at pairs of relaxed coordinates.
    cells = jnp.asarray([[1.5, 2.05], [2.9, 0.5], [1.2, 2.7]])
    board = jnp.zeros((4, 5), bool).at[0, 0].set(True)
    single = jax.vmap(
        sf.relax(lambda c: _marked_cells(c[None], jnp.zeros((4, 5), bool)), softness=TAU)
    )
    marked = jax.jit(
        lambda c, b: (
            sf.relax(_marked_cells, softness=TAU)(c, b),
            1 - jnp.prod(1 - single(c), axis=0) * (1 - b),
        )
    )
    got, want = marked(cells, board)
    np.testing.assert_allclose(got, want, rtol=1e-12)


# -- exact elements moved beside relaxed integers ----------------------------------------------


def argmax_and_constants(s):
    return jnp.concatenate([jnp.argmax(s, axis=1), jnp.array([1, 2, 7])])


@pytest.mark.parametrize("classes", [3, 6, 10])
def test_an_exact_element_concatenated_to_relaxed_integers_stays_exact(classes, x64):
    # Spread over the candidates with probabilities 1/k, 7 came back as 7 (1 +- 2 ulp).
    s = jnp.asarray(np.random.default_rng(classes).normal(size=(2, classes)))
    exact = argmax_and_constants(s)
    for mode in ("soft", "straight_through"):
        out = sf.relax(argmax_and_constants, softness=TAU, mode=mode)(s)
        assert_exactly_equal(out[2:], exact[2:].astype(out.dtype))
    st = sf.relax(argmax_and_constants, softness=TAU, mode="straight_through")(s)
    assert_exactly_equal(st, exact.astype(st.dtype))
    reference = jnp.sum(sf.argmax(s, softness=TAU) * jnp.arange(classes), axis=-1)
    soft = sf.relax(argmax_and_constants, softness=TAU)(s)
    np.testing.assert_allclose(soft[:2], reference, rtol=1e-12)


def viterbi_backtrack(last_scores, scores):
    """Backpointers by argmax, followed back through a reversed scan from the best last state."""
    pointers = jnp.argmax(scores, axis=1)
    last = jnp.argmax(last_scores)

    def back(state, row):
        previous = row[state]
        return previous, previous

    _, path = lax.scan(back, last, pointers, reverse=True)
    return jnp.concatenate([path, last[None]])


def test_a_scanned_relaxed_integer_joins_one_of_float32_values_under_x64(x64):
    # The scan carries its integer's probabilities in the default float (float64 under x64),
    # the argmax of float32 values has float32 ones; concatenating them raised a dtype error.
    rng = np.random.default_rng(0)
    last, scores = rng.normal(size=3), rng.normal(size=(4, 3, 3))
    relaxed = sf.relax(viterbi_backtrack, softness=TAU)
    narrow = relaxed(jnp.asarray(last, jnp.float32), jnp.asarray(scores, jnp.float32))
    wide = relaxed(jnp.asarray(last), jnp.asarray(scores))
    np.testing.assert_allclose(narrow, wide, rtol=1e-5)
    exact = viterbi_backtrack(jnp.asarray(last), jnp.asarray(scores))
    tiny = sf.relax(viterbi_backtrack, softness=1e-6)(jnp.asarray(last), jnp.asarray(scores))
    np.testing.assert_allclose(tiny, exact, atol=1e-9)


def knapsack_step(a):
    """A DP step: the previous entry if the (relaxed) index reaches one, else -inf."""
    i = jnp.round(a[0] * 4).astype(jnp.int32)
    previous = jnp.where(i >= 1, a[1], -jnp.inf)
    return jnp.zeros(2, a.dtype).at[0].set(previous + a[2])


def test_a_sentinel_chosen_by_a_relaxed_integer_keeps_the_values_dtype(x64):
    # The integer's probabilities are float64 under x64; the sentinel's blend came out float64
    # and the next float32 operation (an add, a scatter) raised a dtype error.
    a = np.array([0.3, -0.2, 0.5])
    narrow = sf.relax(knapsack_step, softness=TAU)(jnp.asarray(a, jnp.float32))
    wide = sf.relax(knapsack_step, softness=TAU)(jnp.asarray(a))
    assert narrow.dtype == jnp.float32
    np.testing.assert_allclose(narrow, wide, rtol=1e-6)
    # against the law of the rounded integer: P(i >= 1) = P(4 a0 >= 0.5)
    q = sf.greater_equal(4 * a[0], 0.5, softness=TAU)
    np.testing.assert_allclose(wide[0], a[1] + TAU * np.log(q) + a[2], rtol=1e-12)


# -- comparisons of NaN, remainders by infinity --------------------------------------------


def close_to(x, y):
    return jnp.where(jnp.isclose(x, y), 1.0, 0.0)


def test_a_comparison_with_nan_is_exact_and_does_not_spread(x64):
    # jnp.isclose(inf, inf) compares |inf - inf| = NaN with a tolerance and ands it with
    # isfinite(y), which is False: the soft step of NaN made the whole truth value NaN.
    x = jnp.array([0.3, jnp.inf, -jnp.inf, 1.0, jnp.nan])
    y = jnp.array([0.3, jnp.inf, -jnp.inf, 1.2, 0.0])
    for softness in (0.1, 1e-6):
        got = sf.relax(close_to, softness=softness)(x, y)
        np.testing.assert_array_equal(got[:3], close_to(x, y)[:3])
        assert got[4] == 0.0  # NaN compares unequal, at every softness
        assert 0.0 < got[3] < 1.0 or softness < 1e-3
    grad = jax.grad(lambda x: jnp.sum(sf.relax(close_to, softness=0.1)(x, y)))(x)
    assert np.isfinite(grad[3]) and grad[3] != 0.0
    np.testing.assert_array_equal(np.asarray(grad)[[0, 1, 2, 4]], 0.0)
    # a NaN operand of each comparison: the exact value (True for !=), gradient 0
    for compare, unordered in [(jnp.less, 0.0), (jnp.greater_equal, 0.0), (jnp.not_equal, 1.0)]:

        def program(a, compare=compare):
            return jnp.where(compare(a, 0.5), 1.0, 0.0)

        a = jnp.array([jnp.nan, 0.2])
        got = sf.relax(program, softness=0.3)(a)
        assert got[0] == unordered
        assert jax.grad(lambda a: sf.relax(program, softness=0.3)(a)[0])(a)[0] == 0.0


@pytest.mark.parametrize("remainder", [jnp.fmod, jnp.remainder], ids=["fmod", "remainder"])
def test_a_remainder_by_infinity_is_the_exact_one(remainder, x64):
    # x - y * quotient with y = inf and quotient 0 was inf * 0 = NaN (fmod) or inf (remainder).
    x = jnp.array([0.3, 2.5, 7.25])
    y = jnp.array([jnp.inf, jnp.inf, 2.0])
    for softness in (0.1, 1e-6):
        got = sf.relax(remainder, softness=softness)(x, y)
        np.testing.assert_array_equal(got[:2], remainder(x, y)[:2])
    np.testing.assert_allclose(sf.relax(remainder, softness=1e-6)(x, y)[2], 1.25)
    grad = jax.grad(lambda x: jnp.sum(sf.relax(remainder, softness=0.1)(x, y)))(x)
    np.testing.assert_array_equal(grad[:2], 1.0)  # the exact remainder's, as x there is
    assert np.all(np.isfinite(grad))
    straight = sf.relax(remainder, softness=0.1, mode="straight_through")
    np.testing.assert_array_equal(straight(x, y), remainder(x, y))
    np.testing.assert_array_equal(jax.grad(lambda x: straight(x, y)[0])(x)[0], 1.0)


def departure_by_if(a):
    departed = jnp.full(2, -jnp.inf)  # "not yet"
    if a > 0.5:
        departed = departed.at[0].set(a + 0.5)
    return departed


def departure_by_where(a):
    departed = jnp.full(2, -jnp.inf)
    return jnp.where(a > 0.5, departed.at[0].set(a + 0.5), departed)


def test_an_if_writing_into_an_array_of_infinities_blends_as_where_does(x64):
    # The if (a lax.cond) blended 1.5 with -inf into -inf, with a NaN gradient; jnp.where of
    # the same arrays is present with its probability: 1.5 + softness * log(p).
    a = jnp.float64(1.0)
    relaxed = sf.relax(departure_by_if, softness=0.1)
    np.testing.assert_allclose(relaxed(a), sf.relax(departure_by_where, softness=0.1)(a))
    p = sf.greater(a, 0.5, softness=0.1)
    np.testing.assert_allclose(relaxed(a)[0], 1.5 + 0.1 * jnp.log(p), rtol=1e-12)
    assert relaxed(a)[1] == -jnp.inf
    grad = jax.grad(lambda a: relaxed(a)[0])(a)
    want = jax.grad(lambda a: a + 0.5 + 0.1 * jnp.log(sf.greater(a, 0.5, softness=0.1)))(a)
    np.testing.assert_allclose(grad, want, rtol=1e-12)
    np.testing.assert_array_equal(sf.relax(departure_by_if, mode="hard")(a), departure_by_if(a))
