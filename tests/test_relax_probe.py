"""sf.relax on idioms a hostile probe ported from public code found wrong, crashing or refused
unclearly: each test states the exact program's answer or an independent reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import present_winners
from jax import lax

import softflow as sf

TAU = 0.2


def _central_differences(f, x, step=1e-6):
    # One jitted call over all the bumps: an eager relaxed program runs op by op.
    x = jnp.asarray(x)
    basis = jnp.eye(x.size, dtype=x.dtype).reshape(x.size, *x.shape)
    ends = jax.jit(jax.vmap(lambda e: f(x + step * e) - f(x - step * e)))(basis)
    return np.asarray(ends) / (2 * step)


def test_an_integer_state_driven_by_constant_inputs_of_a_scan(x64):
    # The scan's xs are constants: every step reads its own slice, so the range of the stock is
    # found from all of them (it was found from the first one, and the mass of the others lost).
    demand = jnp.asarray([0, 1, 3, 2], jnp.int32)

    def restock(level):
        def step(stock, d):
            stock = jnp.where(stock < level, 8, stock) - d
            return stock, stock

        return lax.scan(step, 5, demand)[1]

    level = jnp.float64(4.4)
    exact = restock(level).astype(jnp.float64)
    for mode, softness in (("soft", 1e-6), ("straight_through", TAU)):
        relaxed = sf.relax(restock, softness=softness, mode=mode)
        np.testing.assert_allclose(relaxed(level), exact, atol=1e-9)


def test_an_expected_integer_compares_at_the_half_integer(x64):
    # An unbounded queue is carried by its expected length; q > 0 at E[q] = 0 is False, not 1/2.
    uv = jnp.asarray([[0.2, 0.3], [0.9, 0.1], [0.3, 0.9], [0.1, 0.2]])

    def queue(p):
        def step(q, u):
            serve = ((q > 0) & (u[1] < 0.4)).astype(jnp.int32)
            q = q + (u[0] < p).astype(jnp.int32) - serve
            return q, q

        return lax.scan(step, 0, uv)[1]

    p = jnp.float64(0.5)
    exact = queue(p).astype(jnp.float64)
    np.testing.assert_allclose(sf.relax(queue, softness=1e-6)(p), exact, atol=1e-9)


def test_argmax_of_tied_counts_picks_the_first_as_jnp(x64):
    def pw(x):
        return jnp.piecewise(
            x, [x < -0.5, x > 0.5], [lambda v: -v, jnp.square, lambda v: 0.25 + 0 * v]
        )

    x = jnp.asarray([0.0, 1.5, -1.3, 2.0, 0.1])
    np.testing.assert_allclose(sf.relax(pw, softness=1e-6)(x), pw(x), atol=1e-9)
    relaxed = jax.jit(sf.relax(lambda x: jnp.sum(pw(x)), softness=TAU))
    np.testing.assert_allclose(
        jax.jit(jax.grad(relaxed))(x), _central_differences(relaxed, x), rtol=1e-5, atol=1e-8
    )


def test_vmap_of_a_cond_differentiates_through_both_branches(x64):
    def per_example(x):
        return lax.cond(x < 0, lambda v: -v, lambda v: v**2, x)

    x = jnp.asarray([-0.03, 0.5])
    batched = jax.jit(sf.relax(lambda x: jnp.sum(jax.vmap(per_example)(x)), softness=0.1))
    looped = jax.jit(sf.relax(lambda x: per_example(x[0]) + per_example(x[1]), softness=0.1))
    np.testing.assert_allclose(batched(x), looped(x), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(batched)(x), jax.grad(looped)(x), rtol=1e-10)
    np.testing.assert_allclose(
        jax.jit(jax.grad(batched))(x), _central_differences(batched, x), rtol=1e-6
    )


def weighted(fn, x):
    return fn(x).ravel() @ jnp.arange(1.0, 7.0)


@pytest.mark.parametrize(
    "program",
    [
        lambda x: (x >= jnp.max(x)).astype(x.dtype),
        lambda x: (x >= lax.cummax(x)).astype(x.dtype),
        lambda x: (jnp.min(x) < x).astype(x.dtype),
        lambda x: (x < lax.top_k(x, 3)[0][-1]).astype(x.dtype),
        lambda x: (x >= jnp.sort(x)[-2]).astype(x.dtype),
        lambda x: (jnp.sort(x)[0] < x).astype(x.dtype),
        lambda x: (x > jnp.median(x[1:])).astype(x.dtype),
        lambda x: (x <= jnp.quantile(x, 0.4)).astype(x.dtype),
        lambda x: (x < jnp.percentile(x, 60.0, method="nearest")).astype(x.dtype),
        lambda x: (x.reshape(2, 3) >= jnp.median(x.reshape(2, 3), axis=1, keepdims=True)).astype(
            x.dtype
        ),
    ],
    ids=[
        "max",
        "cummax",
        "min",
        "top_k",
        "sort",
        "sort_min",
        "median",
        "quantile",
        "nearest",
        "rows",
    ],
)
def test_a_value_compared_with_an_order_statistic_of_itself(x64, program):
    # The maximum is one of the elements: comparing it with itself is exact, not 1/2.
    for x in ([0.3, -1.0, 0.8, 1.5, 0.1, 0.7], [0.3, -np.inf, 0.8, np.inf, 0.1, 0.7]):
        x = jnp.asarray(x)
        np.testing.assert_allclose(sf.relax(program, softness=1e-6)(x), program(x), atol=1e-9)
        # Under jit too: the position a quantile reads is computed from constants (q (n - 1),
        # its floor), which were traced there, so the element read was not known (1/2).
        np.testing.assert_allclose(
            jax.jit(sf.relax(program, softness=1e-6))(x), program(x), atol=1e-9
        )
        assert sf.relax(program, mode="straight_through", softness=TAU)(x).tolist() == (
            program(x).tolist()
        )
        grad = jax.grad(weighted, argnums=1)(sf.relax(program, softness=TAU), x)
        assert np.all(np.isfinite(grad[np.isfinite(x)]))


def test_an_order_statistic_read_at_an_index_known_only_under_jit():
    # A quantile at a traced q reads at a position not known at trace time, and the comparison
    # with it crashed (a traced truth value in Python's `if`).
    def below(x, q):
        return (x <= jnp.quantile(x, q, method="lower")).astype(x.dtype)

    x, q = jnp.asarray([0.3, -1.0, 0.8, 1.5, 0.1, 0.7, -0.2]), jnp.float32(0.5)
    for mode in ("hard", "straight_through"):
        relaxed = jax.jit(sf.relax(below, softness=TAU, mode=mode))
        assert relaxed(x, q).tolist() == below(x, q).tolist()
    assert np.all(np.isfinite(jax.jit(sf.relax(below, softness=TAU))(x, q)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_an_argmax_of_values_masked_with_nan_has_the_gradient_of_the_inf_mask(dtype):
    # jnp.nanargmax gives a NaN the value -inf: an outcome of probability 0 (the value kept
    # for certain) was still in the product 0 * -inf of an unused branch, and its gradient was
    # NaN once the softness was small enough for the probability to underflow.
    def best_valid(x):
        return x[jnp.nanargmax(jnp.where(x > 0.5, jnp.nan, x))]

    def best_valid_inf(x):
        return x[jnp.argmax(jnp.where(x > 0.5, -jnp.inf, x))]

    with jax.enable_x64(dtype == jnp.float64):
        x = jnp.asarray([1.76, 0.40, 0.98, 2.24, 1.87, -0.98], dtype)
        for softness in (1e-2, 1e-3, 1e-4):
            grad = jax.grad(sf.relax(best_valid, softness=softness))(x)
            reference = jax.grad(sf.relax(best_valid_inf, softness=softness))(x)
            assert np.all(np.isfinite(grad))
            np.testing.assert_allclose(grad, reference, rtol=1e-6, atol=1e-30)


def test_a_mask_above_the_median_has_the_gradient_of_its_mixture(x64):
    # The median is one of the elements, each with SoftSort's probability of being the middle
    # one: the mask is the expectation over which one it is, its own element exact.
    def above(x):
        return jnp.sum(jnp.where(x > jnp.median(x), x, 0.0))

    x = jnp.asarray([0.3, -1.0, 0.8, 1.5, 0.1])
    relaxed = jax.jit(sf.relax(above, softness=TAU))
    grad = jax.jit(jax.grad(relaxed))(x)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    np.testing.assert_allclose(grad, _central_differences(relaxed, x), rtol=1e-5, atol=1e-8)
    batch = jnp.stack([x, -x, x[::-1]])
    np.testing.assert_allclose(jax.vmap(relaxed)(batch), [relaxed(b) for b in batch], rtol=1e-12)


def test_a_large_finite_sentinel_masks_with_the_probability_of_its_condition(x64):
    def top_k_mask(logits):
        kth = lax.top_k(logits, 3)[0][-1]
        return jax.nn.softmax(jnp.where(logits < kth, -1e9, logits))

    x = jnp.asarray([0.3, -1.0, 0.8, 1.5, 0.1, 0.7])
    relaxed = jax.jit(sf.relax(lambda x: top_k_mask(x) @ jnp.arange(6.0), softness=TAU))
    np.testing.assert_allclose(sf.relax(top_k_mask, softness=1e-6)(x), top_k_mask(x), atol=1e-9)
    grad = jax.jit(jax.grad(relaxed))(x)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    np.testing.assert_allclose(grad, _central_differences(relaxed, x), rtol=1e-5, atol=1e-8)

    # The masked logit is the log of its expected weight at softness tau: the logit with
    # probability q of being kept, -1e9 otherwise.
    def masked(x, keep):
        return jnp.where(keep > 0, x, -1e9)

    keep = jnp.asarray([0.1, -0.3, 0.05, 0.4, -0.2, 0.0])
    q = jax.nn.sigmoid(keep / TAU)
    expected = TAU * jnp.log(q * jnp.exp(x / TAU) + (1 - q) * jnp.exp(-1e9 / TAU))
    np.testing.assert_allclose(sf.relax(masked, softness=TAU)(x, keep), expected, rtol=1e-12)


def test_values_used_only_under_stop_gradient_stay_exact(x64):
    def straight_through_round(x):
        return x + lax.stop_gradient(jnp.round(x) - x)

    x = jnp.asarray([0.2, 0.4, 1.7])
    relaxed = sf.relax(straight_through_round, softness=TAU)
    assert relaxed(x).tolist() == straight_through_round(x).tolist()
    assert jax.grad(lambda x: relaxed(x).sum())(x).tolist() == [1.0, 1.0, 1.0]


def test_a_key_made_inside_the_relaxed_function(x64):
    def noisy_step(x):
        noise = jax.random.normal(jax.random.key(0), x.shape)
        return jnp.where(x + 0.1 * noise > 0, x, -x)

    x = jnp.asarray([0.5, -0.2, 0.01])
    np.testing.assert_allclose(sf.relax(noisy_step, softness=1e-6)(x), noisy_step(x), atol=1e-9)


def test_a_python_loop_whose_unused_value_comes_out_of_a_relaxed_branch(x64):
    def early_stop(losses):
        best = losses[0]
        wait = 0
        for t in range(1, 6):
            if losses[t] < best:
                best = losses[t]
            else:
                wait = wait + 1
            if wait >= 2:
                break
        return best

    x = jnp.asarray([1.0, 0.9, 0.95, 0.97, 0.8, 0.99])
    assert sf.relax(early_stop, softness=1e-4)(x) == pytest.approx(float(early_stop(x)), abs=1e-6)


@pytest.mark.parametrize(
    ("program", "words"),
    [
        (
            lambda x: (
                jnp.zeros((x.shape[0], 2))
                .at[jnp.sum(x[None, :] < x[:, None], axis=1)]
                .set(jnp.stack([x, -x], axis=1))
            ),
            "several relaxed indices",
        ),
        (lambda x: jnp.unique(x, size=3, fill_value=99.0), "known only by its expected value"),
        (
            lambda x: jnp.ones(3).at[jnp.floor(x + 1).astype(jnp.int32)].multiply(x),
            "its indices are relaxed integers",
        ),
        (
            jax.vmap(lambda a: lax.while_loop(lambda v: v < a, lambda v: v + 0.5, 0.0)),
            "batch of truth values",
        ),
        (
            lambda x: (
                jnp.zeros(4).at[jnp.cumsum(jnp.clip(jnp.floor(3 * x).astype(int), 0, 2))].add(1)
            ),
            "scatter-add.*its index is an integer known only by its expected value",
        ),
    ],
    ids=["scatter-set-of-ranks", "unique", "scatter-multiply", "vmapped-while", "index-cumsum"],
)
def test_refusals_name_what_is_relaxed(program, words):
    with pytest.raises(sf.RelaxError, match=words) as error:
        sf.relax(program, softness=TAU, max_steps=8)(jnp.asarray([0.3, -1.0, 0.8]))
    assert "test_relax_probe.py" in str(error.value)


def test_a_mode_set_from_the_state_reads_a_float_table_in_a_scan(x64):
    # The mode's candidates are not known at trace time in the loop's analysis: reading the
    # table at them once converted a tracer to NumPy (a TracerArrayConversionError).
    def thermostat(u):
        def step(carry, ui):
            m, y = carry
            m = jnp.where(y > 1.0, 0, jnp.where(y < 0.5, 1, m))
            y = y + jnp.array([-0.3, 0.4])[m] * ui
            return (m, y), y

        return jnp.sum(lax.scan(step, (0, 0.2), u)[1])

    u = jnp.array([0.2, 0.9, 0.4, 1.3, 0.1, 0.6])
    relaxed = jax.jit(sf.relax(thermostat, softness=TAU))
    np.testing.assert_allclose(
        jax.jit(jax.grad(relaxed))(u), _central_differences(relaxed, u), rtol=1e-5, atol=1e-8
    )
    tiny = sf.relax(thermostat, softness=1e-6)(u)
    np.testing.assert_allclose(tiny, thermostat(u), atol=1e-9)


def test_a_clipped_mode_fed_back_from_the_state_chooses_a_branch(x64):
    # A hybrid system: the mode (clipped to 0..2) moves with the state that its branch computes.
    # Its first step is known at trace time through nested jits (jnp.where, jnp.clip), so the
    # loop carries it as a distribution over 0..2 (it was refused as an expected integer).
    def hybrid(u):
        def step(carry, ui):
            m, y = carry
            m = jnp.clip(m + jnp.where(ui > 0.5, 1, 0) - jnp.where(y > 1.0, 1, 0), 0, 2)
            branches = [lambda y: y * 0.5, lambda y: y + ui, lambda y: y - 0.3 * ui]
            y = lax.switch(m, branches, y)
            return (m, y), y

        (m, _), ys = lax.scan(step, (0, 0.2), u)
        return jnp.sum(ys) + m

    # (No state meets the threshold 1.0 exactly, where the soft comparison is 1/2.)
    u = jnp.array([0.25, 0.85, 0.4, 1.3, 0.15, 0.6])
    relaxed = jax.jit(sf.relax(hybrid, softness=TAU))
    np.testing.assert_allclose(
        jax.jit(jax.grad(relaxed))(u), _central_differences(relaxed, u), rtol=1e-5, atol=1e-8
    )
    np.testing.assert_allclose(sf.relax(hybrid, softness=1e-6)(u), hybrid(u), atol=1e-9)


def _staircase_probs(x, jumps, tau):
    """P(floor(x) = k) for k = jumps[0] - 1, ..., jumps[-1] (logistic steps at ``jumps``)."""
    tails = jax.nn.sigmoid((x - jumps) / tau)  # P(value >= jump)
    upper = jnp.concatenate([jnp.ones(1), tails])
    lower = jnp.concatenate([tails, jnp.zeros(1)])
    return upper - lower


@pytest.mark.parametrize(
    ("program", "on_integer"),
    [
        (lambda f: (f >= 11.0).astype(f.dtype), lambda k: float(k >= 11)),
        (lambda f: f % 2, lambda k: float(k % 2)),
        (lambda f: jnp.floor(f / 2), lambda k: float(np.floor(k / 2))),
        (lambda f: jnp.fmod(f, 3.0) == 1.0, lambda k: float(np.fmod(k, 3) == 1)),
    ],
    ids=["compare", "floor-mod", "floor-again", "fmod-equal"],
)
def test_what_follows_a_relaxed_floor_acts_on_each_integer(program, on_integer, x64):
    # jnp.floor(x) is an integer for each outcome: comparing it, taking its remainder or
    # flooring it again acts on each integer with its probability (it was a soft step at the
    # integer itself: 1/2 at every softness).
    def fn(x):
        return program(jnp.floor(x))

    relaxed = sf.relax(fn, softness=TAU)
    for x in (10.6, 11.45, 12.2, 9.3):
        jumps = jnp.arange(np.floor(x) - 5, np.floor(x) + 7)
        probs = _staircase_probs(jnp.float64(x), jumps, TAU)
        values = np.array([on_integer(k) for k in np.arange(jumps[0] - 1, jumps[-1] + 1)])
        np.testing.assert_allclose(relaxed(jnp.float64(x)), probs @ values, atol=1e-12)
        assert sf.relax(fn, softness=1e-6)(jnp.float64(x)) == fn(x)
        assert sf.relax(fn, softness=TAU, mode="straight_through")(jnp.float64(x)) == fn(x)


def test_a_select_of_an_expected_integer_by_a_relaxed_condition(x64):
    # A digit accumulator reset by a relaxed digit: the carry is unbounded (an expected value)
    # and selected by a relaxed truth value; it crashed with a TypeError.
    def accumulated(d, dtype):
        def step(value, digit):
            return jnp.where(digit == 0, 0, value * 10 + digit), None

        return lax.scan(step, jnp.int32(0), d)[0].astype(dtype)

    def digits(x):
        return accumulated(jnp.clip(jnp.round(x), 0, 9).astype(jnp.int32), x.dtype)

    def unclipped_digits(x):
        return accumulated(jnp.round(x).astype(jnp.int32), x.dtype)

    x = jnp.asarray([3.2, 1.6, 0.4, 7.8])
    assert sf.relax(digits, softness=1e-6)(x) == digits(x)
    relaxed = sf.relax(digits, softness=TAU)
    # The same relaxation under jit as on concrete values: each digit a distribution with or
    # without a static range (under jit, an unclipped digit was only its expected value).
    unclipped = sf.relax(unclipped_digits, softness=TAU)
    for fn in (relaxed, unclipped):
        np.testing.assert_allclose(jax.jit(fn)(x), fn(x), rtol=1e-12)
    np.testing.assert_allclose(
        jax.jit(jax.grad(relaxed))(x), _central_differences(relaxed, np.asarray(x)), rtol=1e-6
    )


def test_a_clamp_at_an_infinite_input_has_the_exact_zero_gradient():
    def clamp(x):
        return jnp.where(x > 1.0, 1.0, x) * 2.0

    x = jnp.asarray([0.3, jnp.inf, -1.0])
    for mode in ("soft", "straight_through"):
        relaxed = sf.relax(clamp, softness=TAU, mode=mode)
        grad = jax.grad(lambda v, relaxed=relaxed: relaxed(v).sum())(x)
        assert np.all(np.isfinite(grad)) and grad[1] == 0.0


def test_a_nan_sorts_last_as_in_jnp():
    x = jnp.asarray([0.3, jnp.nan, -1.0, 2.0, jnp.inf])
    for program in (jnp.sort, lambda v: jnp.sort(v, descending=True), lambda v: lax.sort(v)):
        np.testing.assert_array_equal(sf.relax(program, softness=1e-4)(x), program(x))
    finite = x[:4]  # (a NaN is sorted as inf: after an inf in jnp, tied with it here)
    with_positions = sf.relax(lambda v: jnp.sort(v)[jnp.argsort(v)], softness=1e-4)
    np.testing.assert_array_equal(with_positions(finite), jnp.sort(finite)[jnp.argsort(finite)])
    smallest = sf.relax(lambda v: jnp.sort(v)[:3] * 2.0, softness=TAU)
    grad = jax.jit(jax.grad(lambda v: smallest(v).sum()))(x)
    assert np.all(np.isfinite(smallest(x))) and np.all(np.isfinite(grad))
    assert grad[1] == 0.0


def _langtons_ant(board):
    """Langton's ant on a 5 x 5 torus: the board read and written where the ant stands."""
    cells = board > 0.5
    turns = jnp.asarray([[-1, 0], [0, 1], [1, 0], [0, -1]])

    def step(_, state):
        cells, r, c, d = state
        on = cells[r, c]
        d = jnp.where(on, (d + 3) % 4, (d + 1) % 4)
        cells = cells.at[r, c].set(~on)
        return cells, (r + turns[d, 0]) % 5, (c + turns[d, 1]) % 5, d

    cells, r, c, _ = lax.fori_loop(0, 4, step, (cells, 2, 2, 0))
    return jnp.sum(cells), r, c


