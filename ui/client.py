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

    def get_job(self, job_id: int) -> dict:
        return self._call("GET", f"/api/jobs/{job_id}")

    def ask(self, question: str, kb_ids: Sequence[int], top_k: int | None = None) -> Iterator[tuple[str, dict]]:
        """Server-Sent Events as (event type, data) pairs, as they arrive."""
        body = {"question": question, "kb_ids": list(kb_ids), "top_k": top_k}
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


def _api_error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        return ApiError(str(response.status_code), response.text[:300])
