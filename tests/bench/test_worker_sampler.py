"""`bench/run.py`'s sampler of the transform workers: it must see grandchildren, since workers fork from a
forkserver that the sync starts (no timing: sizes and CPU of processes this test starts)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

_RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"
_spec = importlib.util.spec_from_file_location("bench_run_sampler", _RUN)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

# the grandchild holds 120 MB and burns CPU; the child waits for it, as a forkserver waits for its workers
_GRANDCHILD = (
    "import time\n"
    "block = bytearray(120 * 1024 * 1024)\n"
    "for i in range(0, len(block), 4096): block[i] = 1\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < 0.4: pass\n"
    "print('ready', flush=True)\n"
    "time.sleep(30)\n"
)
_CHILD = (
    "import subprocess, sys\n"
    f"p = subprocess.Popen([sys.executable, '-c', {_GRANDCHILD!r}], stdout=subprocess.PIPE, text=True)\n"
    "print(p.stdout.readline().strip(), flush=True)\n"
    "p.wait()\n"
)


def test_the_sampler_counts_the_workers_of_a_forkserver() -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        sampler = bench.WorkerRss(exclude_pid=None)
        sampler.start()
        time.sleep(0.5)
        sampler.stop()
    finally:
        for proc in bench.descendants(None):
            subprocess.run(["kill", str(proc)], check=False)
        child.wait(timeout=10)
    assert sampler.peak_mb >= 120  # the grandchild's 120 MB: the child alone is a bare interpreter
    assert 120 <= sampler.pss_mb <= sampler.peak_mb
    assert sampler.with_main_mb >= sampler.pss_mb + 10  # plus this process's own RSS


def test_cpu_of_processes_alive_before_counts_from_the_start() -> None:
    busy = subprocess.Popen(
        [sys.executable, "-c",
         "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
         "print('ready', flush=True)\ntime.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "ready"
        sampler = bench.WorkerRss(exclude_pid=None)  # the 0.6 s it burnt are before: not counted
        sampler.start()
        time.sleep(0.3)
        sampler.stop()
    finally:
        busy.kill()
        busy.wait(timeout=10)
    assert sampler._cpu, "the sampler saw the process"
    assert sampler.cpu_s < 0.3
