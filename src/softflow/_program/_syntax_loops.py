"""Loops in converted Python code: ``while`` and ``for``, with ``break`` on traced conditions.

A ``for`` over a static range or an array is a ``lax.scan`` where that is the same program (see
``_syntax_rolling``), else unrolled; over a range with a traced bound it is a
``lax.fori_loop``; a ``while`` on a traced test is a ``lax.while_loop``. A ``break`` on a traced
condition is an exit of the loop: the body ends in :func:`softflow_loop_exits
<._markers.softflow_loop_exits>`, which relax turns into the mixture over the iteration and the
exit at which the loop stops.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import ConversionError
from ._markers import loop_exits
from ._syntax_loop_else import Worlds, defer, mark_mixed_flags, refuse_compiled, take_flag
from ._syntax_rolling import PEELED, SHORT_LOOP, Rows, index_used_exactly, rolled_for
from ._syntax_stacked import (
    loop_sides,
    one_pass_jaxpr,
    rolled_returns,
    rolled_worlds,
    rolls_with_returns,
    running_world_of,
)
from ._syntax_state import (
    EAGER,
    LOOPS,
    UNROLL,
    Loop,
    Merge,
    SideEffects,
    caller_line,
    canonical_names,
    condition_of,
    is_static,
    is_undefined,
    loop_state,
    run_block,
    same_value,
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
    symbol_names = canonical_names(symbol_names)
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
            "converted from Python syntax yet. Set the value it returns at a break instead "
            "(result = value; break, with the value of the world that does not break assigned to "
            "result before the loop) and return result after the loop."
        )
    init = loop_state(
        get_state,
        symbol_names,
        f"the while loop at {where}",
        "; a loop on a traced condition carries its variables, so assign it before the loop.",
    )
    running_world = running_world_of(symbol_names)
    worlds: list[tuple] = []  # (the first pass's, on the state as Python sees it before the loop)

    def body_state(state) -> tuple[tuple, list]:
        """The state at the end of the body (where no break was taken) and the exits taken."""
        with Loop("while", get_state) as loop:
            final = run_block(body, set_state, get_state, state)
        worlds.append((running_world(final), *(running_world(s) for _, s in loop.exits)))
        return running_world(final), [(c, running_world(s)) for c, s in loop.exits]

    sides, merge = loop_sides(body_state, init, symbol_names, where, "while loop")

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
    mark_mixed_flags(symbol_names, list(worlds[0]), tuple(get_state()), where)


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
    symbol_names = canonical_names(symbol_names)
    else_flag = take_flag()
    if isinstance(iter_, TracedRange):
        return _fori_loop(iter_, extra_test, body, get_state, set_state, symbol_names, else_flag)
    targets = opts.get("iterate_names", "")
    if rolled_for(iter_, extra_test, body, get_state, set_state, symbol_names, targets):
        return
    item = _item_at(iter_)
    state = get_state, set_state, symbol_names
    if item is not None and else_flag is None and rolls_with_returns(iter_, item, body, *state):
        return rolled_returns(len(iter_), item, body, *state)
    rolls = ""
    for peeled in range(PEELED + 1):
        if peeled and extra_test is not None and not extra_test():
            return  # (a static break in the pass run as Python)
        rolls = "" if item is None else _rolls_with_exits(iter_, item, body, *state)
        if rolls != "settling" or peeled == PEELED:
            break
        # The pass meets no soft break while the state starts as Python numbers (a
        # `wealth = 10.0` that the break tests): run it as Python, then roll the rest.
        with Loop("for", get_state) as loop:
            body(iter_[0])
        assert not loop.exits  # (the pass traced on a traced position met none)
        iter_ = iter_[1:]
        item = _item_at(iter_)
    if item is not None and (rolls == "worlds" or (rolls == "exits" and else_flag is not None)):
        return rolled_worlds(len(iter_), item, body, *state, else_flag)
    if item is not None and rolls == "exits":
        steps = TracedRange(0, len(iter_))
        return _fori_loop(steps, extra_test, body, *state, None, item)
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
    running_world = running_world_of(symbol_names)
    final = running_world(get_state())
    exits = [(c, running_world(state)) for c, state in loop.exits]
    defer(else_flag, Worlds(tuple(symbol_names), get_state, set_state, final, exits, where))


def _item_at(iter_) -> Callable | None:
    """The item of a static range, of an array's leading axis, or of ``enumerate`` / ``zip`` of
    them (:class:`Rows`) at a traced position."""
    if isinstance(iter_, Rows):
        return iter_.at
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


def _rolls_with_exits(iter_, item, body: Callable, get_state, set_state, symbol_names) -> str:
    """Whether a ``for`` over a static range or an array with a soft ``break`` is compiled once,
    where unrolled its reverse-mode program grows faster than the trip count: as the loop over a
    traced range is (``"exits"``: a ``lax.while_loop`` whose body ends in its exits, on
    ``item(k)``), or where a Python value set at a break tells the worlds apart, as a scan that
    stacks them (``"worlds"``, see :func:`rolled_worlds`). It is where the loop is long (see
    ``_syntax_rolling``), unrolling is not asked for, there is no ``return`` in it, and one pass
    of the body on a traced position meets a soft break, changes no Python container and uses
    the position as Python's ``int`` would be used; ``"settling"`` where that pass meets no soft
    break but changes a Python value of the state (the loop's first pass, while the state
    starts as Python numbers: run it as Python and ask again); else ``""``."""
    policy = UNROLL[0]
    if policy is True or EAGER[0] or "do_return" in symbol_names:
        return ""
    if len(iter_) <= (1 if policy is False else SHORT_LOOP):
        return ""
    if not any(n.startswith("break_") for n in symbol_names):
        return ""
    init = tuple(get_state())
    worlds: list[tuple[tuple, list[tuple]]] = []  # the state at the end, and at each exit

    def one_pass(index):
        set_state(init)
        with Loop("fori", get_state) as loop:
            body(item(index))
        worlds.append((tuple(get_state()), [state for _, state in loop.exits]))
        # (the position first, as rolling's; then the states and the exits' conditions, which
        # may hold it: `found = i`, Python's loop variable, `if i >= k and x[i] > t: break`)
        outputs = [index, *(v for v in get_state() if traced(v))]
        for c, state in loop.exits:
            outputs += [*(v for v in state if traced(v)), c]
        return outputs

    closed = one_pass_jaxpr(one_pass, body, set_state, init)
    if closed is None:
        return ""
    final, exits = worlds[0]
    if not exits:
        settles = any(
            is_static(a) and not (is_static(b) and same_value(a, b))
            for a, b in zip(init, final, strict=True)
        )
        return "settling" if settles else ""
    if not all(map(_stackable, jax.tree_util.tree_leaves([final, exits]))):
        return ""
    # The worlds are mixed after the loop, so that the position is a traced integer there
    # unrolled too; a condition on it alone is exact, as Python's static one.
    allowed = set(range(len(closed.jaxpr.outvars)))
    if not index_used_exactly(closed.jaxpr, allowed_outputs=allowed):
        return ""
    # (a variable first set at a break: mixed as the worlds are, where it is set in some only)
    apart = _tells_worlds_apart(final, exits, symbol_names) or any(map(is_undefined, init))
    if apart and LOOPS:  # (its exits may be those of the loop around it: `if found: break`)
        return ""
    return "worlds" if apart else "exits"


def _stackable(value) -> bool:
    """Whether a value in a loop's state can be stacked over its iterations, or is a constant."""
    constants = bool | int | float | str | np.ndarray | np.generic | jax.Array
    return traced(value) or is_undefined(value) or isinstance(value, constants)


def _tells_worlds_apart(final: tuple, exits: list[tuple], symbol_names) -> bool:
    """Whether a Python truth value is set differently at a break (``found = True``): unrolled,
    an ``if`` on it after the loop runs in each world apart (see ``_syntax_loop_else``)."""
    for i, name in enumerate(symbol_names):
        per_world = [final[i], *(state[i] for state in exits)]
        flag = all(isinstance(v, bool) for v in per_world) and len(set(per_world)) > 1
        if flag and not name.startswith("break_"):
            return True
    return False


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
    running_world = running_world_of(symbol_names)
    worlds: list[tuple] = []  # (the first pass's, on the state as Python sees it before the loop)

    def body_state(i, state) -> tuple[tuple, list]:
        with Loop("fori", get_state) as loop:
            final = run_block(functools.partial(body, item(i)), set_state, get_state, state)
        worlds.append((running_world(final), *(running_world(s) for _, s in loop.exits)))
        return running_world(final), [(c, running_world(s)) for c, s in loop.exits]

    index = jnp.asarray(iter_.start)
    sides, merge = loop_sides(
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
    mark_mixed_flags(symbol_names, list(worlds[0]), tuple(get_state()), where)
