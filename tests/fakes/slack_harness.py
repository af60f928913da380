"""The whole app wired to the fake Slack, as ``deskbell run`` wires it to the real one.

Settings go through ``bot.wiring.build_slack`` with ``SLACK_API_URL`` pointing
at the fake; the outbox dispatcher runs in the background like the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from core.bindings import bind_channel
from core.dispatch import Dispatcher
from core.models import ChannelBinding
from core.services import Services

from adapters.slack.adapter import SlackAdapter
from bot.app import build_app
from bot.settings import Settings
from bot.wiring import build_dispatcher, build_slack
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET, TEAM_ID, FakeSlack, SlackSender, fake_app

if TYPE_CHECKING:
    from adapters.teams.adapter import TeamsAdapter


@dataclass
class SlackRig:
    fake: FakeSlack
    client: Any
    sender: SlackSender
    adapter: SlackAdapter
    dispatcher: Dispatcher
    services: Services
    settings: Settings
    extras: dict[str, Any] = field(default_factory=dict)

    async def bind(self, widget_id: int, channel_id: str = "C0SUPPORT", name: str = "support") -> ChannelBinding:
        if channel_id not in self.fake.channels:
            self.fake.add_channel(channel_id, name, member=True)
        async with self.services.db.write() as session:
            return await bind_channel(session, widget_id, "slack", workspace_id=TEAM_ID, channel_id=channel_id, channel_name=name)


@contextlib.asynccontextmanager
async def slack_rig(
    services: Services,
    aiohttp_client: Any,
    aiohttp_server: Any,
    *,
    run_dispatcher: bool = True,
    teams: TeamsAdapter | None = None,
    **slack: str | None,
) -> AsyncIterator[SlackRig]:
    """``teams`` mounts a Teams adapter beside Slack (its outbox handlers too), as when both are configured."""
    fake = FakeSlack()
    server = await aiohttp_server(fake_app(fake))
    fake.base_url = str(server.make_url("")).rstrip("/")
    values: dict[str, Any] = {"slack_bot_token": BOT_TOKEN, "slack_signing_secret": SIGNING_SECRET, **slack}
    settings = replace(
        Settings(database_url=services.db.url, secret_key="test-secret-key-0123456789"),
        slack_api_url=fake.api_url,
        **values,
    )
    adapter = build_slack(services, settings)
    assert adapter is not None
    client = await aiohttp_client(build_app(services, slack=adapter, teams=teams))
    dispatcher = build_dispatcher(services, settings, slack=adapter, teams=teams)
    dispatcher.poll_s = 0.2
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop)) if run_dispatcher else None
    try:
        yield SlackRig(fake, client, SlackSender(client), adapter, dispatcher, services, settings)
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 10)
        await client.close()  # the app's cleanup: Socket Mode disconnects
        await fake.close_sockets()
        await adapter.close()
