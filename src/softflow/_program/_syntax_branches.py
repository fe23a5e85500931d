"""Branches in converted Python code: ``if`` statements, conditional expressions, ``and`` /
``or`` / ``not``, and ``return`` on one side of a soft ``if``.

On a traced condition an ``if`` is a ``lax.cond`` over the variables it modifies (relax blends
its branches). A ``break`` or ``return`` on one side only is an *exit*: the exiting side is
recorded (with its condition and state) and the program goes on, unblended, in the other side.
"""

import functools
from typing import cast

import jax
import jax.numpy as jnp
from malt.operators.function_wrappers import FunctionScope as _FunctionScopeBase

from ._errors import ConversionError
from ._syntax_loop_else import MixedWorlds, NoBreak, flag_of_worlds, negated
from ._syntax_state import (
    BRANCHES,
    GUARDS,
    LOOPS,
    PROBING,
    RETURNS,
    SCOPE_BRANCHES,
    InBranch,
    Loop,
    Merge,
    SideEffects,
    _reachable,
    abstract_state,
    caller_line,
    canonical_names,
    condition_of,
    first_returned,
    run_block,
    traced,
)

# malt's names for the flags of its lowering of ``break`` / ``return``; a branch that sets one on
# one side only, on a traced condition, is a soft early exit.
_EXIT_FLAGS = ("break_", "do_return")


def if_stmt(cond, body, orelse, get_state, set_state, symbol_names, nouts):
    """``if cond: body() else: orelse()``; on a traced ``cond`` a ``lax.cond`` over the state, or
    for a ``break`` or a ``return`` on one side only, an exit (see :func:`_soft_exit`)."""
    del nouts
    symbol_names = canonical_names(symbol_names)
    if isinstance(cond, NoBreak):  # a loop's else clause, after breaks on traced conditions
        return cond.worlds.run_if(cond.taken, body, orelse, get_state, set_state, symbol_names)
    if (found := flag_of_worlds(cond)) is not None:  # a flag set at a loop's breaks
        if not isinstance(found[0], MixedWorlds):
            return found[0].run_if(found[1], body, orelse, get_state, set_state, symbol_names)
        cond = found[0].marked(cond, "the if statement")
    if not traced(cond):
        return body() if cond else orelse()
    where = caller_line()
    pred = condition_of(cond, "if statement")
    with SideEffects([body, orelse], "if statement", where):
        _traced_if(pred, body, orelse, get_state, set_state, symbol_names, where)


def _traced_if(pred, body, orelse, get_state, set_state, symbol_names, where) -> None:
    init = tuple(get_state())
    # A break exits a loop; a return exits the function, except inside a branch of a soft if
    # (there, returns on every path are blended as nested conds).
    exits = (LOOPS and any(n.startswith("break_") for n in symbol_names)) or (
        "do_return" in symbol_names and (LOOPS or not BRANCHES[0])
    )
    if exits and _soft_exit(pred, body, orelse, get_state, set_state, symbol_names, init, where):
        return
    slots = _written_slots((body, orelse), set_state, init)
    if slots:  # (elements of Python lists written in place: part of the state too)
        get_state, set_state, symbol_names = _with_slots(slots, get_state, set_state, symbol_names)
        init = tuple(get_state())

    def side(block) -> tuple:
        """The state at the end of a side, where every path returns, with the value returned
        by the soft returns made inside its loops (which must not leave the side's trace)."""
        made = len(RETURNS[-1]) if RETURNS else 0
        state = run_block(block, set_state, get_state, init)
        if not RETURNS or len(RETURNS[-1]) == made:
            return state
        inside = RETURNS[-1][made:]
        del RETURNS[-1][made:]
        names = list(symbol_names)
        if "retval_" not in names or state[names.index("do_return")] is not True:
            raise ConversionError(
                f"sf.relax: the return at {inside[0][2]} depends on a traced condition inside a "
                f"loop inside the if statement at {where}, on a traced condition, that does not "
                "return on every path; set a variable and break out of the loop instead, and "
                "return after the if statement."
            )
        i = names.index("retval_")
        return (*state[:i], fold_returns(inside, state[i]), *state[i + 1 :])

    with InBranch():
        sides = [abstract_state(functools.partial(side, b)) for b in (body, orelse)]
    GUARDS[-1].check_grown()
    merge = Merge(symbol_names, sides, where, "if statement")

    def branch(block):
        def run():
            with InBranch():
                return merge.to_arrays(side(block))

        return run

    outs = jax.lax.cond(pred, branch(body), branch(orelse))
    set_state(merge.from_arrays(outs))


