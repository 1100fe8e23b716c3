"""The audit log and answer feedback through the real API: what is recorded, filtering and CSV export
for admins only, the question kept as text or as its hash by setting, feedback tied to the asker."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.models import Role
from tests.app.conftest import AppStack, app_stack

pytestmark = pytest.mark.services
QUESTION = "年会的抽奖一等奖是什么？"


@pytest.fixture(params=["text", "sha256"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, models_dir: Path) -> Iterator[AppStack]:
    with app_stack(tmp_path, models_dir, "", audit_question=request.param) as stack:
        yield stack


def ask_done(client: TestClient, kb_id: int) -> dict:
    """An empty KB: no sources, so the answer is the refusal and no model is needed."""
    response = client.post("/api/ask", json={"question": QUESTION, "kb_ids": [kb_id]})
    assert response.status_code == 200
    done = [line for line in response.text.splitlines() if line.startswith("data: ")][-1]
    return json.loads(done[6:])


def test_admins_filter_and_export_what_happened(stack: AppStack) -> None:
    admin = stack.login("admin", "admin-password-1")
    start = datetime.now(timezone.utc)
    employee = stack.add_user("emma", Role.EMPLOYEE)
    kb_id = admin.post("/api/kbs", json={"name": "kb"}).json()["id"]
    admin.post(f"/api/kbs/{kb_id}/documents", files=[("files", ("a.md", b"# a"))]).raise_for_status()
    done = ask_done(employee, kb_id)
    assert done["refused"] and done["cited_chunk_ids"] == []

    assert employee.get("/api/admin/audit").status_code == 403
    assert employee.get("/api/admin/audit.csv").status_code == 403
    events = admin.get("/api/admin/audit", params={"username": "emma"}).json()
    assert [e["action"] for e in events] == ["ask", "auth.login"]
    asked = events[0]
    assert asked["id"] == done["question_id"] and asked["detail"]["kb_ids"] == [kb_id]
    if stack.settings.audit_question == "sha256":
        assert asked["detail"]["question_sha256"] == hashlib.sha256(QUESTION.encode()).hexdigest()
        assert QUESTION not in json.dumps(events, ensure_ascii=False)
    else:
        assert asked["detail"]["question"] == QUESTION
    assert {e["action"] for e in admin.get("/api/admin/audit", params={"action": "auth."}).json()} == {"auth.login"}
    uploads = admin.get("/api/admin/audit", params={"action": "document.upload"}).json()
    assert [(e["username"], e["detail"]["filename"]) for e in uploads] == [("admin", "a.md")]
    later = (start + timedelta(hours=1)).isoformat()
    assert admin.get("/api/admin/audit", params={"since": later}).json() == []
    assert len(admin.get("/api/admin/audit", params={"until": later}).json()) >= 5

    exported = admin.get("/api/admin/audit.csv", params={"username": "emma"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["action"] for r in rows] == ["ask", "auth.login"]
    assert json.loads(rows[0]["detail"])["kb_ids"] == [kb_id]


def test_feedback_is_stored_with_the_server_s_record_of_the_answer(stack: AppStack) -> None:
    admin = stack.login("admin", "admin-password-1")
    emma, frank = stack.add_user("emma", Role.EMPLOYEE), stack.add_user("frank", Role.EMPLOYEE)
    kb_id = admin.post("/api/kbs", json={"name": "kb"}).json()["id"]
    done = ask_done(emma, kb_id)
    body = {"question_id": done["question_id"], "is_positive": False, "question": QUESTION,
            "answer": done["answer"], "comment": "没有找到年会信息"}
    assert frank.post("/api/feedback", json=body).status_code == 404  # not frank's question
    assert emma.post("/api/feedback", json=body).status_code == 201
    assert emma.get("/api/admin/feedback").status_code == 403
    (listed,) = admin.get("/api/admin/feedback").json()
    assert (listed["username"], listed["is_positive"], listed["comment"]) == ("emma", False, "没有找到年会信息")
    assert listed["question_event_id"] == done["question_id"] and listed["cited_chunk_ids"] == []
    assert [e["action"] for e in admin.get("/api/admin/audit", params={"username": "emma"}).json()][0] == "feedback"


def test_a_question_the_sensitive_policy_acted_on_is_logged_only_as_its_hash(stack: AppStack) -> None:
    admin = stack.login("admin", "admin-password-1")
    kb_id = admin.post("/api/kbs", json={"name": "kb"}).json()["id"]
    admin.post("/api/admin/sensitive/terms", json=[{"term": "星辰计划", "category": "project"}]).raise_for_status()
    admin.put("/api/admin/sensitive/policies", json={"stage": "answer", "actions": {"TERM:project": "block"}}
              ).raise_for_status()
    question = "星辰计划的预算是多少？"
    response = admin.post("/api/ask", json={"question": question, "kb_ids": [kb_id]})
    error = json.loads([line for line in response.text.splitlines() if line.startswith("data: ")][-1][6:])
    assert error["code"] == "BLOCKED"
    (asked,) = admin.get("/api/admin/audit", params={"action": "ask"}).json()
    assert asked["id"] == error["question_id"] and asked["detail"]["outcome"] == "BLOCKED"
    assert asked["detail"]["question_sha256"] == hashlib.sha256(question.encode()).hexdigest()
    assert "星辰计划" not in admin.get("/api/admin/audit.csv", params={"action": "ask"}).text
