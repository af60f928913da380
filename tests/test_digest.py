"""Manager digests: due on a wall-clock schedule in the widget's zone, built from
the offline messages since the previous digest, sent once even with several
workers or after downtime. The clock is always given, never read."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from bot.worker import run_minutely
from core.bindings import bind_channel
from core.db import Database
from core.digest_runs import DigestRunner
from core.digests import DigestItem, DigestSchedule, build_digest, digest_text, last_due_at, next_due_at, parse_days
from core.models import Digest, OfflineMessage
from core.notify_settings import update_settings
from core.offline import store_offline_message
from core.widgets import get_widget
from tests.fakes.smtp import FakeSmtp
from tests.test_api_helpers import api, api_key  # noqa: F401
from tests.test_deliveries_helpers import Clock, add_widget, dispatcher_for, drain, outbox

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN).astimezone(timezone.utc)  # type: ignore[misc]


# ---------------------------------------------------------------- when, as pure functions


def test_a_daily_digest_is_due_at_nine_local_time():
    s = DigestSchedule(timezone="Europe/Berlin")
    assert last_due_at(s, berlin(2026, 11, 25, 8, 59)) == berlin(2026, 11, 24, 9, 0)
    assert last_due_at(s, berlin(2026, 11, 25, 9, 0)) == berlin(2026, 11, 25, 9, 0)
    assert next_due_at(s, berlin(2026, 11, 25, 9, 0)) == berlin(2026, 11, 26, 9, 0)


def test_weekday_digests_skip_the_weekend():
    s = DigestSchedule(timezone="Europe/Berlin", days=parse_days(["mon", "tue", "wed", "thu", "fri"]))
    sunday_noon = berlin(2026, 11, 29, 12, 0)
    assert last_due_at(s, sunday_noon) == berlin(2026, 11, 27, 9, 0)  # Friday
    assert next_due_at(s, sunday_noon) == berlin(2026, 11, 30, 9, 0)  # Monday


def test_digests_can_be_switched_off():
    assert last_due_at(DigestSchedule(enabled=False), datetime(2026, 11, 25, tzinfo=timezone.utc)) is None


def test_a_digest_in_a_skipped_hour_is_due_when_the_clock_jumps():
    # 2026-03-08, New York: 02:00 jumps to 03:00; a 02:30 digest is due at 03:00 EDT, once.
    s = DigestSchedule(timezone="America/New_York", minute=2 * 60 + 30)
    jump = datetime(2026, 3, 8, 7, 0, tzinfo=timezone.utc)  # 03:00 EDT
    assert last_due_at(s, jump + timedelta(minutes=5)) == jump
    assert last_due_at(s, jump - timedelta(seconds=1)) == datetime(2026, 3, 7, 2, 30, tzinfo=NEW_YORK)


def test_a_digest_in_a_repeated_hour_is_due_once():
    # 2026-11-01, New York: 01:00-02:00 happens twice; a 01:30 digest is due at the first.
    s = DigestSchedule(timezone="America/New_York", minute=90)
    first = datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc)  # 01:30 EDT
    assert last_due_at(s, first + timedelta(hours=1, minutes=5)) == first  # past the second 01:30: still the first


# ---------------------------------------------------------------- what, as pure functions


def _item(i: int, status: str, minute: int, message: str = "Hello") -> DigestItem:
    return DigestItem(i, f"V{i}" if i % 2 else None, f"v{i}@example.com", message, status, datetime(2026, 11, 25, 8, minute, tzinfo=timezone.utc))


def test_the_digest_counts_and_lists_unhandled_messages_first_oldest_first():
    items = [_item(1, "handled", 1), _item(2, "new", 5), _item(3, "new", 2, "\n  First line here\nsecond line")]
    content = build_digest({"id": 1, "key": "k", "name": "Shop"}, items, berlin(2026, 11, 24, 9), berlin(2026, 11, 25, 9))
    assert (content["count"], content["new_count"], content["handled_count"], content["more"]) == (3, 2, 1, 0)
    assert [i["id"] for i in content["items"]] == [3, 2, 1]
    assert content["items"][0] == {
        "id": 3, "name": "V3", "email": "v3@example.com", "first_line": "First line here", "status": "new",
        "created_at": "2026-11-25T08:02:00+00:00", "link_path": "/console#offline/3",
    }
    text = digest_text(content, "https://chat.shop.example")
    assert text.splitlines()[0] == "Shop: 3 offline messages (2 unhandled)"
    assert "[new] V3 <v3@example.com>: First line here" in text
    assert "https://chat.shop.example/console#offline/3" in text


def test_a_long_digest_shows_fifty_and_counts_the_rest():
    content = build_digest({"id": 1, "key": "k", "name": "Shop"}, [_item(i, "new", i % 60) for i in range(1, 61)], berlin(2026, 11, 24, 9), berlin(2026, 11, 25, 9))
    assert len(content["items"]) == 50 and content["more"] == 10
    assert "... and 10 more" in digest_text(content, "")


# ---------------------------------------------------------------- sending, with a given clock


async def _offline(services, widget, at: datetime, n: int = 1, status: str = "new") -> int:  # type: ignore[no-untyped-def]
    async with services.db.write() as session:
        row = await store_offline_message(session, widget, {"name": f"V{n}", "email": f"v{n}@example.com", "message": f"Question {n}"})
        await session.execute(update(OfflineMessage).where(OfflineMessage.id == row.id).values(created_at=at, status=status))
    return row.id


async def _widget(services, **notify):  # type: ignore[no-untyped-def]
    widget = await add_widget(services, notify_emails=["boss@shop.example"])
    async with services.db.write() as session:
        w = await get_widget(session, widget.id)
        w.created_at = berlin(2026, 11, 1, 0, 0)
        await update_settings(session, w, {"digest_timezone": "Europe/Berlin", **notify})
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1", channel_name="support")
    return widget


async def _digests(db: Database) -> list[Digest]:
    async with db.read() as session:
        return list((await session.execute(select(Digest).order_by(Digest.id))).scalars())


async def test_the_digest_at_nine_covers_the_day_before_and_is_posted_to_the_channel(services):
    widget = await _widget(services)
    await _offline(services, widget, berlin(2026, 11, 24, 8, 0), 1)  # before the period: yesterday's digest
    await _offline(services, widget, berlin(2026, 11, 24, 18, 0), 2, status="handled")
    await _offline(services, widget, berlin(2026, 11, 25, 7, 30), 3)
    await _offline(services, widget, berlin(2026, 11, 25, 9, 0), 4)  # after: tomorrow's
    clock = Clock(berlin(2026, 11, 25, 8, 59))
    runner = DigestRunner(services.db, clock=clock)
    [yesterday] = await runner.run_once()  # first run: yesterday 09:00 was due and never sent
    assert (yesterday.period_end, yesterday.message_count) == (berlin(2026, 11, 24, 9), 1)
    clock.now = berlin(2026, 11, 25, 9, 0)
    [digest] = await runner.run_once()
    assert (digest.period_start, digest.period_end) == (berlin(2026, 11, 24, 9), berlin(2026, 11, 25, 9))
    assert [i["id"] for i in digest.content["items"]] == [3, 2]  # unhandled first
    [_, post] = await outbox(services.db, "slack.digest")
    assert post.payload["digest_id"] == digest.id and post.payload["digest"]["count"] == 2
    assert (post.ref_type, post.ref_id) == ("digest", digest.id)
    assert await outbox(services.db, "email.digest") == []  # email is opt-in
    assert await runner.run_once() == []  # the same minute again: nothing new


async def test_an_empty_period_is_recorded_but_sends_nothing(services):
    await _widget(services)
    runner = DigestRunner(services.db, clock=Clock(berlin(2026, 11, 25, 9, 1)))
    [digest] = await runner.run_once()
    assert digest.message_count == 0
    assert await outbox(services.db, "slack.") == []


async def test_a_digest_due_while_everything_was_down_is_sent_once_on_start(services):
    widget = await _widget(services)
    runner = DigestRunner(services.db, clock=Clock(berlin(2026, 11, 20, 9, 0)))
    await runner.run_once()
    for day in (21, 22, 23, 24):  # the worker is down from the 20th to the 25th
        await _offline(services, widget, berlin(2026, 11, day, 12, 0), day)
    runner.clock = Clock(berlin(2026, 11, 25, 14, 30))  # back at 14:30 on the 25th
    [digest] = await runner.run_once()
    assert (digest.period_start, digest.period_end) == (berlin(2026, 11, 20, 9), berlin(2026, 11, 25, 9))
    assert digest.message_count == 4
    assert await runner.run_once() == []
    assert len(await outbox(services.db, "slack.digest")) == 1


async def test_two_workers_never_both_send_a_digest(services):
    widget = await _widget(services)
    await _offline(services, widget, berlin(2026, 11, 25, 7, 0))
    other = Database(services.db.url)
    try:
        at = Clock(berlin(2026, 11, 25, 9, 0, ))
        runners = [DigestRunner(services.db, clock=at), DigestRunner(other, clock=at)]
        for _ in range(3):
            await asyncio.gather(*(r.run_once() for r in runners))
    finally:
        await other.dispose()
    assert [d.period_end for d in await _digests(services.db)] == [berlin(2026, 11, 25, 9)]
    assert len(await outbox(services.db, "slack.digest")) == 1


async def test_digests_follow_the_schedule_and_can_be_turned_off(services):
    widget = await _widget(services, digest_time="17:30", digest_days=["fri"])
    await _offline(services, widget, berlin(2026, 11, 26, 10, 0))
    runner = DigestRunner(services.db, clock=Clock(berlin(2026, 11, 27, 17, 29)))
    assert [d.period_end for d in await runner.run_once()] == [berlin(2026, 11, 20, 17, 30)]
    runner.clock = Clock(berlin(2026, 11, 27, 17, 30))
    [digest] = await runner.run_once()
    assert digest.message_count == 1
    async with services.db.write() as session:
        await update_settings(session, await get_widget(session, widget.id), {"digest_enabled": False})
    runner.clock = Clock(berlin(2026, 12, 4, 17, 30))
    assert await runner.run_once() == []


async def test_the_digest_is_emailed_when_asked_with_text_and_html(services):
    widget = await _widget(services, digest_email=True, digest_channel=False)
    await _offline(services, widget, berlin(2026, 11, 25, 7, 0))
    await DigestRunner(services.db, clock=Clock(berlin(2026, 11, 25, 9, 0))).run_once()
    assert await outbox(services.db, "slack.") == []
    with FakeSmtp() as smtp:
        await drain(dispatcher_for(services, Clock(), SMTP_URL=smtp.url, DESKBELL_MAIL_FROM="bell@shop.example"))
        [mail] = smtp.to("boss@shop.example")
    assert mail["Subject"] == "Shop: 1 offline message (1 unhandled)"
    kinds = {p.get_content_type(): p.get_content() for p in mail.walk() if not p.is_multipart()}
    assert "V1 <v1@example.com>: Question 1" in kinds["text/plain"]
    assert "<table>" in kinds["text/html"]


async def test_digest_settings_through_the_api(api, services):
    widget = await add_widget(services, schedule={"timezone": "America/New_York", "weekly": {"mon": [["09:00", "17:00"]]}})
    body = await api.get(f"/api/v1/widgets/{widget.id}/notifications")
    assert body["digest_enabled"] is True and body["digest_time"] == "09:00" and body["digest_timezone"] is None
    assert body["effective_timezone"] == "America/New_York"  # the widget's own zone by default
    changed = await api.patch(
        f"/api/v1/widgets/{widget.id}/notifications",
        {"digest_time": "07:05", "digest_days": ["fri", "mon"], "digest_timezone": "Asia/Tokyo", "digest_email": True},
    )
    assert changed["digest_days"] == ["mon", "fri"] and changed["effective_timezone"] == "Asia/Tokyo"
    assert changed["next_digest_at"] is not None
    error = await api.error(
        "PATCH", f"/api/v1/widgets/{widget.id}/notifications", 422,
        json={"digest_time": "25:00", "digest_timezone": "Mars/Olympus", "digest_days": []},
    )
    assert set(error["fields"]) == {"digest_time", "digest_timezone", "digest_days"}
    off = await api.patch(f"/api/v1/widgets/{widget.id}/notifications", {"digest_enabled": False})
    assert off["next_digest_at"] is None
    await api.error("GET", "/api/v1/widgets/999/notifications", 404)


async def test_the_worker_scheduler_runs_the_catch_up_at_start_then_every_minute():
    calls: list[float] = []
    first = asyncio.Event()

    async def digests() -> list[Digest]:
        calls.append(asyncio.get_running_loop().time())
        first.set()
        return []

    stop = asyncio.Event()
    task = asyncio.create_task(run_minutely({"digests": digests}, stop))
    await asyncio.wait_for(first.wait(), timeout=5)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert len(calls) == 1


async def test_a_new_widget_owes_no_digest_for_a_period_that_ended_before_it_existed(services):
    widget = await add_widget(services, notify_emails=["boss@shop.example"])
    async with services.db.write() as session:
        w = await get_widget(session, widget.id)
        w.created_at = berlin(2026, 11, 25, 10, 0)  # after the 09:00 digest of that day
        await update_settings(session, w, {"digest_timezone": "Europe/Berlin"})
        await bind_channel(session, widget.id, "slack", workspace_id="T1", channel_id="C1", channel_name="support")
    runner = DigestRunner(services.db, clock=Clock(berlin(2026, 11, 25, 10, 5)))
    assert await runner.run_once() == []
    assert await _digests(services.db) == []
    await _offline(services, widget, berlin(2026, 11, 25, 12, 0))
    runner.clock = Clock(berlin(2026, 11, 26, 9, 0))
    [digest] = await runner.run_once()  # the first period: from the day before, so since creation
    assert (digest.period_start, digest.period_end, digest.message_count) == (berlin(2026, 11, 25, 9), berlin(2026, 11, 26, 9), 1)
