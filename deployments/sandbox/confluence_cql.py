"""The CQL subset the Confluence test server understands, parsed the way Confluence does.

Grammar (case-insensitive keywords):
    query   := expr [ORDER BY field [ASC|DESC]]
    expr    := term (OR term)*
    term    := factor (AND factor)*
    factor  := "(" expr ")" | NOT factor | field op value
    op      := = | != | ~ | !~ | > | >= | < | <= | IN
    value   := "string with \\" and \\\\ escapes" | 'single quoted' | bare-word | (v, v...)
Fields: space (space.key), type, title, text, label, id, parent, lastmodified, created.
Dates: "yyyy/MM/dd HH:mm", "yyyy-MM-dd HH:mm", "yyyy/MM/dd", "yyyy-MM-dd" (UTC here).
A syntax error raises `CqlError` (the server answers 400, as Confluence does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class CqlError(ValueError):
    pass


TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>!=|!~|>=|<=|=|~|>|<|\(|\)|,)
    | (?P<word>[A-Za-z0-9_.:\-/]+)
    )""",
    re.VERBOSE,
)

FIELDS = {
    "space",
    "space.key",
    "type",
    "title",
    "text",
    "label",
    "id",
    "parent",
    "lastmodified",
    "created",
}


@dataclass
class Tok:
    kind: str
    value: str


def tokenize(cql: str) -> list[Tok]:
    pos, out = 0, []
    while pos < len(cql):
        if cql[pos:].strip() == "":
            break
        m = TOKEN.match(cql, pos)
        if not m or m.end() == pos:
            raise CqlError(f"Could not parse cql at position {pos}: {cql[pos : pos + 20]!r}")
        if m.group("str") is not None:
            raw = m.group("str")[1:-1]
            out.append(Tok("str", re.sub(r"\\(.)", r"\1", raw)))
        elif m.group("op") is not None:
            out.append(Tok("op", m.group("op")))
        else:
            out.append(Tok("word", m.group("word")))
        pos = m.end()
    return out


def parse_date(text: str) -> float:
    for fmt in ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise CqlError(f"Could not parse date {text!r}")


Predicate = Callable[[dict[str, Any]], bool]


class _Parser:
    def __init__(self, tokens: list[Tok]) -> None:
        self.toks = tokens
        self.i = 0
        self.order: tuple[str, bool] | None = None

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Tok:
        tok = self.peek()
        if tok is None:
            raise CqlError("Could not parse cql: unexpected end of query")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok and tok.kind == "word" and tok.value.lower() == word:
            self.i += 1
            return True
        return False

    def query(self) -> Predicate:
        pred = self.expr()
        if self.keyword("order"):
            if not self.keyword("by"):
                raise CqlError("Could not parse cql: expected BY after ORDER")
            field = self.take().value.lower()
            desc = self.keyword("desc")
            if not desc:
                self.keyword("asc")
            self.order = (field, desc)
        if self.peek() is not None:
            raise CqlError(f"Could not parse cql: unexpected {self.peek().value!r}")  # type: ignore[union-attr]
        return pred

    def expr(self) -> Predicate:
        left = self.term()
        while self.keyword("or"):
            right = self.term()
            left = (lambda a, b: lambda p: a(p) or b(p))(left, right)
        return left

    def term(self) -> Predicate:
        left = self.factor()
        while self.keyword("and"):
            right = self.factor()
            left = (lambda a, b: lambda p: a(p) and b(p))(left, right)
        return left

    def factor(self) -> Predicate:
        tok = self.peek()
        if tok and tok.kind == "op" and tok.value == "(":
            self.take()
            inner = self.expr()
            close = self.take()
            if close.value != ")":
                raise CqlError("Could not parse cql: expected )")
            return inner
        if self.keyword("not"):
            inner = self.factor()
            return lambda p: not inner(p)
        field_tok = self.take()
        field = field_tok.value.lower()
        if field_tok.kind != "word" or field not in FIELDS:
            raise CqlError(f"Could not parse cql: unknown field {field_tok.value!r}")
        op_tok = self.take()
        op = op_tok.value.lower()
        if op_tok.kind == "word" and op in ("in",):
            values = self.value_list()
            return _compare(field, "in", values)
        if op_tok.kind != "op" or op in ("(", ")", ","):
            raise CqlError(f"Could not parse cql: expected an operator after {field}")
        value = self.take()
        if value.kind == "op":
            raise CqlError(f"Could not parse cql: expected a value after {field} {op}")
        return _compare(field, op, [value.value])

    def value_list(self) -> list[str]:
        if self.take().value != "(":
            raise CqlError("Could not parse cql: expected ( after IN")
        values: list[str] = []
        while True:
            tok = self.take()
            if tok.value == ")":
                return values
            if tok.value == ",":
                continue
            values.append(tok.value)


def _compare(field: str, op: str, values: list[str]) -> Predicate:
    if field in ("lastmodified", "created"):
        when = parse_date(values[0])
        attr = "modified_at" if field == "lastmodified" else "created_at"
        ops: dict[str, Callable[[float, float], bool]] = {
            ">=": lambda a, b: a >= b,
            ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b,
            "<": lambda a, b: a < b,
            "=": lambda a, b: int(a // 86400) == int(b // 86400),
        }
        if op not in ops:
            raise CqlError(f"Could not parse cql: operator {op} not supported for {field}")
        fn = ops[op]
        return lambda p: fn(p[attr], when)
    if op in ("~", "!~"):
        if field not in ("title", "text"):
            raise CqlError(f"Could not parse cql: ~ is not supported for {field}")
        needle = values[0].lower().strip("*")
        key = "title" if field == "title" else "_text"

        def contains(p: dict[str, Any]) -> bool:
            return needle in str(p[key]).lower()

        return contains if op == "~" else (lambda p: not contains(p))
    if op not in ("=", "!=", "in"):
        raise CqlError(f"Could not parse cql: operator {op} not supported for {field}")

    def getter(p: dict[str, Any]) -> set[str]:
        if field in ("space", "space.key"):
            return {p["space_key"]}
        if field == "label":
            return set(p["labels"])
        if field == "parent":
            return {str(p.get("parent_id") or "")}
        if field == "id":
            return {str(p["id"])}
        return {str(p[field])}

    wanted = set(values)
    if op == "!=":
        return lambda p: not (getter(p) & wanted)
    return lambda p: bool(getter(p) & wanted)


def compile_cql(cql: str) -> tuple[Predicate, tuple[str, bool] | None]:
    """A predicate over the server's page dicts, and the ORDER BY (field, descending)."""
    parser = _Parser(tokenize(cql))
    return parser.query(), parser.order
