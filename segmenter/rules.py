"""Rule segments: marketers' conditions on the documented features, from ``config/segments.yaml``.

A rule compares features and numbers (``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``, chained as in
``1 <= orders < 5``), text features and strings (``country == "DE"``, with ``==`` and ``!=``),
and category interests (``interest("shoes") > 0.5``), joined by ``and``, ``or``, ``not`` and
parentheses; ``true``/``false`` are the constant conditions, and compare (with ``==``/``!=``
only) as 1/0. The text is parsed with
:func:`ast.parse` and a whitelist of node types is compiled into closures: it is never evaluated
as Python. ``inf`` features (``days_since_last_order`` of a visitor) compare as expected.

>>> known = ["orders", "monetary", "cart_adds", "days_since_last_order"]
>>> vip = compile_rule("vip", "monetary >= 1000 or orders >= 5", known)
>>> vip.holds({"orders": 2, "monetary": 1500.0}), vip.holds({"orders": 1, "monetary": 80.0})
(True, False)
>>> sorted(vip.features)
['monetary', 'orders']
>>> lapsed = compile_rule("lapsed", "not days_since_last_order <= 90", known)
>>> lapsed.holds({"days_since_last_order": float("inf")})
True
>>> for text in ["ordrs >= 5", "len(orders) > 5", "cart_adds and orders == 0"]:
...     try:
...         compile_rule("vip", text, known)
...     except RuleError as exc:
...         print(exc.reason)
unknown feature 'ordrs' (did you mean 'orders'?) at column 1; see docs/features.md
a function call is not allowed at column 1: only interest("category")
'cart_adds' at column 1 is a number, not a condition: use a comparison such as 'cart_adds > 0'
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
import re
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from features.errors import BadConfig

Features = Mapping[str, float]
Predicate = Callable[[Features], bool]
Value = Callable[[Features], float]

FEATURES_DOC = "docs/features.md"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME_HINT = "use lower case letters, digits and _, starting with a letter"
MAX_RULE_LENGTH = 2000
MAX_DEPTH = 64
#: Largest number a rule may hold: beyond any feature's reach (money is bounded at 1e10 an
#: event), and exact as a float.
MAX_LITERAL = 1e15

_COMPARISONS: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_BOOLEANS = {"true": True, "false": False}

#: Node or operator type -> how a rejection names it (and a hint, after a colon).
_NOT_ALLOWED: dict[type[ast.AST], str] = {
    ast.Call: "a function call: only interest(\"category\")",
    ast.Attribute: "an attribute ('.')",
    ast.Subscript: "a subscript ('[...]')", ast.Slice: "a slice",
    ast.NamedExpr: "an assignment (':=')", ast.Lambda: "a lambda", ast.IfExp: "'if ... else'",
    ast.Tuple: "a tuple (',')", ast.List: "a list", ast.Set: "a set", ast.Dict: "a dict",
    ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension",
    ast.JoinedStr: "an f-string", ast.Await: "'await'", ast.Yield: "'yield'",
    ast.YieldFrom: "'yield'", ast.Starred: "'*'",
    ast.In: "'in'", ast.NotIn: "'not in'", ast.Is: "'is'", ast.IsNot: "'is not'",
    ast.UAdd: "unary '+'", ast.Invert: "'~': use 'not'",
    ast.BitAnd: "'&': use 'and'", ast.BitOr: "'|': use 'or'", ast.BitXor: "'^'",
    ast.LShift: "'<<'", ast.RShift: "'>>'", ast.MatMult: "'@'",
    **{op: f"arithmetic ('{symbol}')" for op, symbol in [
        (ast.Add, "+"), (ast.Sub, "-"), (ast.Mult, "*"), (ast.Div, "/"), (ast.FloorDiv, "//"),
        (ast.Mod, "%"), (ast.Pow, "**")]},
}
_SYNTAX_HINTS = [
    (re.compile(r"&&|\|\|"), "write 'and' and 'or' instead of '&&' and '||'"),
    (re.compile(r"\b(?:AND|OR|NOT|And|Or|Not)\b"), "write and, or, not in lower case"),
    (re.compile(r"(?<![<>=!])=(?!=)"), "compare with '==', not '='"),
]


class RuleError(BadConfig):
    """A rule or rule file is invalid; ``reason`` is the message without segment and position."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule segment: ``holds(features)`` says whether a user is in it."""

    name: str
    text: str
    description: str
    #: The feature names the rule reads.
    features: frozenset[str]
    predicate: Predicate = field(repr=False, compare=False)
    #: The numbers the rule compares with (where time-driven features can cross it).
    constants: frozenset[float] = frozenset()
    #: Minutes a user stays in the segment at least (None: the configured default).
    min_dwell_minutes: float | None = None
    #: The rule reads category interests (``interest("shoes")``): features must carry
    #: ``interest:<category>`` entries.
    reads_interests: bool = False

    def holds(self, features: Features) -> bool:
        return self.predicate(features)


