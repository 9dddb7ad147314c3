"""A study people can see, in real Chromium: small stimuli are drawn enlarged by an integer
factor with every pixel exact (read back from the canvas and from a screenshot, against the
stimulus PNG enlarged by nearest neighbour), at two device pixel ratios, the factor stored
with each answer; captions are readable; the researcher copies the link and runs the whole
flow as a participant without anything stored or counted."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select

from tests.backend.study_support import analysed_results, make_dataset, make_run, ready_study

# the WCAG relative-luminance contrast of an element's text against the first opaque
# background behind it (walking up the tree)
CONTRAST_JS = """el => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const fg = parse(getComputedStyle(el).color);
  let node = el, bg = null;
  while (node && node.nodeType === 1) {
    const c = parse(getComputedStyle(node).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] === 1)) { bg = c; break; }
    node = node.parentElement;
  }
  bg = bg || [255, 255, 255];
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""

# the pixels a canvas holds, and the stimulus file it was drawn from, as base64
CANVAS_JS = """async (c) => {
  const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let s = ""; for (let i = 0; i < px.length; i++) s += String.fromCharCode(px[i]);
  const buf = new Uint8Array(await (await fetch(c.dataset.src)).arrayBuffer());
  let f = ""; for (let i = 0; i < buf.length; i++) f += String.fromCharCode(buf[i]);
  const r = c.getBoundingClientRect();
  return {w: c.width, h: c.height, cssW: r.width, cssH: r.height, scale: Number(c.dataset.scale),
          left: r.left * devicePixelRatio, top: r.top * devicePixelRatio,
          pixels: btoa(s), file: btoa(f), dpr: window.devicePixelRatio};
}"""


def upscaled(png: bytes, k: int) -> np.ndarray:
    """The stimulus enlarged k times by nearest neighbour, as H x W x 3 uint8."""
    with PILImage.open(io.BytesIO(png)) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return rgb.repeat(k, axis=0).repeat(k, axis=1)


def check_canvas(page, canvas, dpr: int) -> int:
    """The canvas is exactly k x the stimulus in device pixels, shown at k x native / dpr CSS
    pixels, and holds the stimulus enlarged by nearest neighbour; a screenshot of it shows
    exactly those pixels. Returns k."""
    got = canvas.evaluate(CANVAS_JS)
    file = base64.b64decode(got["file"])
    with PILImage.open(io.BytesIO(file)) as im:
        native_w, native_h = im.size
    k = got["scale"]
    assert got["dpr"] == dpr
    assert k == 256 * dpr // max(native_w, native_h) and k >= 2, got["scale"]
    assert (got["w"], got["h"]) == (native_w * k, native_h * k)
    assert (got["cssW"], got["cssH"]) == (native_w * k / dpr, native_h * k / dpr)
    # on the device pixel grid: painted without resampling, even at its edges
    assert got["left"] == int(got["left"]) and got["top"] == int(got["top"]), got
    want = upscaled(file, k)
    held = np.frombuffer(base64.b64decode(got["pixels"]), np.uint8).reshape(got["h"], got["w"], 4)
    assert (held[..., 3] == 255).all()
    assert np.array_equal(held[..., :3], want), "the canvas is not the stimulus enlarged exactly"
    # what is on screen: the element's screenshot, in device pixels
    shot = np.asarray(
        PILImage.open(io.BytesIO(canvas.screenshot(animations="disabled"))).convert("RGB")
    )
    assert shot.shape == want.shape, (shot.shape, want.shape)
    assert np.array_equal(shot, want), "the screen does not show the stimulus pixels exactly"
    return k


