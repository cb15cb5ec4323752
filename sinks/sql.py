"""Values and names into ClickHouse SQL text: the one place that quotes them.

Every string that goes into a statement as a literal goes through
:func:`quote_str`, every name that may not be a plain word through
:func:`quote_ident`; a database name is checked once with :func:`plain_ident`
and then used bare (it is part of every statement, and a plain name reads the
same on every server). The escapes are the ones ClickHouse has understood
since before 18.16 (backslash escapes in quoted strings and names), so the
same text works on chDB and on every supported server.

>>> quote_str("O'Hare \\\\ 益农镇")
"'O\\\\'Hare \\\\\\\\ 益农镇'"
>>> quote_str("a\\nb\\x00")
"'a\\\\nb\\\\0'"
>>> in_list(["closed", "dismissed"])
"('closed', 'dismissed')"
>>> quote_ident("by"), quote_ident("we`ird")
('`by`', '`we\\\\`ird`')
>>> plain_ident("lianwatch")
'lianwatch'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lianwatch.errors import ConfigError

__all__ = ["quote_str", "quote_ident", "in_list", "plain_ident"]

#: what a backslash escape must replace inside a quoted string or name: the
#: escape character itself, the line breaks and tab (so a statement stays one
#: logical line in logs) and NUL (some clients stop a C string at it)
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
_STR = re.compile(r"[\\'\n\r\t\0]")
_IDENT = re.compile(r"[\\`\n\r\t\0]")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _esc(m: re.Match[str]) -> str:
    c = m.group(0)
    return _ESCAPES.get(c) or "\\" + c


def quote_str(value: str) -> str:
    """A string literal: ``'…'`` with quotes, backslashes, line breaks, tabs and NUL escaped."""
    return "'" + _STR.sub(_esc, str(value)) + "'"


def quote_ident(name: str) -> str:
    """A column or table name in backquotes (a keyword such as ``by`` included)."""
    return "`" + _IDENT.sub(_esc, str(name)) + "`"


def in_list(values: Iterable[str]) -> str:
    """``('a', 'b')``: the right-hand side of ``x IN …`` for constant strings (not empty)."""
    items = [quote_str(v) for v in values]
    if not items:
        raise ValueError("in_list: no values (x IN () is not SQL)")
    return "(" + ", ".join(items) + ")"


def plain_ident(name: str) -> str:
    """``name`` itself when it is a plain name (letters, digits, ``_``), else ConfigError.

    For database names, which are written bare into every statement.
    """
    if not _PLAIN.match(name or ""):
        raise ConfigError(f"database name {name!r}: use letters, digits and _ only")
    return name
