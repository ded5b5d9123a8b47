"""The proxy's metrics in Prometheus' format, through prometheus_client, named as vLLM names its own where one
exists (`vllm:e2e_request_latency_seconds` is `beamtui:e2e_request_latency_seconds` here), so dashboards built
for vLLM read them with the prefix changed."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine.events import ClientRequestFinished, Event, RequestFinished

CONTENT_TYPE = CONTENT_TYPE_LATEST
# vLLM's buckets for end-to-end latency, which a search stretches: up to ten minutes.
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0)
# Specs are the clients' to choose (mcmc alone has millions): past this many distinct ones the rest are counted
# under "other", so that no client can grow the proxy's memory or a scraper's series without bound.
MOST_SPECS = 100
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ProxyMetrics:
    def __init__(self, running: Callable[[], int], waiting: Callable[[], int], upstream_running: Callable[[], int]):
        self.registry = CollectorRegistry()
        self.specs: set[str] = set()
        r = self.registry
        self.success = Counter("beamtui:request_success", "Requests answered, by spec and finish reason",
                               ["spec", "finished_reason"], registry=r)
        self.failure = Counter("beamtui:request_failure", "Requests refused or failed, by spec and HTTP status",
                               ["spec", "status"], registry=r)
        self.prompt_tokens = Counter("beamtui:prompt_tokens", "Prompt tokens sent upstream, over every request of "
                                     "every search", ["spec"], registry=r)
        self.generation_tokens = Counter("beamtui:generation_tokens", "Tokens generated upstream, over every "
                                         "request of every search", ["spec"], registry=r)
        self.e2e = Histogram("beamtui:e2e_request_latency_seconds", "A client request from admission to answer",
                             ["spec"], buckets=E2E_BUCKETS, registry=r)
        self.upstream = Histogram("beamtui:upstream_request_latency_seconds", "One request to the upstream",
                                  buckets=UPSTREAM_BUCKETS, registry=r)
        Gauge("beamtui:num_requests_running", "Client requests being searched", registry=r).set_function(running)
        Gauge("beamtui:num_requests_waiting", "Upstream requests waiting for one of --max-concurrent slots",
              registry=r).set_function(waiting)
        Gauge("beamtui:num_upstream_requests_running", "Requests in flight to the upstream",
              registry=r).set_function(upstream_running)

    def observe(self, event: Event, spec: str, seconds: float | None = None) -> None:
        if isinstance(event, RequestFinished):
            self.upstream.observe(event.latency_s)
        elif isinstance(event, ClientRequestFinished):
            spec = self.label(spec)
            if event.status == 200:
                self.success.labels(spec, event.finish_reason or "stop").inc()
            else:
                self.failure.labels(spec, str(event.status)).inc()
            self.prompt_tokens.labels(spec).inc(event.prompt_tokens)
            self.generation_tokens.labels(spec).inc(event.completion_tokens)
            if seconds is not None:
                self.e2e.labels(spec).observe(seconds)

    def label(self, spec: str) -> str:
        if spec not in self.specs and len(self.specs) < MOST_SPECS:
            self.specs.add(spec)
        return spec if spec in self.specs else "other"

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
