"""The rows of counted clips (embedding, label, dataset index and their split / file name) waiting on the
device before they are copied to the host: one preallocated buffer of :data:`FLUSH_ROWS` rows, so one
copy, and one host sync, per this many clips rather than per batch, and no per-batch tensor kept alive."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

#: Rows kept on the device before they are copied to the host and appended to the spool (one copy, and
#: so one host sync, per this many clips rather than per batch).
FLUSH_ROWS = 1024

#: Where flushed rows go: host tensors ``{key: [n, ...]}`` and the ``(split, file_name)`` of each row.
Sink = Callable[[dict[str, Tensor], list[tuple[str, str]]], None]


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A host tensor on ``device`` without blocking the host (pinned, non-blocking copy to a GPU)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class PendingRows:
    """Rows waiting on the device, handed to ``sink`` on the host when the buffer is full, when a batch's
    rows do not fit its shapes, and on :meth:`flush`."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffers: Optional[dict[str, Tensor]] = None  # [capacity, ...] per key
        self.meta: list[tuple[str, str]] = []  # (split, file_name) of the waiting rows
        self.n_rows = 0

    def add(self, rows: dict[str, Tensor], meta: list[tuple[str, str]]) -> None:
        """Copy a batch's rows (``{key: [b, ...]}``, ``meta``: one entry per row) into the buffer; flush it
        to the sink when full."""
        b = len(meta)
        buf = self.buffers
        if buf is not None and (
            self.n_rows + b > buf["index"].shape[0]
            or any(buf[k].shape[1:] != v.shape[1:] or buf[k].dtype != v.dtype for k, v in rows.items())
        ):
            self.flush()
        if self.buffers is None or self.buffers["index"].shape[0] < b or self.buffers.keys() != rows.keys():
            cap = max(FLUSH_ROWS, b)
            self.buffers = {k: v.new_empty((cap, *v.shape[1:])) for k, v in rows.items()}
        n = self.n_rows
        for k, v in rows.items():
            self.buffers[k][n : n + b].copy_(v)
        self.meta += meta
        self.n_rows = n + b
        if self.n_rows == self.buffers["index"].shape[0]:
            self.flush()

    def flush(self) -> None:
        """Copy the waiting rows to the host (one copy) and hand them to the sink."""
        n = self.n_rows
        if self.buffers is None or n == 0:
            return
        rows = {k: v[:n].cpu() for k, v in self.buffers.items()}
        meta, self.meta, self.n_rows = self.meta, [], 0
        self.sink(rows, meta)
