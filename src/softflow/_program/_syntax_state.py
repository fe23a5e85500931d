"""The state of a Python function being converted for :func:`softflow.relax`: how the variables
of branches and loops are joined, and which loops and branches are being traced.

Converted code calls the operators of ``_syntax_branches`` and ``_syntax_loops`` with getters and
setters of the variables a statement modifies (malt's liveness analysis finds them). Static
values (Python numbers, flags, shapes) stay Python values; traced ones go through the JAX
control-flow primitive.
"""

import collections
import copy
import inspect
import linecache
import re
import types
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from malt.operators import variables as _variables

from ._errors import ConversionError
from ._source import converted_location


def caller_line() -> str:
    """The user's source line of the innermost converted statement being run."""
    frame = inspect.currentframe()
    while frame is not None:
        where = converted_location(frame.f_code.co_filename, frame.f_lineno)
        if where is not None:
            return where
        frame = frame.f_back
    return "an unknown line"


def caller_source(where: str) -> str:
    """The text of the user's line ``where`` (``file:line (function)``), or ``""``."""
    match = re.fullmatch(r"(.*):(\d+) \(.*\)", where)
    return linecache.getline(match[1], int(match[2])).strip() if match else ""


def traced(value) -> bool:
    return any(isinstance(leaf, Tracer) for leaf in jax.tree_util.tree_leaves(value))


def condition_of(cond, what: str):
    """``cond`` as a scalar boolean array, or a clear error naming the statement's line."""
    cond = jnp.asarray(cond)
    if cond.shape != ():
        raise ConversionError(
            f"sf.relax: the condition of the {what} at {caller_line()} is an array of shape "
            f"{cond.shape}; a Python {what} needs a single truth value. Use jnp.where (or "
            "sf.soft_where) for elementwise choices."
        )
    return cond if cond.dtype == jnp.bool_ else cond != 0


# ----------------------------------------------------------------------------------------------
# Branch and loop states


def is_undefined(value) -> bool:
    return isinstance(value, _variables.Undefined | _variables.UndefinedReturnValue)


def loop_state(get_state, symbol_names, loop: str, advice: str) -> tuple:
    """The loop's variables before it runs; an error naming one that is not defined yet."""
    init = tuple(get_state())
    for name, value in zip(symbol_names, init, strict=True):
        if is_undefined(value):
            raise ConversionError(
                f"sf.relax: variable {name!r} is assigned in {loop} but not defined before it"
                + advice
            )
    return init


# malt names a nested function's return flag and value do_return_1, retval__1 (and so on, one
# number per level): the same roles as the outermost function's.
_NESTED_RETURN = re.compile(r"^(do_return|retval_)_\d+$")


def canonical_names(symbol_names: Sequence[str]) -> tuple[str, ...]:
    """The names of a statement's variables with a nested function's return flag and value
    named as the outermost function's (a statement reads and writes one function's only)."""
    return tuple(_NESTED_RETURN.sub(r"\1", name) for name in symbol_names)


def is_static(value) -> bool:
    arrays = jax.Array | np.ndarray | np.generic | jax.ShapeDtypeStruct
    return not isinstance(value, arrays) and not traced(value)


def first_returned(conditions, stacked, value):
    r"""The value of the first return whose condition holds, of returns stacked along axis 0, or
    ``value`` where none does: read at ``argmax`` of the conditions followed by True, which relax
    turns into the first true index of independent truth values, the mixture
    :math:`\sum_k q_k \prod_{j<k}(1 - q_j)\, v_k + \prod_j (1 - q_j)\, v` of the nested
    ``where``."""
    first = jnp.argmax(jnp.concatenate([conditions, jnp.ones(1, bool)]))

    def leaf(returned, otherwise):
        shape = jnp.broadcast_shapes(returned.shape[1:], jnp.shape(otherwise))
        returned = jnp.broadcast_to(returned, (returned.shape[0], *shape))
        return jnp.concatenate([returned, jnp.broadcast_to(otherwise, (1, *shape))])[first]

    return jax.tree_util.tree_map(leaf, stacked, value)


def run_block(block: Callable, set_state: Callable, get_state: Callable, init: tuple) -> tuple:
    set_state(init)
    block()
    return tuple(get_state())


