"""Transform worker processes (pipelines/workers.py): the same warehouse as in-process, errors surface."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pyarrow as pa
import pytest
from sync_helpers import (
    SLUG,
    assert_same_form,
    dump_form,
    fast_client,
    sync_once,
    sync_settings,
)

from config import DEMO_PSEUDONYMISATION_KEY, load_form_configs
from connectors.demo_server import DemoKoboServer
from pipelines import workers
from pipelines.sync import load_form_context
from pipelines.workers import transform_pages, worker_count
from transforms.errors import PrivacyError
from transforms.page import PageTransform


def _context(server: DemoKoboServer, root: Path):  # noqa: ANN202 - test helper
    settings = sync_settings(server, root, page_size=25)
    (form,) = load_form_configs(settings.forms_dir, [SLUG])
    client = fast_client(server)
    return load_form_context(client, form, settings.require_key(), root / "cache"), client


def test_workers_give_the_same_tables_and_quarantine_as_in_process(fresh_server: DemoKoboServer,
                                                                   tmp_path: Path) -> None:
    ctx, client = _context(fresh_server, tmp_path / "a")
    pages = list(client.iter_submission_pages(fresh_server.household_uid, page_size=25))
    assert len(pages) == 5 and all(p.raw for p in pages)
    here = list(transform_pages(pages, ctx.transform, workers=0))
    # a page waiting in a load group keeps its bytes, not its rows as Python objects
    assert all(p.rows is None for p in pages)
    seen_children: list[int] = []
    there = []
    for item in transform_pages(pages, ctx.transform, workers=2):
        seen_children.append(len(multiprocessing.active_children()))
        there.append(item)
    assert max(seen_children) >= 2  # the pages really went to worker processes
    assert [p.last_id for p, _ in there] == [p.last_id for p in pages]  # `_id` order kept
    for (_, a), (_, b) in zip(here, there, strict=True):
        assert a is not None and b is not None
        assert a.batch.submission_ids == b.batch.submission_ids
        assert sorted(a.batch.tables) == sorted(b.batch.tables)
        for name, table in a.batch.tables.items():
            assert table.equals(b.batch.tables[name]), name
        assert a.batch.quarantine == b.batch.quarantine
        assert [w.xpath for w in a.withheld] == [w.xpath for w in b.withheld]
    # the demo data has planted problems: the comparison covered real quarantine rows
    assert sum(len(t.batch.quarantine) for _, t in here) > 0
    assert sum(t.batch.tables["submissions"].num_rows for _, t in there) == 120


def test_a_sync_with_workers_stores_what_an_in_process_sync_stores(fresh_server: DemoKoboServer,
                                                                    tmp_path: Path) -> None:
    dumps = []
    for count in (0, 2):
        root = tmp_path / f"w{count}"
        settings = sync_settings(fresh_server, root, page_size=25)
        path = settings.forms_dir / f"{SLUG}.yaml"
        path.write_text(path.read_text(encoding="utf-8").replace(
            "  concurrency:", f"  transform_workers: {count}\n  concurrency:"), encoding="utf-8")
        (form,) = load_form_configs(settings.forms_dir, [SLUG])
        assert form.sync.transform_workers == count
        summary = sync_once(settings)
        assert summary.inserted == 120
        dumps.append(dump_form(settings.warehouse_path))
    assert_same_form(dumps[1], dumps[0])
    assert dumps[1]["watermark"] == dumps[0]["watermark"]


def test_an_error_in_a_worker_is_raised_for_its_page(fresh_server: DemoKoboServer, tmp_path: Path) -> None:
    ctx, client = _context(fresh_server, tmp_path)
    short_key = PageTransform(ctx.raw_schema, ctx.schema, ctx.policy, b"too short")
    pages = list(client.iter_submission_pages(fresh_server.household_uid, page_size=25))
    with pytest.raises(PrivacyError, match="32 bytes"):
        list(transform_pages(pages, short_key, workers=2))
    assert "too short" not in repr(short_key)  # the key never shows in a repr (logs, tracebacks)
    assert DEMO_PSEUDONYMISATION_KEY not in repr(ctx)


def test_worker_count_follows_the_setting_then_the_size() -> None:
    assert worker_count(0, 500) == 0
    assert worker_count(3, 1) == 3
    assert worker_count(None, 2_000) == 0  # small syncs stay in-process: starting workers costs ~1 s
    assert worker_count(None, 500_000) in (0, 1, 2, 3, 4)
    # one core stays with the sync, but on 2 cores it is mostly idle: two workers, for big syncs only
    assert worker_count(None, 500_000, cores=1) == 0
    assert worker_count(None, 49_999, cores=2) == 0
    assert worker_count(None, 50_000, cores=2) == 2
    assert worker_count(None, 50_000, cores=3) == 2
    assert worker_count(None, 9_999, cores=4) == 0
    assert worker_count(None, 10_000, cores=4) == 3
    assert worker_count(None, 10_000, cores=16) == 4


def test_tables_cross_the_pipe_intact() -> None:
    table = pa.table({"x": pa.array([1, None, 3], pa.int64())})
    import pickle
    assert pickle.loads(pickle.dumps(table)).equals(table)


def _pulled_at_first_result(pages: list, transform: PageTransform, **kwargs: object) -> int:
    pulled = 0

    def source():  # noqa: ANN202 - test helper
        nonlocal pulled
        for page in pages:
            pulled += 1
            yield page

    results = transform_pages(source(), transform, **kwargs)
    next(results)
    at_first = pulled
    results.close()
    return at_first


def test_workers_take_the_callers_load_group_ahead_within_a_byte_budget(
    fresh_server: DemoKoboServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, client = _context(fresh_server, tmp_path)
    pages = list(client.iter_submission_pages(fresh_server.household_uid, page_size=25))
    assert len(pages) == 5
    # 2 pages for the one worker, then the caller's group of 2 more: the 5th page is pulled before the
    # first result is handed over, so the worker has work while the caller loads
    assert _pulled_at_first_result(pages, ctx.transform, workers=1) == 3
    assert _pulled_at_first_result(pages, ctx.transform, workers=1, ahead=2) == 5
    # bodies beyond the budget do not wait: back to 2 pages per worker
    monkeypatch.setattr(workers, "AHEAD_BYTES", pages[0].nbytes)
    assert _pulled_at_first_result(pages, ctx.transform, workers=1, ahead=2) == 3


def test_workers_start_from_the_forkserver_where_there_is_one() -> None:
    method = workers._start_method().get_start_method()
    if "forkserver" in multiprocessing.get_all_start_methods():
        # forked from a clean process that imported the transforms once; never fork the parent itself
        assert method == "forkserver"
    else:
        assert method == "spawn"


def test_the_forkserver_imports_the_programs_main_module_once_for_all_workers() -> None:
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    def main_named(name: str | None) -> ModuleType:
        module = ModuleType("__main__")
        module.__spec__ = ModuleSpec(name, None) if name else None
        return module

    # a flow run under `kobo-etl serve` is `python -m prefect.engine`: every worker would import it again
    assert workers.forkserver_preload(main_named("prefect.engine")) == [
        "__main__", "prefect.engine", "transforms.page"]
    # a package's __main__ is never re-run in a worker (and importing pytest's would run the tests)
    assert workers.forkserver_preload(main_named("pytest.__main__")) == ["__main__", "transforms.page"]
    # a script or the `kobo-etl` command: the forkserver's own "__main__" entry imports it by path
    assert workers.forkserver_preload(main_named(None)) == ["__main__", "transforms.page"]


def test_the_forkserver_starts_early_only_for_a_download_that_will_use_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import multiprocessing.forkserver

    from pipelines.sync import asset_submission_count

    started: list[bool] = []
    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", lambda: started.append(True))
    workers.start_early(None, 2_000)  # a small form: no background process competing with its sync
    workers.start_early(0, 1_000_000)  # in-process by the form's setting
    assert started == []
    workers.start_early(None, 1_000_000)
    will_fork = worker_count(None, 1_000_000) > 0 and "forkserver" in multiprocessing.get_all_start_methods()
    assert started == ([True] if will_fork else [])
    # the count comes from the asset; KoBo sends None to an account that may not see it
    assert asset_submission_count({"deployment__submission_count": 120}) == 120
    assert asset_submission_count({"deployment__submission_count": None}) == 0
    assert asset_submission_count({}) == 0
