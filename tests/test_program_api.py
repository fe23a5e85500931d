"""sf.relax as an API: jit / vmap / grad, traced softness, dtypes, caching, the exactness marker,
explain, custom derivative rules, and an error message for each case it cannot relax."""

import pathlib
import re
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal
from jax import lax

import softflow as sf


def threshold(x, t):
    return jnp.where(x > t, 2 * x, -x)


def test_jit_vmap_grad_and_traced_softness():
    x = jnp.linspace(-1.0, 1.0, 5)
    traces = []

    @jax.jit
    def loss(t, softness):
        traces.append(None)  # runs once per trace
        return jnp.sum(sf.relax(threshold, softness=softness)(x, t))

    by_hand = jax.grad(lambda t: jnp.sum(sf.soft_where(sf.greater(x, t, softness=0.3), 2 * x, -x)))(
        0.1
    )
    np.testing.assert_allclose(jax.grad(loss)(0.1, 0.3), by_hand, rtol=1e-6)
    # one compilation serves every softness (it is traced): one trace, which grad shares.
    # (The cache's size, 1 run alone, was 0 at the end of a whole suite run: an eviction that
    # the trace count does not depend on.)
    loss(0.1, 0.3)
    loss(0.1, 0.05)
    assert len(traces) == 1 and loss._cache_size() <= 1
    batched = jax.vmap(sf.relax(threshold, softness=0.3), in_axes=(0, None))(x[:, None], 0.1)
    np.testing.assert_allclose(batched[:, 0], sf.relax(threshold, softness=0.3)(x, 0.1), rtol=1e-6)


def test_small_softness_tends_to_the_program():
    x = jnp.array([-0.7, -0.2, 0.3, 0.9])
    relaxed = sf.relax(threshold, softness=1e-4)(x, 0.1)
    np.testing.assert_allclose(relaxed, threshold(x, 0.1), rtol=1e-6)


def test_dtypes():
    x = jnp.array([-1.0, 0.5], jnp.bfloat16)
    assert sf.relax(threshold)(x, jnp.bfloat16(0)).dtype == jnp.bfloat16
    # a boolean result becomes its probability, in the default float dtype
    out = sf.relax(lambda v: v > 0)(x)
    assert out.dtype == jnp.float32
    with jax.enable_x64(True):
        out = sf.relax(lambda v: jnp.sum(v > 0))(jnp.array([1.0, -1.0], jnp.float32))
        assert out.dtype == jnp.float64
        assert sf.relax(threshold)(jnp.ones(2), 0.0).dtype == jnp.float64


def test_hard_mode_is_the_program_at_ties_and_integers():
    x = jnp.array([0.0, 1.0, 1.0, 2.0])
    fn = lambda x, n: (jnp.where(x >= 1.0, x, -x), jnp.sum(x > 0) + n, x == 1.0)  # noqa: E731
    assert_exactly_equal(sf.relax(fn, mode="hard")(x, 3), fn(x, 3))
    assert_exactly_equal(jax.jit(sf.relax(fn, mode="hard"))(x, 3), jax.jit(fn)(x, 3))


def test_integer_inputs_and_counters_stay_exact():
    def fn(x, n):
        # n exact steps; the parity test on the counter is exact, only x > 0 is relaxed
        return lax.fori_loop(0, n, lambda i, v: jnp.where(i % 2 == 0, v + 1.0, v * (v > 0)), x)

    explained = sf.relax(fn).explain(1.0, 3)
    assert [op.rule for op in explained] == ["sf.greater", "truth value as its probability"]
    assert sf.relax(fn, mode="straight_through")(0.5, 3) == fn(0.5, 3)


def test_integer_distribution_indexes_exactly():
    # x[i] with a relaxed i: JAX's negative-index normalisation acts on each candidate
    values = jnp.array([10.0, 20.0, 30.0])

    def fn(x):
        i = jnp.where(x > 0, -1, 1)  # -1 means the last element
        return values[i]

    p = sf.greater(0.3, 0.0, softness=0.5)
    np.testing.assert_allclose(sf.relax(fn, softness=0.5)(0.3), p * 30 + (1 - p) * 20, rtol=1e-6)


