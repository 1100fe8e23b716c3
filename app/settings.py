"""The one settings object (ZHIKU_* environment variables or a `.env` file), built once and passed down.

This is the only module that reads or writes the process environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Libraries that phone home or fetch from a hub unless told not to (unstructured's telemetry on import,
# transformers/sentence-transformers hub lookups). Applied to this process and every child we start.
OFFLINE_ENV = {
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZHIKU_", env_file=".env", extra="ignore")

    # All state lives under one folder so two instances never collide.
    data_dir: Path = Path("data")
    database_url: str = ""  # default: SQLite in data_dir
    broker_url: str = ""  # default: kombu's SQLAlchemy transport on a SQLite file in data_dir
    models_dir: Path | None = None  # default: data_dir/models

    # Answer model: a GGUF file or HF folder (name under models_dir, or a path), served by model.server,
    # unless llm_base_url points at a running OpenAI-compatible server (ours, vLLM, ...).
    llm_model: str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    llm_quant: Literal["none", "int8", "int4"] = "int4"
    llm_base_url: str = ""
    llm_max_tokens: int = 512
    llm_threads: int = 0  # 0: let torch decide
    # Concurrent answers sharing decode steps; each slot holds a KV cache of llm_max_seq_len tokens.
    llm_max_batch_size: int = 4
    llm_max_seq_len: int = 4096

    # Chosen by measurement (docs/embedders.md): multilingual, ~3x the fp32 speed at the same recall.
    embedder: str = "embeddinggemma-300m-int8"
    embedder_threads: int = 0
    # 0: the embedder's calibrated value (ingest/embed.py); questions whose best source scores lower are refused.
    refusal_min_cosine: float = 0.0
    # Before answering, the model judges whether the sources hold the answer (rag/judge.py; one extra
    # prompt pass); below this yes/no log-odds it refuses. Calibrated for the default model by
    # bench/refusal_judge.py (docs/quality.md): re-run it for another model.
    refusal_judge: bool = True
    refusal_judge_min_score: float = 2.25
    # Sources the judge scores below the first, or more than the second below the best source, are left
    # out of the answer prompt (rag/judge.py sources_kept; the margin chosen in docs/quality.md).
    refusal_judge_drops_sources: bool = True
    refusal_judge_min_source_score: float = 0.0
    refusal_judge_source_margin: float = 1.5

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    ui_port: int = 8501
    llm_port: int = 8001

    chunk_tokens: int = 400  # see ingest/chunk.py ChunkConfig
    chunk_overlap_tokens: int = 60
    top_k: int = 5
    # A follow-up question ("它的保修期多久?") is rewritten by the answer model into a standalone one
    # for retrieval; one short extra model call per question that comes with a chat history.
    rewrite_followups: bool = True
    # Chat history kept per question (the last messages, each clipped): bounds the prompt, which
    # also holds top_k sources, within the model's context.
    history_max_messages: int = 6
    history_max_chars: int = 1000
    # Optional cross-encoder reranker: a local folder (absolute, or a name under models_dir) with
    # safetensors weights; loaded at startup. None: the fused ranking is final.
    reranker_path: Path | None = None
    rerank_candidates: int = 20  # the first N fused results the reranker rescores

    max_upload_bytes: int = 200 * 1024 * 1024
    extract_timeout_s: float = 300.0
    extract_max_memory_bytes: int = 4 * 1024**3
    max_job_attempts: int = 3
    # A running job whose heartbeat is older than this is presumed dead (worker killed) and re-queued.
    job_stale_after_s: float = 120.0
    job_sweep_interval_s: float = 15.0
    broker_polling_interval_s: float = 0.2

    admin_username: str = "admin"
    admin_password: str = ""  # only used to create the first admin; empty: generate and print one
    token_ttl_s: int = 12 * 3600
    # Brute force: after this many consecutive failures a username (or a client address, which many
    # users may share behind one NAT, hence the higher limit) is locked for login_lockout_s, doubled
    # with every further failure up to login_max_lockout_s. A success clears the username's count.
    login_max_failures: int = 5
    login_max_failures_per_address: int = 20
    login_lockout_s: float = 60.0
    login_max_lockout_s: float = 3600.0
    # "text": the audit log keeps each question as asked; "sha256": only its hash (privacy policy).
    audit_question: Literal["text", "sha256"] = "text"
    sample_docs: bool = True  # ingest Zhiku's own docs as a sample KB on first start

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _fill_defaults(self) -> "Settings":
        self.data_dir = self.data_dir.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'zhiku.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.db'}"
        if self.models_dir is None:
            self.models_dir = self.data_dir / "models"
        self.models_dir = self.models_dir.resolve()
        return self

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def indexes_dir(self) -> Path:
        return self.data_dir / "indexes"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def llm_model_path(self) -> Path:
        path = Path(self.llm_model)
        return path if path.is_absolute() else self.models_dir / path

    @property
    def reranker_folder(self) -> Path | None:
        path = self.reranker_path
        if path is None:
            return None
        return path if path.is_absolute() else self.models_dir / path

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def llm_url(self) -> str:
        return self.llm_base_url or f"http://127.0.0.1:{self.llm_port}/v1"

    def child_env(self) -> dict[str, str]:
        """Environment for a child process of ours: this one's, offline, with the same settings."""
        env = dict(os.environ)
        env.update(OFFLINE_ENV)
        env.update({f"ZHIKU_{k.upper()}": str(v) for k, v in self._explicit_values().items()})
        return env

    def _explicit_values(self) -> dict[str, object]:
        return {
            "data_dir": self.data_dir,
            "database_url": self.database_url,
            "broker_url": self.broker_url,
            "models_dir": self.models_dir,
        }


def apply_offline_env() -> None:
    """Make this process offline before any ML or document library is imported."""
    os.environ.update(OFFLINE_ENV)


def load_settings(**overrides: object) -> Settings:
    apply_offline_env()
    settings = Settings(**overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings
