"""A form's schedule is checked when its YAML is read: a cron or time zone Prefect would refuse stops there,
naming the file, the field and what is expected (Prefect's own verdicts: tests/pipelines/
test_ops_schedule_prefect.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import load_form_config
from config.errors import FormConfigError

FORM = 'asset_uid: aHH1\nschedule: {cron: "%s", timezone: %s}\n'


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 6 * * mno#2", "'mno#2' is not a valid day-of-week field (0-7 or sun-sat,"),  # a typo of mon#2
        ("0 0 * * 8#1", "'8#1' is not a valid day-of-week field"),
        ("0 0 * * x#1", "'x#1' is not a valid day-of-week field"),
        ("0 0 1#2 * *", "'1#2' is not a valid day-of-month field (1-31, *, */n, a-b, a,b, L, ?)"),
        ("0 0 * * 1#2,5", "'1#2,5' is not a valid day-of-week field"),  # Prefect: no nth mixed with days
        ("0 0 * * L", "'L' is not a valid day-of-week field"),
        ("0 0 ?,1 * *", "'?,1' is not a valid day-of-month field"),
    ],
)
def test_a_cron_prefect_refuses_stops_at_the_file(tmp_path: Path, cron: str, expected: str) -> None:
    path = tmp_path / "hh.yaml"
    path.write_text(FORM % (cron, "UTC"), encoding="utf-8")
    with pytest.raises(FormConfigError) as err:
        load_form_config(path)
    assert str(err.value).startswith(f"{path}: field 'schedule.cron': ") and expected in str(err.value)


@pytest.mark.parametrize("cron", ["0 6 * * mon#2", "0 6 * * MON#2,fri#1", "0 6 * * 7#1", "0 0 L * *",
                                  "0 0 ? * *", "0 0 * * ?", "0 0 * * *,sun#5"])
def test_nth_weekdays_and_last_day_are_kept(tmp_path: Path, cron: str) -> None:
    path = tmp_path / "hh.yaml"
    path.write_text(FORM % (cron, "UTC"), encoding="utf-8")
    assert load_form_config(path).schedule.cron == cron


@pytest.mark.parametrize("zone", ["posixrules", "right/UTC", "posix/Africa/Nairobi", "Mars/Olympus",
                                  "africa/nairobi", "../UTC", ""])
def test_a_time_zone_file_that_is_not_a_zone_name_stops_at_the_file(tmp_path: Path, zone: str) -> None:
    """`ZoneInfo` opens every file of the tz database (`posixrules`, `right/…`, `posix/…`); Prefect
    takes only zone names."""
    path = tmp_path / "hh.yaml"
    path.write_text(FORM % ("0 6 * * *", repr(zone)), encoding="utf-8")
    with pytest.raises(FormConfigError) as err:
        load_form_config(path)
    assert f"{path}: field 'schedule.timezone': " in str(err.value)
    assert f"{zone!r} is not a time zone name such as 'UTC' or 'Africa/Nairobi'" in str(err.value)


@pytest.mark.parametrize("zone", ["UTC", "Africa/Nairobi", "Etc/GMT+3", "America/Port-au-Prince"])
def test_zone_names_are_kept(tmp_path: Path, zone: str) -> None:
    path = tmp_path / "hh.yaml"
    path.write_text(FORM % ("0 6 * * *", zone), encoding="utf-8")
    assert load_form_config(path).schedule.timezone == zone
