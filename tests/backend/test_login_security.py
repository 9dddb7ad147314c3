"""Logins hardened (issue "Hardening", item 2): server-side sessions that end at once, the
failed-login throttle kept in the database, constant-time failures, the password policy,
cross-site request refusal for cookie-authenticated writes, and the production cookie."""

from __future__ import annotations

import base64
import hashlib
import statistics
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from backend.core.config import Settings, get_settings
from backend.models import LoginFailure, LoginSession, User, utcnow
from tests.conftest import PASSWORDS, TEST_DATABASE_URL, login, tiny_imagefolder_zip

ME = "/api/auth/me"
SELF = "http://testserver"  # the TestClient's own origin (Host: testserver)
EVIL = "https://evil.example"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_of(client, role: str) -> str:
    return login(client, role)["Authorization"].removeprefix("Bearer ")


def fail_login(client, username: str, password: str = "wrong-password-1"):
    return client.post("/api/auth/login", json={"username": username, "password": password})


def status_with(client, token: str) -> int:
    return client.get(ME, headers=bearer(token)).status_code


# --- sessions end at once ------------------------------------------------------------------


def test_logout_revokes_the_session_for_cookie_and_bearer(client, users):
    r = client.post("/api/auth/login", json={"username": "admin", "password": "admin-pass"})
    token = r.json()["access_token"]
    assert client.get(ME).status_code == 200  # by cookie
    assert client.post("/api/auth/logout").status_code == 204  # by cookie
    assert client.get(ME).status_code == 401
    client.cookies.clear()
    assert status_with(client, token) == 401  # the same token as a bearer: ended too

    token = token_of(client, "admin")
    client.cookies.clear()
    assert client.post("/api/auth/logout", headers=bearer(token)).status_code == 204
    assert status_with(client, token) == 401
    # the cookie, had the browser kept it, names the same ended session
    client.cookies.set("sipat_session", token)
    assert client.get(ME).status_code == 401


def test_a_password_change_ends_every_session_of_the_account(client, users):
    first, second = token_of(client, "annotator"), token_of(client, "annotator")
    admin = token_of(client, "admin")
    other_admin = token_of(client, "admin")
    client.cookies.clear()
    uid = users["annotator"].id
    r = client.patch(f"/api/users/{uid}", headers=bearer(admin), json={"password": "fresh-lake-17"})
    assert r.status_code == 200, r.text
    assert status_with(client, first) == 401 and status_with(client, second) == 401
    # an admin changing their own password stays logged in here, and out everywhere else
    r = client.patch(
        f"/api/users/{users['admin'].id}", headers=bearer(admin), json={"password": "quiet-tide-42"}
    )
    assert r.status_code == 200, r.text
    assert status_with(client, admin) == 200
    assert status_with(client, other_admin) == 401


def test_users_change_their_own_password_and_end_their_other_sessions(client, users, db):
    here, elsewhere = token_of(client, "annotator"), token_of(client, "annotator")
    researcher = token_of(client, "researcher")
    client.cookies.clear()
    url = "/api/auth/password"
    good = {"current_password": PASSWORDS["annotator"], "new_password": "amber-harbour-61"}
    assert client.post(url, json=good).status_code == 401  # not logged in
    # a weak new password: 422 with the rule, nothing changed
    r = client.post(url, headers=bearer(here), json={**good, "new_password": "password123"})
    assert r.status_code == 422 and "too common" in r.json()["detail"], r.text
    r = client.post(url, headers=bearer(here), json={**good, "new_password": "annotator-2026!"})
    assert r.status_code == 422 and "username" in r.json()["detail"], r.text
    # a wrong current password: 403, counted as a failed login of the account
    before = db.scalar(select(func.count()).select_from(LoginFailure))
    r = client.post(url, headers=bearer(here), json={**good, "current_password": "not-it-at-all"})
    assert r.status_code == 403 and "current password" in r.json()["detail"], r.text
    assert db.scalar(select(func.count()).select_from(LoginFailure)) > before
    assert status_with(client, elsewhere) == 200  # nothing ended yet
    r = client.post(url, headers=bearer(here), json=good)
    assert r.status_code == 200 and r.json() == {"revoked": 1}, r.text
    assert status_with(client, here) == 200  # this session stays
    assert status_with(client, elsewhere) == 401  # the others end
    assert status_with(client, researcher) == 200  # nobody else's
    old = client.post(
        "/api/auth/login", json={"username": "annotator", "password": PASSWORDS["annotator"]}
    )
    assert old.status_code == 401
    new = client.post(
        "/api/auth/login", json={"username": "annotator", "password": "amber-harbour-61"}
    )
    assert new.status_code == 200


