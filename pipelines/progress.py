"""Progress of a long sync: pages, submissions, rate and ETA from the server's count.

On a terminal (stderr is a TTY) one line is redrawn in place with a carriage return; otherwise (cron,
a Prefect worker, a file) each page gives one plain log line. Counts only — never a submission value.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from connectors import SubmissionPage

log = logging.getLogger("kobo_etl.progress")

#: Log records with this attribute set to False skip the console handler (the TTY line shows them already).
CONSOLE_ATTR = "console"
CLEAR_LINE = "\r\x1b[K"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class SyncProgress:
    """Callable per loaded page of one form's sync (`sync_form(..., progress=SyncProgress(slug))`).

    Args:
        form: the form slug shown on the line.
        stream: where the terminal line goes (default stderr).
        tty: force terminal (True) or plain-line (False) mode; default `stream.isatty()`.
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        form: str,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.form = form
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(tty if tty is not None else getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        self.started = clock()
        self.now = self.started  # read once per page, so rate and ETA agree
        self.pages = 0
        self.submissions = 0
        self.remaining: int | None = None
        self._drawn = False

    @property
    def total(self) -> int | None:
        """Submissions expected in this sync: loaded so far plus what the server still reports."""
        return None if self.remaining is None else self.submissions + self.remaining

    def rate(self) -> float:
        elapsed = self.now - self.started
        return self.submissions / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        rate = self.rate()
        if self.remaining is None or rate <= 0:
            return None
        return self.remaining / rate

    def line(self) -> str:
        total = f"/{self.total}" if self.total is not None else ""
        eta = self.eta_s()
        parts = [
            f"{self.form}: {self.submissions}{total} submissions",
            f"{self.pages} page{'s' if self.pages != 1 else ''}",
            f"{self.rate():.0f}/s",
        ]
        if self.remaining == 0:
            parts.append("done")
        elif eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        return ", ".join(parts)

    def __call__(self, page: SubmissionPage) -> None:
        """Record one loaded page; `page.count` is what the server has from this page on."""
        self.now = self.clock()
        self.pages += 1
        self.submissions += page.size
        if page.count is not None:
            self.remaining = max(int(page.count) - page.size, 0)
        text = self.line()
        if self.tty:
            self.stream.write(CLEAR_LINE + text)
            self.stream.flush()
            self._drawn = True
            log.info(text, extra={CONSOLE_ATTR: False})  # still in the log file
        else:
            log.info(text)

    def close(self) -> None:
        """End the terminal line so the next output starts on its own line."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class ConsoleFilter(logging.Filter):
    """Drops records marked `console=False`; on a TTY clears a progress line before a log line."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, CONSOLE_ATTR, True) is not False


class ConsoleFormatter(logging.Formatter):
    """Prefixes a line clear on a TTY so log lines never run into a half-drawn progress line."""

    def __init__(self, fmt: str, datefmt: str, tty: bool) -> None:
        super().__init__(fmt, datefmt)
        self.prefix = CLEAR_LINE if tty else ""

    def format(self, record: logging.LogRecord) -> str:
        return self.prefix + super().format(record)