class Merge:
    """How the states of two branches (or a loop's state before and after its body) are joined.

    Each symbol is either static (the same Python value on both sides, kept as it is) or an array
    of a common dtype, which goes through the JAX control-flow primitive; a tuple of the
    same structure on every side (``return label, score``) is joined element by element. The
    arrays are a flat list, one entry per element of such a symbol.
    """

    def __init__(self, names: Sequence[str], sides: Sequence[tuple], where: str, what: str):
        self.static: list[Any] = []
        self.dtypes: list[Any] = []
        self.trees: list[Any] = []
        for i, name in enumerate(names):
            values = [side[i] for side in sides]
            tree = _common_tree(values)
            self.trees.append(tree)
            if tree is None:
                self._join(name, values, where, what)
                continue
            leaves = [tree.flatten_up_to(v) for v in values]
            for k in range(tree.num_leaves):
                self._join(f"{name}[{k}]", [side[k] for side in leaves], where, what)

    def _join(self, name: str, values: list, where: str, what: str) -> None:
        undefined = [is_undefined(v) for v in values]
        if all(undefined):
            self.static.append(values[0])
            self.dtypes.append(None)
            return
        if any(undefined) and not name.startswith("retval_"):
            raise ConversionError(
                f"sf.relax: variable {name!r} is defined on only one side of the {what} at "
                f"{where}; with a traced condition both sides run and are blended, so it must be "
                f"defined on both (assign it before the {what} or in every branch)."
            )
        same = all(is_static(v) for v in values) and all(same_value(values[0], v) for v in values)
        # (A return value set on one side only: malt's retval_, retval__1 in a nested function.)
        if (name == "do_return" and not same) or any(undefined):
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
            return
        if not all(_blendable(v) for v in values):
            shown = ", ".join(_shown(v) for v in values)
            raise ConversionError(
                f"sf.relax: {_variable(name)} differs between the sides of the {what} at "
                f"{where} in a way that cannot be blended ({shown}); with a traced condition "
                "both sides run and their values are blended element by element, so give it "
                "the same structure (the same keys, the same length) and numbers or arrays on "
                f"every side, or choose a static value outside the {what}."
            )
        self.static.append(None)
        self.dtypes.append(jnp.result_type(*values))

    def flat(self, state: tuple) -> list:
        """The values of ``state``, one per array of :meth:`to_arrays`."""
        return [
            v
            for value, tree in zip(state, self.trees, strict=True)
            for v in ([value] if tree is None else tree.flatten_up_to(value))
        ]

    def to_arrays(self, state: tuple) -> list:
        flat = self.flat(state)
        return [
            None if dtype is None else jnp.asarray(v, dtype)
            for v, dtype in zip(flat, self.dtypes, strict=True)
        ]

    def from_arrays(self, arrays: Sequence) -> tuple:
        values = iter(
            s if dtype is None else a
            for s, a, dtype in zip(self.static, arrays, self.dtypes, strict=True)
        )
        return tuple(
            next(values) if tree is None else tree.unflatten([next(values) for _ in range(n)])
            for tree, n in ((t, t and t.num_leaves) for t in self.trees)
        )


def _variable(name: str) -> str:
    """A state symbol as the user knows it (malt names a function's return value retval_)."""
    if name.startswith("retval_"):
        _, bracket, rest = name.partition("[")
        return "the value returned" + (f" (element [{rest})" if bracket else "")
    return f"variable {name!r}"


def _blendable(value) -> bool:
    """Whether a value is one number or array (a leaf that JAX can blend)."""
    numbers = bool | int | float | complex | np.number | np.bool_
    return isinstance(value, numbers | jax.Array | np.ndarray | jax.ShapeDtypeStruct)


def _shown(value) -> str:
    if isinstance(value, jax.ShapeDtypeStruct):
        return f"an array {value.dtype}{list(value.shape)}"
    tree = jax.tree_util.tree_structure(value, is_leaf=lambda x: x is None)
    if jax.tree_util.treedef_is_leaf(tree):
        return repr(value) if is_static(value) else type(value).__name__
    return f"{type(value).__name__} {jax.tree_util.tree_map(lambda _: '*', value)}"


def _common_tree(values: list):
    """The structure of containers that every value has (a return of several values, a state
    record: a tuple, a named tuple, a dict, a list, any other pytree), joined element by
    element; None for a single value. (A Python list is a container the construct must not
    grow, see SideEffects; a new list of the same length on every side is a value.)"""
    kinds = {type(v) for v in values}
    if len(kinds) != 1:
        return None
    if all(v is values[0] for v in values) and isinstance(values[0], _CONTAINERS):
        return None  # (the same list on every side: one value, which SideEffects watches)
    trees = {jax.tree_util.tree_structure(v, is_leaf=lambda x: x is None) for v in values}
    if len(trees) != 1:
        return None
    tree = trees.pop()
    return None if jax.tree_util.treedef_is_leaf(tree) else tree


