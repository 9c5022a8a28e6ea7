"""docs/training.md stays true: every exercise's query runs on a fresh demo warehouse, built as `make demo`
builds it (`kobo-etl demo`, here without Prefect: the data are the same), and its answer must be the table
printed under it in the workbook. The README's indicator example is checked the same way."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[2]
WORKBOOK = REPO / "docs" / "training.md"
README = REPO / "README.md"
EXERCISE = re.compile(r"```sql\n(?P<sql>.*?)```\s*\nYou should see:\s*\n\n(?P<table>(?:\|[^\n]*\|\n)+)", re.S)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def exercises() -> list[tuple[str, list[str], list[list[str]]]]:
    """(query, column names, rows) of each exercise, as the workbook prints them."""
    found = []
    for m in EXERCISE.finditer(WORKBOOK.read_text(encoding="utf-8")):
        header, _separator, *rows = m["table"].splitlines()
        found.append((m["sql"], cells(header), [cells(r) for r in rows]))
    return found


def shown(value: Any) -> str:
    """A value as the workbook prints it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("training")
    # a clean environment: no KoBo server, key or Prefect API of the machine running the tests
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOBO_", "PREFECT_"))}
    env["KOBO_ETL_DATA_DIR"] = str(root / "data")
    # `make demo` runs in the repository, where this is the default; here the working folder is empty
    env["KOBO_ETL_INDICATORS_FILE"] = str(REPO / "config" / "indicators.yaml")
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "demo", "--no-prefect"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return root / "data" / "exports" / "warehouse.duckdb"  # the read-only copy the workbook opens


def test_the_workbook_has_every_exercise() -> None:
    # a formatting slip (a missing "You should see:") would silently drop an exercise from the checks
    assert WORKBOOK.read_text(encoding="utf-8").count("```sql") == len(exercises()) == 13
    assert all(rows for _, _, rows in exercises())


@pytest.mark.parametrize("number", range(len(exercises())))
def test_exercise_answer_is_what_the_demo_gives(demo_warehouse: Path, number: int) -> None:
    sql, header, rows = exercises()[number]
    with duckdb.connect(str(demo_warehouse), read_only=True) as con:
        result = con.sql(sql)
        assert result.columns == header
        assert [[shown(v) for v in row] for row in result.fetchall()] == rows


def test_readme_indicator_example_is_what_the_demo_gives(demo_warehouse: Path) -> None:
    text = README.read_text(encoding="utf-8")
    header, _separator, *rows = re.search(r"\| indicator_code \|.*?\n(?=\n)", text, re.S)[0].splitlines()
    assert cells(header) == ["indicator_code", "period_start", "disaggregation", "disaggregation_value",
                             "value", "n", "suppressed"]
    assert len(rows) >= 3
    with duckdb.connect(str(demo_warehouse), read_only=True) as con:
        for row in map(cells, rows):
            code, period, disaggregation, group = row[:4]
            found = con.execute(
                "SELECT round(value, 1), n, suppressed FROM marts.indicator_values"
                " WHERE form = 'household_survey' AND indicator_code = ? AND period_start = ?"
                " AND disaggregation = ? AND coalesce(disaggregation_value, '') = ?",
                [code, period, disaggregation, group],
            ).fetchall()
            assert [[shown(v) for v in r] for r in found] == [row[4:]], row
