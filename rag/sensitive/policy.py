"""Policies: what to do with each kind of finding, and applying them to a text."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from rag.sensitive.finding import Finding

MASK_KEEP_LAST_CHARS = 4
MASK_CHAR = "*"

LABELS_ZH: dict[str, str] = {
    "CN_ID": "身份证号", "CN_MOBILE": "手机号", "CN_LANDLINE": "固定电话", "BANK_CARD": "银行卡号",
    "IBAN": "银行账号", "EMAIL": "邮箱", "IPV4": "IP地址", "IPV6": "IP地址", "USCC": "统一社会信用代码",
    "CN_PASSPORT": "护照号", "CN_PLATE": "车牌号", "API_KEY": "密钥", "PRIVATE_KEY": "私钥",
    "PASSWORD": "密码", "SECRET": "密钥", "TERM": "敏感词", "MARKING": "密级标识",
}


class Action(str, enum.Enum):
    ALLOW = "allow"
    MASK = "mask"      # keep the last 4 letters/digits, star the others
    REDACT = "redact"  # replace with a type label: 〔身份证号〕 or [CN_ID]
    BLOCK = "block"    # the caller refuses the whole text; the span is also redacted


@dataclass(frozen=True)
class Policy:
    """kind → action, with a default for unlisted kinds.

    A TERM finding first looks up "TERM:<category>" so one term list can be blocked while
    another is only redacted. `label_style` picks 〔身份证号〕 ("zh") or [CN_ID] ("en").
    """

    actions: Mapping[str, Action] = field(default_factory=dict)
    default: Action = Action.ALLOW
    label_style: Literal["zh", "en"] = "zh"

    def action_for(self, finding: Finding) -> Action:
        if finding.category is not None:
            by_category = self.actions.get(f"{finding.kind}:{finding.category}")
            if by_category is not None:
                return by_category
        return self.actions.get(finding.kind, self.default)

    def label(self, kind: str) -> str:
        if self.label_style == "zh":
            return f"〔{LABELS_ZH.get(kind, kind)}〕"
        return f"[{kind}]"


@dataclass(frozen=True, slots=True)
class ActionTaken:
    kind: str
    action: Action
    start: int  # offsets in the input text, for the audit log
    end: int
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Redaction:
    """The text with every non-allowed finding masked or replaced, what was done, and whether a
    BLOCK finding was present (then the caller must not show the text at all)."""

    text: str
    actions_taken: tuple[ActionTaken, ...]
    blocked: bool


def mask_value(value: str) -> str:
    """Star every letter/digit except the last four; separators stay so the shape is readable."""
    num_to_star = sum(char.isalnum() for char in value) - MASK_KEEP_LAST_CHARS
    masked = []
    for char in value:
        if char.isalnum() and num_to_star > 0:
            masked.append(MASK_CHAR)
            num_to_star -= 1
        else:
            masked.append(char)
    return "".join(masked)


def apply_policy(text: str, findings: list[Finding], policy: Policy) -> Redaction:
    """`findings` must not overlap (what `detect` returns)."""
    pieces: list[str] = []
    actions_taken: list[ActionTaken] = []
    position = 0
    for finding in sorted(findings, key=lambda f: f.start):
        action = policy.action_for(finding)
        if action is Action.ALLOW:
            continue
        pieces.append(text[position:finding.start])
        value = text[finding.start:finding.end]
        pieces.append(mask_value(value) if action is Action.MASK else policy.label(finding.kind))
        position = finding.end
        actions_taken.append(ActionTaken(finding.kind, action, finding.start, finding.end,
                                         finding.category))
    pieces.append(text[position:])
    return Redaction("".join(pieces), tuple(actions_taken),
                     any(taken.action is Action.BLOCK for taken in actions_taken))
