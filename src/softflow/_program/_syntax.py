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
import inspect
import textwrap
import types
from collections.abc import Callable
from typing import Any, cast

from malt import operators as _malt_operators
from malt.core import converter as _converter
from malt.impl import api as _api

from ._errors import ConversionError
from ._source import register_converted_lines
from ._syntax_branches import FunctionScope, and_, if_exp, if_stmt, not_, or_
from ._syntax_loops import TracedRange, for_stmt, while_stmt
from ._syntax_state import BRANCHES, LOOPS, PROBING, traced

# Modules whose functions are called as they are: they are JAX (or act on static values), and
# softflow's own functions are already relaxed.
_NOT_CONVERTED = ("jax", "jaxlib", "equinox", "optax", "numpy", "softflow", "malt", "builtins")


def _not_converted(fn) -> bool:
    module = getattr(inspect.getmodule(fn), "__name__", None) or getattr(fn, "__module__", None)
    if not isinstance(module, str):
        return False
    return module.split(".")[0] in _NOT_CONVERTED


def converted_call(f, args, kwargs, caller_fn_scope=None, options=None):
    """Call ``f``, converted first when it is a Python function of the user's."""
    del caller_fn_scope, options
    kwargs = kwargs or {}
    if f is range and traced(args):
        return TracedRange(*args)
    target = f.func if isinstance(f, functools.partial) else f
    if _api.is_autograph_artifact(target) or _not_converted(target) or not _convertible(target):
        return f(*args, **kwargs)
    if isinstance(f, functools.partial):
        return converted_call(f.func, (*f.args, *args), {**f.keywords, **kwargs})
    converted = convert(f)
    # The loops and branches being traced belong to the caller: a break or return in the callee
    # exits the callee, which returns one (mixed) value to the caller.
    outer = (LOOPS[:], BRANCHES[0], PROBING[0])
    LOOPS.clear()
    BRANCHES[0] = PROBING[0] = 0
    try:
        return converted(*args, **kwargs)
    finally:
        LOOPS[:] = outer[0]
        BRANCHES[0], PROBING[0] = outer[1], outer[2]


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
    register_converted_lines(
        module.__file__,
        {
            line.lineno: f"{origin.loc.filename}:{origin.loc.lineno} ({origin.function_name})"
            for line, origin in source_map.items()
            if line.filename == module.__file__
        },
    )
    _api.autograph_artifact(converted)
    _CONVERTED[key] = converted
    return converted
