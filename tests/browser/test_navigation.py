"""Login, each role's home page and navigation, sign-out, and the login redirect."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from .conftest import sign_in

pytestmark = pytest.mark.browser

NAV = {
    "admin": ["Home", "Datasets", "Review", "Runs", "Studies", "Queue", "Users"],
    "researcher": ["Home", "Datasets", "Review", "Runs", "Studies", "Queue"],
    "annotator": ["Home", "Annotate"],
}


def test_wrong_password_shows_the_server_sentence(page, seeded):
    page.goto("/#/login")
    page.fill("input[name=username]", "annotator")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    expect(page.locator(".form-error")).to_have_text("Incorrect username or password.")
    expect(page.locator(".app-header")).to_be_hidden()


@pytest.mark.parametrize("role", ["admin", "researcher", "annotator"])
def test_each_role_gets_its_home_and_navigation(page, seeded, role):
    sign_in(page, role)
    expect(page).to_have_url(re.compile(r"#/home$"))
    header = page.locator(".app-header")
    expect(header.locator(".user-name")).to_have_text(role)
    expect(header.locator(".badge")).to_have_text(role)
    expect(header.locator("nav a")).to_have_text(NAV[role])
    expect(page.locator("h1")).to_contain_text(f"Welcome, {role}")

    if role == "admin":
        header.get_by_role("link", name="Users").click()
        expect(page).to_have_url(re.compile(r"#/admin/users$"))
        rows = page.locator("table.users tbody tr")
        expect(rows).to_have_count(3)
        # create an account, then change its role and deactivate it
        page.fill("form.create-user input[name=username]", "newbie")
        page.fill("form.create-user input[name=password]", "maple-harbor-2417")
        page.select_option("form.create-user select[name=role]", "annotator")
        page.click("form.create-user button[type=submit]")
        expect(page.locator("form.create-user .form-ok")).to_contain_text("Created newbie")
        row = page.locator("table.users tbody tr", has_text="newbie")
        # newbie logs in elsewhere; the admin ends that session from here
        base = page.url.split("/#")[0]
        token = httpx.post(
            f"{base}/api/auth/login", json={"username": "newbie", "password": "maple-harbor-2417"}
        ).json()["access_token"]
        row.get_by_role("button", name="Sign out everywhere").click()
        expect(page.locator(".list-ok")).to_have_text("newbie: 1 session ended.")
        me = httpx.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401
        row.locator("select.role").select_option("researcher")
        expect(row.locator("select.role")).to_have_value("researcher")
        row.get_by_role("button", name="Deactivate").click()
        expect(
            page.locator("table.users tbody tr", has_text="newbie").locator(".badge")
        ).to_have_text("deactivated")
        users = page.request.get("/api/users").json()["data"]
        newbie = next(u for u in users if u["username"] == "newbie")
        assert newbie["role"] == "researcher" and newbie["is_active"] is False
    elif role == "researcher":
        header.get_by_role("link", name="Datasets").click()
        expect(page).to_have_url(re.compile(r"#/datasets$"))
        expect(page.locator("table.datasets tbody tr").first).to_contain_text("tiny")
    else:
        header.get_by_role("link", name="Annotate").click()
        expect(page).to_have_url(re.compile(r"#/annotate$"))
        expect(page.get_by_role("button", name="Start annotating")).to_be_enabled()

    # pages of other roles are refused in the page, not only by the API
    other = {"admin": "#/annotate", "researcher": "#/admin/users", "annotator": "#/admin/users"}[
        role
    ]
    page.goto(f"/{other}")
    expect(page.locator("h1")).to_have_text("Not available")

    header.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"#/login"))
    assert page.request.get("/api/auth/me").status == 401


def test_deep_link_returns_after_login(page, seeded):
    page.goto(f"/#/datasets/{seeded['dataset_id']}")
    expect(page).to_have_url(re.compile(r"#/login\?next="))
    page.fill("input[name=username]", "researcher")
    page.fill("input[name=password]", "researcher-pass")
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(rf"#/datasets/{seeded['dataset_id']}$"))
    expect(page.locator("table.classes tbody tr")).to_have_count(2)


def test_a_user_changes_their_password_on_the_account_page(page, seeded):
    base_login = {"username": "annotator", "password": "annotator-pass"}
    sign_in(page, "annotator")
    base = page.url.split("/#")[0]
    elsewhere = httpx.post(f"{base}/api/auth/login", json=base_login).json()["access_token"]
    page.locator(".app-header .user-name").click()
    expect(page).to_have_url(re.compile(r"#/account$"))
    form = page.locator("form.change-password")
    form.locator("input[name=current]").fill("annotator-pass")
    form.locator("input[name=next]").fill("password1234")
    form.locator("input[name=again]").fill("password1234")
    form.get_by_role("button", name="Change password").click()
    expect(form.locator(".form-error")).to_contain_text("too common")
    form.locator("input[name=next]").fill("willow-canyon-88")
    form.locator("input[name=again]").fill("willow-canyon-88")
    form.get_by_role("button", name="Change password").click()
    # the fixture's own logins and `elsewhere` end
    expect(form.locator(".form-ok")).to_have_text(
        re.compile(r"^Password changed\. \d+ other sessions? (was|were) signed out\.$")
    )
    other = httpx.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {elsewhere}"})
    assert other.status_code == 401
    assert page.request.get("/api/auth/me").status == 200  # this one stays
    assert httpx.post(f"{base}/api/auth/login", json=base_login).status_code == 401
    # and signing out everywhere ends this session too
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Sign out everywhere").click()
    expect(page).to_have_url(re.compile(r"#/login"))
    assert page.request.get("/api/auth/me").status == 401


def test_a_researchers_home_shows_what_needs_attention(page, seeded, client, auth, db):
    """Runs training and waiting (with their progress), the latest failure, masks waiting
    for review and the open studies, each linking on, on the researcher's home page."""
    from backend.models import TrainingRun
    from tests.backend.test_annotation import body, put, square

    made = {}
    for name, state, progress in [
        ("training now", "running", 0.4),
        ("waiting its turn", "queued", 0.0),
        ("broke", "failed", 0.1),
    ]:
        run = TrainingRun(
            name=name,
            dataset_id=seeded["dataset_id"],
            method="standard",
            config={},
            state=state,
            progress=progress,
        )
        db.add(run)
        db.flush()
        made[name] = run.id
    db.commit()
    image_id = seeded["image_ids"][0]
    assert put(client, auth["annotator"], image_id, body(square())).status_code == 200
    r = client.post(f"/api/annotate/images/{image_id}/submit", headers=auth["annotator"])
    assert r.status_code == 200, r.text

    sign_in(page, "researcher")
    runs = page.locator(".home-runs")
    expect(runs.locator("p").first).to_have_text("1 training, 1 waiting.")
    expect(runs.locator(f"li[data-run='{made['training now']}']")).to_contain_text("40%")
    expect(runs.locator(f"li[data-run='{made['waiting its turn']}']")).to_contain_text("queued")
    expect(runs.locator(".form-error")).to_have_text("1 run failed: broke")
    expect(page.locator(".home-review p")).to_have_text("1 mask waiting for review.")
    expect(page.locator(".home-studies p").first).to_have_text("No study is open.")
    page.locator(".home-review a").click()
    expect(page).to_have_url(re.compile(r"#/review$"))


