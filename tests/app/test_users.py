"""Accounts and tokens on a real SQLite database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.db import make_engine, make_session_factory, session_scope
from app.errors import ErrorCode, ZhikuError
from app.migrate import upgrade_database
from app.models import ApiToken, Role
from app.security import token_digest
from app.services import users
from app.settings import load_settings


@pytest.fixture
def factory(tmp_path: Path):  # noqa: ANN201
    settings = load_settings(data_dir=tmp_path)
    upgrade_database(settings)
    return make_session_factory(make_engine(settings))


def test_first_admin_gets_a_generated_password_once(factory) -> None:  # noqa: ANN001
    with session_scope(factory) as session:
        generated = users.ensure_admin(session, username="admin", password="")
    with session_scope(factory) as session:
        assert users.ensure_admin(session, username="admin", password="") is None
        token, user = users.login(session, username="admin", password=generated, ttl_s=60)
        assert user.role == Role.ADMIN
    with session_scope(factory) as session:
        assert users.user_for_token(session, token).username == "admin"


def test_wrong_password_and_expired_token_are_refused(factory) -> None:  # noqa: ANN001
    with session_scope(factory) as session:
        users.create_user(session, username="alice", password="s3cret-密码", role=Role.EMPLOYEE)
    with session_scope(factory) as session:
        with pytest.raises(ZhikuError) as info:
            users.login(session, username="alice", password="wrong", ttl_s=60)
        assert info.value.code == ErrorCode.BAD_CREDENTIALS
        token, _ = users.login(session, username="alice", password="s3cret-密码", ttl_s=60)
    with session_scope(factory) as session:
        row = session.get(ApiToken, token_digest(token))
        row.expires_at -= timedelta(seconds=120)
    with session_scope(factory) as session:
        with pytest.raises(ZhikuError) as info:
            users.user_for_token(session, token)
        assert info.value.code == ErrorCode.UNAUTHORIZED


def test_password_change_logs_out_everywhere(factory) -> None:  # noqa: ANN001
    with session_scope(factory) as session:
        users.create_user(session, username="bob", password="one", role=Role.EDITOR)
        token, _ = users.login(session, username="bob", password="one", ttl_s=60)
    with session_scope(factory) as session:
        users.set_password(session, username="bob", password="two")
    with session_scope(factory) as session:
        with pytest.raises(ZhikuError):
            users.user_for_token(session, token)
