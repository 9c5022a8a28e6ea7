"""`bench/run.py --repeat`: the options a repeated run passes on, and the medians it prints (no timing)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"
_spec = importlib.util.spec_from_file_location("bench_run", _RUN)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_each_run_gets_the_options_but_repeat_and_json() -> None:
    argv = ["--submissions", "100000", "--repeat", "3", "--prerender", "--json=out.json", "--no-checks"]
    assert bench._without_options(argv, ("--repeat", "--json")) == [
        "--submissions", "100000", "--prerender", "--no-checks"
    ]
    argv = ["--repeat=2", "--json", "x.json", "--dlt"]
    assert bench._without_options(argv, ("--repeat", "--json")) == ["--dlt"]


def _run(sync: float, floor: float, dlt: float | None = None, load: float = 0.5) -> dict:
    res = {"submissions": 100_000, "checks": False, "prerender_s": 5.8,
           "sync": {"wall_s": sync, "loadavg_1m": [load, load]}, "floor": {"wall_s": floor}}
    if dlt is not None:
        res["dlt"] = {"wall_s": dlt, "loader_file_format": "parquet"}
    return res


def test_repeated_runs_print_every_ratio_their_median_and_the_runs_that_met(capsys) -> None:
    runs = [_run(6.0, 4.0, dlt=36.0), _run(6.6, 4.0, dlt=32.0), _run(5.6, 4.0, dlt=34.0)]
    bench.print_repeated(runs)
    out = capsys.readouterr().out
    assert "3 runs, 100000 submissions, checks off, server prerendered" in out
    med = next(line for line in out.splitlines() if line.startswith("med"))
    assert [float(x) for x in med.split()[1:]] == pytest.approx([6.0, 4.0, 1.5, 6.0, 0.5], abs=0.005)
    assert "sync / floor <= 1.5x in 2 of 3 runs" in out  # 1.5 and 1.4, not 1.65
    assert "dlt parquet / sync without checks >= 5x in 2 of 3 runs" in out  # 6.0 and 6.07, not 4.85


def test_cpu_ratios_count_the_sync_and_its_workers_not_the_server(capsys) -> None:
    runs = []
    for sync_cpu, workers_cpu in ((3.0, 7.0), (3.5, 8.5), (2.5, 6.5)):
        res = _run(6.0, 4.0)
        cpu = {"sync process": sync_cpu, "transform workers": workers_cpu, "demo server": 9.0}
        res["sync"]["cpu_s"] = cpu
        res["floor"]["cpu_s"] = 5.0
        runs.append(res)
    assert bench.run_ratios(runs[0])["cpu_over_floor_cpu"] == pytest.approx(2.0)
    bench.print_repeated(runs)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("run "))
    med = next(line for line in out.splitlines() if line.startswith("med"))
    column = header.split().index("cpu_over_floor_cpu")
    assert float(med.split()[column]) == pytest.approx(2.0)  # 2.0, 2.4, 1.8
    # a run recorded before the floor measured its CPU: no CPU column, no error
    assert "cpu_over_floor_cpu" not in bench.run_ratios(_run(6.0, 4.0))
