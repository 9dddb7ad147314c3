"""The Celery task that trains one run: a thin adapter between the runs table and worker.sipat.

It loads the run, writes the dataset export once (runs/<id>/data), calls sipat.train with
out_dir runs/<id>/out (the same folder on every delivery, so a re-delivered task resumes from
the last finished epoch), and reports every epoch, a heartbeat and the log tail to the database.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from celery.signals import worker_ready
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from backend.core.config import ROOT, get_settings
from backend.core.queue import TRAIN_TASK
from backend.core.storage import LocalStorage, get_storage
from backend.db import get_engine, get_sessionmaker
from backend.models import Dataset, RunEpoch, TrainingRun, utcnow
from backend.services import runs as runs_service
from worker.celery_app import app

_logger = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5
LOG_LINES = 60
SALIENCE_SAMPLES = 6
FINISHED = ("succeeded", "failed", "cancelled")


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


def package_versions() -> dict[str, str | None]:
    import numpy
    import torch

    try:
        import torchvision

        tv: str | None = torchvision.__version__
    except ImportError:
        tv = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": tv,
        "numpy": numpy.__version__,
    }


def pick_device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _upsert_epoch(db, run_id: int, epoch: int, metrics: dict[str, Any]) -> None:
    dialect = db.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(RunEpoch).values(run_id=run_id, epoch=epoch, metrics=metrics, created_at=utcnow())
    stmt = stmt.on_conflict_do_update(
        index_elements=["run_id", "epoch"], set_={"metrics": metrics, "created_at": utcnow()}
    )
    db.execute(stmt)


def ensure_export(db, storage: LocalStorage, run: TrainingRun) -> Path:
    """runs/<id>/data, written once: into a temp folder, then renamed into place."""
    from backend.services.export import write_training_export

    key = runs_service.run_data_key(run.id)
    target = storage.path(key)
    if (target / "manifest.json").is_file():
        return target
    tmp = storage.path(f"{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_training_export(db, storage, run.dataset_id, run.mask_set_id, tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def _checkpoint_of(storage: LocalStorage, run_id: int | None) -> str | None:
    if run_id is None:
        return None
    return str(storage.path(f"{runs_service.run_out_key(run_id)}/final.pt"))


def library_config(run: TrainingRun, storage: LocalStorage, data_dir: Path, device: str):
    """The run's stored config turned into a sipat.TrainConfig (paths resolved here)."""
    from worker.sipat import TrainConfig

    fields = {k: v for k, v in run.config.items() if k not in runs_service.APP_REFS}
    fields.update(
        data_dir=str(data_dir),
        device=device,
        auto_mask_model=_checkpoint_of(storage, run.config.get("auto_mask_run_id")),
        igd_teacher=_checkpoint_of(storage, run.config.get("igd_teacher_run_id")),
    )
    return TrainConfig.from_dict(fields)


def _png(array, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, "PNG")


