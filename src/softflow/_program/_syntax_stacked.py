"""Python ``for`` loops whose exits are stacked: one ``lax.scan`` over the world where the loop
still runs, that stacks per iteration what each exit leaves, a ``return``'s condition and value
(the function returns the first that holds) or a soft ``break``'s condition and state (the
loop's worlds, kept apart for its ``else`` clause or an ``if`` on a flag set at the break);
and how a loop carries the state of its running world (:func:`loop_sides`)."""

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from ._syntax_loop_else import Worlds, defer
from ._syntax_rolling import SHORT_LOOP, index_used_exactly
from ._syntax_state import (
    BRANCHES,
    EAGER,
    LOOPS,
    PROBING,
    RETURNS,
    SCOPE_BRANCHES,
    UNROLL,
    Loop,
    Merge,
    SideEffects,
    abstract_state,
    caller_line,
    condition_of,
    is_undefined,
    run_block,
    traced,
)


def running_world_of(symbol_names) -> Callable[[tuple], tuple]:
    """A loop state with malt's break flags set to False: the flag is True in an exit's state,
    and a converted loop carries its own "has broken" flag instead."""
    flags = [n.startswith("break_") for n in symbol_names]
    return lambda state: tuple(False if f else v for v, f in zip(state, flags, strict=True))


def loop_sides(
    body_state: Callable[[tuple], tuple[tuple, list]],
    init: tuple,
    symbol_names: Sequence[str],
    where: str,
    what: str,
) -> tuple[list[tuple], "Merge"]:
    """The abstract states at the end of a loop body and at each of its exits, and how the loop
    carries its state (a :class:`Merge` of them all)."""
    n = len(symbol_names)

    def all_states(state):
        final, exits = body_state(state)
        return tuple(v for state in (final, *(s for _, s in exits)) for v in state)

    def of(state, *args):
        after = abstract_state(lambda *a: all_states(state(*a)), *args)
        sides = [after[i : i + n] for i in range(0, len(after), n)]
        return sides, Merge(symbol_names, [init, *sides], where, what)

    _, merge = of(lambda: init)
    # Again with the state as the loop carries it: a number the body changes is an array there,
    # while the pass above saw the Python number it starts as (a counter `steps = 0`, whose
    # `if steps >= 3: break` was static there, so that the break was lost).
    arrays = [a for a in merge.to_arrays(init) if a is not None]
    layout = [a is not None for a in merge.to_arrays(init)]

    def carried(*values):
        it = iter(values)
        return merge.from_arrays([next(it) if present else None for present in layout])

    return of(carried, *arrays)


def first_assigned(body_state: Callable, init: tuple, symbol_names: Sequence[str]) -> tuple:
    """``init`` with the variables not defined before a loop over a non-empty static range that
    its body assigns before reading them, in every world (``x_new = f(x)``, read after the loop),
    as zeros of the type assigned: a scan carries a value there, which nothing reads (Python's
    variable is not defined yet)."""
    todo = [
        i
        for i, (name, value) in enumerate(zip(symbol_names, init, strict=True))
        if is_undefined(value) and not name.startswith(("retval_", "do_return"))
    ]
    if not todo:
        return init
    n = len(symbol_names)

    def all_states():
        final, exits = body_state(init)
        return tuple(v for state in (final, *(s for _, s in exits)) for v in state)

    try:
        after = abstract_state(all_states)
    except Exception:  # (the body reads one: the loop's own error says which)
        return init
    filled = list(init)
    for i in todo:
        assigned = after[i::n]
        if not all(isinstance(v, jax.ShapeDtypeStruct) for v in assigned):
            continue  # (a Python value, or not assigned before an exit)
        if len({(v.shape, v.dtype) for v in assigned}) == 1:
            filled[i] = jnp.zeros(assigned[0].shape, assigned[0].dtype)
    return tuple(filled)


