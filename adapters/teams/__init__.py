"""Microsoft Teams: chats relayed into channel reply chains, agents answer and act from Teams.

Built on the Microsoft 365 Agents SDK (``microsoft-agents-hosting-aiohttp``
and ``-msteams``), which speaks the Bot Framework protocol: ``routes``
mounts ``POST /api/messages`` (JWT-checked when ``TEAMS_APP_ID`` is set),
``bot`` turns activities into core calls, ``relay`` holds the outbox
handlers that post reply chains and update their root card, ``presence``
polls Microsoft Graph. Pure logic (``cards``, ``commands``, ``text``,
``ids``, ``errors``, ``pacing``) has no I/O and is tested on its own.
Nothing here is imported by ``core``.
"""
