"""End-to-end benchmark of `kobo-etl sync` against the demo KoBo server, with the floor in the same run.

    .venv/bin/python bench/run.py --submissions 10000 [--latency-ms L] [--no-checks] [--concurrency K]
                                  [--incremental] [--startup] [--prerender] [--dlt] [--repeat R]
                                  [--json results.json]

The demo server runs in a separate process (its own GIL: generating pages must not slow the sync down),
with N generated household submissions. The sync is the real `pipelines.run.run_sync` into a fresh data
folder; stages are timed from outside by wrapping the module-level functions `pipelines/sync.py` and
`pipelines/checks.py` call (in this process only). The floor is fetching the same pages (keyset on `_id`,
1 000 per page, plain `requests`) and reading them with DuckDB's JSON reader, nothing else. `--dlt` also
loads the same server's submissions with dlt (bench/dlt_baseline.py, in its own venv), the generic loader
issue #9 compares against. Figures are for reading by people: benchmarks are never timed assertions in tests
(see bench/README.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEMO_KEY = "DEMO-KEY-not-secret-do-not-use-for-real-data-0123456789"
# dlt is not a project dependency: the baseline runs in a venv of its own, created on first use (gitignored)
DLT_VENV = REPO / "bench" / ".dlt-venv"
DLT_PACKAGES = ("dlt[duckdb]", "pyarrow")


# ------------------------------------------------------------------------------------ the server process


def _server_main(conn: Any, households: int, seed: int, members: int | None) -> None:
    """Run DemoKoboServer in this process and answer commands from the benchmark over a pipe."""
    from connectors.demo_server import DemoKoboServer

    times: list[float] = []

    class TimedServer(DemoKoboServer):
        def _record(self, entry: Any) -> None:  # keep when each request was answered, for start-up timing
            times.append(time.time())
            super()._record(entry)

    srv = TimedServer(households=households, seed=seed, include_fixtures=False, members=members)
    srv.start()
    conn.send({"url": srv.url, "token": srv.token, "uid": srv.household_uid})
    while True:
        cmd, args = conn.recv()
        if cmd == "stop":
            srv.stop()
            conn.send(None)
            return
        if cmd == "faults":
            srv.set_faults(**args)
            conn.send(None)
        elif cmd == "prerender":  # encode every record once: pages are then joined bytes (seconds taken)
            t0 = time.perf_counter()
            srv.prerender()
            conn.send(time.perf_counter() - t0)
        elif cmd == "mark":  # position in the request log
            conn.send(len(srv.requests))
        elif cmd == "since":  # (requests, bytes, first request time) since a mark
            log = srv.requests[args:]
            kinds: dict[str, list[int]] = {}
            for e in log:
                kind = "asset"
                if e.path.endswith("/history/"):  # the project-history poll of incremental runs
                    kind = "history"
                elif "/data" in e.path:
                    q = e.query
                    kind = ("data: fields " + q["fields"] if "fields" in q else
                            "data: $in re-fetch" if "$in" in q.get("query", "") else "data: full records")
                elif "/versions" in e.path:
                    kind = "versions"
                k = kinds.setdefault(kind, [0, 0])
                k[0] += 1
                k[1] += e.nbytes
            first = times[args] if len(times) > args else None
            conn.send((len(log), sum(e.nbytes for e in log), first, kinds))
        elif cmd == "edit":  # edit a fraction of the submissions (new _uuid, same _id)
            coll = srv._assets[srv.household_uid].collection
            assert coll is not None  # the generated household form always has its collection
            n = max(1, int(coll.size * args))
            step = max(1, coll.size // n)
            ids = [coll._id_at(i) for i in range(0, coll.size, step)][:n]
            for _id in ids:
                srv.edit_submission(srv.household_uid, _id, {})
            conn.send(len(ids))
        else:
            conn.send(RuntimeError(f"unknown command {cmd}"))


class ServerProcess:
    """The demo server in a child process, driven over a pipe."""

    def __init__(self, households: int, seed: int = 7, members: int | None = None) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_server_main, args=(child, households, seed, members), daemon=True)
        self._proc.start()
        info = self._conn.recv()
        self.url, self.token, self.uid = info["url"], info["token"], info["uid"]
        self.pid = self._proc.pid

    def call(self, cmd: str, args: Any = None) -> Any:
        self._conn.send((cmd, args))
        return self._conn.recv()

    def since(self, mark: int) -> tuple[int, int, float | None]:
        n, nbytes, first, kinds = self.call("since", mark)
        self.last_kinds = kinds
        return n, nbytes, first

    def close(self) -> None:
        self.call("stop")
        self._proc.join(5)


# ------------------------------------------------------------------------------------ memory


def cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of this process (all its threads) or of process `pid`, so far."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset) of this process, in MB, from /proc."""
    cur = hwm = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return cur, hwm


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux: writing 5 to clear_refs), so peaks can be taken per phase."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def descendants(exclude: int | None) -> list[int]:
    """Every process this one started and their children, except `exclude` (the demo server) and its own: the
    transform workers are the forkserver's children, not this process's."""
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    parent[int(entry.name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: list[int] = []
    frontier = {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p != exclude}
        found += frontier
    return found


def pss_mb(pid: int) -> float:
    """Proportional set size of process `pid` in MB: each page it shares counted for its share only."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("Pss:")) / 1024


class WorkerRss(threading.Thread):
    """Samples the transform workers every 50 ms: every process this one started other than the demo server,
    with their own children (the workers are the forkserver's children, not this process's). `peak_mb` is the
    highest summed RSS seen (pages a forked worker shares with the forkserver count in both), `pss_mb` the
    highest summed PSS (each shared page split between its sharers), `with_main_mb` this process's RSS plus
    their PSS, and `cpu_s` their summed CPU seconds as last sampled."""

    def __init__(self, exclude_pid: int | None) -> None:
        super().__init__(daemon=True)
        self.exclude = exclude_pid
        self.peak_mb = 0.0
        self.pss_mb = 0.0
        self.with_main_mb = 0.0
        self._cpu: dict[int, float] = {}  # pid → CPU seconds when last seen (a worker's last sample stays)
        self._stop_event = threading.Event()
        # processes alive before the sync (an earlier sync's forkserver) count only what they use from now on
        self._cpu0 = {pid: self._cpu_of(pid) for pid in descendants(self.exclude)}

    @property
    def cpu_s(self) -> float:
        return sum(cpu - self._cpu0.get(pid, 0.0) for pid, cpu in self._cpu.items())

    @staticmethod
    def _cpu_of(pid: int) -> float:
        try:
            return cpu_s(pid)
        except (OSError, ValueError, IndexError):
            return 0.0

    def run(self) -> None:
        pss, n = 0.0, 0
        while not self._stop_event.wait(0.05):
            # PSS every 10th sample: the kernel walks each process's page tables for it (≈ 3 ms per 150 MB
            # worker), which at every sample would take ≈ 20 % of a core from the sync being measured
            n, rss, with_pss = n + 1, 0.0, n % 10 == 0  # the first sample included
            pss = 0.0 if with_pss else pss
            for pid in descendants(self.exclude):
                try:
                    with open(f"/proc/{pid}/status") as f:
                        rss += next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024
                    if with_pss:
                        pss += pss_mb(pid)
                    self._cpu[pid] = self._cpu_of(pid)
                except (OSError, StopIteration, ValueError, IndexError):
                    continue
            self.peak_mb = max(self.peak_mb, rss)
            self.pss_mb = max(self.pss_mb, pss)
            self.with_main_mb = max(self.with_main_mb, pss + rss_mb()[0])

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


# ------------------------------------------------------------------------------------ stage timing


class Stages:
    """Accumulated seconds per stage; wrappers installed on the modules sync.py and checks.py call into."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.peaks: dict[str, float] = {}
        self._saved: list[tuple[Any, str, Any]] = []

    def wrap(self, module: Any, name: str, stage: str) -> None:
        original = getattr(module, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t0

        self._saved.append((module, name, original))
        setattr(module, name, timed)

    def wrap_pages(self, client: Any) -> None:
        """Time the client's page iterators, only while the sync waits for the next page.

        `sync_form` and the sweep call `iter_submission_pages_concurrent` themselves (workers = the form's
        `sync.concurrency`, which `prepare` writes); its worker threads call back into
        `iter_submission_pages`, which must then not be timed again (a plain flag, not thread-local: the
        callers are those worker threads).
        """
        plain_pages = client.iter_submission_pages
        concurrent_pages = client.iter_submission_pages_concurrent
        local = argparse.Namespace(busy=False)
        stages = self

        def stage_of(kwargs: dict[str, Any]) -> str:
            plain = not any(kwargs.get(k) is not None for k in ("ids", "fields", "until_id"))
            return "fetch" if plain else "fetch (manifest/refetch)"

        def concurrent(uid: str, **kwargs: Any) -> Iterator[Any]:
            if local.busy:
                yield from concurrent_pages(uid, **kwargs)
                return
            local.busy = True
            try:
                yield from stages._timed_iter(concurrent_pages(uid, **kwargs), stage_of(kwargs))
            finally:
                local.busy = False

        def pages(uid: str, **kwargs: Any) -> Iterator[Any]:
            if local.busy:
                yield from plain_pages(uid, **kwargs)
                return
            yield from stages._timed_iter(plain_pages(uid, **kwargs), stage_of(kwargs))

        client.iter_submission_pages = pages
        client.iter_submission_pages_concurrent = concurrent

    def wrap_transform(self, sync: Any) -> None:
        """Time `transform_pages` in `sync`: the wait for each transformed page, minus the fetch inside it."""
        original = sync.transform_pages
        stages = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            it = original(*args, **kwargs)
            while True:
                t0 = time.perf_counter()
                fetched = sum(v for k, v in stages.seconds.items() if k.startswith("fetch"))
                inside = sum(v for k, v in stages.seconds.items() if k.endswith("(in-process)"))
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    waited = time.perf_counter() - t0
                    waited -= sum(v for k, v in stages.seconds.items() if k.startswith("fetch")) - fetched
                    waited -= sum(v for k, v in stages.seconds.items() if k.endswith("(in-process)")) - inside
                    stages.seconds["transform (wait for workers)"] += max(0.0, waited)
                yield item

        self._saved.append((sync, "transform_pages", original))
        sync.transform_pages = timed

    def _timed_iter(self, it: Iterator[Any], stage: str) -> Iterator[Any]:
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self.seconds[stage] += time.perf_counter() - t0
                return
            self.seconds[stage] += time.perf_counter() - t0
            yield item

    def restore(self) -> None:
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)
        self._saved.clear()


def install_stage_timers(stages: Stages) -> None:
    import pipelines.checks as checks
    import pipelines.run as run
    import pipelines.sync as sync
    import transforms.page as page

    stages.wrap(sync, "load_form_context", "setup (asset, versions, schema)")
    stages.wrap(sync, "ensure_tables", "setup (asset, versions, schema)")
    stages.wrap(sync, "write_labels", "setup (asset, versions, schema)")
    stages.wrap(sync, "create_label_views", "setup (asset, versions, schema)")
    stages.wrap(sync, "start_early", "setup (asset, versions, schema)")
    # privacy and flattening run in transform worker processes for big syncs (pipelines/workers.py), where
    # these timers do not reach: "transform (wait)" is then the time the load waited for a worker's page
    stages.wrap(page, "apply_policy", "privacy (in-process)")
    stages.wrap(page, "to_tables", "flatten/cast (in-process)")
    stages.wrap(page, "with_attachment_rows", "flatten/cast (in-process)")
    stages.wrap_transform(sync)
    stages.wrap(sync, "upsert_batch", "load")
    stages.wrap(sync, "delete_submissions", "load")
    stages.wrap(sync, "read_manifest", "sweep (compare manifest)")
    stages.wrap(sync, "count_submissions", "counts")
    # check_form: GX on the loaded rows, HFCs, disclosure risk; the rest of check_form is bookkeeping
    stages.wrap(checks, "build_suite", "validation: GX")
    stages.wrap(checks, "validate_table", "validation: GX")
    stages.wrap(checks, "failed_rows", "validation: GX")
    stages.wrap(checks, "run_hfc", "validation: HFC")
    stages.wrap(checks, "disclosure_risk", "validation: risk")
    stages.wrap(checks, "write_dq_run", "validation: write results")
    stages.wrap(checks, "flag_rows", "validation: write results")
    stages.wrap(sync, "check_form", "validation (total)")
    stages.wrap(checks, "compute_indicators", "indicators")
    stages.wrap(checks, "publish", "publish (exports)")
    stages.wrap(checks, "write_report", "report")
    stages.wrap(run, "publish_outputs", "outputs (total)")

    # peak memory per phase: reset the high-water mark around the checks and the outputs
    # (a part of a phase names the phase as `before`: its peak counts for the part and for the phase)
    def peak_around(module: Any, name: str, phase: str, before: str, part_of: str | None = None) -> None:
        original = getattr(module, name)

        def record(*keys: str | None) -> None:
            peak = rss_mb()[1]
            for key in keys:
                if key is not None:
                    stages.peaks[key] = max(stages.peaks.get(key, 0.0), peak)

        @functools.wraps(original)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            record(before)
            reset_peak()
            try:
                return original(*args, **kwargs)
            finally:
                record(phase, part_of)
                reset_peak()

        setattr(module, name, wrapped)
        stages._saved.append((module, name, original))

    peak_around(sync, "check_form", "validation", "fetch+load")
    # the stretch between the checks and the outputs (or the load and the outputs, without checks) has its own
    # key: filing it under "fetch+load" made a 500 000 run's load look 400 MB bigger than it was
    peak_around(run, "publish_outputs", "outputs", "before outputs")
    for name, part in (("compute_indicators", "indicators"), ("publish", "publish"),
                       ("write_report", "report")):
        peak_around(checks, name, f"outputs: {part}", "outputs", part_of="outputs")


# ------------------------------------------------------------------------------------ the sync


def prepare(
    server: ServerProcess, work: Path, concurrency: int = 3, transform_workers: int | None = None
) -> Any:
    """Settings for a fresh data folder, with only the demo household survey configured."""
    from config import load_settings
    from pipelines.demo import DEMO_FORM_CONFIG

    forms = work / "forms"
    forms.mkdir(parents=True, exist_ok=True)
    # the household survey's reviewed config as pipelines.demo.prepare_demo_forms writes it (no fixture forms)
    text = DEMO_FORM_CONFIG.read_text(encoding="utf-8").replace("{{ASSET_UID}}", server.uid)
    # the form's sync.concurrency decides how many pages are fetched at once
    if "page_size: 1000" not in text or "concurrency:" in text:
        raise SystemExit("config/demo/household_survey.yaml changed: cannot write sync.concurrency into it")
    sync = f"page_size: 1000\n  concurrency: {concurrency}"
    if transform_workers is not None:  # unset: the sync decides (pipelines/workers.py)
        sync += f"\n  transform_workers: {transform_workers}"
    text = text.replace("page_size: 1000", sync)
    (forms / "household_survey.yaml").write_text(text, encoding="utf-8")
    return load_settings(
        kobo_url=server.url,
        kobo_token=server.token,
        data_dir=work / "data",
        forms_dir=forms,
        indicators_file=REPO / "config" / "indicators.yaml",
        pseudonymisation_key=DEMO_KEY,
    )


def sync_kwargs(run_sync: Callable[..., Any], checks: bool) -> dict[str, Any]:
    """`run_sync` keywords for a benchmark: checks and outputs on or off, no progress bar, no alerts."""
    import inspect

    params = inspect.signature(run_sync).parameters
    wanted = {"outputs": checks, "checks": checks, "progress": False, "alerts": False}
    missing = [k for k in ("outputs", "checks") if k not in params]
    if missing:
        raise SystemExit(f"pipelines.run.run_sync has no {missing} parameter: the benchmark needs it")
    return {k: v for k, v in wanted.items() if k in params}


def run_one_sync(settings: Any, server: ServerProcess, *, checks: bool, concurrency: int) -> dict[str, Any]:
    """One `run_sync` with stage timers; returns seconds per stage, requests, bytes and peaks."""
    import pipelines.run as run

    stages = Stages()
    install_stage_timers(stages)
    client = run.make_client(settings)
    stages.wrap_pages(client)
    # `sync_form` reads the asset itself (to start the transform workers' forkserver before the rest)
    stages.wrap(client, "get_asset", "setup (asset, versions, schema)")
    kwargs = sync_kwargs(run.run_sync, checks)
    mark = server.call("mark")
    load_before = os.getloadavg()[0]
    reset_peak()
    workers_rss = WorkerRss(server.pid)
    workers_rss.start()
    cpu0, server_cpu0 = cpu_s(), cpu_s(server.pid)
    t0 = time.perf_counter()
    try:
        result = run.run_sync(settings, client=client, **kwargs)
    finally:
        stages.restore()
        workers_rss.stop()
    wall = time.perf_counter() - t0
    cpu = {"sync process": cpu_s() - cpu0, "transform workers": workers_rss.cpu_s,
           "demo server": cpu_s(server.pid) - server_cpu0}
    stages.peaks["sync (whole)"] = max([rss_mb()[1], *stages.peaks.values()])
    # transform workers are processes of their own: their memory counts too (sampled, so a lower bound)
    stages.peaks["transform workers (sum)"] = workers_rss.peak_mb
    stages.peaks["transform workers (PSS)"] = workers_rss.pss_mb
    stages.peaks["sync + workers"] = max(stages.peaks["sync (whole)"], workers_rss.with_main_mb)
    requests_n, nbytes, _ = server.since(mark)
    s = result.summaries[0]
    if result.errors or s.status == "failed":
        raise SystemExit(f"the sync failed: {result.errors or s.error}")
    return {
        "wall_s": wall,
        "cpu_s": cpu,  # both share the 2 cores: CPU-bound when their sum nears 2 × wall
        "stages": dict(stages.seconds),
        "peaks_mb": dict(stages.peaks),
        "requests": requests_n,
        "bytes": nbytes,
        "fetched": s.fetched,
        "inserted": s.inserted,
        "updated": s.updated,
        "warehouse_count": s.warehouse_count,
        "sync_form_s": s.duration_s,
        "by_request_kind": server.last_kinds,
        # other engineers run tests on this 2-core machine: the 1-minute load average before and after
        "loadavg_1m": (load_before, os.getloadavg()[0]),
    }


def warehouse_rows(settings: Any) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='household_survey' "
            "AND table_type='BASE TABLE' ORDER BY 1").fetchall()]
        return {n: _one(con, f'SELECT count(*) FROM household_survey."{n}"') for n in names}
    finally:
        con.close()


