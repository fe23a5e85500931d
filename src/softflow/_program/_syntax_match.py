"""``match`` statements for the converter, which (like malt) knows ``if`` but not ``match``.

A ``match`` whose cases compare the subject with values (``case 0:``, ``case Mode.FAST:``,
``case None:``, ``case 1 | 2:``), with guards and a final wildcard or capture, is the same
program as a chain of ``if`` / ``else`` on those comparisons, and is rewritten as one before
conversion: on a static subject Python runs the chain as it runs the ``match``; on a traced one
each comparison is a condition that relax relaxes (``case 2:`` of a relaxed integer is the
probability that it is 2). Patterns that take the subject apart (sequences, mappings, classes)
are refused, naming the line.
"""

import ast
import itertools

from malt.pyct import anno

from ._errors import ConversionError

_SUBJECTS = itertools.count()


def _unsupported(pattern: ast.pattern, where: str) -> ConversionError:
    return ConversionError(
        f"sf.relax: the pattern `{ast.unparse(pattern)}` of the match statement at {where} takes "
        "its subject apart, which the converter does not support; it supports cases that "
        "compare the subject with values (case 0:, case Mode.FAST:, case 1 | 2:), guards and a "
        "final `case _:` or capture. Write the match as if / elif, or pass convert=False to "
        "sf.relax if the function has no Python control flow on traced values."
    )


def check(node: ast.Match, where: str) -> None:
    """Refuse ``node`` (naming ``where``, its line) where a pattern takes its subject apart."""
    for case in node.cases:
        _test("subject", case.pattern, where)


def _test(subject: str, pattern: ast.pattern, where: str) -> tuple[ast.expr | None, list[str]]:
    """The condition under which ``pattern`` matches (None: always) and the names it binds."""
    name = ast.Name(subject, ast.Load())
    if isinstance(pattern, ast.MatchValue):
        return ast.Compare(name, [ast.Eq()], [pattern.value]), []
    if isinstance(pattern, ast.MatchSingleton):
        return ast.Compare(name, [ast.Is()], [ast.Constant(pattern.value)]), []
    if isinstance(pattern, ast.MatchAs):
        inner, names = _inner(subject, pattern, where)
        return inner, [*names, pattern.name] if pattern.name else names
    if isinstance(pattern, ast.MatchOr):
        tests = [_test(subject, p, where) for p in pattern.patterns]
        if any(names for _, names in tests):
            raise _unsupported(pattern, where)
        alternatives = [test for test, _ in tests if test is not None]
        if len(alternatives) < len(tests):  # one of them always matches
            return None, []
        return ast.BoolOp(ast.Or(), alternatives), []
    raise _unsupported(pattern, where)


def _inner(subject: str, pattern: ast.MatchAs, where: str) -> tuple[ast.expr | None, list[str]]:
    """The test of a capture's inner pattern (``case 1 | 2 as k``); none for ``case k``."""
    return (None, []) if pattern.pattern is None else _test(subject, pattern.pattern, where)


def _as_ifs(node: ast.Match) -> list[ast.stmt]:
    """The statements that run ``node`` (checked by :func:`check`): the subject, once, then
    nested ``if`` / ``else``, each made part of its case's line."""
    where = f"line {node.lineno} of the function"
    subject = f"softflow_match_subject_{next(_SUBJECTS)}"
    chain: list[ast.stmt] = []
    for case in reversed(node.cases):
        test, names = _test(subject, case.pattern, where)
        if case.guard is not None:
            test = case.guard if test is None else ast.BoolOp(ast.And(), [test, case.guard])
        binds: list[ast.stmt] = [
            ast.Assign([ast.Name(n, ast.Store())], ast.Name(subject, ast.Load())) for n in names
        ]
        # An irrefutable case ends the chain: the cases after it never run.
        made = [*binds, *([] if test is None else [ast.If(test, case.body, chain)])]
        for statement in made:
            locate(statement, case.pattern)
        chain = [*binds, *case.body] if test is None else made
    first = locate(ast.Assign([ast.Name(subject, ast.Store())], node.subject), node)
    return [first, *chain]


def locate(made: ast.stmt, origin: ast.AST) -> ast.stmt:
    """``made`` and the nodes made with it placed at ``origin``'s line, for the converter's
    source map (the user's nodes inside keep their own)."""
    for child in ast.walk(made):
        if isinstance(child, ast.stmt | ast.expr) and not hasattr(child, "lineno"):
            ast.copy_location(child, origin)
            if anno.hasanno(origin, anno.Basic.ORIGIN):
                anno.copyanno(origin, child, anno.Basic.ORIGIN)
    return made


class MatchAsIfs(ast.NodeTransformer):
    """Every ``match`` statement of a function rewritten as ``if`` / ``else`` (see the module)."""

    def visit_Match(self, node: ast.Match) -> list[ast.stmt]:
        self.generic_visit(node)  # (matches nested in cases first, in place)
        return _as_ifs(node)
