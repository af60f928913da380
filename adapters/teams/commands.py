"""Bot commands typed in Teams (``online``, ``setup KEY``...). Pure.

Teams has no slash commands for bots: people @mention the bot in a channel
or write to it in personal chat, and the manifest's ``commandLists`` offers
the same words as suggestions. The text arrives with the mention already
removed (see :func:`adapters.teams.text.strip_mention`).
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.teams.text import to_plain

VERBS = ("setup", "online", "offline", "status", "stay", "help")

# Shown by Teams in the compose box (manifest commandLists) and by ``help``.
COMMAND_LIST: tuple[tuple[str, str], ...] = (
    ("setup", "Bind this channel to a widget: setup [KEY]"),
    ("online", "Go on duty: visitors can chat with you"),
    ("offline", "Go off duty at once"),
    ("status", "Show whether you are on duty and available"),
    ("stay", "stay on: stay available without a session timeout; stay off: back to normal"),
    ("help", "List the commands"),
)


@dataclass(frozen=True)
class Command:
    verb: str  # setup | online | offline | status | stay | help
    arg: str | None = None  # setup: the widget key; stay: "on" | "off"


@dataclass(frozen=True)
class NotACommand:
    """Text addressed to the bot that is no command: ``reason`` is what to tell the person."""

    reason: str


def parse_command(text: str) -> Command | NotACommand | None:
    """Read a command from text addressed to the bot; None when the text is empty.

    Case and surrounding punctuation are forgiven (``Online!``, ``/status``),
    since people type commands from memory.
    """
    words = to_plain(text or "").split()
    if not words:
        return None
    verb = words[0].lower().strip("/!.,:;")
    rest = words[1:]
    if verb not in VERBS:
        return NotACommand(f"I don't know {words[0]!r}. {help_text()}")
    if verb == "setup":
        if len(rest) > 1:
            return NotACommand("Use: setup KEY (the widget key; leave it out while there is one widget)")
        return Command("setup", rest[0].strip("<>\"'") if rest else None)
    if verb == "stay":
        choice = rest[0].lower() if len(rest) == 1 else ""
        if choice not in ("on", "off"):
            return NotACommand("Use: stay on, or stay off")
        return Command("stay", choice)
    if rest:
        return NotACommand(f"{verb} takes nothing after it. {help_text()}")
    return Command(verb)


def help_text() -> str:
    return "Commands: " + "; ".join(f"{name}: {about}" for name, about in COMMAND_LIST)
