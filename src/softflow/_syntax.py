"""Python control flow for :func:`softflow.relax`: convert ``if`` / ``while`` / ``for`` to JAX.

JAX cannot trace ``if x > t:`` on a traced ``x``. :func:`convert` rewrites a function's source with
diastatic-malt (the standalone AutoGraph) into calls of the operators below, which keep Python's
behaviour on static values (Python numbers, shapes, flags) and emit ``lax.cond``,
``lax.while_loop``, ``jnp.where`` and boolean logic on traced ones; :func:`softflow.relax` then
relaxes those like any other program. Functions called by a converted function are converted when
they are called, except JAX, NumPy, softflow and the libraries listed in ``_NOT_CONVERTED``.

A ``break`` on a traced condition is not a flag blended into the loop's state (that mixes stopped
and running states in every later iteration): the loop is unrolled in the world where it still
runs, each break records its condition and the state at the break, and the loop's result is the
nested select over those exits, which relax turns into the mixture of ``soft_fori_loop``.

diastatic-malt was chosen over a hand-written AST rewriter because it already solves the hard parts
(which variables a branch or loop modifies, the lowering of ``break`` / ``continue`` / ``return``,
``nonlocal`` closures, source maps for error messages) and is maintained as a library for exactly
this use (PennyLane Catalyst); its operator namespace is replaced here, not patched globally.
"""

import ast
import dis
import functools
import inspect
import textwrap
import types
from collections.abc import Callable, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from malt import operators as _malt_operators
from malt.core import converter as _converter
from malt.impl import api as _api
from malt.operators import variables as _variables
from malt.operators.function_wrappers import FunctionScope as _FunctionScopeBase
from malt.pyct import origin_info as _origin_info

from ._program import RelaxError, loop_exits

# Modules whose functions are called as they are: they are JAX (or act on static values), and
# softflow's own functions are already relaxed.
_NOT_CONVERTED = ("jax", "jaxlib", "equinox", "optax", "numpy", "softflow", "malt", "builtins")

# The source maps of the converted functions, by the file of the generated code, so that errors
# (here and in sf.relax) name the user's line rather than the generated one.
_SOURCE_MAPS: dict[str, dict] = {}

# malt's names for the flags of its lowering of ``break`` / ``return``; a loop whose exit depends
# on one of them through a traced condition is a soft early exit.
_EXIT_FLAGS = ("break_", "do_return")


class ConversionError(RelaxError):
    """Python syntax that :func:`softflow.relax` cannot convert or relax, with its source line."""


def user_location(file_name: str, line: int) -> str | None:
    """The original ``file:line (function)`` of a line of generated code, if it is one."""
    source_map = _SOURCE_MAPS.get(file_name)
    if source_map is None:
        return None
    # A line malt added (the function's final ``return fscope.ret(...)``, where the soft returns
    # from inside loops are mixed) is attributed to the user's line before it.
    for earlier in range(line, 0, -1):
        origin = source_map.get(_origin_info.LineLocation(file_name, earlier))
        if origin is not None:
            return f"{origin.loc.filename}:{origin.loc.lineno} ({origin.function_name})"
    return None


def _caller_line() -> str:
    """The user's source line of the innermost converted statement being run."""
    frame = inspect.currentframe()
    while frame is not None:
        where = user_location(frame.f_code.co_filename, frame.f_lineno)
        if where is not None:
            return where
        frame = frame.f_back
    return "an unknown line"


def _traced(value) -> bool:
    return any(isinstance(leaf, Tracer) for leaf in jax.tree_util.tree_leaves(value))


def _condition(cond, what: str):
    """``cond`` as a scalar boolean array, or a clear error naming the statement's line."""
    cond = jnp.asarray(cond)
    if cond.shape != ():
        raise ConversionError(
            f"sf.relax: the condition of the {what} at {_caller_line()} is an array of shape "
            f"{cond.shape}; a Python {what} needs a single truth value. Use jnp.where (or "
            "sf.soft_where) for elementwise choices."
        )
    return cond if cond.dtype == jnp.bool_ else cond != 0


# ----------------------------------------------------------------------------------------------
# Branch and loop states


