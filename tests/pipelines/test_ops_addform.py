"""`kobo-etl add-form` never replaces a reviewed form config, nor adds a second config for the same form,
unless told to with `--force`; the demo KoBo server on loopback."""

from __future__ import annotations

import pytest
from ops_helpers import demo_env, write_household_form

from config import load_form_configs
from pipelines import cli


@pytest.fixture
def env(demo_server, tmp_path, monkeypatch):
    for name, value in demo_env(demo_server, tmp_path).items():
        monkeypatch.setenv(name, value)
    return tmp_path / "forms"


def test_add_form_keeps_a_reviewed_config_unless_forced(demo_server, env, capsys):
    reviewed = env / "household_survey.yaml"
    before = reviewed.read_text(encoding="utf-8")
    assert "dpia_ref: DPIA-DEMO-001" in before and "Africa/Nairobi" in before

    code = cli.main(["add-form", demo_server.household_uid, "--slug", "household_survey"])
    assert code == cli.EXIT_USAGE  # as every other config error
    err = capsys.readouterr().err
    assert f"error: {reviewed} already exists" in err and "--force" in err
    assert reviewed.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in env.glob("*.yaml")) == ["household_survey.yaml"]

    assert cli.main(["add-form", demo_server.household_uid, "--slug", "household_survey", "--force"]) == 0
    assert f"wrote {reviewed}" in capsys.readouterr().out
    replaced = reviewed.read_text(encoding="utf-8")
    assert "written by `kobo-etl add-form`" in replaced and "DPIA-DEMO-001" not in replaced


def test_add_form_refuses_a_second_config_of_the_same_form(demo_server, env, capsys):
    reviewed = env / "household_survey.yaml"
    reviewed.rename(env / "hh.yaml")  # reviewed under another slug: add-form's own slug would differ
    reviewed = env / "hh.yaml"
    before = reviewed.read_text(encoding="utf-8")

    assert cli.main(["add-form", demo_server.household_uid]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"form {demo_server.household_uid} is already configured in {reviewed}" in err
    assert "--force" in err
    assert sorted(p.name for p in env.glob("*.yaml")) == ["hh.yaml"]
    assert reviewed.read_text(encoding="utf-8") == before

    assert cli.main(["add-form", demo_server.household_uid, "--force"]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    written = out.split("wrote ", 1)[1].split()[0]
    assert written != str(reviewed) and reviewed.read_text(encoding="utf-8") == before
    assert [f.asset_uid for f in load_form_configs(env)] == [demo_server.household_uid] * 2
    assert f"is already configured in {reviewed}" in err  # --force still warns


def test_add_form_writes_a_new_form_once(demo_server, tmp_path, env, capsys):
    (env / "household_survey.yaml").unlink()
    assert cli.main(["add-form", demo_server.household_uid, "--slug", "hh"]) == cli.EXIT_OK
    path = env / "hh.yaml"
    assert f"wrote {path}" in capsys.readouterr().out
    assert [f.slug for f in load_form_configs(env)] == ["hh"]
    # the same command again: the file is now someone's to review
    assert cli.main(["add-form", demo_server.household_uid, "--slug", "hh"]) == cli.EXIT_USAGE
    assert "already exists" in capsys.readouterr().err


def test_write_household_form_is_the_reviewed_config(demo_server, tmp_path):
    """The fixture's file is a reviewed one (dpia_ref, decisions), so the tests above protect real work."""
    form = load_form_configs(write_household_form(demo_server, tmp_path / "f").parent)[0]
    assert form.privacy.dpia_ref == "DPIA-DEMO-001" and form.schedule.timezone == "Africa/Nairobi"