def test_argmax_batched_by_vmap_inside_the_relaxed_function():
    # vmap inside the relaxed function batches argmax, whose axes are then NumPy integers.
    values = jnp.array([10.0, 20.0, 30.0])
    scores = jnp.array([[0.1, 2.0, -1.0], [1.5, 0.2, 0.3]])

    def pick(s):
        return values[jnp.argmax(s)]

    outside = sf.relax(jax.vmap(pick), softness=0.5, convert=False)(scores)
    inside = jax.vmap(sf.relax(pick, softness=0.5))(scores)
    np.testing.assert_allclose(outside, inside, rtol=1e-6)


def test_trace_once_per_shape():
    calls = []

    def fn(x):
        calls.append(x.shape)
        return jnp.where(x > 0, x, 0.0)

    relaxed = sf.relax(fn)
    relaxed(jnp.ones(3))
    relaxed(jnp.zeros(3))
    relaxed(jnp.ones(4))
    assert calls == [(3,), (4,)]


def test_closed_over_traced_parameter_is_relaxed():
    x = jnp.array([-0.5, 0.2, 0.8])

    def loss(t):
        return jnp.sum(sf.relax(lambda v: jnp.where(v > t, v, 0.0))(x))

    assert jnp.all(jax.grad(loss)(0.1) != 0)


def test_exact_guard_is_not_blended_and_keeps_gradients_finite():
    def fn(x):
        positive = sf.exact(x > 0)
        return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)

    x = jnp.array([-1.0, 0.0, 4.0])
    assert_exactly_equal(sf.relax(fn, softness=10.0)(x), fn(x))
    grad = jax.grad(lambda v: jnp.sum(sf.relax(fn, softness=10.0)(v)))(x)
    np.testing.assert_array_equal(grad, jnp.array([0.0, 0.0, 0.25]))
    # without the marker the guard is blended: the value moves
    blended = sf.relax(lambda v: jnp.where(v > 0, jnp.sqrt(jnp.where(v > 0, v, 1.0)), 0.0))
    assert not jnp.allclose(blended(x), fn(x))
    assert sf.exact(x) is not None and jnp.all(sf.exact(x) == x)


def test_exact_index():
    def fn(scores, values):
        return values[sf.exact(jnp.argmax(scores))] * jnp.where(scores[0] > 0, 2.0, 1.0)

    scores, values = jnp.array([0.1, 0.3, 0.2]), jnp.array([1.0, 2.0, 3.0])
    p = sf.greater(0.1, 0.0)
    np.testing.assert_allclose(sf.relax(fn)(scores, values), 2.0 * (1 + p), rtol=1e-6)
    # the argmax is used only through sf.exact: evaluated exactly, not relaxed and discarded
    rules = [op.rule for op in sf.relax(fn).explain(scores, values)]
    assert rules == ["kept exact (sf.exact)", "sf.greater", "sf.soft_where"]


def test_exact_cond_in_a_soft_loop_under_grad_of_vmap(x64):
    """An exact ``cond`` (here on a loop counter and on sf.exact) inside a relaxed while loop:
    the gradient of a batch (grad of vmap) equals the batch of gradients (vmap of grad) and
    float64 central differences; a branch with an infinite derivative on the lanes that do not
    take it leaves the gradient finite."""

    def fn(x):
        def body(c):
            i, y = c
            y = lax.cond(i % 2 == 0, lambda: y * 0.5, lambda: y * 0.8)
            # on the lanes that take the first branch, the second one is sqrt(negative)
            y = lax.cond(sf.exact(y < 0.3), lambda: y * 0.9, lambda: jnp.sqrt(y - 0.3) + 0.15)
            return i + 1, y

        return lax.while_loop(lambda c: c[1] > 0.5, body, (0, x))[1]

    relaxed = sf.relax(fn, softness=0.3, max_steps=12)
    x = jnp.array([3.0, 2.0, 0.9, 7.0])
    of_batch = jax.grad(lambda v: jnp.sum(jax.vmap(relaxed)(v)))(x)
    np.testing.assert_allclose(of_batch, jax.vmap(jax.grad(relaxed))(x), rtol=1e-12)
    h = 1e-6
    fd = jax.vmap(lambda v: (relaxed(v + h) - relaxed(v - h)) / (2 * h))(x)
    np.testing.assert_allclose(of_batch, fd, rtol=1e-6, atol=1e-9)  # central-difference error
    assert np.all(np.isfinite(of_batch))
    assert_exactly_equal(
        jax.vmap(sf.relax(fn, mode="hard", max_steps=12))(x), jax.vmap(jax.jit(fn))(x)
    )