def compile_rule(
    name: str, text: str, known_features: Collection[str], *, description: str = "",
    min_dwell_minutes: float | None = None,
) -> Rule:
    """Compile ``text`` into a :class:`Rule`; raise :class:`RuleError` saying what is wrong.

    ``known_features``: names, or name -> (unit, definition) as the feature catalogue has them
    (features whose unit is ``text`` then compare with strings)."""
    try:
        if not NAME_PATTERN.match(name):
            raise _Problem(f"bad segment name {name!r}: {_NAME_HINT}")
        text_features = (frozenset(n for n, (unit, _) in known_features.items() if unit == "text")
                         if isinstance(known_features, Mapping) else frozenset())
        compiler = _Compiler(text, frozenset(known_features), text_features)
        predicate = compiler.compile()
    except _Problem as problem:
        raise RuleError(f"segment {name!r}: {problem}", reason=str(problem)) from None
    return Rule(name, text, description, frozenset(compiler.used), predicate,
                frozenset(compiler.constants), min_dwell_minutes, compiler.reads_interests)


class _Problem(Exception):
    """Why a rule (or a segment's entry) is bad; the caller adds the segment name and line."""

    def __init__(self, message: str, node: yaml.Node | None = None) -> None:
        super().__init__(message)
        self.line = None if node is None else _line(node)


