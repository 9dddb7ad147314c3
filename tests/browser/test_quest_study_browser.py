"""A participant takes a small QUEST+ study (issue 25, item 5) in real Chromium, from the link to
the completion code, reloading once in the middle: each main trial's epsilon is the one the
server chose after the previous answer, the reload goes on from the stored posterior, and the
run stops at its trial count. The researcher then reads the participant's own QUEST+ estimate
on the study page."""

from __future__ import annotations

from sqlalchemy import select

from tests.backend.study_support import analysed_results, make_dataset, make_run, ready_study

QUEST = {"levels": 20, "ladder_min_255": 1.0, "ladder_max_255": 16.0, "max_trials": 4}
# every automated answer (within 10 s) counts as too fast, so the participant is excluded
# however loaded the machine is (at the default 200 ms a loaded run answered slower)
TOO_FAST = {"too_fast_ms": 10_000, "max_too_fast_fraction": 0}


def test_participant_takes_a_quest_study_with_a_reload(
    chromium, live_server, client, auth, db, tiny_checkpoint, login
):
    from backend.models import ParticipantSession, Response, Trial

    ds, _ = make_dataset(db, n=10)
    run_id = make_run(db, ds, tiny_checkpoint)
    study = ready_study(client, auth["researcher"], db, [run_id], num_random_images=10,
                        placement="quest", quest=QUEST, catch_trials=1, practice_trials=1,
                        exclusion=TOO_FAST, completion_url=live_server + "/api/health?cc={code}",
                        )  # fmt: skip
    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1300, "height": 850})
    ctx.set_default_timeout(15000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    pressed: list[tuple[str, str]] = []
    last = None

    def answer_next() -> str:
        """Answer the next trial as an observer who always sees the change (from the stored
        trial: the page itself is never told); returns its progress text."""
        nonlocal last
        selector = ".stage[data-trial]" + (f":not([data-trial='{last}'])" if last else "")
        stage = page.wait_for_selector(selector)
        page.wait_for_selector("[data-answer]:not([disabled])")
        trial_id = stage.get_attribute("data-trial")
        assert page.locator(".stage canvas").count() == 2
        progress = page.text_content(".progress")
        db.expire_all()
        side = db.scalar(select(Trial.correct_answer).where(Trial.public_id == trial_id))
        page.keyboard.press("f" if side == "left" else "j")
        pressed.append((trial_id, side))
        last = trial_id
        return progress

    try:
        page.goto(f"/s/{study['link_token']}?PROLIFIC_PID=pid-quest&STUDY_ID=st&SESSION_ID=se")
        page.click("[data-act=agree]")
        page.wait_for_selector(".instructions canvas")
        page.click("[data-act=begin]")
        answer_next()  # practice, with feedback
        page.wait_for_selector(".feedback:text-matches('Correct')")
        page.click("[data-act=go]")
        total_main = QUEST["max_trials"] + 1  # and the catch trial
        assert answer_next() == f"Trial 1 of {total_main}"
        answer_next()
        answer_next()
        page.reload()  # the answer may still be in flight: it is kept and sent again
        last = None
        answer_next()
        answer_next()
        assert len(pressed) == 1 + total_main
        page.click("[data-act=finish]")
        code = page.text_content(".code").strip()
        page.wait_for_url(f"**/api/health?cc={code}")
        assert not errors, errors
    finally:
        ctx.close()

    db.expire_all()
    session = db.scalar(
        select(ParticipantSession).where(ParticipantSession.prolific_pid == "pid-quest")
    )
    assert session.completion_code == code and session.stage == "completed"
    rows = db.execute(
        select(Trial, Response).join(Response).where(Trial.session_id == session.id)
        .order_by(Trial.index)
    ).all()  # fmt: skip
    assert [(t.public_id, r.answer) for t, r in rows] == pressed
    mains = [t for t, _ in rows if t.phase == "main"]
    assert len(mains) == QUEST["max_trials"]
    # each main trial shows the level chosen after the one before (through the reload too)
    for before, after in zip(mains, mains[1:], strict=False):
        assert round(after.epsilon * 255, 4) == before.posterior["next_epsilon_255"]
        assert after.posterior["answered"] == before.posterior["answered"] + 1
    # always right: the staircase went down; the run stopped at its trial count
    assert mains[-1].epsilon < mains[0].epsilon
    assert mains[-1].posterior["stopped"] == "trial count"

    # the researcher's study page: the participant's own estimate, the final posterior's
    results = analysed_results(client, auth["researcher"], study["id"])
    (estimate,) = results["runs"][0]["quest_estimates"]
    final = mains[-1].posterior
    assert estimate["answered"] == QUEST["max_trials"] and estimate["stopped"] == "trial count"
    assert estimate["threshold_255"] == final["threshold_255"]
    assert estimate["ci_low_255"] <= estimate["threshold_255"] <= estimate["ci_high_255"]
    # the answers were all too fast (TOO_FAST): excluded from the group analysis,
    # and the table says so beside the participant's own estimate
    (excluded,) = results["excluded"]
    assert estimate["excluded"] == excluded["reason"]
    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1300, "height": 850})
    ctx.set_default_timeout(15000)
    page = ctx.new_page()
    try:
        login(page, "researcher")
        page.goto(f"/?visit=study#/studies/{study['id']}")
        page.click(".quest-estimates summary")
        row = page.locator(".quest-estimates tbody tr")
        assert row.count() == 1
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == str(QUEST["max_trials"])
        assert cells[2] == f"{final['threshold_255']:.2f}/255" and cells[4] == "all its trials"
        assert cells[5] == f"no: {excluded['reason']}"
    finally:
        ctx.close()
