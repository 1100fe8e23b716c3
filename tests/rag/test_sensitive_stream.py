import random

import pytest
from tokenizers import Tokenizer

from rag.sensitive import (Action, Policy, StreamGuard, Term, TermMatcher, apply_policy, detect,
                           hold_back_chars_for)

ID = "11010519491231002X"
ANSWER = (f"根据人事档案[1]，张三的身份证号是{ID}，手机号为138-1234-5678，"
          "工资卡 6222 0212 3456 7890 128。如需核实请发邮件至 hr.zhangsan@corp.example.cn。")
REDACT_ALL = Policy(default=Action.REDACT)


def stream(guard, deltas):
    return "".join(guard.feed(delta) for delta in deltas) + guard.flush()


def token_deltas(tokenizer, text):
    """What a model server streams: one delta per token, decoded incrementally (a token can end
    inside a multi-byte character, so a delta is released once its text is whole)."""
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    deltas, released = [], ""
    for end in range(1, len(ids) + 1):
        decoded = tokenizer.decode(ids[:end])
        if not decoded.endswith("\ufffd"):
            deltas.append(decoded[len(released):])
            released = decoded
    assert "".join(deltas) == text
    return deltas


def test_id_split_across_model_tokens_never_leaves_the_guard(models_dir):
    tokenizer = Tokenizer.from_file(str(models_dir / "tokenizers" / "deepseek-v3" / "tokenizer.json"))
    deltas = token_deltas(tokenizer, ANSWER)
    assert ID not in deltas  # the ID really is split across several tokens
    guard = StreamGuard(REDACT_ALL)
    released = []
    for delta in deltas:
        released.append(guard.feed(delta))
        assert ID[:8] not in "".join(released)
    released.append(guard.flush())
    text = "".join(released)
    assert ID not in text and "〔身份证号〕" in text
    assert text == apply_policy(ANSWER, detect(ANSWER), REDACT_ALL).text


@pytest.mark.parametrize("split_at", range(1, len(ID)))
def test_id_split_at_every_position(split_at):
    before, after = "您好，号码是", "，请保密。"
    guard = StreamGuard(REDACT_ALL)
    first = guard.feed(before + ID[:split_at])
    second = guard.feed(ID[split_at:] + after)
    output = first + second + guard.flush()
    assert output == before + "〔身份证号〕" + after
    assert ID[:split_at] not in first + second or split_at < 3


def test_random_chunkings_equal_whole_text_policy():
    rng = random.Random(7)
    expected = apply_policy(ANSWER, detect(ANSWER), Policy(default=Action.MASK)).text
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(ANSWER)), rng.randint(1, 30)))
        deltas = [ANSWER[a:b] for a, b in zip([0] + cuts, cuts + [len(ANSWER)])]
        assert stream(StreamGuard(Policy(default=Action.MASK)), deltas) == expected


def test_text_without_findings_is_released_behind_the_window():
    guard = StreamGuard(REDACT_ALL, hold_back_chars=10)
    assert guard.feed("这是一段没有任何敏感信息的普通回答文本。") == "这是一段没有任何敏感"
    assert guard.flush() == "信息的普通回答文本。"


def test_block_stops_the_stream_before_the_value_is_released():
    guard = StreamGuard(Policy({"CN_ID": Action.BLOCK}, default=Action.REDACT))
    output = stream(guard, [ANSWER[i:i + 2] for i in range(0, len(ANSWER), 2)])
    assert guard.blocked
    assert ID[:6] not in output
    assert guard.feed("更多文本") == "" and guard.flush() == ""


def test_long_admin_term_needs_a_window_from_the_term_list():
    term = "长风破浪会有时直挂云帆济沧海之第一阶段实施方案" * 5  # 120 characters, > default window
    matcher = TermMatcher([Term(term, "project", "high")])

    def detect_with_terms(text):
        return detect(text, terms=matcher)

    too_small = StreamGuard(REDACT_ALL, detect_with_terms)
    assert term[:20] in stream(too_small, ["参见", *term, "。"])  # why the window must grow
    guard = StreamGuard(REDACT_ALL, detect_with_terms, hold_back_chars=hold_back_chars_for(matcher))
    assert stream(guard, ["参见", *term, "。"]) == "参见〔敏感词〕。"
    assert [(t.kind, t.start, t.end) for t in guard.actions_taken] == [("TERM", 2, 2 + len(term))]


def test_invalid_window_is_rejected():
    with pytest.raises(ValueError):
        StreamGuard(REDACT_ALL, hold_back_chars=0)
