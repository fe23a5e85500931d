"""sf.relax on programs written in plain JAX, each against the same program written by hand with
softflow's primitives, against the program itself (hard mode and the straight-through forward
value, bit for bit), and against float64 finite differences."""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal
from jax import lax

import softflow as sf

TAU = 0.7  # one softness for every program: soft enough for finite differences to be accurate


class Program(NamedTuple):
    name: str
    fn: Callable  # plain JAX
    hand: Callable  # hand(*args, softness=, mode=): the same program with softflow primitives
    args: Callable  # args(rng) -> tuple of numpy arrays (float64 where floating)
    max_steps: int | None = None
    reverse: bool = (
        True  # False for programs JAX cannot reverse-differentiate (a traced loop bound)
    )


PROGRAMS: list[Program] = []


def program(args, max_steps=None, reverse=True):
    """Register ``fn`` (the decorated function) with its hand-written twin ``fn.hand``."""

    def register(fn):
        def with_hand(hand):
            PROGRAMS.append(Program(fn.__name__, fn, hand, args, max_steps, reverse))
            return hand

        fn.hand = with_hand
        return fn

    return register


def normal(*shape, scale=1.0):
    return lambda rng: rng.normal(size=shape) * scale


def args_of(*makers):
    return lambda rng: tuple(make(rng) for make in makers)


# -- thresholds and where ----------------------------------------------------------------------


@program(args_of(normal(5), normal()))
def threshold(x, t):
    return jnp.where(x > t, 2 * x, -x)


@threshold.hand
def _(x, t, **o):
    return sf.soft_where(sf.greater(x, t, **o), 2 * x, -x)


@program(args_of(normal(6)))
def nested_where(x):
    return jnp.where(x > 0, jnp.where(x > 1, x**2, x), -0.5 * x)


@nested_where.hand
def _(x, **o):
    return sf.soft_where(
        sf.greater(x, 0.0, **o), sf.soft_where(sf.greater(x, 1.0, **o), x**2, x), -0.5 * x
    )


@program(args_of(normal(7)))
def expected_count(x):
    return jnp.sum(x > 0.3) + jnp.sum(x <= -0.5)


@expected_count.hand
def _(x, **o):
    return jnp.sum(sf.greater(x, 0.3, **o)) + jnp.sum(sf.less_equal(x, -0.5, **o))


@program(args_of(normal(5), normal(5)))
def logic(x, y):
    return jnp.where(((x > 0) & ~(y > 1)) | (x < -1) ^ (y < 0), x * y, x + y)


@logic.hand
def _(x, y, **o):
    a = sf.logical_and(sf.greater(x, 0.0, **o), sf.logical_not(sf.greater(y, 1.0, **o)))
    b = sf.logical_xor(sf.less(x, -1.0, **o), sf.less(y, 0.0, **o))
    return sf.soft_where(sf.logical_or(a, b), x * y, x + y)


@program(args_of(normal(4)))
def any_all(x):
    return jnp.any(x > 1).astype(x.dtype) * 3 + jnp.all(x > -1).astype(x.dtype)


@any_all.hand
def _(x, **o):
    return sf.any(sf.greater(x, 1.0, **o)) * 3 + sf.all(sf.greater(x, -1.0, **o))


@program(args_of(normal(5)))
def continuous_ops(x):
    # abs, max, clip and relu stay as they are; only the comparison is relaxed
    y = jnp.clip(jnp.abs(x), 0.2, 1.5) + jax.nn.relu(x) + jnp.maximum(x, 0.1)
    return jnp.where(y > 1.0, y, 0.0)


@continuous_ops.hand
def _(x, **o):
    y = jnp.clip(jnp.abs(x), 0.2, 1.5) + jax.nn.relu(x) + jnp.maximum(x, 0.1)
    return sf.soft_where(sf.greater(y, 1.0, **o), y, 0.0)


@program(args_of(normal(4)))
def moved_truth_values(x):
    # truth values moved around (concatenated with constants, reshaped, sliced) before use
    b = jnp.concatenate([x > 0, jnp.array([True, False])]).reshape(2, 3)[:, ::-1]
    return jnp.sum(jnp.where(b, 1.0, -1.0), axis=0) * x[:3]