def same_value(a, b) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # values without a truth value of ==: not the same static value
        return a is b


def abstract_state(block: Callable, *args) -> tuple:
    """Run ``block(*args)`` abstractly: the types of its array results, its static results as
    they are, also inside tuples (a named tuple's Python int field stays an int)."""
    static: list = []
    trees: list = []

    def arrays(*args):
        out = []
        for value in block(*args):
            leaves, tree = jax.tree_util.tree_flatten(
                value, is_leaf=lambda x: not isinstance(x, tuple)
            )
            known = [is_static(v) or is_undefined(v) for v in leaves]
            trees.append(tree)
            static.append([v if k else None for v, k in zip(leaves, known, strict=True)])
            out.append([None if k else v for v, k in zip(leaves, known, strict=True)])
        return out

    shapes = jax.eval_shape(arrays, *args)
    return tuple(
        tree.unflatten([s if a is None else a for s, a in zip(known, found, strict=True)])
        for tree, known, found in zip(trees, static, shapes, strict=True)
    )


# ----------------------------------------------------------------------------------------------
# The operators called by converted code


class Loop:
    """A loop whose body is being run: its kind (``"for"`` unrolled over a static iterable,
    ``"while"``, ``"fori"`` over a traced range), its state, and the exits of its soft breaks so
    far in this pass over the body, each a (condition, state at the break) in the running world."""

    def __init__(self, kind: str, get_state: Callable):
        self.kind = kind
        self.get_state = get_state
        self.branches = BRANCHES[0]
        self.exits: list[tuple[Any, tuple]] = []
        # A rolled loop with returns in it: (condition, value, where) of each, in the running world
        self.returns: list[tuple[Any, Any, str]] | None = None

    def __enter__(self):
        LOOPS.append(self)
        return self

    def __exit__(self, *exc):
        LOOPS.pop()


class InBranch:
    """Marks the tracing of the branches of a soft ``if`` (a break there is not the loop's)."""

    def __enter__(self):
        BRANCHES[0] += 1

    def __exit__(self, *exc):
        BRANCHES[0] -= 1


# ----------------------------------------------------------------------------------------------
# Python containers changed where a traced construct runs its blocks


_CONTAINERS = (list, dict, set, collections.deque, bytearray)
_MUTATORS = frozenset(
    {
        *("append", "appendleft", "extend", "extendleft", "insert", "pop", "popleft", "popitem"),
        *("remove", "discard", "add", "clear", "update", "setdefault", "sort", "reverse"),
        *("rotate", "intersection_update", "difference_update", "symmetric_difference_update"),
        *("__setitem__", "__delitem__", "__iadd__", "__imul__", "__ior__"),
    }
)


def _structure(container) -> Any:
    """What changes when an element is added or removed (not when one is replaced, which the
    converter tracks as a variable of its own, ``out[0]``)."""
    return frozenset(container) if isinstance(container, dict) else len(container)


def _restore(container, saved) -> None:
    if isinstance(container, dict | set):
        container.clear()
        container.update(saved)
    elif isinstance(container, collections.deque):
        container.clear()
        container.extend(saved)
    else:
        container[:] = saved


