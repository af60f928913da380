"""Per-widget assistant settings: defaults, validation and the typed view the policy reads.

Stored as one JSON document per widget (``assistant_settings``), validated
here on the way in, so the policy can trust every field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from core import validation as v
from core.errors import ValidationFailed

PROVIDERS = ("openai", "anthropic", "gemini", "openai_compatible", "retrieval")


@dataclass(frozen=True)
class AssistantConfig:
    name: str = "Assistant"  # shown as the author of its messages
    provider: str | None = None  # None: the instance default (DESKBELL_AI_PROVIDER)
    model: str | None = None  # None: the provider's configured model
    booking_link: str | None = None  # answered when visitors ask to book a call
    escalation_keywords: tuple[str, ...] = ()  # e.g. "refund", "lawyer": straight to a human
    escalate_on_low_confidence: bool = True  # an unknown question goes to the team at once
    max_unanswered_turns: int = 2  # otherwise after this many in a row
    collect_contact: bool = True  # ask for an email in the chat when nobody is available
    max_reply_tokens: int = 400
    daily_token_budget: int = 200_000  # per widget and UTC day; beyond it, retrieval-only
    min_confidence: float | None = None  # None: the measured default (core/assistant.py)
    replies_per_minute: int = 10  # per conversation, so a flood cannot run up a bill

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["escalation_keywords"] = list(self.escalation_keywords)
        return data


FIELDS = {f.name for f in fields(AssistantConfig)}


def _keywords(value: Any) -> tuple[str, ...]:
    items = v.list_of(value, lambda k: v.text(k, max_len=60), max_items=50)
    return tuple(dict.fromkeys(k.lower() for k in items))


def _confidence(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise v.FieldError("must be a number from 0 to 1, or null for the default")
    return float(value)


def _optional_text(value: Any, *, max_len: int) -> str | None:
    return v.text(value, max_len=max_len, required=False)


CHECKS: dict[str, tuple[Any, dict[str, Any]]] = {
    "name": (v.text, {"max_len": 80}),
    "provider": (lambda x: None if x is None else v.choice(x, PROVIDERS), {}),
    "model": (_optional_text, {"max_len": 100}),
    "booking_link": (v.http_url, {"max_len": 1000}),
    "escalation_keywords": (_keywords, {}),
    "escalate_on_low_confidence": (v.boolean, {}),
    "max_unanswered_turns": (v.integer, {"lo": 1, "hi": 20}),
    "collect_contact": (v.boolean, {}),
    "max_reply_tokens": (v.integer, {"lo": 50, "hi": 4000}),
    "daily_token_budget": (v.integer, {"lo": 0, "hi": 100_000_000}),
    "min_confidence": (_confidence, {}),
    "replies_per_minute": (v.integer, {"lo": 1, "hi": 120}),
}


def clean_config(data: Any, *, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate a (partial) settings document; every bad field is named in one error."""
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    v.reject_unknown(data, FIELDS)
    c = v.Checker()
    out = dict(base or {})
    for name, value in data.items():
        fn, kwargs = CHECKS[name]
        out[name] = c.check(name, fn, value, **kwargs)
    c.done()
    if isinstance(out.get("escalation_keywords"), tuple):
        out["escalation_keywords"] = list(out["escalation_keywords"])
    return out


def config_from(stored: dict[str, Any] | None) -> AssistantConfig:
    """The typed settings from the stored document (unknown keys from older versions ignored)."""
    known = {k: val for k, val in (stored or {}).items() if k in FIELDS}
    if "escalation_keywords" in known:
        known["escalation_keywords"] = tuple(known["escalation_keywords"] or ())
    return AssistantConfig(**known)
