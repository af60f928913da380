"""Slash commands, buttons and the App Home, as Slack sends them (signed, form-encoded)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.models import Agent, ChannelBinding, OfflineMessage, ThreadLink
from core.services import Services
from core.widgets import create_widget
from tests.conftest import eventually
from tests.fakes.slack_api import action_form, command_form, event_body
from tests.fakes.slack_harness import SlackRig, slack_rig
from tests.widget_client import Visitor

CHANNEL = "C0SUPPORT"


@pytest.fixture
async def rig(services: Services, aiohttp_client, aiohttp_server):  # type: ignore[no-untyped-def]
    async with slack_rig(services, aiohttp_client, aiohttp_server) as rig:
        rig.fake.add_user("UANA", "Ana Lima", email="ana@example.com")
        rig.fake.add_user("UBEN", "Ben Ode", email="ben@example.com")
        yield rig


async def _widget(rig: SlackRig, name: str = "Shop"):  # type: ignore[no-untyped-def]
    async with rig.services.db.write() as session:
        return await create_widget(session, {"name": name})


async def _command(rig: SlackRig, command: str, text: str = "", *, user: str = "UANA", channel: str = CHANNEL) -> str:
    """Run a slash command; return the ephemeral answer posted to its response_url."""
    hook = f"h{len(rig.fake.responses)}"
    resp = await rig.sender.command(command_form(command, text, user=user, channel=channel, response_url=rig.fake.response_url(hook)))
    assert resp.status == 200  # acknowledged at once; the answer follows
    [answer] = await eventually(lambda: [r for r in rig.fake.responses if r["hook"] == hook])
    assert answer["response_type"] == "ephemeral"
    return str(answer["text"])


async def _agent(rig: SlackRig, email: str = "ana@example.com") -> Agent:
    async with rig.services.db.read() as session:
        return (await session.execute(select(Agent).where(Agent.email == email))).scalar_one()


async def test_chat_setup_joins_a_public_channel_and_binds_the_only_widget(rig: SlackRig):
    widget = await _widget(rig)
    rig.fake.add_channel(CHANNEL, "support", member=False)
    answer = await _command(rig, "/chat-setup")
    assert "Shop" in answer and widget.key in answer
    assert [c.args["channel"] for c in rig.fake.calls_of("conversations.join")] == [CHANNEL]
    async with rig.services.db.read() as session:
        binding = (await session.execute(select(ChannelBinding))).scalar_one()
    assert (binding.widget_id, binding.channel_id, binding.channel_name, binding.workspace_id) == (widget.id, CHANNEL, "support", "T0DESK")


async def test_chat_setup_in_a_private_channel_asks_to_invite_the_bot(rig: SlackRig):
    await _widget(rig)
    rig.fake.add_channel("G0SECRET", "secret", private=True, member=False)
    answer = await _command(rig, "/chat-setup", channel="G0SECRET")
    assert "/invite @deskbell" in answer
    async with rig.services.db.read() as session:
        assert (await session.execute(select(ChannelBinding))).first() is None
    rig.fake.channels["G0SECRET"]["is_member"] = True  # invited
    assert "Done" in await _command(rig, "/chat-setup", channel="G0SECRET")


async def test_chat_setup_needs_a_key_when_there_are_several_widgets(rig: SlackRig):
    await _widget(rig, "Shop")
    docs = await _widget(rig, "Docs")
    rig.fake.add_channel(CHANNEL, "support", member=True)
    answer = await _command(rig, "/chat-setup")
    assert "several widgets" in answer and docs.key in answer
    assert "Docs" in await _command(rig, "/chat-setup", docs.key)
    assert "unknown widget key" in await _command(rig, "/chat-setup", "nope")


async def test_duty_commands_flip_the_widget_and_status_reports_it(rig: SlackRig):
    widget = await _widget(rig)
    await rig.bind(widget.id, CHANNEL)
    await rig.services.watcher.refresh()
    visitor = await Visitor.connect(rig.client, widget.key)
    assert visitor.welcome["status"]["online"] is False

    assert "on duty" in await _command(rig, "/chat-online")
    assert (await visitor.next("status"))["online"] is True
    status = await _command(rig, "/chat-status")
    assert "*Shop*" in status and "online" in status and "Ana Lima" in status and "open chats: 0" in status

    assert "Usage" in await _command(rig, "/chat-stay", "maybe")
    await _command(rig, "/chat-stay", "on")
    assert (await _agent(rig)).stay_available is True

    await _command(rig, "/chat-offline")
    assert (await visitor.next("status"))["online"] is False
    status = await _command(rig, "/chat-status")
    assert "offline" in status and "nobody is available" in status and "on duty: nobody" in status


async def _open_chat(rig: SlackRig):  # type: ignore[no-untyped-def]
    widget = await _widget(rig)
    await rig.bind(widget.id, CHANNEL)
    visitor = await Visitor.connect(rig.client, widget.key)
    ack = await visitor.say("Can someone help?", "c1")

    async def root():  # type: ignore[no-untyped-def]
        async with rig.services.db.read() as session:
            link = (await session.execute(select(ThreadLink))).scalar_one_or_none()
        return link and rig.fake.messages.get((CHANNEL, link.root_ref))

    return visitor, ack["conversation_id"], await eventually(root)


async def test_claim_updates_the_root_and_a_second_claim_is_refused_ephemerally(rig: SlackRig):
    _visitor, conv_id, root = await _open_chat(rig)
    click = action_form("deskbell_claim", str(conv_id), user="UANA", channel=CHANNEL, message_ts=root["ts"])
    assert (await rig.sender.action(click)).status == 200
    await eventually(lambda: "Claimed by *Ana Lima*" in str(rig.fake.messages[(CHANNEL, root["ts"])]["blocks"]))
    buttons = [e["action_id"] for b in rig.fake.messages[(CHANNEL, root["ts"])]["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["deskbell_close"]

    assert (await rig.sender.action(click)).status == 200  # Ana's double click: harmless
    late = action_form("deskbell_claim", str(conv_id), user="UBEN", channel=CHANNEL, message_ts=root["ts"])
    await rig.sender.action(late)
    [told] = await eventually(lambda: rig.fake.calls_of("chat.postEphemeral"))
    assert told.args["user"] == "UBEN" and "already claimed" in told.args["text"]
    async with rig.services.db.read() as session:
        from core.models import Conversation

        conv = await session.get(Conversation, conv_id)
    assert conv is not None and conv.claimed_by == (await _agent(rig)).id


async def test_close_button_closes_for_the_visitor_and_on_the_root(rig: SlackRig):
    visitor, conv_id, root = await _open_chat(rig)
    await rig.sender.action(action_form("deskbell_close", str(conv_id), user="UBEN", channel=CHANNEL, message_ts=root["ts"]))
    assert (await visitor.next("conversation"))["state"] == "closed"
    await eventually(lambda: "Closed" in str(rig.fake.messages[(CHANNEL, root["ts"])]["blocks"]))
    assert not [b for b in rig.fake.messages[(CHANNEL, root["ts"])]["blocks"] if b["type"] == "actions"]


async def test_offline_messages_post_with_mark_handled_which_updates_the_stored_message(rig: SlackRig):
    widget = await _widget(rig)
    await rig.bind(widget.id, CHANNEL)
    form = {"name": "Joe", "email": "joe@example.com", "message": "Call me back"}
    resp = await rig.client.post(f"/widget/{widget.key}/offline-messages", json=form)
    assert resp.status == 201
    row_id = (await resp.json())["id"]
    [post] = await eventually(lambda: rig.fake.posts(CHANNEL))
    assert "Call me back" in str(post["blocks"]) and "deskbell_offline_handled" in str(post["blocks"])
    await rig.sender.action(action_form("deskbell_offline_handled", str(row_id), user="UANA", channel=CHANNEL, message_ts=post["ts"]))
    await eventually(lambda: "Handled by Ana Lima" in str(rig.fake.messages[(CHANNEL, post["ts"])]["blocks"]))
    async with rig.services.db.read() as session:
        stored = await session.get(OfflineMessage, row_id)
    assert stored is not None and stored.status == "handled" and stored.handled_at is not None


async def test_app_home_shows_duty_and_its_buttons_change_it(rig: SlackRig):
    widget = await _widget(rig)
    await rig.bind(widget.id, CHANNEL)
    await rig.sender.event(event_body({"type": "app_home_opened", "user": "UANA", "channel": "D0HOME", "tab": "home", "event_ts": "1.2"}))
    [published] = await eventually(lambda: rig.fake.calls_of("views.publish"))
    view = str(published.args["view"])
    assert published.args["user_id"] == "UANA" and "off duty" in view and "deskbell_home_duty" in view

    await rig.sender.action(action_form("deskbell_home_duty", "on", user="UANA", channel=None, container_type="view"))
    await eventually(lambda: len(rig.fake.calls_of("views.publish")) == 2)
    assert "on duty" in str(rig.fake.calls_of("views.publish")[-1].args["view"])
    assert (await _agent(rig)).on_duty is True

    await rig.sender.action(action_form("deskbell_home_stay", "on", user="UANA", channel=None, container_type="view"))
    await eventually(lambda: len(rig.fake.calls_of("views.publish")) == 3)
    assert (await _agent(rig)).stay_available is True