def test_deactivation_ends_every_session_and_reactivation_revives_none(client, users):
    first, second = token_of(client, "researcher"), token_of(client, "researcher")
    admin = token_of(client, "admin")
    client.cookies.clear()
    uid = users["researcher"].id
    assert client.patch(
        f"/api/users/{uid}", headers=bearer(admin), json={"is_active": False}
    ).is_success
    assert status_with(client, first) == 401 and status_with(client, second) == 401
    assert client.patch(
        f"/api/users/{uid}", headers=bearer(admin), json={"is_active": True}
    ).is_success
    assert status_with(client, first) == 401 and status_with(client, second) == 401
    assert token_of(client, "researcher")  # a new login works


def test_admin_signs_an_account_out_everywhere(client, users):
    first, second = token_of(client, "annotator"), token_of(client, "annotator")
    admin, researcher = token_of(client, "admin"), token_of(client, "researcher")
    client.cookies.clear()
    uid = users["annotator"].id
    url = f"/api/users/{uid}/sign-out-everywhere"
    assert client.post(url, headers=bearer(researcher)).status_code == 403
    assert status_with(client, first) == 200
    r = client.post(url, headers=bearer(admin))
    assert r.status_code == 200 and r.json() == {"revoked": 2}
    assert status_with(client, first) == 401 and status_with(client, second) == 401
    assert status_with(client, researcher) == 200  # nobody else's
    missing = client.post("/api/users/999/sign-out-everywhere", headers=bearer(admin))
    assert missing.status_code == 404
    assert client.post(url, headers=bearer(admin)).json() == {"revoked": 0}
    assert token_of(client, "annotator")  # the account still logs in


def test_a_user_signs_themself_out_everywhere(client, users):
    here, elsewhere = token_of(client, "researcher"), token_of(client, "researcher")
    admin = token_of(client, "admin")
    client.cookies.clear()
    r = client.post("/api/auth/sign-out-everywhere", headers=bearer(here))
    assert r.status_code == 200 and r.json() == {"revoked": 2}
    assert status_with(client, here) == 401 and status_with(client, elsewhere) == 401
    assert status_with(client, admin) == 200


def test_the_token_carries_nothing_of_the_password_and_is_stored_only_hashed(client, users, db):
    tokens = [token_of(client, "admin") for _ in range(2)]
    assert tokens[0] != tokens[1]
    password_hash = users["admin"].password_hash
    for token in tokens:
        random_part, _, signature = token.partition(".")
        raw = base64.urlsafe_b64decode(random_part + "=")
        assert len(raw) == 32
        decoded = raw + base64.urlsafe_b64decode(signature + "=")
        for i in range(len(password_hash) - 6):
            piece = password_hash[i : i + 6]
            assert piece not in token and piece.encode() not in decoded
    rows = db.scalars(select(LoginSession).order_by(LoginSession.id)).all()
    assert [r.token_hash for r in rows] == [hashlib.sha256(t.encode()).hexdigest() for t in tokens]
    with db.bind.connect() as conn:  # the token itself is in no column
        for row in conn.execute(sa.text("select * from login_sessions")):
            assert not any(t in str(v) for v in row for t in tokens)


def test_a_forged_token_of_the_right_shape_is_refused(client, users):
    token = token_of(client, "admin")
    random_part, _, signature = token.partition(".")
    client.cookies.clear()
    other = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    assert status_with(client, f"{other}.{signature}") == 401
    last = "A" if signature[-1] != "A" else "B"
    assert status_with(client, f"{random_part}.{signature[:-1]}{last}") == 401
    assert status_with(client, token) == 200


# --- the failed-login throttle -------------------------------------------------------------


