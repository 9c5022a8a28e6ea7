"""A form's schedule takes exactly the cron expressions, and only the time zones, that Prefect's own
schedule model takes: a wrong one stops when the file is read, not when `kobo-etl serve` registers it."""

from __future__ import annotations

import pytest
from prefect.client.schemas.schedules import CronSchedule

from config.forms import Schedule

# nth weekdays, `L` and `?` in each day field, typos and values out of range, and mixes Prefect refuses
CRONS = ["0 6 * * mno#2", "0 0 * * 8#1", "x#1 0 * * *", "0 0 * * x#1", "0 0 * * mon#2", "0 0 * * MON#2",
         "0 0 * * 0#5", "0 0 * * 7#1", "0 0 * * sat#5", "0 0 * * 1#6", "0 0 * * 1#0", "0 0 1#2 * *",
         "0 0 mon#2 * *", "0 0 * * mon#2,fri#1", "0 0 * * 1#2,5", "0 0 * * 5,mon#2", "0 0 * * *,mon#2",
         "0 0 * * sun#2,7#3", "0 0 * * mon#2-3", "0 0 * * 1-2#2", "0 0 * * 10#1", "0 0 * * jan#2",
         "0 0 * * sunday#1", "0 0 * * mon#2/2", "0 0 * * #2", "0 0 * * *#1", "0 0 * * ?#1", "0 0 * * L",
         "0 0 * * l", "0 0 l * *", "0 0 L,1 * *", "0 0 * L *", "0 0 ?,1 * *", "0 0 ? * ?", "0 0 * * 1,?",
         "0 0 * mon#2 *"]
ZONES = ["posixrules", "right/UTC", "posix/Africa/Nairobi", "posix/UTC", "right/Africa/Nairobi", "UTC",
         "Etc/UTC", "Africa/Nairobi", "Asia/Dhaka", "Etc/GMT-3", "Mars/Olympus", "africa/nairobi", "../UTC"]


def _prefect_takes(cron: str = "0 0 * * *", timezone: str = "UTC") -> bool:
    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("cron", CRONS)
def test_a_form_schedule_takes_the_cron_expressions_prefect_takes(cron: str) -> None:
    if _prefect_takes(cron=cron):
        assert Schedule(cron=cron).cron == cron
    else:
        with pytest.raises(ValueError, match="cron"):
            Schedule(cron=cron)


@pytest.mark.parametrize("zone", ZONES)
def test_a_form_schedule_takes_the_time_zones_prefect_takes(zone: str) -> None:
    if _prefect_takes(timezone=zone):
        assert Schedule(timezone=zone).timezone == zone
    else:
        with pytest.raises(ValueError, match="is not a time zone name"):
            Schedule(timezone=zone)
