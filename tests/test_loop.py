"""soft_while / soft_fori_loop against a literal implementation of their formulas."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tree_allclose
from hypothesis import given, settings, strategies as st
from jax import enable_x64

import softflow as sf


def literal_while(cond_fn, body_fn, init_val, max_steps):
    """The cumulative-halting formula written out step by step, with no early exit."""
    state, mass = init_val, 1.0
    result = jax.tree_util.tree_map(jnp.zeros_like, init_val)
    for _ in range(max_steps):
        condition = cond_fn(state)
        weight = mass * (1 - condition)
        result = jax.tree_util.tree_map(lambda acc, r, w=weight: acc + w * r, result, state)
        mass = mass * condition
        state = body_fn(state)
    return jax.tree_util.tree_map(lambda acc, r: acc + mass * r, result, state), mass


def literal_blend(cond_fn, body_fn, init_val, max_steps):
    state = init_val
    for _ in range(max_steps):
        condition = cond_fn(state)
        state = jax.tree_util.tree_map(
            lambda new, old, c=condition: c * new + (1 - c) * old, body_fn(state), state
        )
    return state


# Programs: (cond_fn(state, threshold, softness), body_fn(state), init_val, max_steps)
def _halving(x, threshold, softness):
    return sf.greater(x, threshold, softness=softness)


def _vector_norm(x, threshold, softness):
    return sf.less(jnp.sum(x**2), threshold, softness=softness)


def _pytree_cond(s, threshold, softness):
    return sf.logical_and(
        sf.less(s["t"], threshold, softness=softness),
        sf.greater(s["v"][0], -5.0, softness=softness),
    )


PROGRAMS = {
    "scalar": (_halving, lambda x: 0.5 * x + 0.1, 40.0, 12),
    "vector": (
        _vector_norm,
        lambda x: 1.3 * x + 0.05 * jnp.sin(x),
        jnp.array([0.3, -0.2, 0.1]),
        15,
    ),
    "pytree": (
        _pytree_cond,
        lambda s: {"t": s["t"] + 1.0, "v": s["v"] * 0.9 - 0.2},
        {"t": jnp.array(0.0), "v": jnp.array([1.0, 2.0])},
        9,
    ),
}
THRESHOLDS = {"scalar": 1.0, "vector": 4.0, "pytree": 4.5}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("semantics", ["halting", "blend"])
def test_matches_literal_formula(name, semantics):
    cond, body, init, max_steps = PROGRAMS[name]
    threshold = THRESHOLDS[name]
    with enable_x64(True):
        init = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), init)

        @jax.jit
        def run(softness):
            return sf.soft_while(
                lambda s: cond(s, threshold, softness),
                body,
                init,
                max_steps=max_steps,
                tol=0.0,
                semantics=semantics,
            )

        # From sharp to very soft; the small max_steps makes the soft cases truncate.
        for softness in [1e-3, 0.1, 1.0, 10.0]:

            def reference_cond(s, softness=softness):
                return cond(s, threshold, softness)

            if semantics == "halting":
                expected, _ = literal_while(reference_cond, body, init, max_steps)
            else:
                expected = literal_blend(reference_cond, body, init, max_steps)
            assert tree_allclose(run(softness), expected, rtol=1e-12, atol=1e-12), (name, softness)


def test_info_and_truncation():
    with enable_x64(True):
        cond = lambda x: sf.greater(x, 1.0, softness=2.0)  # noqa: E731
        body = lambda x: 0.5 * x + 0.1  # noqa: E731
        value, info = sf.soft_while(cond, body, 40.0, max_steps=6, tol=0.0, return_info=True)
        expected, mass = literal_while(cond, body, jnp.float64(40.0), 6)
        assert np.allclose(value, expected, rtol=1e-12)
        # a_T c_T: the mass at step 6 whose condition asks for a seventh body
        last = functools.reduce(lambda x, _: body(x), range(6), jnp.float64(40.0))
        assert np.allclose(info.remaining_mass, mass * cond(last), rtol=1e-12)
        assert info.remaining_mass > 0.1  # the loop was truncated with a lot of mass left
        # expected number of body evaluations = sum_{t=1..T} a_t
        masses, state, a = [], jnp.float64(40.0), 1.0
        for _ in range(6):
            a = a * cond(state)
            masses.append(a)
            state = body(state)
        assert np.allclose(info.expected_steps, sum(masses), rtol=1e-12)
        assert int(info.steps) == 6


def test_tolerance_stops_early_and_stays_close():
    cond = lambda x: sf.greater(x, 1.0, softness=0.05)  # noqa: E731
    body = lambda x: 0.5 * x + 0.1  # noqa: E731
    exact = sf.soft_while(cond, body, 40.0, max_steps=200, tol=0.0)
    early, info = sf.soft_while(cond, body, 40.0, max_steps=200, tol=1e-6, return_info=True)
    assert int(info.steps) < 20
    assert abs(float(early) - float(exact)) <= 1e-5 * abs(float(exact))


def _counting_body(counter):
    def body(x):
        jax.debug.callback(lambda: counter.append(1))
        return 2.0 * x

    return body


def test_no_body_evaluations_after_stop():
    counter = []
    cond = lambda x: sf.less_equal(x, 10.0, mode="hard")  # noqa: E731
    value, info = sf.soft_while(
        cond, _counting_body(counter), 1.0, max_steps=1000, return_info=True
    )
    jax.effects_barrier()
    assert float(value) == 16.0
    assert int(info.steps) == 4
    assert len(counter) == 4


@settings(max_examples=40, deadline=None)
@given(
    start=st.floats(-50, 50),
    scale=st.floats(0.3, 2.5),
    shift=st.floats(-3, 3),
    threshold=st.floats(-60, 60),
    strict=st.booleans(),
)
def test_hard_conditions_equal_lax_while_loop(start, scale, shift, threshold, strict):
    compare = sf.less if strict else sf.less_equal
    hard_compare = jnp.less if strict else jnp.less_equal
    max_steps = 64
    expected, steps = jax.lax.while_loop(
        lambda c: hard_compare(c[0], threshold) & (c[1] < max_steps),
        lambda c: (scale * c[0] + shift, c[1] + 1),
        (jnp.float32(start), 0),
    )
    result = _hard_loop(jnp.float32(start), scale, shift, threshold, compare)
    if int(steps) < max_steps:  # the contract holds when the hard loop ends within max_steps
        assert np.asarray(result) == np.asarray(expected)  # bit for bit


@pytest.mark.parametrize("semantics", ["halting", "blend"])
def test_hard_conditions_keep_the_sign_of_a_zero_result(semantics):
    # The mixture summed from +0.0 turned a -0.0 result into +0.0, where lax.while_loop keeps it.
    def cond(x):
        return sf.greater(x, 0.0, mode="hard")

    for body, start in ((lambda x: -0.0 * x, 1.0), (lambda x: x + 1.0, -0.0)):
        expected = jax.lax.while_loop(lambda x: x > 0.0, body, jnp.float32(start))
        loop = functools.partial(sf.soft_while, cond, body, max_steps=5, semantics=semantics)
        for run in (loop, jax.jit(loop)):
            result = run(jnp.float32(start))
            assert np.signbit(result) == np.signbit(expected) and result == expected
    broken = sf.soft_fori_loop(
        0, 3, lambda i, s: -0.0 * s, 1.0, break_fn=lambda i, s: sf.greater(s, 2.0, mode="hard")
    )
    assert np.signbit(broken) and broken == 0


@jax.jit(static_argnums=4)
def _hard_loop(start, scale, shift, threshold, compare):
    return sf.soft_while(
        lambda x: compare(x, threshold, mode="hard"),
        lambda x: scale * x + shift,
        start,
        max_steps=64,
    )


def _threshold_loop(threshold, init, rate, softness=0.7, semantics="halting"):
    return sf.soft_while(
        lambda x: sf.greater(jnp.sum(x), threshold, softness=softness),
        lambda x: rate * x - 0.1,
        init,
        max_steps=30,
        tol=0.0,
        semantics=semantics,
    )


@pytest.mark.parametrize("semantics", ["halting", "blend"])
def test_gradient_matches_finite_differences(semantics):
    with enable_x64(True):
        args = (jnp.float64(0.8), jnp.array([3.0, 2.0]), jnp.float64(0.85))

        @jax.jit
        def loss(*args):
            return jnp.sum(_threshold_loop(*args, semantics=semantics) ** 2)

        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*args)
        eps = 1e-6
        for i, arg in enumerate(args):
            flat = np.asarray(arg, np.float64).reshape(-1)
            numeric = []
            for j in range(flat.size):
                step = np.zeros_like(flat)
                step[j] = eps
                shift = [jnp.asarray(a) for a in args]
                shift[i] = jnp.asarray((flat + step).reshape(np.shape(arg)))
                up = loss(*shift)
                shift[i] = jnp.asarray((flat - step).reshape(np.shape(arg)))
                numeric.append((up - loss(*shift)) / (2 * eps))
            assert np.allclose(np.reshape(grads[i], -1), numeric, rtol=1e-6, atol=1e-9), i


def test_vmap_and_vmap_of_grad_match_single_runs():
    thresholds = jnp.array([0.5, 1.5, 2.5, 4.0])
    init = jnp.array([3.0, 2.0])

    def loss(threshold):
        return jnp.sum(_threshold_loop(threshold, init, 0.85))

    batched = jax.jit(jax.vmap(loss))(thresholds)
    batched_grads = jax.jit(jax.vmap(jax.grad(loss)))(thresholds)
    single = jax.jit(loss)
    single_grad = jax.jit(jax.grad(loss))
    for k, threshold in enumerate(thresholds):
        assert np.allclose(batched[k], single(threshold), rtol=1e-6)
        assert np.allclose(batched_grads[k], single_grad(threshold), rtol=1e-5, atol=1e-7)


def test_forward_mode_and_hessian_agree_with_reverse_mode():
    with enable_x64(True):
        init = jnp.array([3.0, 2.0])

        def loss(threshold):
            return jnp.sum(_threshold_loop(threshold, init, 0.85) ** 2)

        gradient = jax.jit(jax.grad(loss))
        assert np.allclose(gradient(0.8), jax.jit(jax.jacfwd(loss))(0.8), rtol=1e-10)
        hessian = jax.jit(jax.hessian(loss))(0.8)
        eps = 1e-5
        numeric = (gradient(0.8 + eps) - gradient(0.8 - eps)) / (2 * eps)
        assert np.allclose(hessian, numeric, rtol=1e-5)


@pytest.mark.parametrize("batched", [False, True])
def test_overflow_after_stop_stays_finite(batched):
    # exp(exp(...)) overflows two steps after the (sharp) stop at x > 1.
    def loss(threshold):
        out = sf.soft_while(
            lambda x: sf.less(x, threshold, softness=0.01),
            lambda x: jnp.exp(x) + 0.5,
            jnp.float32(-3.0),
            max_steps=50,
            tol=0.0,
        )
        return out**2

    if batched:
        thresholds = jnp.array([1.0, 1.2, 2.0])
        values = jax.vmap(loss)(thresholds)
        grads = jax.vmap(jax.grad(loss))(thresholds)
    else:
        values = loss(1.0)
        grads = jax.grad(loss)(1.0)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))


def test_trace_does_not_grow_with_max_steps():
    def jaxpr_size(max_steps):
        def f(threshold):
            return sf.soft_while(
                lambda x: sf.greater(x, threshold), lambda x: 0.9 * x, 5.0, max_steps=max_steps
            )

        # The program text with numbers and line wrapping blanked out: only its shape counts.
        text = re.sub(r"\d+", "0", str(jax.make_jaxpr(jax.grad(f))(1.0)))
        return re.sub(r"\s+", "", text)

    assert jaxpr_size(10) == jaxpr_size(100_000)


def test_gradient_memory_is_sublinear():
    size, max_steps = 100_000, 10_000

    def loss(init, threshold):
        out = sf.soft_while(
            lambda x: sf.less(jnp.mean(x), threshold, softness=0.5),
            lambda x: 1.001 * x + 0.01 * jnp.sin(x),
            init,
            max_steps=max_steps,
        )
        return jnp.sum(out)

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(jnp.ones(size), 5.0).compile()
    stats = compiled.memory_analysis()
    used = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    every_step = max_steps * size * 4
    assert used <= 0.05 * every_step


def test_fori_loop_without_break_is_lax_fori_loop():
    def body(i, val):
        return val * 1.5 + jnp.sin(i * val[0]), val

    init = jnp.array([0.1, 0.2])
    ours = sf.soft_fori_loop(2, 9, lambda i, v: body(i, v)[0], init)
    theirs = jax.lax.fori_loop(2, 9, lambda i, v: body(i, v)[0], init)
    assert np.array_equal(ours, theirs)
    counts = sf.soft_fori_loop(0, 5, lambda i, c: c + i, 0)  # integer state is fine here
    assert int(counts) == 10


def test_fori_loop_with_break_matches_literal_and_python():
    with enable_x64(True):

        def body(i, s):
            return s + i

        def soft_break(softness):
            return lambda i, s: sf.greater(s + i, 10.0, softness=softness)

        value = sf.soft_fori_loop(1, 8, body, jnp.float64(0.0), break_fn=soft_break(2.0), tol=0.0)
        # literal: soft_while on (i, s) with condition [i < upper] (1 - break)
        expected, _ = literal_while(
            lambda c: jnp.where(c[0] < 8, 1 - soft_break(2.0)(c[0], c[1]), 0.0),
            lambda c: (c[0] + 1.0, body(c[0], c[1])),
            (jnp.float64(1.0), jnp.float64(0.0)),
            7,
        )
        assert np.allclose(value, expected[1], rtol=1e-12)

        hard = sf.soft_fori_loop(
            1, 100, body, 0.0, break_fn=lambda i, s: sf.greater(s + i, 10.0, mode="hard")
        )
        total = 0.0
        for i in range(1, 100):
            if total + i > 10.0:
                break
            total += i
        assert float(hard) == total


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_state_dtype_is_preserved(dtype):
    out, info = sf.soft_while(
        lambda x: sf.greater(jnp.sum(x).astype(jnp.float32), 1.0),
        lambda x: x * jnp.asarray(0.5, dtype),
        jnp.ones(3, dtype) * 4,
        max_steps=10,
        return_info=True,
    )
    assert out.dtype == dtype
    assert info.expected_steps.dtype == jnp.float32


def test_bad_arguments_are_rejected():
    cond = lambda x: sf.greater(x, 0.0)  # noqa: E731
    for bad in [0, -3, 2**31]:
        with pytest.raises(ValueError, match=r"max_steps must be an int in \[1, 2147483647\]"):
            sf.soft_while(cond, lambda x: x, 1.0, max_steps=bad)
    for bad in [2.0, True, None, "3"]:
        with pytest.raises(TypeError, match="max_steps must be a Python int"):
            sf.soft_while(cond, lambda x: x, 1.0, max_steps=bad)
    with pytest.raises(TypeError, match=r"cond_fn must return a scalar float.*float32\[2\]"):
        sf.soft_while(lambda x: sf.greater(x, 0.0), lambda x: x, jnp.ones(2), max_steps=3)
    with pytest.raises(TypeError, match=r"cond_fn must return.*bool"):
        sf.soft_while(lambda x: x > 0, lambda x: x, 1.0, max_steps=3)
    with pytest.raises(TypeError, match=r"same structure, shapes and dtypes[\s\S]*float32\[1\]"):
        sf.soft_while(lambda x: cond(jnp.sum(x)), lambda x: x[:1], jnp.ones(2), max_steps=3)
    with pytest.raises(TypeError, match=r"same structure[\s\S]*PyTreeDef\(\(\*, \*\)\)"):
        sf.soft_while(cond, lambda x: (x, x), 1.0, max_steps=3)
    with pytest.raises(TypeError, match=r"same structure[\s\S]*float16"):
        sf.soft_while(cond, lambda x: x.astype(jnp.float16), jnp.float32(1.0), max_steps=3)
    with pytest.raises(TypeError, match=r"leaf .* int32"):
        sf.soft_while(cond, lambda x: x, jnp.int32(1), max_steps=3)
    with pytest.raises(ValueError, match="semantics must be one of 'halting', 'blend'"):
        sf.soft_while(cond, lambda x: x, 1.0, max_steps=3, semantics="average")
    with pytest.raises(ValueError, match="chunk_size must be an int in"):
        sf.soft_while(cond, lambda x: x, 1.0, max_steps=3, chunk_size=0)
    with pytest.raises(TypeError, match="upper must be a Python int"):
        sf.soft_fori_loop(0, jnp.int32(3), lambda i, v: v, 1.0, break_fn=lambda i, v: 0.0)


@pytest.mark.parametrize(
    ("tol", "error", "message"),
    [
        ("x", TypeError, "tol must be a real number"),
        (None, TypeError, "tol must be a real number"),
        (-1e-3, ValueError, "tol must be a non-negative number"),
        (float("nan"), ValueError, "tol must be a non-negative number"),
        (np.ones(2), ValueError, "tol must be a scalar"),
    ],
)
def test_bad_tol_is_named(tol, error, message):
    cond = lambda x: sf.greater(x, 0.0)  # noqa: E731
    with pytest.raises(error, match=message):
        sf.soft_while(cond, lambda x: x, 1.0, max_steps=3, tol=tol)
    with pytest.raises(error, match=message):
        sf.soft_fori_loop(0, 3, lambda i, x: x, 1.0, break_fn=lambda i, x: 0.0 * x, tol=tol)


def test_break_fn_returning_a_bool_is_named():
    with pytest.raises(TypeError, match=r"break_fn must return a scalar float.*returned bool\[\]"):
        sf.soft_fori_loop(0, 3, lambda i, x: x, 1.0, break_fn=lambda i, x: x > 2)


def test_conditions_may_be_python_floats():
    # A constant condition: always go on (the loop runs max_steps), or break at once.
    value, info = sf.soft_while(
        lambda x: 1.0, lambda x: x + 1.0, 0.0, max_steps=5, return_info=True
    )
    assert float(value) == 5.0 and int(info.steps) == 5
    assert float(sf.soft_while(lambda x: 0.0, lambda x: x + 1.0, 0.0, max_steps=5)) == 0.0
    total = sf.soft_fori_loop(0, 4, lambda i, s: s + i, 0.0, break_fn=lambda i, s: 0.0)
    assert float(total) == 0.0 + 1 + 2 + 3
    half = sf.soft_fori_loop(0, 4, lambda i, s: s + 1.0, 0.0, break_fn=lambda i, s: 0.5, tol=0.0)
    # break before step i with probability 1/2 each: E[steps] = sum_{k<4} k/2^(k+1) + 4/2^4
    assert np.isclose(float(half), sum(k / 2 ** (k + 1) for k in range(4)) + 4 / 16, rtol=1e-6)


def test_structure_mismatch_names_the_first_leaf_that_differs():
    cond = lambda s: sf.greater(s["a"], 0.0)  # noqa: E731
    init = {"a": 1.0, "b": jnp.ones(2), "c": jnp.ones(3)}
    with pytest.raises(
        TypeError, match=r"at \['b'\], init_val has float32\[2\] and .*float32\[1\]"
    ):
        sf.soft_while(cond, lambda s: {**s, "b": s["b"][:1]}, init, max_steps=3)
    with pytest.raises(TypeError, match=r"init_val has a leaf at \['b'\] where .* at \['c'\]"):
        sf.soft_while(cond, lambda s: {"a": s["a"], "c": s["c"]}, init, max_steps=3)
    with pytest.raises(TypeError, match=r"body_fn's output has more leaves.*\['d'\]"):
        sf.soft_while(cond, lambda s: {**s, "d": s["a"]}, init, max_steps=3)


def test_functions_are_traced_once():
    traces = {"cond": 0, "body": 0}

    def cond(x):
        traces["cond"] += 1
        return sf.greater(x, 1.0)

    def body(x):
        traces["body"] += 1
        return 0.5 * x

    sf.soft_while(cond, body, 8.0, max_steps=20)
    assert traces == {"cond": 1, "body": 1}


def test_vmap_exits_when_the_last_loop_stops():
    counter = []
    cond = lambda x: sf.less_equal(x, 10.0, mode="hard")  # noqa: E731
    starts = jnp.array([1.0, 3.0, 0.2])  # stop after 4, 2 and 6 doublings

    def run(x):
        return sf.soft_while(cond, _counting_body(counter), x, max_steps=1000, return_info=True)

    values, info = jax.vmap(run)(starts)
    jax.effects_barrier()
    assert np.array_equal(info.steps, [4, 2, 6])
    assert np.array_equal(values, [16.0, 12.0, 12.8 * np.float32(1)])
    for start, value in zip(starts, values, strict=True):
        expected = jax.lax.while_loop(lambda x: x <= 10.0, lambda x: 2.0 * x, start)
        assert np.asarray(value) == np.asarray(expected)  # bit for bit, lane by lane
    assert len(counter) == 6  # one batched body evaluation per step of the longest loop


def test_fori_loop_with_break_over_an_empty_range_returns_init():
    never = lambda i, v: 0.0  # noqa: E731
    value, info = sf.soft_fori_loop(3, 3, lambda i, v: v + 1, 2.5, break_fn=never, return_info=True)
    assert float(value) == 2.5
    assert int(info.steps) == 0 and float(info.expected_steps) == 0.0
    assert float(sf.soft_fori_loop(5, 1, lambda i, v: v + 1, 2.5, break_fn=never)) == 2.5


def test_fori_loop_with_break_over_an_empty_range_checks_and_converts_init():
    never = lambda i, v: 0.0  # noqa: E731
    value = sf.soft_fori_loop(3, 3, lambda i, v: v + 1, 2.5, break_fn=never)
    assert isinstance(value, jax.Array) and value.dtype == jnp.float32
    with pytest.raises(TypeError, match=r"leaf .* int32"):
        sf.soft_fori_loop(3, 3, lambda i, v: v + 1, 2, break_fn=never)
    with pytest.raises(TypeError, match="same structure"):
        sf.soft_fori_loop(3, 3, lambda i, v: (v, v), 2.5, break_fn=never)


def _fori_body(i, val):
    return val * 1.01 + jnp.sin(i * val[::-1])


@pytest.mark.parametrize(("lower", "upper", "chunk_size"), [(2, 12, 3), (0, 16, None), (5, 5, 2)])
def test_checkpointed_fori_loop_equals_lax_fori_loop(lower, upper, chunk_size):
    init = jnp.array([0.1, 0.2, 0.3])

    def ours(v):
        return sf.soft_fori_loop(
            lower, upper, _fori_body, v, checkpoint=True, chunk_size=chunk_size
        )

    def theirs(v):
        return jax.lax.fori_loop(lower, upper, _fori_body, v)

    assert np.array_equal(ours(init), theirs(init))
    loss = lambda f: lambda v: jnp.sum(f(v) ** 2)  # noqa: E731
    assert np.allclose(jax.grad(loss(ours))(init), jax.grad(loss(theirs))(init), rtol=1e-6)
    counts = sf.soft_fori_loop(0, 5, lambda i, c: c + i, 0, checkpoint=True)  # integer state
    assert int(counts) == 10
    # The index is weakly typed, as lax.fori_loop's: i / 2 keeps a float16 state float16.
    half = sf.soft_fori_loop(0, 4, lambda i, s: s + i / 2, jnp.float16(0), checkpoint=True)
    assert half.dtype == jnp.float16 and half == jax.lax.fori_loop(
        0, 4, lambda i, s: s + i / 2, jnp.float16(0)
    )


def test_checkpointed_fori_loop_gradient_memory_is_sublinear():
    size, n = 10_000, 1_000

    def temp_bytes(checkpoint):
        def loss(x):
            out = sf.soft_fori_loop(
                0, n, lambda i, v: v + 0.01 * jnp.sin(v), x, checkpoint=checkpoint
            )
            return jnp.sum(out)

        compiled = jax.jit(jax.grad(loss)).lower(jnp.ones(size)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    every_step = n * size * 4
    assert temp_bytes(None) >= 0.5 * every_step  # lax.fori_loop stores every step
    assert temp_bytes(True) <= 0.1 * every_step


def test_fori_loop_options_that_do_not_apply_are_rejected():
    brk = lambda i, v: sf.greater(v, 3.0)  # noqa: E731
    with pytest.raises(TypeError, match="checkpoint must be True or False"):
        sf.soft_fori_loop(0, 3, lambda i, v: v + 1, 0.0, break_fn=brk, checkpoint="yes")
    with pytest.raises(ValueError, match="always runs checkpointed"):
        sf.soft_fori_loop(0, 3, lambda i, v: v + 1, 0.0, break_fn=brk, checkpoint=False)
    with pytest.raises(ValueError, match="chunk_size is for a chunked loop"):
        sf.soft_fori_loop(0, 3, lambda i, v: v + 1, 0.0, chunk_size=2)
    with pytest.raises(TypeError, match="lower must be a Python int when checkpoint=True"):
        sf.soft_fori_loop(jnp.int32(0), 3, lambda i, v: v + 1, 0.0, checkpoint=True)


def test_gradient_under_vmap_exits_early_too():
    counter = []
    starts = jnp.array([1.0, 3.0, 0.2])  # stop after 4, 2 and 6 doublings

    def loss(x):
        cond = lambda v: sf.less_equal(v, 10.0, softness=1e-3)  # noqa: E731
        return sf.soft_while(cond, _counting_body(counter), x, max_steps=1000, tol=1e-6)

    grads = jax.jit(jax.vmap(jax.grad(loss)))(starts)
    jax.effects_barrier()
    assert np.allclose(grads, [16.0, 4.0, 64.0])  # d(2^k x)/dx
    # The 6 steps of the longest loop, forward and once more when reverse mode recomputes its
    # checkpointed chunk (without early exit, 1000 of each).
    assert len(counter) == 2 * 6


def test_value_and_gradient_paths_agree():
    # The value comes from a while loop, derivatives from a checkpointed scan of the same steps.
    cond = lambda x: sf.greater(jnp.sum(x), 0.5, softness=0.3)  # noqa: E731
    body = lambda x: 0.8 * x - 0.05  # noqa: E731
    init = jnp.array([2.0, 1.0])
    for semantics in sf.SEMANTICS:
        run = lambda x, s=semantics: sf.soft_while(  # noqa: E731
            cond, body, x, max_steps=40, semantics=s, return_info=True
        )
        value, _ = jax.jit(lambda x, run=run: jax.jvp(run, (x,), (jnp.ones(2),)))(init)
        direct = jax.jit(run)(init)
        assert tree_allclose(value, direct, rtol=1e-6)
        assert np.array_equal(value[1].steps, direct[1].steps)