# ------------------------------------------------------------------------------------ the floor

_COUNT = re.compile(rb'"count":\s*(\d+)')
_RESULTS = b'"results":'


def _one(con: Any, sql: str) -> Any:
    """The single value of a one-row query."""
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _match(found: re.Match[bytes] | None) -> re.Match[bytes]:
    assert found is not None, "the page is not shaped as the demo server writes it"
    return found


def run_floor(server: ServerProcess, work: Path) -> dict[str, Any]:
    """Keyset pages of 1 000 with plain requests, the `results` arrays sliced out unparsed and written to
    disk, then one DuckDB `read_json` of all of them into a table. Nothing else (no typing, no privacy)."""
    import duckdb
    import requests

    pages_dir = work / "floor_pages"
    pages_dir.mkdir(parents=True, exist_ok=True)
    session = requests.Session()
    headers = {"Authorization": f"Token {server.token}", "Accept": "application/json"}
    url = f"{server.url}/api/v2/assets/{server.uid}/data/"
    mark = server.call("mark")
    reset_peak()
    cpu0 = cpu_s()
    t0 = time.perf_counter()
    high: int | None = None
    n_pages = 0
    while True:
        params: dict[str, Any] = {"format": "json", "limit": 1000, "start": 0, "sort": '{"_id":1}'}
        if high is not None:
            params["query"] = json.dumps({"_id": {"$gt": high}})
        # the body in one read, as the client reads it (`.content` reads 10 KiB pieces: ≈ 0.25 s more here)
        resp = session.get(url, params=params, headers=headers, timeout=60, stream=True)
        body = resp.raw.read(decode_content=True)
        count = int(_match(_COUNT.search(body, 0, 200)).group(1))
        cut = body.index(_RESULTS) + len(_RESULTS)
        results = body[cut:-1]  # DRF writes `results` last
        if results.strip() == b"[]":
            break
        (pages_dir / f"{n_pages:06d}.json").write_bytes(results)
        n_pages += 1
        # the last submission's `_id` is the last `"_id":` key in the page (repeats have no `_id`)
        pos = results.rindex(b'"_id":') + 6
        high = int(_match(re.match(rb"\s*(\d+)", results[pos:pos + 30])).group(1))
        if count <= 1000:
            break
    fetch_s = time.perf_counter() - t0
    con = duckdb.connect(str(work / "floor.duckdb"))
    t1 = time.perf_counter()
    sql = ("CREATE OR REPLACE TABLE raw AS SELECT * FROM read_json(?, format='array', "
           "maximum_object_size=67108864{})")
    fallback = False
    try:
        con.execute(sql.format(""), [str(pages_dir / "*.json")])
    except duckdb.InvalidInputException:
        # the type detected on the first pages' sample does not fit a later page (seen at 500 000): detect
        # each page on its own and unify; slower, so the floor is then an upper bound (reported)
        fallback = True
        con.execute(sql.format(", union_by_name=true"), [str(pages_dir / "*.json")])
    rows = _one(con, "SELECT count(*) FROM raw")
    con.close()
    read_s = time.perf_counter() - t1
    requests_n, nbytes, _ = server.since(mark)
    shutil.rmtree(pages_dir, ignore_errors=True)
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": cpu_s() - cpu0,  # this process: the fetching and DuckDB's threads (not the server's)
        "fetch_s": fetch_s,
        "read_s": read_s,
        "rows": rows,
        "requests": requests_n,
        "bytes": nbytes,
        "peak_mb": rss_mb()[1],
        "read_fallback_union_by_name": fallback,
        "loadavg_1m": os.getloadavg()[0],
    }


