"""The Celery worker application. Start a training worker with

celery -A worker.celery_app worker -Q training,default --pool solo -c 1

(solo: the task runs in the worker process, which may start DataLoader worker processes;
a prefork child is daemonic and may not, and the stream path then decodes in-process)
"""

from collections.abc import Callable
from importlib.util import find_spec
from typing import Any, TypeVar, cast

from backend.core.config import get_settings
from backend.core.queue import make_celery

TASK_MODULES = ("worker.training_tasks", "worker.study_tasks", "worker.evaluation_tasks")

app = make_celery(get_settings(), name="sipat-worker")
app.conf.include = [m for m in TASK_MODULES if find_spec(m) is not None]

F = TypeVar("F", bound=Callable[..., Any])


def task(name: str, **options: Any) -> Callable[[F], F]:
    """`app.task(name=..., ...)` for the task modules, typed: Celery ships no type hints, and
    a task keeps the signature of the function it wraps for its callers and mypy."""
    return cast(Callable[[F], F], app.task(name=name, **options))


# the recovery of orphaned runs and lost messages, on the worker's own timer
from worker import recovery  # noqa: E402, F401 - connects its worker_ready handler
