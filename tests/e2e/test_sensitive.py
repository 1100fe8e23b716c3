"""Sensitive content end to end: an admin term list and per-role policies, a real worker redacting at
ingest, re-indexing, and answers from the model server that never show what a role may not see."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.db import make_engine, make_session_factory, session_scope
from app.models import AuditEvent, Chunk, Role
from app.services.users import create_user
from app.settings import Settings
from rag.sensitive import detect
from tests.e2e.conftest import Stack, start_stack, stop_stack
from tests.servers import ask_events

pytestmark = pytest.mark.e2e

TERM = "星辰计划"
CN_ID = "11010519491231002X"
AWS_KEY = "AKIAZ7QXN3KD5WJ2PL4M"
DOCUMENT = f"""# {TERM}项目简介

{TERM}是公司下一代储能电池的研发项目，项目负责人是李明，总预算为三千万元。

项目联系人身份证号：{CN_ID}。测试服务器的访问密钥为 {AWS_KEY} ，请勿外传。
"""
QUESTION = f"{TERM}的项目负责人是谁？"


@pytest.fixture(scope="module")
def stack(models_dir: Path, llm_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack("embedded", models_dir=models_dir, llm_url=llm_url,
                        data_dir=tmp_path_factory.mktemp("zhiku-sensitive"), with_ui=False)
    yield stack
    stop_stack(stack)


@pytest.fixture(scope="module")
def session_factory(stack: Stack):  # noqa: ANN201
    return make_session_factory(make_engine(Settings(data_dir=stack.data_dir)))


def login(stack: Stack, username: str, password: str) -> httpx.Client:
    token = httpx.post(f"{stack.api_url}/api/auth/login", json={"username": username, "password": password}
                       ).raise_for_status().json()["token"]
    return httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=600)


def wait_indexed(admin: httpx.Client, kb_id: int) -> dict:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        documents = admin.get(f"/api/kbs/{kb_id}/documents").raise_for_status().json()
        if documents and all(d["state"] in ("indexed", "failed") for d in documents):
            assert [d["state"] for d in documents] == ["indexed"], documents
            return documents[0]
        time.sleep(1)
    pytest.fail("the document was not indexed in time")


def chunk_texts(session_factory) -> list[str]:  # noqa: ANN001
    with session_scope(session_factory) as session:
        return list(session.scalars(select(Chunk.text)))


@pytest.fixture(scope="module")
def project_kb(stack: Stack, session_factory):  # noqa: ANN001, ANN201
    assert {f.kind for f in detect(DOCUMENT)} >= {"CN_ID", "API_KEY"}  # the planted values are real ones
    admin = stack.client()
    with session_scope(session_factory) as session:
        create_user(session, username="employee1", password="employee-pass-1", role=Role.EMPLOYEE)
    imported = admin.post("/api/admin/sensitive/terms/import",
                          files={"file": ("projects.txt", f"# 保密项目\n{TERM}\n".encode())},
                          data={"category": "project", "severity": "high"}).raise_for_status().json()
    assert imported == {"added": 1, "updated": 0}
    kb = admin.post("/api/kbs", json={"name": "研发"}).raise_for_status().json()
    # Employees get project names redacted; admins see them. IDs are masked for both (built-in).
    for role, action in (("employee", "redact"), ("admin", "allow")):
        admin.put("/api/admin/sensitive/policies", json={
            "stage": "answer", "kb_id": kb["id"], "role": role, "actions": {"TERM:project": action},
        }).raise_for_status()
    admin.post(f"/api/kbs/{kb['id']}/documents",
               files=[("files", ("星辰计划.md", DOCUMENT.encode()))]).raise_for_status()
    document = wait_indexed(admin, kb["id"])
    return admin, kb, document


def test_credentials_are_redacted_at_ingest_and_findings_are_listed(project_kb, session_factory) -> None:  # noqa: ANN001
    admin, kb, document = project_kb
    texts = chunk_texts(session_factory)
    assert texts and not any(AWS_KEY in text for text in texts)
    assert any("〔密钥〕" in text for text in texts)
    assert any(CN_ID in text for text in texts)  # stored raw: the answer policy decides per role
    listed = admin.get(f"/api/admin/sensitive/kbs/{kb['id']}/documents").raise_for_status().json()
    assert listed[0]["document"] == document["filename"]
    assert listed[0]["findings"]["API_KEY"] == 1 and listed[0]["findings"]["TERM"] >= 2
    assert listed[0]["redacted_chunks"] >= 1


def test_employee_never_sees_the_listed_term_or_the_id(stack: Stack, project_kb, session_factory) -> None:  # noqa: ANN001
    _, kb, _ = project_kb
    employee = login(stack, "employee1", "employee-pass-1")
    events = ask_events(employee, QUESTION, [kb["id"]])
    shown = str(events)
    assert TERM not in shown and CN_ID not in shown and AWS_KEY not in shown
    sources = next(data for kind, data in events if kind == "sources")["sources"]
    assert sources and "〔敏感词〕" in sources[0]["snippet"]
    with session_scope(session_factory) as session:
        audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "sensitive.redact",
                                                           AuditEvent.username == "employee1")).all()
    assert audited and any(r["kind"] == "TERM" for r in audited[-1].detail["redactions"])


def test_admin_policy_shows_the_term_so_the_employee_check_is_not_vacuous(project_kb) -> None:  # noqa: ANN001
    admin, kb, _ = project_kb
    events = ask_events(admin, QUESTION, [kb["id"]])
    sources = next(data for kind, data in events if kind == "sources")["sources"]
    assert TERM in sources[0]["snippet"] and CN_ID not in str(events)


def test_block_policy_refuses_the_whole_answer(stack: Stack, project_kb) -> None:  # noqa: ANN001
    admin, kb, _ = project_kb
    admin.put("/api/admin/sensitive/policies", json={
        "stage": "answer", "kb_id": kb["id"], "role": "employee", "actions": {"TERM:project": "block"},
    }).raise_for_status()
    try:
        events = ask_events(login(stack, "employee1", "employee-pass-1"), QUESTION, [kb["id"]])
        assert events[-1][0] == "error" and events[-1][1]["code"] == "BLOCKED"
        assert TERM not in str(events)
    finally:
        admin.put("/api/admin/sensitive/policies", json={
            "stage": "answer", "kb_id": kb["id"], "role": "employee", "actions": {"TERM:project": "redact"},
        }).raise_for_status()


def test_a_chunk_redacted_at_ingest_stays_redacted_after_reindex(project_kb, session_factory) -> None:  # noqa: ANN001
    admin, kb, document = project_kb
    admin.post(f"/api/documents/{document['id']}/reindex").raise_for_status()
    reindexed = wait_indexed(admin, kb["id"])
    assert reindexed["version"] == document["version"] + 1  # a new ingestion ran, from the stored file
    texts = chunk_texts(session_factory)
    assert texts and not any(AWS_KEY in text for text in texts)
    assert any("〔密钥〕" in text for text in texts)


def test_the_test_box_shows_findings_and_the_policy_result(project_kb) -> None:  # noqa: ANN001
    admin, kb, _ = project_kb
    result = admin.post("/api/admin/sensitive/test", json={
        "text": f"请联系 {CN_ID}，项目{TERM}。", "kb_id": kb["id"], "role": "employee",
    }).raise_for_status().json()
    assert {f["kind"] for f in result["findings"]} == {"CN_ID", "TERM"}
    assert result["result"] == "请联系 **************002X，项目〔敏感词〕。"


def test_employees_cannot_reach_the_admin_endpoints(stack: Stack, project_kb) -> None:  # noqa: ANN001
    employee = login(stack, "employee1", "employee-pass-1")
    assert employee.get("/api/admin/sensitive/terms").status_code == 403
    assert employee.post("/api/admin/sensitive/test", json={"text": CN_ID}).status_code == 403
