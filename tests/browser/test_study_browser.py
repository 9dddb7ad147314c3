"""A participant takes a short study in real Chromium, from the Prolific link to the completion
code, reloading once in the middle; the stored trials are complete and match the keys pressed."""

from __future__ import annotations

from sqlalchemy import select

from tests.backend import study_support
from tests.backend.study_support import make_dataset, make_run, ready_study

tiny_checkpoint = study_support.tiny_checkpoint


def test_participant_takes_a_study_with_a_reload(
    chromium, live_server, client, auth, db, tiny_checkpoint
):
    from backend.models import ParticipantSession, Response, Trial

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    study = ready_study(client, auth["researcher"], db, [run_id], epsilons_255=[0, 4, 16],
                        trials_per_condition=1, catch_trials=1, practice_trials=2,
                        completion_url=live_server + "/api/health?cc={code}")  # fmt: skip
    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1300, "height": 850},
                               device_scale_factor=2)  # fmt: skip
    ctx.set_default_timeout(15000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"/s/{study['link_token']}?PROLIFIC_PID=pid-browser&STUDY_ID=st&SESSION_ID=se")
        page.click("[data-act=agree]")
        page.wait_for_selector(".instructions canvas")
        page.click("[data-act=begin]")
        pressed: list[tuple[str, str]] = []
        last = None

        def answer_next(key: str) -> None:
            nonlocal last
            selector = (
                ".stage[data-trial]"
                if last is None
                else f".stage[data-trial]:not([data-trial='{last}'])"
            )
            stage = page.wait_for_selector(selector)
            page.wait_for_selector("[data-answer]:not([disabled])")
            trial_id = stage.get_attribute("data-trial")
            # drawn at native pixels: 16 canvas pixels shown in 8 CSS pixels at dpr 2
            dims = page.eval_on_selector_all(
                ".stage canvas",
                "cs => cs.map(c => [c.width, c.height, c.getBoundingClientRect().width])",
            )
            assert dims == [[16, 16, 8], [16, 16, 8]], dims
            page.keyboard.press(key)
            pressed.append((trial_id, "left" if key in ("f", "ArrowLeft") else "right"))
            last = trial_id

        for key in ("f", "j"):  # practice, with feedback
            answer_next(key)
            page.wait_for_selector(".feedback:text-matches('Correct|Not quite')")
        page.click("[data-act=go]")
        total_main = 3 + 1
        answer_next("ArrowLeft")
        answer_next("j")
        # reload at once: the answer may still be in flight; it was kept and is sent again
        page.reload()
        last = None
        answer_next("f")
        answer_next("ArrowRight")
        assert len(pressed) == 2 + total_main
        page.click("[data-act=finish]")
        code = page.text_content(".code").strip()
        assert code
        page.wait_for_url(f"**/api/health?cc={code}")
        assert not errors, errors
    finally:
        ctx.close()

    db.expire_all()
    session = db.scalar(
        select(ParticipantSession).where(ParticipantSession.prolific_pid == "pid-browser")
    )
    assert session.completion_code == code and session.stage == "completed"
    assert session.device_pixel_ratio == 2 and session.screen_width > 0
    rows = db.execute(
        select(Trial, Response)
        .join(Response)
        .where(Trial.session_id == session.id)
        .order_by(Trial.index)
    ).all()
    assert len(rows) == 2 + total_main
    assert [(t.public_id, r.answer) for t, r in rows] == pressed
    for t, r in rows:
        assert r.correct == (r.answer == t.correct_answer)
        assert 0 < r.rt_ms < 60_000 and r.shown_at is not None