@moved_truth_values.hand
def _(x, **o):
    p = jnp.concatenate([sf.greater(x, 0.0, **o), jnp.array([1.0, 0.0])]).reshape(2, 3)[:, ::-1]
    return jnp.sum(sf.soft_where(p, 1.0, -1.0), axis=0) * x[:3]


# -- cond and switch ---------------------------------------------------------------------------


@program(args_of(normal(3)))
def cond(x):
    return lax.cond(jnp.sum(x) > 0, lambda a: a * 2 + 1, lambda a: jnp.sin(a), x)


@cond.hand
def _(x, **o):
    return sf.soft_if(sf.greater(jnp.sum(x), 0.0, **o), lambda a: a * 2 + 1, jnp.sin, x)


@program(args_of(normal()))
def switch(x):
    index = (x > -0.5).astype(jnp.int32) + (x > 0.5).astype(jnp.int32)
    return lax.switch(index, [lambda a: -a, lambda a: a**2, lambda a: 3 * a], x)


@switch.hand
def _(x, **o):
    p, q = sf.greater(x, -0.5, **o), sf.greater(x, 0.5, **o)
    w = jnp.stack([(1 - p) * (1 - q), p * (1 - q) + (1 - p) * q, p * q])
    return sf.soft_switch(w, [lambda a: -a, lambda a: a**2, lambda a: 3 * a], x)


@program(args_of(normal()))
def cond_integer_result(x):
    # the integers returned by the branches become a distribution; used as a float, its mean
    return lax.cond(x > 0, lambda: 1, lambda: 4).astype(x.dtype) * x


@cond_integer_result.hand
def _(x, **o):
    return sf.soft_where(sf.greater(x, 0.0, **o), 1.0, 4.0) * x


@program(args_of(normal(3), lambda rng: np.int32(0)))
def switch_exact_index(x, k):
    # an exact (integer) branch index: an exact switch whose branches are relaxed
    return lax.switch(k, [lambda a: jnp.where(a > 0, a, 0.1 * a), lambda a: -a], x)


@switch_exact_index.hand
def _(x, k, **o):
    return lax.switch(
        k, [lambda a: sf.soft_where(sf.greater(a, 0.0, **o), a, 0.1 * a), lambda a: -a], x
    )


# -- loops -------------------------------------------------------------------------------------


@program(args_of(lambda rng: rng.uniform(0.5, 2.0)), max_steps=30)
def while_soft_exit(x):
    return lax.while_loop(lambda v: v < 10.0, lambda v: v * 1.5 + 0.1, x)


@while_soft_exit.hand
def _(x, **o):
    return sf.soft_while(lambda v: sf.less(v, 10.0, **o), lambda v: v * 1.5 + 0.1, x, max_steps=30)


@program(args_of(lambda rng: rng.uniform(0.0, 1.0)), max_steps=12)
def while_counter(x):
    def body(state):
        i, v = state
        return i + 1, v + 0.7

    i, v = lax.while_loop(lambda s: (s[0] < 10) & (s[1] < 5.0), body, (0, x))
    return v, i  # the counter becomes its expected value, a float


@while_counter.hand
def _(x, **o):
    def cond(s):
        return (s[0] < 10).astype(s[1].dtype) * sf.less(s[1], 5.0, **o)

    i, v = sf.soft_while(
        cond, lambda s: (s[0] + 1, s[1] + 0.7), (jnp.zeros_like(x), x), max_steps=12
    )
    return v, i


def _bubble_sort(x):
    n = x.shape[0]

    def sweep(_, x):
        def compare(j, x):
            a, b = x[j], x[j + 1]
            return x.at[j].set(jnp.where(a > b, b, a)).at[j + 1].set(jnp.where(a > b, a, b))

        return lax.fori_loop(0, n - 1, compare, x)

    return lax.fori_loop(0, n, sweep, x)


@program(args_of(normal(5)))
def bubble_sort(x):
    return _bubble_sort(x)


@bubble_sort.hand
def _(x, **o):
    n = x.shape[0]

    def compare(j, x):
        a, b = x[j], x[j + 1]
        swap = sf.greater(a, b, **o)
        return x.at[j].set(sf.soft_where(swap, b, a)).at[j + 1].set(sf.soft_where(swap, a, b))

    return lax.fori_loop(0, n, lambda _, x: lax.fori_loop(0, n - 1, compare, x), x)


