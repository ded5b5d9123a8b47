"""A one-line text widget that repaints without asking for a layout pass.

`Label.update` reflows the whole screen (~90 ms at 160x48 on two slow cores); panels refreshed ten times a
second use this instead.
"""

from __future__ import annotations

from textual.reactive import reactive
from textual.widget import Widget


class Line(Widget):
    DEFAULT_CSS = """
    Line { height: 1; width: 1fr; padding: 0 1; }
    """

    text: reactive[str] = reactive("", layout=False)

    def render(self) -> str:
        return self.text
