"""Command-line verbs for deliveries: what an offline message caused, retrying dead
deliveries, webhook endpoints and their test-send, Pushover keys, and the
check that every widget's offline messages reach someone."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.agents import find_agent
from core.clock import utcnow
from core.db import Database
from core.deliveries import deliveries_for, get_delivery, lease_now, retry_delivery, widgets_without_destination
from core.models import Widget
from core.offline import get_offline_message
from core.outbox import record
from core.pushover import clear_user_key, set_user_key
from core.webhooks import EVENT_TYPES, create_endpoint, endpoint_to_json, get_endpoint, list_endpoints, plan_test_event
from core.widgets import find_widget

from bot.admin import DatabaseUnavailable, Output, _session, describe_db_error
from bot.settings import Settings

Handler = Callable[[Settings, argparse.Namespace], Awaitable[Output]]


def add_verbs(verbs: Any, widget: Any, agent: Any, json_flag: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the verbs on the parser built by ``bot.cli``."""
    deliveries = verbs.add_parser("deliveries", help="deliveries of offline messages").add_subparsers(dest="action", required=True)
    p = deliveries.add_parser("list", help="every delivery an offline message caused, with its attempts")
    p.add_argument("--offline-message", type=int, required=True, metavar="ID")
    json_flag(p)
    p = deliveries.add_parser("retry", help="retry a dead delivery now")
    p.add_argument("id", type=int)
    json_flag(p)

    webhook = verbs.add_parser("webhook", help="webhook endpoints").add_subparsers(dest="action", required=True)
    p = webhook.add_parser("add", help="add a webhook endpoint to a widget (prints its secret once)")
    p.add_argument("widget", help="widget key or id")
    p.add_argument("url")
    p.add_argument("--events", nargs="+", choices=EVENT_TYPES, metavar="EVENT", help="default: all of " + ", ".join(EVENT_TYPES))
    json_flag(p)
    p = webhook.add_parser("list", help="list webhook endpoints")
    p.add_argument("--widget", help="widget key or id")
    json_flag(p)
    p = webhook.add_parser("remove", help="delete a webhook endpoint")
    p.add_argument("id", type=int)
    json_flag(p)
    p = webhook.add_parser("test", help="send a test event now and print the receiver's answer")
    p.add_argument("id", type=int)
    json_flag(p)

    json_flag(widget.add_parser("check", help="report widgets whose offline messages would reach nobody"))

    p = agent.add_parser("pushover", help="set (or --clear) an agent's Pushover user key")
    p.add_argument("agent", help="email or id")
    p.add_argument("user_key", nargs="?")
    p.add_argument("--clear", action="store_true")
    json_flag(p)


def _delivery_lines(item: dict[str, Any]) -> list[str]:
    lines = [f"{item['id']:>5}  {item['status']:<10}  {item['kind']:<24}  {item['destination'] or ''}"]
    for a in item["attempt_log"]:
        code = a["status_code"] if a["status_code"] is not None else "-"
        lines.append(f"         #{a['number']} {a['finished_at'][:19]}  {'ok  ' if a['ok'] else 'fail'}  {code}  {a['detail'] or ''}"[:200])
    if item["status"] == "pending" and item["next_attempt_at"]:
        lines.append(f"         next attempt {item['next_attempt_at'][:19]}")
    return lines


async def deliveries_list(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=False) as session:
        await get_offline_message(session, args.offline_message)
        items = await deliveries_for(session, "offline_message", args.offline_message)
    lines = [line for item in items for line in _delivery_lines(item)]
    return Output("\n".join(lines) or "no deliveries: the widget had no destination configured", {"items": items})


async def deliveries_retry(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=True) as session:
        await retry_delivery(session, args.id)
        item = await get_delivery(session, args.id)
    return Output(f"delivery {args.id} will be tried again now by the worker", item)


async def webhook_add(settings: Settings, args: argparse.Namespace) -> Output:
    data: dict[str, Any] = {"url": args.url}
    if args.events:
        data["events"] = args.events
    async with _session(settings, write=True) as session:
        endpoint = await create_endpoint(session, await find_widget(session, args.widget), data)
    body = endpoint_to_json(endpoint, with_secret=True)
    text = (
        f"webhook {endpoint.id} -> {endpoint.url} ({', '.join(endpoint.events)})\n"
        f"signing secret (shown once, store it now):\n{endpoint.secret}"
    )
    return Output(text, body)


