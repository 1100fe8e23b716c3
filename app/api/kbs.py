from fastapi import APIRouter

from app.deps import CurrentUser, EditorUser, SessionDep
from app.schemas import AclPublic, AclUpdate, KnowledgeBaseCreate, KnowledgeBasePublic
from app.services import acl, documents
from app.services.audit import record

router = APIRouter(prefix="/api/kbs", tags=["knowledge bases"])


@router.get("")
def list_kbs(session: SessionDep, user: CurrentUser) -> list[KnowledgeBasePublic]:
    return documents.list_kbs(session, user)


@router.post("", status_code=201)
def create_kb(body: KnowledgeBaseCreate, session: SessionDep, user: EditorUser) -> KnowledgeBasePublic:
    kb = documents.create_kb(session, name=body.name, description=body.description, readers=body.readers)
    record(session, "kb.create", user=user, kb_id=kb.id, name=kb.name, readers=acl.kb_acl(session, kb.id))
    return KnowledgeBasePublic(id=kb.id, name=kb.name, description=kb.description, num_documents=0)


@router.get("/{kb_id}/acl")
def get_acl(kb_id: int, session: SessionDep, user: EditorUser) -> AclPublic:
    documents.managed_kb(session, kb_id, user)
    return AclPublic(readers=acl.kb_acl(session, kb_id))


@router.put("/{kb_id}/acl")
def set_acl(kb_id: int, body: AclUpdate, session: SessionDep, user: EditorUser) -> AclPublic:
    documents.managed_kb(session, kb_id, user)
    before = acl.kb_acl(session, kb_id)
    readers = acl.set_kb_acl(session, kb_id, body.readers)
    record(session, "acl.kb.set", user=user, kb_id=kb_id, before=before, after=readers)
    return AclPublic(readers=readers)
