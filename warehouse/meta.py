"""The `meta` schema (forms, questions, choices with labels in every language) and the per-language label
views `<form>.<table>_<lang>` that show choice labels in place of choice names."""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pyarrow as pa

from transforms.model import FormSchema
from transforms.naming import language_code
from transforms.schema import to_label_tables
from warehouse.errors import WarehouseError
from warehouse.load import BRIDGE_SUFFIX, _find, _transaction, _Views, existing_columns
from warehouse.ops import now_utc
from warehouse.sql import qualified, quote_ident, quote_literal

DEFAULT_LANGUAGE = "default"

_FORMS_DDL = """CREATE TABLE IF NOT EXISTS meta.forms (
    form VARCHAR PRIMARY KEY, uid VARCHAR, title VARCHAR, languages VARCHAR[], versions VARCHAR[],
    synced_at TIMESTAMPTZ)"""


def language_codes(schema: FormSchema) -> list[str]:
    """One short code per form language, as transforms names the `label_<code>` columns.

    'English (en)' → 'en'; ['default'] for an untranslated form.
    """
    codes = [language_code(None if lang in ("", DEFAULT_LANGUAGE) else lang) for lang in schema.languages]
    return list(dict.fromkeys(codes)) or [DEFAULT_LANGUAGE]


def _replace_form_rows(con: duckdb.DuckDBPyConnection, views: _Views, name: str, slug: str,
                       rows: pa.Table) -> None:
    if "form" not in rows.column_names:
        rows = rows.append_column("form", pa.array([slug] * rows.num_rows, pa.string()))
    view = quote_ident(views.add(rows))
    target = qualified("meta", name)
    existing = existing_columns(con, "meta").get(name)
    if existing is None:
        con.execute(f"CREATE TABLE {target} AS SELECT * FROM {view} LIMIT 0")
    else:
        for col, dtype, *_ in con.execute(f"DESCRIBE SELECT * FROM {view}").fetchall():
            if _find(existing, col) is None:
                # a new language adds label columns; other forms' rows read NULL there
                con.execute(f"ALTER TABLE {target} ADD COLUMN {quote_ident(col)} {dtype}")
    con.execute(f"DELETE FROM {target} WHERE form = ?", [slug])
    con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {view}")


def write_labels(
    con: duckdb.DuckDBPyConnection, schema: FormSchema, label_tables: Mapping[str, pa.Table] | None = None
) -> None:
    """Replace the form's rows in `meta.forms`, `meta.questions` and `meta.choices` (one transaction).

    Args:
        label_tables: table name (`questions`, `choices`) → rows; columns as given, a `form` column is added
            when absent, new columns (a new language) are added to the meta table. Default: built from
            `schema` by `transforms.schema.to_label_tables`.
    """
    tables = label_tables if label_tables is not None else to_label_tables(schema)
    views = _Views(con)
    try:
        with _transaction(con):
            con.execute(_FORMS_DDL)
            con.execute("DELETE FROM meta.forms WHERE form = ?", [schema.slug])
            con.execute(
                "INSERT INTO meta.forms VALUES (?, ?, ?, ?, ?, ?)",
                [schema.slug, schema.uid, schema.title, list(schema.languages), list(schema.versions),
                 now_utc()],
            )
            for name, rows in tables.items():
                _replace_form_rows(con, views, name, schema.slug, rows)
    except duckdb.Error as exc:
        raise WarehouseError(
            f"writing the labels of form {schema.slug} failed ({type(exc).__name__})", form=schema.slug
        ) from exc
    finally:
        views.close()


def _choice_lists(schema: FormSchema) -> dict[tuple[str, str], str]:
    """(table, column) → choice list for select_one answers and the `choice` column of bridge tables."""
    bridges = {t.xpath: name for name, t in schema.tables.items() if getattr(t, "kind", None) == "bridge"}
    lists: dict[tuple[str, str], str] = {}
    for q in schema.questions.values():
        if not q.list_name:
            continue
        if q.type.startswith("select_one"):
            lists[(q.table, q.column)] = q.list_name
        elif q.type.startswith("select_multiple"):
            bridge = bridges.get(q.xpath, f"{q.column}{BRIDGE_SUFFIX}")
            lists[(bridge, "choice")] = q.list_name
    return lists


def create_label_views(con: duckdb.DuckDBPyConnection, schema: FormSchema) -> list[str]:
    """Create or replace, per form language, a view `<slug>.<table>_<lang>` of every form table.

    In the view a select_one answer (and a bridge table's `choice`) shows the choice label in that language,
    or the choice name when the list has no label for it; every other column is unchanged. Run again after
    `ensure_tables` so new columns appear in the views.

    Returns:
        The view names created, e.g. ['submissions_en', 'members_en', …].
    """
    slug = schema.slug
    lists = _choice_lists(schema)
    created: list[str] = []
    try:
        with _transaction(con):
            con.execute(
                "CREATE TABLE IF NOT EXISTS meta.choices (form VARCHAR, list_name VARCHAR, name VARCHAR)"
            )
            label_columns = existing_columns(con, "meta")["choices"]
            tables = existing_columns(con, slug)
            base = {t for t, in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = ?", [slug]).fetchall()}
            names = [t for t in schema.tables if t in base]
            names += sorted(t for t in base if t.endswith(BRIDGE_SUFFIX) and t not in schema.tables)
            for code in language_codes(schema):
                label = _find(label_columns, f"label_{code}")
                for table in names:
                    view = f"{table}_{code}"
                    if view in base:
                        continue  # a real table already has this name; never replace data with a view
                    select = []
                    for col in tables[table]:
                        ref = f"t.{quote_ident(col)}"
                        list_name = lists.get((table, col))
                        if list_name is None or label is None:
                            select.append(ref)
                            continue
                        name = f"CAST({ref} AS VARCHAR)"
                        select.append(
                            f"coalesce((SELECT any_value(c.{quote_ident(label)}) FROM meta.choices c "
                            f"WHERE c.form = {quote_literal(slug)} "
                            f"AND c.list_name = {quote_literal(list_name)} AND c.name = {name}), {name}) "
                            f"AS {quote_ident(col)}"
                        )
                    con.execute(
                        f"CREATE OR REPLACE VIEW {qualified(slug, view)} AS "
                        f"SELECT {', '.join(select)} FROM {qualified(slug, table)} t"
                    )
                    created.append(view)
    except duckdb.Error as exc:
        raise WarehouseError(
            f"creating the label views of form {slug} failed ({type(exc).__name__})", form=slug
        ) from exc
    return created


def pinned_columns(con: duckdb.DuckDBPyConnection, slug: str) -> dict[str, str]:
    """xpath -> column of the form's questions as the warehouse stores them (empty before a first sync).

    Passed to `transforms.to_form_schema` so an existing column keeps its name whatever later versions add.
    """
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema = 'meta' AND table_name = 'questions'"
    ).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = con.execute('SELECT xpath, "column" FROM meta.questions WHERE form = ?', [slug]).fetchall()
    return {str(x): str(c) for x, c in rows if x and c}
