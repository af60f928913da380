"""Request ids and JSON log lines."""

from __future__ import annotations

import json
import logging

from bot.logs import JsonFormatter, RequestIdFilter, request_id


async def test_every_response_carries_a_request_id_and_keeps_a_given_one(client):
    fresh = await client.get("/healthz")
    assert len(fresh.headers["X-Request-Id"]) == 16
    given = await client.get("/healthz", headers={"X-Request-Id": "lb-1234"})
    assert given.headers["X-Request-Id"] == "lb-1234"


def test_json_lines_carry_the_request_id():
    record = logging.LogRecord("deskbell", logging.INFO, __file__, 1, "relayed %s", ("msg",), None)
    token = request_id.set("abc123")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "relayed msg" and line["request_id"] == "abc123" and line["level"] == "info"
