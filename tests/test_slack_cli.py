"""``deskbell manifest slack`` and ``deskbell widget bind-slack``, run as operators run them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from adapters.slack.manifest import build_manifest
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET, TEAM_ID, FakeSlack, fake_app

DESKBELL = str(Path(sys.executable).parent / "deskbell")


async def deskbell(db_url: str, *args: str, **extra: str) -> tuple[int, str, str]:
    """Run the command line without blocking the loop (the fake Slack answers from it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBELL_", "SLACK_", "PORT"))}
    proc = await asyncio.create_subprocess_exec(
        DESKBELL, *args, env={**env, "DESKBELL_DATABASE_URL": db_url, **extra},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd="/tmp",
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_manifest_slack_prints_the_manifest_for_this_deployment(tmp_path):
    empty_db_url = f"sqlite:///{tmp_path / 'unused.db'}"  # printing a manifest touches no database
    code, out, _err = await deskbell(empty_db_url, "manifest", "slack", DESKBELL_PUBLIC_URL="https://chat.acme.test")
    assert code == 0 and json.loads(out) == build_manifest("https://chat.acme.test")
    code, out, _err = await deskbell(empty_db_url, "manifest", "slack", "--socket-mode")
    assert code == 0 and json.loads(out)["settings"]["socket_mode_enabled"] is True
    code, out, err = await deskbell(empty_db_url, "manifest", "slack")
    assert code == 2 and err.startswith("deskbell: DESKBELL_PUBLIC_URL:") and err.count("\n") == 1


async def test_a_half_configured_slack_stops_with_one_line(tmp_path):
    empty_db_url = f"sqlite:///{tmp_path / 'unused.db'}"
    code, _out, err = await deskbell(empty_db_url, "web", SLACK_BOT_TOKEN="xoxb-1")
    assert code == 2 and err.startswith("deskbell: SLACK_SIGNING_SECRET:") and "Traceback" not in err


async def test_bind_slack_joins_a_public_channel_and_refuses_a_private_one(empty_db_url, aiohttp_server):
    fake = FakeSlack()
    server = await aiohttp_server(fake_app(fake))
    fake.base_url = str(server.make_url("")).rstrip("/")
    fake.add_channel("C0PUBLIC", "support")
    fake.add_channel("G0PRIVATE", "secret", private=True)
    slack = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake.api_url}
    assert (await deskbell(empty_db_url, "migrate"))[0] == 0
    code, out, err = await deskbell(empty_db_url, "widget", "create", "Shop", "--json")
    key = json.loads(out)["key"]

    code, out, err = await deskbell(empty_db_url, "widget", "bind-slack", key, "C0PUBLIC", "--json", **slack)
    assert code == 0, err
    binding = json.loads(out)
    assert (binding["channel_id"], binding["channel_name"], binding["workspace_id"], binding["status"]) == ("C0PUBLIC", "support", TEAM_ID, "ok")
    assert [c.args["channel"] for c in fake.calls_of("conversations.join")] == ["C0PUBLIC"]

    code, out, err = await deskbell(empty_db_url, "widget", "bind-slack", key, "G0PRIVATE", **slack)
    assert code == 1 and "/invite @deskbell" in err and "bind-slack" in err
