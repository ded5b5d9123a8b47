"""Text captures of the dashboard for the README: each strategy's view, replayed from the committed event
fixtures (tests/fixtures, recorded from a synthetic word-chain endpoint, so they hold no model output), at 160x48
and, for the tree, 80x24.

    python -m benchmarks.captures      (from the repository root; writes assets/captures/*.txt)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.replay import ManualClock, replay, replay_app

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "captures"


async def capture(strategy: str, size: tuple[int, int], until: float | None) -> str:
    clock = ManualClock()
    app = replay_app(strategy, clock)
    async with app.run_test(size=size) as pilot:
        await replay(pilot, clock, strategy, until=until, then=0.0 if until else 1.0)
        await pilot.pause()
        strips = app.screen._compositor.render_strips()
        return "\n".join(strip.text.rstrip() for strip in strips) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    shots = {f"{s}-finished": (s, (160, 48), None) for s in ("beam", "mcmc", "smc", "best-of-n")}
    shots |= {"beam-mid-run": ("beam", (160, 48), 0.62), "smc-mid-run": ("smc", (160, 48), 0.62),
              "mcmc-mid-run": ("mcmc", (160, 48), 2.33), "beam-80x24": ("beam", (80, 24), None)}
    for name, (strategy, size, until) in shots.items():
        (OUT / f"{name}.txt").write_text(asyncio.run(capture(strategy, size, until)))
        print(f"wrote assets/captures/{name}.txt")


if __name__ == "__main__":
    main()
