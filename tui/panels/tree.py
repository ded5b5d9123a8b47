"""The search tree: where the current population came from, what was pruned, resampled away or rejected on the
way, and the path of the best answer, highlighted. The lines come from `tui.tree_lines`."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.run_state import RunState
from tui.tree_lines import TreeLine, indent, tree_lines

DROPPED_MARKS = {"pruned": "✗", "resampled": "↺", "rejected": "✗"}


class TreePanel(Static):
    BORDER_TITLE = "Search tree"
    BORDER_SUBTITLE = "★ best · ● kept · ■ finished · ✗ pruned/rejected · ↺ resampled away"

    def __init__(self, **kwargs):
        super().__init__("", **kwargs)
        self._shown: tuple | None = None

    def show(self, state: RunState) -> None:
        if not self.is_attached:
            return  # the app is closing
        members = state.visible_members()
        narrow = self.screen.has_class("narrow")
        key = (len(state.tree), tuple(members), self.size, narrow)
        if key == self._shown or not self.size.width:
            return
        self._shown = key
        room = max(1, self.size.height - 2)
        lines = tree_lines(state.tree, members, room, best_path_only=narrow)
        width = max(20, self.size.width - 4)
        # No layout pass: the grid fixes the panel's size, and a reflow costs ~20 ms a frame at 160x48.
        self.update(render(lines, width) if lines else Text("the tree grows as rounds finish", style="dim"),
                    layout=False)


def render(lines: list[TreeLine], width: int) -> Text:
    base = min(line.depth for line in lines)
    text = Text(no_wrap=True, overflow="ellipsis")
    for number, line in enumerate(lines):
        if number:
            text.append("\n")
        pad = "  " * indent(line.depth - base)
        marks = "".join(f" {DROPPED_MARKS[status]}{count}" for status, count in line.dropped)
        if line.node <= 0:  # the prompt, or a line standing for folded levels
            text.append(f"{pad}{line.glyph} {line.text_tail}", style="dim")
            text.append(marks, style="red")
            continue
        style = "bold" if line.on_best_path else "" if line.live else "dim"
        head = f"{pad}{line.glyph} b{line.block} {line.score:+.2f} {line.tokens:>3}t "
        room = max(8, width - len(head) - len(marks))
        tail = " ".join(line.text_tail.split())[-room:]
        text.append(head, style=("bold yellow" if line.best else style))
        text.append(tail, style=style)
        if marks:
            text.append(marks, style="red")
    return text
