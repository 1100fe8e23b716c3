from rag.sensitive import Action, Policy, apply_policy, detect
from rag.sensitive.policy import mask_value

TEXT = "张三 身份证11010519491231002X 手机138-1234-5678 邮箱 zs@corp.cn"


def test_mask_keeps_last_four():
    redaction = apply_policy(TEXT, detect(TEXT), Policy(default=Action.MASK))
    assert "**************002X" in redaction.text
    assert "***-****-5678" in redaction.text
    assert "11010519491231" not in redaction.text and "138" not in redaction.text
    assert mask_value("6222021234567890128") == "*" * 15 + "0128"


def test_redact_uses_type_labels_in_either_style():
    findings = detect(TEXT)
    zh = apply_policy(TEXT, findings, Policy(default=Action.REDACT))
    assert zh.text == "张三 身份证〔身份证号〕 手机〔手机号〕 邮箱 〔邮箱〕"
    en = apply_policy(TEXT, findings, Policy(default=Action.REDACT, label_style="en"))
    assert en.text == "张三 身份证[CN_ID] 手机[CN_MOBILE] 邮箱 [EMAIL]"
    assert [t.kind for t in zh.actions_taken] == ["CN_ID", "CN_MOBILE", "EMAIL"]
    assert not zh.blocked


def test_block_yields_blocked_and_allow_leaves_text():
    findings = detect(TEXT)
    blocked = apply_policy(TEXT, findings, Policy({"CN_ID": Action.BLOCK}))
    assert blocked.blocked
    assert "11010519491231002X" not in blocked.text
    allowed = apply_policy(TEXT, findings, Policy())
    assert allowed.text == TEXT and allowed.actions_taken == () and not allowed.blocked


def test_term_category_overrides_kind():
    from rag.sensitive import Term, TermMatcher
    matcher = TermMatcher([Term("天网计划", "project"), Term("底价", "pricing")])
    text = "天网计划的底价"
    policy = Policy({"TERM": Action.REDACT, "TERM:project": Action.BLOCK})
    redaction = apply_policy(text, detect(text, terms=matcher), policy)
    assert redaction.blocked
    assert [(t.category, t.action) for t in redaction.actions_taken] == [
        ("project", Action.BLOCK), ("pricing", Action.REDACT)]
