"""`make demo`: migrate, seed, start the API server and a Celery worker, stop both on Ctrl-C.

Embedded defaults only (SQLite, Celery's filesystem broker, a local storage folder), so no
external service is needed. A second start reuses everything and takes seconds.

`python -m backend.demo --worker-only [NAME]` starts one more worker on the same database,
queue and files (in a second terminal, while `make demo` runs): the queue's work is shared
out over every worker, one job each at a time. NAME (default `extra-<pid>`) names it; give
the same name again after a restart so that it takes back the runs it was training.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from backend.cli import DEMO_ACCOUNTS, migrate, seed_demo
from backend.core.config import ROOT, get_settings

_logger = logging.getLogger("demo")


DEMO_WORKER = "demo-worker"
ADD_WORKER = ".venv/bin/python -m backend.demo --worker-only"


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """The worker's environment: unless OMP_NUM_THREADS is set, each of its concurrent jobs
    gets an equal share of the CPU's threads (more would make them wait on each other)."""
    jobs = get_settings().demo_worker_concurrency
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs)), **env}


def worker_command(name: str = DEMO_WORKER) -> list[str]:
    """The demo's Celery worker: DEMO_WORKER_CONCURRENCY training processes (2) on the
    training and default queues, named `name`@host (each worker's name must be its own: a
    worker that starts takes back the runs its name was training, as a restarted one)."""
    settings = get_settings()
    return [
        "nice",
        "-n",
        str(settings.demo_worker_niceness),
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "-Q",
        f"{settings.training_queue},default",
        "-c",
        str(settings.demo_worker_concurrency),
        "--loglevel",
        "INFO",
        "-n",
        f"{name}@%h",
    ]


def _build_content(base: str, server: subprocess.Popen[bytes]) -> None:
    """The demo's content (backend/demo_content.py), made once the server answers; its
    progress is a bar in the terminal. The pages work meanwhile (the runs train live)."""
    from tqdm import tqdm

    from backend.demo_content import build

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    deadline = time.monotonic() + 120
    while not _answers(base):
        if server.poll() is not None or time.monotonic() > deadline:
            return
        time.sleep(0.5)
    bar = tqdm(total=100, desc="demo content", unit="%", leave=True)

    def show(fraction: float, step: str) -> None:
        bar.set_postfix_str(step)
        bar.n = round(100 * fraction)
        bar.refresh()

    try:
        build(base, DEMO_ACCOUNTS["researcher"], show)
        show(1.0, "ready: every page has content")
    except Exception:  # the demo goes on; the pages show what there is
        _logger.exception("the demo content could not be made")
    finally:
        bar.close()


def _answers(base: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    print("• database:", settings.database_url)
    migrate()
    print("• seeding demo accounts and datasets (first start only)")
    seed_demo()

    env = dict(os.environ)
    worker = subprocess.Popen(worker_command(), cwd=ROOT, env=worker_env(env))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "backend.main:app",
            "--host",
            settings.demo_host,
            "--port",
            str(settings.demo_port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    children = [server, worker]
    names = {id(server): "the API server", id(worker): "the Celery worker"}

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()

    def on_sigterm(*_: object) -> None:
        stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    url = f"http://{settings.demo_host}:{settings.demo_port}/"
    print()
    print(f"  Open {url}")
    print("  Accounts (username / password):")
    for role, (username, password) in DEMO_ACCOUNTS.items():
        print(f"    {role:<11} {username} / {password}")
    print("  Ctrl-C stops the server and the worker.")
    print()
    print("  The worker trains, evaluates and makes stimuli, taking the queue's jobs in turn.")
    print(f"  The queue (what waits, for how long): {url}#/queue")
    print(f"  To add a worker, in another terminal here: {ADD_WORKER}")
    print()
    threading.Thread(
        target=_build_content, args=(url.rstrip("/"), server), name="demo-content", daemon=True
    ).start()
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = [names[id(c)] for c in children if c.poll() not in (None, 0)]
        if failed:
            print(f"stopped: {', '.join(failed)} exited", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("\nstopping…")
    finally:
        stop()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker-only"]:  # one more worker, on the demo's database
        name = sys.argv[2] if len(sys.argv) > 2 else f"extra-{os.getpid()}"
        command = worker_command(name)
        print(
            f"• worker {name}: it takes the queue's next job whenever it is free; Ctrl-C stops it"
        )
        os.execvpe(command[0], command, worker_env(dict(os.environ)))
    sys.exit(main())
