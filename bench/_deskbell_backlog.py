"""``deskbell`` with another listen backlog, for the what-if runs of the benchmarks.

    python bench/_deskbell_backlog.py BACKLOG web --port P ...

aiohttp's ``TCPSite`` listens with a backlog of 128; when thousands of
widgets reconnect at once the kernel drops SYNs beyond it and each dropped
client retries only after 1 s, 3 s, 7 s... This runs the real command line
with ``TCPSite(backlog=BACKLOG)`` (capped by net.core.somaxconn) to measure
what a larger backlog would change. Not a way to run deskbell.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web  # noqa: E402

BACKLOG = int(sys.argv[1])
_init = web.TCPSite.__init__


def _with_backlog(self: web.TCPSite, *args: object, **kwargs: object) -> None:
    kwargs.setdefault("backlog", BACKLOG)
    _init(self, *args, **kwargs)  # type: ignore[arg-type]


web.TCPSite.__init__ = _with_backlog  # type: ignore[method-assign]

from bot.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[2:]))
