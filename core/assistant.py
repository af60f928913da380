"""The assistant's answer policy: what to say to a visitor's message, as a pure function.

Everything here is plain data in, plain data out, so every rule is tested
without a database or a model:

- it answers only when retrieval is confident (below the threshold it does
  not ask the language model at all: a model shown weak passages guesses);
- it escalates when the visitor asks for a person, uses a configured
  keyword, asks what the knowledge base cannot answer, or stays unanswered
  for N turns; escalating means handing over to an available agent, else
  offering the offline form prefilled and collecting an email in the chat;
- it captures leads (email validated, name optional, the need from the
  conversation) and answers booking requests with the widget's link.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core import validation as v
from core.assistant_config import AssistantConfig
from core.assistant_texts import DEFAULT_LANGUAGE, texts_for
from core.llm import NO_ANSWER
from core.retrieval import Hit, Passage

# Measured on the dev split of tests/kb_eval (bench/kb_eval.py): the lowest
# threshold keeping abstention on unanswerable questions at or above 0.95.
DEFAULT_MIN_CONFIDENCE = 0.54
PASSAGES_FOR_MODEL = 4
MAX_NEED = 1000

_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+\.[^\s@<>()\[\],;:\"']+")
_HUMAN = [
    re.compile(p)
    for p in (
        r"\b(talk|speak|chat|connect|transfer|escalate)\b[\w\s]{0,20}?\b(to|with|me)\b[\w\s]{0,12}?"
        r"\b(a |an |the |your |some |real |actual |live )*(human|person|someone|somebody|agent|operator|"
        r"representative|rep|staff|team|people|manager|employee)\b",
        r"\b(real|live|actual)\s+(person|human|agent|people|operator)\b",
        r"\bhuman\b",
        r"^\s*(agent|operator|person|representative|support)\s*(please|pls|now)?\s*[!.?]*\s*$",
        r"\bi\s*('d like|would like|want|need)\s+(to\s+(talk|speak|chat)\s+(to|with)\s+)?"
        r"(a |an |the )?(person|human|agent|operator|representative|someone)\b",
        r"\b(not|no) (a )?(bot|robot|machine)\b",
        # The widget's other languages (es, fr, de, pt): asking for a person, not asking about one.
        r"\b(hablar|chatear|comunicarme|contactar|hablo)\s+con\s+(una |un |el |la |alg[uú]n |alguna )?"
        r"(persona|humano|agente|operador|asesor|alguien)\b",
        r"\b(persona real|humano)\b",
        r"\b(parler|discuter|[ée]changer)\s+(à|avec)\s+(une |un |le |la )?(personne|humain|agent|conseill[eè]re?|"
        r"op[ée]rat(eur|rice)|quelqu'un)\b",
        r"\b(vraie personne|[êe]tre humain|humain)\b",
        r"\b(sprechen|reden|chatten|verbinden)\b.*\bmit\s+(einem |einer |dem |der )?(menschen|mitarbeiter(in)?|"
        r"berater(in)?|person|jemandem)\b|\bmit\s+(einem |einer |dem |der )?(menschen|mitarbeiter(in)?|berater(in)?|"
        r"person|jemandem)\b.*\b(sprechen|reden|chatten|verbinden|verbunden)\b",
        r"\b(echte[nr]? (person|mensch(en)?)|mensch aus fleisch)\b",
        r"\b(falar|conversar)\s+com\s+(uma |um |o |a |algum |alguma )?(pessoa|humano|atendente|agente|operador|algu[ée]m)\b",
        r"\b(pessoa real|humano)\b",
    )
]
_BOOKING = re.compile(
    r"\b(book|schedule|arrange|set up|setup|plan)\b[\w\s]{0,20}?\b(call|demo|meeting|appointment|consultation|"
    r"session|slot|time)\b|\bbook(ing)? (a|an)\b|\bappointment\b"
)
_GREETING = re.compile(
    r"^(hi|hello|hey|hiya|howdy|yo|good (morning|afternoon|evening)|greetings)( there| all| team)?$"
    r"|^(hola|buenas|buenos d[ií]as|buenas (tardes|noches)|bonjour|bonsoir|salut|coucou|hallo|guten (tag|morgen|abend)"
    r"|moin|servus|ol[aá]|oi|bom dia|boa (tarde|noite))( a todos| tout le monde| zusammen| pessoal)?$"
)
_THANKS = re.compile(
    r"^((ok|okay|great|perfect|cool|awesome|nice|super|got it),? )*(thanks?|thank you|thx|ty|cheers)( (so|very) much| a lot)?$"
    r"|^((vale|perfecto|genial|d'accord|parfait|ok|okay|gut|perfeito|[oó]timo|super),? )*"
    r"(muchas gracias|gracias|merci( beaucoup| bien)?|danke( sch[öo]n| sehr)?|vielen dank|"
    r"(muito )?obrigad[oa])$"
)
_BYE = re.compile(
    r"^(bye|goodbye|see you|cya|that'?s all|adi[oó]s|hasta luego|chao|au revoir|[àa] bient[ôo]t|tsch[üu]ss|"
    r"auf wiedersehen|tchau|at[ée] logo|adeus)$"
)
_DECLINE = re.compile(
    r"^(no|nope|no thanks?|no thank you|not now|cancel|never ?mind|skip|nah|non|nein|n[ãa]o|omitir|passer|"
    r"[üu]berspringen|pular)\b"
)
_SOFT_BREAK = re.compile(r"(?<=\S)[ \t]*\n(?![ \t]*(\n|[-*+] |\d+[.)] |#|```|>|\|))[ \t]*")
_NAME_LEAD = re.compile(
    r"^(my name is|my name's|i am|i'm|im|this is|it's|its|name:?|call me|me llamo|mi nombre es|soy|"
    r"je m'appelle|je suis|moi c'est|ich bin|ich hei(ß|ss)e|mein name ist|me chamo|meu nome [ée]|sou|eu sou)\s+",
    re.I,
)


@dataclass
class ThreadState:
    """What the assistant remembers about one conversation (stored in ``assistant_threads``)."""

    status: str = "active"  # active | handed_off | stopped
    reason: str | None = None
    unanswered: int = 0
    lead: dict[str, Any] | None = None  # {step: email|name, email, name, need, tries}


@dataclass(frozen=True)
class Situation:
    """Everything the policy needs to know about the moment, besides the knowledge base."""

    text: str
    humans_available: bool
    offline_form: bool = True
    visitor_name: str | None = None
    visitor_email: str | None = None
    earlier_question: str | None = None  # the visitor's previous message, when this one is a follow-up
    language: str | None = None  # the conversation's (browser) language, e.g. "pt-BR": our lines follow it
    custom_texts: Mapping[str, str] | None = None  # lines the widget's admin wrote: they win over ours


@dataclass(frozen=True)
class Reply:
    """What to do. ``kind`` "generate" means: ask the language model with ``passages``."""

    kind: str  # answer | generate | dont_know | handoff | offer_form | ask_email | ask_name | lead | smalltalk | booking
    text: str = ""
    passages: tuple[Passage, ...] = ()
    hits: tuple[Hit, ...] = ()
    offer_form: dict[str, str | None] | None = None  # prefill for the widget's offline form
    lead: dict[str, str | None] | None = None  # captured: {name, email, need}
    reason: str | None = None  # why it escalated: asked_for_human | keyword | low_confidence | unanswered_turns

    @property
    def hands_off(self) -> bool:
        return self.kind == "handoff"


# ---------------------------------------------------------------- texts

# The English lines, for callers that want them; replies use the conversation's
# language (core/assistant_texts.py).
TEXTS = texts_for(DEFAULT_LANGUAGE)


def _t(situation: Situation) -> dict[str, str]:
    return texts_for(situation.language, situation.custom_texts)


def _own_name(config: AssistantConfig, t: dict[str, str]) -> str:
    """The name the assistant introduces itself with: the admin's, or "Assistant" in the visitor's language."""
    return t["assistant"] if config.name == AssistantConfig.name else config.name


# ---------------------------------------------------------------- reading the visitor


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s'@.-]", " ", text.lower())).strip(" .!?")


def asks_for_human(text: str) -> bool:
    plain = _plain(text)
    return any(p.search(plain) for p in _HUMAN)


def matched_keyword(text: str, keywords: Sequence[str]) -> str | None:
    """The first configured escalation keyword in the message (whole words, any case)."""
    plain = _plain(text)
    for keyword in keywords:
        if re.search(rf"(?<!\w){re.escape(keyword.lower())}(?!\w)", plain):
            return keyword
    return None


def small_talk(text: str) -> str | None:
    """greeting | thanks | bye when the whole message is just that."""
    plain = _plain(text)
    if _GREETING.match(plain):
        return "greeting"
    if _THANKS.match(plain):
        return "thanks"
    if _BYE.match(plain):
        return "bye"
    return None


def asks_to_book(text: str) -> bool:
    return bool(_BOOKING.search(_plain(text)))


def find_email(text: str) -> tuple[str | None, bool]:
    """(a valid address, whether the text tried to give one): "me@x" is an attempt, not an address."""
    for candidate in _EMAIL.findall(text):
        candidate = candidate.strip(".")
        try:
            return v.email(candidate), True
        except v.FieldError:
            continue
    return None, "@" in text


def find_name(text: str) -> str | None:
    """A name the visitor typed when asked for it ("I'm Ana", "Ana Lima"); None for "skip"."""
    plain = text.strip().strip(".!")
    if _DECLINE.match(plain.lower()):
        return None
    plain = _NAME_LEAD.sub("", plain).strip()
    words = plain.split()
    if not words or len(words) > 5 or "?" in plain or "@" in plain:
        return None
    return plain[:200]


def confident_hit(hits: Sequence[Hit], threshold: float = DEFAULT_MIN_CONFIDENCE) -> Hit | None:
    """The best hit when retrieval is sure enough to answer with it, else None (abstain)."""
    if not hits or hits[0].confidence < threshold:
        return None
    return hits[0]


def retrieval_answer(hit: Hit) -> str:
    """The retrieval-only assistant's reply: the passage itself, under its section heading."""
    # Markdown wraps lines at ~80 columns; a chat bubble wraps by itself.
    text = _SOFT_BREAK.sub(" ", hit.passage.text.strip())
    return f"{hit.passage.heading}: {text}" if hit.passage.heading else text


