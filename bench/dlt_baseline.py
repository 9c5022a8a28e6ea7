"""dlt baseline for issue #9: load a form's submissions with dlt's generic REST API source into DuckDB.

    KOBO_TOKEN=... bench/.dlt-venv/bin/python bench/dlt_baseline.py --url URL --uid UID --out DIR
        [--loader-file-format parquet|jsonl|insert_values]

For the benchmark only (`bench/run.py --dlt` runs it against the same demo server as the sync): it needs
`dlt[duckdb]` and `pyarrow`, which are *not* project dependencies, so it runs in its own venv
(`bench/.dlt-venv`, created by run.py). It is configured the way a typical dlt user would: `rest_api_source`
on `/api/v2/assets/{uid}/data/`, `limit=1000`, the JSON-link paginator on `next`, data selector `results`,
dlt's defaults otherwise (append, nested repeat lists become child tables, 20 load threads). Parquet mode is
`pipeline.run(..., loader_file_format="parquet")`; dlt's default for DuckDB is `insert_values`.

Prints one line of JSON: `wall_s` (the whole `pipeline.run`: extract + normalize + load; dlt's import and
start-up are `import_s`, not in it), seconds per step from dlt's trace, rows per table read back from the
DuckDB file, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# dlt's anonymous telemetry would post to the internet after every step: not part of what is measured
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

t_import = time.perf_counter()
import dlt  # noqa: E402
import duckdb  # noqa: E402
from dlt.sources.rest_api import rest_api_source  # noqa: E402

IMPORT_S = time.perf_counter() - t_import


def _one(con: Any, sql: str, params: list[Any] | None = None) -> Any:
    """The single value of a one-row query."""
    row = con.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM), in MB. Not `ru_maxrss`: Linux carries it over `exec`, so it can hold
    the peak of the process that started us (bench/run.py's). Normalize and load run in this process (dlt's
    defaults: one normalize worker, load threads)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="the KoBo server, e.g. http://127.0.0.1:8000")
    p.add_argument("--uid", required=True, help="the form's asset uid")
    p.add_argument("--out", type=Path, required=True, help="folder for the DuckDB file and dlt's state")
    p.add_argument("--loader-file-format", default="parquet", choices=("parquet", "jsonl", "insert_values"))
    args = p.parse_args(argv)
    token = os.environ.get("KOBO_TOKEN")  # from the environment, as the project reads it: not in `ps`
    if not token:
        p.error("set KOBO_TOKEN to the server's API token")
    args.out.mkdir(parents=True, exist_ok=True)

    source = rest_api_source({
        "client": {
            "base_url": f"{args.url.rstrip('/')}/api/v2/",
            "auth": {"type": "api_key", "name": "Authorization", "api_key": f"Token {token}",
                     "location": "header"},
            "paginator": {"type": "json_link", "next_url_path": "next"},
        },
        "resources": [{
            "name": "submissions",
            "endpoint": {
                "path": f"assets/{args.uid}/data/",
                "params": {"format": "json", "limit": 1000, "start": 0},
                "data_selector": "results",
            },
        }],
    })
    db = args.out / "dlt.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="kobo_dlt_baseline",
        pipelines_dir=str(args.out / "pipelines"),  # not ~/.dlt: every run starts fresh
        destination=dlt.destinations.duckdb(str(db)),
        dataset_name="kobo",
    )
    t0 = time.perf_counter()
    pipeline.run(source, loader_file_format=args.loader_file_format)
    wall = time.perf_counter() - t0

    trace = pipeline.last_trace
    steps = {s.step: (s.finished_at - s.started_at).total_seconds()
             for s in trace.steps if s.started_at and s.finished_at}
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'kobo' "
            "AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\' ORDER BY 1").fetchall()]
        rows = {t: _one(con, f'SELECT count(*) FROM kobo."{t}"') for t in tables}
        columns = {t: _one(con, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'kobo' "
                                "AND table_name = ?", [t]) for t in tables}
    finally:
        con.close()
    result: dict[str, Any] = {
        "dlt": dlt.__version__,
        "loader_file_format": args.loader_file_format,
        "wall_s": wall,
        "steps_s": steps,  # extract / normalize / load, from dlt's trace
        "import_s": IMPORT_S,
        "rows": rows,
        "columns": columns,
        "peak_mb": peak_rss_mb(),
        "duckdb_mb": db.stat().st_size / 1e6,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
