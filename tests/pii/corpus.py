"""A seeded corpus of personal numbers, each written in every form Chinese ASR writes it and
embedded in real sentences, and one of the numbers that must be kept (amounts, dates…)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta

_CN = "零一二三四五六七八九"
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def mobile(rng: random.Random) -> str:
    return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))


def landline(rng: random.Random) -> str:
    area = rng.choice(["010", "021", "020", "0571", "0755", "0512", "028"])
    return area + rng.choice("2345678") + "".join(rng.choice("0123456789") for _ in range(7 if len(area) == 3 else 6))


def id_card(rng: random.Random) -> str:
    region = rng.choice(["110105", "310104", "440305", "330106", "510107", "610113"])
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    body = region + born.strftime("%Y%m%d") + "".join(rng.choice("0123456789") for _ in range(3))
    return body + _ID_CHECK[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]


def bank_card(rng: random.Random) -> str:
    length = rng.choice([16, 17, 18, 19])
    body = rng.choice(["62", "4", "5", "3"]) + "".join(rng.choice("0123456789") for _ in range(length - 1))
    body = body[: length - 1]
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return body + str((10 - total % 10) % 10)


def email(rng: random.Random) -> str:
    name = rng.choice(["zhangsan", "li.wei", "wang_fang88", "chenjing", "liu-qiang"])
    return f"{name}{rng.randint(1, 999)}@{rng.choice(['qq.com', '163.com', 'gmail.com', 'example.cn'])}"


KINDS = {"mobile": mobile, "landline": landline, "id_card": id_card, "bank_card": bank_card}


def _groups(number: str, kind: str) -> list[str]:
    if kind == "mobile":
        return [number[:3], number[3:7], number[7:]]
    if kind == "landline":
        cut = 3 if number[1] in "12" else 4
        return [number[:cut], number[cut:]]
    if kind == "id_card":
        return [number[:6], number[6:14], number[14:]]
    return [number[i : i + 4] for i in range(0, len(number), 4)]


def _chinese(text: str, rng: random.Random) -> str:
    out = []
    for char in text:
        if char == "1":
            out.append(rng.choice("一幺"))
        elif char == "2":
            out.append(rng.choice("二两"))
        elif char == "0":
            out.append(rng.choice("零〇"))
        elif char.isdigit():
            out.append(_CN[int(char)])
        else:
            out.append(char)
    return "".join(out)


FORMS = ("ascii", "spaced", "dashed", "fullwidth", "chinese", "chinese_spaced", "mixed")


def written(number: str, kind: str, form: str, rng: random.Random) -> str:
    """``number`` as ASR writes it in ``form``."""
    groups = _groups(number, kind)
    if form == "ascii":
        return number
    if form == "spaced":
        return " ".join(groups)
    if form == "dashed":
        return "-".join(groups)
    if form == "fullwidth":
        return "".join(chr(0xFF10 + int(c)) if c.isdigit() else c for c in number)
    if form == "chinese":
        return _chinese(number, rng)
    if form == "chinese_spaced":
        return " ".join(_chinese(g, rng) for g in groups)
    # mixed: ASCII first group, Chinese numerals after
    return groups[0] + " " + " ".join(_chinese(g, rng) for g in groups[1:])


_TEMPLATES = {
    "mobile": ["我的手机号是{n}，你记一下。", "你打这个电话{n}就能找到我", "嗯对，号码{n}，没错。", "联系方式是{n}"],
    "landline": ["我们公司座机是{n}，上班时间打。", "你打{n}转人工", "家里电话{n}"],
    "id_card": ["身份证号是{n}。", "我身份证{n}，你核对一下", "证件号码{n}对吧"],
    "bank_card": ["退款打到我这张卡{n}上面", "银行卡号{n}，工商银行的。", "卡号是{n}"],
    "email": ["发到我邮箱{n}吧", "我的邮箱是{n}，谢谢。"],
}


def personal(seed: int = 24) -> Iterator[tuple[str, str, str, str]]:
    """``(sentence, number, kind, form)``: each kind in each form, 20 times (≥ 500 utterances)."""
    rng = random.Random(seed)
    for _ in range(20):
        for kind, make in KINDS.items():
            for form in FORMS:
                number = make(rng)
                text = written(number, kind, form, rng)
                yield rng.choice(_TEMPLATES[kind]).format(n=text), text, kind, form
        address = email(rng)
        yield rng.choice(_TEMPLATES["email"]).format(n=address), address, "email", "ascii"


#: Numbers that are not personal: each must survive redaction unchanged.
KEPT = [
    "这个套餐三千五百元一个月",
    "一共是两万三千四百五十六块",
    "退款金额是1999元，三到五个工作日到账",
    "订单是2024年3月5日下的",
    "二〇二四年三月五日下的单",
    "我们十点半开门，晚上九点关门",
    "下午三点一刻给您回电话",
    "等了四十五分钟了",
    "这通电话打了一个小时二十分钟",
    "我的工号是12345",
    "工号幺二三四五",
    "验证码是384721",
    "房间号一二零三",
    "第三期账单是456.78元",
    "2024-03-05 10:30 下的单",
    "2024-03-05 2024-03-06 这两天",
    "会员积分还有12000分",
    "服务热线400-800-1234",
    "打95588转人工",
    "拨打10086查询",
    "一三八块钱",
    "三八妇女节有活动",
    "二三十个人",
    "零零七号房间",
    "他今年三十五岁",
    "快递单号是SF1234567",
    "价格从299涨到了399",
    "排队号A0123",
    "第一次第二次第三次都没打通",
    "一二三四五六",
]
