"""The Celery task that trains one run: a thin adapter between the runs table and worker.sipat.

It leases the GPUs the run asks for (config `gpus`; worker/gpu_leases.py: on a host with
CUDA, one lease per GPU, all or none; too few free: the task is sent again GPU_WAIT_S later
and the run stays queued), claims the run (backend/services/run_lifecycle.py), writes the
dataset export once (runs/<id>/data), and trains with out_dir runs/<id>/out (the same folder
on every delivery, so a re-delivered task resumes from the last finished epoch): one process
calls sipat.train in this process; more start the library under torchrun on exactly the
leased GPUs (worker/ranks.py; gloo processes on a CPU host), whose rank 0 reports through
an events file. Either way it reports every epoch, the live points, the final evaluation's
progress, a heartbeat and the log tail through the lifecycle service, and finishes the run
there.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.orm import Session

import runconfig
from backend.core.config import ROOT, Settings, get_settings
from backend.core.queue import TRAIN_TASK
from backend.core.storage import ContentCache, Storage, get_storage
from backend.db import get_sessionmaker
from backend.models import FINISHED_STATES, Dataset, TrainingRun
from backend.services import run_lifecycle as lifecycle
from backend.services import runs as runs_service
from worker import gpu_leases, run_files
from worker import ranks as ranks_mod
from worker.celery_app import task

_logger = logging.getLogger(__name__)
# the training library's logger: its lines go to the run's log tail while it trains
_library_logger = logging.getLogger("worker.sipat")

CANCEL_POLL_S = 0.5
RANKS_POLL_S = 0.2  # how often a multi-process run's events and exit are looked at
LOG_LINES = 60
SALIENCE_SAMPLES = 6


class _TailHandler(logging.Handler):
    """Keeps the last lines logged by the training library, for the run page."""

    def __init__(self, keep: int = LOG_LINES) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=keep)
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break training
            self.handleError(record)

    def text(self) -> str:
        return "\n".join(self.lines)


def code_version() -> str | None:
    """The git commit of the running code, when the code is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "worker", "backend"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _torchvision_version() -> str | None:
    """torchvision's __version__ ("0.29.1+cu130": with the build's local tag, which the
    package metadata lacks), read from its version.py: importing torchvision loads
    torch._dynamo, seconds of CPU that a worker's start need not pay."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = Path(list(spec.submodule_search_locations)[0], "version.py").read_text()
    except OSError:
        return None
    found = re.search(r"""^__version__ = ['"]([^'"]+)['"]""", text, re.MULTILINE)
    return found.group(1) if found else None


def package_versions() -> dict[str, str | None]:
    import numpy
    import torch

    tv = _torchvision_version()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": tv,
        "numpy": numpy.__version__,
    }


def pick_device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class GpusBusy(Exception):
    """Too few free GPUs for the run on this worker now; its task is sent again later."""


class RanksFailed(RuntimeError):
    """A process of a multi-process run ended badly (torchrun exited non-zero)."""


def usable_gpus(settings: Settings) -> list[str]:
    """The GPUs this worker may lease (WORKER_GPUS, else the GPUs it sees); none on CPU."""
    return gpu_leases.usable_names(settings.worker_gpus, settings.cuda_visible_devices, _cuda_count)


def _gpus_asked(run_id: int, token: str | None) -> int | None:
    """How many GPUs the run asks for; None when there is nothing to train (gone, finished,
    superseded: the claim says why)."""
    with get_sessionmaker()() as db:
        run = db.get(TrainingRun, run_id)
        if run is None or run.state in FINISHED_STATES:
            return None
        if token is not None and run.celery_task_id not in (None, token):
            return None
        try:
            return runconfig.from_stored(run.config or {}).gpus
        except runconfig.ConfigError:
            return 1  # _execute refuses the config, on the run's page


def _wait_for_gpus(
    settings: Settings, run_id: int, wanted: int, names: list[str], host: str
) -> NoReturn:
    """Say on the run why it waits, and raise GpusBusy."""
    if wanted > len(names):
        why = (
            f"It asks for {wanted} GPUs and worker {host} may use {len(names)} "
            f"({', '.join(names)}): waiting for a worker that may use {wanted}."
        )
    else:
        busy = gpu_leases.holders(settings.gpu_lease_dir, names)
        held = "; ".join(f"GPU {n}: {who}" for n, who in busy.items()) or "none now"
        why = (
            f"Waiting for {wanted} free GPU{'s' if wanted > 1 else ''} on worker {host} "
            f"(leased: {held}); trying again every {settings.gpu_wait_s:g} s."
        )
    with get_sessionmaker()() as db:
        lifecycle.note_waiting(db, run_id, why)
    _logger.info("run %s: %s", run_id, why)
    raise GpusBusy(why)


def ensure_export(db: Session, storage: Storage, run: TrainingRun) -> Path:
    """The run's dataset export on this host (worker/run_files.py), written once."""
    return run_files.write_export(db, storage, _cache(storage), run)


