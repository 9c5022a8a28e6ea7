"""k-anonymity report in DuckDB on a small hand-made table with known answers."""

from __future__ import annotations

import json

import duckdb
import pytest

from config.privacy import PrivacyPolicy
from warehouse.risk import disclosure_risk, traffic_light, write_disclosure_risk

# (admin2, sex, age band): classes A/f/18-59 ×4, A/m/18-59 ×3, B/f/60+ ×2, B/m/0-4 ×1 → 10 records, 4 classes
ROWS = [("A", "f", "18-59")] * 4 + [("A", "m", "18-59")] * 3 + [("B", "f", "60+")] * 2 + [("B", "m", "0-4")]


@pytest.fixture
def con(tmp_path):
    c = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    c.execute('CREATE SCHEMA "hh survey"')
    c.execute('CREATE TABLE "hh survey".submissions ("admin 2" VARCHAR, sex VARCHAR, "age-band" VARCHAR)')
    c.executemany('INSERT INTO "hh survey".submissions VALUES (?, ?, ?)', ROWS)
    yield c
    c.close()


def test_k_anonymity_numbers(con) -> None:
    policy = PrivacyPolicy(k_threshold=3, amber_k=2)
    r = disclosure_risk(con, "hh survey", "submissions", ["admin 2", "sex", "age-band"], policy)
    assert (r.n_records, r.n_classes, r.k_min, r.records_below_k, r.n_unique) == (10, 4, 1, 3, 1)
    assert r.global_risk == pytest.approx(0.4)
    assert r.light == "red"
    assert r.smallest_classes[0] == {"admin 2": "B", "sex": "m", "age-band": "0-4", "f_k": 1}
    drop = {d.without: d for d in r.drop_one}
    # without admin 2: f/18-59 4, m/18-59 3, f/60+ 2, m/0-4 1 → same classes
    assert (drop["admin 2"].k_min, drop["admin 2"].records_below_k) == (1, 3)
    # without sex: A/18-59 7, B/60+ 2, B/0-4 1 → below 3: 3
    assert (drop["sex"].k_min, drop["sex"].records_below_k) == (1, 3)
    # without age band: A/f 4, A/m 3, B/f 2, B/m 1 → below 3: 3
    assert drop["age-band"].global_risk == pytest.approx(0.4)
    r2 = disclosure_risk(con, "hh survey", "submissions", ["admin 2"], policy)
    assert (r2.k_min, r2.records_below_k, r2.n_classes, r2.drop_one) == (3, 0, 2, [])


def test_traffic_light_thresholds() -> None:
    p = PrivacyPolicy()
    assert traffic_light(5, 0.02, p) == "green"
    assert traffic_light(5, 0.04, p) == "amber"
    assert traffic_light(3, 0.02, p) == "amber"
    assert traffic_light(2, 0.01, p) == "red"
    assert traffic_light(9, 0.06, p) == "red"
    assert traffic_light(None, None, p) == "unknown"


def test_missing_columns_and_table(con) -> None:
    r = disclosure_risk(con, "hh survey", "submissions", ["sex", "hoh_age_band"], None)
    assert r.missing_columns == ["hoh_age_band"] and r.light == "unknown" and r.k_min is None
    r2 = disclosure_risk(con, "hh survey", "members", ["sex"], None)
    assert r2.light == "unknown" and "does not exist" in r2.note
    r3 = disclosure_risk(con, "hh survey", "submissions", [], None)
    assert r3.light == "unknown"


def test_write_disclosure_risk(con) -> None:
    r = disclosure_risk(con, "hh survey", "submissions", ["admin 2", "sex"], PrivacyPolicy())
    write_disclosure_risk(con, "run-1", "hh survey", r)
    write_disclosure_risk(con, "run-2", "hh survey", r)
    rows = con.execute(
        "SELECT run_id, form, quasi_identifiers, k_min, records_below_k, n_records, global_risk, light, "
        "drop_one "
        "FROM ops.disclosure_risk ORDER BY run_id"
    ).fetchall()
    assert len(rows) == 2
    run_id, form, qis, k_min, below, n, risk, light, drop_one = rows[0]
    # k = 5: classes A/f 4, A/m 3, B/f 2, B/m 1 are all below k
    assert (run_id, form, qis, k_min, below, n, light) == (
        "run-1",
        "hh survey",
        ["admin 2", "sex"],
        1,
        10,
        10,
        "red",
    )
    assert risk == pytest.approx(0.4)
    # without admin 2: f 6, m 4 → 4 below; without sex: A 7, B 3 → 3 below
    assert {d["without"]: d["records_below_k"] for d in json.loads(drop_one)} == {"admin 2": 4, "sex": 3}
