"""Logging: one line per step on the console, and a rotated file in data/logs/ (CLI and flows alike)."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from config.settings import Settings


def setup_logging(settings: Settings | None, verbose: bool) -> None:
    """One line per step on the console; a rotated file in data/logs/. HTTP detail only with --verbose."""
    root = logging.getLogger("kobo_etl")
    root.handlers.clear()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    from pipelines.progress import ConsoleFilter, ConsoleFormatter

    tty = sys.stderr.isatty()
    console = logging.StreamHandler(sys.stderr)
    # on a terminal the progress line is redrawn in place; its records skip the console (not the file)
    console.setFormatter(ConsoleFormatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S", tty))
    console.addFilter(ConsoleFilter(tty))
    root.addHandler(console)
    if settings is not None:
        logs = settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        file = logging.handlers.RotatingFileHandler(
            logs / "kobo-etl.log", maxBytes=5_000_000, backupCount=5, encoding="utf-8"
        )
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(file)
