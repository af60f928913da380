"""Deliveries: what an offline message caused (every email, webhook, channel post
and push, each with its attempt log), and a second chance for dead ones."""

from __future__ import annotations

from aiohttp import web

from adapters.api import params
from adapters.api.operation import Operation, Reply, ref
from adapters.api.pages import list_response
from adapters.http import services
from core import events as ev
from core.deliveries import deliveries_for, get_delivery, retry_delivery
from core.offline import get_offline_message

TAG = "deliveries"


async def for_offline_message(request: web.Request) -> web.Response:
    message_id = params.path_id(request, "offline message")
    async with services(request).db.read() as session:
        await get_offline_message(session, message_id)
        items = await deliveries_for(session, "offline_message", message_id)
    return list_response(items, None)


async def get(request: web.Request) -> web.Response:
    delivery_id = params.path_id(request, "delivery")
    async with services(request).db.read() as session:
        return web.json_response(await get_delivery(session, delivery_id))


async def retry(request: web.Request) -> web.Response:
    delivery_id = params.path_id(request, "delivery")
    svc = services(request)
    async with svc.db.write() as session:
        await retry_delivery(session, delivery_id)
        body = await get_delivery(session, delivery_id)
    await svc.bus.publish(ev.OUTBOX_ENQUEUED, {})
    return web.json_response(body)


OPERATIONS: list[Operation] = [
    Operation(
        "GET", "/api/v1/offlinemessages/{id}/deliveries", for_offline_message, "listOfflineMessageDeliveries",
        "List the deliveries of an offline message", TAG,
        Reply(200, ref("DeliveryList"), "Every delivery the message caused, oldest first, with attempt logs."),
        description="One list, never paged: an offline message causes a handful of deliveries.",
    ),
    Operation(
        "GET", "/api/v1/deliveries/{id}", get, "getDelivery", "Get a delivery with its attempt log", TAG,
        Reply(200, ref("Delivery"), "The delivery."),
    ),
    Operation(
        "POST", "/api/v1/deliveries/{id}/retry", retry, "retryDelivery", "Retry a dead delivery now", TAG,
        Reply(200, ref("Delivery"), "The delivery, pending again with a fresh retry schedule."),
        conflicts=True,
        description="Only dead deliveries can be retried (409 otherwise); the attempt log is kept.",
    ),
]
