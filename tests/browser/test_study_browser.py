"""A participant takes a short study in real Chromium, from the Prolific link to the completion
code, reloading once in the middle; the stored trials are complete and match the keys pressed."""

from __future__ import annotations

from sqlalchemy import select

from tests.backend.study_support import analysed_results, make_dataset, make_run, ready_study


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
            # enlarged by an integer factor: each of the 16 image pixels a 32 x 32 block of
            # device pixels, 512 canvas pixels shown in 256 CSS pixels at dpr 2
            dims = page.eval_on_selector_all(
                ".stage canvas",
                "cs => cs.map(c => [c.width, c.height, c.getBoundingClientRect().width])",
            )
            assert dims == [[512, 512, 256], [512, 512, 256]], dims
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


def test_researcher_sees_studies_and_results(
    page, login, live_server, client, auth, db, tiny_checkpoint
):
    from backend.models import Trial

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint, name="plain")
    # the simulated participant answers every trial right; with 4 answered trials the right
    # side is the same on all of them 1 time in 8, which the same-answer rule would exclude
    study = ready_study(
        client,
        auth["researcher"],
        db,
        [run_id],
        epsilons_255=[0, 4, 16],
        exclusion={"same_answer_throughout": False},
    )
    link = study["link_token"]
    tok = client.post(
        f"/api/participate/links/{link}/sessions", json={"prolific_pid": "r1"}
    ).json()["token"]
    client.post(f"/api/participate/{tok}/consent")
    client.post(f"/api/participate/{tok}/device", json={
        "screen_width": 1920, "screen_height": 1080, "window_width": 1400, "window_height": 900,
        "device_pixel_ratio": 1})  # fmt: skip
    for t in client.get(f"/api/participate/{tok}/trials").json()["data"]:
        right = db.scalar(select(Trial.correct_answer).where(Trial.public_id == t["id"]))
        client.post(
            f"/api/participate/{tok}/trials/{t['id']}/answer", json={"answer": right, "rt_ms": 700}
        )
    client.post(f"/api/participate/{tok}/complete")
    # the analysis is computed in the background; the page shows the stored one
    results = analysed_results(client, auth["researcher"], study["id"])
    assert not results["excluded"], results["excluded"]
    login(page, "researcher")
    page.click("nav >> text=Studies")
    page.wait_for_selector(f"a[href='#/studies/{study['id']}']")
    page.click(f"a[href='#/studies/{study['id']}']")
    page.wait_for_selector(".study-plot")
    assert page.locator(".study-plot circle").count() == 3
    assert page.locator(".study-plot polyline").count() >= 1  # robust accuracy (and fit if any)
    # the analysis says what it was computed from; one participant is flagged in words
    assert "Analysis of" in page.text_content(".analysis-state")
    assert "Only 1 participant" in page.text_content(".fit-flags")
    assert "posterior predictive p" in page.text_content(".fit-details")
    assert "(chance check)" in page.text_content(".results-table")
    assert f"/s/{link}?PROLIFIC_PID=" in page.text_content(".participant-link")
    # the stimulus preview: 4 source images x the 3 epsilons, each image loaded from the
    # researcher's route and drawn at its natural size, its measured L-inf within the budget
    page.wait_for_selector(".stimulus-grid td[data-stimulus] img")
    cells = page.eval_on_selector_all(
        ".stimulus-grid td[data-stimulus]",
        """tds => Promise.all(tds.map(async (td) => {
            const img = td.querySelector("img");
            await img.decode();
            const box = img.getBoundingClientRect();
            return [img.naturalWidth, img.naturalHeight, box.width, box.height,
                    td.querySelector(".eps").textContent, td.querySelector(".linf").textContent];
        }))""",
    )
    assert len(cells) == 4 * 3, cells
    assert page.locator(".stimulus-grid thead th").count() == 1 + 3
    for nw, nh, w, h, eps_text, linf_text in cells:
        assert (nw, nh, w, h) == (16, 16, 16, 16), cells
        eps = float(eps_text.split()[1].split("/")[0])
        linf = int(linf_text.split()[1])
        assert linf <= eps and (eps > 0 or linf == 0), cells
    assert page.locator(".stimulus-grid .over-budget").count() == 0
    # the design form refuses a bad grid with the server's sentence
    page.goto("/#/studies")
    page.fill("input[name=name]", "bad")
    page.check("input[name=run]")
    page.fill("input[name=epsilons_255]", "0, 400")
    page.click("form.study-form button[type=submit]")
    page.wait_for_selector(".form-error:not([hidden])")
    assert "epsilons_255" in page.text_content(".form-error")
