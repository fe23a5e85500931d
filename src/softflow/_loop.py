"""Soft loops: ``while`` and ``for``-with-``break`` as mixtures over the step at which they stop.

One step function, two ways of running it. The value is computed by a :func:`jax.lax.while_loop`
that ends once the loop has stopped (its remaining mass fell to ``tol`` or it reached
``max_steps``): a loop that stops after k steps costs k steps, as the loop written by hand would.
A while loop cannot be reverse-differentiated, so derivatives come from a custom JVP rule that runs
the same steps as a scan of ``n_chunks`` chunks of ``chunk_size`` steps, each chunk wrapped in
:func:`jax.checkpoint`: reverse mode stores one carry per chunk and recomputes a chunk's steps
while it differentiates it, so memory grows like sqrt(max_steps) instead of max_steps. Once the
loop has stopped, :func:`jax.lax.cond` skips whole chunks and single steps, forward and backward.
The trace contains one chunk and one step, whatever max_steps is, and the user's functions are
traced once each (their programs are replayed by both runners).

Under :func:`jax.vmap` a ``cond`` or ``while_loop`` whose predicate is batched runs both branches
(or every lane) to the end, which would make every loop of a batch run all max_steps. The
predicates here are "every loop of the batch has stopped", reduced over the batch axes by
``unvmap_all`` (a primitive whose batching rule returns an unbatched value), so the conds stay
conds and the while loop ends with the last loop of the batch; a loop that stops while others go
on is frozen by a select.
"""

import functools
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeAlias, get_args, overload

import jax
import jax.numpy as jnp
import numpy as np
from equinox.internal import unvmap_all
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun
from jax.typing import ArrayLike

from ._blend import blend, weighted
from ._checks import as_real_array, check_choice, check_float_leaves, check_int, is_concrete
from ._scope import primitive

Semantics = Literal["halting", "blend"]
SEMANTICS: tuple[str, ...] = get_args(Semantics)

#: A pytree of arrays (the loop state).
PyTree: TypeAlias = Any

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class SoftWhileInfo(NamedTuple):
    """Diagnostics of a :func:`soft_while` run (returned with ``return_info=True``).

    Attributes:
        expected_steps: expected number of body evaluations, :math:`\\sum_{t \\ge 1} a_t` under
            the halting semantics (with the mass cut off by ``tol`` counted where it was cut).
            Under the blend semantics, the number of steps run.
        remaining_mass: :math:`a_T c_T`, the probability that the loop was still running at
            ``max_steps``: it had run ``max_steps`` bodies and its condition asked for one more
            (0 when it stops exactly there). Far from 0 means ``max_steps`` is too small for
            these conditions. Under the blend semantics, the condition value at ``max_steps``
            (0 if it stopped).
        steps: number of body evaluations actually performed (the early exit point), an int32.

    Example:
        >>> import softflow as sf
        >>> _, info = sf.soft_while(
        ...     lambda x: sf.less_equal(x, 10.0, mode="hard"), lambda x: 2 * x, 1.0,
        ...     max_steps=50, return_info=True)
        >>> float(info.expected_steps), float(info.remaining_mass), int(info.steps)
        (4.0, 0.0, 4)
    """

    expected_steps: jax.Array
    remaining_mass: jax.Array
    steps: jax.Array


class _HaltingCarry(NamedTuple):
    t: jax.Array  # body evaluations so far: the state is r_t
    state: PyTree  # r_t
    running: jax.Array  # a_t, the probability that the loop is still running at step t
    expected_steps: jax.Array  # sum over the stops so far of P(stop at s) * s
    remaining_mass: jax.Array  # a_T c_T once the loop reached max_steps, else 0
    done: jax.Array


class _BlendCarry(NamedTuple):
    t: jax.Array  # body evaluations so far
    state: PyTree  # the blended state
    condition: jax.Array  # c_{t-1}, the weight of the last blended body evaluation
    done: jax.Array


# ------------------------------------------------------------------------------------ checks


def _describe(shape: Any) -> str:
    return f"{np.dtype(shape.dtype).name}{list(shape.shape)}"


def _describe_tree(tree: Any) -> str:
    leaves = [_describe(leaf) for leaf in jax.tree_util.tree_leaves(tree)]
    return f"{jax.tree_util.tree_structure(tree)} with leaves {leaves}"


