"""sf.relax on the Python idioms of numerical code: builtins on arrays, lists, loops over parameter
lists, helpers wrapped by JAX transformations, constant outputs, and the constructs that cannot be
relaxed (each refused with a ConversionError naming the construct and the user's line)."""

import functools
import re
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import softflow as sf
from softflow import ConversionError

TAU = 0.3

# ---------------------------------------------------------------------------------- builtins


def clipped_gap(x, a):
    return max(x, 0.0) + min(a, x, 1.5) + abs(x - a)


def test_builtin_max_min_are_soft_selections(x64):
    """max / min on traced values are Python's own fold (b if b > a else a), relaxed."""
    x, a = jnp.float64(-0.2), jnp.float64(0.9)
    soft = sf.relax(clipped_gap, softness=TAU)

    def by_hand(x, a):
        gt = functools.partial(sf.greater, softness=TAU)
        high = sf.soft_where(gt(0.0, x), 0.0, x)  # max(x, 0.0): 0.0 if 0.0 > x else x
        low = sf.soft_where(gt(a, x), x, a)  # min(a, x): x if x < a else a
        low = sf.soft_where(gt(low, 1.5), 1.5, low)  # then 1.5 if 1.5 < low
        return high + low + jnp.abs(x - a)

    np.testing.assert_allclose(soft(x, a), by_hand(x, a), rtol=1e-13)
    g = jax.grad(soft, argnums=(0, 1))(x, a)
    h = 1e-6
    fd = [(soft(x + h, a) - soft(x - h, a)) / (2 * h), (soft(x, a + h) - soft(x, a - h)) / (2 * h)]
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_builtin_max_min_hard_mode_is_python_bit_for_bit():
    """Under jit (traced) hard mode equals Python's max / min on concrete values, with Python's
    answers for NaN, -0.0 and ties (the first extreme item wins)."""
    hard = jax.jit(sf.relax(clipped_gap, mode="hard"))
    values = [np.nan, -0.0, 0.0, 1.5, -1.0, 2.0, np.inf, -np.inf]
    for x in values:
        for a in values:
            expected = clipped_gap(jnp.float32(x), jnp.float32(a))
            np.testing.assert_array_equal(hard(jnp.float32(x), jnp.float32(a)), expected)
    # max of a -0.0 and a 0.0 keeps the first, as Python does
    first = jax.jit(sf.relax(lambda x, y: max(x, y), mode="hard"))(jnp.float32(-0.0), 0.0)
    assert np.signbit(first)


def test_builtin_max_over_an_array_and_with_key():
    x = jnp.array([0.5, 3.0, -1.0])
    assert float(jax.jit(sf.relax(lambda v: max(v), mode="hard"))(x)) == 3.0
    soft = float(sf.relax(lambda v: max(v), softness=0.01)(x))
    assert abs(soft - 3.0) < 1e-6
    with pytest.raises(ConversionError, match="traced value as a Python value"):
        sf.relax(lambda v: max(v, key=lambda t: -t))(x)  # key=: Python's own, not converted


def extremes_of_generators(x, t):
    return max(v for v in x) + min(2 * v if v > t else v for v in x)


def extremes_of_lists(x, t):
    return max([v for v in x]) + min([2 * v if v > t else v for v in x])


def middle_and_largest(a, b, c):
    ordered = sorted([a, b, c])
    return ordered[1] + 2 * sorted((a, b, c), reverse=True)[0] + sorted(v for v in (a, b))[0]


def test_builtin_max_min_sorted_of_generators_and_sorted_of_traced_numbers(x64):
    x, t = jnp.array([0.3, 0.9, -0.2, 0.5]), jnp.float64(0.4)
    for mode, softness in (("soft", TAU), ("hard", 1.0)):
        on_generators = sf.relax(extremes_of_generators, softness=softness, mode=mode)(x, t)
        on_lists = sf.relax(extremes_of_lists, softness=softness, mode=mode)(x, t)
        np.testing.assert_array_equal(on_generators, on_lists)
    assert sf.relax(extremes_of_generators, mode="hard")(x, t) == extremes_of_lists(x, t)

    a, b, c = jnp.float64(0.3), jnp.float64(-0.4), jnp.float64(0.8)
    assert jax.jit(sf.relax(middle_and_largest, mode="hard"))(a, b, c) == 0.3 + 1.6 - 0.4
    soft = sf.relax(middle_and_largest, softness=TAU)(a, b, c)
    by_sort = sf.sort(jnp.stack([a, b, c]), softness=TAU, method="bitonic")
    pair = sf.sort(jnp.stack([a, b]), softness=TAU, method="bitonic")
    expected = by_sort[1] + 2 * by_sort[2] + pair[0]
    np.testing.assert_allclose(soft, expected, rtol=1e-12)
    tiny = sf.relax(middle_and_largest, softness=1e-6)(a, b, c)
    np.testing.assert_allclose(tiny, middle_and_largest(0.3, -0.4, 0.8), atol=1e-9)


@pytest.mark.parametrize("name", ["int", "float", "bool", "round"])
def test_python_numbers_of_traced_values_are_refused(name):
    convert = {"int": int, "float": float, "bool": bool, "round": round}[name]

    def f(x):
        return x * convert(x)

    with pytest.raises(
        ConversionError, match=rf"{name}\(\) of a traced value at .*test_syntax_idioms"
    ):
        sf.relax(f)(1.5)
    assert float(sf.relax(f, mode="hard")(1.5)) == float(f(jnp.float32(1.5)))  # eager: Python


# ----------------------------------------------------------------------- lists and containers


def appended_in_soft_while(x):
    out = []
    while x > 1:
        out.append(x)
        x = x / 2
    return jnp.stack(out)


def appended_in_soft_if(x):
    out = [x]
    if x > 1:
        out.append(x * 2)
    return sum(out)


def extended_by_iadd(x):
    out = [x]
    if x > 1:
        out += [x * 2]
    return sum(out)


@pytest.mark.parametrize(
    ("fn", "shown"),
    [
        (appended_in_soft_while, r"list `out.append\(...\)` at .*:\d+ \(appended_in_soft_while\)"),
        (appended_in_soft_if, r"list `out.append\(...\)` at .*:\d+ \(appended_in_soft_if\)"),
        (extended_by_iadd, r"list `out` is changed inside the if statement at .*:\d+"),
    ],
)
def test_lists_grown_under_a_soft_condition_are_refused(fn, shown):
    with pytest.raises(ConversionError, match=shown):
        sf.relax(fn, max_steps=8)(jnp.float32(10.0))
    with pytest.raises(ConversionError, match=shown):
        sf.relax(fn, max_steps=8, mode="straight_through")(jnp.float32(10.0))
    # hard mode on concrete arguments is the Python function itself
    np.testing.assert_array_equal(
        sf.relax(fn, mode="hard")(jnp.float32(10.0)), fn(jnp.float32(10.0))
    )


def filtered_by_a_comprehension(x, t):
    return max([v for v in x if v > t])


def filtered_inside_a_generator(x, t):
    return jnp.stack([max(v * w for v in x if v > w) for w in (0.0, t)])


