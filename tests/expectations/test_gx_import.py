"""GX's import leaves `scipy.stats` (≈ 0.9 of its ≈ 2.9 s of CPU) to the first use: our checks never use it,
yet they validate as before, and scipy.stats still works for whoever uses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
from scipy import stats
print(json.dumps({"results": results, "loaded_after_checks": loaded_after_checks,
                  "norm_cdf_0": float(stats.norm.cdf(0.0)),
                  "loaded_after_use": "scipy.stats._stats_py" in sys.modules}))
"""


def test_the_checks_run_without_importing_scipy_stats_which_still_works_when_used() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["results"] == {"between:age": 1, "in_set:sex": 1, "unique:_uuid": 2, "not_null:sex": 1}
    assert seen["loaded_after_checks"] is False
    assert seen["norm_cdf_0"] == 0.5 and seen["loaded_after_use"] is True


def test_a_module_imported_already_is_left_as_it_is() -> None:
    from expectations.validate import _import_on_first_use

    module = sys.modules["json"]
    _import_on_first_use("json")
    assert sys.modules["json"] is module and module.dumps([1]) == "[1]"
    _import_on_first_use("no_such_module_here")
    assert "no_such_module_here" not in sys.modules
