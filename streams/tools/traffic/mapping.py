"""Map a shop's exported rows (CSV or JSON Lines, its own column names) onto the input contract.

Pure functions, no I/O: the readers take lines, the loader takes records. Every contract field
(see ``docs/events.md``) takes its value from the column ``--map`` names for it, else from the
column of the same name; empty cells count as missing. Numeric fields are converted from text,
``ts`` may be ISO-8601 or epoch seconds. Without an ``event_id`` column, orders get
``order-{order_id}`` and other events a hash of the row, so replaying a file twice yields the
same event ids (the worker counts an event id once).

>>> mapping = parse_map(["user_id=customer,ts=created_at", "total=amount"], "order")
>>> header, records = csv_records(["customer,created_at,order_id,amount,currency",
...                                "c-7,1767323045,1001,25.50,EUR",
...                                "c-8,2026-01-02T03:04:05Z,1002,n/a,"])
>>> check_columns(mapping, "order", header)
>>> loaded = load_events(records, "order", mapping)
>>> loaded.events
[{'event_id': 'order-1001', 'ts': 1767323045.0, 'user_id': 'c-7', 'order_id': '1001', \
'total': 25.5, 'currency': 'EUR', 'items': []}]
>>> print(loaded.examples[0])
line 3: total (column 'amount'): Input should be a valid number, unable to parse string as a \
number (got 'n/a')
"""

from __future__ import annotations

import csv
import hashlib
import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson
from pydantic import ValidationError

from features.errors import BadInput
from features.events import EVENT_TYPES

#: Fields every event has, then each kind's own fields (``items``: orders only, a JSON list).
COMMON_FIELDS = ("event_id", "ts", "user_id", "anonymous_id")
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "order": ("order_id", "total", "currency", "status", "refund", "items"),
    "click": ("page", "product_id", "category", "session_id"),
    "cart": ("action", "product_id", "category", "price", "quantity"),
}
#: Fields some column must provide (besides user_id or anonymous_id); event_id can be derived.
REQUIRED: dict[str, tuple[str, ...]] = {
    "order": ("ts", "order_id", "total"), "click": ("ts", "page"), "cart": ("ts", "action")}
NUMERIC = frozenset({"ts", "total", "refund", "price", "quantity"})
#: Rejected rows whose line and reason are kept for the report (the rest are only counted).
MAX_REPORTED = 10

#: A record from a reader: its line number and the row, or why the line is not a row.
Record = tuple[int, "Mapping[str, Any] | RowError"]


class MappingError(BadInput):
    """The ``--map`` option or the file's columns cannot work: a usage error, nothing is sent."""


