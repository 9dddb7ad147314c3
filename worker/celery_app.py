"""The Celery worker application. Start a training worker with

celery -A worker.celery_app worker -Q training,default --pool solo -c 1

(solo: the task runs in the worker process, which may start DataLoader worker processes;
a prefork child is daemonic and may not, and the stream path then decodes in-process)
"""

from importlib.util import find_spec

from backend.core.config import get_settings
from backend.core.queue import make_celery

TASK_MODULES = ("worker.training_tasks", "worker.study_tasks", "worker.evaluation_tasks")

app = make_celery(get_settings(), name="sipat-worker")
app.conf.include = [m for m in TASK_MODULES if find_spec(m) is not None]

# the recovery of orphaned runs and lost messages, on the worker's own timer
from worker import recovery  # noqa: E402, F401 - connects its worker_ready handler
