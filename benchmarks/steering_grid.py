"""Cost of the gain grid in one steering pass vs one pass per gain.

One pass (:class:`callbacks.SteeringCallback` with the whole grid): the module's own forward (the
baseline, g = 1) plus every (set, gain ≠ 1) condition. Separate passes: for each gain ≠ 1 its own pass
(the module's forward again, plus every set at that gain) — what running the ablation once per gain
costs. Both on the same in-memory batches of a random-init M2D (default: 2 blocks of width 384, 2 s
clips) with hooks at every MLP activation, per batch back to back in an order that alternates from batch
to batch (so machine load hits both alike); printed: the median of the per-batch ratios
(one pass) / (separate passes) with the quartiles, and the absolute times. Audio decoding is excluded:
separate passes would also decode every clip once per gain, so the real saving is larger.

    python benchmarks/steering_grid.py [--depth 2] [--width 384] [--clips 16] [--batch 4] [--seconds 2]
                                       [--sets 6] [--draws 2] [--gains 0 0.5 1 2 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


from analysis import steering as G
from analysis.ablation import Condition
from callbacks.steering import SteeringCallback
from lightning_modules.encoders import M2DEncoder
from callbacks.hooks import SiteHooks


class _Module(torch.nn.Module):
    """Stands in for AudioClassifier: encoder + linear head."""

    def __init__(self, encoder, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.embed_dim, classes)

    def forward(self, audio, lengths=None):
        return self.head(self.encoder(audio, lengths))


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--sets", type=int, default=6, help="class sets (= classes)")
    ap.add_argument("--draws", type=int, default=2, help="random sets per class set")
    ap.add_argument("--neurons", type=int, default=20, help="neurons per set")
    ap.add_argument("--gains", type=float, nargs="+", default=list(G.DEFAULT_GAINS))
    ap.add_argument("--per-pass", type=int, default=8, help="conditions per forward")
    ap.add_argument("--repeats", type=int, default=3)
    return ap.parse_args()


def _sets(site_neurons: list[int], a: argparse.Namespace) -> list[Condition]:
    g = torch.Generator().manual_seed(1)
    L, N = len(site_neurons), max(site_neurons)
    out = [Condition("baseline", "baseline", torch.zeros(L, N, dtype=torch.bool))]
    for c in range(a.sets):
        for d in range(-1, a.draws):
            m = torch.zeros(L, N, dtype=torch.bool)
            m.view(-1)[torch.randperm(L * N, generator=g)[: a.neurons]] = True
            if d < 0:
                out.append(Condition(f"class:{c}", "class", m, [str(c)]))
            else:
                out.append(Condition(f"random:class:{c}:{d}", "random", m, [str(c)], draw=d, parent=f"class:{c}"))
    return out


def main() -> None:
    a = parse()
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
    model = _Module(enc, a.sets).eval()
    base = _sets(list(enc.site_neurons), a)
    gains = G.check_gains(a.gains)

    def callback(grid: list[float]) -> SteeringCallback:
        cb = SteeringCallback(
            out_dir="unused",
            run_dir="unused",
            gains=grid,
            random_draws=a.draws,
            conditions_per_pass=a.per_pass,
            figures=False,
        )
        cb.classes = [str(c) for c in range(a.sets)]
        cb.pairs = G.steering_conditions(base, cb.gains)
        cb._scales = G.steering_scales(cb.pairs, list(enc.site_neurons))
        K, C = 1 + len(cb.pairs), a.sets
        cb.correct, cb.n = torch.zeros(K, C, dtype=torch.long), torch.zeros(C, dtype=torch.long)
        cb.prob = torch.zeros(K, C, C, dtype=torch.float64)
        cb._hooks = SiteHooks(enc, [(s, cb._make_hook(l, enc)) for l, s in enumerate(enc.neuron_sites)])
        return cb

    def run(cbs: list[SteeringCallback], x: torch.Tensor, y: torch.Tensor) -> float:
        t0 = time.perf_counter()
        for cb in cbs:  # each a pass of its own: the module's forward, then its conditions
            cb._hooks.attach()
            try:
                logits = model(x)
                cb.on_test_batch_end(None, model, {"logits": logits}, {"audio": x, "length": None, "label": y}, 0)
            finally:
                cb._hooks.remove()
        return time.perf_counter() - t0

    S = int(16000 * a.seconds)
    batches = [torch.randn(a.batch, S) * 0.1 for _ in range(max(1, a.clips // a.batch))]
    labels = [torch.randint(0, a.sets, (a.batch,)) for _ in batches]
    one = [callback(gains)]
    separate = [callback([1.0, g]) for g in gains if g != 1.0]
    ratios, t_one, t_sep = [], [], []
    with torch.inference_mode():
        run(one, batches[0], labels[0])  # warm-up
        for r in range(a.repeats):
            for i, (x, y) in enumerate(zip(batches, labels)):
                if (i + r) % 2 == 0:
                    o, s = run(one, x, y), run(separate, x, y)
                else:
                    s, o = run(separate, x, y), run(one, x, y)
                ratios.append(o / s)
                t_one.append(o)
                t_sep.append(s)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    n_cond = len(one[0].pairs)
    print(
        f"M2D depth {a.depth} width {a.width}, {a.batch} clips x {a.seconds:g} s per batch, {a.sets} class sets x "
        f"(1 + {a.draws} random), gains {gains}: {n_cond} conditions; {len(ratios)} batch measurements"
    )
    print(
        f"one pass / separate passes per gain: median {q[1]:.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}); "
        f"median per batch {statistics.median(t_one) * 1e3:.0f} ms vs {statistics.median(t_sep) * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
