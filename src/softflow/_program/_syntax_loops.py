"""Loops in converted Python code: ``while`` and ``for``, with ``break`` on traced conditions.

A ``for`` over a static range or an array is a ``lax.scan`` where that is the same program (see
``_syntax_rolling``), else unrolled; over a range with a traced bound it is a
``lax.fori_loop``; a ``while`` on a traced test is a ``lax.while_loop``. A ``break`` on a traced
condition is an exit of the loop: the body ends in :func:`softflow_loop_exits
<._markers.softflow_loop_exits>`, which relax turns into the mixture over the iteration and the
exit at which the loop stops.
"""

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import ConversionError
from ._markers import loop_exits
from ._syntax_loop_else import Worlds, defer, refuse_compiled, take_flag
from ._syntax_rolling import SHORT_LOOP, index_used_exactly, rolled_for
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
    loop_state,
    run_block,
    traced,
)


def while_stmt(test, body, get_state, set_state, symbol_names, opts):
    """``while test(): body()``; once ``test()`` is traced, a ``lax.while_loop`` over the state.

    A ``break`` on a traced condition (also in a loop whose test is static, ``while True:``) is an
    exit in the middle of the body: the body ends in :func:`._markers.loop_exits`, which selects
    the state at the first exit taken and sets a "has broken" flag that ends the loop; relax turns
    it into the mixture over the iteration *and* the exit at which the loop stops.
    """
    del opts
    else_flag = take_flag()
    may_break = any(n.startswith("break_") for n in symbol_names)
    while True:
        cond = _probe(test)
        if cond is None:
            break
        if not cond:
            return
        # (Run as Python on concrete values, every condition in the body is concrete too; traced
        # abstractly, its break would look soft, and the loop would run compiled.)
        eager = EAGER[0] and not traced(tuple(get_state()))
        if may_break and not eager and _breaks_softly(body, get_state, set_state):
            break  # a soft break under a static test: the loop goes on traced from here
        with Loop("while", get_state):
            body()
    where = caller_line()
    with SideEffects([test, body], "while loop", where):
        _traced_while(test, body, get_state, set_state, symbol_names, where, else_flag)


def _traced_while(test, body, get_state, set_state, symbol_names, where, else_flag) -> None:
    if any(n.startswith("do_return") for n in symbol_names):
        raise ConversionError(
            f"sf.relax: the while loop at {where} has a return on a traced condition; this is not "
            "converted from Python syntax yet. Break out of the loop and return after it."
        )
    init = loop_state(
        get_state,
        symbol_names,
        f"the while loop at {where}",
        "; a loop on a traced condition carries its variables, so assign it before the loop.",
    )
    running_world = _running_world(symbol_names)

    def body_state(state) -> tuple[tuple, list]:
        """The state at the end of the body (where no break was taken) and the exits taken."""
        with Loop("while", get_state) as loop:
            final = run_block(body, set_state, get_state, state)
        return running_world(final), [(c, running_world(s)) for c, s in loop.exits]

    sides, merge = _sides(body_state, init, symbol_names, where, "while loop")

    def condition():
        return condition_of(test(), "while loop")

    if len(sides) == 1:  # no soft break: the loop as it is

        def cond_fn(arrays):
            set_state(merge.from_arrays(arrays))
            return condition()

        def body_fn(arrays):
            return merge.to_arrays(body_state(merge.from_arrays(arrays))[0])

        with jax.named_scope(f"while_at_{where}"):
            outs = jax.lax.while_loop(cond_fn, body_fn, merge.to_arrays(init))
        set_state(merge.from_arrays(outs))
        return
    refuse_compiled(else_flag, where)

    def cond_with_exits(carry):
        arrays, broke = carry
        set_state(merge.from_arrays(arrays))
        return jnp.where(broke, False, condition())

    def body_with_exits(carry):
        return _body_exits(merge, *body_state(merge.from_arrays(carry[0])))

    with jax.named_scope(f"while_at_{where}"):
        init_carry = (merge.to_arrays(init), jnp.bool_(False))
        outs, _ = jax.lax.while_loop(cond_with_exits, body_with_exits, init_carry)
    set_state(merge.from_arrays(outs))


