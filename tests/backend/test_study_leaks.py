"""Nothing in a study's bytes or ids tells a stimulus's condition, or links one session's
images to another's (docs/studies.md, "What the bytes and ids say").

- every stimulus a session is served has the same length, the same chunks and the same bytes
  outside its pixel data (parsed here chunk by chunk and deflate block by block), and the same
  HTTP headers; what it decodes to is exactly the stored pixels;
- stimulus ids are per session: two sessions of one study share none;
- a session takes a counterbalancing slot only when it consents, and `max_sessions` caps them.

Real checkpoints, real PGD, real PostgreSQL (tests/backend/study_support.py)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin
from sqlalchemy import func, select

from tests.backend.study_support import make_dataset, make_run, ready_study, study_body

SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEVICE = {"screen_width": 1920, "screen_height": 1080, "window_width": 1400, "window_height": 900,
          "device_pixel_ratio": 1.0, "user_agent": "pytest"}  # fmt: skip


# ---- reading a PNG down to its bytes --------------------------------------------------------


def chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, length) of every chunk, each CRC checked; the file ends with IEND."""
    assert data[:8] == SIGNATURE
    out = []
    pos = 8
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        out.append((pos, kind, n))
        pos += 12 + n
    assert pos == len(data) and out[-1][1] == b"IEND"
    return out


def pixel_mask(data: bytes) -> tuple[bytearray, bytes]:
    """A mask of the file's bytes that carry pixels (1) or are computed from them: the pixel
    bytes inside the stored deflate blocks, the stream's Adler-32 and the IDAT's CRC. Every
    other byte (signature, IHDR, chunk lengths and types, the zlib header, every deflate block
    header, every row's filter byte, IEND) is 0 in the mask. Also returns the raw
    (unfiltered) scanlines."""
    layout = chunks(data)
    ihdr_pos = layout[0][0]
    w, h, depth, colour, _, _, interlace = struct.unpack(
        ">IIBBBBB", data[ihdr_pos + 8 : ihdr_pos + 21]
    )
    assert depth == 8 and interlace == 0 and colour in (0, 2)
    row = 1 + w * (1 if colour == 0 else 3)
    mask = bytearray(len(data))
    raw = bytearray()
    (idat,) = [(pos, n) for pos, kind, n in layout if kind == b"IDAT"]
    pos, n = idat
    start, end = pos + 8, pos + 8 + n
    assert zlib.decompress(data[start:end]) is not None  # a valid zlib stream
    assert (data[start] << 8 | data[start + 1]) % 31 == 0 and data[start] & 0x0F == 8
    p = start + 2
    final = 0
    while not final:
        header = data[p]
        final, btype = header & 1, (header >> 1) & 3
        assert btype == 0, "every deflate block is stored (uncompressed)"
        length, nlength = struct.unpack("<HH", data[p + 1 : p + 5])
        assert length ^ nlength == 0xFFFF
        p += 5
        for k in range(length):
            if len(raw) % row != 0:  # not a filter byte
                mask[p + k] = 1
            else:
                assert data[p + k] == 0, "every row has filter 0 (none)"
            raw.append(data[p + k])
        p += length
    assert p + 4 == end and len(raw) == row * h
    assert struct.unpack(">I", data[p:end])[0] == zlib.adler32(bytes(raw)) & 0xFFFFFFFF
    mask[p:end] = b"\x01" * 4  # Adler-32 of the pixels
    mask[end : end + 4] = b"\x01" * 4  # the IDAT's CRC, of the pixels
    return mask, bytes(raw)