def _is_undefined(value) -> bool:
    return isinstance(value, _variables.Undefined | _variables.UndefinedReturnValue)


def _loop_state(get_state, symbol_names, loop: str, advice: str) -> tuple:
    """The loop's variables before it runs; an error naming one that is not defined yet."""
    init = tuple(get_state())
    for name, value in zip(symbol_names, init, strict=True):
        if _is_undefined(value):
            raise ConversionError(
                f"sf.relax: variable {name!r} is assigned in {loop} but not defined before it"
                + advice
            )
    return init


def _static(value) -> bool:
    arrays = jax.Array | np.ndarray | np.generic | jax.ShapeDtypeStruct
    return not isinstance(value, arrays) and not _traced(value)


def _run(block: Callable, set_state: Callable, get_state: Callable, init: tuple) -> tuple:
    set_state(init)
    block()
    return tuple(get_state())


class _Merge:
    """How the states of two branches (or a loop's state before and after its body) are joined.

    Each symbol is either static (the same Python value on both sides, kept as it is) or an array
    of a common dtype, which goes through the JAX control-flow primitive.
    """

    def __init__(self, names: Sequence[str], sides: Sequence[tuple], where: str, what: str):
        self.static: list[Any] = []
        self.dtypes: list[Any] = []
        for i, name in enumerate(names):
            values = [side[i] for side in sides]
            undefined = [_is_undefined(v) for v in values]
            if all(undefined):
                self.static.append(values[0])
                self.dtypes.append(None)
                continue
            if any(undefined):
                shown = "the return value" if name == "retval_" else f"variable {name!r}"
                raise ConversionError(
                    f"sf.relax: {shown} is defined on only one side of the {what} at {where}; "
                    "with a traced condition both sides run and are blended, so it must be "
                    f"defined on both (assign it before the {what} or in every branch)."
                )
            same = all(_static(v) for v in values) and all(_same(values[0], v) for v in values)
            if name == "do_return" and not same:
                raise ConversionError(
                    f"sf.relax: the {what} at {where} (on a traced condition, inside another if "
                    "on a traced condition) returns on some of its paths only: the code after it "
                    "would run in a world conditioned on not having returned, which is not a "
                    "blend. Move the code that follows into an else, so that every path of the "
                    "statement returns or none does, or combine the conditions with `and`."
                )
            if same:
                self.static.append(values[0])
                self.dtypes.append(None)
                continue
            self.static.append(None)
            self.dtypes.append(jnp.result_type(*values))

    def to_arrays(self, state: tuple) -> list:
        return [
            None if dtype is None else jnp.asarray(v, dtype)
            for v, dtype in zip(state, self.dtypes, strict=True)
        ]

    def from_arrays(self, arrays: Sequence) -> tuple:
        return tuple(
            s if dtype is None else a
            for s, a, dtype in zip(self.static, arrays, self.dtypes, strict=True)
        )


def _same(a, b) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # values without a truth value of ==: not the same static value
        return a is b


def _shapes(block: Callable) -> tuple:
    """Run ``block`` abstractly: the types of its array results, its static results as they are."""
    static: list = []

    def arrays():
        state = block()
        static.extend(v if _static(v) or _is_undefined(v) else None for v in state)
        return [None if _static(v) or _is_undefined(v) else v for v in state]

    shapes = jax.eval_shape(arrays)
    return tuple(s if a is None else a for s, a in zip(static, shapes, strict=True))


# ----------------------------------------------------------------------------------------------
# The operators called by converted code


