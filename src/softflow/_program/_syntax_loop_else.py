"""Loops with an ``else`` clause for the converter, which (like malt) does not support them, and
the tests of what such a loop's breaks set.

``for ...: body else: rest`` runs ``rest`` when the loop ends without a ``break``. It is the same
program as a flag set just before each of the loop's breaks and ``if not flag: rest`` after the
loop, and is rewritten as that before conversion: on static values Python runs it as it runs
the loop.

Where a Python ``for`` breaks on a traced condition, the state after it is a mixture of worlds:
the one where it ran to its end and one per break. A flag that tells them apart (the else
clause's, or one the program sets before its ``break``) is exact in each world, and an ``if`` on
it runs each branch in the worlds where it is taken, before they are mixed: blending by the
probability of having broken would apply the branch, weighted, to the states at the breaks too
(a search that returns ``-1`` when nothing is found came out 0.37 for 0.55). The else clause's
flag is named as the loop starts (:func:`else_flag`), and the loop leaves its worlds unmixed
until its clause runs (:func:`defer`), so that a variable may be set at the breaks and in the
clause only. A loop compiled as a ``lax`` loop mixes its worlds inside the loop: its ``else``
after a soft break is refused (:func:`refuse_compiled`).
"""

import ast
import dataclasses
import functools
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from malt.operators.variables import Undefined

from ._errors import ConversionError
from ._markers import mixed_flag
from ._syntax_match import locate
from ._syntax_state import (
    BRANCHES,
    LOOPS,
    PROBING,
    RETURNS,
    Merge,
    caller_line,
    first_returned,
    is_undefined,
    traced,
)

_FLAGS = itertools.count()

# The flag of the loop statement about to start (its first assignment runs just before it), and
# the worlds of the loops that broke on traced conditions, by flag, until their else clause runs.
_NEXT: list[str | None] = [None]
_PENDING: dict[str, "Worlds"] = {}


def _with_flag(block: list[ast.stmt], flag: str) -> list[ast.stmt]:
    """``block`` with ``flag = True`` before each ``break`` that leaves the loop it belongs to
    (not those of loops nested in it, nor of functions defined in it)."""
    out: list[ast.stmt] = []
    for statement in block:
        if isinstance(statement, ast.Break):
            out += [locate(_assign(flag, ast.Constant(True)), statement), statement]
            continue
        if not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for field, value in ast.iter_fields(statement):
                inner_loop = isinstance(statement, ast.For | ast.While) and field != "orelse"
                if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                    if not inner_loop:
                        setattr(statement, field, _with_flag(value, flag))
                elif isinstance(statement, ast.Try) and field == "handlers":
                    for handler in value:
                        handler.body = _with_flag(handler.body, flag)
        out.append(statement)
    return out


def _assign(name: str, value: ast.expr) -> ast.Assign:
    return ast.Assign([ast.Name(name, ast.Store())], value)


def _operator(name: str, *args: ast.expr) -> ast.Call:
    """A call of the converter's operator ``name`` (``ag__.name(*args)``)."""
    return ast.Call(ast.Attribute(ast.Name("ag__", ast.Load()), name, ast.Load()), list(args), [])


class LoopElseAsFlags(ast.NodeTransformer):
    """Every ``for`` / ``while`` with an ``else`` clause rewritten with a flag (see the module)."""

    def _rewrite(self, node: ast.For | ast.While) -> ast.AST | list[ast.stmt]:
        self.generic_visit(node)  # (loops nested in it first)
        if not node.orelse:
            return node
        flag = f"softflow_loop_broke_{next(_FLAGS)}"
        rest, node.orelse = node.orelse, []
        node.body = _with_flag(node.body, flag)
        test = _operator("loop_else", ast.Name(flag, ast.Load()), ast.Constant(flag))
        return [
            locate(_assign(flag, _operator("else_flag", ast.Constant(flag))), node),
            node,
            locate(ast.If(test, rest, []), rest[0]),
        ]

    visit_For = _rewrite
    visit_While = _rewrite


def else_flag(name: str) -> bool:
    """The flag's first value (the loop has not broken), and the name of the flag of the loop
    that starts next."""
    _NEXT[0] = name
    return False


def take_flag() -> str | None:
    """The flag of the loop that starts now, if it has an ``else`` clause (a loop calls this
    first: loops nested in its body have their own)."""
    name, _NEXT[0] = _NEXT[0], None
    if name is not None:
        _PENDING.pop(name, None)  # (left by a run of the loop that raised before its clause)
    return name


