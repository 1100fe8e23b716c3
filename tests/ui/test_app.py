"""The Streamlit scripts driven by AppTest, with a stand-in API client (STYLE habit 18); the real
stack is exercised in tests/e2e/test_browser.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui.client import ApiError

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")


class StandInClient:
    """Answers like the API would; records what the UI asked for."""

    def __init__(self, *, logged_in: bool = True, refuse: bool = False) -> None:
        self.user = {"id": 1, "username": "admin", "role": "admin"} if logged_in else None
        self.refuse = refuse
        self.questions: list[tuple[str, list[int]]] = []
        self.asked: list[dict] = []  # history and filters of each question
        self.documents = [
            {"id": 1, "kb_id": 1, "filename": "运维指南.md", "size_bytes": 2048, "version": 1, "state": "indexed",
             "error": None, "num_chunks": 4, "progress": 1.0},
            {"id": 2, "kb_id": 1, "filename": "scan.pdf", "size_bytes": 4096, "version": 1, "state": "failed",
             "error": "the PDF has no text layer (a scan); OCR is not enabled", "num_chunks": 0, "progress": 0.0},
        ]

    def login(self, username: str, password: str) -> dict:
        if password != "right":
            raise ApiError("BAD_CREDENTIALS", "wrong username or password")
        self.user = {"id": 1, "username": username, "role": "admin"}
        return self.user

    def list_kbs(self) -> list[dict]:
        return [{"id": 1, "name": "Zhiku 文档", "description": "", "num_documents": 2}]

    def list_documents(self, kb_id: int) -> list[dict]:
        return self.documents

    def kb_acl(self, kb_id: int) -> dict:
        return {"readers": ["group:ops"], "inherited": False}

    def set_kb_acl(self, kb_id: int, readers: list[str]) -> dict:
        self.kb_readers = readers
        return {"readers": readers, "inherited": False}

    def document_acl(self, document_id: int) -> dict:
        return {"readers": ["group:ops"], "inherited": True}

    def set_document_acl(self, document_id: int, readers: list[str]) -> dict:
        self.document_readers = (document_id, readers)
        return {"readers": readers, "inherited": not readers}

    def ask(self, question: str, kb_ids: list[int], top_k: int | None = None, *,  # noqa: ANN201
            history: list[dict] = (), filters: dict | None = None):
        self.questions.append((question, list(kb_ids)))
        self.asked.append({"history": list(history), "filters": filters})
        rewritten = f"知库{question}" if history else question
        yield "sources", {"sources": [], "searched_query": rewritten, "rewritten": rewritten != question}
        if self.refuse:
            text = "资料中没有找到答案。"
            yield "token", {"text": text}
            yield "done", {"answer": text, "reasoning": "", "refused": True, "citations": []}
            return
        for piece in ["复制整个", "数据目录", "即可 [1]。"]:
            yield "token", {"text": piece}
        citation = {"n": 1, "document": "运维指南.md", "page": None, "section": "知库运维指南 > 如何备份数据",
                    "snippet": "知库的全部数据都保存在一个数据目录中", "score": 0.9, "supported": True}
        yield "citation", citation
        yield "done", {"answer": "复制整个数据目录即可 [1]。", "reasoning": "", "refused": False,
                       "citations": [citation]}


def app_with(client: StandInClient) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["client"] = client
    return at


def test_login_form_shows_the_error_for_a_wrong_password() -> None:
    at = app_with(StandInClient(logged_in=False)).run()
    at.text_input(key="login_username").input("admin")
    at.text_input(key="login_password").input("wrong")
    at.button[0].click().run()
    assert any("wrong username or password" in e.value for e in at.error)


def test_login_then_the_ask_page_opens() -> None:
    client = StandInClient(logged_in=False)
    at = app_with(client).run()
    at.text_input(key="login_username").input("admin")
    at.text_input(key="login_password").input("right")
    at.button[0].click().run()
    assert client.user["username"] == "admin"
    assert any("提问" in t.value for t in at.title)


def test_a_question_shows_the_streamed_answer_and_its_citation() -> None:
    client = StandInClient()
    at = app_with(client).run()
    at.chat_input(key="ask_input").set_value("如何备份数据？").run()
    assert client.questions == [("如何备份数据？", [1])]
    assert any("复制整个数据目录即可 [1]" in m.value for m in at.markdown)
    assert any("运维指南.md" in e.label for e in at.expander)


def test_a_follow_up_sends_the_chat_so_far_and_shows_the_searched_question() -> None:
    client = StandInClient()
    at = app_with(client).run()
    at.chat_input(key="ask_input").set_value("如何备份数据？").run()
    at.chat_input(key="ask_input").set_value("多久一次？").run()
    assert client.asked[0] == {"history": [], "filters": None}
    assert client.asked[1]["history"] == [{"role": "user", "content": "如何备份数据？"},
                                          {"role": "assistant", "content": "复制整个数据目录即可 [1]。"}]
    assert any("知库多久一次？" in c.value for c in at.caption)


def test_sidebar_filters_go_with_the_question() -> None:
    client = StandInClient()
    at = app_with(client).run()
    at.text_input(key="ask_types").input("pdf， .DOCX").run()
    at.date_input(key="ask_dates").set_value((date(2026, 11, 1), date(2026, 11, 30))).run()
    at.chat_input(key="ask_input").set_value("如何备份数据？").run()
    assert client.asked[0]["filters"] == {"file_types": ["pdf", ".DOCX"],
                                          "created_from": "2026-11-01T00:00:00+00:00",
                                          "created_to": "2026-12-01T00:00:00+00:00"}


def test_a_refusal_is_shown_plainly() -> None:
    at = app_with(StandInClient(refuse=True)).run()
    at.chat_input(key="ask_input").set_value("年会一等奖是什么？").run()
    assert any("资料中没有找到答案" in i.value for i in at.info)
    assert not [e for e in at.expander if e.label.startswith("[")]


def test_documents_page_lists_states_and_errors() -> None:
    at = app_with(StandInClient()).run()
    at.switch_page(str(Path(APP).parent / "pages" / "documents.py")).run()
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "运维指南.md" in text and "已索引" in text
    assert "no text layer" in text


class SensitiveStandIn(StandInClient):
    def sensitive_policies(self) -> dict:
        return {"builtin": {"answer": {"CN_ID": "mask"}, "ingest": {"API_KEY": "redact"}}, "policies": []}

    def sensitive_terms(self, offset: int = 0, limit: int = 100) -> dict:
        return {"total": 1, "terms": [{"id": 7, "term": "星辰计划", "category": "project", "severity": "high"}]}

    def sensitive_documents(self, kb_id: int) -> list[dict]:
        return [{"document_id": 1, "document": "hr.docx", "findings": {"CN_ID": 3}, "redacted_chunks": 0}]

    def test_sensitive(self, text: str, *, stage: str, kb_id: int | None, role: str | None) -> dict:
        self.tested = (text, stage, kb_id, role)
        return {"findings": [{"kind": "CN_ID", "start": 3, "end": 21, "text": text[3:21], "confidence": 1.0,
                              "category": None}], "result": "身份证**************002X", "blocked": False}


def test_sensitive_test_box_shows_the_policy_result() -> None:
    client = SensitiveStandIn()
    at = app_with(client).run()
    at.switch_page(str(Path(APP).parent / "pages" / "sensitive.py")).run()
    at.text_area(key="sens_test_text").input("身份证11010519491231002X").run()
    at.button(key="sens_test_button").click().run()
    assert client.tested == ("身份证11010519491231002X", "answer", None, None)
    assert any(code.value == "身份证**************002X" for code in at.code)


class AuditStandIn(StandInClient):
    def __init__(self) -> None:
        super().__init__()
        self.filters: list[dict] = []
        self.feedback_sent: list[tuple] = []

    def audit_events(self, filters: dict, offset: int = 0, limit: int = 100) -> list[dict]:
        self.filters.append(dict(filters))
        events = [{"id": 2, "at": "2026-11-30T10:00:00+00:00", "username": "bob", "action": "auth.login_failed",
                   "kb_id": None, "document_id": None, "detail": {"reason": "bad_credentials"}},
                  {"id": 1, "at": "2026-11-30T09:00:00+00:00", "username": "alice", "action": "ask",
                   "kb_id": None, "document_id": None, "detail": {"question": "年假几天？"}}]
        return [e for e in events if not filters.get("username") or e["username"] == filters["username"]]

    def audit_csv(self, filters: dict) -> bytes:
        return b"id,at,user_id,username,action,kb_id,document_id,detail\n"

    def feedback(self, offset: int = 0, limit: int = 100) -> list[dict]:
        return [{"id": 1, "at": "2026-11-30T09:01:00+00:00", "username": "alice", "question_event_id": 1,
                 "question": "年假几天？", "answer": "15 天 [1]。", "cited_chunk_ids": [42], "is_positive": False,
                 "comment": "少了调休"}]

    def ask(self, question: str, kb_ids: list[int], top_k: int | None = None, **kwargs):  # noqa: ANN201
        for kind, data in super().ask(question, kb_ids, top_k, **kwargs):
            yield kind, ({**data, "question_id": 77} if kind == "done" else data)

    def submit_feedback(self, question_id: int, *, is_positive: bool, question: str, answer: str,
                        comment: str = "") -> dict:
        self.feedback_sent.append((question_id, is_positive, question, comment))
        return {"id": 1}


def test_audit_page_filters_by_user_and_offers_the_csv_and_feedback() -> None:
    client = AuditStandIn()
    at = app_with(client).run()
    at.switch_page(str(Path(APP).parent / "pages" / "audit.py")).run()
    assert not at.exception
    at.text_input(key="audit_user").input("bob").run()
    assert client.filters[-1]["username"] == "bob"
    table = at.dataframe[0].value
    assert list(table["action"]) == ["auth.login_failed"]
    assert at.get("download_button")  # the CSV export
    assert any("少了调休" in m.value for m in at.markdown)


def test_thumbs_down_sends_feedback_for_the_answer_s_question_id() -> None:
    client = AuditStandIn()
    at = app_with(client).run()
    at.chat_input(key="ask_input").set_value("如何备份数据？").run()
    at.text_input(key="feedback_comment_77").input("不够详细").run()
    at.button(key="feedback_down_77").click().run()
    assert client.feedback_sent == [(77, False, "如何备份数据？", "不够详细")]
    assert any("感谢反馈" in c.value for c in at.caption)


def test_documents_page_sets_who_may_read_a_knowledge_base_and_a_document() -> None:
    client = StandInClient()
    at = app_with(client).run()
    at.switch_page(str(Path(APP).parent / "pages" / "documents.py")).run()
    assert at.text_input(key="kb_acl_readers").value == "group:ops"
    assert at.text_input(key="doc_acl_readers").value == ""  # inherited: shown empty
    at.text_input(key="kb_acl_readers").input("group:ops， user:li.ming")  # a form: sent on submit
    at.button(key="kb_acl_save").click().run()
    assert client.kb_readers == ["group:ops", "user:li.ming"]
    at.text_input(key="doc_acl_readers").input("group:hr")
    at.button(key="doc_acl_save").click().run()
    assert client.document_readers == (1, ["group:hr"])


class UsersStandIn(StandInClient):
    def __init__(self) -> None:
        super().__init__()
        self.users = [{"id": 1, "username": "admin", "role": "admin", "groups": []},
                      {"id": 2, "username": "bob", "role": "employee", "groups": ["eng"]}]
        self.groups = [{"id": 1, "name": "eng", "members": ["bob"]}]
        self.calls: list[tuple] = []

    def list_users(self) -> list[dict]:
        return self.users

    def list_groups(self) -> list[dict]:
        return self.groups

    def create_user(self, username: str, password: str, role: str) -> dict:
        self.calls.append(("create_user", username, role))
        self.users.append({"id": 3, "username": username, "role": role, "groups": []})
        return self.users[-1]

    def set_member(self, group: str, username: str, *, is_member: bool) -> None:
        self.calls.append(("member", group, username, is_member))


def test_users_page_creates_an_account_and_changes_a_group_s_members() -> None:
    client = UsersStandIn()
    at = app_with(client).run()
    at.switch_page(str(Path(APP).parent / "pages" / "users.py")).run()
    assert not at.exception
    assert list(at.dataframe[0].value["username"]) == ["admin", "bob"]
    at.text_input(key="new_username").input("carol")
    at.text_input(key="new_password").input("carol-password-1")
    at.selectbox(key="new_role").select("editor")
    at.button(key="create_user").click().run()
    assert ("create_user", "carol", "editor") in client.calls
    at.multiselect(key="members_eng").set_value(["admin"]).run()
    at.button(key="save_members_eng").click().run()
    assert sorted(c for c in client.calls if c[0] == "member") == [("member", "eng", "admin", True),
                                                                   ("member", "eng", "bob", False)]

