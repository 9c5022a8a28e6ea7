"""`kobo-etl schedule`: prefect.yaml in step with config/forms/, accepted by Prefect's own YAML model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel, RawScheduleConfig
from prefect.flows import Flow, load_flow_from_entrypoint

from config import load_form_configs
from config.errors import FormConfigError
from config.forms import FormConfig, Schedule, load_form_config, write_form_config
from pipelines import cli
from pipelines.schedule import render_prefect_yaml, server_limit_name

REPO = Path(__file__).resolve().parents[2]
SECRET_WORDS = ("token", "key", "password", "secret", "webhook")


@pytest.fixture
def forms_dir(tmp_path):
    d = tmp_path / "forms"
    write_form_config(d, FormConfig(slug="household_survey", asset_uid="aHH1", name="Households",
                                    schedule={"cron": "15 6 * * 1-5", "timezone": "Africa/Nairobi"}))
    schedule = {"cron": "0 */2 * * *", "timezone": "Asia/Dhaka", "active": False}
    write_form_config(d, FormConfig(slug="market_prices", asset_uid="aMP2", schedule=schedule))
    return d


def _scheduled(doc: dict) -> dict[str, dict]:
    return {d["name"]: d for d in doc["deployments"] if d["name"] != "sync-all"}


def test_schedule_command_writes_one_deployment_per_form(forms_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KOBO_ETL_FORMS_DIR", str(forms_dir))
    monkeypatch.setenv("KOBO_ETL_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "prefect.yaml"
    assert cli.main(["schedule", "--out", str(out)]) == cli.EXIT_OK
    assert "sync-market_prices: 0 */2 * * * (Asia/Dhaka) (paused)" in capsys.readouterr().out
    doc = yaml.safe_load(out.read_text(encoding="utf-8"))
    forms = {f.slug: f for f in load_form_configs(forms_dir)}
    deployments = _scheduled(doc)
    assert sorted(deployments) == [f"sync-{slug}" for slug in sorted(forms)]
    for slug, form in forms.items():
        dep = deployments[f"sync-{slug}"]
        assert dep["parameters"] == {"slug": slug}
        assert dep["schedules"] == [
            {"cron": form.schedule.cron, "timezone": form.schedule.timezone, "active": form.schedule.active}
        ]
        assert dep["work_pool"]["name"] == "kobo-etl"
        assert dep["entrypoint"] == "pipelines/flows.py:sync_form"
    all_dep = next(d for d in doc["deployments"] if d["name"] == "sync-all")
    assert all_dep["entrypoint"] == "pipelines/flows.py:sync_all" and "schedules" not in all_dep


def test_entrypoints_are_flows_with_matching_parameters(forms_dir):
    doc = yaml.safe_load(render_prefect_yaml(load_form_configs(forms_dir)))
    for dep in doc["deployments"]:
        path, _, name = dep["entrypoint"].partition(":")
        assert (REPO / path).is_file()
        flow = load_flow_from_entrypoint(str(REPO / path) + ":" + name)
        assert isinstance(flow, Flow)
        # every parameter given is one the flow accepts (prefect deploy enforces the schema)
        assert set(dep["parameters"]) <= set(flow.parameters.properties)


def test_parameters_carry_no_secrets(forms_dir):
    text = render_prefect_yaml(load_form_configs(forms_dir))
    doc = yaml.safe_load(text)
    for dep in doc["deployments"]:
        for name, value in dep["parameters"].items():
            assert not any(w in name.lower() for w in SECRET_WORDS)
            assert isinstance(value, (str, bool))


def test_prefect_accepts_the_file(forms_dir):
    """The same pydantic model `prefect deploy` validates prefect.yaml with (offline, no server)."""
    raw = yaml.safe_load(render_prefect_yaml(load_form_configs(forms_dir)))
    model = PrefectYamlModel.model_validate(raw)
    assert [d.name for d in model.deployments] == ["sync-all", "sync-household_survey", "sync-market_prices"]
    hh = model.deployments[1]
    assert hh.work_pool.name == "kobo-etl" and hh.concurrency_limit == 1
    (sched,) = hh.schedules
    assert isinstance(sched, RawScheduleConfig)
    assert (sched.cron, sched.timezone, sched.active) == ("15 6 * * 1-5", "Africa/Nairobi", True)
    assert model.deployments[2].schedules[0].active is False


def test_checked_in_prefect_yaml_is_a_valid_prefect_file():
    raw = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    assert any(d.name == "sync-all" for d in PrefectYamlModel.model_validate(raw).deployments)


def test_server_limit_name_is_per_host():
    assert server_limit_name("https://kf.kobotoolbox.org") == "kobo-server-kf.kobotoolbox.org"
    assert server_limit_name("https://kobo.humanitarianresponse.info/") == (
        "kobo-server-kobo.humanitarianresponse.info"
    )


CRONS = ["0 */6 * * *", "30 6 * * 1-5", "0 0 1 jan,jul *", "*/15 8-18 * * mon-fri", "0 6 * * 7", "0 0 L * *",
         "0 0 * * mon#2", "5-1 * * * *", "0 0 * * mon-sun", "0-59/5 * * * *", "0 0 1-31/2 * *", "0 0 ? * *",
         "0 0 * * */2", "0 0 * * 1,3,5", "99 99 * * *", "0 6 * * 8", "0 */0 * * *", "0 L * * *", "0 0 * L *",
         "0 0 32 * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * 0 *", "a b c d e", "60 * * * *", "0 24 * * *",
         "0 0 15W * *", "0 0 * * 5L", "0 6 * *",
         # nth weekdays, `L` and `?` in each day field, typos, and the mixes Prefect refuses
         "0 6 * * mno#2", "0 0 * * 8#1", "x#1 0 * * *", "0 0 * * x#1", "0 0 * * MON#2", "0 0 * * 0#5",
         "0 0 * * 7#1", "0 0 * * sat#5", "0 0 * * 1#6", "0 0 * * 1#0", "0 0 1#2 * *", "0 0 mon#2 * *",
         "0 0 * * mon#2,fri#1", "0 0 * * 1#2,5", "0 0 * * 5,mon#2", "0 0 * * *,mon#2", "0 0 * * sun#2,7#3",
         "0 0 * * mon#2-3", "0 0 * * 1-2#2", "0 0 * * 10#1", "0 0 * * jan#2", "0 0 * * sunday#1",
         "0 0 * * mon#2/2", "0 0 * * #2", "0 0 * * *#1", "0 0 * * ?#1", "0 0 * * L", "0 0 * * l", "0 0 l * *",
         "0 0 L,1 * *", "0 0 ?,1 * *", "0 0 ? * ?", "0 0 * * 1,?", "0 0 * mon#2 *"]
ZONES = ["posixrules", "right/UTC", "posix/Africa/Nairobi", "posix/UTC", "right/Africa/Nairobi", "UTC",
         "Etc/UTC", "Africa/Nairobi", "Asia/Dhaka", "Etc/GMT-3", "Mars/Olympus", "africa/nairobi", "../UTC"]


def _prefect_takes(cron: str = "0 0 * * *", timezone: str = "UTC") -> bool:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("cron", CRONS)
def test_a_form_schedule_takes_the_cron_expressions_prefect_takes(cron):
    """A wrong schedule stops at the form's file, not hours later in Prefect: the form config accepts
    exactly what Prefect's own schedule model accepts."""
    if _prefect_takes(cron=cron):
        assert Schedule(cron=cron).cron == cron
    else:
        with pytest.raises(ValueError, match="cron"):
            Schedule(cron=cron)


@pytest.mark.parametrize("zone", ZONES)
def test_a_form_schedule_takes_the_time_zones_prefect_takes(zone):
    """ZoneInfo also opens files of the time-zone database that are not zone names; Prefect refuses them."""
    if _prefect_takes(timezone=zone):
        assert Schedule(timezone=zone).timezone == zone
    else:
        with pytest.raises(ValueError, match="is not a time zone name"):
            Schedule(timezone=zone)


def test_a_wrong_time_zone_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "market_prices.yaml"
    form = 'asset_uid: aMP2\nschedule: {cron: "0 6 * * *", timezone: %s}\n'
    path.write_text(form % "Mars/Olympus", encoding="utf-8")
    with pytest.raises(FormConfigError) as err:
        load_form_config(path)
    text = str(err.value)
    assert str(path) in text and "schedule.timezone" in text and "'Mars/Olympus' is not a time zone" in text
    path.write_text(form % "Africa/Nairobi", encoding="utf-8")
    assert load_form_config(path).schedule.timezone == "Africa/Nairobi"
