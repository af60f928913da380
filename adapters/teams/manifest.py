"""The Teams app package: ``manifest.json`` with this deployment filled in, plus the two icons.

The template in ``manifest/teams/`` keeps ``${{TEAMS_APP_ID}}``,
``${{PUBLIC_URL}}`` and ``${{PUBLIC_HOST}}`` placeholders (the Teams
Toolkit's notation); :func:`render` replaces them and :func:`package`
zips the result for "Upload a custom app" in Teams. The manifest asks for
the resource-specific permission ``ChannelMessage.Read.Group`` so agents'
replies in a chat's thread reach the bot without an @mention.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "manifest" / "teams"
ICONS = ("color.png", "outline.png")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PLACEHOLDER = re.compile(r"\$\{\{([A-Z_]+)\}\}")


class ManifestError(ValueError):
    """A value the package needs is missing or unusable; ``field`` names the setting."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def values_for(app_id: str | None, public_url: str | None) -> dict[str, str]:
    if not app_id or not _GUID.fullmatch(app_id):
        raise ManifestError("TEAMS_APP_ID", "the bot's Microsoft App ID (a GUID) is needed for the package")
    parts = urlsplit(public_url or "")
    if parts.scheme != "https" or not parts.netloc:
        raise ManifestError("DESKBELL_PUBLIC_URL", "an https:// URL is needed: Teams reaches the bot and its pages there")
    return {"TEAMS_APP_ID": app_id.lower(), "PUBLIC_URL": (public_url or "").rstrip("/"), "PUBLIC_HOST": parts.netloc}


def render(template: Any, values: dict[str, str]) -> Any:
    """The template with every ``${{NAME}}`` replaced. Pure."""
    if isinstance(template, dict):
        return {k: render(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, values) for v in template]
    if isinstance(template, str):
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    return template


def load_template(directory: Path = TEMPLATE_DIR) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text())


def package(app_id: str | None, public_url: str | None, directory: Path = TEMPLATE_DIR) -> bytes:
    """The upload zip: manifest.json, color.png and outline.png at its root."""
    manifest = render(load_template(directory), values_for(app_id, public_url))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
        for icon in ICONS:
            archive.write(directory / icon, icon)
    return buffer.getvalue()
