"""The offline data-quality report: `index.html` plus one page per form, for a MEAL lead.

Self-contained on purpose (inline CSS and SVG, no scripts, no external URLs): KoBo users often work in
low-connectivity offices, and a page that fetches from a CDN tells third parties who is reading it.
It shows ids, pseudonyms and counts only; every text goes through `html.escape`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expectations.hfc import HfcReport, Histogram, run_hfc

if TYPE_CHECKING:
    import duckdb

    from transforms.model import FormSchema

MAX_IDS = 200  # ids listed per check; the full list is in ops.dq_failed_rows
_SAFE_TEXT_COLUMNS = {
    "form",
    "slug",
    "run_id",
    "qis",
    "quasi_identifiers",
    "traffic_light",
    "light",
    "status",
    "level",
    "xpath",
    "question_type",
    "reason",
    "decision",
    "action",
}
_COLOURS = {"red": "#c0392b", "amber": "#d68910", "green": "#1e8449", "grey": "#7f8c8d"}

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:24px;color:#222;
max-width:1200px}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}th,td{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f4f6f7}td.num{text-align:right}
.light{display:inline-block;padding:6px 12px;margin:4px 8px 4px 0;border-radius:14px;color:#fff;
font-weight:600}
.ids{font-family:ui-monospace,Consolas,monospace;font-size:.85em;max-width:520px;word-wrap:break-word}
.note{color:#555;font-size:.9em}.sev-error{color:#c0392b;font-weight:600}.sev-warning{color:#d68910;font-weight:600}
.sev-info{color:#2471a3}
"""


@dataclass
class FormPage:
    """What one form's page shows; built by `collect_form`."""

    slug: str
    title: str
    light: str
    run: dict[str, Any] | None
    previous: dict[str, Any] | None
    failing: list[dict[str, Any]]
    changes: list[str]
    hfc: HfcReport | None
    completeness: dict[str, Any] | None
    risk: list[dict[str, Any]]
    pending: list[dict[str, Any]]
    #: ops.quarantine grouped by table, column and reason: counts and example `_id`s, never values
    quarantine: list[dict[str, Any]] = field(default_factory=list)


def e(x: Any) -> str:
    """Escape anything for HTML text or attribute."""
    return html.escape("" if x is None else str(x), quote=True)


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(row and row[0])


