"""The participant API: nothing lost (idempotent answers, resume, code only at the end),
nothing leaks (opaque payloads, equal file sizes), one session per PROLIFIC_PID. The bytes and
ids of the stimuli in detail: test_study_leaks.py."""

from __future__ import annotations

import io
import json
import re
from collections import Counter

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from tests.backend.study_support import make_dataset, make_run, ready_study

FORBIDDEN_KEYS = {"eps", "epsilon", "epsilon_255", "run", "run_id", "clean", "side", "correct",
                  "correct_answer", "perturbed", "purpose", "seed", "catch", "condition_index",
                  "source_image_id", "storage_key"}  # fmt: skip
DEVICE = {"screen_width": 1920, "screen_height": 1080, "window_width": 1400, "window_height": 900,
          "device_pixel_ratio": 1.0, "user_agent": "pytest"}  # fmt: skip


def _walk_keys(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k, v
            yield from _walk_keys(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_keys(v, path)


def assert_no_leak(payload) -> None:
    """No forbidden key anywhere; no telling word in any value that is not random or a URL."""
    for k, v in _walk_keys(payload):
        assert k not in FORBIDDEN_KEYS, (k, payload)
        if isinstance(v, str) and k not in ("token", "id", "trial") and not v.startswith("/api/"):
            assert not re.search(r"(\beps|clean|perturb|catch|/255|run[_ -]?\d)", v, re.I), v


@pytest.fixture()
def study(client, auth, db, tiny_checkpoint):
    ds, _ = make_dataset(db, n=14)
    run_a = make_run(db, ds, tiny_checkpoint, name="run a")
    run_b = make_run(db, ds, tiny_checkpoint, name="run b")
    s = ready_study(client, auth["researcher"], db, [run_a, run_b], num_random_images=14,
                    completion_url="https://example.org/done?cc={code}")  # fmt: skip
    s["runs"] = [run_a, run_b]
    return s


def start(client, study, pid=None, resume=None):
    body = {"prolific_pid": pid, "study_id": "S1", "session_id": "X1"} if pid else {}
    if resume:
        body["resume_token"] = resume
    r = client.post(f"/api/participate/links/{study['link_token']}/sessions", json=body)
    assert r.status_code in (200, 201), r.text
    return r


def ready_session(client, study, pid=None) -> str:
    token = start(client, study, pid).json()["token"]
    assert client.post(f"/api/participate/{token}/consent").status_code == 200
    r = client.post(f"/api/participate/{token}/device", json=DEVICE)
    assert r.json()["ok"], r.json()
    return token


def test_full_session_leaks_nothing_and_ends_with_a_code(client, db, study):
    from backend.models import ParticipantSession, Response, Trial

    seen: list = []
    info = client.get(f"/api/participate/links/{study['link_token']}").json()
    seen.append(info)
    assert info["image_width"] == 16 and info["accepting"]
    r = start(client, study, "PID-1")
    assert r.status_code == 201
    token = r.json()["token"]
    seen.append(r.json())
    # trials before consent and the device check are refused
    assert client.get(f"/api/participate/{token}/trials").status_code == 409
    seen.append(client.post(f"/api/participate/{token}/consent").json())
    small = client.post(f"/api/participate/{token}/device", json={**DEVICE, "window_width": 300})
    assert small.json()["ok"] is False and "at least" in small.json()["problems"][0]
    seen.append(client.post(f"/api/participate/{token}/device", json=DEVICE).json())
    example = client.get(f"/api/participate/{token}/example").json()
    assert set(example) == {"original", "changed"}
    trials = client.get(f"/api/participate/{token}/trials").json()["data"]
    seen.append(trials)
    phases = [t["phase"] for t in trials]
    assert phases == ["practice"] * 2 + ["main"] * (len(trials) - 2)  # catch looks like main
    sizes = set()
    for t in trials:
        assert set(t) == {"id", "phase", "number", "images"}
        assert len(t["images"]) == 2 and t["images"][0] != t["images"][1]
        for url in t["images"]:
            assert re.fullmatch(
                rf"/api/participate/{re.escape(token)}/stimuli/[A-Za-z0-9_-]{{20,}}", url
            )
            img = client.get(url)
            assert img.status_code == 200 and img.headers["content-type"] == "image/png"
            assert "etag" not in img.headers and "last-modified" not in img.headers
            sizes.add(len(img.content))
            with PILImage.open(io.BytesIO(img.content)) as im:
                assert im.size == (16, 16)
    assert len(sizes) == 1, sizes  # every stimulus is the same number of bytes
    for payload in seen:
        assert_no_leak(payload)
    # answer everything; feedback only on practice and only after the answer
    code = None
    for i, t in enumerate(trials):
        if i == len(trials) - 1:
            early = client.post(f"/api/participate/{token}/complete")
            assert early.status_code == 409 and "not answered" in early.json()["detail"]
        a = client.post(
            f"/api/participate/{token}/trials/{t['id']}/answer",
            json={"answer": "right" if i % 3 == 0 else "left", "rt_ms": 800 + i},
        )
        assert a.status_code == 200, a.text
        body = a.json()
        assert set(body) == {"trial", "stored", "feedback", "stage", "remaining"}
        assert (body["feedback"] is not None) == (t["phase"] == "practice")
        assert body["remaining"] == len(trials) - i - 1
    state = client.get(f"/api/participate/{token}").json()
    assert state["stage"] == "debrief" and state["completion_code"] is None
    done = client.post(f"/api/participate/{token}/complete").json()
    code = done["completion_code"]
    assert code and done["completion_url"] == f"https://example.org/done?cc={code}"
    assert client.post(f"/api/participate/{token}/complete").json()["completion_code"] == code
    # stored: one response per trial, with the answer given and its correctness
    session = db.scalar(select(ParticipantSession).where(ParticipantSession.token == token))
    assert session.prolific_pid == "PID-1" and session.prolific_study_id == "S1"
    assert session.screen_width == 1920 and session.device_pixel_ratio == 1.0
    rows = db.execute(
        select(Trial, Response).join(Response).where(Trial.session_id == session.id)
    ).all()
    assert len(rows) == len(trials)
    for trial, resp in rows:
        assert resp.correct == (resp.answer == trial.correct_answer)
    # a finished session refuses answers, even a repeat
    again = client.post(f"/api/participate/{token}/trials/{trials[-1]['id']}/answer",
                        json={"answer": "left", "rt_ms": 1})  # fmt: skip
    assert again.status_code == 409
    # the same PROLIFIC_PID gets its finished session back, not a new one
    r2 = start(client, study, "PID-1", resume=token)
    assert (
        r2.status_code == 200 and r2.json()["token"] == token and r2.json()["stage"] == "completed"
    )
    assert db.scalar(select(func.count()).select_from(ParticipantSession)) == 1


def test_answers_are_idempotent_ordered_and_resumable(client, db, study):
    from backend.models import Response

    token = ready_session(client, study, "PID-2")
    trials = client.get(f"/api/participate/{token}/trials").json()["data"]
    url = f"/api/participate/{token}/trials/{{}}/answer"
    # out of order is refused
    assert (
        client.post(url.format(trials[1]["id"]), json={"answer": "left", "rt_ms": 5}).status_code
        == 409
    )
    first = client.post(url.format(trials[0]["id"]), json={"answer": "left", "rt_ms": 500})
    repeat = client.post(url.format(trials[0]["id"]), json={"answer": "left", "rt_ms": 500})
    assert first.status_code == repeat.status_code == 200 and first.json() == repeat.json()
    changed = client.post(url.format(trials[0]["id"]), json={"answer": "right", "rt_ms": 500})
    assert changed.status_code == 409
    assert db.scalar(select(func.count()).select_from(Response)) == 1
    # a bad answer for the design is refused without storing anything
    assert (
        client.post(url.format(trials[1]["id"]), json={"answer": "yes", "rt_ms": 5}).status_code
        == 422
    )
    for t in trials[1:4]:
        assert (
            client.post(url.format(t["id"]), json={"answer": "right", "rt_ms": 700}).status_code
            == 200
        )
    # "reload": the state and the pending list resume at the next unanswered trial
    state = client.get(f"/api/participate/{token}").json()
    assert state["practice_done"] + state["main_done"] == 4 and state["stage"] == "main"
    pending = client.get(f"/api/participate/{token}/trials").json()["data"]
    assert [t["id"] for t in pending] == [t["id"] for t in trials[4:]]
    # the same pid resumes the same session
    r = start(client, study, "PID-2", resume=token)
    assert r.status_code == 200 and r.json()["token"] == token and r.json()["main_done"] == 2


def test_tokens_are_checked(client, db, study):
    token = ready_session(client, study)
    other = ready_session(client, study)
    assert token != other
    assert client.get("/api/participate/not-a-token").status_code == 404
    assert client.get("/api/participate/not-a-token/trials").status_code == 404
    assert client.get("/api/participate/links/not-a-link").status_code == 404
    mine = client.get(f"/api/participate/{token}/trials").json()["data"]
    theirs = client.get(f"/api/participate/{other}/trials").json()["data"]
    # a session cannot answer another's trial or fetch another's images through its token
    r = client.post(f"/api/participate/{token}/trials/{theirs[0]['id']}/answer",
                    json={"answer": "left", "rt_ms": 5})  # fmt: skip
    assert r.status_code == 404
    their_ids = {u.rsplit("/", 1)[1] for t in theirs for u in t["images"]}
    my_ids = {u.rsplit("/", 1)[1] for t in mine for u in t["images"]}
    foreign = next(iter(their_ids - my_ids))
    assert client.get(f"/api/participate/{token}/stimuli/{foreign}").status_code == 404
    assert client.get(f"/api/participate/{other}/stimuli/{foreign}").status_code == 200


def test_a_reused_prolific_pid_needs_the_secret_its_browser_holds(client, db, study):
    """Anyone can type another participant's PROLIFIC_PID into the link: without the session
    token that participant's browser keeps (localStorage, the page's URL), the start is
    refused with a sentence and no token; with it, the session resumes."""
    mine = ready_session(client, study, "PID-victim")
    url = f"/api/participate/links/{study['link_token']}/sessions"
    for body in (
        {"prolific_pid": "PID-victim"},
        {"prolific_pid": "PID-victim", "resume_token": "guessed-" + "x" * 24},
        {"prolific_pid": " PID-victim "},
    ):
        r = client.post(url, json=body)
        assert r.status_code == 409, r.text
        assert r.json() == {
            "detail": "This Prolific ID has already started this study in another browser; "
            "please continue there, or contact the researcher."
        }
        assert mine not in r.text
    r = client.post(url, json={"prolific_pid": "PID-victim", "resume_token": mine})
    assert r.status_code == 200 and r.json()["token"] == mine
    # another participant's secret does not open this one's session
    other = ready_session(client, study, "PID-other")
    r = client.post(url, json={"prolific_pid": "PID-victim", "resume_token": other})
    assert r.status_code == 409


def test_closed_study_admits_nobody_new_but_started_sessions_finish(client, auth, db, study):
    token = ready_session(client, study, "PID-3")
    assert (
        client.post(f"/api/studies/{study['id']}/close", headers=auth["researcher"]).status_code
        == 200
    )
    r = client.post(f"/api/participate/links/{study['link_token']}/sessions", json={})
    assert r.status_code == 409 and r.json()["detail"].endswith(".")
    assert start(client, study, "PID-3", resume=token).json()["token"] == token
    t = client.get(f"/api/participate/{token}/trials").json()["data"][0]
    a = client.post(
        f"/api/participate/{token}/trials/{t['id']}/answer", json={"answer": "left", "rt_ms": 9}
    )
    assert a.status_code == 200


def test_latin_square_balances_cells_across_participants(client, db, study):
    from backend.models import ParticipantSession, Stimulus, Study, Trial

    cfg = db.get(Study, study["id"]).config
    cells = cfg["cells"]
    n = len(cells)
    tokens = [start(client, study).json()["token"] for _ in range(n)]
    for token in tokens:  # a session takes its slot (and gets its trials) when it consents
        assert client.post(f"/api/participate/{token}/consent").status_code == 200
    sessions = list(db.scalars(select(ParticipantSession).order_by(ParticipantSession.id)))
    assert [s.condition_index for s in sessions] == list(range(n))
    stim = {s.id: s for s in db.scalars(select(Stimulus))}
    image_cell = Counter()
    for s in sessions:
        trials = list(db.scalars(select(Trial).where(Trial.session_id == s.id)))
        images = []
        per_cell = Counter()
        for t in trials:
            changed = stim[
                t.left_stimulus_id if t.correct_answer == "left" else t.right_stimulus_id
            ]
            other = stim[t.right_stimulus_id if t.correct_answer == "left" else t.left_stimulus_id]
            assert other.epsilon == 0 and other.source_image_id == changed.source_image_id
            assert changed.epsilon == t.epsilon and changed.run_id == t.run_id
            images.append(changed.source_image_id)
            if t.phase == "main":
                per_cell[(t.run_id, round(t.epsilon * 255))] += 1
                image_cell[(changed.source_image_id, t.run_id, round(t.epsilon * 255))] += 1
        assert len(images) == len(set(images))  # each image at most once per participant
        assert set(per_cell.values()) == {cfg["trials_per_condition"]}
        assert len(per_cell) == len(cfg["run_ids"]) * len(cfg["epsilons_255"])
    # over n participants every main image appeared in every cell exactly once
    assert set(image_cell.values()) == {1}
    assert len(tokens) == n


def test_yes_no_study_is_half_clean(client, auth, db, tiny_checkpoint):
    from backend.models import ParticipantSession, Trial

    ds, _ = make_dataset(db, n=14)
    run_id = make_run(db, ds, tiny_checkpoint)
    s = ready_study(client, auth["researcher"], db, [run_id], design="yesno", epsilons_255=[2, 8],
                    num_random_images=14)  # fmt: skip
    token = ready_session(client, s)
    trials = client.get(f"/api/participate/{token}/trials").json()["data"]
    assert all(len(t["images"]) == 1 for t in trials)
    for t in trials:
        assert_no_leak(t)
    session = db.scalar(select(ParticipantSession))
    main = list(
        db.scalars(select(Trial).where(Trial.session_id == session.id, Trial.phase == "main"))
    )
    answers = Counter(t.correct_answer for t in main)
    assert answers["yes"] == answers["no"] == 2
    r = client.post(
        f"/api/participate/{token}/trials/{trials[0]['id']}/answer",
        json={"answer": "left", "rt_ms": 3},
    )
    assert r.status_code == 422
    assert json.dumps(client.get(f"/api/participate/{token}").json()).find("eps") == -1