def if_stmt(cond, body, orelse, get_state, set_state, symbol_names, nouts):
    """``if cond: body() else: orelse()``; on a traced ``cond`` a ``lax.cond`` over the state, or
    for a ``break`` or a ``return`` on one side only, an exit (see :func:`_soft_exit`)."""
    del nouts
    if not _traced(cond):
        return body() if cond else orelse()
    where = _caller_line()
    pred = _condition(cond, "if statement")
    init = tuple(get_state())
    # A break exits a loop; a return exits the function, except inside a branch of a soft if
    # (there, returns on every path are blended as nested conds).
    exits = (_LOOPS and any(n.startswith("break_") for n in symbol_names)) or (
        "do_return" in symbol_names and (_LOOPS or not _BRANCHES[0])
    )
    if exits and _soft_exit(pred, body, orelse, get_state, set_state, symbol_names, init, where):
        return
    with _InBranch():
        sides = [
            _shapes(functools.partial(_run, b, set_state, get_state, init)) for b in (body, orelse)
        ]
    merge = _Merge(symbol_names, sides, where, "if statement")

    def branch(block):
        def run():
            with _InBranch():
                return merge.to_arrays(_run(block, set_state, get_state, init))

        return run

    outs = jax.lax.cond(pred, branch(body), branch(orelse))
    set_state(merge.from_arrays(outs))


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
        _PROBING[0] += 1
        try:
            sides = [_run(block, set_state, get_state, init) for block in (body, orelse)]
        finally:
            _PROBING[0] -= 1
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
        loop = _LOOPS[-1] if _LOOPS else None
        if _PROBING[0] or (loop is not None and loop.branches != _BRANCHES[0]):
            raise ConversionError(
                f"sf.relax: the {statement} at {where} depends on a traced condition inside "
                "another if statement on a traced condition; combine the conditions with `and` "
                f"in a single `if ...: {statement}`. (After such a {statement}, the branch that "
                "goes on has a probability conditioned on not having exited, not a blend.)"
            )
        exit_state = _run(exiting, set_state, get_state, init)
        if statement == "return":
            _soft_return(condition, exit_state[symbol_names.index("retval_")], where)
        else:
            cast(_Loop, loop).exits.append((condition, tuple(cast(_Loop, loop).get_state())))
        set_state(_run(going_on, set_state, get_state, init))
        return True
    return False


def _soft_return(condition, value, where: str) -> None:
    """Record a ``return`` on one side of a soft ``if`` as an exit of the function (see
    :class:`_FunctionScope`)."""
    if not _RETURNS or any(loop.kind != "for" for loop in _LOOPS):
        raise ConversionError(
            f"sf.relax: the return at {where} depends on a traced condition inside a loop that "
            "is not unrolled (a while loop, or a for loop over a traced range); break out of the "
            "loop and return after it."
        )
    if any(loop.exits for loop in _LOOPS):
        raise ConversionError(
            f"sf.relax: the return at {where} depends on a traced condition and may follow a soft "
            "break of an enclosing loop; the code after that loop would run on a mixture "
            "conditioned on not returning. Return after the loop instead."
        )
    _RETURNS[-1].append((condition, value, where))


class _FunctionScope(_FunctionScopeBase):
    """malt's function scope, whose result is also the mixture of the soft returns made inside
    loops: ``where(c_1, v_1, where(c_2, v_2, ... value))`` over the returns in the order they
    were met, which relax turns into the mixture over the iteration at which it returned."""

    def __enter__(self):
        _RETURNS.append([])
        return super().__enter__()

    def __exit__(self, *exc):
        _RETURNS.pop()
        return super().__exit__(*exc)

    def ret(self, value, did_return):
        value = super().ret(value, did_return)
        for condition, returned, where in reversed(_RETURNS[-1]):
            try:
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


class _Loop:
    """A loop whose body is being run: its kind (``"for"`` unrolled over a static iterable,
    ``"while"``, ``"fori"`` over a traced range), its state, and the exits of its soft breaks so
    far in this pass over the body, each a (condition, state at the break) in the running world."""

    def __init__(self, kind: str, get_state: Callable):
        self.kind = kind
        self.get_state = get_state
        self.branches = _BRANCHES[0]
        self.exits: list[tuple[Any, tuple]] = []

    def __enter__(self):
        _LOOPS.append(self)
        return self

    def __exit__(self, *exc):
        _LOOPS.pop()


class _InBranch:
    """Marks the tracing of the branches of a soft ``if`` (a break there is not the loop's)."""

    def __enter__(self):
        _BRANCHES[0] += 1

    def __exit__(self, *exc):
        _BRANCHES[0] -= 1