def _dicts(cur: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _safe_rows(
    con: duckdb.DuckDBPyConnection, table: str, slug: str, limit: int = 20
) -> list[dict[str, Any]]:
    """Rows of an `ops` table for one form, keeping numbers, dates, booleans and known-safe names only."""
    cols = con.execute(f"DESCRIBE {table}").fetchall()
    keep = []
    for name, typ, *_ in cols:
        t = str(typ).upper()
        if (
            t.startswith(
                (
                    "BIGINT",
                    "INTEGER",
                    "DOUBLE",
                    "FLOAT",
                    "DECIMAL",
                    "SMALLINT",
                    "HUGEINT",
                    "BOOLEAN",
                    "DATE",
                    "TIMESTAMP",
                    "UBIGINT",
                    "REAL",
                )
            )
            or name in _SAFE_TEXT_COLUMNS
        ):
            keep.append(name)
    if not keep:
        return []
    names = {c[0] for c in cols}
    where, params = "", []
    for fcol in ("form", "slug"):
        if fcol in names:
            where, params = f' WHERE "{fcol}" = ?', [slug]
            break
    order = next(
        (
            f' ORDER BY "{c}" DESC'
            for c in ("computed_at", "created_at", "recorded_at", "last_seen", "started", "run_time")
            if c in names
        ),
        "",
    )
    sel = ", ".join('"' + c.replace('"', '""') + '"' for c in keep)
    return _dicts(con.execute(f"SELECT {sel} FROM {table}{where}{order} LIMIT {int(limit)}", params))


def collect_form(
    con: duckdb.DuckDBPyConnection,
    slug: str,
    *,
    title: str = "",
    hfc: HfcReport | None = None,
    quality: Mapping[str, Any] | None = None,
    schema: FormSchema | None = None,
    server_count: int | None = None,
) -> FormPage:
    """Gather a form's page: the latest `ops.dq_*` run and the one before, HFC aggregates, ops side tables."""
    has_table = _exists(con, slug, "submissions")
    if hfc is None and has_table:
        hfc = run_hfc(con, slug, schema=schema, quality=quality)
    run = previous = None
    failing: list[dict[str, Any]] = []
    changes: list[str] = []
    if _exists(con, "ops", "dq_runs"):
        runs = _dicts(
            con.execute("SELECT * FROM ops.dq_runs WHERE form = ? ORDER BY started DESC LIMIT 2", [slug])
        )
        run = runs[0] if runs else None
        previous = runs[1] if len(runs) > 1 else None
    if run is not None:
        failing = _dicts(
            con.execute(
                """SELECT r."check", r.kind, r."column", r.severity, r.unexpected_count, r.unexpected_percent,
                      r.description
               FROM ops.dq_results r WHERE r.run_id = ? AND r.form = ? AND NOT r.success
               ORDER BY CASE r.severity WHEN 'error' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
                        r.unexpected_count DESC, r."check" """,
                [run["run_id"], slug],
            )
        )
        ids: dict[str, list[int]] = {}
        totals: dict[str, int] = {}
        if _exists(con, "ops", "dq_failed_rows"):
            for rule, id_list, n in con.execute(
                f"""SELECT rule, list(DISTINCT submission_id ORDER BY submission_id)[1:{MAX_IDS}],
                               count(DISTINCT submission_id)
                        FROM ops.dq_failed_rows WHERE run_id = ? AND form = ? GROUP BY rule""",
                [run["run_id"], slug],
            ).fetchall():
                ids[rule], totals[rule] = list(id_list), int(n)
        for f in failing:
            f["ids"], f["ids_total"] = ids.get(f["check"], []), totals.get(f["check"], 0)
        if previous is not None:
            changes = _changes(con, slug, run, previous)
    elif hfc is not None:
        for r in hfc.results:
            if not r.success:
                failing.append(
                    {
                        "check": r.check,
                        "kind": "hfc",
                        "column": r.column,
                        "severity": r.severity,
                        "unexpected_count": r.count,
                        "unexpected_percent": 100.0 * r.count / max(r.checked, 1),
                        "description": r.title,
                        "ids": r.ids[:MAX_IDS],
                        "ids_total": r.count,
                    }
                )
    completeness = None
    wh = int(con.execute(f'SELECT count(*) FROM "{slug}"."submissions"').fetchone()[0]) if has_table else None  # type: ignore[index]
    if server_count is None and _exists(con, "ops", "sync_runs"):
        row = con.execute(
            "SELECT server_count FROM ops.sync_runs WHERE form = ? AND server_count IS NOT NULL "
            "ORDER BY started DESC LIMIT 1",
            [slug],
        ).fetchone()
        server_count = int(row[0]) if row else None
    if server_count is not None or wh is not None:
        completeness = {"server": server_count, "warehouse": wh}
    risk = _safe_rows(con, "ops.disclosure_risk", slug) if _exists(con, "ops", "disclosure_risk") else []
    pending = (
        _safe_rows(con, "ops.pending_privacy_decisions", slug, 100)
        if _exists(con, "ops", "pending_privacy_decisions")
        else []
    )
    light = _light(run, failing)
    return FormPage(
        slug, title or slug, light, run, previous, failing, changes, hfc, completeness, risk, pending,
        _quarantine_summary(con, slug),
    )


def _quarantine_summary(con: duckdb.DuckDBPyConnection, slug: str) -> list[dict[str, Any]]:
    """The values of the form's stored submissions that could not be stored as typed, grouped by where and
    why (reasons are the pipeline's own words, never a value)."""
    if not _exists(con, "ops", "quarantine"):
        return []
    return _dicts(con.execute(
        """SELECT table_name AS "table", column_name AS "column", reason, count(*) AS "values",
                  list(DISTINCT submission_id ORDER BY submission_id)[1:5] AS example_ids
           FROM ops.quarantine WHERE form = ? GROUP BY ALL
           ORDER BY "values" DESC, "table", "column" LIMIT 50""",
        [slug],
    ))


def _light(run: dict[str, Any] | None, failing: list[dict[str, Any]]) -> str:
    if run is None and not failing:
        return "grey"
    if any(f["severity"] == "error" for f in failing):
        return "red"
    if any(f["severity"] == "warning" for f in failing):
        return "amber"
    return "green"


def _changes(
    con: duckdb.DuckDBPyConnection, slug: str, run: dict[str, Any], prev: dict[str, Any]
) -> list[str]:
    """Plain sentences on what changed since the previous run."""
    out = []
    for key, what in (
        ("errors_failed", "error checks failing"),
        ("warnings_failed", "warning checks failing"),
        ("rows_checked", "submissions checked"),
    ):
        a, b = prev.get(key), run.get(key)
        if a is not None and b is not None and a != b:
            out.append(f"{what}: {a} → {b}")

    def failing_set(run_id: str) -> dict[str, int]:
        return {
            c: int(n or 0)
            for c, n in con.execute(
                'SELECT "check", unexpected_count FROM ops.dq_results '
                "WHERE run_id = ? AND form = ? AND NOT success",
                [run_id, slug],
            ).fetchall()
        }

    now, before = failing_set(run["run_id"]), failing_set(prev["run_id"])
    for c in sorted(set(now) - set(before)):
        out.append(f"newly failing: {c} ({now[c]})")
    for c in sorted(set(before) - set(now)):
        out.append(f"now passing: {c}")
    for c in sorted(set(now) & set(before)):
        if now[c] != before[c]:
            out.append(f"{c}: {before[c]} → {now[c]} submissions")
    return out or ["no change since the previous run"]


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{100 * v:.0f}%" if pct else f"{v:.1f}"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    return str(v)


def svg_histogram(
    histogram: Histogram | None, *, width: int = 560, height: int = 180, label: str = "minutes"
) -> str:
    """An inline SVG histogram (counts per bin only)."""
    if histogram is None or not any(histogram.counts):
        return '<p class="note">No data.</p>'
    lo, hi, counts = histogram.low, histogram.high, histogram.counts
    bins = len(counts)
    step = (hi - lo) / bins
    top = max(counts)
    bw = (width - 40) / bins
    bars = []
    for i, n in enumerate(counts):
        h = (height - 40) * n / top
        x, y = 30 + i * bw, height - 25 - h
        tip = f"{lo + i * step:.0f}–{lo + (i + 1) * step:.0f} {label}: {n}"
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 1:.1f}" height="{h:.1f}" fill="#2e86c1">'
            f"<title>{e(tip)}</title></rect>"
        )
    axis = (
        f'<text x="30" y="{height - 8}" font-size="11">{lo:.0f}</text>'
        f'<text x="{width - 40}" y="{height - 8}" font-size="11">{hi:.0f} {e(label)}</text>'
        f'<text x="2" y="14" font-size="11">{top}</text>'
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" '
        f'aria-label="{e(label)} histogram">{"".join(bars)}{axis}</svg>'
    )


