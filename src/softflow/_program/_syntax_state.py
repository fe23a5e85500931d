"""The state of a Python function being converted for :func:`softflow.relax`: how the variables
of branches and loops are joined, and which loops and branches are being traced.

Converted code calls the operators of ``_syntax_branches`` and ``_syntax_loops`` with getters and
setters of the variables a statement modifies (malt's liveness analysis finds them). Static
values (Python numbers, flags, shapes) stay Python values; traced ones go through the JAX
control-flow primitive.
"""

import inspect
from collections.abc import Callable, Sequence
from typing import Any

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


def is_static(value) -> bool:
    arrays = jax.Array | np.ndarray | np.generic | jax.ShapeDtypeStruct
    return not isinstance(value, arrays) and not traced(value)


def run_block(block: Callable, set_state: Callable, get_state: Callable, init: tuple) -> tuple:
    set_state(init)
    block()
    return tuple(get_state())


class Merge:
    """How the states of two branches (or a loop's state before and after its body) are joined.

    Each symbol is either static (the same Python value on both sides, kept as it is) or an array
    of a common dtype, which goes through the JAX control-flow primitive.
    """

    def __init__(self, names: Sequence[str], sides: Sequence[tuple], where: str, what: str):
        self.static: list[Any] = []
        self.dtypes: list[Any] = []
        for i, name in enumerate(names):
            values = [side[i] for side in sides]
            undefined = [is_undefined(v) for v in values]
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
            same = all(is_static(v) for v in values) and all(
                same_value(values[0], v) for v in values
            )
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


def same_value(a, b) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # values without a truth value of ==: not the same static value
        return a is b


def abstract_state(block: Callable) -> tuple:
    """Run ``block`` abstractly: the types of its array results, its static results as they are."""
    static: list = []

    def arrays():
        state = block()
        static.extend(v if is_static(v) or is_undefined(v) else None for v in state)
        return [None if is_static(v) or is_undefined(v) else v for v in state]

    shapes = jax.eval_shape(arrays)
    return tuple(s if a is None else a for s, a in zip(static, shapes, strict=True))


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


LOOPS: list[Loop] = []
BRANCHES = [0]
PROBING = [0]  # > 0 while _soft_exit traces the sides of an if to find which one exits
# The soft returns met inside loops, (condition, value), per converted function being run.
RETURNS: list[list[tuple[Any, Any, str]]] = []