def _cache(storage: Storage) -> ContentCache:
    return ContentCache(storage, get_settings().worker_cache_dir)


def _checkpoint_of(storage: Storage, run_id: int | None) -> str | None:
    """A finished run's final.pt on this host (a teacher, or the model of automatic maps)."""
    if run_id is None:
        return None
    key = f"{runs_service.run_out_key(run_id)}/final.pt"
    try:
        return str(_cache(storage).by_key(key))
    except FileNotFoundError:
        return str(get_settings().worker_cache_dir / key)  # the library names what is missing


def library_config(
    run: TrainingRun, storage: Storage, data_dir: Path, device: str
) -> runconfig.TrainConfig:
    """The run's stored config turned into a sipat.TrainConfig (paths resolved here)."""
    from worker.sipat import TrainConfig

    fields = {k: v for k, v in run.config.items() if k not in runconfig.APP_REFS}
    fields.update(
        data_dir=str(data_dir),
        device=device,
        auto_mask_model=_checkpoint_of(storage, run.config.get("auto_mask_run_id")),
        igd_teacher=_checkpoint_of(storage, run.config.get("igd_teacher_run_id")),
    )
    return TrainConfig.from_dict(fields)


class _RunReporter:
    """Writes progress, heartbeats and the log tail of one run; answers should_stop()."""

    def __init__(self, run_id: int, tail: _TailHandler, heartbeat_s: float) -> None:
        self.run_id = run_id
        self.tail = tail
        self.heartbeat_s = heartbeat_s
        self._sessions = get_sessionmaker()
        self._last_poll = 0.0
        self._cancel = False
        self.system: dict[str, Any] = {}  # the latest device, peak memory and images/s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-run-{run_id}", daemon=True
        )

    def __enter__(self) -> _RunReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        # A thread, so that the heartbeat goes on through long evaluations between batches.
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self._sessions() as db:
                    if not lifecycle.heartbeat(db, self.run_id, self.tail.text()):
                        return
            except Exception:  # a missed beat is retried on the next one
                _logger.exception("heartbeat of run %s failed", self.run_id)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if self._cancel or now - self._last_poll < CANCEL_POLL_S:
            return self._cancel
        self._last_poll = now
        with self._sessions() as db:
            self._cancel = lifecycle.cancel_requested(db, self.run_id)
        return self._cancel

    def on_epoch(self, epoch: int, total: int, metrics: dict[str, Any]) -> None:
        with self._sessions() as db:
            lifecycle.report_epoch(db, self.run_id, epoch, total, metrics, self.tail.text())

    def on_batch(self, point: dict[str, Any]) -> None:
        # one short session per point, as on_epoch: no transaction stays open while training
        self.system = {
            "device": point.get("device"),
            "memory_bytes": point.get("memory_bytes"),
            "images_per_s": point.get("images_per_s"),
        }
        try:
            with self._sessions() as db:
                lifecycle.report_batch(db, self.run_id, point)
        except Exception:  # a lost point of the live curves must not end the run
            _logger.exception("batch point of run %s not stored", self.run_id)

    def on_evaluation(self, point: dict[str, Any]) -> None:
        """The final evaluation's progress (a stage begun or ended, or a second later)."""
        try:
            with self._sessions() as db:
                lifecycle.report_evaluation(db, self.run_id, point)
        except Exception:  # a lost progress point must not end the run
            _logger.exception("evaluation progress of run %s not stored", self.run_id)


