"""Browser fixtures: one headless Chromium per session (the system's /usr/bin/chromium), a
fresh context and page per test, and helpers to sign in. The app itself comes from the
`live_server` and `seeded` fixtures in tests/conftest.py."""

from __future__ import annotations

import os

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORDS = {"admin": "admin-pass", "researcher": "researcher-pass", "annotator": "annotator-pass"}


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def context(chromium, live_server):
    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(15000)
    yield ctx
    ctx.close()


@pytest.fixture()
def page(context):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    yield page
    assert not errors, f"JavaScript errors on the page: {errors}"


def sign_in(page, role: str, password: str | None = None) -> None:
    """Open the login page and sign in as the seeded account of a role."""
    page.goto("/#/login")
    page.fill("input[name=username]", role)
    page.fill("input[name=password]", password or PASSWORDS[role])
    page.click("button[type=submit]")
    page.wait_for_selector(".app-header .user-name")


@pytest.fixture()
def login():
    return sign_in
