"""Real-browser tests: Debian's Chromium driven by Playwright against `deskbell run` on localhost.

The service runs as operators run it (a subprocess on a temporary SQLite
file); pages that embed the widget are served by a second small server on
another origin, as a customer's site would be. Without /usr/bin/chromium the
tests are skipped with the reason, except under CI=true, where they fail.

Screenshots go to ``test-artifacts/browser/``; with
``DESKBELL_UPDATE_SCREENSHOTS=1`` the README's ones in ``docs/screenshots/``
are written too.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
DESKBELL = str(Path(sys.executable).parent / "deskbell")
IN_CI = os.environ.get("CI", "").lower() == "true"
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "a long admin password"


def _require_browser() -> None:
    problem = None
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing (install Debian's chromium: `make test` does it as root)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (pip install -e '.[dev]')"
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"browser tests cannot run: {problem} (CI=true requires them)")
    pytest.skip(f"browser tests skipped: {problem}; run with CI=true to make this fail")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBELL_", "PORT", "SLACK_", "TEAMS_", "SMTP_", "PUSHOVER_"))}
    return {**env, "DESKBELL_DATABASE_URL": db_url, "DESKBELL_LOG_LEVEL": "WARNING"}


@dataclass
class Deskbell:
    """The running service and what its banner printed."""

    base: str
    db_url: str
    workdir: Path
    api_key: str
    demo_widget_key: str
    proc: subprocess.Popen[str]

    def cli(self, *args: str, stdin: str | None = None) -> Any:
        result = subprocess.run(
            [DESKBELL, *args, "--json"], env=_env(self.db_url), cwd=self.workdir, input=stdin,
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read().decode()}") from exc
        return json.loads(raw) if raw else None

    def widget(self, name: str, **settings: Any) -> dict[str, Any]:
        return self.api("POST", "/api/v1/widgets", {"name": name, **settings})

    def agent(self, name: str, email: str, widget_id: int, **fields: Any) -> dict[str, Any]:
        """An agent answering only this widget, so tests never see each other's agents."""
        return self.api("POST", "/api/v1/agents", {"name": name, "email": email, "widget_ids": [widget_id], **fields})


@pytest.fixture(scope="session")
def deskbell_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deskbell]:
    _require_browser()
    workdir = tmp_path_factory.mktemp("deskbell-run")
    db_url = f"sqlite:///{workdir / 'deskbell.db'}"
    env = _env(db_url)
    subprocess.run([DESKBELL, "migrate"], env=env, cwd=workdir, check=True, capture_output=True, timeout=60)
    made = subprocess.run(
        [DESKBELL, "admin", "create", ADMIN_EMAIL, "--password-stdin"], env=env, cwd=workdir,
        input=ADMIN_PASSWORD + "\n", capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    port = _free_port()
    proc = subprocess.Popen(
        [DESKBELL, "run", "--port", str(port)], env=env, cwd=workdir,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    banner: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            break
        banner.append(line)
        if line.startswith("Press Ctrl+C"):
            break
    text = "".join(banner)
    if "Press Ctrl+C" not in text:
        proc.kill()
        raise AssertionError("deskbell run did not start:\n" + text + proc.stderr.read())  # type: ignore[union-attr]
    api_key = next(line.split()[2] for line in banner if line.strip().startswith("API key"))
    demo_key = next(line.split()[-1] for line in banner if "demo widget key" in line)
    # Keep reading its output so a full pipe can never block the service.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    threading.Thread(target=_drain_to_file, args=(proc, ARTIFACTS / "deskbell-stderr.log"), daemon=True).start()
    service = Deskbell(f"http://127.0.0.1:{port}", db_url, workdir, api_key, demo_key, proc)
    yield service
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _drain_to_file(proc: subprocess.Popen[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for line in proc.stderr:  # type: ignore[union-attr]
            out.write(line)
            out.flush()


# ---------------------------------------------------------------- the customer's site


@dataclass
class HostSite:
    """Pages on another origin (``localhost`` vs the service's ``127.0.0.1``) that embed a widget."""

    base: str
    pages: dict[str, str] = field(default_factory=dict)

    def page(self, name: str, widget_key: str, service: Deskbell, *, head: str = "", body: str = "", lang: str = "en") -> str:
        self.pages["/" + name] = f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}</title>{head}</head>
<body><main><h1>Acme Outdoor Gear</h1><p>Tents, stoves and everything for the trail.</p>{body}</main>
<script src="{service.base}/widget.js" data-widget="{widget_key}" async></script>
</body></html>"""
        return f"{self.base}/{name}"


@pytest.fixture(scope="session")
def host_site() -> Iterator[HostSite]:
    site = HostSite(base="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = site.pages.get(self.path.split("?")[0])
            if body is None:
                self.send_error(404)
                return
            raw = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.base = f"http://localhost:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site
    server.shutdown()


# ---------------------------------------------------------------- the browser


# Module scope, not session: the sync API keeps an event loop running in this
# thread while it is open, and the asyncio tests that follow need it gone.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Pages in fresh browser contexts (own storage), closed after the test."""
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        options.setdefault("viewport", {"width": 1100, "height": 720})
        options.setdefault("locale", "en-US")
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def shot(page_or_locator: Any, name: str, *, docs: bool = False, **options: Any) -> Path:
    """A screenshot as a test artefact; README ones also to docs/screenshots when asked."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page_or_locator.screenshot(path=str(path), **options)
    if docs and os.environ.get("DESKBELL_UPDATE_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SHOTS / f"{name}.png")
    return path


def sign_in_admin(page: Any, service: Deskbell) -> None:
    page.goto(service.base + "/admin/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(service.base + "/admin")


def widget_state(page: Any) -> dict[str, Any]:
    return page.evaluate("() => window.deskbell && window.deskbell.state ? window.deskbell.state() : null")


def wait_for_mode(page: Any, mode: str, timeout: float = 20.0) -> None:
    page.wait_for_function(
        "(mode) => window.deskbell && window.deskbell.state && window.deskbell.state().mode === mode",
        arg=mode, timeout=timeout * 1000,
    )
