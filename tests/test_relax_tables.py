"""sf.relax of lookup-table programs: an elementary cellular automaton written as public code
writes it (0/1 cells, neighbours by ``jnp.roll``, the next row read from an 8-entry rule table),
one step and many, in a Python loop and in ``lax.scan``. References: enumeration of every row
weighted by its probability, and the probabilistic automaton written with NumPy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal
from jax import lax

import softflow as sf

TAU = 0.4


def rule_table(number: int) -> np.ndarray:
    """Wolfram's numbering: entry ``4 * left + 2 * centre + right`` is bit of ``number``."""
    return np.array([(number >> k) & 1 for k in range(8)], np.int32)


def ca_step(row, table):
    left, right = jnp.roll(row, 1), jnp.roll(row, -1)
    return table[4 * left + 2 * row + right]


def automaton(number: int, steps: int, *, loop: str):
    """The rows after ``steps`` steps of the rule from the row ``x > 0``: the last one after a
    Python loop (``loop="python"``), all of them from ``lax.scan`` (``loop="scan"``)."""
    table = jnp.asarray(rule_table(number))

    def unrolled(x):
        row = (x > 0).astype(jnp.int32)
        for _ in range(steps):
            row = ca_step(row, table)
        return row

    def scanned(x):
        def body(row, _):
            row = ca_step(row, table)
            return row, row

        return lax.scan(body, (x > 0).astype(jnp.int32), None, length=steps)[1]

    return {"python": unrolled, "scan": scanned}[loop]


def mean_field(p, table, steps):
    """The automaton on probabilities, each cell independent of the others at every step
    (written with jnp so that it can be differentiated, independently of relax)."""
    rows = []
    for _ in range(steps):
        left, right = jnp.roll(p, 1), jnp.roll(p, -1)
        p = sum(
            table[4 * a + 2 * b + c]
            * jnp.where(a, left, 1 - left)
            * jnp.where(b, p, 1 - p)
            * jnp.where(c, right, 1 - right)
            for a, b, c in itertools.product((0, 1), repeat=3)
        )
        rows.append(p)
    return jnp.stack(rows)


@pytest.mark.parametrize("number", [30, 110])
def test_one_step_is_the_probability_over_every_initial_row(number, x64):
    # The cells of the first row are independent coins P(x_i > 0) = s(x_i / tau); one step of
    # the relaxed program must give the exact probability that each next cell is 1, found here
    # by enumerating all 2**n rows (a roll of the row concatenates pieces of different sizes).
    table = rule_table(number)
    x = jnp.asarray(np.random.default_rng(number).normal(size=7))
    p = np.asarray(jax.nn.sigmoid(x / TAU))
    rows = np.array(list(itertools.product((0, 1), repeat=7)))
    weight = np.prod(np.where(rows == 1, p, 1 - p), axis=1)
    nxt = np.stack([np.asarray(ca_step(jnp.asarray(r), jnp.asarray(table))) for r in rows])
    expected = weight @ nxt
    program = automaton(number, 1, loop="python")
    relaxed = sf.relax(program, softness=TAU)
    np.testing.assert_allclose(relaxed(x), expected, rtol=1e-12)
    assert_exactly_equal(sf.relax(program, mode="hard")(x), program(x))
    # straight-through: the exact values, as floats (the probability, one-hot) for a gradient
    straight = sf.relax(program, softness=TAU, mode="straight_through")(x)
    assert_exactly_equal(straight, program(x).astype(jnp.float64))
    rules = {(op.primitive, op.rule) for op in relaxed.explain(x)}
    assert rules == {
        ("gt", "sf.greater"),
        ("add", "exact distribution of the result, over the joint outcomes of its terms"),
        ("gather", "read at each candidate index (expectation)"),
    }


def largest_array(jaxpr) -> int:
    """The number of elements of the largest value computed in ``jaxpr`` or its sub-jaxprs."""
    largest = 0
    for eqn in jaxpr.eqns:
        largest = max([largest, *(np.prod(v.aval.shape, dtype=int) for v in eqn.outvars)])
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    largest = max(largest, largest_array(inner))
    return largest


