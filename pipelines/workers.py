"""Transform worker processes: the privacy policy and flattening of a big sync run beside the load.

Turning JSON into Python objects and walking them is what a sync spends its CPU on (performance notes,
lesson 1), and one process cannot spread that over cores (the GIL). So when a sync has many pages, each
page's response body goes to a small pool of worker processes, which parse it, apply the privacy policy
and flatten it into Arrow tables; the sync loads those tables in `_id` order as they come back, so the
watermark stays correct. Small syncs stay in-process: starting the workers costs about a second.
See docs/decisions/009-transform-workers.md.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain
from types import ModuleType

from connectors import SubmissionPage
from transforms.page import PageTransform, TransformedPage, cyclic_gc_paused, init_worker, transform_body

#: With `sync.transform_workers` unset, a sync uses workers from this many submissions on (starting them
#: costs about a second; in-process, 10 000 submissions take about 2 s of privacy and flattening).
AUTO_MIN_SUBMISSIONS = 10_000
#: ... on a 2-core machine only from this many: its workers share the cores with the load and the
#: fetching, and gained nothing below (20 000: 2.3 against 2.4 s in process; bench/README.md)
AUTO_MIN_SUBMISSIONS_2_CORES = 50_000
#: ... one per core but one, at least 2 (on 2 cores the sync's own work, fetching and loading, leaves
#: most of a core idle: 6.9-7.3 s against 9.2-11.3 s with one worker at 100 000), at most this many
#: (each holds a couple of pages and their tables).
AUTO_MAX_WORKERS = 4
#: Response bodies that may wait for a worker beyond its 2 pages, while the caller loads what it holds
#: (a demo page is ≈ 2.4 MB; a very wide form's page can be tens of MB, so pages alone are no bound).
AHEAD_BYTES = 64 * 2**20


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(setting: int | None, expected_submissions: int, cores: int | None = None) -> int:
    """Worker processes for a sync of about `expected_submissions`: the form's setting, else by size and
    `cores` (default: the cores this process may use)."""
    if setting is not None:
        return setting
    cores = usable_cores() if cores is None else cores
    least = AUTO_MIN_SUBMISSIONS if cores >= 3 else AUTO_MIN_SUBMISSIONS_2_CORES
    if cores < 2 or expected_submissions < least:
        return 0
    return min(max(cores - 1, 2), AUTO_MAX_WORKERS)


def transform_pages(
    pages: Iterable[SubmissionPage],
    transform: PageTransform,
    workers: int | None = None,
    ahead: int = 0,
) -> Iterator[tuple[SubmissionPage, TransformedPage | None]]:
    """Transform pages in order; yields (page, result), result None for an empty page.

    `workers`: 0 = in this process; N = N worker processes; None = decide from the first page's `count`
    (`worker_count`). `ahead`: pages the caller holds before it asks for the next ones (its load group);
    so many more are handed to the workers (within `AHEAD_BYTES`), which then keep working while the
    caller loads. Errors raised while transforming a page (e.g. `PrivacyError`) are raised here, for that
    page, after every earlier page was yielded.
    """
    stream = iter(pages)
    first = next(stream, None)
    if first is None:
        return
    n = worker_count(workers, first.count)
    if n == 0:
        for page in chain([first], stream):
            yield page, _transform_here(transform, page)
        return
    with ProcessPoolExecutor(n, mp_context=_start_method(), initializer=init_worker,
                             initargs=(transform,)) as pool:
        pending: deque[tuple[SubmissionPage, Future[TransformedPage] | None]] = deque()
        waiting_bytes = 0  # of the pending pages
        try:
            for page in chain([first], stream):
                job = _submit(pool, transform, page)
                pending.append((page, job))
                waiting_bytes += page.nbytes
                # 2 pages per worker keep them busy; the caller's load group more keeps them busy while it
                # loads (it asks for no page meanwhile); bytes bound what is held in memory
                while len(pending) > 2 * n and (len(pending) > 2 * n + ahead or waiting_bytes > AHEAD_BYTES):
                    done = pending.popleft()
                    waiting_bytes -= done[0].nbytes
                    yield _done(*done)
            while pending:
                yield _done(*pending.popleft())
        finally:
            for _, job in pending:
                if job is not None:
                    job.cancel()


def start_early(setting: int | None, expected_submissions: int) -> None:
    """Start the process the workers are forked from now, for a download that will use them (`worker_count`):
    its imports (≈ 0.5 s) then overlap the form's setup instead of delaying the first page."""
    if worker_count(setting, expected_submissions) == 0:
        return
    if _start_method().get_start_method() == "forkserver":
        multiprocessing.forkserver.ensure_running()


def _start_method() -> multiprocessing.context.BaseContext:
    """Not fork: the parent has fetch threads and DuckDB's threads, which fork does not copy safely. The
    forkserver (Linux, macOS) imports the transforms once, in a process started clean, and forks each worker
    from it; spawn (Windows) imports them again in every worker."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(forkserver_preload(sys.modules["__main__"]))
    return context


def forkserver_preload(main: ModuleType) -> list[str]:
    """What the forkserver imports once for all workers: the transforms, and the program's main module,
    which multiprocessing runs again in every worker (for a flow run under `kobo-etl serve` that is
    `python -m prefect.engine`, ≈ 1 s of imports each, then a re-run of a module whose imports are loaded).
    A main run by path (`kobo-etl`, a script) is what the forkserver's own `__main__` entry preloads; a
    package's `__main__` (`python -m pytest`) is never re-run by multiprocessing, so it is not imported."""
    name = getattr(getattr(main, "__spec__", None), "name", None)
    by_name = [name] if name and name != "__main__" and not name.endswith(".__main__") else []
    return ["__main__", *by_name, "transforms.page"]


def _transform_here(transform: PageTransform, page: SubmissionPage) -> TransformedPage | None:
    if not page.size:
        return None
    if page.raw:
        return transform.body(page.raw)
    with cyclic_gc_paused():  # parsing the rows allocates as much as transforming them
        return transform(page.parse_results())


def _submit(
    pool: ProcessPoolExecutor, transform: PageTransform, page: SubmissionPage
) -> Future[TransformedPage] | None:
    if not page.size:
        return None
    if page.raw:
        # the body crosses the pipe as one bytes object; parsing it again there is cheaper than
        # pickling the parsed dicts here
        return pool.submit(transform_body, page.raw)
    return pool.submit(transform, page.results)


def _done(
    page: SubmissionPage, job: Future[TransformedPage] | None
) -> tuple[SubmissionPage, TransformedPage | None]:
    return page, job.result() if job is not None else None
