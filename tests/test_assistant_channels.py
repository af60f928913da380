"""The assistant in a widget bound to a Slack channel and a Teams channel at once: "Take over"
pressed in one rebuilds the chat's root in both, so no channel keeps offering it; and the
shared read of a root's state that both the relays and the clicks use.

The whole app with both adapters against the fake Slack and the fake Bot
Connector; the outbox worker delivers to both and answers ``ai.reply`` rows,
as ``deskbell worker`` does. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from core.bindings import bind_channel
from core.conversations import post_visitor_message
from core.kb_import import read_path
from core.knowledge import import_entries
from core.models import AssistantThread, ChannelBinding, MessageLink, ThreadLink
from core.services import Services
from core.widgets import create_widget
from adapters.channel_relay import root_state
from adapters.teams.adapter import TeamsAdapter
from bot.seed import SAMPLE_KB
from tests.conftest import eventually
from tests.fakes.bot_connector import FakeBotConnector, card_invoke
from tests.fakes.slack_api import action_form
from tests.fakes.slack_harness import SlackRig, slack_rig
from tests.test_teams import ANA, bound_channel, card_of, card_text, fake, post, teams  # noqa: F401
from tests.widget_client import Visitor

SLACK_CHANNEL = "C0SUPPORT"
EMBED_QUESTION = "How can I put the chat widget on my website?"


@pytest.fixture
async def rig(services: Services, aiohttp_client, aiohttp_server, teams: TeamsAdapter):  # type: ignore[no-untyped-def]  # noqa: F811
    async with slack_rig(services, aiohttp_client, aiohttp_server, teams=teams) as rig:
        rig.fake.add_user("UBEN", "Ben Ode", email="ben@example.com")
        yield rig


@pytest.fixture
async def widget(rig: SlackRig, fake: FakeBotConnector):  # type: ignore[no-untyped-def]  # noqa: F811
    """An assistant widget (nobody on duty) bound to a Slack channel and a Teams channel."""
    async with rig.services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop", "ai_enabled": True})
        await import_entries(session, widget.id, read_path(SAMPLE_KB))
    await rig.bind(widget.id, SLACK_CHANNEL)
    await bound_channel(rig.client, fake)
    await rig.services.watcher.refresh()
    return widget


async def _roots(rig: SlackRig) -> dict[str, ThreadLink]:
    """The chat's thread link per platform, once both relays have posted its root."""

    async def both() -> dict[str, ThreadLink] | None:
        async with rig.services.db.read() as session:
            query = select(ChannelBinding.platform, ThreadLink).join(ChannelBinding, ChannelBinding.id == ThreadLink.binding_id)
            links = {platform: link for platform, link in (await session.execute(query)).all()}
        return links if len(links) == 2 else None

    return await eventually(both)


def _slack_buttons(rig: SlackRig, ts: str) -> list[str]:
    message = rig.fake.messages[(SLACK_CHANNEL, ts)]
    return [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def _teams_card(fake: FakeBotConnector, chain: str) -> dict[str, Any]:  # noqa: F811
    return card_of(fake.chain(chain)[0])


def _teams_buttons(fake: FakeBotConnector, chain: str) -> list[str]:  # noqa: F811
    return [a["title"] for a in _teams_card(fake, chain)["actions"]]


async def _assistant(services: Services, conversation_id: int) -> tuple[str, str | None]:
    async with services.db.read() as session:
        thread = await session.get(AssistantThread, conversation_id)
    assert thread is not None
    return thread.status, thread.reason


async def _answered_chat(rig: SlackRig, widget: Any, fake: FakeBotConnector) -> tuple[int, ThreadLink, ThreadLink]:  # noqa: F811
    visitor = await Visitor.connect(rig.client, widget.key)
    ack = await visitor.say(EMBED_QUESTION, "c1")
    while (await visitor.next("message", timeout=10))["from"] != "bot":  # the first answer loads the encoder: be patient
        pass
    links = await _roots(rig)
    slack, teams_link = links["slack"], links["teams"]
    # Both roots offer "Take over" while the assistant answers.
    assert "deskbell_take_over" in _slack_buttons(rig, slack.root_ref)
    assert "Take over" in _teams_buttons(fake, teams_link.thread_ref)
    return ack["conversation_id"], slack, teams_link


async def test_take_over_in_slack_drops_the_button_from_the_teams_card_too(rig: SlackRig, widget, fake):  # noqa: F811
    conversation_id, slack, teams_link = await _answered_chat(rig, widget, fake)

    click = action_form("deskbell_take_over", str(conversation_id), user="UBEN", channel=SLACK_CHANNEL, message_ts=slack.root_ref)
    assert (await rig.sender.action(click)).status == 200
    await eventually(lambda: [m for m in rig.fake.thread(SLACK_CHANNEL, slack.root_ref) if "took over" in m["text"]])
    assert await _assistant(rig.services, conversation_id) == ("stopped", "taken_over")
    assert _slack_buttons(rig, slack.root_ref) == ["deskbell_claim", "deskbell_close"]

    # The Teams card is rebuilt through the outbox: no "Take over", same chat, same state.
    await eventually(lambda: _teams_buttons(fake, teams_link.thread_ref) == ["Claim", "Close"])
    card = _teams_card(fake, teams_link.thread_ref)
    assert "Waiting for an agent" in card_text(card) and EMBED_QUESTION in card_text(card)
    assert {u.activity_id for u in fake.of_kind("update")} == {teams_link.root_ref}


async def test_take_over_in_teams_drops_the_button_from_the_slack_root_too(rig: SlackRig, widget, fake):  # noqa: F811
    conversation_id, slack, teams_link = await _answered_chat(rig, widget, fake)

    resp = await post(rig.client, card_invoke(fake.service_url, ANA, teams_link.thread_ref, "take_over", conversation_id))
    assert (await resp.json())["statusCode"] == 200
    assert await _assistant(rig.services, conversation_id) == ("stopped", "taken_over")
    assert _teams_buttons(fake, teams_link.thread_ref) == ["Claim", "Close"]  # where it was pressed: at once

    # The Slack root is rebuilt through the outbox: no "Take over", the visitor's question still on it.
    await eventually(lambda: _slack_buttons(rig, slack.root_ref) == ["deskbell_claim", "deskbell_close"])
    root = rig.fake.messages[(SLACK_CHANNEL, slack.root_ref)]
    assert EMBED_QUESTION in str(root["blocks"]) and "Waiting for someone" in str(root["blocks"])
    assert {u.args["ts"] for u in rig.fake.calls_of("chat.update")} == {slack.root_ref}


async def test_a_root_clicked_before_its_thread_link_is_stored_is_rebuilt_from_the_click(services: Services):
    """The root was posted but the relay's outcome (the thread link) is not written yet: a click on it
    still rebuilds it; the outbox's root update waits for the link instead."""
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop", "ai_enabled": True})
        binding = await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1")
        posted = await post_visitor_message(session, widget, "v1", EMBED_QUESTION, client_id="c1")
        session.add(MessageLink(message_id=posted.message.id, binding_id=binding.id, platform_ref="1700000000.000100"))
    async with services.db.read() as session:
        assert await root_state(session, posted.conversation.id, binding.id) is None
        root = await root_state(session, posted.conversation.id, binding.id, clicked_root="1700000000.000100")
    assert root is not None
    assert (root.root_ref, root.thread_ref, root.first_text) == ("1700000000.000100", None, EMBED_QUESTION)
    assert (root.conv.id, root.widget.id, root.claimed_by) == (posted.conversation.id, widget.id, None)