def write_salience_samples(
    run: TrainingRun, out_dir: Path, data_dir: Path, cfg, final: dict[str, Any]
) -> None:
    """The model's Grad-CAM next to the human mask on a few test images (PNG) + salience.json."""
    import numpy as np
    import torch

    from worker.sipat import load_data, load_model_from_checkpoint
    from worker.sipat.salience import agreement_with_mask, salience_map

    manifest = json.loads((data_dir / "manifest.json").read_text())
    data = load_data(data_dir, cfg.image_size, cfg.test_fraction, cfg.seed)
    entries = manifest.get("images", [])
    test_entries = [e for e in entries if e.get("split") == "test"]
    has_split = test_entries and len(test_entries) < len(entries)
    model = load_model_from_checkpoint(out_dir / "final.pt", cfg.device)
    test = data.test
    with_map = torch.nonzero(test.has_map).flatten().tolist()
    pick = (with_map or list(range(len(test))))[:SALIENCE_SAMPLES]
    folder = out_dir / "salience"
    folder.mkdir(exist_ok=True)
    samples = []
    if pick:
        x, s, has, y = test.batch(torch.tensor(pick), cfg.device)
        maps = salience_map(model, x, "gradcam", y)
        agree = agreement_with_mask(maps, s)["top_mass_in_mask"] if bool(has.any()) else None
        with torch.no_grad():
            pred = model(x).argmax(1)
        for j, i in enumerate(pick):
            img = (x[j].cpu().permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            _png(img[..., 0] if img.shape[-1] == 1 else img, folder / f"s{j}_image.png")
            _png(
                (maps[j, 0].detach().cpu().numpy() * 255).round().astype(np.uint8),
                folder / f"s{j}_model.png",
            )
            human = None
            if bool(has[j]):
                _png(
                    (s[j, 0].cpu().numpy() * 255).round().astype(np.uint8),
                    folder / f"s{j}_human.png",
                )
                human = f"s{j}_human.png"
            samples.append(
                {
                    "image_id": test_entries[i]["id"]
                    if has_split and i < len(test_entries)
                    else None,
                    "label": data.classes[int(y[j])],
                    "predicted": data.classes[int(pred[j])],
                    "agreement": float(agree[j]) if agree is not None and bool(has[j]) else None,
                    "image": f"s{j}_image.png",
                    "model": f"s{j}_model.png",
                    "human": human,
                }
            )
    record = {"kind": "gradcam", "agreement": final.get("salience_agreement"), "samples": samples}
    (folder / "salience.json").write_text(json.dumps(record, indent=2))


class _RunReporter:
    """Writes progress, heartbeats and the log tail of one run; answers should_stop()."""

    def __init__(self, run_id: int, tail: _TailHandler, heartbeat_s: float) -> None:
        self.run_id = run_id
        self.tail = tail
        self.heartbeat_s = heartbeat_s
        self._sessions = get_sessionmaker()
        self._last_poll = 0.0
        self._cancel = False
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
                    run = db.get(TrainingRun, self.run_id)
                    if run is None or run.state != "running":
                        return
                    run.heartbeat_at = utcnow()
                    run.log_tail = self.tail.text() or run.log_tail
                    db.commit()
            except Exception:  # a missed beat is retried on the next one
                _logger.exception("heartbeat of run %s failed", self.run_id)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if self._cancel or now - self._last_poll < CANCEL_POLL_S:
            return self._cancel
        self._last_poll = now
        with self._sessions() as db:
            flag = db.execute(
                select(TrainingRun.cancel_requested).where(TrainingRun.id == self.run_id)
            ).scalar()
        self._cancel = bool(flag) or flag is None
        return self._cancel

    def on_epoch(self, epoch: int, total: int, metrics: dict[str, Any]) -> None:
        with self._sessions() as db:
            _upsert_epoch(db, self.run_id, epoch, metrics)
            run = db.get(TrainingRun, self.run_id)
            if run is not None:
                run.current_epoch = epoch
                run.total_epochs = total
                run.progress = epoch / max(1, total)
                run.heartbeat_at = utcnow()
                run.log_tail = self.tail.text()
            db.commit()


def _claim(run_id: int, token: str | None, hostname: str) -> str | None:
    """Mark the run running for this delivery; returns why not, or None when claimed."""
    settings = get_settings()
    with get_sessionmaker()() as db:
        run = db.execute(
            select(TrainingRun).where(TrainingRun.id == run_id).with_for_update()
        ).scalar_one_or_none()
        if run is None:
            return "no such run"
        if run.state in FINISHED:
            return f"run already {run.state}"
        if token is not None and run.celery_task_id not in (None, token):
            return "superseded by a newer dispatch"
        if run.state == "running" and run.worker_hostname != hostname:
            beat = runs_service._aware(run.heartbeat_at)
            if (
                beat is not None
                and (utcnow() - beat).total_seconds() < settings.run_heartbeat_timeout_s
            ):
                return f"running on {run.worker_hostname}"
        if run.cancel_requested:
            run.state, run.finished_at = "cancelled", utcnow()
            db.commit()
            return "cancelled before it started"
        resumed = run.current_epoch
        run.state = "running"
        run.started_at = utcnow()
        run.heartbeat_at = utcnow()
        run.worker_hostname = hostname
        run.attempts += 1
        run.error = None
        runs_service._append_log(
            run,
            f"Started on {hostname} (attempt {run.attempts})"
            + (f", resuming after epoch {resumed}." if resumed else "."),
        )
        db.commit()
    return None


def _finish(run_id: int, tail: _TailHandler, **fields: Any) -> None:
    with get_sessionmaker()() as db:
        run = db.get(TrainingRun, run_id)
        if run is None:
            return
        for k, v in fields.items():
            setattr(run, k, v)
        run.finished_at = utcnow()
        run.heartbeat_at = utcnow()
        lines = (tail.text() or "").splitlines()
        if fields.get("error"):
            lines.append(f"ERROR {fields['error']}")
        run.log_tail = "\n".join(lines[-LOG_LINES:]) or run.log_tail
        db.commit()


def execute_run(run_id: int, token: str | None, hostname: str) -> str:
    """Train one run end to end; returns the outcome ("succeeded", "cancelled", ...)."""
    from worker.sipat import TrainingCancelled, train

    why_not = _claim(run_id, token, hostname)
    if why_not is not None:
        _logger.info("run %s not started: %s", run_id, why_not)
        return f"skipped: {why_not}"
    settings = get_settings()
    storage = get_storage()
    tail = _TailHandler()
    lib_logger = logging.getLogger("worker.sipat")
    lib_logger.addHandler(tail)
    lib_logger.setLevel(logging.INFO)
    heartbeat_s = max(0.5, min(30.0, settings.run_heartbeat_timeout_s / 4))
    try:
        with get_sessionmaker()() as db:
            run = db.get(TrainingRun, run_id)
            assert run is not None
            data_dir = ensure_export(db, storage, run)
            dataset = db.get(Dataset, run.dataset_id)
            dataset_hash = dataset.content_hash if dataset else None
            device = pick_device()
            cfg = library_config(run, storage, data_dir, device)
            out_dir = storage.path(runs_service.run_out_key(run.id))
            db.expunge(run)
        manifest = json.loads((data_dir / "manifest.json").read_text())
        with _RunReporter(run_id, tail, heartbeat_s) as reporter:
            result = train(
                cfg,
                out_dir,
                on_epoch=reporter.on_epoch,
                should_stop=reporter.should_stop,
                progress=False,
            )
        final = result.get("final", {})
        try:
            write_salience_samples(run, out_dir, data_dir, cfg, final)
        except Exception:  # the run stands without its salience pictures
            _logger.exception("salience samples of run %s failed", run_id)
        mask_set = manifest.get("mask_set") or {}
        reproducibility = {
            "seed": cfg.seed,
            "code_version": code_version(),
            "packages": package_versions(),
            "dataset_id": run.dataset_id,
            "dataset_content_hash": dataset_hash,
            "mask_set_id": mask_set.get("id"),
            "mask_set_hash": mask_set.get("hash"),
            "mask_fraction": cfg.mask_fraction,
            "mask_source": cfg.mask_source,
            "auto_mask_run_id": run.config.get("auto_mask_run_id"),
            "igd_teacher_run_id": run.config.get("igd_teacher_run_id"),
            "train_images_with_map": result.get("train_images_with_map"),
            "config_fingerprint": cfg.fingerprint(),
            "device": device,
            "worker": hostname,
            # device name, precision, channels-last, cudnn, compile, data path and workers
            **result.get("runtime", {}),
        }
        final_metrics = {
            "final": final,
            "method": result.get("method"),
            "data": result.get("data"),
            "train_images_with_map": result.get("train_images_with_map"),
        }
        _finish(
            run_id,
            tail,
            state="succeeded",
            progress=1.0,
            final_metrics=final_metrics,
            checkpoint_key=runs_service.run_out_key(run_id),
            reproducibility=reproducibility,
        )
        return "succeeded"
    except TrainingCancelled:
        lib_logger.info("cancelled from the dashboard")
        _finish(run_id, tail, state="cancelled")
        return "cancelled"
    except Exception as exc:  # any failure ends the run with its message
        _logger.exception("run %s failed", run_id)
        tail.lines.extend(traceback.format_exc().splitlines()[-8:])
        _finish(run_id, tail, state="failed", error=f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        lib_logger.removeHandler(tail)


@app.task(name=TRAIN_TASK, bind=True, acks_late=True)
def train_run(self, run_id: int, token: str | None = None) -> str:
    """Train a run; idempotent: a finished run is left alone, a running one resumes."""
    return execute_run(int(run_id), token, self.request.hostname or platform.node())


@worker_ready.connect
def _requeue_orphans_at_start(sender=None, **_: Any) -> None:
    """A worker that just started runs nothing yet: runs it was running before are orphans."""
    hostname = getattr(sender, "hostname", None)
    try:
        with get_sessionmaker()() as db:
            runs_service.requeue_orphans(db, get_settings(), hostname=hostname)
    except Exception:  # never keep a worker from starting
        _logger.exception("orphan check at worker start failed")
    finally:
        # prefork children must not share the parent's connections
        get_engine().dispose()
