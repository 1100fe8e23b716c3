"""Streaming chat client for any OpenAI-compatible `/v1/chat/completions` (ours, vLLM, llama.cpp, DeepSeek).

Reasoning arrives either in `delta.reasoning_content` (DeepSeek's API, our server) or inline in the
content as `<think>…</think>` (servers that pass the model's text through); both come out as
`ChatDelta.reasoning`, so callers never see the tags.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class LLMError(Exception):
    """The model server could not produce an answer."""


class LLMUnavailable(LLMError):
    """Nothing answers at the configured address, or it timed out."""


class LLMRequestFailed(LLMError):
    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(f"model server answered HTTP {status_code}: {body[:500]}")
        self.status_code = status_code


class LLMProtocolError(LLMError):
    """The server's stream is not OpenAI-style SSE."""


@dataclass(frozen=True)
class ChatDelta:
    content: str = ""
    reasoning: str = ""


class ThinkSplitter:
    """Moves `<think>…</think>` spans of streamed content into reasoning; a tag may be cut across deltas."""

    def __init__(self) -> None:
        self._in_think = False
        self._pending = ""  # a suffix that may be the start of a tag, held until the next delta

    def feed(self, text: str) -> ChatDelta:
        text = self._pending + text
        self._pending = ""
        content, reasoning = [], []
        while text:
            tag = THINK_CLOSE if self._in_think else THINK_OPEN
            at = text.find(tag)
            if at >= 0:
                (reasoning if self._in_think else content).append(text[:at])
                text = text[at + len(tag) :]
                self._in_think = not self._in_think
                continue
            keep = _partial_tag_suffix(text, tag)
            (reasoning if self._in_think else content).append(text[: len(text) - keep])
            self._pending = text[len(text) - keep :]
            break
        return ChatDelta(content="".join(content), reasoning="".join(reasoning))

    def flush(self) -> ChatDelta:
        rest, self._pending = self._pending, ""
        return ChatDelta(reasoning=rest) if self._in_think else ChatDelta(content=rest)


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ChatClient:
    def __init__(self, base_url: str, model: str, timeout_s: float = 600.0) -> None:
        """`base_url` ends in `/v1` (the OpenAI SDK convention), e.g. http://127.0.0.1:8001/v1."""
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s

    def stream(
        self,
        messages: Sequence[dict],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Iterator[ChatDelta]:
        body = {
            "model": self.model,
            "messages": list(messages),
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if stop:
            body["stop"] = list(stop)
        splitter = ThinkSplitter()
        with self._errors_mapped(), httpx.Client(timeout=self._timeout()) as client:
            with client.stream("POST", f"{self.base_url}/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    body_text = response.read().decode("utf-8", "replace")
                    raise LLMRequestFailed(response.status_code, body_text)
                for payload in _sse_data(response.iter_lines()):
                    delta = _delta_of(payload)
                    if delta.reasoning:
                        yield ChatDelta(reasoning=delta.reasoning)
                    if delta.content:
                        split = splitter.feed(delta.content)
                        if split.content or split.reasoning:
                            yield split
        tail = splitter.flush()
        if tail.content or tail.reasoning:
            yield tail

    def first_token_logprobs(self, messages: Sequence[dict], *, top_logprobs: int) -> dict[str, float]:
        """{token text: log-probability} of the `top_logprobs` likeliest first tokens of the reply
        (OpenAI's `logprobs`; one prompt forward pass and one token)."""
        body = {"model": self.model, "messages": list(messages), "max_tokens": 1, "temperature": 0.0,
                "logprobs": True, "top_logprobs": top_logprobs}
        with self._errors_mapped(), httpx.Client(timeout=self._timeout()) as client:
            response = client.post(f"{self.base_url}/chat/completions", json=body)
        if response.status_code >= 400:
            raise LLMRequestFailed(response.status_code, response.text)
        try:
            first = response.json()["choices"][0]["logprobs"]["content"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMProtocolError(f"no logprobs in the reply (does this server support them?): "
                                   f"{response.text[:200]!r}") from exc
        alternatives = first.get("top_logprobs") or [first]
        return {entry["token"]: float(entry["logprob"]) for entry in alternatives}

    def _timeout(self) -> httpx.Timeout:
        # Connecting should be quick; the read timeout covers a slow first token on a busy CPU.
        return httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s))

    @contextmanager
    def _errors_mapped(self) -> Iterator[None]:
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise LLMUnavailable(f"no model server at {self.base_url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise LLMUnavailable(
                f"model server at {self.base_url} timed out after {self.timeout_s} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise LLMUnavailable(f"model server at {self.base_url} failed: {exc}") from exc


def _sse_data(lines: Iterator[str]) -> Iterator[dict]:
    """The JSON payloads of `data:` lines, up to `data: [DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, `event:` and `: keep-alive` comments
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as exc:
            raise LLMProtocolError(f"not JSON in the event stream: {data[:200]!r}") from exc
        if "error" in payload:
            raise LLMRequestFailed(200, json.dumps(payload["error"], ensure_ascii=False))
        yield payload


def _delta_of(payload: dict) -> ChatDelta:
    choices = payload.get("choices") or []
    if not choices:
        return ChatDelta()  # e.g. the final usage chunk
    delta = choices[0].get("delta") or {}
    return ChatDelta(content=delta.get("content") or "", reasoning=delta.get("reasoning_content") or "")
