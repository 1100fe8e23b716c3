"""Time from `zhiku ingest` to searchable for N real documents, and time to first answer token.

Runs the real path: the CLI registers files, a real Celery worker (embedded broker) extracts, chunks,
embeds and indexes them; then one question goes through retrieval and the model server (started here
with the default model unless --llm-url is given). Prints a markdown table; writes JSON to bench/results/.

    .venv/bin/python bench/ingest_e2e.py --docs 50 [--embedder NAME] [--llm-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app.settings import Settings

REPO = Path(__file__).resolve().parent.parent
EVALDOCS = REPO.parent / "shared" / "evaldata" / "docs"
SKIP_DIRS = {"hostile", "legacy", "image", "archive"}
SKIP_FILES = {"DA-619p.pdf"}  # one 619-page file would dominate a "50 documents" number


def pick_documents(count: int) -> list[Path]:
    """Real documents of every format that should ingest (no hostile, encrypted or empty files)."""
    files = sorted(
        p for p in EVALDOCS.rglob("*")
        if p.is_file() and p.parent != EVALDOCS and p.parent.name not in SKIP_DIRS and p.name not in SKIP_FILES
        and not p.name.startswith(("empty", "encrypted", "scanned"))
    )
    return files[:count]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=50)
    parser.add_argument("--embedder", default="")
    parser.add_argument("--llm-url", default="")
    parser.add_argument("--question", default="FSDP算法是由哪项技术驱动的？")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="zhiku-bench-"))
    env = Settings(data_dir=data_dir, models_dir=REPO / "data" / "models").child_env()
    if args.embedder:
        env["ZHIKU_EMBEDDER"] = args.embedder
    docs = pick_documents(args.docs)
    staging = data_dir / "input"
    staging.mkdir()
    for doc in docs:
        shutil.copy(doc, staging / doc.name)

    started = time.perf_counter()
    ingest = subprocess.run([sys.executable, "-m", "app.cli", "ingest", str(staging), "--kb", "bench", "--wait"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    ingest_s = time.perf_counter() - started

    llm = None
    if args.llm_url:
        env["ZHIKU_LLM_BASE_URL"] = args.llm_url
    else:
        port = "8765"
        env["ZHIKU_LLM_PORT"] = port
        llm = subprocess.Popen([sys.executable, "-m", "model.server", "--model",
                                str(REPO / "data/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
                                "--quant", "int4", "--port", port], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
    try:
        code = (
            "import sys,time\n"
            "from app.settings import load_settings\n"
            "from app.cli import _session_factory\n"
            "from app.services.answering import Answering\n"
            "from app.services.documents import kb_by_name\n"
            "from app.db import session_scope\n"
            "from app.models import Chunk\n"
            "from sqlalchemy import func, select\n"
            "s=load_settings(); f=_session_factory(s); a=Answering(settings=s, session_factory=f)\n"
            "with session_scope(f) as x: kb=kb_by_name(x,'bench').id; n=x.scalar(select(func.count(Chunk.id)))\n"
            "a.embedder; a.find_sources('warm up', [kb], top_k=1)\n"
            "t=time.perf_counter(); first=None\n"
            "for e in a.stream(sys.argv[1],[kb]):\n"
            "    if e.type=='token' and first is None: first=time.perf_counter()-t\n"
            "print(n, first if first is not None else -1, time.perf_counter()-t)\n"
        )
        out = subprocess.run([sys.executable, "-c", code, args.question], cwd=REPO, env=env,
                             capture_output=True, text=True)
        num_chunks, first_token_s, total_s = (float(x) for x in out.stdout.split()[-3:])
    finally:
        if llm is not None:
            llm.terminate()
            llm.wait()

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "documents": len(docs),
        "ingest_to_searchable_s": round(ingest_s, 1),
        "ingest_ok": ingest.returncode == 0,
        "chunks": int(num_chunks),
        "ingest_tail": ingest.stdout[-300:] + ingest.stderr[-300:],
        "first_token_s": round(first_token_s, 2),
        "answer_total_s": round(total_s, 2),
    }
    (REPO / "bench" / "results" / "ingest_e2e.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    print("| documents | chunks | ingest → searchable (s) | chunks/s | first answer token (s) | full answer (s) |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(docs)} | {int(num_chunks)} | {ingest_s:.1f} | {num_chunks / ingest_s:.2f} "
          f"| {first_token_s:.2f} | {total_s:.2f} |")
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
