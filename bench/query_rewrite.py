"""What rewriting a follow-up question (rag/rewrite.py) gains retrieval, on follow-ups made from the QA sets.

    python bench/query_rewrite.py [DIR ...] [--per-set 40] [--parallel 4] [--out NAME]

No public multi-turn set ships here, so follow-ups are made from the single-turn ones whose passages
have titles (CMRC 2018, DRCD, SQuAD 2.0): two answerable questions about one article that both name
it (its title) become a conversation — the first question, its gold answer as the assistant's reply —
and the second question with the title replaced by a pronoun (它 / it) is the follow-up. Each
follow-up is then searched on the pooled knowledge base of every set in DIR (the product's chunker,
embedder and retrieve(), vectors cached in data/eval-cache/) four ways:
  original question   the second question as it was written (what a perfect rewrite recovers)
  follow-up as asked  the pronoun question alone (no rewriting)
  + previous question the previous question and the follow-up concatenated (the usual shortcut)
  rewritten (Zhiku)   rag/rewrite.py's standalone question from the configured model server
                      (ZHIKU_LLM_BASE_URL), as app/services/answering.py searches with it
Prints the retrieval table; writes bench/results/<NAME>.json, its plot <NAME>.png and
<NAME>.questions.jsonl (every follow-up and its rewrite).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from app.settings import load_settings
from ingest.chunk import ChunkConfig
from ingest.tasks import configured_embedder
from rag.eval import ABLATIONS, run_retrieval
from rag.eval_data import load_qa_set, qa_set_dirs
from rag.eval_kb import VectorCache, build_kb
from rag.eval_report import HYBRID, markdown_table, plot, summary_rows
from rag.llm import ChatClient
from rag.rewrite import RewriteConfig, rewrite_followup
from rag.tokenize import has_cjk

REPO = Path(__file__).resolve().parent.parent
QA_DIR = REPO.parent / "shared" / "evaldata" / "qa"
TITLED_SETS = ("cmrc2018", "drcd", "squad2")


def pronoun_for(question: str) -> str:
    return "它" if has_cjk(question) else "it"


def title_pattern(title: str) -> re.Pattern:
    """The article's name in a question: an English one as whole words with its "the" ("Huguenots"
    does not name the article "Huguenot"), a Chinese one anywhere."""
    if has_cjk(title):
        return re.compile(re.escape(title))
    return re.compile(r"(?:\bthe\s+)?\b" + re.escape(title) + r"\b", re.IGNORECASE)


def with_pronoun(question: str, title: str) -> str:
    return title_pattern(title).sub(pronoun_for(question), question, count=1)


def followups(questions: list[dict], passages: dict[str, dict], per_set: int) -> list[dict]:
    """Pairs of answerable questions about one titled article that both name it, in file order."""
    by_title: dict[str, list[dict]] = defaultdict(list)
    for q in questions:
        if q["is_impossible"] or not q["context_ids"]:
            continue
        title = passages[q["context_ids"][0]]["title"].strip()
        if len(title) >= 2 and title_pattern(title).search(q["question"]):
            by_title[title].append(q)
    made = []
    for title, asked in by_title.items():
        for first, second in zip(asked[0::2], asked[1::2]):
            history = [{"role": "user", "content": first["question"]},
                       {"role": "assistant", "content": first["answers"][0]}]
            made.append({**second, "original": second["question"], "followup": with_pronoun(second["question"], title),
                         "history": history, "title": title})
            if len(made) == per_set:
                return made
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[QA_DIR])
    parser.add_argument("--per-set", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=4, help="rewrite requests in flight")
    parser.add_argument("--out", default="query_rewrite")
    args = parser.parse_args()

    settings = load_settings()
    sets = [load_qa_set(folder) for folder in qa_set_dirs(args.dirs)]
    passages = {p["id"]: p for qa in sets for p in qa.passages}
    conversations = [(qa.name, q) for qa in sets if qa.name in TITLED_SETS
                     for q in followups(qa.questions, passages, args.per_set)]
    chat = ChatClient(settings.llm_url, settings.llm_model)
    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, args.parallel)) as pool:
        rewrites = list(pool.map(lambda c: rewrite_followup(c[1]["followup"], c[1]["history"], chat=chat,
                                                            config=RewriteConfig()), conversations))
    rewrite_s = time.perf_counter() - started
    searched = {
        "original question": [q["original"] for _, q in conversations],
        "follow-up as asked": [q["followup"] for _, q in conversations],
        "+ previous question": [f"{q['history'][0]['content']} {q['followup']}" for _, q in conversations],
        # A failed rewrite searches with the question as asked, as the product does.
        "rewritten (Zhiku)": [r or q["followup"] for r, (_, q) in zip(rewrites, conversations)],
    }
    embedder = configured_embedder(settings)
    results = {}
    with tempfile.TemporaryDirectory(prefix="rewrite-", dir=settings.data_dir) as work:
        kb = build_kb(list(passages.values()), embedder=embedder, folder=Path(work) / "index",
                      chunk_config=ChunkConfig(settings.chunk_tokens, settings.chunk_overlap_tokens),
                      cache=VectorCache(settings.data_dir / "eval-cache", settings.embedder))
        for system, texts in searched.items():
            asked = [(name, {**q, "question": text, "choices": []})
                     for (name, q), text in zip(conversations, texts)]
            ranked, _ = run_retrieval(asked, kb, embedder, {HYBRID: ABLATIONS[HYBRID]})
            results[system] = [replace(r, system=system) for r in ranked[HYBRID]]
    asked_sets = {name for name, _ in conversations}
    rows = summary_rows(results, [name for name in TITLED_SETS if name in asked_sets])
    print(markdown_table(rows))
    failed = sum(r is None for r in rewrites)
    print(f"\n{len(conversations)} follow-ups; {failed} rewrites unusable (searched as asked); "
          f"rewriting {rewrite_s:.0f} s ({rewrite_s / max(1, len(conversations)):.1f} s each, {args.parallel} in flight)")
    out = REPO / "bench" / "results" / f"{args.out}.json"
    out.write_text(json.dumps({
        "model": settings.llm_model, "embedder": settings.embedder, "per_set": args.per_set,
        "followups": len(conversations), "unusable_rewrites": failed, "rewrite_seconds": rewrite_s, "rows": rows,
    }, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot(rows, out.with_suffix(".png"), title="Follow-up questions: what to search with")
    out.with_suffix(".questions.jsonl").write_text("".join(
        json.dumps({"set": name, "id": q["id"], "history": q["history"], "followup": q["followup"],
                    "rewrite": rewrite, "original": q["original"], "gold": q["context_ids"],
                    **{system: found[i].ranked[:3] for system, found in results.items()}}, ensure_ascii=False) + "\n"
        for i, ((name, q), rewrite) in enumerate(zip(conversations, rewrites))), encoding="utf-8")
    print(out)


if __name__ == "__main__":
    main()
