"""Rolling a Python ``for`` loop over a static range (or an array's leading axis) into one
``lax.scan``, when that runs the same program as unrolling it.

Unrolled, an n-step loop is n copies of its body, and with soft branches in it the reverse-mode
program XLA compiles grows faster than n. Rolled, the body is compiled once. A loop is rolled
only when the rolled program computes what the unrolled one does, bit for bit in hard mode:

* there is no ``break`` and no ``return`` in it (their exits are built by unrolling);
* it has more than :data:`SHORT_LOOP` iterations (or ``relax(unroll=False)``) and
  ``relax(unroll=True)`` was not asked for;
* its state has one type from one iteration to the next: the same static Python values, arrays
  of one shape and dtype, none of them a constant (relax computes with constants exactly, and a
  carried value is relaxed from the first iteration on). Up to two first iterations run as
  Python while this settles (``s = 0.0`` before the loop is a Python float, an array computed
  from the inputs after one iteration); a Python counter that changes in every iteration needs
  unrolling. (A constant made by JAX operations before the loop, such as ``jnp.zeros(3)``, is a
  traced value here and is carried: a condition on it alone in the first iteration is then
  relaxed where unrolled it would be exact. ``unroll=True`` keeps it exact.);
* a Python list of an enclosing scope that the body appends arrays to (``out.append(x)``, the
  same number in every pass, outside any branch on a traced condition) is not read in the loop:
  the scan stacks what each pass appends, and the list gets the rows after the loop, as unrolled
  it gets the items one by one;
* the index (a Python ``int`` unrolled, a traced ``int32`` rolled) is used as an integer only:
  indexing, integer arithmetic, comparisons, and turned into a float only where it meets a float
  array (``x * (i + 1)``, ``x > i``, as Python's ``int`` would). ``i * 0.1`` is float64
  arithmetic in Python but float32 arithmetic traced, ``x ** i`` repeated multiplication
  unrolled but ``pow`` rolled: such a body is unrolled. So is one that cannot run on a traced
  index at all (``weights[i]`` on a Python list, ``range(i)``, ``float(i)``): it fails while it
  is probed.
"""

import ast
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.extend.core import Jaxpr, Literal

from . import _jaxpr
from ._syntax_state import (
    GUARDS,
    LOOPS,
    UNROLL,
    Loop,
    SideEffects,
    caller_line,
    is_static,
    is_undefined,
    same_value,
)

#: Loops of at most this many iterations stay unrolled unless ``relax(unroll=False)``: they are
#: cheap to compile, and run faster unrolled.
SHORT_LOOP = 4

_INT32 = np.iinfo(np.int32)


class _Unroll(Exception):
    """The loop cannot be rolled; raised while probing its body."""


class _Settling(_Unroll):
    """The loop's state changes type in this iteration (a Python number that becomes an array,
    an array that gets its final shape): run it as Python, then try rolling the rest."""


#: How many first iterations may run as Python until the types of the state settle.
PEELED = 2


class Rows:
    """``enumerate(array)`` or ``zip(*arrays)`` over arrays' leading axes (and ranges) of one
    length, as a sequence of tuples: Python iterates it as it iterates ``enumerate`` / ``zip``,
    and a ``for`` loop over it can be rolled as one over an array's rows, at a traced position
    (:meth:`at`). A range is the first of its columns, if any: the rolled loop's index."""

    def __init__(self, columns: tuple):
        self.columns = columns

    @classmethod
    def of(cls, columns: tuple) -> "Rows | None":
        """The rows of ``columns`` (zip's arguments, up to the shortest), or None where they are
        not all arrays, ranges and rows, or a range is not the first of their leaves."""
        if not columns or not all(_column(c) for c in columns):
            return None
        n = min(len(c) for c in columns)
        rows = cls(tuple(c[:n] for c in columns))
        ranges = [isinstance(c, range) for c in rows.leaves()]
        return rows if not any(ranges[1:]) else None

    def leaves(self) -> list:
        return [leaf for c in self.columns for leaf in (c.leaves() if isinstance(c, Rows) else [c])]

    def __len__(self) -> int:
        return len(self.columns[0])

    def __getitem__(self, k):
        if isinstance(k, slice):
            return Rows(tuple(c[k] for c in self.columns))
        return tuple(c[k] for c in self.columns)

    def __iter__(self):
        return zip(*self.columns, strict=True)

    def at(self, k) -> tuple:
        """The item at a traced position."""
        return tuple(_item(c, k) for c in self.columns)

    def scanned(self) -> tuple:
        """What ``lax.scan`` runs over: each column's items along axis 0."""
        return tuple(_items(c) for c in self.columns)