def test_too_many_failures_for_an_account_get_429_and_survive_a_restart(
    client, users, db, monkeypatch
):
    for _ in range(5):
        assert fail_login(client, "annotator").status_code == 401
    # the right password now: refused without being checked
    import backend.services.logins as logins

    def never(*_args: object) -> bool:
        raise AssertionError("the password was checked")

    monkeypatch.setattr(logins, "verify_password_or_dummy", never)
    r = fail_login(client, "annotator", PASSWORDS["annotator"])
    assert r.status_code == 429
    retry = int(r.headers["Retry-After"])
    assert retry <= 2  # a delay that doubles with each failure, not a 15-minute lock
    assert r.json()["detail"].startswith("Too many failed logins for this account")
    assert "an admin can set a new password" in r.json()["detail"]
    # other accounts, from the same address, are not affected
    monkeypatch.undo()
    assert client.post(
        "/api/auth/login", json={"username": "admin", "password": "admin-pass"}
    ).is_success

    # a new app instance, with a fresh connection pool: the count is in the database
    from backend.db import get_engine
    from backend.main import create_app

    get_engine().dispose()
    with TestClient(create_app()) as fresh:
        r = fail_login(fresh, "annotator", PASSWORDS["annotator"])
        assert r.status_code == 429 and int(r.headers["Retry-After"]) <= retry

    # once the failures leave the 15-minute window the account logs in again
    db.execute(
        update(LoginFailure).values(created_at=LoginFailure.created_at - timedelta(minutes=15))
    )
    db.commit()
    assert fail_login(client, "annotator", PASSWORDS["annotator"]).status_code == 200


def _age_failures(db, seconds: float) -> None:
    db.execute(
        update(LoginFailure).values(created_at=LoginFailure.created_at - timedelta(seconds=seconds))
    )
    db.commit()


def test_each_failure_past_the_limit_doubles_the_delay(client, users, db):
    for _ in range(5):
        assert fail_login(client, "annotator").status_code == 401
    waits = []
    for _ in range(4):
        r = fail_login(client, "annotator")
        assert r.status_code == 429
        waits.append(int(r.headers["Retry-After"]))
        _age_failures(db, waits[-1])  # the wait passes: the next try is checked (and fails)
        assert fail_login(client, "annotator").status_code == 401
    assert waits == [2, 4, 8, 16], waits
    # capped at the window
    for _ in range(10):
        _age_failures(db, 1)
        record = LoginFailure(kind="pair", value="annotator @ testclient", created_at=utcnow())
        db.add(record)
    db.commit()
    r = fail_login(client, "annotator")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) <= 900


def test_an_admins_new_password_lifts_the_pause(client, users, auth):
    for _ in range(7):
        fail_login(client, "annotator")
    assert fail_login(client, "annotator", PASSWORDS["annotator"]).status_code == 429
    new = "a-brand-new-passphrase-7"
    r = client.patch(
        f"/api/users/{users['annotator'].id}", headers=auth["admin"], json={"password": new}
    )
    assert r.status_code == 200, r.text
    assert fail_login(client, "annotator", new).status_code == 200


def test_a_stranger_elsewhere_cannot_keep_the_owner_out(client, users, db):
    """Failures from another address pause the account everywhere but at the addresses its
    owner has logged in from: the owner at their usual desk logs in."""
    from backend.services import logins

    settings = get_settings()
    assert fail_login(client, "annotator", PASSWORDS["annotator"]).status_code == 200
    for _ in range(8):  # a stranger's failures, a moment ago
        logins.record_failure(db, "annotator", "203.0.113.9", settings, utcnow())
    db.commit()
    # the stranger is paused
    paused = logins.log_in(db, "annotator", "guess-it-2", settings, address="203.0.113.9")
    assert isinstance(paused, logins.Throttled) and paused.kind == logins.PAIR
    # and so is anyone at a new address
    elsewhere = logins.log_in(db, "annotator", "x", settings, address="198.51.100.1")
    assert isinstance(elsewhere, logins.Throttled) and elsewhere.kind == logins.ACCOUNT
    # the owner, at the address they logged in from before, is not
    assert fail_login(client, "annotator", PASSWORDS["annotator"]).status_code == 200