def test_an_ant_reads_and_writes_a_relaxed_board_at_its_relaxed_position(x64):
    # It crashed (indices must have an integer type): the board is relaxed once the ant wrote
    # at a relaxed position, and is then read at one.
    board = jax.random.uniform(jax.random.key(3), (5, 5), jnp.float64)
    exact = [np.asarray(v, np.float64) for v in _langtons_ant(board)]
    for mode, softness in (("soft", 1e-7), ("straight_through", TAU)):
        got = sf.relax(_langtons_ant, softness=softness, mode=mode)(board)
        np.testing.assert_allclose(np.asarray(got, np.float64), exact, atol=1e-6)
    relaxed = sf.relax(_langtons_ant, softness=0.3)
    cells_alive = jax.jit(lambda b: relaxed(b)[0])
    np.testing.assert_allclose(cells_alive(board), relaxed(board)[0], rtol=1e-12)
    # One compiled program for the 50 central differences (each eager call traces the relaxed
    # program again).
    gradient = jax.grad(cells_alive)(board)
    reference = _central_differences(cells_alive, board)
    np.testing.assert_allclose(gradient, reference.reshape(board.shape), rtol=1e-5, atol=1e-8)


def test_a_relaxed_array_read_and_written_at_a_relaxed_index_as_its_floats(x64):
    # Reading / writing a board of truth values at a relaxed position is reading / writing the
    # board of their probabilities there (the board taken independent of the position).
    def on_truth_values(x, y):
        r, c = jnp.floor(y).astype(jnp.int32)
        return (x > 0.0).at[r, c].set(True)[r - 1, c].astype(jnp.float64)

    def on_floats(x, y):
        r, c = jnp.floor(y).astype(jnp.int32)
        return (x > 0.0).astype(jnp.float64).at[r, c].set(1.0)[r - 1, c]

    x = jax.random.normal(jax.random.key(4), (4, 3), jnp.float64)
    y = jnp.asarray([1.7, 0.4])
    got = sf.relax(on_truth_values, softness=TAU)(x, y)
    # (The two read the position's law through different rules, truncated at different tails.)
    np.testing.assert_allclose(got, sf.relax(on_floats, softness=TAU)(x, y), rtol=1e-6)
    assert 0.0 < float(got) < 1.0


