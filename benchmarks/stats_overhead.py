"""Overhead of ActivationStatsCallback .

1. Time: M2D ViT-Base (random init) over ``--clips`` clips of ``--seconds`` s. Ratio of
   ``trainer.predict`` with the callback to a bare ``torch.inference_mode`` loop over the same DataLoader
   and encoder (target <= 1.03). Also printed: ``trainer.predict`` without the callback, to separate the
   callback's cost from Lightning's.
2. Memory: peak RSS (``resource.getrusage`` maxrss) of a subprocess running ``trainer.predict`` with the
   callback over ``--rss-factor`` x ``--rss-clips`` clips vs ``--rss-clips`` clips (target <= 1.05).

    python benchmarks/stats_overhead.py [--clips 32 --seconds 10 --batch-size 8 --rss-clips 8 --rss-factor 10]

Clips are synthesised on the fly from their index (the dataset holds no audio), so memory can only grow
through what predict and the callback keep. Slow on CPU (ViT-Base ~1 s per 8 clips of 6 s on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

CLASSES = ["a", "b", "c", "d"]


class SynthClips(Dataset):
    """Clip i: deterministic noise + tone of ``seconds`` s at 16 kHz, label i % 4, in the batch format."""

    def __init__(self, n: int, seconds: float) -> None:
        self.n, self.samples = n, int(16000 * seconds)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        t = torch.arange(self.samples) / 16000
        audio = 0.1 * torch.randn(self.samples, generator=g) + 0.3 * torch.sin(2 * torch.pi * (110 * 2 ** (i % 4)) * t)
        return {"audio": audio.float(), "length": torch.tensor(self.samples), "label": torch.tensor(i % 4),
                "index": torch.tensor(i), "split": "train", "file_name": f"clip_{i:05d}.wav"}


class SynthDataModule(L.LightningDataModule):
    task = "bench"

    def __init__(self, n: int, seconds: float, batch_size: int) -> None:
        super().__init__()
        self.classes, self.multilabel = CLASSES, False
        self.n, self.seconds, self.batch_size = n, seconds, batch_size

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(SynthClips(self.n, self.seconds), batch_size=self.batch_size, num_workers=0)


def make_model():
    from lightning_modules import FeatureExtractor
    from lightning_modules.encoders import M2DEncoder

    return FeatureExtractor(M2DEncoder(seed=0))  # ViT-Base dims, random init


def predict(model, dm, out: str, with_callback: bool) -> float:
    from callbacks import ActivationStatsCallback

    cbs = [ActivationStatsCallback(out_dir=out, overwrite=True)] if with_callback else []
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=cbs, enable_progress_bar=False,
                        enable_model_summary=False)
    t0 = time.perf_counter()
    trainer.predict(model, datamodule=dm, return_predictions=False)
    return time.perf_counter() - t0


def bare(model, dm) -> float:
    enc = model.encoder.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for batch in dm.predict_dataloader():
            enc(batch["audio"], batch["length"])
    return time.perf_counter() - t0


def rss_child(n: int, seconds: float, batch_size: int) -> None:
    model = make_model()
    with tempfile.TemporaryDirectory() as out:
        predict(model, SynthDataModule(n, seconds, batch_size), out, with_callback=True)
    print(json.dumps({"clips": n, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def rss_of(n: int, seconds: float, batch_size: int) -> int:
    p = subprocess.run([sys.executable, __file__, "--rss-child", str(n), "--seconds", str(seconds),
                        "--batch-size", str(batch_size)], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"RSS child failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])["maxrss_kb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=32, help="clips for the timing comparison")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1, help="timing repeats (best of, interleaved)")
    ap.add_argument("--rss-clips", type=int, default=8, help="clips of the 1x memory run")
    ap.add_argument("--rss-factor", type=int, default=10, help="the large memory run has factor x clips")
    ap.add_argument("--skip-time", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rss_child is not None:
        rss_child(a.rss_child, a.seconds, a.batch_size)
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}", flush=True)
    if not a.skip_time:
        model = make_model()
        dm = SynthDataModule(a.clips, a.seconds, a.batch_size)
        warm = SynthDataModule(a.batch_size, a.seconds, a.batch_size)
        with tempfile.TemporaryDirectory() as out:
            bare(model, warm), predict(model, warm, out, True)  # warm-up (allocator, kernels)
            times = {"bare": [], "predict": [], "predict+callback": []}
            for _ in range(a.repeats):
                times["bare"].append(bare(model, dm))
                times["predict+callback"].append(predict(model, dm, out, True))
                times["predict"].append(predict(model, dm, out, False))
        best = {k: min(v) for k, v in times.items()}
        print(f"time over {a.clips} clips x {a.seconds:g} s, batch {a.batch_size} (best of {a.repeats}): "
              + ", ".join(f"{k} {v:.2f} s" for k, v in best.items()))
        print(f"RATIO time predict+callback / bare loop = {best['predict+callback'] / best['bare']:.3f} (target <= 1.03)")
        print(f"      time predict (no callback) / bare loop = {best['predict'] / best['bare']:.3f}")
        print(f"      time predict+callback / predict = {best['predict+callback'] / best['predict']:.3f}", flush=True)
    if not a.skip_rss:
        small = rss_of(a.rss_clips, a.seconds, a.batch_size)
        large = rss_of(a.rss_clips * a.rss_factor, a.seconds, a.batch_size)
        print(f"peak RSS: {a.rss_clips} clips {small / 1024:.1f} MiB, {a.rss_clips * a.rss_factor} clips "
              f"{large / 1024:.1f} MiB")
        print(f"RATIO peak RSS {a.rss_factor}x / 1x = {large / small:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
