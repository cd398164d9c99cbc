"""Rule segments: the safe expression language, its error messages, and the rule file."""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.definitions import FEATURES
from segmenter.rule_file import load_rules, parse_rules
from segmenter.rules import Rule, RuleError, compile_rule

ROOT = Path(__file__).resolve().parent.parent
KNOWN = ["orders", "monetary", "cart_adds", "open_cart", "days_since_last_order",
         "days_since_first_order", "page_views"]
INF = math.inf
USER = {"orders": 3, "monetary": 250.0, "cart_adds": 2, "open_cart": 1, "page_views": 40,
        "days_since_last_order": 12.5, "days_since_first_order": 80.0}
VISITOR = {"orders": 0, "monetary": 0.0, "cart_adds": 1, "open_cart": 0, "page_views": 5,
           "days_since_last_order": INF, "days_since_first_order": INF}


def holds(text: str, features: Mapping[str, float]) -> bool:
    return compile_rule("test", text, KNOWN).holds(features)


def reason(text: str, known: list[str] = KNOWN) -> str:
    with pytest.raises(RuleError) as caught:
        compile_rule("test", text, known)
    assert str(caught.value) == f"segment 'test': {caught.value.reason}"
    return caught.value.reason


@pytest.mark.parametrize(("text", "user", "visitor"), [
    ("orders < 3", False, True),
    ("orders <= 3", True, True),
    ("orders > 0", True, False),
    ("orders >= 3", True, False),
    ("orders == 0", False, True),
    ("orders != 0", True, False),
    ("1 <= orders < 5", True, False),
    ("0 <= orders <= 0 < cart_adds", False, True),
    ("orders > cart_adds > 1", True, False),
    ("monetary >= 99.5 and monetary < 1e3", True, False),
    ("not orders > 0 and cart_adds > 0", False, True),
    ("not (orders > 0 and cart_adds > 0)", False, True),
    ("orders > 5 or cart_adds > 1 and page_views > 10", True, False),
    ("(orders > 5 or cart_adds > 1) and page_views > 10", True, False),
    ("orders > 5 or (cart_adds > 0 and page_views < 10)", False, True),
    ("not not orders == 3", True, False),
    ("monetary > -5 and -orders < -2", True, False),
    ("-orders >= -0.5", False, True),
    ("true", True, True),
    ("false", False, False),
    ("True and not False", True, True),
    ("true and orders > 0", True, False),
    ("false or orders == 0", False, True),
    ("open_cart == true", True, False),
    ("open_cart != false", True, False),
    ("(orders > 0) == (cart_adds > 1)", True, True),
    ("(orders > 0) != (cart_adds > 1)", False, False),
    ("(orders > 0) == false", False, True),
    ("days_since_last_order > 30", False, True),
    ("days_since_last_order < 1e15", True, False),
    ("days_since_last_order == days_since_first_order", False, True),
    ("-days_since_last_order < -1000", False, True),
    ("  orders > 0\n  and cart_adds > 0\n", True, False),
])
def test_good_rules(text: str, user: bool, visitor: bool) -> None:
    assert holds(text, USER) is user
    assert holds(text, VISITOR) is visitor


def test_rule_records_its_text_and_features() -> None:
    rule = compile_rule("vip", "monetary >= 1000 or orders >= 5 or orders > 100", KNOWN,
                        description="Big spenders")
    assert (rule.name, rule.text, rule.description) == (
        "vip", "monetary >= 1000 or orders >= 5 or orders > 100", "Big spenders")
    assert rule.features == {"monetary", "orders"}
    assert compile_rule("all", "true", KNOWN).features == frozenset()


