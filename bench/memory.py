"""Where the memory of a sync goes: RSS after every page, Python heap, DuckDB's buffer pool.

    .venv/bin/python bench/memory.py --submissions 100000 [--checks] [--concurrency K]

Runs one real sync (as bench/run.py does, server in its own process) and samples, after each page's
`upsert_batch`, the process RSS, the Python heap (tracemalloc is too slow here; `sys.getallocatedblocks`
is a cheap proxy) and DuckDB's own accounting (`duckdb_memory()`). If RSS grows with the pages while the
Python heap stays flat, the growth is DuckDB's buffer pool (cached table blocks), not a leak in our code.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run import ServerProcess, prepare, rss_mb, sync_kwargs  # noqa: E402


def duckdb_mb(con: Any) -> float:
    row = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
    return (row[0] or 0) / 1e6


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--submissions", type=int, default=100_000)
    p.add_argument("--checks", action="store_true")
    p.add_argument("--every", type=int, default=10, help="print every k-th page")
    p.add_argument("--concurrency", type=int, default=3, help="the form's sync.concurrency")
    args = p.parse_args()

    import pipelines.run as run
    import pipelines.sync as sync

    samples: list[tuple[int, float, float, int]] = []
    original = sync.upsert_batch

    @functools.wraps(original)
    def sampled(con: Any, *a: Any, **kw: Any) -> Any:
        out = original(con, *a, **kw)
        samples.append((len(samples) + 1, rss_mb()[0], duckdb_mb(con), sys.getallocatedblocks()))
        return out

    sync.upsert_batch = sampled
    server = ServerProcess(args.submissions)
    work = Path(tempfile.mkdtemp(prefix="kobo-bench-mem-"))
    try:
        settings = prepare(server, work, args.concurrency)
        t0 = time.perf_counter()
        run.run_sync(settings, **sync_kwargs(run.run_sync, args.checks))
        wall = time.perf_counter() - t0
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'page':>5} {'RSS MB':>8} {'DuckDB MB':>10} {'py blocks':>10}")
    for i, (page, rss, ddb, blocks) in enumerate(samples):
        if i % args.every == 0 or i == len(samples) - 1:
            print(f"{page:5d} {rss:8.0f} {ddb:10.0f} {blocks:10d}")
    print(f"peak RSS {rss_mb()[1]:.0f} MB, wall {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