def _test_ids(manifest: dict[str, Any]) -> list[Any] | None:
    """The app's image id of each test image, when the export names the test split."""
    entries = manifest.get("images", [])
    test_entries = [e for e in entries if e.get("split") == "test"]
    if not test_entries or len(test_entries) == len(entries):
        return None
    return [e["id"] for e in test_entries]


def _finish(run_id: int, tail: _TailHandler, state: str, **fields: Any) -> None:
    with get_sessionmaker()() as db:
        lifecycle.finish(db, run_id, state, tail.text(), **fields)


def execute_run(run_id: int, token: str | None, hostname: str) -> str:
    """Train one run end to end on the GPUs it leases here; returns the outcome
    ("succeeded", "cancelled", ...). Raises GpusBusy when too few of them are free."""
    settings = get_settings()
    names = usable_gpus(settings)
    wanted = _gpus_asked(run_id, token)
    lease = None
    if wanted is not None and names:
        if wanted <= len(names):
            lease = gpu_leases.acquire(
                settings.gpu_lease_dir, names, wanted, holder=f"run {run_id} ({hostname})"
            )
        if lease is None:
            _wait_for_gpus(settings, run_id, wanted, names, hostname)
    try:
        return _execute(run_id, token, hostname, lease)
    finally:
        if lease is not None:
            lease.release()


def _devices(lease: gpu_leases.Lease | None, settings: Settings) -> tuple[str, str]:
    """(this process's device, the device in a torchrun child's config). With a lease on a
    CUDA host: the first leased GPU as this process sees it, and cuda:0 for the children (who
    see exactly the leased GPUs; each rank takes cuda:<local rank>)."""
    if lease is None or _cuda_count() == 0:
        device = pick_device()
        return device, device
    visible = gpu_leases.visible_names(settings.cuda_visible_devices, _cuda_count)
    return f"cuda:{gpu_leases.torch_index(lease.names[0], visible)}", "cuda:0"


@dataclass
class _Job:
    """What one delivery of a run trains with, loaded before training starts."""

    run_id: int
    dataset_id: int
    stored: dict[str, Any]  # the run's stored config (the app's references included)
    dataset_hash: str | None
    cfg: runconfig.TrainConfig  # the library's config, paths resolved on this host
    data_dir: Path
    out_dir: Path
    manifest: dict[str, Any]
    device: str  # this process's; a torchrun child's is ranks_device
    ranks_device: str
    lease: gpu_leases.Lease | None
    hostname: str


def _load(run_id: int, storage: Storage, lease: gpu_leases.Lease | None, hostname: str) -> _Job:
    """Load: the run's dataset export (written once), its config for the library, and its
    out folder with the last checkpoint restored from the store (a resume on any host)."""
    with get_sessionmaker()() as db:
        run = db.get(TrainingRun, run_id)
        assert run is not None, "a claimed run exists"
        data_dir = ensure_export(db, storage, run)
        dataset = db.get(Dataset, run.dataset_id)
        device, ranks_device = _devices(lease, get_settings())
        job = _Job(
            run_id=run_id,
            dataset_id=run.dataset_id,
            stored=dict(run.config),
            dataset_hash=dataset.content_hash if dataset else None,
            cfg=library_config(run, storage, data_dir, device),
            data_dir=data_dir,
            out_dir=run_files.out_dir(storage, run.id),
            manifest=json.loads((data_dir / "manifest.json").read_text()),
            device=device,
            ranks_device=ranks_device,
            lease=lease,
            hostname=hostname,
        )
    run_files.restore(storage, run_id, job.out_dir)
    return job


def _train(
    job: _Job, storage: Storage, reporter: _RunReporter, tail: _TailHandler
) -> dict[str, Any]:
    """Call: the library trains the run in this process, or under torchrun on its leased
    GPUs; every epoch's checkpoint is published before the epoch is reported. Returns the
    content of metrics.json."""
    from worker.sipat import train

    def on_epoch(epoch: int, total: int, metrics: dict[str, Any]) -> None:
        run_files.publish_checkpoint(storage, job.run_id, job.out_dir)  # before it is reported
        reporter.on_epoch(epoch, total, metrics)

    cfg, lease = job.cfg, job.lease
    if cfg.gpus > 1:
        _library_logger.info(
            "training on %d processes (torchrun)%s",
            cfg.gpus,
            f", GPUs {lease.cuda_visible_devices}" if lease else "",
        )
        ranks_cfg = dataclasses.replace(cfg, device=job.ranks_device)
        return train_on_ranks(ranks_cfg, job.out_dir, lease, reporter, on_epoch, tail)
    return train(
        cfg,
        job.out_dir,
        on_epoch=on_epoch,
        on_batch=reporter.on_batch,
        should_stop=reporter.should_stop,
        progress=False,
        on_evaluation=reporter.on_evaluation,
    )