def svg_trend(points: Sequence[tuple[date, int]], *, width: int = 560, height: int = 180) -> str:
    """An inline SVG bar chart of submissions per day."""
    if not points:
        return '<p class="note">No data.</p>'
    top = max(n for _, n in points) or 1
    bw = (width - 40) / len(points)
    bars = []
    for i, (d, n) in enumerate(points):
        h = (height - 40) * n / top
        bars.append(
            f'<rect x="{30 + i * bw:.1f}" y="{height - 25 - h:.1f}" width="{max(bw - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="#27ae60"><title>{e(d)}: {n}</title></rect>'
        )
    axis = (
        f'<text x="30" y="{height - 8}" font-size="11">{e(points[0][0])}</text>'
        f'<text x="{width - 110}" y="{height - 8}" font-size="11">{e(points[-1][0])}</text>'
        f'<text x="2" y="14" font-size="11">{top}</text>'
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" '
        f'aria-label="submissions per day">{"".join(bars)}{axis}</svg>'
    )


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; "
        f'img-src data:"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>"
    )


def _lightspan(colour: str, text: str) -> str:
    return f'<span class="light" style="background:{_COLOURS[colour]}">{e(text)}</span>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], num: set[int] | None = None) -> str:
    num = num or set()
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in num else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _completeness_light(c: dict[str, Any] | None) -> tuple[str, str]:
    if not c or c.get("server") is None or c.get("warehouse") is None:
        return "grey", "Completeness: server count unknown"
    s, w = c["server"], c["warehouse"]
    return ("green" if s == w else "amber"), f"Completeness: {w} of {s} submissions in the warehouse"


def _risk_light(risk: list[dict[str, Any]]) -> tuple[str, str]:
    if not risk:
        return "grey", "Disclosure risk: not measured"
    r = risk[0]
    light = str(r.get("traffic_light") or r.get("light") or "").lower()
    if light in _COLOURS:
        return light, f"Disclosure risk: {light}"
    k, g = r.get("k_min"), r.get("global_risk")
    if k is None:
        return "grey", "Disclosure risk: see table"
    g = float(g or 0)
    g = g * 100 if g <= 1 else g
    colour = "green" if k >= 5 and g < 3 else ("amber" if k >= 3 and g <= 5 else "red")
    return colour, f"Disclosure risk: smallest group {k}, global risk {g:.1f}%"


