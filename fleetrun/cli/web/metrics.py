"""The console's Prometheus metrics, in one registry per console (tests make their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class WebMetrics:
    """Every metric `fleetrun web` exports on /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.pages = Counter(
            "fleetrun_web_pages", "HTTP responses, by page and status code.", ["page", "code"],
            registry=r,
        )  # fmt: skip
        self.live_pages = Gauge(
            "fleetrun_web_live_pages", "Request pages following live progress now.", registry=r
        )
        self.live_overflows = Counter(
            "fleetrun_web_live_overflows",
            "Pages told to reload because they read events slower than they came.",
            registry=r,
        )
        self.records = Counter(
            "fleetrun_web_records_consumed", "Kafka records read by the live feed, by topic.",
            ["topic"], registry=r,
        )  # fmt: skip
        self.cancels = Counter(
            "fleetrun_web_cancels", "Cancel buttons pressed, by outcome.", ["outcome"], registry=r
        )
