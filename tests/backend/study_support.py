"""Shared builders for the study tests: a tiny classifier trained with the real training library
(once per test run), a dataset of images it was not trained on, finished TrainingRun rows
pointing at the checkpoint, and studies whose stimuli are made by the real worker function."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

SIZE = 16
CLASSES = ("a", "b")


def pattern_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n RGB images (n x 3 x SIZE x SIZE uint8): faint horizontal stripes (class 0) or
    vertical stripes (class 1) on a random grey, so a small CNN learns them fast and PGD
    at a few grey levels fools it."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    t = np.arange(SIZE)
    for i in range(n):
        label = i % 2
        base = rng.uniform(0.3, 0.7)
        s = 0.08 * np.sin(2 * np.pi * t / 4 + rng.uniform(0, 2 * np.pi))
        pat = np.tile(s[:, None], (1, SIZE)) if label == 0 else np.tile(s[None, :], (SIZE, 1))
        img = base + pat[None] + rng.normal(0, 0.01, (3, SIZE, SIZE))
        xs.append(np.clip(np.round(img * 255), 0, 255).astype(np.uint8))
        ys.append(label)
    return np.stack(xs), np.array(ys)


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """A folder with final.pt (and metrics.json) of a standard-trained small CNN: trained once
    per test run and shared by every process of it (tests read it, none changes it)."""
    from tests.conftest import shared_across_processes

    return shared_across_processes("tiny-checkpoint", _train_tiny_checkpoint)


def _train_tiny_checkpoint(out: Path) -> None:
    # the submodules directly: `worker.sipat.train` (the module) can shadow the lazy `train`
    from worker.sipat.config import TrainConfig
    from worker.sipat.data import DataBundle, TensorSet
    from worker.sipat.train import train

    x, y = pattern_images(96, seed=0)

    def ts(a: np.ndarray, b: np.ndarray) -> TensorSet:
        n = len(b)
        return TensorSet(
            torch.from_numpy(a),
            torch.zeros(n, 1, SIZE, SIZE, dtype=torch.uint8),
            torch.zeros(n, dtype=torch.bool),
            torch.from_numpy(b).long(),
        )

    bundle = DataBundle(ts(x[:64], y[:64]), ts(x[64:], y[64:]), list(CLASSES))
    cfg = TrainConfig(
        method="standard",
        epochs=10,
        batch_size=16,
        lr=0.05,
        augment=False,
        eval_eps=[2 / 255, 8 / 255],
        eval_subset=32,
        eval_steps=5,
        # no AutoAttack at the end: the tests that use this model ask for what they measure
        # (Square's 5,000 queries on its robust images cost about 40 CPU-seconds per test run)
        autoattack_n=0,
        threads=1,
    )
    train(cfg, out, data=bundle, progress=False)


def png_bytes(chw: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(chw.transpose(1, 2, 0), "RGB").save(buf, "PNG")
    return buf.getvalue()


def make_dataset(db, n: int = 40, seed: int = 1, name: str = "stripes") -> tuple[int, list[int]]:
    """A dataset of n test-split images (unseen by the model); returns (dataset id, image ids)."""
    import hashlib

    from backend.core.storage import get_storage
    from backend.models import Dataset, DatasetClass, Image

    storage = get_storage()
    ds = Dataset(name=name)
    db.add(ds)
    db.flush()
    classes = []
    for i, c in enumerate(CLASSES):
        dc = DatasetClass(dataset_id=ds.id, name=c, index=i)
        db.add(dc)
        classes.append(dc)
    db.flush()
    x, y = pattern_images(n, seed)
    ids = []
    for i in range(n):
        data = png_bytes(x[i])
        key = f"datasets/{ds.id}/images/{i:04d}.png"
        storage.put_bytes(key, data)
        img = Image(
            dataset_id=ds.id,
            class_id=classes[int(y[i])].id,
            filename=f"{CLASSES[y[i]]}/{i}.png",
            storage_key=key,
            width=SIZE,
            height=SIZE,
            mode="RGB",
            sha256=hashlib.sha256(data).hexdigest(),
            split="test",
        )
        db.add(img)
        db.flush()
        ids.append(img.id)
    db.commit()
    return ds.id, ids


def make_run(
    db, dataset_id: int, checkpoint_dir: Path, name: str = "standard run", state: str = "succeeded"
) -> int:
    """A finished TrainingRun whose output folder (in storage) holds the checkpoint."""
    import json

    from backend.core.storage import get_storage
    from backend.models import TrainingRun

    run = TrainingRun(
        name=name,
        dataset_id=dataset_id,
        method="standard",
        config={"image_size": SIZE, "method": "standard"},
        state=state,
    )
    db.add(run)
    db.flush()
    key = f"runs/{run.id}"
    get_storage().put_file(f"{key}/final.pt", checkpoint_dir / "final.pt")
    metrics = json.loads((checkpoint_dir / "metrics.json").read_text())
    run.checkpoint_key = key
    run.final_metrics = {"final": metrics["final"], "method": metrics.get("method")}
    db.commit()
    return run.id


def study_body(run_ids: list[int], name: str = "detect") -> dict:
    """A small 2AFC study of these runs, as POST /api/studies takes it."""
    return {
        "name": name,
        "design": "2afc",
        "run_ids": run_ids,
        "num_random_images": 12,
        "epsilons_255": [0, 4, 16],
        "trials_per_condition": 1,
        "catch_trials": 1,
        "practice_trials": 2,
        "attack": {"steps": 10, "alpha_ratio": 0.25},
        "catch_epsilon_255": 32,
        "seed": 3,
        "autoattack_images": 0,  # PGD only beside the people: AutoAttack costs minutes here
    }


def ready_study(
    client,
    headers,
    db,
    run_ids: list[int],
    *,
    generate: bool = True,
    open_: bool = True,
    autoattack_images: int = 0,
    **overrides,
) -> dict:
    """Create a study through the API, make its stimuli with the worker function, open it.
    AutoAttack beside PGD runs on `autoattack_images` main images (the study's setting); 0,
    the default here, skips it: on the tiny model's robust images each epsilon costs Square's
    5,000 queries, and most tests do not look at it."""
    from backend.core.storage import get_storage
    from backend.models import Study
    from worker.study_tasks import generate_stimuli

    body = study_body(run_ids, name=overrides.pop("name", "detect"))
    body.update(overrides, autoattack_images=autoattack_images)
    r = client.post("/api/studies", json=body, headers=headers)
    assert r.status_code == 201, r.text
    study = r.json()
    if generate:
        generate_stimuli(db, get_storage(), study["id"])
        if open_:
            r = client.post(f"/api/studies/{study['id']}/open", headers=headers)
            assert r.status_code == 200, r.text
        db.expire_all()
        study = client.get(f"/api/studies/{study['id']}", headers=headers).json()
        assert db.get(Study, study["id"]) is not None
    return study


def analysed_results(client, headers, study_id: int) -> dict:
    """GET a study's results once its background analysis has caught up with the answers:
    the first GET schedules the refresh if needed, the refresher is drained, and the second
    GET must report the analysis current."""
    from backend.services.studies import analysis_cache

    url = f"/api/studies/{study_id}/results"
    assert client.get(url, headers=headers).status_code == 200
    assert analysis_cache.wait_idle(timeout=300)
    res = client.get(url, headers=headers).json()
    assert res["analysis"]["state"] == "current", res["analysis"]
    return res
