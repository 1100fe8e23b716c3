"""rag/rewrite.py without a model: the prompt, the cleaning of the reply, and every fallback to the
question as asked. The rewrite by the real model is tested through the API (tests/app/test_ask.py)."""

from __future__ import annotations

from collections.abc import Iterator

from rag.llm import ChatClient, ChatDelta
from rag.rewrite import (PROMPT_EN, PROMPT_ZH, RewriteConfig, clean_rewrite, condense_messages,
                         rewrite_followup)
from tests.servers import free_port

HISTORY = [{"role": "user", "content": "X100 打印机是什么？"},
           {"role": "assistant", "content": "X100 是一款激光打印机 [1]。"}]


class ScriptedChat(ChatClient):
    """Replies with fixed deltas and records each request: the server's side is not what these test."""

    def __init__(self, *deltas: ChatDelta) -> None:
        super().__init__("http://127.0.0.1:1/v1", "scripted")
        self.deltas = deltas
        self.requests: list[dict] = []

    def stream(self, messages, *, max_tokens, temperature=0.0,  # noqa: ANN001
               stop=()) -> Iterator[ChatDelta]:
        self.requests.append({"messages": messages, "max_tokens": max_tokens, "temperature": temperature})
        yield from self.deltas


def test_the_prompt_is_in_the_question_s_language_and_holds_the_transcript() -> None:
    messages = condense_messages("它的保修期多久？", HISTORY, PROMPT_ZH)
    assert messages[0] == {"role": "system", "content": PROMPT_ZH.system}
    last = messages[-1]["content"]
    assert last.startswith("对话记录:\n用户: X100 打印机是什么？\n助手: X100 是一款激光打印机 。")  # without [1]
    assert last.endswith("追问: 它的保修期多久？\n改写后的问题:")
    # Examples alternate user / assistant; only the real follow-up is the last user turn.
    assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * len(PROMPT_ZH.examples) + ["user"]
    english = condense_messages("How long is its warranty?", HISTORY, PROMPT_EN)
    assert english[-1]["content"].endswith("Follow-up: How long is its warranty?\nRewritten question:")


def test_the_rewrite_is_the_model_s_first_line_without_label_or_quotes() -> None:
    assert clean_rewrite("改写后的问题：“X100 的保修期多久？”\n解释：……", PROMPT_ZH) == "X100 的保修期多久？"
    assert clean_rewrite("\n  Rewritten question: \"How long is the X100's warranty?\"", PROMPT_EN) == \
        "How long is the X100's warranty?"


def test_a_usable_rewrite_comes_back_and_the_call_is_short_and_greedy() -> None:
    chat = ScriptedChat(ChatDelta(reasoning="用户问的是 X100。"), ChatDelta(content="X100 的保修期"),
                        ChatDelta(content="多久？"))
    config = RewriteConfig()
    assert rewrite_followup("它的保修期多久？", HISTORY, chat=chat, config=config) == "X100 的保修期多久？"
    (request,) = chat.requests
    assert request["temperature"] == 0.0 and request["max_tokens"] == config.max_tokens


def test_no_history_means_no_model_call() -> None:
    chat = ScriptedChat(ChatDelta(content="anything"))
    assert rewrite_followup("它的保修期多久？", [], chat=chat, config=RewriteConfig()) is None
    assert chat.requests == []


def test_a_server_that_is_down_gives_no_rewrite() -> None:
    chat = ChatClient(f"http://127.0.0.1:{free_port()}/v1", "none", timeout_s=5)
    assert rewrite_followup("它的保修期多久？", HISTORY, chat=chat, config=RewriteConfig()) is None


def test_an_empty_or_overlong_reply_gives_no_rewrite() -> None:
    question = "它的保修期多久？"
    empty = ScriptedChat(ChatDelta(reasoning="只有思考，没有回答"))
    assert rewrite_followup(question, HISTORY, chat=empty, config=RewriteConfig()) is None
    config = RewriteConfig(max_added_chars=10)
    answered = ScriptedChat(ChatDelta(content="X100 的保修期是两年，自购买之日起计算，人为损坏不在保修范围内。"))
    assert rewrite_followup(question, HISTORY, chat=answered, config=config) is None