@program(args_of(normal(5)))
def insertion_sort(x):
    n = x.shape[0]

    def insert(i, x):
        def sink(k, x):
            j = jnp.maximum(i - k, 1)
            a, b = x[j - 1], x[j]
            swap = (k < i) & (a > b)
            return x.at[j - 1].set(jnp.where(swap, b, a)).at[j].set(jnp.where(swap, a, b))

        return lax.fori_loop(0, n - 1, sink, x)

    return lax.fori_loop(1, n, insert, x)


@insertion_sort.hand
def _(x, **o):
    n = x.shape[0]

    def insert(i, x):
        def sink(k, x):
            j = jnp.maximum(i - k, 1)
            a, b = x[j - 1], x[j]
            swap = sf.logical_and(k < i, sf.greater(a, b, **o))
            return x.at[j - 1].set(sf.soft_where(swap, b, a)).at[j].set(sf.soft_where(swap, a, b))

        return lax.fori_loop(0, n - 1, sink, x)

    return lax.fori_loop(1, n, insert, x)


@program(args_of(normal(4), lambda rng: np.int32(3)), reverse=False)
def fori_integer_bound(x, n):
    # n is an integer argument: exactly n steps; i % 2 == 0 stays exact
    def body(i, x):
        return jnp.where(i % 2 == 0, jnp.where(x > 0, x - 0.3, x + 0.2), x * 0.9)

    return lax.fori_loop(0, n, body, x)


@fori_integer_bound.hand
def _(x, n, **o):
    def body(i, x):
        return jnp.where(
            i % 2 == 0, sf.soft_where(sf.greater(x, 0.0, **o), x - 0.3, x + 0.2), x * 0.9
        )

    return lax.fori_loop(0, n, body, x)


@program(args_of(lambda rng: rng.normal(size=())))
def scan_controller(x0):
    # bang-bang controller: push towards the target, record the trajectory
    def step(x, target):
        u = jnp.where(x > target, -1.0, 1.0)
        x = x + 0.3 * u
        return x, x

    _, path = lax.scan(step, x0, jnp.linspace(-1.0, 1.0, 6))
    return path


@scan_controller.hand
def _(x0, **o):
    def step(x, target):
        u = sf.soft_where(sf.greater(x, target, **o), -1.0, 1.0)
        x = x + 0.3 * u
        return x, x

    _, path = lax.scan(step, x0, jnp.linspace(-1.0, 1.0, 6))
    return path


# -- grids and terrain -------------------------------------------------------------------------


def _neighbours(board):
    return sum(
        jnp.roll(board, (dy, dx), axis=(0, 1))
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if (dy, dx) != (0, 0)
    )


@program(args_of(lambda rng: rng.uniform(size=(5, 5))))
def life_step(board):
    n = _neighbours(board)
    alive = board > 0.5
    return ((n == 3) | (alive & (n == 2))).astype(board.dtype)


@life_step.hand
def _(board, **o):
    n = _neighbours(board)
    alive = sf.greater(board, 0.5, **o)
    return sf.logical_or(sf.equal(n, 3.0, **o), sf.logical_and(alive, sf.equal(n, 2.0, **o)))


_BOUNDARIES = (0.5, 1.5, 2.5)
_SLOWNESS = (1.0, 0.6, 0.9, 0.3)


@program(args_of(lambda rng: rng.uniform(0, 3, size=6), lambda rng: rng.uniform(0.5, 1.5)))
def terrain_slowness(depth, shift):
    # travel time through layered terrain whose boundaries move by ``shift``
    b0, b1, b2 = (b * shift for b in _BOUNDARIES)
    s0, s1, s2, s3 = _SLOWNESS
    slowness = jnp.where(depth < b0, s0, jnp.where(depth < b1, s1, jnp.where(depth < b2, s2, s3)))
    return jnp.sum(slowness * 0.1)


@terrain_slowness.hand
def _(depth, shift, **o):
    b0, b1, b2 = (b * shift for b in _BOUNDARIES)
    s0, s1, s2, s3 = _SLOWNESS

    def below(b, yes, no):
        return sf.soft_where(sf.less(depth, b, **o), yes, no)

    return jnp.sum(below(b0, s0, below(b1, s1, below(b2, s2, s3))) * 0.1)