def _store_results(job: _Job, storage: Storage, result: dict[str, Any]) -> None:
    """After training: the epochs checkpointed but never reported (their worker died), the
    salience pictures (the run stands without them), and the results published to the
    store."""
    from worker.sipat.salience_samples import write_salience_samples

    with get_sessionmaker()() as db:
        backfilled = lifecycle.report_missing_epochs(db, job.run_id, result.get("history", []))
    if backfilled:
        _library_logger.info("stored %d epoch(s) checkpointed but not reported", backfilled)
    final = result.get("final", {})
    try:
        write_salience_samples(
            job.out_dir,
            job.data_dir,
            job.cfg,
            final.get("salience_agreement"),
            _test_ids(job.manifest),
        )
    except Exception:  # the run stands without its salience pictures
        _logger.exception("salience samples of run %s failed", job.run_id)
    run_files.publish(storage, job.run_id, job.out_dir)


def _reproducibility(job: _Job, result: dict[str, Any], system: dict[str, Any]) -> dict[str, Any]:
    """The run's record of how it was made: seed, code and packages, data and masks, the
    config's fingerprint, the devices and the worker, and the library's runtime choices."""
    cfg = job.cfg
    mask_set = job.manifest.get("mask_set") or {}
    return {
        "seed": cfg.seed,
        "code_version": code_version(),
        "packages": package_versions(),
        "dataset_id": job.dataset_id,
        "dataset_content_hash": job.dataset_hash,
        "mask_set_id": mask_set.get("id"),
        "mask_set_hash": mask_set.get("hash"),
        "mask_fraction": cfg.mask_fraction,
        "mask_source": cfg.mask_source,
        "auto_mask_run_id": job.stored.get("auto_mask_run_id"),
        "igd_teacher_run_id": job.stored.get("igd_teacher_run_id"),
        "train_images_with_map": result.get("train_images_with_map"),
        "batches_per_epoch": result.get("batches_per_epoch"),
        "system": system,
        "config_fingerprint": cfg.fingerprint(),
        "device": job.device if cfg.gpus == 1 or job.ranks_device == "cpu" else "cuda",
        "gpus": cfg.gpus,
        "gpu_ids": job.lease.names if job.lease else None,
        "worker": job.hostname,
        # device name, precision, channels-last, cudnn, compile, data path and workers
        **result.get("runtime", {}),
    }


def _final_metrics(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "final": result.get("final", {}),
        "method": result.get("method"),
        "data": result.get("data"),
        "train_images_with_map": result.get("train_images_with_map"),
    }


@contextmanager
def _library_log() -> Iterator[_TailHandler]:
    """The training library's log lines, kept for the run page while the run trains."""
    tail = _TailHandler()
    _library_logger.addHandler(tail)
    _library_logger.setLevel(logging.INFO)
    try:
        yield tail
    finally:
        _library_logger.removeHandler(tail)


def _execute(run_id: int, token: str | None, hostname: str, lease: gpu_leases.Lease | None) -> str:
    """Claim the run, load what it trains with, call the library, record the outcome (all
    through backend/services/run_lifecycle.py); returns the outcome."""
    from worker.sipat import TrainingCancelled

    settings = get_settings()
    with get_sessionmaker()() as db:
        why_not = lifecycle.claim(db, run_id, token, hostname, settings.run_heartbeat_timeout_s)
    if why_not is not None:
        _logger.info("run %s not started: %s", run_id, why_not)
        return f"skipped: {why_not}"
    storage = get_storage()
    heartbeat_s = max(0.5, min(30.0, settings.run_heartbeat_timeout_s / 4))
    with _library_log() as tail:
        try:
            job = _load(run_id, storage, lease, hostname)
            with _RunReporter(run_id, tail, heartbeat_s) as reporter:
                result = _train(job, storage, reporter, tail)
            _store_results(job, storage, result)
            _finish(
                run_id,
                tail,
                "succeeded",
                progress=1.0,
                final_metrics=_final_metrics(result),
                checkpoint_key=runs_service.run_out_key(run_id),
                reproducibility=_reproducibility(job, result, reporter.system),
            )
            return "succeeded"
        except TrainingCancelled:
            _library_logger.info("cancelled from the dashboard")
            _finish(run_id, tail, "cancelled")
            return "cancelled"
        except Exception as exc:  # any failure ends the run with its message
            _logger.exception("run %s failed", run_id)
            tail.lines.extend(traceback.format_exc().splitlines()[-8:])
            _finish(run_id, tail, "failed", error=f"{type(exc).__name__}: {exc}")
            return "failed"


