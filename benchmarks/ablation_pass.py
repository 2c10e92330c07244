"""Cost of the one-pass ablation: time for C conditions in one pass ÷ (C × one bare forward pass).

Runs the AblationCallback's two strategies (``loop``: one encoder forward per condition on the same
decoded batch; ``expand``: the batch repeated over several conditions with per-row masks) against a bare
forward loop over the same batches, on a random-init M2D (default: 4 blocks of ViT-Base width, 2 s clips)
with hooks at every MLP activation. Audio decoding is excluded (the batches are in memory), so the ratio
measures exactly the overhead of hooks + bookkeeping. Target ≤ 1.05.

    python benchmarks/ablation_pass.py [--depth 4] [--width 768] [--clips 16] [--batch 8] [--seconds 2]
                                       [--conditions 8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callbacks.ablation import AblationCallback, NeuronList  # noqa: E402
from lightning_modules.encoders import M2DEncoder  # noqa: E402


class _Module(torch.nn.Module):
    """Stands in for AudioClassifier: encoder + linear head."""

    def __init__(self, encoder, classes: int = 10) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.embed_dim, classes)

    def forward(self, audio, lengths=None):
        return self.head(self.encoder(audio, lengths))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--conditions", type=int, default=8, help="C, incl. the baseline")
    ap.add_argument("--neurons", type=int, default=20, help="neurons per ablated set")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    enc = M2DEncoder(checkpoint=None, width=a.width, depth=a.depth, num_heads=max(1, a.width // 64),
                     mlp_ratio=4.0, seed=0, name="bench").eval()
    model = _Module(enc).eval()
    S = int(16000 * a.seconds)
    batches = [torch.randn(a.batch, S) * 0.1 for _ in range(max(1, a.clips // a.batch))]
    labels = [torch.randint(0, 10, (a.batch,)) for _ in batches]
    sn = list(enc.site_neurons)
    g = torch.Generator().manual_seed(1)
    lists = []
    for i in range(a.conditions - 1):
        pairs = {(int(torch.randint(0, len(sn), (1,), generator=g)), int(torch.randint(0, sn[0] - 1, (1,), generator=g)))
                 for _ in range(a.neurons)}
        lists.append(NeuronList(f"set{i}", [list(p) for p in sorted(pairs)], []))
    C = a.conditions

    def make_cb(strategy: str, per_pass: int) -> AblationCallback:
        cb = AblationCallback(out_dir="unused", neuron_lists=lists, class_sets=False, random_draws=0,
                              strategy=strategy, conditions_per_pass=per_pass, figures=False)
        cb.build(enc, [str(i) for i in range(10)])
        assert len(cb.conditions) == C
        cb.correct = torch.zeros(C, 10, dtype=torch.long)
        cb.n = torch.zeros(10, dtype=torch.long)
        return cb

    def measure(strategy: str, per_pass: int) -> tuple[float, float]:
        """Interleaved per batch (so machine load hits both alike): C bare forwards, then the one-pass
        ablation of the same batch. Returns (total ablation time, total time of the C bare passes)."""
        cb = make_cb(strategy, per_pass)
        t_abl = t_bare = 0.0
        with torch.inference_mode():
            for x, y in zip(batches, labels):
                t0 = time.perf_counter()
                for _ in range(C):
                    model(x).argmax(-1)
                t_bare += time.perf_counter() - t0
                cb._register(enc)
                try:
                    t0 = time.perf_counter()
                    logits = model(x)  # the module's own test_step forward = the baseline condition
                    cb.on_test_batch_end(None, model, {"logits": logits}, {"audio": x, "length": None, "label": y}, 0)
                    t_abl += time.perf_counter() - t0
                finally:
                    cb._remove()
        return t_abl, t_bare

    print(f"M2D random init depth {a.depth} width {a.width}: {len(batches)} batches x {a.batch} clips x "
          f"{a.seconds} s, C = {C} conditions ({a.neurons} neurons each), torch threads {torch.get_num_threads()}")
    measure("loop", 1)  # warm-up
    for strategy, per in (("loop", 1), ("expand", 2), ("expand", 4)):
        ratios = []
        for _ in range(a.repeats):
            t_abl, t_bare = measure(strategy, per)
            ratios.append(t_abl / t_bare)
        name = strategy if strategy == "loop" else f"expand x{per}"
        ratios.sort()
        print(f"{name:>10}: one pass of C = {C} conditions / (C x bare pass) = {ratios[len(ratios) // 2]:.3f} "
              f"(median of {a.repeats}; all {', '.join(f'{r:.3f}' for r in ratios)}); last bare pass "
              f"{t_bare / C:.3f} s")


if __name__ == "__main__":
    main()
