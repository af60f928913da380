"""The Teams adapter's pure parts: cards, commands, text, ids, error mapping, pacing, activity reading,
settings and the app package. No I/O beyond a temporary file."""

from __future__ import annotations

import json
import random
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pytest
from microsoft_agents.activity import Activity
from multidict import CIMultiDict, CIMultiDictProxy

from adapters.teams import cards
from adapters.teams.commands import Command, NotACommand, parse_command
from adapters.teams.config import TeamsConfig
from adapters.teams.errors import TokenError, backoff_s, classify
from adapters.teams.ids import chain_id, channel_part, created_chain_id, event_key, root_part
from adapters.teams.inbound import read_inbound
from adapters.teams.manifest import ManifestError, package, render, values_for
from adapters.teams.pacing import Pacer
from adapters.teams.text import escape, relay_line, strip_mention, to_plain
from bot.cli import main
from bot.settings import ConfigError, Settings
from tests.fakes.bot_connector import BOT_ID, CHANNEL, TENANT, TeamsUser, channel_message, personal_message

APP_ID = "3f9b8a41-5c2d-4e6f-8a7b-9c0d1e2f3a4b"
ANA = TeamsUser("Ana Lima", "6f1d2c3b-1111-4a5b-9c8d-0123456789ab", "ana@acme.example")
STARTED = datetime(2026, 11, 24, 13, 5, tzinfo=timezone.utc)


def facts(**over) -> cards.ChatFacts:  # type: ignore[no-untyped-def]
    base = dict(
        conversation_id=7, widget_name="Shop", visitor_name="Jo", visitor_email="jo@example.com",
        page_url="https://shop.example/cart", page_title="Cart", timezone="Europe/Lisbon", started_at=STARTED,
        status="open", claimed_by=None, first_text="**Free** [money](https://evil.example)",
    )
    base.update(over)
    return cards.ChatFacts(**base)


def texts(card: cards.Card) -> list[str]:
    out = []
    for element in card["body"]:
        if "text" in element:
            out.append(element["text"])
        out.extend(run["text"] for run in element.get("inlines", []))
    return out


# -- cards ---------------------------------------------------------------------


def test_the_root_card_shows_who_where_when_and_claim_close():
    card = cards.root_card(facts())
    shown = " ".join(texts(card))
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    for part in ("New chat on Shop", "Jo", "jo@example.com", "Cart (https://shop.example/cart)", "13:05 Europe/Lisbon (Tue)", "Waiting for an agent"):
        assert part in shown
    assert [(a["type"], a["title"], a["data"]) for a in card["actions"]] == [
        ("Action.Submit", "Claim", {"deskbell": "claim", "conversation_id": 7}),
        ("Action.Submit", "Close", {"deskbell": "close", "conversation_id": 7}),
    ]


def test_visitor_text_goes_in_text_runs_so_teams_shows_it_verbatim():
    card = cards.root_card(facts())
    [block] = [e for e in card["body"] if e.get("separator")]
    assert block["type"] == "RichTextBlock" and block["inlines"] == [{"type": "TextRun", "text": "**Free** [money](https://evil.example)"}]
    assert all(e["type"] != "TextBlock" or "evil" not in e["text"] for e in card["body"])


def test_a_claimed_card_loses_claim_and_a_closed_one_loses_both():
    claimed = cards.root_card(facts(claimed_by="Ana"))
    assert "Claimed by Ana" in texts(claimed)
    assert [a["title"] for a in claimed["actions"]] == ["Close"]
    closed = cards.root_card(facts(status="closed", claimed_by="Ana"))
    assert "actions" not in closed and any("Closed (handled by Ana)" in t for t in texts(closed))


def test_while_the_assistant_may_answer_the_card_offers_take_over_until_claimed_or_closed():
    card = cards.root_card(facts(assistant=True))
    assert [(a["title"], a["data"]) for a in card["actions"]] == [
        ("Claim", {"deskbell": "claim", "conversation_id": 7}),
        ("Take over", {"deskbell": "take_over", "conversation_id": 7}),
        ("Close", {"deskbell": "close", "conversation_id": 7}),
    ]
    assert any("The assistant is answering" in t for t in texts(card))
    assert [a["title"] for a in cards.root_card(facts(assistant=True, claimed_by="Ana"))["actions"]] == ["Close"]
    assert "actions" not in cards.root_card(facts(assistant=True, status="closed"))


