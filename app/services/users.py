"""Accounts and bearer tokens."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.errors import ErrorCode, ZhikuError
from app.models import ApiToken, Role, User, utcnow
from app.security import generate_password, hash_password, new_token, token_digest, verify_password


def ensure_admin(session: Session, *, username: str, password: str) -> str | None:
    """Create the first admin if there is no user yet; returns the password when it was generated here."""
    if session.scalar(select(User.id).limit(1)) is not None:
        return None
    generated = None if password else generate_password()
    session.add(User(username=username, password_hash=hash_password(password or generated), role=Role.ADMIN))
    return generated


def create_user(session: Session, *, username: str, password: str, role: Role) -> User:
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ZhikuError(ErrorCode.BAD_REQUEST, f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, *, username: str, password: str) -> None:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise ZhikuError(ErrorCode.BAD_REQUEST, f"no user named {username!r}")
    user.password_hash = hash_password(password)
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))  # log out everywhere


def login(session: Session, *, username: str, password: str, ttl_s: int) -> tuple[str, User]:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not verify_password(password, user.password_hash):
        raise ZhikuError(ErrorCode.BAD_CREDENTIALS, "wrong username or password")
    token = new_token()
    session.add(ApiToken(token_hash=token_digest(token), user_id=user.id, expires_at=utcnow() + timedelta(seconds=ttl_s)))
    return token, user


def user_for_token(session: Session, token: str) -> User:
    row = session.get(ApiToken, token_digest(token))
    if row is None or row.expires_at <= utcnow():
        raise ZhikuError(ErrorCode.UNAUTHORIZED, "not logged in or the session expired; log in again")
    return row.user
