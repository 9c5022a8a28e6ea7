"""`kobo-etl serve`: every configured form on its own schedule, in one process, with Prefect's `serve`.

For one office laptop: no work pool and no worker. Each scheduled run executes in a subprocess, so a
failed or crashed run does not stop the others or the serve loop; Ctrl-C or SIGTERM (`kill`, `docker stop`)
stops it cleanly (Prefect pauses the schedules on shutdown, so nothing piles up while the laptop is off).

`serve` needs a real Prefect server: its scheduler creates the runs that `serve` picks up (the temporary
server Prefect starts by itself when PREFECT_API_URL is unset runs no scheduler, so nothing would ever run).
With PREFECT_API_URL set, that server is used. Without it, `serve_forms` starts a local one for as long as it
serves — `prefect server start` on a free loopback port, its database in data/prefect/ so run history
survives restarts — and stops it on Ctrl-C or SIGTERM. Nothing to install or keep running on an office laptop.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from config import FormConfig
from config.errors import ConfigError, EtlError
from pipelines.schedule import deployment_name, form_tags

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

log = logging.getLogger("kobo_etl.serve")


def build_deployments(forms: Sequence[FormConfig]) -> list[RunnerDeployment]:
    """One deployment of the `sync-form` flow per form, with the cron and time zone from its YAML.

    Parameters hold the slug only: the token and key are read from env/.env inside each run.
    """
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Cron

    from pipelines.flows import sync_form

    deployments: list[RunnerDeployment] = []
    for form in forms:
        deployment = sync_form.to_deployment(
            name=deployment_name(form),
            schedules=[
                Cron(form.schedule.cron, timezone=form.schedule.timezone, active=form.schedule.active)
            ],
            parameters={"slug": form.slug},
            description=f"Sync the KoBo form '{form.name or form.slug}' into the warehouse",
            tags=form_tags(form),
            # one run of a form at a time: a slow sync is not overtaken by the next tick
            concurrency_limit=1,
        )
        if not isinstance(deployment, RunnerDeployment):
            # Prefect returns a coroutine when called inside a running event loop (e.g. a notebook);
            # `serve` is synchronous, so that is unsupported: say so instead of returning a coroutine
            deployment.close()
            raise EtlError(
                "build the deployments outside a running event loop (Prefect returned a coroutine)",
                form=form.slug,
            )
        deployments.append(deployment)
    return deployments


@contextmanager
def local_prefect_server(home: Path, *, start_timeout_s: float = 120) -> Iterator[str]:
    """Run `prefect server start` on a free loopback port for the duration; yield its API URL."""
    home.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    log_file = (home / "server.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        with _sigterm_stops(proc):
            deadline = time.monotonic() + start_timeout_s
            while True:
                if proc.poll() is not None:
                    raise ConfigError(f"the local Prefect server did not start; see {home / 'server.log'}")
                try:
                    if requests.get(f"{api_url}/health", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise ConfigError(f"the local Prefect server did not answer; see {home / 'server.log'}")
                time.sleep(0.5)
            log.info("local Prefect server at %s (UI: %s)", api_url, api_url.removesuffix("/api"))
            yield api_url
    finally:
        _terminate(proc)
        log_file.close()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def _sigterm_stops(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Until Prefect's runner takes SIGTERM over (it then shuts down gracefully, and `local_prefect_server`
    stops the server), SIGTERM stops the local Prefect server and exits at once with status 0.

    The signal's default action would leave that server running (`kill` or `docker stop` while `serve` is
    still starting); raising from the handler instead is not safe, as the exception can surface inside a
    library that wraps it (seen: pydantic, while Prefect was being imported).
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def stop(signum: int, frame: object) -> None:
        _terminate(proc)
        os.write(2, b"kobo-etl serve: stopped (SIGTERM) while starting\n")
        os._exit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_forms(forms: Sequence[FormConfig], *, limit: int | None = 1, data_dir: Path = Path("data")) -> None:
    """Serve every form's deployment until Ctrl-C (starting a local Prefect server when none is configured).

    Args:
        limit: runs at the same time in this process. 1 by default: all forms write one DuckDB file, so
            parallel runs would only queue on its lock.
        data_dir: where the local Prefect server keeps its database (data_dir/prefect).
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        _serve(forms, limit)
        return
    with local_prefect_server(data_dir.resolve() / "prefect") as api_url:
        os.environ["PREFECT_API_URL"] = api_url  # the runs serve starts in subprocesses inherit it
        from prefect.settings import temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            _serve(forms, limit)


def _serve(forms: Sequence[FormConfig], limit: int | None) -> None:
    from prefect import serve

    deployments = build_deployments(forms)
    for form in forms:
        state = "" if form.schedule.active else " (paused in its YAML)"
        log.info(
            "serving %s: %s %s%s", deployment_name(form), form.schedule.cron, form.schedule.timezone, state
        )
    serve(*deployments, limit=limit, print_starting_message=True)
