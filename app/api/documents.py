from fastapi import APIRouter, Request, UploadFile

from app.deps import CurrentUser, EditorUser, SessionDep, SettingsDep
from app.errors import ErrorCode, ZhikuError
from app.schemas import DocumentPublic, JobPublic
from app.services import documents

router = APIRouter(prefix="/api", tags=["documents"])


@router.post("/kbs/{kb_id}/documents", status_code=201)
def upload(
    kb_id: int, files: list[UploadFile], request: Request, session: SessionDep, settings: SettingsDep,
    _user: EditorUser,
) -> list[DocumentPublic]:
    if not files:
        raise ZhikuError(ErrorCode.UPLOAD_EMPTY, "send one or more files in the multipart field 'files'")
    stored = [
        documents.upload_document(session, settings, kb_id=kb_id, filename=f.filename or "", content=f.file)
        for f in files
    ]
    session.commit()  # the worker must see the rows before it gets the message
    for doc, job in stored:
        if job is not None:
            request.app.state.enqueue(doc.id, job.version)
    return [documents.document_public(session, doc) for doc, _ in stored]


@router.get("/kbs/{kb_id}/documents")
def list_documents(kb_id: int, session: SessionDep, _user: CurrentUser) -> list[DocumentPublic]:
    return documents.list_documents(session, kb_id)


@router.get("/documents/{document_id}")
def get_document(document_id: int, session: SessionDep, _user: CurrentUser) -> DocumentPublic:
    return documents.document_public(session, documents.get_document(session, document_id))


@router.delete("/documents/{document_id}", status_code=204)
def delete_document(document_id: int, request: Request, session: SessionDep, settings: SettingsDep,
                    _user: EditorUser) -> None:
    documents.delete_document(session, settings, document_id, dim=request.app.state.answering.embedder.dim)


@router.post("/documents/{document_id}/reindex")
def reindex(document_id: int, request: Request, session: SessionDep, _user: EditorUser) -> JobPublic:
    job = documents.reindex_document(session, document_id)
    session.commit()
    request.app.state.enqueue(job.document_id, job.version)
    return JobPublic.model_validate(job)


@router.get("/jobs/{job_id}")
def get_job(job_id: int, session: SessionDep, _user: CurrentUser) -> JobPublic:
    return JobPublic.model_validate(documents.get_job(session, job_id))
