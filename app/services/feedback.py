"""Thumbs up/down on answers. Feedback names the `ask` audit event it is about, so the cited chunk
ids come from the server's own record of that answer, never from the client."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ErrorCode, ZhikuError
from app.models import AuditEvent, Feedback, User
from app.services.audit import record


def submit(session: Session, user: User, *, question_id: int, is_positive: bool, question: str, answer: str,
           comment: str = "") -> Feedback:
    event = session.get(AuditEvent, question_id)
    # Someone else's question is reported as missing: its id says nothing about what they asked.
    if event is None or event.action != "ask" or event.user_id != user.id:
        raise ZhikuError(ErrorCode.QUESTION_NOT_FOUND, f"you asked no question with id {question_id}")
    feedback = Feedback(user_id=user.id, username=user.username, question_event_id=question_id,
                        question=question, answer=answer,
                        cited_chunk_ids=list(event.detail.get("cited_chunk_ids", [])),
                        is_positive=is_positive, comment=comment)
    session.add(feedback)
    session.flush()
    record(session, "feedback", user=user, question_id=question_id, feedback_id=feedback.id,
           is_positive=is_positive)
    return feedback


def list_feedback(session: Session, *, offset: int = 0, limit: int = 100) -> list[Feedback]:
    return list(session.scalars(select(Feedback).order_by(Feedback.id.desc()).offset(offset).limit(limit)))