@pytest.mark.parametrize(("text", "message"), [
    ("len(orders) > 1", 'a function call is not allowed at column 1: only interest("category")'),
    ("orders > 1 and __import__('os').system('ls')",
     'a function call is not allowed at column 16: only interest("category")'),
    ("orders.real > 1", "an attribute ('.') is not allowed at column 1"),
    ("orders[0] > 1", "a subscript ('[...]') is not allowed at column 1"),
    ("orders == 'x'", "'orders' at column 1 is not text: a text feature compares with a string, "
                      'e.g. country == "DE"'),
    ("orders + 1 > 2", "arithmetic ('+') is not allowed at column 8"),
    ("orders > (monetary * 2)", "arithmetic ('*') is not allowed at column 20"),
    ("orders > 2 - 1", "arithmetic ('-') is not allowed at column 12"),
    ("orders in (1, 2)", "'in' is not allowed at column 8"),
    ("orders not in (1, 2)", "'not in' is not allowed at column 8"),
    ("orders is 1", "'is' is not allowed at column 8"),
    ("orders > 1 & cart_adds > 0", "'&' is not allowed at column 12: use 'and'"),
    ("~(orders > 1)", "'~' is not allowed at column 1: use 'not'"),
    ("+orders > 1", "unary '+' is not allowed at column 1"),
    ("(n := 1) > 0", "an assignment (':=') is not allowed at column 2"),
    ("lambda: orders > 1", "a lambda is not allowed at column 1"),
    ("orders > 1 if true else false", "'if ... else' is not allowed at column 1"),
    ("orders > 1, true", "a tuple (',') is not allowed at column 1"),
    ("[orders > 1]", "a list is not allowed at column 1"),
    ("f'{orders}' == 1", "an f-string is not allowed at column 1"),
    ("orders == None", "'None' is not allowed at column 11"),
    ("orders == 1j", "the number 1j is not allowed at column 11"),
    ("days_since_last_order < 1e308", "the number at column 25 is out of range: rules compare "
                                      "features with numbers from -1e+15 to 1e+15"),
    ("orders > " + "9" * 400, "the number at column 10 is out of range: rules compare "
                              "features with numbers from -1e+15 to 1e+15"),
    ("orders > 1 # comment", "'#' is not allowed at column 12"),
])
def test_disallowed_constructs(text: str, message: str) -> None:
    assert reason(text) == message


def test_columns_count_characters_not_bytes() -> None:
    known = [*KNOWN, "déjà_vu"]
    assert reason("déjà_vu > 1 or len(orders) > 1", known) == (
        'a function call is not allowed at column 16: only interest("category")')
    assert reason("déjà_vu > 1 or orders in (1, 2)", known) == "'in' is not allowed at column 23"


@pytest.mark.parametrize(("text", "message"), [
    ("orders", "'orders' at column 1 is a number, not a condition: use a comparison such as "
               "'orders > 0'"),
    ("5", "'5' at column 1 is a number, not a condition"),
    ("-orders", "'-orders' at column 1 is a number, not a condition"),
    ("orders > 1 and cart_adds", "'cart_adds' at column 16 is a number, not a condition"),
    ("cart_adds or orders > 1", "'cart_adds' at column 1 is a number, not a condition"),
    ("not orders", "'orders' at column 5 is a number, not a condition"),
    ("true < 1", "'true' at column 1 is a condition, not a number"),
    ("orders > (cart_adds > 1)", "'cart_adds > 1' at column 11 is a condition, not a number"),
    ("-true == 1", "'true' at column 2 is a condition, not a number"),
    ("orders > 0 == false", "'false' at column 15 is a condition: it cannot be in a chained "
                            "comparison; add parentheses, e.g. '(orders > 0) == false'"),
])
def test_rules_must_be_conditions_of_numbers(text: str, message: str) -> None:
    assert reason(text).startswith(message)


def test_unknown_features_suggest_close_matches_and_the_docs() -> None:
    assert reason("ordrs > 1") == (
        "unknown feature 'ordrs' (did you mean 'orders'?) at column 1; see docs/features.md")
    message = reason("orders > 1 and monetry > 5", list(FEATURES))
    assert message.startswith("unknown feature 'monetry' (did you mean 'monetary', ")
    assert message.endswith("at column 16; see docs/features.md")
    assert reason("zzz == 1") == "unknown feature 'zzz' at column 1; see docs/features.md"
    assert reason("ordrs").startswith("unknown feature 'ordrs'")  # before "not a condition"


