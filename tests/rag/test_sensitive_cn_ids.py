from rag.sensitive import detect
from rag.sensitive.cards import is_card_number
from rag.sensitive.cn_ids import (detect_cn_id, detect_cn_passport, detect_cn_plate, detect_uscc,
                                  id18_check_char, uscc_check_char)

VALID_ID = "11010519491231002X"  # the GB 11643 worked example


def kinds_and_texts(findings):
    return [(f.kind, f.text) for f in findings]


def test_valid_resident_id_is_found_with_exact_offsets():
    text = f"身份证号：{VALID_ID}，请核对。"
    [finding] = detect_cn_id(text)
    assert (finding.kind, finding.text) == ("CN_ID", VALID_ID)
    assert text[finding.start:finding.end] == VALID_ID
    assert finding.confidence == 1.0


def test_id_typed_with_spaces_and_lower_case_x_is_found():
    assert kinds_and_texts(detect_cn_id("号码 110105 19491231 002x 已登记")) == [
        ("CN_ID", "110105 19491231 002x")]


def test_wrong_check_digit_bad_date_or_unknown_province_is_not_an_id():
    wrong_check = VALID_ID[:17] + "1"
    bad_date = "110105" + "19490230" + "002"
    bad_date += id18_check_char(bad_date)
    bad_province = "990105" + "19491231" + "002"
    bad_province += id18_check_char(bad_province)
    for number in (wrong_check, bad_date, bad_province, "20231105143022123X"):
        assert detect_cn_id(f"编号{number}已归档") == [], number


def test_legacy_15_digit_id_needs_a_real_date_and_has_lower_confidence():
    [finding] = detect_cn_id("旧身份证 110105491231002 仍有效")
    assert finding.text == "110105491231002" and finding.confidence < 1.0
    assert detect_cn_id("旧身份证 110105491331002 无效") == []  # month 13


def test_id_that_is_also_a_valid_card_number_is_reported_as_an_id():
    # A Gansu (62...) ID whose digits also pass Luhn with a UnionPay prefix: the checksum-backed,
    # more specific reading wins (documented overlap rule).
    for sequence in range(1000):
        body = f"620102198801{1 + sequence % 28:02d}{sequence:03d}"
        number = body + id18_check_char(body)
        if number[-1].isdigit() and is_card_number(number):
            break
    else:
        raise AssertionError("no ID found that is also a card number")
    assert kinds_and_texts(detect(f"号码{number}。")) == [("CN_ID", number)]


def test_uscc_checksum():
    body = "91350100M000100Y4"
    valid = body + uscc_check_char(body)
    assert kinds_and_texts(detect_uscc(f"信用代码{valid}")) == [("USCC", valid)]
    wrong = body + ("0" if valid[-1] != "0" else "1")
    assert detect_uscc(f"信用代码{wrong}") == []


def test_passport_and_plate_shapes():
    assert kinds_and_texts(detect_cn_passport("护照E12345678和EA1234567，不是E1234")) == [
        ("CN_PASSPORT", "E12345678"), ("CN_PASSPORT", "EA1234567")]
    assert kinds_and_texts(detect_cn_plate("车辆京A·12345和粤BD12345进入，沪A1234不完整")) == [
        ("CN_PLATE", "京A·12345"), ("CN_PLATE", "粤BD12345")]