def test_an_allowed_network_is_never_paused_as_an_address(client, users, db, monkeypatch):
    from backend.services import logins

    settings = get_settings()
    monkeypatch.setattr(settings, "login_max_failures_per_address", 3)
    for name in ("g1", "g2", "g3"):
        logins.log_in(db, name, "wrong-password-1", settings, address="10.20.3.4")
    refused = logins.log_in(db, "g4", "wrong-password-1", settings, address="10.20.3.4")
    assert isinstance(refused, logins.Throttled) and refused.kind == logins.ADDRESS
    monkeypatch.setattr(settings, "login_allowed_addresses", "192.0.2.7, 10.20.0.0/16")
    assert logins.log_in(db, "g4", "wrong-password-1", settings, address="10.20.3.4") is None
    with pytest.raises(ValueError, match="LOGIN_ALLOWED_ADDRESSES"):
        Settings(login_allowed_addresses="10.20.0.0/16, the-lab")


def test_a_success_clears_the_account_counter(client, users, db):
    for _ in range(4):
        assert fail_login(client, "researcher").status_code == 401
    assert fail_login(client, "researcher", PASSWORDS["researcher"]).status_code == 200
    count = select(func.count()).select_from(LoginFailure).where(LoginFailure.kind == "account")
    assert db.scalar(count) == 0
    for _ in range(4):
        assert fail_login(client, "researcher").status_code == 401
    assert fail_login(client, "researcher", PASSWORDS["researcher"]).status_code == 200


def test_too_many_failures_from_an_address_get_429(client, users, monkeypatch):
    monkeypatch.setattr(get_settings(), "login_max_failures_per_address", 4)
    for name in ("ghost1", "ghost2", "ghost3", "admin"):  # different accounts
        assert fail_login(client, name).status_code == 401
    r = fail_login(client, "researcher", PASSWORDS["researcher"])
    assert r.status_code == 429
    assert r.json()["detail"].startswith("Too many failed logins from your address")
    assert 0 < int(r.headers["Retry-After"]) <= 900


def test_the_default_limits():
    settings = Settings()
    assert settings.login_max_failures_per_account == 5
    assert settings.login_max_failures_per_address == 20
    assert settings.login_failure_window_s == 15 * 60


# --- constant-time failures, and no transaction while argon2 runs ---------------------------


@pytest.mark.serial  # it compares two timings: alone, not beside the other test processes
def test_an_unknown_user_fails_as_slowly_as_a_wrong_password(client, users, monkeypatch):
    monkeypatch.setattr(get_settings(), "login_max_failures_per_account", 1000)
    monkeypatch.setattr(get_settings(), "login_max_failures_per_address", 1000)

    def median_s(username: str) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            assert fail_login(client, username).status_code == 401
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    fail_login(client, "warm-up")
    known, unknown = median_s("researcher"), median_s("nobody-by-this-name")
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def _open_transactions() -> int:
    """Connections to the test database that sit in a transaction (not this one)."""
    engine = sa.create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "select count(*) from pg_stat_activity where datname = "
                        "current_database() and pid <> pg_backend_pid() "
                        "and state like 'idle in transaction%'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_argon2_runs_outside_any_transaction(client, users, monkeypatch):
    import backend.services.logins as logins
    import backend.services.users as accounts

    seen: list[int] = []
    real_verify, real_hash = logins.verify_password_or_dummy, accounts.hash_password

    def verify(password_hash: str | None, password: str) -> bool:
        seen.append(_open_transactions())
        return real_verify(password_hash, password)

    def hash_password(password: str) -> str:
        seen.append(_open_transactions())
        return real_hash(password)

    monkeypatch.setattr(logins, "verify_password_or_dummy", verify)
    monkeypatch.setattr(accounts, "hash_password", hash_password)
    admin = token_of(client, "admin")  # a success
    fail_login(client, "admin")  # a wrong password
    fail_login(client, "no-such-user")  # an unknown user
    client.cookies.clear()
    r = client.post(
        "/api/users",
        headers=bearer(admin),
        json={"username": "fresh", "password": "pebble-orchid-9", "role": "annotator"},
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    r = client.patch(
        f"/api/users/{uid}", headers=bearer(admin), json={"password": "lantern-meadow-3"}
    )
    assert r.status_code == 200, r.text
    assert seen == [0, 0, 0, 0, 0]


def test_a_hash_with_older_parameters_is_redone_at_login(client, users, db):
    from argon2 import PasswordHasher

    from backend.core.security import needs_rehash, verify_password

    old = PasswordHasher()  # argon2-cffi's default (64 MiB, 3 passes, 4 lanes)
    db.execute(
        update(User)
        .where(User.username == "annotator")
        .values(password_hash=old.hash(PASSWORDS["annotator"]))
    )
    db.commit()
    stored = db.scalar(select(User.password_hash).where(User.username == "annotator"))
    assert needs_rehash(stored)
    login(client, "annotator")
    db.expire_all()
    new = db.scalar(select(User.password_hash).where(User.username == "annotator"))
    assert new != stored and not needs_rehash(new)
    assert verify_password(new, PASSWORDS["annotator"])
    login(client, "annotator")  # and the new hash works


# --- the password policy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short-1", "at least 10 characters"),
        ("Password123!", "too common"),
        ("qwertyuiop", "too common"),
        ("1234567890", "too common"),
        ("!!Sunshine2024", "too common"),
        ("the-newbie-rules", "must not be or contain the username"),
        ("NEWBIE-in-caps-ok", "must not be or contain the username"),
    ],
)
def test_weak_new_passwords_are_refused_with_the_rule(client, auth, password, rule):
    r = client.post(
        "/api/users",
        headers=auth["admin"],
        json={"username": "newbie", "password": password, "role": "annotator"},
    )
    assert r.status_code == 422
    assert rule in r.json()["detail"]
    assert r.json()["errors"][0]["field"] == "password"
    assert r.json()["detail"].endswith(".")


