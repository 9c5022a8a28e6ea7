"""Shared fixtures: the project's own KoBo-compatible demo server on a loopback port; the `kobo_etl`
logger as each test found it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from connectors.demo_server import DemoKoboServer


@pytest.fixture(scope="session")
def demo_server() -> Iterator[DemoKoboServer]:
    """One demo server for the whole session: 1 500 households, seed 7, recorded fixtures included.

    Do not mutate it (add/edit/delete) or leave faults set; use `fresh_server` for that.
    """
    with DemoKoboServer(households=1500, seed=7, token="demo-token", include_fixtures=True) as srv:
        yield srv


@pytest.fixture
def fresh_server() -> Iterator[DemoKoboServer]:
    """A small private demo server (120 households, no recorded fixtures) a test may mutate freely."""
    with DemoKoboServer(households=120, seed=11, token="fresh-token", include_fixtures=False) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _kobo_etl_logger_restored() -> Iterator[None]:
    """Undo what a test's `setup_logging` (the CLI, run in-process) did to the `kobo_etl` logger: it stops
    propagation, so a later test's `caplog` would see none of our records, and its file handler would stay
    open on that test's temporary folder."""
    logger = logging.getLogger("kobo_etl")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            handler.close()
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
