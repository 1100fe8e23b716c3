"""Sensitive content in the answer path: the question, the sources and the streamed output.

The model output here is scripted: no real model can be made to emit a chosen ID cut at a chosen
point between two deltas, which is the fault under test. tests/e2e/test_sensitive.py runs the same
protection with a real model server, worker and database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rag.answer import BLOCKED_ZH, AnswerConfig, answer_stream
from rag.llm import ChatDelta
from rag.prompt import Source
from rag.sensitive import Action, Policy, Protection, Term, TermMatcher, detect

CN_ID = "11010519491231002X"
MASKED_ID = "**************002X"


class ScriptedChat:
    """Streams fixed deltas and records the messages it was sent."""

    def __init__(self, deltas: Sequence[ChatDelta]) -> None:
        self.deltas = deltas
        self.sent: list[list[dict]] = []

    def stream(self, messages: Sequence[dict], **_options: object) -> Iterator[ChatDelta]:
        self.sent.append(list(messages))
        yield from self.deltas


def source(text: str) -> Source:
    return Source(n=1, chunk_id=1, text=text, document="hr.docx", page=1, section="", score=0.03, dense_score=0.9)


def shown_text(events) -> str:  # noqa: ANN001
    return "".join(str(event.data) for event in events)


MASK_IDS = Protection(Policy({"CN_ID": Action.MASK}))


def test_the_scripted_id_is_a_real_id():
    assert [f.kind for f in detect(f"身份证号{CN_ID}。")] == ["CN_ID"]


def test_an_id_split_across_answer_deltas_is_never_emitted():
    deltas = [ChatDelta(content=piece) for piece in ("张三的身份证号是", CN_ID[:7], CN_ID[7:13], CN_ID[13:], "。[1]")]
    events = list(answer_stream("张三的身份证号是多少？", [source("员工张三。")], chat=ScriptedChat(deltas),
                                config=AnswerConfig(min_dense_score=0.3), protection=MASK_IDS))

    tokens = "".join(e.data["text"] for e in events if e.type == "token")
    assert tokens == f"张三的身份证号是{MASKED_ID}。[1]"
    assert CN_ID not in shown_text(events)
    for width in range(8, len(CN_ID)):  # no delta leaks a long prefix of it either
        assert all(CN_ID[:width] not in e.data["text"] for e in events if e.type == "token")
    assert events[-1].type == "done"
    assert {"stage": "answer", "kind": "CN_ID", "action": "mask", "category": None} in events[-1].data["redactions"]


def test_reasoning_is_guarded_like_the_answer():
    deltas = [ChatDelta(reasoning=f"资料说身份证号是{CN_ID[:9]}"), ChatDelta(reasoning=CN_ID[9:]),
              ChatDelta(content="见资料。[1]")]
    events = list(answer_stream("身份证号？", [source("员工张三。")], chat=ScriptedChat(deltas),
                                config=AnswerConfig(min_dense_score=0.3), protection=MASK_IDS))
    assert CN_ID not in shown_text(events)
    assert MASKED_ID in "".join(e.data["text"] for e in events if e.type == "reasoning")


def test_sources_are_rewritten_before_the_model_and_the_user_see_them():
    chat = ScriptedChat([ChatDelta(content="已找到。[1]")])
    events = list(answer_stream("张三的证件号？", [source(f"张三，身份证号{CN_ID}，入职2020年。")], chat=chat,
                                config=AnswerConfig(min_dense_score=0.3), protection=MASK_IDS))
    assert CN_ID not in str(chat.sent) and MASKED_ID in str(chat.sent)
    assert CN_ID not in shown_text(events)
    assert events[0].data["sources"][0]["snippet"] == f"张三，身份证号{MASKED_ID}，入职2020年。"


def test_a_blocked_term_in_the_output_ends_the_answer_with_a_block():
    protection = Protection(Policy({"TERM:project": Action.BLOCK}),
                            TermMatcher([Term("星辰计划", "project", "high")]))
    deltas = [ChatDelta(content="这是公司的"), ChatDelta(content="星辰"), ChatDelta(content="计划，预算三千万。")]
    events = list(answer_stream("新项目叫什么？", [source("新项目预算三千万。")], chat=ScriptedChat(deltas),
                                config=AnswerConfig(min_dense_score=0.3), protection=protection))
    assert "星辰计划" not in shown_text(events)
    assert events[-1].type == "error" and events[-1].data["code"] == "BLOCKED"
    assert events[-1].data["message"] == BLOCKED_ZH
    assert not [e for e in events if e.type == "done"]


def test_a_question_asking_for_a_blocked_term_is_refused_before_the_model_is_called():
    protection = Protection(Policy({"TERM:project": Action.BLOCK}),
                            TermMatcher([Term("星辰计划", "project", "high")]))
    chat = ScriptedChat([ChatDelta(content="不应被调用")])
    events = list(answer_stream("星辰计划的预算是多少？", [source("预算三千万。")], chat=chat,
                                config=AnswerConfig(min_dense_score=0.3), protection=protection))
    assert chat.sent == []
    assert [e.type for e in events] == ["sources", "error"] and events[-1].data["code"] == "BLOCKED"
    assert events[-1].data["redactions"] == [
        {"stage": "question", "kind": "TERM", "action": "block", "category": "project"}]
