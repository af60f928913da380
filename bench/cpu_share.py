"""CPU used by each part of a running benchmark, over a window, from /proc.

    .venv/bin/python bench/cpu_share.py 20     # while bench/relay_slack.py is under load

Prints each group's share of one CPU (100 % = one core) over the window:
the deskbell processes (``run`` counts as web), PostgreSQL's backends
summed, Redis, the fake Slack and the load generators. A benchmark's own
"CPU while driven" figure covers only deskbell; this shows what shares the
2 CPUs with it. Linux only.
"""

from __future__ import annotations

import os
import sys
import time

GROUPS = (  # first match wins: (group, substring of the command line)
    ("postgres", "postgres"),
    ("web", "deskbell web"),
    ("web", "deskbell run"),
    ("worker", "deskbell worker"),
    ("redis", "redis-server"),
    ("fake slack", "_fake_slack"),
    ("load generators", "spawn_main"),
    ("load generators", "bench/relay_slack.py"),
    ("load generators", "bench/soak_kill.py"),
)


def group_of(command: str) -> str | None:
    return next((group for group, part in GROUPS if part in command), None)


def ticks_by_process() -> dict[int, tuple[str, int]]:
    """pid -> (command line, user + system clock ticks so far)."""
    out: dict[int, tuple[str, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline") as f:
                command = f.read().replace("\0", " ")
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        out[int(name)] = (command, int(fields[11]) + int(fields[12]))
    return out


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    before, started = ticks_by_process(), time.monotonic()
    time.sleep(seconds)
    after, elapsed = ticks_by_process(), time.monotonic() - started
    used: dict[str, int] = {}
    for pid, (command, ticks) in after.items():
        group = group_of(command)
        if group is not None:
            used[group] = used.get(group, 0) + ticks - before.get(pid, (command, 0))[1]
    hz = os.sysconf("SC_CLK_TCK")
    print(", ".join(f"{group} {100 * t / hz / elapsed:.0f} %" for group, t in sorted(used.items(), key=lambda g: -g[1])))


if __name__ == "__main__":
    main()