async def webhook_list(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=False) as session:
        widget_id = (await find_widget(session, args.widget)).id if args.widget else None
        endpoints = await list_endpoints(session, widget_id)
    rows = [endpoint_to_json(e) for e in endpoints]
    lines = [
        f"{e['id']:>4}  widget {e['widget_id']}  {'on ' if e['enabled'] else 'off'}  {e['url']}  {', '.join(e['events'])}"
        for e in rows
    ]
    return Output("\n".join(lines) or "no webhook endpoints: deskbell webhook add WIDGET URL", {"items": rows})


async def webhook_remove(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=True) as session:
        await session.delete(await get_endpoint(session, args.id))
    return Output(f"deleted webhook endpoint {args.id}", {"id": args.id, "deleted": True})


async def webhook_test(settings: Settings, args: argparse.Namespace) -> Output:
    """Plan a test event already leased to this process, send it, record the attempt.

    Leased at creation so a running worker leaves it alone; if this command
    dies half way, the lease runs out and a worker sends it instead.
    """
    from adapters.webhooks.sender import WebhookDeliveries  # aiohttp's client: only this verb sends

    db = Database(settings.database_url)
    try:
        async with db.write() as session:
            item = plan_test_event(session, await get_endpoint(session, args.id))
            lease_now(item)
        started = utcnow()
        outcome = await WebhookDeliveries(db).deliver(item)
        async with db.write() as session:
            await record(session, item.id, outcome, started_at=started)
        async with db.read() as session:
            delivery = await get_delivery(session, item.id)
    except OSError as exc:
        raise DatabaseUnavailable(describe_db_error(settings, exc)) from exc
    finally:
        await db.dispose()
    verdict = "delivered" if outcome.ok else "failed"
    return Output(f"test event {verdict}: {outcome.detail or ''}".rstrip(": "), delivery, 0 if outcome.ok else 1)


async def widget_check(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=False) as session:
        gaps = await widgets_without_destination(session)
        emailing = await _widgets_with_emails(session)
    problems = [
        {"widget_id": w.id, "key": w.key, "name": w.name, "problem": "offline form on, but no email, webhook or channel"}
        for w in gaps
    ]
    lines = [f"{p['widget_id']:>4}  {p['key']}  {p['name']}: {p['problem']}" for p in problems]
    warnings = []
    if emailing and settings.smtp is None:
        warnings.append("SMTP_URL is not set: emails to notify_emails wait until it is (widgets " + ", ".join(str(w.id) for w in emailing) + ")")
    lines += [f"warning: {w}" for w in warnings]
    text = "\n".join(lines) or "every widget's offline messages reach someone"
    return Output(text, {"problems": problems, "warnings": warnings}, 1 if problems else 0)


async def _widgets_with_emails(session: AsyncSession) -> list[Widget]:
    return [w for w in (await session.execute(select(Widget).order_by(Widget.id))).scalars() if w.notify_emails]


async def agent_pushover(settings: Settings, args: argparse.Namespace) -> Output:
    async with _session(settings, write=True) as session:
        agent = await find_agent(session, args.agent)
        if args.clear:
            await clear_user_key(session, agent)
            return Output(f"{agent.name} gets no Pushover notifications", {"agent_id": agent.id, "configured": False})
        await set_user_key(session, agent, args.user_key)
    return Output(f"{agent.name} gets Pushover notifications when away", {"agent_id": agent.id, "configured": True})


HANDLERS: dict[tuple[str, str], Handler] = {
    ("deliveries", "list"): deliveries_list,
    ("deliveries", "retry"): deliveries_retry,
    ("webhook", "add"): webhook_add,
    ("webhook", "list"): webhook_list,
    ("webhook", "remove"): webhook_remove,
    ("webhook", "test"): webhook_test,
    ("widget", "check"): widget_check,
    ("agent", "pushover"): agent_pushover,
}
