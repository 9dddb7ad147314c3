"""Masks in fewer strokes: the assisted tools against the brush, scripted in Chromium (issue 28).

    python -m backend.benchmarks.annotation_tools [--images 4] [--size 320x240]

Starts the app with uvicorn (a subprocess) on a fresh SQLite database and storage folder of its
own (nothing shared is touched), imports a dataset of CUB-style images made here, and has one
annotator reproduce each image's object mask on the real annotate page, in Chromium through
Playwright, once per policy below, counting pointer actions until the drawn mask reaches
IoU >= 0.9 with the target. Then it times the magic wand's live preview on a 2048 x 2048
image. It prints one JSON line:
    {"bench": "annotation_tools", "wand_preview_ms": ..., "actions_ratio": ..., ...}
Goals (the issue's): actions_ratio <= 1/3 and wand_preview_ms < 50. Exit status 1 when a goal
is missed or a policy never reached the IoU.

The images: a bird of three ellipses (body, head, tail; the head another colour) on a
background of smooth colour gradients, every pixel with uniform noise of +-10 per channel;
320 x 240 by default (CUB's images are about 500 x 375), the target is the bird's pixels. Those
birds are flat-coloured under their noise, which suits the wand; so the same birds are measured
again with striped plumage (diagonal stripes of +-30 and +-10 more noise on the bird), reported
as striped_* and not part of the goals: real photos are closer to these, and the tools gain
much less there (see the commit message that last changed this file).

The policies (a pointer action is one press of the button, held or not, or one notch of the
wheel; moving the pointer is free). They were written here before measuring; the wand's and
the superpixels' first versions (v1, below) were replaced once after the first run, for the
reasons given, and the brush's is unchanged:
  brush        the default brush (4 % of the shorter side). One stroke traces the outline of
               the target shrunk by the brush radius; then one stroke per row band fills it:
               rows a brush diameter apart from the top, each run of the shrunk target on the
               row one stroke from its left end to its right end.
  wand         repeat, at most 6 times: click the uncovered target pixel farthest from the
               uncovered part's edge (a distance transform): the wand fills its region at
               once. If under 90 % of the pixels it added lie in the target (it leaks), wheel
               down a notch (tolerance - 4) at a time until they do or the tolerance is 0.
               Else, while it adds under half of the uncovered target around the seed (its
               4-connected component), wheel up a notch at a time, and wheel one back if a
               notch leaks. Stop when a region adds under 1 % of the target.
  superpixels  medium superpixels (20 across the shorter side, so a side s = shorter / 20).
               One stroke traces the outline of the target shrunk by s / 4 (it crosses the
               superpixels along the edge from inside); then one stroke per row band through
               the target shrunk by s / 2, rows s apart from the top, each run one stroke.
  tools        the wand's policy, then the superpixels' policy over what is still uncovered:
               what "the tools together" means in actions_ratio (tools' actions / brush's,
               summed over the images). wand_ratio and superpixel_ratio are each alone.
  v1 (replaced after the first run, 1 image): the wand previewed first and applied with a second
  click, and its policy wheeled up while the preview stayed 90 % inside, up to 8 notches, even
  when the region was already whole (2.0 times the brush's actions, IoU 1.0); the superpixels
  had no outline stroke and stopped at IoU 0.848 after their rows. The wand now fills at the
  click and its wheel adjusts that region in place (one action fewer per region), and both
  policies adjust or trace only where the target needs it.
Every policy starts on a freshly loaded page with the mask cleared (so nothing one policy tuned,
such as the wand's tolerance, carries over) and stops at the first action after which
IoU >= 0.9.

wand_preview_ms: on a 2048 x 2048 image of the same kind, the wand clicked in the background (the
largest region), then 20 wheel notches alternately up and down dispatched on the viewport; for
each, from the event's dispatch to the next animation frame, whose first callback uploads the
changed pixels to the mask canvas (so that frame shows the new region); the median.
wand_preview_work_ms: the handler alone (median); wand_click_ms: the click, from the press to
the next frame (the tolerance map of the whole image and the first fill), median of 3.

Measured on the development machine (2 shared cores, Chromium headless): see the commit message
that last changed this file.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
PASSWORDS = {"researcher": "bench-researcher-pass", "annotator": "bench-annotator-pass"}
GOAL_IOU = 0.9
GOAL_RATIO = 1 / 3
GOAL_PREVIEW_MS = 50.0
MAX_ACTIONS = 300

READ_CANVAS = """(sel) => {
  const c = document.querySelector(sel);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const bits = new Uint8Array(c.width * c.height);
  for (let i = 0; i < bits.length; i++) bits[i] = d[i * 4 + 3] >= 128 ? 1 : 0;
  let s = '';
  for (let i = 0; i < bits.length; i += 8192) {
    s += String.fromCharCode(...bits.subarray(i, i + 8192));
  }
  return btoa(s);
}"""

# one wheel notch on the viewport, from dispatch to the next frame and the handler alone
WHEEL_TIMING = """async (deltaY) => {
  const el = document.querySelector('.canvas-host');
  const r = el.getBoundingClientRect();
  const ev = new WheelEvent('wheel', { deltaY, bubbles: true, cancelable: true,
    clientX: r.left + r.width / 2, clientY: r.top + r.height / 2 });
  const t0 = performance.now();
  el.dispatchEvent(ev);
  const t1 = performance.now();
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  return [performance.now() - t0, t1 - t0];
}"""


# ---------------------------------------------------------------------------- images


def bird_image(width: int, height: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A CUB-style image: (H x W x 3 uint8, the bird's H x W bool mask)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / width, y / height
    c0, c1, c2 = (rng.uniform(40, 200, 3) for _ in range(3))
    background = c0 * (1 - u)[..., None] + c1 * u[..., None]
    background = background * (1 - v / 2)[..., None] + c2 * (v / 2)[..., None]
    cx, cy = rng.uniform(0.4, 0.6) * width, rng.uniform(0.45, 0.6) * height
    scale = min(width, height) * rng.uniform(0.22, 0.3)

    def ellipse(ex: float, ey: float, rx: float, ry: float) -> np.ndarray:
        return np.asarray(((x - ex) / rx) ** 2 + ((y - ey) / ry) ** 2 <= 1)

    body = ellipse(cx, cy, 1.4 * scale, 0.8 * scale)
    head = ellipse(cx + 1.3 * scale, cy - 0.8 * scale, 0.5 * scale, 0.45 * scale)
    tail = ellipse(cx - 1.6 * scale, cy + 0.35 * scale, 0.7 * scale, 0.22 * scale)
    body_colour = (background.mean(axis=(0, 1)) + 110) % 256
    head_colour = (body_colour + rng.uniform(60, 120, 3)) % 256
    rgb = background.copy()
    rgb[body | tail] = body_colour
    rgb[head] = head_colour
    rgb += rng.uniform(-10, 10, rgb.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8), body | head | tail


def textured(rgb: np.ndarray, target: np.ndarray, seed: int) -> np.ndarray:
    """The bird with plumage: diagonal stripes of +-30 across it, and +-10 more noise."""
    height, width = target.shape
    rng = np.random.default_rng(1000 + seed)
    y, x = np.mgrid[0:height, 0:width]
    stripes = 30 * np.sin((x + 0.5 * y) / max(3, min(width, height) / 40))
    extra = np.where(target[..., None], stripes[..., None], 0) + rng.uniform(-10, 10, rgb.shape)
    return np.clip(rgb.astype(np.float64) + extra, 0, 255).astype(np.uint8)


def _zip(images: list[np.ndarray]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, rgb in enumerate(images):
            png = io.BytesIO()
            Image.fromarray(rgb).save(png, "PNG")
            zf.writestr(f"bird/{i:03d}.png", png.getvalue())
    return buf.getvalue()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 1.0


def row_runs(mask: np.ndarray, step: float, first: float) -> list[tuple[int, int, int]]:
    """(y, x_start, x_end) of every run of mask on rows first, first + step, ... (top down)."""
    out = []
    y = first
    while y < mask.shape[0]:
        row = mask[int(y)]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        out += [(int(y), int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]
        y += step
    return out


def shrink(mask: np.ndarray, by: float) -> np.ndarray:
    from scipy import ndimage

    return np.asarray(ndimage.distance_transform_edt(mask) > by)


# ---------------------------------------------------------------------------- the page


class Annotator:
    """The annotate page of one image, driven like a person: presses, drags, wheel notches."""

    def __init__(self, page: Any, width: int, height: int) -> None:
        self.page = page
        self.width = width
        self.height = height
        self.actions = 0

    def _to_page(self, p: tuple[float, float]) -> tuple[float, float]:
        box = self.page.locator(".mc-mask").bounding_box()
        sx, sy = box["width"] / self.width, box["height"] / self.height
        return box["x"] + (p[0] + 0.5) * sx, box["y"] + (p[1] + 0.5) * sy

    def stroke(self, points: list[tuple[float, float]]) -> None:
        mouse = self.page.mouse
        mouse.move(*self._to_page(points[0]))
        mouse.down()
        for p in points[1:]:
            mouse.move(*self._to_page(p), steps=2)
        mouse.up()
        self.actions += 1

    def click(self, p: tuple[float, float]) -> None:
        self.page.mouse.click(*self._to_page(p))
        self.actions += 1

    def wheel(self, notches: int) -> None:
        x, y = self._to_page((self.width / 2, self.height / 2))
        self.page.mouse.move(x, y)
        for _ in range(abs(notches)):
            self.page.mouse.wheel(0, -100 if notches > 0 else 100)
            self.actions += 1

    def read(self, selector: str = ".mc-mask") -> np.ndarray:
        self.page.evaluate("() => new Promise((r) => requestAnimationFrame(() => r()))")
        raw = base64.b64decode(self.page.evaluate(READ_CANVAS, selector))
        return np.frombuffer(raw, np.uint8).reshape(self.height, self.width).astype(bool)

    def key(self, name: str) -> None:
        self.page.keyboard.press(name)


def brush_policy(a: Annotator, target: np.ndarray, done: Callable[[], bool]) -> None:
    from skimage.measure import find_contours

    size = int(a.page.locator("input[data-size=brush]").input_value())
    r = size / 2
    a.key("b")
    inner = shrink(target, r)
    contours = find_contours(  # type: ignore[no-untyped-call]
        inner.astype(float), 0.5
    )
    if contours:
        outline = max(contours, key=len)[::3]
        a.stroke([(float(p[1]), float(p[0])) for p in outline] + [(outline[0][1], outline[0][0])])
        if done():
            return
    for y, x0, x1 in row_runs(inner, size, first=r):
        a.stroke([(x0, y), (x1, y)])
        if done() or a.actions >= MAX_ACTIONS:
            return


def wand_policy(a: Annotator, target: np.ndarray, done: Callable[[], bool]) -> None:
    from scipy import ndimage

    a.key("w")
    for _ in range(6):
        before = a.read()
        uncovered = target & ~before
        if not uncovered.any():
            return
        dist = ndimage.distance_transform_edt(uncovered)
        sy, sx = np.unravel_index(int(np.argmax(dist)), dist.shape)
        components, _ = ndimage.label(uncovered)
        around_seed = components == components[sy, sx]
        a.click((float(sx), float(sy)))

        def added(
            before: np.ndarray = before, around: np.ndarray = around_seed
        ) -> tuple[float, float]:
            """(share of the added pixels inside the target, share of around covered)"""
            new = a.read() & ~before
            inside = float((new & target).sum() / max(1, new.sum()))
            return inside, float((new & around).sum() / around.sum())

        inside, covered = added()
        if inside < GOAL_IOU:
            while (
                inside < GOAL_IOU and a.page.locator("input[name=tolerance]").input_value() != "0"
            ):
                a.wheel(-1)
                inside, covered = added()
        else:
            while covered < 0.5:
                a.wheel(1)
                inside, covered = added()
                if inside < GOAL_IOU:
                    a.wheel(-1)
                    break
        if done():
            return
        if int((a.read() & target).sum()) - int((before & target).sum()) < 0.01 * target.sum():
            return


def superpixel_policy(a: Annotator, target: np.ndarray, done: Callable[[], bool]) -> None:
    from skimage.measure import find_contours

    a.key("s")
    a.page.wait_for_function("() => document.querySelector('.superpixel-state').textContent === ''")
    side = min(a.width, a.height) / 20  # medium: 20 superpixels across the shorter side
    todo = target & ~a.read()
    contours = find_contours(  # type: ignore[no-untyped-call]
        shrink(todo, side / 4).astype(float), 0.5
    )
    if contours:
        outline = max(contours, key=len)[::3]
        a.stroke([(float(p[1]), float(p[0])) for p in outline] + [(outline[0][1], outline[0][0])])
        if done():
            return
    for y, x0, x1 in row_runs(shrink(todo, side / 2), side, first=side / 2):
        a.stroke([(x0, y), (x1, y)])
        if done() or a.actions >= MAX_ACTIONS:
            return


def tools_policy(a: Annotator, target: np.ndarray, done: Callable[[], bool]) -> None:
    wand_policy(a, target, done)
    if not done():
        superpixel_policy(a, target, done)


POLICIES: dict[str, Callable[[Annotator, np.ndarray, Callable[[], bool]], None]] = {
    "brush": brush_policy,
    "wand": wand_policy,
    "superpixels": superpixel_policy,
    "tools": tools_policy,
}


def run_policy(
    page: Any, name: str, target: np.ndarray, image_id: int, dataset_id: int
) -> tuple[int, float]:
    """A freshly loaded page (every tool at its default: nothing one policy tuned, such as the
    wand's tolerance, carries over to the next), the mask cleared, then the policy; (pointer
    actions, IoU reached)."""
    height, width = target.shape
    _open(page, image_id, dataset_id)
    page.keyboard.press("Delete")
    a = Annotator(page, width, height)
    reached = [0.0]

    def done() -> bool:
        reached[0] = iou(a.read(), target)
        return reached[0] >= GOAL_IOU

    POLICIES[name](a, target, done)
    done()
    return a.actions, reached[0]


# ---------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _prepare(folder: Path) -> str:
    """A migrated SQLite database with a researcher and an annotator; its URL."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.orm import Session

    from backend.core.security import hash_password
    from backend.db import make_engine
    from backend.models import User

    url = f"sqlite:///{folder / 'bench.db'}"
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    engine = make_engine(url)
    with Session(engine) as db:
        for role, password in PASSWORDS.items():
            db.add(User(username=role, password_hash=hash_password(password), role=role))
        db.commit()
    engine.dispose()
    return url