def decoded(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L" if im.mode == "L" else "RGB"), dtype=np.uint8)


# ---- a participant -----------------------------------------------------------------------


def start(client, study, pid=None, resume=None):
    body = {"prolific_pid": pid} if pid else {}
    if resume:
        body["resume_token"] = resume
    return client.post(f"/api/participate/links/{study['link_token']}/sessions", json=body)


def ready_session(client, study, pid=None) -> str:
    r = start(client, study, pid)
    assert r.status_code in (200, 201), r.text
    token = r.json()["token"]
    assert client.post(f"/api/participate/{token}/consent").status_code == 200
    assert client.post(f"/api/participate/{token}/device", json=DEVICE).json()["ok"]
    return token


def session_urls(client, token: str) -> list[str]:
    """Every image URL the session's page is given: the example pair and every trial's."""
    r = client.get(f"/api/participate/{token}/example")
    # a label study has no example pair (404); the detection designs have one
    urls = [r.json()["original"], r.json()["changed"]] if r.status_code == 200 else []
    for t in client.get(f"/api/participate/{token}/trials").json()["data"]:
        urls += t["images"]
    return urls


@pytest.fixture()
def two_runs(db, tiny_checkpoint):
    ds, _ = make_dataset(db, n=14)
    return [make_run(db, ds, tiny_checkpoint, name=n) for n in ("run a", "run b")]


# ---- the bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize("design", ["2afc", "yesno", "label"])
def test_every_stimulus_served_has_the_same_bytes_outside_its_pixels(
    client, auth, db, tiny_checkpoint, design
):
    from backend.core.storage import get_storage
    from backend.models import Stimulus, Study
    from backend.services.studies.participation import session_id_of_stimulus

    ds, _ = make_dataset(db, n=14)
    run_id = make_run(db, ds, tiny_checkpoint)
    extra = {"epsilons_255": [2, 8]} if design == "yesno" else {}
    if design == "label":  # clean and AutoAttack images, one per trial (issue 26)
        extra = {"num_random_images": None, "images_per_class": 4, "epsilons_255": [16, 32]}
    study = ready_study(client, auth["researcher"], db, [run_id],
                        **{"design": design, "num_random_images": 14, **extra})  # fmt: skip
    storage = get_storage()
    token = ready_session(client, study, "PID-bytes")
    urls = session_urls(client, token)
    by_url = {
        f"/api/participate/{token}/stimuli/{session_id_of_stimulus(token, s.public_id)}": s
        for s in db.scalars(select(Stimulus).where(Stimulus.study_id == study["id"]))
    }
    assert len(set(urls)) == len(urls) >= 8 and set(urls) <= set(by_url)

    served: dict[str, bytes] = {}
    headers = []
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, r.text
        served[url] = r.content
        headers.append(dict(r.headers))
    # the same headers, every one: type, length, caching; nothing that names a version
    assert all(h == headers[0] for h in headers), headers
    assert headers[0]["content-type"] == "image/png"
    assert headers[0]["cache-control"] == "private, max-age=86400"
    assert not {"etag", "last-modified", "content-disposition"} & set(headers[0])

    first = served[urls[0]]
    first_mask, _ = pixel_mask(first)
    first_layout = chunks(first)
    # signature, IHDR, IDAT, IEND only: no ancillary chunk (no padding, no metadata)
    assert [kind for _, kind, _ in first_layout] == [b"IHDR", b"IDAT", b"IEND"]
    assert len(first) == db.get(Study, study["id"]).config["stimulus_bytes"]
    changed_somewhere = False
    for url, data in served.items():
        assert len(data) == len(first)
        assert chunks(data) == first_layout  # same chunk sequence, offsets and lengths
        mask, raw = pixel_mask(data)
        assert mask == first_mask  # pixels in the same places
        outside = [i for i in range(len(data)) if not mask[i]]
        assert bytes(data[i] for i in outside) == bytes(first[i] for i in outside), url
        changed_somewhere |= data != first
        # the served image is exactly the stored pixels: decoded by PIL and read raw here
        stored = storage.get_bytes(by_url[url].storage_key)
        pixels = decoded(stored)
        assert np.array_equal(decoded(data), pixels)
        h, w = pixels.shape[:2]
        rows = np.frombuffer(raw, np.uint8).reshape(h, -1)[:, 1:]
        assert np.array_equal(rows.reshape(pixels.shape), pixels)
        # stimuli are stored the way they are served
        assert data == stored
    assert changed_somewhere  # the pixels do differ: the comparison above is not vacuous

    # a stimulus stored compressed and with metadata (as before this encoding) is served the
    # same bytes: what is sent is always re-encoded from the stored pixels
    for s in by_url.values():
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "x" * (s.id % 7))
        buf = io.BytesIO()
        img = decoded(storage.get_bytes(s.storage_key))
        PILImage.fromarray(img).save(buf, "PNG", compress_level=9, pnginfo=info)
        storage.put_bytes(s.storage_key, buf.getvalue())
    for url in urls:
        r = client.get(url)
        assert r.content == served[url] and dict(r.headers) == headers[0]


