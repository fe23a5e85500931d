"""Loops with an ``else`` clause for the converter, which (like malt) does not support them.

``for ...: body else: rest`` runs ``rest`` when the loop ends without a ``break``. It is the same
program as a flag set just before each of the loop's breaks and ``if not flag: rest`` after the
loop, and is rewritten as that before conversion: on static values Python runs it as it runs
the loop; in a relaxed loop the flag is the probability that the loop broke.
"""

import ast
import itertools

from ._syntax_match import locate

_FLAGS = itertools.count()


def _with_flag(block: list[ast.stmt], flag: str) -> list[ast.stmt]:
    """``block`` with ``flag = True`` before each ``break`` that leaves the loop it belongs to
    (not those of loops nested in it, nor of functions defined in it)."""
    out: list[ast.stmt] = []
    for statement in block:
        if isinstance(statement, ast.Break):
            out += [locate(_assign(flag, True), statement), statement]
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


def _assign(name: str, value: bool) -> ast.Assign:
    return ast.Assign([ast.Name(name, ast.Store())], ast.Constant(value))


class LoopElseAsFlags(ast.NodeTransformer):
    """Every ``for`` / ``while`` with an ``else`` clause rewritten with a flag (see the module)."""

    def _rewrite(self, node: ast.For | ast.While) -> ast.AST | list[ast.stmt]:
        self.generic_visit(node)  # (loops nested in it first)
        if not node.orelse:
            return node
        flag = f"softflow_loop_broke_{next(_FLAGS)}"
        rest, node.orelse = node.orelse, []
        node.body = _with_flag(node.body, flag)
        test = ast.UnaryOp(ast.Not(), ast.Name(flag, ast.Load()))
        return [
            locate(_assign(flag, False), node),
            node,
            locate(ast.If(test, rest, []), rest[0]),
        ]

    visit_For = _rewrite
    visit_While = _rewrite
