"""The real stack for end-to-end tests: `zhiku up` as a subprocess, on the embedded default or on
PostgreSQL + Redis, answering through our model server with the small 0.5B model."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import REPO, free_port, model_server, wait_ok

TEST_LLM = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
DEFAULT_LLM = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
# The fast multilingual embedder for tests that are not about retrieval or refusal. The stacks below
# run the default embedder, whose calibrated refusal threshold separates off-topic questions.
TEST_EMBEDDER = "multilingual-e5-small"
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_HOST = "127.0.0.1"


def serve_model(model_file: Path, tmp_dir: Path) -> Iterator[str]:
    with model_server(model_file, tmp_dir / "model.log", "--quant", "int4", "--max-batch-size", "4",
                      "--dtype", "bfloat16") as url:
        yield f"{url}/v1"


@pytest.fixture(scope="session")
def llm_url(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The small model: plumbing tests, where answer quality is not the point."""
    yield from serve_model(models_dir / TEST_LLM, tmp_path_factory.mktemp("llm"))


@pytest.fixture(scope="module")
def default_llm_url(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The default answer model (what `make run` serves), for tests of what a new user sees first."""
    yield from serve_model(models_dir / DEFAULT_LLM, tmp_path_factory.mktemp("default-llm"))


@dataclass
class Stack:
    api_url: str
    ui_url: str
    admin_username: str
    admin_password: str
    data_dir: Path
    process: subprocess.Popen
    log: Path

    def client(self) -> httpx.Client:
        token = httpx.post(
            f"{self.api_url}/api/auth/login",
            json={"username": self.admin_username, "password": self.admin_password},
        ).raise_for_status().json()["token"]
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=600)


def _backend_env(backend: str) -> tuple[dict[str, str], callable]:
    if backend == "embedded":
        return {}, lambda: None
    import psycopg
    import redis

    database = f"zhiku_e2e_{secrets.token_hex(4)}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    redis_db = 1 + secrets.randbelow(15)
    redis.Redis(host=REDIS_HOST, db=redis_db).flushdb()

    def cleanup() -> None:
        redis.Redis(host=REDIS_HOST, db=redis_db).flushdb()
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    env = {
        "ZHIKU_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
        "ZHIKU_BROKER_URL": f"redis://{REDIS_HOST}:6379/{redis_db}",
    }
    return env, cleanup


def start_stack(backend: str, *, models_dir: Path, llm_url: str, data_dir: Path, with_ui: bool) -> Stack:
    api_port, ui_port = free_port(), free_port()
    password = secrets.token_urlsafe(12)
    backend_env, cleanup = _backend_env(backend)
    env = {
        **os.environ,
        "ZHIKU_DATA_DIR": str(data_dir),
        "ZHIKU_MODELS_DIR": str(models_dir),
        "ZHIKU_LLM_BASE_URL": llm_url,
        "ZHIKU_API_PORT": str(api_port),
        "ZHIKU_UI_PORT": str(ui_port),
        "ZHIKU_ADMIN_PASSWORD": password,
        "ZHIKU_SAMPLE_DOCS": "false",
        "ZHIKU_JOB_STALE_AFTER_S": "20",
        "ZHIKU_JOB_SWEEP_INTERVAL_S": "2",
        # The judge's threshold is calibrated for the default model, not this 0.5B plumbing one; the
        # judge runs in tests/e2e/test_cli.py (default model) and tests/rag/test_answer.py.
        "ZHIKU_REFUSAL_JUDGE": "false",
        **backend_env,
    }
    log = data_dir / "up.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "app.cli", "up"] + ([] if with_ui else ["--no-ui"])
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    stack = Stack(
        api_url=f"http://127.0.0.1:{api_port}", ui_url=f"http://127.0.0.1:{ui_port}",
        admin_username="admin", admin_password=password, data_dir=data_dir, process=process, log=log,
    )
    stack.cleanup = cleanup  # type: ignore[attr-defined]
    wait_ok(f"{stack.api_url}/healthz", process, log, timeout_s=300)
    if with_ui:
        wait_ok(f"{stack.ui_url}/_stcore/health", process, log, timeout_s=120)
    return stack


def stop_stack(stack: Stack) -> None:
    stack.process.send_signal(signal.SIGINT)  # what Ctrl-C does
    try:
        stack.process.wait(timeout=60)
    finally:
        if stack.process.poll() is None:
            stack.process.kill()
        stack.cleanup()  # type: ignore[attr-defined]


@pytest.fixture(scope="module", params=["embedded", "postgres_redis"])
def api_stack(request: pytest.FixtureRequest, models_dir: Path, llm_url: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(request.param, models_dir=models_dir, llm_url=llm_url,
                        data_dir=tmp_path_factory.mktemp(f"zhiku-{request.param}"), with_ui=False)
    yield stack
    stop_stack(stack)


@pytest.fixture(scope="module")
def stack(models_dir: Path, llm_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The embedded default with the web UI, for browser tests."""
    stack = start_stack("embedded", models_dir=models_dir, llm_url=llm_url,
                        data_dir=tmp_path_factory.mktemp("zhiku-ui"), with_ui=True)
    yield stack
    stop_stack(stack)
