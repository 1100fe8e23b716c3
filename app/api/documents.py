from fastapi import APIRouter, Query, Request, UploadFile
from fastapi.responses import FileResponse

from app.deps import CurrentUser, EditorUser, SessionDep, SettingsDep
from app.errors import ErrorCode, ZhikuError
from app.schemas import AclPublic, AclUpdate, ChunkPreview, DocumentPreview, DocumentPublic, JobPublic
from app.services import acl, documents
from app.services.audit import record
from ingest.blobs import blob_path

router = APIRouter(prefix="/api", tags=["documents"])


@router.post("/kbs/{kb_id}/documents", status_code=201)
def upload(
    kb_id: int, files: list[UploadFile], request: Request, session: SessionDep, settings: SettingsDep,
    user: EditorUser,
) -> list[DocumentPublic]:
    documents.managed_kb(session, kb_id, user)
    if not files:
        raise ZhikuError(ErrorCode.UPLOAD_EMPTY, "send one or more files in the multipart field 'files'")
    stored = [
        documents.upload_document(session, settings, kb_id=kb_id, filename=f.filename or "", content=f.file)
        for f in files
    ]
    for doc, job in stored:
        record(session, "document.upload", user=user, kb_id=kb_id, document_id=doc.id, filename=doc.filename,
               sha256=doc.sha256, version=doc.version, is_new_version=job is not None)
    session.commit()  # the worker must see the rows before it gets the message
    for doc, job in stored:
        if job is not None:
            request.app.state.enqueue(doc.id, job.version)
    return [documents.document_public(session, doc) for doc, _ in stored]


@router.get("/kbs/{kb_id}/documents")
def list_documents(kb_id: int, session: SessionDep, user: CurrentUser) -> list[DocumentPublic]:
    return documents.list_documents(session, kb_id, user)


@router.get("/documents/{document_id}")
def get_document(document_id: int, session: SessionDep, user: CurrentUser) -> DocumentPublic:
    return documents.document_public(session, documents.get_document(session, document_id, user))


@router.get("/documents/{document_id}/preview")
def preview(document_id: int, session: SessionDep, user: CurrentUser,
            max_chunks: int = Query(5, ge=1, le=50)) -> DocumentPreview:
    doc = documents.get_document(session, document_id, user)
    chunks = documents.preview(session, doc, max_chunks=max_chunks)
    return DocumentPreview(
        document=documents.document_public(session, doc),
        chunks=[ChunkPreview(ordinal=c.ordinal, text=c.text, pages=c.pages,
                             section=" > ".join(c.section_path)) for c in chunks],
    )


@router.get("/documents/{document_id}/file")
def download(document_id: int, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> FileResponse:
    doc = documents.get_document(session, document_id, user)
    return FileResponse(blob_path(settings.blobs_dir, doc.sha256), filename=doc.filename)


@router.delete("/documents/{document_id}", status_code=204)
def delete_document(document_id: int, request: Request, session: SessionDep, settings: SettingsDep,
                    user: EditorUser) -> None:
    doc = documents.managed_document(session, document_id, user)
    record(session, "document.delete", user=user, kb_id=doc.kb_id, document_id=doc.id, filename=doc.filename,
           version=doc.version)
    documents.delete_document(session, settings, document_id, dim=request.app.state.answering.embedder.dim)


@router.post("/documents/{document_id}/reindex")
def reindex(document_id: int, request: Request, session: SessionDep, user: EditorUser) -> JobPublic:
    doc = documents.managed_document(session, document_id, user)
    job = documents.reindex_document(session, document_id)
    record(session, "document.reindex", user=user, kb_id=doc.kb_id, document_id=doc.id, version=job.version)
    session.commit()
    request.app.state.enqueue(job.document_id, job.version)
    return JobPublic.model_validate(job)


@router.get("/documents/{document_id}/acl")
def get_acl(document_id: int, session: SessionDep, user: EditorUser) -> AclPublic:
    doc = documents.managed_document(session, document_id, user)
    own = acl.document_acl(session, document_id)
    return AclPublic(readers=own or acl.kb_acl(session, doc.kb_id), inherited=not own)


@router.put("/documents/{document_id}/acl")
def set_acl(document_id: int, body: AclUpdate, session: SessionDep, user: EditorUser) -> AclPublic:
    doc = documents.managed_document(session, document_id, user)
    before = acl.document_acl(session, document_id)
    own = acl.set_document_acl(session, document_id, body.readers)
    record(session, "acl.document.set", user=user, kb_id=doc.kb_id, document_id=doc.id,
           before=before, after=own)
    return AclPublic(readers=own or acl.kb_acl(session, doc.kb_id), inherited=not own)


@router.get("/jobs/{job_id}")
def get_job(job_id: int, session: SessionDep, user: CurrentUser) -> JobPublic:
    return JobPublic.model_validate(documents.get_job(session, job_id, user))