def test_take_over_texts_say_who_and_why_nothing_changed():
    assert cards.take_over_note("Ana").startswith("Ana took over from the assistant")
    assert cards.assistant_quiet_text("stopped", "agent_replied").endswith("someone from the team already replied.")
    assert "handed the chat to the team" in cards.assistant_quiet_text("handed_off", "asked_for_human")


def test_unknown_time_zones_leave_the_local_time_out():
    assert not any("Local time" in t for t in texts(cards.root_card(facts(timezone="Mars/Olympus"))))
    assert cards.local_time(None, STARTED) is None


def test_a_visitor_without_name_is_shown_by_email_or_as_visitor():
    assert cards.visitor_label(None, "sam@example.com") == "sam"
    assert cards.visitor_label(None, None) == "Visitor"


def test_offline_cards_offer_mark_handled_until_handled():
    row = cards.OfflineFacts(3, "Shop", "Jo", "jo@example.com", "Call me", "https://shop.example", "new")
    assert cards.offline_card(row)["actions"][0]["data"] == {"deskbell": "handled", "offline_message_id": 3}
    handled = cards.offline_card(cards.OfflineFacts(3, "Shop", "Jo", "jo@example.com", "Call me", None, "handled"))
    assert "actions" not in handled


def test_the_status_card_says_duty_availability_and_widget_states():
    status = cards.AgentStatus("Ana", True, False, True, (("Shop", True, None), ("Docs", False, "outside_schedule")))
    shown = " ".join(texts(cards.status_card(status)))
    assert "On duty, available to visitors" in shown and "outside opening hours" in shown
    assert cards.status_summary(status) == "Ana: on duty, available"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"deskbell": "claim", "conversation_id": 5}, cards.CardAction("claim", 5)),
        ({"deskbell": "close", "conversation_id": "5"}, cards.CardAction("close", 5)),
        ({"deskbell": "handled", "offline_message_id": 9}, cards.CardAction("handled", 9)),
        ({"action": {"type": "Action.Execute", "verb": "claim", "data": {"conversation_id": 5}}}, cards.CardAction("claim", 5)),
        ({"deskbell": "take_over", "conversation_id": 5}, cards.CardAction("take_over", 5)),
        ({"action": {"type": "Action.Execute", "verb": "take_over", "data": {"conversation_id": 5}}}, cards.CardAction("take_over", 5)),
        ({"deskbell": "claim"}, None),
        ({"deskbell": "claim", "conversation_id": True}, None),
        ({"deskbell": "claim", "conversation_id": -1}, None),
        ({"deskbell": "explode", "conversation_id": 5}, None),
        ({"other_app": "x"}, None),
        ("claim", None),
        (None, None),
    ],
)
def test_card_actions_are_read_from_submit_and_execute_payloads(value, expected):
    assert cards.parse_card_action(value) == expected


# -- commands ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("online", Command("online")),
        ("  Online! ", Command("online")),
        ("/status", Command("status")),
        ("offline", Command("offline")),
        ("stay on", Command("stay", "on")),
        ("STAY OFF", Command("stay", "off")),
        ("setup", Command("setup")),
        ("setup w_abc123", Command("setup", "w_abc123")),
        ("help", Command("help")),
        ("<p>online</p>", Command("online")),
        ("", None),
    ],
)
def test_commands_are_forgiving_about_case_and_punctuation(text, expected):
    assert parse_command(text) == expected


@pytest.mark.parametrize("text", ["stay", "stay maybe", "online now", "setup a b", "dance"])
def test_malformed_commands_say_how_to_use_them(text):
    parsed = parse_command(text)
    assert isinstance(parsed, NotACommand) and parsed.reason


# -- text ----------------------------------------------------------------------


