"""Feature expressions: a small, safe arithmetic language over feature names (no numba, no ``eval``).

An expression is Python arithmetic parsed with :mod:`ast` and accepted only if
every node is a number, a feature name, ``+ - * / **`` (and unary ``-``/``+``)
or a call of ``log`` (natural), ``log10``, ``abs``, ``sqrt`` or ``exp`` with one
argument; anything else (attributes, subscripts, other calls, comparisons,
strings, ...) is refused with the offending piece named. Parts without a
feature are folded to one constant at compile time, so a division by a
constant zero is caught then.

:func:`compile_expressions` checks a set of named expressions against the
available feature names (unknown names, self-references and cycles are one-line
problems naming the expression's key), orders them so that each comes after
the expressions it uses, and compiles each to postfix code: ``(op, arg)``
pairs for a stack machine (:mod:`closedloop.features.expressions` runs it in
numba, once per frame). At run time a division by zero, the log or square root
of a negative number give NaN (a controller then holds).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

#: Operation codes of the postfix code; ``arg`` is a feature column (PUSH_FEATURE) or a constant's index.
PUSH_FEATURE, PUSH_CONST, ADD, SUB, MUL, DIV, POW, NEG = 0, 1, 2, 3, 4, 5, 6, 7
LOG, LOG10, ABS, SQRT, EXP = 8, 9, 10, 11, 12

FUNCTIONS = {"log": LOG, "log10": LOG10, "abs": ABS, "sqrt": SQRT, "exp": EXP}
_BINOPS = {ast.Add: ADD, ast.Sub: SUB, ast.Mult: MUL, ast.Div: DIV, ast.Pow: POW}
_ALLOWED = "numbers, feature names, + - * / ** and log(), log10(), abs(), sqrt(), exp()"
#: Longest expression text accepted (a guard against pathological input).
MAX_LENGTH = 2000


class ExpressionError(ValueError):
    """A problem with one expression (the message does not name the key; the caller adds it)."""


def _nan_div(a: float, b: float) -> float:
    return a / b if b != 0 else math.nan


def _py_apply(code: int, *args: float) -> float:
    """Evaluate one operation on constants, as the numba machine does (NaN where undefined)."""
    try:
        if code == ADD:
            return args[0] + args[1]
        if code == SUB:
            return args[0] - args[1]
        if code == MUL:
            return args[0] * args[1]
        if code == DIV:
            return _nan_div(args[0], args[1])
        if code == POW:
            return float(args[0] ** args[1]) if not (args[0] < 0 and not float(args[1]).is_integer()) else math.nan
        if code == NEG:
            return -args[0]
        if code == LOG:
            return math.log(args[0]) if args[0] > 0 else (-math.inf if args[0] == 0 else math.nan)
        if code == LOG10:
            return math.log10(args[0]) if args[0] > 0 else (-math.inf if args[0] == 0 else math.nan)
        if code == ABS:
            return abs(args[0])
        if code == SQRT:
            return math.sqrt(args[0]) if args[0] >= 0 else math.nan
        if code == EXP:
            return math.exp(args[0])
    except OverflowError:
        return math.inf
    raise AssertionError(code)


@dataclass(frozen=True)
class Node:
    """A checked expression tree: a constant, a feature name, or an operation on sub-trees."""

    code: int  # PUSH_CONST, PUSH_FEATURE or an operation
    value: float = 0.0  # PUSH_CONST
    name: str = ""  # PUSH_FEATURE
    args: tuple[Node, ...] = ()

    @property
    def constant(self) -> bool:
        """Whether the tree holds no feature."""
        return self.code == PUSH_CONST

    def names(self) -> set[str]:
        """Return the feature names the tree uses."""
        if self.code == PUSH_FEATURE:
            return {self.name}
        return set().union(*(a.names() for a in self.args)) if self.args else set()


def parse(text: str) -> Node:
    """Return the checked, constant-folded tree of an expression.

    Raises
    ------
    ExpressionError
        On a syntax error, a construct outside the language, or a division by a constant zero.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("is empty; write e.g. 'theta_frontal / alpha_posterior'")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"is not a valid expression ({err.msg}): {text.strip()!r}") from None
    try:
        return _node(tree.body)
    except RecursionError:
        raise ExpressionError("is nested too deeply") from None


