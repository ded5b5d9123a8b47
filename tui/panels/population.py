"""The strategy's population: beams, particles, chains or samples, ranked, with what the last round dropped
marked for a moment, and the continuations of the running round growing token by token."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from engine.events import LiveCandidate, Member
from engine.registry import Column, PopulationView
from engine.run_state import RunState

DROPPED = {"pruned": "✗", "resampled": "↺", "rejected": "✗", "accepted": "✓"}
DROPPED_STYLE = {"pruned": "dim red strike", "resampled": "dim yellow strike", "rejected": "dim red",
                 "accepted": "green"}


def _columns(view: PopulationView) -> tuple[tuple[str, int], ...]:
    return (("#", 4),) + tuple((column.label, column.width) for column in view.columns) + (("done", 4),)


def _cell(column: Column, value: object) -> str:
    return "–" if value is None else format(value, column.fmt)


def _cells(view: PopulationView, member: Member) -> tuple[str, ...]:
    return tuple(_cell(column, getattr(member, column.field)) for column in view.columns)


def _growing_cells(view: PopulationView, live: LiveCandidate) -> tuple[str, ...]:
    """A continuation still growing has its tokens and their mean log p so far; nothing else is known yet."""
    known = {"mean_logprob": live.mean_logprob, "tokens": live.total_tokens}
    return tuple(_cell(column, known[column.field]) if column.field in known else "…" for column in view.columns)


CUT_MARK = "┊"


def _marked(tail: str, cut_offsets: tuple[int, ...]) -> str:
    """The tail with a mark where each cut falls inside it (offsets count characters from the end)."""
    for offset in sorted(cut_offsets, reverse=True):  # the farthest first: nearer offsets stay true
        if 0 < offset <= len(tail):
            tail = tail[:len(tail) - offset] + CUT_MARK + tail[len(tail) - offset:]
    return tail


def _row(mark: str, cells: tuple[str, ...], finished: bool, tail: str, width: int, style: str) -> tuple[Text, ...]:
    tail = " ".join(tail.split())[-width:]
    return (
        Text(mark, style=style, justify="right"),
        *(Text(cell, style=style, justify="right") for cell in cells),
        Text("✓" if finished else "", style=style, justify="center"),
        Text(tail, style=style, no_wrap=True, overflow="ellipsis"),
    )


class PopulationPanel(Vertical):
    BORDER_TITLE = "Beams"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._shown: tuple | None = None
        self._shape: tuple | None = None
        self._rows: list[tuple[Text, ...]] = []
        self.table = DataTable(cursor_type="none", zebra_stripes=True, id="population-table")

    def compose(self) -> ComposeResult:
        yield self.table

    def show(self, state: RunState) -> None:
        members = state.visible_members()
        view = state.search.info.view
        key = (view, members, state.growing, self.size, state.ess, state.resampled, state.accepted, state.proposed)
        if key == self._shown or not self.size.width:
            return
        self._shown = key
        columns = _columns(view)
        text_width = max(10, self.size.width - sum(w for _, w in columns) - 2 * (len(columns) + 1) - 4)
        room = max(1, self.size.height - 3)  # a wide search has more rows than fit: build only what shows
        rows, rank = [], 0
        for member in members[:room]:
            if member.status in DROPPED:
                mark, style = DROPPED[member.status], DROPPED_STYLE[member.status]
            else:
                rank += 1
                mark, style = (str(member.slot + 1) if view.by_slot else str(rank)), ""
            rows.append(_row(mark, _cells(view, member), member.finished,
                             _marked(member.text_tail, member.cut_offsets), text_width, style))
        for live in state.growing[: max(0, room - len(members))]:
            rows.append(_row("…", _growing_cells(view, live), False, live.text_tail, text_width, "italic"))
        self._fill(columns, text_width, rows)
        self.border_title = view.title
        self.border_subtitle = self._summary(state, members)

    def _fill(self, columns: tuple[tuple[str, int], ...], text_width: int, rows: list[tuple[Text, ...]]) -> None:
        """Rows of the same shape are rewritten cell by cell: rebuilding the table changes its size and costs a
        layout pass, ~20 ms a frame at 160x48, which delayed key presses while candidates stream."""
        table = self.table
        shape = (columns, text_width, len(rows))
        if shape != self._shape:
            self._shape = shape
            table.clear(columns=True)  # columns too: an auto-width column never shrinks back
            for label, width in columns:
                table.add_column(label, width=width, key=label)
            table.add_column("text (tail)", width=text_width, key="text")
            for number, row in enumerate(rows):
                table.add_row(*row, key=str(number))
        else:
            keys = [label for label, _ in columns] + ["text"]
            for number, (row, before) in enumerate(zip(rows, self._rows, strict=True)):
                for column, cell, old in zip(keys, row, before, strict=True):
                    if (cell.plain, cell.style) != (old.plain, old.style):  # Text's == ignores its style
                        table.update_cell(str(number), column, cell)
        self._rows = rows

    @staticmethod
    def _summary(state: RunState, members: list[Member]) -> str:
        kept = sum(m.status in ("kept", "finished") for m in members)
        dropped = {status: sum(m.status == status for m in members) for status in DROPPED}
        parts = [f"{kept} kept"] + [f"{count} {status}" for status, count in dropped.items() if count]
        if state.ess is not None:  # the ESS is of the block's weights; after a resampling the weights shown are equal
            ess = f"ESS {state.ess:.1f}/{state.search.particles}"
            parts.append(f"{ess} → resampled #{state.resamples}, weights equal" if state.resampled
                         else f"{ess} · {state.resamples} resamplings")
        if state.acceptance_rate is not None:
            parts.append(f"acceptance {state.acceptance_rate:.0%} ({state.accepted}/{state.proposed})")
        if any(m.cut_offsets for m in members):
            cut = "at entropy rises, its decisions" if state.search.cut == "entropy" else "uniformly"
            parts.append(f"{CUT_MARK} where its last steps cut each chain ({cut})")
        if state.search.info.view.title == "Candidates":
            parts.append("prob: p^alpha × estimated future mass ζ, jackknife-corrected (an estimate)")
        if any(m.status in ("accepted", "rejected") for m in members):
            parts.append("✓/✗ proposal accepted/rejected, @n: regenerated from token n")
        groups = {m.group for m in members if m.group is not None}
        if groups:
            parts.append(f"{len(groups)} distinct answers")
        if state.growing:
            parts.append(f"{len(state.growing)} growing")
        return " · ".join(parts)
