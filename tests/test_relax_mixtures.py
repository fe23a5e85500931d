"""sf.relax on values known for each candidate of a relaxed integer, and on infinite sentinels.

* A float read from a table at a relaxed index (``up[mode]``) is compared candidate by candidate:
  the probability is ``sum_k p_k s((v - up_k) / tau)``, finite where the table holds ``inf``.
* An exact float table read at a relaxed index and converted to an integer (a jump target) is a
  distribution over the converted entries.
* A branch index and the integers its branches compute from the same distribution stay joined.
* A counter of soft events carried through a ``lax.scan`` of N steps has the range 0..N: its law
  is the Poisson-binomial law of ``sf.count_distribution``.
* ``jnp.where(c, x, inf)`` with a relaxed ``c`` is ``x - tau log q`` (``q``: the probability of
  ``x``); an argmin over it weighs each element by its probability of being present and of
  beating each other present element.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import present_winners
from jax import lax

import softflow as sf

TAU = 0.3


def _mode(x):
    """A relaxed integer in 0..2: the number of thresholds (0 and 1) below x."""
    return jnp.where(x > 0.0, 1, 0) + jnp.where(x > 1.0, 1, 0)


def _mode_probs(x, tau):
    a, b = jax.nn.sigmoid(x / tau), jax.nn.sigmoid((x - 1.0) / tau)
    return jnp.stack([(1 - a) * (1 - b), a * (1 - b) + (1 - a) * b, a * b])


def test_a_comparison_with_a_table_read_at_a_relaxed_index_is_per_candidate(x64):
    def program(x, v, up):
        table = jnp.concatenate([up, jnp.array([jnp.inf])])
        return (v > table[_mode(x)]).astype(v.dtype)

    def reference(x, v, up):
        table = jnp.concatenate([up, jnp.array([jnp.inf])])
        return _mode_probs(x, TAU) @ jax.nn.sigmoid((v - table) / TAU)

    relaxed = sf.relax(program, softness=TAU)
    up = jnp.array([0.2, 0.9])
    for x, v in [(0.4, 0.5), (1.3, 0.1), (-0.2, 2.0)]:
        x, v = jnp.float64(x), jnp.float64(v)
        np.testing.assert_allclose(relaxed(x, v, up), reference(x, v, up), rtol=1e-12)
        grads = jax.grad(relaxed, argnums=(0, 1, 2))(x, v, up)
        expected = jax.grad(reference, argnums=(0, 1, 2))(x, v, up)
        for g, e in zip(grads, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-14)
    assert "for each candidate" in str(relaxed.explain(x, v, up))
    hard = sf.relax(program, mode="hard")
    assert hard(0.5, 2.0, up) == 1.0 and hard(0.5, 0.1, up) == 0.0 and hard(1.3, 9.0, up) == 0.0


def test_an_exact_float_table_read_and_converted_is_a_distribution(x64):
    targets = jnp.array([4.0, 7.0, 9.0])

    def program(x):
        return jnp.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0])[
            targets[_mode(x)].astype(jnp.int32)
        ]

    relaxed = sf.relax(program, softness=TAU)
    x = jnp.float64(0.6)

    # Per candidate: entry 4, 7 or 9; the expectation of the expected index (7.x) read linearly
    # would differ.
    def reference(x):
        return _mode_probs(x, TAU) @ jnp.array([50.0, 80.0, 100.0])

    np.testing.assert_allclose(relaxed(x), reference(x), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(relaxed)(x), jax.grad(reference)(x), rtol=1e-12)


def test_a_branch_result_from_the_index_distribution_stays_joined(x64):
    branches = [lambda i: i * 10, lambda i: i + 1, lambda i: 7 - i]

    def program(x):
        i = _mode(x)
        return lax.switch(i, [lambda i, f=f: f(i) for f in branches], i).astype(x.dtype)

    relaxed = sf.relax(program, softness=TAU)
    x = jnp.float64(0.7)
    # Outcome k takes branch k with the value k: 0, 2, 5. Mixing every branch with every
    # outcome as if independent would give another expectation.
    expected = _mode_probs(x, TAU) @ jnp.array([0.0, 2.0, 5.0])
    np.testing.assert_allclose(relaxed(x), expected, rtol=1e-12)


def _central_differences(f, x, step=1e-6):
    basis = np.eye(x.size).reshape(x.size, *x.shape)
    return np.array([(f(x + step * e) - f(x - step * e)) / (2 * step) for e in basis])


@pytest.mark.parametrize("steps", [5, 12])
def test_a_counter_through_a_scan_has_the_law_of_the_count(x64, steps):
    table = jnp.arange(steps + 1, dtype=jnp.float64) ** 2

    def program(xs):
        def step(n, x):
            return jnp.where(x > 0, n + 1, n), None

        n, _ = lax.scan(step, 0, xs)
        return table[n]

    xs = jnp.linspace(-1.0, 1.2, steps)
    relaxed = jax.jit(sf.relax(program, softness=TAU))
    law = sf.count_distribution(jax.nn.sigmoid(xs / TAU))
    np.testing.assert_allclose(relaxed(xs), law @ table, rtol=1e-10)
    np.testing.assert_allclose(
        jax.grad(relaxed)(xs), _central_differences(relaxed, xs), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("op", [jnp.remainder, jnp.floor_divide], ids=["k % 2", "k // 2"])
def test_a_non_linear_map_of_a_scan_counter_is_over_its_law(op, x64):
    # k % 2 on a counter of soft events carried by a scan was refused (the counter was known
    # only by its expected value); the precise analysis of the loop keeps it a distribution.
    def program(xs):
        def step(n, x):
            return jnp.where(x > 0, n + 1, n), None

        n, _ = lax.scan(step, 0, xs)
        return op(n, 2).astype(jnp.float64)

    xs = jnp.linspace(-1.0, 1.2, 5)
    law = sf.count_distribution(jax.nn.sigmoid(xs / TAU))
    want = law @ op(jnp.arange(6), 2).astype(jnp.float64)
    np.testing.assert_allclose(sf.relax(program, softness=TAU)(xs), want, rtol=1e-10)
    np.testing.assert_array_equal(sf.relax(program, mode="hard")(xs), program(xs))


def test_an_infinite_element_written_over_with_its_sentinel(x64):
    # Greedy top-2: the largest element, +inf, is written over with -inf at its relaxed index.
    # Certainly written there, it is -inf (it was inf - inf = NaN), and the second choice reads
    # what it reads when the largest is finite.
    def second(x):
        y = x.at[jnp.argmax(x)].set(-jnp.inf)
        k = jnp.argmax(y)
        return x[k], y

    relaxed = sf.relax(second, softness=TAU)
    x = jnp.array([jnp.inf, 1.0, 0.0, 0.5])
    value, y = relaxed(x)
    value_finite, y_finite = relaxed(x.at[0].set(1e300))
    assert y[0] == -jnp.inf
    np.testing.assert_array_equal(y, y_finite)
    np.testing.assert_array_equal(value, value_finite)
    grad = jax.grad(lambda x: relaxed(x)[0])(x)
    assert np.all(np.isfinite(grad[1:])), grad


def _argmin_of_present(x, q, tau):
    winners, nothing = present_winners(x, q, tau)
    winners[0] += nothing  # (jnp.argmin of inf throughout: index 0)
    return winners


def test_an_infinite_sentinel_is_present_with_the_probability_of_its_condition(x64):
    def nearest(d, r):
        masked = jnp.where(d > r, d, jnp.inf)
        return jnp.argmin(masked).astype(d.dtype), jnp.min(masked)

    d = jnp.array([0.5, 1.2, 2.0, 0.9])
    r = jnp.float64(1.0)
    relaxed = jax.jit(sf.relax(nearest, softness=TAU))
    q = np.asarray(jax.nn.sigmoid((d - r) / TAU))
    # The soft argmin weighs each element by its probability of being there and of beating
    # each other element that is there; the minimum is their expected value, present with the
    # probability that any element is (minus tau log of it, as a masked element is).
    winners, nothing = present_winners(np.asarray(d), q, TAU)
    index, minimum = relaxed(d, r)
    np.testing.assert_allclose(
        index, _argmin_of_present(np.asarray(d), q, TAU) @ np.arange(4.0), rtol=1e-12
    )
    want = winners @ np.asarray(d) / winners.sum() - TAU * np.log(1 - nothing)
    np.testing.assert_allclose(minimum, want, rtol=1e-12)
    for output in range(2):

        def f(d, output=output):
            return relaxed(d, r)[output]

        np.testing.assert_allclose(jax.grad(f)(d), _central_differences(f, d), rtol=1e-6, atol=1e-9)
    # The hard limit is the exact program, and a mask that is surely empty gives inf.
    assert sf.relax(nearest, mode="hard")(d, r) == nearest(d, r)
    assert relaxed(d, jnp.float64(500.0))[1] == jnp.inf
    grad = jax.grad(lambda d: relaxed(d, jnp.float64(500.0))[0])(d)
    assert np.all(np.isfinite(grad))


def test_the_least_value_above_a_threshold_tends_to_the_exact_one(x64):
    # Masked at d > r, an element below r by h is present with probability exp(-h / tau): the
    # least of d - tau log q was then the threshold itself, r, for 0.5 and 0.9 below r = 1, at
    # every softness where float64 resolves exp(-h / tau) (1.0 for 1.2 at 1e-3).
    def least_above(d, r):
        return jnp.min(jnp.where(d > r, d, jnp.inf)), jnp.max(jnp.where(d < r, d, -jnp.inf))

    d, r = jnp.array([0.5, 1.2, 2.0, 0.9]), jnp.float64(1.0)
    for softness in (2e-3, 1e-3):  # margins of 50 and 100 softness units at least
        np.testing.assert_allclose(
            sf.relax(least_above, softness=softness)(d, r), least_above(d, r), rtol=1e-12
        )

    # Every element almost surely masked: the least value is present with the small probability
    # that any is, which 1 - P(none) lost to rounding (a derivative of -1.6 for -1).
    def least_kept(keep, d):
        return jnp.min(jnp.where(keep > 0, d, jnp.inf))

    keep, d3 = jnp.array([-1.63, -8.3, -9.9]), jnp.array([3.24, 2.1, 1.77])
    nearly_empty = jax.jit(sf.relax(least_kept, softness=0.05))
    q = jax.nn.sigmoid(keep[0] / 0.05)
    np.testing.assert_allclose(nearly_empty(keep, d3), d3[0] - 0.05 * jnp.log(q), rtol=1e-12)
    np.testing.assert_allclose(
        jax.grad(nearly_empty)(keep, d3),
        _central_differences(lambda k: nearly_empty(k, d3), keep),
        rtol=1e-6,
        atol=1e-9,
    )
    straight = sf.relax(least_above, softness=0.1, mode="straight_through")
    assert straight(d, r) == least_above(d, r)
    for output, winner in ((0, 1), (1, 3)):  # (1.2 is the least above, 0.9 the most below)
        grad = jax.grad(lambda d, output=output: straight(d, r)[output])(d)
        assert np.all(np.isfinite(grad)) and grad[winner] > 0


def test_the_argmin_of_two_masked_elements_is_the_law_over_the_masks(x64):
    # Two elements, each there with its probability: the soft argmin of each of the four
    # masks, weighed by its probability (index 0 when both are masked, as jnp.argmin of inf).
    def program(d, keep):
        return jnp.argmin(jnp.where(keep > 0, d, jnp.inf)).astype(d.dtype)

    d, keep = jnp.array([0.4, 0.1]), jnp.array([0.2, -0.1])
    q = jax.nn.sigmoid(keep / TAU)
    worlds = {(1, 1): sf.argmin(d, softness=TAU)[1], (1, 0): 0.0, (0, 1): 1.0, (0, 0): 0.0}
    want = sum(
        (q[0] if a else 1 - q[0]) * (q[1] if b else 1 - q[1]) * index
        for (a, b), index in worlds.items()
    )
    np.testing.assert_allclose(sf.relax(program, softness=TAU)(d, keep), want, rtol=1e-12)


def _earliest_deadline_first(deadlines, durations):
    done = jnp.zeros(deadlines.shape, bool)
    t = late = 0.0
    order = []
    for _ in range(deadlines.shape[0]):
        j = jnp.argmin(jnp.where(done, jnp.inf, deadlines))
        t = t + durations[j]
        late = late + jnp.maximum(t - deadlines[j], 0.0)
        done = done.at[j].set(True)
        order.append(j)
    return late, jnp.stack(order)


def test_a_greedy_pick_among_those_not_taken_is_exact_in_the_hard_limit(x64):
    # An element taken at a pick with a margin g stays present with probability exp(-g / tau):
    # weighed by that probability times exp(-d / tau), it tied with the element g above it at
    # every softness (picks of 1.5 for 0 and 3; a lateness of 4.92 for 2.59).
    rng = np.random.default_rng(0)
    deadlines, durations = jnp.asarray(rng.uniform(1, 8, 6)), jnp.asarray(rng.uniform(0.5, 2, 6))
    late, order = _earliest_deadline_first(deadlines, durations)
    # Margins of 25 and 30 softness units at least: exp(-25) = 1e-11 is what is left of a taken
    # element, which 1 - P(taken) resolves in float64 (at 40 units it rounds to 0).
    gap = np.min(np.diff(np.sort(deadlines)))
    for softness in (gap / 25, gap / 30):
        soft_late, soft_order = sf.relax(_earliest_deadline_first, softness=softness)(
            deadlines, durations
        )
        np.testing.assert_allclose(soft_order, order, atol=1e-8)
        np.testing.assert_allclose(soft_late, late, rtol=1e-8)
    relaxed = jax.jit(sf.relax(_earliest_deadline_first, softness=0.3))

    def total(deadlines):
        return relaxed(deadlines, durations)[0]

    np.testing.assert_allclose(
        jax.grad(total)(deadlines), _central_differences(total, deadlines), rtol=1e-6, atol=1e-8
    )


def test_a_negative_infinite_sentinel_before_an_argmax(x64):
    def masked_argmax(x, keep):
        return jnp.argmax(jnp.where(keep > 0, x, -jnp.inf)).astype(x.dtype)

    x = jnp.array([0.3, 1.1, -0.4])
    keep = jnp.array([0.5, -0.2, 0.1])
    relaxed = sf.relax(masked_argmax, softness=TAU)
    q = jax.nn.sigmoid(keep / TAU)
    weights = _argmin_of_present(-np.asarray(x), np.asarray(q), TAU)
    np.testing.assert_allclose(relaxed(x, keep), weights @ np.arange(3.0), rtol=1e-12)
    st = sf.relax(masked_argmax, softness=TAU, mode="straight_through")
    assert st(x, keep) == masked_argmax(x, keep)
    assert np.all(np.isfinite(jnp.concatenate(jax.grad(st, argnums=(0, 1))(x, keep))))


MASKS = {  # the best element masked, as greedy selection (top-k by repeated argmax) writes it
    "where_inf": (lambda x: jnp.where(jnp.arange(x.size) == jnp.argmax(x), -jnp.inf, x), None),
    "set_inf": (lambda x: x.at[jnp.argmax(x)].set(-jnp.inf), None),
    "where_finite": (lambda x: jnp.where(jnp.arange(x.size) == jnp.argmax(x), -1e9, x), -1e9),
    "set_finite": (lambda x: x.at[jnp.argmax(x)].set(-1e9), -1e9),
}


@pytest.mark.parametrize("mask, finite", MASKS.values(), ids=MASKS.keys())
def test_a_sentinel_written_at_a_relaxed_index_is_present_where_the_index_is_not(mask, finite, x64):
    """An element masked at the relaxed argmax is present with the probability that the argmax
    is elsewhere (a blend of the candidates would be the sentinel everywhere, and its gradient
    NaN), as for a soft truth value; the second best element read through it is exact in the
    hard limit, with the gradient of finite differences."""
    x = jnp.array([0.3, -1.2, 2.4, 0.9, 2.3])
    absent = jax.nn.softmax(x / TAU)  # the law of the relaxed argmax
    if finite is None:
        expected = x + TAU * jnp.log(1 - absent)
    else:
        expected = TAU * jnp.logaddexp(
            x / TAU + jnp.log(1 - absent), finite / TAU + jnp.log(absent)
        )
    np.testing.assert_allclose(sf.relax(mask, softness=TAU)(x), expected, rtol=1e-12)

    def second_best(x):
        return x[jnp.argmax(mask(x))]

    relaxed = jax.jit(sf.relax(second_best, softness=TAU))
    np.testing.assert_allclose(
        jax.grad(relaxed)(x), _central_differences(relaxed, x), rtol=1e-6, atol=1e-9
    )
    assert sf.relax(second_best, softness=1e-6)(x) == second_best(x)
    assert sf.relax(second_best, mode="straight_through")(x) == second_best(x)


def test_a_nan_constant_chosen_by_a_relaxed_condition_is_refused():
    def program(x):
        return jnp.where(x > 0, x, jnp.array([jnp.nan, 1.0]))

    with pytest.raises(sf.RelaxError, match=r"select_n.*not finite"):
        sf.relax(program)(jnp.array([0.5, -0.5]))


def relax_edge(distances, costs, source):
    """One relaxation of Dijkstra's from a table that starts at inf: the node after the cheapest
    cost (a relaxed integer) gets the source's distance plus that cost, written by `where`, by
    `.at[].set` and by `.at[].min` (the last is a sentinel rule already)."""
    node = jnp.minimum(jnp.argmin(costs) + 1, distances.size - 1)
    value = distances[source] + jnp.min(costs)
    by_where = jnp.where(jnp.arange(distances.size) == node, value, distances)
    by_set = distances.at[node].set(value)
    by_min = distances.at[node].min(value)
    return by_where, by_set, by_min


@pytest.mark.parametrize("in_loop", [False, True], ids=["concrete_table", "table_in_a_loop"])
def test_infinite_elements_are_sentinels_element_by_element(in_loop, x64):
    # A table holding inf among finite values, known at trace time or only at run time (a loop
    # carry): each inf is a sentinel against the value written at a relaxed index. A blend was
    # inf wherever the index was uncertain, with a NaN gradient (and at trace time a refusal).
    table = jnp.array([0.0, jnp.inf, jnp.inf, 2.5, -jnp.inf])
    costs = jnp.array([1.3, 0.7, 2.1, 0.9])

    def program(costs):
        if not in_loop:
            return relax_edge(table, costs, 0)
        return lax.fori_loop(0, 1, lambda _, t: t, relax_edge(table, costs, 0))

    relaxed = sf.relax(program, softness=TAU)
    landing = sf.argmin(costs, softness=TAU)  # P(node = 1 + k), k = 0..3
    p = jnp.concatenate([jnp.zeros(1), landing])
    value = table[0] + jnp.min(costs)  # (continuous: not relaxed)
    expected = jnp.where(
        jnp.isposinf(table),
        value - TAU * jnp.log(p),  # present with probability p against inf
        jnp.where(jnp.isneginf(table), value + TAU * jnp.log(p), p * value + (1 - p) * table),
    )
    by_where, by_set, by_min = relaxed(costs)
    np.testing.assert_allclose(by_where, expected, rtol=1e-12)
    np.testing.assert_allclose(by_set, expected, rtol=1e-12)
    above = np.isposinf(table)  # where .min meets inf (it keeps -inf as it is)
    np.testing.assert_allclose(by_min[above], expected[above], rtol=1e-12)
    for mode in ("straight_through", "hard"):
        out = sf.relax(program, softness=TAU, mode=mode)(costs)
        for got, exact in zip(out, program(costs), strict=True):
            np.testing.assert_array_equal(got, exact)
    gradient = jax.grad(lambda c: jnp.sum(relaxed(c)[0][1:4]))(costs)
    assert np.all(np.isfinite(gradient))
    np.testing.assert_allclose(
        gradient, _central_differences(lambda c: jnp.sum(relaxed(c)[0][1:4]), costs), rtol=1e-6
    )


def test_an_exact_counter_chosen_by_a_relaxed_condition_in_a_loop(x64):
    # The step at which x was last positive: the counter n is exact but differs at every step,
    # so the analysis of the loop must not take it for its initial value (it once did, and the
    # relaxed result was 0 at every softness).
    def last_positive(xs):
        def step(carry, x):
            n, last = carry
            return (n + 1, jnp.where(x > 0, n, last)), None

        (_, last), _ = lax.scan(step, (0, 0), xs)
        return last.astype(xs.dtype)

    xs = jnp.array([0.5, -0.3, 0.8, -1.0, 0.2])
    p = jax.nn.sigmoid(xs / TAU)
    later_not = jnp.array([jnp.prod(1 - p[t + 1 :]) for t in range(5)])
    expected = jnp.sum(jnp.arange(5.0) * p * later_not)
    np.testing.assert_allclose(sf.relax(last_positive, softness=TAU)(xs), expected, rtol=1e-12)
    assert sf.relax(last_positive, softness=1e-3)(xs) == pytest.approx(4.0, abs=1e-6)


# A tiny interpreter: opcode 0 adds ARG * x to the accumulator, 1 jumps to ARG if x < 0, 2 halts.
# Both paths halt after three steps.
_OPS = np.array([0, 1, 0, 2, 0, 2], np.int32)
_ARGS = np.array([1.0, 4.0, 10.0, 0.0, 1000.0, 0.0])


def _interpret(x):
    ops, args = jnp.asarray(_OPS), jnp.asarray(_ARGS, x.dtype)

    def body(state):
        pc, acc = state
        op = ops[pc]
        acc = jnp.where(op == 0, acc + args[pc] * x, acc)
        jump = (op == 1) & (x < 0)
        return jnp.where(jump, args[pc].astype(jnp.int32), pc + 1), acc

    return lax.while_loop(lambda s: ops[s[0]] != 2, body, (0, jnp.zeros((), x.dtype)))[1]


def test_a_program_counter_becomes_a_distribution_over_the_instructions(x64):
    # pc is exact until the conditional jump: the loop is analysed again with pc (an exact
    # integer the loop changes at every step) carried as a distribution over its values, and
    # the jump target read from the float table is exact for each candidate.
    # One trace per mode: tracing the relaxed interpreter dominates this test.
    value_and_grad = jax.jit(jax.value_and_grad(sf.relax(_interpret, softness=TAU, max_steps=8)))
    st = jax.jit(sf.relax(_interpret, softness=TAU, max_steps=8, mode="straight_through"))
    for x in (-0.2, 0.15):
        x = jnp.float64(x)
        p = jax.nn.sigmoid(-x / TAU)
        value, grad = value_and_grad(x)
        np.testing.assert_allclose(value, (p * 1001 + (1 - p) * 11) * x, rtol=1e-12)
        step = 1e-6
        above, below = value_and_grad(x + step)[0], value_and_grad(x - step)[0]
        np.testing.assert_allclose(grad, (above - below) / (2 * step), rtol=1e-6)
        assert st(x) == _interpret(x)


def _longest_increasing_run(write):
    """The longest-increasing-subsequence DP on an integer table, each entry written with
    ``write(dp, i, value)``."""

    def length(x):
        dp = jnp.ones(x.shape[0], dtype=jnp.int32)
        for i in range(1, x.shape[0]):
            dp = write(dp, i, jnp.max(jnp.where(x[:i] < x[i], dp[:i] + 1, 1)))
        return jnp.max(dp)

    return length


INTEGER_WRITES = {
    "set": lambda dp, i, v: dp.at[i].set(v),
    "add": lambda dp, i, v: dp.at[i].add(v - 1),
    "update_slice": lambda dp, i, v: lax.dynamic_update_slice(dp, v[None].astype(dp.dtype), (i,)),
}


@pytest.mark.parametrize("write", INTEGER_WRITES.values(), ids=INTEGER_WRITES.keys())
def test_integers_known_by_their_expectation_are_written_at_exact_indices(write, x64):
    """An integer known only by its expected value (a maximum of integers chosen by relaxed
    comparisons) written at an exact index is the expectation written there: the program on an
    integer table relaxes as the same program on a float table."""
    x = jnp.array([0.3, -1.2, 2.4, 0.9, -0.6, 1.7, 0.05, 2.1])
    on_integers = sf.relax(_longest_increasing_run(write), softness=TAU)

    def on_floats(x):
        dp = jnp.ones(x.shape[0])
        for i in range(1, x.shape[0]):
            dp = dp.at[i].set(jnp.max(jnp.where(x[:i] < x[i], dp[:i] + 1.0, 1.0)))
        return jnp.max(dp)

    np.testing.assert_allclose(on_integers(x), sf.relax(on_floats, softness=TAU)(x), rtol=1e-12)
    np.testing.assert_allclose(
        jax.grad(on_integers)(x), _central_differences(on_integers, x), rtol=1e-6, atol=1e-9
    )
    exact = _longest_increasing_run(write)(x)
    assert sf.relax(_longest_increasing_run(write), softness=1e-9)(x) == exact


def test_an_infinite_element_that_no_candidate_reads_leaves_the_gradient_finite(x64):
    """``x[jnp.argmax(x)]`` of log-probabilities with a ``log 0``: the -inf element has
    probability 0, so it moves nothing; the gradient of the others is that of finite
    differences (it was NaN: 0 times -inf), in relax and in sf.take alike."""
    x = jnp.log(jnp.array([0.5, 0.0, 0.1, 0.3]))
    reads = {
        "relax": sf.relax(lambda x: x[jnp.argmax(x)], softness=TAU),
        "take": lambda x: sf.take(x, sf.argmax(x, softness=TAU)),
    }
    finite = jnp.array([0, 2, 3])
    for name, read in reads.items():

        def on_finite(v, read=read):
            return read(x.at[finite].set(v))

        grad = jax.grad(read)(x)
        assert grad[1] == 0, name
        np.testing.assert_allclose(
            grad[finite],
            _central_differences(on_finite, x[finite]),
            rtol=1e-6,
            atol=1e-9,
            err_msg=name,
        )


def test_two_infinite_cases_are_the_one_an_exact_condition_takes(x64):
    # At x = +inf the condition x < -1 is exactly false: the result is x * x = inf, not the
    # NaN of 0 * (-inf) + 1 * inf; opposite infinities under an uncertain condition stay NaN.
    def program(x):
        return jnp.where(x < -1.0, -x, x * x)

    x = jnp.array([jnp.inf, -jnp.inf, 0.3, -5.0])
    for softness in (TAU, 1e-6):
        np.testing.assert_array_equal(sf.relax(program, softness=softness)(x)[:2], program(x)[:2])
    both = sf.relax(lambda x: jnp.where(x > 0, x * jnp.inf, -x * jnp.inf), softness=TAU)
    assert np.isnan(both(jnp.float64(0.1)))


def union_find(w, t):
    """Kruskal's union-find with roots found by hops of parent[x]: every hop of a relaxed
    parent is a distribution over the others, and their joint outcomes multiply."""
    parent = jnp.arange(5)

    def find(x):
        for _ in range(4):
            x = parent[x]
        return x

    for k, (a, b) in enumerate([(0, 1), (1, 2), (2, 3)]):
        parent = jnp.where(w[k] < t, parent.at[find(a)].set(find(b)), parent)
    return jnp.sum(jnp.stack([find(i) for i in range(5)]) == jnp.arange(5))


def test_too_many_joint_outcomes_are_refused_with_the_line(x64):
    # Under jit they raised numpy's "iterator is too large" (or an MLIR error) from the merge.
    w, t = jnp.array([0.64, 0.27, 0.04]), jnp.float64(0.5)
    with pytest.raises(sf.RelaxError, match=r"joint outcomes, more than .*sf\.exact"):
        jax.jit(sf.relax(union_find, softness=TAU))(w, t)


def _ladder_where(k, a, b, c):
    return jnp.where(k == 0, a, jnp.where(k == 1, b, c))


def _ladder_if(k, a, b, c):
    if k == 0:
        r = a
    elif k == 1:
        r = b
    else:
        r = c
    return r


def _ladder_match(k, a, b, c):
    match k:
        case 0:
            r = a
        case 1:
            r = b
        case _:
            r = c
    return r


def _ladder_two_levels(k, a, b, c):
    return jnp.where(k <= 1, jnp.where(k == 0, a, b), c)


LADDERS = {
    "nested where": _ladder_where,
    "if elif else": _ladder_if,
    "match": _ladder_match,
    "where of a where": _ladder_two_levels,
    "jnp.select": lambda k, a, b, c: jnp.select([k == 0, k == 1], [a, b], c),
}
INTEGERS = {
    "argmax": lambda x: (jnp.argmax(x), sf.argmax(x, softness=TAU)),
    "count": lambda x: (jnp.sum(x > 0.5), sf.count_distribution(sf.greater(x, 0.5, softness=TAU))),
}


@pytest.mark.parametrize("integer", INTEGERS.values(), ids=INTEGERS.keys())
@pytest.mark.parametrize("ladder", LADDERS.values(), ids=LADDERS.keys())
def test_cases_chosen_by_one_relaxed_integer_are_weighed_by_its_law(ladder, integer, x64):
    # Each case with the probability of its value, as lax.switch / table[k] have it: the cases
    # of one integer are exclusive, not independent events.
    x = jnp.array([0.4, 0.6, 0.55, 0.2, 0.1])
    a, b, c = jnp.array(10.0), jnp.array(20.0), jnp.array(-3.0)

    def program(x, a, b, c):
        return ladder(integer(x)[0], a, b, c)

    relaxed = sf.relax(program, softness=TAU)
    law = integer(x)[1]
    want = law[0] * a + law[1] * b + (1 - law[0] - law[1]) * c
    np.testing.assert_allclose(relaxed(x, a, b, c), want, rtol=1e-12)
    # The gradient in the cases is their probabilities; in x, finite differences'.
    np.testing.assert_allclose(
        jax.grad(relaxed, (1, 2, 3))(x, a, b, c), [law[0], law[1], 1 - law[0] - law[1]], rtol=1e-12
    )
    d = jax.random.normal(jax.random.key(0), x.shape, jnp.float64)
    slope = jnp.vdot(jax.grad(relaxed)(x, a, b, c), d)
    h = 1e-6
    fd = (relaxed(x + h * d, a, b, c) - relaxed(x - h * d, a, b, c)) / (2 * h)
    np.testing.assert_allclose(slope, fd, rtol=1e-6)
    np.testing.assert_array_equal(sf.relax(program, mode="hard")(x, a, b, c), program(x, a, b, c))


def _above(a, b, softness):
    return sf.greater_equal(a, b, softness=softness)


BOUNDED = {
    # jnp.clip(x, lo, hi) is min(max(x, lo), hi): compared with hi, max(x, lo) is.
    "clip(x, lo, hi) >= hi": (
        lambda x, lo, hi: jnp.clip(x, lo, hi) >= hi,
        lambda x, lo, hi, s: _above(jnp.maximum(x, lo), hi, s),
    ),
    "hi == clip(x, lo, hi)": (
        lambda x, lo, hi: hi == jnp.clip(x, lo, hi),
        lambda x, lo, hi, s: _above(jnp.maximum(x, lo), hi, s),
    ),
    "minimum(x, hi) < hi": (
        lambda x, lo, hi: jnp.minimum(x, hi) < hi,
        lambda x, lo, hi, s: sf.less(x, hi, softness=s),
    ),
    "maximum(x, lo) <= lo": (
        lambda x, lo, hi: jnp.maximum(x, lo) <= lo,
        lambda x, lo, hi, s: sf.less_equal(x, lo, softness=s),
    ),
    # Both: max(x, lo) > lo (x > lo) and hi > lo.
    "clip(x, lo, hi) > lo": (
        lambda x, lo, hi: jnp.clip(x, lo, hi) > lo,
        lambda x, lo, hi, s: sf.greater(x, lo, softness=s) * sf.greater(hi, lo, softness=s),
    ),
}


@pytest.mark.parametrize("program, reference", BOUNDED.values(), ids=BOUNDED.keys())
def test_a_min_or_max_compared_with_its_own_traced_operand(program, reference, x64):
    # A saturated clip equals its bound: compared softly with it, 1/2 at every softness. The
    # comparison is the one of the operands of the min / max with the bound, which it equals.
    x = jnp.array([1.7, 0.3, -2.0, 0.999])
    lo, hi = jnp.array(-1.0), jnp.array(1.0)
    for softness in (0.5, 1e-9):
        got = sf.relax(program, softness=softness)(x, lo, hi)
        np.testing.assert_allclose(got, reference(x, lo, hi, softness), rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(
        sf.relax(program, softness=1e-9)(x, lo, hi) > 0.5, program(x, lo, hi)
    )
    np.testing.assert_array_equal(sf.relax(program, mode="hard")(x, lo, hi), program(x, lo, hi))
    grads = jax.grad(lambda *a: jnp.sum(sf.relax(program, softness=0.5)(*a)), (0, 1, 2))(x, lo, hi)
    want = jax.grad(lambda *a: jnp.sum(reference(*a, 0.5)), (0, 1, 2))(x, lo, hi)
    for g, w in zip(grads, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-300)


@jax.custom_jvp
def _clip_with_own_derivative(v):
    return jnp.clip(v, 0.0, 1.0)


_clip_with_own_derivative.defjvp(lambda p, t: jax.jvp(lambda v: jnp.clip(v, 0.0, 1.0), p, t))

WRAPPED_CLIPS = {
    # jax.nn.relu / relu6 are custom_jvp functions: their clip was lost at their boundary.
    "relu(x - t) > 0": (lambda v: jax.nn.relu(v) > 0, lambda v, s: sf.greater(v, 0.0, softness=s)),
    "relu6(x - t) >= 6": (
        lambda v: jax.nn.relu6(v) >= 6,
        lambda v, s: sf.greater_equal(v, 6.0, softness=s),
    ),
    "checkpoint(clip)(x - t) >= 1": (
        lambda v: jax.checkpoint(lambda u: jnp.clip(u, 0.0, 1.0))(v) >= 1,
        lambda v, s: sf.greater_equal(v, 1.0, softness=s),
    ),
    "custom_jvp clip(x - t) >= 1": (
        lambda v: _clip_with_own_derivative(v) >= 1,
        lambda v, s: sf.greater_equal(v, 1.0, softness=s),
    ),
    # A clip mapped by constants afterwards: hard_sigmoid is relu6(x + 3) / 6.
    "hard_sigmoid(x - t) >= 1": (
        lambda v: jax.nn.hard_sigmoid(v) >= 1,
        lambda v, s: sf.greater_equal((v + 3.0) / 6.0, 1.0, softness=s),
    ),
    "1 - clip(x - t) <= 0": (
        lambda v: 1.0 - jnp.clip(v, 0.0, 1.0) <= 0,
        lambda v, s: sf.less_equal(1.0 - v, 0.0, softness=s),
    ),
    "-2 relu(x - t) < 0": (
        lambda v: -2.0 * jax.nn.relu(v) < 0,
        lambda v, s: sf.less(-2.0 * v, 0.0, softness=s),
    ),
    # A clip written as a select by a comparison with the bound.
    "where(x - t > 1, 1, x - t) >= 1": (
        lambda v: jnp.where(v > 1.0, 1.0, v) >= 1,
        lambda v, s: sf.greater_equal(v, 1.0, softness=s),
    ),
    "hard_tanh(x - t) <= -1": (
        lambda v: jax.nn.hard_tanh(v) <= -1,
        lambda v, s: sf.less_equal(v, -1.0, softness=s),
    ),
    "where(0 > x - t, 0, x - t) > 0": (
        lambda v: jnp.where(0.0 > v, 0.0, v) > 0,  # noqa: SIM300 (the bound first)
        lambda v, s: sf.greater(v, 0.0, softness=s),
    ),
}


@pytest.mark.parametrize("test, reference", WRAPPED_CLIPS.values(), ids=WRAPPED_CLIPS.keys())
def test_a_clip_inside_a_function_call_is_compared_as_a_clip(test, reference, x64):
    # Where the clip saturates its result equals the bound: compared softly, 1/2 at every
    # softness, with no gradient in t. It is the comparison of what was clipped.
    x = jnp.array([-3.0, 0.3, 0.9, 7.5, 0.5])
    t = jnp.array(0.4)

    def program(x, t):
        return jnp.where(test(x - t), 1.0, 0.0)

    for softness in (0.5, 1e-9):
        got = sf.relax(program, softness=softness)(x, t)
        np.testing.assert_allclose(got, reference(x - t, softness), rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(sf.relax(program, mode="hard")(x, t), program(x, t))
    grad = jax.grad(lambda t: jnp.sum(sf.relax(program, softness=0.5)(x, t)))(t)
    want = jax.grad(lambda t: jnp.sum(reference(x - t, 0.5)))(t)
    np.testing.assert_allclose(grad, want, rtol=1e-12)


def _saturated(u):
    # A controller's saturation, as Python code writes it.
    if u > 2.0:
        u = 2.0
    return jnp.where(u >= 2.0, 1.0, 0.0)


def test_a_python_if_that_clips_is_compared_as_a_clip(x64):
    # The relaxed `if` blends the limit and u; compared with the limit, the blend was 1/2 at
    # every saturated u, at every softness.
    for softness in (0.3, 1e-9):
        relaxed = sf.relax(_saturated, softness=softness)
        for u in (-1.0, 1.7, 2.4, 7.5):
            want = sf.greater_equal(jnp.asarray(u), 2.0, softness=softness)
            np.testing.assert_allclose(relaxed(jnp.asarray(u)), want, rtol=1e-12)
    grad = jax.grad(sf.relax(_saturated, softness=0.3))(jnp.asarray(2.4))
    want = jax.grad(lambda u: sf.greater_equal(u, 2.0, softness=0.3))(jnp.asarray(2.4))
    np.testing.assert_allclose(grad, want, rtol=1e-12)


def second_pick(d):
    first = jnp.argmin(d)
    masked = jnp.where(jnp.arange(d.shape[0]) == first, jnp.inf, d)
    return jnp.argmin(masked) * 1.0


def test_a_greedy_second_pick_is_per_outcome_of_the_first(x64):
    # The masked element, present with the small probability that the first pick is elsewhere,
    # tied with the element that then wins: 1/2 at gaps of 20 softness units (exact 0).
    d = jnp.array([2.6, 2.5, 9.0, 3.1])
    softness = 0.05
    first = sf.argmin(d, softness=softness)
    masked = jnp.where(jnp.eye(4, dtype=bool), jnp.inf, d)  # row j: j masked
    second = jax.vmap(lambda row: sf.argmin(row, softness=softness))(masked)
    want = jnp.sum(first[:, None] * second * jnp.arange(4.0))
    relaxed = sf.relax(second_pick, softness=softness)
    np.testing.assert_allclose(relaxed(d), want, rtol=1e-10)
    grad = jax.grad(relaxed)(d)
    h = 1e-6
    direction = jnp.array([0.3, -0.2, 0.5, 0.1])
    fd = (relaxed(d + h * direction) - relaxed(d - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.dot(grad, direction), fd, rtol=1e-5)
    for gap in (0.5, 1.0):  # the second pick is index 0 but where the first one is
        far = jnp.array([2.5 + gap, 2.5, 9.0])
        assert sf.relax(second_pick, softness=softness)(far) < 1e-3
    np.testing.assert_array_equal(sf.relax(second_pick, mode="hard")(d), second_pick(d))


def _greedy_matching(weights):
    n = weights.shape[0]
    total, left = 0.0, weights
    for _ in range(n):
        best = jnp.argmax(left)  # (of the matrix read flat)
        i, j = best // n, best % n
        total = total + weights[i, j]
        left = left.at[i, :].set(-jnp.inf).at[:, j].set(-jnp.inf)
    return total


def test_a_greedy_pick_of_a_masked_matrix_read_flat_is_exact_in_the_hard_limit(x64):
    # jnp.argmax of a matrix reshapes it first: the masks of the rows and columns taken before
    # were lost on the way, and taken entries tied with the next ones (3.71 for 3.38 at 1e-3).
    weights = jnp.asarray(np.random.RandomState(0).rand(4, 4))
    exact = _greedy_matching(weights)
    for softness in (1e-3, 3e-4):
        np.testing.assert_allclose(
            sf.relax(_greedy_matching, softness=softness)(weights), exact, rtol=1e-9
        )
    relaxed = jax.jit(sf.relax(_greedy_matching, softness=0.1))
    np.testing.assert_allclose(
        jax.grad(relaxed)(weights).ravel(),
        _central_differences(lambda w: relaxed(w.reshape(4, 4)), weights.ravel()),
        rtol=1e-6,
        atol=1e-9,
    )