@dataclasses.dataclass
class Worlds:
    """A loop's states where it ran to its end (``final``) and at each exit (after the exit's
    condition in the world where it still runs), and the state it set, where it mixed them."""

    names: tuple
    get_state: Callable
    set_state: Callable
    final: tuple
    exits: list
    where: str
    mixed: tuple | None = None
    # Whether each exit is a stack of exits, one per iteration (a rolled loop's), conditions too
    stacked: bool = False

    def unchanged(self) -> bool:
        """Whether the loop's variables still hold what the loop set (nothing assigned since)."""
        now = tuple(self.get_state())
        return self.mixed is not None and all(a is b for a, b in zip(now, self.mixed, strict=True))

    def mix(self, states: list[tuple], names: tuple, where: str) -> tuple:
        """The states of the worlds (``final``'s first, over ``names``) as the loop mixes them:
        the state at the first exit taken, else the final one."""
        for i, name in enumerate(names):
            undefined = [is_undefined(state[i]) for state in states]
            if any(undefined) and not all(undefined) and not name.startswith("retval_"):
                unset = SetInSomeWorlds(name, self.where)
                states = [(*state[:i], unset, *state[i + 1 :]) for state in states]
        merge = Merge(names, states, where, "for loop")
        arrays = [self._arrays(merge, state, w > 0) for w, state in enumerate(states)]
        columns = zip(*arrays, strict=True)
        return merge.from_arrays([None if c[0] is None else self._first(*c) for c in columns])

    def _arrays(self, merge: Merge, state: tuple, at_exit: bool) -> list:
        """``state``'s arrays; at a stacked exit with the iterations on axis 0 (also those that
        are the same in every iteration: a flag set at the break)."""
        arrays = merge.to_arrays(state)
        if not (self.stacked and at_exit):
            return arrays
        steps = self.exits[0][0].shape[0]
        return [
            a if a is None or traced(v) else jnp.broadcast_to(a, (steps, *a.shape))
            for a, v in zip(arrays, merge.flat(state), strict=True)
        ]

    def _first(self, final, *at_exits):
        """The value at the first exit taken, else ``final``."""
        if self.stacked:  # (iteration by iteration, each in the order of the body's exits)
            shape = jnp.broadcast_shapes(*(a.shape[1:] for a in at_exits))
            stacked = jnp.stack([jnp.broadcast_to(a, (a.shape[0], *shape)) for a in at_exits], 1)
            conditions = jnp.stack([c for c, _ in self.exits], axis=1)
            return first_returned(
                conditions.reshape(-1), stacked.reshape(-1, *shape), jnp.asarray(final)
            )
        result = final
        for (c, _), value in zip(reversed(self.exits), reversed(at_exits), strict=True):
            result = jnp.where(c, value, result)
        return result

    def _in_worlds(self, run: Callable, taken) -> list:
        """``run(taken[w], state)`` in each world ``w``: at a stacked exit on each iteration's
        state (a ``vmap``), the results stacked again."""
        states = self._states()
        return [
            self._in_world(functools.partial(run, branch), state, w > 0)
            for w, (state, branch) in enumerate(zip(states, taken, strict=True))
        ]

    def _in_world(self, run: Callable, state: tuple, at_exit: bool):
        if not (self.stacked and at_exit):
            return run(state)
        leaves, tree = jax.tree_util.tree_flatten(state, is_leaf=_not_tuple)
        stacked = [i for i, v in enumerate(leaves) if traced(v)]
        outputs = []

        def row(*values):
            for i, v in zip(stacked, values, strict=True):
                leaves[i] = v
            depth = len(RETURNS[-1]) if RETURNS else 0
            out = jax.tree_util.tree_flatten(run(tree.unflatten(leaves)), is_leaf=_not_tuple)
            if RETURNS and len(RETURNS[-1]) != depth:
                raise ConversionError(
                    f"sf.relax: a return on a traced condition after the loop at {self.where}, "
                    "in the worlds where it broke, is not converted yet; set a result variable "
                    "there and return it at the end."
                )
            outputs.append(out)
            return [jnp.asarray(v) for v in out[0] if traced(v)]

        steps = self.exits[0][0].shape[0]
        values = iter(jax.vmap(row, axis_size=steps)(*(leaves[i] for i in stacked)))
        out, out_tree = outputs[0]
        return out_tree.unflatten([next(values) if traced(v) else v for v in out])

    def set_mixed(self) -> None:
        """Mix the worlds into the loop's variables, and remember the flags among them."""
        states = self._states()
        self.mixed = self.mix(states, self.names, self.where)
        self.set_state(self.mixed)
        for i, value in enumerate(self.mixed):
            per_world = tuple(state[i] for state in states)
            if all(isinstance(v, bool) for v in per_world) and len(set(per_world)) > 1:
                _remember(value, self, per_world)

    def run_if(self, taken, body, orelse, get_state, set_state, names) -> None:
        """An ``if`` whose condition is ``taken[w]`` in world ``w``: its branch run in each world,
        then the worlds mixed (and kept apart for the next ``if`` on a flag of theirs). What only
        the ``if`` sets has, before it, one value in all."""
        before = tuple(get_state())
        own = [i for i, name in enumerate(names) if name not in self.names]

        def run(branch, state):
            self.set_state(state)
            set_state(tuple(before[i] if i in own else v for i, v in enumerate(get_state())))
            (body if branch else orelse)()
            return (*self.get_state(), *(get_state()[i] for i in own))

        states = self._in_worlds(run, taken)
        n, get_loop, set_loop = len(self.names), self.get_state, self.set_state

        def get_every() -> tuple:
            now = tuple(get_state())
            return (*get_loop(), *(now[i] for i in own))

        def set_every(state: tuple) -> None:
            set_loop(state[:n])
            now = list(get_state())
            for k, i in enumerate(own):
                now[i] = state[n + k]
            set_state(tuple(now))

        self.names = (*self.names, *(names[i] for i in own))
        self.get_state, self.set_state = get_every, set_every
        self.final = states[0]
        self.exits = [(c, state) for (c, _), state in zip(self.exits, states[1:], strict=True)]
        if not self._breaks_out():
            self.set_mixed()

    def _breaks_out(self) -> bool:
        """Whether the ``if`` just run breaks out of the loop around this one in the worlds where
        this one broke, and in them only (``if found: break`` on a flag set at its breaks): their
        states are then exits of that loop, in the order they are met, and it goes on in the
        world where this one ran to its end."""
        states = self._states()
        for i, name in enumerate(self.names):
            per_world = [state[i] for state in states]
            if not name.startswith("break_") or all(v is False for v in per_world):
                continue
            outer = LOOPS[-1] if LOOPS else None
            at_exits = per_world[0] is False and all(v is True for v in per_world[1:])
            if not at_exits or outer is None or outer.branches != BRANCHES[0] or PROBING[0]:
                raise ConversionError(
                    f"sf.relax: the break at {caller_line()} leaves the loop around the loop at "
                    f"{self.where} in some of the worlds of the latter, where it broke on traced "
                    "conditions; it is converted where it leaves in every world where that loop "
                    "broke and in no other (a flag set at each of its breaks, then "
                    "`if found: break` in the outer loop's body), not inside an if on a traced "
                    "condition. Or loop over the pairs in one loop with one break: "
                    "for k in range(n * m): i, j = divmod(k, m)."
                )
            for condition, state in self.exits:  # (a loop nested in another is not stacked)
                self.set_state(state)
                outer.exits.append((condition, tuple(outer.get_state())))
            self.set_state(self.final)
            self.exits, self.mixed = [], None
            return True
        return False

    def choose(self, taken, if_true: Callable, if_false: Callable):
        """A conditional expression whose condition is ``taken[w]`` in world ``w``: the value of
        its chosen side in each world, mixed as the worlds are."""

        def value(branch, state):
            self.set_state(state)
            return jnp.asarray((if_true if branch else if_false)())

        values = self._in_worlds(value, taken)
        self.set_state(self.mixed)
        if self.stacked:  # (a value the same in every iteration)
            steps = self.exits[0][0].shape[0]
            values[1:] = [
                v if traced(v) else jnp.broadcast_to(v, (steps, *v.shape)) for v in values[1:]
            ]
        return self._first(*values)

    def _states(self) -> list[tuple]:
        return [self.final, *(state for _, state in self.exits)]


