"""The keys that act now, at the bottom: one line, or as many as its height gives (two at 80 columns, so every
key shows); a click on one runs its action.

Textual's Footer remounts a widget per key whenever the active bindings change. Closing the prompt editor
then cost three or four layout passes of 40-50 ms each with 100 requests in flight, and a key pressed right
after waited them out (`m` at 160-260 ms, benchmarks.tui_responsiveness). This bar repaints one line instead.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget


class KeysBar(Widget):
    COMPONENT_CLASSES = {"keys-bar--key", "keys-bar--description"}

    keys: reactive[tuple[tuple[str, str], ...]] = reactive((), layout=False)  # (key as shown, description)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._targets: list[tuple[str, object]] = []  # (action, the node it runs on), as `keys`

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        app = self.app
        active = screen.active_bindings
        shown = [(node, binding) for node, binding, enabled, _ in active.values() if binding.show and enabled]
        palette = active.get(app.COMMAND_PALETTE_BINDING) if app.ENABLE_COMMAND_PALETTE else None
        if palette is not None and palette.enabled:
            shown.append((palette.node, palette.binding))
        self._targets = [(binding.action, node) for node, binding in shown]
        self.keys = tuple((app.get_key_display(binding), binding.description) for _, binding in shown)

    def _spans(self):
        """(row, start column, end column, key as shown, description) for each key that fits whole, left to right
        and row by row: the bindings come most important first, so a bar too small keeps quit and `?` (every key)
        and drops the rest."""
        row = column = 0
        for shown, description in self.keys:
            width = len(shown) + len(description) + 4  # " key description " and a gap
            if column and column + width - 2 > self.size.width:
                row, column = row + 1, 0
            if row >= max(1, self.size.height) or width - 2 > self.size.width:
                return
            yield row, column, column + width, shown, description
            column += width

    def render(self) -> Text:
        key_style = self.get_component_rich_style("keys-bar--key")
        description_style = self.get_component_rich_style("keys-bar--description")
        text = Text(no_wrap=True, overflow="ellipsis")
        last_row = 0
        for row, _, _, shown, description in self._spans():
            if row != last_row:
                text.append("\n")
                last_row = row
            text.append(f" {shown} ", key_style)
            text.append(f"{description}  ", description_style)
        return text

    async def on_click(self, event: events.Click) -> None:
        for (row, start, end, _, _), (action, node) in zip(self._spans(), self._targets, strict=False):
            if row == event.y and start <= event.x < end:
                await self.app.run_action(action, node)
                return
