"""The `zhiku` command line as a script would use it, with nothing running beforehand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, TEST_EMBEDDER

pytestmark = pytest.mark.e2e


def zhiku(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)


def test_ingest_docs_then_ask_how_to_back_up(tmp_path: Path, models_dir: Path, default_llm_url: str) -> None:
    """The first thing a new user does: Zhiku's own docs as a KB, then "如何备份数据？", default model."""
    env = {**os.environ, "ZHIKU_DATA_DIR": str(tmp_path), "ZHIKU_MODELS_DIR": str(models_dir),
           "ZHIKU_LLM_BASE_URL": default_llm_url}
    pages = sorted(str(page) for page in (REPO / "docs").rglob("*.md"))  # what first start ingests (no plots)
    ingested = zhiku(["ingest", *pages, "--kb", "Zhiku 文档", "--wait"], env)
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    assert "indexed" in ingested.stdout

    asked = zhiku(["ask", "如何备份数据？", "--kb", "Zhiku 文档", "--json"], env)
    assert asked.returncode == 0, asked.stderr[-3000:]
    result = json.loads(asked.stdout)
    assert set(result) >= {"answer", "reasoning", "refused", "citations"}
    assert result["refused"] is False
    assert "data" in result["answer"] or "数据目录" in result["answer"] or "tar" in result["answer"]
    assert result["citations"]
    for citation in result["citations"]:
        assert set(citation) >= {"n", "document", "page", "section", "snippet", "score"}
    assert {c["document"] for c in result["citations"]} & {"运维指南.md", "operations.md"}


def test_ask_about_an_unknown_kb_is_a_clear_error(tmp_path: Path, models_dir: Path) -> None:
    env = {**os.environ, "ZHIKU_DATA_DIR": str(tmp_path), "ZHIKU_MODELS_DIR": str(models_dir),
           "ZHIKU_EMBEDDER": TEST_EMBEDDER, "ZHIKU_LLM_BASE_URL": "http://127.0.0.1:9/v1"}  # never reached
    asked = zhiku(["ask", "hello", "--kb", "does-not-exist"], env)
    assert asked.returncode != 0
    assert "no knowledge base named 'does-not-exist'" in asked.stderr
