"""Persistent state, as SQLAlchemy 2 declarative models.

Field names are the ones the API, the CLI's ``--json`` and the database share
(see DESIGN.md, "Contracts"). Every time is stored in UTC and read back aware.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, configure_mappers, mapped_column
from sqlalchemy.orm.attributes import instance_state

from core.clock import utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware.

    SQLite has no time zone type, so without this a value written aware comes
    back naive and comparisons with ``utcnow()`` raise.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; deskbell stores aware UTC instants")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


ID = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


def detached(cls: Any, row: Any) -> Any:
    """An ORM object for a row just written and returned by RETURNING, outside any session.

    Cheaper than loading it through the ORM (measured: about half the cost
    of the statement) and safe to share: a later line of the same chat in
    the same transaction gets its own object, not a refreshed shared one.
    The values go straight into the instance's dict, as loading does: the
    mapped constructor sets each through its instrumented attribute, with
    change tracking that then has to be discarded (25 µs against 9 µs per
    message here; a tenth of the web's statement path). The object is then
    made detached as ``make_transient_to_detached`` does, with its identity
    taken from the primary key directly: 8 µs against 15 µs (that function
    reads each key column back through its attribute).
    """
    if row is None:
        return None
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = _shape_of(cls)
    mapper, key_names, attribute_names = shape
    obj = cls._sa_class_manager.new_instance()
    values = obj.__dict__
    values.update(row if isinstance(row, dict) else row._mapping)
    state = instance_state(obj)
    state.key = mapper.identity_key_from_primary_key(tuple(values[name] for name in key_names))
    missing = attribute_names.difference(values)
    if missing:  # not made up: reading one raises, as on any detached object
        state._expire_attributes(values, missing)
    return obj


_SHAPES: dict[Any, tuple[Any, tuple[str, ...], frozenset[str]]] = {}


def _shape_of(cls: Any) -> tuple[Any, tuple[str, ...], frozenset[str]]:
    """A mapped class's mapper, primary-key attribute names and attribute names."""
    if not cls.__mapper__.configured:
        # Mappers are set up by the first query or constructor call; a process whose
        # first ORM object comes from here (a worker's first claim) sets them up now.
        configure_mappers()
    mapper = cls.__mapper__
    key_names = tuple(mapper.get_property_by_column(column).key for column in mapper.primary_key)
    return mapper, key_names, frozenset(cls._sa_class_manager)


class Widget(Base):
    __tablename__ = "widgets"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    offline_message: Mapped[str] = mapped_column(Text)
    online_tab_text: Mapped[str] = mapped_column(String(100))
    offline_tab_text: Mapped[str] = mapped_column(String(100))
    hide_when_offline: Mapped[bool] = mapped_column(Boolean, default=False)
    offline_form: Mapped[bool] = mapped_column(Boolean, default=True)
    ai_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    ai_always: Mapped[bool] = mapped_column(Boolean, default=False)
    allowed_origins: Mapped[list[Any]] = mapped_column(JSON, default=list)
    notify_emails: Mapped[list[Any]] = mapped_column(JSON, default=list)
    session_timeout_s: Mapped[int] = mapped_column(Integer, default=900)
    colors: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    position: Mapped[str] = mapped_column(String(10), default="right")
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Days to keep offline messages and closed conversations; null keeps them.
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    on_duty: Mapped[bool] = mapped_column(Boolean, default=False)
    stay_available: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(nullable=True)
    avatar_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    # Widget ids this agent answers; null means every widget.
    widget_ids: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentToken(Base):
    """A console sign-in link or session, stored as a hash only."""

    __tablename__ = "agent_tokens"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # "login" | "session"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Conversation(Base):
    __tablename__ = "conversations"
    # (widget, visitor) also serves lookups by widget alone; a second index on widget_id
    # only tied with it in plans made before the table had statistics, and lost: finding a
    # visitor's chat walked every chat of the widget (migration 0004).
    __table_args__ = (Index("ix_conversations_widget_visitor", "widget_id", "visitor_id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    widget_id: Mapped[int] = mapped_column(ForeignKey("widgets.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(String(40))
    visitor_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    visitor_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    page_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    page_title: Mapped[str | None] = mapped_column(String(500), nullable=True)
    language: Mapped[str | None] = mapped_column(String(35), nullable=True)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)
    claimed_by: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), nullable=True
    )
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq"),
        Index(
            "uq_messages_conversation_client",
            "conversation_id",
            "client_id",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    sender: Mapped[str] = mapped_column(String(10))  # visitor | agent | bot | system
    author: Mapped[str | None] = mapped_column(String(200), nullable=True)
    avatar_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), nullable=True
    )
    text: Mapped[str] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OfflineMessage(Base):
    __tablename__ = "offline_messages"
    __table_args__ = (Index("ix_offline_messages_widget_created", "widget_id", "created_at"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    widget_id: Mapped[int] = mapped_column(ForeignKey("widgets.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    email: Mapped[str] = mapped_column(String(320))
    message: Mapped[str] = mapped_column(Text)
    page_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="new", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Setting(Base):
    """Instance-wide values that must survive restarts (generated secret, seed marks)."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class OutboxItem(Base):
    """A delivery owed to the outside world; see core/outbox.py for its life cycle."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The claim's two reads (core/outbox.py), each a partial index read in order: rows due
        # and rows whose lease ran out. Delivered rows are in neither, so marking a row done
        # writes no index entry here.
        Index(
            "ix_outbox_pending_due",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_outbox_lease",
            "locked_until",
            "id",
            postgresql_where=text("status = 'delivering'"),
            sqlite_where=text("status = 'delivering'"),
        ),
        # Only rows still owed: the claim asks "is an earlier row of this thread still open?" for
        # every due row, and with the done rows in the index that probe grew with each thread's
        # history (1.4 s per claim on PostgreSQL under the relay benchmark).
        Index(
            "ix_outbox_open_ordering",
            "ordering_key",
            "id",
            postgresql_where=text("status IN ('pending', 'delivering')"),
            sqlite_where=text("status IN ('pending', 'delivering')"),
        ),
        Index("ix_outbox_ref", "ref_type", "ref_id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|delivering|done|dead
    ordering_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    ref_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    ref_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the worker holding the lease
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)


class DeliveryAttempt(Base):
    """One try at one delivery: when, how it ended, what the other side said."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    ok: Mapped[bool]
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class ChannelBinding(Base):
    """A widget's chats relayed into one channel of a platform (Slack, Teams...).

    Platform specifics (service URL, tenant, bot token reference) live in
    ``config`` so a new platform needs no schema change here.
    """

    __tablename__ = "channel_bindings"
    __table_args__ = (
        UniqueConstraint("widget_id", "platform"),
        Index("ix_channel_bindings_channel", "platform", "workspace_id", "channel_id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    widget_id: Mapped[int] = mapped_column(ForeignKey("widgets.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(20))
    workspace_id: Mapped[str] = mapped_column(String(100))
    channel_id: Mapped[str] = mapped_column(String(200))
    channel_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(10), default="ok")  # ok | broken
    status_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ThreadLink(Base):
    """Where a conversation lives on a bound channel: the Slack thread ts, the Teams reply chain."""

    __tablename__ = "thread_links"
    __table_args__ = (
        UniqueConstraint("conversation_id", "binding_id"),
        Index("ix_thread_links_thread", "binding_id", "thread_ref"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    binding_id: Mapped[int] = mapped_column(ForeignKey("channel_bindings.id", ondelete="CASCADE"))
    thread_ref: Mapped[str] = mapped_column(String(300))
    root_ref: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MessageLink(Base):
    """A relayed message's id on a platform, so edits and deletions can follow it."""

    __tablename__ = "message_links"
    __table_args__ = (
        UniqueConstraint("binding_id", "platform_ref"),
        Index("ix_message_links_message", "message_id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    binding_id: Mapped[int] = mapped_column(ForeignKey("channel_bindings.id", ondelete="CASCADE"))
    platform_ref: Mapped[str] = mapped_column(String(300))


class AgentIdentity(Base):
    """An agent's account on a platform (a Slack user in a workspace, a Teams user)."""

    __tablename__ = "agent_identities"
    __table_args__ = (UniqueConstraint("platform", "workspace_id", "user_id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(20))
    workspace_id: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    avatar_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProcessedEvent(Base):
    """Inbound platform events already handled: platforms retry, we act once."""

    __tablename__ = "processed_events"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# --- Slack ---
# Platform-neutral names: any platform installed per workspace by OAuth can use them.


class WorkspaceInstallation(Base):
    """An app installed into a workspace by OAuth: whose bot token to use for that workspace.

    ``enterprise_id`` is "" outside Enterprise Grid and ``workspace_id`` is ""
    for an org-wide install, so the unique key never involves NULLs.
    ``data`` keeps the platform's full installation record.
    """

    __tablename__ = "workspace_installations"
    __table_args__ = (UniqueConstraint("platform", "enterprise_id", "workspace_id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    enterprise_id: Mapped[str] = mapped_column(String(100), default="")
    workspace_id: Mapped[str] = mapped_column(String(100), default="")
    bot_token: Mapped[str] = mapped_column(Text)
    bot_user_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)


class OAuthState(Base):
    """A one-time ``state`` of an OAuth install flow, consumed on the redirect back."""

    __tablename__ = "oauth_states"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    state: Mapped[str] = mapped_column(String(200), unique=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


# --- deliveries ---


class WebhookEndpoint(Base):
    """A URL that receives a widget's events, signed with its own secret (Standard Webhooks).

    The secret is kept in clear because every delivery must be signed with it;
    it is shown to people once, when the endpoint is created.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    widget_id: Mapped[int] = mapped_column(ForeignKey("widgets.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AgentPushover(Base):
    """An agent's Pushover user key: where pushes for new chats and offline messages go."""

    __tablename__ = "agent_pushover"

    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    user_key: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WidgetNotifySettings(Base):
    """Per-widget digest schedule and visitor emails; a widget without a row uses the defaults."""

    __tablename__ = "widget_notify_settings"

    widget_id: Mapped[int] = mapped_column(ForeignKey("widgets.id", ondelete="CASCADE"), primary_key=True)
    digest_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    digest_time: Mapped[str] = mapped_column(String(5), default="09:00")
    digest_days: Mapped[list[Any]] = mapped_column(JSON, default=list)
    digest_timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    digest_channel: Mapped[bool] = mapped_column(Boolean, default=True)
    # A managers' channel for digests on the bound platform; null posts them in the chats channel.
    digest_channel_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    digest_email: Mapped[bool] = mapped_column(Boolean, default=False)
    transcript_email: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Digest(Base):
    """One sent (or empty) digest of a widget's offline messages.

    Unique per (widget, period_end) and written in the transaction that
    enqueues its deliveries, so two workers can never both send one digest.
    """

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("widget_id", "period_end"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    widget_id: Mapped[int] = mapped_column(ForeignKey("widgets.id", ondelete="CASCADE"))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WidgetPresence(Base):
    """Whether a widget was last seen online, so the worker notices the moment all
    agents leave during business hours (and alerts the channel once)."""

    __tablename__ = "widget_presence"

    widget_id: Mapped[int] = mapped_column(ForeignKey("widgets.id", ondelete="CASCADE"), primary_key=True)
    online: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- admin ---


class AdminUser(Base):
    """A person who may use the dashboard at /admin; the password is kept as a scrypt hash."""

    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AdminSession(Base):
    """A signed-in dashboard browser, stored as the hash of its cookie token only."""

    __tablename__ = "admin_sessions"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- knowledge base / assistant ---


class KnowledgeEntry(Base):
    """One knowledge-base entry of a widget: the question it answers and the answer."""

    __tablename__ = "knowledge_entries"
    __table_args__ = (Index("ix_knowledge_entries_widget", "widget_id", "id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    widget_id: Mapped[int] = mapped_column(ForeignKey("widgets.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))
    answer: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    source: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AssistantSettings(Base):
    """A widget's assistant configuration, validated by core/assistant_config.py.

    One JSON document rather than columns: a new setting needs no migration.
    """

    __tablename__ = "assistant_settings"

    widget_id: Mapped[int] = mapped_column(ForeignKey("widgets.id", ondelete="CASCADE"), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AssistantThread(Base):
    """The assistant's part in one conversation: whether it still speaks, and what it is collecting."""

    __tablename__ = "assistant_threads"

    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(12), default="active")  # active | handed_off | stopped
    reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    unanswered: Mapped[int] = mapped_column(Integer, default=0)
    last_answered_seq: Mapped[int] = mapped_column(Integer, default=0)
    lead: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # step, name, email, need, tries
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AssistantUsage(Base):
    """Language-model tokens spent per widget and UTC day, for the daily budget."""

    __tablename__ = "assistant_usage"
    __table_args__ = (UniqueConstraint("widget_id", "day"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    widget_id: Mapped[int] = mapped_column(ForeignKey("widgets.id", ondelete="CASCADE"))
    day: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD, UTC
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    replies: Mapped[int] = mapped_column(Integer, default=0)


class Lease(Base):
    """Who holds a named leadership (e.g. the worker's scheduled jobs) and until when."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime]


class WorkerHeartbeat(Base):
    """A running worker (``deskbell worker`` or the one inside ``deskbell run``) and when it was last alive.

    Web processes read these for ``/readyz``; a row is removed when its worker stops cleanly.
    """

    __tablename__ = "worker_heartbeats"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # random per process start
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(12))  # worker | run
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)
