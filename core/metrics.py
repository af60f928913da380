"""Counters, gauges and histograms, rendered in the Prometheus text format.

Small on purpose: a process has one :class:`Registry`; code that does the
work counts it where it happens (not from bus events, which with Redis every
process sees), and gauges that are cheaper to read than to track are
callbacks evaluated at scrape time.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Awaitable, Callable
from typing import Union

Labels = tuple[tuple[str, str], ...]
GaugeSource = Callable[[], Union[Awaitable[dict[Labels, float]], dict[Labels, float]]]


def _labels(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


def _fmt_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    escaped = (f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), " ")}"' for k, v in items)
    return "{" + ",".join(escaped) + "}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self.values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = _labels(**labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        lines += [f"{self.name}{_fmt_labels(k)} {_num(v)}" for k, v in sorted(self.values.items())]
        return lines


class Histogram:
    DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}  # counts per bucket, [sum, count]

    def observe(self, value: float, **labels: str) -> None:
        key = _labels(**labels)
        counts, totals = self.series.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0, 0.0]))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        totals[0] += value
        totals[1] += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, (counts, (total, count)) in sorted(self.series.items()):
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts):
                running += n
                lines.append(f"{self.name}_bucket{_fmt_labels(key, (('le', _num(bound)),))} {running}")
            lines.append(f"{self.name}_sum{_fmt_labels(key)} {_num(total)}")
            lines.append(f"{self.name}_count{_fmt_labels(key)} {_num(count)}")
        return lines


class Gauge:
    def __init__(self, name: str, help_text: str, source: GaugeSource) -> None:
        self.name, self.help, self.source = name, help_text, source

    async def render(self) -> list[str]:
        values = self.source()
        if not isinstance(values, dict):
            values = await values
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge"]
        lines += [f"{self.name}{_fmt_labels(k)} {_num(v)}" for k, v in sorted(values.items())]
        return lines


class Registry:
    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.histograms: dict[str, Histogram] = {}
        self.gauges: dict[str, Gauge] = {}

    def counter(self, name: str, help_text: str) -> Counter:
        return self.counters.setdefault(name, Counter(name, help_text))

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS) -> Histogram:
        return self.histograms.setdefault(name, Histogram(name, help_text, buckets))

    def gauge(self, name: str, help_text: str, source: GaugeSource) -> Gauge:
        self.gauges[name] = Gauge(name, help_text, source)
        return self.gauges[name]

    async def render(self) -> str:
        lines: list[str] = []
        for counter in self.counters.values():
            lines += counter.render()
        for histogram in self.histograms.values():
            lines += histogram.render()
        for gauge in self.gauges.values():
            try:
                lines += await gauge.render()
            except Exception as exc:  # one broken source must not hide the rest
                lines.append(f"# {gauge.name} unavailable: {type(exc).__name__}")
        return "\n".join(lines) + "\n"


def labels(**kw: str) -> Labels:
    """Label set for a gauge source's result dict."""
    return _labels(**kw)
