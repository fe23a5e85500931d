"""The user's source line of an equation, for the messages of :func:`softflow.relax` and for
``explain``.

A jaxpr remembers where each equation was traced. The user's line is the innermost frame that
belongs neither to JAX nor to softflow; for code converted from Python syntax, the generated line
is mapped back to the line the user wrote.
"""

import pathlib
from collections.abc import Sequence

from jax.extend.core import JaxprEqn

from . import _jaxpr

_PACKAGE_DIR = str(pathlib.Path(__file__).resolve().parent.parent)

# Per file of generated (converted) code: its line numbers -> "file:line (function)" of the user.
_CONVERTED_LINES: dict[str, dict[int, str]] = {}


def register_converted_lines(file_name: str, lines: dict[int, str]) -> None:
    """Remember where the lines of a converted function's generated ``file_name`` come from."""
    _CONVERTED_LINES[file_name] = lines


def converted_location(file_name: str, line: int) -> str | None:
    """The user's ``file:line (function)`` of a line of generated code, if it is one."""
    lines = _CONVERTED_LINES.get(file_name)
    if lines is None:
        return None
    # A line the converter added (the function's final return, where the soft returns from inside
    # loops are mixed) is attributed to the user's line before it.
    for earlier in range(line, 0, -1):
        if earlier in lines:
            return lines[earlier]
    return None


def where(eqn: JaxprEqn, enclosing: Sequence[JaxprEqn] = ()) -> str:
    """The user's source line of ``eqn``, as ``file:line:column (function)``.

    Inside a nested ``jit`` (most of jax.numpy) the line of the outermost ``jit`` call is used:
    JAX caches the jaxprs of jitted functions, so the lines recorded inside one belong to the
    call that traced it first, not necessarily to this one.
    """
    calls = [e for e in enclosing if _jaxpr.is_call(e)]
    for candidate in (*calls[:1], eqn, *reversed(enclosing)):
        line = _user_line(candidate)
        if line:
            return line
    return "an unknown line"


def _user_line(eqn: JaxprEqn) -> str:
    """The innermost frame that belongs neither to JAX nor to softflow (``sf.exact``,
    ``sf.greater`` called inside ``fn`` point at the user's call)."""
    for frame in _jaxpr.user_frames(eqn):
        converted = converted_location(frame.file_name, frame.start_line)
        if converted:
            return converted
        if not str(pathlib.Path(frame.file_name).resolve()).startswith(_PACKAGE_DIR):
            # (A lambda at the top of a module has no function name in jax's traceback.)
            name = f" ({frame.function_name})" if frame.function_name else ""
            return f"{frame.file_name}:{frame.start_line}:{frame.start_column}{name}"
    return ""