class SetInSomeWorlds(Undefined):
    """A variable after a loop that sets it in some of its worlds only (at a soft break, not
    before the loop): it may be read where those worlds are told apart, as under ``if found:``
    on a flag set at the break, and nowhere else."""

    __slots__ = ("where",)

    def __init__(self, name: str, where: str):
        super().__init__(name)
        self.where = where

    def read(self):
        raise ConversionError(
            f"sf.relax: {self.symbol_name!r} is set by the loop at {self.where} in some of its "
            "worlds only (at a break on a traced condition, not before the loop), so after the "
            "loop it has no value where the loop did not set it. Read it under an if on a flag "
            "set at the break (found = True; break ... if found:), or assign it before the loop."
        )


def _not_tuple(value) -> bool:
    return type(value) is not tuple


# Flags that tell a loop's worlds apart (by id, with the array, the worlds and the flag in each
# world), the newest last; an if on one runs per world while the loop's variables are unchanged.
_FLAGS_OF_WORLDS: dict[int, tuple] = {}
_MOST_FLAGS = 64


def _remember(value, worlds: "Worlds | MixedWorlds", per_world: tuple) -> None:
    _FLAGS_OF_WORLDS[id(value)] = (value, worlds, per_world)
    while len(_FLAGS_OF_WORLDS) > _MOST_FLAGS:
        del _FLAGS_OF_WORLDS[next(iter(_FLAGS_OF_WORLDS))]