def test_an_elif_chain_of_returns_with_a_last_return_after_it(x64):
    # Refused ("inside another if statement"): `elif` is an `if` nested in the `else`.
    def chain(x):
        if x < -1.0:
            return -1.0 + 0.0 * x
        elif x < 1.0:
            return x * x * x
        return 1.0 + 0.5 * (x - 1.0)

    def sequence(x):
        if x < -1.0:
            return -1.0 + 0.0 * x
        if x < 1.0:
            return x * x * x
        return 1.0 + 0.5 * (x - 1.0)

    for x in (-2.0, -1.0, 0.5, 1.0, 3.0):
        assert sf.relax(chain, mode="hard")(x) == chain(x)
        np.testing.assert_allclose(
            sf.relax(chain, softness=TAU)(x), sf.relax(sequence, softness=TAU)(x), rtol=1e-12
        )
        np.testing.assert_allclose(
            jax.jit(jax.grad(sf.relax(chain, softness=TAU)))(x),
            jax.jit(jax.grad(sf.relax(sequence, softness=TAU)))(x),
            rtol=1e-12,
        )


def _secant_sqrt(a, exact_test=False):
    def cond(state):
        x0, x1, k = state
        far = jnp.abs(x1 - x0) > 1e-5
        return (sf.exact(far) if exact_test else far) & (k < 20)

    def f(x):
        return x * x - a

    def body(state):
        x0, x1, k = state
        return x1, x1 - f(x1) * (x1 - x0) / (f(x1) - f(x0)), k + 1

    return lax.while_loop(cond, body, (a, a + 1.0, 0))[1]


