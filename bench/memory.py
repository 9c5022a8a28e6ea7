"""Where the memory of a sync goes: RSS after every page, and the peak of each stage sampled every few ms.

    .venv/bin/python bench/memory.py --submissions 100000 [--checks] [--concurrency K] [--sample-ms 15]

Runs one real sync (as bench/run.py does, server in its own process) and measures two things:
- after each page's `upsert_batch`: the process RSS, the Python heap (`sys.getallocatedblocks`, a cheap
  proxy; tracemalloc is too slow here) and DuckDB's own accounting (`duckdb_memory()`). If RSS grows with
  the pages while the Python heap stays flat, the growth is DuckDB's, not a leak in our code;
- a background thread reads VmRSS every `--sample-ms` and keeps the highest value seen in each stage the
  main thread is in (privacy, flatten, the inserts and the commit inside `upsert_batch`, the checks, …).
  RSS after each page misses a spike that a stage frees before it returns; this finds it.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run import ServerProcess, descendants, prepare, pss_mb, rss_mb, sync_kwargs  # noqa: E402

IDLE = "fetch wait / between stages"


def duckdb_mb(con: Any) -> float:
    row = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()[0]
    return (row[0] or 0) / 1e6


def vm_rss_mb(pid: str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children_pss_mb(exclude: int | None) -> float:
    """Summed proportional set size of the processes the sync started except `exclude` (the demo server):
    the forkserver, the transform workers it forks and the resource tracker."""
    total = 0.0
    for pid in descendants(exclude):
        try:
            total += pss_mb(pid)
        except (OSError, StopIteration, ValueError, IndexError):
            continue
    return total


class RssSampler:
    """VmRSS every `interval_s` from a daemon thread, with the stage the main thread is in at that moment."""

    def __init__(self, interval_s: float, exclude_pid: int | None = None) -> None:
        self.interval_s = interval_s
        self.exclude_pid = exclude_pid
        self.workers_mb = 0.0  # the transform workers' summed PSS at the last look
        self.with_workers_peak = 0.0  # the highest RSS of this process plus its workers
        self.stack = [IDLE]
        self.page = 0
        self.peaks: dict[str, tuple[float, int, float]] = {}  # stage → (peak MB, at page, DuckDB MB then)
        self.seconds: dict[str, float] = {}
        self.top: tuple[float, str, int] = (0.0, IDLE, 0)
        self.cursor: Any = None  # a cursor on the sync's connection, once the first page is loaded
        self.duckdb_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval_s):
            rss, stage, page = vm_rss_mb(), self.stack[-1], self.page
            n += 1
            if n % 35 == 1:  # ≈ 0.5 s: the kernel walks each worker's page tables for its PSS (≈ 3 ms each)
                self.workers_mb = children_pss_mb(self.exclude_pid)
            if n % 5 == 0:
                try:  # DuckDB's own accounting, from its own cursor (closed with the sync's connection)
                    self.duckdb_mb = duckdb_mb(self.cursor) if self.cursor is not None else 0.0
                except Exception:  # noqa: BLE001 — a sample lost at the end of the run
                    self.cursor = None
            self.with_workers_peak = max(self.with_workers_peak, rss + self.workers_mb)
            if rss > self.peaks.get(stage, (0.0, 0, 0.0))[0]:
                self.peaks[stage] = (rss, page, self.duckdb_mb)
            if rss > self.top[0]:
                self.top = (rss, stage, page)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.stack.append(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.stack.pop()

    def wrap(self, module: Any, name: str, stage: str) -> None:
        original = getattr(module, name)

        @functools.wraps(original)
        def staged(*args: Any, **kwargs: Any) -> Any:
            with self.stage(stage):
                return original(*args, **kwargs)

        setattr(module, name, staged)

    def wrap_commit(self, module: Any, name: str, stage: str) -> None:
        """Tag the exit of a transaction context manager (where DuckDB commits) with `stage`."""
        original: Callable[..., Any] = getattr(module, name)
        sampler = self

        @contextmanager
        def staged(*args: Any, **kwargs: Any) -> Iterator[None]:
            cm = original(*args, **kwargs)
            cm.__enter__()
            try:
                yield
            except BaseException as exc:
                if not cm.__exit__(type(exc), exc, exc.__traceback__):
                    raise
            else:
                with sampler.stage(stage):
                    cm.__exit__(None, None, None)

        setattr(module, name, staged)


def install(sampler: RssSampler) -> None:
    import pipelines.checks as checks
    import pipelines.run as run
    import pipelines.sync as sync
    import transforms.page as page
    import warehouse.load as load

    # privacy and flattening: here when they run in this process; in transform worker processes (big
    # syncs, pipelines/workers.py) this process only waits for them, under IDLE, and "workers" counts them
    sampler.wrap(page, "apply_policy", "privacy")
    sampler.wrap(page, "to_tables", "flatten/cast")
    sampler.wrap(page, "with_attachment_rows", "flatten/cast")
    sampler.wrap(sync, "check_batch_structure", "structure check")
    sampler.wrap(sync, "upsert_batch", "load: other")
    sampler.wrap(load, "_insert", "load: insert")
    sampler.wrap(load, "_delete_old_rows", "load: delete")
    sampler.wrap_commit(load, "_batch_transaction", "load: commit")
    sampler.wrap_commit(sync, "load_session", "load: last commit")
    sampler.wrap(sync, "count_submissions", "counts")
    sampler.wrap(sync, "check_form", "validation: other")
    sampler.wrap(checks, "validate_table", "validation: GX")
    sampler.wrap(checks, "failed_rows", "validation: failed rows")
    sampler.wrap(checks, "run_hfc", "validation: HFC")
    sampler.wrap(checks, "disclosure_risk", "validation: risk")
    sampler.wrap(checks, "write_dq_run", "validation: write results")
    sampler.wrap(checks, "flag_rows", "validation: write results")
    sampler.wrap(checks, "compute_indicators", "outputs: indicators")
    sampler.wrap(checks, "publish", "outputs: exports")
    sampler.wrap(checks, "write_report", "outputs: report")
    sampler.wrap(run, "publish_outputs", "outputs: other")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--submissions", type=int, default=100_000)
    p.add_argument("--checks", action="store_true")
    p.add_argument("--every", type=int, default=10, help="print every k-th page")
    p.add_argument("--concurrency", type=int, default=3, help="the form's sync.concurrency")
    p.add_argument("--sample-ms", type=float, default=15, help="RSS sampling interval of the stage peaks")
    args = p.parse_args()

    import pipelines.run as run
    import pipelines.sync as sync

    server = ServerProcess(args.submissions)
    sampler = RssSampler(args.sample_ms / 1000, exclude_pid=server._proc.pid)
    install(sampler)
    samples: list[tuple[int, float, float, int]] = []
    original = sync.upsert_batch

    @functools.wraps(original)
    def sampled(con: Any, *a: Any, **kw: Any) -> Any:
        out = original(con, *a, **kw)
        samples.append((len(samples) + 1, rss_mb()[0], duckdb_mb(con), sys.getallocatedblocks()))
        sampler.page = len(samples)
        if sampler.cursor is None:
            sampler.cursor = con.cursor()
        return out

    sync.upsert_batch = sampled
    work = Path(tempfile.mkdtemp(prefix="kobo-bench-mem-"))
    try:
        settings = prepare(server, work, args.concurrency)
        sampler.start()
        t0 = time.perf_counter()
        run.run_sync(settings, **sync_kwargs(run.run_sync, args.checks))
        wall = time.perf_counter() - t0
        sampler.stop()
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'page':>5} {'RSS MB':>8} {'DuckDB MB':>10} {'py blocks':>10}")
    for i, (page, rss, ddb, blocks) in enumerate(samples):
        if i % args.every == 0 or i == len(samples) - 1:
            print(f"{page:5d} {rss:8.0f} {ddb:10.0f} {blocks:10d}")
    print(f"\npeak RSS per stage (sampled every {args.sample_ms:g} ms; page = pages loaded when it happened)")
    print(f"{'stage':<30} {'peak MB':>8} {'DuckDB MB':>10} {'at page':>8} {'s (incl. nested)':>16}")
    for stage, (mb, page, ddb) in sorted(sampler.peaks.items(), key=lambda kv: -kv[1][0]):
        print(f"{stage:<30} {mb:8.0f} {ddb:10.0f} {page:8d} {sampler.seconds.get(stage, 0.0):16.2f}")
    mb, stage, page = sampler.top
    print(f"highest sample {mb:.0f} MB in '{stage}' at page {page}; "
          f"peak RSS (VmHWM) {rss_mb()[1]:.0f} MB, wall {wall:.1f} s")
    print(f"with the transform workers: peak {sampler.with_workers_peak:.0f} MB (sampled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
