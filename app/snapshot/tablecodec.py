"""The portable row format: PostgreSQL's COPY text format, with one canonical rendering per type.

PostgreSQL produces and consumes it natively (COPY ... TO/FROM STDOUT), so rows never pass
through Python there; other engines render and parse the same bytes here.
"""
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


def unescape_text(field):
    text = field.decode("utf-8")
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


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
        import json

        return lambda f: json.loads(unescape_text(f))
    return unescape_text


def render_row(values, renderers):
    return b"\t".join(NULL if v is None else render(v) for v, render in zip(values, renderers)) + b"\n"


def parse_line(line, parsers):
    fields = line.split(b"\t")
    if len(fields) != len(parsers):
        raise ValueError(f"expected {len(parsers)} fields, found {len(fields)}")
    return [None if f == NULL else parse(f) for f, parse in zip(fields, parsers)]
