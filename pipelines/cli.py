"""The `kobo-etl` command line: what IM officers type.

    kobo-etl forms                 list the server's survey forms
    kobo-etl add-form <asset_uid>  write config/forms/<slug>.yaml with a suggested privacy policy
    kobo-etl sync [slug ...]       sync every configured form (or the ones named)
    kobo-etl demo                  run the whole pipeline against the bundled demo KoBo server
    kobo-etl demo-server           run the demo KoBo server on a local port
    kobo-etl keygen                print a new random pseudonymisation key
    kobo-etl status [--json]       per form: last run, result, rows, checks, privacy to-dos, counts
    kobo-etl schedule              rewrite prefect.yaml from config/forms/ (then `prefect deploy --all`)
    kobo-etl serve                 run every form on its schedule in this process (Ctrl-C stops)
    kobo-etl report                rewrite the data-quality report (data/reports/)
    kobo-etl publish               rewrite the Power BI exports (data/exports/)
    kobo-etl dictionary <form>     write a codebook (CSV + Markdown) of the form's tables and columns
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from config import EtlError, load_settings
from config.settings import Settings
from pipelines.logs import setup_logging

log = logging.getLogger("kobo_etl")

EXIT_OK, EXIT_RED, EXIT_USAGE = 0, 1, 2


def print_table(rows: list[dict], columns: Sequence[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


# ---------------------------------------------------------------------------------------------- commands


def cmd_forms(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.run import make_client
    from pipelines.sync import asset_submission_count

    rows = [
        {
            "uid": a.get("uid"),
            "name": a.get("name"),
            "submissions": asset_submission_count(a),
            "deployed": "yes" if a.get("has_deployment") and a.get("deployment__active") else "no",
        }
        for a in make_client(settings).iter_assets()
    ]
    print_table(rows, ["uid", "name", "submissions", "deployed"])
    return EXIT_OK


def cmd_add_form(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.forms import add_form
    from pipelines.run import make_client

    path = add_form(make_client(settings), settings.forms_dir, args.asset_uid, slug=args.slug,
                    force=args.force)
    print(f"wrote {path}")
    print("Review the suggested privacy policy in that file before the first sync.")
    return EXIT_OK


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    if args.prefect or os.environ.get("PREFECT_API_URL"):
        from pipelines.flows import sync_all, sync_form

        if len(args.forms) == 1:
            state = sync_form(args.forms[0], full=args.full, return_state=True)
        else:
            state = sync_all(full=args.full, forms=args.forms or None, return_state=True)
        return EXIT_OK if state.is_completed() else EXIT_RED
    from pipelines.run import run_sync

    result = run_sync(settings, args.forms or None, full=args.full, wait_s=args.wait)
    for summary in result.summaries:
        for line in summary.lines():
            print(line)
    for error in result.errors:
        print(f"FAILED {error}", file=sys.stderr)
    return EXIT_RED if result.red else EXIT_OK


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.demo import run_demo

    return run_demo(settings, households=args.households, use_prefect=not args.no_prefect)


def cmd_demo_server(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.demo_server import run_demo_server

    run_demo_server(args.port, args.households)
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace, settings: Settings) -> int:
    print(secrets.token_urlsafe(32))
    print(
        "Put it in .env as KOBO_ETL_PSEUDONYMISATION_KEY=... and keep a sealed backup: "
        "a lost or changed key breaks linkage of pseudonyms across syncs.",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from pipelines.run import select_forms
    from pipelines.status import collect_status, render_text

    report = collect_status(settings, select_forms(settings, args.forms or None), live=args.live)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_text(report))
    return EXIT_RED if report.red else EXIT_OK


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.run import select_forms
    from pipelines.schedule import write_prefect_yaml

    forms = select_forms(settings, None)
    path = write_prefect_yaml(Path(args.out), forms)
    print(f"wrote {path}: {len(forms)} scheduled deployment(s) and sync-all")
    for f in forms:
        paused = "" if f.schedule.active else " (paused)"
        print(f"  sync-{f.slug}: {f.schedule.cron} ({f.schedule.timezone}){paused}")
    print(
        "Next: `prefect deploy --all`, then `prefect worker start --pool kobo-etl` (see docs/operations.md)"
    )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.run import select_forms
    from pipelines.serve import serve_forms

    forms = select_forms(settings, args.forms or None)
    settings.require_token()  # fail now, not at the first tick hours later
    settings.require_key()
    serve_forms(forms, limit=args.limit, data_dir=settings.data_dir)
    return EXIT_OK


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from expectations import write_report
    from pipelines.run import select_forms
    from warehouse import connect

    forms = select_forms(settings, args.forms or None)
    with connect(settings.warehouse_path, wait_s=args.wait, memory_limit=settings.duckdb_memory_limit) as con:
        index = write_report(con, settings.data_dir / "reports", forms)
    print(f"wrote {index}")
    return EXIT_OK


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.checks import publish_outputs
    from pipelines.run import select_forms
    from warehouse import connect

    forms = select_forms(settings, args.forms or None)
    if args.format:
        settings = settings.model_copy(update={"export_format": args.format})
    with connect(settings.warehouse_path, wait_s=args.wait, memory_limit=settings.duckdb_memory_limit) as con:
        errors = publish_outputs(con, settings, forms)
    print(f"published {len(forms)} form(s) to {settings.data_dir / 'exports'}")
    for error in errors:
        print(f"FAILED {error}", file=sys.stderr)
    return EXIT_RED if errors else EXIT_OK


def cmd_dictionary(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.dictionary import write_codebook
    from pipelines.run import select_forms
    from pipelines.status import open_read_only

    form = select_forms(settings, [args.form])[0]
    con, source, note = open_read_only(settings)
    if con is None:
        print(f"error: {note}", file=sys.stderr)
        return EXIT_RED
    if note:
        print(f"note: {note}", file=sys.stderr)
    # not in data/exports/<form>/: every publish replaces that folder
    out = Path(args.out) if args.out else settings.data_dir / "codebooks" / form.slug
    with con:
        paths = write_codebook(con, form.slug, out)
    for path in paths:
        print(f"wrote {path}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kobo-etl", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="HTTP detail (tokens redacted)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("forms", help="list the KoBo server's survey forms").set_defaults(func=cmd_forms)

    p = sub.add_parser("add-form", help="add a form to config/forms/ with a suggested privacy policy")
    p.add_argument("asset_uid")
    p.add_argument("--slug", help="warehouse schema name (default: from the form name)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing config of this slug or form (its reviewed settings are lost)")
    p.set_defaults(func=cmd_add_form)

    p = sub.add_parser("sync", help="sync configured forms into the warehouse")
    p.add_argument("forms", nargs="*", help="form slugs (default: all)")
    p.add_argument("--full", action="store_true", help="re-download everything")
    p.add_argument(
        "--wait", type=float, default=0, help="seconds to wait if another sync holds the warehouse"
    )
    p.add_argument(
        "--prefect", action="store_true", help="run as a Prefect flow (default when PREFECT_API_URL is set)"
    )
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("demo", help="run the whole pipeline on the bundled demo KoBo server")
    p.add_argument("--households", type=int, default=2000)
    p.add_argument("--no-prefect", action="store_true", help="run without Prefect (faster)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("demo-server", help="serve the demo KoBo server on a local port")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--households", type=int, default=2000)
    p.set_defaults(func=cmd_demo_server)

    sub.add_parser("keygen", help="print a new random pseudonymisation key").set_defaults(func=cmd_keygen)

    p = sub.add_parser("status", help="per form: last run, result, rows, checks, privacy to-dos")
    p.add_argument("forms", nargs="*", help="form slugs (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--live", action="store_true", help="also ask the KoBo server for its current counts")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("schedule", help="rewrite prefect.yaml from config/forms/")
    p.add_argument("--out", default="prefect.yaml", help="where to write (default: ./prefect.yaml)")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("serve", help="run every form on its schedule in this process (Ctrl-C stops)")
    p.add_argument("forms", nargs="*", help="form slugs (default: all)")
    p.add_argument("--limit", type=int, default=1, help="runs at the same time (default 1: one warehouse)")
    p.set_defaults(func=cmd_serve)

    for name, func, text in (
        ("report", cmd_report, "rewrite the data-quality report in data/reports/"),
        ("publish", cmd_publish, "rewrite the Power BI exports in data/exports/"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("forms", nargs="*", help="form slugs (default: all)")
        p.add_argument("--wait", type=float, default=0, help="seconds to wait if a sync holds the warehouse")
        if name == "publish":
            p.add_argument(
                "--format", choices=["parquet", "csv"], help="default: KOBO_ETL_EXPORT_FORMAT or parquet"
            )
        p.set_defaults(func=func)

    p = sub.add_parser("dictionary", help="write a codebook (CSV + Markdown) of a form's tables and columns")
    p.add_argument("form", help="form slug")
    p.add_argument("--out", help="folder for codebook.csv and codebook.md (default: data/codebooks/<form>/)")
    p.set_defaults(func=cmd_dictionary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.command in _READS_THE_WAREHOUSE:
            settings = _demo_forms_if_none(settings)
        setup_logging(settings if args.command not in ("keygen",) else None, args.verbose)
        return int(args.func(args, settings))
    except EtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RED if not isinstance(exc, _usage_errors()) else EXIT_USAGE
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130


#: Commands that only read the warehouse (and write outputs from it): after `make demo` they work on the demo.
_READS_THE_WAREHOUSE = ("status", "report", "publish", "dictionary")


def _demo_forms_if_none(settings: Settings) -> Settings:
    """The demo's form configs when no folder was chosen and the default one has none, so that `status`,
    `report`, `publish` and `dictionary` work on the warehouse `make demo` built (which keeps its configs
    in data/demo/forms). `sync` and `serve` never fall back: they would ask a real server for demo forms."""
    demo = settings.data_dir / "demo" / "forms"
    if "forms_dir" in settings.model_fields_set or any(settings.forms_dir.glob("*.yaml")):
        return settings
    if not any(demo.glob("*.yaml")):
        return settings
    print(f"note: no form configs in {settings.forms_dir}; using the demo's, in {demo} "
          "(KOBO_ETL_FORMS_DIR chooses the folder)", file=sys.stderr)
    return settings.model_copy(update={"forms_dir": demo})


def _usage_errors() -> tuple[type, ...]:
    from config.errors import ConfigError

    return (ConfigError,)


if __name__ == "__main__":
    sys.exit(main())