@pytest.mark.parametrize("fn", [filtered_by_a_comprehension, filtered_inside_a_generator])
def test_a_comprehension_filtered_on_a_traced_condition_is_refused_with_its_line(fn):
    x, t = jnp.array([0.3, -1.2, 0.8]), jnp.float32(0.1)
    line = fn.__code__.co_firstlineno + 1
    shown = rf"comprehension's `if v > (t|w)` at .*:{line} \({fn.__name__}\).*jnp.where"
    for mode in ("soft", "straight_through"):
        with pytest.raises(ConversionError, match=shown):
            sf.relax(fn, softness=TAU, mode=mode)(x, t)
    # hard mode on concrete arguments is the Python function itself
    np.testing.assert_array_equal(sf.relax(fn, mode="hard")(x, t), fn(x, t))


def reduced_comprehensions(x, t):
    rows = list(x)
    total = sum(v * v for v in x if v > t)  # a generator
    started = sum([v for v in x if v > -t], 1.0)  # a list, with a start
    count = len([v for v in x if v > t])
    # a static filter first: rows[3] would raise, and is not evaluated
    evens = sum(rows[i] for i in range(5) if i < 3 and i % 2 == 0 if rows[i] < t)
    some = any(v > 0.5 for v in x if v > t)
    every = all(v < 0.7 for v in x if v > t)
    static = sum(([k] for k in range(4) if k > 1), [])  # noqa: RUF017 (Python's own filter)
    rest = any(v > t for k, v in enumerate(x) if k > 0)  # a static filter of traced truths
    return total, started, count, evens, some, every, jnp.asarray(static), rest


def reduced_by_hand(x, t, greater):
    kept = [greater(v, t) for v in x]
    total = sum(sf.soft_where(p, v * v, 0.0) for p, v in zip(kept, x, strict=True))
    started = 1.0 + sum(sf.soft_where(greater(v, -t), v, 0.0) for v in x)
    count = sum(kept)
    evens = sum(sf.soft_where(greater(t, x[i]), x[i], 0.0) for i in (0, 2))
    some = sf.any(jnp.stack([p * greater(v, 0.5) for p, v in zip(kept, x, strict=True)]))
    every = sf.all(jnp.stack([1 - p * (1 - greater(0.7, v)) for p, v in zip(kept, x, strict=True)]))
    rest = sf.any(jnp.stack([greater(v, t) for v in x[1:]]))
    return total, started, count, evens, some, every, jnp.asarray([2, 3]), rest


def test_sum_len_any_and_all_of_a_filtered_comprehension_weigh_its_elements(x64):
    """Each is the filtered program where the conditions are hard: the elements weighed by
    their conditions, and Python's own filter where a condition is static."""
    t = jnp.float64(0.1)
    soft = sf.relax(reduced_comprehensions, softness=TAU)
    gt = functools.partial(sf.greater, softness=TAU)
    for point in ([0.3, -1.2, 0.8, 0.05], [-0.3, 0.12, 0.6, 0.9]):
        x = jnp.asarray(point)
        got, want = soft(x, t), reduced_by_hand(x, t, gt)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-13)
        assert jnp.all(jax.grad(lambda x: sum(jnp.sum(v) for v in soft(x, t)[:4]))(x) != 0)
        hard = sf.relax(reduced_comprehensions, mode="hard")(x, t)
        for a, b in zip(hard, reduced_comprehensions(x, t), strict=True):
            np.testing.assert_array_equal(a, b)


def run_statistics(x, t):
    in_run, runs, current, longest = False, 0, 0, 0
    for v in x:
        if v > t:
            current = current + 1
            if not in_run:
                runs = runs + 1
            in_run = True
        else:
            in_run, current = False, 0
        longest = max(longest, current)
    return runs, longest


def longest_run(x, t):
    current, longest = 0, 0
    for v in x:
        if v > t:  # noqa: SIM108 (an if statement, as written in public code)
            current = current + 1
        else:
            current = 0
        longest = max(longest, current)
    return longest


def test_a_rolled_loop_that_carries_its_integers_one_by_one_says_so():
    # Four relaxed integers of a rolled loop have too many joint values to carry as one law:
    # each is carried on its own, an approximation that explain must show.
    x, t = jnp.array([0.7, 0.6, 1.2, -0.4, 1.6, 0.2, 0.5, -0.8]), jnp.float32(0.2)
    rules = [op.rule for op in sf.relax(run_statistics, softness=0.1).explain(x, t)]
    assert any("carried one by one" in rule and "unroll=True" in rule for rule in rules)
    rolled = sf.relax(longest_run, softness=0.1)
    assert not any("carried one by one" in op.rule for op in rolled.explain(x, t))
    unrolled = sf.relax(longest_run, softness=0.1, unroll=True)
    np.testing.assert_allclose(rolled(x, t), unrolled(x, t), rtol=1e-5)


def test_a_rebound_reduction_gets_python_s_filter():
    def total(x, t, sum=lambda values: jnp.stack(values).sum()):
        return sum([v for k, v in enumerate(x) if k > 0]) + sum([v for v in x if v > t])

    def static(x, sum=lambda values: jnp.stack(values).sum()):
        return sum([v for k, v in enumerate(x) if k > 0])

    x = jnp.array([0.3, 1.2, 0.8])
    np.testing.assert_array_equal(sf.relax(total, mode="hard")(x, 1.0), total(x, 1.0))
    with pytest.raises(ConversionError, match=r"comprehension's `if v > t` at .*:\d+ \(total\)"):
        sf.relax(total, softness=TAU)(x, 1.0)
    # static conditions only: Python's filter, the rebound function's own sum
    np.testing.assert_array_equal(sf.relax(static, softness=TAU)(x), static(x))


def any_and_all(x, t):
    some = 1.0 if any(v > t for v in x) else 0.0  # a generator
    every = jnp.where(all([v > -t for v in x]), 2.0, -1.0)  # a list
    static = any(k > 2 for k in range(4))  # Python's own
    return some + every + static


def test_any_and_all_of_traced_truth_values_are_their_soft_or_and_and(x64):
    x, t = jnp.array([0.3, -1.2, 0.8]), jnp.float64(0.1)

    def by_hand(x, t):
        def gt(u, v):
            return sf.greater(u, v, softness=TAU)

        some = sf.soft_where(sf.any(jnp.stack([gt(v, t) for v in x])), 1.0, 0.0)
        every = sf.soft_where(sf.all(jnp.stack([gt(v, -t) for v in x])), 2.0, -1.0)
        return some + every + 1.0

    np.testing.assert_allclose(sf.relax(any_and_all, softness=TAU)(x, t), by_hand(x, t), rtol=1e-14)
    for point in ([0.3, -1.2, 0.8], [-0.3, -0.05, 0.02], [0.5, 0.2, 0.9]):
        x = jnp.asarray(point)
        assert sf.relax(any_and_all, mode="hard")(x, t) == any_and_all(x, t)
        np.testing.assert_allclose(
            sf.relax(any_and_all, softness=1e-6)(x, t), any_and_all(x, t), atol=1e-12
        )


