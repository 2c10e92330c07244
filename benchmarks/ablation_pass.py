"""Cost of the one-pass ablation: time for C conditions in one pass ÷ (C × one bare forward pass).

Runs the AblationCallback's two strategies (``loop``: one encoder forward per condition on the same
decoded batch; ``expand``: the batch repeated over several conditions with per-row masks) against a bare
forward loop over the same batches, on a random-init M2D (default: 4 blocks of ViT-Base width, 2 s clips)
with hooks at every MLP activation. Audio decoding is excluded (the batches are in memory), so the ratio
measures exactly the overhead of hooks + bookkeeping. Target ≤ 1.05 (P3).

``--processes 2`` runs the same measurement in 2 processes of a gloo process group (one torch thread
each, each on its share of the batches), ending with the callback's one sum-reduce of the counts as under
DDP; the printed ratios are the medians of the per-batch ratios over processes and repeats.

    python benchmarks/ablation_pass.py [--depth 4] [--width 768] [--clips 32] [--batch 8] [--seconds 2]
                                       [--conditions 8] [--repeats 3] [--processes 1|2]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


from callbacks.ablation import AblationCallback, NeuronList
from callbacks.owned_rows import reduce_counts
from lightning_modules.encoders import M2DEncoder


class _Module(torch.nn.Module):
    """Stands in for AudioClassifier: encoder + linear head."""

    def __init__(self, encoder, classes: int = 10) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.embed_dim, classes)

    def forward(self, audio, lengths=None):
        return self.head(self.encoder(audio, lengths))


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--conditions", type=int, default=8, help="C, incl. the baseline")
    ap.add_argument("--neurons", type=int, default=20, help="neurons per ablated set")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--processes", type=int, default=1, help="1, or 2 processes of a gloo group")
    return ap.parse_args()


def measure_all(a: argparse.Namespace, rank: int = 0, world: int = 1) -> dict[str, list[float]]:
    """Ratios (one pass of C conditions) / (C bare passes) per strategy and repeat, on this process's share
    of the batches."""
    torch.manual_seed(0)
    enc = M2DEncoder(
        checkpoint=None,
        width=a.width,
        depth=a.depth,
        num_heads=max(1, a.width // 64),
        mlp_ratio=4.0,
        seed=0,
        name="bench",
    ).eval()
    model = _Module(enc).eval()
    S = int(16000 * a.seconds)
    batches = [torch.randn(a.batch, S) * 0.1 for _ in range(max(1, a.clips // a.batch))]
    labels = [torch.randint(0, 10, (a.batch,)) for _ in batches]
    batches, labels = batches[rank::world], labels[rank::world]
    sn = list(enc.site_neurons)
    g = torch.Generator().manual_seed(1)
    lists = []
    for i in range(a.conditions - 1):
        pairs = {
            (int(torch.randint(0, len(sn), (1,), generator=g)), int(torch.randint(0, sn[0] - 1, (1,), generator=g)))
            for _ in range(a.neurons)
        }
        lists.append(NeuronList(f"set{i}", [list(p) for p in sorted(pairs)], []))
    C = a.conditions
    trainer = SimpleNamespace(
        world_size=world, strategy=SimpleNamespace(reduce=lambda t, reduce_op: (dist.all_reduce(t), t)[1])
    )

    def make_cb(strategy: str, per_pass: int) -> AblationCallback:
        cb = AblationCallback(
            out_dir="unused",
            neuron_lists=lists,
            class_sets=False,
            random_draws=0,
            strategy=strategy,
            conditions_per_pass=per_pass,
            figures=False,
        )
        cb.build(enc, [str(i) for i in range(10)])
        assert len(cb.conditions) == C
        cb.correct = torch.zeros(C, 10, dtype=torch.long)
        cb.n = torch.zeros(10, dtype=torch.long)
        cb.confusion = torch.zeros(C, 10, 10, dtype=torch.long)
        return cb

    def bare(x: torch.Tensor) -> float:
        t0 = time.perf_counter()
        for _ in range(C):
            model(x).argmax(-1)
        return time.perf_counter() - t0

    def ablate(cb: AblationCallback, x: torch.Tensor, y: torch.Tensor) -> float:
        cb._register(enc)
        try:
            t0 = time.perf_counter()
            logits = model(x)  # the module's own test_step forward = the baseline condition
            cb.on_test_batch_end(None, model, {"logits": logits}, {"audio": x, "length": None, "label": y}, 0)
            return time.perf_counter() - t0
        finally:
            cb._remove()

    def measure(strategy: str, per_pass: int, turn: int) -> list[float]:
        """Per-batch ratios (one-pass ablation of the batch) / (C bare forwards of the same batch), the two
        run back to back in an order that alternates from batch to batch (so machine load hits both alike);
        the pass's one sum-reduce of the counts is shared out over its batches."""
        cb = make_cb(strategy, per_pass)
        pairs = []
        with torch.inference_mode():
            for i, (x, y) in enumerate(zip(batches, labels)):
                if (i + turn) % 2 == 0:
                    t_bare = bare(x)
                    t_abl = ablate(cb, x, y)
                else:
                    t_abl = ablate(cb, x, y)
                    t_bare = bare(x)
                pairs.append((t_abl, t_bare))
            t0 = time.perf_counter()
            reduce_counts(trainer, [cb.correct, cb.n, cb.confusion])  # the end of a pass: one sum-reduce
            t_reduce = (time.perf_counter() - t0) / len(pairs)
        return [(t_abl + t_reduce) / t_bare for t_abl, t_bare in pairs]

    measure("loop", 1, 0)  # warm-up
    out: dict[str, list[float]] = {}
    for strategy, per in (("loop", 1), ("expand", 2), ("expand", 4)):
        name = strategy if strategy == "loop" else f"expand x{per}"
        out[name] = []
        for r in range(a.repeats):
            out[name] += measure(strategy, per, r)
    return out


def _worker(rank: int, world: int, port: int, a: argparse.Namespace, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        queue.put((rank, measure_all(a, rank, world)))
    finally:
        dist.destroy_process_group()


def main() -> None:
    a = parse()
    C = a.conditions
    print(
        f"M2D random init depth {a.depth} width {a.width}: {max(1, a.clips // a.batch)} batches x {a.batch} "
        f"clips x {a.seconds} s, C = {C} conditions ({a.neurons} neurons each), {a.processes} process(es), "
        f"torch threads {torch.get_num_threads() if a.processes == 1 else 1} per process"
    )
    if a.processes == 1:
        ratios = measure_all(a)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(r, a.processes, port, a, queue)) for r in range(a.processes)]
        for p in procs:
            p.start()
        parts = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        ratios = {k: [r for _, part in parts for r in part[k]] for k in parts[0][1]}
    for name, rs in ratios.items():
        q1, med, q3 = statistics.quantiles(rs, n=4) if len(rs) > 1 else (rs[0],) * 3
        print(
            f"{name:>10}: one pass of C = {C} conditions / (C x bare pass) = {med:.3f} "
            f"(median of {len(rs)} batch ratios, quartiles {q1:.3f}-{q3:.3f}, range {min(rs):.3f}-{max(rs):.3f}) "
            f"(P3, target <= 1.05)"
        )


if __name__ == "__main__":
    main()
