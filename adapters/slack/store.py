"""Slack OAuth installations and install states, kept in deskbell's own database.

slack-sdk ships SQLAlchemy stores, but they manage their own tables and
engine; these implement the same interfaces over our models, migrations and
:class:`core.db.Database`, so PostgreSQL and SQLite both work and backups
hold everything. Only bot installations are kept: deskbell needs no user
tokens.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from sqlalchemy import delete, select

from core.clock import utcnow
from core.db import Database
from core.models import OAuthState, WorkspaceInstallation

PLATFORM = "slack"
log = logging.getLogger(__name__)


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items() if k != "bot_token"}


class SqlInstallationStore(AsyncInstallationStore):
    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        await self.async_save_bot(installation.to_bot())

    async def async_save_bot(self, bot: Bot) -> None:
        enterprise_id = bot.enterprise_id or ""
        workspace_id = "" if bot.is_enterprise_install else (bot.team_id or "")
        data = _jsonable(bot.to_dict_for_copying())
        async with self.db.write() as session:
            row = (
                await session.execute(
                    select(WorkspaceInstallation).where(
                        WorkspaceInstallation.platform == PLATFORM,
                        WorkspaceInstallation.enterprise_id == enterprise_id,
                        WorkspaceInstallation.workspace_id == workspace_id,
                    )
                )
            ).scalar_one_or_none()
            if row is None:
                row = WorkspaceInstallation(platform=PLATFORM, enterprise_id=enterprise_id, workspace_id=workspace_id)
                session.add(row)
            row.bot_token, row.bot_user_id, row.data, row.installed_at = bot.bot_token, bot.bot_user_id, data, utcnow()

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        query = select(WorkspaceInstallation).where(WorkspaceInstallation.platform == PLATFORM)
        if is_enterprise_install or not team_id:
            query = query.where(WorkspaceInstallation.enterprise_id == (enterprise_id or ""), WorkspaceInstallation.workspace_id == "")
        else:
            query = query.where(WorkspaceInstallation.workspace_id == team_id)
            if enterprise_id:
                query = query.where(WorkspaceInstallation.enterprise_id == enterprise_id)
        async with self.db.read() as session:
            row = (await session.execute(query.order_by(WorkspaceInstallation.id.desc()).limit(1))).scalar_one_or_none()
        if row is None:
            return None
        return Bot(**{**row.data, "bot_token": row.bot_token})

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        bot = await self.async_find_bot(enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install)
        if bot is None:
            return None
        return Installation(
            app_id=bot.app_id,
            enterprise_id=bot.enterprise_id,
            enterprise_name=bot.enterprise_name,
            team_id=bot.team_id,
            team_name=bot.team_name,
            bot_token=bot.bot_token,
            bot_id=bot.bot_id,
            bot_user_id=bot.bot_user_id,
            bot_scopes=bot.bot_scopes,
            user_id=user_id or "",
            is_enterprise_install=bot.is_enterprise_install,
            installed_at=bot.installed_at,
        )

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        async with self.db.write() as session:
            await session.execute(
                delete(WorkspaceInstallation).where(
                    WorkspaceInstallation.platform == PLATFORM,
                    WorkspaceInstallation.enterprise_id == (enterprise_id or ""),
                    WorkspaceInstallation.workspace_id == (team_id or ""),
                )
            )

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is None:  # user tokens are never stored; only the workspace's removal matters
            await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)


class SqlOAuthStateStore(AsyncOAuthStateStore):
    """One-time install states that work across web processes (the default is a local file)."""

    def __init__(self, db: Database, expiration_seconds: int = 600) -> None:
        self.db = db
        self.expiration = timedelta(seconds=expiration_seconds)

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(24)
        now = utcnow()
        async with self.db.write() as session:
            await session.execute(delete(OAuthState).where(OAuthState.expires_at <= now))
            session.add(OAuthState(state=state, expires_at=now + self.expiration))
        return state

    async def async_consume(self, state: str) -> bool:
        async with self.db.write() as session:
            result = await session.execute(
                delete(OAuthState).where(OAuthState.state == state[:200], OAuthState.expires_at > utcnow())
            )
        return bool(result.rowcount)