def speed_by_gear(v, shifts):
    gear = jnp.sum(v > shifts)  # a relaxed integer: 0, 1 or 2
    match gear:
        case 0:
            a = 3.0 * (1.0 - v / 4.0)
        case 1 | 5:
            a = 2.0 * (1.0 - v / 8.0)
        case g if v > 10.0:
            a = 0.1 * g
        case _:
            a = 1.0 - v / 12.0
    return a


def speed_by_gear_with_ifs(v, shifts):
    gear = jnp.sum(v > shifts)
    if gear == 0:
        a = 3.0 * (1.0 - v / 4.0)
    elif (gear == 1) | (gear == 5):
        a = 2.0 * (1.0 - v / 8.0)
    elif v > 10.0:
        a = 0.1 * gear
    else:
        a = 1.0 - v / 12.0
    return a


def matched_on_a_python_value(x, k):
    match k:
        case 0:
            y = x * 2.0
        case None:
            y = x
        case other:
            y = x - other
    return jnp.where(y > 0.5, y, 0.0)


def matched_apart(x, pair):
    match pair:
        case (a, b):
            return x * a + b
    return x


def test_a_match_statement_is_its_chain_of_ifs(x64):
    shifts = jnp.array([3.0, 6.0])
    for v in (1.0, 4.5, 7.0, 11.0, 2.9):
        v = jnp.float64(v)
        assert sf.relax(speed_by_gear, mode="hard")(v, shifts) == speed_by_gear(v, shifts)
        soft = sf.relax(speed_by_gear, softness=TAU)(v, shifts)
        np.testing.assert_allclose(
            soft, sf.relax(speed_by_gear_with_ifs, softness=TAU)(v, shifts), rtol=1e-13
        )
        grads = [
            jax.grad(sf.relax(f, softness=TAU))(v, shifts)
            for f in (speed_by_gear, speed_by_gear_with_ifs)
        ]
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)
    # each case's conditions are listed at the case's line
    explained = sf.relax(speed_by_gear, softness=TAU).explain(jnp.float64(4.5), shifts)
    first = speed_by_gear.__code__.co_firstlineno
    lines = {
        int(re.search(r":(\d+)", op.source)[1]) - first
        for op in explained
        if op.primitive == "cond"
    }
    assert lines == {3, 5, 7}
    # on a Python value the match runs as Python runs it (unconverted: Python's own match)
    for k in (0, None, 3):
        np.testing.assert_array_equal(
            sf.relax(matched_on_a_python_value, softness=TAU)(jnp.float64(0.3), k),
            sf.relax(matched_on_a_python_value, softness=TAU, convert=False)(jnp.float64(0.3), k),
        )
    line = matched_apart.__code__.co_firstlineno + 1
    with pytest.raises(
        ConversionError, match=rf"pattern `\[a, b\]` of the match statement at .*:{line}"
    ):
        sf.relax(matched_apart, mode="hard")(jnp.float64(1.0), (1.0, 2.0))


def first_above_with_for_else(x, t):
    r = 0.0
    for i in range(5):
        if x[i] > t:
            r = x[i]
            break
    else:
        r = -1.0 * t
    return r


def first_above_with_a_flag(x, t):
    """The same program with the else clause written out."""
    broke = False
    r = 0.0
    for i in range(5):
        if x[i] > t:
            r = x[i]
            broke = True
            break
    if not broke:
        r = -1.0 * t
    return r


def halve_with_while_else(x):
    n = 0.0
    while x > 1.0:
        x = x * 0.5
        n = n + 1.0
    else:
        x = x + 0.1
    return x, n


def primes_below(n):
    """Static loops: the inner loop's else belongs to it, the break in it to the inner loop."""
    found = []
    for k in range(2, n):
        for d in range(2, k):
            if k % d == 0:
                break
        else:
            found.append(k)
    return jnp.asarray(found)


def test_a_loop_with_an_else_clause_runs_it_when_no_break_is_taken(x64):
    x = jnp.array([0.1, 0.7, -0.3, 1.2, 0.4])
    for t in (0.5, 1.5):
        exact = first_above_with_for_else(x, t)
        assert sf.relax(first_above_with_for_else, mode="hard")(x, t) == exact
        np.testing.assert_allclose(sf.relax(first_above_with_for_else, softness=1e-6)(x, t), exact)
        # soft: the same program as the flag written by hand
        np.testing.assert_array_equal(
            sf.relax(first_above_with_for_else, softness=TAU)(x, t),
            sf.relax(first_above_with_a_flag, softness=TAU)(x, t),
        )
    for x0 in (5.3, 0.6):
        exact = halve_with_while_else(x0)
        np.testing.assert_array_equal(sf.relax(halve_with_while_else, mode="hard")(x0), exact)
        relaxed = sf.relax(halve_with_while_else, softness=1e-6, max_steps=8)(jnp.float64(x0))
        np.testing.assert_allclose(relaxed, exact, atol=1e-9)
    np.testing.assert_array_equal(sf.relax(primes_below, softness=TAU)(12), primes_below(12))


def first_above_set_at_the_break_or_in_else(x, t):
    for i in range(5):
        if x[i] > t:
            found = x[i]
            break
    else:
        found = -1.0 * t
    return found


def first_above_doubled_by_a_flag(x, t):
    found = False
    r = 0.0
    for i in range(5):
        if x[i] > t:
            r = x[i]
            found = True
            break
    if found:  # noqa: SIM108 (the if statement is what is tested)
        r = 2.0 * r
    else:
        r = -1.0 * t
    return r


def first_above_doubled_by_a_conditional_expression(x, t):
    found = False
    r = 0.0
    for i in range(5):
        if x[i] > t:
            r = x[i]
            found = True
            break
    return 2.0 * r if found else -1.0 * t


def first_above_doubled_by_two_ifs_on_a_flag(x, t):
    found = False
    r = 0.0
    for i in range(5):
        if x[i] > t:
            r = x[i]
            found = True
            break
    if not found:
        r = -1.0 * t
        factor = 1.0
    else:
        factor = 2.0
    if found:
        r = factor * r
    return r


def first_passage(x, t, scale):
    """The mixture over the element at which the search stops (``scale`` times it), or ``-t``
    where it finds none: the relaxed search written out by hand."""
    p = sf.greater(x, t, softness=TAU)
    none_yet = 1.0
    total = 0.0
    for i in range(x.shape[0]):
        total = total + none_yet * p[i] * scale * x[i]
        none_yet = none_yet * (1 - p[i])
    return total - none_yet * t


