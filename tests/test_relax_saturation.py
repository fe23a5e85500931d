"""A loop's integer whose values from some H on behave alike (a mode that only shifts up, read
through clamped indices) is carried over lo..H: the same results as the same loop unrolled, where
no loop carries it."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import softflow as sf
from softflow._program import _jaxpr

STEPS = 5


def _dynamics(k):
    return lambda v: (3.0 - k) * (1.0 - v / (4.0 * (k + 1)))


def _step(v, mode, up, seen):
    """One step of the gearbox; with ``seen``, the mode also enters the dynamics as a number
    (its values differ past 2: no saturation)."""
    mode = jnp.where(v > up[mode], mode + 1, mode)
    v = v + 0.2 * lax.switch(mode, [_dynamics(k) for k in range(3)], v)
    if seen:
        v = v + 0.01 * mode
    return v, mode


def _thresholds(shift_up):
    """The gear only shifts up; past the last threshold (inf) it never does."""
    return jnp.concatenate([shift_up, jnp.array([jnp.inf])])


def _scanned(seen):
    def program(v0, shift_up):
        up = _thresholds(shift_up)

        def step(state, _):
            v, mode = _step(*state, up, seen)
            return (v, mode), v

        return lax.scan(step, (v0, 0), None, length=STEPS)[1]

    return program


def _unrolled(seen):
    def program(v0, shift_up):
        up = _thresholds(shift_up)
        v, mode, vs = v0, 0, []
        for _ in range(STEPS):
            v, mode = _step(v, mode, up, seen)
            vs.append(v)
        return jnp.stack(vs)

    return program


gearbox, gearbox_unrolled = _scanned(False), _unrolled(False)
gearbox_mode_seen, gearbox_mode_seen_unrolled = _scanned(True), _unrolled(True)


def gearbox_final_gear(v0, shift_up):
    """The final gear is a result: its values past 2 are kept."""
    up = jnp.concatenate([shift_up, jnp.array([jnp.inf, jnp.inf])])

    def step(state, _):
        return _step(*state, up, False), None

    return lax.scan(step, (v0, 0), None, length=STEPS)[0][1]


def _carried_widths(fn, *args) -> list[int]:
    """The widths of the last axis of every carry of the scans in the relaxed program."""
    widths = []

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "scan":
                layout = _jaxpr.scan(eqn)
                carry = eqn.invars[layout.num_consts : layout.num_consts + layout.num_carry]
                widths.extend(v.aval.shape[-1] if v.aval.shape else 1 for v in carry)
            for value in eqn.params.values():
                for inner in value if isinstance(value, tuple) else (value,):
                    if isinstance(inner, jax.extend.core.ClosedJaxpr):
                        visit(inner.jaxpr)
                    elif isinstance(inner, jax.extend.core.Jaxpr):
                        visit(inner)

    visit(jax.make_jaxpr(fn)(*args).jaxpr)
    return widths


def _args():
    return jnp.float64(0.4), jnp.asarray([0.9, 1.25], jnp.float64)


@pytest.mark.parametrize(
    "looped, unrolled, states",
    [(gearbox, gearbox_unrolled, 3), (gearbox_mode_seen, gearbox_mode_seen_unrolled, STEPS + 1)],
    ids=["saturates", "mode-seen"],
)
def test_a_loop_carries_what_it_tells_apart(looped, unrolled, states, x64):
    args = _args()
    relaxed = sf.relax(looped, softness=0.1)
    reference = sf.relax(unrolled, softness=0.1)
    (got, got_grads), (want, want_grads) = [
        jax.jit(lambda *a, f=f: (f(*a), jax.grad(lambda *b: jnp.sum(f(*b) ** 2), (0, 1))(*a)))(
            *args
        )
        for f in (relaxed, reference)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-11)
    for got_grad, want_grad in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-10)
    assert states in _carried_widths(relaxed, *args)
    told = any("alike from 2 on" in op.rule for op in relaxed.explain(*args))
    assert told == (states == 3)
    hard = jax.jit(sf.relax(looped, mode="hard"))(*args)
    np.testing.assert_array_equal(hard, jax.jit(looped)(*args))


def test_a_final_value_that_is_a_result_keeps_its_range(x64):
    args = _args()
    relaxed = sf.relax(gearbox_final_gear, softness=0.3)
    law = jax.jit(relaxed)(*args)
    assert 0 <= float(law) <= STEPS
    assert STEPS + 1 in _carried_widths(relaxed, *args)


def _clamped_count(looped: bool):
    """A count of soft events clamped at 11, read from a table after the loop: its range grows
    one value per pass of the analysis for longer than the plain analysis follows it."""

    def program(xs, threshold):
        table = jnp.arange(12.0) ** 2
        count = 0
        if looped:

            def step(count, x):
                return jnp.minimum(count + (x > threshold), 11), None

            count = lax.scan(step, count, xs)[0]
        else:
            for x in xs:
                count = jnp.minimum(count + (x > threshold), 11)
        return table[count]

    return program


def test_a_clamped_count_keeps_its_range_when_its_growth_outlasts_the_plain_analysis(x64):
    xs = jnp.linspace(-1.0, 1.0, 16)
    threshold = jnp.float64(-0.3)
    relaxed = sf.relax(_clamped_count(True), softness=0.2)
    reference = sf.relax(_clamped_count(False), softness=0.2)
    both = jax.jit(lambda *a: [f(*a) for f in (relaxed, reference)])
    got, want = both(xs, threshold)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert 12 in _carried_widths(relaxed, xs, threshold)


def _capacity_left(looped: bool):
    """Knapsack backtracking: the capacity left after taking the chosen items, each of a weight
    known only at run time, clipped to the table's rows."""

    def program(x, weights):
        rows = jnp.arange(6.0) ** 1.5
        left = 5
        if looped:

            def step(left, i):
                return jnp.clip(jnp.where(x[i] > 0, left - weights[i], left), 0, 5), None

            left = lax.scan(step, left, jnp.arange(x.shape[0]))[0]
        else:
            for i in range(x.shape[0]):
                left = jnp.clip(jnp.where(x[i] > 0, left - weights[i], left), 0, 5)
        return rows[left]

    return program


