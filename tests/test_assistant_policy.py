"""The answer policy as pure functions: when to answer, abstain, hand over, offer the form, take a lead."""

from __future__ import annotations

import pytest

from core.assistant import (
    Situation,
    ThreadState,
    asks_for_human,
    asks_to_book,
    decide,
    find_email,
    find_name,
    matched_keyword,
    small_talk,
    system_prompt,
)
from core.assistant_config import AssistantConfig, clean_config, config_from
from core.chunking import chunk_entry
from core.errors import ValidationFailed
from core.retrieval import Index

ENTRIES = [
    (1, "How much does shipping cost?", "Shipping is free on orders over 50 euros; otherwise it costs 4.90 euros.", ["shipping", "price"]),
    (2, "Can I return an item?", "Yes, within 30 days of delivery, unused and in its original box.", ["returns", "refund"]),
    (3, "How do I track my order?", "Use the tracking link in your dispatch email.", ["tracking", "delivery"]),
]
INDEX = Index.build([p for e in ENTRIES for p in chunk_entry(*e)])
CONFIG = AssistantConfig()


def _decide(text: str, *, humans: bool = False, state: ThreadState | None = None, config: AssistantConfig = CONFIG,
            use_model: bool = False, earlier: str | None = None, form: bool = True):  # type: ignore[no-untyped-def]
    situation = Situation(text=text, humans_available=humans, offline_form=form, earlier_question=earlier)
    return decide(situation, state or ThreadState(), INDEX.search(text), config, use_model=use_model)


@pytest.mark.parametrize(
    "text",
    ["I want to talk to a human", "can I speak with someone please", "real person please", "agent", "HUMAN!!",
     "connect me to an operator", "I'd like to chat with a person", "i need a human", "you're a bot, I want a real agent"],
)
def test_requests_for_a_person_are_recognised(text):
    assert asks_for_human(text)


@pytest.mark.parametrize(
    "text", ["Can agents write notes?", "how do I add a new agent", "does the team reply by email", "How much is shipping?"]
)
def test_questions_about_agents_are_not_requests_for_a_person(text):
    assert not asks_for_human(text)


def test_a_confident_question_is_answered_with_the_matching_entry():
    reply, state = _decide("how much is shipping")
    assert reply.kind == "answer" and "free on orders over 50" in reply.text
    assert state.unanswered == 0


def test_a_typo_still_finds_the_entry():
    reply, _ = _decide("can I retrun an itme")
    assert reply.kind == "answer" and "30 days" in reply.text


def test_with_a_model_the_passages_go_to_the_model_instead():
    reply, _ = _decide("how much is shipping", use_model=True)
    assert reply.kind == "generate" and reply.passages[0].entry_id == 1 and reply.text == ""


def test_an_unknown_question_with_nobody_around_says_so_offers_the_form_and_asks_for_an_email():
    reply, state = _decide("do you sell gift cards")
    assert reply.kind == "ask_email" and "don't know" in reply.text and "Nobody" in reply.text
    assert reply.offer_form == {"name": None, "email": None, "message": "do you sell gift cards"}
    assert state.lead == {"step": "email", "need": "do you sell gift cards", "tries": 0, "name": None}
    assert reply.reason == "low_confidence"


def test_an_unknown_question_never_reaches_the_model():
    reply, _ = _decide("do you sell gift cards", use_model=True)
    assert reply.kind != "generate"


def test_an_unknown_question_with_an_agent_available_is_handed_over():
    reply, state = _decide("do you sell gift cards", humans=True)
    assert reply.kind == "handoff" and state.status == "handed_off" and state.reason == "low_confidence"


def test_asking_for_a_person_hands_over_when_someone_is_there():
    reply, state = _decide("I want to talk to a human", humans=True)
    assert reply.hands_off and "getting someone" in reply.text and state.status == "handed_off"


def test_asking_for_a_person_with_nobody_there_takes_contact_details():
    reply, state = _decide("I want to talk to a human", earlier="my parcel is broken")
    assert reply.kind == "ask_email" and state.status == "active"
    assert state.lead["need"] == "my parcel is broken"  # the question before, not "I want a human"


def test_a_configured_keyword_escalates():
    config = AssistantConfig(escalation_keywords=("lawyer", "chargeback"))
    reply, state = _decide("my lawyer says the shipping cost is wrong", humans=True, config=config)
    assert reply.kind == "handoff" and reply.reason == "keyword"
    assert matched_keyword("Chargeback!", config.escalation_keywords) == "chargeback"
    assert matched_keyword("lawyers", config.escalation_keywords) is None


def test_without_low_confidence_escalation_it_asks_to_rephrase_then_escalates_after_n_turns():
    config = AssistantConfig(escalate_on_low_confidence=False, max_unanswered_turns=2)
    reply, state = _decide("do you sell gift cards", config=config, humans=True)
    assert reply.kind == "dont_know" and state.unanswered == 1
    reply, state = _decide("gift vouchers?", config=config, humans=True, state=state)
    assert reply.kind == "handoff" and reply.reason == "unanswered_turns"


