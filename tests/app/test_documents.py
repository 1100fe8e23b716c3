"""Upload semantics on a real SQLite database and blob store."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from app.db import make_engine, make_session_factory, session_scope
from app.errors import ErrorCode, ZhikuError
from app.migrate import upgrade_database
from app.models import DocumentState
from app.services import documents
from app.settings import load_settings


@pytest.fixture
def env(tmp_path: Path):  # noqa: ANN201
    settings = load_settings(data_dir=tmp_path, max_upload_bytes=1000)
    upgrade_database(settings)
    return settings, make_session_factory(make_engine(settings))


def upload(session, settings, kb_id: int, name: str, content: bytes):  # noqa: ANN001, ANN201
    return documents.upload_document(session, settings, kb_id=kb_id, filename=name, content=io.BytesIO(content))


def test_same_bytes_twice_is_one_document_and_no_new_job(env) -> None:  # noqa: ANN001
    settings, factory = env
    with session_scope(factory) as session:
        kb = documents.create_kb(session, name="手册")
        doc1, job1 = upload(session, settings, kb.id, "a.txt", "你好".encode())
        doc2, job2 = upload(session, settings, kb.id, "a.txt", "你好".encode())
    assert doc1.id == doc2.id and job1 is not None and job2 is None
    assert (settings.blobs_dir / doc1.sha256[:2] / doc1.sha256).read_bytes() == "你好".encode()


def test_new_content_under_the_same_name_is_a_new_version(env) -> None:  # noqa: ANN001
    settings, factory = env
    with session_scope(factory) as session:
        kb = documents.create_kb(session, name="kb")
        doc, _ = upload(session, settings, kb.id, "dir/a.txt", b"one")
        doc2, job = upload(session, settings, kb.id, "a.txt", b"two")
    assert doc2.id == doc.id and doc2.version == 2 and job.version == 2
    assert doc2.filename == "a.txt" and doc2.state == DocumentState.QUEUED


def test_too_large_upload_is_refused_and_leaves_nothing(env) -> None:  # noqa: ANN001
    settings, factory = env
    with session_scope(factory) as session:
        kb = documents.create_kb(session, name="kb")
        with pytest.raises(ZhikuError) as info:
            upload(session, settings, kb.id, "big.bin", b"x" * 1001)
        assert info.value.code == ErrorCode.UPLOAD_TOO_LARGE
        assert documents.list_documents(session, kb.id) == []
    assert [p for p in settings.blobs_dir.rglob("*") if p.is_file()] == []


def test_duplicate_kb_name_and_unknown_ids_are_clear_errors(env) -> None:  # noqa: ANN001
    _settings, factory = env
    with session_scope(factory) as session:
        documents.create_kb(session, name="kb")
    with session_scope(factory) as session:
        with pytest.raises(ZhikuError) as info:
            documents.create_kb(session, name="kb")
        assert info.value.code == ErrorCode.KB_EXISTS
        with pytest.raises(ZhikuError) as info:
            documents.get_document(session, 12345)
        assert info.value.code == ErrorCode.DOC_NOT_FOUND
