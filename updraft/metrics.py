"""Prometheus text exposition, shared by the pool, the factory and the frontend.

Small on purpose: gauges and counters with labels, rendered in the 0.0.4 text format.
No client library, so that every component can serve /metrics with what it has.
"""

from __future__ import annotations

from collections.abc import Mapping

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

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"