def squares_above(x, t):
    return jnp.where(x > t, x**2, 0.0).sum()


def test_a_relaxed_function_inside_another_is_used_as_it_is(x64):
    # It is a softflow function: its internal masks and selects were relaxed again (an error
    # about a non-finite constant the user never wrote).
    x = jnp.array([0.3, 0.9, 0.6])
    t = jnp.float64(0.5)
    inner = sf.relax(squares_above, softness=0.1)

    def outer(x, t):
        return inner(x, t) + jnp.where(x[0] > 0.2, 1.0, 0.0)

    def by_hand(x, t):
        inside = sf.soft_where(sf.greater(x, t, softness=0.1), x**2, 0.0).sum()
        return inside + sf.soft_where(sf.greater(x[0], 0.2, softness=0.05), 1.0, 0.0)

    relaxed = sf.relax(outer, softness=0.05)
    np.testing.assert_allclose(relaxed(x, t), by_hand(x, t), rtol=1e-12)
    grads = jax.grad(relaxed, argnums=(0, 1))(x, t)
    for g, want in zip(grads, jax.grad(by_hand, argnums=(0, 1))(x, t), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-12)
    np.testing.assert_allclose(sf.relax(inner, softness=0.05)(x, t), inner(x, t), rtol=1e-12)
    assert sf.relax(outer, mode="hard")(x, t) == inner(x, t) + 1.0


def test_custom_rule_kept_when_nothing_soft_inside():
    @jax.custom_jvp
    def doubled_slope(x):
        return jnp.sin(x)

    doubled_slope.defjvp(lambda p, t: (doubled_slope(p[0]), 2 * t[0]))
    relaxed = sf.relax(lambda x: doubled_slope(x) + jnp.where(x > 0, x, 0.0))
    by_hand = 2.0 + sf.greater(0.3, 0.0) + 0.3 * jax.grad(sf.greater)(0.3, 0.0)
    np.testing.assert_allclose(jax.grad(relaxed)(0.3), by_hand, rtol=1e-6)


def test_explain_names_source_lines_and_rules():
    def fn(x):
        y = jnp.where(x > 0, x, -x)
        return lax.cond(jnp.sum(y) > 1.0, lambda v: v, lambda v: 2 * v, y)

    explained = sf.relax(fn).explain(jnp.ones(3))
    rules = [op.rule for op in explained]
    assert rules == ["sf.greater", "sf.soft_where", "sf.greater", "sf.soft_if"]
    assert all("test_program_api.py" in op.source for op in explained)
    text = str(explained)
    assert text.count("\n") == 3 and "select_n" in text and "cond" in text
    assert "nothing relaxed" in str(sf.relax(jnp.sin).explain(1.0))


def test_relaxation_method():
    relaxation = sf.Relaxation(0.3, kind="gaussian", mode="straight_through")
    x = jnp.array([-0.5, 0.5])
    relaxed = relaxation.relax(threshold)
    assert_exactly_equal(relaxed(x, 0.1), threshold(x, 0.1))
    expected = jax.grad(lambda t: jnp.sum(sf.soft_where(relaxation.greater(x, t), 2 * x, -x)))(0.1)
    np.testing.assert_allclose(jax.grad(lambda t: jnp.sum(relaxed(x, t)))(0.1), expected)


# -- errors ------------------------------------------------------------------------------------


def _line_of(fragment: str) -> int:
    source = pathlib.Path(__file__).read_text().splitlines()
    return next(i + 1 for i, line in enumerate(source) if fragment in line)


def test_while_without_max_steps_names_it_and_the_loop():
    def fn(x):
        return lax.while_loop(lambda v: v < 10.0, lambda v: 2 * v, x)  # the loop

    with pytest.raises(sf.RelaxError, match="max_steps") as error:
        sf.relax(fn)(1.0)
    assert f"test_program_api.py:{_line_of('# the loop')}" in str(error.value)


def _big_count(x):
    """A count of more truth values than relax keeps a law for: known by its expected value."""
    return jnp.sum(jnp.tile(x, 2500) > 0)