def test_visitor_text_is_escaped_into_teams_xml():
    assert escape("<at>Everyone</at> & <b>hi</b>\nbye") == "&lt;at&gt;Everyone&lt;/at&gt; &amp; &lt;b&gt;hi&lt;/b&gt;<br>bye"


def test_relay_lines_name_the_author_and_mark_notes():
    assert relay_line("visitor", None, "hi <you>") == "<b>Visitor</b>: hi &lt;you&gt;"
    assert relay_line("agent", "Ana", "on it") == "<b>Ana</b> (to the visitor): on it"
    assert relay_line("agent", "Ana", "note: VIP", internal=True).startswith("<b>Note by Ana</b>")
    assert relay_line("system", None, "closed") == "<i>closed</i>"


def test_agent_text_from_teams_becomes_plain_text():
    html = '<p>Hi <at>Jo</at>,</p><p>see <a href="https://docs.example/a">the docs</a> &amp; call&nbsp;us</p>'
    assert to_plain(html) == "Hi Jo,\nsee the docs (https://docs.example/a) & call us"
    assert to_plain("line one<br>line two") == "line one\nline two"
    assert to_plain('<a href="https://x.example">https://x.example</a>') == "https://x.example"


def test_only_the_bots_own_mention_is_stripped():
    assert strip_mention("<at>deskbell</at> setup", "deskbell") == "setup"
    assert strip_mention("<at>Ben</at> can you take this?", "deskbell") == "<at>Ben</at> can you take this?"


# -- ids -----------------------------------------------------------------------


def test_reply_chain_ids_split_into_channel_and_root():
    chain = "19:abc@thread.tacv2;messageid=1700000000001"
    assert channel_part(chain) == "19:abc@thread.tacv2" and root_part(chain) == "1700000000001"
    assert root_part("19:abc@thread.tacv2") is None and root_part("19:abc;messageid=") is None
    assert chain_id(chain, "42") == "19:abc@thread.tacv2;messageid=42"


def test_a_created_conversation_id_always_names_its_root():
    assert created_chain_id("19:abc@thread.tacv2", "99") == "19:abc@thread.tacv2;messageid=99"
    assert created_chain_id("19:abc@thread.tacv2;messageid=99", "99") == "19:abc@thread.tacv2;messageid=99"


def test_event_keys_are_per_channel_and_bounded():
    assert event_key("1", "19:a;messageid=5") == "1@19:a" != event_key("1", "19:b;messageid=5")
    assert len(event_key("1", "x" * 500)) == 200


# -- errors --------------------------------------------------------------------


def response_error(status: int, headers: dict[str, str] | None = None) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(
        None, (), status=status, message='{"error":{"code":"X"}}',  # type: ignore[arg-type]
        headers=CIMultiDictProxy(CIMultiDict(headers or {})),
    )


def test_429_honours_retry_after_and_falls_back_to_backoff():
    assert classify(response_error(429, {"Retry-After": "7"})).outcome.retry_after == 7
    assert 0.8 <= classify(response_error(429), attempts=0).outcome.retry_after <= 1.2


@pytest.mark.parametrize("status", [412, 502, 504])
def test_412_502_504_back_off_exponentially_up_to_a_minute(status):
    failures = [classify(response_error(status), attempts=n).outcome for n in (0, 3, 20)]
    assert all(f.retry_after is not None and not f.permanent for f in failures)
    assert failures[0].retry_after < failures[1].retry_after <= 9.6 and failures[2].retry_after <= 72


@pytest.mark.parametrize(("status", "hint"), [(403, "removed"), (404, "no longer exists")])
def test_403_and_404_break_the_binding_with_a_hint(status, hint):
    failure = classify(response_error(status))
    assert failure.outcome.permanent and failure.broken and hint in failure.broken


def test_other_failures_retry_on_the_normal_schedule_or_stop():
    assert classify(response_error(500)).outcome.retry_after is None and not classify(response_error(500)).outcome.permanent
    assert classify(response_error(400)).outcome.permanent and classify(response_error(400)).broken is None
    assert "TEAMS_APP_PASSWORD" in (classify(response_error(401)).outcome.detail or "")
    assert "token" in (classify(TokenError("nope", 401)).outcome.detail or "")
    assert not classify(aiohttp.ClientConnectionError("down")).outcome.permanent
    with pytest.raises(KeyError):
        classify(KeyError("a bug stays a bug"))