def render_form(p: FormPage) -> str:
    """One form's page as HTML."""
    light_text = {
        "red": "Errors to fix",
        "amber": "Warnings to review",
        "green": "All checks pass",
        "grey": "No checks recorded yet",
    }[p.light]
    parts = [
        f'<p><a href="index.html">← all forms</a></p><h1>{e(p.title)}</h1>',
        f'<p class="note">Form <code>{e(p.slug)}</code>. Report generated {e(_now())}.</p><div>',
        _lightspan(p.light, f"Checks: {light_text}"),
        _lightspan(*_completeness_light(p.completeness)),
        _lightspan(*_risk_light(p.risk)),
        "</div>",
    ]
    if p.run:
        parts.append(
            f"<p>Last check run {e(_fmt(p.run.get('started')))}: {e(p.run.get('rows_checked'))} "
            f"submissions checked; {e(p.run.get('errors_failed'))} error checks and "
            f"{e(p.run.get('warnings_failed'))} warning checks failing.</p>"
        )
    parts.append("<h2>What changed since the last run</h2>")
    if p.changes:
        parts.append("<ul>" + "".join(f"<li>{e(c)}</li>" for c in p.changes) + "</ul>")
    else:
        parts.append('<p class="note">This is the first recorded run.</p>')
    parts.append("<h2>Values not stored as typed (quarantine)</h2>")
    if p.quarantine:
        parts.append(
            '<p class="note">Their submissions are loaded with these answers empty (NULL); '
            "<code>ops.quarantine</code> has one row per value. Correct them in KoBo and the next sync "
            "loads them.</p>"
        )
        rows = [
            [e(q["table"]), e(q["column"]), e(q["reason"]), e(q["values"]),
             f'<span class="ids">{e(", ".join(str(i) for i in q["example_ids"]))}</span>']
            for q in p.quarantine
        ]
        parts.append(_table(["table", "column", "reason", "values", "example _ids"], rows, {3}))
    else:
        parts.append('<p class="note">None: every answer was stored as its question\'s type.</p>')
    parts.append("<h2>Checks that failed: submissions to follow up</h2>")
    if p.failing:
        parts.append(
            '<p class="note"><b>Error</b>: send these submission ids back to the field team to correct '
            "or confirm. <b>Warning</b>: review; they may be genuine. <b>Info</b>: a to-do list (e.g. "
            "answers to recode). See docs/data-quality.md for what each check means.</p>"
        )
        rows = []
        for f in p.failing:
            ids = ", ".join(e(i) for i in f.get("ids") or [])
            more = (f.get("ids_total") or 0) - len(f.get("ids") or [])
            if more > 0:
                ids += f" … and {more} more (ops.dq_failed_rows)"
            pct = f.get("unexpected_percent")
            rows.append(
                [
                    f'<span class="sev-{e(f["severity"])}">{e(f["severity"])}</span>',
                    e(f.get("description") or f["check"]) + f'<br><span class="note">{e(f["check"])}</span>',
                    e(f.get("column")),
                    e(f.get("unexpected_count")),
                    "" if pct is None else e(f"{pct:.1f}%"),
                    f'<div class="ids">{ids}</div>',
                ]
            )
        parts.append(
            _table(
                ["severity", "check", "question", "failing", "share", "submission ids (_id)"],
                rows,
                {3, 4},
            )
            + '<p class="note">"failing" counts submissions, or for a check on a repeat its rows (members), '
            "or for a select_multiple check the options ticked; the ids name each submission once.</p>"
        )
    else:
        parts.append("<p>No check failed.</p>")
    h = p.hfc
    if h is not None:
        parts.append("<h2>Enumerators</h2>")
        if h.enumerators:
            rows = [
                [
                    e(r["enumerator"]),
                    e(r["submissions"]),
                    e(r["days"]),
                    e(_fmt(r["per_day"])),
                    e(_fmt(r["median_duration"])),
                    e(_fmt(r["consent_rate"], True)),
                    e(_fmt(r["dont_know_rate"], True)),
                    e(_fmt(r["refuse_rate"], True)),
                    e(_fmt(r["outlier_share"], True)),
                    e(_fmt(r["productivity_z"])),
                    "⚠ unusual productivity" if r.get("productivity_outlier") else "",
                ]
                for r in h.enumerators
            ]
            parts.append(
                '<p class="note">Enumerators are shown by their pseudonym.</p>'
                + _table(
                    [
                        "enumerator",
                        "submissions",
                        "days",
                        "per day",
                        "median minutes",
                        "consent",
                        "don't know",
                        "refused",
                        "unusual values",
                        "productivity z",
                        "",
                    ],
                    rows,
                    set(range(1, 10)),
                )
            )
        else:
            parts.append('<p class="note">No enumerator column in this form.</p>')
        parts.append("<h2>Interview duration</h2>" + svg_histogram(h.durations))
        parts.append("<h2>Submissions per day</h2>" + svg_trend(h.per_day))
        skipped = [r for r in h.results if r.skipped]
        if skipped:
            parts.append(
                "<h2>Checks not run</h2><ul>"
                + "".join(f"<li>{e(r.title)}: {e(r.note)}</li>" for r in skipped)
                + "</ul>"
            )
        if h.missingness:
            worst = sorted(h.missingness, key=lambda m: -m["missing_percent"])[:20]
            parts.append(
                "<h2>Missing answers (20 questions with most)</h2>"
                + _table(
                    ["question", "empty", "share"],
                    [[e(m["column"]), e(m["missing"]), e(f"{m['missing_percent']:.1f}%")] for m in worst],
                    {1, 2},
                )
            )
        if h.versions:
            parts.append(
                "<h2>Submissions per form version</h2>"
                + _table(
                    ["version", "submissions", "last received"],
                    [
                        [e(v["version"]), e(v["submissions"]), e(_fmt(v["last_submission"]))]
                        for v in h.versions
                    ],
                    {1},
                )
            )
    parts.append("<h2>Disclosure risk</h2>")
    parts.append(_generic(p.risk, "No disclosure-risk measurement recorded for this form."))
    parts.append("<h2>Privacy decisions waiting for you</h2>")
    parts.append(_generic(p.pending, "None: every question has a privacy rule."))
    return _page(f"Data quality: {p.title}", "".join(parts))