def run_fetch_only(server: ServerProcess, settings: Any, concurrency: int) -> dict[str, Any]:
    """Only the client's page iterator (rows not parsed, nothing processed): sequential or concurrent."""
    import pipelines.run as run

    client = run.make_client(settings)
    mark = server.call("mark")
    t0 = time.perf_counter()
    if concurrency > 1:
        it = client.iter_submission_pages_concurrent(server.uid, workers=concurrency)
    else:
        it = client.iter_submission_pages(server.uid)
    rows = sum(p.size for p in it)
    wall = time.perf_counter() - t0
    requests_n, nbytes, _ = server.since(mark)
    return {"wall_s": wall, "rows": rows, "requests": requests_n, "bytes": nbytes}


# ------------------------------------------------------------------------------------ the dlt baseline


def ensure_dlt_venv() -> Path:
    """The python of `bench/.dlt-venv` with dlt, DuckDB and pyarrow; the venv is created or completed here."""
    python = DLT_VENV / "bin" / "python"
    check = ("import importlib.util as u, sys; "
             "sys.exit(not all(u.find_spec(m) for m in ('dlt', 'duckdb', 'pyarrow')))")
    if python.exists() and subprocess.run([str(python), "-c", check]).returncode == 0:
        return python
    if not python.exists():
        print(f"dlt baseline: creating {DLT_VENV} ({sys.executable} -m venv)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DLT_VENV)], check=True)
    print(f"dlt baseline: pip install {' '.join(repr(p) for p in DLT_PACKAGES)} into {DLT_VENV}", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *DLT_PACKAGES], check=True)
    return python


