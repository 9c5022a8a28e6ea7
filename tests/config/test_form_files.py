"""Loading the form files: syncing some forms reads only their files, and two files cannot share a slug."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import load_form_configs
from config.errors import FormConfigError


def _write(forms: Path, name: str, text: str) -> None:
    forms.mkdir(exist_ok=True)
    (forms / name).write_text(text, encoding="utf-8")


def test_a_broken_file_of_another_form_does_not_stop_these_forms(tmp_path: Path) -> None:
    forms = tmp_path / "forms"
    _write(forms, "household.yaml", "slug: household\nasset_uid: aHH1\n")
    _write(forms, "other.yaml", "slug: other\nasset_uid: aOT1\nsycn: {page_size: 10}\n")  # a typo
    _write(forms, "broken.yaml", "slug: [unclosed\n")
    assert [f.slug for f in load_form_configs(forms, ["household"])] == ["household"]
    with pytest.raises(FormConfigError, match="broken.yaml: field '\\(file\\)': not valid YAML"):
        load_form_configs(forms)  # every form: the broken files are reported
    with pytest.raises(FormConfigError, match="other.yaml: field 'sycn'"):
        load_form_configs(forms, ["other"])


def test_two_files_with_one_slug_are_refused(tmp_path: Path) -> None:
    forms = tmp_path / "forms"
    _write(forms, "a.yaml", "slug: household\nasset_uid: aHH1\n")
    _write(forms, "b.yaml", "slug: household\nasset_uid: aHH2\n")
    with pytest.raises(FormConfigError, match=r"b.yaml: field 'slug': 'household' is the slug of .*a.yaml"):
        load_form_configs(forms)
