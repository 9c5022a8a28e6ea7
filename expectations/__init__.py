"""Data quality: GX suites built from the form, high-frequency checks in DuckDB SQL, the offline report.

GX is imported lazily (≈ 1.5–2 s of CPU) on the first check; importing this package stays cheap.
"""

from expectations.hfc import DEFAULTS as HFC_DEFAULTS
from expectations.hfc import HfcReport, HfcResult, run_hfc
from expectations.report import write_report
from expectations.structure import BatchStructure, StructuralError, check_batch_structure
from expectations.suites import (
    ExpectationSpec,
    SuiteSpec,
    build_suite,
    load_overrides,
    parse_constraint,
    suite_for_stored_types,
)
from expectations.validate import (
    FAILED_ROWS_SCHEMA,
    CheckResult,
    failed_rows,
    validate_frame,
    validate_table,
)

__all__ = [
    "HFC_DEFAULTS",
    "HfcReport",
    "HfcResult",
    "run_hfc",
    "write_report",
    "BatchStructure",
    "StructuralError",
    "check_batch_structure",
    "ExpectationSpec",
    "SuiteSpec",
    "build_suite",
    "load_overrides",
    "parse_constraint",
    "suite_for_stored_types",
    "CheckResult",
    "FAILED_ROWS_SCHEMA",
    "failed_rows",
    "validate_frame",
    "validate_table",
]