def run_dlt(server: ServerProcess, work: Path, loader_file_format: str) -> dict[str, Any]:
    """bench/dlt_baseline.py in the dlt venv against the same server: its JSON, requests, bytes, CPU, load.

    On failure the result is `{"error": ...}`: the sync and the floor measured before it are still reported.
    """
    python = ensure_dlt_venv()
    out = work / f"dlt-{loader_file_format}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(python), str(REPO / "bench" / "dlt_baseline.py"), "--url", server.url, "--uid", server.uid,
           "--out", str(out), "--loader-file-format", loader_file_format]
    mark = server.call("mark")
    load_before = os.getloadavg()[0]
    # the subprocess's CPU: what finished children used, before and after (it is the only one that ends)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu0 = cpu_s(server.pid)
    t0 = time.perf_counter()
    # cwd = the output folder: dlt reads `.dlt/` config from the working directory, and must find none
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "KOBO_TOKEN": server.token})  # not on the command line
    process_s = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    dlt_cpu = (children.ru_utime + children.ru_stime) - (children0.ru_utime + children0.ru_stime)
    requests_n, nbytes, _ = server.since(mark)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}",
                "loadavg_1m": (load_before, os.getloadavg()[0])}
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update({
        "process_s": process_s,  # the whole subprocess: Python and dlt start-up included
        "requests": requests_n,
        "bytes": nbytes,
        "cpu_s": {
            "dlt process": dlt_cpu,
            "demo server": cpu_s(server.pid) - server_cpu0,
        },
        "loadavg_1m": (load_before, os.getloadavg()[0]),
    })
    return res