def flag_of_worlds(value) -> tuple["Worlds | MixedWorlds", tuple] | None:
    """The worlds ``value`` tells apart and its value in each, while the loop's variables still
    hold what it set; else None."""
    entry = _FLAGS_OF_WORLDS.get(id(value))
    if entry is None or entry[0] is not value or not entry[1].unchanged():
        return None
    return entry[1], entry[2]


def negated(value, result) -> None:
    """``result`` (``not value``) tells the same worlds apart, where ``value`` does."""
    found = flag_of_worlds(value)
    if found is not None:
        _remember(result, found[0], tuple(not v for v in found[1]))


def defer(flag: str | None, worlds: Worlds) -> None:
    """The end of a Python loop that broke on traced conditions: its worlds mixed, or with an
    else clause (``flag``), left unmixed until the clause runs, the state that of the world
    where the loop ran to its end."""
    if flag is None:
        worlds.set_mixed()
        return
    _PENDING[flag] = worlds
    worlds.set_state(worlds.final)


@dataclasses.dataclass
class MixedWorlds:
    """The worlds of a loop compiled as a ``lax`` loop with breaks on traced conditions (a
    ``while``, or a ``for`` over a range with a traced bound): they are mixed inside the loop, so
    that an ``if`` on a flag set at its breaks cannot run in each world apart. Blending by the
    flag's mixed value would apply the branch to the states at the breaks weighted by the
    probability of having broken once more (a search that returns -1 when nothing is found came
    out 0.44 for 0.50): where the flag is relaxed, relax refuses it (:meth:`marked`); in hard
    mode it is exact, and the if is the program's."""

    name: str
    where: str

    def unchanged(self) -> bool:
        return True  # (the flag is known by identity: the loop's output itself)

    def marked(self, flag, what: str):
        """``flag``, marked for relax to refuse ``what`` (the if testing it) where it is
        relaxed."""
        return mixed_flag(
            flag,
            f"sf.relax: {what} at {caller_line()} tests {self.name!r}, a flag set at the breaks "
            f"of the loop at {self.where}, which runs as a compiled loop (a while loop, or a for "
            "loop over a range with a traced bound): there the worlds that broke and the one "
            "that ran to its end are mixed inside the loop, so the branches cannot run in each "
            "world apart. Set what the branch computes at the break instead (result = x[i]; "
            "break, with result = -1.0 before the loop for the world that does not break), or "
            "loop over a static range (for i in range(n)), whose worlds are kept apart.",
        )


def mark_mixed_flags(names: tuple, per_world: list[tuple], state: tuple, where: str) -> None:
    """After a compiled loop with breaks on traced conditions: its Python truth values that its
    worlds tell apart (``per_world``: the state where it runs on, then at each break, as Python
    sees them), such as ``found = True`` before a break, are marked in ``state`` (the loop's
    result): an ``if`` on one is refused where it is relaxed (see :class:`MixedWorlds`)."""
    for i, name in enumerate(names):
        values = tuple(world[i] for world in per_world)
        if name.startswith("break_") or not all(isinstance(v, bool) for v in values):
            continue
        if len(set(values)) > 1 and traced(state[i]):
            _remember(state[i], MixedWorlds(name, where), values)


def refuse_compiled(flag: str | None, where: str) -> None:
    """A loop compiled as a ``lax`` loop with breaks on traced conditions, and an else clause."""
    if flag is not None:
        raise ConversionError(
            f"sf.relax: the loop at {where} breaks on a traced condition and has an else clause; "
            "it runs as a compiled loop, where the worlds that broke and the one that ran to "
            "its end are mixed before the else clause could run in the latter alone. Give the "
            "variables the else clause sets their value before the loop instead (found = -1.0, "
            "then the loop without else), or loop over a static range."
        )


class NoBreak:
    """The test of an else clause after a loop that broke on traced conditions: true in the
    world where it ran to its end only (see :meth:`Worlds.run_if`)."""

    def __init__(self, worlds: Worlds):
        self.worlds = worlds
        self.taken = (True, *(False for _ in worlds.exits))


def loop_else(broke, flag: str):
    """The test of a loop's else clause: ``not broke``, or where the loop left its worlds unmixed
    (:func:`defer`), the :class:`NoBreak` that runs the clause in the right one."""
    worlds = _PENDING.pop(flag, None)
    if worlds is not None:
        return NoBreak(worlds)
    return jnp.logical_not(broke) if traced(broke) else not broke