def one_pass_jaxpr(one_pass: Callable, body: Callable, set_state, init: tuple):
    """The jaxpr of ``one_pass(position)`` (a pass of a loop's body) on a traced position, or
    None where the body cannot run on one (a Python list's item) or changes a Python container:
    such a loop is unrolled. The loop's state is ``init`` again after it."""

    def changed(name: str, where: str):
        raise Unrolled(f"the container {name} is changed at {where}")

    try:
        with SideEffects([body], "for loop", caller_line(), mode="unroll", on_change=changed):
            return jax.make_jaxpr(one_pass)(jax.ShapeDtypeStruct((), jnp.int32))
    except Exception:
        return None
    finally:
        set_state(init)


def rolls_with_returns(iter_, item, body: Callable, get_state, set_state, symbol_names) -> bool:
    """Whether a ``for`` over a static range or an array with a ``return`` on a traced condition
    (and no ``break``) runs as one ``lax.scan`` (see :func:`rolled_returns`): where it is long,
    not asked to unroll, at the top of a converted function (not inside another loop or a soft
    ``if``), and one pass of its body on a traced position returns arrays of one structure and
    shapes, changes no Python container and uses the position as Python's ``int`` would be used
    (also in the values it returns)."""
    policy = UNROLL[0]
    names = list(symbol_names)
    if policy is True or EAGER[0] or PROBING[0] or not RETURNS or LOOPS:
        return False
    if BRANCHES[0] != SCOPE_BRANCHES[-1]:
        return False
    if "do_return" not in names or "retval_" not in names:
        return False
    if len(iter_) <= (1 if policy is False else SHORT_LOOP):
        return False
    if any(n.startswith("break_") for n in names):
        return False
    init = tuple(get_state())
    if init[names.index("do_return")] is not False:
        return False
    if not is_undefined(init[names.index("retval_")]):
        return False
    first = [i for i, (n, v) in enumerate(zip(names, init, strict=True)) if is_undefined(v)]
    found: list = []
    returned_at: list[int] = []  # the positions of the returned values among the outputs

    def one_pass(index):
        set_state(init)
        with Loop("fori", get_state) as loop:
            loop.returns = []
            body(item(index))
        state = tuple(get_state())
        found.append((state, loop.exits, loop.returns))
        outputs = [index, *(v for v in state if traced(v))]
        for c, value, _ in loop.returns:
            outputs.append(c)
            for leaf in jax.tree_util.tree_leaves(value):
                returned_at.append(len(outputs))
                outputs.append(jnp.asarray(leaf))
        return outputs

    closed = one_pass_jaxpr(one_pass, body, set_state, init)
    if closed is None:
        return False
    state, exits, returns = found[0]
    if exits or not returns or state[names.index("do_return")] is not False:
        return False
    if not all(traced(state[i]) for i in first if names[i] != "retval_"):
        return False  # (a Python value first assigned in the loop: unrolled)
    if not _one_structure([v for _, v, _ in returns]):
        return False
    return index_used_exactly(closed.jaxpr, allowed_outputs=set(returned_at))


def _one_structure(values: list) -> bool:
    """Whether the values have one tree structure of numbers or arrays, of one shape per leaf."""
    if len({jax.tree_util.tree_structure(v) for v in values}) != 1:
        return False
    columns = zip(*(jax.tree_util.tree_leaves(v) for v in values), strict=True)
    try:
        return all(len({jnp.shape(jnp.asarray(x)) for x in column}) == 1 for column in columns)
    except TypeError:  # (not an array: a string, an object)
        return False