def _first_difference(expected: Any, got: Any, got_name: str) -> str | None:
    """Where ``got`` first differs from ``expected`` in structure, shape or dtype, or None."""
    paths_expected = jax.tree_util.tree_leaves_with_path(expected)
    paths_got = jax.tree_util.tree_leaves_with_path(got)
    for (path_e, leaf_e), (path_g, leaf_g) in zip(paths_expected, paths_got, strict=False):
        where = jax.tree_util.keystr(path_e) or "(the value itself)"
        if path_e != path_g:
            other = jax.tree_util.keystr(path_g) or "(the value itself)"
            return f"init_val has a leaf at {where} where {got_name} has one at {other}"
        if leaf_e.shape != leaf_g.shape or leaf_e.dtype != leaf_g.dtype:
            return (
                f"at {where}, init_val has {_describe(leaf_e)} and {got_name} {_describe(leaf_g)}"
            )
    if len(paths_expected) != len(paths_got):
        longer, name = (
            (paths_expected, "init_val")
            if len(paths_expected) > len(paths_got)
            else (paths_got, got_name)
        )
        extra = jax.tree_util.keystr(longer[min(len(paths_expected), len(paths_got))][0])
        return f"{name} has more leaves; the first extra one is at {extra or '(the value itself)'}"
    if jax.tree_util.tree_structure(expected) != jax.tree_util.tree_structure(got):
        return "the leaves agree but their containers differ"
    return None


class _Traced(NamedTuple):
    """A user function traced once: its program, the values it closes over, its output's shapes.

    Replaying the program (:meth:`call`) instead of calling the function again runs user code
    through Python once however often the loop uses it. The closed-over values (tracers of an
    enclosing jit, grad or vmap included) are explicit, so that the loop can pass them as
    arguments of its custom derivative rule.
    """

    jaxpr: Any
    consts: list
    out_shape: Any

    def call(self, consts: list, *args: Any) -> Any:
        flat = jaxpr_as_fun(ClosedJaxpr(self.jaxpr, consts))(*jax.tree_util.tree_leaves(args))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(self.out_shape), flat)


def _trace(fn: Callable, *args: Any) -> _Traced:
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    return _Traced(closed.jaxpr, list(closed.consts), out_shape)


def _condition_dtype(shape: Any, name: str) -> np.dtype:
    """The dtype of a condition function's output, which must be a floating scalar."""
    dtype = getattr(shape, "dtype", None)
    if (
        dtype is None
        or getattr(shape, "shape", None) != ()
        or not jnp.issubdtype(dtype, jnp.floating)
    ):
        got = _describe(shape) if dtype is not None else _describe_tree(shape)
        raise TypeError(
            f"{name} must return a scalar float soft truth value in [0, 1] (for example "
            f"sf.greater(...)); it returned {got}. For a batch of loops, vmap the loop; for a "
            "hard condition use mode='hard' rather than a bool."
        )
    return np.dtype(dtype)


def _check_tol(tol: Any, dtype: np.dtype) -> jax.Array:
    tol = as_real_array("tol", tol, allow_bool=False)
    if tol.shape != ():
        raise ValueError(f"tol must be a scalar; got an array of shape {tol.shape}.")
    if is_concrete(tol) and not tol >= 0:
        raise ValueError(f"tol must be a non-negative number; got {float(tol)}.")
    return tol.astype(dtype)


def _strong(x: ArrayLike) -> jax.Array:
    """``x`` as an array of its own dtype, not weakly typed (a loop carry must keep one type)."""
    return jnp.asarray(x, dtype=jnp.result_type(x))


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}.")


