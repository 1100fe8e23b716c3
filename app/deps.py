"""FastAPI dependencies: the settings, a DB session per request, the current user, role checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from app.db import session_scope
from app.errors import ErrorCode, ZhikuError
from app.models import Role, User
from app.services.users import user_for_token
from app.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.session_factory) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the transaction commits before the response is sent, so a client's next request
# (the token just issued, the document just deleted) sees it. With the default, the commit could land
# after the response, which PostgreSQL made visible as a deleted document still being served.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_current_user(session: SessionDep, authorization: Annotated[str | None, Header()] = None) -> User:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise ZhikuError(ErrorCode.UNAUTHORIZED, "log in first: send 'Authorization: Bearer <token>'")
    return user_for_token(session, authorization[7:].strip())


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_editor(user: CurrentUser) -> User:
    if user.role not in (Role.ADMIN, Role.EDITOR):
        raise ZhikuError(ErrorCode.FORBIDDEN, "only editors and admins may change documents")
    return user


EditorUser = Annotated[User, Depends(require_editor)]


def require_admin(user: CurrentUser) -> User:
    if user.role is not Role.ADMIN:
        raise ZhikuError(ErrorCode.FORBIDDEN, "only admins may do this")
    return user


AdminUser = Annotated[User, Depends(require_admin)]