def _written_slots(blocks, set_state, init) -> list[tuple[list, int, str]]:
    """The elements of Python lists that the blocks write in place where the converter does not
    track them as variables (``a[j + 1] = t``, or the swap ``a[j], a[j + 1] = a[j + 1], a[j]``,
    of which it tracks ``a[j]`` only): (list, position, name), found by running the blocks
    abstractly and undone. Unseen, the write of the last side traced would stand for both."""
    names: dict = {}
    saved: dict = {}
    for block in blocks:
        _reachable(block, names, saved, depth=0)
    lists = [(c, copy, names[key]) for key, (c, _, copy) in saved.items() if type(c) is list]
    if not lists:
        return []
    found: dict[tuple[int, int], tuple[list, int, str]] = {}

    def run(block):
        run_block(block, set_state, lambda: (), init)
        for container, before, name in lists:
            for k, (now, was) in enumerate(zip(container, before, strict=False)):
                if now is not was:
                    found.setdefault((id(container), k), (container, k, f"{name}[{k}]"))
        return 0

    with InBranch():
        for block in blocks:
            try:
                jax.eval_shape(functools.partial(run, block))
            finally:
                for container, before, _ in lists:
                    container[:] = before
    return list(found.values())


def _with_slots(slots, get_state, set_state, symbol_names):
    """The state of an ``if`` with list elements written in place (see :func:`_written_slots`)
    added to it."""
    n = len(symbol_names)

    def get_all():
        return (*get_state(), *(container[k] for container, k, _ in slots))

    def set_all(state):
        set_state(tuple(state[:n]))
        for (container, k, _), value in zip(slots, state[n:], strict=True):
            container[k] = value

    return get_all, set_all, (*symbol_names, *(name for _, _, name in slots))


def _soft_exit(pred, body, orelse, get_state, set_state, symbol_names, init, where) -> bool:
    """A ``break`` (inside a loop) or a ``return`` on one side of an ``if`` on a traced condition:
    the exiting side is recorded as an exit (of the innermost loop for a break, of the function
    for a return), and the program goes on in the other side, unblended: the world where the
    loop still runs, or where the function has not returned.

    Returns False when no side exits for sure while the other does not (the exit is in a static
    sub-branch that is not taken, or both sides return), so that the statement is an ordinary
    soft ``if``.
    """
    flags = [i for i, name in enumerate(symbol_names) if name.startswith(_EXIT_FLAGS)]
    found: list = []

    def probe():  # which side exits, found abstractly: it leaves no equations behind
        PROBING[0] += 1
        try:
            sides = [run_block(block, set_state, get_state, init) for block in (body, orelse)]
        finally:
            PROBING[0] -= 1
        found[:] = [(sides[0][i], sides[1][i]) for i in flags]

    jax.eval_shape(probe)
    set_state(init)
    for i, (in_body, in_orelse) in zip(flags, found, strict=True):
        if in_body is True and in_orelse is False:
            exiting, going_on, condition = body, orelse, pred
        elif in_orelse is True and in_body is False:
            exiting, going_on, condition = orelse, body, jnp.logical_not(pred)
        else:
            continue
        statement = "return" if symbol_names[i] == "do_return" else "break"
        loop = LOOPS[-1] if LOOPS else None
        if PROBING[0] and loop is not None and loop.branches == BRANCHES[0]:
            # An exit in the side of an exit's if that goes on (the converter puts the rest of
            # the body there): the probe of that if only asks whether that side exits for sure.
            set_state(run_block(going_on, set_state, get_state, init))
            return True
        if PROBING[0] or (loop is not None and loop.branches != BRANCHES[0]):
            raise ConversionError(
                f"sf.relax: the {statement} at {where} depends on a traced condition inside "
                "another if statement on a traced condition; combine the conditions with `and` "
                f"in a single `if ...: {statement}`, or, where its condition cannot hold on the "
                "other side (a patience counter that the other side resets), move that if after "
                f"the outer one. A `continue` before it makes the rest of the "
                "loop body such an if statement: guard only the statements it skips with "
                f"`if not ...:` and put the {statement} after that if. (After such a {statement}, "
                "the branch that goes on has a probability conditioned on not having exited, "
                "not a blend.)"
            )
        exit_state = run_block(exiting, set_state, get_state, init)
        if statement == "return":
            _soft_return(condition, exit_state[symbol_names.index("retval_")], where)
        else:
            cast(Loop, loop).exits.append((condition, tuple(cast(Loop, loop).get_state())))
        set_state(run_block(going_on, set_state, get_state, init))
        return True
    return False


