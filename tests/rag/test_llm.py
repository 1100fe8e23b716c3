"""ChatClient's protocol handling. The answer path against our real model server is in test_answer.py;
here a small stdlib HTTP server replays streams our server never sends (inline <think>, errors)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.llm import ChatClient, ChatDelta, LLMProtocolError, LLMRequestFailed, LLMUnavailable, ThinkSplitter


def split_all(pieces: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    deltas = [splitter.feed(p) for p in pieces] + [splitter.flush()]
    return "".join(d.content for d in deltas), "".join(d.reasoning for d in deltas)


def test_think_span_goes_to_reasoning():
    assert split_all(["<think>why</think>Answer [1]."]) == ("Answer [1].", "why")


@pytest.mark.parametrize("cut", range(1, 25))
def test_tags_cut_anywhere_across_deltas(cut):
    text = "<think>step one</think>巴黎 [1]。"
    assert split_all([text[:cut], text[cut:]]) == ("巴黎 [1]。", "step one")


def test_text_that_only_looks_like_a_tag_start_is_kept():
    assert split_all(["a <th", "ing> b <"]) == ("a <thing> b <", "")


def sse(*payloads: dict | str) -> bytes:
    lines = [f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n" for p in payloads]
    return "".join(lines).encode()


def chunk(content: str | None = None, reasoning: str | None = None) -> dict:
    delta = {k: v for k, v in (("content", content), ("reasoning_content", reasoning)) if v is not None}
    return {"choices": [{"index": 0, "delta": delta}]}


REPLIES = {
    "/reasoning/v1/chat/completions": (200, sse(chunk(reasoning="think "), chunk(reasoning="more"),
                                                chunk(content="Paris"), chunk(content=" [1]."), "[DONE]")),
    "/inline/v1/chat/completions": (200, sse(chunk("<thi"), chunk("nk>hmm</th"), chunk("ink>Oui"), "[DONE]")),
    "/broken/v1/chat/completions": (200, b"data: {not json\n\n"),
    "/overloaded/v1/chat/completions": (503, b'{"error": {"message": "busy"}}'),
}


class ReplayHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["stream"] is True and body["messages"]
        status, reply = REPLIES[self.path]
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def replay_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ReplayHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def collect(base_url: str) -> ChatDelta:
    client = ChatClient(base_url, "m", timeout_s=10)
    deltas = list(client.stream([{"role": "user", "content": "q"}], max_tokens=8))
    return ChatDelta("".join(d.content for d in deltas), "".join(d.reasoning for d in deltas))


def test_reasoning_content_field_is_reasoning(replay_url):
    assert collect(f"{replay_url}/reasoning/v1") == ChatDelta(content="Paris [1].", reasoning="think more")


def test_inline_think_split_across_deltas(replay_url):
    assert collect(f"{replay_url}/inline/v1/") == ChatDelta(content="Oui", reasoning="hmm")


def test_http_error_status_is_reported_with_the_body(replay_url):
    with pytest.raises(LLMRequestFailed, match="503.*busy"):
        collect(f"{replay_url}/overloaded/v1")


def test_non_json_stream_is_a_protocol_error(replay_url):
    with pytest.raises(LLMProtocolError):
        collect(f"{replay_url}/broken/v1")


def test_nothing_listening_is_llm_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LLMUnavailable, match="no model server"):
        collect(f"http://127.0.0.1:{port}/v1")
