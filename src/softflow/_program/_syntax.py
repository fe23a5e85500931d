"""Python control flow for :func:`softflow.relax`: convert ``if`` / ``while`` / ``for`` to JAX.

JAX cannot trace ``if x > t:`` on a traced ``x``. :func:`convert` rewrites a function's source with
diastatic-malt (the standalone AutoGraph) into calls of the operators of ``_syntax_branches`` and
``_syntax_loops``, which keep Python's behaviour on static values (Python numbers, shapes, flags)
and emit ``lax.cond``, ``lax.while_loop``, ``jnp.where`` and boolean logic on traced ones;
:func:`softflow.relax` then relaxes those like any other program. Functions called by a converted
function are converted when they are called, except JAX, NumPy, softflow and the libraries listed
in ``_NOT_CONVERTED``.

A ``break`` on a traced condition is not a flag blended into the loop's state (that mixes stopped
and running states in every later iteration): each break records its condition and the state at
the break, and the loop's result is the nested select over those exits, which relax turns into
the mixture of ``soft_fori_loop``.

diastatic-malt was chosen over a hand-written AST rewriter because it already solves the hard parts
(which variables a branch or loop modifies, the lowering of ``break`` / ``continue`` / ``return``,
``nonlocal`` closures, source maps for error messages) and is maintained as a library for exactly
this use (PennyLane Catalyst); its operator namespace is replaced here, not patched globally.

This module depends on the markers, the errors and the source registry only, never on the
interpreter: conversion produces an ordinary JAX function.
"""

import ast
import dis
import functools
import importlib.util
import inspect
import os
import textwrap
import types
from collections.abc import Callable, Iterator
from typing import Any, cast

import jax
import jax.numpy as jnp
from malt import operators as _malt_operators
from malt.core import converter as _converter
from malt.impl import api as _api
from malt.pyct import parser as _parser, templates as _templates

from ._errors import ConversionError
from ._source import register_converted_lines
from ._syntax_branches import (
    FunctionScope,
    and_,
    if_exp,
    if_stmt,
    not_,
    or_,
)
from ._syntax_filters import (
    ComprehensionConditions,
    Filtered,
    comprehension_condition,
    kept,
    reduce_filtered,
)
from ._syntax_loop_else import LoopElseAsFlags, else_flag, loop_else
from ._syntax_loops import TracedRange, for_stmt, while_stmt
from ._syntax_match import MatchAsIfs, check as check_match
from ._syntax_rolling import Rows
from ._syntax_state import (
    ACTIVE,
    BRANCHES,
    EAGER,
    LOOPS,
    PROBING,
    UNROLL,
    caller_line,
    check_mutation,
    condition_of,
    traced,
)

# Modules whose functions are called as they are: they are JAX (or act on static values), and
# softflow's own functions are already relaxed.
_NOT_CONVERTED = ("jax", "jaxlib", "equinox", "optax", "numpy", "softflow", "malt", "builtins")


def _library_dirs() -> tuple[str, ...]:
    dirs = []
    for name in _NOT_CONVERTED:
        spec = importlib.util.find_spec(name) if name != "builtins" else None
        dirs.extend(
            os.path.realpath(d) + os.sep for d in (spec and spec.submodule_search_locations) or ()
        )
    return tuple(dirs)


_LIBRARY_DIRS = _library_dirs()


def _not_converted(fn) -> bool:
    """Functions of the libraries in ``_NOT_CONVERTED``, by their module or, for a wrapper that
    copied a user function's ``__module__`` (``jax.vmap(f)``), by the file of their code."""
    code = getattr(fn, "__code__", None)
    if code is not None and os.path.realpath(code.co_filename).startswith(_LIBRARY_DIRS):
        return True
    module = getattr(inspect.getmodule(fn), "__name__", None) or getattr(fn, "__module__", None)
    if not isinstance(module, str):
        return False
    return module.split(".")[0] in _NOT_CONVERTED


