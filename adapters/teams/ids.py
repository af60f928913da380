"""Teams conversation ids and what they say about where a message was written. Pure.

A channel post and its replies share one conversation id,
``19:...@thread.tacv2;messageid=ROOT``: the channel id plus the id of the
post that opened the reply chain. That id, not ``replyToId``, tells which
chain a message belongs to.
"""

from __future__ import annotations

THREAD_MARK = ";messageid="


def channel_part(conversation_id: str) -> str:
    """The channel (or chat) a conversation id belongs to."""
    return conversation_id.split(THREAD_MARK, 1)[0]


def root_part(conversation_id: str) -> str | None:
    """The id of the post that opened the reply chain, if the id names one."""
    _, mark, root = conversation_id.partition(THREAD_MARK)
    return (root or None) if mark else None


def chain_id(channel_id: str, root_id: str) -> str:
    return f"{channel_part(channel_id)}{THREAD_MARK}{root_id}"


def created_chain_id(conversation_id: str, activity_id: str | None) -> str:
    """The reply chain a ``create_conversation`` opened.

    Teams answers ``channel;messageid=ROOT``; if only the channel comes back,
    the root activity id completes it, so later lookups always compare the
    same form.
    """
    if root_part(conversation_id) or not activity_id:
        return conversation_id
    return chain_id(conversation_id, activity_id)


def event_key(activity_id: str, conversation_id: str) -> str:
    """A redelivery key for ProcessedEvent: activity ids are unique per channel, not globally."""
    return f"{activity_id}@{channel_part(conversation_id)}"[:200]
