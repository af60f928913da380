"""The assistant's fixed lines to visitors, in the languages the widget speaks. Pure.

The widget picks English, Spanish, French, German or Portuguese from the
browser and sends the browser's language in its ``hello`` frame; the
conversation keeps it (``conversations.language``, e.g. "pt-BR"). The
assistant's built-in lines follow it, so a visitor reading a Spanish widget
is not told "I don't know" in English. Answers themselves come from the
knowledge base or the model (which is asked to use the visitor's language).

Placeholders are ``str.format`` fields: ``{name}``, ``{link}``, ``{email}``,
``{who}`` (", Ana" or "").
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_LANGUAGE = "en"

_EN = {
    "handoff_asked": "Sure, I'm getting someone from the team. They'll reply right here in this chat.",
    "handoff_unknown": "I don't have an answer to that, so I've passed your question to the team. "
    "Someone will reply right here shortly.",
    "unknown": "I'm sorry, I don't know the answer to that.",
    "nobody": "Nobody from the team is available right now.",
    "ask_email": "If you leave your email address here, they'll get back to you.",
    "ask_email_form": "Leave your email address here, or use the form, and they'll get back to you.",
    "form_only": "You can leave them a message with the form and they'll get back to you.",
    "try_later": "Please try again a little later.",
    "rephrase": "Could you put it another way? You can also ask for a person at any time.",
    "ask_name": "Thanks! And what's your name? (You can also just say skip.)",
    "bad_email": "That doesn't look like a complete email address. Could you check it?",
    "email_again": "I need an email address so the team can reply. What is it? (Or say no thanks.)",
    "declined": "No problem. Is there anything else I can help with?",
    "greeting": "Hi! I'm {name}. Ask me anything and I'll answer from what the team has written down, "
    "or ask for a person at any time.",
    "thanks": "You're welcome! Anything else I can help with?",
    "bye": "Thanks for stopping by. Goodbye!",
    "booking": "You can book a time with us here: {link}",
    "booking_label": "Book a time",
    "passed_on": "I've passed your question on; the team will reply to {email}.",
    "lead_thanks": "Thank you{who}! The team will get back to you at {email}.",
    "assistant": "Assistant",
}

_ES = {
    "handoff_asked": "¡Claro! Aviso a alguien del equipo. Te responderá aquí mismo, en este chat.",
    "handoff_unknown": "No tengo la respuesta, así que he pasado tu pregunta al equipo. "
    "Alguien te responderá aquí mismo en breve.",
    "unknown": "Lo siento, no sé la respuesta.",
    "nobody": "Ahora mismo no hay nadie del equipo disponible.",
    "ask_email": "Si me dejas tu email aquí, te responderán.",
    "ask_email_form": "Déjame tu email aquí, o usa el formulario, y te responderán.",
    "form_only": "Puedes dejarles un mensaje con el formulario y te responderán.",
    "try_later": "Vuelve a intentarlo un poco más tarde.",
    "rephrase": "¿Puedes decirlo de otra manera? También puedes pedir hablar con una persona cuando quieras.",
    "ask_name": "¡Gracias! ¿Y cómo te llamas? (También puedes decir «omitir».)",
    "bad_email": "Esa dirección de email no parece completa. ¿Puedes revisarla?",
    "email_again": "Necesito un email para que el equipo pueda responderte. ¿Cuál es? (O di «no, gracias».)",
    "declined": "Sin problema. ¿Puedo ayudarte en algo más?",
    "greeting": "¡Hola! Soy {name}. Pregúntame lo que quieras y te responderé con lo que el equipo tiene escrito, "
    "o pide hablar con una persona cuando quieras.",
    "thanks": "¡De nada! ¿Puedo ayudarte en algo más?",
    "bye": "Gracias por tu visita. ¡Hasta pronto!",
    "booking": "Puedes reservar una cita con nosotros aquí: {link}",
    "booking_label": "Reservar una cita",
    "passed_on": "He pasado tu pregunta al equipo; te responderán a {email}.",
    "lead_thanks": "¡Gracias{who}! El equipo te responderá a {email}.",
    "assistant": "Asistente",
}

_FR = {
    "handoff_asked": "Bien sûr, je préviens quelqu'un de l'équipe. On vous répondra ici même, dans ce chat.",
    "handoff_unknown": "Je n'ai pas la réponse, j'ai donc transmis votre question à l'équipe. "
    "Quelqu'un vous répondra ici même très bientôt.",
    "unknown": "Désolé, je ne connais pas la réponse.",
    "nobody": "Personne de l'équipe n'est disponible pour le moment.",
    "ask_email": "Si vous laissez votre adresse e-mail ici, l'équipe vous répondra.",
    "ask_email_form": "Laissez votre adresse e-mail ici, ou utilisez le formulaire, et l'équipe vous répondra.",
    "form_only": "Vous pouvez leur laisser un message avec le formulaire et ils vous répondront.",
    "try_later": "Veuillez réessayer un peu plus tard.",
    "rephrase": "Pouvez-vous reformuler ? Vous pouvez aussi demander à parler à une personne à tout moment.",
    "ask_name": "Merci ! Et quel est votre nom ? (Vous pouvez aussi répondre « passer ».)",
    "bad_email": "Cette adresse e-mail semble incomplète. Pouvez-vous la vérifier ?",
    "email_again": "J'ai besoin d'une adresse e-mail pour que l'équipe puisse vous répondre. Laquelle ? (Ou dites « non merci ».)",
    "declined": "Pas de problème. Puis-je vous aider pour autre chose ?",
    "greeting": "Bonjour ! Je suis {name}. Posez-moi vos questions, je réponds à partir de ce que l'équipe a écrit, "
    "ou demandez à parler à une personne à tout moment.",
    "thanks": "Avec plaisir ! Puis-je vous aider pour autre chose ?",
    "bye": "Merci de votre visite. Au revoir !",
    "booking": "Vous pouvez réserver un créneau avec nous ici : {link}",
    "booking_label": "Réserver un créneau",
    "passed_on": "J'ai transmis votre question ; l'équipe vous répondra à {email}.",
    "lead_thanks": "Merci{who} ! L'équipe vous répondra à {email}.",
    "assistant": "Assistant",
}

_DE = {
    "handoff_asked": "Gern, ich hole jemanden aus dem Team dazu. Sie bekommen die Antwort direkt hier im Chat.",
    "handoff_unknown": "Darauf habe ich keine Antwort, deshalb habe ich Ihre Frage an das Team weitergegeben. "
    "Jemand antwortet Ihnen gleich hier.",
    "unknown": "Das weiß ich leider nicht.",
    "nobody": "Gerade ist niemand aus dem Team erreichbar.",
    "ask_email": "Wenn Sie hier Ihre E-Mail-Adresse hinterlassen, meldet sich das Team bei Ihnen.",
    "ask_email_form": "Hinterlassen Sie hier Ihre E-Mail-Adresse oder nutzen Sie das Formular, dann meldet sich das Team bei Ihnen.",
    "form_only": "Sie können dem Team mit dem Formular eine Nachricht hinterlassen, es meldet sich dann bei Ihnen.",
    "try_later": "Bitte versuchen Sie es etwas später noch einmal.",
    "rephrase": "Können Sie es anders formulieren? Sie können auch jederzeit nach einem Menschen fragen.",
    "ask_name": "Danke! Und wie heißen Sie? (Sie können auch einfach „überspringen“ sagen.)",
    "bad_email": "Diese E-Mail-Adresse scheint unvollständig zu sein. Können Sie sie prüfen?",
    "email_again": "Ich brauche eine E-Mail-Adresse, damit das Team antworten kann. Wie lautet sie? (Oder sagen Sie „nein danke“.)",
    "declined": "Kein Problem. Kann ich sonst noch helfen?",
    "greeting": "Hallo! Ich bin {name}. Fragen Sie mich, ich antworte mit dem, was das Team aufgeschrieben hat, "
    "oder fragen Sie jederzeit nach einem Menschen.",
    "thanks": "Gern geschehen! Kann ich sonst noch helfen?",
    "bye": "Danke für Ihren Besuch. Auf Wiedersehen!",
    "booking": "Hier können Sie einen Termin mit uns buchen: {link}",
    "booking_label": "Termin buchen",
    "passed_on": "Ich habe Ihre Frage weitergegeben; das Team antwortet an {email}.",
    "lead_thanks": "Danke{who}! Das Team meldet sich unter {email} bei Ihnen.",
    "assistant": "Assistent",
}

_PT = {
    "handoff_asked": "Claro, vou chamar alguém da equipe. A resposta chega aqui mesmo, neste chat.",
    "handoff_unknown": "Não tenho resposta para isso, então passei sua pergunta para a equipe. "
    "Alguém vai responder aqui mesmo em breve.",
    "unknown": "Desculpe, não sei a resposta.",
    "nobody": "Ninguém da equipe está disponível agora.",
    "ask_email": "Se você deixar seu e-mail aqui, a equipe vai responder.",
    "ask_email_form": "Deixe seu e-mail aqui, ou use o formulário, e a equipe vai responder.",
    "form_only": "Você pode deixar uma mensagem para a equipe no formulário e ela vai responder.",
    "try_later": "Tente novamente um pouco mais tarde.",
    "rephrase": "Pode dizer de outra forma? Você também pode pedir para falar com uma pessoa a qualquer momento.",
    "ask_name": "Obrigado! E qual é o seu nome? (Você também pode dizer «pular».)",
    "bad_email": "Esse e-mail não parece completo. Pode conferir?",
    "email_again": "Preciso de um e-mail para a equipe poder responder. Qual é? (Ou diga «não, obrigado».)",
    "declined": "Sem problemas. Posso ajudar em mais alguma coisa?",
    "greeting": "Olá! Eu sou {name}. Pergunte o que quiser e eu respondo com o que a equipe escreveu, "
    "ou peça para falar com uma pessoa a qualquer momento.",
    "thanks": "De nada! Posso ajudar em mais alguma coisa?",
    "bye": "Obrigado pela visita. Até logo!",
    "booking": "Você pode agendar um horário conosco aqui: {link}",
    "booking_label": "Agendar um horário",
    "passed_on": "Passei sua pergunta para a equipe; eles vão responder para {email}.",
    "lead_thanks": "Obrigado{who}! A equipe vai responder para {email}.",
    "assistant": "Assistente",
}

TEXTS: dict[str, dict[str, str]] = {"en": _EN, "es": _ES, "fr": _FR, "de": _DE, "pt": _PT}
LANGUAGES = tuple(TEXTS)


def language_of(tag: str | None) -> str:
    """The language of a BCP 47 tag among ours ("pt-BR" -> "pt"), English otherwise.

    The same rule as the widget's: the primary subtag, case-insensitive.
    """
    primary = (tag or "").strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in TEXTS else DEFAULT_LANGUAGE


def texts_for(tag: str | None, custom: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every built-in line in the conversation's language (English for missing keys);
    ``custom`` lines a widget's admin wrote replace them as written, in any language."""
    texts = {**_EN, **TEXTS[language_of(tag)]}
    if custom:
        texts.update({k: v for k, v in custom.items() if k in _EN and isinstance(v, str) and v.strip()})
    return texts