def _start_server(url: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    env = dict(
        os.environ,
        DATABASE_URL=url,
        ENVIRONMENT="test",
        STORAGE_DIR=str(folder / "storage"),
        STORAGE_URL="",
        SECRET_KEY="bench-secret-key-not-for-production",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1"]
        + ["--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited while starting")
        try:
            if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def _import(base: str, name: str, images: list[np.ndarray]) -> tuple[int, list[int]]:
    """Import the images as a dataset (as the researcher); (dataset id, image ids in order)."""
    import httpx

    with httpx.Client(base_url=base, timeout=300) as http:
        r = http.post(
            "/api/auth/login",
            json={"username": "researcher", "password": PASSWORDS["researcher"]},
        )
        r.raise_for_status()
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = http.post(
            "/api/datasets/import",
            headers=auth,
            data={"name": name},
            files={"file": ("birds.zip", _zip(images), "application/zip")},
        )
        r.raise_for_status()
        dataset_id = int(r.json()["id"])
        rows = http.get(f"/api/datasets/{dataset_id}/images", headers=auth).json()["data"]
        return dataset_id, [int(i["id"]) for i in sorted(rows, key=lambda i: i["filename"])]


def _open(page: Any, image_id: int, dataset_id: int) -> None:
    page.goto(f"/#/annotate/{image_id}?dataset={dataset_id}")
    page.reload()  # a hash change alone would not remount when only the image differs
    page.wait_for_selector(".mc-mask")
    page.keyboard.press("0")  # fitted to the window


def _preview_timing(page: Any, image_id: int, dataset_id: int, side: int) -> dict[str, float]:
    _open(page, image_id, dataset_id)
    page.keyboard.press("w")
    box = page.locator(".mc-mask").bounding_box()
    clicks = []
    for _ in range(3):
        page.keyboard.press("Escape")
        t0 = time.perf_counter()
        page.mouse.click(box["x"] + 3, box["y"] + 3)  # the background, the largest region
        page.evaluate("() => new Promise((r) => requestAnimationFrame(() => r()))")
        clicks.append(1000 * (time.perf_counter() - t0))
    frames, work = [], []
    for i in range(20):
        to_frame, handler = page.evaluate(WHEEL_TIMING, -100 if i % 2 == 0 else 100)
        frames.append(float(to_frame))
        work.append(float(handler))
    assert page.locator(".mc-mask").evaluate("(c) => c.width") == side
    return {
        "wand_preview_ms": round(statistics.median(frames), 1),
        "wand_preview_work_ms": round(statistics.median(work), 1),
        "wand_click_ms": round(statistics.median(clicks), 1),
    }


def _measure(
    page: Any, dataset_id: int, image_ids: list[int], targets: list[np.ndarray]
) -> tuple[dict[str, list[int]], dict[str, list[float]]]:
    """Every policy on every image: (pointer actions, IoU reached) per policy, image by image."""
    counts: dict[str, list[int]] = {name: [] for name in POLICIES}
    reached: dict[str, list[float]] = {name: [] for name in POLICIES}
    for image_id, target in zip(image_ids, targets, strict=True):
        for name in POLICIES:
            n, value = run_policy(page, name, target, image_id, dataset_id)
            counts[name].append(n)
            reached[name].append(value)
    return counts, reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", default="320x240", help="width x height of the images")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="sipat-bench-tools-"))
    url = _prepare(folder)
    proc, base = _start_server(url, folder)
    birds = [bird_image(width, height, seed) for seed in range(args.images)]
    striped = [textured(rgb, target, seed) for seed, (rgb, target) in enumerate(birds)]
    try:
        dataset_id, image_ids = _import(base, "birds", [rgb for rgb, _ in birds])
        striped_dataset, striped_ids = _import(base, "striped birds", striped)
        big_dataset, (big_id,) = _import(base, "big bird", [bird_image(2048, 2048, 99)[0]])
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=os.environ.get("CHROMIUM_PATH", CHROMIUM),
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            ctx = browser.new_context(base_url=base, viewport={"width": 1400, "height": 900})
            ctx.set_default_timeout(60_000)
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/#/login")
            page.fill("input[name=username]", "annotator")
            page.fill("input[name=password]", PASSWORDS["annotator"])
            page.click("button[type=submit]")
            page.wait_for_selector(".app-header .user-name")
            targets = [target for _, target in birds]
            counts, reached = _measure(page, dataset_id, image_ids, targets)
            counts_striped, reached_striped = _measure(page, striped_dataset, striped_ids, targets)
            timing = _preview_timing(page, big_id, big_dataset, 2048)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    brush = sum(counts["brush"])
    ratio = {name: sum(counts[name]) / brush for name in POLICIES}
    striped_ratio = sum(counts_striped["tools"]) / sum(counts_striped["brush"])
    all_reached = all(v >= GOAL_IOU for values in reached.values() for v in values)
    line = {
        "bench": "annotation_tools",
        "wand_preview_ms": timing["wand_preview_ms"],
        "actions_ratio": round(ratio["tools"], 3),
        "wand_ratio": round(ratio["wand"], 3),
        "superpixel_ratio": round(ratio["superpixels"], 3),
        "actions": {name: counts[name] for name in POLICIES},
        "min_iou": {name: round(min(reached[name]), 3) for name in POLICIES},
        "wand_preview_work_ms": timing["wand_preview_work_ms"],
        "wand_click_ms": timing["wand_click_ms"],
        "images": f"{args.images} x {width}x{height}, preview on 2048x2048",
        # not a goal: the same birds with striped plumage (what real photos are closer to)
        "striped_actions_ratio": round(striped_ratio, 3),
        "striped_actions": {name: counts_striped[name] for name in POLICIES},
        "striped_min_iou": {name: round(min(reached_striped[name]), 3) for name in POLICIES},
    }
    met = (
        all_reached and ratio["tools"] <= GOAL_RATIO and timing["wand_preview_ms"] < GOAL_PREVIEW_MS
    )
    line["goals_met"] = met
    sys.stdout.write(json.dumps(line) + "\n")
    if errors:
        sys.stderr.write(f"JavaScript errors on the page: {errors[:3]}\n")
    return 0 if met and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