def test_backoff_is_jittered_and_capped():
    for n, base in ((0, 1), (1, 2), (2, 4)):
        assert 0.8 * base <= backoff_s(n, random.Random(n)) <= 1.2 * base
    assert all(48 <= backoff_s(n, random.Random(n)) <= 72 for n in (6, 10, 50))


# -- pacing --------------------------------------------------------------------


def test_the_default_pace_stays_inside_every_teams_limit():
    now = [0.0]
    pacer = Pacer(per_second=TeamsConfig().sends_per_second, burst=TeamsConfig().send_burst, clock=lambda: now[0])
    times = []
    for _ in range(200):  # a flood of sends, each going out as soon as it may
        delay = pacer.reserve("c")
        times.append(now[0] + delay)
        now[0] += delay
    for window, limit in ((1, 7), (2, 8), (30, 60)):
        assert max(sum(1 for t in times if start <= t < start + window) for start in times) <= limit


def test_the_pacer_allows_a_burst_then_two_sends_a_second():
    now = [0.0]
    pacer = Pacer(per_second=2, burst=7, clock=lambda: now[0])
    assert [pacer.reserve("c") for _ in range(7)] == [0.0] * 7
    assert pacer.reserve("c") == pytest.approx(0.5)
    assert pacer.reserve("other") == 0.0
    now[0] = 10.0
    assert pacer.reserve("c") == 0.0


# -- reading activities ----------------------------------------------------------


def test_a_reply_in_a_chain_is_read_with_its_channel_tenant_and_chain():
    chain = f"{CHANNEL};messageid=1700000000001"
    inb = read_inbound(Activity.model_validate(channel_message("https://smba.example/", ANA, "Hello", thread=chain)))
    assert (inb.tenant_id, inb.channel_id, inb.chain_id, inb.text) == (TENANT, CHANNEL, chain, "<p>Hello</p>")
    assert inb.sender.user_id == ANA.aad_object_id and inb.sender.name == "Ana Lima"
    assert not inb.mentions_bot and not inb.personal and inb.bot_id == BOT_ID


def test_the_bots_mention_is_removed_from_command_text():
    inb = read_inbound(Activity.model_validate(channel_message("https://smba.example/", ANA, "stay on", mention_bot=True)))
    assert inb.mentions_bot and inb.text == "stay on"
    personal = read_inbound(Activity.model_validate(personal_message("https://smba.example/", ANA, "status")))
    assert personal.personal and personal.channel_id is None and personal.text == "status"


# -- settings --------------------------------------------------------------------


def test_teams_settings_default_to_off():
    s = Settings.from_env({}, dotenv=None)
    assert not s.teams_enabled and s.teams_app_id is None


def test_teams_settings_read_a_full_registration():
    s = Settings.from_env(
        {"TEAMS_APP_ID": APP_ID, "TEAMS_APP_PASSWORD": "secret", "TEAMS_TENANT_ID": TENANT, "TEAMS_GRAPH_PRESENCE": "on",
         "TEAMS_GRAPH_URL": "http://127.0.0.1:9/v1.0/", "TEAMS_TOKEN_URL": "http://127.0.0.1:9/t/oauth2/v2.0/token"},
        dotenv=None,
    )
    assert s.teams_enabled and s.teams_graph_presence and s.teams_graph_url == "http://127.0.0.1:9/v1.0"
    assert Settings.from_env({"TEAMS_LOCAL_DEV": "1"}, dotenv=None).teams_enabled


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"TEAMS_APP_ID": "my-bot"}, "TEAMS_APP_ID"),
        ({"TEAMS_APP_ID": APP_ID}, "TEAMS_APP_PASSWORD"),
        ({"TEAMS_APP_PASSWORD": "secret"}, "TEAMS_APP_ID"),
        ({"TEAMS_TENANT_ID": "contoso"}, "TEAMS_TENANT_ID"),
        ({"TEAMS_GRAPH_PRESENCE": "on", "TEAMS_APP_ID": APP_ID, "TEAMS_APP_PASSWORD": "s"}, "TEAMS_GRAPH_PRESENCE"),
        ({"TEAMS_GRAPH_PRESENCE": "sometimes"}, "TEAMS_GRAPH_PRESENCE"),
        ({"TEAMS_LOCAL_DEV": "1", "TEAMS_APP_ID": APP_ID, "TEAMS_APP_PASSWORD": "s"}, "TEAMS_LOCAL_DEV"),
        ({"TEAMS_GRAPH_URL": "graph.microsoft.com"}, "TEAMS_GRAPH_URL"),
        ({"TEAMS_TOKEN_URL": "ftp://login"}, "TEAMS_TOKEN_URL"),
    ],
)
def test_a_wrong_teams_value_names_the_variable(env, name):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env, dotenv=None)
    assert str(caught.value).startswith(name + ":") and "\n" not in str(caught.value)


