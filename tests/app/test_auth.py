"""Logging in through the real API: the brute-force throttle per username and per client address,
token expiry, and passwords that appear in no log and no table. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import session_scope
from app.models import LoginFailures, Role, utcnow
from app.services import users
from tests.app.conftest import AppStack, app_stack

pytestmark = pytest.mark.services
PASSWORD = "correct-horse-密码-42"


@pytest.fixture
def stack(tmp_path: Path, models_dir: Path, database_url: str) -> Iterator[AppStack]:
    with app_stack(tmp_path, models_dir, database_url, login_max_failures=3,
                   login_max_failures_per_address=6, login_lockout_s=30, login_max_lockout_s=600,
                   token_ttl_s=2) as stack:
        yield stack


def add_user(stack: AppStack, username: str) -> None:
    with session_scope(stack.factory) as session:
        users.create_user(session, username=username, password=PASSWORD, role=Role.EMPLOYEE)


def attempt(client: TestClient, username: str, password: str) -> tuple[int, str]:
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    return response.status_code, (response.json().get("error") or {}).get("code", "")


def lock_of(stack: AppStack, key: str) -> LoginFailures:
    with session_scope(stack.factory) as session:
        return session.get(LoginFailures, key)


def expire_lock(stack: AppStack, key: str) -> None:
    with session_scope(stack.factory) as session:
        session.get(LoginFailures, key).locked_until = utcnow() - timedelta(seconds=1)


def test_failed_logins_lock_the_username_for_a_growing_interval(stack: AppStack) -> None:
    add_user(stack, "mallory-target")
    client = TestClient(stack.app, client=("10.0.0.1", 4000))
    assert [attempt(client, "mallory-target", f"guess-{i}") for i in range(3)] == [(401, "BAD_CREDENTIALS")] * 3
    # Locked now: even the right password is refused, so guessing on gives nothing away.
    assert attempt(client, "mallory-target", PASSWORD) == (429, "TOO_MANY_ATTEMPTS")
    first = lock_of(stack, "user:mallory-target")
    assert timedelta(seconds=25) < first.locked_until - utcnow() <= timedelta(seconds=30)

    expire_lock(stack, "user:mallory-target")
    assert attempt(client, "mallory-target", "guess-4") == (401, "BAD_CREDENTIALS")
    second = lock_of(stack, "user:mallory-target")
    assert timedelta(seconds=55) < second.locked_until - utcnow() <= timedelta(seconds=60)  # doubled
    assert attempt(client, "mallory-target", PASSWORD)[0] == 429

    expire_lock(stack, "user:mallory-target")
    assert attempt(client, "mallory-target", PASSWORD)[0] == 200
    assert lock_of(stack, "user:mallory-target") is None  # a success starts the count afresh


def test_failures_from_one_address_lock_that_address_for_every_username(stack: AppStack) -> None:
    add_user(stack, "victim")
    attacker = TestClient(stack.app, client=("10.6.6.6", 4000))
    for i in range(6):  # two names, three guesses each: below each username's limit
        assert attempt(attacker, f"spray-{i % 2}", "guess")[0] == 401
    assert attempt(attacker, "victim", PASSWORD) == (429, "TOO_MANY_ATTEMPTS")
    colleague = TestClient(stack.app, client=("10.0.0.7", 4000))
    assert attempt(colleague, "victim", PASSWORD)[0] == 200  # other addresses are not locked out


def test_tokens_expire(stack: AppStack) -> None:
    add_user(stack, "shortlived")
    client = stack.login("shortlived", PASSWORD)
    assert client.get("/api/auth/me").status_code == 200
    time.sleep(2.2)
    response = client.get("/api/auth/me")
    assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHORIZED"


def test_passwords_appear_in_no_log_and_no_table(stack: AppStack, caplog: pytest.LogCaptureFixture,
                                                 capfd: pytest.CaptureFixture) -> None:
    add_user(stack, "careful")
    wrong = "wrong-Pa55word-that-must-not-leak"
    client = TestClient(stack.app)
    with caplog.at_level(logging.DEBUG):
        assert attempt(client, "careful", wrong)[0] == 401
        assert attempt(client, "no-such-user", wrong)[0] == 401
        assert attempt(client, "careful", PASSWORD)[0] == 200
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    with session_scope(stack.factory) as session:
        tables = ["audit_events", "login_failures", "users", "api_tokens"]
        stored = " ".join(str(row) for table in tables for row in session.execute(text(f"SELECT * FROM {table}")))
        actions = [a for (a,) in session.execute(text("SELECT action FROM audit_events WHERE username IN "
                                                      "('careful', 'no-such-user') ORDER BY id"))]
    assert actions[-3:] == ["auth.login_failed", "auth.login_failed", "auth.login"]
    for secret in (wrong, PASSWORD):
        assert secret not in logged
        assert secret not in stored
