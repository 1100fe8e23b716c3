"""Real processes the tests start: free ports, our model server (`python -m model.server`), and reading
the API's answer stream."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ok(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll `url` until it answers 200; fail with the process's log if it dies or takes too long."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s} s:\n{log.read_text()[-4000:]}")


@contextmanager
def model_server(model_file: Path, log: Path, *args: str, timeout_s: float = 900) -> Iterator[str]:
    """Our OpenAI-compatible server on a free port; yields its base URL (without /v1)."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "model.server", "--model", str(model_file), "--port", str(port), *args],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_ok(f"http://127.0.0.1:{port}/health", process, log, timeout_s)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ask_events(client: httpx.Client, question: str, kb_ids: list[int],
               **fields: object) -> list[tuple[str, dict]]:
    """POST /api/ask (any further body `fields` too) and collect its Server-Sent Events as (type, data) pairs."""
    events: list[tuple[str, dict]] = []
    body = {"question": question, "kb_ids": kb_ids, **fields}
    with client.stream("POST", "/api/ask", json=body) as response:
        response.raise_for_status()
        event_type = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event_type = line[7:]
            elif line.startswith("data: "):
                events.append((event_type, json.loads(line[6:])))
    return events
