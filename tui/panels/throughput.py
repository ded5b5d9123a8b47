"""How fast: tokens and requests per second, a minute of history, latency percentiles, retries, failures, and
with several endpoints a line for each: its request rate and count, median latency and whether it is answering."""

from __future__ import annotations

from urllib.parse import urlparse

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline

from engine.run_state import RunState
from tui.panels.line import Line

SPARKLINE_EVERY_S = 1.0  # its buckets are one second wide; redrawing faster only costs CPU


class ThroughputPanel(Vertical):
    BORDER_TITLE = "Throughput"
    BORDER_SUBTITLE = "tokens/s, last minute"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._sparkline_at = float("-inf")
        self.rates, self.latency, self.counts = Line(id="rates"), Line(id="latency"), Line(id="counts")
        self.history = Sparkline([0.0], id="rate-history")
        self.endpoint_lines: dict[str, Line] = {}  # mounted once per endpoint; a Line repaints without reflow

    def compose(self) -> ComposeResult:
        yield self.rates
        yield self.history
        yield self.latency
        yield self.counts

    def show(self, state: RunState) -> None:
        tokens_s, requests_s = state.rates()
        self.rates.text = f"{tokens_s:,.0f} tok/s · {requests_s:.1f} req/s"
        percentiles = state.latencies.percentiles()
        latency = f"p50 {percentiles[0]:.2f}s · p95 {percentiles[1]:.2f}s" if percentiles else "p50 – · p95 –"
        self.latency.text = latency
        self.counts.text = f"retries {state.retries} · failures {state.failures}"
        rates = state.endpoint_rates()
        for url, tally in state.endpoints.items():
            if url not in self.endpoint_lines:
                self.endpoint_lines[url] = line = Line()
                self.mount(line)
            median = tally.latencies.percentiles()
            self.endpoint_lines[url].text = (
                f"{urlparse(url).netloc or url} {rates[url]:.1f} req/s · {tally.requests} req · "
                f"p50 {'–' if median is None else f'{median[0]:.2f}s'} · {tally.health}")
        now = state.clock()
        if now - self._sparkline_at >= SPARKLINE_EVERY_S:
            self._sparkline_at = now
            self.history.data = state.token_rate_history()
