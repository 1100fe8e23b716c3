from rag.sensitive.contact import (detect_cn_landline, detect_cn_mobile, detect_email,
                                   detect_ipv4, detect_ipv6)


def texts(findings):
    return [f.text for f in findings]


def test_mobile_formats():
    text = "电话13812345678，或 +86 139-1234-5678，或 (+86)150 1234 5678，0086-18612345678"
    assert texts(detect_cn_mobile(text)) == [
        "13812345678", "+86 139-1234-5678", "(+86)150 1234 5678", "0086-18612345678"]


def test_timestamps_order_numbers_and_other_prefixes_are_not_mobiles():
    text = "时间戳20231105143022，订单13812345678901，工号12345678901，卡 6222 1381 2345 6789"
    assert detect_cn_mobile(text) == []


def test_landline_needs_an_area_code():
    text = "前台010-87654321转123，深圳(0755)23456789，上海 021 6543 2109，分机 87654321"
    assert texts(detect_cn_landline(text)) == [
        "010-87654321转123", "(0755)23456789", "021 6543 2109"]


def test_email_and_its_neighbours():
    assert texts(detect_email("发至 zhang.san+hr@corp.example.com.cn。或 a@b 或 @x.com")) == [
        "zhang.san+hr@corp.example.com.cn"]


def test_ipv4_rejects_out_of_range_and_version_strings():
    assert texts(detect_ipv4("主机 192.168.1.10, 256.1.1.1, v1.2.3, 1.2.3.4.5")) == ["192.168.1.10"]


def test_ipv6_is_validated_and_times_are_not_addresses():
    text = "fe80::1 和 2001:db8::8a2e:370:7334，::ffff:192.168.1.1；会议 12:30:45"
    assert texts(detect_ipv6(text)) == ["fe80::1", "2001:db8::8a2e:370:7334", "::ffff:192.168.1.1"]
