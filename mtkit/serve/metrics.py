"""The server's counters and latency quantiles, written in the Prometheus text exposition format.

Prometheus' Python client computes no quantiles for its summaries (it exposes count and sum only), and the
quantiles are what a person reading `GET /metrics` wants, so they are computed here over a window of the most
recent observations.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable

__all__ = ["Metrics"]

QUANTILES = (0.5, 0.9, 0.99)
WINDOW = 10_000  # the most recent observations the quantiles are computed over


class _Window:
    """Count and sum of every observation, quantiles over the most recent WINDOW."""

    def __init__(self) -> None:
        self.count, self.total = 0, 0.0
        self.recent: deque[float] = deque(maxlen=WINDOW)

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.recent.append(value)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.recent)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Metrics:
    """Requests by endpoint and status, batch sizes, latencies, queue depth, dropped and timed-out requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, _Window] = {}
        self.batch_size = _Window()
        self.queue_wait = _Window()
        self.events: Counter[str] = Counter()  # disconnected, timed_out, rejected_full
        self.queue_depth = 0

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.latency.setdefault(endpoint, _Window()).observe(seconds)

    def batch(self, size: int, waited: Iterable[float]) -> None:
        with self._lock:
            self.batch_size.observe(size)
            for seconds in waited:
                self.queue_wait.observe(seconds)

    def event(self, name: str) -> None:
        with self._lock:
            self.events[name] += 1

    def render(self) -> str:
        """Everything, in the Prometheus text format (version 0.0.4)."""
        with self._lock:
            lines = ["# HELP mtkit_requests_total HTTP requests answered, by endpoint and status code.", "# TYPE mtkit_requests_total counter"]
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'mtkit_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            lines += _summary("mtkit_request_latency_seconds", "Time from a request's arrival to its answer.", self.latency, "endpoint")
            lines += _summary("mtkit_batch_size", "Inputs per model call (dynamic batching).", {"": self.batch_size}, "")
            lines += _summary("mtkit_queue_wait_seconds", "Time a request waited before its batch ran.", {"": self.queue_wait}, "")
            lines += ["# HELP mtkit_queue_depth Requests waiting for a batch.", "# TYPE mtkit_queue_depth gauge", f"mtkit_queue_depth {self.queue_depth}"]
            lines += ["# HELP mtkit_dropped_total Requests not answered: client disconnected, timed out, or queue full.", "# TYPE mtkit_dropped_total counter"]
            for reason in ("disconnected", "queue_full", "timed_out"):
                lines.append(f'mtkit_dropped_total{{reason="{reason}"}} {self.events[reason]}')
        return "\n".join(lines) + "\n"


def _summary(name: str, help_text: str, windows: dict[str, _Window], label: str) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} summary"]
    for value, window in sorted(windows.items()):
        base = f'{label}="{value}"' if label else ""
        for q in QUANTILES:
            labels = f'{base},quantile="{q}"' if base else f'quantile="{q}"'
            lines.append(f"{name}{{{labels}}} {window.quantile(q):.6g}")
        suffix = f"{{{base}}}" if base else ""
        lines += [f"{name}_count{suffix} {window.count}", f"{name}_sum{suffix} {window.total:.6g}"]
    return lines