_LOOPS: list[_Loop] = []
_BRANCHES = [0]
_PROBING = [0]  # > 0 while _soft_exit traces the sides of an if to find which one exits
# The soft returns met inside loops, (condition, value), per converted function being run.
_RETURNS: list[list[tuple[Any, Any, str]]] = []


def while_stmt(test, body, get_state, set_state, symbol_names, opts):
    """``while test(): body()``; once ``test()`` is traced, a ``lax.while_loop`` over the state.

    A ``break`` on a traced condition (also in a loop whose test is static, ``while True:``) is an
    exit in the middle of the body: the body ends in :func:`softflow._program.loop_exits`, which
    selects the state at the first exit taken and sets a "has broken" flag that ends the loop; relax
    turns it into the mixture over the iteration *and* the exit at which the loop stops.
    """
    del opts
    may_break = any(n.startswith("break_") for n in symbol_names)
    while True:
        cond = _probe(test)
        if cond is None:
            break
        if not cond:
            return
        if may_break and _breaks_softly(body, get_state, set_state):
            break  # a soft break under a static test: the loop goes on traced from here
        with _Loop("while", get_state):
            body()
    where = _caller_line()
    if any(n.startswith("do_return") for n in symbol_names):
        raise ConversionError(
            f"sf.relax: the while loop at {where} has a return on a traced condition; this is not "
            "converted from Python syntax yet. Break out of the loop and return after it."
        )
    init = _loop_state(
        get_state,
        symbol_names,
        f"the while loop at {where}",
        "; a loop on a traced condition carries its variables, so assign it before the loop.",
    )
    running_world = _running_world(symbol_names)

    def body_state(state) -> tuple[tuple, list]:
        """The state at the end of the body (where no break was taken) and the exits taken."""
        with _Loop("while", get_state) as loop:
            final = _run(body, set_state, get_state, state)
        return running_world(final), [(c, running_world(s)) for c, s in loop.exits]

    sides = _sides(functools.partial(body_state, init), len(symbol_names))
    merge = _Merge(symbol_names, [init, *sides], where, "while loop")

    def condition():
        return _condition(test(), "while loop")

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
        with _Loop("while", get_state) as loop:
            body()
        found.append(bool(loop.exits))

    jax.eval_shape(run)
    set_state(before)
    return found[0]


def _running_world(symbol_names) -> Callable[[tuple], tuple]:
    """A loop state with malt's break flags set to False: the flag is True in an exit's state,
    and a converted loop carries its own "has broken" flag instead."""
    flags = [n.startswith("break_") for n in symbol_names]
    return lambda state: tuple(False if f else v for v, f in zip(state, flags, strict=True))


def _sides(body_state: Callable[[], tuple[tuple, list]], n: int) -> list[tuple]:
    """The abstract states at the end of a loop body and at each of its exits."""

    def all_states():
        final, exits = body_state()
        return tuple(v for state in (final, *(s for _, s in exits)) for v in state)

    after = _shapes(all_states)
    return [after[i : i + n] for i in range(0, len(after), n)]


def _body_exits(merge: "_Merge", final: tuple, exits: list, counters: tuple = ()) -> tuple:
    """The carry at the end of a loop body with exits: ``counters`` (the same in every world),
    the loop's arrays, and whether it broke (see loop_exits)."""

    def arrays_of(state) -> list:
        return [*counters, *(a for a in merge.to_arrays(state) if a is not None)]

    conds = [_condition(c, "if statement") for c, _ in exits]
    state, broke = loop_exits(conds, [arrays_of(s) for _, s in exits], arrays_of(final))
    values = iter(state[len(counters) :])
    arrays = [None if a is None else next(values) for a in merge.to_arrays(final)]
    return (*state[: len(counters)], arrays, broke)


def _probe(test: Callable):
    """``test()`` when it is a static value, ``None`` when it is traced; evaluated abstractly,
    so that a traced test leaves no equations behind."""
    static = []

    def run():
        value = test()
        if _traced(value):
            return value
        static.append(value)
        return None

    jax.eval_shape(run)
    return static[0] if static else None


