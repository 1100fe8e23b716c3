"""Accounts, groups, bearer tokens, and the login throttle against password guessing.

OIDC/LDAP hook point (docs/security.md): an external identity provider would replace the password
check in `login` only. It verifies the person, then the same code creates or updates the `User` row
and its group memberships from the provider's claims and issues a token as below; ACLs and the
audit log work on users and group names, so nothing after the token changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import ErrorCode, ZhikuError
from app.models import (
    ApiToken, DocumentAcl, Group, GroupMember, KnowledgeBaseAcl, LoginFailures, Role, User, utcnow,
)
from app.security import generate_password, hash_password, new_token, token_digest, verify_password
from app.services.audit import record
from app.settings import Settings


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


def user_by_name(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise ZhikuError(ErrorCode.USER_NOT_FOUND, f"no user named {username!r}")
    return user


def set_password(session: Session, *, username: str, password: str) -> None:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise ZhikuError(ErrorCode.BAD_REQUEST, f"no user named {username!r}")
    user.password_hash = hash_password(password)
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))  # log out everywhere


# --- login and its throttle ---------------------------------------------------------------------

@dataclass(frozen=True)
class LoginLimits:
    max_failures: int = 5
    max_failures_per_address: int = 20
    lockout_s: float = 60.0
    max_lockout_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimits:
        return cls(settings.login_max_failures, settings.login_max_failures_per_address,
                   settings.login_lockout_s, settings.login_max_lockout_s)

    def lockout_after(self, num_failures: int, max_failures: int) -> float:
        """0 below the limit, then lockout_s doubled with every further failure, capped."""
        if num_failures < max_failures:
            return 0.0
        return min(self.lockout_s * 2.0 ** (num_failures - max_failures), self.max_lockout_s)


@cache
def _decoy_hash() -> str:
    return hash_password(generate_password())


def login(session: Session, *, username: str, password: str, ttl_s: int, address: str | None = None,
          limits: LoginLimits = LoginLimits()) -> tuple[str, User]:
    """A token for the right password. A failure is counted and audited in `session` before the
    error is raised: the caller commits it even though the request fails (app/api/auth.py)."""
    keys = [(f"user:{username}", limits.max_failures)]
    if address:
        keys.append((f"addr:{address}", limits.max_failures_per_address))
    now = utcnow()
    for key, _ in keys:
        row = session.get(LoginFailures, key)
        if row is not None and row.locked_until is not None and row.locked_until > now:
            # Refused before the password is checked: guesses during a lockout teach nothing.
            record(session, "auth.login_failed", username=username, address=address, reason="locked")
            wait_s = math.ceil((row.locked_until - now).total_seconds())
            raise ZhikuError(ErrorCode.TOO_MANY_ATTEMPTS,
                             f"too many failed logins: try again in {wait_s} s")
    user = session.scalar(select(User).where(User.username == username))
    # An unknown name costs the same scrypt as a known one, so timing does not reveal which exist.
    is_right = verify_password(password, user.password_hash if user else _decoy_hash()) and user is not None
    if not is_right:
        for key, max_failures in keys:
            _count_failure(session, key, max_failures, limits)
        record(session, "auth.login_failed", username=username, address=address, reason="bad_credentials")
        raise ZhikuError(ErrorCode.BAD_CREDENTIALS, "wrong username or password")
    # The address count is left alone: one's own good password must not reset guessing at others'.
    session.execute(delete(LoginFailures).where(LoginFailures.key == f"user:{username}"))
    token = new_token()
    session.add(ApiToken(token_hash=token_digest(token), user_id=user.id,
                         expires_at=now + timedelta(seconds=ttl_s)))
    record(session, "auth.login", user=user, address=address)
    return token, user


def _count_failure(session: Session, key: str, max_failures: int, limits: LoginLimits) -> None:
    now = utcnow()
    row = session.get(LoginFailures, key)
    if row is None:
        try:
            with session.begin_nested():
                row = LoginFailures(key=key, num_failures=0, updated_at=now)
                session.add(row)
        except IntegrityError:  # a concurrent failure created it first
            row = session.get(LoginFailures, key, populate_existing=True)
    if now - row.updated_at > timedelta(seconds=limits.max_lockout_s):
        row.num_failures = 1  # a count from long ago is not a run of guesses: start over
    else:
        # Incremented by SQL, not read-modify-write, so that concurrent guesses each count.
        row.num_failures = LoginFailures.num_failures + 1
    row.updated_at = now
    session.flush()
    session.refresh(row)
    lockout_s = limits.lockout_after(row.num_failures, max_failures)
    row.locked_until = now + timedelta(seconds=lockout_s) if lockout_s else None


def user_for_token(session: Session, token: str) -> User:
    row = session.get(ApiToken, token_digest(token))
    if row is None or row.expires_at <= utcnow():
        raise ZhikuError(ErrorCode.UNAUTHORIZED, "not logged in or the session expired; log in again")
    return row.user


# --- groups ---------------------------------------------------------------------------------------

def list_users(session: Session) -> list[tuple[User, list[str]]]:
    groups: dict[int, list[str]] = {}
    for user_id, name in session.execute(
        select(GroupMember.user_id, Group.name).join(Group, Group.id == GroupMember.group_id)
        .order_by(Group.name)
    ):
        groups.setdefault(user_id, []).append(name)
    return [(u, groups.get(u.id, [])) for u in session.scalars(select(User).order_by(User.username))]


def list_groups(session: Session) -> list[tuple[Group, list[str]]]:
    members: dict[int, list[str]] = {}
    for group_id, username in session.execute(
        select(GroupMember.group_id, User.username).join(User, User.id == GroupMember.user_id)
        .order_by(User.username)
    ):
        members.setdefault(group_id, []).append(username)
    return [(g, members.get(g.id, [])) for g in session.scalars(select(Group).order_by(Group.name))]


def group_by_name(session: Session, name: str) -> Group:
    group = session.scalar(select(Group).where(Group.name == name))
    if group is None:
        raise ZhikuError(ErrorCode.GROUP_NOT_FOUND, f"no group named {name!r}")
    return group


def create_group(session: Session, name: str) -> Group:
    name = name.strip()
    if not name or ":" in name:
        raise ZhikuError(ErrorCode.BAD_REQUEST, "a group name must be non-empty and contain no ':'")
    if session.scalar(select(Group.id).where(Group.name == name)) is not None:
        raise ZhikuError(ErrorCode.GROUP_EXISTS, f"a group named {name!r} already exists")
    group = Group(name=name)
    session.add(group)
    session.flush()
    return group


def delete_group(session: Session, name: str) -> None:
    """Also drops the group from every ACL: a later group of the same name must not inherit grants."""
    session.delete(group_by_name(session, name))
    principal = f"group:{name}"
    session.execute(delete(KnowledgeBaseAcl).where(KnowledgeBaseAcl.principal == principal))
    session.execute(delete(DocumentAcl).where(DocumentAcl.principal == principal))
    session.flush()


def add_member(session: Session, group_name: str, username: str) -> None:
    group, user = group_by_name(session, group_name), user_by_name(session, username)
    if session.get(GroupMember, (group.id, user.id)) is None:
        session.add(GroupMember(group_id=group.id, user_id=user.id))
        session.flush()


def remove_member(session: Session, group_name: str, username: str) -> None:
    group, user = group_by_name(session, group_name), user_by_name(session, username)
    session.execute(delete(GroupMember).where(GroupMember.group_id == group.id,
                                              GroupMember.user_id == user.id))

