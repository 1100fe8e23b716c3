"""Writing audit events. The caller's transaction commits them with the change they record."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.models import AuditEvent, User


def record(session: Session, action: str, *, user: User | None = None, kb_id: int | None = None,
           document_id: int | None = None, **detail: Any) -> AuditEvent:
    event = AuditEvent(action=action, user_id=user.id if user else None,
                       username=user.username if user else None, kb_id=kb_id,
                       document_id=document_id, detail=detail)
    session.add(event)
    return event
