"""Shared fixtures: the project's own KoBo-compatible demo server on a loopback port."""

from __future__ import annotations

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
