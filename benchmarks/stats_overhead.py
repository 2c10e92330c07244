"""Overhead of the statistics pass (ActivationStatsCallback), measured so that machine noise cancels.

1. **Time, interleaved.** M2D ViT-Base (random init) on batches of synthetic clips held in memory. For
   every batch, in rotating order, on the same inputs:

   * ``bare``    the encoder's forward alone (no hook);
   * ``counts``  the forward with the callback's hooks and its per-batch work (``on_predict_batch_start``
     + forward + ``on_predict_batch_end``: counting, folding into the device totals, queueing the
     embedding rows), ``top_k: 0``, ``act_sum: false``;
   * ``top_k``   the same with ``top_k: 8`` (each neuron's top clips and their peaks; implies the sums);
   * ``top_k+compile`` the same with ``compile: true`` (one ``torch.compile``-d kernel per site call;
     skipped with ``--no-compile``).

   Printed: per-batch ratios ``counts / bare`` (P1, target <= 1.03) and ``top_k / counts`` (the top-K
   tracking's own cost, target <= 1.03) as median, quartiles and range over batches, by wall clock and by
   CPU time of the process (less sensitive to other processes on a shared machine; CPU only). On a GPU
   (when present) the same is printed for CUDA, with a synchronisation before each clock read.
2. **Memory.** Peak RSS (``ru_maxrss``) of a subprocess running ``trainer.predict`` with the callback and
   embeddings written, over ``--rss-factor`` x ``--rss-clips`` clips vs ``--rss-clips`` clips (P2, target
   <= 1.05). The default model is a small encoder with 3840-d embeddings (ViT-Base M2D's width) on short
   clips, so that the embeddings (20000 x 3840 float32 = 295 MiB at 10x) would dominate the RSS if they
   were held in memory; ``--rss-model m2d`` uses ViT-Base itself (slow on CPU).

    python benchmarks/stats_overhead.py [--batches 6 --batch-size 8 --seconds 10 --repeats 1]
                                        [--rss-clips 2000 --rss-factor 10 --rss-model toy|m2d]
                                        [--skip-time] [--skip-rss]

Clips are synthesised from their index (the dataset holds no audio), so memory can only grow through
what predict and the callback keep. ViT-Base takes a few seconds per batch of 8 clips of 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from callbacks import ActivationStatsCallback
from lightning_modules import FeatureExtractor
from lightning_modules.encoders import M2DEncoder
from lightning_modules.encoders.base import AudioEncoder

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
        return {
            "audio": audio.float(),
            "length": torch.tensor(self.samples),
            "label": torch.tensor(i % 4),
            "index": torch.tensor(i),
            "split": "train",
            "file_name": f"clip_{i:05d}.wav",
        }


class SynthDataModule(L.LightningDataModule):
    task = "bench"

    def __init__(self, n: int, seconds: float, batch_size: int) -> None:
        super().__init__()
        self.classes, self.multilabel = CLASSES, False
        self.n, self.seconds, self.batch_size = n, seconds, batch_size

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(SynthClips(self.n, self.seconds), batch_size=self.batch_size, num_workers=0)


class WideToyEncoder(AudioEncoder):
    """Cheap protocol encoder with ViT-Base M2D's embedding width: frames of 160 samples -> Linear(160, 256)
    -> GELU (the one neuron site) -> Linear(256, 3840) -> mean over frames."""

    sample_rate = 16000
    embed_dim = 3840
    neuron_sites = ["act"]
    channel_axis = -1
    site_neurons = [256]
    name = "wide_toy"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp, self.act, self.out = nn.Linear(160, 256), nn.GELU(), nn.Linear(256, 3840)

    def forward(self, audio: torch.Tensor, lengths=None) -> torch.Tensor:
        b, s = audio.shape
        x = audio[:, : s // 160 * 160].reshape(b, s // 160, 160)
        return self.out(self.act(self.inp(x))).mean(1)


# -- 1. time -----------------------------------------------------------------------------------------------
def _callback(top_k: int, compile: bool = False) -> ActivationStatsCallback:
    return ActivationStatsCallback(
        out_dir="unused", top_k=top_k, act_sum=False, features=True, compile=compile, log_tensorboard=False
    )


def _clock(device: torch.device) -> tuple[float, float]:
    """(wall-clock, CPU time of this process) in seconds, after the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter(), time.process_time()


