"""The rows of one engine call as the device reads them (the runner's input, and the
static batch a CUDA graph is captured on)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streammuse.model.sampling import RowSampling


@dataclass
class TickBatch:
    """One engine call's rows as the device reads them, built on the host.

    slots: ``(B,)`` each row's slot. positions: ``(B,)`` the slot's length before the
    call (the position its next row is written at). seeds, first_tick: ``(B,)`` the keys
    of the row's random stream (the tick of the first frame the call generates).
    sampling: the rows' filters. read: the slots as a slice when they are consecutive
    (the cache is read as a view), else None (gathered by ``slots``). max_position: the
    largest of ``positions`` (host int: how far the CPU reads). aligned: every row is at
    ``max_position`` (host bool: then a one-position step needs no length mask on the CPU).
    """

    slots: torch.Tensor
    positions: torch.Tensor
    seeds: torch.Tensor
    first_tick: torch.Tensor
    sampling: RowSampling
    read: slice | None
    max_position: int
    aligned: bool = False

    @property
    def rows(self) -> int:
        return len(self.slots)