@pytest.mark.parametrize(
    ("fn", "scale"),
    [
        (first_above_with_for_else, 1.0),
        (first_above_with_a_flag, 1.0),
        (first_above_set_at_the_break_or_in_else, 1.0),
        (first_above_doubled_by_a_flag, 2.0),
        (first_above_doubled_by_a_conditional_expression, 2.0),
        (first_above_doubled_by_two_ifs_on_a_flag, 2.0),
    ],
)
def test_an_if_after_a_soft_break_runs_in_the_worlds_where_it_is_taken(x64, fn, scale):
    """The else clause, or an if on a flag set at the break, applies to the world where the loop
    did not break only (blending by the flag's probability weighted it onto the breaks' states
    too: 0.37 for 0.55)."""
    x = jnp.array([0.1, 1.05, 0.95, 1.2, 0.4])
    t = jnp.float64(1.0)
    soft = sf.relax(fn, softness=TAU)
    np.testing.assert_allclose(soft(x, t), first_passage(x, t, scale), rtol=1e-12)
    grads = jax.grad(soft, argnums=(0, 1))(x, t)
    expected = jax.grad(first_passage, argnums=(0, 1))(x, t, scale)
    for g, e in zip(grads, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    for t in (0.5, 1.0, 2.0):
        assert sf.relax(fn, mode="hard")(x, t) == fn(x, t)
        assert jax.jit(sf.relax(fn, mode="straight_through", softness=TAU))(x, t) == fn(x, t)


def first_above_in_a_while_else(x, t):
    i = 0
    found = 0.0
    while i < 5:
        if x[i] > t:
            found = x[i]
            break
        i += 1
    else:
        found = -1.0
    return found


def test_an_else_clause_after_a_compiled_soft_break_is_refused():
    x = jnp.array([0.1, 1.05, 0.95, 1.2, 0.4])
    with pytest.raises(ConversionError, match=r"breaks on a traced condition and has an else"):
        sf.relax(first_above_in_a_while_else, softness=TAU, max_steps=6)(x, 1.0)


def first_above_in_a_while_with_a_flag(x, t):
    i = 0
    found = False
    value = 0.0
    while i < 5:
        if x[i] > t:
            found = True
            value = x[i]
            break
        i += 1
    if found:
        return value
    return -t


def first_above_in_a_while_with_a_negated_flag(x, t):
    i, found, value = 0, False, 0.0
    while i < 5:
        if x[i] > t:
            value, found = x[i], True
            break
        i += 1
    if not found:
        value = -t
    return value


def first_above_in_a_while_with_a_conditional_expression(x, t):
    i, found, value = 0, False, 0.0
    while i < 5:
        if x[i] > t:
            value, found = x[i], True
            break
        i += 1
    return value if found else -t


def first_above_in_a_while_set_at_the_break(x, t):
    i, value = 0, -t
    while i < 5:
        if x[i] > t:
            value = x[i]
            break
        i += 1
    return value


@pytest.mark.parametrize(
    "fn",
    [
        first_above_in_a_while_with_a_flag,
        first_above_in_a_while_with_a_negated_flag,
        first_above_in_a_while_with_a_conditional_expression,
    ],
)
def test_an_if_on_a_flag_set_at_a_compiled_soft_break_is_refused(fn):
    """A while loop mixes its worlds inside the compiled loop: an if on a flag set at its break
    blended the branches by the flag's probability (0.44 for 0.50 on a search); hard mode is
    the program, and the way out the message gives is the mixture over the breaks."""
    x = jnp.array([0.1, 1.05, 0.95, 1.2, 0.4])
    for t in (0.5, 1.0, 2.0):
        assert float(jax.jit(sf.relax(fn, mode="hard"))(x, t)) == float(fn(x, t))
    with pytest.raises(
        ConversionError,
        match=r"tests 'found', a flag set at the breaks of the loop at .*:\d+ .*compiled loop",
    ):
        sf.relax(fn, softness=TAU, max_steps=6)(x, 1.0)
    way_out = sf.relax(first_above_in_a_while_set_at_the_break, softness=TAU, max_steps=6)
    np.testing.assert_allclose(way_out(x, 1.0), first_passage(x, 1.0, 1.0), rtol=1e-5)


_TABLE = [0.5, 1.5, 3.0, 1.0, 2.0]


def asserts_on_a_traced_value(x):
    assert x[0] > -100.0, "x too small"
    return x * 2.0


def membership_of_a_relaxed_integer(x):
    k = jnp.argmax(x)
    if k in (0, 2):
        return x[0]
    return x[1]


def python_list_at_a_relaxed_integer(x):
    return _TABLE[jnp.argmax(x)] * x[0]


@pytest.mark.parametrize(
    ("fn", "offset"),
    [
        (asserts_on_a_traced_value, 1),
        (membership_of_a_relaxed_integer, 2),
        (python_list_at_a_relaxed_integer, 1),
    ],
)
def test_a_traced_value_used_as_a_python_value_is_refused_at_its_line(fn, offset):
    # JAX's own error named softflow's tracing function, not the user's line.
    x = jnp.array([0.3, -0.5, 0.9, 0.05, -0.2])
    line = fn.__code__.co_firstlineno + offset
    with pytest.raises(ConversionError, match=rf"as a Python value at .*:{line} .*jnp\.isin"):
        sf.relax(fn, softness=TAU)(x)
    np.testing.assert_array_equal(sf.relax(fn, mode="hard")(x), fn(x))  # eager: Python's


def sum_above_by_a_mask(x):
    return jnp.sum(x[x > 0.1])


def sum_above_in_numpy(x):
    return np.asarray(x).sum() + x[0]


@pytest.mark.parametrize(
    ("fn", "said"),
    [
        (sum_above_by_a_mask, r"boolean mask .*jnp\.sum\(x, where=mask\)"),
        (sum_above_in_numpy, r"NumPy array .*jax\.numpy"),
    ],
)
def test_a_mask_index_or_numpy_conversion_is_refused_at_its_line(fn, said):
    # JAX's own NonConcreteBooleanIndexError / TracerArrayConversionError named softflow's
    # tracing function.
    x = jnp.array([0.3, -0.5, 0.9, 0.05, -0.2])
    line = fn.__code__.co_firstlineno + 1
    with pytest.raises(ConversionError, match=rf"at .*:{line} \({fn.__name__}\): ") as refusal:
        sf.relax(fn, softness=TAU)(x)
    assert re.search(said, str(refusal.value))


def test_the_shape_keeping_mask_is_relaxed(x64):
    """What the refusal of x[mask] advises: the same sum, relaxed, exact in hard mode."""
    x = jnp.array([0.3, -0.5, 0.9, 0.05, -0.2])

    def summed(x):
        return jnp.sum(x, where=x > 0.1)

    np.testing.assert_array_equal(sf.relax(summed, mode="hard")(x), sum_above_by_a_mask(x))
    soft = sf.relax(summed, softness=TAU)
    direction = jnp.array([0.4, -0.1, 0.2, 0.7, -0.3])
    h = 1e-6
    difference = (soft(x + h * direction) - soft(x - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.dot(jax.grad(soft)(x), direction), difference, rtol=1e-7)


def counted_by_a_closure(x, t):
    count = 0.0

    def visit(v):
        nonlocal count
        if v > t:
            count = count + 1.0

    for v in x:  # five steps: a loop relax would roll
        visit(v)
    return count


def counted_by_a_closure_in_a_soft_if(x):
    count = 0.0

    def increment():
        nonlocal count
        count = count + x

    if x > 0:
        increment()
    return count


def summed_by_a_helper_into_a_list(x, t):
    hits = [0.0]

    def visit(v):  # an element of the enclosing function's list, not a variable (no nonlocal)
        if v > t:
            hits[0] = hits[0] + v

    for v in x:
        visit(v)
    return hits[0]


def summed_by_a_helper_in_a_soft_if(x, t):
    totals = {"kept": 0.0}

    def keep(v):
        totals["kept"] = totals["kept"] + v

    if x[0] > t:
        keep(x[1])
    return totals["kept"]


def test_elements_set_by_helpers_do_not_escape_a_traced_construct(x64):
    # The helper's write happened in the probe of the rolled loop, and the scan that followed
    # read the leaked tracer (an UnexpectedTracerError). The loop is unrolled instead.
    x, t = jnp.array([0.3, -0.5, 0.9, 0.05, -0.2]), jnp.float64(0.1)
    relaxed = sf.relax(summed_by_a_helper_into_a_list, softness=TAU)
    by_hand = jnp.sum(x * sf.greater(x, t, softness=TAU))
    np.testing.assert_allclose(relaxed(x, t), by_hand, rtol=1e-14)
    np.testing.assert_allclose(jax.jit(relaxed)(x, t), by_hand, rtol=1e-14)
    grad = jax.grad(relaxed, argnums=(0, 1))(x, t)
    grad_by_hand = jax.grad(lambda x, t: jnp.sum(x * sf.greater(x, t, softness=TAU)), (0, 1))
    for g, want in zip(grad, grad_by_hand(x, t), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-12)
    hard = sf.relax(summed_by_a_helper_into_a_list, mode="hard")
    assert float(hard(x, t)) == float(summed_by_a_helper_into_a_list(x, t))
    # in a soft if both sides are traced: refused, naming the dict and the if's line
    line = summed_by_a_helper_in_a_soft_if.__code__.co_firstlineno + 6
    with pytest.raises(
        ConversionError, match=rf"element of the Python dict `totals` .*if statement at .*:{line}"
    ):
        sf.relax(summed_by_a_helper_in_a_soft_if, softness=TAU)(x, t)


def test_variables_assigned_by_closures_do_not_escape_a_traced_construct(x64):
    # The closure's write happened inside the scan's trace: the relaxed function returned a
    # leaked tracer. The loop is unrolled instead (as unroll=True runs it).
    x, t = jnp.array([0.3, -0.5, 0.9, 0.05, -0.2]), jnp.float64(0.1)
    relaxed = sf.relax(counted_by_a_closure, softness=TAU)(x, t)
    assert isinstance(relaxed, jax.Array) and not isinstance(relaxed, jax.core.Tracer)
    unrolled = sf.relax(counted_by_a_closure, softness=TAU, unroll=True)(x, t)
    np.testing.assert_allclose(relaxed, unrolled, rtol=1e-14)
    np.testing.assert_allclose(relaxed, jnp.sum(sf.greater(x, t, softness=TAU)), rtol=1e-14)
    assert sf.relax(counted_by_a_closure, mode="hard")(x, t) == counted_by_a_closure(x, t)
    # in a soft if both sides are traced: refused, naming the variable and the if's line
    line = counted_by_a_closure_in_a_soft_if.__code__.co_firstlineno + 7
    with pytest.raises(
        ConversionError, match=rf"variable `count` .*\(nonlocal\).*if statement at .*:{line}"
    ):
        sf.relax(counted_by_a_closure_in_a_soft_if, softness=TAU)(jnp.float64(0.5))


def fixed_length_lists(x, flag=True):
    """Appended in every iteration of a static loop, under static conditions only: fine."""
    out = []
    for i in range(3):
        y = x * (i + 1)
        if y > 1:  # soft, but the list is not touched there
            y = y - 1
        if flag:
            out.append(y)
    history = [x, x]
    history[0] = history[0] * 2  # an element replaced, not added: the length stays
    if x > 0:
        history[1] = -x
    return jnp.stack(out).sum() + history[0] + history[1]


def test_fixed_length_lists_keep_working(x64):
    x = jnp.float64(0.7)
    soft = sf.relax(fixed_length_lists, softness=TAU)

    def by_hand(x):
        gt = functools.partial(sf.greater, softness=TAU)
        total = 0.0
        for i in range(3):
            y = x * (i + 1)
            total = total + sf.soft_where(gt(y, 1), y - 1, y)
        return total + 2 * x + sf.soft_where(gt(x, 0), -x, x)

    np.testing.assert_allclose(soft(x), by_hand(x), rtol=1e-13)
    np.testing.assert_array_equal(
        jax.jit(sf.relax(fixed_length_lists, mode="hard"))(x), fixed_length_lists(x)
    )


def test_probing_a_while_true_loop_does_not_duplicate_appends():
    """A while True loop with a break is run abstractly once to find a soft break; a list it
    appends to under a static condition must not keep what that run appended."""

    def halvings(x):
        sizes = []
        n = 0
        while True:
            n += 1
            sizes.append(n)
            x = x / 2
            if n >= 3:
                break
        return x * len(sizes)

    assert float(sf.relax(halvings)(8.0)) == float(halvings(jnp.float32(8.0))) == 3.0


# ----------------------------------------------------------------- loops over Python sequences


def mlp(params, x):
    for w, b in params:
        x = jnp.tanh(w * x + b)
    return x


def horner(coeffs, x):
    y = 0.0
    for c in coeffs:
        y = y * x + c
    return y


def test_for_over_a_python_list_or_tuple_is_a_python_loop(x64):
    params = [(jnp.float64(1.5), jnp.float64(0.5)), (jnp.float64(-2.0), jnp.float64(0.25))]
    x = jnp.float64(0.3)
    np.testing.assert_array_equal(sf.relax(mlp)(params, x), mlp(params, x))
    g = jax.grad(sf.relax(mlp))(params, x)
    np.testing.assert_allclose(
        jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(jax.grad(mlp)(params, x))
    )
    coeffs = (1.0, -2.0, 0.5)  # Python floats
    np.testing.assert_array_equal(sf.relax(horner)(coeffs, x), horner(coeffs, x))
    traced_coeffs = [jnp.float64(c) for c in coeffs]
    np.testing.assert_allclose(
        jax.grad(sf.relax(horner), argnums=1)(traced_coeffs, x),
        jax.grad(horner, argnums=1)(traced_coeffs, x),
    )


# ---------------------------------------------------- helpers wrapped by JAX transformations


@jax.vmap
def _row_argmin(row):
    return jnp.argmin(row)


def uses_vmapped_helper(x):
    return jnp.sum(_row_argmin(x).astype(x.dtype) * x[:, 0])


def _loss(w, x):
    return jnp.sum((w * x - 1.0) ** 2)


def uses_grad_of_partial(w):
    g = jax.grad(functools.partial(_loss, x=2.0))(w)
    if g > 0:
        w = w - 0.1 * g
    return w


@jax.vmap
def _branchy_row(row):
    if row[0] > 0:
        return row[1]
    return row[0]


def test_helpers_wrapped_by_jax_transformations_work(x64):
    x = jnp.array([[0.0, 1.0], [3.0, 2.0], [5.0, 4.0]])
    np.testing.assert_array_equal(
        sf.relax(uses_vmapped_helper, mode="straight_through")(x), uses_vmapped_helper(x)
    )
    assert np.isfinite(sf.relax(uses_vmapped_helper)(x))
    w = jnp.float64(1.0)
    np.testing.assert_array_equal(
        jax.jit(sf.relax(uses_grad_of_partial, mode="hard"))(w), uses_grad_of_partial(w)
    )
    soft = sf.relax(uses_grad_of_partial, softness=TAU)
    h = 1e-6
    np.testing.assert_allclose(jax.grad(soft)(w), (soft(w + h) - soft(w - h)) / (2 * h), rtol=1e-6)


def test_python_control_flow_inside_a_jax_wrapped_helper_names_the_line():
    def f(x):
        return jnp.sum(_branchy_row(x))

    with pytest.raises(ConversionError, match=r"_branchy_row, called at .*test_syntax_idioms"):
        sf.relax(f)(jnp.ones((2, 2)))


# ------------------------------------------------------------- lambdas and refused constructs


def with_lambda(x):
    leaky = lambda v: v if v > 0 else 0.01 * v  # noqa: E731
    return leaky(x) + leaky(x - 1.0)


def test_lambda_with_a_conditional_expression_is_converted(x64):
    x = jnp.float64(0.4)

    def by_hand(x):
        def leaky(v):
            return sf.soft_where(sf.greater(v, 0, softness=TAU), v, 0.01 * v)

        return leaky(x) + leaky(x - 1.0)

    np.testing.assert_allclose(sf.relax(with_lambda, softness=TAU)(x), by_hand(x), rtol=1e-14)


def nested_conditional_expressions(x, a, b):
    # Nested in each of the three places: malt itself converts the outermost one only.
    low = 0.0 if x < a else (1.0 if x < b else 2.0)
    high = (x if x > b else b) if (a if a > x else x) > 0.5 else -x
    return low + high


def test_nested_conditional_expressions_are_converted(x64):
    x, a, b = jnp.float64(0.1), jnp.float64(-0.3), jnp.float64(0.6)

    def by_hand(x, a, b):
        def where(c, u, v):
            return sf.soft_where(c, u, v)

        def lt(u, v):
            return sf.less(u, v, softness=TAU)

        def gt(u, v):
            return sf.greater(u, v, softness=TAU)

        low = where(lt(x, a), 0.0, where(lt(x, b), 1.0, 2.0))
        high = where(gt(where(gt(a, x), a, x), 0.5), where(gt(x, b), x, b), -x)
        return low + high

    relaxed = sf.relax(nested_conditional_expressions, softness=TAU)
    np.testing.assert_allclose(relaxed(x, a, b), by_hand(x, a, b), rtol=1e-14)
    hard = sf.relax(nested_conditional_expressions, mode="hard")
    for point in [(0.1, -0.3, 0.6), (0.7, 0.2, 0.6), (-0.5, -0.3, 0.6), (0.9, 0.95, 0.3)]:
        assert hard(*map(jnp.float64, point)) == nested_conditional_expressions(*point)


def halve_until_small(x):
    if x > 1:
        return halve_until_small(x / 2)
    return x


def power_by_recursion(x, n):
    return x if n == 0 else x * power_by_recursion(x, n - 1)


_STORED = 0.0


def stores_a_global(x):
    global _STORED
    _STORED = x * 2
    return x + 1


def test_recursion_on_a_traced_condition_is_refused():
    with pytest.raises(ConversionError, match=r"halve_until_small \(.*test_syntax_idioms.py:\d+\)"):
        sf.relax(halve_until_small)(10.0)
    # recursion that stops on a Python value is fine
    cube = sf.relax(functools.partial(power_by_recursion, n=3))
    assert float(cube(jnp.float32(1.5))) == float(power_by_recursion(jnp.float32(1.5), 3))
    # hard mode on concrete arguments is Python's recursion
    assert float(sf.relax(halve_until_small, mode="hard")(10.0)) == 0.625


def test_assigning_a_global_is_refused():
    with pytest.raises(ConversionError, match=r"global variable\(s\) _STORED at .*:\d+"):
        sf.relax(stores_a_global)(1.0)
    assert _STORED == 0.0


# ------------------------------------------------------------ outputs and hard-mode exactness


def with_constant_output(x):
    return 2 * x, 3


@pytest.mark.parametrize("mode", ["hard", "soft", "straight_through"])
def test_python_constant_outputs_are_arrays_under_jit(mode):
    relaxed = sf.relax(with_constant_output, mode=mode)
    for fn in (relaxed, jax.jit(relaxed)):
        y, c = fn(jnp.float32(1.5))
        assert isinstance(c, jax.Array) and int(c) == 3 and c.dtype == jnp.int32
        assert float(y) == 3.0


def tax(income):
    if income <= 10000.0:
        t = income * 0.1
    elif income <= 40000.0:
        t = 1000.0 + (income - 10000.0) * 0.2
    elif income <= 90000.0:
        t = 7000.0 + (income - 40000.0) * 0.3
    else:
        t = 22000.0 + (income - 90000.0) * 0.45
    return t


def test_hard_mode_is_the_plain_function_bit_for_bit_on_concrete_arguments():
    """XLA fuses ``a + (x - b) * r`` inside a compiled branch into a multiply-add (one rounding
    instead of two); on concrete arguments hard mode runs the branches as Python does."""
    incomes = np.random.default_rng(0).uniform(0, 200000, size=120).astype(np.float32)
    hard = sf.relax(tax, softness=100.0, mode="hard")
    st = sf.relax(tax, softness=100.0, mode="straight_through")
    for income in incomes:
        plain = tax(jnp.float32(income))
        np.testing.assert_array_equal(hard(jnp.float32(income)), plain)
        np.testing.assert_array_equal(st(jnp.float32(income)), plain)


class _Leaky:
    """A model object: a plain class whose ``__call__`` branches on its input."""

    def __init__(self, slope):
        self.slope = slope

    def __call__(self, x):
        if x > 0:
            return x
        return self.slope * x


class _LeakyModule(eqx.Module):
    slope: jax.Array  # (an array field: the module is not hashable)

    def __call__(self, x):
        if x > 0:
            return x
        return self.slope * x


@pytest.mark.parametrize("make", [_Leaky, _LeakyModule], ids=["plain", "eqx"])
def test_objects_with_a_call_method_are_converted(make, x64):
    """``sf.relax(model)`` and a model called inside the relaxed function: its ``__call__`` is
    converted like any function of the user's (it was run as is: JAX's error on the ``if``)."""
    model = make(jnp.asarray(0.1))
    x = jnp.asarray(0.3)
    p = sf.greater(x, 0.0, softness=TAU)
    expected = p * x + (1 - p) * 0.1 * x
    np.testing.assert_allclose(sf.relax(model, softness=TAU)(x), expected, rtol=1e-12)
    inside = sf.relax(lambda x: 2 * model(x), softness=TAU)
    np.testing.assert_allclose(inside(x), 2 * expected, rtol=1e-12)
    assert sf.relax(model, mode="hard")(x) == model(x)


def _winner_loop(b):
    for i in range(3):
        if b[i] > 2.5:
            return 1.0
        if b[i] < -2.5:
            return -1.0
    return 0.0


def _winner_unrolled(b):
    if b[0] > 2.5:
        return 1.0
    if b[0] < -2.5:
        return -1.0
    if b[1] > 2.5:
        return 1.0
    if b[1] < -2.5:
        return -1.0
    if b[2] > 2.5:
        return 1.0
    if b[2] < -2.5:
        return -1.0
    return 0.0


@pytest.mark.parametrize("b", [[0.0, 3.0, -3.0], [2.4, -2.6, 2.55], [0.0, 0.0, 0.0]])
def test_two_returns_in_a_static_for_loop_are_exits_in_order(b, x64):
    # A tic-tac-toe winner check: the second return follows the first in the loop body (the
    # converter puts it in the side of the first if that goes on), which was refused.
    b = jnp.asarray(b)
    for softness in (0.3, 1e-9):
        looped = sf.relax(_winner_loop, softness=softness)(b)
        np.testing.assert_allclose(looped, sf.relax(_winner_unrolled, softness=softness)(b))
    np.testing.assert_array_equal(sf.relax(_winner_loop, mode="hard")(b), _winner_loop(b))
    # The exits in the order they are met, each where no earlier one was taken.
    p = [sf.greater(v, 2.5, softness=0.3) for v in b], [sf.less(v, -2.5, softness=0.3) for v in b]
    conditions = [(c, s) for i in range(3) for c, s in ((p[0][i], 1.0), (p[1][i], -1.0))]
    expected, still = 0.0, 1.0
    for c, value in conditions:
        expected, still = expected + still * c * value, still * (1 - c)
    np.testing.assert_allclose(sf.relax(_winner_loop, softness=0.3)(b), expected, rtol=1e-12)


def _bubble_sort(x):
    # A Python list sorted in place, with the swap Python code writes.
    a = [x[i] for i in range(x.shape[0])]
    n = len(a)
    for i in range(n):
        for j in range(n - 1 - i):
            if a[j] > a[j + 1]:
                a[j], a[j + 1] = a[j + 1], a[j]
    return jnp.stack(a)


def _swap_through_a_temporary(x):
    a = [x[0], x[1], x[2]]
    for j in range(2):
        if a[j] > a[j + 1]:
            t = a[j]
            a[j] = a[j + 1]
            a[j + 1] = t
    return jnp.stack(a)


@pytest.mark.parametrize("program", [_bubble_sort, _swap_through_a_temporary])
def test_list_elements_written_in_place_in_a_soft_if_are_blended(x64, program):
    # The converter tracks a[j] but not a[j + 1]: the write of the last branch traced stood for
    # both (every element 0.3). Each written element is now blended by the condition.
    x = jnp.asarray([0.3, 0.1, 0.2, -0.4])[: 4 if program is _bubble_sort else 3]
    np.testing.assert_array_equal(jax.jit(sf.relax(program, mode="hard"))(x), program(x))
    np.testing.assert_allclose(sf.relax(program, softness=1e-6)(x), program(x), atol=1e-9)
    relaxed = jax.jit(sf.relax(program, softness=TAU))
    assert np.isclose(jnp.sum(relaxed(x)), jnp.sum(x))  # a blend of swaps keeps the sum
    weights = jnp.arange(1.0, x.size + 1.0)
    grad = jax.grad(lambda x: relaxed(x) @ weights)(x)
    h, direction = 1e-6, jnp.linspace(-1.0, 1.0, x.size)
    fd = (relaxed(x + h * direction) @ weights - relaxed(x - h * direction) @ weights) / (2 * h)
    np.testing.assert_allclose(grad @ direction, fd, rtol=1e-6)


def _capped_growth(x):
    steps = 0.0
    while x < 1000.0:
        x = 1.5 * x
        steps = steps + 1.0
        if steps >= 3.0:  # a cap on the number of steps
            break
    return x + steps


def _capped_growth_int(x):
    n = 0
    while x < 1000.0:
        x = 1.5 * x
        n = n + 1
        if n >= 3:
            break
    return x


@pytest.mark.parametrize("program", [_capped_growth, _capped_growth_int])
def test_a_break_on_a_counter_that_starts_as_a_python_number(x64, program):
    # The loop was probed with the counter as the Python number it starts as, where the cap is
    # a static False: the break was dropped and the loop ran to its own end (16 steps).
    x = jnp.asarray(2.0)
    for mode, softness in (("hard", 0.1), ("soft", 1e-6), ("straight_through", TAU)):
        relaxed = jax.jit(sf.relax(program, softness=softness, mode=mode, max_steps=30))
        np.testing.assert_allclose(relaxed(x), program(x), rtol=1e-9)


def _classify(x, y):
    if x * x + y * y < 1.0:
        return 0.0, 1.0
    if x > y:
        return 1.0, x - y
    return 2.0, y - x


def test_returns_of_several_values_are_blended_element_by_element(x64):
    # A tuple returned on a traced condition failed in the merge of the branches ("Cannot
    # determine dtype of (0.0, 1.0)").
    x, y = jnp.asarray(1.5), jnp.asarray(0.5)
    hard = jax.jit(sf.relax(_classify, mode="hard"))(x, y)
    assert [float(v) for v in hard] == [float(v) for v in _classify(x, y)]
    label, score = sf.relax(_classify, softness=TAU)(x, y)
    inside = sf.less(x * x + y * y, 1.0, softness=TAU)
    above = sf.greater(x, y, softness=TAU)
    want_label = (1 - inside) * (above * 1.0 + (1 - above) * 2.0)
    want_score = inside * 1.0 + (1 - inside) * (above * (x - y) + (1 - above) * (y - x))
    np.testing.assert_allclose([label, score], [want_label, want_score], rtol=1e-12)


def _knapsack(w, v, cap):
    def best(i, c):
        if i == w.shape[0]:
            return 0.0
        skip = best(i + 1, c)
        if w[i] <= c:
            take = v[i] + best(i + 1, c - w[i])
            if take > skip:
                return take
        return skip

    return best(0, cap)


def test_a_return_in_a_nested_soft_if_of_a_recursive_helper_is_refused_clearly():
    # The refusal named the converter's variable `retval__1` and asked to assign it before the
    # if; it is now the refusal of the outermost function's return in a nested soft if.
    args = (jnp.asarray([2.0, 3.0]), jnp.asarray([3.0, 4.0]), jnp.asarray(4.0))
    said = r"return at .*test_syntax_idioms.py:\d+ \(best\).* inside another if statement"
    with pytest.raises(ConversionError, match=said) as e:
        jax.jit(sf.relax(_knapsack, mode="hard"))(*args)
    assert "retval" not in str(e.value)


class _Ball(NamedTuple):
    h: jax.Array
    v: jax.Array
    bounces: int


def _bouncing(h0, e):
    s = _Ball(h0, jnp.zeros_like(h0), 0)
    for _ in range(3):
        v = s.v - 9.81 * 0.05
        h = s.h + v * 0.05
        if h < 0.0:
            h, v = -h * e, -v * e
            s = s._replace(bounces=s.bounces + 1)
        s = s._replace(h=h, v=v)
    return s.h, s.bounces


def _bouncing_variables(h0, e):
    h, v, bounces = h0, jnp.zeros_like(h0), 0
    for _ in range(3):
        v = v - 9.81 * 0.05
        h = h + v * 0.05
        if h < 0.0:
            h, v = -h * e, -v * e
            bounces = bounces + 1
    return h, bounces


def test_a_named_tuple_state_with_a_python_int_field_is_blended_field_by_field(x64):
    # The int field went through the abstract run of the branches as a ShapeDtypeStruct and
    # was kept as a static value of the state: `s.bounces + 1` then failed under jit.
    h0, e = jnp.asarray(0.01), jnp.asarray(0.8)
    hard = jax.jit(sf.relax(_bouncing, mode="hard"))(h0, e)
    assert [float(v) for v in hard] == [float(v) for v in _bouncing(h0, e)]
    relaxed = jax.jit(sf.relax(_bouncing, softness=0.1))(h0, e)
    np.testing.assert_allclose(
        relaxed, sf.relax(_bouncing_variables, softness=0.1)(h0, e), rtol=1e-12
    )


def _first_above_with_a_nested_helper(signal, threshold):
    def first_above(row):
        for k in range(row.shape[0]):
            if row[k] > threshold:
                return k
        return row.shape[0]

    return first_above(signal[0]) + first_above(signal[1])


def _first_above(row, threshold):
    for k in range(row.shape[0]):
        if row[k] > threshold:
            return k
    return row.shape[0]


def _first_above_with_a_module_helper(signal, threshold):
    return _first_above(signal[0], threshold) + _first_above(signal[1], threshold)


def test_a_return_in_a_loop_of_a_nested_helper_is_an_exit_of_the_helper(x64):
    # malt names a nested function's return flag do_return_1: its return in a loop was taken
    # for a return in a nested soft if, and refused.
    signal = jnp.cumsum(jnp.abs(jnp.asarray(np.random.default_rng(0).normal(size=(2, 8)))), 1)
    threshold = jnp.asarray(1.5)
    hard = jax.jit(sf.relax(_first_above_with_a_nested_helper, mode="hard"))(signal, threshold)
    assert int(hard) == int(_first_above_with_a_nested_helper(signal, threshold))
    nested = jax.jit(sf.relax(_first_above_with_a_nested_helper, softness=TAU))
    module = jax.jit(sf.relax(_first_above_with_a_module_helper, softness=TAU))
    np.testing.assert_allclose(nested(signal, threshold), module(signal, threshold), rtol=1e-12)


def returns_a_dict(x, t):
    if x > t:
        return {"y": x * 2.0, "pair": [x, t]}
    return {"y": x - t, "pair": [t, x]}


def assigns_a_dict_in_a_loop(x, t):
    state = {"x": x, "v": 1.0}
    for _ in range(4):
        if state["x"] > t:
            state = {"x": state["x"] - state["v"], "v": -state["v"]}
        else:
            state = {"x": state["x"] + 0.5, "v": state["v"]}
    return state


def test_dicts_and_lists_on_both_sides_of_a_soft_if_are_blended_element_by_element(x64):
    # They were taken for one static value (their abstract shapes compared equal), and the
    # program returned ShapeDtypeStructs (a TypeError in jnp.asarray).
    x, t = jnp.float64(0.7), jnp.float64(0.3)
    p = sf.greater(x, t, softness=TAU)
    got = sf.relax(returns_a_dict, softness=TAU)(x, t)
    assert set(got) == {"y", "pair"} and isinstance(got["pair"], list)
    np.testing.assert_allclose(got["y"], p * 2 * x + (1 - p) * (x - t), rtol=1e-14)
    np.testing.assert_allclose(got["pair"][0], p * x + (1 - p) * t, rtol=1e-14)
    np.testing.assert_allclose(got["pair"][1], p * t + (1 - p) * x, rtol=1e-14)
    hard = sf.relax(returns_a_dict, mode="hard")(x, t)
    assert jax.tree_util.tree_structure(hard) == jax.tree_util.tree_structure(returns_a_dict(x, t))
    # a dict reassigned in a rolled loop: the same as the loop unrolled, and hard the program
    relaxed = sf.relax(assigns_a_dict_in_a_loop, softness=TAU)
    unrolled = sf.relax(assigns_a_dict_in_a_loop, softness=TAU, unroll=True)
    for a, b in zip(jax.tree.leaves(relaxed(x, t)), jax.tree.leaves(unrolled(x, t)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    hard = sf.relax(assigns_a_dict_in_a_loop, mode="hard")(x, t)
    want = assigns_a_dict_in_a_loop(x, t)
    assert {k: float(v) for k, v in hard.items()} == {k: float(v) for k, v in want.items()}


def returns_dicts_with_other_keys(x, t):
    if x > t:
        return {"y": x}
    return {"z": x}


def labels_by_a_soft_if(x, t):
    if x > t:  # noqa: SIM108 (the statement form is the idiom under test)
        label = "above"
    else:
        label = "below"
    return x, label


@pytest.mark.parametrize(
    ("fn", "shown"),
    [
        (returns_dicts_with_other_keys, r"the value returned differs .* \(dict .*, dict .*\)"),
        (labels_by_a_soft_if, r"variable 'label' differs .* \('above', 'below'\)"),
    ],
)
def test_values_that_cannot_be_blended_are_refused_clearly(fn, shown):
    # (A different structure, or Python values: an obscure TypeError of jnp.result_type.)
    line = fn.__code__.co_firstlineno + 1
    with pytest.raises(ConversionError, match=shown) as caught:
        sf.relax(fn, softness=TAU)(jnp.float32(0.7), jnp.float32(0.3))
    assert re.search(rf"if statement at .*:{line} ", str(caught.value))


def _early_stopping(losses, min_delta, *, nested):
    best, wait, stopped = jnp.inf, 0, losses.shape[0]
    for epoch in range(losses.shape[0]):
        if losses[epoch] < best - min_delta:
            best, wait = losses[epoch], 0
        else:
            wait += 1
            if nested and wait >= 3:
                stopped = epoch
                break
        if not nested and wait >= 3:
            stopped = epoch
            break
    return best, stopped


def test_early_stopping_with_its_patience_check_nested_is_refused_with_the_form_that_runs():
    # The patience check inside the `else` is a break in a soft if inside another one: refused,
    # with the way out that fits it (wait >= 3 cannot hold where the improving side resets it).
    losses = jnp.asarray([1.0, 0.7, 0.65, 0.66, 0.64, 0.67, 0.7, 0.71, 0.5, 0.4])
    nested = functools.partial(_early_stopping, nested=True)
    with pytest.raises(ConversionError, match="move that if after the outer one"):
        sf.relax(nested)(losses, 0.02)
    flat = functools.partial(_early_stopping, nested=False)
    assert jax.tree.map(float, flat(losses, 0.02)) == jax.tree.map(float, nested(losses, 0.02))
    hard = sf.relax(flat, mode="hard")(losses, 0.02)
    assert jax.tree.map(float, hard) == jax.tree.map(float, flat(losses, 0.02))
    np.testing.assert_allclose(sf.relax(flat, softness=1e-4)(losses, 0.02), flat(losses, 0.02))