# ---------------------------------------------------------------- deciding


def _need(situation: Situation) -> str:
    text = situation.text.strip()
    if situation.earlier_question and (len(text.split()) < 4 or asks_for_human(text)):
        text = situation.earlier_question.strip()
    return text[:MAX_NEED]


def _prefill(situation: Situation, state: ThreadState, need: str) -> dict[str, str | None]:
    lead = state.lead or {}
    return {
        "name": lead.get("name") or situation.visitor_name,
        "email": lead.get("email") or situation.visitor_email,
        "message": lead.get("need") or need,
    }


def escalate(
    state: ThreadState, situation: Situation, config: AssistantConfig, reason: str, hits: Sequence[Hit] = ()
) -> tuple[Reply, ThreadState]:
    """Hand over to a person when one is there; otherwise offer the form and ask for an email."""
    asked = reason in {"asked_for_human", "keyword"}
    t = _t(situation)
    if situation.humans_available:
        text = t["handoff_asked"] if asked else t["handoff_unknown"]
        return Reply("handoff", text, hits=tuple(hits), reason=reason), replace(
            state, status="handed_off", reason=reason, lead=None
        )
    need = _need(situation)
    opening = t["nobody"] if asked else f"{t['unknown']} {t['nobody']}"
    form = _prefill(situation, state, need) if situation.offline_form else None
    known_email = (state.lead or {}).get("email") or situation.visitor_email
    if config.collect_contact and not known_email:
        ask = t["ask_email_form"] if form else t["ask_email"]
        lead = {"step": "email", "need": need, "tries": 0, "name": situation.visitor_name}
        return Reply("ask_email", f"{opening} {ask}", hits=tuple(hits), offer_form=form, reason=reason), replace(
            state, lead=lead, reason=reason
        )
    if known_email and config.collect_contact:
        lead = {"name": (state.lead or {}).get("name") or situation.visitor_name, "email": known_email, "need": need}
        text = f"{opening} {t['passed_on'].format(email=known_email)}"
        return Reply("lead", text, hits=tuple(hits), lead=lead, reason=reason), replace(state, lead=None, reason=reason)
    tail = t["form_only"] if form else t["try_later"]
    return Reply("offer_form", f"{opening} {tail}", hits=tuple(hits), offer_form=form, reason=reason), replace(
        state, reason=reason
    )


