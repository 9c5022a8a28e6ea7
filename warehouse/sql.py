"""Quoting for SQL text: every form-derived name goes through `quote_ident`, every value through a parameter
or, where DuckDB needs text (view definitions, DDL), through `quote_literal`."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB: wrap in double quotes, double any embedded double quote.

    Raises:
        ValueError: the name is empty or contains a NUL character, which no DuckDB identifier may hold.
    """
    if not isinstance(name, str) or name == "" or "\x00" in name:
        raise ValueError("an SQL identifier must be a non-empty string without NUL characters")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: object) -> str:
    """Quote a value as an SQL literal: NULL, TRUE/FALSE, a number, or a single-quoted string."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if "\x00" in text:
        raise ValueError("an SQL string literal cannot contain NUL characters")
    return "'" + text.replace("'", "''") + "'"


def qualified(schema: str, table: str) -> str:
    """`"schema"."table"`, both parts quoted."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"