def test_an_answer_resets_the_unanswered_count():
    config = AssistantConfig(escalate_on_low_confidence=False, max_unanswered_turns=3)
    _, state = _decide("do you sell gift cards", config=config)
    _, state = _decide("how much is shipping", config=config, state=state)
    assert state.unanswered == 0


def test_the_lead_flow_validates_the_email_then_asks_the_name_then_captures():
    _, state = _decide("do you sell gift cards")
    reply, state = _decide("ana@example", state=state)
    assert reply.kind == "ask_email" and "doesn't look like" in reply.text
    reply, state = _decide("sure, it's ana@example.com", state=state)
    assert reply.kind == "ask_name" and state.lead["email"] == "ana@example.com"
    reply, state = _decide("I'm Ana Lima", state=state)
    assert reply.kind == "lead" and reply.lead == {"name": "Ana Lima", "email": "ana@example.com", "need": "do you sell gift cards"}
    assert state.lead is None and "ana@example.com" in reply.text


def test_the_name_is_optional():
    _, state = _decide("do you sell gift cards")
    _, state = _decide("ana@example.com", state=state)
    reply, _ = _decide("skip", state=state)
    assert reply.kind == "lead" and reply.lead["name"] is None


def test_saying_no_to_the_email_question_ends_the_lead_flow():
    _, state = _decide("do you sell gift cards")
    reply, state = _decide("no thanks", state=state)
    assert reply.kind == "smalltalk" and state.lead is None


def test_a_new_question_while_collecting_is_answered():
    _, state = _decide("do you sell gift cards")
    reply, state = _decide("how much does shipping cost to Porto?", state=state)
    assert reply.kind == "answer" and state.lead is None


def test_an_email_given_unprompted_becomes_a_lead_for_the_question_before():
    reply, _ = _decide("write me at bo@example.org", earlier="do you sell gift cards")
    assert reply.kind == "lead" and reply.lead["email"] == "bo@example.org" and reply.lead["need"] == "do you sell gift cards"


def test_a_known_visitor_email_is_used_without_asking():
    situation = Situation(text="do you sell gift cards", humans_available=False, visitor_email="cy@example.com")
    reply, _ = decide(situation, ThreadState(), INDEX.search(situation.text), CONFIG, use_model=False)
    assert reply.kind == "lead" and reply.lead["email"] == "cy@example.com"


def test_without_contact_collection_or_form_it_says_to_try_later():
    config = AssistantConfig(collect_contact=False)
    reply, state = _decide("do you sell gift cards", config=config, form=False)
    assert reply.kind == "offer_form" and reply.offer_form is None and "try again" in reply.text and state.lead is None


def test_booking_requests_get_the_booking_link():
    config = AssistantConfig(booking_link="https://cal.example/acme")
    reply, _ = _decide("can I book a call with you?", config=config)
    assert reply.kind == "booking" and "https://cal.example/acme" in reply.text
    assert asks_to_book("schedule a demo next week") and not asks_to_book("how much is shipping")


def test_greetings_and_thanks_get_small_talk_not_a_search():
    assert _decide("hello there")[0].kind == "smalltalk"
    assert _decide("ok thanks!")[0].kind == "smalltalk"
    assert small_talk("hello, how much is shipping?") is None


@pytest.mark.parametrize(
    ("text", "email", "attempted"),
    [("ana@example.com", "ana@example.com", True), ("mail: ana@example.com.", "ana@example.com", True),
     ("ana@example", None, True), ("no email", None, False), ("write to b@c", None, True)],
)
def test_emails_are_validated(text, email, attempted):
    assert find_email(text) == (email, attempted)


def test_names_are_taken_from_short_answers():
    assert find_name("My name is Ana") == "Ana"
    assert find_name("Bo") == "Bo"
    assert find_name("skip") is None
    assert find_name("what is the price of a very long thing?") is None


def test_the_system_prompt_grounds_the_model_in_the_passages_only():
    passages = tuple(INDEX.search("shipping cost")[i].passage for i in range(1))
    prompt = system_prompt(CONFIG, "Acme Shop", passages)
    assert "ONLY" in prompt and "NO_ANSWER" in prompt and "Acme Shop" in prompt
    assert "free on orders over 50 euros" in prompt and "How much does shipping cost?" in prompt


def test_settings_are_validated_and_merged():
    assert config_from(clean_config({"booking_link": "https://cal.example/x", "escalation_keywords": ["Refund", "refund"]})) == AssistantConfig(
        booking_link="https://cal.example/x", escalation_keywords=("refund",)
    )
    with pytest.raises(ValidationFailed) as caught:
        clean_config({"provider": "gpt", "max_reply_tokens": 5, "min_confidence": 2})
    assert set(caught.value.fields) == {"provider", "max_reply_tokens", "min_confidence"}
    with pytest.raises(ValidationFailed, match="colour"):
        clean_config({"colour": 1})
    assert clean_config({"model": None}, base={"name": "Bot"}) == {"name": "Bot", "model": None}