def _breaks_softly(body: Callable, get_state: Callable, set_state: Callable) -> bool:
    """Whether one pass of a loop's body meets a break on a traced condition; run abstractly
    (it leaves no equations behind) and undone."""
    before = tuple(get_state())
    found = []

    def run():
        with Loop("while", get_state) as loop:
            body()
        found.append(bool(loop.exits))

    with SideEffects([body], "while loop", caller_line(), mode="undo"):
        jax.eval_shape(run)
    set_state(before)
    return found[0]


def _running_world(symbol_names) -> Callable[[tuple], tuple]:
    """A loop state with malt's break flags set to False: the flag is True in an exit's state,
    and a converted loop carries its own "has broken" flag instead."""
    flags = [n.startswith("break_") for n in symbol_names]
    return lambda state: tuple(False if f else v for v, f in zip(state, flags, strict=True))


def _sides(
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


def _body_exits(merge: "Merge", final: tuple, exits: list, counters: tuple = ()) -> tuple:
    """The carry at the end of a loop body with exits: ``counters`` (the same in every world),
    the loop's arrays, and whether it broke (see loop_exits)."""

    def arrays_of(state) -> list:
        return [*counters, *(a for a in merge.to_arrays(state) if a is not None)]

    conds = [condition_of(c, "if statement") for c, _ in exits]
    state, broke = loop_exits(conds, [arrays_of(s) for _, s in exits], arrays_of(final))
    values = iter(state[len(counters) :])
    arrays = [None if a is None else next(values) for a in merge.to_arrays(final)]
    return (*state[: len(counters)], arrays, broke)


def _probe(test: Callable):
    """``test()`` when it is a static value, ``None`` when it is traced; evaluated abstractly,
    so that a traced test leaves no equations behind."""
    if EAGER[0]:
        value = test()
        return None if traced(value) else value
    static = []

    def run():
        value = test()
        if traced(value):
            return value
        static.append(value)
        return None

    jax.eval_shape(run)
    return static[0] if static else None


def for_stmt(iter_, extra_test, body, get_state, set_state, symbol_names, opts):
    r"""``for x in iter_: body(x)``: over a range with a traced bound a ``lax.fori_loop``; over a
    static range or an array's leading axis a ``lax.scan`` where that is the same program (see
    ``_syntax_rolling``); otherwise (a Python list or tuple, a short loop, a body that needs a
    static index, a ``break`` or ``return``) unrolled, as Python runs it.

    A ``break`` on a traced condition :math:`c_k` (in iteration :math:`k`, in the world where the
    loop still runs) is the mixture over the iteration at which the loop stops, as in
    :func:`softflow.soft_fori_loop` with a ``break_fn``: the result is
    :math:`\sum_k p_k \prod_{j<k} (1 - p_j)\, s_k + \prod_j (1 - p_j)\, s_\text{end}`, where
    :math:`s_k` is the state at the break. It is built as nested selects,
    ``where(c_1, s_1, where(c_2, s_2, ... s_end))``, which relax turns into that mixture.
    """
    else_flag = take_flag()
    if isinstance(iter_, TracedRange):
        return _fori_loop(iter_, extra_test, body, get_state, set_state, symbol_names, else_flag)
    if rolled_for(iter_, extra_test, body, get_state, set_state, symbol_names):
        return
    item = _item_at(iter_)
    # (Python's loop variable read after the loop is the last item: unrolled.)
    loop_variables = {n.strip() for n in str(opts.get("iterate_names", "")).split(",")}
    if else_flag is None and item is not None and not loop_variables & set(symbol_names):
        if _rolls_with_returns(iter_, item, body, get_state, set_state, symbol_names):
            return _rolled_returns(len(iter_), item, body, get_state, set_state, symbol_names)
        if _rolls_with_exits(iter_, item, body, get_state, set_state, symbol_names):
            steps = TracedRange(0, len(iter_))
            return _fori_loop(
                steps, extra_test, body, get_state, set_state, symbol_names, None, item
            )
    where = caller_line()
    with Loop("for", get_state) as loop:
        for item in iter_:
            if extra_test is not None and not extra_test():
                break
            if not loop.exits:
                body(item)
                continue
            # After a soft break the loop runs on a traced condition: a Python container changed
            # there would hold what every later iteration adds, taken or not.
            with SideEffects([body], "for loop (after a soft break)", where):
                body(item)
    if not loop.exits:
        return
    running_world = _running_world(symbol_names)
    final = running_world(get_state())
    exits = [(c, running_world(state)) for c, state in loop.exits]
    defer(else_flag, Worlds(tuple(symbol_names), get_state, set_state, final, exits, where))


def _item_at(iter_) -> Callable | None:
    """The item of a static range or of an array's leading axis at a traced position."""
    if isinstance(iter_, range):
        bounds = np.iinfo(np.int32)
        if all(bounds.min <= v <= bounds.max for v in iter_[:: max(len(iter_) - 1, 1)]):
            return functools.partial(_range_item, iter_.start, iter_.step)
    if isinstance(iter_, jax.Array) and iter_.ndim >= 1:
        return functools.partial(_row, iter_)
    return None


def _range_item(start: int, step: int, k):
    return start + k * step


def _row(rows: jax.Array, k):
    return rows[k]


def _rolls_with_exits(iter_, item, body: Callable, get_state, set_state, symbol_names) -> bool:
    """Whether a ``for`` over a static range or an array with a soft ``break`` runs as the loop
    over a traced range does (a ``lax.while_loop`` whose body ends in its exits, on ``item(k)``):
    compiled once, where unrolled its reverse-mode program grows faster than the trip count. So
    it does where it is long (see ``_syntax_rolling``), unrolling is not asked for, there is no
    ``return`` in it, and one pass of the body on a traced position meets a soft break, changes
    no Python container and uses the position as Python's ``int`` would be used."""
    policy = UNROLL[0]
    if policy is True or EAGER[0] or "do_return" in symbol_names:
        return False
    if len(iter_) <= (1 if policy is False else SHORT_LOOP):
        return False
    if not any(n.startswith("break_") for n in symbol_names):
        return False
    init = tuple(get_state())
    worlds: list[tuple[tuple, list[tuple]]] = []  # the state at the end, and at each exit
    conditions: list[int] = []  # the positions of the exits' conditions among the outputs

    def one_pass(index):
        set_state(init)
        with Loop("fori", get_state) as loop:
            body(item(index))
        worlds.append((tuple(get_state()), [state for _, state in loop.exits]))
        # (the position first, as rolling's; then the states, which may hold it, and the
        # exits' conditions, which may not: Python's would be static)
        outputs = [index, *(v for v in get_state() if traced(v))]
        for c, state in loop.exits:
            outputs += [v for v in state if traced(v)]
            conditions.append(len(outputs))
            outputs.append(c)
        return outputs

    closed = _one_pass_jaxpr(one_pass, body, set_state, init)
    if closed is None:
        return False
    final, exits = worlds[0]
    if not exits or _tells_worlds_apart(final, exits, symbol_names):
        return False
    # A state may hold the position (`found = i` at the break): the worlds are mixed after the
    # loop, so that it is a traced integer there unrolled too.
    allowed = set(range(len(closed.jaxpr.outvars))) - set(conditions)
    return index_used_exactly(closed.jaxpr, allowed_outputs=allowed)


def _one_pass_jaxpr(one_pass: Callable, body: Callable, set_state, init: tuple):
    """The jaxpr of ``one_pass(position)`` (a pass of a loop's body) on a traced position, or
    None where the body cannot run on one (a Python list's item) or changes a Python container:
    such a loop is unrolled. The loop's state is ``init`` again after it."""

    def changed(name: str, where: str):
        raise _Unrolled(f"the container {name} is changed at {where}")

    try:
        with SideEffects([body], "for loop", caller_line(), mode="unroll", on_change=changed):
            return jax.make_jaxpr(one_pass)(jax.ShapeDtypeStruct((), jnp.int32))
    except Exception:
        return None
    finally:
        set_state(init)


def _tells_worlds_apart(final: tuple, exits: list[tuple], symbol_names) -> bool:
    """Whether a Python truth value is set differently at a break (``found = True``): unrolled,
    an ``if`` on it after the loop runs in each world apart (see ``_syntax_loop_else``)."""
    for i, name in enumerate(symbol_names):
        per_world = [final[i], *(state[i] for state in exits)]
        flag = all(isinstance(v, bool) for v in per_world) and len(set(per_world)) > 1
        if flag and not name.startswith("break_"):
            return True
    return False


def _rolls_with_returns(iter_, item, body: Callable, get_state, set_state, symbol_names) -> bool:
    """Whether a ``for`` over a static range or an array with a ``return`` on a traced condition
    (and no ``break``) runs as one ``lax.scan`` (see :func:`_rolled_returns`): where it is long,
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
    if any(is_undefined(v) != (n == "retval_") for n, v in zip(names, init, strict=True)):
        return False  # (a variable first assigned in the loop: Python's, unrolled)
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

    closed = _one_pass_jaxpr(one_pass, body, set_state, init)
    if closed is None:
        return False
    state, exits, returns = found[0]
    if exits or not returns or state[names.index("do_return")] is not False:
        return False
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


def _rolled_returns(n_steps: int, item, body, get_state, set_state, symbol_names) -> None:
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

        _, merge = _sides(running_world, init, symbol_names, where, "for loop")

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


class _Unrolled(Exception):
    """A loop changes a Python container: it stays unrolled."""


class TracedRange:
    """``range(...)`` with a traced bound: only a ``for`` loop over it is converted."""

    def __init__(self, *args):
        start, stop = (0, args[0]) if len(args) == 1 else args[:2]
        step = args[2] if len(args) == 3 else 1
        if traced(step) or step != 1:
            raise ConversionError(
                f"sf.relax: range() at {caller_line()} has a traced bound and a step other than "
                "1; write the loop with lax.fori_loop."
            )
        self.start, self.stop = start, stop

    def __iter__(self):
        raise ConversionError(
            f"sf.relax: range() with a traced bound at {caller_line()} is used outside a for "
            "loop; its length is not known while tracing."
        )


def _fori_loop(
    iter_: TracedRange,
    extra_test,
    body,
    get_state,
    set_state,
    symbol_names,
    else_flag,
    item: Callable = lambda i: i,
):
    """``for i in range(start, stop)`` with a traced bound: a ``lax.fori_loop`` over the state, or
    with a ``break``, a ``lax.while_loop`` over the index and the state whose body ends in
    :func:`._markers.loop_exits` (see :func:`while_stmt`). The body runs on ``item(i)``."""
    where = caller_line()
    with SideEffects([body], "for loop", where):
        _traced_fori_loop(
            iter_, extra_test, body, get_state, set_state, symbol_names, where, else_flag, item
        )


def _traced_fori_loop(
    iter_, extra_test, body, get_state, set_state, symbol_names, where, else_flag, item
):
    init = loop_state(
        get_state,
        symbol_names,
        f"the for loop at {where} (over a range with a traced bound)",
        "; assign it before the loop.",
    )
    running_world = _running_world(symbol_names)

    def body_state(i, state) -> tuple[tuple, list]:
        with Loop("fori", get_state) as loop:
            final = run_block(functools.partial(body, item(i)), set_state, get_state, state)
        return running_world(final), [(c, running_world(s)) for c, s in loop.exits]

    index = jnp.asarray(iter_.start)
    sides, merge = _sides(
        functools.partial(body_state, index), init, symbol_names, where, "for loop"
    )
    if len(sides) == 1 and extra_test is None:

        def body_fn(i, arrays):
            return merge.to_arrays(body_state(i, merge.from_arrays(arrays))[0])

        outs = jax.lax.fori_loop(iter_.start, iter_.stop, body_fn, merge.to_arrays(init))
        set_state(merge.from_arrays(outs))
        return
    refuse_compiled(else_flag, where)

    def cond_fn(carry):
        i, arrays, broke = carry
        set_state(merge.from_arrays(arrays))
        going_on = True if extra_test is None else extra_test()
        # (The counter's bound as a conjunct of its own: relax reads the trip count there.)
        return jnp.logical_and(i < iter_.stop, jnp.where(broke, False, going_on))

    def body_fn_with_exits(carry):
        i, arrays, _ = carry
        return _body_exits(merge, *body_state(i, merge.from_arrays(arrays)), counters=(i + 1,))

    init_carry = (index, merge.to_arrays(init), jnp.bool_(False))
    with jax.named_scope(f"for_at_{where}"):
        _, outs, _ = jax.lax.while_loop(cond_fn, body_fn_with_exits, init_carry)
    set_state(merge.from_arrays(outs))