def test_small_stimuli_are_enlarged_by_an_integer_factor_with_exact_pixels(
    chromium, live_server, client, auth, db, tiny_checkpoint
):
    from backend.models import ParticipantSession, Response, Trial

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    study = ready_study(client, auth["researcher"], db, [run_id])
    for dpr in (1, 2):
        ctx = chromium.new_context(base_url=live_server, viewport={"width": 1300, "height": 850},
                                   device_scale_factor=dpr)  # fmt: skip
        ctx.set_default_timeout(15000)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        try:
            page.goto(f"/s/{study['link_token']}?PROLIFIC_PID=scale-{dpr}")
            page.click("[data-act=agree]")
            page.wait_for_selector(".instructions canvas")
            for caption in page.query_selector_all(".instructions figcaption"):
                assert caption.evaluate(CONTRAST_JS) >= 4.5, caption.text_content()
            examples = page.query_selector_all(".instructions canvas")
            assert len(examples) == 2
            for c in examples:
                check_canvas(page, c, dpr)
            page.click("[data-act=begin]")
            stage = page.wait_for_selector(".stage[data-trial]")
            page.wait_for_selector("[data-answer]:not([disabled])")
            for el in page.query_selector_all(".progress, .question"):
                assert el.evaluate(CONTRAST_JS) >= 4.5, el.text_content()
            trial_id = stage.get_attribute("data-trial")
            scales = {check_canvas(page, c, dpr) for c in page.query_selector_all(".stage canvas")}
            assert scales == {16 * dpr}
            page.keyboard.press("f")
            page.wait_for_selector(".feedback:text-matches('Correct|Not quite')")
            assert not errors, errors
        finally:
            ctx.close()
        db.expire_all()
        stored = db.execute(
            select(Response.display_scale, ParticipantSession.device_pixel_ratio)
            .join(Trial, Trial.id == Response.trial_id)
            .join(ParticipantSession, ParticipantSession.id == Trial.session_id)
            .where(Trial.public_id == trial_id)
        ).one()
        assert tuple(stored) == (16 * dpr, dpr)