# -- nested functions --------------------------------------------------------------------------


@jax.jit
def _inner_jit(x):
    return jnp.where(x > 0.2, x, 0.1 * x)


@program(args_of(normal(4)))
def nested_jit(x):
    return _inner_jit(x) * jax.jit(jnp.cumsum)(x)


@nested_jit.hand
def _(x, **o):
    return sf.soft_where(sf.greater(x, 0.2, **o), x, 0.1 * x) * jnp.cumsum(x)


@jax.custom_jvp
def _clipped_step(x):
    return jnp.where(x > 0, x, 0.0)


@_clipped_step.defjvp
def _clipped_step_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _clipped_step(x), jnp.where(x > 0, dx, 0.0)


@jax.custom_vjp
def _smooth(x):
    return jnp.log1p(jnp.exp(x))


_smooth.defvjp(lambda x: (_smooth(x), x), lambda x, g: (g * jax.nn.sigmoid(x),))


@program(args_of(normal(4)))
def custom_functions(x):
    # relu and _smooth are continuous: they keep their rules; _clipped_step is relaxed inside
    return _clipped_step(x) + jax.nn.relu(x) * _smooth(x)


@custom_functions.hand
def _(x, **o):
    return sf.soft_where(sf.greater(x, 0.0, **o), x, 0.0) + jax.nn.relu(x) * jnp.log1p(jnp.exp(x))


@program(args_of(normal(4)))
def checkpointed(x):
    return jax.checkpoint(lambda y: jnp.where(y < 0.5, jnp.cos(y), y))(x)


@checkpointed.hand
def _(x, **o):
    return sf.soft_where(sf.less(x, 0.5, **o), jnp.cos(x), x)


@program(args_of(normal(4)))
def exact_guard(x):
    # the guard is kept exact; the other comparison is relaxed
    positive = sf.exact(x > 0)
    root = jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)
    return jnp.where(x > 1.0, root, x)


@exact_guard.hand
def _(x, **o):
    root = jnp.where(x > 0, jnp.sqrt(jnp.where(x > 0, x, 1.0)), 0.0)
    return sf.soft_where(sf.greater(x, 1.0, **o), root, x)


# -- array operations --------------------------------------------------------------------------


@program(args_of(normal(5), normal(5)))
def argmax_indexing(scores, values):
    return values[jnp.argmax(scores)] + values[jnp.argmin(scores) - 5]


@argmax_indexing.hand
def _(scores, values, **o):
    return sf.take(values, sf.argmax(scores, **o)) + sf.take(values, sf.argmin(scores, **o))


@program(args_of(normal(3, 4)))
def argmax_rows(x):
    # one distribution per row; the one-hot is a comparison of integers per candidate
    winner = jnp.argmax(x, axis=1)
    return jax.nn.one_hot(winner, 4) * x


@argmax_rows.hand
def _(x, **o):
    return sf.argmax(x, axis=1, **o) * x


@program(args_of(normal(5), normal(5)))
def write_at_argmax(scores, x):
    return x.at[jnp.argmax(scores)].set(0.0) * 2


@write_at_argmax.hand
def _(scores, x, **o):
    return sf.put(x, sf.argmax(scores, **o), 0.0) * 2


@program(args_of(normal(5), normal(5)))
def sort_and_argsort(x, y):
    return jnp.sort(x) * 2 + y[jnp.argsort(x)]


@sort_and_argsort.hand
def _(x, y, **o):
    values, permutation = sf.sort(x, return_permutation=True, **o)
    return values * 2 + permutation @ y


@program(args_of(normal(5, scale=2.0)))
def staircases(x):
    return jnp.floor(x) + jnp.round(x) * jnp.sign(x) + jnp.ceil(0.5 * x) + x.astype(jnp.int32)


@staircases.hand
def _(x, **o):
    # x.astype(int) rounds towards zero: one step up at each k >= 1, one down at each k <= -1
    k = jnp.arange(1.0, 41.0)
    above = sf.greater_equal(x[..., None], k, **_soft(o)).sum(-1)
    below = sf.less_equal(x[..., None], -k, **_soft(o)).sum(-1)
    truncated = above - below
    if o["mode"] == "straight_through":
        truncated = sf._modes.straight_through(jnp.trunc(x), truncated)
    return sf.floor(x, **o) + sf.round(x, **o) * sf.sign(x, **o) + sf.ceil(0.5 * x, **o) + truncated