def _soft_return(condition, value, where: str) -> None:
    """Record a ``return`` on one side of a soft ``if`` as an exit of the function (see
    :class:`FunctionScope`), or of a rolled loop that collects its returns."""
    if LOOPS and LOOPS[-1].returns is not None:
        LOOPS[-1].returns.append((condition, value, where))
        return
    if any(loop.returns is not None for loop in LOOPS):  # (probed: that loop is unrolled)
        raise ConversionError(f"sf.relax: the return at {where} is in a nested loop.")
    if not RETURNS or any(loop.kind != "for" for loop in LOOPS):
        raise ConversionError(
            f"sf.relax: the return at {where} depends on a traced condition inside a loop that "
            "is not unrolled (a while loop, or a for loop over a traced range); set the value it "
            "returns at a break instead (result = value; break, with the value of the world that "
            "does not break assigned to result before the loop) and return result after the loop."
        )
    if any(loop.exits for loop in LOOPS):
        raise ConversionError(
            f"sf.relax: the return at {where} depends on a traced condition and may follow a soft "
            "break of an enclosing loop; the code after that loop would run on a mixture "
            "conditioned on not returning. Return after the loop instead."
        )
    RETURNS[-1].append((condition, value, where, False))


class FunctionScope(_FunctionScopeBase):
    """malt's function scope, whose result is also the mixture of the soft returns made inside
    loops: ``where(c_1, v_1, where(c_2, v_2, ... value))`` over the returns in the order they
    were met, which relax turns into the mixture over the iteration at which it returned; a
    rolled loop's returns, stacked, are one step of that chain (see :func:`first_returned`)."""

    def __enter__(self):
        RETURNS.append([])
        SCOPE_BRANCHES.append(BRANCHES[0])
        return super().__enter__()

    def __exit__(self, *exc):
        RETURNS.pop()
        SCOPE_BRANCHES.pop()
        return super().__exit__(*exc)

    def ret(self, value, did_return):
        return fold_returns(RETURNS[-1], super().ret(value, did_return))


def fold_returns(returns: list, value):
    """``value`` (returned at the end) mixed with the soft ``returns`` made before it, the first
    met outermost."""
    for condition, returned, where, stacked in reversed(returns):
        try:
            if stacked:
                value = first_returned(condition, returned, value)
            else:
                value = jax.tree_util.tree_map(
                    lambda a, b, c=condition: jnp.where(c, a, b), returned, value
                )
        except (ValueError, TypeError) as error:
            raise ConversionError(
                f"sf.relax: the return at {where} (on a traced condition) and the function's "
                f"other paths give values of different structures ({error}); with a soft "
                "condition the returned values are mixed, so every path must return the same "
                "structure (a path without return gives None)."
            ) from None
    return value


def if_exp(cond, if_true, if_false, expr_repr):
    """``if_true() if cond else if_false()``; on a traced ``cond`` a ``jnp.where``."""
    del expr_repr
    if (found := flag_of_worlds(cond)) is not None:  # a flag set at a loop's breaks
        if not isinstance(found[0], MixedWorlds):
            return found[0].choose(found[1], if_true, if_false)
        cond = found[0].marked(cond, "the conditional expression")
    if not traced(cond):
        return if_true() if cond else if_false()
    return jnp.where(condition_of(cond, "conditional expression"), if_true(), if_false())


def _truth(value, what: str):
    value = jnp.asarray(value)
    if value.dtype != jnp.bool_:
        raise ConversionError(
            f"sf.relax: `{what}` at {caller_line()} is applied to a traced {value.dtype} value; "
            "on traced values it is the logic of truth values: compare first (x > 0), or use "
            "jnp.where."
        )
    return value


def and_(a, b):
    """``a() and b()``; on traced truth values their logical and (both are evaluated)."""
    left = a()
    if not traced(left):
        return left and b()
    return jnp.logical_and(_truth(left, "and"), _truth(b(), "and"))


def or_(a, b):
    """``a() or b()``; on traced truth values their logical or (both are evaluated)."""
    left = a()
    if not traced(left):
        return left or b()
    return jnp.logical_or(_truth(left, "or"), _truth(b(), "or"))


def not_(a):
    """``not a``; on a traced truth value its logical not."""
    if not traced(a):
        return not a
    result = jnp.logical_not(_truth(a, "not"))
    negated(a, result)
    return result