def _item(column, k):
    if isinstance(column, range):
        return column.start + k * column.step
    return column.at(k) if isinstance(column, Rows) else column[k]


def _items(column):
    if isinstance(column, range):
        return np.asarray(column, np.int32)
    return column.scanned() if isinstance(column, Rows) else column


def _column(value) -> bool:
    if isinstance(value, range):
        return all(_INT32.min <= v <= _INT32.max for v in value[:: max(len(value) - 1, 1)])
    return isinstance(value, Rows) or (isinstance(value, jax.Array) and value.ndim >= 1)


def _unroll(name: str, where: str) -> None:
    raise _Unroll(f"the container {name} is changed at {where}")


def rolled_for(
    iter_, extra_test, body: Callable, get_state, set_state, symbol_names, targets: str
) -> bool:
    """Run ``for item in iter_: body(item)``, its loop rolled into one ``lax.scan`` where that
    is the same program (after up to two first iterations run as Python, while the state's
    types settle), and return True; return False, having changed nothing, when the whole loop
    must be unrolled. ``targets``: the loop's target as written (``i``, ``k, (a, b)``)."""
    policy = UNROLL[0]
    if policy is True or extra_test is not None:
        return False
    if any(n == "do_return" or n.startswith("break_") for n in symbol_names):
        return False
    if isinstance(iter_, range):
        if len(iter_) and not all(_INT32.min <= v <= _INT32.max for v in (iter_[0], iter_[-1])):
            return False
    elif not (isinstance(iter_, Rows) or (isinstance(iter_, jax.Array) and iter_.ndim >= 1)):
        return False
    # A short loop inside an unrolled one repeats with it: unrolled, the nest's program grows
    # with the product of their trip counts (a 2 x 4 scheduler with soft ifs compiled its
    # gradient in 21 s, 6 s with the inner loop rolled).
    nested = any(loop.kind == "for" for loop in LOOPS)
    shortest = 1 if policy is False or nested else SHORT_LOOP
    where = caller_line()
    done = 0
    for done in range(PEELED + 1):
        rest = iter_[done:]
        if len(rest) <= shortest:
            break
        try:
            _roll(rest, body, get_state, set_state, where, _positions(symbol_names, targets))
            return True
        except _Settling:
            if done == PEELED:
                break
        except Exception:  # what a traced index cannot do: unroll (which raises the real errors)
            break
        with Loop("for", get_state):  # this iteration as Python
            body(rest[0])
    if done == 0:
        return False
    with Loop("for", get_state):
        for item in iter_[done:]:
            body(item)
    return True


def _positions(symbol_names, targets: str) -> frozenset[int]:
    """The positions in the loop's state of the names its target binds."""
    names = {
        n.id for n in ast.walk(ast.parse(targets or "_", mode="eval")) if isinstance(n, ast.Name)
    }
    return frozenset(k for k, name in enumerate(symbol_names) if name in names)


def _roll(iter_, body: Callable, get_state, set_state, where: str, targets: frozenset) -> None:
    """The loop as one ``lax.scan``; _Unroll (the state as before) where it cannot be. A Python
    list of an enclosing function that the body appends to stands in the body's closure as an
    :class:`Appended` while the loop is traced: the scan stacks what each pass appends, and the
    list is extended with its rows after the loop. A list the body reads is left as it is (a
    body that also appends to it is unrolled)."""
    read: set[str] = set()
    while True:
        cells = _appended_cells(body, tuple(get_state()), read)
        try:
            return _roll_with(iter_, body, get_state, set_state, where, cells, targets)
        except _ListRead as error:
            if error.name not in cells:  # an enclosing rolled loop's list
                raise
            read.add(error.name)


def _appended_cells(body: Callable, state: tuple, read: set[str]) -> dict:
    """The closure cells of ``body`` that hold a list it may append to (not one of the loop's
    variables, not one of ``read``), by name."""
    if not {"append", "extend"} & _attribute_names(body.__code__):
        return {}
    found = {}
    for name, cell in zip(body.__code__.co_freevars, body.__closure__ or (), strict=True):
        try:
            contents = cell.cell_contents
        except ValueError:  # not assigned yet
            continue
        appendable = type(contents) in (list, Appended) and name not in read
        if appendable and not any(contents is value for value in state):
            found[name] = cell
    return found


def _attribute_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, type(code)):
            names |= _attribute_names(const)
    return names


