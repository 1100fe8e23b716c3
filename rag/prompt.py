"""Numbered sources + question → chat messages. The server applies the model's own chat template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rag.tokenize import has_cjk

REFUSAL_ZH = "资料中没有找到答案。"
REFUSAL_EN = "The documents do not contain the answer."

SYSTEM_PROMPT = f"""你是企业知识库助手。只根据下面编号的资料回答问题，不要使用资料以外的知识。
直接回答，简洁：先给出答案本身，不要复述问题，不要以“根据资料”开头。
每个事实后面用方括号标注所依据资料的编号，例如 [1] 或 [1][2]。
用提问所用的语言回答：中文问题用中文回答，英文问题用英文回答。
如果资料中没有答案，只回答：“{REFUSAL_ZH}”

You are an enterprise knowledge-base assistant. Answer only from the numbered sources below, never
from other knowledge. Answer directly and briefly: give the answer itself first; do not restate the
question. Cite the source of every fact with its number in square brackets, like [1] or [1][2].
Answer in the language of the question. If the sources do not contain the answer, reply only:
"{REFUSAL_EN}\""""


@dataclass(frozen=True)
class Source:
    n: int  # the number the model cites, 1-based
    chunk_id: int
    text: str
    document: str  # the uploaded file name
    page: int | None
    section: str
    score: float  # retrieval (fused) score
    dense_score: float | None = None  # query–chunk cosine; the refusal threshold compares against it
    document_id: int | None = None
    pages: tuple[int, ...] = ()  # every page the chunk spans; `page` is the first


def refusal_text(question: str) -> str:
    return REFUSAL_ZH if has_cjk(question) else REFUSAL_EN


def format_source(source: Source) -> str:
    where = [source.document]
    if len(source.pages) > 1:
        where.append(f"pp. {source.pages[0]}-{source.pages[-1]}")
    elif source.page is not None:
        where.append(f"p. {source.page}")
    if source.section:
        where.append(source.section)
    return f"[{source.n}] ({', '.join(where)}) {source.text.strip()}"


def sources_and_question(question: str, sources: Sequence[Source]) -> str:
    """The user turn: the numbered sources, then the question (the answer and the judge ask alike)."""
    sources_block = "\n\n".join(format_source(s) for s in sources)
    # No rule is repeated next to the question: with one there, the 0.5B model answered "[1] [1] …"
    # or a bare "[1]" instead of the fact (tried both wordings on tests/rag/test_answer.py).
    return f"资料 / Sources:\n{sources_block}\n\n问题 / Question: {question.strip()}"


def build_messages(question: str, sources: Sequence[Source], *, history: Sequence[dict] = ()) -> list[dict]:
    """System rules, earlier turns, then one user turn holding the sources and the question."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, *history,
            {"role": "user", "content": sources_and_question(question, sources)}]
