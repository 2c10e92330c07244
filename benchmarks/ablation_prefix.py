"""Cost of the ablation's ``expand`` passes with the shared prefix (``share_prefix``) on vs off.

CREPE tiny (pretrained) at the demo's settings (configs/pipeline/demo.yaml: hop 250 ms, embedding layer 6,
0.5 s clips = 3 frames, batch 32, 4 conditions per pass), a linear head of 6 classes as the probe, in-memory
random audio (decoding excluded). The conditions are ``--sets`` random sets of ``--neurons`` neurons drawn
(seeded) either over every site (``--from-site 0``: almost every set touches site 0) or only from site
``--from-site`` on. Per batch, the two settings run back to back in an order that alternates from batch to
batch; printed: the median of the per-batch ratios on / off with quartiles, and both totals.

    python benchmarks/ablation_prefix.py [--sets 40] [--neurons 14] [--from-site 0] [--batches 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


from callbacks.ablation import AblationCallback, NeuronList
from lightning_modules.encoders import CrepeEncoder

CLASSES = [f"c{i}" for i in range(6)]


class _Module(torch.nn.Module):
    """Stands in for AudioClassifier: ``probe(encoder(audio, lengths))``."""

    def __init__(self, encoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.probe = torch.nn.Linear(encoder.embed_dim, len(CLASSES))

    def forward(self, audio, lengths=None):
        return self.probe(self.encoder(audio, lengths))


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=int, default=40)
    ap.add_argument("--neurons", type=int, default=14, help="neurons per set (5 %% of 272)")
    ap.add_argument("--from-site", type=int, default=0, help="draw the sets' neurons from this site on")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    return ap.parse_args()


def neuron_lists(enc: CrepeEncoder, a: argparse.Namespace) -> list[NeuronList]:
    g = torch.Generator().manual_seed(0)
    pool = [(l, n) for l, size in enumerate(enc.site_neurons) if l >= a.from_site for n in range(size)]
    out = []
    for s in range(a.sets):
        pick = torch.randperm(len(pool), generator=g)[: a.neurons].tolist()
        out.append(NeuronList(name=f"set{s}", neurons=[list(pool[i]) for i in pick], targets=[CLASSES[s % 6]]))
    return out


def callback(enc: CrepeEncoder, lists: list[NeuronList], share: bool) -> AblationCallback:
    cb = AblationCallback(
        out_dir="unused",
        class_sets=False,
        neuron_lists=lists,
        random_draws=0,
        conditions_per_pass=4,
        share_prefix=share,
        figures=False,
    )
    cb.build(enc, CLASSES)
    cb._register(enc)
    cb._start_round(cb.conditions, enc, "cpu")
    return cb


def main() -> None:
    a = parse()
    torch.manual_seed(0)
    enc = CrepeEncoder(capacity="tiny", pretrained=True, hop_ms=250.0, embedding_layer=6)
    module = _Module(enc).eval()
    lists = neuron_lists(enc, a)
    batches = [
        {
            "audio": torch.randn(a.batch, 8000) * 0.1,
            "length": torch.full((a.batch,), 8000),
            "label": torch.randint(0, 6, (a.batch,)),
        }
        for _ in range(a.batches)
    ]
    on, off = callback(enc, lists, True), callback(enc, lists, False)
    ratios, total = [], {True: 0.0, False: 0.0}
    with torch.inference_mode():
        for cb in (on, off):  # warm-up, and the counts must agree
            for b in batches:
                cb._score(module, b, 0, 0, module(b["audio"], b["length"]))
        assert torch.equal(on.correct, off.correct) and torch.equal(on.confusion, off.confusion)
        for r in range(a.repeats):
            for i, b in enumerate(batches):
                logits = module(b["audio"], b["length"])
                times = {}
                for share in (True, False) if (i + r) % 2 == 0 else (False, True):
                    cb = on if share else off
                    t0 = time.perf_counter()
                    cb._score(module, b, 0, 0, logits)
                    times[share] = time.perf_counter() - t0
                    total[share] += times[share]
                ratios.append(times[True] / times[False])
    on._remove()
    off._remove()
    q = statistics.quantiles(ratios, n=4)
    print(
        f"CREPE tiny, {len(on.conditions)} conditions ({a.sets} sets of {a.neurons} neurons from site "
        f"{a.from_site} on), {a.batches} batches of {a.batch} x {a.repeats} repeats, torch threads "
        f"{torch.get_num_threads()}"
    )
    print(
        f"per-batch time ratio prefix on / off: median {statistics.median(ratios):.3f} "
        f"(quartiles {q[0]:.3f}-{q[2]:.3f}, n={len(ratios)}); totals on {total[True]:.2f} s, off {total[False]:.2f} s"
    )


if __name__ == "__main__":
    main()