def test_weak_changed_passwords_are_refused_with_the_rule(client, auth, users):
    url = f"/api/users/{users['annotator'].id}"
    for password, rule in (
        ("letmein123", "too common"),
        ("annotator-2024-x", "must not be or contain the username"),
        ("tiny", "at least 10 characters"),
    ):
        r = client.patch(url, headers=auth["admin"], json={"password": password})
        assert r.status_code == 422, password
        assert rule in r.json()["detail"]
        assert r.json()["errors"][0]["field"] == "password"
    assert login(client, "annotator")  # the old password still works


def test_the_test_and_demo_passwords_meet_the_length_and_list_rules():
    from backend.cli import DEMO_ACCOUNTS
    from backend.core.security import password_problem

    for password in (*PASSWORDS.values(), *(p for _, p in DEMO_ACCOUNTS.values())):
        assert password_problem(password) is None, password


def test_the_cli_refuses_a_weak_password(db, capsys):
    from backend.cli import main

    assert main(["create-user", "carol", "--role", "annotator", "--password", "carol-pass-1"]) == 2
    assert "must not be or contain the username" in capsys.readouterr().err
    assert main(["create-user", "carol", "--role", "annotator", "--password", "password1"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    assert db.scalar(select(User.id).where(User.username == "carol")) is None
    good = ["create-user", "carol", "--role", "annotator", "--password", "velvet-ocean-88"]
    assert main(good) == 0
    assert main(good) == 2  # taken
    assert db.scalar(select(User.id).where(User.username == "carol")) is not None


# --- cross-site requests with the session cookie -------------------------------------------


def _cookie_login(client, role: str) -> str:
    client.cookies.clear()
    r = client.post("/api/auth/login", json={"username": role, "password": PASSWORDS[role]})
    assert r.status_code == 200
    return r.json()["access_token"]


def _new_user(n: int) -> dict[str, str]:
    return {"username": f"user{n}", "password": "harbour-violet-5", "role": "annotator"}


def test_a_cross_origin_cookie_write_is_refused_and_a_same_origin_one_passes(client, users, db):
    token = _cookie_login(client, "admin")
    r = client.post("/api/users", json=_new_user(1), headers={"Origin": EVIL})
    assert r.status_code == 403
    assert "cross-site" in r.json()["detail"] and r.json()["detail"].endswith(".")
    r = client.post(
        "/api/users", json=_new_user(1), headers={"Referer": f"{EVIL}/page.html"}
    )  # no Origin: the Referer is checked instead
    assert r.status_code == 403
    r = client.post("/api/users", json=_new_user(1), headers={"Origin": "null"})
    assert r.status_code == 403
    assert db.scalar(select(func.count()).select_from(User)) == 3  # nothing was created

    assert client.post("/api/users", json=_new_user(1), headers={"Origin": SELF}).status_code == 201
    r = client.post("/api/users", json=_new_user(2), headers={"Referer": f"{SELF}/#/admin/users"})
    assert r.status_code == 201
    # no Origin nor Referer, and a JSON body: not a browser's cross-site request
    assert client.post("/api/users", json=_new_user(3)).status_code == 201
    # a bearer token cannot be sent by another site's page: no origin check
    cookies = dict(client.cookies)
    client.cookies.clear()
    r = client.post("/api/users", json=_new_user(4), headers={**bearer(token), "Origin": EVIL})
    assert r.status_code == 201
    client.cookies.update(cookies)
    # reads are never refused; nor is a cross-site logout allowed to end the session
    assert client.get("/api/users", headers={"Origin": EVIL}).status_code == 200
    assert client.post("/api/auth/logout", headers={"Origin": EVIL}).status_code == 403
    assert client.get(ME).status_code == 200


def test_form_bodies_with_the_cookie_are_refused_on_json_routes(client, users):
    _cookie_login(client, "admin")
    for content_type, body in (
        ("application/x-www-form-urlencoded", "username=x&password=y&role=admin"),
        ("text/plain", '{"username": "sneaky", "password": "harbour-violet-5", "role": "admin"}'),
        ("multipart/form-data; boundary=x", "--x--"),
    ):
        r = client.post(
            "/api/users", content=body, headers={"Content-Type": content_type, "Origin": SELF}
        )
        assert r.status_code == 403, content_type
        assert "takes JSON" in r.json()["detail"]


def test_cookie_uploads_from_another_origin_are_refused(client, users):
    _cookie_login(client, "researcher")

    def upload(name: str, headers: dict[str, str]) -> int:
        files = {"file": ("t.zip", tiny_imagefolder_zip(per_class=2, size=16), "application/zip")}
        r = client.post("/api/datasets/import", data={"name": name}, files=files, headers=headers)
        return r.status_code

    assert upload("no-origin", {}) == 201  # a script or a tool: browsers send an Origin
    assert upload("evil", {"Origin": EVIL}) == 403
    assert upload("same", {"Origin": SELF}) == 201
    assert upload("referer", {"Referer": f"{SELF}/#/datasets"}) == 201


def test_trusted_origins_may_send_cookie_writes(client, users, monkeypatch):
    monkeypatch.setattr(get_settings(), "trusted_origins", "https://studio.example.org")
    _cookie_login(client, "admin")
    ok = client.post(
        "/api/users", json=_new_user(1), headers={"Origin": "https://studio.example.org:443"}
    )
    assert ok.status_code == 201
    bad = client.post("/api/users", json=_new_user(2), headers={"Origin": "http://example.org"})
    assert bad.status_code == 403


# --- the cookie in production --------------------------------------------------------------


def test_the_session_cookie_is_secure_by_default_in_production(client, users, monkeypatch):
    secret = "a-production-secret-of-some-length"
    assert Settings(environment="production", secret_key=secret).secure_cookie is True
    assert Settings(environment="demo").secure_cookie is False
    assert Settings(environment="test", secret_key=secret).secure_cookie is False
    off = Settings(environment="production", secret_key=secret, cookie_secure=False)
    assert off.secure_cookie is False

    monkeypatch.setattr(get_settings(), "environment", "production")
    r = client.post("/api/auth/login", json={"username": "admin", "password": "admin-pass"})
    cookie = r.headers["set-cookie"]
    assert "secure" in cookie.lower() and "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    r = client.post("/api/auth/logout", headers=bearer(r.json()["access_token"]))
    assert "secure" in r.headers["set-cookie"].lower()


def test_the_last_seen_time_is_kept(client, users, db):
    token = token_of(client, "annotator")
    client.cookies.clear()
    db.execute(update(LoginSession).values(last_seen_at=utcnow() - timedelta(hours=1)))
    db.commit()
    assert status_with(client, token) == 200
    db.expire_all()
    seen = db.scalar(select(LoginSession.last_seen_at))
    assert seen is not None and utcnow() - seen < timedelta(minutes=1)
