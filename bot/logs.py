"""Logging: plain lines for a terminal, JSON lines (with request ids) for log pipelines.

While the database or Redis is down, every request and frame fails the same
way and would log the same traceback: :class:`RepeatedErrorFilter` keeps one
traceback per place and interval and counts the rest in one line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone


request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# The same error from the same place: its traceback at most once per this many seconds.
REPEAT_INTERVAL_S = 10.0


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        repeated = getattr(record, "repeated", None)
        if repeated:
            entry["repeated"] = repeated
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


@dataclass
class _Window:
    started: float  # monotonic
    ends: float
    message: str  # of the record whose traceback was written
    levelno: int
    held: int = 0  # identical records held back since


class RepeatedErrorFilter(logging.Filter):
    """Identical errors from one place: the traceback once per interval, then a count.

    "Identical" means the same logger, source line and exception type (the
    message may differ, e.g. in a widget id). The first such record passes
    as it is and opens an interval; the ones inside it are held back and
    counted. When the interval is over, one line (no traceback) says how many
    were held back, ``<message> [repeated N more times in 10 s, traceback not
    repeated]``, before the next record, which passes whole and opens the next
    interval. A count whose error stopped is written with the next line this
    handler writes. Records without an exception pass untouched.

    The count line repeats the already written message and the exception's
    type name, never its text, so it cannot leak what the first line did not.
    It is written to ``handler`` directly (not through its filters).
    """

    def __init__(
        self,
        handler: logging.Handler,
        interval: float = REPEAT_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.handler = handler
        self.interval = interval
        self.clock = clock
        self._windows: dict[tuple[str, str, int, str], _Window] = {}
        self._next_sweep = 0.0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        due: list[tuple[tuple[str, str, int, str], _Window]] = []
        passes = True
        with self._lock:
            if now >= self._next_sweep:  # counts of errors that have stopped
                self._next_sweep = now + self.interval
                for key, window in list(self._windows.items()):
                    if window.ends <= now:
                        del self._windows[key]
                        if window.held:
                            due.append((key, window))
            exc = record.exc_info[0] if isinstance(record.exc_info, tuple) else None
            if exc is not None:
                key = (record.name, record.pathname, record.lineno, f"{exc.__module__}.{exc.__qualname__}")
                window = self._windows.get(key)
                if window is not None and window.ends > now:
                    window.held += 1
                    passes = False
                else:
                    if window is not None and window.held:
                        due.append((key, window))
                    self._windows[key] = _Window(now, now + self.interval, _message(record), record.levelno)
        for key, window in due:
            self._write(self._summary(key, window, now))
        return passes

    @staticmethod
    def _summary(key: tuple[str, str, int, str], window: _Window, now: float) -> logging.LogRecord:
        name, pathname, lineno, exc_type = key
        summary = logging.LogRecord(
            name,
            window.levelno,
            pathname,
            lineno,
            "%s [repeated %d more %s in %.0f s (%s), traceback not repeated]",
            (window.message, window.held, "time" if window.held == 1 else "times",
             max(min(now, window.ends) - window.started, 0.0), exc_type.rsplit(".", 1)[-1]),
            None,
        )
        summary.repeated = window.held
        summary.request_id = None
        return summary

    def _write(self, record: logging.LogRecord) -> None:
        self.handler.acquire()
        try:
            self.handler.emit(record)
        finally:
            self.handler.release()


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the handler's to report
        return str(record.msg)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RepeatedErrorFilter(handler))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job per minute is noise