class RowError(BadInput):
    """One row is not a valid event; the message says why."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that was not replayed: where it is in the file and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(slots=True)
class Loaded:
    """What a file held: valid events in event-time order, and the rejected rows."""

    events: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    rejected: int = 0
    examples: list[Rejected] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)

    def reject(self, line: int, reason: str) -> None:
        """Count a rejected row, keeping the first :data:`MAX_REPORTED` for the report."""
        self.rejected += 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append(Rejected(line, reason))


def fields_of(kind: str) -> tuple[str, ...]:
    """The contract fields of an event kind, common fields first."""
    return COMMON_FIELDS + KIND_FIELDS[kind]


def parse_map(specs: Iterable[str], kind: str) -> dict[str, str]:
    """``["FIELD=COLUMN,FIELD=COLUMN", ...]`` -> ``{field: column}``; MappingError if wrong.

    >>> parse_map(["user_id=customer,ts=created_at", "total=amount"], "order")
    {'user_id': 'customer', 'ts': 'created_at', 'total': 'amount'}
    """
    known = fields_of(kind)
    mapping: dict[str, str] = {}
    for item in itertools.chain.from_iterable(spec.split(",") for spec in specs):
        if not item.strip():
            continue
        name, sep, column = (part.strip() for part in item.partition("="))
        if not sep or not name or not column:
            raise MappingError(f"--map {item.strip()!r}: expected FIELD=COLUMN")
        if name not in known:
            raise MappingError(f"--map {item.strip()!r}: {kind} events have no field {name!r} "
                               f"(fields: {', '.join(known)})")
        if mapping.setdefault(name, column) != column:
            raise MappingError(f"--map: {name} is mapped twice ({mapping[name]!r}, {column!r})")
    return mapping


def check_columns(mapping: Mapping[str, str], kind: str, columns: Collection[str]) -> None:
    """Refuse mapped columns the file lacks, and required fields no column provides."""
    shown = ", ".join(sorted(columns)[:30]) or "none"
    absent = sorted({column for column in mapping.values() if column not in columns})
    if absent:
        raise MappingError(f"--map names column(s) not in the file: {', '.join(absent)} "
                           f"(columns: {shown})")
    for name in REQUIRED[kind]:
        if mapping.get(name, name) not in columns:
            raise MappingError(f"no column provides {name}: add --map {name}=COLUMN "
                               f"(columns: {shown})")
    if not any(mapping.get(name, name) in columns for name in ("user_id", "anonymous_id")):
        raise MappingError("no column provides user_id or anonymous_id: add --map "
                           f"user_id=COLUMN or anonymous_id=COLUMN (columns: {shown})")


def to_event(row: Mapping[str, Any], kind: str, mapping: Mapping[str, str]) -> dict[str, Any]:
    """One row -> the event dict as produced (``ts`` in epoch seconds); RowError if invalid."""
    source: dict[str, Any] = {}
    for name in fields_of(kind):
        value = row.get(mapping.get(name, name))
        if not _empty(value):
            source[name] = _convert(name, value)
    if "event_id" not in source:
        source["event_id"] = derive_event_id(kind, row, source.get("order_id"),
                                             source.get("status"))
    try:
        event = EVENT_TYPES[kind].model_validate(source)
    except ValidationError as exc:
        raise RowError(_describe(exc, mapping)) from None
    # Defaults the row did not set stay out (an order is placed unless it says otherwise).
    return event.model_dump(exclude_none=True, exclude={"kind"} | (
        {"status"} if "status" not in source else set()))


def derive_event_id(kind: str, row: Mapping[str, Any], order_id: object = None,
                    status: object = None) -> str:
    """A stable event id: ``order-{order_id}`` for an order placed, else a hash of the row's
    content (a cancellation or refund row of the same order is another event).

    >>> derive_event_id("order", {}, "1001")
    'order-1001'
    >>> derive_event_id("order", {"status": "refunded"}, "1001", "refunded").startswith("order-")
    True
    >>> derive_event_id("click", {"page": "/", "b": ""}) == derive_event_id("click", {"page": "/"})
    True
    """
    placed = status is None or status == "placed"
    if kind == "order" and placed and isinstance(order_id, str) and order_id.strip():
        return f"order-{order_id.strip()}"
    content = {key: value for key, value in row.items() if not _empty(value)}
    digest = hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=16)
    return f"{kind}-{digest.hexdigest()}"


def load_events(
    records: Iterable[Record], kind: str, mapping: Mapping[str, str], limit: int | None = None,
    on_row: Callable[[int], None] | None = None, every: int = 5_000,
) -> Loaded:
    """Validate up to ``limit`` records; keep the valid events sorted by time (stable).

    ``on_row(rows_read)`` is called every ``every`` rows and once at the end.
    """
    loaded = Loaded()
    for line, record in itertools.islice(records, limit):
        loaded.rows += 1
        if on_row is not None and loaded.rows % every == 0:
            on_row(loaded.rows)
        if isinstance(record, RowError):
            loaded.reject(line, str(record))
            continue
        loaded.columns.update(record)
        try:
            loaded.events.append(to_event(record, kind, mapping))
        except RowError as exc:
            loaded.reject(line, str(exc))
    loaded.events.sort(key=itemgetter("ts"))
    if on_row is not None:
        on_row(loaded.rows)
    return loaded


def csv_records(lines: Iterable[str]) -> tuple[list[str], Iterator[Record]]:
    """The header and ``(line, row)`` records of CSV text; the delimiter is read off the header.

    The delimiter is whichever of ``, ; TAB |`` the header line holds most of. Blank lines are
    skipped; a row with more (non-empty) cells than the header is a RowError record.
    """
    lines = iter(lines)
    first = next(lines, "")
    delimiter = max(",;\t|", key=first.count)
    reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
    header = [name.strip() for name in next(reader, [])]
    return [name for name in header if name], _csv_rows(reader, header)


def _csv_rows(reader: Any, header: Sequence[str]) -> Iterator[Record]:
    last_line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if reader.line_num == last_line:
                return
            yield last_line + 1, RowError(f"malformed CSV: {exc}")
            last_line = reader.line_num
            continue
        line, last_line = last_line + 1, reader.line_num
        if not cells:
            continue
        if any(cell.strip() for cell in cells[len(header):]):
            yield line, RowError(f"{len(cells)} cells but the header has {len(header)} columns")
            continue
        row: dict[str, str] = {}
        for name, cell in zip(header, cells, strict=False):
            if name:
                row.setdefault(name, cell)
        yield line, row


def jsonl_records(lines: Iterable[str]) -> Iterator[Record]:
    """``(line, object)`` records of JSON Lines text; blank lines are skipped.

    A line that is not a JSON object is a RowError record; a file that is one JSON array (not
    JSON Lines) is a MappingError.
    """
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if number == 1 and line.lstrip().startswith("["):
            raise MappingError("the file holds a JSON array; replay reads JSON Lines "
                               "(one object per line)")
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, RowError(f"invalid JSON: {exc}")
            continue
        if isinstance(record, dict):
            yield number, record
        else:
            yield number, RowError(f"expected a JSON object, got {type(record).__name__}")


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _convert(name: str, value: Any) -> Any:
    """Text to numbers for numeric fields, numbers to text for the others, JSON for items."""
    if name == "items":
        if not isinstance(value, str):
            return value
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RowError(f"items: not a JSON list: {exc}") from None
    if name in NUMERIC:
        return _number(value) if isinstance(value, str) else value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _number(text: str) -> int | float | str:
    """``"12"`` -> 12, ``"12.5"`` -> 12.5; text that is no number stays text (the model says why).
    """
    text = text.strip()
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _describe(error: ValidationError, mapping: Mapping[str, str]) -> str:
    """``"total (column 'amount'): Input should be ... (got 'n/a')"``, one part per problem."""
    parts = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"])
        root = str(problem["loc"][0]) if problem["loc"] else ""
        where = f"{name} (column {mapping[root]!r})" if root in mapping else name or "event"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] not in {"missing", "value_error"} and problem["loc"]:
            shown = repr(problem["input"])
            message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
