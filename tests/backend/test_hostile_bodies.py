"""Hostile bodies against the real server (uvicorn on PostgreSQL): each is refused with a
4xx and a sentence, the server's resident memory stays bounded while ten of them arrive at
once, /health keeps answering, and nothing is stored."""

from __future__ import annotations

import base64
import io
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import seed_live_world

# it times /api/health under its own load: alone, not beside the other test processes
pytestmark = [pytest.mark.slow, pytest.mark.serial]

MEMORY_BOUND_MIB = 400  # growth of the server's resident memory while the bodies arrive


def _server_pid(base: str) -> int:
    port = base.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"uvicorn" in b" ".join(cmd) and port.encode() in cmd:
            return int(proc.name)
    raise AssertionError(f"no uvicorn process on port {port}")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _zip_bomb(entry_mib: int, name: str = "cat/a.png") -> bytes:
    """A zip whose one image entry expands to entry_mib MiB of zeros (about 1/1000 of it
    compressed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open(name, "w") as f:
        chunk = bytes(2**20)
        for _ in range(entry_mib):
            f.write(chunk)
    return buf.getvalue()


def _padded_mask_png(size: int = 64, extra: int = 5 * 2**20) -> str:
    """A valid size x size binary PNG with a multi-megabyte IDAT (zeros appended to the
    stream's stored blocks are not possible; a second IDAT chunk of junk is)."""
    out = io.BytesIO()
    Image.new("L", (size, size), 0).save(out, "PNG")
    png = out.getvalue()
    junk = bytes(extra)
    chunk = struct.pack(">I", len(junk)) + b"IDAT" + junk
    chunk += struct.pack(">I", zlib.crc32(b"IDAT" + junk) & 0xFFFFFFFF)
    iend = png.rindex(b"IEND") - 4
    return base64.b64encode(png[:iend] + chunk + png[iend:]).decode()


@pytest.fixture(scope="module")
def bodies(live_server):
    world = seed_live_world(live_server, "victim", size=64)
    tokens, dataset = world["headers"], world["dataset"]
    images = httpx.get(
        f"{live_server}/api/datasets/{dataset['id']}/images", headers=tokens["researcher"]
    ).json()["data"]
    return {
        "tokens": tokens,
        "dataset": dataset,
        "image": images[0],
        "bomb": _zip_bomb(300),
        # one entry named after a real image of the dataset, so that the import reads it
        "mask-bomb": _zip_bomb(300, images[0]["filename"].rsplit(".", 1)[0] + ".png"),
    }


def _send(base: str, kind: str, b: dict) -> httpx.Response:
    t = b["tokens"]
    with httpx.Client(base_url=base, timeout=120) as c:
        if kind == "zip-bomb":
            return c.post(
                "/api/datasets/import",
                headers=t["researcher"],
                data={"name": "bomb"},
                files={"file": ("bomb.zip", b["bomb"], "application/zip")},
            )
        if kind == "mask-zip-bomb":
            return c.post(
                f"/api/datasets/{b['dataset']['id']}/masks/import",
                headers=t["researcher"],
                data={"name": "bomb", "format": "png"},
                files={"file": ("masks.zip", b["mask-bomb"], "application/zip")},
            )
        if kind == "big-json":
            return c.post(
                "/api/auth/login",
                content=b'{"username": "' + b"a" * (100 * 2**20) + b'", "password": "x"}',
                headers={"Content-Type": "application/json"},
            )
        if kind == "padded-mask":
            image = b["image"]
            body = {
                "save_id": f"hostile-{time.monotonic_ns()}",
                "width": image["width"],
                "height": image["height"],
                "mask_png_base64": _padded_mask_png(image["width"]),
                "active_ms": 1,
            }
            return c.put(
                f"/api/annotate/images/{image['id']}/mask", json=body, headers=t["annotator"]
            )
        if kind == "anonymous-upload":
            return c.post(
                "/api/datasets/import",
                data={"name": "anon"},
                files={"file": ("big.zip", bytes(200 * 2**20), "application/zip")},
            )
    raise AssertionError(kind)


EXPECTED = {
    "zip-bomb": 413,
    "mask-zip-bomb": 413,
    "big-json": 413,
    "padded-mask": 422,
    "anonymous-upload": 401,
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_each_hostile_body_is_refused_with_a_sentence(live_server, bodies, kind):
    r = _send(live_server, kind, bodies)
    assert r.status_code == EXPECTED[kind], (kind, r.status_code, r.text[:300])
    assert r.json()["detail"].endswith("."), r.text[:300]


def test_ten_at_once_keep_memory_bounded_and_health_answering(live_server, bodies):
    pid = _server_pid(live_server)
    before = _rss_mib(pid)
    peak, health_worst, results = before, 0.0, []
    # four bombs (each may hold up to MAX_ARCHIVE_ENTRY_BYTES before it is refused) among ten
    kinds = ["zip-bomb", "big-json", "padded-mask", "anonymous-upload", "mask-zip-bomb"] * 2
    threads = [
        threading.Thread(target=lambda k=k: results.append((k, _send(live_server, k, bodies))))
        for k in kinds
    ]
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads):
        peak = max(peak, _rss_mib(pid))
        t0 = time.monotonic()
        assert httpx.get(f"{live_server}/api/health", timeout=10).status_code == 200
        health_worst = max(health_worst, time.monotonic() - t0)
        time.sleep(0.05)
    for th in threads:
        th.join()
    assert sorted(r.status_code for _, r in results) == sorted(EXPECTED[k] for k in kinds)
    print(
        f"server RSS {before:.0f} MiB before, {peak:.0f} MiB at peak; /health worst "
        f"{health_worst * 1000:.0f} ms"
    )  # shown with pytest -s
    assert peak - before < MEMORY_BOUND_MIB, (before, peak)
    assert health_worst < 5.0, health_worst
    names = [
        d["name"]
        for d in httpx.get(
            f"{live_server}/api/datasets", headers=bodies["tokens"]["researcher"]
        ).json()["data"]
    ]
    assert names == ["victim"], "nothing of the refused imports was stored"