def converted_call(f, args, kwargs, caller_fn_scope=None, options=None):
    """Call ``f``, converted first when it is a Python function of the user's."""
    del caller_fn_scope, options
    kwargs = kwargs or {}
    check_mutation(f)
    if args and isinstance(args[0], Filtered):  # (a comprehension filtered by its if)
        return reduce_filtered(f, args[0], args[1:], kwargs, converted_call)
    if f is range and traced(args):
        return TracedRange(*args)
    if (f is enumerate and not kwargs) or (f is zip and set(kwargs) <= {"strict"}):
        rows = _rows(f, args, kwargs.get("strict", False))
        if rows is not None:  # (a loop over it may be rolled, as one over an array's rows)
            return rows
    if (f is any or f is all) and len(args) == 1 and not kwargs:
        return _any_or_all(f, list(args[0]))
    if (f is max or f is min or f is sorted) and len(args) == 1 and isinstance(args[0], Iterator):
        args = (list(args[0]),)  # a generator: its items, to see whether they are traced
    try:
        builtin = _BUILTINS.get(f)
    except TypeError:  # (an unhashable callable: an equinox Module holding arrays)
        builtin = None
    if builtin is not None and traced((args, kwargs)):
        return builtin(f, args, kwargs)
    target = f.func if isinstance(f, functools.partial) else f
    if target is f and _called_object(f):
        return converted_call(f.__call__, args, kwargs)  # (its method, converted)
    if _api.is_autograph_artifact(target) or _not_converted(target) or not _convertible(target):
        return _call_as_is(f, args, kwargs)
    if isinstance(f, functools.partial):
        return converted_call(f.func, (*f.args, *args), {**f.keywords, **kwargs})
    converted = convert(f)
    # The loops and branches being traced belong to the caller: a break or return in the callee
    # exits the callee, which returns one (mixed) value to the caller.
    outer = (LOOPS[:], BRANCHES[0], PROBING[0])
    LOOPS.clear()
    BRANCHES[0] = PROBING[0] = 0
    key = getattr(f, "__func__", f)
    ACTIVE.append(key)
    try:
        return converted(*args, **kwargs)
    except RecursionError:
        if ACTIVE.count(key) > 1:
            raise  # not the outermost call of the recursion: unwind to it
        code = getattr(key, "__code__", None)
        defined = f" ({code.co_filename}:{code.co_firstlineno})" if code else ""
        raise ConversionError(
            f"sf.relax: {getattr(f, '__qualname__', f)}{defined} calls itself without end: "
            "recursion is traced, and a recursion that stops on a traced "
            "condition never stops (both sides of a soft if run). Write it as a while loop; "
            "recursion that stops on Python values (a depth argument) is fine."
        ) from None
    finally:
        ACTIVE.pop()
        LOOPS[:] = outer[0]
        BRANCHES[0], PROBING[0] = outer[1], outer[2]


def _call_as_is(f, args, kwargs):
    """``f(*args, **kwargs)``; a JAX error about a traced value used as a Python value, raised
    inside a function that is not converted (one wrapped by ``jax.vmap``, ``jax.grad``, ...),
    names the user's line."""
    try:
        return f(*args, **kwargs)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError) as error:
        if not _wraps_user_code(f):
            raise
        name = getattr(f, "__qualname__", repr(f))
        raise ConversionError(
            f"sf.relax: {name}, called at {caller_line()}, is wrapped by a JAX transformation "
            "(jax.vmap, jax.grad, jax.jit, ...), so its Python control flow is not converted, "
            "and it used a traced value as a Python value. Write that part with jnp.where / "
            f"lax.cond, or apply the transformation outside the relaxed function. ({error})"
        ) from None


def _wraps_user_code(f) -> bool:
    inner = inspect.unwrap(f)
    inner = inner.func if isinstance(inner, functools.partial) else inner
    return inner is not f and not _not_converted(inner)


