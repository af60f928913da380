"""Warming up at start: the process that answers for the assistant builds every assistant
widget's knowledge-base index in the background, so the first question gets embeddings."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from core.assistant_service import AssistantService
from core.chat import ChatService
from core.db import Database
from core.events import LocalBus
from core.kb_import import read_path
from core.knowledge import create_entry, import_entries
from core.services import Services
from core.status import StatusWatcher
from core.widgets import create_widget
from bot.seed import SAMPLE_KB
from tests.test_assistant_chat import GatedModel
from tests.test_cli import DESKBELL, _env, _free_port

WARMED = "knowledge-base indexes of"


def _warm_up_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(WARMED)]


async def test_warm_up_builds_the_index_of_each_widget_the_assistant_answers_for(
    services: Services, caplog: pytest.LogCaptureFixture
):
    async with services.db.write() as session:
        assistant = await create_widget(session, {"name": "Deskbell demo", "ai_enabled": True})
        await import_entries(session, assistant.id, read_path(SAMPLE_KB))
        await create_widget(session, {"name": "Assistant, nothing to say", "ai_enabled": True})
        people = await create_widget(session, {"name": "People only"})
        await create_entry(session, people.id, {"title": "Shipping?", "answer": "Free over 50 euros."})
    assert services.assistant is not None
    indexes = services.assistant.indexes
    with caplog.at_level(logging.INFO, logger="core.assistant_service"):
        await services.assistant.warm_up()
    async with services.db.read() as session:
        assert (await indexes.index_now(session, assistant.id)).dense is not None  # built: no keyword stand-in
        assert (await indexes.index_now(session, people.id)).dense is None  # not warmed: keywords while it builds
    [line] = _warm_up_lines(caplog)
    assert line.startswith(f"{WARMED} 1 widget(s) built in ")


async def test_warm_up_stops_when_the_service_stops(services: Services, caplog: pytest.LogCaptureFixture):
    async with services.db.write() as session:
        widget = await create_widget(session, {"name": "Deskbell demo", "ai_enabled": True})
        await import_entries(session, widget.id, read_path(SAMPLE_KB))
    assert services.assistant is not None
    model = GatedModel()
    services.assistant.indexes.use_embedder(model)
    stop = asyncio.Event()
    warming = asyncio.create_task(services.assistant.warm_up(stop))
    try:
        await asyncio.to_thread(model.entered.wait, 10)
        with caplog.at_level(logging.INFO, logger="core.assistant_service"):
            stop.set()
            await asyncio.wait_for(warming, timeout=10.0)  # not held up by the build at the gate (60 s)
    finally:
        model.gate.set()
    assert _warm_up_lines(caplog) == []


async def test_a_failing_warm_up_is_logged_and_never_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'deskbell.db'}")
    bus = LocalBus()
    service = AssistantService(db, bus, ChatService(db, bus), StatusWatcher(db, bus))
    try:
        with caplog.at_level(logging.ERROR, logger="core.assistant_service"):
            await service.warm_up()
    finally:
        await db.dispose()
    [record] = [r for r in caplog.records if r.name == "core.assistant_service"]
    assert "built on first question" in record.getMessage() and record.exc_info is not None


def test_deskbell_run_is_ready_at_once_and_warms_up_in_the_background(tmp_path: Path):
    port = _free_port()
    proc = subprocess.Popen(
        [DESKBELL, "run", "--port", str(port)], env=_env(f"sqlite:///{tmp_path / 'deskbell.db'}"), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    watchdog = threading.Timer(90, proc.kill)  # never hang the test run
    watchdog.start()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("Press Ctrl+C"):
                break
        started = time.monotonic()
        ready = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz").read())
        assert ready["status"] == "ok" and time.monotonic() - started < 2.0  # the warm-up holds nothing up
        warmed = next(line for line in proc.stderr if WARMED in line)  # type: ignore[union-attr]
        assert f"{WARMED} 1 widget(s) built in " in warmed  # the demo widget, with the sample knowledge base
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