def for_stmt(iter_, extra_test, body, get_state, set_state, symbol_names, opts):
    r"""``for x in iter_: body(x)``, unrolled: the iterable is static (a range of Python ints, a
    list, the leading axis of an array).

    A ``break`` on a traced condition :math:`c_k` (in iteration :math:`k`, in the world where the
    loop still runs) is the mixture over the iteration at which the loop stops, as in
    :func:`softflow.soft_fori_loop` with a ``break_fn``: the result is
    :math:`\sum_k p_k \prod_{j<k} (1 - p_j)\, s_k + \prod_j (1 - p_j)\, s_\text{end}`, where
    :math:`s_k` is the state at the break. It is built as nested selects,
    ``where(c_1, s_1, where(c_2, s_2, ... s_end))``, which relax turns into that mixture.
    """
    del opts
    if isinstance(iter_, _TracedRange):
        return _fori_loop(iter_, extra_test, body, get_state, set_state, symbol_names)
    if _traced(iter_) and not isinstance(iter_, jax.Array):
        raise ConversionError(
            f"sf.relax: the for loop at {_caller_line()} iterates over a traced-length sequence; "
            "Python loops are unrolled, so their length must be static. Use lax.fori_loop or "
            "sf.soft_fori_loop."
        )
    with _Loop("for", get_state) as loop:
        for item in iter_:
            if extra_test is not None and not extra_test():
                break
            body(item)
    if not loop.exits:
        return
    where = _caller_line()
    running_world = _running_world(symbol_names)
    final = running_world(get_state())
    exits = [(c, running_world(state)) for c, state in loop.exits]
    merge = _Merge(symbol_names, [final, *(state for _, state in exits)], where, "for loop")
    result = merge.to_arrays(final)
    for c, state in reversed(exits):
        arrays = merge.to_arrays(state)
        result = [
            None if r is None else jnp.where(c, a, r) for a, r in zip(arrays, result, strict=True)
        ]
    set_state(merge.from_arrays(result))


class _TracedRange:
    """``range(...)`` with a traced bound: only a ``for`` loop over it is converted."""

    def __init__(self, *args):
        start, stop = (0, args[0]) if len(args) == 1 else args[:2]
        step = args[2] if len(args) == 3 else 1
        if _traced(step) or step != 1:
            raise ConversionError(
                f"sf.relax: range() at {_caller_line()} has a traced bound and a step other than "
                "1; write the loop with lax.fori_loop."
            )
        self.start, self.stop = start, stop

    def __iter__(self):
        raise ConversionError(
            f"sf.relax: range() with a traced bound at {_caller_line()} is used outside a for "
            "loop; its length is not known while tracing."
        )


def _fori_loop(iter_: _TracedRange, extra_test, body, get_state, set_state, symbol_names):
    """``for i in range(start, stop)`` with a traced bound: a ``lax.fori_loop`` over the state, or
    with a ``break``, a ``lax.while_loop`` over the index and the state whose body ends in
    :func:`softflow._program.loop_exits` (see :func:`while_stmt`)."""
    where = _caller_line()
    init = _loop_state(
        get_state,
        symbol_names,
        f"the for loop at {where} (over a range with a traced bound)",
        "; assign it before the loop.",
    )
    running_world = _running_world(symbol_names)

    def body_state(i, state) -> tuple[tuple, list]:
        with _Loop("fori", get_state) as loop:
            final = _run(functools.partial(body, i), set_state, get_state, state)
        return running_world(final), [(c, running_world(s)) for c, s in loop.exits]

    index = jnp.asarray(iter_.start)
    sides = _sides(functools.partial(body_state, index, init), len(symbol_names))
    merge = _Merge(symbol_names, [init, *sides], where, "for loop")
    if len(sides) == 1 and extra_test is None:

        def body_fn(i, arrays):
            return merge.to_arrays(body_state(i, merge.from_arrays(arrays))[0])

        outs = jax.lax.fori_loop(iter_.start, iter_.stop, body_fn, merge.to_arrays(init))
        set_state(merge.from_arrays(outs))
        return

    def cond_fn(carry):
        i, arrays, broke = carry
        set_state(merge.from_arrays(arrays))
        going_on = True if extra_test is None else extra_test()
        return jnp.where(broke, False, jnp.logical_and(i < iter_.stop, going_on))

    def body_fn_with_exits(carry):
        i, arrays, _ = carry
        return _body_exits(merge, *body_state(i, merge.from_arrays(arrays)), counters=(i + 1,))

    init_carry = (index, merge.to_arrays(init), jnp.bool_(False))
    with jax.named_scope(f"for_at_{where}"):
        _, outs, _ = jax.lax.while_loop(cond_fn, body_fn_with_exits, init_carry)
    set_state(merge.from_arrays(outs))


