"""Rows just written, as ORM objects outside any session (core/models.py ``detached``)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.exc import DetachedInstanceError

from core.models import Message, detached

ROW = {
    "id": 5, "conversation_id": 3, "seq": 7, "sender": "visitor", "author": None, "text": "hello",
    "client_id": "c1", "internal": False, "created_at": datetime(2026, 12, 7, tzinfo=timezone.utc),
}


def test_a_detached_row_holds_its_values_as_loaded_with_its_identity_and_nothing_to_flush():
    message = detached(Message, ROW)
    state = instance_state(message)
    assert (message.id, message.seq, message.text, message.created_at) == (5, 7, "hello", ROW["created_at"])
    assert state.detached and state.key == (Message, (5,), None)
    assert state.committed_state == {} and not state.modified  # nothing pending: values are as loaded
    message.text = "changed"  # still an ordinary mapped object: changes are tracked
    assert state.modified and state.committed_state["text"] == "hello"


def test_a_column_the_row_did_not_carry_is_not_made_up():
    message = detached(Message, {k: v for k, v in ROW.items() if k != "author"})
    with pytest.raises((DetachedInstanceError, AttributeError)):
        _ = message.author


def test_no_row_is_no_object():
    assert detached(Message, None) is None


def test_a_process_whose_first_orm_object_is_a_detached_row_gets_it():
    """A worker's first claim may be its first ORM object: the mappers are not set up yet."""
    import subprocess
    import sys

    code = (
        "from core.models import Message, detached\n"
        "m = detached(Message, {'id': 5, 'conversation_id': 3, 'seq': 7, 'text': 'hello'})\n"
        "print(m.id, m.text)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["5", "hello"]