# ---- the ids -----------------------------------------------------------------------------


def test_two_sessions_of_one_study_share_no_stimulus_id(client, auth, db, two_runs):
    from backend.models import Stimulus

    study = ready_study(client, auth["researcher"], db, two_runs, num_random_images=14)
    # with and without a PROLIFIC_PID: the link opened again is a new session
    tokens = [ready_session(client, study, "PID-A"), ready_session(client, study),
              ready_session(client, study, "PID-B")]  # fmt: skip
    ids = []
    for token in tokens:
        urls = session_urls(client, token)
        assert all(u.startswith(f"/api/participate/{token}/stimuli/") for u in urls)
        ids.append({u.rsplit("/", 1)[1] for u in urls})
        assert len(ids[-1]) == len(urls)
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            assert not ids[i] & ids[j], (i, j)
    # the stored stimulus ids never reach the browser
    stored = set(db.scalars(select(Stimulus.public_id)))
    assert not stored & set().union(*ids)
    # an id of one session names nothing in another
    foreign = next(iter(ids[1]))
    assert client.get(f"/api/participate/{tokens[0]}/stimuli/{foreign}").status_code == 404
    assert client.get(f"/api/participate/{tokens[1]}/stimuli/{foreign}").status_code == 200
    # and the session's own ids stay the same (the page can reload and resume)
    assert {u.rsplit("/", 1)[1] for u in session_urls(client, tokens[0])} <= ids[0]


# ---- who counts ---------------------------------------------------------------------------


def test_a_session_without_consent_takes_no_counterbalancing_slot(client, auth, db, two_runs):
    from backend.models import ParticipantSession, Trial

    study = ready_study(client, auth["researcher"], db, two_runs, num_random_images=14)
    idle = [start(client, study).json()["token"] for _ in range(3)]
    first = ready_session(client, study, "PID-first")

    def session(token: str) -> ParticipantSession:
        db.expire_all()
        return db.scalar(select(ParticipantSession).where(ParticipantSession.token == token))

    def n_trials(token: str) -> int:
        return db.scalar(
            select(func.count()).select_from(Trial).where(Trial.session_id == session(token).id)
        )

    # the first to consent gets slot 0, although three sessions were opened before it
    assert session(first).condition_index == 0 and n_trials(first) > 0
    for token in idle:
        assert session(token).condition_index < 0 and n_trials(token) == 0
        assert client.get(f"/api/participate/{token}/trials").status_code == 409
    # the next consent takes the next slot; consenting again changes nothing
    assert client.post(f"/api/participate/{idle[1]}/consent").status_code == 200
    n = n_trials(idle[1])
    assert client.post(f"/api/participate/{idle[1]}/consent").status_code == 200
    assert session(idle[1]).condition_index == 1 and n_trials(idle[1]) == n > 0
    assert [session(t).condition_index < 0 for t in idle] == [True, False, True]
    # the study counts its participants the same way: 4 sessions opened, 2 consented
    detail = client.get(f"/api/studies/{study['id']}", headers=auth["researcher"]).json()
    assert detail["num_sessions"] == 2
    assert db.scalar(select(func.count()).select_from(ParticipantSession)) == 4


def test_max_sessions_refuses_a_session_beyond_the_cap(client, auth, db, two_runs):
    h = auth["researcher"]
    bad = client.post("/api/studies", headers=h,
                      json={"name": "x", "run_ids": two_runs, "num_random_images": 14,
                            "max_sessions": 0})  # fmt: skip
    assert bad.status_code == 422 and "max_sessions" in bad.text
    # a study that names no cap gets a finite one
    uncapped = {**study_body(two_runs, name="uncapped"), "num_random_images": 14}
    r = client.post("/api/studies", headers=h, json=uncapped)
    assert r.status_code == 201, r.text
    assert r.json()["config"]["max_sessions"] == 100
    study = ready_study(client, h, db, two_runs, num_random_images=14, max_sessions=2)
    assert study["config"]["max_sessions"] == 2
    # opening the link does not count; consenting does
    late = start(client, study, "PID-late").json()["token"]
    a = ready_session(client, study, "PID-a")
    b = ready_session(client, study)
    for r in (start(client, study), start(client, study, "PID-new")):
        assert r.status_code == 409, r.text
        detail = r.json()["detail"]
        assert detail.endswith(".") and " " in detail
    # a session opened before the study filled up cannot take a third slot
    refused = client.post(f"/api/participate/{late}/consent")
    assert refused.status_code == 409 and refused.json()["detail"].endswith(".")
    # the same PROLIFIC_PID still gets its own session back (with its browser's secret), and
    # the others go on
    again = start(client, study, "PID-a", resume=a)
    assert again.status_code == 200 and again.json()["token"] == a
    assert start(client, study, "PID-late", resume=late).json()["token"] == late
    assert client.get(f"/api/participate/{b}/trials").status_code == 200