@dataclass
class _Compiler:
    """Walks the whitelisted AST of one rule, building closures and noting the features used."""

    text: str
    known: frozenset[str]
    text_features: frozenset[str] = frozenset()
    used: dict[str, None] = field(default_factory=dict)
    constants: set[float] = field(default_factory=set)
    indent: int = 0
    reads_interests: bool = False

    def compile(self) -> Predicate:
        source = self.text.replace("\r", " ").replace("\n", " ")
        stripped = source.lstrip()
        self.indent = len(source) - len(stripped)
        if not stripped.strip():
            raise _Problem("the rule is empty")
        if len(source) > MAX_RULE_LENGTH:
            raise _Problem(f"the rule is longer than {MAX_RULE_LENGTH} characters")
        if "#" in source:
            raise _Problem(f"'#' is not allowed at column {source.index('#') + 1}")
        try:
            with warnings.catch_warnings():  # e.g. SyntaxWarning: invalid escape sequence
                warnings.simplefilter("ignore")
                tree = ast.parse(stripped, mode="eval")
        except SyntaxError as exc:
            raise _Problem(self._syntax_message(exc, stripped)) from None
        except (RecursionError, MemoryError):
            raise _Problem("the rule is nested too deeply") from None
        except ValueError as exc:
            raise _Problem(f"syntax error: {exc}") from None
        self.text = stripped
        return self.condition(tree.body, 0)

    def _syntax_message(self, exc: SyntaxError, stripped: str) -> str:
        if exc.offset is None:
            where = ""
        elif exc.offset < 1 or exc.offset > len(stripped):
            where = " at the end of the rule"
        else:
            where = f" at column {exc.offset + self.indent}"
        hints = [hint for pattern, hint in _SYNTAX_HINTS if pattern.search(stripped)]
        return f"syntax error{where}: {exc.msg}" + "".join(f" ({hint})" for hint in hints)

    def column(self, node: ast.AST) -> int:
        """1-based character column of a node (ast offsets count UTF-8 bytes)."""
        before = self.text.encode()[: getattr(node, "col_offset", 0)]
        return len(before.decode("utf-8", "replace")) + self.indent + 1

    def snippet(self, node: ast.AST) -> str:
        source = ast.get_source_segment(self.text, node) or type(node).__name__
        return source if len(source) <= 40 else source[:37] + "..."

    def rejected(self, node: ast.AST, at: int | None = None) -> _Problem:
        if isinstance(node, ast.BinOp):
            node, at = node.op, self._operator_column(node.left, node.right)
        elif isinstance(node, ast.UnaryOp):
            node, at = node.op, self.column(node)
        what = (_describe_constant(node.value) if isinstance(node, ast.Constant)
                else _NOT_ALLOWED.get(type(node), f"'{self.snippet(node)}'"))
        what, _, hint = what.partition(": ")
        column = self.column(node) if at is None else at
        return _Problem(f"{what} is not allowed at column {column}" + (f": {hint}" if hint else ""))

    def condition(self, node: ast.expr, depth: int) -> Predicate:
        """Compile a node that must be a condition (true or false)."""
        _check_depth(depth)
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(value, depth + 1) for value in node.values]
            if isinstance(node.op, ast.And):
                return lambda features: all(part(features) for part in parts)
            return lambda features: any(part(features) for part in parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.condition(node.operand, depth + 1)
            return lambda features: not inner(features)
        if isinstance(node, ast.Compare):
            return self.comparison(node, depth + 1)
        value = _boolean_constant(node)
        if value is not None:
            return lambda features: value
        self.number(node, depth + 1)  # reports anything not allowed or unknown first
        example = node.id if isinstance(node, ast.Name) else "orders"
        raise _Problem(f"'{self.snippet(node)}' at column {self.column(node)} is a number, "
                       f"not a condition: use a comparison such as '{example} > 0'")

    def comparison(self, node: ast.Compare, depth: int) -> Predicate:
        operands = [node.left, *node.comparators]
        functions = []
        for index, op in enumerate(node.ops):
            if type(op) not in _COMPARISONS:
                raise self.rejected(op, at=self._operator_column(operands[index],
                                                                 operands[index + 1]))
            functions.append(_COMPARISONS[type(op)])
        if len(operands) > 2 and any(_is_boolean(operand) for operand in operands):
            operand = next(operand for operand in operands if _is_boolean(operand))
            raise _Problem(f"'{self.snippet(operand)}' at column {self.column(operand)} is a "
                           "condition: it cannot be in a chained comparison; add parentheses, "
                           "e.g. '(orders > 0) == false'")
        equality = len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq | ast.NotEq)
        if any(self._is_text(operand) for operand in operands):
            return self.text_comparison(node, equality, functions[0])
        values = [self.condition(operand, depth + 1) if equality and _is_boolean(operand)
                  else self.number(operand, depth + 1) for operand in operands]
        return _chain(functions, values)

    def _is_text(self, node: ast.expr) -> bool:
        return ((isinstance(node, ast.Constant) and isinstance(node.value, str))
                or (isinstance(node, ast.Name) and node.id in self.text_features))

    def text_comparison(self, node: ast.Compare, equality: bool,
                        compare: Callable[[Any, Any], bool]) -> Predicate:
        """``country == "DE"``: a text feature and a string (or two text features), with ==
        or != only."""
        left, right = node.left, node.comparators[0]
        if not equality:
            raise _Problem(f"text is compared with == or != only, at column "
                           f"{self._operator_column(node.left, node.comparators[-1])}")
        values = []
        for operand in (left, right):
            if isinstance(operand, ast.Constant) and isinstance(operand.value, str):
                if len(operand.value) > 256:
                    raise _Problem(f"the string at column {self.column(operand)} is longer "
                                   "than 256 characters")
                values.append(_constant_text(operand.value))
            elif isinstance(operand, ast.Name) and operand.id in self.text_features:
                self.used.setdefault(operand.id)
                values.append(_text_feature(operand.id))
            else:
                raise _Problem(f"'{self.snippet(operand)}' at column {self.column(operand)} is "
                               "not text: a text feature compares with a string, e.g. "
                               "country == \"DE\"")
        return lambda features: compare(values[0](features), values[1](features))

    def interest(self, node: ast.Call) -> Value:
        """``interest("shoes")``: the user's share of interest in a category (0 to 1)."""
        args = node.args
        if (node.keywords or len(args) != 1 or not isinstance(args[0], ast.Constant)
                or not isinstance(args[0].value, str) or not args[0].value):
            raise _Problem(f"interest takes one category name in quotes, e.g. "
                           f"interest(\"shoes\"), at column {self.column(node)}")
        self.reads_interests = True
        key = "interest:" + args[0].value
        return lambda features: features.get(key, 0.0)

    def number(self, node: ast.expr, depth: int) -> Value:
        """Compile a node that must be a number: a feature, a literal, or minus a number."""
        _check_depth(depth)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "interest"):
            return self.interest(node)
        if isinstance(node, ast.Name) and node.id in self.text_features:
            raise _Problem(f"'{node.id}' at column {self.column(node)} is text: compare it with "
                           f"a string, e.g. {node.id} == \"...\"")
        if isinstance(node, ast.Name) and node.id not in _BOOLEANS:
            return self.feature(node)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            number = _literal(node.value, self.column(node))
            self.constants.update((number, -number))  # cheaper than tracking the sign
            return lambda features: number
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.number(node.operand, depth + 1)
            return lambda features: -inner(features)
        if _is_boolean(node):
            raise _Problem(f"'{self.snippet(node)}' at column {self.column(node)} is a "
                           "condition, not a number: conditions and true/false can only be "
                           "compared with == or !=")
        raise self.rejected(node)

    def feature(self, node: ast.Name) -> Value:
        name = node.id
        if name not in self.known:
            close = difflib.get_close_matches(name, sorted(self.known), n=3)
            suggestion = f" (did you mean {_or_list(close)}?)" if close else ""
            raise _Problem(f"unknown feature {name!r}{suggestion} at column "
                           f"{self.column(node)}; see {FEATURES_DOC}")
        self.used.setdefault(name)
        return lambda features: features[name]

    def _operator_column(self, left: ast.expr, right: ast.expr) -> int:
        """Column of the operator between two operands (skipping spaces and parentheses)."""
        raw = self.text.encode()
        start, end = left.end_col_offset or 0, right.col_offset
        between = raw[start:end].decode("utf-8", "replace")
        skipped = len(between) - len(between.lstrip(" \t\f()"))
        return len(raw[:start].decode("utf-8", "replace")) + skipped + self.indent + 1


