"""A finished run's files as the API offers them: its downloads and its salience samples."""

from __future__ import annotations

import json
from typing import Any

from backend.core.storage import Storage
from backend.models import TrainingRun
from backend.services.runs import run_out_key

DOWNLOADS = {"final.pt": "application/octet-stream", "metrics.json": "application/json"}


def salience_summary(run: TrainingRun, storage: Storage) -> dict[str, Any]:
    """What the worker wrote to out/salience/salience.json, with URLs for its PNGs."""
    key = f"{run_out_key(run.id)}/salience/salience.json"
    if not storage.exists(key):
        return {"available": False}
    record = json.loads(storage.get_bytes(key))
    base = f"/api/runs/{run.id}/salience/"
    samples = [
        {
            "image_id": s.get("image_id"),
            "label": s.get("label", ""),
            "predicted": s.get("predicted"),
            "agreement": s.get("agreement"),
            "image_url": base + s["image"],
            "model_url": base + s["model"],
            "human_url": base + s["human"] if s.get("human") else None,
        }
        for s in record.get("samples", [])
    ]
    return {
        "available": True,
        "kind": record.get("kind"),
        "agreement": record.get("agreement"),
        "samples": samples,
    }
