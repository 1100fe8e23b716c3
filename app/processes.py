"""Child processes of `zhiku up` (and of `zhiku ingest/ask` when nothing is running): start, wait, stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.settings import Settings

UI_SCRIPT = Path(__file__).resolve().parent.parent / "ui" / "app.py"


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def spawn(settings: Settings, name: str, args: list[str]) -> Child:
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / f"{name}.log"
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        args, env=settings.child_env(), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches only `zhiku up`, which then stops children in order
    )
    return Child(name=name, process=process, log_path=log_path)


def wait_http_ok(child: Child, url: str, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with code {child.process.returncode}; see {child.log_path}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout_s:.0f} s; see {child.log_path}")


def llm_reachable(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.llm_url}/models", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_model_server(settings: Settings) -> Child:
    args = [sys.executable, "-m", "model.server", "--model", str(settings.llm_model_path),
            "--port", str(settings.llm_port), "--host", "127.0.0.1", "--dtype", "bfloat16",
            "--max-batch-size", str(settings.llm_max_batch_size), "--max-seq-len", str(settings.llm_max_seq_len)]
    if settings.llm_quant != "none":
        args += ["--quant", settings.llm_quant]
    if settings.llm_threads:
        args += ["--threads", str(settings.llm_threads)]
    child = spawn(settings, "model", args)
    wait_http_ok(child, f"{settings.llm_url}/models", timeout_s=600)
    return child


def start_worker(settings: Settings) -> Child:
    return spawn(settings, "worker", [sys.executable, "-m", "app.cli", "worker"])


def start_api(settings: Settings) -> Child:
    child = spawn(settings, "api", [sys.executable, "-m", "app.cli", "api"])
    wait_http_ok(child, f"{settings.api_url}/healthz", timeout_s=120)
    return child


def start_ui(settings: Settings) -> Child:
    args = [
        sys.executable, "-m", "streamlit", "run", str(UI_SCRIPT),
        "--server.port", str(settings.ui_port), "--server.address", settings.api_host,
        "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
        "--", "--api-url", settings.api_url,
    ]
    child = spawn(settings, "ui", args)
    wait_http_ok(child, f"http://{settings.api_host}:{settings.ui_port}/_stcore/health", timeout_s=120)
    return child