class SideEffects:
    """Watches the Python containers (lists, dicts, sets) that the blocks of a construct reach
    from outside while the construct runs them on traced values.

    A soft ``if`` traces both of its sides and a soft loop one step for all of them: a list
    appended to there would grow by what every side appends, traced values would escape, and its
    length cannot depend on a relaxed condition anyway. ``mode`` says what a change is:
    ``"refuse"`` a :class:`ConversionError` naming the container and the line; ``"unroll"`` (a
    loop being probed for rolling) ``on_change`` is called; ``"undo"`` (a block run abstractly
    and then for real) the containers are put back as they were.
    """

    def __init__(
        self,
        blocks: Sequence[Callable],
        what: str,
        where: str,
        mode: Literal["refuse", "unroll", "undo"] = "refuse",
        on_change: Callable[[str, str], None] | None = None,
    ):
        self.what, self.where, self.mode, self.on_change = what, where, mode, on_change
        self.names: dict[int, str] = {}
        self.saved: dict[int, tuple[Any, Any, Any]] = {}
        # The variables of enclosing functions that a function the blocks call may assign
        # (``nonlocal``), but not the construct's own, which the blocks' closures hold.
        self.cells: dict[int, tuple[Any, Any, str]] = {}
        # The containers reached only through a function the blocks call: an element replaced
        # there (``hits[0] = ...`` in a helper) is not a variable of the construct.
        self.foreign: set[int] = set()
        own = {id(cell) for block in blocks for cell in getattr(block, "__closure__", None) or ()}
        for block in blocks:
            _reachable(block, self.names, self.saved, 0, cells=self.cells, foreign=self.foreign)
        for key in own:
            self.cells.pop(key, None)
        for block in blocks:  # (a container the blocks name themselves is theirs)
            for cell in getattr(block, "__closure__", None) or ():
                self.foreign.discard(id(_contents(cell)))

    def __enter__(self):
        GUARDS.append(self)
        return self

    def __exit__(self, kind, *exc):
        GUARDS.pop()
        changed = self._grown()
        replaced = [i for i in self._replaced() if i not in changed]
        for i in changed + replaced:
            container, _, saved = self.saved[i]
            if self.mode != "refuse":
                _restore(container, saved)
        assigned = [  # (Python values assigned there are Python's business)
            (cell, before, name)
            for cell, before, name in self.cells.values()
            if _contents(cell) is not before and traced(_contents(cell))
        ]
        for cell, before, _ in assigned:
            cell.cell_contents = before  # (a traced value must not escape the construct)
        if assigned and kind is None and self.mode != "undo":
            self.assigned(assigned[0][2])
        if changed and kind is None and self.mode != "undo":
            self.changed(changed[0], "", self.where)
        if replaced and kind is None and self.mode != "undo":
            self.replaced(replaced[0])

    def _escaped(self, name: str, message: str) -> None:
        """A traced value set outside the construct by a function it calls: the loop being
        probed is unrolled (``"unroll"``), else refused with ``message``."""
        if self.mode == "unroll":
            assert self.on_change is not None
            self.on_change(name, self.where)
            return
        raise ConversionError(message)

    def assigned(self, name: str) -> None:
        """A variable of an enclosing function assigned by a function the construct calls."""
        self._escaped(
            name,
            f"sf.relax: the variable `{name}` of an enclosing function is assigned (nonlocal) by "
            f"a function called inside the {self.what} at {self.where}, which runs on a traced "
            "condition: both sides of a soft branch (every step of a soft loop) are traced and "
            "blended, and a value assigned there escapes them. Return the value from the "
            f"function and assign `{name}` in the {self.what} itself.",
        )

    def _grown(self) -> list[int]:
        return [i for i, (c, s, _) in self.saved.items() if _structure(c) != s]

    def _replaced(self) -> list[int]:
        return [i for i in self.foreign if _replaced_by_traced(self.saved[i][0], self.saved[i][2])]

    def check_grown(self) -> None:
        """Refuse a container grown by the blocks now, before a join of the blocks' states
        reads it with another length (``out += [y]`` on one side of a soft if)."""
        grown = self._grown()
        if grown and self.mode == "refuse":
            self.changed(grown[0], "", self.where)

    def check_replaced(self) -> None:
        """Report an element replaced by a traced value now, before a later trace reads it (a
        rolled loop's scan after its probe)."""
        replaced = self._replaced()
        for i in replaced:
            _restore(self.saved[i][0], self.saved[i][2])
        if replaced:
            self.replaced(replaced[0])

    def replaced(self, key: int) -> None:
        """An element of a container replaced by a traced value in a function the construct
        calls."""
        name = self.names[key]
        self._escaped(
            name,
            f"sf.relax: an element of the Python {type(self.saved[key][0]).__name__} `{name}` is "
            f"set to a traced value by a function called inside the {self.what} at "
            f"{self.where}, which runs on a traced condition: both sides of a soft branch (every "
            "step of a soft loop) are traced and blended, and a value set there escapes them. "
            f"Return the value from the function and set `{name}[...]` in the {self.what} "
            "itself.",
        )

    def changed(self, key: int, method: str, line: str) -> None:
        name = self.names[key]
        if self.mode == "unroll":
            assert self.on_change is not None
            self.on_change(name, line)
            return
        shown = f"`{name}.{method}(...)` at {line}" if method else f"`{name}`"
        raise ConversionError(
            f"sf.relax: the Python {type(self.saved[key][0]).__name__} {shown} is changed inside "
            f"the {self.what} at {self.where}, which runs on a traced condition: both sides of "
            "a soft branch (every step of a soft loop) run and are blended, so a Python "
            "container whose length depends on a relaxed condition cannot be relaxed. Give it a "
            "fixed length: append in every case and choose the value with jnp.where, or write "
            "into a preallocated array with x.at[i].set(...)."
        )


