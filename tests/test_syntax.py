# ruff: noqa: SIM108  (the programs are written with if statements on purpose)
"""sf.relax on functions written with Python control flow (if / elif / else, while, for, and / or /
not, a if c else b, early return): each against the same program written by hand with lax control
flow and softflow primitives, against the Python function itself on concrete numbers (hard mode),
and against float64 finite differences."""

import functools
import inspect
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import softflow as sf
from softflow import ConversionError, RelaxError
from softflow._program._syntax import call_converted

TAU = 0.7


class Program(NamedTuple):
    name: str
    fn: Callable  # Python syntax
    hand: Callable  # the same program with lax control flow / softflow primitives
    args: Callable  # rng -> tuple of float64 numpy values
    max_steps: int | None = None
    # False where the hand version is a loop that stops (soft_while): its straight-through
    # gradient is that loop's own, while a converted break is a chain of straight-through selects
    same_st_gradient: bool = True


PROGRAMS: list[Program] = []


def program(args, max_steps=None, same_st_gradient=True):
    def register(fn):
        def with_hand(hand):
            PROGRAMS.append(Program(fn.__name__, fn, hand, args, max_steps, same_st_gradient))
            return hand

        fn.hand = with_hand
        return fn

    return register


def scalars(n, scale=1.0):
    return lambda rng: tuple(rng.normal(size=()) * scale for _ in range(n))


@program(scalars(2))
def threshold(x, t):
    if x > t:
        y = x * x
    else:
        y = t - x
    return y


@threshold.hand
def _(x, t):
    return lax.cond(x > t, lambda: x * x, lambda: t - x)


@program(scalars(1, 2.0))
def elif_chain(x):
    if x > 1:
        y = jnp.sin(x)
    elif x > 0:
        y = x * 3
    elif x > -1:
        y = -x
    else:
        y = x * x
    return y


@elif_chain.hand
def _(x):
    return lax.cond(
        x > 1,
        lambda: jnp.sin(x),
        lambda: lax.cond(x > 0, lambda: x * 3, lambda: lax.cond(x > -1, lambda: -x, lambda: x * x)),
    )


@program(scalars(2))
def if_without_else(x, y):
    z = x + y
    if x < y:
        z = z * y
    return z


@if_without_else.hand
def _(x, y):
    z = x + y
    return lax.cond(x < y, lambda: z * y, lambda: z)


@program(scalars(2))
def nested_ifs(x, y):
    if x > 0:
        if y > 0:
            r = x * y
        else:
            r = x - y
        s = r + 1
    else:
        r = -x
        s = r * y
    return r + s


@nested_ifs.hand
def _(x, y):
    def pos():
        r = lax.cond(y > 0, lambda: x * y, lambda: x - y)
        return r, r + 1

    r, s = lax.cond(x > 0, pos, lambda: (-x, -x * y))
    return r + s


@program(lambda rng: (rng.uniform(0.5, 4.0),), max_steps=12)
def newton_sqrt(a):
    x = a
    err = jnp.abs(x * x - a) + 1.0
    while err > 1e-3:
        x = 0.5 * (x + a / x)
        err = jnp.abs(x * x - a)
    return x


@newton_sqrt.hand
def _(a):
    def body(c):
        x, _ = c
        x = 0.5 * (x + a / x)
        return x, jnp.abs(x * x - a)

    return lax.while_loop(lambda c: c[1] > 1e-3, body, (a, jnp.abs(a * a - a) + 1.0))[0]


@program(lambda rng: (rng.uniform(0.0, 3.0),), max_steps=10)
def counting_loop(x):
    n = 0
    s = x
    while s < 10:
        s = s * 1.5 + 1
        n += 1
    return n * 1.0 + s


@counting_loop.hand
def _(x):
    def body(c):
        n, s = c
        return n + 1, s * 1.5 + 1

    n, s = lax.while_loop(lambda c: c[1] < 10, body, (0, x))
    return n * 1.0 + s


@program(lambda rng: (rng.normal(size=5), rng.normal()))
def continue_accumulation(x, w):
    s = 0.0
    for i in range(5):
        if x[i] < 0:
            continue
        s = s + x[i] * w
    return s


