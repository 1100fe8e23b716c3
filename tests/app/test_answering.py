"""The history handling of app/services/answering.py: what of a chat reaches the model."""

from __future__ import annotations

from app.services.answering import protected_history, recent_history
from rag.sensitive import Action, Policy, Protection

CN_ID = "11010519491231002X"  # a valid check digit: the detector accepts it (tests/rag/test_answer_protection.py)


def test_only_the_last_messages_are_kept_each_clipped() -> None:
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}" * 10} for i in range(9)]
    kept = recent_history(history, max_messages=3, max_chars=4)
    assert kept == [{"role": "user", "content": "6666"}, {"role": "assistant", "content": "7777"},
                    {"role": "user", "content": "8888"}]
    assert recent_history(history, max_messages=0, max_chars=4) == []


def test_the_answer_policy_applies_to_the_history() -> None:
    history = [{"role": "user", "content": f"张三的身份证号是{CN_ID}吗？"},
               {"role": "assistant", "content": "资料中没有找到答案。"}]
    masked = protected_history(history, Protection(Policy({"CN_ID": Action.MASK})))
    assert CN_ID not in masked[0]["content"] and masked[0]["content"].endswith("002X吗？")
    assert masked[1] == history[1]
    blocked = protected_history(history, Protection(Policy({"CN_ID": Action.BLOCK})))
    assert blocked == [history[1]]  # the message that holds a blocked value is left out