def _constant_text(value: str) -> Value:
    return lambda features: value


def _text_feature(name: str) -> Value:
    return lambda features: features[name]


def _check_depth(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Problem("the rule is nested too deeply")


def _describe_constant(value: object) -> str:
    if isinstance(value, str | bytes):
        return "a string: only text features (country, city ...) compare with strings"
    return f"'{value!r}'" if value is None or value is Ellipsis else f"the number {value!r}"


def _boolean_constant(node: ast.expr) -> bool | None:
    """``true``/``false`` (or Python's ``True``/``False``) as a bool, else None."""
    if isinstance(node, ast.Name):
        return _BOOLEANS.get(node.id)
    return node.value if isinstance(node, ast.Constant) and type(node.value) is bool else None


def _literal(value: float, column: int) -> float:
    """A rule's number as the float it is compared as; one beyond :data:`MAX_LITERAL` (or a
    400-digit integer, which no float holds) would only raise or mislead at run time."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not abs(number) <= MAX_LITERAL:
        raise _Problem(f"the number at column {column} is out of range: rules compare "
                       f"features with numbers from -{MAX_LITERAL:g} to {MAX_LITERAL:g}")
    return number


def _is_boolean(node: ast.expr) -> bool:
    return (_boolean_constant(node) is not None or isinstance(node, ast.BoolOp | ast.Compare)
            or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)))


def _or_list(names: list[str]) -> str:
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _chain(functions: list[Callable[[float, float], bool]], values: list[Value]) -> Predicate:
    """``a < b <= c``: every comparison holds, each operand evaluated once, left to right."""
    if len(functions) == 1:
        compare, (left, right) = functions[0], values
        return lambda features: compare(left(features), right(features))

    def holds(features: Features) -> bool:
        left = values[0](features)
        for compare, value in zip(functions, values[1:], strict=True):
            right = value(features)
            if not compare(left, right):
                return False
            left = right
        return True
    return holds


def _line(node: yaml.Node | None) -> int:
    return 1 if node is None else node.start_mark.line + 1
