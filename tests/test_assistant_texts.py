"""The assistant's built-in lines follow the conversation's language (the widget's en/es/fr/de/pt),
and it understands the visitor's small talk and requests for a person in those languages."""

from __future__ import annotations

import re
import string

import pytest

from core.assistant import Situation, ThreadState, asks_for_human, decide, find_name, small_talk
from core.assistant_config import AssistantConfig
from core.assistant_texts import LANGUAGES, TEXTS, language_of, texts_for
from core.chunking import chunk_entry
from core.retrieval import Index

INDEX = Index.build(chunk_entry(1, "How much does shipping cost?", "Shipping is free on orders over 50 euros.", ["shipping"]))
CONFIG = AssistantConfig()


def _decide(text: str, language: str | None, *, humans: bool = False, state: ThreadState | None = None,
            config: AssistantConfig = CONFIG, custom: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    situation = Situation(text=text, humans_available=humans, language=language, custom_texts=custom)
    return decide(situation, state or ThreadState(), INDEX.search(text), config, use_model=False)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_every_line_with_the_same_placeholders(language):
    assert set(TEXTS[language]) == set(TEXTS["en"])
    for key, english in TEXTS["en"].items():
        assert _fields(TEXTS[language][key]) == _fields(english), (language, key)


@pytest.mark.parametrize(
    ("tag", "language"),
    [("es-ES", "es"), ("pt-BR", "pt"), ("PT_pt", "pt"), ("fr", "fr"), ("de-AT", "de"), ("en-GB", "en"), ("ja-JP", "en"),
     ("", "en"), (None, "en")],
)
def test_the_language_is_the_browser_tags_primary_subtag_else_english(tag, language):
    assert language_of(tag) == language


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("es-ES", "Lo siento, no sé la respuesta. Ahora mismo no hay nadie del equipo disponible."),
        ("fr-FR", "Désolé, je ne connais pas la réponse. Personne de l'équipe n'est disponible pour le moment."),
        ("de-DE", "Das weiß ich leider nicht. Gerade ist niemand aus dem Team erreichbar."),
        ("pt-BR", "Desculpe, não sei a resposta. Ninguém da equipe está disponível agora."),
        ("ja-JP", "I'm sorry, I don't know the answer to that. Nobody from the team is available right now."),
    ],
)
def test_i_dont_know_and_nobody_is_here_are_said_in_the_visitors_language(tag, expected):
    reply, _state = _decide("do you sell gift cards", tag)
    assert reply.kind == "ask_email" and reply.text.startswith(expected)
    assert reply.text.endswith(texts_for(tag)["ask_email_form"])


def test_handoff_notices_follow_the_language():
    reply, _ = _decide("Quiero hablar con una persona", "es-MX", humans=True)
    assert reply.hands_off and reply.text == TEXTS["es"]["handoff_asked"]
    reply, _ = _decide("do you sell gift cards", "de", humans=True)
    assert reply.hands_off and reply.text == TEXTS["de"]["handoff_unknown"]


def test_the_lead_flow_speaks_portuguese_from_the_email_to_the_thanks():
    _, state = _decide("vocês vendem cartões presente", "pt-BR")
    reply, state = _decide("ana@example", "pt-BR", state=state)
    assert reply.text == TEXTS["pt"]["bad_email"]
    reply, state = _decide("ana@example.com", "pt-BR", state=state)
    assert reply.text == TEXTS["pt"]["ask_name"]
    reply, state = _decide("Me chamo Ana", "pt-BR", state=state)
    assert reply.kind == "lead" and reply.lead["name"] == "Ana"
    assert reply.text == "Obrigado, Ana! A equipe vai responder para ana@example.com."


def test_a_known_email_is_confirmed_in_the_visitors_language():
    situation = Situation(text="do you sell gift cards", humans_available=False, visitor_email="cy@example.com", language="fr")
    reply, _ = decide(situation, ThreadState(), INDEX.search(situation.text), CONFIG, use_model=False)
    assert reply.kind == "lead" and reply.text.endswith("J'ai transmis votre question ; l'équipe vous répondra à cy@example.com.")


def test_greetings_are_answered_in_kind_with_the_default_name_translated_and_a_given_name_kept():
    reply, _ = _decide("Hola", "es")
    assert reply.kind == "smalltalk" and reply.text.startswith("¡Hola! Soy Asistente.")
    reply, _ = _decide("Hallo", "de", config=AssistantConfig(name="Lotte"))
    assert reply.text.startswith("Hallo! Ich bin Lotte.")
    assert _decide("merci beaucoup", "fr")[0].text == TEXTS["fr"]["thanks"]
    assert _decide("tchau", "pt")[0].text == TEXTS["pt"]["bye"]


def test_the_booking_line_is_translated():
    reply, _ = _decide("can I book a call?", "fr", config=AssistantConfig(booking_link="https://cal.example/x"))
    assert reply.text == "Vous pouvez réserver un créneau avec nous ici : https://cal.example/x"


def test_lines_the_admin_wrote_win_over_ours_in_any_language():
    custom = {"nobody": "The team is at lunch.", "unknown": "  ", "no_such_line": "ignored"}
    reply, _ = _decide("do you sell gift cards", "es", custom=custom)
    assert reply.text.startswith("Lo siento, no sé la respuesta. The team is at lunch.")
    assert "no_such_line" not in texts_for("es", custom)


@pytest.mark.parametrize(
    "text",
    ["Quiero hablar con una persona", "¿puedo hablar con un agente?", "Je voudrais parler à quelqu'un",
     "je veux parler avec un conseiller", "Ich möchte mit einem Menschen sprechen",
     "Verbinden Sie mich bitte mit einem Mitarbeiter", "Quero falar com um atendente", "posso falar com alguém?"],
)
def test_requests_for_a_person_are_recognised_in_the_widgets_languages(text):
    assert asks_for_human(text)


@pytest.mark.parametrize(
    "text",
    ["¿Cómo añado un agente?", "recursos humanos", "Comment ajouter un agent ?", "Wie viele Menschen nutzen das?",
     "Como adiciono um agente?"],
)
def test_questions_about_agents_are_not_requests_for_a_person_in_other_languages_either(text):
    assert not asks_for_human(text)


def test_small_talk_names_and_no_thanks_in_other_languages():
    assert [small_talk(t) for t in ("Buenos días", "bonjour", "Guten Morgen", "olá", "danke schön", "adiós")] == [
        "greeting", "greeting", "greeting", "greeting", "thanks", "bye"
    ]
    assert find_name("Je m'appelle Zoé") == "Zoé" and find_name("Ich heiße Jörg") == "Jörg"
    assert find_name("pular") is None and find_name("nein danke") is None


def test_no_english_line_is_left_in_another_languages_texts():
    english_only = re.compile(r"\b(the|you|your|please|sorry)\b", re.I)
    for language in ("es", "fr", "de", "pt"):
        leftovers = {k: v for k, v in TEXTS[language].items() if english_only.search(v)}
        assert leftovers == {}, language
