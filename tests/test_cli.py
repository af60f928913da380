"""The command line, run as operators run it: a separate process with env vars."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

DESKBELL = str(Path(sys.executable).parent / "deskbell")


def _env(db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBELL_", "PORT"))}
    return {**env, "DESKBELL_DATABASE_URL": db_url, **extra}


def deskbell(db_url: str, *args: str, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DESKBELL, *args], env=_env(db_url, **extra), capture_output=True, text=True, timeout=60, cwd=cwd
    )


def _json(result: subprocess.CompletedProcess[str]) -> dict:  # type: ignore[type-arg]
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_admin_verbs_print_json(empty_db_url):
    assert deskbell(empty_db_url, "migrate").returncode == 0
    widget = _json(deskbell(empty_db_url, "widget", "create", "Shop", "--json", "--settings", '{"hide_when_offline": true}'))
    assert widget["name"] == "Shop" and widget["hide_when_offline"] is True
    assert f'data-widget="{widget["key"]}"' in widget["embed"]
    assert [w["key"] for w in _json(deskbell(empty_db_url, "widget", "list", "--json"))["items"]] == [widget["key"]]

    key = _json(deskbell(empty_db_url, "apikey", "create", "zapier", "--json"))
    assert key["key"].startswith("dbk_") and key["name"] == "zapier"

    agent = _json(deskbell(empty_db_url, "agent", "create", "Ana", "--email", "Ana@Example.com", "--json"))
    assert agent["email"] == "ana@example.com" and agent["on_duty"] is False
    assert "/console/login?token=dl_" in agent["console_login_url"]
    link = _json(deskbell(empty_db_url, "agent", "link", "ana@example.com", "--json"))
    assert link["console_login_url"] != agent["console_login_url"]
    assert _json(deskbell(empty_db_url, "offline", "list", "--json")) == {"items": []}


def test_mistakes_end_with_one_line_and_no_traceback(empty_db_url, tmp_path):
    unmigrated = deskbell(empty_db_url, "widget", "list")
    assert unmigrated.returncode != 0 and "deskbell migrate" in unmigrated.stderr
    assert "Traceback" not in unmigrated.stderr
    deskbell(empty_db_url, "migrate")
    dup = deskbell(empty_db_url, "agent", "create", "A", "--email", "a@example.com")
    dup = deskbell(empty_db_url, "agent", "create", "B", "--email", "a@example.com")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad_email = deskbell(empty_db_url, "agent", "create", "C", "--email", "nope")
    assert bad_email.returncode == 1 and "email" in bad_email.stderr


def test_a_wrong_database_url_names_the_variable(tmp_path):
    result = deskbell("mysql://nowhere/db", "migrate", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("deskbell: DESKBELL_DATABASE_URL:")
    assert len(result.stderr.strip().splitlines()) == 1
    unreachable = deskbell("postgresql://postgres@127.0.0.1:1/none", "migrate", cwd=tmp_path)
    assert unreachable.returncode == 2
    assert "DESKBELL_DATABASE_URL" in unreachable.stderr and "Traceback" not in unreachable.stderr


def test_web_refuses_an_unmigrated_database_with_a_hint(empty_db_url, tmp_path):
    result = deskbell(empty_db_url, "web", "--port", str(_free_port()), cwd=tmp_path)
    assert result.returncode == 2 and "deskbell migrate" in result.stderr


def test_run_seeds_a_demo_serves_it_and_stops_cleanly_on_sigterm(tmp_path):
    port = _free_port()
    db_url = f"sqlite:///{tmp_path / 'deskbell.db'}"
    proc = subprocess.Popen(
        [DESKBELL, "run", "--port", str(port)], env=_env(db_url), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        banner = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            banner.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        text = "".join(banner)
        assert f"http://127.0.0.1:{port}/" in text, text + proc.stderr.read()  # type: ignore[union-attr]
        key = next(l.split()[-1] for l in banner if "demo widget key" in l)
        api_key = next(l.split()[2] for l in banner if l.strip().startswith("API key"))
        assert api_key.startswith("dbk_")
        assert "/console/login?token=dl_" in text
        base = f"http://127.0.0.1:{port}"
        page = urllib.request.urlopen(f"{base}/").read().decode()
        assert f'data-widget="{key}"' in page
        config = json.loads(urllib.request.urlopen(f"{base}/widget/{key}/config").read())
        assert config["status"]["reason"] == "no_agent_available"
        assert json.loads(urllib.request.urlopen(f"{base}/readyz").read())["status"] == "ok"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    # A second start keeps the data, prints a fresh console link, and no new API key.
    again = subprocess.Popen(
        [DESKBELL, "run", "--port", str(port)], env=_env(db_url), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        while True:
            line = again.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        text = "".join(lines)
        assert f"demo widget key {key}" in text and "deskbell apikey create" in text
        assert "/console/login?token=dl_" in text
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=15)


@pytest.mark.parametrize("port", ["0", "99999"])
def test_bad_port_flag_is_refused(port, tmp_path):
    result = deskbell(f"sqlite:///{tmp_path / 'x.db'}", "web", "--port", port)
    assert result.returncode == 2 and "port" in result.stderr


async def test_sigterm_tells_open_widgets_to_reconnect_and_exits_within_10_s(tmp_path):
    import asyncio

    import aiohttp

    port = _free_port()
    db_url = f"sqlite:///{tmp_path / 'deskbell.db'}"
    proc = subprocess.Popen(
        [DESKBELL, "run", "--port", str(port)], env=_env(db_url), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        key = ""
        while not key:
            line = await asyncio.to_thread(proc.stdout.readline)  # type: ignore[union-attr]
            assert line, "deskbell run ended before printing its banner"
            if "demo widget key" in line:
                key = line.split()[-1]
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"http://127.0.0.1:{port}/widget/{key}/ws")
            await ws.send_json({"type": "hello", "token": None, "conversation_id": None, "resume_after": 0})
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            frames = []
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frames.append(json.loads(msg.data))
            assert {"type": "reconnect"} in frames
            assert ws.close_code == 1012  # "service restart": the widget comes back elsewhere
        assert await asyncio.to_thread(proc.wait, 15) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