@pytest.mark.parametrize(("text", "message"), [
    ("orders > > 1", "syntax error at column 10: invalid syntax"),
    ("orders > 1 and", "syntax error at the end of the rule"),
    ("(orders > 1", "syntax error at column 1: '(' was never closed"),
    ("   orders > 1)", "syntax error at column 14: unmatched ')'"),
    ("orders > 1 AND cart_adds > 0", "(write and, or, not in lower case)"),
    ("orders > 1 && cart_adds > 0", "(write 'and' and 'or' instead of '&&' and '||')"),
    ("orders = 1", "(compare with '==', not '=')"),
    ("", "the rule is empty"),
    ("  \n ", "the rule is empty"),
    ("not " * 100 + "orders > 1", "the rule is nested too deeply"),
    ("not " * 490 + "orders > 1", "the rule is nested too deeply"),
    ("-" * 1990 + "1 > 0", "the rule is nested too deeply"),
    ("orders > 1" + " " * 3000, "the rule is longer than 2000 characters"),
    ("orders > 1\x00", "syntax error"),
])
def test_syntax_errors_say_where(text: str, message: str) -> None:
    found = reason(text)
    assert found.startswith(message) or found.endswith(message), found


def test_bad_segment_name() -> None:
    with pytest.raises(RuleError, match="bad segment name 'Vip'"):
        compile_rule("Vip", "orders > 1", KNOWN)


def holding(rules: list[Rule], features: dict) -> set[str]:
    """The rule segments a user is in: every one whose rule holds."""
    return {rule.name for rule in rules if rule.holds(features)}


def test_rule_segments_predict_every_segment_that_holds() -> None:
    rules = [compile_rule("buyers", "orders > 0", KNOWN, description="Ordered"),
             compile_rule("carts", "cart_adds > 0", KNOWN),
             compile_rule("never", "false", KNOWN)]
    assert holding(rules, USER) == {"buyers", "carts"}
    assert holding(rules, VISITOR) == {"carts"}
    assert [rule.description for rule in rules] == ["Ordered", "", ""]


# --- the rule file ---------------------------------------------------------------------------

GOOD_FILE = """\
# comment
segments:
  cart_abandoners:
    rule: cart_adds > 0 and orders == 0
    description: Added to cart but never bought
  vip:
    rule: monetary >= 1000 or orders >= 5
  everyone:
    rule: true
  long_rule:
    rule: >-
      orders > 1
      and cart_adds > 1
    description: 2024
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "segments.yaml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(RuleError) as caught:
        load_rules(path, KNOWN)
    return str(caught.value).replace(str(path), "FILE")


def test_load_good_file(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, GOOD_FILE), KNOWN)
    assert [rule.name for rule in rules] == ["cart_abandoners", "vip", "everyone", "long_rule"]
    assert rules[3].text == "orders > 1 and cart_adds > 1"
    assert {rule.name: rule.description for rule in rules} == {
        "cart_abandoners": "Added to cart but never bought", "vip": "",
        "everyone": "", "long_rule": "2024"}
    assert holding(rules, VISITOR) == {"cart_abandoners", "everyone"}
    assert holding(rules, USER) == {"everyone", "long_rule"}


@pytest.mark.parametrize("text", ["segments: {}\n", "segments:\n", "# nothing yet\nsegments:\n"])
def test_no_rule_segments_is_fine(tmp_path: Path, text: str) -> None:
    assert load_rules(write(tmp_path, text), KNOWN) == []


def test_every_bad_rule_is_reported_with_its_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, """\
segments:
  fine:
    rule: orders > 0
  vip:
    description: Big spenders
    rule: revnue >= 1000 or orders >= 5
  bad_call:
    rule: len(orders) > 1
  also_fine:
    rule: cart_adds > 0