def if_exp(cond, if_true, if_false, expr_repr):
    """``if_true() if cond else if_false()``; on a traced ``cond`` a ``jnp.where``."""
    del expr_repr
    if not _traced(cond):
        return if_true() if cond else if_false()
    return jnp.where(_condition(cond, "conditional expression"), if_true(), if_false())


def _truth(value, what: str):
    value = jnp.asarray(value)
    if value.dtype != jnp.bool_:
        raise ConversionError(
            f"sf.relax: `{what}` at {_caller_line()} is applied to a traced {value.dtype} value; "
            "on traced values it is the logic of truth values: compare first (x > 0), or use "
            "jnp.where."
        )
    return value


def and_(a, b):
    """``a() and b()``; on traced truth values their logical and (both are evaluated)."""
    left = a()
    if not _traced(left):
        return left and b()
    return jnp.logical_and(_truth(left, "and"), _truth(b(), "and"))


def or_(a, b):
    """``a() or b()``; on traced truth values their logical or (both are evaluated)."""
    left = a()
    if not _traced(left):
        return left or b()
    return jnp.logical_or(_truth(left, "or"), _truth(b(), "or"))


def not_(a):
    """``not a``; on a traced truth value its logical not."""
    if not _traced(a):
        return not a
    return jnp.logical_not(_truth(a, "not"))


def _not_converted(fn) -> bool:
    module = getattr(inspect.getmodule(fn), "__name__", None) or getattr(fn, "__module__", None)
    if not isinstance(module, str):
        return False
    return module.split(".")[0] in _NOT_CONVERTED


def converted_call(f, args, kwargs, caller_fn_scope=None, options=None):
    """Call ``f``, converted first when it is a Python function of the user's."""
    del caller_fn_scope, options
    kwargs = kwargs or {}
    if f is range and _traced(args):
        return _TracedRange(*args)
    target = f.func if isinstance(f, functools.partial) else f
    if _api.is_autograph_artifact(target) or _not_converted(target) or not _convertible(target):
        return f(*args, **kwargs)
    if isinstance(f, functools.partial):
        return converted_call(f.func, (*f.args, *args), {**f.keywords, **kwargs})
    converted = convert(f)
    # The loops and branches being traced belong to the caller: a break or return in the callee
    # exits the callee, which returns one (mixed) value to the caller.
    outer = (_LOOPS[:], _BRANCHES[0], _PROBING[0])
    _LOOPS.clear()
    _BRANCHES[0] = _PROBING[0] = 0
    try:
        return converted(*args, **kwargs)
    finally:
        _LOOPS[:] = outer[0]
        _BRANCHES[0], _PROBING[0] = outer[1], outer[2]


