"""Slack: chats relayed into channel threads, agents answer and act from Slack.

Laid out like slack-bolt's own adapters: listeners (``inbound``,
``commands``, ``actions``) are separate from the transport (``adapter``:
HTTP at ``POST /slack/events`` or Socket Mode); outbound posts are outbox
handlers (``relay``); pure logic (``blocks``, ``text``, ``errors``,
``pacing``, ``presence`` planning) has no I/O and is tested on its own.
"""