def _collect(state: ThreadState, situation: Situation, config: AssistantConfig) -> tuple[Reply, ThreadState] | None:
    """The visitor is giving their contact details; None when they moved on to something else."""
    lead = dict(state.lead or {})
    text = situation.text.strip()
    t = _t(situation)
    if lead.get("step") == "name":
        name = find_name(text)  # None for "skip" or a question: the email is what matters
        captured = {"name": name or lead.get("name"), "email": lead.get("email"), "need": lead.get("need")}
        who = f", {captured['name']}" if captured["name"] else ""
        reply = Reply("lead", t["lead_thanks"].format(who=who, email=captured["email"]), lead=captured)
        return reply, replace(state, lead=None)
    email, attempted = find_email(text)
    if email:
        lead.update(email=email, step="name")
        if lead.get("name"):
            captured = {"name": lead["name"], "email": email, "need": lead.get("need")}
            thanks = t["lead_thanks"].format(who=f", {lead['name']}", email=email)
            return Reply("lead", thanks, lead=captured), replace(
                state, lead=None
            )
        return Reply("ask_name", t["ask_name"]), replace(state, lead=lead)
    if attempted:
        return Reply("ask_email", t["bad_email"]), replace(state, lead=lead)
    if _DECLINE.match(text.lower()):
        return Reply("smalltalk", t["declined"]), replace(state, lead=None)
    if len(text.split()) <= 4 and "?" not in text and lead.get("tries", 0) < 1:
        lead["tries"] = lead.get("tries", 0) + 1
        return Reply("ask_email", t["email_again"]), replace(state, lead=lead)
    return None  # a question: stop collecting and answer it


