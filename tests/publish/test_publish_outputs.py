"""What a run publishes when the indicators file changes, and what the published dimensions relate to:
`pipelines.checks.publish_outputs` and `warehouse.publish.publish` on the six-household warehouse."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "indicators"))
from household_data import FORM, build_household_warehouse  # noqa: E402

from config import FormConfig, Settings, load_settings  # noqa: E402
from config.indicators import BUNDLED_INDICATORS, load_indicators  # noqa: E402
from pipelines.checks import publish_outputs  # noqa: E402
from warehouse.db import apply_settings  # noqa: E402
from warehouse.indicators import compute_indicators  # noqa: E402
from warehouse.ops import ensure_ops_tables  # noqa: E402
from warehouse.publish import publish  # noqa: E402

HOUSEHOLD = FormConfig(slug=FORM, asset_uid="aHousehold", privacy={"small_cell_threshold": 3})


@pytest.fixture()
def con(tmp_path: Path):
    (tmp_path / "data").mkdir()
    con = build_household_warehouse(tmp_path / "data" / "warehouse.duckdb")
    apply_settings(con)
    con.execute("DROP TABLE ops.quarantine")  # the fixture's is a stub; the report reads the real one
    ensure_ops_tables(con)
    yield con
    con.close()


def settings_for(tmp_path: Path, indicators: dict) -> Settings:
    """`other_form` is configured but never synced (as with `kobo-etl sync household_survey`)."""
    forms_dir = tmp_path / "forms"
    forms_dir.mkdir(exist_ok=True)
    for slug in (FORM, "other_form"):
        (forms_dir / f"{slug}.yaml").write_text(f"asset_uid: a{slug}\n", encoding="utf-8")
    path = tmp_path / "meal" / "indicators.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(indicators), encoding="utf-8")
    return load_settings(data_dir=tmp_path / "data", forms_dir=forms_dir, indicators_file=path)


def bundled() -> dict:
    return yaml.safe_load(BUNDLED_INDICATORS.read_text(encoding="utf-8"))


def published(tmp_path: Path, table: str) -> list[dict]:
    return pq.read_table(tmp_path / "data" / "exports" / FORM / "indicators" / f"{table}.parquet").to_pylist()


def statuses(tmp_path: Path) -> list[tuple[str, str, str]]:
    rows = published(tmp_path, "dim_indicator")
    return sorted((r["indicator_code"], r["status"], str(r["computed_at"])) for r in rows)


def test_an_indicator_of_an_unknown_form_is_a_config_error(con, tmp_path: Path) -> None:
    """A typo in `form:` used to drop the indicator (and its published values) without a word."""
    definitions = bundled()
    # an indicator of a form that is configured but not in this run is not an error
    definitions["indicators"].append({"code": "OTHER", "name": "o", "form": "other_form", "unit": "count"})
    assert publish_outputs(con, settings_for(tmp_path, definitions), [HOUSEHOLD]) == []
    good = statuses(tmp_path)
    assert len(good) == 8 and "HH_REACHED" in {code for code, _, _ in good}
    (hh_reached,) = [i for i in definitions["indicators"] if i["code"] == "HH_REACHED"]
    hh_reached["form"] = "household_surveys"
    settings = settings_for(tmp_path, definitions)
    (error,) = publish_outputs(con, settings, [HOUSEHOLD])
    assert error.startswith(
        f"no indicators computed: {settings.indicators_file}: field 'indicators[0] (HH_REACHED).form'"
    )
    assert "unknown form 'household_surveys'" in error
    # the run is red and the last good values stay published
    assert statuses(tmp_path) == good


def test_a_form_whose_indicators_were_all_removed_publishes_none(con, tmp_path: Path) -> None:
    assert publish_outputs(con, settings_for(tmp_path, bundled()), [HOUSEHOLD]) == []
    assert len(published(tmp_path, "dim_indicator")) == 8
    assert publish_outputs(con, settings_for(tmp_path, {"indicators": []}), [HOUSEHOLD]) == []
    assert published(tmp_path, "dim_indicator") == [] and published(tmp_path, "indicator_values") == []
    assert con.execute("SELECT count(*) FROM marts.indicator_values").fetchone() == (0,)


def test_dim_period_covers_submissions_synced_after_the_indicators(con, tmp_path: Path) -> None:
    """`submissions[today] -> dim_period[date]`: every date of the published submissions is in dim_period,
    also of a submission synced after the indicators were computed (or with no indicators file at all)."""
    compute_indicators(con, load_indicators(), small_cell_threshold=3)  # periods and dim_period: 2024
    con.execute(
        f"INSERT INTO {FORM}.submissions (_id, _submission_time, today, consent) "
        "VALUES (8, '2025-07-01 09:00:00', '2025-06-30', 'no')"
    )
    out = tmp_path / "exports"
    publish(con, out, [FORM])
    reader = duckdb.connect()
    folder = out / FORM
    assert reader.execute(
        f"SELECT count(*) FILTER (WHERE today NOT IN "
        f"(SELECT date FROM '{folder}/indicators/dim_period.parquet')), count(today) "
        f"FROM '{folder}/submissions.parquet'"
    ).fetchone() == (0, 8)
    assert reader.execute(
        f"SELECT min(date)::VARCHAR, max(date)::VARCHAR FROM '{folder}/indicators/dim_period.parquet'"
    ).fetchone() == ("2024-01-01", "2025-12-31")


def test_dim_location_key_is_unique_when_an_admin2_name_repeats(con, tmp_path: Path) -> None:
    """Two counties with a sub-county of the same name: `submissions[_location_key] -> dim_location` stays
    many-to-one."""
    con.execute(f"UPDATE {FORM}.submissions SET admin2 = 'turkana_west' WHERE _id = 4")  # a garissa household
    out = tmp_path / "exports"
    publish(con, out, [FORM])
    loc = pq.read_table(out / FORM / "indicators/dim_location.parquet").to_pylist()
    keys = [r["_location_key"] for r in loc]
    assert len(keys) == len(set(keys)) == 5
    assert [r["admin2"] for r in loc].count("turkana_west") == 2
    subs = pq.read_table(out / FORM / "submissions.parquet").to_pylist()
    assert {r["_id"]: r["_location_key"] for r in subs if r["_id"] in (1, 4, 7)} == {
        1: "turkana/turkana_west",
        4: "garissa/turkana_west",
        7: None,
    }
    assert {r["_location_key"] for r in subs} - {None} <= set(keys)


def test_a_publish_removes_what_a_killed_publish_left(con, tmp_path: Path) -> None:
    """A publish killed mid-way leaves its temporary entries (named as `publish` names them); data/exports is
    synced to SharePoint, so the next publish removes them, and nothing else."""
    out = tmp_path / "exports"
    publish(con, out, [FORM])
    dead = "0123456789abcdef0123456789abcdef"
    (out / f".warehouse.{dead}.tmp.duckdb").write_bytes(b"partial copy")
    (out / f".warehouse.{dead}.tmp.duckdb.wal").write_bytes(b"wal")
    (out / f".{FORM}.{dead}.tmp" / "indicators").mkdir(parents=True)
    (out / f".{FORM}.{dead}.tmp" / "submissions.parquet").write_bytes(b"half")
    (out / f".{FORM}.{dead}.old").mkdir()
    (out / ".manifest.json.0a1b2c3d.tmp").write_text("{", encoding="utf-8")
    kept = [out / "notes.txt", out / ".sync-client-state"]
    for path in kept:
        path.write_text("someone else's", encoding="utf-8")
    publish(con, out, [FORM])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [FORM, "manifest.json", "notes.txt", ".sync-client-state", "warehouse.duckdb"]
    )