def train_on_ranks(
    config: runconfig.TrainConfig,
    out_dir: Path,
    lease: gpu_leases.Lease | None,
    reporter: _RunReporter,
    on_epoch: Callable[[int, int, dict[str, Any]], None],
    tail: _TailHandler,
) -> dict[str, Any]:
    """Train under torchrun on config.gpus processes (the leased GPUs, or gloo on CPU) in
    out_dir; relay rank 0's events, turn a cancel into the stop file, and return the content
    of metrics.json. Raises TrainingCancelled, or RanksFailed when a process ended badly
    (the last checkpoint stays: a retry resumes from it)."""
    from worker.sipat import TrainingCancelled

    scratch = get_settings().worker_cache_dir / "ranks"
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"run-{reporter.run_id}-", dir=scratch))
    try:
        (work / "config.json").write_text(json.dumps(config.to_dict()))
        events, stop_file = work / "events.jsonl", work / "stop"
        env = dict(os.environ)  # the worker's own, passed on (CUDA_VISIBLE_DEVICES replaced)
        if lease is not None:
            env["CUDA_VISIBLE_DEVICES"] = lease.cuda_visible_devices

        def log_line(line: str) -> None:
            tail.lines.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}")

        command = ranks_mod.train_command(
            work / "config.json", out_dir, config.gpus, events, stop_file
        )
        ranks = ranks_mod.Ranks(
            command,
            env=env,
            cwd=ROOT,
            on_line=log_line,
            pass_fds=lease.fds if lease else (),  # the GPUs stay leased while torchrun lives
        )
        follower = ranks_mod.EventFollower(events)
        stop_asked: float | None = None
        try:
            while True:
                code = ranks.poll()
                for event in follower.new():
                    if event.get("event") == "epoch":
                        on_epoch(int(event["epoch"]), int(event["total"]), event["metrics"])
                    elif event.get("event") == "batch":
                        reporter.on_batch(event["point"])
                    elif event.get("event") == "evaluation":
                        reporter.on_evaluation(event["point"])
                if code is not None:
                    break
                if stop_asked is None and reporter.should_stop():
                    stop_file.touch()  # rank 0 stops every rank before its next batch
                    stop_asked = time.monotonic()
                elif stop_asked is not None:
                    if time.monotonic() - stop_asked > ranks_mod.CANCEL_GRACE_S:
                        break  # not stopped by the file in time: by signal, below
                time.sleep(RANKS_POLL_S)
        finally:
            code = ranks.stop()  # nothing left running, whatever happened here
        if code == 0:
            metrics: dict[str, Any] = json.loads((out_dir / run_files.METRICS).read_text())
            return metrics
        if stop_asked is not None:
            raise TrainingCancelled("stopped on every rank")
        raise RanksFailed(
            f"{ranks.failure(code)} (a {config.gpus}-process run); retry the run "
            "to resume from its last checkpoint"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# max_retries=None on the task (not in retry(), where None means the default of 3): a run
# waits for its GPUs for as long as it takes
@task(name=TRAIN_TASK, bind=True, acks_late=True, max_retries=None)
def train_run(self: Any, run_id: int, token: str | None = None) -> str:
    """Train a run; idempotent: a finished run is left alone, a running one resumes. A run
    whose GPUs are busy is tried again GPU_WAIT_S later (it stays queued)."""
    try:
        return execute_run(int(run_id), token, self.request.hostname or platform.node())
    except GpusBusy as busy:
        raise self.retry(countdown=get_settings().gpu_wait_s) from busy
