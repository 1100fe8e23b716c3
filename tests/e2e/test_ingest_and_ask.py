"""Upload real files of many formats through the API, let a real Celery worker index them, ask in
Chinese and English, and check answers and citations — on SQLite + the embedded broker, then on
PostgreSQL + Redis."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.servers import ask_events

pytestmark = pytest.mark.e2e

GOOD_FILES = [
    "md/zh-chatchat-distributed-training.md",
    "md/zh-chatchat-inference-optimization.md",
    "txt/norwich-city.txt",
    "txt/zh-chatchat-test.txt",
    "pdf/multi-column-2p.pdf",
    "pdf/layout-parser-paper-with-table.pdf",
    "docx/handbook-1p.docx",
    "docx/docx-tables.docx",
    "pptx/sample-presentation.pptx",
    "xlsx/docling-test-01.xlsx",
    "html/example-with-scripts.html",
    "eml/fake-email.eml",
    "csv/stanley-cups.csv",
]
BAD_FILES = ["pdf/encrypted-password.pdf", "pdf/scanned-mineru-small_ocr.pdf", "hostile/encrypted-password_protected.xlsx", "txt/empty.txt"]


def ask(client: httpx.Client, question: str, kb_id: int) -> tuple[list[tuple[str, dict]], dict]:
    events = ask_events(client, question, [kb_id])
    done = [data for kind, data in events if kind == "done"]
    assert len(done) == 1, events
    return events, done[0]


@pytest.fixture(scope="module")
def indexed_kb(api_stack, evaldata: Path):  # noqa: ANN001, ANN201
    client = api_stack.client()
    kb = client.post("/api/kbs", json={"name": "测试知识库", "description": "e2e"}).raise_for_status().json()
    files = [("files", (Path(name).name, (evaldata / "docs" / name).read_bytes())) for name in GOOD_FILES + BAD_FILES]
    uploaded = client.post(f"/api/kbs/{kb['id']}/documents", files=files).raise_for_status().json()
    assert {d["filename"] for d in uploaded} == {Path(n).name for n in GOOD_FILES + BAD_FILES}
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        documents = client.get(f"/api/kbs/{kb['id']}/documents").raise_for_status().json()
        if all(d["state"] in ("indexed", "failed") for d in documents):
            break
        time.sleep(2)
    else:
        pytest.fail(f"documents not finished: {[(d['filename'], d['state']) for d in documents]}")
    return client, kb, {d["filename"]: d for d in documents}


def test_good_files_are_indexed_and_bad_files_fail_with_a_reason(indexed_kb) -> None:  # noqa: ANN001
    _client, _kb, documents = indexed_kb
    for name in GOOD_FILES:
        doc = documents[Path(name).name]
        assert doc["state"] == "indexed", (name, doc["error"])
        assert doc["num_chunks"] > 0
    for name in BAD_FILES:
        doc = documents[Path(name).name]
        assert doc["state"] == "failed"
        assert doc["error"] and len(doc["error"]) > 10  # a sentence a person can act on
    assert "password" in documents["encrypted-password.pdf"]["error"].lower()
    assert "empty" in documents["empty.txt"]["error"].lower()


def test_chinese_question_gets_a_cited_answer(indexed_kb) -> None:  # noqa: ANN001
    client, kb, _documents = indexed_kb
    events, done = ask(client, "FSDP算法是由哪项技术驱动的？", kb["id"])
    assert [kind for kind, _ in events][0] == "sources"
    assert any(kind == "token" for kind, _ in events)
    assert not done["refused"]
    assert "ZeroRedundancyOptimizer" in done["answer"] or "DeepSpeed" in done["answer"]
    assert done["citations"], done
    assert {c["document"] for c in done["citations"]} == {"zh-chatchat-distributed-training.md"}


def test_english_question_gets_a_cited_answer(indexed_kb) -> None:  # noqa: ANN001
    client, kb, _documents = indexed_kb
    _events, done = ask(client, "What is the date of birth of Iwan Roberts?", kb["id"])
    assert not done["refused"]
    assert "1968" in done["answer"]
    assert done["citations"]
    assert all(c["document"] == "norwich-city.txt" for c in done["citations"])


def test_citation_points_at_the_right_pdf_page(indexed_kb) -> None:  # noqa: ANN001
    client, kb, _documents = indexed_kb
    events, done = ask(client, "What are the two weaknesses of ICT pretraining in dense passage retrieval?", kb["id"])
    sources = next(data for kind, data in events if kind == "sources")["sources"]
    assert sources[0]["document"] == "multi-column-2p.pdf" and 2 in sources[0]["pages"], sources[0]
    assert done["citations"], done
    assert all(c["document"] == "multi-column-2p.pdf" for c in done["citations"]), done["citations"]
    assert any(2 in c["pages"] for c in done["citations"]), done["citations"]


def test_unrelated_question_is_refused(indexed_kb) -> None:  # noqa: ANN001
    client, kb, _documents = indexed_kb
    _events, done = ask(client, "公司年会的抽奖一等奖是什么？", kb["id"])
    assert done["refused"]
    assert not done["citations"]


def test_delete_removes_document_from_answers(indexed_kb) -> None:  # noqa: ANN001
    client, kb, documents = indexed_kb
    doc = documents["stanley-cups.csv"]
    client.delete(f"/api/documents/{doc['id']}").raise_for_status()
    assert client.get(f"/api/documents/{doc['id']}").status_code == 404
    events, _done = ask(client, "How many Stanley Cups has the team won?", kb["id"])
    sources = next(data for kind, data in events if kind == "sources")["sources"]
    assert all(s["document"] != "stanley-cups.csv" for s in sources)


def test_requests_without_login_are_refused(api_stack) -> None:  # noqa: ANN001
    response = httpx.get(f"{api_stack.api_url}/api/kbs")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
