"""The one HTTP client the UI uses: every server call goes through here (auth is enforced server-side)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import httpx


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ZhikuClient:
    def __init__(self, base_url: str, *, timeout_s: float = 600.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)
        self.user: dict | None = None

    def _call(self, method: str, path: str, **kwargs: object) -> object:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError("UNREACHABLE", f"the Zhiku server is not reachable ({exc})") from None
        if response.status_code >= 400:
            raise _api_error(response)
        return response.json() if response.content else None

    def login(self, username: str, password: str) -> dict:
        result = self._call("POST", "/api/auth/login", json={"username": username, "password": password})
        self._http.headers["Authorization"] = f"Bearer {result['token']}"
        self.user = result["user"]
        return self.user

    def list_kbs(self) -> list[dict]:
        return self._call("GET", "/api/kbs")

    def create_kb(self, name: str, description: str = "") -> dict:
        return self._call("POST", "/api/kbs", json={"name": name, "description": description})

    def upload(self, kb_id: int, files: Sequence[tuple[str, bytes]]) -> list[dict]:
        return self._call("POST", f"/api/kbs/{kb_id}/documents", files=[("files", f) for f in files])

    def list_documents(self, kb_id: int) -> list[dict]:
        return self._call("GET", f"/api/kbs/{kb_id}/documents")

    def delete_document(self, document_id: int) -> None:
        self._call("DELETE", f"/api/documents/{document_id}")

    def reindex(self, document_id: int) -> dict:
        return self._call("POST", f"/api/documents/{document_id}/reindex")

    def kb_acl(self, kb_id: int) -> dict:
        return self._call("GET", f"/api/kbs/{kb_id}/acl")

    def set_kb_acl(self, kb_id: int, readers: Sequence[str]) -> dict:
        return self._call("PUT", f"/api/kbs/{kb_id}/acl", json={"readers": list(readers)})

    def document_acl(self, document_id: int) -> dict:
        return self._call("GET", f"/api/documents/{document_id}/acl")

    def set_document_acl(self, document_id: int, readers: Sequence[str]) -> dict:
        """`readers` empty: the document inherits its knowledge base's ACL again."""
        return self._call("PUT", f"/api/documents/{document_id}/acl", json={"readers": list(readers)})

    def get_job(self, job_id: int) -> dict:
        return self._call("GET", f"/api/jobs/{job_id}")

    def sensitive_terms(self, offset: int = 0, limit: int = 100) -> dict:
        return self._call("GET", "/api/admin/sensitive/terms", params={"offset": offset, "limit": limit})

    def import_sensitive_terms(self, filename: str, content: bytes, category: str, severity: str) -> dict:
        return self._call("POST", "/api/admin/sensitive/terms/import", files={"file": (filename, content)},
                          data={"category": category, "severity": severity})

    def delete_sensitive_term(self, term_id: int) -> None:
        self._call("DELETE", f"/api/admin/sensitive/terms/{term_id}")

    def sensitive_policies(self) -> dict:
        return self._call("GET", "/api/admin/sensitive/policies")

    def set_sensitive_policy(self, policy: dict) -> dict:
        return self._call("PUT", "/api/admin/sensitive/policies", json=policy)

    def test_sensitive(self, text: str, *, stage: str, kb_id: int | None, role: str | None) -> dict:
        return self._call("POST", "/api/admin/sensitive/test",
                          json={"text": text, "stage": stage, "kb_id": kb_id, "role": role})

    def sensitive_documents(self, kb_id: int) -> list[dict]:
        return self._call("GET", f"/api/admin/sensitive/kbs/{kb_id}/documents")

    def submit_feedback(self, question_id: int, *, is_positive: bool, question: str, answer: str,
                        comment: str = "") -> dict:
        return self._call("POST", "/api/feedback", json={
            "question_id": question_id, "is_positive": is_positive, "question": question, "answer": answer,
            "comment": comment})

    def list_users(self) -> list[dict]:
        return self._call("GET", "/api/admin/users")

    def create_user(self, username: str, password: str, role: str) -> dict:
        return self._call("POST", "/api/admin/users", json={"username": username, "password": password, "role": role})

    def list_groups(self) -> list[dict]:
        return self._call("GET", "/api/admin/groups")

    def create_group(self, name: str) -> dict:
        return self._call("POST", "/api/admin/groups", json={"name": name})

    def set_member(self, group: str, username: str, *, is_member: bool) -> None:
        self._call("PUT" if is_member else "DELETE", f"/api/admin/groups/{group}/members/{username}")

    def feedback(self, offset: int = 0, limit: int = 100) -> list[dict]:
        return self._call("GET", "/api/admin/feedback", params={"offset": offset, "limit": limit})

    def audit_events(self, filters: dict, offset: int = 0, limit: int = 100) -> list[dict]:
        """`filters`: username, action (exact, or a prefix ending in "."), since, until (ISO times)."""
        params = {**_present(filters), "offset": offset, "limit": limit}
        return self._call("GET", "/api/admin/audit", params=params)

    def audit_csv(self, filters: dict) -> bytes:
        try:
            response = self._http.get("/api/admin/audit.csv", params=_present(filters))
        except httpx.HTTPError as exc:
            raise ApiError("UNREACHABLE", f"the Zhiku server is not reachable ({exc})") from None
        if response.status_code >= 400:
            raise _api_error(response)
        return response.content

    def ask(self, question: str, kb_ids: Sequence[int], top_k: int | None = None, *,
            history: Sequence[dict] = (), filters: dict | None = None) -> Iterator[tuple[str, dict]]:
        """Server-Sent Events as (event type, data) pairs, as they arrive. `history`: the earlier
        {"role", "content"} messages; `filters`: file_types / created_from / created_to."""
        body = {"question": question, "kb_ids": list(kb_ids), "top_k": top_k, "history": list(history),
                "filters": filters}
        try:
            with self._http.stream("POST", "/api/ask", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                event_type = "message"
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event_type = line[len("event: "):]
                    elif line.startswith("data: "):
                        yield event_type, json.loads(line[len("data: "):])
        except httpx.HTTPError as exc:
            raise ApiError("UNREACHABLE", f"the Zhiku server is not reachable ({exc})") from None


def _present(params: dict) -> dict:
    return {key: value for key, value in params.items() if value not in (None, "")}


def _api_error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        return ApiError(str(response.status_code), response.text[:300])
