"""Shared plumbing for the benchmarks in ``bench/``: real ``deskbell`` processes on
fresh databases, bare-aiohttp baselines, load-generator processes and figures.

Everything listens on and talks to 127.0.0.1 only. Every process a benchmark
starts is stopped by :class:`Stack` when the benchmark ends, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
DESKBELL = str(BIN / "deskbell")
PYTHON = sys.executable
HOST = "127.0.0.1"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
PG_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# Limits raised so one address (the load generator) may act like many visitors.
BENCH_LIMITS = {
    "DESKBELL_LIMIT_CONNECTIONS_PER_IP": "1000000",
    "DESKBELL_LIMIT_OFFLINE_PER_IP_PER_HOUR": "1000000000",
    "DESKBELL_LIMIT_MESSAGES_PER_CONNECTION_PER_MINUTE": "100000",
    "DESKBELL_LIMIT_MESSAGES_PER_IP_PER_MINUTE": "100000000",
}

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# -- small helpers -----------------------------------------------------------
def raise_fd_limit(want: int = 262_144) -> int:
    """Lift RLIMIT_NOFILE (we run as root, so the hard limit can be raised too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields_[11]) + int(fields_[12])) / ticks


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of unsorted values (p in 0..100); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max of durations given in seconds, in milliseconds."""
    ordered = sorted(seconds)
    out = {"n": float(len(ordered))}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        out[name] = percentile(ordered, p) * 1000 if ordered else math.nan
    return out


def fmt_ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def listen_overflows() -> int:
    """TcpExt ListenOverflows: connections dropped because an accept queue was full (all
    processes on this machine; the backlog of aiohttp's TCPSite is 128 by default)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, values in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            return int(dict(zip(head.split()[1:], values.split()[1:]))["ListenOverflows"])
    return 0


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def print_header(title: str, quick: bool) -> None:
    print(f"== {title}{' (--quick)' if quick else ''} ==", flush=True)
    print(f"date {datetime.now(timezone.utc).isoformat(timespec='seconds')}, {os.cpu_count()} CPUs, "
          f"load average {load_average()}, python {sys.version.split()[0]}", flush=True)


def print_table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    sys.stdout.flush()


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- processes -------------------------------------------------------------
@dataclass
class Proc:
    """A child process with its output in a log file (never a pipe that can fill up)."""

    name: str
    args: list[str]
    env: dict[str, str]
    logdir: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def log_path(self) -> Path:
        return self.logdir / f"{self.name}.log"

    def start(self) -> None:
        self.starts += 1
        out = open(self.log_path, "ab")
        out.write(f"\n--- start {self.starts} at {time.strftime('%H:%M:%S')}: {' '.join(self.args)}\n".encode())
        out.flush()
        self.popen = subprocess.Popen(
            self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.logdir,
            preexec_fn=_child_limits,
        )
        out.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    async def wait_http(self, path: str = "/healthz", timeout: float = 60) -> None:
        """Until ``GET path`` answers 200 (the process is serving)."""
        assert self.port is not None
        deadline = time.monotonic() + timeout
        url = f"http://{HOST}:{self.port}{path}"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode if self.popen else '?'}:\n{self.tail()}")
            try:
                ok = await asyncio.to_thread(_get_status, url)
                if ok == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout} s:\n{self.tail()}")

    async def wait_log(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            text = self.log_path.read_text(errors="replace")
            marker = f"--- start {self.starts} "
            if needle in text[text.rfind(marker):]:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not print {needle!r} within {timeout} s:\n{self.tail()}")

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is None or self.popen.poll() is not None:
                return self.popen.returncode if self.popen else None
            await asyncio.sleep(0.02)
        return None

    async def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if not self.alive():
            return self.popen.returncode if self.popen else None
        self.signal(signal.SIGTERM)
        code = await self.wait_exit(timeout)
        if code is None:
            self.signal(signal.SIGKILL)
            code = await self.wait_exit(5)
        return code

    def kill_now(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait(5)

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def errors(self) -> list[str]:
        """Tracebacks and ERROR lines in its log (to show what went wrong)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if "Traceback" in line or " ERROR " in line or '"level": "ERROR"' in line]


def _child_limits() -> None:
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (262_144, 262_144))


def _get_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return int(resp.status)


class Stack:
    """A fresh database and the processes of one benchmark run; ``close()`` removes it all."""

    def __init__(self, name: str, *, db: str = "sqlite", redis: bool = False, extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.db_kind = db
        self.redis = redis
        self.dir = Path(tempfile.mkdtemp(prefix=f"deskbell-bench-{name}-"))
        self.procs: list[Proc] = []
        self.pg_db: str | None = None
        self.db_url = ""
        self.extra_env = dict(extra_env or {})
        self.redis_channel_db: int | None = None

    # -- database ---------------------------------------------------------
    async def create_db(self) -> None:
        if self.db_kind == "sqlite":
            self.db_url = f"sqlite:///{self.dir / 'deskbell.db'}"
            return
        import asyncpg

        self.pg_db = f"bench_{self.name.replace('-', '_')}_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(f'CREATE DATABASE "{self.pg_db}"')
        finally:
            await conn.close()
        base = PG_ADMIN_DSN.rsplit("/", 1)[0]
        self.db_url = f"{base}/{self.pg_db}"

    async def drop_db(self) -> None:
        if self.pg_db is None:
            return
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_db}" WITH (FORCE)')
        finally:
            await conn.close()
        self.pg_db = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKBELL_", "SLACK_", "TEAMS_", "PORT"))}
        env.update(
            {
                "DESKBELL_DATABASE_URL": self.db_url,
                "DESKBELL_SECRET_KEY": SECRET_KEY,
                "DESKBELL_LOG_LEVEL": "WARNING",
                # The code of the tree this script is in, not the one the virtualenv was
                # installed from (an editable install): a copy of an older commit checked
                # out beside this one measures that commit.
                "PYTHONPATH": str(ROOT),
                **BENCH_LIMITS,
                **self.extra_env,
                **extra,
            }
        )
        if self.redis:
            env["DESKBELL_REDIS_URL"] = self.redis_url
        return env

    @property
    def redis_url(self) -> str:
        return REDIS_URL

    async def setup(self) -> None:
        await self.create_db()
        await self.cli("migrate", json_out=False)

    async def cli(self, *args: str, json_out: bool = True) -> Any:
        cmd = [DESKBELL, *args, *(["--json"] if json_out else [])]
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=self.env(), cwd=self.dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"deskbell {' '.join(args)} failed ({proc.returncode}): {err.decode().strip()}")
        return json.loads(out) if json_out else out.decode()

    # -- processes --------------------------------------------------------
    def deskbell(self, mode: str, name: str | None = None, port: int | None = None, **env: str) -> Proc:
        args = [DESKBELL, mode]
        if mode in {"web", "run"}:
            port = port or free_port()
            args += ["--host", HOST, "--port", str(port)]
        proc = Proc(name or mode, args, self.env(**env), self.dir, port=port)
        self.procs.append(proc)
        return proc

    def python(self, name: str, script: str, *script_args: str, port: int | None = None, **env: str) -> Proc:
        base = {k: v for k, v in os.environ.items()}
        base["PYTHONPATH"] = str(ROOT)
        proc = Proc(name, [PYTHON, str(BENCH / script), *script_args], {**base, **env}, self.dir, port=port)
        self.procs.append(proc)
        return proc

    async def start_web(self, mode: str = "web", name: str | None = None, **env: str) -> Proc:
        proc = self.deskbell(mode, name, **env)
        proc.start()
        await proc.wait_http("/healthz")
        return proc

    async def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                await proc.stop(timeout=12)
        with contextlib.suppress(Exception):
            await self.drop_db()
        if os.environ.get("BENCH_KEEP"):
            print(f"  (kept {self.dir})")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


async def start_baseline(stack: Stack, mode: str, *extra: str) -> Proc:
    """A bare aiohttp server (bench/_baseline_server.py) in its own process."""
    port = free_port()
    proc = stack.python(f"baseline-{mode}", "_baseline_server.py", mode, str(port), *extra, port=port)
    proc.start()
    await proc.wait_http("/healthz")
    return proc


# -- load-generator processes -----------------------------------------------
@dataclass
class Workers:
    """Load-generator processes, each running ``target(conn, index, **kwargs)`` in its own loop.

    The parent sends dict commands and gets one dict back per worker.
    """

    procs: list[mp.Process] = field(default_factory=list)
    conns: list[Any] = field(default_factory=list)

    @classmethod
    def start(cls, n: int, target: Callable[..., Awaitable[None]], **kwargs: Any) -> "Workers":
        ctx = mp.get_context("spawn")
        self = cls()
        for i in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=(target, child, i, kwargs), daemon=True)
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
        return self

    async def ask(self, command: dict[str, Any], timeout: float = 600, each: list[dict[str, Any]] | None = None) -> list[Any]:
        """Send ``command`` (merged with ``each[i]``) to every worker; their answers in order."""
        for i, conn in enumerate(self.conns):
            conn.send({**command, **(each[i] if each else {})})
        return await asyncio.wait_for(asyncio.gather(*(asyncio.to_thread(_recv, c) for c in self.conns)), timeout)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    async def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.send({"cmd": "exit"})
        deadline = time.monotonic() + 10
        for p in self.procs:
            while p.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if p.is_alive():
                p.kill()
            p.join(1)


def _recv(conn: Any) -> Any:
    reply = conn.recv()
    if isinstance(reply, dict) and reply.get("error"):
        raise RuntimeError(f"load generator failed: {reply['error']}")
    return reply


def _worker_main(target: Callable[..., Awaitable[None]], conn: Any, index: int, kwargs: dict[str, Any]) -> None:
    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(target(conn, index, **kwargs))


class Commands:
    """The worker side of :class:`Workers`: ``await commands.next()`` and ``commands.reply(...)``."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def next(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.conn.recv)

    def reply(self, value: Any) -> None:
        self.conn.send(value)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def widget_ws_url(port: int, key: str) -> str:
    return f"ws://{HOST}:{port}/widget/{key}/ws"


async def gc_pauses(port: int) -> str:
    """A deskbell process's garbage-collector pauses so far, from its ``/metrics``: per
    generation, how many and the bucket bound the longest fits under (and their sum)."""
    status, text = await http_json("GET", f"http://{HOST}:{port}/metrics")
    if status != 200 or not isinstance(text, str):
        return f"/metrics answered {status}"
    buckets: dict[str, list[tuple[float, float]]] = {}
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("deskbell_gc_pause_seconds_bucket{"):
            labels, value = line[len("deskbell_gc_pause_seconds_bucket{"):].split("} ")
            fields = dict(part.split("=") for part in labels.split(","))
            le = fields["le"].strip('"')
            buckets.setdefault(fields["generation"].strip('"'), []).append((float(le), float(value)))
        elif line.startswith("deskbell_gc_pause_seconds_sum{"):
            labels, value = line.split("} ")
            sums[labels.split('generation="')[1].rstrip('"')] = float(value)
    parts = []
    for generation, series in sorted(buckets.items()):
        total = series[-1][1]
        longest = next((le for le, count in series if count >= total), math.inf)
        parts.append(f"gen {generation}: {int(total)}, longest <= {longest * 1000:.0f} ms, {sums.get(generation, 0) * 1000:.0f} ms in all")
    return "; ".join(parts) or "none"


async def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, json=body, headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text
