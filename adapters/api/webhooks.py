"""Webhook endpoints of a widget: create (the secret is answered once), list,
read, change, delete, and a test-send that goes through the outbox like any
delivery, so its attempts can be read back at ``/api/v1/deliveries/{id}``."""

from __future__ import annotations

from aiohttp import web

from adapters.api import params
from adapters.api.operation import Body, Operation, Reply, ref
from adapters.api.pages import list_response
from adapters.http import read_json, services
from core import events as ev
from core.deliveries import get_delivery
from core.webhooks import create_endpoint, endpoint_to_json, get_endpoint, list_endpoints, plan_test_event, update_endpoint
from core.widgets import get_widget

WHAT = "webhook endpoint"
TAG = "webhooks"


async def create(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, "widget")
    data = await read_json(request)
    async with services(request).db.write() as session:
        endpoint = await create_endpoint(session, await get_widget(session, widget_id), data)
    return web.json_response(endpoint_to_json(endpoint, with_secret=True), status=201)


async def list_for_widget(request: web.Request) -> web.Response:
    widget_id = params.path_id(request, "widget")
    async with services(request).db.read() as session:
        await get_widget(session, widget_id)
        endpoints = await list_endpoints(session, widget_id)
    return list_response((endpoint_to_json(e) for e in endpoints), None)


async def get(request: web.Request) -> web.Response:
    endpoint_id = params.path_id(request, WHAT)
    async with services(request).db.read() as session:
        endpoint = await get_endpoint(session, endpoint_id)
    return web.json_response(endpoint_to_json(endpoint))


async def update(request: web.Request) -> web.Response:
    endpoint_id = params.path_id(request, WHAT)
    data = await read_json(request)
    async with services(request).db.write() as session:
        endpoint = await update_endpoint(session, await get_endpoint(session, endpoint_id), data)
    return web.json_response(endpoint_to_json(endpoint))


async def delete(request: web.Request) -> web.Response:
    endpoint_id = params.path_id(request, WHAT)
    async with services(request).db.write() as session:
        await session.delete(await get_endpoint(session, endpoint_id))
    return web.Response(status=204)


async def test_send(request: web.Request) -> web.Response:
    endpoint_id = params.path_id(request, WHAT)
    svc = services(request)
    async with svc.db.write() as session:
        item = plan_test_event(session, await get_endpoint(session, endpoint_id))
        await session.flush()
        delivery = await get_delivery(session, item.id)
    await svc.bus.publish(ev.OUTBOX_ENQUEUED, {})
    return web.json_response(delivery, status=202)


OPERATIONS: list[Operation] = [
    Operation(
        "POST", "/api/v1/widgets/{id}/webhooks", create, "createWebhook",
        "Add a webhook endpoint to a widget", TAG,
        Reply(201, ref("WebhookEndpointCreated"), "The endpoint, with its signing secret (shown only here)."),
        body=Body(ref("WebhookEndpointCreate"), "The receiver's URL and the events it wants."),
        description="Deliveries are signed per the Standard Webhooks specification (`webhook-id`, "
        "`webhook-timestamp`, `webhook-signature`); verify them with any Standard Webhooks library "
        "and the `secret` answered here. Non-2xx answers are retried with backoff; 410 Gone disables the endpoint.",
    ),
    Operation(
        "GET", "/api/v1/widgets/{id}/webhooks", list_for_widget, "listWidgetWebhooks",
        "List a widget's webhook endpoints", TAG,
        Reply(200, ref("WebhookEndpointList"), "Every endpoint of the widget, oldest first (secrets are not shown)."),
    ),
    Operation(
        "GET", "/api/v1/webhooks/{id}", get, "getWebhook", "Get a webhook endpoint", TAG,
        Reply(200, ref("WebhookEndpoint"), "The endpoint."),
    ),
    Operation(
        "PATCH", "/api/v1/webhooks/{id}", update, "updateWebhook",
        "Change a webhook endpoint (URL, events, or re-enable it)", TAG,
        Reply(200, ref("WebhookEndpoint"), "The updated endpoint."),
        body=Body(ref("WebhookEndpointUpdate"), "Only the fields to change."),
    ),
    Operation(
        "DELETE", "/api/v1/webhooks/{id}", delete, "deleteWebhook", "Delete a webhook endpoint", TAG,
        Reply(204, None, "Deleted; deliveries still waiting for it end as failed."),
    ),
    Operation(
        "POST", "/api/v1/webhooks/{id}/test", test_send, "testWebhook",
        "Send a test event to a webhook endpoint", TAG,
        Reply(202, ref("Delivery"), "The test delivery, queued; read its outcome at /api/v1/deliveries/{id}."),
        description="Sends a `webhook.test` event once (no retries), even to a disabled endpoint.",
    ),
]