@continue_accumulation.hand
def _(x, w):
    s = 0.0
    for i in range(5):
        s = lax.cond(x[i] < 0, lambda s=s: s, lambda s=s, i=i: s + x[i] * w)
    return s


def _clip_by_returns(x):
    if x < -1:
        return -1.0 + 0.1 * x
    if x > 1:
        return 1.0 + 0.1 * x
    return x


@program(scalars(2, 2.0))
def early_returns_in_helper(x, y):
    return _clip_by_returns(x) * 2 + _clip_by_returns(y * x)


def _clip_hand(x):
    return lax.cond(
        x < -1, lambda: -1.0 + 0.1 * x, lambda: lax.cond(x > 1, lambda: 1.0 + 0.1 * x, lambda: x)
    )


@early_returns_in_helper.hand
def _(x, y):
    return _clip_hand(x) * 2 + _clip_hand(y * x)


@program(lambda rng: (rng.normal(size=3) * 2,))
def helper_with_returns_in_a_loop(x):
    s = 0.0
    for i in range(3):
        s = s + _clip_by_returns(x[i])
    return s


@helper_with_returns_in_a_loop.hand
def _(x):
    return _clip_hand(x[0]) + _clip_hand(x[1]) + _clip_hand(x[2])


@program(scalars(1))
def conditional_expression(x):
    return (x if x > 0 else 0.1 * x) + (1.0 if x > 0.5 else 2.0)


@conditional_expression.hand
def _(x):
    return jnp.where(x > 0, x, 0.1 * x) + jnp.where(x > 0.5, 1.0, 2.0)


@program(scalars(3))
def boolean_operators(x, y, z):
    if (x > 0 and y < 1) or not z > 0:
        r = x * y
    else:
        r = z
    return r


@boolean_operators.hand
def _(x, y, z):
    return lax.cond(((x > 0) & (y < 1)) | ~(z > 0), lambda: x * y, lambda: z)


@program(lambda rng: (rng.normal(size=4),))
def static_range_unrolled(x):
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] > 0:
            s = s + x[i] * (i + 1)
    return s


@static_range_unrolled.hand
def _(x):
    s = 0.0
    for i in range(4):
        s = lax.cond(x[i] > 0, lambda s=s, i=i: s + x[i] * (i + 1), lambda s=s: s)
    return s


def _halve_down(x):
    while x > 1:
        x = x / 2
    return x


@program(lambda rng: (rng.uniform(0.5, 6.0), rng.uniform(0.5, 6.0)), max_steps=5)
def loop_in_helper(x, y):
    return _halve_down(x) + _halve_down(y * 2)


def _halve_hand(x):
    return lax.while_loop(lambda x: x > 1, lambda x: x / 2, x)


@loop_in_helper.hand
def _(x, y):
    return _halve_hand(x) + _halve_hand(y * 2)


@program(scalars(1))
def expression_in_static_loop(x):
    for _ in range(3):
        x = x * 2 if x < 1 else x - 1
    return x


@expression_in_static_loop.hand
def _(x):
    for _ in range(3):
        x = jnp.where(x < 1, x * 2, x - 1)
    return x


@program(lambda rng: (rng.uniform(0.2, 2.0),), max_steps=10)
def while_with_and(x):
    i = 0
    while i < 6 and x > 0.1:
        x = x * 0.6
        i += 1
    return x


@while_with_and.hand
def _(x):
    def body(c):
        i, x = c
        return i + 1, x * 0.6

    return lax.while_loop(lambda c: (c[0] < 6) & (c[1] > 0.1), body, (0, x))[1]


def _static_flag_program(x, y, square):
    if square:  # a static Python flag: ordinary Python
        x = x * x
    if x > y:
        return x - y
    return y


@program(scalars(2))
def static_flag(x, y):
    return _static_flag_program(x, y, True) + _static_flag_program(x, y, False)


@static_flag.hand
def _(x, y):
    return lax.cond(x * x > y, lambda: x * x - y, lambda: y) + lax.cond(
        x > y, lambda: x - y, lambda: y
    )


@program(scalars(2))
def return_in_every_path_of_nested_branch(x, y):
    if x > 0:
        if y > 0:
            return x + y
        else:
            z = x - y
            return z * z
    else:
        z = y * 2
        return z * z


