"""The Celery app: configuration, the ingest task, and the worker's recovery sweep.

Broker choice: the embedded default is kombu's SQLAlchemy transport on a SQLite file (a real broker
and a real worker process, no service to run). Neither it nor Redis redelivers reliably after a
worker dies (see ingest/tasks.py), so the worker sweeps the Job table for stale jobs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from celery import Celery, signals
from kombu.transport.sqlalchemy import Transport as SQLTransport

from app.db import make_engine, make_session_factory
from app.settings import Settings
from ingest.tasks import (
    INGEST_TASK,
    IngestContext,
    RetryLater,
    record_worker_alive,
    requeue_stale_jobs,
    run_ingest,
)

log = logging.getLogger(__name__)


SQL_BROKER_PREFIX = "sqla+"


def _sql_transport(polling_interval_s: float) -> type[SQLTransport]:
    """kombu's SQLAlchemy transport, polling its table more often than its 1 s default.

    The interval cannot travel as a transport option: that transport passes every option on to
    `create_engine`, which rejects it. So it is a class attribute of a subclass made here.
    """
    return type("PollingSQLTransport", (SQLTransport,), {"polling_interval": polling_interval_s})


def create_celery(settings: Settings) -> Celery:
    transport_options: dict[str, object] = {}
    if settings.broker_url.startswith(SQL_BROKER_PREFIX):
        celery = Celery("zhiku", broker=settings.broker_url[len(SQL_BROKER_PREFIX):])
        celery.conf.broker_transport = _sql_transport(settings.broker_polling_interval_s)
    else:
        celery = Celery("zhiku", broker=settings.broker_url)
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Redis hands an unacked task to another worker after this long. Our own sweep re-queues a dead
        # worker's job within job_stale_after_s, so keep Redis' redelivery well past the longest job to
        # avoid running a healthy long job twice.
        transport_options["visibility_timeout"] = 6 * 3600
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return celery


def make_enqueue(celery: Celery) -> Callable[[int, int], None]:
    def enqueue(document_id: int, version: int) -> None:
        celery.send_task(INGEST_TASK, kwargs={"document_id": document_id, "version": version})

    return enqueue


def configure_worker(settings: Settings) -> Celery:
    """The worker process's Celery app, with the ingest task and the sweep registered."""
    celery = create_celery(settings)
    session_factory = make_session_factory(make_engine(settings))
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    context = IngestContext(settings=settings, session_factory=session_factory, worker_id=worker_id)
    enqueue = make_enqueue(celery)

    @celery.task(name=INGEST_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
    def ingest_document(self, *, document_id: int, version: int) -> None:  # noqa: ANN001
        try:
            run_ingest(context, document_id=document_id, version=version)
        except RetryLater as retry:
            # A new message: the job row already counts the attempt and caps the total.
            raise self.retry(countdown=retry.countdown_s) from None

    stop = threading.Event()

    def sweep_forever() -> None:
        while True:
            try:
                record_worker_alive(session_factory, worker_id)
                requeued = requeue_stale_jobs(
                    session_factory, enqueue, stale_after_s=settings.job_stale_after_s
                )
                if requeued:
                    log.warning("re-queued jobs whose worker stopped: %s", requeued)
            except Exception:
                log.exception("recovery sweep failed; will try again")
            if stop.wait(settings.job_sweep_interval_s):
                return

    @signals.worker_ready.connect(weak=False)
    def _start_sweep(**_kwargs: object) -> None:
        threading.Thread(target=sweep_forever, name="job-sweep", daemon=True).start()

    @signals.worker_shutdown.connect(weak=False)
    def _stop_sweep(**_kwargs: object) -> None:
        stop.set()

    return celery


def run_worker(settings: Settings) -> None:
    celery = configure_worker(settings)
    # solo pool: the task runs in this process, so "worker killed" means the job's process is gone,
    # which the sweep detects; extraction itself already runs in a limited child process.
    celery.worker_main(["worker", "--pool=solo", "--loglevel", settings.log_level, "--without-gossip",
                        "--without-mingle", "--without-heartbeat"])