def _roll_with(
    iter_, body: Callable, get_state, set_state, where: str, cells: dict, targets: frozenset
) -> None:
    xs = np.asarray(iter_, np.int32) if isinstance(iter_, range) else iter_
    if isinstance(iter_, Rows):
        xs = iter_.scanned()
    is_index = isinstance(iter_, range) or (
        isinstance(iter_, Rows) and isinstance(iter_.leaves()[0], range)
    )
    init = tuple(get_state())
    lists = {name: cell.cell_contents for name, cell in cells.items()}
    appended = {name: Appended(name) for name in cells}
    for name, cell in cells.items():
        cell.cell_contents = appended[name]
    try:
        with SideEffects([body], "for loop", where, mode="unroll", on_change=_unroll) as guard:
            if any(id(v) in guard.saved for v in lists.values()):
                raise _Unroll("a list the loop appends to is also reached another way")
            for recorder in appended.values():
                recorder.guard = guard
            recorders = list(appended.values())
            carried, carry_init, iterate, structures = _probe(
                xs, is_index, body, get_state, set_state, init, recorders, targets
            )
            guard.check_replaced()

            def step(carry, item):
                state = list(init)
                for k, value in zip(carried, carry, strict=True):
                    state[k] = value
                set_state(tuple(state))
                with Loop("rolled", get_state):
                    body(item)
                after = tuple(get_state())
                rows = [recorder.taken() for recorder in appended.values()]
                if [_structures(r) for r in rows] != structures:
                    raise _Unroll("the passes of the loop append differently")
                return [after[k] for k in carried], rows

            with jax.named_scope(f"for_at_{where}"):
                carry, stacked = jax.lax.scan(step, carry_init, xs)
    except Exception:
        set_state(init)
        raise
    finally:
        for name, cell in cells.items():
            cell.cell_contents = lists[name]
    final = list(init)
    for k, value in zip(carried, carry, strict=True):
        final[k] = value
    for k in iterate:  # Python's loop variable keeps the last item
        final[k] = iter_[-1]
    for target, rows in zip(lists.values(), stacked, strict=True):
        for t in range(len(iter_)):
            for row in rows:
                target.append(jax.tree_util.tree_map(lambda leaf, t=t: leaf[t], row))
    set_state(tuple(final))


class _ListRead(_Unroll):
    """A list that :func:`_roll` stood in for is read in the loop: roll it again without."""

    def __init__(self, name: str):
        super().__init__(f"the list {name} is read in the loop")
        self.name = name


class Appended:
    """A Python list that a loop being rolled appends to, in the body's closure: it records what
    one pass appends (``append``, ``extend``); any other use of the list (its length, an item,
    the list itself) raises :class:`_ListRead`, since in a rolled pass it would not hold what
    the iterations before appended. An append inside a branch on a traced condition raises
    _Unroll (the loop is unrolled, and the branch refuses it with its own message)."""

    def __init__(self, name: str):
        self.name = name
        self.guard: SideEffects | None = None
        self.items: list = []

    def append(self, value) -> None:
        if not GUARDS or GUARDS[-1] is not self.guard:
            raise _Unroll(f"{self.name} is appended to inside a construct of the loop")
        if not all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(value)):
            raise _Unroll(f"a value that is not an array is appended to {self.name}")
        self.items.append(value)

    def extend(self, values) -> None:
        for value in values:
            self.append(value)

    def taken(self) -> list:
        """What was appended since the last call."""
        items, self.items = self.items, []
        return items

    def _read(self, *args, **kwargs):
        raise _ListRead(self.name)

    def __eq__(self, other) -> bool:
        return self is other if isinstance(other, Appended) else self._read()

    __hash__ = object.__hash__
    __len__ = __iter__ = __getitem__ = __contains__ = __bool__ = __reversed__ = _read
    __add__ = __radd__ = __mul__ = __rmul__ = __iadd__ = __copy__ = __deepcopy__ = _read

    def __getattr__(self, name: str):
        return self._read()


def _structures(items: list) -> list:
    return [jax.tree_util.tree_structure(item) for item in items]