@pytest.mark.parametrize(
    ("fn", "primitive", "advice"),
    [
        (lambda x: jnp.nextafter(x, 2.0) + 0 * jnp.sum(x), "nextafter", "outside"),
        (
            lambda x: (lax.bitcast_convert_type(x, jnp.int32) & 1).astype(x.dtype),
            "bitcast_convert_type",
            "on_unrelaxable='stop_gradient'",
        ),
        (lambda x: jnp.arange(3.0)[_big_count(x)], "expected value", "jnp.clip(i, 0, K - 1)"),
        (lambda x: _big_count(x) ** 2, "integer_pow", "sf.exact"),
        (lambda x: jnp.lexsort((x, -x)).astype(x.dtype), "sort", "sf.sort"),
        (lambda x: jnp.where(x > 0, x, jnp.array([jnp.nan, 0.0])), "not finite", "sf.exact"),
        (lambda x: lax.switch(_big_count(x), [jnp.sin, jnp.cos], x), "branch index", "sf.exact"),
        (lambda x: lax.select_n(_big_count(x), x, -x), "selector", "jnp.clip"),
        (
            lambda x: (lax.bitcast_convert_type(x, jnp.int32) >> 20).astype(x.dtype),
            "bitcast_convert_type",
            "sf.smooth",
        ),
        (lambda x: jnp.signbit(x).astype(x.dtype), "bitcast_convert_type", "jnp.signbit: x < 0"),
    ],
    ids=[
        "nextafter",
        "bitcast",
        "expected-index",
        "nonlinear-count",
        "sort-by-two-keys",
        "non-finite-constant",
        "expected-branch-index",
        "expected-selector",
        "bits-of-a-float",
        "signbit",
    ],
)
def test_unsupported_operations_name_primitive_line_and_advice(fn, primitive, advice):
    with pytest.raises(sf.RelaxError) as error:
        sf.relax(fn)(jnp.array([0.5, -0.5]))
    message = str(error.value)
    assert primitive in message and advice in message
    assert re.search(r"test_program_api\.py:\d+", message), message


