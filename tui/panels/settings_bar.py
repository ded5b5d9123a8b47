"""The current settings, always on screen."""

from __future__ import annotations

from engine.settings import BackendSettings, SearchSettings
from tui.panels.line import Line


def describe(search: SearchSettings, backend: BackendSettings) -> str:
    where = backend.backend if backend.backend == "local" else f"{backend.backend} {backend.model}"
    temperature = f"{search.proposal_temperature:g}" + (" (1/alpha)" if search.temperature is None else "")
    latency = f" · latency {backend.latency:g}s (simulated)" if backend.latency else ""
    return (
        f"{where} · {search.mode} · beam_width {search.beam_width} · n_per_beam {search.n_per_beam} · "
        f"block {search.block_tokens}/{search.max_tokens} · alpha {search.alpha:g} · T {temperature} · "
        f"cap {backend.max_concurrent}{latency}"
    )


class SettingsBar(Line):
    """Repaints without a layout pass, so a knob's new value is on screen in the next frame."""

    def show_settings(self, search: SearchSettings, backend: BackendSettings) -> None:
        self.text = describe(search, backend)