_UNSET = object()


def _contents(cell) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # not assigned yet
        return _UNSET


def _reachable(
    value,
    names: dict,
    saved: dict,
    depth: int,
    name: str = "",
    cells: dict | None = None,
    foreign: set | None = None,
    called: bool = False,
) -> None:
    """Record the containers reachable from a block: its closure, the globals it names, and the
    containers and closures inside those (a few levels deep); in ``cells``, the closure cells of
    the functions reached, with their contents; in ``foreign``, the containers first reached
    through a function the block calls (``called``), not through the block's own variables."""
    if depth > 3:
        return
    if isinstance(value, _CONTAINERS):
        if id(value) in saved:
            return
        names[id(value)] = name
        saved[id(value)] = (value, _structure(value), copy.copy(value))
        if called and foreign is not None:
            foreign.add(id(value))
        items = value.values() if isinstance(value, dict) else value
        if isinstance(value, list | dict | collections.deque):
            for k, item in enumerate(items):
                _reachable(item, names, saved, depth + 1, f"{name}[{k}]", cells, foreign, called)
    elif isinstance(value, tuple):
        for k, item in enumerate(value):
            _reachable(item, names, saved, depth + 1, f"{name}[{k}]", cells, foreign, called)
    elif isinstance(value, types.FunctionType):
        code = value.__code__
        inner = called or depth > 0
        for cell_name, cell in zip(code.co_freevars, value.__closure__ or (), strict=True):
            contents = _contents(cell)
            if cells is not None and id(cell) not in cells:
                cells[id(cell)] = (cell, contents, cell_name)
            if contents is not _UNSET:
                _reachable(contents, names, saved, depth + 1, cell_name, cells, foreign, inner)
        for global_name in _global_names(code):
            if global_name in value.__globals__:
                found = value.__globals__[global_name]
                _reachable(found, names, saved, depth + 1, global_name, cells, foreign, inner)


def _replaced_by_traced(container, before) -> bool:
    """Whether an element of a list or dict is now a traced value it was not before."""
    if isinstance(container, list | collections.deque):
        pairs = zip(container, before, strict=False)
    elif isinstance(container, dict):
        pairs = ((v, before.get(k)) for k, v in container.items())
    else:
        return False
    return any(new is not old and traced(new) for new, old in pairs)


def _global_names(code: types.CodeType) -> set[str]:
    found = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= _global_names(const)
    return found


def check_mutation(method) -> None:
    """Called before a converted call: refuse (or report) ``method`` when it changes a container
    watched by an enclosing :class:`SideEffects`."""
    container = getattr(method, "__self__", None)
    if not isinstance(container, _CONTAINERS) or getattr(method, "__name__", "") not in _MUTATORS:
        return
    for guard in reversed(GUARDS):
        if id(container) in guard.saved and guard.mode != "undo":
            guard.changed(id(container), method.__name__, caller_line())
            return


GUARDS: list[SideEffects] = []
ACTIVE: list[Any] = []  # the user's functions being called, outermost first (for recursion)
# True: Python for loops stay unrolled; False: rolled wherever that is the same program; None:
# rolled when longer than _syntax_rolling.SHORT_LOOP (relax's ``unroll`` option).
UNROLL: list[bool | None] = [None]
# True while a function runs on concrete arguments outside any trace (relax's hard mode): every
# value is concrete, so loop tests and breaks are Python's, evaluated as they are (evaluated
# abstractly, JAX would stage them as traced values).
EAGER = [False]
LOOPS: list[Loop] = []
BRANCHES = [0]
PROBING = [0]  # > 0 while _soft_exit traces the sides of an if to find which one exits
# The soft returns met inside loops, (condition, value, where, stacked), per converted function
# being run; stacked: the conditions and values of a rolled loop's returns, along axis 0.
RETURNS: list[list[tuple[Any, Any, str, bool]]] = []
# BRANCHES[0] where each converted function being run was called (a soft if's branch may call one)
SCOPE_BRANCHES: list[int] = []