def assert_candidates_bounded(max_steps: int) -> None:
    """The relaxed automaton's largest array is the same after 2 steps as after ``max_steps``,
    at most 8 candidates of each of 9 cells of 8 neighbourhoods. Checked step by step, so that a
    regression fails at 2 steps, before it runs out of memory."""
    x = jnp.zeros(9)
    sizes = []
    for steps in range(1, max_steps + 1):
        relaxed = sf.relax(automaton(30, steps, loop="python"))
        sizes.append(largest_array(jax.make_jaxpr(relaxed)(x).jaxpr))
        assert sizes[-1] <= 9 * 8 * 8, sizes
    assert sizes[1:] == sizes[-1:] * (max_steps - 1), sizes


def test_a_chain_of_lookups_does_not_multiply_the_candidates():
    # Each step joins three independent relaxed cells; without merging the candidates of equal
    # value after a lookup, step t would hold 8 ** (3 ** (t - 1)) candidates per cell.
    assert_candidates_bounded(max_steps=5)


@pytest.mark.parametrize("loop", ["python", "scan"])
def test_many_steps_are_the_probabilistic_automaton(loop, x64):
    # Python loop: each lookup's candidates of equal value are merged before the next step
    # joins three of them (8, not 8**3, 8**9, ... candidates). lax.scan: the row crosses the loop
    # as a distribution over {0, 1}, the values of the rule table.
    steps = 6
    if loop == "python":  # a cheap check first: without it a regression runs out of memory
        assert_candidates_bounded(max_steps=2)
    program = automaton(30, steps, loop=loop)
    x = jnp.asarray(np.random.default_rng(1).normal(size=9))

    def reference(x):
        rows = mean_field(jax.nn.sigmoid(x / TAU), rule_table(30), steps)
        return rows[-1] if loop == "python" else rows

    relaxed = sf.relax(program, softness=TAU)
    np.testing.assert_allclose(relaxed(x), reference(x), rtol=1e-12)
    assert_exactly_equal(sf.relax(program, mode="hard")(x), program(x))
    weights = jnp.asarray(np.random.default_rng(2).normal(size=reference(x).shape))
    grad = jax.grad(lambda x: jnp.sum(weights * relaxed(x)))(x)
    expected = jax.grad(lambda x: jnp.sum(weights * reference(x)))(x)
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-14)
    assert np.all(grad != 0)


def test_values_of_one_outcome_stay_joint_next_to_an_independent_one(x64):
    # u and v are made from the same relaxed integer k: one outcome, combined candidate by
    # candidate. Next to an independent w, the candidates of k's values must not be merged value
    # by value (that would make u and v independent): the result is the expectation over the
    # 2**4 outcomes of the three cells and w.
    def program(x, y):
        cells = (x > 0).astype(jnp.int32)
        k = 4 * cells[0] + 2 * cells[1] + cells[2]
        w = 3 * (y > 0).astype(jnp.int32)
        return lax.clamp(k % 3, w, k // 2)

    x, y = jnp.array([0.3, -0.2, 0.1]), jnp.array(0.05)
    p = np.asarray(jax.nn.sigmoid(jnp.append(x, y) / TAU))
    outcomes = np.array(list(itertools.product((0, 1), repeat=4)))
    weight = np.prod(np.where(outcomes == 1, p, 1 - p), axis=1)
    values = np.array([program(jnp.asarray(2.0 * o[:3] - 1), 2.0 * o[3] - 1) for o in outcomes])
    np.testing.assert_allclose(sf.relax(program, softness=TAU)(x, y), weight @ values, rtol=1e-12)
    # k % 3 and k // 2 drawn independently would give another value: the test can tell.
    k = outcomes[:, :3] @ np.array([4, 2, 1])
    u_law = [weight[k % 3 == a].sum() for a in range(3)]
    v_law = [weight[k // 2 == b].sum() for b in range(4)]
    w_law = [1 - p[3], p[3]]
    independent = sum(
        u_law[a] * v_law[b] * w_law[c] * min(max(3 * c, a), b)
        for a in range(3)
        for b in range(4)
        for c in range(2)
    )
    assert abs(independent - weight @ values) > 1e-3