def decide(
    situation: Situation,
    state: ThreadState,
    hits: Sequence[Hit],
    config: AssistantConfig,
    *,
    use_model: bool,
) -> tuple[Reply, ThreadState]:
    """The reply to one visitor message and the conversation's next state."""
    text = situation.text
    t = _t(situation)
    if asks_for_human(text):
        return escalate(state, situation, config, "asked_for_human", hits)
    keyword = matched_keyword(text, config.escalation_keywords)
    if keyword is not None:
        return escalate(state, situation, config, "keyword", hits)
    if state.lead:
        collected = _collect(state, situation, config)
        if collected is not None:
            return collected
        state = replace(state, lead=None)
    email, _ = find_email(text)
    if email and config.collect_contact:
        # Contact details offered unprompted: take them as a lead for the question before.
        need = (situation.earlier_question or text)[:MAX_NEED]
        lead = {"name": situation.visitor_name, "email": email, "need": need}
        return Reply("lead", t["lead_thanks"].format(who="", email=email), lead=lead), state
    talk = small_talk(text)
    if talk is not None:
        return Reply("smalltalk", t[talk].format(name=_own_name(config, t))), state
    if config.booking_link and asks_to_book(text):
        return Reply("booking", t["booking"].format(link=config.booking_link)), replace(state, unanswered=0)
    threshold = config.min_confidence if config.min_confidence is not None else DEFAULT_MIN_CONFIDENCE
    best = confident_hit(hits, threshold)
    if best is None:
        return not_answered(state, situation, config, hits)
    if use_model:
        passages = tuple(h.passage for h in hits[:PASSAGES_FOR_MODEL] if h.confidence >= threshold / 2)
        return Reply("generate", passages=passages or (best.passage,), hits=tuple(hits)), state
    return Reply("answer", retrieval_answer(best), passages=(best.passage,), hits=tuple(hits)), replace(state, unanswered=0)


def not_answered(
    state: ThreadState, situation: Situation, config: AssistantConfig, hits: Sequence[Hit] = ()
) -> tuple[Reply, ThreadState]:
    """The question is beyond the knowledge base (or the model found nothing in the passages)."""
    state = replace(state, unanswered=state.unanswered + 1)
    if config.escalate_on_low_confidence:
        return escalate(state, situation, config, "low_confidence", hits)
    if state.unanswered >= config.max_unanswered_turns:
        return escalate(state, situation, config, "unanswered_turns", hits)
    t = _t(situation)
    return Reply("dont_know", f"{t['unknown']} {t['rephrase']}", hits=tuple(hits)), state


def answered(state: ThreadState) -> ThreadState:
    return replace(state, unanswered=0)


# ---------------------------------------------------------------- the prompt


def system_prompt(config: AssistantConfig, site: str, passages: Sequence[Passage]) -> str:
    """Grounding instructions plus the passages: the model may use nothing else."""
    quoted = "\n\n".join(f"[{n}] {p.label}\n{p.text.strip()}" for n, p in enumerate(passages, 1))
    return (
        f"You are {config.name}, the assistant in the chat on the website of {site}. "
        "Answer the visitor's last message using ONLY the knowledge-base passages below. "
        "Do not use any other knowledge, do not guess, and never invent facts, prices, links, "
        "promises or policies that the passages do not state. "
        f"If the passages do not contain the answer, reply with exactly {NO_ANSWER} and nothing else. "
        "Answer briefly (at most a few sentences), in a friendly tone and in the visitor's language. "
        "Do not mention the passages or these instructions.\n\n"
        f"Knowledge-base passages:\n\n{quoted}"
    )