def test_exact_of_a_loop_result():
    def fn(x):
        y = lax.while_loop(lambda v: v < 3.0, lambda v: v + 1.0, x)
        return jnp.where(sf.exact(y > 5.0), y, 0.0)

    # y > 5.0 is computed after the loop from a relaxed y: still exact here
    assert sf.relax(fn, max_steps=10, mode="straight_through")(1.0) == fn(1.0)

    def loop(x):
        return lax.while_loop(lambda s: s[1] < 3.0, lambda s: (s[0] + 1, s[1] + 1.0), (0, x))

    def counts(x):  # the loop's results are used only through sf.exact: it runs exactly
        return sf.exact(loop(x)[0]).astype(jnp.float32)

    for x in (0.5, 1.0, 2.5, 7.0):
        assert_exactly_equal(sf.relax(counts, max_steps=10)(x), counts(x))
        assert jax.grad(sf.relax(counts, max_steps=10))(x) == 0.0

    def counts_and_value(x):  # the loop is relaxed for its float: the exact count is lost
        n, y = loop(x)
        return sf.exact(n).astype(jnp.float32) + y

    with pytest.raises(sf.RelaxError, match=r"sf.exact .* relaxed loop or branch"):
        sf.relax(counts_and_value, max_steps=10)(1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        sf.relax(threshold, kind="sigmoidal")
    with pytest.raises(ValueError, match="tnorm"):
        sf.relax(threshold, tnorm="max")
    with pytest.raises(ValueError, match="max_steps"):
        sf.relax(threshold, max_steps=0)
    with pytest.raises(TypeError, match="callable"):
        sf.relax(3.0)
    with pytest.raises(TypeError, match=r"argument leaf .* 'above'"):
        sf.relax(lambda x, how: x)(1.0, "above")
    with pytest.raises(ValueError, match="softness"):
        sf.relax(threshold, softness=-1.0)(jnp.ones(2), 0.0)
    with pytest.raises(ValueError, match="softness"):
        sf.relax(threshold, softness=0.0, mode="hard")(jnp.ones(2), 0.0)
    # Checked when relax is called, whatever the program relaxes: a softness that is 0 to XLA
    # (subnormal), and an array, which would add its axes to the relaxed operations' values.
    with pytest.raises(ValueError, match=r"softness.*subnormal"):
        sf.relax(lambda x: x, softness=1e-40)
    with pytest.raises(ValueError, match=r"softness must be a scalar.*vmap"):
        sf.relax(threshold, softness=jnp.array([0.01, 1.0]))
    with pytest.raises(TypeError, match="softness"):
        sf.relax(threshold, softness="0.1")


def _jax_max(x, y):
    return jnp.where(x > y, x, y)


def _python_max(x, y):
    if x > y:
        return x
    return y


@pytest.mark.parametrize("fn", [_jax_max, _python_max], ids=["jax", "python_syntax"])
def test_a_call_that_does_not_fit_names_the_users_function(fn):
    # The converted function that runs is a wrapper with another name; the refusal names fn.
    relaxed = sf.relax(fn, softness=0.1)
    name = fn.__qualname__
    with pytest.raises(TypeError, match=rf"^{name}\(\) .*missing a required argument: 'y'"):
        relaxed(jnp.ones(2))
    with pytest.raises(TypeError, match=rf"^{name}\(\) .*too many positional arguments"):
        relaxed(jnp.ones(2), 0.0, 1.0)
    with pytest.raises(TypeError, match=rf"^{name}\(\) .*unexpected keyword argument 'z'"):
        relaxed(jnp.ones(2), 0.0, z=1.0)
    with pytest.raises(TypeError, match=rf"^{name}\(\) "):
        relaxed.explain(jnp.ones(2))


# -- a peer: AlgoVision's relaxed bubble sort ----------------------------------------------------


def bubble_sort(values):
    """Bubble sort in plain JAX: ``while swapped`` over passes of compare-and-swap."""
    n = values.shape[-1]

    def one_pass(state):
        values, swapped, remaining = state

        def visit(i, carry):
            values, swapped = carry
            left, right = values[i], values[i + 1]
            swap = (left > right) & (i < remaining)
            values = values.at[i].set(jnp.where(swap, right, left))
            values = values.at[i + 1].set(jnp.where(swap, left, right))
            return values, swap | swapped

        values, swapped = lax.fori_loop(0, n - 1, visit, (values, False))
        return values, swapped, remaining - 1

    return lax.while_loop(lambda s: s[1], one_pass, (values, True, n - 1))[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bubble_sort_equals_algovision():
    torch = pytest.importorskip("torch")
    algovision = pytest.importorskip("algovision")
    beta, n = 5.0, 6
    rng = np.random.default_rng(1)
    values = rng.normal(size=(8, n)).astype(np.float32)
    weights = rng.normal(size=(8, n)).astype(np.float32)

    av = algovision
    sort = av.Algorithm(
        av.Input("values"),
        av.Var("left", torch.tensor(0.0)),
        av.Var("right", torch.tensor(0.0)),
        av.Var("swapped", torch.tensor(1.0)),
        av.VarInt("remaining", lambda values: values.shape[1] - 1),
        av.VarInt("next_index", 0),
        av.While(
            av.IsTrue("swapped"),
            av.Let("swapped", 0),
            av.For(
                "index",
                "remaining",
                av.LetInt("next_index", lambda index: index + 1),
                av.Let("left", "values", ["index"]),
                av.Let("right", "values", ["next_index"]),
                av.If(
                    av.GT("left", "right"),
                    if_true=[
                        av.Let("values", ["index"], "right"),
                        av.Let("values", ["next_index"], "left"),
                        av.Let("swapped", 1.0),
                    ],
                ),
            ),
            av.LetInt("remaining", lambda remaining: remaining - 1),
        ),
        av.Output("values"),
        beta=beta,
        epsilon=1e-6,
    )
    inputs = torch.as_tensor(values).requires_grad_(True)
    expected = sort(inputs)
    (expected * torch.as_tensor(weights)).sum().backward()

    relaxed = jax.vmap(sf.relax(bubble_sort, softness=1 / beta, max_steps=n))
    loss = jax.jit(jax.value_and_grad(lambda v: jnp.sum(relaxed(v) * weights), has_aux=False))
    np.testing.assert_allclose(jax.jit(relaxed)(values), expected.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(loss(values)[1], inputs.grad.numpy(), atol=1e-5)


def test_docs_page_examples_run(tmp_path):
    page = pathlib.Path(__file__).resolve().parent.parent / "docs" / "relaxing.md"
    # (blocks inside a list item are indented)
    blocks = [
        textwrap.dedent(block)
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    ]
    namespace: dict = {}
    for i, block in enumerate(blocks):
        # Each block runs from a file of its own, where sf.relax can read the source to convert.
        path = tmp_path / f"relaxing_block_{i}.py"
        path.write_text(block)
        exec(compile(block, str(path), "exec"), namespace)
    assert len(blocks) >= 5
    # the before/after example: the straight-through gradient is that of the soft program
    # along the exact path, which is nonzero where the exact gradient ignores the decisions
    assert namespace["st_grad"] != 0


def test_readme_example_runs(tmp_path):
    readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    (block,) = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    path = tmp_path / "readme_example.py"  # a file: sf.relax reads the source it converts
    path.write_text(block)
    namespace: dict = {}
    exec(compile(block, str(path), "exec"), namespace)
    count_steps, relax = namespace["count_steps"], namespace["sf"].relax
    assert float(relax(count_steps, mode="hard", max_steps=100)(1.0, 10.0)) == 4.0
    assert float(jax.grad(relax(count_steps, softness=1.0, max_steps=100), argnums=1)(1.0, 10.0))


@pytest.mark.parametrize(
    "name", ["life_step", "bubble_sort", "while_soft_exit", "sort_and_argsort", "argmax_indexing"]
)
def test_float32_separately_jitted_hard_and_straight_through_are_the_program(name):
    from test_program import PROGRAMS

    prog = next(p for p in PROGRAMS if p.name == name)
    args = tuple(
        jnp.asarray(a, jnp.float32) if np.issubdtype(np.asarray(a).dtype, np.floating) else a
        for a in prog.args(np.random.default_rng(3))
    )
    exact = jax.jit(prog.fn)(*args)
    for mode in ("hard", "straight_through"):
        relaxed = jax.jit(sf.relax(prog.fn, softness=0.5, mode=mode, max_steps=prog.max_steps))
        assert_exactly_equal(relaxed(*args), exact)


def test_library_function_kept_exact():
    # jnp.searchsorted compares floats inside (also to canonicalise -0.0 and NaN): keep it exact
    boundaries, slowness = jnp.array([0.5, 1.5, 2.5]), jnp.array([1.0, 0.6, 0.9, 0.3])

    def fn(depth):
        return jnp.sum(slowness[sf.exact(jnp.searchsorted(boundaries, depth))] * depth)

    depth = jnp.array([0.0, -0.0, 0.7, 1.5, 2.9])
    assert_exactly_equal(sf.relax(fn)(depth), fn(depth))
    assert_exactly_equal(jax.grad(sf.relax(fn))(depth), jax.grad(fn)(depth))


def test_softflow_functions_inside_a_relaxed_program_are_used_as_they_are():
    """sf.soft_where's exact-weight masks and sf.greater's infinity guard are part of their
    definitions: relaxing them again (w == 0 as a soft equality) once gave 0.08 for 0.46."""
    x = jnp.array([1.0, -1.0, 3.0, 0.25])

    def mixed(x):
        p = sf.greater(x, 0.5, softness=0.3)
        blended = sf.soft_where(x > 0, x, -x)  # a plain comparison, relaxed by relax
        ordered = sf.sort(x * p, softness=0.2)
        return blended + ordered, sf.soft_while(
            lambda v: sf.less(v, 4.0), lambda v: 2 * v, jnp.abs(x[0]) + 0.5, max_steps=20
        )

    def by_hand(x):
        p = sf.greater(x, 0.5, softness=0.3)
        blended = sf.soft_where(sf.greater(x, 0.0), x, -x)
        ordered = sf.sort(x * p, softness=0.2)
        return blended + ordered, sf.soft_while(
            lambda v: sf.less(v, 4.0), lambda v: 2 * v, jnp.abs(x[0]) + 0.5, max_steps=20
        )

    relaxed = sf.relax(mixed, max_steps=20)
    np.testing.assert_allclose(relaxed(x)[0], by_hand(x)[0], rtol=1e-6)
    np.testing.assert_allclose(relaxed(x)[1], by_hand(x)[1], rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(lambda v: jnp.sum(relaxed(v)[0]))(x),
        jax.grad(lambda v: jnp.sum(by_hand(v)[0]))(x),
        rtol=1e-5,
    )
    # Only the plain comparison (and its use as a probability) is listed as relaxed.
    assert [op.primitive for op in relaxed.explain(x)] == ["gt", "convert_element_type"]
