"""The rows of a run folder in dataset order (:class:`RowOrder`), as blocks (:class:`RowBlocks`) from the
processes' spools or from tensors in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from analysis.runs.write.row_spool import RowSpool

#: Bytes of embeddings and labels per block when assembling features.pt / gts.pt / index.csv (the memory
#: the assembly needs, whatever the number of clips).
BLOCK_BYTES = 16 * 2**20


@dataclass
class RowOrder:
    """Dataset order of the rows of several spools (one per process): output row ``i`` is row ``row[i]`` of
    spool ``source[i]``, with dataset index ``index[i]`` (ascending). All int64 ``[N]``."""

    source: Tensor
    row: Tensor
    index: Tensor

    @classmethod
    def of(cls, indices: Sequence[Tensor]) -> "RowOrder":
        """The order of spools holding dataset ``indices`` (one int64 tensor per spool). A dataset index
        present twice is a ``RuntimeError`` (a clip predicted twice).

        >>> o = RowOrder.of([torch.tensor([0, 2, 4]), torch.tensor([1, 3])])
        >>> o.source.tolist(), o.row.tolist()
        ([0, 1, 0, 1, 0], [0, 0, 1, 1, 2])
        """
        if not indices:
            raise ValueError("RowOrder: no spools")
        index = torch.cat([i.long().cpu() for i in indices])
        source = torch.cat([torch.full((len(i),), s, dtype=torch.long) for s, i in enumerate(indices)])
        row = torch.cat([torch.arange(len(i), dtype=torch.long) for i in indices])
        order = torch.argsort(index, stable=True)
        index = index[order]
        if len(index) > 1 and bool((index[1:] == index[:-1]).any()):
            dup = index[1:][index[1:] == index[:-1]].unique().tolist()
            raise RuntimeError(f"clips predicted twice (dataset index {dup[:10]})")
        return cls(source[order], row[order], index)

    def __len__(self) -> int:
        return int(self.index.numel())

    def ranges(self, block_rows: int) -> Iterator[slice]:
        """Consecutive output row ranges of at most ``block_rows`` rows."""
        for a in range(0, len(self), block_rows):
            yield slice(a, min(a + block_rows, len(self)))

    def wanted(self, block: slice, source: int) -> Tensor:
        """Rows of spool ``source`` that fall in output range ``block``, in output order."""
        return self.row[block][self.source[block] == source]

    def assemble(self, block: slice, parts: Sequence[Optional[dict[str, Any]]]) -> dict[str, Any]:
        """Output block ``block`` from each spool's :meth:`RowSpool.read` of its :meth:`wanted` rows."""
        src = self.source[block]
        k = int(src.numel())
        where = {s: (src == s).nonzero().flatten() for s, p in enumerate(parts) if p is not None and len(p["index"])}
        out: dict[str, Any] = {"split": [None] * k, "file_name": [None] * k}
        for key in ("embedding", "label", "index"):
            filled = [(where[s], parts[s][key]) for s in where]
            if not filled or filled[0][1] is None:
                out[key] = None
                continue
            t = filled[0][1].new_empty((k, *filled[0][1].shape[1:]))
            for pos, val in filled:
                t[pos] = val
            out[key] = t
        for s, pos in where.items():
            for key in ("split", "file_name"):
                for j, v in zip(pos.tolist(), parts[s][key]):
                    out[key][j] = v
        if out["index"] is None or not torch.equal(out["index"], self.index[block]):
            raise RuntimeError("row spools returned other rows than requested")
        return out


@dataclass
class RowBlocks:
    """Rows of a run folder in dataset order, as an iterable of blocks ``{"embedding" [k, E] or None,
    "label" [k] / [k, C], "index" [k], "split", "file_name"}``: ``n_rows`` rows in all, ``embed_dim`` None
    without embeddings, ``label_width`` None for class indices (int64) or C for multi-hot (float32)."""

    n_rows: int
    embed_dim: Optional[int]
    label_width: Optional[int]
    blocks: Iterable[dict[str, Any]]

    @staticmethod
    def kind(described: Sequence[dict[str, Optional[int]]]) -> tuple[Optional[int], Optional[int]]:
        """The (embedding dim, label width) the spools agree on (spools without rows are ignored)."""
        kinds = {(d["embed_dim"], d["label_width"]) for d in described if d["n_rows"]}
        if len(kinds) != 1:
            raise ValueError(
                f"row spools disagree on (embedding dim, label width): {sorted(kinds, key=str)}"
                if kinds
                else "no clip was predicted"
            )
        return kinds.pop()

    @staticmethod
    def block_rows(described: Sequence[dict[str, Optional[int]]], block_bytes: int = BLOCK_BYTES) -> int:
        """Rows per block so that a block's embeddings and labels take about ``block_bytes``."""
        embed_dim, label_width = RowBlocks.kind(described)
        row = 4 * (embed_dim or 0) + (8 if label_width is None else 4 * label_width) + 8
        return max(1, block_bytes // row)

    @classmethod
    def ordered(
        cls,
        order: RowOrder,
        described: Sequence[dict[str, Optional[int]]],
        fetch: Callable[[slice], Sequence[Optional[dict[str, Any]]]],
        block_rows: Optional[int] = None,
    ) -> "RowBlocks":
        """Rows in ``order``; ``fetch(block)`` returns one :meth:`RowSpool.read` per spool of the rows
        :meth:`RowOrder.wanted` (e.g. gathered from other processes); ``described``: each spool's
        :meth:`RowSpool.describe`; ``block_rows`` default :meth:`block_rows`."""
        embed_dim, label_width = cls.kind(described)
        rows = block_rows or cls.block_rows(described)

        def blocks() -> Iterator[dict[str, Any]]:
            for sl in order.ranges(rows):
                yield order.assemble(sl, fetch(sl))

        return cls(len(order), embed_dim, label_width, blocks())

    @classmethod
    def from_spools(cls, spools: Sequence[RowSpool], block_rows: Optional[int] = None) -> "RowBlocks":
        """The rows of closed spools readable by this process, in dataset order."""
        order = RowOrder.of([s.read_index() for s in spools])
        return cls.ordered(
            order,
            [s.describe() for s in spools],
            lambda sl: [s.read(order.wanted(sl, i)) for i, s in enumerate(spools)],
            block_rows,
        )

    @classmethod
    def from_tensors(
        cls,
        index: Tensor,
        label: Tensor,
        split: Sequence[str],
        file_name: Sequence[str],
        embedding: Optional[Tensor] = None,
    ) -> "RowBlocks":
        """Rows held in memory (any order; sorted by dataset index here)."""
        order = RowOrder.of([index])
        o = order.row
        block = {
            "embedding": None if embedding is None else embedding.float()[o],
            "label": label[o],
            "index": order.index,
            "split": [split[i] for i in o.tolist()],
            "file_name": [file_name[i] for i in o.tolist()],
        }
        return cls(
            len(order),
            None if embedding is None else int(embedding.shape[1]),
            int(label.shape[1]) if label.dim() == 2 else None,
            [block],
        )