def _probe(
    xs, is_index: bool, body: Callable, get_state, set_state, init: tuple, appended, targets
):
    """Trace one pass of the body on a traced item. Returns the positions of the variables the
    scan carries, their initial arrays, the positions that hold the item itself (Python's loop
    variable, live after the loop: one of ``targets``, not a variable set to it, ``j = i``,
    which the next pass reads) and the structures of what the pass appends to each list of
    ``appended``."""
    arrays_at = [k for k, v in enumerate(init) if not (is_static(v) or is_undefined(v))]
    after: list = []
    iterate: list[int] = []
    outputs: list[int] = []  # the state positions of the probe's outputs after the item
    structures: list[list] = []

    def one_pass(item, *arrays):
        state = list(init)
        for k, value in zip(arrays_at, arrays, strict=True):
            state[k] = value
        set_state(tuple(state))
        with Loop("rolled", get_state):
            body(item)
        after[:] = get_state()
        iterate[:] = [k for k, v in enumerate(after) if v is item and k in targets]
        outputs[:] = [k for k, v in enumerate(after) if not (is_static(v) or is_undefined(v))]
        rows = [recorder.taken() for recorder in appended]
        structures[:] = [_structures(r) for r in rows]
        # (what is appended leaves the pass as the carried values do: not the index itself)
        leaves = jax.tree_util.tree_leaves
        return [*leaves(item), *(after[k] for k in outputs), *leaves(rows)]

    item_type = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), xs)
    try:
        closed = jax.make_jaxpr(one_pass)(item_type, *(init[k] for k in arrays_at))
    finally:
        set_state(init)
    n_item = len(jax.tree_util.tree_leaves(item_type))
    avals = dict(zip(outputs, closed.out_avals[n_item : n_item + len(outputs)], strict=True))
    carried, carry_init = [], []
    for k, (before, now) in enumerate(zip(init, after, strict=True)):
        if k in iterate:
            continue
        if k not in avals:
            if is_undefined(before) and is_undefined(now):
                continue
            if is_undefined(before) != is_undefined(now) or not same_value(before, now):
                raise _Settling("a Python value changes from one iteration to the next")
            continue
        if not (is_undefined(before) or isinstance(before, Tracer)):
            # A constant before the loop: unrolled, the first iteration computes with it exactly
            # (relax keeps what depends on no input exact); carried, it would be relaxed.
            raise _Settling("a variable is a constant before the loop")
        carried.append(k)
        carry_init.append(_carry_init(before, avals[k]))
    allowed = [n_item + outputs.index(k) for k in iterate]
    if is_index and not index_used_exactly(closed.jaxpr, allowed):
        raise _Unroll("the index is used as a float, or carried out of the body")
    return carried, carry_init, iterate, structures


def _carry_init(value, aval) -> jax.Array:
    """``value`` (the variable before the loop) as the scan's initial carry of type ``aval`` (its
    type after one pass); _Unroll where that conversion would change the program."""
    if is_undefined(value):  # assigned in the body before it is read: any value of its type
        value = jnp.zeros(aval.shape, aval.dtype) if not aval.weak_type else aval.dtype.type(0)
    array = jnp.asarray(value)
    if array.shape != aval.shape:
        raise _Settling("a variable changes shape in the loop")
    if aval.weak_type:
        if array.dtype != aval.dtype or not array.weak_type:
            raise _Settling("a weakly typed variable would change type")
        return array
    if jnp.result_type(array.dtype, aval.dtype) != aval.dtype:
        raise _Settling("a variable changes dtype in the loop")
    return jnp.asarray(array, aval.dtype)


# ----------------------------------------------------------------------------------------------
# Is the index used as a Python int would be?

_MEETS_ARRAY = ("mul", "add", "sub", "div", "max", "min", "lt", "le", "gt", "ge", "eq", "ne")
# Operations whose float results an integer index only selects: the same numbers either way.
_INDEXING = (
    "dynamic_slice",
    "dynamic_update_slice",
    "gather",
    "select_n",
    "scatter",
    "scatter-add",
)


def index_used_exactly(jaxpr: Jaxpr, allowed_outputs) -> bool:
    """Whether the jaxpr's first input, the loop index, computes the same numbers as a Python
    ``int`` would: it flows through integer and boolean operations and indexing, and is turned
    into a float only to meet a float array at once. Only ``allowed_outputs`` (the loop variable
    itself) may carry it out of the body."""
    tainted, converted = {jaxpr.invars[0]}, set()
    if not _walk(jaxpr, tainted, converted):
        return False
    return not any(
        position not in allowed_outputs
        and not isinstance(var, Literal)
        and (var in tainted or var in converted)
        for position, var in enumerate(jaxpr.outvars)
        if position > 0
    )


