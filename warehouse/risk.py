"""Re-identification risk of a warehouse table: k-anonymity on the policy's quasi-identifiers, in DuckDB SQL.

Sample-only measure (risk of a record = 1/f_k, f_k = size of its class): more conservative than sdcMicro's
weighted estimate, so it is a screening gate, not a release certificate. NULL is a class value of its own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from config.privacy import PrivacyPolicy


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class DropOne:
    """The risk if one quasi-identifier were not published."""

    without: str
    k_min: int | None
    records_below_k: int
    global_risk: float | None


@dataclass
class RiskReport:
    """k-anonymity summary of one table for the data-quality report and `ops.disclosure_risk`."""

    form: str
    table: str
    quasi_identifiers: list[str]
    k_threshold: int
    n_records: int = 0
    n_classes: int = 0
    k_min: int | None = None
    records_below_k: int = 0
    n_unique: int = 0  # records alone in their class
    global_risk: float | None = None  # n_classes / n_records = mean of 1/f_k over records
    light: str = "unknown"  # green | amber | red | unknown
    drop_one: list[DropOne] = field(default_factory=list)
    smallest_classes: list[dict[str, Any]] = field(default_factory=list)  # QI values and f_k only
    missing_columns: list[str] = field(default_factory=list)
    note: str = ""


def traffic_light(k_min: int | None, global_risk: float | None, policy: PrivacyPolicy) -> str:
    """green: k_min ≥ k and risk < green; amber: k_min ≥ amber_k and risk < amber; red otherwise."""
    if k_min is None or global_risk is None:
        return "unknown"
    if k_min >= policy.k_threshold and global_risk < policy.global_risk_green:
        return "green"
    if k_min >= policy.amber_k and global_risk < policy.global_risk_amber:
        return "amber"
    return "red"


def _class_stats(con: duckdb.DuckDBPyConnection, relation: str, qis: list[str], k: int) -> tuple[Any, ...]:
    cols = ", ".join(_q(c) for c in qis)
    row = con.execute(
        f"""
        WITH eq AS (SELECT count(*) AS f_k FROM {relation} GROUP BY {cols})
        SELECT count(*), coalesce(sum(f_k), 0), min(f_k),
               coalesce(sum(f_k) FILTER (WHERE f_k < ?), 0),
               coalesce(sum(f_k) FILTER (WHERE f_k = 1), 0)
        FROM eq
        """,
        [k],
    ).fetchone()
    assert row is not None
    return row


def disclosure_risk(
    con: duckdb.DuckDBPyConnection,
    slug: str,
    table: str,
    quasi_identifiers: list[str],
    policy: PrivacyPolicy | None = None,
) -> RiskReport:
    """k-anonymity of `<slug>.<table>` on the quasi-identifiers; missing columns give light 'unknown'."""
    policy = policy or PrivacyPolicy()
    k = policy.k_threshold
    qis = list(dict.fromkeys(quasi_identifiers))
    report = RiskReport(form=slug, table=table, quasi_identifiers=qis, k_threshold=k)
    if not qis:
        report.note = "no quasi-identifiers declared in the privacy policy"
        return report
    existing = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [slug, table],
        ).fetchall()
    }
    report.missing_columns = [c for c in qis if c not in existing]
    if not existing:
        report.note = f"table {slug}.{table} does not exist"
        return report
    if report.missing_columns:
        report.note = f"quasi-identifier column(s) not in {slug}.{table}: {', '.join(report.missing_columns)}"
        return report
    relation = f"{_q(slug)}.{_q(table)}"
    n_classes, n_records, k_min, below, unique = _class_stats(con, relation, qis, k)
    report.n_records, report.n_classes = int(n_records), int(n_classes)
    if report.n_records == 0:
        report.note = "no records"
        return report
    report.k_min, report.records_below_k, report.n_unique = int(k_min), int(below), int(unique)
    report.global_risk = report.n_classes / report.n_records
    report.light = traffic_light(report.k_min, report.global_risk, policy)
    cols = ", ".join(_q(c) for c in qis)
    cur = con.execute(
        f"SELECT {cols}, count(*) AS f_k FROM {relation} GROUP BY {cols} ORDER BY f_k, {cols} LIMIT 10"
    )
    names = [d[0] for d in cur.description]
    report.smallest_classes = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if len(qis) > 1:
        for qi in qis:
            rest = [c for c in qis if c != qi]
            nc, nr, km, bl, _ = _class_stats(con, relation, rest, k)
            report.drop_one.append(DropOne(qi, int(km), int(bl), int(nc) / int(nr) if nr else None))
    return report


_DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.disclosure_risk (
    run_id VARCHAR,
    form VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL,
    quasi_identifiers VARCHAR[],
    missing_columns VARCHAR[],
    k_threshold INTEGER,
    k_min BIGINT,
    n_classes BIGINT,
    records_below_k BIGINT,
    n_unique BIGINT,
    n_records BIGINT,
    global_risk DOUBLE,
    light VARCHAR,
    drop_one JSON,
    note VARCHAR
);
"""


def write_disclosure_risk(
    con: duckdb.DuckDBPyConnection, run_id: str | int | None, slug: str, report: RiskReport
) -> None:
    """Append the report to `ops.disclosure_risk` (created if missing). Smallest classes are not stored."""
    con.execute(_DDL)
    con.execute(
        "INSERT INTO ops.disclosure_risk VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            None if run_id is None else str(run_id),
            slug,
            report.table,
            datetime.now(UTC),
            report.quasi_identifiers,
            report.missing_columns,
            report.k_threshold,
            report.k_min,
            report.n_classes,
            report.records_below_k,
            report.n_unique,
            report.n_records,
            report.global_risk,
            report.light,
            json.dumps([asdict(d) for d in report.drop_one]),
            report.note,
        ],
    )
