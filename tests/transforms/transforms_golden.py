"""Golden cases for the transforms: real KoBo assets and formpack fixtures, as small files.

A case directory `tests/golden/<case>/` holds `input.json` (which fixture it reads) and the expected output:
`schema.txt` (tables and `column:TYPE`), one `<table>.csv` per table (header `column:TYPE`,
NULL as empty cell),
`quarantine.csv`, `unknown_keys.csv`, `questions.csv` and `choices.csv` (the label tables).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow as pa

from transforms.flatten import to_tables
from transforms.schema import to_form_schema, to_label_tables

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / ".." / "shared" / "fixtures"
GOLDEN = REPO / "tests" / "golden"

# Cassettes whose data call returned records, and schema-only cassettes (asset content, no data).
ROBO_DATA = [
    "kobo_data",
    "kobo_data_dm",
    "kobo_data_group_names",
    "kobo_data_geodata",
    "kobo_data_sm_labels",
    "kobo_data_validation",
    "kobo_data_multilang",
    "kobo_data_colnames_label",
    "kobo_data_colnames_label_dm",
    "kobo_data_latest_version",
    "kobo_data_progress",
    "kobo_data_sm_sep",
    "kobo_data_fields",
    "kobo_data_query",
]
ROBO_SCHEMA_ONLY = [
    "kobo_data_empty",
    "kobo_form_no_choices",
    "kobo_form_version",
    "kobo_form_external_files",
]


def formpack_cases() -> list[str]:
    root = FIXTURES / "formpack"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and list(p.glob("v[0-9]*.json")))


def all_cases() -> list[dict[str, str]]:
    cases = [{"case": f"robo_{c}", "source": "robotoolbox", "path": f"robotoolbox/{c}"} for c in ROBO_DATA]
    cases += [
        {"case": f"robo_{c}", "source": "robotoolbox", "path": f"robotoolbox/{c}"} for c in ROBO_SCHEMA_ONLY
    ]
    cases += [
        {"case": f"formpack_{c}", "source": "formpack", "path": f"formpack/{c}"} for c in formpack_cases()
    ]
    return cases


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_robotoolbox(cassette: str) -> tuple[dict, dict[str, dict], list[dict]]:
    """Asset, deployed version contents (from any cassette of the same asset) and the recorded records."""
    folder = FIXTURES / "robotoolbox" / cassette
    asset_file = next(p for p in sorted(folder.glob("*.json")) if re.fullmatch(r"\d\d_a\w+\.json", p.name))
    asset = _load(asset_file)
    uid = asset["uid"]
    versions: dict[str, dict] = {}
    for f in sorted(glob.glob(str(FIXTURES / "robotoolbox" / "*" / f"*_{uid}_versions_v*.json"))):
        detail = _load(Path(f))
        if detail.get("date_deployed"):
            versions[detail["uid"]] = detail["content"]
    records: dict[Any, dict] = {}
    for f in sorted(folder.glob(f"*_{uid}_data_json_q.json")):
        for rec in _load(f).get("results", []):
            records[rec.get("_id")] = rec
    return asset, versions, list(records.values())


def load_formpack(name: str) -> tuple[dict, dict[str, dict], list[dict]]:
    """A formpack fixture as KPI would serve it: versions newest first; records get `__version__`/`_id`.

    formpack records carry no `__version__` (formpack stamps them from the version file) and usually no `_id`;
    the harness adds both, numbering `_id` from 1 in file order.
    """
    folder = FIXTURES / "formpack" / name
    files = sorted(folder.glob("v[0-9]*.json"), key=lambda p: int(re.sub(r"\D", "", p.stem)))
    versions: dict[str, dict] = {}
    records: list[dict] = []
    next_id = 1
    for f in files:
        doc = _load(f)
        vuid = str(doc.get("version") or f"{name}_{f.stem}")
        versions[vuid] = doc["content"]
        for rec in doc.get("submissions", []):
            rec = dict(rec)
            rec.setdefault("__version__", vuid)
            if "_id" not in rec:
                rec["_id"] = next_id
            next_id += 1
            records.append(rec)
    newest_first = dict(reversed(list(versions.items())))
    asset = {
        "uid": name,
        "name": name,
        "content": next(iter(newest_first.values())),
        "deployed_versions": {"results": [{"uid": v} for v in newest_first]},
    }
    return asset, newest_first, records


def load_case(case: dict[str, str]) -> tuple[dict, dict[str, dict], list[dict]]:
    name = case["path"].split("/", 1)[1]
    return load_robotoolbox(name) if case["source"] == "robotoolbox" else load_formpack(name)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


def _table_csv(table: pa.Table, types: dict[str, str]) -> str:
    header = [f"{n}:{types.get(n, str(table.schema.field(n).type))}" for n in table.column_names]
    cols = [table.column(n).to_pylist() for n in table.column_names]
    return _csv(header, [list(r) for r in zip(*cols, strict=True)] if cols else [])


def render_case(case: dict[str, str]) -> dict[str, str]:
    """Every expected file of a case, as text."""
    asset, versions, records = load_case(case)
    schema = to_form_schema(asset, versions, case["case"])
    batch = to_tables(records, schema)
    files: dict[str, str] = {}
    lines = [f"versions: {' '.join(schema.versions)}", f"languages: {schema.languages}"]
    lines += [f"type change: {t}" for t in schema.type_changes]
    for t in schema.tables.values():
        lines.append(f"table {t.name} ({t.kind}, parent={t.parent}, xpath={t.xpath!r})")
        lines += [f"  {c.name}:{c.duckdb_type}  [{c.role}] {c.question or ''}".rstrip() for c in t.columns]
    files["schema.txt"] = "\n".join(lines) + "\n"
    for name, table in batch.tables.items():
        types = {c.name: c.duckdb_type for c in schema.tables[name].columns}
        files[f"{name}.csv"] = _table_csv(table, types)
    files["quarantine.csv"] = _csv(
        ["submission_id", "table", "column", "row_key", "reason", "raw_value"],
        [[q.submission_id, q.table, q.column, q.row_key, q.reason, q.raw_value] for q in batch.quarantine],
    )
    files["unknown_keys.csv"] = _csv(
        ["key", "count"], [[k, v] for k, v in sorted(batch.unknown_keys.items())]
    )
    labels = to_label_tables(schema)
    for name, table in labels.items():
        files[f"{name}.meta.csv"] = _table_csv(table, {})
    return files


def write_case(case: dict[str, str]) -> Path:
    folder = GOLDEN / case["case"]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    (folder / "input.json").write_text(
        json.dumps({"source": case["source"], "fixture": f"../shared/fixtures/{case['path']}"}, indent=1)
        + "\n",
        encoding="utf-8",
    )
    for name, text in render_case(case).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder
