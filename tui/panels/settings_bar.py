"""The current settings, always on screen."""

from __future__ import annotations

from engine.settings import BackendSettings, SearchSettings
from tui.panels.line import Line


def describe(search: SearchSettings, backend: BackendSettings) -> str:
    where = backend.backend if backend.backend == "local" else f"{backend.backend} {backend.model}"
    if search.info.temperature is not None:
        temperature = f"{search.sampling_temperature:g} ({search.strategy})"
    else:
        temperature = f"{search.proposal_temperature:g}" + (" (1/alpha)" if search.temperature is None else "")
    latency = f" · latency {backend.latency:g}s (simulated)" if backend.latency else ""
    seed = f" · seed {search.seed}" if search.seed is not None else ""
    return (
        f"{where} · {search.mode} · {search.spec} · block {search.block_tokens}/{search.max_tokens} · "
        f"alpha {search.alpha:g} · T {temperature} · cap {backend.max_concurrent}{seed}{latency}"
    )


class SettingsBar(Line):
    """Repaints without a layout pass, so a knob's new value is on screen in the next frame."""

    def show_settings(self, search: SearchSettings, backend: BackendSettings) -> None:
        self.text = describe(search, backend)
