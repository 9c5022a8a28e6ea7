"""Bundled indicators against hand-computed values on a fixed six-household dataset (see
household_data.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from household_data import EXPECTED_FCS, EXPECTED_RCSI, FORM, build_household_warehouse

from config.indicators import IndicatorConfigError, IndicatorSet, load_indicators
from warehouse.indicators import compute_indicators


@pytest.fixture()
def con(tmp_path: Path):
    con = build_household_warehouse(tmp_path / "warehouse.duckdb")
    yield con
    con.close()


@pytest.fixture(scope="module")
def defs() -> IndicatorSet:
    return load_indicators()


def values(con, code: str) -> dict[tuple[str, str | None], tuple]:
    rows = con.execute(
        "SELECT disaggregation, disaggregation_value, numerator, denominator, value, n, suppressed "
        "FROM marts.indicator_values WHERE indicator_code = ?",
        [code],
    ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def test_age_group_is_the_same_for_ages_in_years_and_for_the_suggested_bands(defs: IndicatorSet) -> None:
    """`kobo-etl add-form` suggests `bands: [0, 5, 18, 60]` for ages: the stored text is then the band, and
    the bundled age groups must still come out (not a type error comparing text with 5)."""
    import duckdb

    from transforms.privacy import band_label

    (age_group,) = [e.sql for e in defs.expressions if e.name == "age_group"]
    ages = [0, 4, 5, 17, 18, 59, 60, 97, None]
    expected = ["0-4", "0-4", "5-17", "5-17", "18-59", "18-59", "60+", "60+", None]
    bands = [None if a is None else band_label(a, [0, 5, 18, 60], None) for a in ages]
    with duckdb.connect() as con:
        for column_type, stored in (("BIGINT", ages), ("DOUBLE", ages), ("VARCHAR", bands)):
            con.execute(f"CREATE OR REPLACE TABLE members (i INTEGER, member_age {column_type})")
            con.executemany("INSERT INTO members VALUES (?, ?)", list(enumerate(stored)))
            got = [r[0] for r in con.execute(f"SELECT {age_group} FROM members ORDER BY i").fetchall()]
            assert got == expected, column_type


def test_fcs_and_rcsi_expressions_per_household(con, defs: IndicatorSet) -> None:
    exprs = {e.name: e.sql for e in defs.expressions}
    got = dict(
        con.execute(f"SELECT _id, {exprs['fcs']} FROM {FORM}.submissions WHERE consent = 'yes'").fetchall()
    )
    assert got == EXPECTED_FCS  # includes the 7-day cap on household 3's cereals
    got = dict(
        con.execute(f"SELECT _id, {exprs['rcsi']} FROM {FORM}.submissions WHERE consent = 'yes'").fetchall()
    )
    assert got == EXPECTED_RCSI
    # a missing food group leaves the score NULL (never 7 days, as LEAST() would make it)
    assert con.execute(f"SELECT {exprs['fcs']} FROM {FORM}.submissions WHERE _id = 7").fetchone()[0] is None


def test_bundled_indicator_totals(con, defs: IndicatorSet) -> None:
    run = compute_indicators(con, defs, small_cell_threshold=3, run_id="run-1")
    assert run.errors == [] and len(run.computed) == 8
    total = ("total", None)
    assert values(con, "HH_REACHED")[total][2:4] == (6.0, 6)
    assert values(con, "IND_REACHED")[total][2:4] == (15.0, 15)
    fcs = values(con, "FCS_MEAN")[total]
    assert fcs[:2] == (243.0, 6.0) and fcs[2] == pytest.approx(40.5)
    assert values(con, "RCSI_MEAN")[total][2] == pytest.approx(67 / 6)
    assert values(con, "FCS_POOR")[total][:3] == (
        2.0,
        6.0,
        pytest.approx(100 * 2 / 6),
    )  # 16 and 21 (boundary)
    assert values(con, "FCS_BORDERLINE")[total][:3] == (3.0, 6.0, pytest.approx(50.0))  # 34, 34.5, 25.5
    assert values(con, "FCS_ACCEPTABLE")[total][:3] == (1.0, 6.0, pytest.approx(100 / 6))  # 112
    assert values(con, "WASH_IMPROVED_WATER")[total][:3] == (4.0, 6.0, pytest.approx(100 * 4 / 6))
    period = con.execute(
        "SELECT DISTINCT period_start, period_end, period_grain, run_id FROM marts.indicator_values"
    ).fetchall()
    assert [(str(a), str(b), g, r) for a, b, g, r in period] == [
        ("2024-03-01", "2024-03-31", "month", "run-1")
    ]


def test_disaggregations_and_suppression(con, defs: IndicatorSet) -> None:
    compute_indicators(con, defs, small_cell_threshold=3)
    ind = values(con, "IND_REACHED")
    assert {k[1]: v[2] for k, v in ind.items() if k[0] == "member_sex"} == {"female": 8.0, "male": 7.0}
    ages = {k[1]: (v[2], v[4]) for k, v in ind.items() if k[0] == "age_group"}
    assert ages == {"0-4": (3.0, False), "5-17": (3.0, False), "18-59": (7.0, False), "60+": (None, True)}
    assert {k[1]: v[2] for k, v in ind.items() if k[0] == "admin1"} == {"turkana": 8.0, "garissa": 7.0}
    fcs = values(con, "FCS_MEAN")
    assert fcs[("head_sex", "female")][2] == pytest.approx(192.5 / 4)
    assert fcs[("admin1", "turkana")][2] == pytest.approx(75.5 / 3)
    assert fcs[("admin1", "garissa")][2] == pytest.approx(167.5 / 3)
    # two male-headed households < 3: every number of the cell is withheld, the flag says why
    assert fcs[("head_sex", "male")] == (None, None, None, None, True)
    assert values(con, "WASH_IMPROVED_WATER")[("head_sex", "female")][2:5] == (100.0, 4, False)
    # with the default threshold 5, the admin1 cells (3 households each) are suppressed too
    compute_indicators(con, defs)
    assert values(con, "HH_REACHED")[("admin1", "turkana")] == (None, None, None, None, True)
    assert values(con, "HH_REACHED")[("total", None)][2:] == (6.0, 6, False)


def test_bad_definition_fails_alone_and_names_the_column(con, defs: IndicatorSet) -> None:
    bad = defs.model_dump()
    bad["indicators"].append(
        {
            "code": "BAD_TYPO",
            "name": "typo",
            "form": FORM,
            "unit": "mean",
            "value": "fcs_cereal * 2",
            "disaggregations": ["head_sex"],
        }
    )
    bad["indicators"].append(
        {
            "code": "BAD_DIM",
            "name": "unknown dim",
            "form": FORM,
            "unit": "count",
            "population": "members",
            "disaggregations": ["member_gender"],
        }
    )
    bad["indicators"].append(
        {"code": "BAD_TABLE", "name": "no table", "form": FORM, "unit": "count", "population": "visits"}
    )
    run = compute_indicators(con, IndicatorSet.model_validate(bad), small_cell_threshold=3)
    errors = {e.indicator: e for e in run.errors}
    assert set(errors) == {"BAD_TYPO", "BAD_DIM", "BAD_TABLE"}
    # `field` is the definition's field (as in a file error), `column` the unknown column in it
    assert errors["BAD_TYPO"].column == "fcs_cereal" and errors["BAD_TYPO"].field == "value"
    assert "'BAD_TYPO'" in str(errors["BAD_TYPO"]) and "'fcs_cereal'" in str(errors["BAD_TYPO"])
    assert "field 'value'" in str(errors["BAD_TYPO"])
    assert errors["BAD_DIM"].column == "member_gender"
    assert errors["BAD_DIM"].field == "disaggregations.member_gender"
    assert "visits" in str(errors["BAD_TABLE"])
    assert len(run.computed) == 8
    assert values(con, "HH_REACHED")[("total", None)][2] == 6.0
    status = dict(con.execute("SELECT indicator_code, status FROM marts.dim_indicator").fetchall())
    assert status["BAD_TYPO"] == "failed" and status["FCS_MEAN"] == "ok"
    assert con.execute(
        "SELECT count(*) FROM marts.indicator_values WHERE indicator_code LIKE 'BAD%'"
    ).fetchone() == (0,)


def test_rerun_replaces_rows_and_grain(con, defs: IndicatorSet) -> None:
    first = compute_indicators(con, defs, small_cell_threshold=3)
    second = compute_indicators(con, defs, small_cell_threshold=3)
    assert (
        first.rows == second.rows == con.execute("SELECT count(*) FROM marts.indicator_values").fetchone()[0]
    )
    weekly = IndicatorSet.model_validate(
        {
            "indicators": [
                {
                    "code": "HH_WEEK",
                    "name": "weekly",
                    "form": FORM,
                    "unit": "count",
                    "filter": "consent = 'yes'",
                    "period": {"grain": "week", "date": "today"},
                }
            ]
        }
    )
    compute_indicators(con, weekly, small_cell_threshold=1)
    got = con.execute("SELECT period_start::VARCHAR, value FROM marts.indicator_values ORDER BY 1").fetchall()
    # ISO weeks start on Monday: 4-5 Mar, 11-12 Mar, 20 Mar, 28 Mar
    assert got == [("2024-03-04", 2.0), ("2024-03-11", 2.0), ("2024-03-18", 1.0), ("2024-03-25", 1.0)]
    days = con.execute(
        "SELECT count(*), min(date)::VARCHAR, max(date)::VARCHAR FROM marts.dim_period"
    ).fetchone()
    assert days == (366, "2024-01-01", "2024-12-31")


def test_bad_yaml_names_file_field_and_expectation(tmp_path: Path) -> None:
    path = tmp_path / "indicators.yaml"
    path.write_text(
        "indicators:\n  - code: X1\n    name: x\n    form: household_survey\n    unit: ratio\n",
        encoding="utf-8",
    )
    with pytest.raises(IndicatorConfigError) as err:
        load_indicators(path)
    assert str(path) in str(err.value) and "indicators[0] (X1).unit" in str(err.value)
    assert "'count', 'percent', 'mean' or 'sum'" in str(err.value)
    path.write_text(
        "indicators:\n  - {code: P, name: p, form: household_survey, unit: percent, numerator: 'a'}\n",
        encoding="utf-8",
    )
    with pytest.raises(IndicatorConfigError, match="denominator"):
        load_indicators(path)
