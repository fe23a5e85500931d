"""Soft loops: ``while`` and ``for``-with-``break`` as mixtures over the step at which they stop.

The loop runs as a scan of ``n_chunks`` chunks of ``chunk_size`` steps. Each chunk is wrapped in
:func:`jax.checkpoint`, so reverse mode stores one carry per chunk and recomputes a chunk's steps
while it differentiates it: memory grows like sqrt(max_steps) instead of max_steps. Once the loop
has stopped (its remaining mass fell to ``tol`` or it reached ``max_steps``), :func:`jax.lax.cond`
skips whole chunks and single steps, forward and backward, so a loop that stops after k steps
costs about k steps, not max_steps. The trace contains one chunk and one step, whatever
max_steps is.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._blend import weighted
from ._checks import check_choice, check_float_leaves

SEMANTICS = ("halting", "blend")


class SoftWhileInfo(NamedTuple):
    """Diagnostics of a :func:`soft_while` run (returned with ``return_info=True``).

    Attributes:
        expected_steps: expected number of body evaluations, :math:`\\sum_{t \\ge 1} a_t` under
            the halting semantics (with the mass cut off by ``tol`` counted where it was cut).
            Under the blend semantics, the number of steps run.
        remaining_mass: :math:`a_T`, the probability that the loop was still running at
            ``max_steps``. Far from 0 means ``max_steps`` is too small for these conditions.
            Under the blend semantics, the condition value at ``max_steps`` (0 if it stopped).
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


class _Carry(NamedTuple):
    t: jax.Array  # step index
    state: Any  # r_t
    mass: jax.Array  # a_t (halting) or c_{t-1} (blend)
    expected_steps: jax.Array
    remaining_mass: jax.Array
    done: jax.Array


def _check_max_steps(max_steps) -> int:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive Python int; got {max_steps!r}.")
    return max_steps


def _signature(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, [(leaf.shape, leaf.dtype) for leaf in leaves]


def _describe(tree) -> str:
    shapes = jax.tree_util.tree_map(lambda x: f"{x.dtype}{list(x.shape)}", tree)
    return f"{jax.tree_util.tree_structure(tree)} with leaves {jax.tree_util.tree_leaves(shapes)}"


def _check_functions(cond_fn, body_fn, init_val, *, cond_name, body_name):
    """Trace cond and body abstractly once and return the condition's dtype."""
    init_shapes = jax.eval_shape(lambda: init_val)
    condition = jax.eval_shape(cond_fn, jnp.int32(0), init_val)
    shape = getattr(condition, "shape", None)
    dtype = getattr(condition, "dtype", None)
    if shape != () or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        got = f"{dtype}{list(shape)}" if shape is not None else repr(condition)
        raise TypeError(
            f"{cond_name} must return a scalar float soft truth value in [0, 1] (for example "
            f"sf.greater(...)); it returned {got}. For a batch of loops, vmap soft_while; for a "
            "hard condition use mode='hard' rather than a bool."
        )
    body_shapes = jax.eval_shape(body_fn, jnp.int32(0), init_val)
    if _signature(body_shapes) != _signature(init_shapes):
        raise TypeError(
            f"{body_name} must return a value of the same structure, shapes and dtypes as "
            f"init_val.\n  init_val:    {_describe(init_shapes)}\n"
            f"  {body_name} output: {_describe(body_shapes)}"
        )
    return dtype


def _scale(weight, tree):
    """weight * tree, leaf by leaf in each leaf's dtype, ignoring non-finite zero-weight values."""
    return jax.tree_util.tree_map(lambda x: weighted(weight, x), tree)


def _add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def _run_chunked(step: Callable, carry: _Carry, total, n_steps: int, chunk_size: int | None):
    """Apply ``step`` at least ``n_steps`` times, summing its second output into ``total``.

    ``step(carry) -> (carry, increment)``. Only ``carry`` enters the checkpointed chunks: the
    running sum is linear, its cotangent is the same at every step, so it is kept outside and
    reverse mode stores one state per chunk rather than two.
    """
    if chunk_size is None:
        # Reverse mode keeps one carry per chunk plus roughly two states per step of the chunk
        # being differentiated; sqrt(n / 2) balances the two.
        chunk_size = max(1, math.isqrt(n_steps // 2))
    n_chunks = -(-n_steps // chunk_size)
    no_increment = jax.tree_util.tree_map(jnp.zeros_like, total)

    def step_and_sum(inner, _):
        c, partial = inner
        c, increment = step(c)
        return (c, _add(partial, increment)), None

    def chunk(c):
        return jax.lax.scan(step_and_sum, (c, no_increment), None, length=chunk_size)[0]

    @jax.checkpoint
    def guarded_chunk(c):
        return jax.lax.cond(c.done, lambda c: (c, no_increment), chunk, c)

    def outer_step(outer, _):
        c, increment = guarded_chunk(outer[0])
        return (c, _add(outer[1], increment)), None

    return jax.lax.scan(outer_step, (carry, total), None, length=n_chunks)[0]


def _soft_while(
    cond_fn,
    body_fn,
    init_val,
    *,
    max_steps: int,
    tol,
    semantics: str,
    chunk_size: int | None,
    return_info: bool,
    cond_name: str = "cond_fn",
    body_name: str = "body_fn",
):
    """soft_while with cond_fn(t, state) and body_fn(t, state) that may use the step index t."""
    max_steps = _check_max_steps(max_steps)
    check_choice("semantics", semantics, SEMANTICS)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive Python int or None; got {chunk_size!r}.")
    check_float_leaves("soft_while init_val", init_val)
    init_val = jax.tree_util.tree_map(jnp.asarray, init_val)
    dtype = _check_functions(cond_fn, body_fn, init_val, cond_name=cond_name, body_name=body_name)
    tol = jnp.asarray(tol, dtype)
    zero, one = jnp.zeros((), dtype), jnp.ones((), dtype)

    def advance(t, state, stop, update=lambda new, old: new):
        # Under vmap the cond becomes a select and the body runs for stopped lanes too; it is fed
        # init_val there, so a state that would overflow after stopping is never used and cannot
        # send NaN through the (zero) cotangent of the discarded branch.
        def run_body():
            safe = jax.tree_util.tree_map(lambda x, x0: jnp.where(stop, x0, x), state, init_val)
            return jax.tree_util.tree_map(update, body_fn(t, safe), state)

        return jax.lax.cond(stop, lambda: state, run_body)

    # Both steps are idempotent once done (no mass left, the state and t frozen), so the scan
    # needs no per-step guard: a finished loop only re-evaluates cond_fn on its final state
    # until the end of its chunk, and later chunks are skipped whole.
    def halting_step(c: _Carry):
        truncated = c.t >= max_steps
        condition = jnp.where(truncated, zero, cond_fn(c.t, c.state).astype(dtype))
        weight = c.mass * (1 - condition)  # a_t (1 - c_t): stop right after t steps
        mass = c.mass * condition  # a_{t+1}
        stop = c.done | truncated | (mass <= tol)
        weight = jnp.where(stop, weight + mass, weight)  # the leftover mass stops here too
        next_carry = _Carry(
            t=jnp.where(stop, c.t, c.t + 1),
            state=advance(c.t, c.state, stop),
            mass=jnp.where(stop, zero, mass),
            expected_steps=c.expected_steps + weight * c.t.astype(dtype),
            remaining_mass=jnp.where(truncated & ~c.done, c.mass, c.remaining_mass),
            done=stop,
        )
        return next_carry, _scale(weight, c.state)

    def blend_step(c: _Carry):
        truncated = c.t >= max_steps
        condition = jnp.where(truncated, zero, cond_fn(c.t, c.state).astype(dtype))
        stop = c.done | truncated | (condition <= tol)

        def blend(new, old):
            p = condition.astype(new.dtype)
            return p * new + (1 - p) * old

        next_carry = _Carry(
            t=jnp.where(stop, c.t, c.t + 1),
            state=advance(c.t, c.state, stop, blend),
            mass=condition,
            expected_steps=jnp.where(stop, c.expected_steps, c.t.astype(dtype) + 1),
            remaining_mass=jnp.where(truncated & ~c.done, c.mass, c.remaining_mass),
            done=stop,
        )
        return next_carry, None

    halting = semantics == "halting"
    carry = _Carry(
        t=jnp.int32(0),
        state=init_val,
        mass=one,
        expected_steps=zero,
        remaining_mass=zero,
        done=jnp.bool_(False),
    )
    total = jax.tree_util.tree_map(jnp.zeros_like, init_val) if halting else None
    final, total = _run_chunked(
        halting_step if halting else blend_step, carry, total, max_steps + 1, chunk_size
    )
    value = total if halting else final.state
    if not return_info:
        return value
    return value, SoftWhileInfo(final.expected_steps, final.remaining_mass, final.t)


def soft_while(
    cond_fn: Callable,
    body_fn: Callable,
    init_val,
    *,
    max_steps: int,
    tol=1e-6,
    semantics: str = "halting",
    chunk_size: int | None = None,
    return_info: bool = False,
):
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
    parameters. Memory of the gradient grows like :math:`\sqrt{T}` (checkpointed chunks of
    ``chunk_size`` steps); trace and compile time do not depend on ``max_steps``. A state that
    would overflow after the loop has stopped does not poison the result or its gradient. Under
    :func:`jax.vmap` the chunks of stopped loops are masked rather than skipped.

    Arguments:
        cond_fn: ``cond_fn(state)`` returns a scalar float soft truth value in [0, 1], e.g.
            ``sf.greater(x, 0.0, softness=0.1)``.
        body_fn: ``body_fn(state)`` returns the next state, with the structure, shapes and dtypes
            of ``init_val``.
        init_val: the initial state, a pytree of floating arrays.
        max_steps: a positive Python int, the largest number of body evaluations (:math:`T`).
        tol: remaining mass (halting) or condition value (blend) below which the loop stops.
        semantics: ``"halting"`` or ``"blend"``.
        chunk_size: steps per checkpointed chunk; default about :math:`\sqrt{T/2}`.
        return_info: also return a :class:`SoftWhileInfo` with the expected number of steps and
            the mass left at ``max_steps``.

    Returns:
        The final state (a pytree like ``init_val``), or ``(state, info)`` with
        ``return_info=True``.

    Raises:
        ValueError: if ``max_steps`` is not a positive Python int, or ``semantics`` is unknown.
        TypeError: if ``cond_fn`` does not return a scalar float, ``body_fn`` changes the state's
            structure, shapes or dtypes, or a leaf of ``init_val`` is not floating.

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
        max_steps=max_steps,
        tol=tol,
        semantics=semantics,
        chunk_size=chunk_size,
        return_info=return_info,
    )


def soft_fori_loop(
    lower: int,
    upper: int,
    body_fn: Callable,
    init_val,
    *,
    break_fn: Callable | None = None,
    tol=1e-6,
    chunk_size: int | None = None,
    return_info: bool = False,
):
    r"""Soft ``for i in range(lower, upper)`` loop with an optional soft ``break``.

    Without ``break_fn`` this is exactly :func:`jax.lax.fori_loop`. With
    ``break_fn(i, val)`` :math:`\in [0, 1]`, a soft ``break`` checked before iteration ``i``, it is
    :func:`soft_while` (cumulative halting) on :math:`(i, \text{val})` with the condition
    :math:`[i < \text{upper}] \cdot (1 - \text{break\_fn}(i, \text{val}))`:

    .. math::
        \text{result} = \sum_{i=\text{lower}}^{\text{upper}}
        a_i \,(1 - c_i)\, \text{val}_i, \qquad c_i = 1 - \text{break\_fn}(i, \text{val}_i)
        \ (c_{\text{upper}} = 0)

    Arguments:
        lower, upper: the loop bounds; Python ints when ``break_fn`` is given.
        body_fn: ``body_fn(i, val)`` returns the next ``val``.
        init_val: the initial value (a pytree of floating arrays when ``break_fn`` is given).
        break_fn: ``break_fn(i, val)`` returns a scalar float soft truth value of "break now".
        tol: remaining mass below which the loop stops (see :func:`soft_while`).
        chunk_size: steps per checkpointed chunk (see :func:`soft_while`).
        return_info: also return a :class:`SoftWhileInfo` (only with ``break_fn``).

    Returns:
        The final value (or ``(value, info)`` with ``return_info=True`` and a ``break_fn``).

    Example:
        >>> import softflow as sf
        >>> # Sum 1 + 2 + ... but break before the running sum exceeds 10.
        >>> body = lambda i, s: s + i
        >>> brk = lambda i, s: sf.greater(s + i, 10.0, mode="hard")
        >>> float(sf.soft_fori_loop(1, 100, body, 0.0, break_fn=brk))
        10.0
    """
    if break_fn is None:
        if return_info:
            raise ValueError("return_info=True needs a break_fn (a plain loop has no diagnostics).")
        return jax.lax.fori_loop(lower, upper, body_fn, init_val)
    for name, bound in (("lower", lower), ("upper", upper)):
        if isinstance(bound, bool) or not isinstance(bound, int):
            raise TypeError(
                f"{name} must be a Python int when break_fn is given (the soft loop needs a "
                f"static trip count); got {bound!r}."
            )
    if upper <= lower:  # an empty loop: nothing runs, nothing stops
        if not return_info:
            return init_val
        no_steps = jnp.zeros(())
        return init_val, SoftWhileInfo(no_steps, no_steps, jnp.int32(0))
    return _soft_while(
        lambda t, val: 1 - break_fn(lower + t, val),
        lambda t, val: body_fn(lower + t, val),
        init_val,
        max_steps=upper - lower,
        tol=tol,
        semantics="halting",
        chunk_size=chunk_size,
        return_info=return_info,
        cond_name="break_fn",
        body_name="body_fn",
    )
