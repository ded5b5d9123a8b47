"""The search tree as lines to show: the lineage of the current population, what each node lost, the best path.

Every candidate is a node with a parent (`engine.run_state.TreeNode`). The view follows the live members back to
the prompt; at each node of that lineage it counts the children that were pruned, resampled away or rejected,
and marks the path of the best member. When the lineage is taller than the room, the oldest levels fold into
one line; when it is narrow, only the best path is kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.events import Member
from engine.run_state import TreeNode

DROPPED = ("pruned", "resampled", "rejected")
GLYPHS = {"kept": "●", "finished": "■", "accepted": "●", "pruned": "✗", "resampled": "↺", "rejected": "✗"}
MAX_INDENT_LEVELS = 12  # deeper levels stay at this indent, so MCMC's long chains stay on screen


@dataclass(frozen=True)
class TreeLine:
    depth: int  # generations below the prompt
    node: int  # -1 for a line that stands for folded levels
    glyph: str
    block: int
    score: float
    tokens: int
    text_tail: str
    dropped: tuple[tuple[str, int], ...]  # (status, how many of this node's children ended that way)
    on_best_path: bool
    best: bool  # the best member itself
    live: bool  # a member of the current population


def tree_lines(tree: dict[int, TreeNode], members: Sequence[Member], room: int, *,
               best_path_only: bool = False) -> list[TreeLine]:
    """The lines of the lineage view, at most `room` of them, best branch first."""
    live = [m.node for m in members if m.status in ("kept", "finished") and m.node in tree]
    if not live or room < 1:
        return []
    best = live[0]
    best_path = set(_ancestors(tree, best))
    lineage = best_path if best_path_only else set().union(*(_ancestors(tree, node) for node in live))
    children: dict[int, list[int]] = defaultdict(list)
    dropped: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for node in tree.values():
        if node.node in lineage:
            children[node.parent].append(node.node)
        elif node.status in DROPPED and (node.parent in lineage or node.parent == 0):
            dropped[node.parent][node.status] += 1
    lines: list[TreeLine] = []
    live_set = set(live)

    def visit(node_id: int, depth: int) -> None:
        node = tree[node_id]
        lines.append(TreeLine(
            depth, node_id, "★" if node_id == best else GLYPHS.get(node.status, "●"), node.block, node.score,
            node.tokens, node.text_tail, tuple(sorted(dropped[node_id].items())), node_id in best_path,
            node_id == best, node_id in live_set,
        ))
        for child in _ordered(tree, children[node_id], best_path):
            visit(child, depth + 1)

    roots = children[0] + [n for n in lineage if tree[n].parent not in tree]
    lines.append(TreeLine(0, 0, "◆", 0, 0.0, 0, "prompt", tuple(sorted(dropped[0].items())), True, False, False))
    for root in _ordered(tree, roots, best_path):
        visit(root, 1)
    return _fold(lines, room)


def _ancestors(tree: dict[int, TreeNode], node: int) -> Iterable[int]:
    """The node and its ancestors that the tree still holds (the oldest may have been forgotten)."""
    seen = []
    while node in tree and node not in seen:
        seen.append(node)
        node = tree[node].parent
    return seen


def _ordered(tree: dict[int, TreeNode], nodes: list[int], best_path: set[int]) -> list[int]:
    return sorted(set(nodes), key=lambda n: (n not in best_path, -tree[n].score, n))


def _fold(lines: list[TreeLine], room: int) -> list[TreeLine]:
    """Keep the deepest levels that fit, with one line standing for the levels folded away."""
    if len(lines) <= room:
        return lines
    if room == 1:
        return [next(line for line in lines if line.best)]
    for cut in range(1, max(line.depth for line in lines) + 1):
        kept = [line for line in lines if line.depth >= cut]
        if len(kept) < room:
            hidden = len(lines) - len(kept)
            marker = TreeLine(cut, -1, "⋮", 0, 0.0, 0, f"{hidden} earlier nodes", (), False, False, False)
            return [marker] + kept
    best = [line for line in lines if line.on_best_path]
    return best[-room:]


def indent(depth: int) -> int:
    return min(depth, MAX_INDENT_LEVELS)
