"""/metrics speaks the Prometheus text format and counts what happens."""

from __future__ import annotations

import re

from core.services import Services
from core.widgets import create_widget
from tests.widget_client import Visitor


async def test_metrics_count_sockets_messages_and_outbox(client, services: Services):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Shop"})
    visitor = await Visitor.connect(client, widget.key)
    await visitor.say("hello", "c1")
    text = await (await client.get("/metrics")).text()
    assert "# TYPE deskbell_widget_sockets_open gauge" in text
    assert re.search(r"^deskbell_widget_sockets_open 1$", text, re.M)
    assert re.search(r'^deskbell_messages_total\{sender="visitor"\} 1$', text, re.M)
    assert re.search(r'^deskbell_outbox_rows\{status="dead"\} 0$', text, re.M)
    await visitor.close()


async def test_histograms_render_cumulative_buckets():
    from core.metrics import Registry

    registry = Registry()
    h = registry.histogram("x_seconds", "test", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 5):
        h.observe(value, kind="email")
    text = await registry.render()
    assert 'x_seconds_bucket{kind="email",le="0.1"} 1' in text
    assert 'x_seconds_bucket{kind="email",le="1"} 2' in text
    assert 'x_seconds_bucket{kind="email",le="+Inf"} 3' in text
    assert 'x_seconds_count{kind="email"} 3' in text
