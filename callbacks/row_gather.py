"""Every process's spooled rows in dataset order for process 0, block by block: the processes exchange
what their spools hold, and each sends its part of each block to process 0 (one ``gather_object`` per
block), so no process holds every row at once."""

from __future__ import annotations

from typing import Any, Optional

import torch.distributed as dist

from analysis.runs import write as R


def gathered_rows(spool: R.RowSpool, world: int, rank: int) -> Optional[R.RowBlocks]:
    """The rows of every process in dataset order (process ``rank`` 0; one process: its own spool);
    the other processes send their parts and return None."""
    if world <= 1 or not (dist.is_available() and dist.is_initialized()):
        return R.RowBlocks.from_spools([spool])
    described: list[Any] = [None] * world
    dist.all_gather_object(described, spool.describe())
    indices: list[Any] = [None] * world
    dist.all_gather_object(indices, spool.read_index())
    order = R.RowOrder.of(indices)

    def fetch(block: slice) -> Optional[list]:
        parts = [None] * world if rank == 0 else None
        dist.gather_object(spool.read(order.wanted(block, rank)), parts, dst=0)
        return parts

    block_rows = R.RowBlocks.block_rows(described)
    if rank == 0:
        return R.RowBlocks.ordered(order, described, fetch, block_rows)
    for block in order.ranges(block_rows):
        fetch(block)
    return None
