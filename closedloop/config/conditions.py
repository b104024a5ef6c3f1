"""Conditions over features, as a rule controller writes them: ``"theta_frontal > 1.2 and pain_index > 5"``.

The text is parsed with :mod:`ast` (never evaluated): only comparisons
(``<  <=  >  >=  ==  !=``, chained as in Python), ``and`` / ``or`` / ``not``,
parentheses, numbers, feature names and the arithmetic of feature
expressions (:mod:`closedloop.config.expressions`: ``+ - * / **``, unary
minus, ``log``, ``log10``, ``abs``, ``sqrt``, ``exp``, with the same NaN
where undefined), plus ``min`` and ``max``; anything else is refused with the
column where it stands. :func:`parse_condition` returns a
:class:`Condition`: the feature names it reads and a function of their
values, built from closures (no ``eval``, no ``compile``).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from closedloop.config import expressions as expr

__all__ = ["Condition", "parse_condition", "ALLOWED"]

#: What a condition may contain (for messages).
ALLOWED = (
    "comparisons (< <= > >= == !=), and/or/not, numbers, feature names, + - * / **, "
    "log(), log10(), abs(), sqrt(), exp(), min(), max()"
)
_MAX_LENGTH = 1000
_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
# arithmetic exactly as feature expressions compute it (NaN where undefined)
_ARITH = {ast.Add: expr.ADD, ast.Sub: expr.SUB, ast.Mult: expr.MUL, ast.Div: expr.DIV, ast.Pow: expr.POW}
_FUNCS = {
    **{name: (partial(expr._py_apply, code), 1, 1) for name, code in expr.FUNCTIONS.items()},
    "min": (min, 2, None),
    "max": (max, 2, None),
}

Values = Sequence[float]


@dataclass(frozen=True)
class Condition:
    """A parsed condition.

    Attributes
    ----------
    text : str
        The condition as written.
    names : tuple of str
        The feature names it reads, in order of first appearance.
    evaluate : callable
        ``evaluate(values) -> bool | None`` with ``values[i]`` the value of
        ``names[i]``; None when the answer depends on a NaN (a missing
        feature, a division by zero): a comparison with NaN is unknown,
        ``and`` is false if any part is false, ``or`` true if any part is
        true, otherwise the unknown propagates.
    """

    text: str
    names: tuple[str, ...]
    evaluate: Callable[[Values], bool | None]


class _Compiler:
    def __init__(self, text: str) -> None:
        self.text = text
        self.names: dict[str, int] = {}

    def fail(self, node: ast.AST, what: str) -> None:
        col = getattr(node, "col_offset", 0) + 1
        raise ValueError(f"{what} at column {col}; allowed: {ALLOWED}")

    # every compile_* returns a callable of the values vector
    def boolean(self, node: ast.AST) -> Callable[[Values], bool | None]:
        if isinstance(node, ast.BoolOp):
            parts = [self.boolean(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda v, parts=parts: _and(v, parts)
            return lambda v, parts=parts: _or(v, parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.boolean(node.operand)
            return lambda v, inner=inner: _not(inner(v))
        if isinstance(node, ast.Compare):
            left = self.number(node.left)
            ops = []
            for op, right in zip(node.ops, node.comparators):
                fn = _COMPARE.get(type(op))
                if fn is None:
                    self.fail(node, f"the comparison {type(op).__name__!r} is not allowed")
                ops.append((fn, self.number(right)))
            return lambda v, left=left, ops=ops: _chain(v, left, ops)
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            value = node.value
            return lambda v, value=value: value
        self.number(node)  # refuses what is not allowed at all, with the reason
        self.fail(node, f"{self.snippet(node)!r} is a number, not a condition (compare it: x > 1)")
        raise AssertionError  # unreachable

    def number(self, node: ast.AST) -> Callable[[Values], float]:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                self.fail(node, f"{self.snippet(node)!r} is not a number")
            value = float(node.value)
            if not math.isfinite(value):
                self.fail(node, f"{self.snippet(node)!r} is not a finite number")
            return lambda v, value=value: value
        if isinstance(node, ast.Name):
            i = self.names.setdefault(node.id, len(self.names))
            return lambda v, i=i: v[i]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = self.number(node.operand)
            if isinstance(node.op, ast.UAdd):
                return inner
            return lambda v, inner=inner: -inner(v)
        if isinstance(node, ast.BinOp):
            code = _ARITH.get(type(node.op))
            if code is None:
                self.fail(node, f"the operator in {self.snippet(node)!r} is not allowed")
            a, b = self.number(node.left), self.number(node.right)
            return lambda v, code=code, a=a, b=b: expr._py_apply(code, a(v), b(v))
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            spec = _FUNCS.get(name or "")
            if spec is None or node.keywords:
                self.fail(node, f"the call {self.snippet(node)!r} is not allowed")
            fn, lo, hi = spec
            if len(node.args) < lo or (hi is not None and len(node.args) > hi):
                self.fail(node, f"{name}() takes {lo if hi == lo else f'at least {lo}'} argument(s)")
            args = [self.number(a) for a in node.args]
            return lambda v, fn=fn, args=args: fn(*(a(v) for a in args))
        if isinstance(node, ast.BoolOp | ast.Compare) or (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
        ):
            self.fail(node, f"{self.snippet(node)!r} is a condition where a number is needed")
        self.fail(node, f"{self.snippet(node)!r} is not allowed")
        raise AssertionError  # unreachable

    def snippet(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or type(node).__name__


# Three-valued logic: a comparison with NaN (a missing feature, 0 / 0) is unknown (None), not false;
# ``and`` is false if any part is false, ``or`` true if any part is true, otherwise unknown propagates.


def _chain(v: Values, left, ops) -> bool | None:
    a = left(v)
    result: bool | None = True
    for fn, right in ops:
        b = right(v)
        if math.isnan(a) or math.isnan(b):
            result = None
        elif not fn(a, b):
            return False
        a = b
    return result


def _and(v: Values, parts) -> bool | None:
    unknown = False
    for p in parts:
        r = p(v)
        if r is False:
            return False
        unknown = unknown or r is None
    return None if unknown else True


def _or(v: Values, parts) -> bool | None:
    unknown = False
    for p in parts:
        r = p(v)
        if r is True:
            return True
        unknown = unknown or r is None
    return None if unknown else False


def _not(r: bool | None) -> bool | None:
    return None if r is None else not r


def parse_condition(text: str) -> Condition:
    """Parse a condition over features.

    Parameters
    ----------
    text : str
        E.g. ``"theta_frontal > 1.2 and (pain_index > 5 or rating >= 6)"``.

    Returns
    -------
    Condition

    Raises
    ------
    ValueError
        One line saying what is not allowed and where (column), or why the
        text does not parse.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("an empty condition; write e.g. 'alpha < 1.3'")
    if len(text) > _MAX_LENGTH:
        raise ValueError(f"a condition of {len(text)} characters; at most {_MAX_LENGTH}")
    source = text.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"does not parse at column {e.offset or len(source)}: {e.msg}; allowed: {ALLOWED}") from None
    comp = _Compiler(source)
    fn = comp.boolean(tree.body)
    return Condition(text, tuple(comp.names), fn)