# ------------------------------------------------------------------------------------ start-up


def measure_startup(prefect: bool) -> dict[str, Any]:
    """`kobo-etl sync` of a small form in a new process: process start to the first request, and total."""
    server = ServerProcess(households=200)
    work = Path(tempfile.mkdtemp(prefix="kobo-bench-startup-"))
    try:
        settings = prepare(server, work)
        env = {
            **os.environ,
            "KOBO_URL": server.url,
            "KOBO_TOKEN": server.token,
            "KOBO_ETL_DATA_DIR": str(settings.data_dir),
            "KOBO_ETL_FORMS_DIR": str(settings.forms_dir),
            "KOBO_ETL_INDICATORS_FILE": str(settings.indicators_file),
            "KOBO_ETL_PSEUDONYMISATION_KEY": DEMO_KEY,
        }
        env.pop("PREFECT_API_URL", None)
        cmd = [str(REPO / ".venv" / "bin" / "kobo-etl"), "sync"] + (["--prefect"] if prefect else [])
        mark = server.call("mark")
        t0 = time.time()
        proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=300)
        total = time.time() - t0
        _, _, first = server.since(mark)
        return {
            "prefect": prefect,
            "exit": proc.returncode,
            "to_first_request_s": (first - t0) if first else None,
            "total_s": total,
        }
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------ reporting


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "nproc": str(os.cpu_count())}
    with open("/proc/meminfo") as f:
        out["ram"] = f"{int(f.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    for pkg in ("duckdb", "pyarrow", "prefect", "great_expectations", "pandas", "orjson"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def print_report(res: dict[str, Any]) -> None:
    n = res["submissions"]
    if res.get("prerender_s") is not None:
        print(f"demo server prerendered: every record encoded once before timing "
              f"({res['prerender_s']:.1f} s)")
    for f in res.get("fetch_only", []):
        print(f"fetch only (client, rows not parsed), {n} submissions, latency {res['latency_ms']} ms, "
              f"concurrency {f['concurrency']}: {f['wall_s']:.2f} s, {f['rows'] / f['wall_s']:,.0f} rows/s, "
              f"{f['requests']} requests, load {f['loadavg_1m']:.2f}")
    if "sync" not in res:
        return
    full = res["sync"]
    floor = res["floor"]
    print(f"\n== kobo-etl sync benchmark: {n} submissions, latency {res['latency_ms']} ms/request, "
          f"concurrency {res['concurrency']}, checks {'on' if res['checks'] else 'off'}, "
          f"members per household {res.get('members') or '1-14 (≈ 4.3)'} ==")
    print(f"   {res['machine']}")
    print(f"{'stage':38} {'seconds':>8}")
    for stage, sec in sorted(full["stages"].items(), key=lambda kv: -kv[1]):
        print(f"  {stage:36} {sec:8.2f}")
    print(f"  {'sync wall time':36} {full['wall_s']:8.2f}   ({n / full['wall_s']:,.0f} submissions/s)")
    print(f"  requests {full['requests']}, bytes {full['bytes'] / 1e6:,.1f} MB, rows {res.get('rows')}")
    print(f"  load average (1 min) before/after: {full['loadavg_1m'][0]:.2f} / {full['loadavg_1m'][1]:.2f}")
    if "cpu_s" in full:
        print("  CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in full["cpu_s"].items()))
    print("  peak RSS (MB): " + ", ".join(f"{k} {v:,.0f}" for k, v in full["peaks_mb"].items()))
    if res.get("workers_used"):
        print(f"  privacy and flattening ran in {res['workers_used']} transform worker process(es), whose "
              "time this process cannot split: 'transform (wait for workers)'; --transform-workers 0 "
              "times them")
    print(f"floor: {floor['wall_s']:.2f} s (fetch {floor['fetch_s']:.2f} s + DuckDB read_json "
          f"{floor['read_s']:.2f} s), "
          f"{floor['requests']} requests, {floor['bytes'] / 1e6:,.1f} MB, {floor['rows']} rows, "
          f"peak RSS {floor['peak_mb']:,.0f} MB, load {floor['loadavg_1m']:.2f}"
          + (f", CPU {floor['cpu_s']:.1f} s" if "cpu_s" in floor else "")
          + (" [read_json needed union_by_name: the floor is an upper bound]"
             if floor.get("read_fallback_union_by_name") else ""))
    ratio = full["wall_s"] / floor["wall_s"]
    target = 1.5 if not res["checks"] else 3.0
    print(f"sync / floor = {ratio:.2f}x (target <= {target}x {'without' if not res['checks'] else 'with'} "
          f"checks and publishing): {'MET' if ratio <= target else 'NOT MET'}")
    if floor.get("cpu_s"):
        print(f"CPU, sync process and workers / floor = {_our_cpu(full) / floor['cpu_s']:.2f}x "
              "(not a target: the work done, however it overlaps on the cores)")
    if "sync_no_checks" in res:
        nc = res["sync_no_checks"]
        by_time = sorted(nc["stages"].items(), key=lambda kv: -kv[1])
        print("without checks: " + ", ".join(f"{k} {v:.2f}" for k, v in by_time)
              + f"; wall {nc['wall_s']:.2f} s, peak RSS {nc['peaks_mb']['sync (whole)']:,.0f} MB, "
              f"load {nc['loadavg_1m'][0]:.2f}/{nc['loadavg_1m'][1]:.2f}")
        r2 = nc["wall_s"] / floor["wall_s"]
        print(f"sync without checks/publishing / floor = {r2:.2f}x (target <= 1.5x): "
              f"{'MET' if r2 <= 1.5 else 'NOT MET'}")
    if "dlt" in res:
        print_dlt(res)
    if "incremental" in res:
        inc = res["incremental"]
        print(f"incremental, nothing new: {inc['nothing_new']['requests']} requests, "
              f"{inc['nothing_new']['bytes'] / 1e6:,.2f} MB = {inc['nothing_new_pct']:.2f}% "
              "of the full sync's bytes "
              f"(target < 5%), {inc['nothing_new']['wall_s']:.2f} s")
        print(f"   by request kind (requests, bytes): {inc['nothing_new']['by_request_kind']}")
        print(f"incremental, {inc['edited']} edited (1%): {inc['one_pct']['requests']} requests, "
              f"{inc['one_pct']['bytes'] / 1e6:,.2f} MB, {inc['one_pct']['wall_s']:.2f} s, "
              f"updated {inc['one_pct']['updated']}")
    for s in res.get("startup", []):
        print(f"start-up `kobo-etl sync{' --prefect' if s['prefect'] else ''}` (200 submissions): "
              f"first request after {s['to_first_request_s']:.2f} s, whole command {s['total_s']:.2f} s, "
              f"exit {s['exit']}")


def print_dlt(res: dict[str, Any]) -> None:
    """The dlt baseline's line, its tables, and dlt Parquet / sync without checks when both ran."""
    d = res["dlt"]
    if "error" in d:
        print(f"dlt baseline failed (load {d['loadavg_1m'][0]:.2f}/{d['loadavg_1m'][1]:.2f}): {d['error']}")
        return
    steps = ", ".join(f"{k} {v:.2f}" for k, v in d["steps_s"].items() if k != "run")
    print(f"dlt {d['dlt']} (REST API source -> DuckDB, {d['loader_file_format']}): {d['wall_s']:.2f} s "
          f"({steps}; whole process {d['process_s']:.2f} s), {d['requests']} requests, "
          f"{d['bytes'] / 1e6:,.1f} MB, peak RSS {d['peak_mb']:,.0f} MB, "
          f"load {d['loadavg_1m'][0]:.2f}/{d['loadavg_1m'][1]:.2f}")
    print("   CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in d["cpu_s"].items()))
    print("   rows: " + ", ".join(f"{k} {v}" for k, v in d["rows"].items()))
    if d["rows"].get("submissions") != res["submissions"]:
        print(f"   WARNING: dlt loaded {d['rows'].get('submissions')} submissions, not {res['submissions']}")
    # the target is against dlt's Parquet mode and the sync without validation and publishing
    nc = res["sync"] if not res["checks"] else res.get("sync_no_checks")
    if nc is not None and d["loader_file_format"] == "parquet":
        r = d["wall_s"] / nc["wall_s"]
        print(f"dlt parquet / sync without checks/publishing = {r:.2f}x (target >= 5x): "
              f"{'MET' if r >= 5 else 'NOT MET'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--submissions", type=int, default=10_000)
    p.add_argument("--latency-ms", type=int, default=0, help="server latency per request")
    p.add_argument("--members", type=int, default=None,
                   help="members per household, the same in every household (default: the demo's 1-14, "
                        "about 4.3 on average)")
    p.add_argument("--no-checks", action="store_true", help="skip validation, indicators, publishing, report")
    p.add_argument("--transform-workers", type=int, default=None,
                   help="the form's sync.transform_workers (0 = in-process; default: the sync decides)")
    p.add_argument("--concurrency", type=int, default=3,
                   help="concurrent page fetches, written into the form's sync.concurrency (default 3, as "
                        "config.forms)")
    p.add_argument("--also-no-checks", action="store_true", help="also run a second sync without checks")
    p.add_argument("--incremental", action="store_true", help="then: nothing new, 1%% edited")
    p.add_argument("--fetch-only", action="store_true",
                   help="only time the client's page iterator, sequential and --concurrency (no sync/floor); "
                        "the server is prerendered")
    p.add_argument("--prerender", action="store_true",
                   help="serve pages from records encoded once (DemoKoboServer.prerender), not generated per "
                        "request: lowers the floor; off by default so rounds stay comparable")
    p.add_argument("--startup", action="store_true", help="also time `kobo-etl sync` start-up")
    p.add_argument("--dlt", action="store_true",
                   help="then load the same submissions with dlt (bench/dlt_baseline.py, in bench/.dlt-venv, "
                        "created if missing)")
    p.add_argument("--dlt-format", default="parquet", choices=("parquet", "jsonl", "insert_values"),
                   help="dlt's loader_file_format (default parquet, as issue #9's target; dlt's own default "
                        "for DuckDB is insert_values)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run the whole benchmark this many times, each in a fresh process (its own server, "
                        "sync and floor), then print every run's ratios and their median")
    p.add_argument("--keep", action="store_true", help="keep the data folder")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    if args.members is not None and args.members < 1:
        p.error("--members: at least 1 member per household")
    if args.repeat > 1 and args.fetch_only:
        p.error("--repeat compares syncs with their floors; --fetch-only runs neither")
    if args.repeat > 1:
        return run_repeated(sys.argv[1:] if argv is None else argv, args.repeat, args.json)

    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kobo_etl").setLevel(logging.WARNING)

    from pipelines.workers import worker_count

    res: dict[str, Any] = {
        "submissions": args.submissions,
        "latency_ms": args.latency_ms,
        "members": args.members,
        "concurrency": args.concurrency,
        "transform_workers": args.transform_workers,
        "workers_used": worker_count(args.transform_workers, args.submissions),  # as the sync decides
        "checks": not args.no_checks,
        "prerender_s": None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": versions(),
    }
    server = ServerProcess(args.submissions, members=args.members)
    work = Path(tempfile.mkdtemp(prefix="kobo-bench-", dir=os.environ.get("BENCH_TMP")))
    try:
        if args.latency_ms:
            server.call("faults", {"latency_ms": args.latency_ms})
        if args.fetch_only or args.prerender:
            # the iterator alone must not wait for this server's Python generating rows (one GIL, unlike a
            # KPI's worker processes reading stored JSON), so --fetch-only always prerenders
            res["prerender_s"] = server.call("prerender")
        settings = prepare(server, work, args.concurrency, args.transform_workers)
        # import the pipeline before timing: start-up is measured separately (--startup)
        import pipelines.run  # noqa: F401

        if args.fetch_only:  # the client's iterator alone: no sync, no floor
            res["fetch_only"] = [
                {"concurrency": k, "loadavg_1m": os.getloadavg()[0], **run_fetch_only(server, settings, k)}
                for k in sorted({1, max(1, args.concurrency)})
            ]
            return 0
        res["sync"] = run_one_sync(settings, server, checks=not args.no_checks, concurrency=args.concurrency)
        res["rows"] = warehouse_rows(settings)
        save(res, args.json)  # long runs: keep what is measured even if a later phase fails
        if args.incremental:
            full_bytes = res["sync"]["bytes"]
            nothing = run_one_sync(settings, server, checks=not args.no_checks, concurrency=args.concurrency)
            edited = server.call("edit", 0.01)
            one = run_one_sync(settings, server, checks=not args.no_checks, concurrency=args.concurrency)
            res["incremental"] = {
                "nothing_new": nothing,
                "nothing_new_pct": 100 * nothing["bytes"] / full_bytes,
                "edited": edited,
                "one_pct": one,
            }
        if args.also_no_checks and not args.no_checks:
            settings2 = prepare(server, work / "nochecks", args.concurrency, args.transform_workers)
            res["sync_no_checks"] = run_one_sync(settings2, server, checks=False,
                                                 concurrency=args.concurrency)
        res["floor"] = run_floor(server, work)
        if args.dlt:  # last: the sync and the floor run as in earlier rounds, before it
            save(res, args.json)
            res["dlt"] = run_dlt(server, work, args.dlt_format)
    finally:
        server.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
        if args.fetch_only:
            print_report(res)
            save(res, args.json)
    if args.startup:
        res["startup"] = [measure_startup(False), measure_startup(True)]
    print_report(res)
    save(res, args.json)
    return 0


def run_repeated(argv: list[str], times: int, json_path: Path | None) -> int:
    """The benchmark `times` times, each run in a fresh process (only a process's first sync is clean: a
    later one finds GX imported and the RSS of the earlier one), then every run's ratios and their medians.
    The machine's noise (±0.5 s on a 6 s sync) is then visible in one invocation."""
    rest = _without_options(argv, ("--repeat", "--json"))
    runs = []
    with tempfile.TemporaryDirectory(prefix="kobo-bench-repeat-") as tmp:
        for i in range(times):
            out = Path(tmp) / f"run{i + 1}.json"
            print(f"\n######## run {i + 1} of {times}", flush=True)
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *rest, "--json", str(out)])
            if done.returncode != 0 or not out.exists():
                print(f"run {i + 1} failed (exit {done.returncode})")
                return 1
            runs.append(json.loads(out.read_text(encoding="utf-8")))
    print_repeated(runs)
    save({"runs": runs}, json_path)
    return 0


