"""Prometheus text exposition, shared by the pool, the factory and the frontend.

Small on purpose: gauges and counters with labels, rendered in the 0.0.4 text format.
No client library, so that every component can serve /metrics with what it has.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Mapping

from updraft.core import protocol

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = Mapping[str, str]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items()) + "}"


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, kind: str, name: str, help_text: str, samples: float | list[tuple[Labels, float]]
    ) -> Exposition:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        if isinstance(samples, (int, float)):
            samples = [({}, samples)]
        for labels, value in samples:
            number = int(value) if isinstance(value, bool) else value
            self.lines.append(f"{name}{_labels(labels)} {number}")
        return self

    def gauge(self, name: str, help_text: str, samples: float | list[tuple[Labels, float]]) -> Exposition:
        return self.metric("gauge", name, help_text, samples)

    def counter(self, name: str, help_text: str, samples: float | list[tuple[Labels, float]]) -> Exposition:
        return self.metric("counter", name, help_text, samples)

    def histogram(
        self, name: str, help_text: str, histogram: Histogram, labels: Labels | None = None
    ) -> Exposition:
        """Prometheus's histogram: cumulative ``_bucket{le=...}`` lines, then ``_sum`` and ``_count``."""
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        base = dict(labels or {})
        running = 0
        for bound, count in zip(histogram.bounds, histogram.counts, strict=True):
            running += count
            self.lines.append(f"{name}_bucket{_labels({**base, 'le': _number(bound)})} {running}")
        self.lines.append(f"{name}_bucket{_labels({**base, 'le': '+Inf'})} {histogram.count}")
        self.lines.append(f"{name}_sum{_labels(base)} {round(histogram.sum, 6)}")
        self.lines.append(f"{name}_count{_labels(base)} {histogram.count}")
        return self

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


class Histogram:
    """Observations counted into buckets (upper bounds, in order), with their sum and count."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1
                return


def send_metrics(handler: http.server.BaseHTTPRequestHandler, body: str) -> None:
    """Answer one GET /metrics."""
    data = body.encode()
    handler.send_response(200)
    handler.send_header("Content-Type", CONTENT_TYPE)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class BackgroundServer:
    """A threading HTTP server on its own daemon thread (the factory's staging, the frontend's metrics)."""

    def __init__(
        self, host: str, port: int, handler: Callable[..., http.server.BaseHTTPRequestHandler], name: str
    ) -> None:
        self.server = http.server.ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)
        self.path = ""

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def start(self) -> str:
        self.thread.start()
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MetricsServer(BackgroundServer):
    """GET /metrics on its own port, for a component that has no other HTTP server (the frontend)."""

    def __init__(self, host: str, port: int, render: Callable[[], str]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != protocol.METRICS:
                    self.send_error(404, "only /metrics here")
                    return
                send_metrics(self, render())

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(host, port, Handler, "metrics")
        self.path = protocol.METRICS
