"""GX's import leaves `scipy.stats` (≈ 0.9 of its ≈ 2.9 s of CPU) to the first use, and SQLAlchemy (≈ 0.2 s)
out: our checks never use them, yet they validate as before, and both still work for whoever uses them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import pandas as pd
from expectations.suites import ExpectationSpec, SuiteSpec
from expectations.validate import validate_frame

suite = SuiteSpec("form", [
    ExpectationSpec("between:age", "expect_column_values_to_be_between",
                    {"column": "age", "min_value": 0, "max_value": 120}),
    ExpectationSpec("in_set:sex", "expect_column_values_to_be_in_set",
                    {"column": "sex", "value_set": ["f", "m"]}),
    ExpectationSpec("unique:_uuid", "expect_column_values_to_be_unique", {"column": "_uuid"}),
    ExpectationSpec("not_null:sex", "expect_column_values_to_not_be_null", {"column": "sex"}),
])
df = pd.DataFrame({"_id": [1, 2, 3], "_uuid": ["a", "b", "b"], "age": [30, 150, 4], "sex": ["f", "x", None]})
results = {r.expectation: r.unexpected_count for r in validate_frame(df, suite)}
loaded_after_checks = "scipy.stats._stats_py" in sys.modules
sqlalchemy_after_checks = "sqlalchemy" in sys.modules
from scipy import stats
import sqlalchemy
print(json.dumps({"results": results, "loaded_after_checks": loaded_after_checks,
                  "norm_cdf_0": float(stats.norm.cdf(0.0)),
                  "loaded_after_use": "scipy.stats._stats_py" in sys.modules,
                  "sqlalchemy_after_checks": sqlalchemy_after_checks,
                  "sqlalchemy_text": str(sqlalchemy.text("SELECT 1"))}))
"""


def test_the_checks_run_without_scipy_stats_and_sqlalchemy_which_still_work_when_used() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["results"] == {"between:age": 1, "in_set:sex": 1, "unique:_uuid": 2, "not_null:sex": 1}
    assert seen["loaded_after_checks"] is False
    assert seen["norm_cdf_0"] == 0.5 and seen["loaded_after_use"] is True
    assert seen["sqlalchemy_after_checks"] is False and seen["sqlalchemy_text"] == "SELECT 1"


def test_a_module_left_out_of_gx_is_hidden_from_the_importing_thread_only() -> None:
    from expectations.validate import _not_installed_for_this_thread

    sys.modules.pop("colorsys", None)  # a small standard module, imported afresh below
    elsewhere: list[object] = []
    with _not_installed_for_this_thread(["colorsys"]):
        with pytest.raises(ModuleNotFoundError, match="colorsys"):
            import colorsys  # noqa: F401
        other = threading.Thread(target=lambda: elsewhere.append(__import__("colorsys").rgb_to_hsv(1, 0, 0)))
        other.start()
        other.join()
    assert elsewhere == [(0.0, 1.0, 1)]
    import colorsys

    assert colorsys.hls_to_rgb(0, 0, 0) == (0, 0, 0)


def test_a_module_imported_already_is_left_as_it_is() -> None:
    from expectations.validate import _import_on_first_use

    module = sys.modules["json"]
    _import_on_first_use("json")
    assert sys.modules["json"] is module and module.dumps([1]) == "[1]"
    _import_on_first_use("no_such_module_here")
    assert "no_such_module_here" not in sys.modules
