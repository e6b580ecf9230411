"""Deterministic, realistic inspection content: transcripts, rule hits, scores, agents.

Results are built from a small pool of templates (varied conversations and rule hits),
so a sandbox holding 100,000 results keeps only a few numbers per result and still answers
with content shaped like the real service's. Each template's heavy parts are serialized
once per requested field set (see ``results.py``). Review fields are per task, not per
template: ``reviews.py``.
"""

from __future__ import annotations

import random
from typing import Any

TEMPLATE_COUNT = 32

_AGENT_LINES = [
    "您好,这里是客户服务中心,请问有什么可以帮您?",
    "好的,我这边帮您查询一下,请稍等。",
    "非常抱歉给您带来不便,我们会尽快为您处理。",
    "请问还有其他问题需要咨询吗?",
    "感谢您的来电,祝您生活愉快,再见。",
    "您的订单已经发货,预计明天送达。",
    "根据规定,退款会在三到五个工作日内到账。",
    "我已经为您登记了工单,稍后会有专员联系您。",
]
_CUSTOMER_LINES = [
    "你好,我想查一下我的订单。",
    "我上周申请的退款怎么还没到?",
    "你们的服务太慢了,我很不满意。",
    "好的,谢谢你。",
    "我要投诉,这个问题已经打了三次电话了。",
    "请问会员积分怎么兑换?",
    "没有了,再见。",
]
#: Personal numbers customers say (issue 24), in the forms Chinese ASR writes them: the harvest
#: must redact every one (``QCFLOW_PII``). ``PERSONAL_CANARIES`` are their digits, which no
#: stored row and no log line may hold (tests/leakscan.py).
_PERSONAL_LINES = [
    "我的手机号是13912345678,你记一下。",
    "号码是一三九 幺二三四 五六七八,打这个。",
    "身份证号11010519491231002X。",
    "退到这张卡6222 0212 3456 7890 128上面吧。",
    "座机零七五五 幺二三四五六七八,上班时间打。",
    "发我邮箱wangfang1988@example.cn吧。",
    "手机１３９１２３４５６７８。",
]
PERSONAL_CANARIES = (
    "13912345678",
    "一三九 幺二三四 五六七八",
    "11010519491231002X",
    "6222 0212 3456 7890 128",
    "零七五五 幺二三四五六七八",
    "wangfang1988@example.cn",
    "１３９１２３４５６７８",
)
_RULES = [
    ("服务规范", "开场白检测", "1101", -5, "您好", "KEYWORD"),
    ("服务规范", "结束语检测", "1102", -5, "再见", "KEYWORD"),
    ("服务禁语", "禁用语检测", "1201", -20, "不知道", "KEYWORD"),
    ("情绪检测", "客户负面情绪", "1301", -10, "不满意", "ABUSE_MODEL"),
    ("投诉风险", "投诉关键词", "1401", -20, "投诉", "REGEX"),
    ("服务规范", "致歉用语", "1501", 5, "抱歉", "KEYWORD"),
]
_AGENTS = [
    ("28240112315643", "王芳", "售后技能组"),
    ("28240112315644", "李强", "售前技能组"),
    ("28240112315645", "陈静", "投诉处理组"),
]
_BUSINESS = ["客服业务线", "售后服务", "会员服务"]


def _transcript(rng: random.Random) -> list[dict[str, Any]]:
    sentences = []
    clock = 0
    for turn in range(rng.randint(6, 14)):
        agent = turn % 2 == 0
        words = rng.choice(_AGENT_LINES if agent else _CUSTOMER_LINES)
        span = 800 + 180 * len(words) + rng.randint(0, 900)
        sentences.append(
            {
                "Words": words,
                "Begin": clock,
                "End": clock + span,
                "EmotionValue": rng.randint(3, 8) if agent else rng.randint(1, 9),
                "SpeechRate": rng.randint(180, 320),
                "Role": "客服" if agent else "客户",
                "Identity": "OPERATOR_001" if agent else "CUSTOMER",
            }
        )
        clock += span + rng.randint(200, 1500)
    return sentences


def _hit(rule: tuple[str, str, str, int, str, str], sentence: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    kind, name, rid, score, keyword, operator = rule
    start = max(0, sentence["Words"].find(keyword))
    return {
        "Type": kind,
        "Name": name,
        "Rid": rid,
        "ReviewResult": 3,
        "Score": score,
        "SchemeId": 10021,
        "SchemeVersion": 3,
        "Hits": [
            {
                "KeyWords": [{"From": start, "To": start + len(keyword), "Val": keyword, "Cid": "a"}],
                "Cid": ["a"],
                "Phrase": {k: sentence[k] for k in ("Words", "Begin", "End", "EmotionValue", "Role")},
            }
        ],
        "Conditions": [
            {
                "Cid": "a",
                "Id": int(rid) * 10,
                "Rid": rid,
                "Lambda": "a",
                "Exclusion": 0,
                "Check_range": {"RoleId": 1, "Role": sentence["Role"], "Absolute": False, "AllSentencesSatisfy": False},
                "Operators": [
                    {
                        "Oid": "1",
                        "Id": int(rid) * 100,
                        "Type": operator,
                        "Name": "关键字检测",
                        "Param": {
                            "Keywords": [keyword],
                            "Excludes": [],
                            "In_sentence": True,
                            "Case_sensitive": False,
                            "Hit_time": 1,
                        },
                    }
                ],
            }
        ],
    }


def _say_personal(transcript: list[dict[str, Any]], index: int, seed: int) -> None:
    """In half the templates a customer says a personal number (appended to their first
    sentence: offsets of the words before it and every timing stay as they were). A random
    stream of its own, so the rest of the content is what it was before."""
    rng = random.Random(f"pii-{seed}-{index}")
    if rng.random() < 0.5:
        return
    sentence = next((s for s in transcript if s["Role"] == "客户"), None)
    if sentence is not None:
        sentence["Words"] = sentence["Words"] + rng.choice(_PERSONAL_LINES)


def build_template(index: int, seed: int) -> dict[str, Any]:
    """One template: the plain (unwrapped) heavy parts of a result and its score."""
    rng = random.Random(seed * 1000 + index)
    transcript = _transcript(rng)
    _say_personal(transcript, index, seed)
    hits = []
    score = 100
    for rule in rng.sample(_RULES, rng.randint(0, 3)):
        sentence = next((s for s in transcript if rule[4] in s["Words"]), rng.choice(transcript))
        hits.append(_hit(rule, sentence, rng))
        score += rule[3]
    agent_id, agent_name, skill_group = rng.choice(_AGENTS)
    return {
        "score": max(0, min(100, score)),
        "duration": transcript[-1]["End"] // 1000 + 1,
        "business": rng.choice(_BUSINESS),
        "heavy": {
            "AsrResult": transcript,
            "HitResult": hits,
            "HitScore": [
                {"ScoreName": h["Name"], "ScoreNumber": str(h["Score"]), "ScoreId": h["Rid"], "RuleId": h["Rid"]}
                for h in hits
            ],
            "Agent": {"Id": agent_id, "Name": agent_name, "SkillGroup": skill_group},
            "SchemeIdList": [10021],
            "SchemeNameList": ["客服通用质检方案"],
        },
    }


def build_templates(seed: int, count: int = TEMPLATE_COUNT) -> list[dict[str, Any]]:
    return [build_template(i, seed) for i in range(count)]
