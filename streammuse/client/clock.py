"""The clock role: ticks every tau = 60000 / (4 BPM) ms against ``time.monotonic``.

Tick t's onset is ``start + t * tau`` (t = -1 is the one-tick count-in), computed from
the start, never by adding up sleeps, so lateness does not accumulate. The clock runs on
an asyncio loop (whose time is ``time.monotonic``); each tick's lateness, the time
between its ideal onset and the moment the client acts on it, is kept for the jitter
benchmark.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from streammuse.contract import tau_ms

# asyncio's selector rounds its timeout up to whole ms; waking this much early and
# yielding until the onset trades a little CPU for sub-ms lateness.
_EARLY_WAKE_S = 0.0015


class TickClock:
    """Ticks ``first .. last`` of one song on the running asyncio loop."""

    def __init__(self, bpm: float, first: int = -1) -> None:
        self.tau_s = tau_ms(bpm) / 1000.0
        self.first = first
        self.start_s: float | None = None  # loop time of tick 0's onset
        self.lateness_ms: list[float] = []

    def onset_s(self, tick: int) -> float:
        """Loop time of tick ``tick``'s onset."""
        return self.start_s + tick * self.tau_s

    def now_ms(self) -> float:
        """Now, in ms from tick 0's onset."""
        return (asyncio.get_running_loop().time() - self.start_s) * 1000.0

    async def ticks(self, stop: int) -> AsyncIterator[int]:
        """Yield ticks ``first .. stop-1`` at their onsets, then wait for the end of the last."""
        loop = asyncio.get_running_loop()
        self.start_s = loop.time() - self.first * self.tau_s
        for tick in range(self.first, stop):
            await sleep_until(self.onset_s(tick))
            self.lateness_ms.append((loop.time() - self.onset_s(tick)) * 1000.0)
            yield tick
        await sleep_until(self.onset_s(stop))


async def sleep_until(deadline_s: float) -> None:
    """Sleep until the loop time ``deadline_s``: one long sleep, then short yields."""
    loop = asyncio.get_running_loop()
    remaining = deadline_s - loop.time()
    if remaining > _EARLY_WAKE_S:
        await asyncio.sleep(remaining - _EARLY_WAKE_S)
    while loop.time() < deadline_s:
        await asyncio.sleep(0)
