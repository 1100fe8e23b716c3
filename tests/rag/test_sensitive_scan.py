import pytest

from rag.sensitive import BUILTIN_DETECTORS, Finding, detect, resolve_overlaps

MIXED = ("客户张三（身份证11010519491231002X，手机+86 138 1234 5678，邮箱 zs@corp.cn）"
         "于 2023-11-05 通过 10.0.0.8 登录；卡号 4111-1111-1111-1111。"
         "密码：Abc@12345 内部资料 AKIAIOSFODNN7EXAMPLE")


def test_detect_without_terms_finds_every_kind_with_exact_offsets():
    findings = detect(MIXED)
    assert [f.kind for f in findings] == [
        "CN_ID", "CN_MOBILE", "EMAIL", "IPV4", "BANK_CARD", "PASSWORD", "MARKING", "API_KEY"]
    assert all(MIXED[f.start:f.end] == f.text for f in findings)
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:]))


def test_overlaps_resolved_by_confidence_then_kind_priority_then_length():
    card = Finding("BANK_CARD", 0, 18, "x" * 18, 0.9)
    cn_id = Finding("CN_ID", 0, 18, "x" * 18, 1.0)
    secret = Finding("SECRET", 0, 30, "x" * 30, 0.6)
    assert resolve_overlaps([secret, card, cn_id]) == [cn_id]
    uscc = Finding("USCC", 0, 18, "x" * 18, 1.0)
    assert resolve_overlaps([uscc, cn_id]) == [cn_id]
    short = Finding("TERM", 5, 8, "abc", 0.8)
    long = Finding("TERM", 4, 12, "abcdefgh", 0.8)
    assert resolve_overlaps([short, long]) == [long]


@pytest.mark.parametrize("adversarial", [
    "1" * 1_000_000,
    "1 " * 500_000,
    "a" * 1_000_000,
    "a." * 500_000,
    "a@" * 500_000,
    ":" * 1_000_000,
    "f:" * 500_000,
    "-----BEGIN PRIVATE KEY-----\n" * 40_000,
    "密码：" * 300_000,
    "1." * 500_000,
])
def test_one_megabyte_adversarial_input_finishes(adversarial):
    findings = detect(adversarial)
    assert all(adversarial[f.start:f.end] == f.text for f in findings)
    # None of these strings holds a real value except the PEM headers (each one a key start).
    assert {f.kind for f in findings} <= {"PRIVATE_KEY", "PASSWORD"}


def test_every_builtin_detector_is_pure_on_empty_text():
    assert all(detector("") == [] for detector in BUILTIN_DETECTORS)
