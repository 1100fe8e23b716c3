"""create_app(settings) → the FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from app.api import ask, audit, auth, documents, feedback, health, kbs, openai_compat, sensitive, users
from app.db import make_engine, make_session_factory
from app.errors import install_error_handler
from app.services.answering import Answering
from app.settings import Settings
from app.worker import create_celery, make_enqueue


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="Zhiku 知库", version="0.1.0")
    session_factory = make_session_factory(make_engine(settings))
    app.state.settings = settings
    app.state.session_factory = session_factory
    app.state.enqueue = make_enqueue(create_celery(settings))
    app.state.answering = Answering(settings=settings, session_factory=session_factory)
    install_error_handler(app)
    for router in (health.router, auth.router, kbs.router, documents.router, ask.router, feedback.router,
                   users.router, audit.router, sensitive.router, openai_compat.router):
        app.include_router(router)
    return app