@return_in_every_path_of_nested_branch.hand
def _(x, y):
    return lax.cond(
        x > 0, lambda: lax.cond(y > 0, lambda: x + y, lambda: (x - y) ** 2), lambda: (y * 2) ** 2
    )


@program(
    lambda rng: (rng.uniform(0.0, 2.0, size=5), rng.uniform(0.5, 1.5)),
    max_steps=6,
    same_st_gradient=False,
)
def for_with_break(x, w):
    s = w
    for i in range(5):
        if s > 2.0:
            break
        s = s + x[i] * w
    return s


@for_with_break.hand
def _(x, w):
    def body(c):
        i, s = c
        return i + 1, s + x[i] * w

    return lax.while_loop(lambda c: (c[0] < 5) & ~(c[1] > 2.0), body, (0, w))[1]


@program(lambda rng: (rng.uniform(0.2, 3.0), rng.uniform(1.0, 4.0)), max_steps=12)
def while_with_break(x, t):
    i = 0.0
    while i < 8.0:
        if x > t:
            break
        x = x * 1.3 + 0.1
        i = i + 1.0
    return x + i


@while_with_break.hand
def _(x, t):
    def body(c):
        x, i = c
        return x * 1.3 + 0.1, i + 1.0

    x, i = lax.while_loop(lambda c: (c[1] < 8.0) & ~(c[0] > t), body, (x, 0.0))
    return x + i


@program(lambda rng: (rng.uniform(0.2, 1.0), rng.uniform(2.0, 6.0)), max_steps=30)
def while_true_with_break(x, t):
    s = 0.0
    while True:
        if s > t:
            break
        s = s + x
        x = x * 1.1
    return s


@while_true_with_break.hand
def _(x, t):
    def body(c):
        s, x = c
        return s + x, x * 1.1

    return lax.while_loop(lambda c: ~(c[0] > t), body, (0.0, x))[0]


@program(lambda rng: (rng.normal(size=5), rng.normal()))
def return_inside_for(x, t):
    for i in range(5):
        if x[i] > t:
            return x[i] * (i + 1)
    return t - 1.0


@return_inside_for.hand
def _(x, t):
    result = t - 1.0
    for i in reversed(range(5)):
        result = lax.cond(x[i] > t, lambda i=i: x[i] * (i + 1), lambda r=result: r)
    return result


@program(scalars(2))
def early_return_then_code(x, t):
    if x > t:
        return x * 2
    y = x - t
    if y < -1:
        y = y * y
    return y


@early_return_then_code.hand
def _(x, t):
    y = x - t
    return lax.cond(x > t, lambda: x * 2, lambda: lax.cond(y < -1, lambda: y * y, lambda: y))


def _first_above(x, t):
    for i in range(3):
        if x[i] > t:
            return x[i] * (i + 1)
    return t - 1.0


@program(lambda rng: (rng.normal(size=3), rng.normal()))
def loop_return_in_helper_under_soft_if(x, t):
    if t > 0.0:
        return _first_above(x, t)
    else:
        return -t


@loop_return_in_helper_under_soft_if.hand
def _(x, t):
    def first_above(x, t):
        result = t - 1.0
        for i in reversed(range(3)):
            result = lax.cond(x[i] > t, lambda i=i: x[i] * (i + 1), lambda r=result: r)
        return result

    return lax.cond(t > 0.0, lambda: first_above(x, t), lambda: -t)


def _hand_relaxed(prog, mode):
    return sf.relax(prog.hand, softness=TAU, mode=mode, max_steps=prog.max_steps, convert=False)


@pytest.mark.parametrize("prog", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_program(prog, x64):
    rng = np.random.default_rng(1)
    args = prog.args(rng)
    options = {"softness": TAU, "max_steps": prog.max_steps}
    soft = sf.relax(prog.fn, **options)
    st = sf.relax(prog.fn, **options, mode="straight_through")
    hard = sf.relax(prog.fn, **options, mode="hard")
    hand = _hand_relaxed(prog, "soft")
    hand_st = _hand_relaxed(prog, "straight_through")
    direction = [rng.normal(size=np.shape(a)) for a in args]

    def along(f, a):
        return jax.jvp(f, tuple(map(jnp.asarray, a)), tuple(map(jnp.asarray, direction)))[1]

    @jax.jit
    def run(*a):
        h = 1e-6
        up = [x + h * d for x, d in zip(a, direction, strict=True)]
        down = [x - h * d for x, d in zip(a, direction, strict=True)]
        return {
            "soft": soft(*a),
            "hand": hand(*a),
            "st": st(*a),
            "hand_st": hand_st(*a),
            "hard": hard(*a),
            "grad": jax.grad(lambda *b: soft(*b), argnums=tuple(range(len(a))))(*a),
            "grad_hand": jax.grad(lambda *b: hand(*b), argnums=tuple(range(len(a))))(*a),
            "grad_st": jax.grad(lambda *b: st(*b), argnums=tuple(range(len(a))))(*a),
            "grad_hand_st": jax.grad(lambda *b: hand_st(*b), argnums=tuple(range(len(a))))(*a),
            "fd": (soft(*up) - soft(*down)) / (2 * h),
            "jvp": along(soft, a),
        }

    r = run(*args)
    # (a) the hand-written program, to float rounding (values and gradients, soft and ST)
    np.testing.assert_allclose(r["soft"], r["hand"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(r["st"], r["hand_st"], rtol=1e-12, atol=1e-14)
    for g, gh in zip(r["grad"], r["grad_hand"], strict=True):
        np.testing.assert_allclose(g, gh, rtol=1e-12, atol=1e-14)
    for g, gh in zip(r["grad_st"], r["grad_hand_st"], strict=True):
        if prog.same_st_gradient:
            np.testing.assert_allclose(g, gh, rtol=1e-12, atol=1e-14)
        assert np.all(np.isfinite(g))
    # (b) the Python function itself on concrete numbers: hard mode and the ST forward value
    python = prog.fn(*map(jnp.asarray, args))
    np.testing.assert_array_equal(r["hard"], python, strict=False)
    assert r["hard"].dtype == jnp.asarray(python).dtype
    np.testing.assert_array_equal(r["st"], python)
    # (c) float64 finite differences of the soft program
    np.testing.assert_allclose(r["jvp"], r["fd"], rtol=1e-5, atol=1e-7)


def test_at_least_fifteen_programs():
    assert len(PROGRAMS) >= 15


def test_conditional_expression_is_soft_where(x64):
    """``a if c else b`` is exactly sf.soft_where of sf.greater, and strictly inside (a, b)."""
    x = jnp.asarray(0.3)
    expected = sf.soft_where(sf.greater(x, 0.0, softness=TAU), x, 0.1 * x) + sf.soft_where(
        sf.greater(x, 0.5, softness=TAU), 1.0, 2.0
    )
    np.testing.assert_allclose(
        sf.relax(conditional_expression, softness=TAU)(x), expected, rtol=1e-14
    )
    soft = float(sf.relax(threshold, softness=1.0)(0.1, 0.0))
    assert 0.1 * 0.1 < soft < -0.1 + 0.0 or -0.1 < soft < 0.01


def test_static_loop_stays_unrolled():
    text = str(
        jax.make_jaxpr(functools.partial(call_converted, static_range_unrolled))(jnp.ones(4))
    )
    assert "while" not in text and text.count("cond[") == 4


def test_static_python_control_flow_stays_python():
    """An if on a Python flag and a while on Python ints leave no cond / while in the program."""

    def fn(x, flag=True):
        n = 3
        while n > 0:
            n -= 1
            x = x + 1.0 if flag else x
        return x

    text = str(jax.make_jaxpr(functools.partial(call_converted, fn))(1.0))
    assert "cond" not in text and "while" not in text
    assert float(sf.relax(fn)(1.0)) == 4.0


def test_convert_false_traces_as_is():
    # Unconverted, the if on a traced value is an error naming its line.
    lines, first = inspect.getsourcelines(threshold)
    line = first + next(i for i, text in enumerate(lines) if "if x > t" in text)
    with pytest.raises(ConversionError, match=rf"traced value as a Python value at .*:{line} "):
        sf.relax(threshold, convert=False)(1.0, 0.0)
    with pytest.raises(TypeError, match="convert must be True or False"):
        sf.relax(threshold, convert=1)  # type: ignore[arg-type]


def test_variable_defined_in_one_branch_is_an_error():
    def uses(x):
        if x > 0:
            y = x
        return y

    with pytest.raises(
        ConversionError, match=r"variable 'y' is defined on only one side.*test_syntax.py:\d+"
    ):
        sf.relax(uses)(1.0)


def test_return_nested_in_a_soft_if_or_with_paths_without_return_is_an_error():
    def implicit_none(x):
        if x > 0:
            return x

    def nested(x, y):
        if x > 0:
            if y > 0:
                return x + y
            z = x - y
        else:
            z = y * 2
        return z * z

    with pytest.raises(ConversionError, match=r"return at .*test_syntax.py:\d+ .*None"):
        sf.relax(implicit_none)(1.0)
    with pytest.raises(
        ConversionError, match=r"return at .*test_syntax.py:\d+ .*inside another if statement"
    ):
        sf.relax(nested)(1.0, 2.0)


def test_while_without_max_steps_names_the_line():
    lines, first = inspect.getsourcelines(newton_sqrt)
    line = first + next(i for i, text in enumerate(lines) if "while" in text)
    with pytest.raises(RelaxError, match=rf"while loop at .*test_syntax.py:{line} .*max_steps"):
        sf.relax(newton_sqrt)(2.0)


def _first_above_by_while(x, t):
    i = 0
    found = -1.0
    while i < 6:
        if x[i] > t:
            found = x[i] * i
            break
        i += 1
    return found


def _first_above_by_for(x, t):
    found = -1.0
    for i in range(6):
        if x[i] > t:
            found = x[i] * i
            break
    return found


def test_a_while_loop_with_a_counter_bound_and_a_soft_break_needs_no_max_steps(x64):
    # `while i < 6:` with `i += 1` and a break on a traced condition: the loop's test is
    # `jnp.where(broke, False, i < 6)`, whose counter bounds it as `(i < 6) & ...` does.
    x = jnp.asarray(np.random.default_rng(3).normal(size=6))
    t = jnp.float64(0.4)
    relaxed = sf.relax(_first_above_by_while, softness=TAU)
    assert "max_steps=6" in str(relaxed.explain(x, t))
    bounded = sf.relax(_first_above_by_while, softness=TAU, max_steps=6)
    by_for = sf.relax(_first_above_by_for, softness=TAU)
    np.testing.assert_allclose(relaxed(x, t), bounded(x, t), rtol=1e-12)
    np.testing.assert_allclose(relaxed(x, t), by_for(x, t), rtol=1e-12)
    grads = [jax.grad(f, argnums=(0, 1))(x, t) for f in (relaxed, by_for)]
    for g, g_for in zip(*grads, strict=True):
        np.testing.assert_allclose(g, g_for, rtol=1e-10)
    for y in (x, -jnp.abs(x)):  # a break taken, and none
        hard = sf.relax(_first_above_by_while, mode="hard")(y, t)
        assert float(hard) == _first_above_by_while(np.asarray(y), float(t))


def _newton_until(x, tol, count_first, bound, strict):
    n = 0
    passes = 0
    while True:
        if count_first:
            n += 1
        x = 0.5 * (x + 2.0 / x)
        passes = passes + 1
        if abs(x * x - 2.0) < tol or (n > bound if strict else n >= bound):
            break
        if not count_first:
            n += 1
    return x, passes


@pytest.mark.parametrize(
    ("count_first", "bound", "strict"), [(True, 5, False), (True, 5, True), (False, 4, False)]
)
def test_a_break_once_a_counter_reaches_a_bound_bounds_the_loop(count_first, bound, strict, x64):
    # `while True:` that breaks on convergence `or n >= bound`: the loop runs at most as many
    # passes as it takes the counter to reach the bound (it asked for max_steps).
    def fn(x, tol):
        return _newton_until(x, tol, count_first, bound, strict)

    x, tol = jnp.float64(3.0), jnp.float64(1e-3)
    most = int(_newton_until(3.0, -1.0, count_first, bound, strict)[1])  # never converges
    relaxed = sf.relax(fn, softness=TAU)
    assert f"max_steps={most})" in str(relaxed.explain(x, tol))
    bounded = sf.relax(fn, softness=TAU, max_steps=most)
    for a, b in zip(relaxed(x, tol), bounded(x, tol), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    g, g_bounded = (jax.grad(lambda x, f=f: f(x, tol)[0])(x) for f in (relaxed, bounded))
    np.testing.assert_allclose(g, g_bounded, rtol=1e-12)
    hard = sf.relax(fn, mode="hard")
    for t in (tol, jnp.float64(-1.0)):  # converges, and stops at the counter's bound
        assert [float(v) for v in hard(x, t)] == [float(v) for v in fn(x, t)]


def _break_in_the_middle(x, w):
    s = w
    for i in range(5):
        s = s + x[i]
        if s > 2.0:
            break
        s = s * w
    return s


@pytest.mark.parametrize(("seed", "unroll"), [(0, True), (1, True), (0, None), (2, None)])
def test_break_is_the_soft_fori_loop_mixture(seed, unroll, x64):
    """A Python ``for`` with ``break`` equals soft_fori_loop(..., break_fn=...) written by hand,
    also when the break is in the middle of the body (the state that stops is the state at the
    break, never blended with the break probability). Unrolled, to the last step; rolled (a
    loop of more than 4 steps, by default), it stops once the mass still running is at most
    1e-6, as every relaxed loop does."""
    tol = 0.0 if unroll else 1e-6
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.uniform(0.0, 2.0, size=5))
    w = jnp.asarray(rng.uniform(0.5, 1.5))

    def hand_top(x, w):
        return sf.soft_fori_loop(
            0,
            5,
            lambda i, s: s + x[i] * w,
            w,
            break_fn=lambda i, s: sf.greater(s, 2.0, softness=TAU),
            tol=tol,
        )

    def hand_middle(x, w):
        # carried: t_i = s_i + x[i], the state at the break check; t_5 = t_4 * w ends the loop
        def body(i, t):
            return t * w + jnp.where(i < 4, x[jnp.minimum(i + 1, 4)], 0.0)

        return sf.soft_fori_loop(
            0, 5, body, w + x[0], break_fn=lambda i, t: sf.greater(t, 2.0, softness=TAU), tol=tol
        )

    for fn, hand in ((for_with_break, hand_top), (_break_in_the_middle, hand_middle)):
        relaxed = jax.jit(sf.relax(fn, softness=TAU, unroll=unroll))
        np.testing.assert_allclose(relaxed(x, w), hand(x, w), rtol=1e-13)
        grads = jax.grad(relaxed, argnums=(0, 1))(x, w)
        hand_grads = jax.grad(hand, argnums=(0, 1))(x, w)
        for g, h in zip(grads, hand_grads, strict=True):
            np.testing.assert_allclose(g, h, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(sf.relax(fn, mode="hard")(x, w), fn(x, w))


def test_break_nested_in_a_soft_if_is_a_clear_error():
    def fn(x):
        s = x
        for _ in range(4):
            if s > 0:  # noqa: SIM102  (the nesting is what is tested)
                if s > 2:
                    break
            s = s + x
        return s

    with pytest.raises(
        ConversionError, match=r"break at .*test_syntax.py:\d+.*combine the conditions"
    ):
        sf.relax(fn)(1.0)


def _halve_with_break(x, t):
    n = 0.0
    while x > 1.0:
        x = x * 0.5
        if x < t:
            break
        n = n + 1.0
    return x + n


def _halve_with_break_mixture(x, t, steps, tol=1e-6):
    """The mixture over where the loop stops, unrolled by hand: at the loop's test (state
    before the body) or at the break (state in the middle of the body). As documented for
    soft_while, a running mass cut at or below ``tol`` stops where it was cut."""
    n, result, running = 0.0, 0.0, 1.0
    for _ in range(steps):
        going_on = sf.greater(x, 1.0, softness=TAU)
        cut = running * going_on <= tol
        result = result + jnp.where(cut, running, running * (1 - going_on)) * (x + n)
        running = jnp.where(cut, 0.0, running * going_on)
        x = x * 0.5
        breaks = sf.less(x, t, softness=TAU)
        cut = running * (1 - breaks) <= tol
        result = result + jnp.where(cut, running, running * breaks) * (x + n)
        running = jnp.where(cut, 0.0, running * (1 - breaks))
        n = n + 1.0
    return result + running * (x + n)


@pytest.mark.parametrize("seed", range(2))
def test_break_in_the_middle_of_a_while_loop_is_the_mixture_over_exits(seed, x64):
    """``while`` with a ``break`` in the middle of the body: the loop stops either at its test
    (with the state before the body) or at the break (with the state at the break); never a
    blend of a stopped and a running state."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.uniform(2.0, 40.0, size=4))
    t = jnp.asarray(rng.uniform(1.0, 4.0))
    relaxed = jax.jit(jax.vmap(sf.relax(_halve_with_break, softness=TAU, max_steps=20), (0, None)))
    hand = jax.vmap(lambda x, t: _halve_with_break_mixture(x, t, 20), (0, None))
    np.testing.assert_allclose(relaxed(x, t), hand(x, t), rtol=1e-12)

    def total(f):
        return jax.grad(lambda x, t: jnp.sum(f(x, t)), argnums=(0, 1))(x, t)

    for g, h in zip(total(relaxed), total(hand), strict=True):
        np.testing.assert_allclose(g, h, rtol=1e-10, atol=1e-14)
    explained = str(sf.relax(_halve_with_break, max_steps=20).explain(x[0], t))
    assert explained.count("-> sf.less") == 1  # one break, one relaxed comparison
    assert "while  -> sf.soft_while with breaks" in explained
    for mode in ("hard", "straight_through"):
        exact = jax.vmap(sf.relax(_halve_with_break, mode=mode, max_steps=20), (0, None))(x, t)
        python = [_halve_with_break(float(xi), float(t)) for xi in x]
        np.testing.assert_array_equal(exact, python)


def test_break_in_a_traced_range_is_the_soft_fori_loop_mixture(x64):
    def fn(x, n):
        s = 0.0
        for i in range(n):
            if s > 2.0:
                break
            s = s + x[i]
        return s

    def hand(x):
        return sf.soft_fori_loop(
            0,
            6,
            lambda i, s: s + x[i],
            0.0,
            break_fn=lambda i, s: sf.greater(s, 2.0, softness=TAU),
        )

    x = jnp.asarray(np.random.default_rng(0).uniform(0.0, 1.5, size=6))
    relaxed = sf.relax(fn, softness=TAU, max_steps=6)
    # one relaxed comparison (the break's): the loop bound stays exact
    assert str(relaxed.explain(x, jnp.asarray(6))).count("-> sf.greater") == 1
    n = jnp.asarray(6)
    np.testing.assert_allclose(relaxed(x, n), hand(x), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(relaxed)(x, n), jax.grad(hand)(x), rtol=1e-10)
    for k in (0, 2, 6):
        hard = sf.relax(fn, mode="hard", max_steps=6)(x, jnp.asarray(k))
        assert float(hard) == fn(list(map(float, x)), k)
    lines, first = inspect.getsourcelines(fn)
    line = first + next(i for i, text in enumerate(lines) if "for i in" in text)
    with pytest.raises(RelaxError, match=rf"while loop at .*test_syntax.py:{line} .*max_steps"):
        sf.relax(fn, softness=TAU)(x, n)


def test_return_inside_loops_that_are_not_unrolled_is_a_clear_error():
    def in_while(x):
        while x < 10.0:
            if x > 3.0:
                return x
            x = x * 2.0
        return -x

    def after_break(x):
        s = 0.0
        for i in range(3):
            if s > 1.0:
                break
            for j in range(2):
                if x[i] > j:
                    return x[i]
            s = s + x[i]
        return s

    with pytest.raises(ConversionError, match=r"while loop at .*test_syntax.py:\d+ .*return"):
        sf.relax(in_while, max_steps=5)(1.0)
    with pytest.raises(ConversionError, match=r"return at .*test_syntax.py:\d+ .*soft break"):
        sf.relax(after_break)(jnp.ones(3))


def test_traced_range_is_a_fori_loop(x64):
    """``for i in range(n)`` with a traced integer ``n``: lax.fori_loop, its body relaxed."""

    def fn(x, n):
        s = x
        for i in range(n):
            if s < 2.0:
                s = s * 1.5 + i
        return s

    def hand(x, n):
        return lax.fori_loop(
            0, n, lambda i, s: lax.cond(s < 2.0, lambda: s * 1.5 + i, lambda: s), x
        )

    x, n = jnp.asarray(0.3), jnp.asarray(4)
    relaxed = sf.relax(fn, softness=TAU)
    expected = sf.relax(hand, softness=TAU, convert=False)
    np.testing.assert_allclose(relaxed(x, n), expected(x, n), rtol=1e-13)
    assert float(sf.relax(fn, mode="hard")(x, n)) == float(fn(x, 4))
    # forward mode (JAX cannot reverse-differentiate a loop with a traced bound)
    tangent = jax.jvp(lambda x: relaxed(x, n), (x,), (jnp.asarray(1.0),))[1]
    h = 1e-6
    fd = (relaxed(x + h, n) - relaxed(x - h, n)) / (2 * h)
    np.testing.assert_allclose(tangent, fd, rtol=1e-6)


def _generator(x):
    for i in range(3):
        if x > i:
            yield x


def test_try_and_generators_are_clear_errors():
    def guarded(x):
        try:
            if x > 0:
                y = x
            else:
                y = -x
        except ValueError:
            y = 0.0
        return y

    def uses_generator(x):
        return sum(_generator(x))

    line = inspect.getsourcelines(guarded)[1] + 1
    with pytest.raises(ConversionError, match=rf"try/except at .*test_syntax.py:{line} "):
        sf.relax(guarded)(1.0)
    with pytest.raises(ConversionError, match=r"cannot convert _generator .*generators"):
        sf.relax(uses_generator)(1.0)


def test_unconvertible_functions_are_errors():
    namespace: dict = {}
    exec("def made(x):\n    return x if x > 0 else -x\n", namespace)
    with pytest.raises(ConversionError, match="cannot convert made"):
        sf.relax(namespace["made"])(1.0)
    a, b = (lambda x: x if x > 0 else -x), (lambda x: -x)
    del b
    with pytest.raises(ConversionError, match="cannot convert"):
        sf.relax(a)(1.0)


def test_array_condition_is_a_clear_error():
    def fn(x):
        if x > 0:
            x = -x
        return x

    with pytest.raises(ConversionError, match=r"shape \(3,\).*jnp.where"):
        sf.relax(fn)(jnp.ones(3))


def test_and_on_floats_is_a_clear_error():
    def fn(x, y):
        return x if x and y > 0 else y

    with pytest.raises(ConversionError, match=r"`and` at .* float32"):
        sf.relax(fn)(1.0, 2.0)


def test_float32_and_vmap():
    xs = jnp.linspace(-2.0, 2.0, 5, dtype=jnp.float32)
    out = jax.vmap(sf.relax(elif_chain, softness=TAU))(xs)
    assert out.dtype == jnp.float32
    hand = jax.vmap(_hand_relaxed(PROGRAMS[1], "soft"))(xs)
    np.testing.assert_allclose(out, hand, rtol=1e-6)


def test_explain_names_the_python_lines():
    lines, first = inspect.getsourcelines(threshold)
    line = first + next(i for i, text in enumerate(lines) if "if x > t" in text)
    explained = str(sf.relax(threshold).explain(1.0, 0.0))
    assert f"test_syntax.py:{line} (threshold): gt" in explained
    assert f"test_syntax.py:{line} (threshold): cond" in explained


def _compounded(x, k):
    r = x
    for _ in range(k):
        if x > 0.5:
            r = r * 1.1
    return r


def test_a_python_int_argument_is_a_constant_of_the_program(x64):
    """An ``int`` argument bounds a Python loop as it would with the argument closed over: the
    loop runs ``k`` steps, and reverse mode differentiates it (a traced bound would make it a
    ``while`` loop, which reverse mode cannot differentiate)."""
    relaxed = sf.relax(_compounded, softness=0.1)
    x = jnp.asarray(0.8)
    for k in (3, 5):
        closed = sf.relax(functools.partial(_compounded, k=k), softness=0.1)
        np.testing.assert_array_equal(relaxed(x, k), closed(x))
        grad = jax.grad(relaxed)(x, k)
        np.testing.assert_array_equal(grad, jax.grad(closed)(x))
        step = 1e-6
        numeric = (relaxed(x + step, k) - relaxed(x - step, k)) / (2 * step)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6)
    assert relaxed(x, 3) != relaxed(x, 5)
