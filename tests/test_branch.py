"""soft_where / soft_if / soft_switch: blending, exactness at 0/1 weights, errors, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal, assert_grad_matches_finite_differences, tree_allclose
from hypothesis import given, strategies as st

import softflow as sf

FLOAT32 = st.floats(-1e6, 1e6, width=32, allow_subnormal=False)  # XLA on CPU flushes them
WEIGHT = st.floats(0.0, 1.0, width=32, allow_subnormal=False)  # XLA on CPU flushes subnormals
SPECIAL = st.sampled_from([np.inf, -np.inf, np.nan]) | FLOAT32


def test_soft_where_blends_every_leaf_with_broadcasting():
    p = jnp.array([0.0, 0.25, 1.0])  # one condition per element, broadcast to every leaf
    x = {"a": jnp.ones(3), "b": (jnp.full((2, 3), 4.0), jnp.float32(2.0))}
    y = {"a": jnp.zeros(3), "b": (jnp.full((2, 3), -4.0), jnp.float32(-2.0))}
    out = sf.soft_where(p, x, y)
    expected = {
        "a": jnp.array([0.0, 0.25, 1.0]),
        "b": (4 * (2 * p - 1) + jnp.zeros((2, 3)), 2 * (2 * p - 1)),
    }
    assert tree_allclose(out, expected, rtol=0)
    # soft_if runs both branches on the operands and blends in the same way.
    assert_exactly_equal(
        sf.soft_if(p, lambda v: v, lambda v: jax.tree_util.tree_map(jnp.negative, v), x["b"]),
        sf.soft_where(p, x["b"], y["b"]),
    )
    # Python scalars and bool conditions are accepted.
    assert float(sf.soft_where(True, 1.0, 2.0)) == 1.0


@given(p=WEIGHT, x=FLOAT32, y=FLOAT32)
def test_result_inside_the_convex_hull(p, x, y):
    out = float(sf.soft_where(jnp.float32(p), jnp.float32(x), jnp.float32(y)))
    slack = 4 * np.finfo(np.float32).eps * max(abs(x), abs(y))  # rounding of p*x + (1-p)*y
    assert min(x, y) - slack <= out <= max(x, y) + slack
    out = float(sf.soft_if(jnp.float32(p), lambda v: v * 2, lambda v: v - 1, jnp.float32(x)))
    two_x, x_minus_1 = float(np.float32(2 * x)), float(np.float32(x) - np.float32(1))
    slack = 4 * np.finfo(np.float32).eps * max(abs(two_x), abs(x_minus_1))
    assert min(two_x, x_minus_1) - slack <= out <= max(two_x, x_minus_1) + slack


@given(
    take_x=st.booleans(),
    x=st.lists(SPECIAL, min_size=3, max_size=3),
    y=st.lists(SPECIAL, min_size=3, max_size=3),
)
def test_exact_weights_give_the_chosen_branch_bit_for_bit(take_x, x, y):
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    p = np.float32(take_x)
    chosen = x if take_x else y
    assert_exactly_equal(sf.soft_where(p, x, y), jnp.asarray(chosen))
    assert_exactly_equal(sf.soft_if(p, lambda: x, lambda: y), jnp.asarray(chosen))
    one_hot = np.array([p, 1 - p], np.float32)
    assert_exactly_equal(sf.soft_switch(one_hot, [lambda: x, lambda: y]), jnp.asarray(chosen))


def test_non_finite_values_with_zero_weight_do_not_reach_the_result():
    p = jnp.array([1.0, 0.0, 0.3, 1.0])
    x = jnp.array([1.0, jnp.inf, 2.0, 3.0])
    y = jnp.array([jnp.nan, 5.0, 4.0, -jnp.inf])
    np.testing.assert_allclose(
        sf.soft_where(p, x, y), [1.0, 5.0, 0.3 * 2 + 0.7 * 4, 3.0], rtol=1e-6
    )
    safe_log = sf.soft_if(p, jnp.log, lambda v: v, jnp.array([2.0, 0.0, 1.0, -1.0]))
    np.testing.assert_allclose(safe_log, [np.log(2.0), 0.0, 0.7, np.nan], rtol=1e-6)
    weights = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # per element, one-hot
    branches = [lambda v: v, lambda v: jnp.full_like(v, jnp.nan), lambda v: 1 / v]
    np.testing.assert_allclose(
        sf.soft_switch(weights, branches, jnp.array([0.0, 4.0])), [0.0, 0.25]
    )


# Single, exactly rounded operations, so that compiled and eager code agree bit for bit.
SWITCH_BRANCHES = (lambda a: a * 3, lambda a: a - 1, lambda a: -a)
LAX_SWITCH = jax.jit(lambda index, v: jax.lax.switch(index, SWITCH_BRANCHES, v))
SOFT_SWITCH = jax.jit(lambda weights, v: sf.soft_switch(weights, SWITCH_BRANCHES, v))


@given(index=st.integers(0, 2), v=FLOAT32)
def test_soft_switch_one_hot_equals_lax_switch(index, v):
    one_hot = np.eye(3, dtype=np.float32)[index]
    assert_exactly_equal(SOFT_SWITCH(one_hot, np.float32(v)), LAX_SWITCH(index, np.float32(v)))


def test_soft_switch_blends_by_the_weights():
    weights = jnp.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
    branches = [lambda v: {"s": v}, lambda v: {"s": 2 * v}, lambda v: {"s": v * v}]
    v = jnp.array([3.0, 5.0])
    expected = 0.2 * v + 0.3 * 2 * v + 0.5 * v * v
    out = sf.soft_switch(weights, branches, v)["s"]
    np.testing.assert_allclose(out[0], expected[0], rtol=1e-6)
    assert float(out[1]) == 10.0


def python_program(x, y):
    """Reference with Python control flow, in float32 arithmetic."""
    if x > y:
        return x - y
    if x == y:
        return x * np.float32(2)
    if np.float32(-1) <= x <= np.float32(1):
        return x * y
    return y


def soft_program(x, y):
    """The same program with softflow in hard mode."""
    options = {"mode": "hard", "softness": 0.3}
    inner = sf.soft_if(sf.between(x, -1.0, 1.0, **options), lambda: x * y, lambda: y)
    tie = sf.soft_if(sf.equal(x, y, **options), lambda: x * 2, lambda: inner)
    return sf.soft_if(sf.greater(x, y, **options), lambda: x - y, lambda: tie)


SOFT_PROGRAM = jax.jit(soft_program)
GRID = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])  # ties and band edges


@given(x=GRID | FLOAT32, y=GRID | FLOAT32)
def test_hard_mode_equals_python_control_flow(x, y):
    x, y = np.float32(x), np.float32(y)
    expected = python_program(x, y)
    assert float(SOFT_PROGRAM(x, y)) == float(expected)
    assert float(soft_program(x, y)) == float(expected)


def test_structure_mismatch_shows_both_structures():
    with pytest.raises(TypeError) as info:
        sf.soft_if(0.5, lambda: {"a": 1.0}, lambda: (1.0, 2.0))
    message = str(info.value)
    assert "true_fn" in message and "false_fn" in message
    assert str(jax.tree_util.tree_structure({"a": 1.0})) in message
    assert str(jax.tree_util.tree_structure((1.0, 2.0))) in message
    with pytest.raises(TypeError, match="same pytree structure"):
        sf.soft_where(0.5, [1.0], [1.0, 2.0])
    with pytest.raises(TypeError, match=r"branches\[1\]"):
        sf.soft_switch(jnp.array([0.5, 0.5]), [lambda: (1.0,), lambda: [1.0]])


def test_integer_and_bool_leaves_are_rejected_by_name():
    state = {"count": jnp.arange(3), "value": jnp.ones(3)}
    with pytest.raises(TypeError, match=r"'count'.*int"):
        sf.soft_if(0.5, lambda: state, lambda: state)
    with pytest.raises(TypeError, match="bool"):
        sf.soft_where(0.5, jnp.array([True]), jnp.array([False]))
    with pytest.raises(TypeError, match=r"\[1\].*int"):
        sf.soft_switch(jnp.array([1.0, 0.0]), [lambda: (1.0, 2), lambda: (1.0, 3)])
    with pytest.raises(TypeError, match=r"p must be soft truth values.*int32"):
        sf.soft_where(jnp.array([1, 0]), jnp.ones(2), jnp.zeros(2))
    with pytest.raises(TypeError, match=r"weights must be soft truth values.*int32"):
        sf.soft_switch(jnp.array([1, 0]), [jnp.sin, jnp.cos], 1.0)


def test_soft_switch_wrong_number_of_branches():
    with pytest.raises(ValueError, match="3 branches") as info:
        sf.soft_switch(jnp.array([0.5, 0.5]), [jnp.sin, jnp.cos, jnp.tan], 1.0)
    assert "(2,)" in str(info.value)
    with pytest.raises(ValueError, match="non-empty"):
        sf.soft_switch(jnp.zeros(0), [], 1.0)
    with pytest.raises(ValueError, match="one entry per branch"):
        sf.soft_switch(jnp.float32(1.0), [jnp.sin], 1.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtype_follows_the_branches(dtype):
    x, y = jnp.ones(2, dtype), jnp.zeros(2, dtype)
    p = jnp.float32(0.5)  # a float32 condition keeps a low-precision state low-precision
    assert sf.soft_where(p, x, y).dtype == dtype
    assert sf.soft_if(p, lambda: x, lambda: y).dtype == dtype
    assert sf.soft_switch(jnp.array([0.5, 0.5]), [lambda: x, lambda: y]).dtype == dtype
    with jax.enable_x64(True):
        x, y = jnp.ones(2), jnp.zeros(2)
        assert sf.soft_where(jnp.float32(0.5), x, y).dtype == jnp.float64
        assert sf.soft_if(0.5, lambda: x, lambda: y).dtype == jnp.float64
        assert sf.soft_switch(jnp.array([0.5, 0.5]), [lambda: x, lambda: y]).dtype == jnp.float64


@pytest.mark.parametrize("p_dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("leaf_dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_a_value_blended_with_itself_is_itself_whatever_the_precisions(p_dtype, leaf_dtype):
    # 1 - p is taken at the leaf's precision: at p's (half) precision the two weights summed to
    # 0.9999 for p = 0.1, so that a blend of two equal values changed them.
    p = jnp.asarray([0.1, 0.3, 0.7, 0.01, 0.5], p_dtype)
    for v in (1.0, 3.0, -7.5):
        x = jnp.full(5, v, leaf_dtype)
        blended = sf.soft_where(p, x, x)
        assert blended.dtype == leaf_dtype
        eps = float(jnp.finfo(leaf_dtype).eps)  # (two products rounded)
        np.testing.assert_allclose(np.float32(blended), np.float32(x), rtol=2 * eps)


def threshold_program(x, t, tau, mode):
    p = sf.greater(x, t, softness=tau, kind="cauchy", mode=mode)
    return sf.soft_if(p, lambda v: jnp.sin(v) * 3, lambda v: v * v, x)


def test_gradients_through_the_condition_match_finite_differences(x64):
    x = np.array([-1.0, 0.2, 0.9, 1.7, 2.4])
    t = np.array([0.5, -0.3, 1.2, 1.0, 3.0])
    tau = np.array([0.4, 1.0, 0.3, 2.0, 0.7])
    soft = lambda a, b, c: threshold_program(a, b, c, "soft")  # noqa: E731
    straight = lambda a, b, c: threshold_program(a, b, c, "straight_through")  # noqa: E731
    assert_grad_matches_finite_differences(soft, (x, t, tau))

    # Straight-through: the weight is the hard indicator, its derivative the soft one, so
    # d/dt and d/dtau act only through p, as (f_true - f_false) * dp_soft, and d/dx adds the
    # derivative of the branch that is taken.
    def soft_condition(a, b, c):
        return sf.greater(a, b, softness=c, kind="cauchy")

    grads_st = jax.jit(jax.vmap(jax.grad(straight, (0, 1, 2))))(x, t, tau)
    grads_soft_p = jax.jit(jax.vmap(jax.grad(soft_condition, (0, 1, 2))))(x, t, tau)
    gap = np.sin(x) * 3 - x * x
    np.testing.assert_allclose(grads_st[1], gap * grads_soft_p[1], rtol=1e-12)
    np.testing.assert_allclose(grads_st[2], gap * grads_soft_p[2], rtol=1e-12)
    taken = np.where(x > t, 3 * np.cos(x), 2 * x)
    np.testing.assert_allclose(grads_st[0], gap * grads_soft_p[0] + taken, rtol=1e-12)


def test_transformations(x64):
    def program(x, t):
        return threshold_program(x, t, 0.5, "soft")

    xs = jnp.linspace(-2.0, 2.0, 5)
    gradient = jax.jit(jax.grad(program))
    batched = jax.jit(jax.vmap(jax.grad(program), (0, None)))
    np.testing.assert_allclose(batched(xs, 0.3), [gradient(x, 0.3) for x in xs], rtol=1e-13)
    hessian = jax.jit(jax.hessian(program, argnums=(0, 1)))(0.4, 0.3)
    nested = jax.jit(jax.jacfwd(jax.jacrev(program, argnums=(0, 1)), argnums=(0, 1)))(0.4, 0.3)
    assert tree_allclose(hessian, nested, rtol=1e-12)


def test_signed_zero_survives_exact_weights():
    """1 * -0.0 + 0 * y is +0.0; a blend at exact weights returns the chosen -0.0 itself."""
    negative_zero = jnp.float32(-0.0)
    picked = [
        sf.soft_where(1.0, negative_zero, 1.0),
        sf.soft_where(0.0, 1.0, negative_zero),
        sf.soft_if(True, lambda: negative_zero, lambda: jnp.float32(2.0)),
        sf.soft_switch(jnp.array([0.0, 1.0]), [lambda: jnp.float32(3.0), lambda: negative_zero]),
        sf.soft_select(jnp.array([0.0, 0.0, 1.0]), [1.0, 2.0, negative_zero]),
    ]
    for value in picked:
        assert value == 0 and np.signbit(value), value


def test_weight_derivative_of_a_masked_non_finite_branch_is_honest():
    """The value hides a branch of weight 0; d/dp is x - y all the same, inf or NaN included.

    Counting the masked inf as 0 would give +2 below: a finite, wrong slope. A caller who needs a
    finite slope makes the branch finite (``jnp.where`` on its input), as with ``jnp.where``.
    """
    assert float(sf.soft_where(1.0, 2.0, jnp.inf)) == 2.0
    assert jax.grad(lambda p: sf.soft_where(p, 2.0, jnp.inf))(1.0) == -jnp.inf
    assert np.isnan(jax.grad(lambda p: sf.soft_where(p, jnp.nan, 2.0))(0.0))
    assert jax.grad(lambda p: sf.soft_where(p, 2.0, -3.0))(1.0) == 5.0
    # The value's own derivative is its weight: 0 for the hidden branch, inf or not.
    grads = jax.grad(lambda x, y: sf.soft_where(1.0, x, y), (0, 1))(2.0, jnp.inf)
    assert grads == (1.0, 0.0)
    # Straight-through conditions see the same slope as soft ones along the exact path.
    st_grad = jax.grad(
        lambda t: sf.soft_where(sf.greater(1.0, t, mode="straight_through"), 2.0, -3.0)
    )
    soft_grad = jax.grad(lambda t: sf.greater(1.0, t) * 5.0)
    np.testing.assert_allclose(st_grad(0.0), soft_grad(0.0), rtol=1e-6)


def test_soft_select_equals_soft_switch_on_constant_branches():
    weights = jnp.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
    values = [{"a": jnp.float32(1.0)}, {"a": jnp.float32(-2.0)}, {"a": jnp.float32(4.0)}]
    selected = sf.soft_select(weights, values)
    switched = sf.soft_switch(weights, [lambda v=v: v for v in values])
    assert_exactly_equal(selected, switched)
    # An array is the sequence of its slices along axis 0.
    table = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert_exactly_equal(sf.soft_select(jnp.array([0.0, 1.0, 0.0]), table), table[1])
    with pytest.raises(ValueError, match=r"one entry per value.*\(2,\) for 3 values"):
        sf.soft_select(jnp.array([0.5, 0.5]), table)
    with pytest.raises(TypeError, match="values must be a sequence"):
        sf.soft_select(jnp.array([1.0]), {"a": 1.0})
    with pytest.raises(
        ValueError, match=r"weights of shape \(4, 2\) \(less its last axis\) does not broadcast"
    ):
        sf.soft_select(jnp.full((4, 2), 0.5), [jnp.ones(3), jnp.zeros(3)])


def test_condition_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"p of shape \(4,\) does not broadcast.*\(3,\)"):
        sf.soft_where(jnp.full(4, 0.5), jnp.ones(3), jnp.zeros(3))
    with pytest.raises(TypeError, match=r"^p must be a real"):
        sf.soft_where(0.5 + 1j, 1.0, 2.0)


def test_only_weights_of_exactly_zero_are_special():
    """1 - 1e-30 is 1.0 in float32, yet the tiny weight still counts: 1e-30 * 1e30 = 1."""
    np.testing.assert_allclose(sf.soft_where(1e-30, 1e30, 0.0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        sf.soft_select(jnp.array([0.0, 1e-30, 1.0]), [jnp.nan, 1e30, 0.0]), 1.0, rtol=1e-6
    )


def test_blend_weights_are_never_sliced_out_of_a_stack():
    """soft_where blends by p and 1 - p as separate arrays, and soft_select by the slices of the
    given weights only: in reverse mode the slices of a stack become pads added together, which
    XLA does not simplify, and a chain of such blends (an unrolled loop of soft branches)
    compiled super-linearly in its length."""

    def chain(p, x):
        for _ in range(3):
            x = sf.soft_where(p, x * 2, x - 1)
        return x

    text = str(jax.make_jaxpr(jax.grad(chain, argnums=(0, 1)))(0.3, 1.5))
    assert "concatenate" not in text and "pad" not in text
    np.testing.assert_allclose(
        jax.grad(chain)(0.3, 1.5), jax.grad(lambda p, x: _chain_by_hand(p, x))(0.3, 1.5), rtol=1e-6
    )


def _chain_by_hand(p, x):
    for _ in range(3):
        x = p * (x * 2) + (1 - p) * (x - 1)
    return x


def test_weights_that_are_not_probabilities_are_refused():
    with pytest.raises(ValueError, match=r"p must hold truth values or weights in \[0, 1\]"):
        sf.soft_where(2.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="weights must hold truth values"):
        sf.soft_switch(jnp.asarray([-0.5, 1.5]), [lambda: 1.0, lambda: 2.0])
    with pytest.raises(ValueError, match="weights must sum to 1"):
        sf.soft_select(jnp.asarray([0.7, 0.7]), [1.0, 2.0])
    # Weights rounded in float16 still sum to 1 within their rounding.
    third = jnp.full(3, 1 / 3, jnp.float16)
    assert sf.soft_select(third, jnp.asarray([1.0, 2.0, 3.0], jnp.float16)).dtype == jnp.float16
