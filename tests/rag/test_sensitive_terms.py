import random

import pytest

from rag.sensitive import Term, TermListError, TermMatcher, detect
from rag.sensitive.markings import detect_marking


def test_ten_thousand_terms_zh_and_en_case_insensitive_with_word_edges():
    rng = random.Random(0)
    filler = [Term("".join(rng.choice("甲乙丙丁戊己庚辛壬癸子丑寅卯") for _ in range(4)) + str(i), "filler")
              for i in range(10_000)]
    matcher = TermMatcher(filler + [Term("Project Falcon", "project", "high"),
                                    Term("天网计划", "project", "high"), Term("intern", "hr", "low")])
    assert matcher.num_terms == 10_003
    text = "关于PROJECT falcon与天网计划的说明：internal 文件，intern 名单。"
    findings = matcher.find(text)
    assert [(f.text, f.category, f.severity) for f in findings] == [
        ("PROJECT falcon", "project", "high"), ("天网计划", "project", "high"),
        ("intern", "hr", "low")]
    assert all(text[f.start:f.end] == f.text for f in findings)


def test_offsets_survive_characters_whose_lower_case_is_longer():
    matcher = TermMatcher([Term("secret plan", "x")])
    text = "İİ the SECRET PLAN"
    [finding] = matcher.find(text)
    assert text[finding.start:finding.end] == "SECRET PLAN"


def test_lone_surrogates_in_extracted_text_do_not_break_matching():
    matcher = TermMatcher([Term("天网计划", "project")])
    text = "坏字符\ud800后面是天网计划"
    [finding] = matcher.find(text)
    assert text[finding.start:finding.end] == "天网计划"


def test_txt_import_and_bad_entries():
    matcher = TermMatcher.from_lines(["# comment", "", "机密项目A", "  合同底价  "], category="biz")
    assert [f.text for f in matcher.find("机密项目A的合同底价")] == ["机密项目A", "合同底价"]
    with pytest.raises(TermListError):
        TermMatcher([Term("x", "c", "critical")])
    with pytest.raises(TermListError):
        TermMatcher([Term("   ", "c")])


def test_detect_with_terms_and_without():
    matcher = TermMatcher([Term("天网计划", "project", "high")])
    assert [f.kind for f in detect("天网计划启动")] == []
    assert [f.kind for f in detect("天网计划启动", terms=matcher)] == ["TERM"]


def test_markings_as_stamped_not_in_prose():
    stamped = "密级：机密\n绝密★10年\n【内部资料】\nFor internal use only. CONFIDENTIAL\n秘密\n"
    assert [f.text for f in detect_marking(stamped)] == [
        "密级：机密", "绝密★10年", "【内部资料】", "For internal use only", "CONFIDENTIAL", "秘密"]
    prose = "公司内部管理保护商业秘密，机密性是信息安全三要素之一。"
    assert detect_marking(prose) == []
