"""Generate tests/data/cn_pii.jsonl: a labelled Chinese PII set, reproducible (fixed seed).

    python tests/data/make_cn_pii.py [--out tests/data/cn_pii.jsonl] [--num-records 1500]

Same record format as ../shared/evaldata/pii/presidio_synth_v2.jsonl: `id`, `text`, `spans`
(`label`, `value`, `start`, `end` with text[start:end] == value), `language`, `template_id`,
`has_pii`. Labels are Zhiku kinds (CN_ID, CN_MOBILE, CN_LANDLINE, BANK_CARD, USCC, EMAIL, IPV4,
CN_PASSPORT, CN_PLATE). Valid values are built with their real checksums (GB 11643, Luhn,
GB 32100); hard negatives are left unlabelled: IDs/cards/USCCs with a wrong check character,
18-digit numbers failing the ID checksum, order numbers, invoice numbers, 14-digit timestamps,
courier numbers, amounts, version strings. The checksum code here is written independently of
rag/sensitive so the set can catch a bug there.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20261124
DEFAULT_OUT = Path(__file__).resolve().parent / "cn_pii.jsonl"
PROVINCES = ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36",
             "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62",
             "63", "64", "65"]
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超"]
PINYIN = ["wangwei", "lifang", "zhangna", "liumin", "chenjing", "yanglei", "huangyang", "zhaoyan",
          "wuyong", "zhoujun", "xujie", "sunjuan", "mataoo", "zhuming", "huchao"]
MAIL_DOMAINS = ["qq.com", "163.com", "126.com", "sina.com", "zhiku-corp.com.cn", "example.cn",
                "gmail.com", "hotmail.com"]
MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "145", "147",
                   "150", "151", "152", "153", "155", "156", "157", "158", "159", "166", "170",
                   "173", "176", "177", "178", "180", "181", "182", "185", "186", "187", "188",
                   "189", "191", "198", "199"]
AREA_CODES = ["010", "021", "022", "023", "020", "0755", "0571", "025", "027", "028", "029",
              "0512", "0731", "0591", "0871"]
PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def id_check_char(first17: str) -> str:
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    return "10X98765432"[total % 11]


def luhn_check_digit(body: str) -> str:
    total = 0
    for i, d in enumerate(reversed(body)):  # the check digit will sit right of `body`
        v = int(d) * (2 if i % 2 == 0 else 1)
        total += v - 9 if v > 9 else v
    return str((10 - total % 10) % 10)


def uscc_check_char(first17: str) -> str:
    weights = [3 ** i % 31 for i in range(17)]
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(first17, weights))
    return USCC_CHARS[(31 - total % 31) % 31]


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def birth_date(rng: random.Random) -> str:
    year = rng.randint(1950, 2010)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    return f"{year:04d}{month:02d}{day:02d}"


def id18_body(rng: random.Random) -> str:
    return rng.choice(PROVINCES) + f"{rng.randint(1, 30):02d}{rng.randint(1, 30):02d}" \
        + birth_date(rng) + digits(rng, 3)


def cn_id(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:  # legacy 15-digit: region + YYMMDD + sequence
        return rng.choice(PROVINCES) + digits(rng, 4) + birth_date(rng)[2:] + digits(rng, 3)
    body = id18_body(rng)
    value = body + id_check_char(body)
    if value.endswith("X") and rng.random() < 0.3:
        value = value[:-1] + "x"
    if roll > 0.9:
        value = f"{value[:6]} {value[6:14]} {value[14:]}"
    return value


def cn_id_bad_check(rng: random.Random) -> str:
    body = id18_body(rng)
    return body + rng.choice([c for c in "0123456789X" if c != id_check_char(body)])


def mobile(rng: random.Random) -> str:
    number = rng.choice(MOBILE_PREFIXES) + digits(rng, 8)
    style = rng.randrange(5)
    if style == 1:
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    if style == 2:
        return f"{number[:3]} {number[3:7]} {number[7:]}"
    if style == 3:
        return "+86 " + number
    if style == 4:
        return "+86-" + number
    return number


def landline(rng: random.Random) -> str:
    area = rng.choice(AREA_CODES)
    local = str(rng.randint(2, 8)) + digits(rng, 7 if len(area) == 3 else rng.choice([6, 7]))
    style = rng.randrange(4)
    if style == 1:
        return f"({area}){local}"
    if style == 2:
        return f"{area}-{local}转{rng.randint(100, 999)}"
    return f"{area}-{local}"


def card_body(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.6:
        return "62" + digits(rng, rng.choice([13, 16]))  # UnionPay 16 or 19 digits
    if kind < 0.8:
        return "4" + digits(rng, 14)  # Visa 16
    return str(rng.randint(51, 55)) + digits(rng, 13)  # Mastercard 16


def format_card(rng: random.Random, number: str) -> str:
    style = rng.randrange(3)
    if style == 0:
        return number
    separator = " " if style == 1 else "-"
    return separator.join(number[i:i + 4] for i in range(0, len(number), 4))


def bank_card(rng: random.Random) -> str:
    body = card_body(rng)
    return format_card(rng, body + luhn_check_digit(body))


def bank_card_bad_luhn(rng: random.Random) -> str:
    body = card_body(rng)
    good = luhn_check_digit(body)
    return format_card(rng, body + rng.choice([d for d in "0123456789" if d != good]))


def uscc_body(rng: random.Random) -> str:
    org = "".join(rng.choice(USCC_CHARS) for _ in range(9))
    return rng.choice(["91", "92", "93", "11", "12", "51", "52"]) + rng.choice(PROVINCES) \
        + digits(rng, 4) + org


def uscc(rng: random.Random) -> str:
    body = uscc_body(rng)
    return body + uscc_check_char(body)


def uscc_bad_check(rng: random.Random) -> str:
    body = uscc_body(rng)
    return body + rng.choice([c for c in USCC_CHARS if c != uscc_check_char(body)])


def email(rng: random.Random) -> str:
    name = rng.choice(PINYIN) + rng.choice(["", str(rng.randint(1, 999)), "." + rng.choice(PINYIN)])
    return f"{name}@{rng.choice(MAIL_DOMAINS)}"


def ipv4(rng: random.Random) -> str:
    return rng.choice([f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"])


def passport(rng: random.Random) -> str:
    return rng.choice(["E" + digits(rng, 8), "E" + rng.choice("ABCDEFGH") + digits(rng, 7)])


def plate(rng: random.Random) -> str:
    head = rng.choice(PLATE_PROVINCES) + rng.choice(PLATE_LETTERS.replace("I", "").replace("O", ""))
    if rng.random() < 0.2:
        tail = rng.choice("DF") + rng.choice("ABC0123456789") + digits(rng, 4)  # new energy
    else:
        tail = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(5))
    return head + rng.choice(["", "·"]) + tail


def timestamp(rng: random.Random) -> str:
    return f"20{rng.randint(18, 25)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" \
        f"{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}"


def order_number(rng: random.Random) -> str:
    return timestamp(rng)[:8] + digits(rng, rng.choice([8, 10, 12]))


POSITIVES = {
    "CN_ID": (cn_id, ["申请人{name}，身份证号码：{v}，现住址为本市朝阳区。",
                      "请核对{name}的身份证号{v}是否与户籍信息一致。",
                      "员工{name}（公民身份号码 {v}）已完成入职登记。",
                      "身份证{v}的持有人于今日办理了社保转移。"]),
    "CN_MOBILE": (mobile, ["如有疑问请联系{name}，手机{v}。", "客户{name}留下的联系电话是{v}，请尽快回访。",
                          "紧急联系人：{name}，电话：{v}", "验证码已发送至{v}，五分钟内有效。"]),
    "CN_LANDLINE": (landline, ["公司前台电话{v}，工作日9:00-18:00。", "请拨打客服热线 {v} 咨询。",
                              "传真：{v}，地址见附件。"]),
    "BANK_CARD": (bank_card, ["工资将打入{name}的银行卡{v}，开户行为招商银行。",
                             "报销款请转至卡号：{v}（户名：{name}）。", "{name}的借记卡 {v} 已挂失。"]),
    "USCC": (uscc, ["供应商统一社会信用代码：{v}，请财务部核对。", "该公司（信用代码{v}）已通过年检。",
                    "发票抬头：某某科技有限公司，税号{v}。"]),
    "EMAIL": (email, ["请将简历发送至{v}，注明应聘岗位。", "{name}的工作邮箱是{v}。",
                      "会议纪要已抄送 {v}，如有遗漏请回复。"]),
    "IPV4": (ipv4, ["数据库服务器地址为{v}，端口3306。", "请在防火墙上放行{v}的访问。"]),
    "CN_PASSPORT": (passport, ["{name}的护照号码为{v}，有效期至2030年。", "出境审批：护照{v}，目的地新加坡。"]),
    "CN_PLATE": (plate, ["访客车辆{v}已登记，可进入地下车库。", "{name}名下车辆车牌号{v}违章一次。"]),
}
NEGATIVES = [
    (cn_id_bad_check, ["系统提示：身份证号{v}校验位错误，请重新输入。", "编号{v}的档案已归档。"]),
    (bank_card_bad_luhn, ["卡号{v}无效，请核对后重新提交。", "流水号 {v} 对应的交易已撤销。"]),
    (uscc_bad_check, ["代码{v}校验失败，不是有效的统一社会信用代码。"]),
    (timestamp, ["日志时间戳{v}显示任务已完成。", "备份文件 backup_{v}.tar.gz 已上传。",
                 "最后修改时间：{v}"]),
    (order_number, ["订单号：{v}，预计三天内发货。", "您的订单{v}已签收。"]),
    (lambda rng: "0" + digits(rng, 19), ["发票号码{v}，金额以发票为准。"]),
    (lambda rng: rng.choice(["SF", "YT", "JD"]) + digits(rng, 13), ["快递单号{v}，请注意查收。"]),
    (lambda rng: f"{rng.randint(1, 99)},{digits(rng, 3)}.{digits(rng, 2)}", ["合同金额人民币{v}元。"]),
    (lambda rng: f"v{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
     ["系统已升级到{v}版本。"]),
    (lambda rng: str(rng.randint(10, 12)) + digits(rng, 9), ["工号{v}的员工已离职。"]),
]
FILLERS = ["本周例会改到周四下午。", "以上信息仅用于人事备案。", "请各部门于月底前提交预算。", "项目进度符合预期。"]


def make_record(rng: random.Random, index: int) -> dict:
    parts: list[tuple[str, str | None, str]] = []  # (template, label or None, value)
    template_ids = []
    kinds = list(POSITIVES)
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.6:
            label = rng.choice(kinds)
            make, templates = POSITIVES[label]
            choice = rng.randrange(len(templates))
            parts.append((templates[choice], label, make(rng)))
            template_ids.append(f"{label}/{choice}")
        else:
            negative = rng.randrange(len(NEGATIVES))
            make, templates = NEGATIVES[negative]
            choice = rng.randrange(len(templates))
            parts.append((templates[choice], None, make(rng)))
            template_ids.append(f"neg{negative}/{choice}")
    if rng.random() < 0.3:
        parts.insert(rng.randrange(len(parts) + 1), (rng.choice(FILLERS), None, ""))
    text, spans = "", []
    for template, label, value in parts:
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        before, _, after = template.partition("{v}")
        text += before.format(name=name)
        if label is not None:
            spans.append({"label": label, "value": value, "start": len(text),
                          "end": len(text) + len(value)})
        text += value + after.format(name=name)
    return {"id": f"cn-pii:{index}", "text": text, "spans": spans, "language": "zh",
            "template_id": "+".join(template_ids), "has_pii": bool(spans)}


def make_records(num_records: int, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    return [make_record(rng, index) for index in range(num_records)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--num-records", type=int, default=1500)
    args = parser.parse_args()
    with args.out.open("w", encoding="utf-8") as out:
        for record in make_records(args.num_records):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