""")
    assert message.splitlines() == [
        "FILE line 6, segment 'vip': unknown feature 'revnue' at column 1; see docs/features.md",
        "FILE line 8, segment 'bad_call': a function call is not allowed at column 1: only "
        'interest("category")',
    ]


def test_message_names_file_line_segment_and_reason() -> None:
    text = """\
# Rule segments
segments:
  cart_abandoners:
    rule: cart_adds > 0 and orders == 0
    description: Added to cart but never bought
  vip:
    rule: revnue >= 1000 or orders >= 5
    description: Big or frequent spenders
"""
    with pytest.raises(RuleError) as caught:
        parse_rules(text, ["cart_adds", "orders", "revenue"], source="config/segments.yaml")
    assert str(caught.value) == (
        "config/segments.yaml line 7, segment 'vip': unknown feature 'revnue' "
        "(did you mean 'revenue'?) at column 1; see docs/features.md")


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n- b\n", "FILE line 1: the file must hold a mapping with the key 'segments'"),
    ("", "FILE line 1: the file must hold a mapping with the key 'segments'"),
    ("{}\n", "FILE line 1: the key 'segments' is missing"),
    ("segment:\n  a:\n    rule: true\n", "FILE line 1: top-level key 'segment' is not allowed"),
    ("segments: {}\nsegments: {}\n", "FILE line 1: top-level key 'segments' is given twice"),
    ("segments: [a, b]\n", "FILE line 1: 'segments' must be a mapping"),
    ("segments:\n  Vip:\n    rule: true\n", "FILE line 2, segment 'Vip': bad segment name 'Vip'"),
    ("segments:\n  9lives:\n    rule: true\n", "FILE line 2, segment '9lives': bad segment name"),
    ("segments:\n  vip: orders > 1\n",
     "FILE line 2, segment 'vip': must be a mapping with 'rule' (and optionally 'description', "
     "'min_dwell_minutes')"),
    ("segments:\n  vip:\n    description: x\n", "FILE line 2, segment 'vip': 'rule' is missing"),
    ("segments:\n  vip:\n    rule: true\n    descripton: x\n",
     "FILE line 4, segment 'vip': unknown key 'descripton' (did you mean 'description'?); "
     "allowed: rule, description, min_dwell_minutes"),
    ("segments:\n  vip:\n    rule: true\n    min_dwell_minutes: soon\n",
     "FILE line 4, segment 'vip': 'min_dwell_minutes' must be a number of minutes >= 0, "
     "got 'soon'"),
    ("segments:\n  vip:\n    rule: true\n    min_dwell_minutes: -5\n",
     "FILE line 4, segment 'vip': 'min_dwell_minutes' must be a number of minutes >= 0, "
     "got '-5'"),
    ("segments:\n  vip:\n    rule:\n", "FILE line 3, segment 'vip': 'rule' is empty"),
    ("segments:\n  vip:\n    rule: ''\n", "FILE line 3, segment 'vip': 'rule' is empty"),
    ("segments:\n  vip:\n    rule: [orders > 1]\n",
     "FILE line 3, segment 'vip': 'rule' must be text, not a list"),
    ("segments:\n  vip:\n    rule: true\n    description: {a: 1}\n",
     "FILE line 4, segment 'vip': 'description' must be text, not a mapping"),
    ("segments:\n  vip:\n    rule: true\n  vip:\n    rule: false\n",
     "FILE line 4, segment 'vip': defined twice (first at line 2)"),
    ("segments:\n  vip:\n    rule: true\n    rule: false\n",
     "FILE line 4, segment 'vip': 'rule' is given twice"),
    ("segments:\n  vip:\n    rule: 5\n", "FILE line 3, segment 'vip': '5' at column 1 is a number"),
    ("segments: [\n", "FILE is not valid YAML"),
])
def test_bad_shapes(tmp_path: Path, text: str, message: str) -> None:
    assert load_error(tmp_path, text).startswith(message)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"rule file not found: .*nowhere\.yaml"):
        load_rules(tmp_path / "nowhere.yaml", KNOWN)


def test_shipped_rules_load_against_the_documented_features() -> None:
    rules = load_rules(ROOT / "config" / "segments.yaml", FEATURES)
    assert len(rules) >= 3
    assert all(rule.description for rule in rules)
    assert all(rule.features <= FEATURES.keys() for rule in rules)
    visitor = {name: 0.0 for name in FEATURES} | {
        "days_since_last_order": INF, "days_since_first_order": INF,
        "purchase_interval_days": INF, "days_since_last_cart": 1.0, "cart_adds_7d": 2,
        "open_cart": 1, "open_cart_value": 59.8, "abandoned_cart": 1}
    assert holding(rules, visitor) == {"cart_abandoners"}
    assert holding(rules, visitor | {"abandoned_cart": 0}) == set()


# --- properties ------------------------------------------------------------------------------

PROPERTY_FEATURES = ["orders", "monetary", "days_since_last_order"]
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt,
    ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}
#: Precedence of the rendered form: or < and < not < comparisons, constants, parentheses.
OR, AND, NOT, ATOM = 1, 2, 3, 4


@dataclass(frozen=True)
class Expr:
    """A generated rule: its text, its precedence and the expected value, computed directly."""

    text: str
    precedence: int
    value: Callable[[Mapping[str, float]], float]

    def operand(self, precedence: int) -> str:
        return self.text if self.precedence >= precedence else f"({self.text})"


def _feature(name: str, negate: bool) -> Expr:
    if negate:
        return Expr(f"-{name}", ATOM, lambda f: -f[name])
    return Expr(name, ATOM, lambda f: f[name])


def _literal(number: float) -> Expr:
    return Expr(repr(number), ATOM, lambda f: number)


numbers = st.one_of(
    st.builds(_feature, st.sampled_from(PROPERTY_FEATURES), st.booleans()),
    st.integers(-1000, 1000).map(_literal),
    st.floats(-1e6, 1e6, allow_nan=False).map(_literal),
)


@st.composite
def comparisons(draw: st.DrawFn) -> Expr:
    operands = draw(st.lists(numbers, min_size=2, max_size=4))
    ops = draw(st.lists(st.sampled_from(list(OPERATORS)), min_size=len(operands) - 1,
                        max_size=len(operands) - 1))
    text = operands[0].text + "".join(
        f" {op} {x.text}" for op, x in zip(ops, operands[1:], strict=True))

    def value(f: Mapping[str, float]) -> bool:
        values = [x.value(f) for x in operands]
        pairs = itertools.pairwise(values)
        return all(OPERATORS[op](a, b) for op, (a, b) in zip(ops, pairs, strict=True))
    return Expr(text, ATOM, value)


def _combine(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    def negation(x: Expr) -> Expr:
        return Expr(f"not {x.operand(NOT)}", NOT, lambda f: not x.value(f))

    def conjunction(a: Expr, b: Expr) -> Expr:
        return Expr(f"{a.operand(AND)} and {b.operand(AND)}", AND,
                    lambda f: a.value(f) and b.value(f))

    def disjunction(a: Expr, b: Expr) -> Expr:
        return Expr(f"{a.operand(OR)} or {b.operand(OR)}", OR,
                    lambda f: a.value(f) or b.value(f))

    def parenthesised(x: Expr) -> Expr:
        return Expr(f"({x.text})", ATOM, x.value)

    return st.one_of(children.map(negation), st.builds(conjunction, children, children),
                     st.builds(disjunction, children, children), children.map(parenthesised))


conditions = st.recursive(
    st.one_of(comparisons(), st.sampled_from([Expr("true", ATOM, lambda f: True),
                                              Expr("false", ATOM, lambda f: False)])),
    _combine, max_leaves=12)
feature_values = st.fixed_dictionaries({
    name: st.sampled_from([0, 1, 2, 5, 2.5, -3, 999.99, 1000, INF, -INF])
    for name in PROPERTY_FEATURES})


@settings(max_examples=400, deadline=None)
@given(conditions, st.lists(feature_values, min_size=1, max_size=4))
def test_rules_evaluate_like_the_reference(expr: Expr, users: list[dict[str, float]]) -> None:
    rule = compile_rule("generated", expr.text, PROPERTY_FEATURES)
    for features in users:
        assert rule.holds(features) is bool(expr.value(features)), expr.text


TOKENS = ["orders", "monetary", "ordrs", "true", "false", "1", "-2.5", "1e3", "and", "or",
          "not", "<", "<=", "==", "!=", ">", "(", ")", "[", "]", ".", ",", "'", '"', "+", "*",
          "in", "is", ":=", "lambda", ":", "len", "#", "\\", "\n", "\x00", "é", " ", "if",
          "else", "{", "}", "f'", "@", "~", "&", "AND", "=", "yield", "await", "**", "0x1f"]
garbage = st.one_of(st.text(max_size=80),
                    st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join),
                    st.lists(st.sampled_from(TOKENS), max_size=30).map("".join))
EVERYONE = {name: 1.0 for name in FEATURES} | {"days_since_last_order": INF}


@settings(max_examples=1000, deadline=None)
@given(garbage)
def test_garbage_rules_raise_only_rule_errors(text: str) -> None:
    try:
        rule = compile_rule("garbage", text, FEATURES)
    except RuleError:
        return
    assert isinstance(rule.holds(EVERYONE), bool)


yaml_garbage = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(["segments:", "\n", "  ", "vip:", "rule:", "description:", "-",
                              "orders > 1", "true", "[", "]", "{", "}", "&a", "*a", "!!str",
                              "'", ":", "#", "Vip:", "? ", "<<:", "null", "\t"]),
             max_size=40).map("".join),
)


@settings(max_examples=500, deadline=None)
@given(yaml_garbage)
def test_garbage_rule_files_raise_only_rule_errors(text: str) -> None:
    try:
        rules = parse_rules(text, FEATURES, source="garbage.yaml")
    except RuleError as error:
        assert str(error).startswith("garbage.yaml"), str(error)
        return
    assert all(isinstance(rule.holds(EVERYONE), bool) for rule in rules)


# --- text features and interests -------------------------------------------------------------

def test_text_features_compare_with_strings_and_interests_by_category() -> None:
    from features.definitions import FEATURES

    german = compile_rule("de_buyers", 'country == "DE" and orders >= 3', FEATURES)
    assert german.features == {"country", "orders"}
    assert german.holds({"country": "DE", "orders": 3})
    assert not german.holds({"country": "", "orders": 5})
    shoes = compile_rule("shoe_fans", 'interest("shoes") > 0.5 and preferred_device != "mobile"',
                         FEATURES)
    assert shoes.reads_interests
    assert shoes.holds({"interest:shoes": 0.6, "preferred_device": "desktop"})
    assert not shoes.holds({"preferred_device": "desktop"})  # no interest in shoes: 0
    for text, reason in [
        ('country > "DE"', "text is compared with == or != only, at column 9"),
        ("country == 5", "'5' at column 12 is not text"),
        ("country > 1", "text is compared with == or != only"),
        ("country and orders > 1", "'country' at column 1 is text: compare it with a string"),
        ("interest(shoes) > 0.5", "interest takes one category name in quotes"),
        ('interest("") > 0.5', "interest takes one category name in quotes"),
    ]:
        with pytest.raises(RuleError) as caught:
            compile_rule("r", text, FEATURES)
        assert reason in caught.value.reason, (text, caught.value.reason)


def test_the_commented_examples_of_the_shipped_rule_file_compile() -> None:
    from features.definitions import FEATURES, MODEL_FEATURES
    from segmenter.rule_file import parse_rules

    text = (ROOT / "config" / "segments.yaml").read_text()
    examples = "segments:\n" + "\n".join(line[1:] for line in text.splitlines()
                                         if line.startswith("#  "))
    names = [rule.name for rule in parse_rules(examples, FEATURES | MODEL_FEATURES)]
    assert {"german_regulars", "valuable_but_slipping"} <= set(names) and len(names) >= 6