def _without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """`argv` without the options `names` and their values (`--repeat 3` or `--repeat=3`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(tuple(f"{n}=" for n in names)):
            out.append(arg)
    return out


def run_ratios(res: dict[str, Any]) -> dict[str, float]:
    """One run's ratios against its own floor, and dlt's against the sync without checks."""
    ratios = {"sync_s": res["sync"]["wall_s"], "floor_s": res["floor"]["wall_s"],
              "sync_over_floor": res["sync"]["wall_s"] / res["floor"]["wall_s"],
              "load_before": res["sync"]["loadavg_1m"][0]}
    no_checks = res["sync"] if not res["checks"] else res.get("sync_no_checks")
    if no_checks is not None and res["checks"]:
        ratios["no_checks_over_floor"] = no_checks["wall_s"] / res["floor"]["wall_s"]
    dlt = res.get("dlt") or {}
    if no_checks is not None and "wall_s" in dlt and dlt.get("loader_file_format") == "parquet":
        ratios["dlt_over_sync"] = dlt["wall_s"] / no_checks["wall_s"]
    # the work done, whatever the overlap: with 2 cores shared by the sync, its workers and the server, wall
    # time depends on the scheduling too
    floor_cpu = res["floor"].get("cpu_s")
    if floor_cpu and "cpu_s" in res["sync"]:
        ratios["cpu_over_floor_cpu"] = _our_cpu(res["sync"]) / floor_cpu
        if no_checks is not None and res["checks"] and "cpu_s" in no_checks:
            ratios["no_checks_cpu_over_floor_cpu"] = _our_cpu(no_checks) / floor_cpu
    return ratios


def _our_cpu(sync: dict[str, Any]) -> float:
    """A sync's CPU seconds without the demo server's: the sync process and its transform workers."""
    return sum(v for k, v in sync["cpu_s"].items() if k != "demo server")


def print_repeated(runs: list[dict[str, Any]]) -> None:
    """A line per run, then the medians and how many runs met each target."""
    checks = runs[0]["checks"]
    target = 3.0 if checks else 1.5
    rows = [run_ratios(r) for r in runs]
    keys = [k for k in ("sync_s", "floor_s", "sync_over_floor", "no_checks_over_floor", "dlt_over_sync",
                        "cpu_over_floor_cpu", "no_checks_cpu_over_floor_cpu", "load_before") if k in rows[0]]
    print(f"\n== {len(runs)} runs, {runs[0]['submissions']} submissions, checks {'on' if checks else 'off'}, "
          f"server {'prerendered' if runs[0].get('prerender_s') is not None else 'generating'} ==")
    print("run  " + "  ".join(f"{k:>20}" for k in keys))
    for i, row in enumerate(rows, start=1):
        print(f"{i:<4} " + "  ".join(f"{row[k]:20.2f}" for k in keys))
    print("med  " + "  ".join(f"{statistics.median(r[k] for r in rows):20.2f}" for k in keys))
    met = sum(r["sync_over_floor"] <= target for r in rows)
    print(f"sync / floor <= {target}x in {met} of {len(rows)} runs")
    if "no_checks_over_floor" in keys:
        print(f"sync without checks / floor <= 1.5x in "
              f"{sum(r['no_checks_over_floor'] <= 1.5 for r in rows)} of {len(rows)} runs")
    if "dlt_over_sync" in keys:
        print(f"dlt parquet / sync without checks >= 5x in {sum(r['dlt_over_sync'] >= 5 for r in rows)} "
              f"of {len(rows)} runs")


def save(res: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