def _node(n: ast.AST) -> Node:
    if isinstance(n, ast.Constant):
        if isinstance(n.value, bool) or not isinstance(n.value, int | float):
            raise ExpressionError(f"{n.value!r} is not allowed; allowed: {_ALLOWED}")
        return Node(PUSH_CONST, value=float(n.value))
    if isinstance(n, ast.Name):
        if n.id in FUNCTIONS:
            raise ExpressionError(f"{n.id} is a function: call it, e.g. {n.id}(theta)")
        return Node(PUSH_FEATURE, name=n.id)
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub | ast.UAdd):
        arg = _node(n.operand)
        if isinstance(n.op, ast.UAdd):
            return arg
        return _fold(Node(NEG, args=(arg,)))
    if isinstance(n, ast.BinOp) and type(n.op) in _BINOPS:
        left, right = _node(n.left), _node(n.right)
        code = _BINOPS[type(n.op)]
        if code == DIV and right.constant and right.value == 0.0:
            raise ExpressionError(f"divides by a constant zero: {ast.unparse(n)!r}")
        return _fold(Node(code, args=(left, right)))
    if isinstance(n, ast.Call):
        func = n.func.id if isinstance(n.func, ast.Name) else None
        if func not in FUNCTIONS:
            shown = ast.unparse(n.func)
            raise ExpressionError(f"calls {shown}(), which is not allowed; functions: {', '.join(FUNCTIONS)}")
        if n.keywords or len(n.args) != 1:
            raise ExpressionError(f"{func}() takes exactly one argument")
        return _fold(Node(FUNCTIONS[func], args=(_node(n.args[0]),)))
    raise ExpressionError(f"{ast.unparse(n)!r} is not allowed; allowed: {_ALLOWED}")


def _fold(node: Node) -> Node:
    if all(a.constant for a in node.args):
        return Node(PUSH_CONST, value=_py_apply(node.code, *(a.value for a in node.args)))
    return node


@dataclass(frozen=True)
class Program:
    """One compiled expression: postfix ``(op, arg)`` pairs and the constants they index."""

    name: str
    column: int  # where its value goes: len(features) + its index in the expressions
    code: tuple[tuple[int, int], ...]
    constants: tuple[float, ...]
    depth: int  # stack slots needed


def _emit(node: Node, columns: dict[str, int], code: list, consts: list) -> int:
    """Append ``node``'s postfix code; return the stack depth it needs."""
    if node.code == PUSH_CONST:
        consts.append(node.value)
        code.append((PUSH_CONST, len(consts) - 1))
        return 1
    if node.code == PUSH_FEATURE:
        code.append((PUSH_FEATURE, columns[node.name]))
        return 1
    depth = 0
    for i, arg in enumerate(node.args):
        depth = max(depth, i + _emit(arg, columns, code, consts))
    code.append((node.code, 0))
    return depth


def compile_expressions(
    expressions: dict[str, str], features: list[str], key: str = "expressions"
) -> tuple[list[Program], list[str]]:
    """Check and compile named expressions over ``features`` (and over each other).

    Parameters
    ----------
    expressions : dict of str -> str
        Name -> expression text, in the order their values are reported.
    features : list of str
        The feature names an expression may use; expression ``j``'s value sits
        at column ``len(features) + j`` (the order of ``expressions``).
    key : str
        Config key prefix of the messages (``expressions`` -> ``expressions.<name>: ...``).

    Returns
    -------
    programs : list of Program
        In evaluation order (each after the expressions it uses); empty if there are problems.
    problems : list of str
        One line per problem, each naming ``<key>.<name>``.
    """
    problems: list[str] = []
    trees: dict[str, Node] = {}
    known = set(features)
    for name, text in expressions.items():
        if name in known:
            problems.append(f"{key}.{name}: the name is already a feature of this pipeline")
            continue
        try:
            trees[name] = parse(text)
        except ExpressionError as err:
            problems.append(f"{key}.{name}: {err}")
    for name, tree in trees.items():
        unknown = sorted(n for n in tree.names() if n not in known and n not in expressions)
        if unknown:
            shown = features if len(features) <= 40 else [*features[:40], "..."]
            problems.append(f"{key}.{name}: unknown feature {unknown[0]!r}; choose from {shown} or another expression")
    if problems:
        return [], problems
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name) :] + [name]
            raise ExpressionError(" -> ".join(cycle))
        state[name] = 1
        for dep in sorted(trees[name].names() & set(trees)):
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in trees:
        try:
            visit(name, [])
        except ExpressionError as err:
            first = str(err).split(" -> ")[0]
            problems.append(f"{key}.{first}: refers to itself through {err}")
            return [], problems
    columns = {f: i for i, f in enumerate(features)}
    columns.update({name: len(features) + j for j, name in enumerate(expressions)})
    programs = []
    for name in order:
        code: list[tuple[int, int]] = []
        consts: list[float] = []
        depth = _emit(trees[name], columns, code, consts)
        programs.append(Program(name, columns[name], tuple(code), tuple(consts), depth))
    return programs, []
