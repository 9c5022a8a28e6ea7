"""Who counts in an indicator (soft deletions, the small-cell n of a distinct count), what dim_period
spans and what an indicator error names, on the fixed six-household dataset (household_data.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from household_data import FORM, build_household_warehouse

from config.indicators import IndicatorSet, load_indicators
from warehouse.indicators import compute_indicators


@pytest.fixture()
def con(tmp_path: Path):
    con = build_household_warehouse(tmp_path / "warehouse.duckdb")
    yield con
    con.close()


def totals(con, code: str) -> tuple:
    return con.execute(
        "SELECT value, n FROM marts.indicator_values WHERE indicator_code = ? AND disaggregation = 'total'",
        [code],
    ).fetchone()


def one(code: str, **fields: object) -> IndicatorSet:
    return IndicatorSet.model_validate({"indicators": [{"code": code, "name": code, "form": FORM, **fields}]})


def test_soft_deleted_submissions_and_their_repeat_rows_count_nowhere(con) -> None:
    """`sync.deletions: soft` keeps a deleted submission with `_deleted_at` set on the submission only."""
    con.execute(f"ALTER TABLE {FORM}.submissions ADD COLUMN _deleted_at TIMESTAMPTZ")
    con.execute(f"UPDATE {FORM}.submissions SET _deleted_at = now() WHERE _id = 1")  # 4 members
    run = compute_indicators(con, load_indicators(), small_cell_threshold=3)
    assert run.errors == []
    assert totals(con, "HH_REACHED") == (5.0, 5)  # 6 consenting households, one deleted
    assert totals(con, "IND_REACHED") == (11.0, 11)  # 15 members, 4 of them in the deleted household
    # household 1 was female-headed with FCS 34: the mean is over the other five
    assert totals(con, "FCS_MEAN") == (pytest.approx((243 - 34) / 5), 5)


def test_a_distinct_count_is_suppressed_on_the_rows_behind_the_cell(con) -> None:
    """n is the households behind the cell (docs/indicators.md), not the number of distinct values."""
    sites = one(
        "ADMIN1_VISITED", unit="count", value="admin1", filter="consent = 'yes'", disaggregations=["head_sex"]
    )
    compute_indicators(con, sites, small_cell_threshold=3)
    got = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT coalesce(disaggregation_value, 'total'), value, n, suppressed FROM marts.indicator_values"
        ).fetchall()
    }
    # 4 female-headed households in 2 counties: shown; 2 male-headed households: withheld
    assert got == {"total": (2.0, 6, False), "female": (2.0, 4, False), "male": (None, None, True)}


def test_dim_period_spans_every_forms_submission_dates(con) -> None:
    """`submissions[today] -> dim_period[date]` (docs/powerbi.md) must find every date, also of a form
    without indicators and outside every indicator period."""
    con.execute("CREATE SCHEMA other_form")
    con.execute("CREATE TABLE other_form.submissions (_id BIGINT, _submission_time TIMESTAMPTZ, today DATE)")
    con.execute("INSERT INTO other_form.submissions VALUES (1, '2025-01-02 10:00:00+00', '2022-06-30')")
    compute_indicators(con, load_indicators(), small_cell_threshold=3)  # periods: March 2024 only
    span = con.execute(
        "SELECT min(date)::VARCHAR, max(date)::VARCHAR, count(*) FROM marts.dim_period"
    ).fetchone()
    assert span == ("2022-01-01", "2025-12-31", 365 + 365 + 366 + 365)


def test_errors_name_the_indicators_file_and_the_definition_field(con, tmp_path: Path) -> None:
    source = tmp_path / "meal" / "indicators.yaml"
    typo = one("TYPO", unit="count", period={"grain": "month", "date": "todya"})
    (err,) = compute_indicators(con, typo, source=source).errors
    assert err.field == "period.date" and err.column == "todya"
    assert f"fix {source}" in str(err) and "config/indicators.yaml" not in str(err)
    assert "field 'period.date'" in str(err)
    # a type error names no column: the field is found by binding each one alone
    wrong_type = one("TYPE", unit="percent", numerator="admin1 > 5", denominator="consent = 'yes'")
    (err,) = compute_indicators(con, wrong_type, source=source).errors
    assert err.field == "numerator" and "field 'numerator'" in str(err) and f"fix {source}" in str(err)
    no_table = one("NO_TABLE", unit="count", population="visits")
    (err,) = compute_indicators(con, no_table, source=source).errors
    assert err.field == "population" and f"fix {source}" in str(err)