def rolled_returns(n_steps: int, item, body, get_state, set_state, symbol_names) -> None:
    """``for k in range(n_steps): body(item(k))`` with returns on traced conditions, as one
    ``lax.scan`` over the state of the world where the function has not returned, that stacks
    each return's condition and value there: the function returns at the first condition that
    holds, a return recorded with :class:`FunctionScope`, which relax turns into the mixture of
    the unrolled loop (see ``first_returned``)."""
    where = caller_line()
    trees: list = []
    with SideEffects([body], "for loop", where):
        init = tuple(get_state())

        def body_state(k, state) -> tuple[tuple, list]:
            with Loop("fori", get_state) as loop:
                loop.returns = []
                final = run_block(functools.partial(body, item(k)), set_state, get_state, state)
            return final, loop.returns

        def running_world(state):
            return body_state(jnp.int32(0), state)[0], []

        init = first_assigned(running_world, init, symbol_names)
        _, merge = loop_sides(running_world, init, symbol_names, where, "for loop")

        def step(arrays, k):
            final, returns = body_state(k, merge.from_arrays(arrays))
            values = [value for _, value, _ in returns]
            trees.append(jax.tree_util.tree_structure(values[0]))
            columns = zip(*(jax.tree_util.tree_leaves(v) for v in values), strict=True)
            stacked = [jnp.stack(jnp.broadcast_arrays(*column)) for column in columns]
            return merge.to_arrays(final), (jnp.stack([c for c, _, _ in returns]), stacked)

        with jax.named_scope(f"for_at_{where}"):
            outs, (conditions, stacked) = jax.lax.scan(
                step, merge.to_arrays(init), jnp.arange(n_steps, dtype=jnp.int32)
            )
    set_state(merge.from_arrays(outs))
    # (in the order the returns are met: iteration by iteration, each in the order of the body)
    values = [leaf.reshape(-1, *leaf.shape[2:]) for leaf in stacked]
    RETURNS[-1].append((conditions.reshape(-1), trees[0].unflatten(values), where, True))


def rolled_worlds(n_steps: int, item, body, get_state, set_state, symbol_names, else_flag):
    """``for k in range(n_steps): body(item(k))`` with soft breaks, as one ``lax.scan`` over the
    state of the world where the loop runs, that stacks each break's condition and state there:
    the loop's worlds as the unrolled loop leaves them (:class:`Worlds`), one stacked world per
    break, so that an else clause, or an ``if`` on a flag set at the breaks, runs in each."""
    where = caller_line()
    running_world = running_world_of(symbol_names)
    templates: list = []
    with SideEffects([body], "for loop", where):
        init = tuple(get_state())

        def body_state(k, state) -> tuple[tuple, list]:
            with Loop("fori", get_state) as loop:
                final = run_block(functools.partial(body, item(k)), set_state, get_state, state)
            return running_world(final), [(c, running_world(s)) for c, s in loop.exits]

        def running(state):
            return body_state(jnp.int32(0), state)[0], []

        init = first_assigned(lambda s: body_state(jnp.int32(0), s), init, symbol_names)
        _, merge = loop_sides(running, init, symbol_names, where, "for loop")

        def step(arrays, k):
            final, exits = body_state(k, merge.from_arrays(arrays))
            templates.append([state for _, state in exits])
            conditions = [condition_of(c, "if statement") for c, _ in exits]
            leaves = [[v for v in jax.tree_util.tree_leaves(s) if traced(v)] for _, s in exits]
            return merge.to_arrays(final), (conditions, leaves)

        with jax.named_scope(f"for_at_{where}"):
            outs, (conditions, stacked) = jax.lax.scan(
                step, merge.to_arrays(init), jnp.arange(n_steps, dtype=jnp.int32)
            )
    set_state(merge.from_arrays(outs))
    exits = []
    for condition, state, leaves in zip(conditions, templates[0], stacked, strict=True):
        values, tree = jax.tree_util.tree_flatten(state)
        rows = iter(leaves)
        exits.append((condition, tree.unflatten([next(rows) if traced(v) else v for v in values])))
    final = tuple(get_state())
    defer(
        else_flag,
        Worlds(tuple(symbol_names), get_state, set_state, final, exits, where, stacked=True),
    )


class Unrolled(Exception):
    """A loop changes a Python container: it stays unrolled."""