def _walk(jaxpr: Jaxpr, tainted: set, converted: set) -> bool:
    """Follow the index through ``jaxpr``: ``tainted`` holds the integers and truth values that
    depend on it, ``converted`` those turned into floats; False at a use that Python's int would
    compute differently."""
    for eqn in jaxpr.eqns:
        ins = [v for v in eqn.invars if not isinstance(v, Literal)]
        if any(v in converted for v in ins):
            if not _meets_array(eqn, tainted, converted):
                return False
            continue
        if not any(v in tainted for v in ins):
            continue
        if eqn.primitive.name == "convert_element_type" and _floating(eqn.outvars[0]):
            if getattr(eqn.outvars[0].aval, "weak_type", False):
                return False  # i * 0.1: float64 arithmetic in Python
            converted.add(eqn.outvars[0])
            continue
        if eqn.primitive.name == "scan":  # an inner rolled loop
            if not _walk_scan(eqn, tainted):
                return False
            continue
        inners = _inner(eqn)
        if inners is None:  # also while loops: their float results are refused, integers followed
            if any(_floating(out) for out in eqn.outvars) and eqn.primitive.name not in _INDEXING:
                return False  # pow(x, i): x ** 3 unrolled is a product, not pow
            tainted.update(out for out in eqn.outvars if not _floating(out))
            continue
        if eqn.primitive.name == "cond" and eqn.invars[0] in tainted:
            tainted.update(out for out in eqn.outvars if not _floating(out))
        for inner, operands in inners:
            inner_tainted = {
                iv
                for iv, ov in zip(inner.invars, operands, strict=True)
                if not isinstance(ov, Literal) and ov in tainted
            }
            inner_converted: set = set()
            if not _walk(inner, inner_tainted, inner_converted):
                return False
            for inner_out, out in zip(inner.outvars, eqn.outvars, strict=True):
                if isinstance(inner_out, Literal):
                    continue
                if inner_out in inner_converted:
                    return False
                if inner_out in inner_tainted:
                    tainted.add(out)
    return True


def _walk_scan(eqn, tainted: set) -> bool:
    """:func:`_walk` through a ``scan``: its body sees the index in its constants, and in the
    carries it feeds back, until those are known."""
    scan = _jaxpr.scan(eqn)
    body, consts, carries = scan.body.jaxpr, scan.num_consts, scan.num_carry
    seen = {
        iv
        for iv, ov in zip(body.invars, eqn.invars, strict=True)
        if not isinstance(ov, Literal) and ov in tainted
    }
    while True:
        inner_tainted, inner_converted = set(seen), set()
        if not _walk(body, inner_tainted, inner_converted):
            return False
        outs = [v for v in body.outvars if not isinstance(v, Literal)]
        if any(v in inner_converted for v in outs):
            return False
        fed = {
            body.invars[consts + k]
            for k, v in enumerate(body.outvars[:carries])
            if not isinstance(v, Literal) and v in inner_tainted
        }
        if fed <= seen:
            break
        seen |= fed
    for inner_out, out in zip(body.outvars, eqn.outvars, strict=True):
        if not isinstance(inner_out, Literal) and inner_out in inner_tainted:
            tainted.add(out)
    return True


def _floating(var) -> bool:
    return jnp.issubdtype(var.aval.dtype, jnp.inexact)


def _meets_array(eqn, tainted: set, converted: set) -> bool:
    """A converted index meets, in one arithmetic operation or comparison, a float array that is
    neither a literal nor weakly typed nor derived from the index: Python's int would be
    converted the same way there."""
    if eqn.primitive.name not in _MEETS_ARRAY or len(eqn.invars) != 2:
        return False
    others = [v for v in eqn.invars if isinstance(v, Literal) or v not in converted]
    if len(others) != 1 or isinstance(others[0], Literal):
        return False
    other = others[0]
    return _floating(other) and not other.aval.weak_type and other not in tainted


def _inner(eqn) -> list[tuple[Jaxpr, list]] | None:
    """The inner jaxprs of ``eqn`` with the operands they take, for calls, custom derivatives,
    ``checkpoint`` and the branches of ``cond``; None for other equations."""
    name = eqn.primitive.name
    if _jaxpr.is_call(eqn):
        return [(_jaxpr.call_body(eqn).jaxpr, list(eqn.invars))]
    if name in ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
        body = _jaxpr.custom_body(eqn).jaxpr
        return [(body, list(eqn.invars))] if len(body.invars) == len(eqn.invars) else None
    if name in ("remat2", "checkpoint"):
        return [(_jaxpr.remat(eqn).body, list(eqn.invars))]
    if name == "cond":
        return [(b.jaxpr, list(eqn.invars[1:])) for b in _jaxpr.cond_branches(eqn)]
    return None