def _soft(options):
    return {**options, "mode": "soft"}


# -- the checks --------------------------------------------------------------------------------


def _float_positions(args):
    return [i for i, a in enumerate(args) if np.issubdtype(np.asarray(a).dtype, np.floating)]


def _scalar(outputs, weights):
    return sum(
        jnp.sum(w * jnp.asarray(o, w.dtype))
        for o, w in zip(jax.tree_util.tree_leaves(outputs), weights, strict=False)
    )


@pytest.mark.parametrize("prog", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_program(prog, x64):
    rng = np.random.default_rng(0)
    args = prog.args(rng)
    floats = _float_positions(args)
    options = {"softness": TAU, "max_steps": prog.max_steps}
    soft = sf.relax(prog.fn, **options)
    st = sf.relax(prog.fn, **options, mode="straight_through")
    hard = sf.relax(prog.fn, **options, mode="hard")
    out_shapes = jax.eval_shape(prog.fn, *args)
    weights = [jnp.asarray(rng.normal(size=o.shape)) for o in jax.tree_util.tree_leaves(out_shapes)]
    direction = [rng.normal(size=np.shape(args[i])) for i in floats]

    def scalar(f, *a):
        return _scalar(f(*a), weights)

    def grad(f, a):
        """The derivative along ``direction`` (by reverse mode where JAX supports it)."""
        primals = [a[i] for i in floats]
        if not prog.reverse:

            def along(*fa):
                return scalar(f, *_put(a, floats, fa))

            return jax.jvp(along, primals, [jnp.asarray(d) for d in direction])[1]
        argnums = tuple(range(len(floats)))
        g = jax.grad(lambda *fa: scalar(f, *_put(a, floats, fa)), argnums=argnums)(*primals)
        return sum(jnp.sum(gi * d) for gi, d in zip(g, direction, strict=False))

    @jax.jit
    def run(*a):
        h = 1e-6
        up = _put(a, floats, [a[i] + h * d for i, d in zip(floats, direction, strict=False)])
        down = _put(a, floats, [a[i] - h * d for i, d in zip(floats, direction, strict=False)])
        hand_soft = functools.partial(prog.hand, softness=TAU, mode="soft")
        hand_st = functools.partial(prog.hand, softness=TAU, mode="straight_through")
        return {
            "soft": soft(*a),
            "hand": hand_soft(*a),
            "st": st(*a),
            "hard": hard(*a),
            "fn": prog.fn(*a),
            "grad": grad(soft, a),
            "grad_hand": grad(hand_soft, a),
            "grad_st": grad(st, a),
            "grad_hand_st": grad(hand_st, a),
            "fd": (scalar(soft, *up) - scalar(soft, *down)) / (2 * h),
        }

    r = run(*args)
    # (a) the hand-written program, to float rounding (values and gradients, soft and ST)
    _close(r["soft"], r["hand"])
    _close(r["grad"], r["grad_hand"])
    _close(r["grad_st"], r["grad_hand_st"])
    # (b) the program itself: hard mode bit for bit; straight-through forward bit for bit
    assert_exactly_equal(r["hard"], r["fn"])
    _exactly_equal_values(r["st"], r["fn"])
    # (c) float64 finite differences of the soft program
    np.testing.assert_allclose(r["grad"], r["fd"], rtol=1e-5, atol=1e-7)


def _put(args, positions, values):
    args = list(args)
    for i, v in zip(positions, values, strict=False):
        args[i] = v
    return tuple(args)


def _close(a, b):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(
            np.asarray(u, np.float64), np.asarray(v, np.float64), rtol=1e-12, atol=1e-14
        )


def _exactly_equal_values(relaxed, exact):
    """Equal values; booleans and integers of the program come back as floats."""
    for u, v in zip(
        jax.tree_util.tree_leaves(relaxed), jax.tree_util.tree_leaves(exact), strict=True
    ):
        v = np.asarray(v)
        expected = v if np.issubdtype(v.dtype, np.floating) else v.astype(np.asarray(u).dtype)
        np.testing.assert_array_equal(np.asarray(u), expected, strict=True)


def test_at_least_twenty_programs():
    assert len(PROGRAMS) >= 20
