"""The portable row format: PostgreSQL's COPY text format, with one canonical rendering per type.

PostgreSQL produces and consumes it natively (COPY ... TO/FROM STDOUT), so rows never pass
through Python there; other engines render and parse the same bytes here.
"""
import json
import re
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa

NULL = b"\\N"
_ESCAPES = {b"\\": b"\\\\", b"\t": b"\\t", b"\n": b"\\n", b"\r": b"\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}


def type_tag(column_type):
    """A portable name for a column type; the manifest records it for every column."""
    t = column_type
    if isinstance(t, sa.Boolean):
        return "boolean"
    if isinstance(t, sa.Integer):
        return "integer"
    if isinstance(t, sa.Numeric) and not isinstance(t, sa.Float):
        return f"numeric({t.precision},{t.scale})" if t.scale is not None else "numeric"
    if isinstance(t, sa.Float):
        return "float"
    if isinstance(t, sa.DateTime):
        return "timestamp"
    if isinstance(t, sa.Date):
        return "date"
    if isinstance(t, sa.JSON):
        return "json"
    if isinstance(t, (sa.String, sa.Text)):
        return "text"
    raise TypeError(f"column type {t!r} has no portable representation yet")


def escape_text(text):
    data = text.encode("utf-8")
    if b"\\" in data or b"\t" in data or b"\n" in data or b"\r" in data:
        for raw, escaped in _ESCAPES.items():
            data = data.replace(raw, escaped)
    return data


_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SIMPLE_UNESCAPES = [("\\" + code, value) for code, value in _UNESCAPES.items() if code != "\\"]


def unescape_text(field):
    """COPY text escapes undone in a few passes of C-speed replaces: linear in the field, whatever it holds."""
    text = field.decode("utf-8")
    if "\\" not in text:
        return text
    if "\x00" in text:  # the placeholder below is taken: one regex pass instead
        return _ESCAPE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(1)), text)
    # Backslash pairs first (left to right, as a reader would), then every remaining backslash starts an escape.
    text = text.replace("\\\\", "\x00")
    for escaped, value in _SIMPLE_UNESCAPES:
        if escaped in text:
            text = text.replace(escaped, value)
    if "\\" in text:
        text = _ESCAPE.sub(r"\1", text)  # an unknown escape stands for its character
    return text.replace("\x00", "\\")


def _render_timestamp(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    text = value.isoformat(sep=" ")
    if "." in text:  # PostgreSQL prints no trailing zeros in the fraction
        text = text.rstrip("0").rstrip(".")
    return text.encode()


def renderer(tag):
    """value from a DBAPI cursor (any engine) -> canonical COPY text field."""
    if tag == "boolean":
        return lambda v: b"t" if v else b"f"
    if tag == "integer":
        return lambda v: str(int(v)).encode()
    if tag.startswith("numeric("):
        scale = Decimal(1).scaleb(-int(tag[:-1].split(",")[1]))
        return lambda v: str(Decimal(str(v)).quantize(scale)).encode()
    if tag in ("numeric", "float"):
        return lambda v: str(v).encode()
    if tag == "timestamp":
        return _render_timestamp
    if tag == "date":
        return lambda v: (v.isoformat() if isinstance(v, date) else str(v)).encode()
    return lambda v: escape_text(v if isinstance(v, str) else str(v))


def parser(tag):
    """canonical COPY text field -> Python value (before the target engine's own bind processing)."""
    if tag == "boolean":
        return lambda f: f == b"t"
    if tag == "integer":
        return lambda f: int(f)
    if tag.startswith("numeric") :
        return lambda f: Decimal(f.decode())
    if tag == "float":
        return lambda f: float(f)
    if tag == "timestamp":
        return lambda f: datetime.fromisoformat(f.decode())
    if tag == "date":
        return lambda f: date.fromisoformat(f.decode())
    if tag == "json":
        return lambda f: json.loads(unescape_text(f))
    return unescape_text


def render_row(values, renderers):
    return b"\t".join(NULL if v is None else render(v) for v, render in zip(values, renderers)) + b"\n"


def parse_line(line, parsers):
    fields = line.split(b"\t")
    if len(fields) != len(parsers):
        raise ValueError(f"expected {len(parsers)} fields, found {len(fields)}")
    return [None if f == NULL else parse(f) for f, parse in zip(fields, parsers)]


class RowTooLarge(ValueError):
    def __init__(self, what, limit):
        super().__init__(f"a {what} longer than {limit} bytes")
        self.what, self.limit = what, limit


class RowScanner:
    """Fed table data in pieces of any size: counts the rows, and raises RowTooLarge as soon as a row (the
    bytes between two line breaks) or a value (between two separators) is longer than its limit.

    Linear and cheap: a piece no longer than both limits cannot hold a whole row or value over them, so
    only the runs that cross pieces are measured, with four memchr-speed searches per piece; longer
    pieces (only with limits below the piece size) are split.
    """

    def __init__(self, max_row_bytes, max_value_bytes):
        self.max_row, self.max_value = max_row_bytes, max_value_bytes
        self.rows = 0
        self.row_run = 0     # bytes since the last line break
        self.value_run = 0   # bytes since the last tab or line break

    @property
    def unfinished(self):
        return self.row_run > 0

    def feed(self, data):
        size = len(data)
        self.rows += data.count(b"\n")
        if size <= self.max_row and size <= self.max_value:
            line = data.find(b"\n")
            if line < 0:
                self.row_run += size
            else:
                self._check_row(self.row_run + line)
                self.row_run = size - data.rfind(b"\n") - 1
            tab = data.find(b"\t")
            first = line if tab < 0 else tab if line < 0 else min(line, tab)
            if first < 0:
                self.value_run += size
            else:
                self._check_value(self.value_run + first)
                self.value_run = size - max(data.rfind(b"\n"), data.rfind(b"\t")) - 1
        else:
            lines = data.split(b"\n")
            for i, line in enumerate(lines):
                fields = line.split(b"\t")
                row = len(line) + (self.row_run if i == 0 else 0)
                first = len(fields[0]) + (self.value_run if i == 0 else 0)
                self._check_row(row)
                self._check_value(max(first, max(map(len, fields[1:]), default=0)))
            self.row_run = row
            self.value_run = first if len(fields) == 1 else len(fields[-1])
        self._check_row(self.row_run)
        self._check_value(self.value_run)

    def _check_row(self, size):
        if size > self.max_row:
            raise RowTooLarge("row", self.max_row)

    def _check_value(self, size):
        if size > self.max_value:
            raise RowTooLarge("value", self.max_value)
