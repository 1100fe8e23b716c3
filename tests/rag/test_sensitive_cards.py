from rag.sensitive.cards import detect_bank_card, detect_iban, is_card_number, luhn_is_valid


def texts(findings):
    return [f.text for f in findings]


def test_luhn():
    assert luhn_is_valid("4111111111111111")
    assert not luhn_is_valid("4111111111111112")


def test_cards_in_the_ways_they_are_printed():
    text = "卡号6222021234567890128，visa 4111 1111 1111 1111，amex 3782-822463-10005，" \
           "mc 5500-0000-0000-0004"
    assert texts(detect_bank_card(text)) == [
        "6222021234567890128", "4111 1111 1111 1111", "3782-822463-10005", "5500-0000-0000-0004"]


def test_luhn_failures_unknown_issuers_and_wrong_lengths_are_not_cards():
    assert detect_bank_card("卡号6222021234567890127无效") == []  # Luhn fails
    assert not is_card_number("7111111111111114")  # no network issues 7...
    assert not is_card_number("411111111111111116")  # Visa has no 18-digit cards
    assert detect_bank_card("快递单号YT4111111111111111") == []  # glued to letters


def test_uneven_grouping_is_not_read_as_a_card():
    assert detect_bank_card("流水号 5520 0734 4712 9992 1") == []


def test_iban_mod97():
    assert texts(detect_iban("IBAN GB82 WEST 1234 5698 7654 32 / gb42nawi04454264788619")) == [
        "GB82 WEST 1234 5698 7654 32", "gb42nawi04454264788619"]
    assert detect_iban("GB82 WEST 1234 5698 7654 33") == []
