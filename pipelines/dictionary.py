"""`kobo-etl dictionary <form>`: a codebook of a form's warehouse tables for analysts and Power BI users.

Built from the warehouse itself (information_schema for tables, columns and types; `meta.questions` and
`meta.choices` for question types, labels and choice lists). Labels and choice names only — no data.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path
from typing import Any

import duckdb

from config import ConfigError

CSV_COLUMNS = ("table", "column", "data_type", "question_type", "label", "list_name", "required", "relevant",
               "choices")


def _columns_of(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position", [schema, table]).fetchall()]


def _label_columns(columns: list[str]) -> list[str]:
    """label_<lang> columns, English first when present (the language most analysts share)."""
    labels = [c for c in columns if c.startswith("label_")]
    return sorted(labels, key=lambda c: (c != "label_en", c))


def _first(row: dict[str, Any], keys: list[str]) -> str:
    for k in keys:
        if row.get(k):
            return str(row[k])
    return ""


def codebook_rows(con: duckdb.DuckDBPyConnection, slug: str) -> list[dict[str, Any]]:
    """One row per column of each base table of the form, with its question's type, label and choices."""
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
        "AND table_type = 'BASE TABLE' ORDER BY table_name = 'submissions' DESC, table_name",
        [slug]).fetchall()]
    if not tables:
        raise ConfigError(f"form {slug} has no tables in the warehouse yet: run `kobo-etl sync {slug}` first")
    # keyed by (table, column) as stored; a row missing either never matches a warehouse column
    questions: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    qcols = _columns_of(con, "meta", "questions")
    if qcols:
        cur = con.execute('SELECT * FROM meta.questions WHERE form = ?', [slug])
        names = [d[0] for d in cur.description]
        for values in cur.fetchall():
            row = dict(zip(names, values, strict=True))
            questions[(row.get("table"), row.get("column"))] = row
    qlabels = _label_columns(qcols)
    choices: dict[str, list[str]] = {}
    ccols = _columns_of(con, "meta", "choices")
    if ccols:
        clabels = _label_columns(ccols)
        cur = con.execute('SELECT * FROM meta.choices WHERE form = ? ORDER BY list_name', [slug])
        names = [d[0] for d in cur.description]
        for values in cur.fetchall():
            row = dict(zip(names, values, strict=True))
            label = _first(row, clabels)
            choices.setdefault(row["list_name"], []).append(
                f"{row['name']}={label}" if label else row["name"]
            )
    out = []
    for table in tables:
        for column, dtype in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ? ORDER BY ordinal_position", [slug, table]).fetchall():
            q = questions.get((table, column), {})
            list_name = q.get("list_name") or ""
            out.append({
                "table": table,
                "column": column,
                "data_type": dtype,
                "question_type": q.get("type") or ("system" if column.startswith("_") else ""),
                "label": _first(q, qlabels),
                "list_name": list_name,
                "required": "" if q.get("required") is None else ("yes" if q["required"] else "no"),
                "relevant": q.get("relevant") or "",
                "choices": " | ".join(choices.get(list_name, [])),
            })
    return out


def _md(text: Any) -> str:
    """A label as Markdown table text: on one line, with no HTML a viewer would render (labels come from the
    form, which anyone with edit rights on KoBo can write)."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def _cell(value: Any) -> Any:
    """A value for the CSV codebook, which people open in Excel: a text starting like a formula is kept as
    text (OWASP's advice: a leading apostrophe), so `=HYPERLINK(...)` in a label is never run."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_codebook(con: duckdb.DuckDBPyConnection, slug: str, out_dir: Path) -> list[Path]:
    """Write `codebook.csv` and `codebook.md` for form `slug` into `out_dir`; return both paths."""
    rows = codebook_rows(con, slug)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "codebook.csv", out_dir / "codebook.md"
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    lines = [f"# Codebook: {slug}", "",
             f"Tables of schema `{slug}` in the warehouse. Per-language views `<table>_<lang>` show choice "
             "labels in place of choice names.", ""]
    table = None
    for r in rows:
        if r["table"] != table:
            table = r["table"]
            lines += ["", f"## {table}", "", "| column | type | question | label | choices |",
                      "|---|---|---|---|---|"]
        lines.append(f"| `{_md(r['column'])}` | {_md(r['data_type'])} | {_md(r['question_type'])} | "
                     f"{_md(r['label'])} | {_md(r['choices'])} |")
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [csv_path, md_path]