def test_debug_names_a_soft_loop_run_past_convergence_into_nan(x64):
    # Relaxed at a softness far above the tolerance, the loop goes on after converging, where the
    # secant step is 0 / 0: the soft result is NaN, the exact one sqrt(2).
    a = jnp.float64(2.0)
    relaxed = sf.relax(_secant_sqrt, softness=0.1, max_steps=25, debug=True)
    for fn in (relaxed, jax.jit(relaxed)):
        with pytest.raises(Exception, match=r"while loop at .*test_relax_probe\.py.* not finite"):
            jax.block_until_ready(fn(a))
    assert np.isnan(sf.relax(_secant_sqrt, softness=0.1, max_steps=25)(a))
    kept = sf.relax(functools.partial(_secant_sqrt, exact_test=True), softness=0.1, max_steps=25)
    np.testing.assert_allclose(kept(a), np.sqrt(2.0), rtol=1e-9)


def _first_above(x, t):
    """The first element above t, by a while loop with a break (its counter an index after it)."""
    i = 0
    while i < 7:
        if x[i] > t:
            break
        i += 1
    return x[i] * 2.0


def _first_above_for(x, t):
    i = 0
    for _ in range(7):
        if x[i] > t:
            break
        i += 1
    return x[i] * 2.0


def test_the_counter_of_a_while_loop_is_a_distribution_after_it(x64):
    # Refused as "an integer known only by its expected value", with advice (a clip) that did
    # not help: the counter is exact in each run, one value per step at which the loop stops.
    x = jnp.asarray([0.1, -0.3, 0.9, 0.2, 1.5, 0.0, 0.3, 0.4])
    t = jnp.float64(0.8)
    exact = _first_above(x, t)
    assert sf.relax(_first_above, mode="hard", max_steps=10)(x, t) == exact
    st = sf.relax(_first_above, mode="straight_through", softness=TAU, max_steps=10)
    np.testing.assert_allclose(st(x, t), exact, rtol=1e-12)
    np.testing.assert_allclose(
        sf.relax(_first_above, softness=1e-7, max_steps=10)(x, t), exact, rtol=1e-9
    )
    relaxed = sf.relax(_first_above, softness=TAU, max_steps=10)
    unrolled = sf.relax(_first_above_for, softness=TAU)
    eager = relaxed(x, t)
    np.testing.assert_allclose(eager, jax.jit(unrolled)(x, t), rtol=1e-9)
    np.testing.assert_allclose(jax.jit(relaxed)(x, t), eager, rtol=1e-12)
    gradient = jax.jit(jax.grad(relaxed, argnums=(0, 1)))(x, t)
    np.testing.assert_allclose(
        gradient[0], _central_differences(lambda v: relaxed(v, t), x), rtol=1e-5, atol=1e-8
    )
    np.testing.assert_allclose(
        gradient[1], _central_differences(lambda v: relaxed(x, v), t), rtol=1e-5
    )


def test_tuple_unpacking_keeps_what_relax_knows_of_each_element(x64):
    # jax 0.12 traces `a, b = x` as one `unstack`, jnp.split is one `split`: the candidates of a
    # relaxed floor were lost there (a >= 1 was 1/2 at floor(a) = 1), as in a gather at constant
    # indices and in the concatenation of jnp.roll, and a relaxed integer vector was refused.
    def unpacked(y):
        a, b = jnp.floor(y)
        return (a >= 1).astype(y.dtype) + b % 2

    def split(y):  # jnp.split is one `split` on every version
        a, b = jnp.split(jnp.floor(y), 2)
        return jnp.sum((a >= 1).astype(y.dtype) + b % 2)

    def taken(y):  # a gather at constant indices
        a, b = jnp.floor(y)[jnp.asarray([0, 1])]
        return (a >= 1).astype(y.dtype) + b % 2

    def rolled(y):  # two slices concatenated
        b, a = jnp.roll(jnp.floor(y), 1)
        return (a >= 1).astype(y.dtype) + b % 2

    def indexed(y):
        a, b = jnp.floor(y[0]), jnp.floor(y[1])
        return (a >= 1).astype(y.dtype) + b % 2

    y = jnp.asarray([1.5, 3.5])
    for program in (unpacked, split, taken, rolled):
        assert float(sf.relax(program, softness=1e-4)(y)) == pytest.approx(float(unpacked(y)))
        np.testing.assert_allclose(
            sf.relax(program, softness=TAU)(y), sf.relax(indexed, softness=TAU)(y), rtol=1e-12
        )


def _paired_bounds(x):
    a, b = lax.cond(x > 0, lambda: (2, 20), lambda: (1, 10))
    return jnp.where(a * b == 40, 1.0, 0.0)