# ---- the adaptive mode (QUEST+) -------------------------------------------------------------


def test_a_quest_session_leaks_nothing_through_bytes_ids_headers_or_answers(
    client, auth, db, tiny_checkpoint
):
    """Two participants of a QUEST+ study, one always right and one always wrong: their levels
    part ways (so the comparison is not vacuous), yet every image either is served has the
    same length, layout, bytes outside the pixels and headers; the answers' replies are the
    same word for word; no id is shared; and the next level is chosen within the answer's own
    request (nothing left to do, answer-dependent, when the next trial is fetched)."""
    from backend.models import ParticipantSession, QuestTrack, Trial

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    quest = {"levels": 20, "ladder_min_255": 1.0, "ladder_max_255": 16.0, "max_trials": 6}
    study = ready_study(client, auth["researcher"], db, [run_id], num_random_images=12,
                        placement="quest", quest=quest, catch_trials=1,
                        practice_trials=2)  # fmt: skip
    urls: dict[str, list[str]] = {}
    replies: dict[str, list[dict]] = {}
    levels: dict[str, list[float]] = {}
    for who in ("right", "wrong"):
        token = ready_session(client, study, f"PID-{who}")
        session = db.scalar(select(ParticipantSession).where(ParticipantSession.token == token))
        urls[who], replies[who], levels[who] = session_urls(client, token), [], []
        while pending := client.get(f"/api/participate/{token}/trials").json()["data"]:
            for t in pending:
                assert set(t) == {"id", "phase", "number", "images"}
                urls[who] += [u for u in t["images"] if u not in urls[who]]
            db.expire_all()
            trial = db.scalar(select(Trial).where(Trial.public_id == pending[0]["id"]))
            wrong = "right" if trial.correct_answer == "left" else "left"
            answer = trial.correct_answer if who == "right" or trial.phase != "main" else wrong
            r = client.post(f"/api/participate/{token}/trials/{trial.public_id}/answer",
                            json={"answer": answer, "rt_ms": 800})  # fmt: skip
            assert r.status_code == 200, r.text
            replies[who].append({k: v for k, v in r.json().items() if k != "trial"})
            if trial.phase == "main":
                levels[who].append(round(trial.epsilon * 255, 4))
                # the posterior moved and the next level was chosen before the reply was sent
                db.expire_all()
                track = db.scalar(select(QuestTrack).where(QuestTrack.session_id == session.id))
                assert track.answered == len(levels[who])
    # the staircases part ways: down after right answers, up after wrong ones
    assert levels["right"][-1] < levels["right"][0] <= levels["wrong"][0] < levels["wrong"][-1]
    # the replies say nothing of the answer (no feedback after practice, the same counts)
    assert replies["right"] == replies["wrong"]
    assert all(r["feedback"] is None for r in replies["right"][2:])
    # no id shared between the two sessions
    ids = {who: {u.rsplit("/", 1)[1] for u in us} for who, us in urls.items()}
    assert not ids["right"] & ids["wrong"]
    # every image either session is served: the same length, layout, bytes outside the
    # pixels and headers
    served = []
    for who, token_urls in urls.items():
        for url in token_urls:
            r = client.get(url)
            assert r.status_code == 200, (who, url)
            served.append((r.content, dict(r.headers)))
    first, first_headers = served[0]
    first_mask, _ = pixel_mask(first)
    assert len(first) == study["config"]["stimulus_bytes"]
    for data, headers in served:
        assert headers == first_headers
        assert len(data) == len(first) and chunks(data) == chunks(first)
        mask, _ = pixel_mask(data)
        assert mask == first_mask
        outside = [i for i in range(len(data)) if not mask[i]]
        assert bytes(data[i] for i in outside) == bytes(first[i] for i in outside)
    assert len({data for data, _ in served}) > 1
