"""The record of what :func:`softflow.relax` relaxed, for ``Relaxed.explain``."""

from typing import NamedTuple


class RelaxedOp(NamedTuple):
    """One relaxed operation: the primitive, the user's source line and the rule applied."""

    primitive: str
    source: str
    rule: str


class Explanation(tuple):
    """The relaxed operations of a program, in order (a tuple of :class:`RelaxedOp`)."""

    def __str__(self) -> str:
        if not self:
            return "nothing relaxed: the program has no discontinuity on a floating-point input"
        width = max(len(op.primitive) for op in self)
        return "\n".join(f"{op.source}: {op.primitive:<{width}}  -> {op.rule}" for op in self)

    __repr__ = __str__
