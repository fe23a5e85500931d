"""A name scope on softflow's own operations, so that :func:`softflow.relax` uses them as they are.

A softflow function inside a relaxed program is already relaxed: the comparisons and selects it
uses internally (masks of infinite values, exact one-hot blends, early exits of loops) are part of
its definition, not conditions of the user's program. Their equations carry this scope in their
name stack, and the relaxed program evaluates them exactly on the probabilities of soft inputs.
"""

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import jax

SCOPE = "softflow_primitive"

_P = ParamSpec("_P")
_R = TypeVar("_R")


def primitive(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` with its equations in the :data:`SCOPE` name scope."""

    @functools.wraps(fn)
    def scoped(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with jax.named_scope(SCOPE):
            return fn(*args, **kwargs)

    return scoped