def test_integers_a_relaxed_branch_returns_together_stay_joined(x64):
    # Each was a distribution of its own over the branches (a * b == 40 had probability p^2,
    # not p).
    x = jnp.float64(0.3)
    p = sf.greater(x, 0.0, softness=1.0)
    relaxed = sf.relax(_paired_bounds, softness=1.0)
    np.testing.assert_allclose(relaxed(x), p, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(relaxed)(x), p, rtol=1e-12)


def _python_binary_search(table, x, ys):
    lo, hi = 0, table.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if table[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    i = min(max(lo, 1), table.shape[0] - 1)
    w = (x - table[i - 1]) / (table[i] - table[i - 1])
    return (1.0 - w) * ys[i - 1] + w * ys[i]


def test_a_python_binary_search_relaxes_under_jit_as_on_concrete_values(x64):
    # Under jit the first (peeled) iteration's new bounds were traced arrays, so the loop's
    # bounds lost their static range and `(lo + hi) // 2` was refused; on concrete values it ran.
    rng = np.random.default_rng(0)
    table, ys = jnp.asarray(np.sort(rng.uniform(0, 1, 12))), jnp.asarray(rng.normal(size=12))
    x = jnp.float64(0.5)
    relaxed = sf.relax(_python_binary_search, softness=0.05, max_steps=8)
    hard = jax.jit(sf.relax(_python_binary_search, mode="hard", max_steps=8))
    assert hard(table, x, ys) == sf.relax(_python_binary_search, mode="hard")(table, x, ys)
    np.testing.assert_allclose(jax.jit(relaxed)(table, x, ys), relaxed(table, x, ys), rtol=1e-12)
    gradient = jax.jit(jax.grad(relaxed, argnums=1))(table, x, ys)
    numeric = _central_differences(lambda v: relaxed(table, v, ys), x)
    np.testing.assert_allclose(gradient, numeric[0], rtol=1e-5)


def _int_and_bool(x):
    a, c = lax.cond(x > 0, lambda: (2, True), lambda: (1, False))
    return c & (a == 2), c ^ (a == 2), c.astype(jnp.int32) * a


def _where_twice(x):
    c = x > 0
    a, b = jnp.where(c, 2, 5), jnp.where(c, 7, 3)
    return a * b, a + b == 9


def _compared_twice(x):
    return jnp.where(x > 0, 2, 5) * jnp.where(x > 0, 7, 3)


def _counted(xs):
    n = lax.scan(lambda n, x: (n + (x > 0).astype(jnp.int32), None), 0, xs)[0]
    return n * n, n == 1


def test_values_of_one_event_stay_joined(x64):
    # Each was a distribution of its own: a bool next to an int from one cond, two jnp.where on
    # one mask, the same comparison written twice (c & (a == 2) had probability p^2, a * b was
    # E[a] E[b]); and a loop's counter was its expected value in n * n and n == 1.
    x, softness = jnp.float64(0.06), 0.1
    p = float(sf.greater(x, 0.0, softness=softness))
    cases = [
        (_int_and_bool, x, [p, 0.0, 2 * p]),
        (_where_twice, x, [14 * p + 15 * (1 - p), p]),
        (_compared_twice, x, [14 * p + 15 * (1 - p)]),
    ]
    xs = jnp.asarray([0.06, -0.03])
    p0, p1 = (float(sf.greater(v, 0.0, softness=softness)) for v in xs)
    one = p0 * (1 - p1) + (1 - p0) * p1
    cases.append((_counted, xs, [one + 4 * p0 * p1, one]))
    for program, arg, expected in cases:
        relaxed = sf.relax(program, softness=softness)
        for got in (relaxed(arg), jax.jit(relaxed)(arg)):
            got = [float(g) for g in jax.tree_util.tree_leaves(got)]
            np.testing.assert_allclose(
                got, expected, rtol=1e-12, atol=1e-15, err_msg=program.__name__
            )


def test_a_truth_value_combined_with_itself_is_itself(x64):
    # The product t-norm took the two operands as independent: c & c was p^2, c ^ c 2p(1 - p).
    x = jnp.float64(0.06)
    p = float(sf.greater(x, 0.0, softness=0.1))
    programs = [
        (lambda x: (x > 0) & (x > 0), p),
        (lambda x: (x > 0) | (x > 0), p),
        (lambda x: ((x > 0) ^ (x > 0)).astype(x.dtype), 0.0),
        (lambda x: jnp.where((x > 0) | (x > 0), 2.0, 1.0), 1.0 + p),
    ]
    for program, expected in programs:
        relaxed = jax.jit(sf.relax(program, softness=0.1))
        np.testing.assert_allclose(float(relaxed(x)), expected, rtol=1e-12, atol=1e-15)


def _newton(a, limit):
    def cond(s):
        return (s[1] < limit) & (jnp.abs(s[0] * s[0] - a) > 1e-3)

    def body(s):
        return 0.5 * (s[0] + a / s[0]), s[1] + 1

    return lax.while_loop(cond, body, (a, 0))[0]


def test_a_while_loop_bounded_by_its_own_counter_needs_no_max_steps(x64):
    # `(i < max_iter) & (error > tol)`, the usual iteration cap, bounds the loop: relax reads the
    # bound (a literal, or a constant; <, <=, >, >=; a float counter too) where no max_steps is
    # given, and the loop is the one relaxed with max_steps set to it.
    a = jnp.float64(2.0)
    for limit in (6, jnp.int32(6)):
        fn = functools.partial(_newton, limit=limit)
        inferred = sf.relax(fn, softness=0.05)
        np.testing.assert_array_equal(inferred(a), sf.relax(fn, softness=0.05, max_steps=6)(a))
        assert "sf.soft_while (max_steps=6)" in [op.rule for op in inferred.explain(a)]
        assert sf.relax(fn, softness=1e-9)(a) == fn(a)

    def float_counter(x):
        def body(s):
            return s[0] + x, s[1] + 1.0

        cond = lambda s: lax.ge(jnp.float64(2.5), s[1]) & (s[0] < 10.0)  # noqa: E731
        return lax.while_loop(cond, body, (0.0, 0.0))[0]

    assert "sf.soft_while (max_steps=3)" in [
        op.rule for op in sf.relax(float_counter, softness=0.1).explain(jnp.float64(1.5))
    ]
    # A counter that moves by 2, or a bound known only at run time, bounds nothing relax reads.
    for fn in (
        lambda a: lax.while_loop(
            lambda s: (s[1] < 6) & (s[0] > 1.5), lambda s: (s[0] / 2, s[1] + 2), (a, 0)
        )[0],
        lambda a: _newton(a, jnp.floor(a).astype(jnp.int32) + 4),
    ):
        with pytest.raises(sf.RelaxError, match="pass max_steps=N"):
            sf.relax(fn, softness=0.05)(a)


def _toppled(x):
    g = jnp.floor(jnp.abs(x) * 3).astype(jnp.int32)

    def body(g, _):
        topple = (g >= 4).astype(jnp.int32)
        return g - 4 * topple + jnp.roll(topple, 1), None

    return lax.scan(body, g, None, length=2)[0].astype(x.dtype)


def test_a_loop_over_integers_relaxed_from_the_inputs_is_the_same_eager_and_under_jit(x64):
    # On concrete arguments (or under an eager jax.grad) the candidates of a relaxed floor were
    # known at trace time, and the loop carried them as a distribution where under jit it carries
    # their expected value: the eager value was not jit's, and the eager gradient (of one) did not
    # match the finite differences (of the other).
    x = jnp.array([0.5, 1.2, 1.4, -1.5])
    relaxed = sf.relax(_toppled, softness=0.2)
    np.testing.assert_allclose(relaxed(x), jax.jit(relaxed)(x), rtol=1e-12)
    weights = jnp.arange(1.0, 5.0)
    grad = jax.grad(lambda v: relaxed(v) @ weights)(x)
    np.testing.assert_allclose(
        grad, jax.jit(jax.grad(lambda v: relaxed(v) @ weights))(x), rtol=1e-12
    )
    numeric = _central_differences(lambda v: relaxed(v) @ weights, x)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_any_of_comparisons_of_relaxed_integers_element_by_element(x64):
    # jnp.any(g >= 4) with g a board of relaxed integers (a sandpile's "does any cell topple")
    # was refused: each element's truth value is its probability, the elements independent.
    x = jnp.array([0.5, 1.2, 1.4, -1.3])

    def program(x):
        g = jnp.floor(jnp.abs(x) * 3).astype(jnp.int32)
        return jnp.any(g >= 4), jnp.all(g >= 2)

    tau = 0.2
    at_least = [jax.nn.sigmoid((jnp.abs(x) * 3 - k) / tau) for k in (4, 2)]  # P(g >= k)
    relaxed_any, relaxed_all = sf.relax(program, softness=tau)(x)
    np.testing.assert_allclose(relaxed_any, 1 - jnp.prod(1 - at_least[0]), rtol=1e-9)
    np.testing.assert_allclose(relaxed_all, jnp.prod(at_least[1]), rtol=1e-9)
    hard = sf.relax(program, mode="hard")(x)
    assert [bool(h) for h in hard] == [bool(p) for p in program(x)]


def test_a_float_constant_chosen_by_a_relaxed_index_traces_under_jit():
    """``jnp.where(i == jnp.argmax(x), -jnp.inf, x)`` (a float case that is not finite, chosen
    per candidate of a relaxed index) has no integer bounds: under ``jit`` it is relaxed as on
    concrete arguments, not an error about converting inf to an integer."""

    def masked(x):
        return jnp.where(jnp.arange(4) == jnp.argmax(x), -jnp.inf, x) + jnp.where(
            jnp.arange(4) == jnp.argmin(x), jnp.inf, 0.0
        )

    x = jnp.array([0.3, -1.2, 2.4, 0.9])
    relaxed = sf.relax(masked, softness=0.3)
    np.testing.assert_array_equal(jax.jit(relaxed)(x), relaxed(x))


def test_complex_values_are_continuous_and_blended():
    """A float made complex (``x * 1j``, ``jnp.exp(1j * x)``, an FFT) is no float-to-integer
    cast: nothing is relaxed there; and a relaxed ``where`` between complex values blends them
    by the probability of its condition, as it does floats."""
    x = jnp.array([0.5, -1.3, 2.0])
    continuous = {
        "scale": lambda x: jnp.abs(x * (1 + 1j)),
        "phase": lambda x: jnp.exp(1j * x).imag,
        "fft": lambda x: jnp.abs(jnp.fft.fft(x)),
    }
    for name, program in continuous.items():
        relaxed = sf.relax(program, softness=0.1)
        np.testing.assert_array_equal(relaxed(x), program(x), err_msg=name)
        assert not relaxed.explain(x), name
        np.testing.assert_allclose(
            jax.grad(lambda x, f=relaxed: f(x).sum())(x),
            jax.grad(lambda x, f=program: f(x).sum())(x),
            rtol=1e-6,
        )

    def rotate(x):
        return jnp.where(x > 0, x * 1j, x + 0j)

    p = jax.nn.sigmoid(x / 0.1)
    relaxed = sf.relax(rotate, softness=0.1)(x)
    assert relaxed.dtype == rotate(x).dtype
    np.testing.assert_allclose(relaxed, p * (x * 1j) + (1 - p) * x, rtol=1e-6)


def test_piecewise_picks_the_last_condition_that_holds(x64):
    # jnp.piecewise's piece is argmax(cumsum(conditions)): the last condition that holds. It was
    # the soft argmax of the expected counts, which leaves every other piece a weight of about
    # exp(-1/softness) even where the conditions are certain (NaN beside an infinite piece).
    def pw(x, y):
        return jnp.piecewise(x, [x > 0, y > 0], [lambda v: 2 * v, jnp.abs, jnp.square])

    x = jnp.asarray([0.1, -0.3, 5.0, -7.0, jnp.inf, -jnp.inf])
    y = jnp.asarray([0.05, -0.2, -8.0, -9.0, -6.0, -9.0])
    relaxed = sf.relax(pw, softness=TAU)
    px, py = sf.greater(x, 0.0, softness=TAU), sf.greater(y, 0.0, softness=TAU)
    pieces = [x**2, 2 * x, jnp.abs(x)]
    weights = [(1 - px) * (1 - py), px * (1 - py), py]
    expected = sum(jnp.where(w > 0, w * v, 0.0) for w, v in zip(weights, pieces, strict=True))
    np.testing.assert_allclose(relaxed(x, y), expected, rtol=1e-12)
    np.testing.assert_allclose(relaxed(x, y)[2:], pw(x, y)[2:], rtol=1e-9)  # inf at +-inf
    grad = jax.jit(jax.grad(lambda x: jnp.sum(relaxed(x, y[:2]))))(x[:2])
    np.testing.assert_allclose(
        grad, _central_differences(lambda x: jnp.sum(relaxed(x, y[:2])), x[:2]), rtol=1e-6
    )


def test_a_scan_over_no_elements_returns_its_carry(x64):
    # It raised an IndexError from inside relax in the soft and straight-through modes.
    def schmitt(x, lo, hi):
        def step(state, xi):
            state = jnp.where(xi > hi, True, jnp.where(xi < lo, False, state))
            return state, state

        last, states = lax.scan(step, False, x)
        return jnp.sum(jnp.where(states, x, 0.0)), last

    args = (jnp.zeros(0), jnp.float64(-0.3), jnp.float64(0.4))
    for options in ({"softness": TAU}, {"mode": "straight_through", "softness": TAU}):
        total, last = sf.relax(schmitt, **options)(*args)
        assert float(total) == 0.0 and float(last) == 0.0


def bounce_until(x, v, horizon):
    """A ball between walls at 0 and 1, from one wall hit to the next, in `while True`."""
    t = 0.0
    while True:
        dt = jnp.where(v > 0, (1.0 - x) / v, -x / v)
        if t + dt > horizon:
            x = x + v * (horizon - t)
            break
        x = x + v * dt
        t = t + dt
        v = -0.9 * v
    return x


def test_hard_mode_runs_a_loop_with_a_break_as_python_on_concrete_arguments(x64):
    # The break looked soft when the body was traced abstractly, and the loop ran compiled:
    # XLA's multiply-adds changed the last bits of the result.
    args = (jnp.float64(0.3), jnp.float64(0.7), jnp.float64(2.5))
    assert sf.relax(bounce_until, mode="hard")(*args).tolist() == bounce_until(*args).tolist()


def test_a_count_of_comparisons_of_rounded_values_is_a_count_under_jit(x64):
    # Run-length ids: under jit the outcomes of q[1:] != q[:-1] are not known at trace time,
    # and their running count was an expected value, refused as an index (eagerly it ran).
    def run_lengths(x, scale):
        q = jnp.round(x * scale)
        run_id = jnp.cumsum(q[1:] != q[:-1])
        return jnp.zeros(x.shape[0]).at[run_id].add(1.0)

    x = jnp.array([0.1, 0.12, 0.9, 0.93, 0.95, 0.2, 0.22, 0.6])
    scale = jnp.float64(2.1)
    relaxed = sf.relax(run_lengths, softness=TAU)
    np.testing.assert_allclose(jax.jit(relaxed)(x, scale), relaxed(x, scale), rtol=1e-12)
    np.testing.assert_allclose(jnp.sum(relaxed(x, scale)), x.size - 1, rtol=1e-12)  # each change
    exact = run_lengths(x, scale)
    straight = sf.relax(run_lengths, softness=TAU, mode="straight_through")
    assert jax.jit(straight)(x, scale).tolist() == exact.tolist()

    def first_run(x):
        return relaxed(x, scale)[0]

    np.testing.assert_allclose(
        jax.jit(jax.grad(first_run))(x), _central_differences(first_run, x), rtol=1e-5, atol=1e-8
    )


def _kmeans_update(points, centroids, dtype):
    d = jnp.sum((points[:, None, :] - centroids[None, :, :]) ** 2, -1)
    assigned = jax.nn.one_hot(jnp.argmin(d, axis=1), centroids.shape[0], dtype=dtype)
    counts = assigned.sum(0)
    means = (assigned.T.astype(points.dtype) @ points) / jnp.maximum(counts, 1)[:, None]
    return jnp.where(counts[:, None] > 0, means, centroids)


def test_a_count_of_truth_values_as_floats_keeps_its_law(x64):
    # k-means keeps the centroid of an empty cluster: counts > 0 on a float one-hot sum was a
    # soft comparison of the expected count with 0, 1/2 at an empty cluster at every softness.
    points = jnp.array([[0.1, 0.0], [0.2, 0.1], [1.1, 0.4], [0.9, 0.6]])
    centroids = jnp.array([[0.0, 0.0], [1.0, 0.5], [9.0, 9.0]])
    as_floats = functools.partial(_kmeans_update, dtype=jnp.float64)
    exact = as_floats(points, centroids)
    np.testing.assert_allclose(sf.relax(as_floats, softness=1e-6)(points, centroids), exact)

    def occupied(points, dtype):
        d = jnp.sum((points[:, None, :] - centroids[None, :, :]) ** 2, -1)
        assigned = jax.nn.one_hot(jnp.argmin(d, axis=1), centroids.shape[0], dtype=dtype)
        return (assigned.sum(0) > 0).astype(jnp.float64)

    for softness in (TAU, 1.0):
        # the probability that a cluster is occupied: as by a count of integers
        np.testing.assert_allclose(
            sf.relax(functools.partial(occupied, dtype=jnp.float64), softness=softness)(points),
            sf.relax(functools.partial(occupied, dtype=jnp.int32), softness=softness)(points),
            rtol=1e-12,
        )
        relaxed = sf.relax(as_floats, softness=softness)(points, centroids)
        np.testing.assert_allclose(relaxed[2], centroids[2], rtol=1e-12)

    def any_above(x, t):
        return (jnp.sum((x > t).astype(jnp.float64)) > 0).astype(jnp.float64)

    x, t = jnp.array([-0.3, 0.1, -0.05]), jnp.float64(0.2)
    p = sf.greater(x, t, softness=TAU)
    np.testing.assert_allclose(sf.relax(any_above, softness=TAU)(x, t), 1 - jnp.prod(1 - p))


def test_a_truth_value_times_an_infinity_is_zero_where_it_is_false(x64):
    # XLA multiplies by a converted truth value as it selects: False * -inf is 0 in the program
    # (jnp's product with a bool, eager or jitted), and the relaxed product was NaN (0.0 * -inf)
    # in the soft and straight-through modes.
    def masked_sum(x, w):
        return jnp.sum((x > 0) * x) + jnp.sum((x > 0.5) * w)

    x = jnp.array([1.0, -jnp.inf, 0.3, -2.0])
    w = jnp.array([2.0, jnp.inf, -1.0, jnp.nan])
    exact = masked_sum(x, w)
    assert float(exact) == pytest.approx(3.3)  # 1 + 0.3 + 2
    straight = sf.relax(masked_sum, softness=TAU, mode="straight_through")
    assert float(straight(x, w)) == float(exact)
    finite = jnp.array([0, 2, 3])
    p = sf.greater(x[finite], 0.0, softness=TAU)
    q = sf.greater(x[finite], 0.5, softness=TAU)
    # (at x = -inf both are 0; where w is NaN, x = -2 and q is exp(-12.5) > 0: the term is NaN)
    expected = jnp.sum(p * x[finite]) + q[0] * w[0] + q[1] * w[2]
    relaxed = sf.relax(lambda x, w: masked_sum(x, w.at[3].set(0.0)), softness=TAU)
    np.testing.assert_allclose(relaxed(x, w), expected, rtol=1e-12)
    assert np.all(np.isfinite(jax.grad(lambda x: relaxed(x, w))(x)[finite]))


def traffic_light(sensor, t_green):
    state, timer, waited = 0, 0.0, 0.0  # state 0 green, 1 yellow, 2 red
    for k in range(20):
        timer = timer + 1.0
        if state == 0:
            if timer > t_green and sensor[k] > 0.5:
                state, timer = 1, 0.0
        elif state == 1:
            if timer >= 2.0:
                state, timer = 2, 0.0
        else:
            waited = waited + sensor[k]
            if timer > 3.0:
                state, timer = 0, 0.0
    return waited, state


def test_straight_through_on_concrete_arguments_is_the_program_itself(x64):
    # Its forward pass relaxed the Python loop unrolled, whose joint outcomes of the state grew
    # at every step: a minute of tracing, then a refusal, for a value that is the exact one.
    sensor = jnp.asarray(np.random.default_rng(0).uniform(size=20))
    t_green = jnp.float64(4.5)
    straight = sf.relax(traffic_light, softness=0.3, mode="straight_through")
    waited, state = straight(sensor, t_green)
    exact = traffic_light(sensor, t_green)
    assert float(waited) == float(exact[0]) and int(state) == exact[1]
    # its derivative is that of the relaxed loop along the exact path, as under jit
    grad = jax.grad(lambda s: straight(s, t_green)[0])(sensor)
    np.testing.assert_allclose(grad, jax.jit(jax.grad(lambda s: straight(s, t_green)[0]))(sensor))
    assert np.any(grad != 0)


NAN_MASKED = {
    "nansum": (
        lambda x, t: jnp.nansum(jnp.where(x > t, x, jnp.nan)),
        lambda x, q: jnp.sum(q * x),
    ),
    "nanmean": (
        lambda x, t: jnp.nanmean(jnp.where(x > t, x**2, jnp.nan)),
        lambda x, q: jnp.sum(q * x**2) / jnp.sum(q),
    ),
    "isnan count": (
        lambda x, t: jnp.sum(jnp.isnan(jnp.where(t < x, jnp.nan, x))) * 1.0,
        lambda x, q: jnp.sum(q),
    ),
    "nan_to_num": (
        lambda x, t: jnp.sum(jnp.nan_to_num(jnp.where(x > t, 2 * x, jnp.nan), nan=-1.0)),
        lambda x, q: jnp.sum(q * 2 * x - (1 - q)),
    ),
    # Each element present with its probability q, as a maximum relaxes a -inf sentinel: the
    # expected present maximum, present where any element is.
    "nanmax": (
        lambda x, t: jnp.nanmax(jnp.where(x > t, x, jnp.nan)),
        lambda x, q: _present_maximum(np.asarray(x), np.asarray(q)),
    ),
}


def _present_maximum(x, q):
    winners, nothing = present_winners(-x, q, TAU)
    return winners @ x / winners.sum() + TAU * np.log(1 - nothing)


@pytest.mark.parametrize("program, reference", NAN_MASKED.values(), ids=NAN_MASKED.keys())
def test_values_masked_with_nan_are_present_with_their_probability(x64, program, reference):
    # jnp.where(c, x, nan) with a relaxed c was refused; a NaN-aware reduction of it weighs each
    # element by the probability that it is kept.
    x = jnp.asarray([0.3, 1.7, -0.4, 2.2, 0.9, 0.45])
    t = jnp.asarray(0.5)
    relaxed = jax.jit(sf.relax(program, softness=TAU))
    want = reference(x, sf.greater(x, t, softness=TAU))
    np.testing.assert_allclose(relaxed(x, t), want, rtol=1e-10)
    np.testing.assert_allclose(sf.relax(program, softness=1e-6)(x, t), program(x, t), rtol=1e-9)
    assert sf.relax(program, mode="hard")(x, t) == program(x, t)
    h = 1e-6
    grad = jax.grad(relaxed, argnums=1)(x, t)
    assert grad != 0
    np.testing.assert_allclose(grad, (relaxed(x, t + h) - relaxed(x, t - h)) / (2 * h), rtol=1e-5)


def test_a_quantile_of_values_masked_with_nan_is_refused_clearly(x64):
    # jnp.nanmedian sorts the masked values and reads at a position counted from the mask: it
    # was NaN in soft mode (the places of absent values read with their probability), silently.
    def inlier_median(x, t):
        return jnp.nanmedian(jnp.where(jnp.abs(x) < t, x, jnp.nan))

    def exact_mask(x, t):
        return jnp.nanmedian(jnp.where(sf.exact(jnp.abs(x) < t), x, jnp.nan))

    def masked_again(x, t):  # (what jnp.nanquantile does first) keeps each outcome
        y = jnp.where(jnp.abs(x) < t, x, jnp.nan)
        return jnp.nanmean(jnp.where(jnp.isnan(y), jnp.nan, y))

    x, t = jnp.asarray([7.0, 0.3, -5.0, -0.4, 1.2, 0.9]), jnp.asarray(3.0)
    with pytest.raises(sf.RelaxError, match=r"sorts values masked with NaN.*sf\.exact\(c\)"):
        sf.relax(inlier_median, softness=TAU)(x, t)
    assert sf.relax(inlier_median, mode="hard")(x, t) == inlier_median(x, t)
    grad = jax.grad(sf.relax(exact_mask, softness=TAU))(x, t)
    assert np.all(np.isfinite(grad)) and np.all(grad[jnp.abs(x) >= t] == 0)
    kept = sf.greater(t, jnp.abs(x), softness=TAU)
    relaxed = sf.relax(masked_again, softness=TAU)
    np.testing.assert_allclose(relaxed(x, t), jnp.sum(kept * x) / jnp.sum(kept), rtol=1e-10)


@pytest.mark.parametrize(
    "program, called",
    [
        (lambda x: jnp.nonzero(x > 0.5, size=2)[0] * 1.0, "jnp.nonzero"),
        (lambda x: jnp.extract(x > 0.5, x, size=2), "jnp.extract"),
    ],
)
def test_a_refusal_inside_a_jax_numpy_function_names_the_function(program, called):
    # The primitive that cannot be relaxed is one the user never wrote (a division, a sort).
    with pytest.raises(sf.RelaxError, match=rf"test_relax_probe.py:\d+.*, inside {called}:"):
        sf.relax(program)(jnp.asarray([0.3, 0.9, 0.7, 0.1]))


def test_a_grid_read_at_a_position_chosen_twice_under_x64(x64):
    # With x64 the position is int64; reading the relaxed position's table entry crashed in
    # lax.concatenate (int32 slice starts next to int64 ones).
    def walk(theta, goal):
        moves = jnp.array([[0, 1], [1, 0]])
        pos = jnp.array([0, 0])
        for _ in range(2):
            cand = jnp.clip(pos[None, :] + moves, 0, 4)
            pos = cand[jnp.argmax(-jnp.sum((cand - goal) ** 2, axis=1))]
        return theta[pos[0], pos[1]]

    theta = jnp.arange(25.0).reshape(5, 5) ** 1.5
    goal = jnp.array([1.2, 0.7])
    assert float(sf.relax(walk, softness=1e-6)(theta, goal)) == float(walk(theta, goal))
    relaxed = jax.jit(sf.relax(lambda g: walk(theta, g), softness=0.3))
    grad = jax.grad(relaxed)(goal)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    np.testing.assert_allclose(grad, _central_differences(relaxed, goal), rtol=1e-6, atol=1e-9)


def test_a_linear_interpolation_is_kept_exact(x64):
    # jnp.interp and map_coordinates of order 1 are continuous: relaxing their index blurred
    # the knots (half a step off at a knot at every softness) and read every candidate.
    knots = jnp.linspace(0.0, 1.0, 9)
    x = jnp.concatenate([knots, jnp.asarray([0.33, -0.2, 1.3])])
    fp = jnp.asarray(np.random.default_rng(1).normal(size=9))

    def curve(x, fp):
        return jnp.interp(x, knots, fp)

    relaxed = sf.relax(curve, softness=0.5)
    assert relaxed(x, fp).tolist() == curve(x, fp).tolist()
    for argnum in (0, 1):
        grad = jax.grad(lambda *a: relaxed(*a) @ jnp.arange(12.0), argnums=argnum)(x, fp)
        exact = jax.grad(lambda *a: curve(*a) @ jnp.arange(12.0), argnums=argnum)(x, fp)
        np.testing.assert_array_equal(grad, exact)
    assert "kept exact" in str(relaxed.explain(x, fp))

    image = jnp.arange(20.0).reshape(4, 5) ** 1.3
    at = jnp.asarray([[0.0, 1.0, 2.7, 3.0], [3.0, 1.0, 0.1, 4.0]])  # pixel centres, and not

    def warp(at):
        return jax.scipy.ndimage.map_coordinates(image, [at[0], at[1]], order=1, mode="nearest")

    assert sf.relax(warp, softness=0.5)(at).tolist() == warp(at).tolist()
    np.testing.assert_array_equal(
        jax.jacobian(sf.relax(warp, softness=0.5))(at), jax.jacobian(warp)(at)
    )


def test_an_interpolation_with_a_jump_is_still_relaxed():
    # left= makes jnp.interp jump at the first knot, and order 0 rounds: both are relaxed.
    knots = jnp.linspace(0.0, 1.0, 5)

    def with_floor(x):
        return jnp.interp(x, knots, knots + 1.0, left=0.0)

    x = jnp.asarray([-0.01, 0.3])
    text = str(sf.relax(with_floor, softness=0.1).explain(x))
    assert "kept exact" not in text and "searchsorted" in text
    grad = jax.grad(lambda x: sf.relax(with_floor, softness=0.1)(x).sum())(x)
    assert grad[0] > 1.0  # the jump at the first knot, relaxed

    def nearest(at):
        return jax.scipy.ndimage.map_coordinates(jnp.arange(5.0) ** 2, [at], order=0)

    assert "kept exact" not in str(sf.relax(nearest, softness=0.1).explain(x + 1.5))
