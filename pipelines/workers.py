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
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain

from connectors import SubmissionPage
from transforms.page import PageTransform, TransformedPage, cyclic_gc_paused, init_worker, transform_body

#: With `sync.transform_workers` unset, a sync uses workers from this many submissions on (starting them
#: costs about a second; in-process, 10 000 submissions take about 2 s of privacy and flattening).
AUTO_MIN_SUBMISSIONS = 10_000
#: ... on a 2-core machine only from this many: its one worker shares the cores with the load and the
#: fetching, and gained nothing below (10 000 and 20 000: slower; 50 000: 3-17 % faster; bench/README.md)
AUTO_MIN_SUBMISSIONS_2_CORES = 50_000
#: ... one per core but one, and at most this many (each holds a couple of pages and their tables).
AUTO_MAX_WORKERS = 4


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
    # one core stays with the sync itself (fetching, and DuckDB's load of the pages that came back)
    least = AUTO_MIN_SUBMISSIONS if cores >= 3 else AUTO_MIN_SUBMISSIONS_2_CORES
    if cores < 2 or expected_submissions < least:
        return 0
    return min(cores - 1, AUTO_MAX_WORKERS)


def transform_pages(
    pages: Iterable[SubmissionPage], transform: PageTransform, workers: int | None = None
) -> Iterator[tuple[SubmissionPage, TransformedPage | None]]:
    """Transform pages in order; yields (page, result), result None for an empty page.

    `workers`: 0 = in this process; N = N worker processes; None = decide from the first page's `count`
    (`worker_count`). Errors raised while transforming a page (e.g. `PrivacyError`) are raised here, for
    that page, after every earlier page was yielded.
    """
    stream = iter(pages)
    first = next(stream, None)
    if first is None:
        return
    n = worker_count(workers, first.count)
    if n == 0:
        for page in chain([first], stream):
            if not page.size:
                yield page, None
                continue
            with cyclic_gc_paused():  # parsing the rows allocates as much as transforming them
                done = transform(page.parse_results())
            yield page, done
        return
    # spawn, not fork: the parent has fetch threads and DuckDB's threads, which fork does not copy safely
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=context, initializer=init_worker, initargs=(transform,)) as pool:
        pending: deque[tuple[SubmissionPage, Future[TransformedPage] | None]] = deque()
        try:
            for page in chain([first], stream):
                job = _submit(pool, transform, page)
                pending.append((page, job))
                # a window of 2 pages per worker keeps them busy and bounds the pages held in memory
                while len(pending) > 2 * n:
                    yield _done(*pending.popleft())
            while pending:
                yield _done(*pending.popleft())
        finally:
            for _, job in pending:
                if job is not None:
                    job.cancel()


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
