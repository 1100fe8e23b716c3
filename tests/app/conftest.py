"""Service-test fixtures: a SQLite file or a fresh PostgreSQL database (the two the product supports),
and the real API app over it with a real embedder, index files and ingest."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from app.db import make_engine, make_session_factory, session_scope
from app.main import create_app
from app.migrate import upgrade_database
from app.models import Group, Role
from app.services import users
from app.settings import Settings, load_settings
from ingest.tasks import IngestContext, run_ingest
from tests.e2e.conftest import TEST_EMBEDDER, TEST_LLM, serve_model
from tests.servers import free_port

POSTGRES_DSN = "host=127.0.0.1 user=postgres dbname=test"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
ADMIN_PASSWORD = "admin-password-1"


def postgres_database() -> tuple[str, callable]:
    """A new, empty PostgreSQL database: its URL and a function that drops it."""
    import psycopg

    database = f"zhiku_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')

    def drop() -> None:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    return POSTGRES_URL.format(database=database), drop


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """"" means the default SQLite file in the data folder."""
    if request.param == "sqlite":
        yield ""
        return
    url, drop = postgres_database()
    yield url
    drop()


@pytest.fixture(scope="session")
def llm_url(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Our model server with the small 0.5B model, for the few tests that need real answers."""
    yield from serve_model(models_dir / TEST_LLM, tmp_path_factory.mktemp("llm"))


@dataclass
class AppStack:
    """The real FastAPI app in-process (real DB, index files and embedder) and a real ingest context
    that indexes an uploaded document synchronously, as a worker would."""

    settings: Settings
    factory: sessionmaker
    app: FastAPI
    ingest_context: IngestContext

    def login(self, username: str, password: str) -> TestClient:
        client = TestClient(self.app)
        token = client.post("/api/auth/login", json={"username": username, "password": password})
        client.headers["Authorization"] = f"Bearer {token.raise_for_status().json()['token']}"
        return client

    def add_user(self, username: str, role: Role, groups: tuple[str, ...] = ()) -> TestClient:
        password = f"{username}-password-1"
        with session_scope(self.factory) as session:
            users.create_user(session, username=username, password=password, role=role)
            for group in groups:
                if session.scalar(select(Group.id).where(Group.name == group)) is None:
                    users.create_group(session, group)
                users.add_member(session, group, username)
        return self.login(username, password)

    def index(self, uploaded: list[dict]) -> None:
        for doc in uploaded:
            run_ingest(self.ingest_context, document_id=doc["id"], version=doc["version"])


@contextmanager
def app_stack(tmp_path: Path, models_dir: Path, database_url: str, **overrides: object) -> Iterator[AppStack]:
    settings = load_settings(data_dir=tmp_path, models_dir=models_dir, database_url=database_url,
                             embedder=TEST_EMBEDDER, admin_password=ADMIN_PASSWORD,
                             llm_base_url=f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
                             # The judge's threshold is calibrated for the default model, not the 0.5B
                             # one these tests answer with (tests/rag/test_answer.py runs the judge).
                             **({"refusal_judge": False} | overrides))
    upgrade_database(settings)
    factory = make_session_factory(make_engine(settings))
    with session_scope(factory) as session:
        users.ensure_admin(session, username="admin", password=ADMIN_PASSWORD)
    app = create_app(settings)
    context = IngestContext(settings=settings, session_factory=factory, worker_id="test")
    context.embedder = app.state.answering.embedder  # one copy of the model for both
    try:
        yield AppStack(settings, factory, app, context)
    finally:
        if "extractor" in context.__dict__:
            context.extractor.close()
