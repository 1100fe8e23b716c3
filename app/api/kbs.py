from fastapi import APIRouter

from app.deps import CurrentUser, EditorUser, SessionDep
from app.schemas import KnowledgeBaseCreate, KnowledgeBasePublic
from app.services import documents

router = APIRouter(prefix="/api/kbs", tags=["knowledge bases"])


@router.get("")
def list_kbs(session: SessionDep, _user: CurrentUser) -> list[KnowledgeBasePublic]:
    return documents.list_kbs(session)


@router.post("", status_code=201)
def create_kb(body: KnowledgeBaseCreate, session: SessionDep, _user: EditorUser) -> KnowledgeBasePublic:
    kb = documents.create_kb(session, name=body.name, description=body.description)
    return KnowledgeBasePublic(id=kb.id, name=kb.name, description=kb.description, num_documents=0)