def time_batches(
    device: torch.device, batches: list[dict], repeats: int, compiled: bool
) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per batch of each variant, interleaved batch by batch in rotating order."""
    enc = M2DEncoder(seed=0).eval().to(device)  # ViT-Base dims, random init
    module = SimpleNamespace(encoder=enc)
    cbs = {"counts": _callback(0), "top_k": _callback(8)}
    if compiled:
        cbs["top_k+compile"] = _callback(8, compile=True)
    for cb in cbs.values():
        cb.begin(enc, CLASSES, device)
        cb._hooks.remove()
    times: dict[str, list[tuple[float, float]]] = {"bare": [], **{name: [] for name in cbs}}

    def run(name: str, batch: dict) -> tuple[float, float]:
        cb = cbs.get(name)
        if cb is not None:
            cb._hooks.attach()
        try:
            t0 = _clock(device)
            if cb is not None:
                cb.on_predict_batch_start(None, module, batch, 0)
            emb = enc(batch["audio"], batch["length"])
            if cb is not None:
                cb.on_predict_batch_end(None, module, {"embedding": emb}, batch, 0)
            t1 = _clock(device)
            return t1[0] - t0[0], t1[1] - t0[1]
        finally:
            if cb is not None:
                cb._hooks.remove()

    names = list(times)
    with torch.inference_mode():
        for name in names:  # warm-up (allocator, kernels)
            run(name, batches[0])
        k = 0
        for _ in range(repeats):
            for batch in batches:
                order = names[k % len(names) :] + names[: k % len(names)]
                k += 1
                for name in order:
                    times[name].append(run(name, batch))
    return times


def _summary(ratios: list[float]) -> str:
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return (
        f"median {statistics.median(ratios):.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}, range "
        f"{min(ratios):.3f}-{max(ratios):.3f}, {len(ratios)} batches)"
    )


def report_time(device: torch.device, a: argparse.Namespace) -> None:
    data = SynthClips(a.batches * a.batch_size, a.seconds)
    batches = []
    for i in range(a.batches):
        items = [data[j] for j in range(i * a.batch_size, (i + 1) * a.batch_size)]
        b = torch.utils.data.default_collate(items)
        b["audio"], b["length"], b["label"] = (b["audio"].to(device), b["length"].to(device), b["label"].to(device))
        b["index"] = b["index"].to(device)
        batches.append(b)
    t = time_batches(device, batches, a.repeats, not a.no_compile)
    tag = f"[{device.type}, {torch.get_num_threads()} threads]"
    print(
        f"{tag} M2D ViT-Base random init, {a.batches} batches x {a.batch_size} clips x {a.seconds:g} s "
        f"(x {a.repeats}); median wall s/batch: "
        + ", ".join(f"{k} {statistics.median(x[0] for x in v):.3f}" for k, v in t.items())
    )
    for clock, j in (("wall-clock", 0), ("CPU time", 1)):
        if clock == "CPU time" and device.type != "cpu":
            continue
        ratio = {name: [x[j] for x in v] for name, v in t.items()}
        counts = [c / b for c, b in zip(ratio["counts"], ratio["bare"])]
        topk = [k / c for k, c in zip(ratio["top_k"], ratio["counts"])]
        total = [k / b for k, b in zip(ratio["top_k"], ratio["bare"])]
        print(f"{tag} {clock}: RATIO counts / bare forward (P1, target <= 1.03): {_summary(counts)}")
        print(f"{tag} {clock}: RATIO top_k / counts (top-K tracking, target <= 1.03): {_summary(topk)}")
        if "top_k+compile" in ratio:
            topc = [k / c for k, c in zip(ratio["top_k+compile"], ratio["counts"])]
            print(f"{tag} {clock}: RATIO top_k+compile / counts (top-K tracking, compiled): {_summary(topc)}")
        print(f"{tag} {clock}:       top_k / bare forward: {_summary(total)}", flush=True)


# -- 2. memory --------------------------------------------------------------------------------------------
def rss_child(n: int, seconds: float, batch_size: int, model: str) -> None:
    enc = WideToyEncoder() if model == "toy" else M2DEncoder(seed=0)
    with tempfile.TemporaryDirectory() as out:
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[ActivationStatsCallback(out_dir=out, overwrite=True, log_tensorboard=False)],
        )
        trainer.predict(
            FeatureExtractor(enc), datamodule=SynthDataModule(n, seconds, batch_size), return_predictions=False
        )
        size = sum(f.stat().st_size for f in Path(out).rglob("features.pt"))
    print(
        json.dumps(
            {"clips": n, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "features_bytes": size}
        )
    )


def rss_of(n: int, seconds: float, batch_size: int, model: str) -> dict:
    p = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss-child",
            str(n),
            "--seconds",
            str(seconds),
            "--batch-size",
            str(batch_size),
            "--rss-model",
            model,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        raise RuntimeError(f"RSS child failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def report_rss(a: argparse.Namespace) -> None:
    seconds = a.rss_seconds if a.rss_seconds is not None else (0.1 if a.rss_model == "toy" else a.seconds)
    bs = a.rss_batch_size if a.rss_batch_size is not None else (64 if a.rss_model == "toy" else a.batch_size)
    small = rss_of(a.rss_clips, seconds, bs, a.rss_model)
    large = rss_of(a.rss_clips * a.rss_factor, seconds, bs, a.rss_model)
    mib = 1024.0
    print(
        f"peak RSS ({a.rss_model}, {seconds:g} s clips, batch {bs}, embeddings written): {small['clips']} clips "
        f"{small['maxrss_kb'] / mib:.1f} MiB (features.pt {small['features_bytes'] / 2**20:.1f} MiB), "
        f"{large['clips']} clips {large['maxrss_kb'] / mib:.1f} MiB (features.pt "
        f"{large['features_bytes'] / 2**20:.1f} MiB)"
    )
    print(
        f"RATIO peak RSS {a.rss_factor}x / 1x clips (P2, target <= 1.05) = {large['maxrss_kb'] / small['maxrss_kb']:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=6, help="batches of the timing comparison")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds (timing)")
    ap.add_argument("--repeats", type=int, default=1, help="passes over the batches (more ratios)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--rss-clips", type=int, default=2000, help="clips of the 1x memory run")
    ap.add_argument("--rss-factor", type=int, default=10, help="the large memory run has factor x clips")
    ap.add_argument("--rss-model", choices=["toy", "m2d"], default="toy")
    ap.add_argument("--rss-seconds", type=float, default=None, help="clip length of the memory runs")
    ap.add_argument("--rss-batch-size", type=int, default=None)
    ap.add_argument("--skip-time", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rss_child is not None:
        rss_child(a.rss_child, a.seconds, a.batch_size, a.rss_model)
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    if not a.skip_time:
        report_time(torch.device("cpu"), a)
        if torch.cuda.is_available():
            report_time(torch.device("cuda"), a)
    if not a.skip_rss:
        report_rss(a)
    print(f"load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