def _default_chunk_size(n_steps: int) -> int:
    # Reverse mode keeps one carry per chunk plus roughly two states per step of the chunk being
    # differentiated; sqrt(n / 2) balances the two.
    return max(1, math.isqrt(n_steps // 2))


# --------------------------------------------------------------------------------- the loops


def _add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def _no_mass(tree: Any) -> Any:
    """The start of a weighted sum of states like ``tree``: -0.0, the identity of addition, so
    that a state of weight 1 is returned bit for bit (-0.0 included), as by :func:`blend`."""

    def leaf(x):
        inexact = jnp.issubdtype(jnp.result_type(x), jnp.inexact)
        return jnp.full_like(x, -0.0) if inexact else jnp.zeros_like(x)

    return jax.tree_util.tree_map(leaf, tree)


def _all_stopped(inner) -> jax.Array:
    """Whether every loop of the batch has stopped; unbatched under vmap, so conds stay conds."""
    return unvmap_all(inner[0].done)


def _summing(step: Callable) -> Callable:
    """``step(carry) -> (carry, increment)`` as a step on ``(carry, sum of increments)``."""

    def step_and_sum(inner):
        c, partial = inner
        c, increment = step(c)
        return c, _add(partial, increment)

    return step_and_sum


def _run_while(step: Callable, carry: Any, total: Any):
    """Apply ``step`` until ``carry.done`` (in every loop of a batch): the forward pass."""
    return jax.lax.while_loop(lambda inner: ~_all_stopped(inner), _summing(step), (carry, total))


def _run_chunked(step: Callable, carry: Any, total: Any, n_steps: int, chunk_size: int | None):
    """:func:`_run_while` as a reverse-differentiable scan of ``n_steps`` steps or more.

    The scan runs checkpointed chunks of ``chunk_size`` steps; once ``carry.done``, conds skip
    the rest, forward and backward. Only ``carry`` enters the checkpointed chunks: the running sum
    is linear, its cotangent is the same at every step, so it is kept outside and reverse mode
    stores one state per chunk rather than two.
    """
    chunk_size = chunk_size or _default_chunk_size(n_steps)
    n_chunks = -(-n_steps // chunk_size)
    no_increment = _no_mass(total)
    step_and_sum = _summing(step)

    def guarded_step(inner, _):
        return jax.lax.cond(_all_stopped(inner), lambda x: x, step_and_sum, inner), None

    def chunk(c):
        return jax.lax.scan(guarded_step, (c, no_increment), None, length=chunk_size)[0]

    # The checkpoint goes inside the cond: reverse mode then keeps, per chunk, the chunk's input
    # rather than the residuals of its steps, and a skipped chunk costs a copy of the carry
    # instead of zeros in place of all those residuals.
    run_chunk = jax.checkpoint(chunk)

    def guarded_chunk(c):
        return jax.lax.cond(_all_stopped((c,)), lambda c: (c, no_increment), run_chunk, c)

    def outer_step(outer, _):
        c, increment = guarded_chunk(outer[0])
        return (c, _add(outer[1], increment)), None

    return jax.lax.scan(outer_step, (carry, total), None, length=n_chunks)[0]


@primitive
def _soft_while(
    cond_fn: Callable,
    body_fn: Callable,
    init_val: PyTree,
    *,
    max_steps: int,
    tol: ArrayLike,
    semantics: str,
    chunk_size: int | None,
    return_info: bool,
    cond_name: str = "cond_fn",
    breaks: bool = False,
    exits: bool = False,
    last_state: bool = False,
) -> Any:
    r"""soft_while with cond_fn(t, state) and body_fn(t, state) that may use the step index t.

    With ``last_state`` (and ``return_info``), also the state of the last step that ran (not
    the mixture), frozen there under vmap.

    With ``breaks``, ``cond_fn`` gives the probability of stopping, not of going on. ``max_steps``
    is checked by the caller (0 is an empty loop).

    With ``exits`` (halting semantics only), ``body_fn`` returns ``(next_state, [(p_1, s_1),
    ...])``: exits in the middle of the body (a ``break``), each taken with probability
    :math:`p_i` in the world where the loop still runs, with the state :math:`s_i` at the exit.
    The loop's mass still running at the body, :math:`a`, leaves by them in turn: exit :math:`i`
    adds :math:`a\, p_i\, s_i` to the result and :math:`a` becomes :math:`a (1 - p_i)`.

    The value is computed by one ``while_loop``, which stops as soon as the loop (every loop of a
    batch) has stopped but cannot be reverse-differentiated. Derivatives come from a custom JVP
    rule that runs the same steps as a checkpointed scan (:func:`_run_chunked`), which can.
    """
    check_choice("semantics", semantics, SEMANTICS)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    check_float_leaves(f"{'soft_fori_loop' if breaks else 'soft_while'} init_val", init_val)
    init_val = jax.tree_util.tree_map(_strong, init_val)
    t0 = jnp.int32(0)
    condition = _trace(cond_fn, t0, init_val)
    dtype = _condition_dtype(condition.out_shape, cond_name)
    body = _trace(body_fn, t0, init_val)
    next_shape, exit_shapes = body.out_shape if exits else (body.out_shape, [])
    difference = _first_difference(init_val, next_shape, "body_fn's output")
    for _, exit_state in exit_shapes:
        difference = difference or _first_difference(init_val, exit_state, "an exit's state")
    if difference is not None:
        raise TypeError(
            "body_fn must return a value of the same structure, shapes and dtypes as init_val; "
            f"{difference}.\n  init_val:    {_describe_tree(init_val)}\n"
            f"  body_fn output: {_describe_tree(next_shape)}"
        )
    tol = _check_tol(tol, dtype)
    halting = semantics == "halting"

    def steps(inputs):
        """The step function, initial carry and initial sum, as functions of the loop's inputs."""
        init_val, tol, condition_consts, body_consts = inputs
        # Made here, not closed over: the JVP rule is traced later, under another trace.
        zero, one = jnp.zeros((), dtype), jnp.ones((), dtype)

        def going_on(t, state, done):
            """c_t, the probability of running the body once more: 0 past max_steps and once
            done; and c_t as the condition says, past max_steps too (what was cut short)."""
            value = jnp.asarray(condition.call(condition_consts, t, state), dtype)
            value = 1 - value if breaks else value
            return jnp.where(done | (t >= max_steps), zero, value), value

        def safe_input(state, stop):
            # Under vmap the body runs while any loop of the batch goes on; those that stopped
            # feed it init_val, so that a state that would overflow after stopping is never used
            # and cannot send NaN through the (zero) cotangent of the discarded value, and keep
            # their state.
            return jax.tree_util.tree_map(lambda x, x0: jnp.where(stop, x0, x), state, init_val)

        def keep_if(stop, new, old):
            return jax.tree_util.tree_map(lambda n, x: jnp.where(stop, x, n), new, old)

        def advance(t, state, stop, update):
            def run_body(state):
                new = update(body.call(body_consts, t, safe_input(state, stop)), state)
                return keep_if(stop, new, state)

            return jax.lax.cond(unvmap_all(stop), lambda state: state, run_body, state)

        def advance_with_exits(t, state, running, stop):
            """The state after the body, the mass still running after its exits, and the sum of
            the exits' states, each weighted by the mass that leaves there."""
            no_exit = _no_mass(state)

            def run_body(args):
                state, running = args
                new, exit_list = body.call(body_consts, t, safe_input(state, stop))
                exited = no_exit
                for p, exit_state in exit_list:
                    p = jnp.asarray(p, dtype)
                    staying = running * (1 - p)
                    # As at the loop's test: a mass left at or below tol leaves here too.
                    cut = staying <= tol
                    leaving = jnp.where(cut, running, running * p)
                    exited = _add(
                        exited,
                        jax.tree_util.tree_map(functools.partial(weighted, leaving), exit_state),
                    )
                    running = jnp.where(cut, zero, staying)
                return keep_if(stop, (new, running, exited), (state, args[1], no_exit))

            return jax.lax.cond(
                unvmap_all(stop), lambda args: (*args, no_exit), run_body, (state, running)
            )

        def halting_step(c: _HaltingCarry):
            truncated = c.t >= max_steps
            condition, wanted = going_on(c.t, c.state, c.done)
            weight = c.running * (1 - condition)  # a_t (1 - c_t): stop right after t steps
            running = c.running * condition  # a_{t+1}
            stop = c.done | truncated | (running <= tol)
            weight = jnp.where(stop, weight + running, weight)  # the leftover mass stops here too
            stopped = jax.tree_util.tree_map(lambda x: weighted(weight, x), c.state)
            expected_steps = c.expected_steps + weight * c.t.astype(dtype)
            if exits:
                state, after_exits, exited = advance_with_exits(c.t, c.state, running, stop)
                # The mass that left by an exit ran t + 1 bodies (the last one in part).
                expected_steps = expected_steps + (running - after_exits) * (c.t + 1).astype(dtype)
                running, stopped = after_exits, _add(stopped, exited)
            else:
                state = advance(c.t, c.state, stop, lambda new, old: new)
            next_carry = _HaltingCarry(
                t=jnp.where(stop, c.t, c.t + 1),
                state=state,
                running=jnp.where(stop, zero, running),
                expected_steps=expected_steps,
                # a_T c_T: the mass that would run the body again (none when the loop stops
                # exactly at max_steps).
                remaining_mass=jnp.where(truncated & ~c.done, c.running * wanted, c.remaining_mass),
                done=stop,
            )
            return next_carry, stopped

        def blend_step(c: _BlendCarry):
            condition, wanted = going_on(c.t, c.state, c.done)
            truncated = c.t >= max_steps
            stop = c.done | truncated | (condition <= tol)

            def mix(new, old):
                def leaf(n, o):
                    p = condition.astype(n.dtype)
                    return blend((p, 1 - p), (n, o))

                return jax.tree_util.tree_map(leaf, new, old)

            next_carry = _BlendCarry(
                t=jnp.where(stop, c.t, c.t + 1),
                state=advance(c.t, c.state, stop, mix),
                # At max_steps: the condition there, the weight the next body would have had.
                condition=jnp.where(
                    stop, jnp.where(truncated & ~c.done, wanted, c.condition), condition
                ),
                done=stop,
            )
            return next_carry, None

        start = dict(t=jnp.int32(0), state=init_val, done=jnp.bool_(False))
        if halting:
            carry = _HaltingCarry(**start, running=one, expected_steps=zero, remaining_mass=zero)
            return halting_step, carry, _no_mass(init_val)
        return blend_step, _BlendCarry(**start, condition=one), None

    @jax.custom_jvp
    def run(inputs):
        return _run_while(*steps(inputs))

    @run.defjvp
    def _run_jvp(primals, tangents):
        def chunked(inputs):
            return _run_chunked(*steps(inputs), max_steps + 1, chunk_size)

        return jax.jvp(chunked, primals, tangents)

    final, total = run((init_val, tol, condition.consts, body.consts))
    if halting:
        value = total
        info = SoftWhileInfo(final.expected_steps, final.remaining_mass, final.t)
    else:
        value = final.state
        truncated = final.t >= max_steps
        info = SoftWhileInfo(
            final.t.astype(dtype), jnp.where(truncated, final.condition, 0), final.t
        )
    if last_state:
        return value, info, final.state
    return (value, info) if return_info else value


@overload
def soft_while(
    cond_fn: Callable[[PyTree], ArrayLike],
    body_fn: Callable[[PyTree], PyTree],
    init_val: PyTree,
    *,
    max_steps: int,
    tol: ArrayLike = 1e-6,
    semantics: Semantics = "halting",
    chunk_size: int | None = None,
    return_info: Literal[False] = False,
) -> PyTree: ...


@overload
def soft_while(
    cond_fn: Callable[[PyTree], ArrayLike],
    body_fn: Callable[[PyTree], PyTree],
    init_val: PyTree,
    *,
    max_steps: int,
    tol: ArrayLike = 1e-6,
    semantics: Semantics = "halting",
    chunk_size: int | None = None,
    return_info: Literal[True],
) -> tuple[PyTree, SoftWhileInfo]: ...


@overload
def soft_while(
    cond_fn: Callable[[PyTree], ArrayLike],
    body_fn: Callable[[PyTree], PyTree],
    init_val: PyTree,
    *,
    max_steps: int,
    tol: ArrayLike = 1e-6,
    semantics: Semantics = "halting",
    chunk_size: int | None = None,
    return_info: bool = False,
) -> PyTree | tuple[PyTree, SoftWhileInfo]: ...


def soft_while(
    cond_fn: Callable[[PyTree], ArrayLike],
    body_fn: Callable[[PyTree], PyTree],
    init_val: PyTree,
    *,
    max_steps: int,
    tol: ArrayLike = 1e-6,
    semantics: Semantics = "halting",
    chunk_size: int | None = None,
    return_info: bool = False,
) -> PyTree | tuple[PyTree, SoftWhileInfo]:
    r"""Soft ``while`` loop: the expected final state when every condition check is a coin flip.

    With ``semantics="halting"`` (the default, *cumulative halting*, as in AlgoVision's While):

    .. math::
        r_0 = \text{init\_val},\quad c_t = \text{cond\_fn}(r_t),\quad
        r_{t+1} = \text{body\_fn}(r_t),\quad a_0 = 1,\quad a_{t+1} = a_t c_t

    .. math::
        \text{result} = \sum_{t < T} a_t (1 - c_t)\, r_t \;+\; a_T\, r_T,
        \qquad T = \text{max\_steps}

    :math:`a_t` is the probability that the loop is still running at step :math:`t` and
    :math:`a_t (1 - c_t)` the probability that it stops with state :math:`r_t`. With hard
    conditions (``mode="hard"`` comparisons) the result equals :func:`jax.lax.while_loop` whenever
    that loop ends within ``max_steps``. Once :math:`a_{t+1} \le` ``tol`` the loop stops: the
    leftover mass goes to :math:`r_t` and no further body evaluations are made, forward or backward
    (``tol=0`` evaluates the formula above to the end).

    With ``semantics="blend"`` the state itself is blended at every step,
    :math:`r_{t+1} = c_t\, \text{body\_fn}(r_t) + (1 - c_t)\, r_t`, and the result is :math:`r_T`;
    the loop stops early once :math:`c_t \le` ``tol``. Prefer ``"halting"`` (an exact mixture of
    states the hard program can reach, unbiased for sharp conditions); ``"blend"`` keeps one
    running state, which suits iterations that converge (bisection, fixed points) and conditions
    that stay soft for many steps, at the price of a state the hard program never visits.

    Reverse-mode differentiable (unlike :func:`jax.lax.while_loop`), also in ``cond_fn``'s
    parameters. The value is computed by one while loop that ends with the loop; derivatives run
    the same steps as checkpointed chunks of ``chunk_size`` steps, so the gradient's memory grows
    like :math:`\sqrt{T}` (and, for a loop that stops early, so does the small cost of skipping
    the chunks left). Trace and compile time do not depend on ``max_steps``, and ``cond_fn`` and
    ``body_fn`` are traced once. A state that would overflow after the loop has stopped does not
    poison the result or its gradient. Under :func:`jax.vmap` the batch exits early too: it runs
    until its last loop stops (not ``max_steps``), the loops that stopped before being frozen.

    Arguments:
        cond_fn: ``cond_fn(state)`` returns a scalar float soft truth value in [0, 1], e.g.
            ``sf.greater(x, 0.0, softness=0.1)``.
        body_fn: ``body_fn(state)`` returns the next state, with the structure, shapes and dtypes
            of ``init_val``.
        init_val: the initial state, a pytree of floating arrays.
        max_steps: a positive Python int, the largest number of body evaluations (:math:`T`).
        tol: remaining mass (halting) or condition value (blend) at or below which the loop
            stops; a non-negative scalar.
        semantics: ``"halting"`` or ``"blend"``.
        chunk_size: steps per checkpointed chunk; default about :math:`\sqrt{T/2}`.
        return_info: also return a :class:`SoftWhileInfo` with the expected number of steps and
            the mass left at ``max_steps``.

    Returns:
        The final state (a pytree like ``init_val``), or ``(state, info)`` with
        ``return_info=True``.

    Raises:
        TypeError: if ``max_steps`` or ``chunk_size`` is not an int, ``tol`` is not a real number,
            ``cond_fn`` does not return a scalar float, ``body_fn`` changes the state's
            structure, shapes or dtypes (the message names the first leaf that differs), or a
            leaf of ``init_val`` is not floating.
        ValueError: if ``max_steps`` is not in [1, 2**31 - 1], ``tol`` is negative or not a
            scalar, or ``semantics`` is unknown.

    Example:
        >>> import softflow as sf
        >>> # Double x until it exceeds 10: 1 -> 2 -> 4 -> 8 -> 16.
        >>> cond = lambda x: sf.less_equal(x, 10.0, mode="hard")
        >>> float(sf.soft_while(cond, lambda x: 2 * x, 1.0, max_steps=50))
        16.0
        >>> y, info = sf.soft_while(
        ...     lambda x: sf.less_equal(x, 10.0, softness=1.0), lambda x: 2 * x, 1.0,
        ...     max_steps=50, return_info=True)
        >>> round(float(info.expected_steps), 2)
        3.88
    """
    return _soft_while(
        lambda t, state: cond_fn(state),
        lambda t, state: body_fn(state),
        init_val,
        max_steps=check_int("max_steps", max_steps, minimum=1),
        tol=tol,
        semantics=semantics,
        chunk_size=chunk_size,
        return_info=return_info,
    )


def _checkpointed_fori_loop(
    lower: int, upper: int, body_fn: Callable, init_val: PyTree, chunk_size: int | None
) -> PyTree:
    """``lax.fori_loop(lower, upper, body_fn, init_val)`` as checkpointed chunks of steps."""
    n_steps = max(upper - lower, 0)
    chunk_size = chunk_size or _default_chunk_size(n_steps)
    n_chunks, rest = divmod(n_steps, chunk_size)

    def step(carry, _):
        i, val = carry
        return (i + 1, body_fn(i, val)), None

    def chunk_of(length):
        return jax.checkpoint(lambda carry: jax.lax.scan(step, carry, None, length=length)[0])

    full_chunk = chunk_of(chunk_size)
    # (A weakly typed index, as lax.fori_loop's from Python bounds: i / 2 keeps a float16 state.)
    carry = (jnp.asarray(lower), init_val)
    carry = jax.lax.scan(lambda c, _: (full_chunk(c), None), carry, None, length=n_chunks)[0]
    if rest:
        carry = chunk_of(rest)(carry)
    return carry[1]


def _check_bounds(lower: Any, upper: Any, why: str) -> tuple[int, int]:
    for name, bound in (("lower", lower), ("upper", upper)):
        if isinstance(bound, bool) or not isinstance(bound, int | np.integer):
            raise TypeError(
                f"{name} must be a Python int {why} (the loop needs a static trip count); got "
                f"{bound!r}."
            )
        check_int(name, bound, minimum=_INT32_MIN, maximum=_INT32_MAX)
    check_int("upper - lower", max(upper - lower, 0), minimum=0, maximum=_INT32_MAX - 1)
    return int(lower), int(upper)


@overload
def soft_fori_loop(
    lower: int,
    upper: int,
    body_fn: Callable[[jax.Array, PyTree], PyTree],
    init_val: PyTree,
    *,
    break_fn: Callable[[jax.Array, PyTree], ArrayLike] | None = None,
    tol: ArrayLike = 1e-6,
    chunk_size: int | None = None,
    checkpoint: bool | None = None,
    return_info: Literal[False] = False,
) -> PyTree: ...


@overload
def soft_fori_loop(
    lower: int,
    upper: int,
    body_fn: Callable[[jax.Array, PyTree], PyTree],
    init_val: PyTree,
    *,
    break_fn: Callable[[jax.Array, PyTree], ArrayLike] | None = None,
    tol: ArrayLike = 1e-6,
    chunk_size: int | None = None,
    checkpoint: bool | None = None,
    return_info: Literal[True],
) -> tuple[PyTree, SoftWhileInfo]: ...


@overload
def soft_fori_loop(
    lower: int,
    upper: int,
    body_fn: Callable[[jax.Array, PyTree], PyTree],
    init_val: PyTree,
    *,
    break_fn: Callable[[jax.Array, PyTree], ArrayLike] | None = None,
    tol: ArrayLike = 1e-6,
    chunk_size: int | None = None,
    checkpoint: bool | None = None,
    return_info: bool = False,
) -> PyTree | tuple[PyTree, SoftWhileInfo]: ...


def soft_fori_loop(
    lower: int,
    upper: int,
    body_fn: Callable[[jax.Array, PyTree], PyTree],
    init_val: PyTree,
    *,
    break_fn: Callable[[jax.Array, PyTree], ArrayLike] | None = None,
    tol: ArrayLike = 1e-6,
    chunk_size: int | None = None,
    checkpoint: bool | None = None,
    return_info: bool = False,
) -> PyTree | tuple[PyTree, SoftWhileInfo]:
    r"""Soft ``for i in range(lower, upper)`` loop with an optional soft ``break``.

    Without ``break_fn`` this is :func:`jax.lax.fori_loop`. With
    ``break_fn(i, val)`` :math:`\in [0, 1]`, a soft ``break`` checked before iteration ``i``, it is
    :func:`soft_while` (cumulative halting) on :math:`(i, \text{val})` with the condition
    :math:`[i < \text{upper}] \cdot (1 - \text{break\_fn}(i, \text{val}))`:

    .. math::
        \text{result} = \sum_{i=\text{lower}}^{\text{upper}}
        a_i \,(1 - c_i)\, \text{val}_i, \qquad c_i = 1 - \text{break\_fn}(i, \text{val}_i)
        \ (c_{\text{upper}} = 0)

    Gradient memory: with a ``break_fn`` the loop runs in checkpointed chunks and reverse mode
    stores about :math:`\sqrt{n}` states for :math:`n` = ``upper - lower`` iterations.
    :func:`jax.lax.fori_loop` stores all :math:`n`; ``checkpoint=True`` gives the loop without a
    ``break_fn`` the chunked path as well (same values; each chunk's steps run a second time in the
    backward pass).

    Arguments:
        lower, upper: the loop bounds; Python ints when ``break_fn`` is given or ``checkpoint``
            is true.
        body_fn: ``body_fn(i, val)`` returns the next ``val``.
        init_val: the initial value (a pytree of floating arrays when ``break_fn`` is given).
        break_fn: ``break_fn(i, val)`` returns a scalar float soft truth value of "break now".
        tol: remaining mass below which the loop stops (see :func:`soft_while`).
        chunk_size: steps per checkpointed chunk (see :func:`soft_while`).
        checkpoint: run in checkpointed chunks. Default (None): with a ``break_fn`` (which always
            is), not without one (exactly :func:`jax.lax.fori_loop`, traced bounds allowed).
        return_info: also return a :class:`SoftWhileInfo` (only with ``break_fn``).

    Returns:
        The final value (or ``(value, info)`` with ``return_info=True`` and a ``break_fn``).

    Raises:
        TypeError: if the bounds are not Python ints where they must be, ``break_fn`` does not
            return a scalar float, ``body_fn`` changes the value's structure, shapes or dtypes, or
            (with ``break_fn``) a leaf of ``init_val`` is not floating.
        ValueError: if ``return_info=True`` is given without a ``break_fn``,
            ``checkpoint=False`` with one, ``chunk_size`` for a loop that is not chunked, or a
            negative ``tol``.

    Example:
        >>> import softflow as sf
        >>> # Sum 1 + 2 + ... but break before the running sum exceeds 10.
        >>> body = lambda i, s: s + i
        >>> brk = lambda i, s: sf.greater(s + i, 10.0, mode="hard")
        >>> float(sf.soft_fori_loop(1, 100, body, 0.0, break_fn=brk))
        10.0
        >>> # No break, gradient memory like sqrt(n): checkpointed chunks of lax.fori_loop's steps.
        >>> float(sf.soft_fori_loop(1, 5, body, 0.0, checkpoint=True))
        10.0
    """
    if checkpoint is not None:
        _check_bool("checkpoint", checkpoint)
    if break_fn is None:
        if return_info:
            raise ValueError("return_info=True needs a break_fn (a plain loop has no diagnostics).")
        if not checkpoint:
            if chunk_size is not None:
                raise ValueError(
                    "chunk_size is for a chunked loop: give a break_fn or checkpoint=True."
                )
            return jax.lax.fori_loop(lower, upper, body_fn, init_val)
        lower, upper = _check_bounds(lower, upper, "when checkpoint=True")
        if chunk_size is not None:
            chunk_size = check_int("chunk_size", chunk_size, minimum=1)
        return _checkpointed_fori_loop(lower, upper, body_fn, init_val, chunk_size)
    if checkpoint is False:
        raise ValueError("a soft_fori_loop with a break_fn always runs checkpointed.")
    lower, upper = _check_bounds(lower, upper, "when break_fn is given")
    return _soft_while(
        lambda t, val: break_fn(lower + t, val),
        lambda t, val: body_fn(lower + t, val),
        init_val,
        max_steps=max(upper - lower, 0),  # an empty loop: nothing runs, nothing stops
        tol=tol,
        semantics="halting",
        chunk_size=chunk_size,
        return_info=return_info,
        cond_name="break_fn",
        breaks=True,
    )
