"""Admin surfaces for sensitive content: term lists, policies, a test box, per-document findings."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from app.deps import AdminUser, SessionDep
from app.errors import ErrorCode, ZhikuError
from app.models import Chunk, Document, PolicyStage, Role, SensitivePolicy, SensitiveTerm
from app.services import sensitive
from app.services.audit import record
from app.services.documents import get_kb
from rag.sensitive import Protection, Term

router = APIRouter(prefix="/api/admin/sensitive", tags=["sensitive content"])
MAX_TERM_FILE_BYTES = 20 * 1024 * 1024
Severity = Literal["low", "medium", "high"]


class TermIn(BaseModel):
    term: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=64)
    severity: Severity = "medium"


class PolicyIn(BaseModel):
    stage: PolicyStage
    kb_id: int | None = None
    role: Role | None = None
    actions: dict[str, str] = Field(default_factory=dict)
    default_action: str = "allow"


class TestIn(BaseModel):
    text: str = Field(max_length=200_000)
    stage: PolicyStage = PolicyStage.ANSWER
    kb_id: int | None = None
    role: Role | None = None


@router.get("/terms")
def list_terms(session: SessionDep, _admin: AdminUser, category: str | None = None,
               offset: int = 0, limit: int = Query(100, ge=1, le=1000)) -> dict:
    query = select(SensitiveTerm).order_by(SensitiveTerm.category, SensitiveTerm.term)
    if category:
        query = query.where(SensitiveTerm.category == category)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.offset(offset).limit(limit)).all()
    return {"total": total, "terms": [
        {"id": r.id, "term": r.term, "category": r.category, "severity": r.severity} for r in rows]}


@router.post("/terms", status_code=201)
def add_terms(body: list[TermIn], session: SessionDep, admin: AdminUser) -> dict:
    counts = sensitive.import_terms(session, [Term(t.term, t.category, t.severity) for t in body])
    record(session, "sensitive.terms.import", user=admin, source="api", **counts)
    return counts


@router.post("/terms/import", status_code=201)
def import_term_file(session: SessionDep, admin: AdminUser, file: UploadFile = File(...),
                     category: str = Form("default"), severity: Severity = Form("medium")) -> dict:
    content = file.file.read(MAX_TERM_FILE_BYTES + 1)
    if len(content) > MAX_TERM_FILE_BYTES:
        raise ZhikuError(ErrorCode.UPLOAD_TOO_LARGE, "a term list may be at most 20 MB")
    terms = sensitive.parse_term_file(content, filename=file.filename or "terms.txt",
                                      category=category, severity=severity)
    counts = sensitive.import_terms(session, terms)
    record(session, "sensitive.terms.import", user=admin, source=file.filename, **counts)
    return counts


@router.delete("/terms/{term_id}", status_code=204)
def delete_term(term_id: int, session: SessionDep, admin: AdminUser) -> None:
    sensitive.delete_term(session, term_id)
    record(session, "sensitive.terms.delete", user=admin, term_id=term_id)


@router.get("/policies")
def list_policies(session: SessionDep, _admin: AdminUser) -> dict:
    rows = session.scalars(select(SensitivePolicy).order_by(SensitivePolicy.id)).all()
    return {
        "builtin": {stage.value: {k: a.value for k, a in actions.items()}
                    for stage, actions in sensitive.BUILTIN_ACTIONS.items()},
        "policies": [{"id": r.id, "stage": r.stage.value, "kb_id": r.kb_id,
                      "role": r.role.value if r.role else None, "actions": r.actions,
                      "default_action": r.default_action} for r in rows],
    }


@router.put("/policies")
def set_policy(body: PolicyIn, session: SessionDep, admin: AdminUser) -> dict:
    if body.kb_id is not None:
        get_kb(session, body.kb_id)
    row = sensitive.set_policy(session, stage=body.stage, kb_id=body.kb_id, role=body.role,
                               actions=body.actions, default_action=body.default_action)
    record(session, "sensitive.policy.set", user=admin, kb_id=body.kb_id, stage=body.stage.value,
           role=body.role.value if body.role else None, actions=row.actions,
           default_action=row.default_action)
    return {"id": row.id}


@router.post("/test")
def test_text(body: TestIn, session: SessionDep, _admin: AdminUser) -> dict:
    """Paste text, see what is found and what the policy of the given scope would show."""
    policy = sensitive.policy_for(session, body.stage, body.kb_id, body.role)
    findings, redaction = Protection(policy, sensitive.term_matcher(session)).apply(body.text)
    return {
        "findings": [{"kind": f.kind, "start": f.start, "end": f.end, "text": f.text,
                      "confidence": f.confidence, "category": f.category} for f in findings],
        "result": redaction.text,
        "blocked": redaction.blocked,
    }


@router.get("/kbs/{kb_id}/documents")
def document_findings(kb_id: int, session: SessionDep, _admin: AdminUser) -> list[dict]:
    """Which documents of a KB hold what: finding counts by kind, summed over their chunks."""
    get_kb(session, kb_id)
    totals: dict[int, dict] = {}
    for doc_id, filename, findings, redacted in session.execute(
        select(Document.id, Document.filename, Chunk.findings, Chunk.redacted)
        .join(Chunk, Chunk.document_id == Document.id).where(Document.kb_id == kb_id)
    ):
        entry = totals.setdefault(doc_id, {"document_id": doc_id, "document": filename,
                                           "findings": {}, "redacted_chunks": 0})
        for kind, count in (findings or {}).items():
            entry["findings"][kind] = entry["findings"].get(kind, 0) + count
        entry["redacted_chunks"] += bool(redacted)
    return [entry for entry in totals.values() if entry["findings"]]