def test_an_admin_sets_a_role_and_a_password_and_the_users_page_follows(
    chromium, live_server, seeded
):
    """A role change is confirmed, and the user's open page takes the new role at its next
    page load, with a notice; a new password is typed into a masked field of a dialog (no
    browser prompt, which shows it) and works at once."""
    admin_ctx = chromium.new_context(base_url=live_server)
    user_ctx = chromium.new_context(base_url=live_server)
    try:
        admin, user = admin_ctx.new_page(), user_ctx.new_page()
        sign_in(user, "annotator")
        expect(user.locator(".app-header nav a")).to_have_text(NAV["annotator"])
        sign_in(admin, "admin")
        admin.goto("/#/admin/users")
        row = admin.locator(f"table.users tbody tr[data-id='{seeded['users']['annotator']}']")
        row.locator("select.role").select_option("researcher")
        expect(admin.locator(".list-ok")).to_have_text(
            "annotator is now researcher; their open pages change at their next page load."
        )
        user.goto("/#/datasets")
        expect(user.locator(".role-changed")).to_contain_text("Your role is now researcher")
        expect(user.locator(".app-header nav a")).to_have_text(NAV["researcher"])
        expect(user.locator("table.datasets tbody tr").first).to_contain_text("tiny")

        prompted: list[str] = []
        admin.on("dialog", lambda d: (prompted.append(d.message), d.dismiss()))
        row.get_by_role("button", name="Set password").click()
        dialog = admin.locator("dialog.set-password")
        expect(dialog).to_be_visible()
        expect(dialog.locator("input[name=password]")).to_have_attribute("type", "password")
        dialog.locator("input[name=password]").fill("quiet-lantern-5521")
        dialog.get_by_role("button", name="Set password").click()
        expect(dialog).to_be_hidden()
        expect(admin.locator(".list-ok")).to_have_text(
            "annotator's password is set: their sessions are ended, and a pause after failed "
            "sign-ins is lifted."
        )
        assert not prompted
        new = {"username": "annotator", "password": "quiet-lantern-5521"}
        assert httpx.post(f"{live_server}/api/auth/login", json=new).status_code == 200
    finally:
        admin_ctx.close()
        user_ctx.close()
