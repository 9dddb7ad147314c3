"""A participant takes a small label study (issue 26) in real Chromium: names classes by key
and by click, answers "can't tell" once, reloads in the middle, and gets the completion code;
the stored answers are the ones given."""

from __future__ import annotations

from sqlalchemy import select

from tests.backend.study_support import make_dataset, make_run, ready_study


def test_participant_takes_a_label_study_with_a_reload(
    chromium, page, login, live_server, client, auth, db, tiny_checkpoint
):
    from backend.models import ParticipantSession, Response, Study, Trial

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    study = ready_study(client, auth["researcher"], db, [run_id], design="label",
                        num_random_images=None, images_per_class=2, epsilons_255=[32],
                        practice_trials=1, catch_trials=1,
                        exclusion={"min_catch_accuracy": 0, "too_fast_ms": 0,
                                   "same_answer_throughout": False},
                        completion_url=live_server + "/api/health?cc={code}")  # fmt: skip
    # 4 pool images and the catch image, unless the model got it wrong (then it is dropped)
    n_main = 4 + len(db.get(Study, study["id"]).config["images"]["catch"])
    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1300, "height": 850})
    ctx.set_default_timeout(15000)
    tab = ctx.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    given: list[tuple[str, str]] = []
    last = None

    def answer_next(how: str) -> None:
        """Answer the next trial: a digit key, or a click on the button of that answer."""
        nonlocal last
        selector = ".stage[data-trial]" + (f":not([data-trial='{last}'])" if last else "")
        stage = tab.wait_for_selector(selector)
        tab.wait_for_selector("[data-answer]:not([disabled])")
        trial_id = stage.get_attribute("data-trial")
        # one image, and one button per class name and "can't tell"
        assert tab.locator(".stage canvas").count() == 1
        names = tab.eval_on_selector_all(
            ".label-list [data-answer]", "bs => bs.map(b => b.textContent)"
        )
        assert [n.split()[-1] for n in names] == ["a", "b"], names
        if how.startswith("click:"):
            value = how.removeprefix("click:")
            tab.click(f"[data-answer='{value}']")
        else:
            tab.keyboard.press(how)
            value = "none" if how == "0" else str(int(how) - 1)
        given.append((trial_id, value))
        last = trial_id

    try:
        tab.goto(f"/s/{study['link_token']}?PROLIFIC_PID=pid-label&STUDY_ID=st&SESSION_ID=se")
        tab.click("[data-act=agree]")
        tab.wait_for_selector(".instructions")
        assert "press the number of its class" in tab.text_content(".instructions")
        tab.click("[data-act=begin]")
        answer_next("1")  # practice, with feedback
        tab.wait_for_selector(".feedback:text-matches('Correct|Not quite')")
        tab.click("[data-act=go]")
        answer_next("2")
        answer_next("click:none")
        # reload at once: the answer may still be in flight; it was kept and is sent again
        tab.reload()
        last = None
        for how in ["click:0", "0", "1", "click:1"][: n_main - 2]:
            answer_next(how)
        tab.click("[data-act=finish]")
        code = tab.text_content(".code").strip()
        assert code
        tab.wait_for_url(f"**/api/health?cc={code}")
        assert not errors, errors
    finally:
        ctx.close()

    db.expire_all()
    session = db.scalar(
        select(ParticipantSession).where(ParticipantSession.prolific_pid == "pid-label")
    )
    assert session.completion_code == code and session.stage == "completed"
    rows = db.execute(
        select(Trial, Response).join(Response).where(Trial.session_id == session.id)
        .order_by(Trial.index)
    ).all()  # fmt: skip
    assert len(rows) == 1 + n_main
    assert [(t.public_id, r.answer) for t, r in rows] == given
    for t, r in rows:
        assert r.correct == (r.answer == t.correct_answer) and t.correct_answer in ("0", "1")

    # the researcher sees the figures on the study page and beside AutoAttack on the run page
    from tests.backend.study_support import analysed_results

    res = analysed_results(client, auth["researcher"], study["id"])
    (point,) = res["runs"][0]["points"]
    login(page, "researcher")
    page.goto(f"/#/studies/{study['id']}")
    row = page.wait_for_selector(f".label-results[data-run='{run_id}'] tr[data-eps='32']")
    hvra = row.query_selector("td.hvra").text_content().strip()
    value = point["human_validated_robust_accuracy"]
    assert hvra == (f"{value * 100:.1f}%" if value is not None else "–"), (hvra, point)
    assert res["participants"]["included"] == 1
    assert "People on the clean images" in page.text_content(".label-clean")
    page.goto(f"/#/runs/{run_id}")
    page.wait_for_selector(".hvra-table tbody tr")
    assert page.text_content(".hvra-table tbody td a") == study["name"]
    assert point["n_images"] == 4
