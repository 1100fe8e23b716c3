"""A follow-up question + the chat so far → a standalone question, for retrieval only.

"它的保修期多久?" finds nothing on its own: the thing "它" names is in an earlier turn. The model
rewrites the follow-up so it names that thing; the rewrite is what we search with, while the answer
prompt still gets the user's own words and the history. Any failure (server error, an empty or
overlong rewrite) returns None and the caller searches with the question as asked: rewriting may
make retrieval better, never make the answer fail.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from rag.citations import strip_markers
from rag.llm import ChatClient, LLMError
from rag.tokenize import has_cjk

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    history: tuple[tuple[str, str], ...]  # (role, text)
    followup: str
    rewrite: str


@dataclass(frozen=True)
class CondensePrompt:
    system: str
    user_label: str
    assistant_label: str
    history_label: str
    followup_label: str
    answer_label: str
    # Worked examples (a pronoun, an elided subject): small models (0.5B-1.5B) otherwise answer the
    # follow-up or repeat it unchanged.
    examples: tuple[Example, ...]


PROMPT_ZH = CondensePrompt(
    system="你负责改写问题。根据对话记录，把最后的追问改写成一个不看对话也能理解的完整问题："
           "把“它”“这个”“那里”等指代换成对话中的具体名称。只输出改写后的问题，不要回答，不要解释。",
    user_label="用户", assistant_label="助手", history_label="对话记录", followup_label="追问",
    answer_label="改写后的问题",
    examples=(
        Example((("user", "知库是什么？"), ("assistant", "知库是一个本地部署的企业知识库系统。")),
                "它支持哪些文件格式？", "知库支持哪些文件格式？"),
        Example((("user", "北京办公室几点上班？"), ("assistant", "北京办公室早上九点上班。")),
                "上海的呢？", "上海办公室几点上班？"),
    ),
)
PROMPT_EN = CondensePrompt(
    system="You rewrite questions. Using the conversation, rewrite the final follow-up question as a "
           "complete question that can be understood without the conversation: replace words like 'it', "
           "'this' or 'there' with the names they refer to. Output only the rewritten question; do not "
           "answer it or explain.",
    user_label="User", assistant_label="Assistant", history_label="Conversation", followup_label="Follow-up",
    answer_label="Rewritten question",
    examples=(
        Example((("user", "What is Zhiku?"), ("assistant", "Zhiku is an on-premises knowledge base.")),
                "Which file formats does it support?", "Which file formats does Zhiku support?"),
        Example((("user", "When does the Berlin office open?"),
                 ("assistant", "The Berlin office opens at 9.")),
                "And the Paris one?", "When does the Paris office open?"),
    ),
)


@dataclass(frozen=True)
class RewriteConfig:
    max_tokens: int = 64  # a question, not an answer
    # A rewrite adds the names the follow-up leaves out; much more than that is the model answering.
    max_added_chars: int = 200


def _transcript(prompt: CondensePrompt, history: Sequence[dict], followup: str) -> str:
    labels = {"user": prompt.user_label, "assistant": prompt.assistant_label}
    # Citation markers go: with "[1]" in the answers, the model copies an answer instead of asking.
    turns = "\n".join(f"{labels[m['role']]}: {strip_markers(m['content']).strip()}" for m in history)
    ask = f"{prompt.followup_label}: {followup.strip()}\n{prompt.answer_label}:"
    return f"{prompt.history_label}:\n{turns}\n\n{ask}"


def prompt_for(question: str) -> CondensePrompt:
    return PROMPT_ZH if has_cjk(question) else PROMPT_EN


def condense_messages(question: str, history: Sequence[dict], prompt: CondensePrompt) -> list[dict]:
    """Chat messages asking for the standalone form of `question`.

    The history goes in as a transcript inside one user turn, not as chat turns: as turns, the model
    takes the follow-up as its next question to answer.
    """
    messages = [{"role": "system", "content": prompt.system}]
    for example in prompt.examples:
        turns = [{"role": role, "content": text} for role, text in example.history]
        messages += [{"role": "user", "content": _transcript(prompt, turns, example.followup)},
                     {"role": "assistant", "content": example.rewrite}]
    return [*messages, {"role": "user", "content": _transcript(prompt, history, question)}]


def clean_rewrite(text: str, prompt: CondensePrompt) -> str:
    """The first line of the reply, without a repeated label or quotes around it."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    for label in (prompt.answer_label, prompt.followup_label):
        for colon in (":", "："):
            line = line.removeprefix(label + colon).strip()
    return line.strip("\"'“”‘’「」")


def rewrite_followup(question: str, history: Sequence[dict], *, chat: ChatClient,
                     config: RewriteConfig) -> str | None:
    """The standalone form of `question`, or None when there is none to use (no history, or a failure)."""
    if not history:
        return None
    prompt = prompt_for(question)
    try:
        # Reasoning models' <think> arrives as ChatDelta.reasoning and is ignored: only content counts.
        reply = "".join(delta.content for delta in chat.stream(
            condense_messages(question, history, prompt), max_tokens=config.max_tokens, temperature=0.0))
    except LLMError as exc:
        logger.warning("follow-up rewrite failed, searching with the question as asked: %s", exc)
        return None
    rewritten = clean_rewrite(reply, prompt)
    if not rewritten or len(rewritten) > len(question) + config.max_added_chars:
        logger.info("follow-up rewrite unusable (%d chars), searching with the question as asked",
                    len(rewritten))
        return None
    return rewritten