def _generic(rows: list[dict[str, Any]], empty: str) -> str:
    if not rows:
        return f'<p class="note">{e(empty)}</p>'
    headers = list(rows[0])
    return _table(headers, [[e(_fmt(r[h])) for h in headers] for r in rows])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_index(pages: Sequence[FormPage]) -> str:
    rows = []
    for p in pages:
        c_light, c_text = _completeness_light(p.completeness)
        r_light, r_text = _risk_light(p.risk)
        errors = sum(1 for f in p.failing if f["severity"] == "error")
        warnings = sum(1 for f in p.failing if f["severity"] == "warning")
        rows.append(
            [
                f'<a href="{e(p.slug)}.html">{e(p.title)}</a>',
                _lightspan(
                    p.light,
                    {"red": "errors", "amber": "warnings", "green": "ok", "grey": "not checked"}[p.light],
                ),
                e(errors),
                e(warnings),
                _lightspan(c_light, c_text),
                _lightspan(r_light, r_text),
            ]
        )
    body = (
        f'<h1>Data quality report</h1><p class="note">Generated {e(_now())}. Counts and submission ids only; '
        "no answers are shown.</p>"
        + _table(
            [
                "form",
                "checks",
                "error checks failing",
                "warning checks failing",
                "completeness",
                "disclosure risk",
            ],
            rows,
            {2, 3},
        )
    )
    return _page("Data quality report", body)


def write_report(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    forms: Sequence[Any],
    *,
    hfc: Mapping[str, HfcReport] | None = None,
    schemas: Mapping[str, FormSchema] | None = None,
    server_counts: Mapping[str, int] | None = None,
) -> Path:
    """Write `out_dir/index.html` and `out_dir/<slug>.html` for each form; return the index path.

    Args:
        con: the warehouse connection (reads `ops.dq_*`, `ops.sync_runs`, `ops.disclosure_risk`,
            `ops.pending_privacy_decisions` when they exist, and runs the HFC aggregates).
        out_dir: usually `data/reports`.
        forms: slugs, or objects with `.slug` (and optionally `.name`, `.quality`) such as `FormConfig`.
        hfc: HFC results already computed in this sync, by slug (otherwise computed here).
        schemas: form schemas by slug (better HFC column detection).
        server_counts: the server's submission count by slug (otherwise the last `ops.sync_runs` value).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = []
    for f in forms:
        slug = f if isinstance(f, str) else f.slug
        page = collect_form(
            con,
            slug,
            title=getattr(f, "name", "") or slug,
            hfc=(hfc or {}).get(slug),
            quality=getattr(f, "quality", None),
            schema=(schemas or {}).get(slug),
            server_count=(server_counts or {}).get(slug),
        )
        (out_dir / f"{slug}.html").write_text(render_form(page), encoding="utf-8")
        pages.append(page)
    index = out_dir / "index.html"
    index.write_text(render_index(pages), encoding="utf-8")
    return index
