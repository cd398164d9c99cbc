"""Rule files: the YAML of ``config/segments.yaml`` to compiled :class:`~segmenter.rules.Rule`s.

Every problem in a file is reported at once, each with its line, so a marketer fixes them all
in one go (the rule language itself is in :mod:`segmenter.rules`).

>>> rules = parse_rules("segments:\\n  vip:\\n    rule: orders >= 5\\n", ["orders"])
>>> [(rule.name, rule.text) for rule in rules]
[('vip', 'orders >= 5')]
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from pathlib import Path

import yaml

from segmenter.rules import _NAME_HINT, NAME_PATTERN, Rule, RuleError, _line, _Problem, compile_rule


def load_rules(path: Path, known_features: Collection[str]) -> list[Rule]:
    """Read and compile a rule file; raise :class:`RuleError` listing every problem by line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError(f"rule file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"cannot read rule file {path}: {exc}") from None
    return parse_rules(text, known_features, source=str(path))


def parse_rules(text: str, known_features: Collection[str], source: str = "<rules>") -> list[Rule]:
    """Compile the rules of a YAML document (the content of a rule file named ``source``)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError) as exc:
        raise RuleError(f"{source} is not valid YAML: {exc}") from None
    segments = _segments_node(root, source)
    rules: list[Rule] = []
    problems: list[tuple[int, str, str]] = []  # line, segment name, reason
    seen: dict[str, int] = {}
    for key, value in segments.value if segments is not None else []:
        name = key.value if isinstance(key, yaml.ScalarNode) else ""
        try:
            rule_node, description, dwell = _entry(key, value, seen)
            rule = compile_rule(name, _text(rule_node), known_features, description=description,
                                min_dwell_minutes=dwell)
        except _Problem as problem:
            problems.append((problem.line or _line(key), name, str(problem)))
        except RuleError as error:
            problems.append((_line(rule_node), name, error.reason))
        else:
            rules.append(rule)
    if problems:
        raise RuleError("\n".join(
            f"{source} line {line}" + (f", segment {name!r}" if name else "") + f": {reason}"
            for line, name, reason in sorted(problems)))
    return rules


def _segments_node(root: yaml.Node | None, source: str) -> yaml.MappingNode | None:
    """The ``segments`` mapping node (None when it is empty: no rule segments)."""
    if not isinstance(root, yaml.MappingNode):
        raise RuleError(f"{source} line {_line(root)}: the file must hold a mapping with the "
                        "key 'segments'")
    keys = [_scalar(key) for key, _ in root.value]
    for key, _ in root.value:
        if _scalar(key) != "segments" or keys.count("segments") > 1:
            problem = "is given twice" if _scalar(key) == "segments" else "is not allowed"
            raise RuleError(f"{source} line {_line(key)}: top-level key '{_scalar(key)}' "
                            f"{problem} (the file holds only 'segments')")
    if not keys:
        raise RuleError(f"{source} line {_line(root)}: the key 'segments' is missing")
    found = root.value[0][1]
    if isinstance(found, yaml.ScalarNode) and found.tag == "tag:yaml.org,2002:null":
        return None
    if not isinstance(found, yaml.MappingNode):
        raise RuleError(f"{source} line {_line(found)}: 'segments' must be a mapping of "
                        "segment name -> {rule: ..., description: ...}")
    return found


_ENTRY_KEYS = ["rule", "description", "min_dwell_minutes"]


def _entry(
    key: yaml.Node, value: yaml.Node, seen: dict[str, int]
) -> tuple[yaml.Node, str, float | None]:
    """Check one segment's shape; return its rule node, description and minimum dwell."""
    if not isinstance(key, yaml.ScalarNode) or not NAME_PATTERN.match(key.value):
        raise _Problem(f"bad segment name '{_scalar(key)}': {_NAME_HINT}")
    if key.value in seen:
        raise _Problem(f"defined twice (first at line {seen[key.value]})")
    seen[key.value] = _line(key)
    if not isinstance(value, yaml.MappingNode):
        raise _Problem("must be a mapping with 'rule' (and optionally 'description', "
                       "'min_dwell_minutes')", value)
    fields: dict[str, yaml.Node] = {}
    for field_key, field_value in value.value:
        label = _scalar(field_key)
        if label not in _ENTRY_KEYS:
            close = difflib.get_close_matches(label, _ENTRY_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Problem(f"unknown key {label!r}{hint}; allowed: {', '.join(_ENTRY_KEYS)}",
                           field_key)
        if label in fields:
            raise _Problem(f"{label!r} is given twice", field_key)
        fields[label] = field_value
    if "rule" not in fields:
        raise _Problem("'rule' is missing")
    description = fields.get("description")
    dwell = fields.get("min_dwell_minutes")
    return (fields["rule"], "" if description is None else _text(description, "description"),
            None if dwell is None else _minutes(dwell))


def _minutes(node: yaml.Node) -> float:
    try:
        minutes = float(_scalar(node))
    except ValueError:
        minutes = -1.0
    if not 0 <= minutes < float("inf"):
        raise _Problem(f"'min_dwell_minutes' must be a number of minutes >= 0, got "
                       f"{_scalar(node)!r}", node)
    return minutes


def _text(node: yaml.Node, label: str = "rule") -> str:
    """A scalar's text as written (``rule: true`` is the rule 'true', not a YAML boolean)."""
    if not isinstance(node, yaml.ScalarNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
        raise _Problem(f"{label!r} must be text, not {kind}", node)
    null = node.tag == "tag:yaml.org,2002:null"
    if label == "rule" and (null or not node.value.strip()):
        raise _Problem("'rule' is empty", node)
    return "" if null else node.value


def _scalar(node: yaml.Node) -> str:
    return node.value if isinstance(node, yaml.ScalarNode) else f"<{node.id}>"
