"""First-run demo data so a newcomer sees the widget work with no account anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from core.agents import create_agent, find_agent, issue_token
from core.apikeys import create_api_key
from core.errors import NotFound
from core.instance import get_setting, set_setting
from core.kb_import import read_path
from core.knowledge import import_entries
from core.widgets import count_widgets, create_widget

DEMO_AGENT_EMAIL = "agent@deskbell.localhost"
SAMPLE_KB = Path(__file__).parent / "sample_kb"


@dataclass
class DemoCredentials:
    seeded_now: bool
    widget_key: str | None = None
    api_key: str | None = None  # only on the run that created it: it is stored hashed
    console_link_token: str | None = None


async def seed_demo(session: AsyncSession) -> DemoCredentials:
    """Create a demo widget, agent and API key on an empty database.

    On later starts of a demo install, mint a fresh console sign-in link (old
    ones stay valid until they expire); an operator's own data is never touched.
    """
    if await count_widgets(session) == 0 and await get_setting(session, "demo_seeded") is None:
        # The assistant answers while nobody is on duty, from a knowledge base about
        # deskbell itself: the AI path works with no account (retrieval-only).
        widget = await create_widget(session, {"name": "Demo widget", "ai_enabled": True})
        await seed_sample_kb(session, widget.id)
        agent = await create_agent(session, {"name": "Demo Agent", "email": DEMO_AGENT_EMAIL})
        _key, secret = await create_api_key(session, "demo")
        await set_setting(session, "demo_seeded", widget.key)
        return DemoCredentials(True, widget.key, secret, await issue_token(session, agent, "login"))
    widget_key = await get_setting(session, "demo_seeded")
    if widget_key is None:
        return DemoCredentials(False)
    try:
        agent = await find_agent(session, DEMO_AGENT_EMAIL)
    except NotFound:
        return DemoCredentials(False, widget_key)
    return DemoCredentials(False, widget_key, None, await issue_token(session, agent, "login"))


async def seed_sample_kb(session: AsyncSession, widget_id: int) -> int:
    """Import bot/sample_kb/ into a widget; returns how many entries it holds."""
    created, _updated = await import_entries(session, widget_id, read_path(SAMPLE_KB))
    return created
