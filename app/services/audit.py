"""Writing and reading audit events. The caller's transaction commits them with the change they record.

Actions: auth.login, auth.login_failed, document.upload, document.delete, document.reindex,
acl.kb.set, acl.document.set, group.create, group.delete, group.member.add, group.member.remove,
user.create, ask, feedback, and sensitive.* (app/api/sensitive.py, ingest). Never a password.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.models import AuditEvent, User

CSV_COLUMNS = ("id", "at", "user_id", "username", "action", "kb_id", "document_id", "detail")


def record(session: Session, action: str, *, user: User | None = None, username: str | None = None,
           kb_id: int | None = None, document_id: int | None = None, **detail: Any) -> AuditEvent:
    """`username` names the actor when there is no `User` (a failed login under an unknown name)."""
    event = AuditEvent(action=action, user_id=user.id if user else None,
                       username=user.username if user else username, kb_id=kb_id,
                       document_id=document_id, detail=detail)
    session.add(event)
    return event


def question_for_log(question: str, policy: str) -> dict[str, str]:
    """What the log keeps of a question: the text, or by privacy policy only its SHA-256 (which still
    lets an admin check whether a given question was asked)."""
    if policy == "sha256":
        return {"question_sha256": hashlib.sha256(question.encode()).hexdigest()}
    return {"question": question}


@dataclass(frozen=True)
class AuditFilter:
    username: str | None = None
    action: str | None = None  # an exact action, or a prefix ending in "." ("auth." → all logins)
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: Select) -> Select:
        if self.username:
            query = query.where(AuditEvent.username == self.username)
        if self.action:
            if self.action.endswith("."):
                query = query.where(AuditEvent.action.startswith(self.action, autoescape=True))
            else:
                query = query.where(AuditEvent.action == self.action)
        if self.since:
            query = query.where(AuditEvent.at >= self.since)
        if self.until:
            query = query.where(AuditEvent.at < self.until)
        return query


def list_events(session: Session, where: AuditFilter, *, offset: int = 0,
                limit: int | None = 100) -> list[AuditEvent]:
    query = where.apply(select(AuditEvent)).order_by(AuditEvent.id.desc()).offset(offset)
    return list(session.scalars(query.limit(limit) if limit is not None else query))


def event_row(event: AuditEvent) -> dict[str, Any]:
    return {"id": event.id, "at": event.at.isoformat(), "user_id": event.user_id, "username": event.username,
            "action": event.action, "kb_id": event.kb_id, "document_id": event.document_id,
            "detail": event.detail}


def events_csv(events: Iterable[AuditEvent]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for event in events:
        row = event_row(event)
        writer.writerow({**row, "detail": json.dumps(row["detail"], ensure_ascii=False, sort_keys=True)})
    return out.getvalue()