def test_researcher_previews_the_flow_as_a_participant_and_nothing_is_stored(
    page, context, login, live_server, client, auth, db, tiny_checkpoint
):
    from backend.models import ParticipantSession, Response, Trial

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    study = ready_study(client, auth["researcher"], db, [run_id])
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)

    def stored() -> tuple[int, int, int]:
        db.expire_all()
        return tuple(
            db.scalar(select(func.count()).select_from(m))
            for m in (ParticipantSession, Trial, Response)
        )

    assert stored() == (0, 0, 0)
    login(page, "researcher")
    page.goto(f"/#/studies/{study['id']}")
    page.wait_for_selector(".participant-link-box")
    # the link: placeholders explained, one click copies it whole
    box = page.text_content(".participant-link-box")
    for name in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"):
        assert f"{{{{%{name}%}}}}:" in box, box
    page.click("[data-act=copy-link]")
    page.wait_for_selector(".copy-status:text('Copied.')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.text_content("[data-link=prolific]")
    link = f"{live_server}/s/{study['link_token']}"
    assert copied.startswith(f"{link}?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}")
    assert "0 participants" in page.text_content(".study-detail")

    with page.expect_popup() as popup:
        page.click("[data-act=preview]")
    pv = popup.value
    pv_errors: list[str] = []
    pv.on("pageerror", lambda exc: pv_errors.append(str(exc)))
    pv.wait_for_selector(".preview-banner")
    assert "Nothing you do here is stored" in pv.text_content(".preview-banner")
    pv.click("[data-act=agree]")
    pv.wait_for_selector(".instructions canvas")
    widths = pv.eval_on_selector_all(".instructions canvas", "cs => cs.map(c => c.width)")
    assert widths == [256, 256]
    for caption in pv.query_selector_all(".instructions figcaption"):
        assert caption.evaluate(CONTRAST_JS) >= 4.5
    pv.click("[data-act=begin]")
    answered = 0
    last = None
    feedback = 0
    while True:
        selector = ".stage[data-trial]"
        if last is not None:
            selector += f":not([data-trial='{last}'])"
        pv.wait_for_selector(f"{selector}, [data-act=go], [data-act=finish]")
        if pv.query_selector("[data-act=go]"):
            pv.click("[data-act=go]")
            continue
        if pv.query_selector("[data-act=finish]"):
            break
        stage = pv.query_selector(".stage[data-trial]")
        pv.wait_for_selector("[data-answer]:not([disabled])")
        scales = pv.eval_on_selector_all(".stage canvas", "cs => cs.map(c => c.dataset.scale)")
        assert scales == ["16", "16"]
        last = stage.get_attribute("data-trial")
        pv.keyboard.press("f" if answered % 2 else "j")
        answered += 1
        if last.startswith("preview-") and int(last.split("-")[1]) < 2:  # the practice trials
            pv.wait_for_selector(".feedback:text-matches('Correct|Not quite')")
            feedback += 1
    cfg = study["config"]
    assert feedback == cfg["practice_trials"]
    assert answered == cfg["practice_trials"] + len(cfg["cells"]) + cfg["catch_trials"]
    pv.click("[data-act=finish]")
    pv.wait_for_selector(".done")
    assert "preview" in pv.text_content(".done").lower()
    assert not pv_errors, pv_errors
    # nothing stored, nobody counted
    assert stored() == (0, 0, 0)
    r = client.get(f"/api/studies/{study['id']}", headers=auth["researcher"]).json()
    assert (r["num_sessions"], r["num_completed"]) == (0, 0)
    page.reload()
    page.wait_for_selector(".participant-link-box")
    assert "0 participants" in page.text_content(".study-detail")


def test_results_show_the_model_at_the_study_epsilons_and_no_threshold_off_the_grid(
    page, login, client, auth, db, tiny_checkpoint
):
    from backend.models import Trial

    ds, _ = make_dataset(db, n=12)
    run_id = make_run(db, ds, tiny_checkpoint)
    rules = {"same_answer_throughout": False}
    study = ready_study(client, auth["researcher"], db, [run_id], exclusion=rules)
    device = {"screen_width": 1920, "screen_height": 1080, "window_width": 1400,
              "window_height": 900, "device_pixel_ratio": 1}  # fmt: skip
    for i in range(3):  # right on every trial: the threshold lies below the grid
        tok = client.post(
            f"/api/participate/links/{study['link_token']}/sessions", json={"prolific_pid": f"r{i}"}
        ).json()["token"]
        client.post(f"/api/participate/{tok}/consent")
        client.post(f"/api/participate/{tok}/device", json=device)
        for t in client.get(f"/api/participate/{tok}/trials").json()["data"]:
            right = db.scalar(select(Trial.correct_answer).where(Trial.public_id == t["id"]))
            body = {"answer": right, "rt_ms": 700, "display_scale": 16}
            client.post(f"/api/participate/{tok}/trials/{t['id']}/answer", json=body)
        client.post(f"/api/participate/{tok}/complete")
    res = analysed_results(client, auth["researcher"], study["id"])
    (run,) = res["runs"]
    model = {p["epsilon_255"]: p["accuracy"] for p in run["model_accuracy"]["points"]}
    login(page, "researcher")
    page.goto(f"/#/studies/{study['id']}")
    page.wait_for_selector(".results-table")
    threshold = page.text_content(".threshold")
    assert "below the smallest epsilon tested" in threshold, threshold
    # no extrapolated number: whatever bound is shown lies on the grid tested (4 to 16)
    shown = [float(v) for v in re.findall(r"([\d.]+) ?/255", threshold)]
    assert all(4 <= v <= 16 for v in shown), threshold
    # one model number per row, at that row's epsilon, and how it was measured
    cells = page.eval_on_selector_all(
        ".results-table tbody tr:not(.catch-row)",  # the catch level has no model figure
        "rs => rs.map(r => [parseFloat(r.cells[0].textContent),"
        " r.querySelector('.model-acc').textContent])",
    )
    assert [float(e) for e, _ in cells] == [0, 4, 16]
    for e, shown in cells:
        assert shown.strip() == f"{model[float(e)] * 100:.1f}%", cells
    header = page.text_content(".results-table thead")
    n = run["model_accuracy"]["n_images"]
    assert f"PGD-10, 2 restarts, on {n} images" in header, header
    assert page.locator(".study-plot .model-point").count() == len(model) == 3
