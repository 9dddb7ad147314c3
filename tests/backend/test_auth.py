"""Logins, sessions and accounts."""

from datetime import timedelta

from sqlalchemy import update

from backend.core.security import SESSION_COOKIE, hash_password
from backend.models import LoginSession, utcnow
from tests.conftest import PASSWORDS, login


def test_login_sets_cookie_and_token(client, users):
    r = client.post(
        "/api/auth/login", json={"username": "researcher", "password": "researcher-pass"}
    )
    assert r.status_code == 200
    assert r.json()["user"]["role"] == "researcher"
    assert SESSION_COOKIE in r.cookies
    assert client.get("/api/auth/me").json()["username"] == "researcher"  # by cookie
    client.cookies.clear()
    token = r.json()["access_token"]
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["username"] == "researcher"


def test_wrong_password_and_unknown_user_get_the_same_answer(client, users):
    for body in (
        {"username": "researcher", "password": "nope"},
        {"username": "ghost", "password": "whatever"},
    ):
        r = client.post("/api/auth/login", json=body)
        assert r.status_code == 401
        assert r.json()["detail"] == "Incorrect username or password."


def test_passwords_are_stored_as_argon2_hashes(users):
    for role, user in users.items():
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORDS[role] not in user.password_hash


def test_logout_clears_cookie(client, users):
    client.post("/api/auth/login", json={"username": "admin", "password": "admin-pass"})
    assert client.post("/api/auth/logout").status_code == 204
    assert client.get("/api/auth/me").status_code == 401


def test_tampered_or_expired_token_is_refused(client, users, db):
    token = login(client, "admin")["Authorization"].removeprefix("Bearer ")
    client.cookies.clear()
    bad = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token[:-2]}xx"})
    assert bad.status_code == 401
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).is_success
    db.execute(update(LoginSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    expired = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    assert expired.json()["detail"] == "Your login has expired; please log in again."


def test_deactivated_user_and_changed_password_end_sessions(client, users, db):
    headers = login(client, "annotator")
    admin = login(client, "admin")
    client.cookies.clear()
    uid = users["annotator"].id
    r = client.patch(f"/api/users/{uid}", headers=admin, json={"password": "another-pass-1"})
    assert r.status_code == 200
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    r = client.post("/api/auth/login", json={"username": "annotator", "password": "another-pass-1"})
    assert r.status_code == 200
    client.cookies.clear()
    fresh = {"Authorization": f"Bearer {r.json()['access_token']}"}
    client.patch(f"/api/users/{uid}", headers=admin, json={"is_active": False})
    assert client.get("/api/auth/me", headers=fresh).status_code == 401
    r = client.post("/api/auth/login", json={"username": "annotator", "password": "another-pass-1"})
    assert r.status_code == 401


def test_admin_manages_users(client, auth, db):
    r = client.post(
        "/api/users",
        headers=auth["admin"],
        json={"username": "newbie", "password": "long-enough", "role": "annotator"},
    )
    assert r.status_code == 201 and r.json()["role"] == "annotator"
    dup = client.post(
        "/api/users",
        headers=auth["admin"],
        json={"username": "newbie", "password": "long-enough", "role": "annotator"},
    )
    assert dup.status_code == 409 and dup.json()["detail"] == "That username is taken."
    bad = client.post(
        "/api/users",
        headers=auth["admin"],
        json={"username": "x y", "password": "short", "role": "wizard"},
    )
    assert bad.status_code == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert fields == {"username", "password", "role"}
    assert all(f in bad.json()["detail"] for f in fields)
    users = client.get("/api/users", headers=auth["admin"]).json()
    assert users["count"] == 4


def test_last_admin_cannot_demote_itself(client, auth, users):
    r = client.patch(
        f"/api/users/{users['admin'].id}", headers=auth["admin"], json={"role": "researcher"}
    )
    assert r.status_code == 409
    assert r.json()["detail"] == "The last active admin cannot lose the admin role."


def test_hash_password_is_salted():
    assert hash_password("same") != hash_password("same")