def call_converted(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` with ``fn`` (and what it calls) converted from Python syntax."""
    return converted_call(fn, args, kwargs)


def call_converted_with(fn: Callable, unroll: bool | None, eager: bool, *args, **kwargs):
    """:func:`call_converted` with ``relax``'s ``unroll`` policy for Python ``for`` loops;
    ``eager``: on concrete arguments outside any trace, where Python's control flow runs as
    Python (and loops are not rolled)."""
    outer = UNROLL[0], EAGER[0]
    UNROLL[0], EAGER[0] = (True, True) if eager else (unroll, False)
    try:
        return converted_call(fn, args, kwargs)
    finally:
        UNROLL[0], EAGER[0] = outer


# ----------------------------------------------------------------------------------------------
# Builtins on traced values


def _fold(choose: Callable) -> Callable:
    """``max`` / ``min`` on traced values, with Python's semantics: the first of the extreme
    items wins; NaN, -0.0 and ties are kept where Python keeps them (``max(a, b)`` is ``b if b >
    a else a``), as a ``jnp.where`` of a comparison, which relax relaxes."""

    def fold(f, args, kwargs):
        if kwargs or not args:
            return f(*args, **kwargs)  # key= / default=: Python's own (an error if traced)
        items = list(args[0]) if len(args) == 1 else list(args)
        if not items:
            return f(*args)
        best = items[0]
        for item in items[1:]:
            best = jnp.where(choose(jnp.asarray(item), jnp.asarray(best)), item, best)
        return best

    return fold


def _sorted(f, args, kwargs):
    """``sorted`` of traced numbers: ``jnp.sort`` of them (relaxed to a soft sort), as a list;
    with ``reverse=True`` descending. A ``key`` is Python's own (an error on traced values)."""
    reverse = kwargs.get("reverse", False)
    if len(args) != 1 or set(kwargs) - {"reverse"} or not isinstance(reverse, bool):
        return f(*args, **kwargs)
    items = [jnp.asarray(item) for item in args[0]]
    if not items or any(item.shape != () for item in items):
        return f(*args, **kwargs)
    ordered = jnp.sort(jnp.stack(items))
    return list(ordered[::-1] if reverse else ordered)


def _python_number(f, args, kwargs):
    raise ConversionError(
        f"sf.relax: {f.__name__}() of a traced value at {caller_line()}: a relaxed function is "
        "traced, so its values are not Python numbers. Keep it an array: x.astype(int) or "
        "jnp.floor(x).astype(int) for int(), x.astype(float) for float(), x > 0 (a truth "
        "value) for bool(), jnp.round(x) for round()."
    )


def _any_or_all(f, items: list):
    """``any`` / ``all`` of the items (a generator is consumed once, here); of traced truth
    values their logical or / and, which relax relaxes, with Python's truth of each item (a
    number is true when it is not 0)."""
    if not traced(items):
        return f(items)
    truths = [condition_of(item, f"{f.__name__}()") for item in items]
    return (jnp.any if f is any else jnp.all)(jnp.stack(truths))


_BUILTINS: dict[Any, Callable] = {
    max: _fold(lambda item, best: item > best),
    min: _fold(lambda item, best: item < best),
    sorted: _sorted,
    int: _python_number,
    float: _python_number,
    bool: _python_number,
    round: _python_number,
}


def _rows(f, args: tuple, strict: bool) -> Rows | None:
    """``enumerate(array[, start])`` or ``zip(*arrays)`` as :class:`Rows`, or None (also where
    ``zip(..., strict=True)`` would raise: Python's zip then raises)."""
    if f is zip:
        rows = Rows.of(args)
        return rows if rows is None or not strict or len({len(a) for a in args}) == 1 else None
    if len(args) in (1, 2) and isinstance(args[0], jax.Array | Rows):
        start = args[1] if len(args) == 2 else 0
        if type(start) is int:
            return Rows.of((range(start, start + len(args[0])), args[0]))
    return None


def _called_object(obj) -> bool:
    """An instance of a class whose ``__call__`` is a Python function (a model object)."""
    if isinstance(obj, type) or inspect.isroutine(obj):
        return False
    try:
        method = type(obj).__call__
    except AttributeError:
        return False
    return inspect.isfunction(method)


def _convertible(fn) -> bool:
    """Python functions and methods; builtins, classes and other callables run as they are."""
    return inspect.isfunction(fn) or inspect.ismethod(fn)


# ----------------------------------------------------------------------------------------------
# The converter


def _always_returns(block: list) -> bool:
    """Whether every path through the statements ``block`` ends in a ``return``."""
    if not block:
        return False
    last = block[-1]
    if isinstance(last, ast.Return):
        return True
    return isinstance(last, ast.If) and _always_returns(last.body) and _always_returns(last.orelse)


def _hoisted(block: list) -> list:
    """``if c: ... return`` with an ``else`` that does not return on every path, written as the
    ``if`` without ``else`` followed by what the ``else`` held: the same Python program (an
    ``elif`` chain of returns with the last ``return`` after it). The converter then meets a
    sequence of returns on soft conditions, each an exit of the function, rather than a return
    nested in the other side of a soft ``if``, which it cannot blend."""
    out = []
    for statement in block:
        _hoist_within(statement)
        if (
            isinstance(statement, ast.If)
            and statement.orelse
            and _always_returns(statement.body)
            and not _always_returns(statement.orelse)
        ):
            rest, statement.orelse = statement.orelse, []
            out += [statement, *rest]
        else:
            out.append(statement)
    return out


def _hoist_within(node: ast.AST) -> None:
    """:func:`_hoisted` applied to every list of statements inside ``node``, in place."""
    for field, value in ast.iter_fields(node):
        if isinstance(value, list):
            if value and all(isinstance(v, ast.stmt) for v in value):
                setattr(node, field, _hoisted(value))
            else:
                for item in value:
                    if isinstance(item, ast.AST):
                        _hoist_within(item)
        elif isinstance(value, ast.AST):
            _hoist_within(value)


class _InnerConditionalExpressions(ast.NodeTransformer):
    """malt converts the outermost of nested conditional expressions only (it does not look
    inside the one it converts): ``a if c else (b if d else e)`` kept its inner one, a Python
    ``if`` on a traced value. This converts those left, innermost first, as malt does."""

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        node = cast(ast.IfExp, self.generic_visit(node))
        return _templates.replace_as_expression(
            "ag__.if_exp(test, lambda: true_expr, lambda: false_expr, expr_repr)",
            test=node.test,
            true_expr=node.body,
            false_expr=node.orelse,
            expr_repr=ast.Constant(
                _parser.unparse(node.test, include_encoding_marker=False).strip()
            ),
        )


class _Transformer(_api.PyToPy):
    """malt's source transformer with softflow's operators in place of malt's, after
    :func:`_hoisted` and with comprehensions' conditions checked, and with every conditional
    expression converted."""

    def transform_ast(self, node, ctx):
        node = cast(ast.AST, LoopElseAsFlags().visit(MatchAsIfs().visit(node)))
        _hoist_within(node)
        node = super().transform_ast(ComprehensionConditions().visit(node), ctx)
        return _InnerConditionalExpressions().visit(cast(ast.AST, node))

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
                "comprehension_condition": comprehension_condition,
                "kept": kept,
                "Filtered": Filtered,
                "else_flag": else_flag,
                "loop_else": loop_else,
                "and_": and_,
                "or_": or_,
                "not_": not_,
                "converted_call": converted_call,
                "FunctionScope": FunctionScope,
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


_BRANCHING = (ast.If, ast.While, ast.For, ast.IfExp, ast.BoolOp, ast.Match)


def _check_supported(fn: Callable, code: types.CodeType) -> None:
    """Refuse control flow inside ``try`` (a soft branch runs both of its sides, so an exception
    raised on one side would be handled for the blend of both) and assignments to globals."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):  # no parsable source: malt reports it
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            line = code.co_firstlineno + node.lineno - 1
            raise ConversionError(
                f"sf.relax: {getattr(fn, '__qualname__', fn)} assigns the global variable(s) "
                f"{', '.join(node.names)} at {code.co_filename}:{line}: a relaxed function is "
                "traced, and a traced value stored in a global escapes the trace (JAX's "
                "UnexpectedTracerError later). Return the value instead."
            )
        if isinstance(node, ast.Match):
            check_match(node, f"{code.co_filename}:{code.co_firstlineno + node.lineno - 1}")
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
    register_converted_lines(
        module.__file__,
        {
            line.lineno: f"{origin.loc.filename}:{origin.loc.lineno} ({origin.function_name})"
            if origin.function_name
            else f"{origin.loc.filename}:{origin.loc.lineno}"
            for line, origin in source_map.items()
            if line.filename == module.__file__
        },
    )
    _api.autograph_artifact(converted)
    _CONVERTED[key] = converted
    return converted