def test_token_endpoints_default_to_the_tenant_or_bot_framework():
    assert TeamsConfig(tenant_id=TENANT).token_endpoint() == f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
    assert TeamsConfig().token_endpoint() == "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
    assert TeamsConfig(token_url="http://fake/token").token_endpoint() == "http://fake/token"


# -- the app package --------------------------------------------------------------


def test_the_manifest_template_fills_in_the_app_id_and_url():
    manifest = render(json.loads(Path("manifest/teams/manifest.json").read_text()), values_for(APP_ID, "https://chat.acme.example/"))
    assert manifest["id"] == APP_ID and manifest["bots"][0]["botId"] == APP_ID
    assert manifest["validDomains"] == ["chat.acme.example"] and manifest["developer"]["websiteUrl"] == "https://chat.acme.example/"
    assert {"name": "ChannelMessage.Read.Group", "type": "Application"} in manifest["authorization"]["permissions"]["resourceSpecific"]
    assert manifest["webApplicationInfo"]["id"] == APP_ID
    assert "${{" not in json.dumps(manifest)
    lists = {tuple(c["scopes"]): [cmd["title"] for cmd in c["commands"]] for c in manifest["bots"][0]["commandLists"]}
    assert {"online", "offline", "status", "stay on", "stay off"} <= set(lists[("team",)]) & set(lists[("personal",)])
    assert "setup" in lists[("team",)]


@pytest.mark.parametrize(
    ("app_id", "url", "field"),
    [(None, "https://x.example", "TEAMS_APP_ID"), ("bot", "https://x.example", "TEAMS_APP_ID"),
     (APP_ID, None, "DESKBELL_PUBLIC_URL"), (APP_ID, "http://x.example", "DESKBELL_PUBLIC_URL")],
)
def test_the_package_needs_a_guid_and_an_https_url(app_id, url, field):
    with pytest.raises(ManifestError) as caught:
        package(app_id, url)
    assert caught.value.field == field


def test_the_package_holds_the_manifest_and_icons_of_the_right_sizes():
    with zipfile.ZipFile(__import__("io").BytesIO(package(APP_ID, "https://chat.acme.example"))) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        for name, size in (("color.png", 192), ("outline.png", 32)):
            png = archive.read(name)
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (size, size)


def test_deskbell_manifest_teams_writes_the_zip(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    for name in ("TEAMS_APP_ID", "TEAMS_APP_PASSWORD", "DESKBELL_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "deskbell-teams.zip"
    assert main(["manifest", "teams", "--output", str(out)]) == 2
    assert "TEAMS_APP_ID" in capsys.readouterr().err
    monkeypatch.setenv("TEAMS_APP_ID", APP_ID)
    monkeypatch.setenv("TEAMS_APP_PASSWORD", "secret")
    monkeypatch.setenv("DESKBELL_PUBLIC_URL", "https://chat.acme.example")
    assert main(["manifest", "teams", "--output", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("manifest.json"))["validDomains"] == ["chat.acme.example"]
    assert main(["manifest", "teams", "--output", str(out), "--public-url", "https://other.example", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["public_url"] == "https://other.example"
