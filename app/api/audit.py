"""Admin surfaces for the audit log (filter, CSV export) and the answer feedback users gave."""

from datetime import datetime

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.deps import AdminUser, SessionDep
from app.schemas import AuditEventPublic, FeedbackPublic
from app.services import audit, feedback

router = APIRouter(prefix="/api/admin", tags=["audit"])
MAX_EXPORT_ROWS = 1_000_000


def _filter(username: str | None, action: str | None, since: datetime | None,
            until: datetime | None) -> audit.AuditFilter:
    return audit.AuditFilter(username=username or None, action=action or None, since=since, until=until)


@router.get("/audit")
def list_audit(session: SessionDep, _admin: AdminUser, username: str | None = None, action: str | None = None,
               since: datetime | None = None, until: datetime | None = None, offset: int = Query(0, ge=0),
               limit: int = Query(100, ge=1, le=1000)) -> list[AuditEventPublic]:
    events = audit.list_events(session, _filter(username, action, since, until), offset=offset, limit=limit)
    return [AuditEventPublic(**audit.event_row(e)) for e in events]


@router.get("/audit.csv")
def export_audit(session: SessionDep, _admin: AdminUser, username: str | None = None,
                 action: str | None = None, since: datetime | None = None,
                 until: datetime | None = None) -> Response:
    events = audit.list_events(session, _filter(username, action, since, until), limit=MAX_EXPORT_ROWS)
    return Response(audit.events_csv(events), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="zhiku-audit.csv"'})


@router.get("/feedback")
def list_feedback(session: SessionDep, _admin: AdminUser, offset: int = Query(0, ge=0),
                  limit: int = Query(100, ge=1, le=1000)) -> list[FeedbackPublic]:
    rows = feedback.list_feedback(session, offset=offset, limit=limit)
    return [FeedbackPublic.model_validate(f) for f in rows]
