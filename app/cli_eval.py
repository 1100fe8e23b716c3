"""`zhiku eval`: QA sets → a temporary KB built by the product's code → metrics table, JSON, plot, log."""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from app.settings import Settings


def cmd_eval(settings: Settings, args: argparse.Namespace) -> None:
    """QA sets → a temporary KB built by the product's code → metrics table, JSON and plot (rag/eval.py)."""
    import tempfile

    from tqdm import tqdm

    from app.processes import llm_reachable, start_model_server
    from app.services.answering import answer_config as configured_answer_config
    from ingest.chunk import ChunkConfig
    from ingest.tasks import configured_embedder
    from rag import eval as qa_eval
    from rag.eval_data import qa_set_dirs
    from rag.eval_kb import VectorCache
    from rag.eval_report import markdown_table, plot, report_json, write_question_log
    from rag.llm import ChatClient
    from rag.rerank import load_reranker

    dirs = qa_set_dirs(args.dirs)
    out = args.json or settings.data_dir / "eval" / f"{'+'.join(d.name for d in dirs)}.json"
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage) or bars.setdefault(stage, tqdm(total=total, desc=stage, file=sys.stderr))
        bar.update(done - bar.n)

    options = qa_eval.EvalOptions(
        limit=args.limit, seed=args.seed, generate=not args.no_generate, ablation=args.ablation,
        oracle=args.oracle, top_k=args.top_k or settings.top_k, parallel=args.parallel,
        rerank_candidates=settings.rerank_candidates,
    )
    embedder = configured_embedder(settings)
    # As the API does: a configured reranker reorders the fused ranking (its gain is a row of the table).
    reranker = load_reranker(settings.reranker_folder) if settings.reranker_folder is not None else None
    with ExitStack() as stack:
        chat = answer_config = None
        if options.generate:
            if not settings.llm_base_url and not llm_reachable(settings):
                print("starting the model server for this evaluation…", file=sys.stderr)
                stack.callback(start_model_server(settings).stop)
            chat = ChatClient(base_url=settings.llm_url, model=settings.llm_model, timeout_s=600.0)
            answer_config = configured_answer_config(settings)
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eval-", dir=settings.data_dir)))
        started = time.perf_counter()
        evaluation = qa_eval.evaluate(
            dirs, embedder=embedder, work_dir=work_dir,
            chunk_config=ChunkConfig(settings.chunk_tokens, settings.chunk_overlap_tokens),
            cache=VectorCache(settings.data_dir / "eval-cache", settings.embedder),
            options=options, chat=chat, answer_config=answer_config, reranker=reranker, progress=progress,
        )
    for bar in bars.values():
        bar.close()
    rows = evaluation.rows()
    print(markdown_table(rows))
    report = report_json(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log = out.with_suffix(".questions.jsonl")
    write_question_log(evaluation.results, log)
    plot(rows, out.with_suffix(".png"), title=f"zhiku eval: {', '.join(evaluation.set_names)}")
    stages = ", ".join(f"{name} {s:.0f} s" for name, s in evaluation.seconds.items())
    print(f"\n{out}, {out.with_suffix('.png').name} and {log.name}; {time.perf_counter() - started:.0f} s ({stages})",
          file=sys.stderr)


def add_eval_parser(subcommands: argparse._SubParsersAction) -> None:
    evaluate = subcommands.add_parser(
        "eval", help="measure retrieval and answers on QA sets (docs/quality.md)",
        description="Each DIR holds questions.jsonl + corpus.jsonl, or is a folder of such sets; several sets "
                    "share one pooled knowledge base and get a row each plus an overall row.")
    evaluate.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    evaluate.add_argument("--limit", type=int, default=None, help="first N questions of each set")
    evaluate.add_argument("--seed", type=int, default=None, help="with --limit: a random sample of N instead")
    evaluate.add_argument("--no-generate", action="store_true", help="retrieval only: no model server")
    evaluate.add_argument("--json", type=Path, default=None, metavar="OUT",
                          help="default data/eval/<sets>.json; the plot goes next to it (.png)")
    evaluate.add_argument("--ablation", action="store_true", help="also rank with RRF fusion, dense only and BM25 only")
    evaluate.add_argument("--oracle", action="store_true", help="also answer from the gold passages")
    evaluate.add_argument("--top-k", type=int, default=None, help="sources given to the model")
    evaluate.add_argument("--parallel", type=int, default=1, help="questions answered at once")
    evaluate.set_defaults(func=cmd_eval)