def call_converted(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` with ``fn`` (and what it calls) converted from Python syntax."""
    return converted_call(fn, args, kwargs)


def _convertible(fn) -> bool:
    """Python functions and methods; builtins, classes and other callables run as they are."""
    return inspect.isfunction(fn) or inspect.ismethod(fn)


# ----------------------------------------------------------------------------------------------
# The converter


class _Transformer(_api.PyToPy):
    """malt's source transformer with softflow's operators in place of malt's."""

    def get_extra_locals(self):
        if self._extra_locals is None:
            namespace = types.ModuleType("softflow_syntax_operators")
            namespace.__dict__.update(vars(_api))
            namespace.__dict__.update(vars(_malt_operators))
            namespace.__dict__.update(
                ConversionOptions=_converter.ConversionOptions,
                STD=_converter.STANDARD_OPTIONS,
                Feature=_converter.Feature,
            )
            operators = {
                "if_stmt": if_stmt,
                "while_stmt": while_stmt,
                "for_stmt": for_stmt,
                "if_exp": if_exp,
                "and_": and_,
                "or_": or_,
                "not_": not_,
                "converted_call": converted_call,
                "FunctionScope": _FunctionScope,
            }
            namespace.__dict__.update(operators)
            self._extra_locals = {"ag__": namespace}
        return self._extra_locals


_TRANSFORMER = _Transformer()
# No optional features: with them malt's function scope fails an assertion.
_OPTIONS = _converter.ConversionOptions(
    recursive=True,
    user_requested=True,
    optional_features=None,  # pyright: ignore[reportArgumentType]  (malt's annotation is too narrow)
)
_CONVERTED: dict[Any, Callable] = {}


_BRANCHING = (ast.If, ast.While, ast.For, ast.IfExp, ast.BoolOp)


def _check_supported(fn: Callable, code: types.CodeType) -> None:
    """Refuse control flow inside ``try``: a soft branch runs both of its sides, so an exception
    raised on one side would be handled for the blend of both."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):  # no parsable source: malt reports it
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Try | ast.TryStar) and any(
            isinstance(inner, _BRANCHING) for part in node.body for inner in ast.walk(part)
        ):
            line = code.co_firstlineno + node.lineno - 1
            raise ConversionError(
                f"sf.relax: control flow inside try/except at {code.co_filename}:{line} "
                f"({getattr(fn, '__qualname__', fn)}) is not converted: on a traced condition "
                "both sides of a branch run and are blended, and an exception in one of them "
                "cannot be handled for the blend. Move the if / while / for out of the try block."
            )


def _as_is(key, fn: Callable) -> Callable:
    _CONVERTED[key] = fn
    return fn


def _has_control_flow(code: types.CodeType) -> bool:
    """Whether compiled code branches or loops (``if``, ``while``, ``for``, ``and``, ``or``,
    ``a if c else b``, comprehensions), here or in the functions it defines."""
    if any("JUMP" in i.opname or i.opname == "FOR_ITER" for i in dis.get_instructions(code)):
        return True
    return any(isinstance(c, types.CodeType) and _has_control_flow(c) for c in code.co_consts)


def convert(fn: Callable) -> Callable:
    """``fn`` with its Python control flow converted to the operators of this module.

    A function without control flow whose source cannot be converted is returned as it is (the
    functions it calls are then not converted: one with control flow on a traced value fails
    loudly with JAX's own error, never silently).

    Raises:
        ConversionError: when ``fn`` has control flow and its source cannot be converted (code
            made by ``exec``, two lambdas on one line, ...): running it unconverted could give
            the exact program with zero gradients through its conditions.
    """
    if inspect.ismethod(fn):
        return functools.partial(convert(fn.__func__), fn.__self__)
    key = fn
    if key in _CONVERTED:
        return _CONVERTED[key]
    code = getattr(fn, "__code__", None)
    name = getattr(fn, "__qualname__", repr(fn))
    if code is None or code.co_filename.startswith("<"):
        if code is not None and not _has_control_flow(code):
            return _as_is(key, fn)
        raise ConversionError(
            f"sf.relax: cannot convert {name}: its source code is not available (made by exec or "
            "typed interactively?). Define it in a file, or pass convert=False to sf.relax if it "
            "has no Python control flow on traced values."
        )
    _check_supported(fn, code)
    try:
        context = _converter.ProgramContext(options=_OPTIONS)
        # PyToPy.transform returns (function, module, source map); its annotation says otherwise.
        converted, module, source_map = cast(Any, _TRANSFORMER.transform(fn, context))
    except Exception as error:
        if not _has_control_flow(code):
            return _as_is(key, fn)
        raise ConversionError(
            f"sf.relax: cannot convert {name} ({code.co_filename}:{code.co_firstlineno}): "
            f"{type(error).__name__}: {error}. Pass convert=False to sf.relax if it has no Python "
            "control flow on traced values."
        ) from error
    _SOURCE_MAPS[module.__file__] = source_map
    _api.autograph_artifact(converted)
    _CONVERTED[key] = converted
    return converted
