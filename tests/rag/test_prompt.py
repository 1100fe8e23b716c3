from __future__ import annotations

from rag.prompt import (REFUSAL_EN, REFUSAL_ZH, Source, build_messages, format_source,
                        refusal_text)

SOURCES = [
    Source(n=1, chunk_id=11, text="每天夜里备份数据目录。", document="运维手册.docx", page=3, section="运维 > 备份", score=0.03),
    Source(n=2, chunk_id=12, text="Passwords expire after 90 days.", document="policy.md", page=None, section="",
           score=0.02),
]


def test_sources_are_numbered_with_document_page_and_section():
    assert format_source(SOURCES[0]) == "[1] (运维手册.docx, p. 3, 运维 > 备份) 每天夜里备份数据目录。"
    assert format_source(SOURCES[1]) == "[2] (policy.md) Passwords expire after 90 days."


def test_messages_hold_rules_sources_and_question():
    messages = build_messages("如何备份数据？", SOURCES)
    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    for rule in ("只根据", "[1]", "Answer only from the numbered sources", "language of the question"):
        assert rule in system
    assert REFUSAL_ZH in system and REFUSAL_EN in system
    assert "[1] (运维手册.docx, p. 3, 运维 > 备份)" in user and "[2] (policy.md)" in user
    assert user.rstrip().endswith("问题 / Question: 如何备份数据？")


def test_history_goes_between_rules_and_the_new_question():
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    messages = build_messages("And the expiry?", SOURCES, history=history)
    assert messages[1:3] == history and messages[-1]["role"] == "user"


def test_refusal_follows_the_question_language():
    assert refusal_text("数据在哪里？") == REFUSAL_ZH
    assert refusal_text("Where is the data?") == REFUSAL_EN
