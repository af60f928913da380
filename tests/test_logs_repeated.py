"""The same error logged over and over (a database outage): one traceback per interval, then a count."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from collections.abc import Iterator

import pytest

from bot.logs import JsonFormatter, RepeatedErrorFilter, RequestIdFilter, configure_logging


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def logged(clock: Clock) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through a handler with the filter, as configure_logging sets one up."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RepeatedErrorFilter(handler, interval=10.0, clock=clock))
    logger = logging.getLogger("deskbell.test.flood")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, out
    logger.handlers[:] = []
    logger.propagate = True


def _frame_fails(logger: logging.Logger, widget_id: int) -> None:
    try:
        raise sqlite3.OperationalError("database is locked")
    except sqlite3.OperationalError:
        logger.exception("widget %s: a 'message' frame failed", widget_id)


def _read_fails(logger: logging.Logger) -> None:
    try:
        raise ConnectionResetError("connection was closed in the middle of operation")
    except ConnectionResetError:
        logger.exception("reading failed")


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def _tracebacks(out: io.StringIO) -> int:
    return out.getvalue().count("Traceback (most recent call last)")


def test_the_same_error_from_the_same_place_shows_its_traceback_once_per_interval(logged, clock):
    logger, out = logged
    for i in range(50):  # one widget after another: the message differs, the error does not
        _frame_fails(logger, i)
        clock.now += 0.1
    assert _tracebacks(out) == 1
    assert _lines(out)[0] == "ERROR deskbell.test.flood: widget 0: a 'message' frame failed"
    assert "sqlite3.OperationalError: database is locked" in out.getvalue()

    clock.now += 5.1  # the interval is over: the count first, then the next one in full
    _frame_fails(logger, 99)
    lines = _lines(out)
    count_line = [line for line in lines if "[repeated" in line]
    assert count_line == [
        "ERROR deskbell.test.flood: widget 0: a 'message' frame failed"
        " [repeated 49 more times in 10 s (OperationalError), traceback not repeated]"
    ]
    assert lines.index(count_line[0]) < lines.index("ERROR deskbell.test.flood: widget 99: a 'message' frame failed")
    assert _tracebacks(out) == 2


def test_errors_from_other_places_or_of_other_types_are_counted_apart(logged, clock):
    logger, out = logged
    for _ in range(3):
        _frame_fails(logger, 1)
        _read_fails(logger)
        clock.now += 1
    assert _tracebacks(out) == 2
    assert "ConnectionResetError" in out.getvalue() and "OperationalError" in out.getvalue()


def test_lines_without_a_traceback_are_never_held_back(logged, clock):
    logger, out = logged
    for _ in range(5):
        logger.warning("redis publish failed (ConnectionError); remote sockets will resync")
    assert len(_lines(out)) == 5


def test_an_error_that_stops_has_its_count_written_with_the_next_line(logged, clock):
    logger, out = logged
    for _ in range(4):
        _read_fails(logger)
    clock.now += 3
    logger.info("still serving")  # the interval is not over: nothing to say yet
    assert "[repeated" not in out.getvalue()
    clock.now += 8
    logger.info("database is back")
    lines = _lines(out)
    assert lines[-2] == (
        "ERROR deskbell.test.flood: reading failed [repeated 3 more times in 10 s (ConnectionResetError),"
        " traceback not repeated]"
    )
    assert lines[-1] == "INFO deskbell.test.flood: database is back"
    clock.now += 30
    logger.info("quiet")  # said once
    assert out.getvalue().count("[repeated") == 1


def test_a_single_error_gets_no_count_line(logged, clock):
    logger, out = logged
    _read_fails(logger)
    clock.now += 11
    _read_fails(logger)
    clock.now += 11
    logger.info("later")
    assert "[repeated" not in out.getvalue() and _tracebacks(out) == 2


def test_the_count_line_carries_no_exception_text(logged, clock):
    logger, out = logged
    for _ in range(3):
        try:
            raise RuntimeError("connect failed for postgresql://deskbell:s3cret@db/deskbell")
        except RuntimeError:
            logger.exception("database unreachable")
    clock.now += 11
    logger.info("tick")
    count_line = next(line for line in _lines(out) if "[repeated" in line)
    assert "s3cret" not in count_line and "RuntimeError" in count_line


def test_json_lines_carry_the_count(clock):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RepeatedErrorFilter(handler, interval=10.0, clock=clock))
    logger = logging.getLogger("deskbell.test.flood.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        for _ in range(6):
            _read_fails(logger)
        clock.now += 10
        logger.warning("next")
    finally:
        logger.handlers[:] = []
        logger.propagate = True
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e.get("repeated") for e in entries] == [None, 5, None]
    assert "exception" in entries[0] and "exception" not in entries[1]
    assert entries[1]["level"] == "error" and entries[1]["logger"] == "deskbell.test.flood.json"


def test_configure_logging_installs_it():
    root = logging.getLogger()
    quieted = [logging.getLogger(name) for name in ("aiohttp.access", "apscheduler")]
    handlers, levels = root.handlers[:], [root.level, *(q.level for q in quieted)]
    try:
        configure_logging("INFO", "json")
        assert any(isinstance(f, RepeatedErrorFilter) for f in root.handlers[0].filters)
    finally:
        root.handlers[:] = handlers
        for logger, level in zip([root, *quieted], levels):
            logger.setLevel(level)