def test_a_clip_bounds_an_integer_shifted_by_values_known_only_at_run_time(x64):
    # The clip's bounds were lost where an operand had no static range (the weights are an
    # argument): the capacity was an expected value, and the read refused.
    x, weights = jnp.asarray([1.0, -1.0, 0.5, 0.05]), jnp.asarray([2, 1, 1, 3], jnp.int32)
    relaxed = sf.relax(_capacity_left(True), softness=0.2)
    reference = sf.relax(_capacity_left(False), softness=0.2)
    both = jax.jit(lambda x, w: [(f(x, w), jax.grad(f)(x, w)) for f in (relaxed, reference)])
    (got, got_grad), (want, want_grad) = both(x, weights)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-10, atol=1e-14)
    assert 6 in _carried_widths(relaxed, x, weights)
    hard = jax.jit(sf.relax(_capacity_left(True), mode="hard"))(x, weights)
    np.testing.assert_array_equal(hard, _capacity_left(True)(x, weights))


def _backtrack(looped: bool):
    """Viterbi backtracking: the states followed back along relaxed back-pointers."""

    def program(scores, last):
        pointers = jnp.argmax(scores, axis=1)
        state = jnp.argmax(last)
        if looped:

            def back(state, pointer):
                return pointer[state], state

            return lax.scan(back, state, pointers, reverse=True)[1]
        path = []
        for t in reversed(range(pointers.shape[0])):
            path.append(state)
            state = pointers[t][state]
        return jnp.stack(path[::-1])

    return program


def test_back_pointers_are_followed_through_a_scan(x64):
    # The state read from the relaxed pointers had no static range: the next read was refused.
    scores = jax.random.normal(jax.random.key(0), (4, 3, 3), jnp.float64)
    last = jnp.asarray([0.1, 0.9, 0.3])
    relaxed = sf.relax(_backtrack(True), softness=0.3)
    reference = sf.relax(_backtrack(False), softness=0.3)
    got, want = jax.jit(lambda *a: (relaxed(*a), reference(*a)))(scores, last)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert 3 in _carried_widths(relaxed, scores, last)
    np.testing.assert_array_equal(
        sf.relax(_backtrack(True), mode="hard")(scores, last), _backtrack(True)(scores, last)
    )
