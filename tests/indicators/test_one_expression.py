"""Each SQL field of `indicators.yaml` is pasted into a query: it must be one expression, so that a fragment
cannot end the query early, run another statement (`COPY ... TO`), or comment the rest out."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.indicators import IndicatorConfigError, load_indicators

INDICATOR = """
indicators:
  - code: HH
    name: Households
    form: household_survey
    unit: {unit}
    {field}: {sql}
"""


@pytest.mark.parametrize(
    ("unit", "field", "sql", "why"),
    [
        ("count", "filter", "\"consent = 'yes'); COPY (SELECT 1) TO 'x'; SELECT (1\"", "closes more than"),
        ("count", "filter", "\"1=1 -- the rest\"", "comments"),
        ("sum", "value", "\"hh_size); DROP TABLE ops.sync_runs; SELECT (1\"", "closes more than"),
        ("count", "filter", "\"1=1) UNION ALL SELECT * FROM ops.quarantine WHERE (1=1\"", "closes more than"),
        ("count", "filter", "\"consent = 'yes\"", "is not closed"),
    ],
)
def test_a_fragment_that_is_not_one_expression_is_refused(tmp_path: Path, unit, field, sql, why) -> None:
    path = tmp_path / "indicators.yaml"
    path.write_text(INDICATOR.format(unit=unit, field=field, sql=sql), encoding="utf-8")
    with pytest.raises(IndicatorConfigError, match=rf"indicators\[0\] \(HH\)\.{field}.*{why}"):
        load_indicators(path)


def test_quoted_text_may_hold_anything(tmp_path: Path) -> None:
    path = tmp_path / "indicators.yaml"
    sql = "\"water_source IN ('river; lake', 'well (protected)')\""
    path.write_text(INDICATOR.format(unit="count", field="filter", sql=sql), encoding="utf-8")
    (ind,) = load_indicators(path).indicators
    assert ind.filter == "water_source IN ('river; lake', 'well (protected)')"


def test_the_bundled_indicators_pass() -> None:
    assert len(load_indicators().indicators) >= 8
