"""The Slack adapter's pure parts, without I/O: blocks, text, pacing, error mapping,
presence planning, caching, the manifest and the SLACK_* settings."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack import blocks
from adapters.slack.directory import TTLCache, placeholder_email, profile_from_user
from adapters.slack.errors import NoInstallation, classify
from adapters.slack.manifest import BOT_EVENTS, build_manifest, manifest_json
from adapters.slack.pacing import ChannelPacer
from adapters.slack.presence import Watched, plan_polls
from adapters.slack.text import escape, file_links, mentioned_users, to_plain
from bot.settings import ConfigError, Settings
from core.models import Conversation, Message, OfflineMessage

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 25, 14, 5, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _conv(**kw) -> Conversation:  # type: ignore[no-untyped-def]
    fields = {"id": 7, "widget_id": 1, "visitor_id": "v", "status": "open", "created_at": T0, "claimed_by": None,
              "visitor_name": None, "visitor_email": None, "page_url": None, "page_title": None, "language": None, "timezone": None}
    return Conversation(**{**fields, **kw})


def _error(status: int, error: str, headers: dict[str, str] | None = None) -> SlackApiError:
    response = AsyncSlackResponse(client=None, http_verb="POST", api_url="x", req_args={}, data={"ok": False, "error": error},
                                  headers=headers or {}, status_code=status)
    return SlackApiError("failed", response)


# -- blocks -------------------------------------------------------------------
def test_the_root_shows_who_where_when_and_the_buttons():
    conv = _conv(visitor_name="Joana", visitor_email="joana@example.com", page_url="https://shop.example/p?a=1&b=2",
                 page_title="Pricing <best>", language="pt-PT", timezone="Europe/Lisbon")
    text, root = blocks.root_message(conv, "Shop", first_text="Olá <!channel>", claimed_by=None)
    rendered = json.dumps(root)
    assert text == "New chat from Joana: Olá <!channel>"
    assert "*Joana* <mailto:joana@example.com|joana@example.com>" in rendered
    assert "https://shop.example/p?a=1&amp;b=2" in rendered and "Pricing &lt;best&gt;" in rendered
    assert "14:05 Europe/Lisbon (Wed)" in rendered and "pt-PT" in rendered
    assert "&lt;!channel&gt;" in rendered and "<!channel>" not in rendered  # a visitor cannot ping the channel
    [actions] = [b for b in root if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [("deskbell_claim", "7"), ("deskbell_close", "7")]


def test_a_claimed_root_drops_claim_and_a_closed_one_drops_both():
    _text, claimed = blocks.root_message(_conv(claimed_by=3), "Shop", first_text=None, claimed_by="Ana")
    assert "Claimed by *Ana*" in json.dumps(claimed)
    assert [e["action_id"] for b in claimed if b["type"] == "actions" for e in b["elements"]] == ["deskbell_close"]
    _text, closed = blocks.root_message(_conv(status="closed", claimed_by=3), "Shop", first_text=None, claimed_by="Ana")
    assert "Closed" in json.dumps(closed) and not [b for b in closed if b["type"] == "actions"]


def test_while_the_assistant_may_answer_the_root_offers_take_over_until_claimed_or_closed():
    _text, root = blocks.root_message(_conv(), "Shop", first_text="hi", claimed_by=None, assistant=True)
    [actions] = [b for b in root if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("deskbell_claim", "7"), ("deskbell_take_over", "7"), ("deskbell_close", "7")
    ]
    assert "The assistant is answering" in json.dumps(root)
    _text, claimed = blocks.root_message(_conv(claimed_by=3), "Shop", first_text=None, claimed_by="Ana", assistant=True)
    assert [e["action_id"] for b in claimed if b["type"] == "actions" for e in b["elements"]] == ["deskbell_close"]
    _text, closed = blocks.root_message(_conv(status="closed"), "Shop", first_text=None, claimed_by=None, assistant=True)
    assert not [b for b in closed if b["type"] == "actions"]


def test_take_over_texts_say_who_and_why_nothing_changed():
    assert blocks.take_over_note("Ana <3").startswith(":raising_hand: *Ana &lt;3* took over from the assistant")
    assert "someone already took over" in blocks.assistant_quiet_text("stopped", "taken_over")
    assert "handed the chat to the team" in blocks.assistant_quiet_text("handed_off", "keyword")


def test_an_unknown_time_zone_just_leaves_the_local_time_out():
    assert blocks.visitor_local_time("Mars/Olympus", T0) is None
    assert blocks.visitor_local_time(None, T0) is None


def test_relayed_lines_say_who_wrote_them():
    visitor = blocks.relay_message(Message(sender="visitor", author="Joana", text="a < b", internal=False))
    assert visitor == {"text": "a &lt; b", "username": "Joana", "icon_emoji": ":bust_in_silhouette:"}
    console = blocks.relay_message(Message(sender="agent", author="Ana", text="On it", internal=False))
    assert console == {"text": "*Ana* (console): On it"}
    note = blocks.relay_message(Message(sender="agent", author="Ana", text="note: VIP", internal=True))
    assert note["text"].startswith(":memo: *Note* by Ana")
    bot = blocks.relay_message(Message(sender="bot", author="Sam", text="Use <b>", internal=False))
    assert bot == {"text": ":robot_face: *Sam* (AI): Use &lt;b&gt;"}


def test_offline_post_offers_mark_handled_until_handled():
    row = OfflineMessage(id=4, name="Joe", email="joe@example.com", message="Call me", page_url=None, status="new")
    _text, post = blocks.offline_post(row, "Shop")
    assert "deskbell_offline_handled" in json.dumps(post)
    row.status = "handled"
    _text, done = blocks.offline_post(row, "Shop", handled_by="Ana")
    assert "Handled by Ana" in json.dumps(done) and "deskbell_offline_handled" not in json.dumps(done)


def test_status_report_says_why_a_widget_is_offline():
    rows = [
        blocks.WidgetReport("Shop", "k1", True, None, "live", ("Ana",), 2),
        blocks.WidgetReport("Docs", "k2", False, "outside_schedule", "form", (), 0),
    ]
    report = blocks.status_report(rows)
    assert "*Shop* (`k1`): :large_green_circle: *online*" in report and "on duty: Ana · open chats: 2" in report
    assert "outside opening hours" in report and "on duty: nobody" in report
    assert "/chat-setup" in blocks.status_report([])


def test_thread_links_open_in_any_workspace():
    assert blocks.thread_url("C1", "1700000000.000100") == "https://slack.com/archives/C1/p1700000000000100"


# -- text -----------------------------------------------------------------------
def test_slack_markup_becomes_plain_text_for_the_visitor():
    raw = "Hi <@U1>, see <https://x.example/a|the docs> or <https://x.example/b> &amp; <mailto:a@b.c|a@b.c> in <#C1|general> <!here>"
    assert mentioned_users(raw) == ["U1"]
    assert to_plain(raw, {"U1": "Joana"}) == "Hi @Joana, see the docs (https://x.example/a) or https://x.example/b & a@b.c (mailto:a@b.c) in #general @here"
    assert to_plain("<@U9>") == "@someone"
    assert escape("<a & b>") == "&lt;a &amp; b&gt;"


def test_shared_files_become_links():
    files = [{"name": "a.png", "permalink_public": "https://slack-files.com/a"}, {"title": "B", "url_private": "https://files.slack.com/b"}, {"name": "none"}]
    assert file_links(files) == ["a.png: https://slack-files.com/a", "B: https://files.slack.com/b"]


# -- pacing ----------------------------------------------------------------------
def test_posts_are_paced_to_one_per_second_per_channel_after_a_short_burst():
    clock = Clock()
    pacer = ChannelPacer(per_second=1.0, burst=3, clock=clock)
    assert [pacer.reserve("C1") for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]
    assert pacer.reserve("C2") == 0.0  # channels are independent
    clock.now = 10.0
    assert [pacer.reserve("C1") for _ in range(3)] == [0.0, 0.0, 0.0]  # the bucket refilled


# -- errors --------------------------------------------------------------------
def test_429_waits_as_slack_says():
    outcome = classify(_error(429, "ratelimited", {"Retry-After": "7"})).outcome
    assert (outcome.ok, outcome.status_code, outcome.retry_after, outcome.permanent) == (False, 429, 7.0, False)


@pytest.mark.parametrize("error", ["channel_not_found", "is_archived", "not_in_channel", "account_inactive", "invalid_auth", "token_revoked"])
def test_errors_no_retry_can_fix_break_the_binding_with_a_hint(error):
    failure = classify(_error(200, error))
    assert failure.outcome.permanent and failure.broken is not None and failure.broken.startswith(error + ": ")


def test_server_errors_and_network_trouble_are_retried_and_bad_requests_are_not():
    assert not classify(_error(503, "service_unavailable")).outcome.permanent
    assert not classify(ConnectionResetError("reset")).outcome.permanent
    assert not classify(TimeoutError()).outcome.permanent
    bad = classify(_error(200, "invalid_blocks"))
    assert bad.outcome.permanent and bad.broken is None
    assert classify(NoInstallation("T1")).broken is not None
    with pytest.raises(KeyError):
        classify(KeyError("a bug stays a bug"))


# -- presence planning ------------------------------------------------------------
def test_presence_polls_the_oldest_answers_first_within_each_workspaces_budget():
    team = [Watched(i, "T1", f"U{i}") for i in range(10)]
    other = [Watched(99, "T2", "U99")]
    last = {("T1", f"U{i}"): 100.0 - i for i in range(10)}  # U9 answered longest ago
    plan = plan_polls(team + other, last, {}, 200.0, interval_s=30, calls_per_minute=36, tick_s=5)
    assert [w.user_id for w in plan] == ["U9", "U8", "U7", "U99"]  # 36/min -> 3 calls per 5 s tick per workspace


def test_presence_answers_are_reused_until_due_and_429_pauses_the_workspace():
    watched = [Watched(1, "T1", "U1"), Watched(2, "T2", "U2")]
    assert plan_polls(watched, {("T1", "U1"): 90.0, ("T2", "U2"): 50.0}, {}, 100.0, interval_s=30, calls_per_minute=40, tick_s=5) == [watched[1]]
    assert plan_polls(watched, {}, {"T1": 130.0}, 100.0, interval_s=30, calls_per_minute=40, tick_s=5) == [watched[1]]


def test_many_agents_stretch_the_interval_to_stay_under_the_rate():
    team = [Watched(i, "T1", f"U{i}") for i in range(80)]
    last = {w.key: 100.0 for w in team}
    # 80 agents at 40 calls/min: each can be asked every 120 s, not every 30 s.
    assert plan_polls(team, last, {}, 160.0, interval_s=30, calls_per_minute=40, tick_s=5) == []
    assert len(plan_polls(team, last, {}, 220.0, interval_s=30, calls_per_minute=40, tick_s=5)) == 3


# -- directory ----------------------------------------------------------------------
def test_profiles_prefer_the_display_name_and_expire_from_the_cache():
    user = {"id": "U1", "name": "jo", "real_name": "Joana Silva", "profile": {"display_name": "Jo", "real_name": "Joana Silva", "email": "jo@x.io", "image_72": "a72", "image_192": "a192"}}
    profile = profile_from_user(user)
    assert (profile.name, profile.email, profile.avatar_url, profile.is_bot) == ("Jo", "jo@x.io", "a192", False)
    assert profile_from_user({"id": "U2", "real_name": "Real", "profile": {"display_name": ""}}).name == "Real"
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(10, clock)
    cache.put("a", 1)
    clock.now = 9.9
    assert cache.get("a") == 1
    clock.now = 10.0
    assert cache.get("a") is None
    assert placeholder_email("T1", "U1") == "slack-t1-u1@users.noreply.invalid"


# -- manifest and settings ----------------------------------------------------------
def test_the_committed_manifests_match_what_the_code_uses():
    assert (ROOT / "manifest/slack/manifest.json").read_text() == manifest_json()
    assert (ROOT / "manifest/slack/manifest.socket-mode.json").read_text() == manifest_json(socket_mode=True)


def test_the_manifest_points_every_url_at_this_deployment():
    manifest = build_manifest("https://chat.acme.test/")
    urls = {c["url"] for c in manifest["features"]["slash_commands"]}
    urls |= {manifest["settings"]["event_subscriptions"]["request_url"], manifest["settings"]["interactivity"]["request_url"]}
    assert urls == {"https://chat.acme.test/slack/events"}
    assert manifest["oauth_config"]["redirect_urls"] == ["https://chat.acme.test/slack/oauth_redirect"]
    assert sorted(c["command"] for c in manifest["features"]["slash_commands"]) == ["/chat-offline", "/chat-online", "/chat-setup", "/chat-status", "/chat-stay"]
    assert set(BOT_EVENTS) >= {"message.channels", "message.groups", "app_home_opened"}
    socket = build_manifest(None, socket_mode=True)
    assert socket["settings"]["socket_mode_enabled"] is True and "request_url" not in socket["settings"]["interactivity"]


def test_slack_settings_are_read_and_the_api_url_normalized():
    s = Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "sec", "SLACK_API_URL": "http://127.0.0.1:9/api"}, dotenv=None)
    assert (s.slack_enabled, s.slack_api_url) == (True, "http://127.0.0.1:9/api/")
    assert Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}, dotenv=None).slack_enabled
    assert not Settings.from_env({}, dotenv=None).slack_enabled


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET"),  # HTTP mode cannot verify anything
        ({"SLACK_BOT_TOKEN": "xoxp-user", "SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-2"}, "SLACK_APP_TOKEN"),
        ({"SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN"),
        ({"SLACK_CLIENT_ID": "1.2", "SLACK_SIGNING_SECRET": "s"}, "SLACK_CLIENT_SECRET"),
        ({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "c"}, "SLACK_SIGNING_SECRET"),
        ({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "c", "SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_CLIENT_ID"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL"),
    ],
)
def test_a_wrong_slack_setting_names_the_variable_in_one_line(env, name):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env, dotenv=None)
    assert str(caught.value).startswith(name + ":") and "\n" not in str(caught.value)
