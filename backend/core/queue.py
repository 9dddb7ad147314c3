"""The Celery client configuration, shared by the API (which only enqueues, by task name) and
the workers (which import worker.celery_app, built on this)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from celery import Celery

from backend.core.config import Settings, get_settings

_logger = logging.getLogger(__name__)

# The Celery tasks, by name: the API enqueues by name and never imports a task; the tasks
# (worker/*_tasks.py) register under these names, imported from here.
TRAIN_TASK = "worker.train_run"
STIMULI_TASK = "worker.generate_stimuli"
INEQUALITY_TASK = "worker.inequality_evaluation"

__all__ = [
    "INEQUALITY_TASK",
    "STIMULI_TASK",
    "TRAIN_TASK",
    "held_tokens",
    "enqueue",
    "get_celery",
    "make_celery",
]


def make_celery(settings: Settings, name: str = "sipat") -> Celery:
    app = Celery(name, broker=settings.celery_broker_url, backend=settings.celery_result_backend)
    conf: dict[str, Any] = {
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # A task is acknowledged only when it ends, so a killed worker's task is delivered again
        # (and resumes from its last checkpoint, since every task is idempotent).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One long job per worker process, as on a GPU: never hoard messages.
        "worker_prefetch_multiplier": 1,
        "task_routes": {
            TRAIN_TASK: {"queue": settings.training_queue},
            STIMULI_TASK: {"queue": settings.training_queue},
            INEQUALITY_TASK: {"queue": settings.training_queue},
        },
        "task_default_queue": "default",
        "broker_connection_retry_on_startup": True,
        "result_expires": 7 * 24 * 3600,
    }
    if settings.celery_broker_url.startswith("filesystem://"):
        folder = settings.celery_broker_folder
        for sub in ("out", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        conf["broker_transport_options"] = {
            "data_folder_in": str(folder / "out"),
            "data_folder_out": str(folder / "out"),
            "data_folder_processed": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    elif settings.celery_broker_url.startswith("redis"):
        # Redelivery of unacknowledged training tasks after a worker vanished: longer than an
        # epoch would be wrong for a run that is still alive, so the run's heartbeat decides
        # instead (see the runs service); this is the broker-side safety net.
        conf["broker_transport_options"] = {"visibility_timeout": 3600}
    app.conf.update(conf)
    return app


# The API's sends give up quickly when the broker is down (a request must not hang for the
# ~20 s of Celery's default reconnection): one retry after 0.2 s, 2 s to connect.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.2}
CLIENT_CONNECT_TIMEOUT_S = 2.0


@lru_cache
def get_celery() -> Celery:
    """The API's Celery client: it only sends, by name, and never waits on a result store
    (progress is read from the database), so a broker outage fails a send in seconds."""
    app = make_celery(get_settings(), name="sipat-client")
    options = dict(app.conf.broker_transport_options or {})
    options.update(
        socket_connect_timeout=CLIENT_CONNECT_TIMEOUT_S, socket_timeout=CLIENT_CONNECT_TIMEOUT_S
    )
    app.conf.update(
        broker_transport_options=options,
        broker_connection_timeout=CLIENT_CONNECT_TIMEOUT_S,
        redis_socket_connect_timeout=CLIENT_CONNECT_TIMEOUT_S,
        redis_socket_timeout=CLIENT_CONNECT_TIMEOUT_S,
    )
    return app


def enqueue(task_name: str, *args: object) -> str:
    """Send a task by name (the API never imports worker code); returns the task id. Raises
    (within a few seconds) when the broker cannot be reached. Nothing reads a task's result
    (the tasks record their outcome in the database), so none is kept."""
    result = get_celery().send_task(
        task_name, args=list(args), ignore_result=True, retry=True, retry_policy=PUBLISH_RETRY
    )
    return str(result.id)


def _broker_messages(settings: Settings) -> list[bytes] | None:
    """Every task message the broker holds, raw: waiting in the training queue, or delivered
    to a worker and not yet acknowledged. None when the broker cannot be read."""
    url = settings.celery_broker_url
    try:
        if url.startswith("redis"):
            import redis

            client = redis.Redis.from_url(url)
            try:
                raw = [*client.lrange(settings.training_queue, 0, -1), *client.hvals("unacked")]
                return [m if isinstance(m, bytes) else str(m).encode() for m in raw]
            finally:
                client.close()
        if url.startswith("filesystem://"):
            folder = settings.celery_broker_folder / "out"
            return [f.read_bytes() for f in folder.glob("*.msg")]
    except Exception as exc:  # noqa: BLE001 - any broker client failure means "cannot tell"
        _logger.warning("could not read the broker: %s", exc)
    return None


def held_tokens(tokens: Iterable[str], settings: Settings | None = None) -> set[str] | None:
    """Which of these dispatch tokens the broker still holds a message for, reading the
    broker once; None when it cannot be read. Lets the runs service tell a queued run whose
    message was lost (a broker restarted empty) from one waiting behind a busy worker."""
    messages = _broker_messages(settings or get_settings())
    if messages is None:
        return None
    return {t for t in tokens if any(t.encode() in raw for raw in messages)}
